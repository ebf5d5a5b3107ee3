// SPDX-License-Identifier: MIT OR Apache-2.0
//! Every network namespace on the host: find them and name their owners.
//! Entering one is [`crate::kernel::nsenter`]'s.
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
//! [`NetnsError::Vanished`], not as a failure.

pub mod owner;
pub mod sample;

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::Serialize;

pub use owner::{Owner, Runtime};

pub use crate::kernel::nsenter::NetnsError;
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

/// Every network namespace visible under the root, the initial one first,
/// then by inode. Never fails: what cannot be read is left out.
pub fn scan(root: &SysRoot) -> Vec<Namespace> {
    let mut cache = OWNERS.lock().ok().and_then(|mut c| c.take());
    let found = scan_with(root, cache.get_or_insert_with(OwnerCache::default));
    if let Ok(mut c) = OWNERS.lock() {
        *c = cache;
    }
    found
}

/// Owners named by earlier scans. Naming a container reads its runtime's
/// state (podman's `containers.json` lists every container), and that
/// answer holds while the namespace lives: the watchdog's periodic scan
/// reads it once per namespace, not once per namespace per scan. Keyed by
/// inode, lowest pid and bind name, so a reused inode (another namespace)
/// is named afresh; holds only the namespaces of the last scan.
#[derive(Debug, Default)]
pub struct OwnerCache {
    root: PathBuf,
    owners: Vec<(OwnerKey, Owner)>,
}

/// A namespace as the cache knows it: inode, lowest pid, bind name.
type OwnerKey = (u64, Option<u32>, Option<String>);

/// The cache behind [`scan`]. It lives here, not with the caller, because
/// the watchdog scans on a fresh thread each time.
static OWNERS: Mutex<Option<OwnerCache>> = Mutex::new(None);

#[derive(Default)]
struct Found {
    pid: Option<u32>,
    processes: usize,
    bind: Option<(String, PathBuf)>,
}

/// [`scan`], naming owners through `cache`.
pub fn scan_with(root: &SysRoot, cache: &mut OwnerCache) -> Vec<Namespace> {
    if cache.root != root.path("") {
        cache.root = root.path("");
        cache.owners.clear();
    }
    let mut named = Vec::new();
    let mut found: BTreeMap<u64, Found> = BTreeMap::new();
    // PID 1's namespace is "the host", even when this tool runs elsewhere
    // (ip netns exec); our own is the fallback when PID 1 is hidden.
    let host = link_inode(root, "1").or_else(|_| link_inode(root, "self"));
    let host = host.ok();
    find_by_process(root, &mut found);
    find_bind_mounts(root, &mut found);
    let mut out: Vec<Namespace> = found
        .into_iter()
        .filter_map(|(inode, f)| {
            let ns = namespace(root, inode, f, Some(inode) == host, &cache.owners)?;
            // A container whose name cannot be read yet (still starting)
            // is asked again next scan.
            if ns.owner.id.is_none() || ns.owner.name.is_some() {
                named.push(((inode, ns.pid, ns.bind_name.clone()), ns.owner.clone()));
            }
            Some(ns)
        })
        .collect();
    cache.owners = named;
    out.sort_by_key(|n| (!n.host, n.inode));
    out
}

/// The namespace of every process, with its lowest pid and process count.
fn find_by_process(root: &SysRoot, found: &mut BTreeMap<u64, Found>) {
    let pid = |e: std::fs::DirEntry| e.file_name().to_str()?.parse::<u32>().ok();
    let dir = std::fs::read_dir(root.path("proc")).into_iter().flatten();
    for pid in dir.flatten().filter_map(pid) {
        // Exited since readdir, a kernel thread, or unreadable (EACCES:
        // another user's process without CAP_SYS_PTRACE, or hidepid): left out.
        if let Ok(ino) = link_inode(root, &pid.to_string()) {
            let f = found.entry(ino).or_default();
            f.processes += 1;
            // readdir of /proc is not promised to be sorted.
            f.pid = Some(f.pid.map_or(pid, |p| p.min(pid)));
        }
    }
}

/// The first bind mount (`ip netns add`, ...) of each namespace, including
/// namespaces no process is in.
fn find_bind_mounts(root: &SysRoot, found: &mut BTreeMap<u64, Found>) {
    // A bind-mounted namespace shows the nsfs inode through stat; the file
    // under it without a mount (left by a crash) is an empty tmpfs file,
    // told apart by its device.
    let nsfs = std::fs::metadata(root.path("proc/self/ns/net"));
    let nsfs_dev = nsfs.ok().map(|m| m.dev());
    for dir in BIND_DIRS {
        let entries = std::fs::read_dir(root.path(dir)).into_iter().flatten();
        for e in entries.flatten() {
            let path = e.path();
            let ino = match std::fs::metadata(&path) {
                Ok(m) if found.contains_key(&m.ino()) || nsfs_dev == Some(m.dev()) => m.ino(),
                _ => continue,
            };
            let name = e.file_name().to_string_lossy().into_owned();
            let f = found.entry(ino).or_default();
            f.bind.get_or_insert((name, path));
        }
    }
}

