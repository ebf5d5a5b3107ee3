// SPDX-License-Identifier: MIT OR Apache-2.0
//! The one type that owns every path under /proc, /sys and /etc.
//!
//! Everything the tool reads from or writes to the kernel goes through
//! [`SysRoot`], which joins a relative path onto a base directory. The base is
//! `/` in production and the value of `CONNTRACK_GUARD_ROOT` in tests, so a
//! test can hand the tool a fake tree and compare it afterwards. No file
//! handle is kept across calls: the watchdog re-opens files every sample, so a
//! module that goes away and comes back is seen as such.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The environment variable that moves the root (the testing hook).
pub const ROOT_ENV: &str = "CONNTRACK_GUARD_ROOT";

/// Directory of the conntrack sysctls, relative to the root.
pub const NETFILTER_DIR: &str = "proc/sys/net/netfilter";
/// The per-CPU statistics file, relative to the root.
pub const STAT_FILE: &str = "proc/net/stat/nf_conntrack";
/// The module parameter that sizes the hash table (fallback for buckets).
pub const HASHSIZE_PARAM: &str = "sys/module/nf_conntrack/parameters/hashsize";
/// Default configuration file, relative to the root.
pub const DEFAULT_CONFIG: &str = "etc/conntrack-guard/conntrack-guard.toml";

/// An I/O error together with the path it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct PathError {
    /// The full path (root included).
    pub path: PathBuf,
    /// What went wrong.
    #[source]
    pub source: io::Error,
}

impl PathError {
    /// For `map_err`: an I/O error on `path`, with the path.
    pub fn on(path: &Path) -> impl Fn(io::Error) -> PathError + Copy + '_ {
        move |source| PathError {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The errno of the cause, if any.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// A base directory that stands for `/`.
#[derive(Debug, Clone)]
pub struct SysRoot {
    base: PathBuf,
}

impl SysRoot {
    /// The real root, `/`.
    pub fn host() -> Self {
        SysRoot::at("/")
    }

    /// A root at `base`. Whether the kernel beyond these files may be
    /// asked is the [`crate::host::Host`]'s to decide, not the root's.
    pub fn at(base: impl Into<PathBuf>) -> Self {
        SysRoot { base: base.into() }
    }

    /// True when this process may change kernel settings: euid 0, or
    /// CAP_NET_ADMIN / CAP_SYS_MODULE in the effective set (the boot unit
    /// runs as a dynamic user with those capabilities). Read from
    /// `proc/self/status` under the root, so a test root decides it too.
    pub fn privileged(&self) -> bool {
        const CAP_NET_ADMIN: u32 = 12;
        const CAP_SYS_MODULE: u32 = 16;
        let caps = || self.cap_eff().unwrap_or(0);
        nix::unistd::geteuid().is_root() || caps() & (1 << CAP_NET_ADMIN | 1 << CAP_SYS_MODULE) != 0
    }

    /// Join a path that is relative to `/` onto the base.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.base.join(rel.trim_start_matches('/'))
    }

    /// The file behind a dotted sysctl key. The key must already be validated
    /// (see [`crate::config::valid_sysctl_key`]); this only maps dots to slashes.
    pub fn sysctl_path(&self, key: &str) -> PathBuf {
        let mut p = self.path("proc/sys");
        p.extend(key.split('.'));
        p
    }

    /// Read a whole file as a string.
    pub fn read(&self, rel: &str) -> Result<String, PathError> {
        read_path(&self.path(rel))
    }

    /// Read a file, mapping "does not exist" to `None`.
    pub fn read_opt(&self, rel: &str) -> Result<Option<String>, PathError> {
        read_opt_path(&self.path(rel))
    }

    /// A file's text, `None` when it is absent or cannot be read (for
    /// callers to whom the reason makes no difference).
    pub fn read_some(&self, rel: &str) -> Option<String> {
        self.read_opt(rel).ok().flatten()
    }

    /// This process's effective capability mask, from `proc/self/status`
    /// under the root (so a test root decides it too).
    pub fn cap_eff(&self) -> Option<u64> {
        let status = self.read_some("proc/self/status")?;
        let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
        u64::from_str_radix(hex.trim(), 16).ok()
    }

    /// Write `rel` atomically ([`write_atomic`]), creating its directory
    /// when missing with mode 0755 less the umask: never group- or
    /// world-writable, even under umask 0 (the state directories under
    /// /run and /var/lib are written only by root).
    pub fn write_file(&self, rel: &str, contents: &[u8]) -> Result<(), PathError> {
        let path = self.path(rel);
        // The directory is there on every write but the first: made only
        // when the write finds it missing.
        match (write_atomic(&path, contents), path.parent()) {
            (Err(e), Some(dir)) if e.source.kind() == io::ErrorKind::NotFound => {
                let made = fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(dir);
                made.map_err(PathError::on(dir))?;
                write_atomic(&path, contents)
            }
            (written, _) => written,
        }
    }

    /// Whether a path exists under the root.
    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    /// Read a sysctl by dotted key, trimmed; `None` if it does not exist.
    /// This is the sampling hot path, so it does not resolve the path: keys
    /// are validated lexically at config load, and [`Self::check_sysctl`]
    /// guards every key that comes from the config before first use.
    pub fn read_sysctl(&self, key: &str) -> Result<Option<String>, PathError> {
        Ok(read_opt_path(&self.sysctl_path(key))?.map(|s| s.trim().to_string()))
    }

    /// Refuse a key whose file is a symlink or resolves outside
    /// `<root>/proc/sys`.
    pub fn check_sysctl(&self, key: &str) -> Result<(), PathError> {
        self.check_inside_proc_sys(&self.sysctl_path(key))
    }

    /// Write a sysctl by dotted key. Refuses to follow a symlink or to leave
    /// `proc/sys`, so a hostile key or tree cannot redirect the write.
    pub fn write_sysctl(&self, key: &str, value: &str) -> Result<(), PathError> {
        let path = self.sysctl_path(key);
        self.check_inside_proc_sys(&path)?;
        write_nofollow(&path, value)
    }

    /// Write a file under the root (module parameters), without following a
    /// symlink in the last component.
    pub fn write(&self, rel: &str, value: &str) -> Result<(), PathError> {
        write_nofollow(&self.path(rel), value)
    }

    /// The directory that holds `path` must resolve inside `<root>/proc/sys`.
    fn check_inside_proc_sys(&self, path: &Path) -> Result<(), PathError> {
        let top = self.path("proc/sys");
        let refuse = |why: &str| {
            let source = io::Error::new(io::ErrorKind::PermissionDenied, why);
            Err(PathError::on(path)(source))
        };
        // procfs has no symlinks under /proc/sys; one there is an attack or a
        // broken tree, and following it could read or write anything.
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            return refuse("is a symlink; refusing to follow it out of /proc/sys");
        }
        let parent = path.parent().unwrap_or(&top);
        // A missing directory is not an escape; the read or write reports it.
        match (top.canonicalize(), parent.canonicalize()) {
            (Ok(top), Ok(parent)) if !parent.starts_with(&top) => {
                refuse("resolves outside /proc/sys; refusing")
            }
            _ => Ok(()),
        }
    }
}

