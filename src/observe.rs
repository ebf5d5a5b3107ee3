// SPDX-License-Identifier: MIT OR Apache-2.0
//! Taking one observation: the thin reader in front of [`crate::assess`].
//!
//! Every file is opened afresh through [`SysRoot`], so a module that goes
//! away and comes back is seen. The cost is a handful of small reads whatever
//! the table holds; `/proc/net/nf_conntrack` (one line per entry) is never
//! read.

use crate::apply::read_current;
use crate::assess::{FillReading, Observation, Setting};
use crate::config::Config;
use crate::hashsize;
use crate::stats::{read_counters, read_fill, SampleError};
use crate::sysroot::SysRoot;

/// Read count and max, classified for [`crate::assess::assess`].
pub fn fill(root: &SysRoot) -> FillReading {
    match read_fill(root) {
        Ok((count, max)) => FillReading::Read { count, max },
        Err(e @ SampleError::NoConntrack(_)) => FillReading::Gone(e.to_string()),
        Err(e) => FillReading::Fault(e.to_string()),
    }
}

/// The kernel's value of every configured setting, against the value the
/// kernel stores for it (the bucket count is rounded up to a page).
pub fn settings(root: &SysRoot, cfg: &Config) -> Vec<Setting> {
    hashsize::targets(cfg, hashsize::page_size())
        .into_iter()
        .map(|t| Setting {
            actual: read_current(root, &t.key).ok().flatten(),
            key: t.key,
            expected: t.value,
        })
        .collect()
}

/// One full observation. Counters and settings are only read when the fill
/// was: without the module they do not exist either.
pub fn observe(root: &SysRoot, cfg: &Config) -> Observation {
    let fill = fill(root);
    if !matches!(fill, FillReading::Read { .. }) {
        return Observation {
            fill,
            counters: Err("not read".into()),
            settings: Vec::new(),
        };
    }
    Observation {
        fill,
        counters: read_counters(root).map(|(c, _)| c),
        settings: settings(root, cfg),
    }
}
