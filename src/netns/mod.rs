// SPDX-License-Identifier: MIT OR Apache-2.0
//! Every network namespace on the host: find them, name their owners, and
//! run a closure inside one.
//!
//! nf_conntrack_count and the conntrack counters are per network namespace,
//! while nf_conntrack_max is global and each namespace's own count is held
//! against it. A container's namespace can be full while the host's is
//! empty, so a check that looks only at its own namespace misses it.
//!
//! Discovery reads links and inodes only (`/proc/<pid>/ns/net` is a link
//! whose text is `net:[<inode>]`; bind mounts under `/run/netns` and
//! `/run/docker/netns` are stat'ed): it opens no namespace, so it holds
//! none alive. A namespace that vanishes between discovery and entering is
//! normal on a host that starts and stops containers, and is reported as
//! [`EnterError::Vanished`], not as a failure.

pub mod owner;
pub mod sample;

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use serde::Serialize;

pub use owner::{Owner, Runtime};

use crate::sysroot::SysRoot;

/// Directories where tools bind-mount namespaces to keep them alive
/// without a process: `ip netns` and Docker's sandboxes.
pub const BIND_DIRS: [&str; 2] = ["run/netns", "run/docker/netns"];

/// One network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Namespace {
    /// The nsfs inode: the number `ip netns identify`, `lsns` and the
    /// kernel's "table full in netns N" line use.
    pub inode: u64,
    /// True for the initial namespace (PID 1's).
    pub host: bool,
    /// Who made it.
    pub owner: Owner,
    /// Processes found in it (thread-group leaders).
    pub processes: usize,
    /// The lowest PID in it, if any.
    pub pid: Option<u32>,
    /// Its `ip netns` (or Docker sandbox) name, if bind-mounted.
    pub bind_name: Option<String>,
    /// The file to open to enter it: the bind mount when there is one (it
    /// outlives processes), else `/proc/<pid>/ns/net`. Root included.
    pub enter: PathBuf,
}

/// The inode in the text of a `/proc/<pid>/ns/net` link: `net:[4026531840]`.
pub fn parse_ns_link(text: &str) -> Option<u64> {
    text.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// The netns inode of `proc/<pid>` under the root, via the link text.
fn link_inode(root: &SysRoot, pid: &str) -> io::Result<u64> {
    let t = std::fs::read_link(root.path(&format!("proc/{pid}/ns/net")))?;
    parse_ns_link(&t.to_string_lossy())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a net namespace link"))
}

/// What a scan saw besides the namespaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanStats {
    /// Processes looked at.
    pub processes: usize,
    /// Processes whose namespace could not be read (EACCES: another user's
    /// process without CAP_SYS_PTRACE, or hidepid).
    pub unreadable: usize,
}

/// Every network namespace visible under the root, the initial one first,
/// then by inode. Never fails: what cannot be read is left out and counted
/// in the stats.
pub fn scan(root: &SysRoot) -> Vec<Namespace> {
    scan_with_stats(root).0
}

#[derive(Default)]
struct Found {
    pid: Option<u32>,
    processes: usize,
    bind: Option<(String, PathBuf)>,
}

/// [`scan`], with the counts of what could not be read.
pub fn scan_with_stats(root: &SysRoot) -> (Vec<Namespace>, ScanStats) {
    let mut stats = ScanStats::default();
    let mut found: BTreeMap<u64, Found> = BTreeMap::new();
    // PID 1's namespace is "the host", even when this tool runs elsewhere
    // (ip netns exec); our own is the fallback when PID 1 is hidden.
    let host = link_inode(root, "1")
        .or_else(|_| link_inode(root, "self"))
        .ok();
    find_by_process(root, &mut found, &mut stats);
    find_bind_mounts(root, &mut found);
    let mut out: Vec<Namespace> = found
        .into_iter()
        .filter_map(|(inode, f)| namespace(root, inode, f, Some(inode) == host))
        .collect();
    out.sort_by_key(|n| (!n.host, n.inode));
    (out, stats)
}

/// The namespace of every process, with its lowest pid and process count.
fn find_by_process(root: &SysRoot, found: &mut BTreeMap<u64, Found>, stats: &mut ScanStats) {
    let Ok(dir) = std::fs::read_dir(root.path("proc")) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        stats.processes += 1;
        match link_inode(root, &pid.to_string()) {
            Ok(ino) => {
                let f = found.entry(ino).or_default();
                f.processes += 1;
                // readdir of /proc is not promised to be sorted.
                if f.pid.map_or(true, |p| pid < p) {
                    f.pid = Some(pid);
                }
            }
            // Exited since readdir, or a kernel thread: not an error.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ESRCH) => {}
            Err(_) => stats.unreadable += 1,
        }
    }
}