/// Read a file into a string, with the path in the error.
pub fn read_path(path: &Path) -> Result<String, PathError> {
    // procfs files report size 0, so File::read_to_string's size probe
    // (statx, lseek) is wasted and its first read is tiny. Reading through
    // `take` skips the probe; 1 KiB holds every sysctl and a small stat
    // file in one read. Not larger: sysctl reads allocate a zeroed kernel
    // buffer of the requested size.
    let mut s = String::with_capacity(1024);
    File::open(path)
        .and_then(|mut f| Read::by_ref(&mut f).take(u64::MAX).read_to_string(&mut s))
        .map_err(PathError::on(path))?;
    Ok(s)
}

/// Like [`read_path`], but "not found" is `Ok(None)`.
pub fn read_opt_path(path: &Path) -> Result<Option<String>, PathError> {
    match read_path(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_nofollow(path: &Path, value: &str) -> Result<(), PathError> {
    let err = PathError::on(path);
    // No O_CREAT: a sysctl that does not exist must fail, not be created in a
    // fake tree. O_NOFOLLOW: the last component must not be a symlink.
    // O_TRUNC is what sysctl(8) uses; procfs ignores it, a fake tree needs it.
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(err)?;
    // procfs takes a sysctl in a single write; a trailing newline is what
    // sysctl(8) sends too.
    f.write_all(format!("{value}\n").as_bytes()).map_err(err)
}

/// Write `contents` to `path` atomically: a temporary file in the same
/// directory, then rename, so a reader never sees half a file.
///
/// The directory may be writable by others (node_exporter's textfile
/// directory often is group-writable), so the temporary name is not
/// guessable and the file is created with O_CREAT|O_EXCL|O_NOFOLLOW: a
/// symlink or file planted at that name is never followed or reused.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), PathError> {
    let err = PathError::on(path);
    let parent = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = parent.unwrap_or(Path::new("."));
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    let (tmp, mut f) = (0..16)
        .map(|_| {
            let mut n = name.clone();
            n.push(format!(".{:016x}.tmp", random_u64()));
            let tmp = dir.join(n);
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&tmp)
                .map(|f| (tmp, f))
        })
        .find(|r| !matches!(r, Err(e) if e.kind() == io::ErrorKind::AlreadyExists))
        .unwrap_or_else(|| {
            Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "no free temporary name after 16 tries",
            ))
        })
        .map_err(err)?;
    let result = (|| {
        // The unit's UMask would leave the file 0600; node_exporter runs as
        // another user and must be able to read it.
        f.set_permissions(fs::Permissions::from_mode(0o644))?;
        f.write_all(contents)?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// 64 random bits for temporary names (`create_new` refuses a taken one):
/// std's hasher keys come from getrandom once per process and change with
/// every `RandomState`; the clock is mixed in. No file is opened for it.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    h.write_u128(now.map_or(0, |d| d.as_nanos()));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_file_makes_its_directories_0755_under_umask_0() {
        use nix::sys::stat::{umask, Mode};
        let t = tempfile::tempdir().unwrap();
        let root = SysRoot::at(t.path());
        let old = umask(Mode::empty());
        let written = root.write_file("run/conntrack-guard/x", b"1\n");
        umask(old);
        written.unwrap();
        for d in ["run", "run/conntrack-guard"] {
            let mode = fs::metadata(t.path().join(d)).unwrap().permissions().mode();
            assert_eq!(mode & 0o7777, 0o755, "{d}");
        }
    }
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn planted_symlink_at_the_old_temp_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("conntrack.prom");
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious\n").unwrap();
        // The name the old code used, predictable from the pid.
        let planted = dir
            .path()
            .join(format!(".conntrack.prom.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        write_atomic(&target, b"a 1\n").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        let meta = fs::symlink_metadata(&target).unwrap();
        assert!(meta.file_type().is_file(), "the target is a plain file");
        assert_eq!(meta.mode() & 0o7777, 0o644);
        assert_eq!(fs::read_to_string(&target).unwrap(), "a 1\n");
        // Only the planted link is left beside it: no temp file lingers.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn temp_names_differ() {
        assert_ne!(random_u64(), random_u64());
    }
}
