// SPDX-License-Identifier: MIT OR Apache-2.0
//! Run a closure inside another network namespace without moving the
//! calling thread: a short-lived scoped thread opens nothing itself, joins
//! the namespace with `setns(CLONE_NEWNET)`, runs the closure and ends. The
//! namespace leaves with the thread, so the main thread (and the watchdog's
//! sampling thread) never changes namespace, whatever the closure does.
//!
//! Inside the thread, a netlink socket belongs to the joined namespace
//! (sockets take the creating task's netns), and `/proc/sys/net/...` shows
//! the joined namespace too: sysctl files resolve against the opening
//! task's netns, unlike `/proc/net`, which follows the thread-group leader.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};

/// Why a namespace could not be entered.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The path could not be opened.
    #[error("{}: {source}", path.display())]
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
    /// EPERM: entering needs CAP_SYS_ADMIN (root).
    #[error("{}: entering a network namespace needs root (CAP_SYS_ADMIN): {source}", path.display())]
    Permission {
        /// The path given.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Any other setns failure, or the thread could not be started.
    #[error("{}: cannot enter the network namespace: {source}", path.display())]
    Other {
        /// The path given.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Run `f` in the network namespace at `path` (on a scoped thread) and
/// return its result.
pub fn run_in<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    let file = File::open(path).map_err(|source| match source.kind() {
        io::ErrorKind::PermissionDenied => NetnsError::Permission {
            path: path.to_owned(),
            source,
        },
        _ => NetnsError::Open {
            path: path.to_owned(),
            source,
        },
    })?;
    std::thread::scope(|s| {
        let h = std::thread::Builder::new()
            .name("ctg-netns".into())
            .spawn_scoped(s, move || {
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| match e {
                    nix::errno::Errno::EINVAL => NetnsError::NotNetns {
                        path: path.to_owned(),
                    },
                    nix::errno::Errno::EPERM => NetnsError::Permission {
                        path: path.to_owned(),
                        source: e.into(),
                    },
                    other => NetnsError::Other {
                        path: path.to_owned(),
                        source: other.into(),
                    },
                })?;
                drop(file);
                Ok(f())
            })
            .map_err(|source| NetnsError::Other {
                path: path.to_owned(),
                source,
            })?;
        match h.join() {
            Ok(r) => r,
            // Panics abort in release; in tests, carry them to the caller.
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}
