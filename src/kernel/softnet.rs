// SPDX-License-Identifier: MIT OR Apache-2.0
//! Input backlog drops: `/proc/net/softnet_stat`.
//!
//! One row per *online* CPU of `%08x` words, no header
//! (`softnet_seq_show` in net/core/net-procfs.c). The file is global, not
//! per network namespace. Layouts read for this parser:
//! - 3.x–5.9: 11 words: processed, dropped, time_squeeze, 0, 0, 0, 0, 0
//!   (was fastroute), cpu_collision (0 since 4.x), received_rps,
//!   flow_limit_count.
//! - 5.10 ("net-sysfs: add backlog len and CPU id to softnet data"), also
//!   6.1: 13 words, adding softnet_backlog_len and the CPU id
//!   (`(int)seq->index`), because offline CPUs are skipped and row order
//!   alone does not name the CPU.
//! - 6.12 and 6.18 (measured here): 15 words, adding the input and process
//!   queue lengths after the CPU id.
//!
//! Words are found by position: the file has no header. Column 2 (index 1)
//! is `dropped`, the `netdev_max_backlog` overflow; index 2 is
//! `time_squeeze`. All are `unsigned int` per CPU and wrap: deltas go
//! through [`crate::kernel::percpu::DeltaTracker`].

use crate::kernel::percpu::{counter_set, CounterSet, CpuIds, CpuTable};
use crate::kernel::{read_parse, FileError};
use crate::sysroot::SysRoot;

/// The softnet_stat file, relative to the root.
pub const SOFTNET_FILE: &str = "proc/net/softnet_stat";

counter_set! {
    /// A softnet counter.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum SoftnetCounter {
        /// Packets taken off the backlog and processed.
        Processed "processed",
        /// Packets dropped because the input backlog was full
        /// (`net.core.netdev_max_backlog`).
        Dropped "dropped",
        /// Times `net_rx_action` ran out of budget or time with work left.
        TimeSqueeze "time_squeeze",
        /// RPS inter-processor interrupts received.
        ReceivedRps "received_rps",
        /// Packets dropped by the flow limit.
        FlowLimitCount "flow_limit_count",
    }
}

/// The word index in a row of each [`SoftnetCounter`], in `ALL` order.
const COLUMNS: [usize; 5] = [0, 1, 2, 9, 10];

/// Word index of the CPU id (5.10+).
const CPU_COLUMN: usize = 12;

/// The softnet statistics of every online CPU.
pub type SoftnetTable = CpuTable<SoftnetCounter>;

/// A softnet_stat text that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SoftnetError {
    /// No rows.
    #[error("softnet_stat has no rows")]
    Empty,
    /// A row too short to hold `dropped` and `time_squeeze`.
    #[error("line {line}: {found} words, need at least 3")]
    Short {
        /// 1-based line.
        line: usize,
        /// Words found.
        found: usize,
    },
    /// Rows of different layouts (with and without the CPU id).
    #[error("line {line}: {found} words, line 1 has {first}")]
    Ragged {
        /// 1-based line.
        line: usize,
        /// Words found.
        found: usize,
        /// Words on the first line.
        first: usize,
    },
    /// A word that is not a u32 in hex.
    #[error("line {line}: {word:?} is not a 32-bit hex number")]
    NotHex {
        /// 1-based line.
        line: usize,
        /// The word.
        word: String,
    },
}

/// Parse softnet_stat. Rows carry their CPU id when the kernel prints it
/// (5.10+); otherwise rows are numbered in order and the table says so
/// ([`CpuIds::RowOrder`]). A counter beyond a row's length is `None`.
pub fn parse_softnet(text: &str) -> Result<SoftnetTable, SoftnetError> {
    let (mut first_len, mut table) = (None, None);
    for (n, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let (words, line) = (line.split_whitespace().collect::<Vec<_>>(), n + 1);
        let found = words.len();
        if found < 3 {
            return Err(SoftnetError::Short { line, found });
        }
        let first = *first_len.get_or_insert(found);
        if found != first {
            return Err(SoftnetError::Ragged { line, found, first });
        }
        let hex = |i: usize| {
            let word = || words[i].chars().take(32).collect();
            u32::from_str_radix(words[i], 16)
                .map_err(|_| SoftnetError::NotHex { line, word: word() })
        };
        let (ids, cpu) = match found > CPU_COLUMN {
            true => (CpuIds::Kernel, hex(CPU_COLUMN)?),
            false => (CpuIds::RowOrder, u32::try_from(n).unwrap_or(u32::MAX)),
        };
        let row = table
            .get_or_insert_with(|| SoftnetTable::new(ids))
            .row_mut(cpu);
        for (&c, &i) in SoftnetCounter::ALL.iter().zip(&COLUMNS) {
            if i < found {
                row.set(c, hex(i)?);
            }
        }
    }
    table.ok_or(SoftnetError::Empty)
}

