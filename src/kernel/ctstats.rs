// SPDX-License-Identifier: MIT OR Apache-2.0
//! The conntrack statistics (`struct ip_conntrack_stat`), per CPU and by
//! name, from whichever source answers.
//!
//! # Source order
//! 1. ctnetlink `IPCTNL_MSG_CT_GET_STATS_CPU` (what `conntrack -S` uses):
//!    present whatever `CONFIG_NF_CONNTRACK_PROCFS` says, and carries every
//!    counter including `chaintoolong`. Needs CAP_NET_ADMIN and the
//!    `nf_conntrack_netlink` module.
//! 2. `/proc/net/stat/nf_conntrack`, parsed by header name.
//! 3. Otherwise unavailable, with both reasons.
//!
//! Which netlink (the kernel's, or none under a test root) is a value the
//! caller hands in once ([`CtNetlink`]); nothing here asks whether it runs
//! under test.
//!
//! # Counters and their names (kernel 5.15+ source, read for this table)
//! | [`CtCounter`] | procfs column | netlink attribute |
//! |---|---|---|
//! | `Drop` | `drop` | `CTA_STATS_DROP` (10) |
//! | `EarlyDrop` | `early_drop` | `CTA_STATS_EARLY_DROP` (11) |
//! | `InsertFailed` | `insert_failed` | `CTA_STATS_INSERT_FAILED` (9) |
//! | `Invalid` | `invalid` | `CTA_STATS_INVALID` (4) |
//! | `SearchRestart` | `search_restart` | `CTA_STATS_SEARCH_RESTART` (13) |
//! | `ClashResolve` | `clashres` (5.10+) | `CTA_STATS_CLASH_RESOLVE` (14) |
//! | `ChainTooLong` | `chainlength` (5.15+) | `CTA_STATS_CHAIN_TOOLONG` (15) |
//! | `Error` | `icmp_error` | `CTA_STATS_ERROR` (12) |
//! | `Found` | `found` | `CTA_STATS_FOUND` (2) |
//! | `Insert` | `insert` | `CTA_STATS_INSERT` (8) |
//!
//! `chainlength` is not a chain length: 5.15's "refuse insert if chain has
//! grown too large" renamed the dead `delete_list` column and prints
//! `st->chaintoolong` in it (`ct_cpu_seq_show` in
//! net/netfilter/nf_conntrack_standalone.c), the same counter ctnetlink
//! sends as `CTA_STATS_CHAIN_TOOLONG`. Before 5.15 neither exists, and
//! `delete_list` is not mapped. `entries` is the netns total repeated on
//! every row and is not a per-CPU counter; the columns printed as constant
//! 0 (`new`, `ignore`, `delete`, `searched`) are not mapped either.

use crate::kernel::netlink::NetlinkError;
use crate::kernel::percpu::{CounterSet, CpuIds};
use crate::kernel::{read_parse, FileError};
use crate::sysroot::{SysRoot, STAT_FILE};

pub use crate::kernel::ctcounter::{CtCounter, CtTable};

/// A stat file that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatError {
    /// No header line.
    #[error("empty stat file")]
    Empty,
    /// A header without the columns we need.
    #[error("stat header has no `{0}` column")]
    MissingColumn(&'static str),
    /// A line with the wrong number of words.
    #[error("line {line}: {found} words, header has {expected}")]
    Ragged {
        /// 1-based line.
        line: usize,
        /// Words found.
        found: usize,
        /// Words expected.
        expected: usize,
    },
    /// A word that is not hex.
    #[error("line {line}: {word:?} is not a hex number")]
    NotHex {
        /// 1-based line.
        line: usize,
        /// The word.
        word: String,
    },
    /// A header but no CPU lines.
    #[error("stat file has a header but no CPU lines")]
    NoCpus,
}

/// Where the counters came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CounterSource {
    /// `/proc/net/stat/nf_conntrack`.
    Procfs,
    /// ctnetlink `IPCTNL_MSG_CT_GET_STATS_CPU`.
    Netlink,
}

/// Parse `/proc/net/stat/nf_conntrack`: a header of column names, then one
/// row per *possible* CPU in order (`ct_cpu_seq_start` walks
/// `cpu_possible`), so row i is CPU i on every machine whose possible CPUs
/// are 0..n, which is what `nr_cpu_ids` numbering gives. Columns are found
/// by name; a column this kernel lacks is `None` in every row. `drop` exists
/// in every version, so a header without it is not this file.
pub fn parse_ct_stat(text: &str) -> Result<CtTable, StatError> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().ok_or(StatError::Empty)?;
    let header: Vec<&str> = first.split_whitespace().collect();
    if !header.contains(&"drop") {
        return Err(StatError::MissingColumn("drop"));
    }
    let cols: Vec<(CtCounter, usize)> = CtCounter::ALL
        .iter()
        .filter_map(|&c| Some((c, header.iter().position(|h| *h == c.procfs_column())?)))
        .collect();
    let mut table = CtTable::new(CpuIds::Kernel);
    for (n, line) in lines.enumerate() {
        let (words, line) = (line.split_whitespace().collect::<Vec<_>>(), n + 2);
        let (found, expected) = (words.len(), header.len());
        if found != expected {
            return Err(StatError::Ragged {
                line,
                found,
                expected,
            });
        }
        let row = table.row_mut(u32::try_from(n).unwrap_or(u32::MAX));
        for &(c, i) in &cols {
            let word = || words[i].chars().take(32).collect();
            let v = u32::from_str_radix(words[i], 16);
            row.set(c, v.map_err(|_| StatError::NotHex { line, word: word() })?);
        }
    }
    (!table.is_empty())
        .then_some(table)
        .ok_or(StatError::NoCpus)
}

