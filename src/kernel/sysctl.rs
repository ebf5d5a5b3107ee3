// SPDX-License-Identifier: MIT OR Apache-2.0
//! Readers of single kernel values used by several commands: a sysctl as
//! text or number (the bucket count falling back to the module parameter),
//! the fill (count and max) and the RAM. Thin: each is one read through
//! [`SysRoot`] and a parse of the text. The kernel's rounding of what is
//! written sits beside them in [`super::hashsize`].

use std::path::PathBuf;

use crate::config::{KEY_BUCKETS, KEY_COUNT, KEY_MAX};
use crate::sysroot::{PathError, SysRoot, HASHSIZE_PARAM};

/// Why a numeric sysctl could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    /// The key does not exist: nf_conntrack is not loaded (or gone), or
    /// this kernel has no such key.
    #[error("{} does not exist (nf_conntrack not loaded?)", .0.display())]
    Absent(PathBuf),
    /// It exists but could not be read.
    #[error(transparent)]
    Io(#[from] PathError),
    /// It held something that is not a number.
    #[error("{}: {value:?} is not a number", path.display())]
    NotNumber {
        /// The file.
        path: PathBuf,
        /// What it held (at most 40 characters).
        value: String,
    },
}

/// A numeric sysctl of the reader's namespace (sysctl files resolve
/// against the opening thread's netns).
pub fn read_u64(root: &SysRoot, key: &str) -> Result<u64, SysctlError> {
    let v = root
        .read_sysctl(key)?
        .ok_or_else(|| SysctlError::Absent(root.sysctl_path(key)))?;
    v.parse().map_err(|_| SysctlError::NotNumber {
        path: root.sysctl_path(key),
        value: v.chars().take(40).collect(),
    })
}

/// Count and max, both re-read every time (max can change). A max of 0
/// is returned as read: the fill's judges say what it means.
pub fn read_fill(root: &SysRoot) -> Result<(u64, u64), SysctlError> {
    Ok((read_u64(root, KEY_COUNT)?, read_u64(root, KEY_MAX)?))
}

/// Whether the value read back means the same as the target: the kernel
/// prints multi-value sysctls with tabs where we wrote spaces.
pub fn same_value(actual: &str, target: &str) -> bool {
    actual.split_whitespace().eq(target.split_whitespace())
}

/// A value on one line: its words joined by single spaces.
pub fn compact(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// MemTotal in bytes, from /proc/meminfo.
pub fn ram_bytes(root: &SysRoot) -> Option<u64> {
    parse_memtotal(&root.read_some("proc/meminfo")?)
}

/// Parse MemTotal (kB) out of meminfo text.
pub fn parse_memtotal(text: &str) -> Option<u64> {
    let kb = text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let kb: u64 = kb.split_whitespace().next()?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// [`read_u64`] where the reason does not matter: `None` when absent,
/// unreadable or not a number.
pub fn kernel_u64(root: &SysRoot, key: &str) -> Option<u64> {
    read_u64(root, key).ok()
}

/// The current value of a key; buckets fall back to the module parameter,
/// which sizes the same table.
pub fn read_current(root: &SysRoot, key: &str) -> Result<Option<String>, PathError> {
    match root.read_sysctl(key)? {
        None if key == KEY_BUCKETS => Ok(root.read_opt(HASHSIZE_PARAM)?.map(|s| s.trim().into())),
        v => Ok(v),
    }
}
