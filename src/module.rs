// SPDX-License-Identifier: MIT OR Apache-2.0
//! Making sure nf_conntrack is present.
//!
//! The order of checks follows what can actually be told apart: if the
//! sysctl keys exist, the module is there (built in or loaded) and nothing
//! else matters. Without `/proc/modules` the kernel cannot load modules at
//! all. Only then is libkmod asked to probe-insert the module with modprobe
//! semantics (dependencies, modprobe.d options, the blacklist), passing
//! `hashsize=` so the table starts at its final size.

use std::io;
use std::time::{Duration, Instant};

use crate::sysroot::{SysRoot, NETFILTER_DIR};

/// The module name.
pub const MODULE: &str = "nf_conntrack";

/// Something that can load a kernel module. A second implementation exists
/// only for tests.
pub trait ModuleLoader {
    /// Load `name` with `options` (space-separated `key=value`).
    fn load(&self, name: &str, options: &str) -> Result<(), LoadError>;
}

/// Why a module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The caller lacks CAP_SYS_MODULE.
    #[error("permission denied loading {0} (needs CAP_SYS_MODULE)")]
    Permission(String),
    /// modprobe.d blacklists it.
    #[error("{0} is blacklisted in modprobe.d; remove the blacklist line or load it yourself")]
    Blacklisted(String),
    /// Any other failure, with the cause.
    #[error("loading {name} failed: {source}")]
    Failed {
        /// Module name.
        name: String,
        /// The errno from libkmod.
        #[source]
        source: io::Error,
    },
    /// Loading is not possible from here.
    #[error("{0}")]
    Disabled(String),
}

/// What [`ensure`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleState {
    /// The keys were already there.
    Present,
    /// We loaded it, with these options.
    Loaded(String),
    /// Dry run: it would be loaded with these options.
    WouldLoad(String),
}

impl ModuleState {
    /// For the report and the journal.
    pub fn describe(&self) -> String {
        match self {
            ModuleState::Present => format!("{MODULE} present"),
            ModuleState::Loaded(o) => format!("{MODULE} loaded by conntrack-guard ({o})"),
            ModuleState::WouldLoad(o) => format!("{MODULE} not loaded; would load it ({o})"),
        }
    }
}

/// Why conntrack is unavailable.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// Cannot be had here (exit 69).
    #[error("conntrack unavailable: {0}")]
    Unavailable(String),
    /// Not allowed (exit 77).
    #[error("{0}")]
    Permission(String),
}

/// True if the conntrack sysctl keys exist under `root`.
pub fn keys_present(root: &SysRoot) -> bool {
    root.exists(&format!("{NETFILTER_DIR}/nf_conntrack_max"))
}

