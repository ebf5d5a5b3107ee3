// SPDX-License-Identifier: MIT OR Apache-2.0
//! Entering a network namespace: the one `setns(CLONE_NEWNET)` call site,
//! used by `top --netns`, `status --all-netns`, `apply` and the watchdog's
//! namespace sampling.
//!
//! The calling thread never moves: a dedicated scoped thread joins each
//! namespace in turn, runs the closure there and ends, so the namespace
//! leaves with the thread (the guard is the thread's end) and the main and
//! sampling threads stay where they were, whatever the closure does. One
//! thread for all namespaces, not one each: on a loaded machine every
//! thread start and join waits for the scheduler (measured: 200 namespaces
//! took 210 ms with a thread each, most of it waiting). Each setns(2) is
//! absolute, so a failed one leaves nothing to undo: the closure runs only
//! after a successful one.
//!
//! Inside, a netlink socket belongs to the joined namespace (sockets take
//! the creating task's netns), and `/proc/sys/net/...` shows it too (sysctl
//! files resolve against the opening task's netns); `/proc/net` is
//! `/proc/self/net`, the thread-group leader's: read `/proc/thread-self/net`.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};

/// Why a namespace could not be entered.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace is gone (its last process exited, or the bind mount
    /// was removed) or the PID now belongs to another one.
    #[error("netns {inode} vanished")]
    Vanished {
        /// The inode looked for.
        inode: u64,
    },
    /// The file could not be opened.
    #[error("{}: {source}{}", path.display(), hint(source))]
    Open {
        /// The path given.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file is not a network namespace (EINVAL from setns).
    #[error("{} is not a network namespace (expected /run/netns/NAME, /proc/PID/ns/net or /run/docker/netns/ID)", path.display())]
    NotNetns {
        /// The path given.
        path: PathBuf,
    },
    /// setns(2) failed otherwise.
    #[error("{}: cannot enter the network namespace: {source}{}", path.display(), hint(source))]
    Setns {
        /// The path given.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The worker thread could not be started.
    #[error("netns worker thread: {0}")]
    Thread(#[source] io::Error),
}

impl NetnsError {
    /// The capability whose lack caused this error, if that is the cause:
    /// setns(2) into a namespace of the initial user namespace answers
    /// EPERM without CAP_SYS_ADMIN; opening another user's
    /// `/proc/PID/ns/net` (a ptrace read check) answers EACCES without
    /// CAP_SYS_PTRACE.
    pub fn missing_capability(&self) -> Option<&'static str> {
        match self {
            NetnsError::Setns { source, .. } | NetnsError::Open { source, .. } => {
                missing_capability(source)
            }
            _ => None,
        }
    }
}

fn missing_capability(e: &io::Error) -> Option<&'static str> {
    match e.raw_os_error() {
        Some(nix::libc::EPERM) => Some("CAP_SYS_ADMIN"),
        Some(nix::libc::EACCES) => Some("CAP_SYS_PTRACE"),
        _ => None,
    }
}

fn hint(e: &io::Error) -> &'static str {
    match missing_capability(e) {
        Some("CAP_SYS_ADMIN") => {
            " (entering a network namespace needs root: CAP_SYS_ADMIN; under systemd also RestrictNamespaces=net)"
        }
        Some(_) => " (needs root: CAP_SYS_PTRACE for another user's process)",
        None => "",
    }
}

/// Move the calling thread into the namespace at `path`. When `inode` is
/// given, the file must still be that namespace (a PID can be reused), and
/// a missing file means it vanished. The file is closed again, so the
/// namespace is held only while the thread is inside it.
fn setns_here(path: &Path, inode: Option<u64>) -> Result<(), NetnsError> {
    let file = File::open(path).map_err(|source| {
        match (inode, source.raw_os_error().map(Errno::from_raw)) {
            (Some(inode), Some(Errno::ENOENT | Errno::ESRCH)) => NetnsError::Vanished { inode },
            _ => NetnsError::Open {
                path: path.to_owned(),
                source,
            },
        }
    })?;
    let moved = |inode: &u64| file.metadata().map(|m| m.ino()).ok() != Some(*inode);
    if let Some(inode) = inode.filter(moved) {
        return Err(NetnsError::Vanished { inode });
    }
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| match e {
        Errno::EINVAL => NetnsError::NotNetns {
            path: path.to_owned(),
        },
        e => NetnsError::Setns {
            path: path.to_owned(),
            source: e.into(),
        },
    })
}

/// Run `f` inside the namespace of each item in turn, on one scoped thread
/// that hops from namespace to namespace and ends with the call. `target`
/// names an item's namespace file and, when known, its inode. The results
/// are in the order given; `Err` only when the thread could not start.
pub fn run_each<I: Sync, T: Send>(
    items: &[I],
    target: impl Fn(&I) -> (&Path, Option<u64>) + Sync,
    mut f: impl FnMut(&I) -> T + Send,
) -> Result<Vec<Result<T, NetnsError>>, NetnsError> {
    std::thread::scope(|s| {
        let h = std::thread::Builder::new()
            .name("ctg-netns".into())
            .stack_size(256 * 1024)
            .spawn_scoped(s, || {
                let each = |i| {
                    let (path, inode) = target(i);
                    setns_here(path, inode).map(|()| f(i))
                };
                items.iter().map(each).collect()
            })
            .map_err(NetnsError::Thread)?;
        // Panics abort in release; in tests, carry them to the caller.
        Ok(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

/// Run `f` in the network namespace at `path` (on a scoped thread) and
/// return its result.
pub fn run_in<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    let mut once = Some(f);
    let mut out = run_each(&[path], |p| (p, None), |_| once.take().map(|f| f()))?;
    match out.pop() {
        Some(Ok(Some(v))) => Ok(v),
        Some(Err(e)) => Err(e),
        // One item in, one result out: not reached.
        _ => Err(NetnsError::Thread(io::Error::other("no result"))),
    }
}