/// The namespace `inode` as found: entered through its bind mount, else
/// its first process; `None` when it has neither.
fn namespace(
    root: &SysRoot,
    inode: u64,
    f: Found,
    is_host: bool,
    known: &[(OwnerKey, Owner)],
) -> Option<Namespace> {
    let (bind_name, enter) = match (f.bind, f.pid) {
        (Some((n, p)), _) => (Some(n), p),
        (None, Some(pid)) => (None, root.path(&format!("proc/{pid}/ns/net"))),
        (None, None) => return None,
    };
    let key: OwnerKey = (inode, f.pid, bind_name);
    let owner = match known.iter().find(|(k, _)| *k == key) {
        Some((_, o)) => o.clone(),
        None => owner_of(root, is_host, f.pid, key.2.as_deref()),
    };
    Some(Namespace {
        inode,
        host: is_host,
        owner,
        processes: f.processes,
        pid: f.pid,
        bind_name: key.2,
        enter,
    })
}

/// Name the owner: the host; else a container (cgroup path + the runtime's
/// state); else the bind-mount name; else the first process's command.
fn owner_of(root: &SysRoot, host: bool, pid: Option<u32>, bind: Option<&str>) -> Owner {
    let read = |what: &str| pid.and_then(|p| root.read_some(&format!("proc/{p}/{what}")));
    let (runtime, id, name) = if host {
        (Runtime::Host, None, None)
    } else if let Some(c) = read("cgroup").and_then(|t| owner::parse_cgroup(&t)) {
        (
            c.runtime,
            Some(c.id.clone()),
            owner::container_name(root, &c),
        )
    } else if let Some(b) = bind {
        (Runtime::Netns, None, Some(b.to_string()))
    } else {
        (
            Runtime::Process,
            None,
            read("comm").map(|c| c.trim().to_string()),
        )
    };
    Owner { runtime, id, name }
}

/// The drop-in that grants the watchdog service what entering every
/// namespace needs (installed from packaging/conntrack-guard-allns.conf).
pub const ALLNS_DROPIN: &str = "/usr/share/conntrack-guard/conntrack-guard-allns.conf";

/// The capability setns(2) into another network namespace needs.
pub const CAP_SYS_ADMIN_NAME: &str = "CAP_SYS_ADMIN";

/// Whether this process lacks CAP_SYS_ADMIN in its effective set, from
/// `proc/self/status` under the root: without it no other network
/// namespace can be entered, whoever owns it (root included, e.g. under
/// `capsh --drop=cap_sys_admin`). `None` when the set cannot be read (then
/// the setns errors themselves tell).
pub fn lacks_sys_admin(root: &SysRoot) -> Option<bool> {
    const CAP_SYS_ADMIN: u32 = 21;
    Some(root.cap_eff()? & (1 << CAP_SYS_ADMIN) == 0)
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

    #[test]
    fn owners_are_read_once_per_namespace() {
        const ID: &str = "a17c3e5f7b9d1e3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f";
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let process = |pid: u32, inode: u64, cgroup: &str| {
            let p = r.join(format!("proc/{pid}"));
            std::fs::create_dir_all(p.join("ns")).unwrap();
            std::os::unix::fs::symlink(format!("net:[{inode}]"), p.join("ns/net")).unwrap();
            std::fs::write(p.join("cgroup"), cgroup).unwrap();
        };
        let list = r.join("var/lib/containers/storage/overlay-containers");
        std::fs::create_dir_all(&list).unwrap();
        let name = |n: &str| {
            let text = format!(r#"[{{"id": "{ID}", "names": ["{n}"]}}]"#);
            std::fs::write(list.join("containers.json"), text).unwrap();
        };
        let podman = format!("0::/machine.slice/libpod-{ID}.scope\n");
        process(1, 10, "0::/init.scope\n");
        process(500, 20, &podman);
        name("web");
        let root = SysRoot::at(r);
        let mut cache = OwnerCache::default();
        let owner = |cache: &mut OwnerCache| {
            let found = scan_with(&root, cache);
            assert_eq!(found.len(), 2);
            found[1].owner.name.clone()
        };
        assert_eq!(owner(&mut cache).as_deref(), Some("web"));
        // Renamed on disk: the same namespace keeps the name read first,
        // which shows the state file was not read again.
        name("api");
        assert_eq!(owner(&mut cache).as_deref(), Some("web"));
        // Another first process (a reused inode looks the same): read again.
        std::fs::remove_dir_all(r.join("proc/500")).unwrap();
        process(600, 20, &podman);
        assert_eq!(owner(&mut cache).as_deref(), Some("api"));
        // A container whose name cannot be read yet is asked again.
        std::fs::remove_dir_all(r.join("proc/600")).unwrap();
        process(700, 20, &podman);
        std::fs::remove_file(list.join("containers.json")).unwrap();
        assert_eq!(owner(&mut cache), None);
        name("db");
        assert_eq!(owner(&mut cache).as_deref(), Some("db"));
        // Another root starts afresh.
        let other = tempfile::tempdir().unwrap();
        assert!(scan_with(&SysRoot::at(other.path()), &mut cache).is_empty());
        assert!(cache.owners.is_empty());
    }
}
