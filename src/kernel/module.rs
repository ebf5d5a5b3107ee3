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
use std::path::PathBuf;
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

/// Why conntrack is unavailable. Each variant keeps what it found, and a
/// failed load keeps the loader's error as its source.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The keys are absent and the kernel cannot load modules (exit 69).
    #[error(
        "conntrack unavailable: {} does not exist and {} is absent: this kernel cannot \
         load modules and {MODULE} is not built in",
        keys.display(),
        modules.display()
    )]
    NoModuleSupport {
        /// The sysctl directory that is missing.
        keys: PathBuf,
        /// The missing `/proc/modules`.
        modules: PathBuf,
    },
    /// Loading failed for a reason other than permission (exit 69).
    #[error("conntrack unavailable: {0}")]
    LoadFailed(#[source] LoadError),
    /// Loading was refused: CAP_SYS_MODULE is missing (exit 77).
    #[error("{0}")]
    LoadDenied(#[source] LoadError),
    /// The module loaded but its sysctl keys did not appear in time (exit 69).
    #[error(
        "conntrack unavailable: {MODULE} was loaded but {} did not appear within {wait:?}",
        keys.display()
    )]
    KeysMissing {
        /// The sysctl directory waited for.
        keys: PathBuf,
        /// How long it was waited for.
        wait: Duration,
    },
}

