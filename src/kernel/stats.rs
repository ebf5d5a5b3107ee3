// SPDX-License-Identifier: MIT OR Apache-2.0
//! Reading the fill level, and the types shared by the counter readers.
//!
//! The counters themselves (ctnetlink first, then procfs, per CPU, every
//! counter by name; snmp and softnet) are read in [`crate::kernel`]. Nothing
//! here walks the table: the cost of a sample does not depend on how many
//! entries it holds.

use crate::config::{KEY_COUNT, KEY_MAX};
use crate::sysroot::{PathError, SysRoot};

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