/// The first bind mount (`ip netns add`, ...) of each namespace, including
/// namespaces no process is in.
fn find_bind_mounts(root: &SysRoot, found: &mut BTreeMap<u64, Found>) {
    // A bind-mounted namespace shows the nsfs inode through stat; the file
    // under it without a mount (left by a crash) is an empty tmpfs file,
    // told apart by its device.
    let nsfs_dev = std::fs::metadata(root.path("proc/self/ns/net"))
        .ok()
        .map(|m| m.dev());
    for dir in BIND_DIRS {
        let Ok(rd) = std::fs::read_dir(root.path(dir)) else {
            continue;
        };
        for e in rd.flatten() {
            let path = e.path();
            let Ok(m) = std::fs::metadata(&path) else {
                continue;
            };
            let known = found.contains_key(&m.ino());
            if !known && nsfs_dev != Some(m.dev()) {
                continue;
            }
            let f = found.entry(m.ino()).or_default();
            if f.bind.is_none() {
                f.bind = Some((e.file_name().to_string_lossy().into_owned(), path));
            }
        }
    }
}

/// The namespace `inode` as found: entered through its bind mount, else
/// its first process; `None` when it has neither.
fn namespace(root: &SysRoot, inode: u64, f: Found, is_host: bool) -> Option<Namespace> {
    let enter = match (&f.bind, f.pid) {
        (Some((_, p)), _) => p.clone(),
        (None, Some(pid)) => root.path(&format!("proc/{pid}/ns/net")),
        (None, None) => return None,
    };
    let bind_name = f.bind.as_ref().map(|(n, _)| n.clone());
    Some(Namespace {
        inode,
        host: is_host,
        owner: owner_of(root, is_host, f.pid, bind_name.as_deref()),
        processes: f.processes,
        pid: f.pid,
        bind_name,
        enter,
    })
}

/// Name the owner: the host; else a container (cgroup path + the runtime's
/// state); else the bind-mount name; else the first process's command.
fn owner_of(root: &SysRoot, host: bool, pid: Option<u32>, bind: Option<&str>) -> Owner {
    if host {
        return Owner {
            runtime: Runtime::Host,
            id: None,
            name: None,
        };
    }
    let read =
        |what: &str| pid.and_then(|p| root.read_opt(&format!("proc/{p}/{what}")).ok().flatten());
    if let Some(c) = read("cgroup").and_then(|t| owner::parse_cgroup(&t)) {
        return Owner {
            name: owner::container_name(root, &c),
            runtime: c.runtime,
            id: Some(c.id),
        };
    }
    if let Some(b) = bind {
        return Owner {
            runtime: Runtime::Netns,
            id: None,
            name: Some(b.to_string()),
        };
    }
    Owner {
        runtime: Runtime::Process,
        id: None,
        name: read("comm").map(|c| c.trim().to_string()),
    }
}

/// Why a closure could not run inside a namespace.
#[derive(Debug, thiserror::Error)]
pub enum EnterError {
    /// The namespace is gone (its last process exited, or the bind mount
    /// was removed) or the PID now belongs to another one.
    #[error("netns {inode} vanished")]
    Vanished {
        /// The inode looked for.
        inode: u64,
    },
    /// Opening the namespace file failed.
    #[error("{}: {source}{}", path.display(), hint(source))]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// setns(2) failed.
    #[error("setns into netns {inode}: {source}{}", hint(source))]
    Setns {
        /// The namespace.
        inode: u64,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The worker thread could not be started or panicked.
    #[error("netns worker thread: {0}")]
    Thread(String),
}

/// The drop-in that grants the watchdog service what entering every
/// namespace needs (installed from packaging/conntrack-guard-allns.conf).
pub const ALLNS_DROPIN: &str = "/usr/share/conntrack-guard/conntrack-guard-allns.conf";

impl EnterError {
    /// The capability whose lack caused this error, if that is the cause:
    /// setns(2) into a namespace of the initial user namespace answers
    /// EPERM without CAP_SYS_ADMIN; opening another user's
    /// `/proc/PID/ns/net` (a ptrace read check) answers EACCES without
    /// CAP_SYS_PTRACE.
    pub fn missing_capability(&self) -> Option<&'static str> {
        match self {
            EnterError::Setns { source, .. } | EnterError::Open { source, .. } => {
                missing_capability(source)
            }
            _ => None,
        }
    }
}

