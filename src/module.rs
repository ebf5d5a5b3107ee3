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
/// probe-insert call uses libkmod's API with kmod-sys's types directly.
///
/// libkmod is opened with dlopen when a load is actually needed, not linked:
/// linking it maps libkmod, libcrypto, libzstd and liblzma into every run,
/// which tripled start-up time and doubled the watchdog's resident memory
/// (measured: `--version` 1.6 ms vs 0.7 ms, watch VmHWM 4.0 MiB vs 2.2 MiB),
/// while the module is present on nearly every run.
#[allow(unsafe_code)]
mod ffi {
    use super::LoadError;
    use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
    use std::io;
    use std::ptr;

    use kmod_sys as k;
    use nix::libc;

    const PROBE_APPLY_BLACKLIST: u32 = 0x20000;
    const LIBKMOD: &CStr = c"libkmod.so.2";

    type KmodNew = unsafe extern "C" fn(*const c_char, *const *const c_char) -> *mut k::kmod_ctx;
    type KmodUnref = unsafe extern "C" fn(*mut k::kmod_ctx) -> *mut k::kmod_ctx;
    type ModuleNewFromName =
        unsafe extern "C" fn(*mut k::kmod_ctx, *const c_char, *mut *mut k::kmod_module) -> c_int;
    type ModuleUnref = unsafe extern "C" fn(*mut k::kmod_module) -> *mut k::kmod_module;
    // The two callbacks are passed as NULL, so they are typed as plain pointers.
    type ProbeInsert = unsafe extern "C" fn(
        *mut k::kmod_module,
        c_uint,
        *const c_char,
        *const c_void,
        *const c_void,
        *const c_void,
    ) -> c_int;

    /// Resolve one symbol, as a function pointer of type `T`.
    ///
    /// SAFETY: the caller names a libkmod function whose C prototype matches `T`.
    unsafe fn sym<T: Copy>(lib: *mut c_void, name: &CStr) -> Result<T, io::Error> {
        let p = libc::dlsym(lib, name.as_ptr());
        if p.is_null() {
            return Err(io::Error::other(format!(
                "libkmod lacks {}",
                name.to_string_lossy()
            )));
        }
        Ok(std::mem::transmute_copy::<*mut c_void, T>(&p))
    }

    pub fn probe_insert(name: &str, options: &str) -> Result<(), LoadError> {
        let failed = |source: io::Error| LoadError::Failed {
            name: name.to_string(),
            source,
        };
        let c_name = CString::new(name).map_err(|e| failed(io::Error::other(e)))?;
        let c_opts = CString::new(options).map_err(|e| failed(io::Error::other(e)))?;
        // SAFETY: the library handle stays open for the whole call (it is
        // never closed: a process loads at most one module). The function
        // types match libkmod.h. kmod_new with NULL dirname/config uses the
        // defaults (/lib/modules/`uname -r`, /etc/modprobe.d ...). Every object
        // created here is unreferenced before returning, on every path.
        unsafe {
            let lib = libc::dlopen(LIBKMOD.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if lib.is_null() {
                let why = CStr::from_ptr(libc::dlerror())
                    .to_string_lossy()
                    .into_owned();
                return Err(failed(io::Error::other(format!(
                    "cannot open libkmod: {why}"
                ))));
            }
            let kmod_new: KmodNew = sym(lib, c"kmod_new").map_err(failed)?;
            let kmod_unref: KmodUnref = sym(lib, c"kmod_unref").map_err(failed)?;
            let new_from_name: ModuleNewFromName =
                sym(lib, c"kmod_module_new_from_name").map_err(failed)?;
            let module_unref: ModuleUnref = sym(lib, c"kmod_module_unref").map_err(failed)?;
            let probe: ProbeInsert =
                sym(lib, c"kmod_module_probe_insert_module").map_err(failed)?;

            let ctx = kmod_new(ptr::null(), ptr::null());
            if ctx.is_null() {
                return Err(failed(io::Error::other("kmod_new failed")));
            }
            let mut module: *mut k::kmod_module = ptr::null_mut();
            let rc = new_from_name(ctx, c_name.as_ptr(), &mut module);
            if rc < 0 || module.is_null() {
                kmod_unref(ctx);
                return Err(failed(io::Error::from_raw_os_error(-rc)));
            }
            let rc = probe(
                module,
                PROBE_APPLY_BLACKLIST,
                c_opts.as_ptr(),
                ptr::null(),
                ptr::null(),
                ptr::null(),
            );
            module_unref(module);
            kmod_unref(ctx);
            match rc {
                0 => Ok(()),
                r if r == PROBE_APPLY_BLACKLIST as i32 => {
                    Err(LoadError::Blacklisted(name.to_string()))
                }
                r if r > 0 => Err(failed(io::Error::other(format!("libkmod returned {r}")))),
                r => {
                    let e = io::Error::from_raw_os_error(-r);
                    if matches!(-r, libc::EPERM | libc::EACCES) {
                        Err(LoadError::Permission(name.to_string()))
                    } else {
                        Err(failed(e))
                    }
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn libkmod_symbols_resolve() {
            // The real library, the real symbols: a typo here would only
            // show at boot otherwise.
            unsafe {
                let lib = super::libc::dlopen(super::LIBKMOD.as_ptr(), super::libc::RTLD_NOW);
                assert!(!lib.is_null(), "libkmod.so.2 must be installed (libkmod2)");
                for s in [
                    c"kmod_new",
                    c"kmod_unref",
                    c"kmod_module_new_from_name",
                    c"kmod_module_unref",
                    c"kmod_module_probe_insert_module",
                ] {
                    assert!(super::sym::<*mut super::c_void>(lib, s).is_ok(), "{s:?}");
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
