// SPDX-License-Identifier: MIT OR Apache-2.0
//! The one error type of the config: file, line and key where known.

use std::fmt;
use std::path::PathBuf;

use crate::sysroot::PathError;

/// A configuration error: file, line where known, key where known.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key (`section.key`), when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// The underlying I/O error, if any.
    #[source]
    pub source: Option<PathError>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}
