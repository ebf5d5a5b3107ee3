// SPDX-License-Identifier: MIT OR Apache-2.0
//! What one conntrack entry and the bucket array cost in kernel memory: the
//! one figure `plan`, `apply`, `status` and the watchdog's growth budget use.
//!
//! An entry is a `struct nf_conn` from the `nf_conntrack` slab cache plus,
//! when any extension (NAT, accounting, timestamps, labels, events, a
//! helper) is attached, a separately kmalloc'd extension area. The slab
//! object size is read from the running kernel:
//! - `/sys/kernel/slab/nf_conntrack/slab_size` (SLUB, mode 0400: the object
//!   with its alignment, 256 B measured on 6.18), one small file;
//! - else `/proc/slabinfo` (0400), the `<objsize>` column of the
//!   `nf_conntrack` row, the same figure: the kernel formats every cache to
//!   make it, so it is read only when sysfs has no answer;
//! - else `object_size` (the bare struct: 248 B on Debian's 6.1, 6.12 and
//!   here).
//!
//! The extension area cannot be read per entry. `nf_ct_ext_add()`
//! (net/netfilter/nf_conntrack_extend.c) allocates at least
//! `NF_CT_EXT_PREALLOC` = 128 bytes the first time any extension is added,
//! so [`EXTENSION_BYTES`] counts that for every entry: the growth budget is
//! a worst case, and an entry without extensions costs less, never more.
//! Measured here (6.18, `tests/bench/entry-bytes.sh`, 30000 UDP flows): with
//! only a `ct state` rule each entry took one 256 B `nf_conntrack` object
//! and nothing else; with DNAT + masquerade, as Docker publishes ports, one
//! `nf_conntrack` object plus one `kmalloc-128` object: 384 B.

use crate::kernel::{read_parse, FileError};
use crate::sysroot::{PathError, SysRoot};

/// The slab statistics, relative to the root.
pub const SLABINFO: &str = "proc/slabinfo";
/// The cache's own directory in sysfs (SLUB), relative to the root.
pub const SLAB_DIR: &str = "sys/kernel/slab/nf_conntrack";
/// The slab cache conntrack entries come from.
pub const CACHE: &str = "nf_conntrack";

/// The slab object when nothing can be read: 256 B measured on 6.18
/// (`struct nf_conn` is 248 B, aligned to 256 in the cache).
pub const DEFAULT_OBJECT_BYTES: u64 = 256;
/// The extension area counted for every entry: the kernel's minimum
/// allocation for it (`NF_CT_EXT_PREALLOC`), which the first extension of
/// an entry already takes.
pub const EXTENSION_BYTES: u64 = 128;
/// Bytes per entry when the slab cannot be read (the watchdog runs
/// unprivileged and cannot read it): [`DEFAULT_OBJECT_BYTES`] +
/// [`EXTENSION_BYTES`], the 384 B a NATed entry measured here. Within the
/// write-up's 300-400 B estimate.
pub const DEFAULT_ENTRY_BYTES: u64 = DEFAULT_OBJECT_BYTES + EXTENSION_BYTES;
/// Where apply, which runs as root, leaves the bytes per entry it measured
/// for the watchdog, which cannot read the slab (0400): relative to the
/// root, under /run so a new kernel measures again.
pub const HANDOFF: &str = "run/conntrack-guard/entry-bytes";
/// A handed-off figure outside this range is not believed: `struct
/// nf_conn` has been 200-320 B on every kernel since 4.x.
const HANDOFF_RANGE: std::ops::RangeInclusive<u64> = 64..=65_536;
/// Bytes per hash bucket: one `hlist_nulls_head` pointer, allocated up front
/// for every bucket whether used or not.
pub const BUCKET_BYTES: u64 = 8;

/// A slabinfo text without a usable `nf_conntrack` row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlabError {
    /// No `nf_conntrack` row: conntrack not loaded yet, or the cache was
    /// merged into another one.
    #[error("no {CACHE} row")]
    NoCache,
    /// The header names no `<objsize>` column.
    #[error("line {line}: the header has no <objsize> column")]
    NoColumn {
        /// 1-based line.
        line: usize,
    },
    /// The object size is not a positive number.
    #[error("line {line}: object size {word:?} is not a positive number")]
    BadSize {
        /// 1-based line.
        line: usize,
        /// The word found (at most 32 characters of it).
        word: String,
    },
}

