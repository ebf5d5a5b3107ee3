// SPDX-License-Identifier: MIT OR Apache-2.0
//! Readers of single kernel values used by several commands: a sysctl as
//! text or number (the bucket count falling back to the module parameter)
//! and the RAM. Thin: each is one read through [`SysRoot`] and a parse of
//! the text.

use crate::config::KEY_BUCKETS;
use crate::sysroot::{PathError, SysRoot, HASHSIZE_PARAM};

// Bytes per entry live in `slab`, one figure for every command.
pub use super::slab::{entry_bytes, DEFAULT_ENTRY_BYTES};

/// Whether the value read back means the same as the target: the kernel
/// prints multi-value sysctls with tabs where we wrote spaces.
pub fn same_value(actual: &str, target: &str) -> bool {
    actual.split_whitespace().eq(target.split_whitespace())
}

/// MemTotal in bytes, from /proc/meminfo.
pub fn ram_bytes(root: &SysRoot) -> Option<u64> {
    parse_memtotal(&root.read_opt("proc/meminfo").ok().flatten()?)
}

/// Parse MemTotal (kB) out of meminfo text.
pub fn parse_memtotal(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb.saturating_mul(1024))
}

/// A numeric sysctl, or `None` when absent or not a number.
pub fn kernel_u64(root: &SysRoot, key: &str) -> Option<u64> {
    root.read_sysctl(key).ok().flatten()?.parse().ok()
}

/// The current value of a key; buckets fall back to the module parameter,
/// which sizes the same table.
pub fn read_current(root: &SysRoot, key: &str) -> Result<Option<String>, PathError> {
    match root.read_sysctl(key)? {
        Some(v) => Ok(Some(v)),
        None if key == KEY_BUCKETS => {
            Ok(root.read_opt(HASHSIZE_PARAM)?.map(|s| s.trim().to_string()))
        }
        None => Ok(None),
    }
}