impl ModuleError {
    /// True when the cause is a missing privilege (exit 77), not a missing
    /// kernel feature (exit 69).
    pub fn is_permission(&self) -> bool {
        matches!(self, ModuleError::LoadDenied { .. })
    }
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
        return Err(ModuleError::NoModuleSupport {
            keys: root.path(NETFILTER_DIR),
            modules: root.path("proc/modules"),
        });
    }
    let options = buckets.map(|b| format!("hashsize={b}")).unwrap_or_default();
    if dry_run {
        return Ok(ModuleState::WouldLoad(options));
    }
    loader.load(MODULE, &options).map_err(|e| match e {
        LoadError::Permission(_) => ModuleError::LoadDenied(e),
        e => ModuleError::LoadFailed(e),
    })?;
    // The sysctl table is registered during module init; allow a bounded
    // wait in case it lags behind the insert returning.
    let deadline = Instant::now() + wait;
    while !keys_present(root) {
        if Instant::now() >= deadline {
            return Err(ModuleError::KeysMissing {
                keys: root.path(NETFILTER_DIR),
                wait,
            });
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
/// probe-insert call uses libkmod's C API directly.
///
/// libkmod is opened with dlopen when a load is actually needed, not linked:
/// linking it maps libkmod, libcrypto, libzstd and liblzma into every run,
/// which tripled start-up time and doubled the watchdog's resident memory
/// (measured: `--version` 1.6 ms vs 0.7 ms, watch VmHWM 4.0 MiB vs 2.2 MiB),
/// while the module is present on nearly every run. The two object types are
/// opaque to callers of libkmod, so they are declared here rather than taken
/// from a bindings crate (which would pull bindgen and libclang into the
/// build for two names).
#[allow(unsafe_code)]
#[deny(unsafe_op_in_unsafe_fn)]
mod ffi {
    use super::LoadError;
    use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
    use std::io;
    use std::ptr;

    use nix::libc;

    /// `struct kmod_ctx`, opaque: only ever handled through a pointer.
    pub enum KmodCtx {}
    /// `struct kmod_module`, opaque: only ever handled through a pointer.
    pub enum KmodModule {}

    /// KMOD_PROBE_APPLY_BLACKLIST in libkmod.h.
    const PROBE_APPLY_BLACKLIST: u32 = 0x20000;
    const LIBKMOD: &CStr = c"libkmod.so.2";

    type KmodNew = unsafe extern "C" fn(*const c_char, *const *const c_char) -> *mut KmodCtx;
    type KmodUnref = unsafe extern "C" fn(*mut KmodCtx) -> *mut KmodCtx;
    type ModuleNewFromName =
        unsafe extern "C" fn(*mut KmodCtx, *const c_char, *mut *mut KmodModule) -> c_int;
    type ModuleUnref = unsafe extern "C" fn(*mut KmodModule) -> *mut KmodModule;
    // The two callbacks are passed as NULL, so they are typed as plain pointers.
    type ProbeInsert = unsafe extern "C" fn(
        *mut KmodModule,
        c_uint,
        *const c_char,
        *const c_void,
        *const c_void,
        *const c_void,
    ) -> c_int;

    /// The last dl* error of this thread; dlerror() returns NULL when there
    /// is none, which must not reach CStr::from_ptr.
    fn dl_error() -> String {
        // SAFETY: dlerror takes no arguments; it returns NULL or a string
        // that stays valid until the next dl* call on this thread.
        let msg = unsafe { libc::dlerror() };
        if msg.is_null() {
            return "no error reported by the dynamic loader".into();
        }
        // SAFETY: non-NULL, NUL-terminated, copied before any other dl* call.
        unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned()
    }

    /// Resolve one symbol as a function pointer of type `T`.
    ///
    /// # Safety
    /// `T` must be the `unsafe extern "C" fn` type matching the C prototype
    /// of `name` in libkmod.h, and `lib` a live handle from dlopen.
    unsafe fn sym<T: Copy>(lib: *mut c_void, name: &CStr) -> io::Result<T> {
        // transmute_copy does not check sizes; a fat or odd-sized T would
        // read past the pointer.
        assert_eq!(
            std::mem::size_of::<T>(),
            std::mem::size_of::<*mut c_void>(),
            "a libkmod symbol must be read as a pointer-sized type"
        );
        // SAFETY: the caller passes a live handle; name is NUL-terminated.
        let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
        if p.is_null() {
            let (name, why) = (name.to_string_lossy(), dl_error());
            return Err(io::Error::other(format!("libkmod lacks {name}: {why}")));
        }
        // SAFETY: same size (asserted above), and the caller vouches that T
        // is the function's type.
        Ok(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
    }

    /// The five libkmod functions used. The library handle is never closed:
    /// a process loads at most one module.
    pub(super) struct Api {
        kmod_new: KmodNew,
        kmod_unref: KmodUnref,
        new_from_name: ModuleNewFromName,
        module_unref: ModuleUnref,
        probe: ProbeInsert,
    }

    impl Api {
        pub(super) fn open() -> io::Result<Api> {
            // SAFETY: a constant NUL-terminated name; libkmod has no
            // initialisers with preconditions.
            let lib = unsafe { libc::dlopen(LIBKMOD.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            if lib.is_null() {
                let why = dl_error();
                return Err(io::Error::other(format!("cannot open libkmod: {why}")));
            }
            // SAFETY (each): lib is live, and each type alias above is the
            // prototype from libkmod.h.
            Ok(Api {
                kmod_new: unsafe { sym(lib, c"kmod_new") }?,
                kmod_unref: unsafe { sym(lib, c"kmod_unref") }?,
                new_from_name: unsafe { sym(lib, c"kmod_module_new_from_name") }?,
                module_unref: unsafe { sym(lib, c"kmod_module_unref") }?,
                probe: unsafe { sym(lib, c"kmod_module_probe_insert_module") }?,
            })
        }
    }

    /// A libkmod object with its unref function, called on drop (a module
    /// before its context: declared after it).
    struct Unref<T>(*mut T, unsafe extern "C" fn(*mut T) -> *mut T);

    impl<T> Drop for Unref<T> {
        fn drop(&mut self) {
            // SAFETY: the pointer came from kmod_new or
            // kmod_module_new_from_name, paired with its own unref, and this
            // is its only unref.
            unsafe { (self.1)(self.0) };
        }
    }

    pub fn probe_insert(name: &str, options: &str) -> Result<(), LoadError> {
        let failed = |source: io::Error| LoadError::Failed {
            name: name.to_string(),
            source,
        };
        let c_name = CString::new(name).map_err(|e| failed(io::Error::other(e)))?;
        let c_opts = CString::new(options).map_err(|e| failed(io::Error::other(e)))?;
        let api = Api::open().map_err(failed)?;
        // SAFETY: NULL dirname and config select the defaults
        // (/lib/modules/`uname -r`, /etc/modprobe.d ...).
        let ctx = unsafe { (api.kmod_new)(ptr::null(), ptr::null()) };
        if ctx.is_null() {
            return Err(failed(io::Error::other("kmod_new failed")));
        }
        let ctx = Unref(ctx, api.kmod_unref);
        let mut module: *mut KmodModule = ptr::null_mut();
        // SAFETY: a live context, a NUL-terminated name, a valid out pointer.
        let rc = unsafe { (api.new_from_name)(ctx.0, c_name.as_ptr(), &mut module) };
        if rc < 0 {
            return Err(failed(io::Error::from_raw_os_error(-rc)));
        }
        if module.is_null() {
            let why = "kmod_module_new_from_name returned no module";
            return Err(failed(io::Error::other(why)));
        }
        let module = Unref(module, api.module_unref);
        // SAFETY: a live module, NUL-terminated options, NULL callbacks and
        // callback data (allowed by libkmod.h).
        let rc = unsafe {
            (api.probe)(
                module.0,
                PROBE_APPLY_BLACKLIST,
                c_opts.as_ptr(),
                ptr::null(),
                ptr::null(),
                ptr::null(),
            )
        };
        match rc {
            0 => Ok(()),
            r if r == PROBE_APPLY_BLACKLIST as i32 => Err(LoadError::Blacklisted(name.to_string())),
            r if r > 0 => Err(failed(io::Error::other(format!("libkmod returned {r}")))),
            r if matches!(-r, libc::EPERM | libc::EACCES) => {
                Err(LoadError::Permission(name.to_string()))
            }
            r => Err(failed(io::Error::from_raw_os_error(-r))),
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn libkmod_symbols_resolve() {
            // The real library, the real symbols: a typo here would only
            // show at boot otherwise. Needs libkmod2, not root.
            if let Err(e) = super::Api::open() {
                panic!("libkmod.so.2 must be installed (libkmod2): {e}");
            }
        }

        #[test]
        #[should_panic(expected = "pointer-sized")]
        fn symbol_type_must_be_pointer_sized() {
            let mut lib = 0u8;
            // SAFETY: panics on the size check before using the handle.
            let _ = unsafe { super::sym::<[usize; 2]>((&mut lib as *mut u8).cast(), c"x") };
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
            matches!(e, ModuleError::NoModuleSupport { .. })
                && e.to_string().contains("cannot load modules")
                && !e.is_permission(),
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