/// The `<objsize>` of the `nf_conntrack` row of a slabinfo text.
///
/// The column is found by the `# name <active_objs> <num_objs> <objsize>
/// ...` header when there is one; slabinfo 2.x has had it fourth (after the
/// name) since 2.6, which is what a text without a header is read as.
pub fn parse_slabinfo(text: &str) -> Result<u64, SlabError> {
    // Index of the column among the row's words (the name is word 0).
    let mut column = 3;
    for (line, l) in (1..).zip(text.lines()) {
        if let Some(header) = l.strip_prefix('#') {
            let at = header.split_whitespace().position(|w| w == "<objsize>");
            column = at.ok_or(SlabError::NoColumn { line })?;
            continue;
        }
        let mut words = l.split_whitespace();
        if words.next() != Some(CACHE) {
            continue;
        }
        let word = words.nth(column.saturating_sub(1)).unwrap_or("");
        let size = word.parse::<u64>().ok().filter(|n| *n > 0);
        let word = || word.chars().take(32).collect();
        return size.ok_or_else(|| SlabError::BadSize { line, word: word() });
    }
    Err(SlabError::NoCache)
}

/// The `nf_conntrack` object size from `/proc/slabinfo` under `root`.
pub fn read_slabinfo(root: &SysRoot) -> Result<u64, FileError<SlabError>> {
    read_parse(root, SLABINFO, parse_slabinfo)
}

/// The slab object size of one entry from the running kernel, or `None`
/// when no source can be read (not root, conntrack not loaded).
pub fn object_bytes(root: &SysRoot) -> Option<u64> {
    let sysfs = |name: &str| {
        root.read_some(&format!("{SLAB_DIR}/{name}"))
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|n| *n > 0)
    };
    let slab = sysfs("slab_size").or_else(|| read_slabinfo(root).ok());
    slab.or_else(|| sysfs("object_size"))
}

/// Bytes per entry measured on the running kernel (the slab object plus the
/// extension area), `None` when the slab cannot be read: the figure apply
/// hands off ([`write_handoff`]), never the handed-off one itself.
pub fn measured_entry_bytes(root: &SysRoot) -> Option<u64> {
    object_bytes(root).map(|o| o.saturating_add(EXTENSION_BYTES))
}

/// Parse the handed-off figure: one number in a believable range.
pub fn parse_handoff(text: &str) -> Option<u64> {
    let n = text.trim().parse::<u64>().ok()?;
    HANDOFF_RANGE.contains(&n).then_some(n)
}

/// The figure apply handed off under `root`, if any and believable.
pub fn read_handoff(root: &SysRoot) -> Option<u64> {
    parse_handoff(&root.read_some(HANDOFF)?)
}

/// Hand `entry_bytes` off to the watchdog: written atomically under
/// `root`, the directory created when missing.
pub fn write_handoff(root: &SysRoot, entry_bytes: u64) -> Result<(), PathError> {
    root.write_file(HANDOFF, format!("{entry_bytes}\n").as_bytes())
}

/// Bytes per entry on the kernel under `root`: measured from the slab where
/// this process may read it, else what apply measured this boot
/// ([`HANDOFF`]), else [`DEFAULT_ENTRY_BYTES`].
pub fn entry_bytes(root: &SysRoot) -> u64 {
    entry_bytes_from(root, measured_entry_bytes(root))
}

/// [`entry_bytes`] from a slab figure the caller already read
/// ([`measured_entry_bytes`]).
pub fn entry_bytes_from(root: &SysRoot, measured: Option<u64>) -> u64 {
    measured
        .or_else(|| read_handoff(root))
        .unwrap_or(DEFAULT_ENTRY_BYTES)
}

