// SPDX-License-Identifier: MIT OR Apache-2.0
//! Readers of kernel counters, each a thin read through [`SysRoot`] plus a
//! parser that takes `&str` (or bytes, for netlink).
//!
//! - [`percpu`]: the per-CPU table, totals and wrap-safe deltas every
//!   per-CPU source shares;
//! - [`ctstats`]: the conntrack statistics by name, from ctnetlink or
//!   `/proc/net/stat/nf_conntrack`, with the source handed in by the caller;
//! - [`snmp`]: UDP socket drops from `/proc/net/snmp` and `/proc/net/snmp6`
//!   (per network namespace);
//! - [`softnet`]: input backlog drops from `/proc/net/softnet_stat` (global);
//! - [`sysctl`]: one numeric sysctl reader (the fill among them), with the
//!   kernel's rounding of the hash size in [`hashsize`].

use std::path::PathBuf;

use crate::sysroot::{PathError, SysRoot};

pub mod ctcounter;
pub mod ctdump;
pub mod ctstats;
pub mod facts;
pub mod hashsize;
pub mod kmsg;
pub mod module;
pub mod netlink;
pub mod nfnl;
pub mod nsenter;
pub mod percpu;
pub mod slab;
pub mod snmp;
pub mod softnet;
pub mod sysctl;

// Bytes per entry live in `slab`, one figure for every command.
pub use slab::entry_bytes;
pub use sysctl::{kernel_u64, parse_memtotal, ram_bytes, read_current, read_u64, same_value};

/// Why a kernel file could not be turned into values.
#[derive(Debug, thiserror::Error)]
pub enum FileError<E: std::error::Error + 'static> {
    /// The file does not exist (feature compiled out, IPv6 disabled, ...).
    #[error("{} does not exist", .0.display())]
    Absent(PathBuf),
    /// It exists but could not be read.
    #[error(transparent)]
    Io(#[from] PathError),
    /// It was read but not understood.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The full path.
        path: PathBuf,
        /// What was wrong with it.
        #[source]
        source: E,
    },
}

/// Read `rel` under `root` and parse it, with the path in every error.
pub(crate) fn read_parse<T, E: std::error::Error + 'static>(
    root: &SysRoot,
    rel: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, FileError<E>> {
    let text = root
        .read_opt(rel)?
        .ok_or_else(|| FileError::Absent(root.path(rel)))?;
    parse(&text).map_err(|source| FileError::Parse {
        path: root.path(rel),
        source,
    })
}