/// Make sure the module is present, loading it if needed (not in a dry run).
pub fn ensure(
    root: &SysRoot,
    loader: &dyn ModuleLoader,
    buckets: Option<u64>,
    dry_run: bool,
    wait: Duration,
) -> Result<ModuleState, ModuleError> {
    if keys_present(root) {
        return Ok(ModuleState::Present);
    }
    if !root.exists("proc/modules") {
        return Err(ModuleError::Unavailable(format!(
            "{} does not exist and {} is absent: this kernel cannot load modules and \
             {MODULE} is not built in",
            root.path(NETFILTER_DIR).display(),
            root.path("proc/modules").display()
        )));
    }
    let options = buckets.map(|b| format!("hashsize={b}")).unwrap_or_default();
    if dry_run {
        return Ok(ModuleState::WouldLoad(options));
    }
    loader.load(MODULE, &options).map_err(|e| match e {
        LoadError::Permission(_) => ModuleError::Permission(e.to_string()),
        other => ModuleError::Unavailable(other.to_string()),
    })?;
    // The sysctl table is registered during module init; allow a bounded
    // wait in case it lags behind the insert returning.
    let deadline = Instant::now() + wait;
    while !keys_present(root) {
        if Instant::now() >= deadline {
            return Err(ModuleError::Unavailable(format!(
                "{MODULE} was loaded but {} did not appear within {:?}",
                root.path(NETFILTER_DIR).display(),
                wait
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(ModuleState::Loaded(options))
}

/// The loader for a test root: the tool never loads modules there.
pub struct NoLoader;

impl ModuleLoader for NoLoader {
    fn load(&self, name: &str, _options: &str) -> Result<(), LoadError> {
        Err(LoadError::Disabled(format!(
            "{name} is not loaded under a test root ({} is set); module loading is disabled",
            crate::sysroot::ROOT_ENV
        )))
    }
}

/// The real loader, through libkmod.
pub struct KmodLoader;

impl ModuleLoader for KmodLoader {
    fn load(&self, name: &str, options: &str) -> Result<(), LoadError> {
        ffi::probe_insert(name, options)
    }
}

/// The only unsafe code in the crate. kmod 0.5 wraps `insert_module` alone,
/// which ignores dependencies, modprobe.d options and the blacklist, so the
/// probe-insert call goes through kmod-sys directly.
#[allow(unsafe_code)]
mod ffi {
    use super::LoadError;
    use std::ffi::CString;
    use std::io;
    use std::ptr;

    use kmod_sys as k;

    const PROBE_APPLY_BLACKLIST: u32 = 0x20000;

    pub fn probe_insert(name: &str, options: &str) -> Result<(), LoadError> {
        let failed = |source: io::Error| LoadError::Failed {
            name: name.to_string(),
            source,
        };
        let c_name = CString::new(name).map_err(|e| failed(io::Error::other(e)))?;
        let c_opts = CString::new(options).map_err(|e| failed(io::Error::other(e)))?;
        // SAFETY: kmod_new with NULL dirname/config uses the defaults
        // (/lib/modules/`uname -r`, /etc/modprobe.d ...). Every object created
        // here is unreferenced before returning, on every path.
        unsafe {
            let ctx = k::kmod_new(ptr::null(), ptr::null());
            if ctx.is_null() {
                return Err(failed(io::Error::other("kmod_new failed")));
            }
            let mut module: *mut k::kmod_module = ptr::null_mut();
            let rc = k::kmod_module_new_from_name(ctx, c_name.as_ptr(), &mut module);
            if rc < 0 || module.is_null() {
                k::kmod_unref(ctx);
                return Err(failed(io::Error::from_raw_os_error(-rc)));
            }
            let rc = k::kmod_module_probe_insert_module(
                module,
                PROBE_APPLY_BLACKLIST,
                c_opts.as_ptr(),
                None,
                ptr::null(),
                None,
            );
            k::kmod_module_unref(module);
            k::kmod_unref(ctx);
            match rc {
                0 => Ok(()),
                r if r == PROBE_APPLY_BLACKLIST as i32 => {
                    Err(LoadError::Blacklisted(name.to_string()))
                }
                r if r > 0 => Err(failed(io::Error::other(format!("libkmod returned {r}")))),
                r => {
                    let e = io::Error::from_raw_os_error(-r);
                    if matches!(-r, nix::libc::EPERM | nix::libc::EACCES) {
                        Err(LoadError::Permission(name.to_string()))
                    } else {
                        Err(failed(e))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Creates the keys when asked to load, as the kernel would.
    struct FakeKernel<'a> {
        root: &'a SysRoot,
        calls: RefCell<Vec<String>>,
    }

    impl ModuleLoader for FakeKernel<'_> {
        fn load(&self, name: &str, options: &str) -> Result<(), LoadError> {
            self.calls.borrow_mut().push(format!("{name} {options}"));
            let dir = self.root.path(NETFILTER_DIR);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("nf_conntrack_max"), "65536\n").unwrap();
            Ok(())
        }
    }

    #[test]
    fn loads_with_hashsize_when_absent() {
        let t = tempfile::tempdir().unwrap();
        let root = SysRoot::at(t.path());
        std::fs::create_dir_all(root.path("proc")).unwrap();
        std::fs::write(root.path("proc/modules"), "").unwrap();
        let k = FakeKernel {
            root: &root,
            calls: RefCell::new(vec![]),
        };
        let st = ensure(&root, &k, Some(262144), false, Duration::from_secs(1)).unwrap();
        assert_eq!(st, ModuleState::Loaded("hashsize=262144".into()));
        assert_eq!(
            k.calls.borrow().as_slice(),
            ["nf_conntrack hashsize=262144"]
        );
        // Second time: present, no load.
        assert_eq!(
            ensure(&root, &k, Some(1), false, Duration::ZERO).unwrap(),
            ModuleState::Present
        );
        assert_eq!(k.calls.borrow().len(), 1);
    }

    #[test]
    fn no_module_support_is_unavailable() {
        let t = tempfile::tempdir().unwrap();
        let root = SysRoot::at(t.path());
        let e = ensure(&root, &NoLoader, None, false, Duration::ZERO).unwrap_err();
        assert!(
            matches!(e, ModuleError::Unavailable(ref m) if m.contains("cannot load modules")),
            "{e}"
        );
    }

    #[test]
    fn dry_run_does_not_load() {
        let t = tempfile::tempdir().unwrap();
        let root = SysRoot::at(t.path());
        std::fs::create_dir_all(root.path("proc")).unwrap();
        std::fs::write(root.path("proc/modules"), "").unwrap();
        let st = ensure(&root, &NoLoader, Some(8), true, Duration::ZERO).unwrap();
        assert_eq!(st, ModuleState::WouldLoad("hashsize=8".into()));
    }
}
