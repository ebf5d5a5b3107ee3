// SPDX-License-Identifier: MIT OR Apache-2.0
//! Reading the fill level and the per-CPU conntrack counters.
//!
//! The counters come from `/proc/net/stat/nf_conntrack`, parsed by header
//! name because the column set changed across kernels (5.10 renamed
//! `searched` to `clashres`, 5.15 `delete_list` to `chainlength`). When that
//! file is absent (CONFIG_NF_CONNTRACK_PROCFS off) they come over ctnetlink.
//! Nothing here walks the table: the cost of a sample does not depend on how
//! many entries it holds.
//!
//! The per-CPU, wrap-safe layer of issue 10 (ctnetlink first, every counter
//! by name, snmp and softnet) is [`crate::kernel`]; this module's summed
//! [`Counters`] stay until the consumers move to it.

use std::fmt;

use crate::config::{KEY_COUNT, KEY_MAX};
use crate::sysroot::{PathError, SysRoot, STAT_FILE};

/// The counters the watchdog cares about, summed over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Counters {
    /// A new entry could not be allocated: the "table full" drop.
    pub drop: u64,
    /// A non-assured entry was evicted to make room (leading indicator).
    pub early_drop: u64,
    /// An insert clash that could not be resolved.
    pub insert_failed: u64,
    /// Clashes that were resolved (absent on old kernels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clashres: Option<u64>,
}

impl Counters {
    /// Increase since `earlier`. A counter that went down (the module was
    /// reloaded, so counting restarted) counts from zero.
    pub fn delta_since(&self, earlier: &Counters) -> Counters {
        let d = |now: u64, then: u64| if now >= then { now - then } else { now };
        Counters {
            drop: d(self.drop, earlier.drop),
            early_drop: d(self.early_drop, earlier.early_drop),
            insert_failed: d(self.insert_failed, earlier.insert_failed),
            clashres: match (self.clashres, earlier.clashres) {
                (Some(a), Some(b)) => Some(d(a, b)),
                (a, _) => a,
            },
        }
    }

    /// True if any of the loss counters is non-zero.
    pub fn any_loss(&self) -> bool {
        // Not a sum: garbage near u64::MAX would overflow it.
        self.drop > 0 || self.early_drop > 0 || self.insert_failed > 0
    }
}

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

/// Parse `/proc/net/stat/nf_conntrack` text: a header of column names, then
/// one line per possible CPU of hex words. `entries` repeats the netns total
/// on every line, so it is not summed (and not needed: the count comes from
/// the sysctl); every other column is summed across CPUs.
pub fn parse_stat(text: &str) -> Result<Counters, StatError> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or(StatError::Empty)?
        .split_whitespace()
        .collect();
    let col = |name: &'static str| header.iter().position(|h| *h == name);
    let need = |name: &'static str| col(name).ok_or(StatError::MissingColumn(name));
    let (i_drop, i_early, i_failed) = (need("drop")?, need("early_drop")?, need("insert_failed")?);
    let i_clash = col("clashres");
    let mut sum = Counters {
        clashres: i_clash.map(|_| 0),
        ..Counters::default()
    };
    let mut cpus = 0usize;
    for (n, line) in lines.enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() != header.len() {
            return Err(StatError::Ragged {
                line: n + 2,
                found: words.len(),
                expected: header.len(),
            });
        }
        let hex = |i: usize| {
            u64::from_str_radix(words[i], 16).map_err(|_| StatError::NotHex {
                line: n + 2,
                word: words[i].chars().take(32).collect(),
            })
        };
        sum.drop = sum.drop.wrapping_add(hex(i_drop)?);
        sum.early_drop = sum.early_drop.wrapping_add(hex(i_early)?);
        sum.insert_failed = sum.insert_failed.wrapping_add(hex(i_failed)?);
        if let (Some(i), Some(c)) = (i_clash, sum.clashres.as_mut()) {
            *c = c.wrapping_add(hex(i)?);
        }
        cpus += 1;
    }
    if cpus == 0 {
        return Err(StatError::NoCpus);
    }
    Ok(sum)
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

/// Why a sample could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// The conntrack keys are absent: module not loaded (or gone).
    #[error("conntrack is not available: {} does not exist (nf_conntrack not loaded?)", .0.display())]
    NoConntrack(std::path::PathBuf),
    /// A file could not be read.
    #[error(transparent)]
    Io(#[from] PathError),
    /// A sysctl held something that is not a number.
    #[error("{path}: {value:?} is not a number")]
    BadNumber {
        /// Which file.
        path: String,
        /// What it held.
        value: String,
    },
    /// max is 0: fill cannot be computed.
    #[error("{0}: nf_conntrack_max is 0")]
    ZeroMax(String),
}

/// One reading of the fill level, with counters when available.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// nf_conntrack_count.
    pub count: u64,
    /// nf_conntrack_max.
    pub max: u64,
    /// Counters, if readable.
    pub counters: Option<Counters>,
    /// Where the counters came from.
    pub source: Option<CounterSource>,
    /// Why the counters are missing, when they are.
    pub counters_error: Option<String>,
}

impl Sample {
    /// Fill as a percentage. max is never 0 in a `Sample`.
    pub fn fill_percent(&self) -> f64 {
        self.count as f64 * 100.0 / self.max as f64
    }
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.1}% ({}/{})",
            self.fill_percent(),
            self.count,
            self.max
        )
    }
}

