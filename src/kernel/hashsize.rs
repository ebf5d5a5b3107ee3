// SPDX-License-Identifier: MIT OR Apache-2.0
//! The kernel's rounding of the conntrack hash size, and the targets as the
//! kernel will store them.
//!
//! `nf_ct_alloc_hashtable()` (net/netfilter/nf_conntrack_core.c) rounds the
//! requested bucket count **up** to a whole page of bucket pointers:
//! `roundup(size, PAGE_SIZE / sizeof(struct hlist_nulls_head))`. Every way of
//! setting it goes through that function: the `nf_conntrack_buckets` sysctl,
//! the `hashsize` module parameter written at run time, and `hashsize=` at
//! module load. So on 4 KiB pages the count is a multiple of 512 (measured on
//! 6.18: 250000 reads back 250368, 128 reads back 512), and on arm64 kernels
//! with 64 KiB pages a multiple of 8192. A target that ignores this can never
//! verify: apply would fail on every boot and the watchdog report drift
//! forever.

use crate::config::{Config, Policy, KEY_BUCKETS};

/// One kernel value a configuration sets, as the kernel will read it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelTarget {
    /// Dotted sysctl key.
    pub key: String,
    /// The value to write, and to expect back.
    pub value: String,
    /// The configured value when the kernel rounds it to `value`.
    pub requested: Option<String>,
    /// Whether a larger kernel value is kept.
    pub policy: Policy,
}

impl KernelTarget {
    /// `250000 → 250368, rounded up by the kernel`, for tables and messages.
    pub fn rounding_note(&self) -> Option<String> {
        let value = &self.value;
        let note =
            |r| format!("{r} → {value}, rounded up by the kernel to a whole page of buckets");
        self.requested.as_ref().map(note)
    }
}

/// The page size of the running system (the kernel rounds to it).
pub fn page_size() -> u64 {
    use nix::unistd::{sysconf, SysconfVar};
    let size = sysconf(SysconfVar::PAGE_SIZE).ok().flatten();
    let size = size.and_then(|v| u64::try_from(v).ok());
    size.filter(|v| *v > 0).unwrap_or(4096)
}

/// Buckets come in multiples of this: one page of bucket pointers.
pub fn granularity(page_size: u64) -> u64 {
    (page_size / std::mem::size_of::<usize>() as u64).max(1)
}

/// The bucket count the kernel stores when asked for `requested`.
pub fn kernel_buckets(requested: u64, page_size: u64) -> u64 {
    let g = granularity(page_size);
    requested.max(1).div_ceil(g).saturating_mul(g)
}

/// Every kernel value `cfg` sets, in the order apply writes them, with the
/// bucket count as the kernel will store it.
pub fn targets(cfg: &Config, page_size: u64) -> Vec<KernelTarget> {
    cfg.targets()
        .into_iter()
        .map(|t| {
            let buckets = t.value.parse().ok().filter(|_| t.key == KEY_BUCKETS);
            let rounded = buckets.map(|b| kernel_buckets(b, page_size).to_string());
            let (value, requested) = match rounded.filter(|r| *r != t.value) {
                Some(r) => (r, Some(t.value)),
                None => (t.value, None),
            };
            KernelTarget {
                key: t.key,
                value,
                requested,
                policy: t.policy,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use std::path::Path;

    #[test]
    fn rounds_up_to_a_page_of_pointers() {
        // Measured on 6.18 with 4 KiB pages.
        assert_eq!(kernel_buckets(250_000, 4096), 250_368);
        assert_eq!(kernel_buckets(128, 4096), 512);
        assert_eq!(kernel_buckets(262_144, 4096), 262_144);
        assert_eq!(kernel_buckets(512, 4096), 512);
        assert_eq!(kernel_buckets(513, 4096), 1024);
        // arm64 with 64 KiB pages.
        assert_eq!(granularity(65_536), 8192);
        assert_eq!(kernel_buckets(250_000, 65_536), 253_952);
        assert_eq!(kernel_buckets(0, 4096), 512);
        // Saturates instead of wrapping to a small number.
        assert_eq!(kernel_buckets(u64::MAX, 4096), u64::MAX);
    }

    #[test]
    fn auto_buckets_of_a_round_max_are_rounded() {
        let cfg = parse("[conntrack]\nmax = 1000000\n", Path::new("t.toml")).unwrap();
        let t = targets(&cfg, 4096);
        let b = t.iter().find(|t| t.key == KEY_BUCKETS).unwrap();
        assert_eq!(b.value, "250368");
        assert_eq!(b.requested.as_deref(), Some("250000"));
        assert!(b.rounding_note().unwrap().starts_with("250000 → 250368"));
        let m = t.iter().find(|t| t.key != KEY_BUCKETS).unwrap();
        assert_eq!(m.requested, None);
    }

    #[test]
    fn aligned_buckets_are_left_alone() {
        let cfg = parse("[conntrack]\nmax = 1048576\n", Path::new("t.toml")).unwrap();
        let b = targets(&cfg, 4096)
            .into_iter()
            .find(|t| t.key == KEY_BUCKETS)
            .unwrap();
        assert_eq!((b.value.as_str(), b.requested), ("262144", None));
    }
}