/// The capability setns(2) into another network namespace needs.
pub const CAP_SYS_ADMIN_NAME: &str = "CAP_SYS_ADMIN";

/// Whether this process lacks CAP_SYS_ADMIN in its effective set, from
/// `proc/self/status` under the root: without it no other network
/// namespace can be entered, whoever owns it (root included, e.g. under
/// `capsh --drop=cap_sys_admin`). `None` when the set cannot be read (then
/// the setns errors themselves tell).
pub fn lacks_sys_admin(root: &SysRoot) -> Option<bool> {
    const CAP_SYS_ADMIN: u32 = 21;
    let status = root.read_opt("proc/self/status").ok().flatten()?;
    let caps = crate::sysroot::parse_cap_eff(&status)?;
    Some(caps & (1 << CAP_SYS_ADMIN) == 0)
}

fn missing_capability(e: &io::Error) -> Option<&'static str> {
    match e.raw_os_error() {
        Some(nix::libc::EPERM) => Some(CAP_SYS_ADMIN_NAME),
        Some(nix::libc::EACCES) => Some("CAP_SYS_PTRACE"),
        _ => None,
    }
}

fn hint(e: &io::Error) -> &'static str {
    match missing_capability(e) {
        Some("CAP_SYS_ADMIN") => {
            " (needs CAP_SYS_ADMIN; under systemd also RestrictNamespaces=net)"
        }
        Some(_) => " (needs CAP_SYS_PTRACE for another user's process)",
        None => "",
    }
}

/// Move the calling thread into `ns`. Only ever called on a worker
/// thread of [`enter`] or [`enter_each`]. The file is opened, checked to be
/// this inode (a PID can be reused), handed to setns(2) and closed, so the
/// namespace is held only while the thread is inside it.
fn setns_here(ns: &Namespace) -> Result<(), EnterError> {
    let (path, inode) = (&ns.enter, ns.inode);
    let file = File::open(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound
            || source.raw_os_error() == Some(nix::libc::ESRCH)
        {
            EnterError::Vanished { inode }
        } else {
            EnterError::Open {
                path: path.clone(),
                source,
            }
        }
    })?;
    match file.metadata() {
        Ok(m) if m.ino() == inode => {}
        _ => return Err(EnterError::Vanished { inode }),
    }
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| EnterError::Setns {
        inode,
        source: io::Error::from(e),
    })
}

/// Run `f` inside the namespace, on a dedicated thread that exits
/// afterwards: the process's other threads never change namespace, and
/// nothing has to switch back (the guard is the thread's end).
///
/// Inside, `/proc/net` still shows the main thread's namespace (it is
/// `/proc/self/net`, and self is the thread-group leader): read
/// `/proc/thread-self/net`. A socket made inside belongs to the namespace.
pub fn enter<T: Send + 'static>(
    ns: &Namespace,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, EnterError> {
    let mut once = Some(f);
    let mut out = enter_each(vec![ns.clone()], move |_| once.take().map(|f| f()))?;
    match out.pop() {
        Some(Ok(Some(v))) => Ok(v),
        Some(Err(e)) => Err(e),
        _ => Err(EnterError::Thread("no result".into())),
    }
}

/// Run `f` inside each namespace in turn, on one dedicated thread that
/// hops from namespace to namespace and exits at the end. One thread for
/// all of them, not one each: on a loaded machine every thread start and
/// join waits for the scheduler (measured: 200 namespaces took 210 ms with
/// a thread each, most of it waiting). Each setns(2) is absolute, so a
/// failed one leaves nothing to undo: `f` runs only after a successful one.
pub fn enter_each<T: Send + 'static>(
    namespaces: Vec<Namespace>,
    mut f: impl FnMut(&Namespace) -> T + Send + 'static,
) -> Result<Vec<Result<T, EnterError>>, EnterError> {
    let worker = std::thread::Builder::new()
        .name("netns".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            namespaces
                .iter()
                .map(|ns| setns_here(ns).map(|()| f(ns)))
                .collect::<Vec<_>>()
        })
        .map_err(|e| EnterError::Thread(e.to_string()))?;
    worker
        .join()
        .map_err(|_| EnterError::Thread("panicked".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_links() {
        assert_eq!(parse_ns_link("net:[4026531840]"), Some(4026531840));
        assert_eq!(parse_ns_link("mnt:[4026531840]"), None);
        assert_eq!(parse_ns_link("net:[x]"), None);
        assert_eq!(parse_ns_link("net:[4026531840"), None);
    }
}