/// Worst-case memory of the table: every entry of `max` in use, plus the
/// bucket array (allocated up front). Saturates instead of wrapping.
pub fn worst_case_bytes(max: u64, buckets: u64, entry_bytes: u64) -> u64 {
    max.saturating_mul(entry_bytes)
        .saturating_add(buckets.saturating_mul(BUCKET_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Measured on 6.18 (trimmed to a few rows).
    const SLABINFO_618: &str = "\
slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
nf_conntrack_expect      0      0    232   17    1 : tunables    0    0    0 : slabdata      0      0      0
nf_conntrack        1024   1024    256   16    1 : tunables    0    0    0 : slabdata     64     64      0
kmalloc-128         4288   4288    128   32    1 : tunables    0    0    0 : slabdata    134    134      0
";

    #[test]
    fn reads_the_conntrack_object_not_its_neighbours() {
        assert_eq!(parse_slabinfo(SLABINFO_618), Ok(256));
    }

    #[test]
    fn column_found_by_header() {
        let t = "# name <objsize> <active_objs>\nnf_conntrack 320 7\n";
        assert_eq!(parse_slabinfo(t), Ok(320));
        // Without a header: slabinfo 2.x order.
        assert_eq!(parse_slabinfo("nf_conntrack 1 1 312 13 1\n"), Ok(312));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(parse_slabinfo(""), Err(SlabError::NoCache));
        assert_eq!(
            parse_slabinfo("slabinfo - version: 2.1\nkmalloc-64 1 1 64 1 1\n"),
            Err(SlabError::NoCache)
        );
        assert_eq!(
            parse_slabinfo("# name <active_objs>\nnf_conntrack 1\n"),
            Err(SlabError::NoColumn { line: 1 })
        );
        assert!(matches!(
            parse_slabinfo("nf_conntrack 1 1 big 1 1\n"),
            Err(SlabError::BadSize { line: 1, .. })
        ));
        assert!(matches!(
            parse_slabinfo("nf_conntrack 1 1 0 1 1\n"),
            Err(SlabError::BadSize { .. })
        ));
        assert!(matches!(
            parse_slabinfo("nf_conntrack\n"),
            Err(SlabError::BadSize { .. })
        ));
        assert!(matches!(
            parse_slabinfo("nf_conntrack 1 1 -256 1 1\n"),
            Err(SlabError::BadSize { .. })
        ));
        let long = format!("nf_conntrack 1 1 {} 1\n", "9".repeat(400));
        match parse_slabinfo(&long) {
            Err(SlabError::BadSize { word, .. }) => assert_eq!(word.len(), 32),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sources_in_order_then_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::at(dir.path());
        assert_eq!(object_bytes(&root), None);
        assert_eq!(entry_bytes(&root), DEFAULT_ENTRY_BYTES);
        assert_eq!(DEFAULT_ENTRY_BYTES, 384);
        let slab = dir.path().join(SLAB_DIR);
        std::fs::create_dir_all(&slab).unwrap();
        std::fs::write(slab.join("object_size"), "248\n").unwrap();
        assert_eq!(object_bytes(&root), Some(248));
        std::fs::write(slab.join("slab_size"), "256\n").unwrap();
        assert_eq!(object_bytes(&root), Some(256));
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::write(
            dir.path().join(SLABINFO),
            SLABINFO_618.replace("256", "320"),
        )
        .unwrap();
        // sysfs's slab_size is read first (one small file).
        assert_eq!(object_bytes(&root), Some(256));
        std::fs::remove_file(slab.join("slab_size")).unwrap();
        assert_eq!(object_bytes(&root), Some(320));
        assert_eq!(entry_bytes(&root), 320 + EXTENSION_BYTES);
        // Garbage in slabinfo falls through to object_size.
        std::fs::write(dir.path().join(SLABINFO), "garbage").unwrap();
        assert_eq!(object_bytes(&root), Some(248));
    }

    #[test]
    fn the_watchdog_takes_what_apply_measured() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::at(dir.path());
        assert_eq!(measured_entry_bytes(&root), None);
        // Apply, as root, measured 320 + 128 and handed it off.
        write_handoff(&root, 448).unwrap();
        assert_eq!(read_handoff(&root), Some(448));
        assert_eq!(entry_bytes(&root), 448);
        // A slab this process can read wins over the handoff.
        let slab = dir.path().join(SLAB_DIR);
        std::fs::create_dir_all(&slab).unwrap();
        std::fs::write(slab.join("slab_size"), "256\n").unwrap();
        assert_eq!(entry_bytes(&root), 384);
        std::fs::remove_file(slab.join("slab_size")).unwrap();
        // Garbage or an unbelievable figure: the default.
        for bad in [
            "",
            "zz",
            "0",
            "63",
            "65537",
            "-384",
            "99999999999999999999999",
        ] {
            std::fs::write(root.path(HANDOFF), bad).unwrap();
            assert_eq!(entry_bytes(&root), DEFAULT_ENTRY_BYTES, "{bad:?}");
        }
        assert_eq!(parse_handoff(" 384\n"), Some(384));
    }

    #[test]
    fn worst_case_saturates() {
        assert_eq!(worst_case_bytes(1024, 512, 384), 1024 * 384 + 512 * 8);
        assert_eq!(worst_case_bytes(u64::MAX, 1, 384), u64::MAX);
        assert_eq!(worst_case_bytes(1, u64::MAX, 1), u64::MAX);
    }

    #[test]
    #[ignore = "needs root (/proc/slabinfo is 0400) and nf_conntrack"]
    fn reads_the_running_kernel() {
        let n = read_slabinfo(&SysRoot::host()).expect("slabinfo readable as root");
        // struct nf_conn has been 200-320 bytes on every kernel since 4.x.
        assert!((128..=1024).contains(&n), "{n}");
        assert!(entry_bytes(&SysRoot::host()) > n);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            let _ = parse_slabinfo(&s);
        }

        #[test]
        fn never_panics_on_conntrack_rows(words in proptest::collection::vec("[#<>a-z0-9_-]{0,12}", 0..8)) {
            let _ = parse_slabinfo(&format!("nf_conntrack {}\n", words.join(" ")));
            let _ = parse_slabinfo(&format!("# {}\nnf_conntrack 1 2 3\n", words.join(" ")));
        }
    }
}
