// SPDX-License-Identifier: MIT OR Apache-2.0
//! What sizing needs to know about the running kernel: its version (the
//! 2-second rule), the current values, the bytes per entry and the page
//! size the bucket count is rounded to. Read once through the root.

use crate::config::{KEY_BUCKETS, KEY_MAX, KEY_UDP_TIMEOUT, KEY_UDP_TIMEOUT_STREAM};
use crate::kernel::{entry_bytes, hashsize, kernel_u64};
use crate::sysroot::SysRoot;

/// What plan needs to know about the running kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelFacts {
    /// (major, minor) from osrelease.
    pub version: Option<(u32, u32)>,
    /// The release string.
    pub release: Option<String>,
    /// Current nf_conntrack_max.
    pub max: Option<u64>,
    /// Current buckets.
    pub buckets: Option<u64>,
    /// Current udp timeout.
    pub udp_timeout: Option<u64>,
    /// Current udp stream timeout.
    pub udp_timeout_stream: Option<u64>,
    /// Bytes per entry.
    pub entry_bytes: u64,
    /// Page size: the kernel rounds the bucket count up to a page of
    /// pointers.
    pub page_size: u64,
}

impl KernelFacts {
    /// Read them through the root.
    pub fn read(root: &SysRoot) -> Self {
        let release = root
            .read_some("proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string());
        KernelFacts {
            version: release.as_deref().and_then(parse_version),
            release,
            max: kernel_u64(root, KEY_MAX),
            buckets: kernel_u64(root, KEY_BUCKETS),
            udp_timeout: kernel_u64(root, KEY_UDP_TIMEOUT),
            udp_timeout_stream: kernel_u64(root, KEY_UDP_TIMEOUT_STREAM),
            entry_bytes: entry_bytes(root),
            page_size: hashsize::page_size(),
        }
    }
}

/// "6.18.0-1-amd64" -> (6, 18).
pub fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}