/// Read the count and max. Both are re-read every time: max can change.
pub fn read_fill(root: &SysRoot) -> Result<(u64, u64), SampleError> {
    let num = |key: &str| -> Result<u64, SampleError> {
        let path = root.sysctl_path(key);
        let v = root
            .read_sysctl(key)?
            .ok_or_else(|| SampleError::NoConntrack(path.clone()))?;
        v.parse().map_err(|_| SampleError::BadNumber {
            path: path.display().to_string(),
            value: v.chars().take(40).collect(),
        })
    };
    let count = num(KEY_COUNT)?;
    let max = num(KEY_MAX)?;
    if max == 0 {
        return Err(SampleError::ZeroMax(
            root.sysctl_path(KEY_MAX).display().to_string(),
        ));
    }
    Ok((count, max))
}

/// Read the counters: the stat file, else ctnetlink (real root only: under a
/// test root the tool does not talk to the kernel).
pub fn read_counters(root: &SysRoot) -> Result<(Counters, CounterSource), String> {
    let fallback: Option<Fallback> = if root.is_host() {
        Some(crate::netlink::stats_cpu)
    } else {
        None
    };
    read_counters_via(root, fallback)
}

/// Where the counters come from when the stat file is absent.
pub type Fallback = fn() -> std::io::Result<Counters>;

/// [`read_counters`] with the fallback chosen by the caller, so a test can
/// pair a root whose stat file is missing with the real ctnetlink path.
pub fn read_counters_via(
    root: &SysRoot,
    fallback: Option<Fallback>,
) -> Result<(Counters, CounterSource), String> {
    let path = root.path(STAT_FILE);
    match root.read_opt(STAT_FILE) {
        Ok(Some(text)) => parse_stat(&text)
            .map(|c| (c, CounterSource::Procfs))
            .map_err(|e| format!("{}: {e}", path.display())),
        Ok(None) => match fallback {
            Some(f) => f()
                .map(|c| (c, CounterSource::Netlink))
                .map_err(|e| format!("{} is absent and ctnetlink failed: {e}", path.display())),
            None => Err(format!(
                "{} is absent (ctnetlink is not used under a test root)",
                path.display()
            )),
        },
        Err(e) => Err(e.to_string()),
    }
}

/// Take one sample: fill (required) and counters (optional).
pub fn sample(root: &SysRoot) -> Result<Sample, SampleError> {
    let (count, max) = read_fill(root)?;
    let (counters, source, counters_error) = match read_counters(root) {
        Ok((c, s)) => (Some(c), Some(s), None),
        Err(e) => (None, None, Some(e)),
    };
    Ok(Sample {
        count,
        max,
        counters,
        source,
        counters_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart";

    #[test]
    fn sums_by_name_not_entries() {
        let text = format!(
            "{HEADER}\n\
             00000400  00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000002 00000010 00000003 00000000  00000000 00000000 00000000 00000000\n\
             00000400  00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 000000f0 00000001 00000000  00000000 00000000 00000000 00000000\n"
        );
        let c = parse_stat(&text).unwrap();
        assert_eq!(c.drop, 0x100);
        assert_eq!(c.early_drop, 4);
        assert_eq!(c.insert_failed, 2);
        assert_eq!(c.clashres, Some(2));
    }

    #[test]
    fn old_kernel_columns() {
        // 5.4-style header: `searched` instead of `clashres`, columns reordered.
        let text = "entries searched found new invalid ignore delete delete_list insert insert_failed drop early_drop icmp_error expect_new expect_create expect_delete search_restart\n\
                    00000010 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000005 00000000 00000000 00000000 00000000 00000000 00000000\n";
        let c = parse_stat(text).unwrap();
        assert_eq!(c.drop, 5);
        assert_eq!(c.clashres, None);
        // Reordered columns still land by name.
        let text = "drop insert_failed early_drop\n1 2 3\n";
        let c = parse_stat(text).unwrap();
        assert_eq!((c.drop, c.insert_failed, c.early_drop), (1, 2, 3));
    }

    #[test]
    fn bad_stat_files() {
        assert_eq!(parse_stat(""), Err(StatError::Empty));
        assert_eq!(
            parse_stat("entries found\n1 2\n"),
            Err(StatError::MissingColumn("drop"))
        );
        assert!(matches!(
            parse_stat("drop insert_failed early_drop\n"),
            Err(StatError::NoCpus)
        ));
        assert!(matches!(
            parse_stat("drop insert_failed early_drop\n1 2\n"),
            Err(StatError::Ragged { line: 2, .. })
        ));
        assert!(matches!(
            parse_stat("drop insert_failed early_drop\n1 zz 3\n"),
            Err(StatError::NotHex { line: 2, .. })
        ));
        // Header missing: the first line of numbers is taken as a header.
        assert!(parse_stat("00000001 00000002\n").is_err());
    }

    #[test]
    fn any_loss_does_not_overflow() {
        // Found by proptest: garbage near u64::MAX used to overflow a sum.
        let c = Counters {
            drop: 5_479_798_370_232_202,
            early_drop: 12_413_696_478_080_345_938,
            insert_failed: u64::MAX,
            clashres: None,
        };
        assert!(c.any_loss());
        assert!(!Counters::default().any_loss());
    }

    #[test]
    fn delta_handles_reset() {
        let a = Counters {
            drop: 10,
            early_drop: 5,
            insert_failed: 1,
            clashres: Some(3),
        };
        let b = Counters {
            drop: 15,
            early_drop: 2,
            insert_failed: 1,
            clashres: Some(4),
        };
        let d = b.delta_since(&a);
        assert_eq!(
            (d.drop, d.early_drop, d.insert_failed, d.clashres),
            (5, 2, 0, Some(1))
        );
    }

    proptest::proptest! {
        #[test]
        fn stat_parser_never_panics(s in "\\PC{0,400}") {
            let _ = parse_stat(&s);
        }

        #[test]
        fn stat_parser_hexish(s in "(drop|early_drop|insert_failed|entries| |\n|[0-9a-fA-F]{1,17}|zz){0,60}") {
            let _ = parse_stat(&s);
        }
    }
}