/// Read the procfs statistics under `root`.
pub fn read_ct_stat(root: &SysRoot) -> Result<CtTable, FileError<StatError>> {
    read_parse(root, STAT_FILE, parse_ct_stat)
}

/// The stat file of the calling thread's network namespace. `/proc/net` is
/// `/proc/self/net`, the thread-group leader's namespace: a thread that
/// entered another one reads its own through `thread-self`.
pub const THREAD_STAT_FILE: &str = "proc/thread-self/net/stat/nf_conntrack";

/// Where the ctnetlink statistics come from: the kernel, or nowhere (a test
/// root), or a fake in tests. Chosen once by the caller and handed in.
pub trait CtNetlink {
    /// One `IPCTNL_MSG_CT_GET_STATS_CPU` dump in the caller's netns.
    fn stats_cpu(&self) -> Result<CtTable, NetlinkError>;
}

/// The kernel's ctnetlink.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelNetlink;

impl CtNetlink for KernelNetlink {
    fn stats_cpu(&self) -> Result<CtTable, NetlinkError> {
        crate::kernel::netlink::stats_cpu_table()
    }
}

/// No netlink: a test root, where the tool must not talk to the kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNetlink;

impl CtNetlink for NoNetlink {
    fn stats_cpu(&self) -> Result<CtTable, NetlinkError> {
        Err(NetlinkError::NotUsed)
    }
}

/// One reading of the conntrack statistics.
#[derive(Debug)]
pub struct CtReading {
    /// Per-CPU values.
    pub table: CtTable,
    /// Which source answered.
    pub source: CounterSource,
    /// Why netlink was not used, when procfs answered instead.
    pub netlink_error: Option<NetlinkError>,
}

/// Neither source answered.
#[derive(Debug, thiserror::Error)]
#[error("conntrack counters unavailable: ctnetlink: {netlink}; procfs: {procfs}")]
pub struct CtUnavailable {
    /// Why ctnetlink failed.
    #[source]
    pub netlink: NetlinkError,
    /// Why the procfs file failed.
    pub procfs: FileError<StatError>,
}

/// Read the statistics: ctnetlink where it answers, else procfs under `root`.
///
/// ```no_run
/// # use conntrack_guard::kernel::ctstats::*;
/// # use conntrack_guard::sysroot::SysRoot;
/// let r = read_ct_counters(&SysRoot::host(), &KernelNetlink).unwrap();
/// let drops = r.table.total(CtCounter::Drop);
/// ```
pub fn read_ct_counters(
    root: &SysRoot,
    netlink: &dyn CtNetlink,
) -> Result<CtReading, CtUnavailable> {
    read_ct_counters_at(root, STAT_FILE, netlink)
}