/// Read softnet_stat under `root`.
pub fn read_softnet(root: &SysRoot) -> Result<SoftnetTable, FileError<SoftnetError>> {
    read_parse(root, SOFTNET_FILE, parse_softnet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::percpu::DeltaTracker;

    /// 5.10 and 6.1: `"%08x" x 13` = processed, dropped, time_squeeze, 0,
    /// 0, 0, 0, 0, 0, received_rps, flow_limit_count, backlog_len, cpu.
    /// CPU 1 is offline: the rows are CPUs 0, 2, 3.
    const SOFTNET_61: &str = "\
0001e240 00000000 00000003 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
00a1b2c3 00000010 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000002 00000000 00000000 00000002
00000100 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000003
";
    /// 6.12/6.18: 15 words, then input_qlen, process_qlen. Measured here.
    const SOFTNET_612: &str = "\
0000000c 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
00001ace fffffffe 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 00000000 00000000
";
    /// Before 5.10: 11 words, no CPU id.
    const SOFTNET_54: &str = "\
0001e240 00000001 00000003 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
0001e240 00000002 00000003 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
";

    #[test]
    fn layouts() {
        let t = parse_softnet(SOFTNET_61).unwrap();
        assert_eq!(t.ids(), CpuIds::Kernel);
        assert_eq!(
            t.rows().iter().map(|r| r.cpu).collect::<Vec<_>>(),
            vec![0, 2, 3]
        );
        assert_eq!(t.get(2, SoftnetCounter::Dropped), Some(16));
        assert_eq!(t.get(2, SoftnetCounter::ReceivedRps), Some(2));
        let t = parse_softnet(SOFTNET_612).unwrap();
        assert_eq!(t.get(1, SoftnetCounter::Dropped), Some(0xffff_fffe));
        assert_eq!(t.total(SoftnetCounter::Processed), Some(0xc + 0x1ace));
        let t = parse_softnet(SOFTNET_54).unwrap();
        assert_eq!(t.ids(), CpuIds::RowOrder);
        assert_eq!(t.total(SoftnetCounter::Dropped), Some(3));
        // Oldest: only the first three words.
        let t = parse_softnet("00000001 00000002 00000003\n").unwrap();
        assert_eq!(t.total(SoftnetCounter::ReceivedRps), None, "absent");
        assert_eq!(t.total(SoftnetCounter::TimeSqueeze), Some(3));
    }

    #[test]
    fn wrap_and_hot_cpu() {
        let mut tr = DeltaTracker::new();
        tr.step(&parse_softnet(SOFTNET_612).unwrap());
        // CPU 1 drops 10 across the wrap; CPU 0 drops 1.
        let next = SOFTNET_612
            .replace("00001ace fffffffe", "00001ace 00000008")
            .replace("0000000c 00000000", "0000000c 00000001");
        let w = tr.step(&parse_softnet(&next).unwrap());
        assert_eq!(w.sum(SoftnetCounter::Dropped), Some(11));
        let cpu1 = &w.per_cpu()[1];
        assert_eq!((cpu1.cpu, cpu1.get(SoftnetCounter::Dropped)), (1, Some(10)));
    }

    #[test]
    fn errors() {
        assert_eq!(parse_softnet(""), Err(SoftnetError::Empty));
        assert!(matches!(
            parse_softnet("00000001 00000002\n"),
            Err(SoftnetError::Short { line: 1, found: 2 })
        ));
        assert!(matches!(
            parse_softnet("1 2 3\n1 2 3 4\n"),
            Err(SoftnetError::Ragged { line: 2, .. })
        ));
        assert!(matches!(
            parse_softnet("1 zz 3\n"),
            Err(SoftnetError::NotHex { line: 1, .. })
        ));
        assert!(matches!(
            parse_softnet("1 100000000 3\n"),
            Err(SoftnetError::NotHex { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let e = read_softnet(&SysRoot::at(dir.path())).unwrap_err();
        assert!(matches!(e, FileError::Absent(_)), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            let _ = parse_softnet(&s);
        }

        #[test]
        fn never_panics_shaped(s in "([0-9a-f]{1,9}| |\n|zz){0,80}") {
            if let Ok(t) = parse_softnet(&s) {
                let mut tr = DeltaTracker::new();
                tr.step(&t);
                tr.step(&t);
            }
        }
    }
}