/// [`read_ct_counters`] with the stat file at `stat` under `root`
/// ([`THREAD_STAT_FILE`] inside an entered namespace): the one counter
/// source, for the host and for every namespace.
pub fn read_ct_counters_at(
    root: &SysRoot,
    stat: &str,
    netlink: &dyn CtNetlink,
) -> Result<CtReading, CtUnavailable> {
    let (table, source, netlink_error) = match netlink.stats_cpu() {
        Ok(table) => (table, CounterSource::Netlink, None),
        Err(netlink) => match read_parse(root, stat, parse_ct_stat) {
            Ok(table) => (table, CounterSource::Procfs, Some(netlink)),
            Err(procfs) => return Err(CtUnavailable { netlink, procfs }),
        },
    };
    Ok(CtReading {
        table,
        source,
        netlink_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::percpu::DeltaTracker;

    /// 6.1/6.12/6.18 layout: the header and `"%08x  %08x ... %08x\n"` of
    /// `ct_cpu_seq_show` (5.15+), two possible CPUs.
    const STAT_6X: &str = "\
entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
0000002a  00000003 00000000 00000000 00000010 00000000 00000000 00000001 00000000 00000002 fffffff0 00000004 00000000  00000000 00000000 00000000 00000007
0000002a  00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000020 00000000 00000001  00000000 00000000 00000000 00000000
";
    /// 5.10 layout: `clashres` is there, `chainlength` is still
    /// `delete_list` (a dead column).
    const STAT_510: &str = "\
entries  clashres found new invalid ignore delete delete_list insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
00000010  00000002 00000000 00000000 00000000 00000000 00000000 00000009 00000000 00000000 00000005 00000000 00000000  00000000 00000000 00000000 00000000
";

    #[test]
    fn procfs_by_name_per_cpu() {
        let t = parse_ct_stat(STAT_6X).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(0, CtCounter::Drop), Some(0xffff_fff0));
        assert_eq!(t.get(1, CtCounter::Drop), Some(0x20));
        assert_eq!(t.total(CtCounter::Drop), Some(0xffff_fff0 + 0x20));
        assert_eq!(t.total(CtCounter::ClashResolve), Some(4));
        assert_eq!(t.total(CtCounter::ChainTooLong), Some(1));
        assert_eq!(t.total(CtCounter::SearchRestart), Some(7));
        assert_eq!(t.total(CtCounter::Invalid), Some(16));
        assert_eq!(t.total(CtCounter::Error), Some(1));
        let t = parse_ct_stat(STAT_510).unwrap();
        assert_eq!(t.total(CtCounter::ClashResolve), Some(2));
        assert_eq!(t.total(CtCounter::ChainTooLong), None, "no false zero");
        assert_eq!(t.total(CtCounter::Drop), Some(5));
    }

    #[test]
    fn procfs_wrap_through_the_tracker() {
        let mut tr = DeltaTracker::new();
        tr.step(&parse_ct_stat(STAT_6X).unwrap());
        // CPU 0 drops 0x30 across the wrap, CPU 1 drops 2.
        let next = STAT_6X
            .replace("fffffff0 00000004", "00000020 00000004")
            .replace("00000020 00000000 00000001", "00000022 00000000 00000001");
        let w = tr.step(&parse_ct_stat(&next).unwrap());
        assert_eq!(w.sum(CtCounter::Drop), Some(0x32));
        assert_eq!(w.sum(CtCounter::ChainTooLong), Some(0));
    }

    #[test]
    fn procfs_errors() {
        assert!(matches!(parse_ct_stat(""), Err(StatError::Empty)));
        assert!(matches!(
            parse_ct_stat("entries found\n1 2\n"),
            Err(StatError::MissingColumn("drop"))
        ));
        assert!(matches!(parse_ct_stat("drop\n"), Err(StatError::NoCpus)));
        assert!(matches!(
            parse_ct_stat("drop x\n1\n"),
            Err(StatError::Ragged { line: 2, .. })
        ));
        // u32 words only: a 9-digit word is not the kernel's.
        assert!(matches!(
            parse_ct_stat("drop\n100000000\n"),
            Err(StatError::NotHex { .. })
        ));
    }

    struct Fake(fn() -> Result<CtTable, NetlinkError>);
    impl CtNetlink for Fake {
        fn stats_cpu(&self) -> Result<CtTable, NetlinkError> {
            (self.0)()
        }
    }

    #[test]
    fn source_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::at(dir.path());
        // Nothing at all: both reasons.
        let e = read_ct_counters(&root, &NoNetlink).unwrap_err();
        assert!(matches!(e.netlink, NetlinkError::NotUsed));
        assert!(matches!(e.procfs, FileError::Absent(_)));
        assert!(e.to_string().contains("does not exist"), "{e}");
        // procfs only.
        std::fs::create_dir_all(dir.path().join("proc/net/stat")).unwrap();
        std::fs::write(dir.path().join(STAT_FILE), STAT_6X).unwrap();
        let r = read_ct_counters(&root, &NoNetlink).unwrap();
        assert_eq!(r.source, CounterSource::Procfs);
        assert!(matches!(r.netlink_error, Some(NetlinkError::NotUsed)));
        // Netlink answers: it wins over procfs.
        let r = read_ct_counters(
            &root,
            &Fake(|| {
                let mut t = CtTable::new(CpuIds::Kernel);
                t.row_mut(0).set(CtCounter::Drop, 99);
                Ok(t)
            }),
        )
        .unwrap();
        assert_eq!(r.source, CounterSource::Netlink);
        assert_eq!(r.table.total(CtCounter::Drop), Some(99));
        // Netlink refused for lack of capability: procfs, reason kept.
        let r = read_ct_counters(
            &root,
            &Fake(|| Err(NetlinkError::from_io(std::io::Error::from_raw_os_error(1)))),
        )
        .unwrap();
        assert_eq!(r.source, CounterSource::Procfs);
        let why = r.netlink_error.unwrap().to_string();
        assert!(why.contains("CAP_NET_ADMIN"), "{why}");
        // Inside an entered namespace: the same order, its own stat file.
        let e = read_ct_counters_at(&root, THREAD_STAT_FILE, &NoNetlink).unwrap_err();
        assert!(e.to_string().contains("thread-self"), "{e}");
        std::fs::create_dir_all(dir.path().join("proc/thread-self/net/stat")).unwrap();
        std::fs::write(dir.path().join(THREAD_STAT_FILE), STAT_6X).unwrap();
        let r = read_ct_counters_at(&root, THREAD_STAT_FILE, &NoNetlink).unwrap();
        assert_eq!(r.source, CounterSource::Procfs);
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,400}") {
            let _ = parse_ct_stat(&s);
        }

        #[test]
        fn parser_hexish(s in "(drop|early_drop|chainlength|clashres|entries| |\n|[0-9a-fA-F]{1,9}|zz){0,60}") {
            let _ = parse_ct_stat(&s);
        }
    }
}
