// SPDX-License-Identifier: MIT OR Apache-2.0
//! The counter baseline: each sample's increase against the last totals
//! read, the increases since the watchdog started, and whether the counters
//! can be read at all (said once when they cannot).

use super::drops::add;
use super::{fill_fields, Fill, Level};
use crate::events::{Event, Priority};
use crate::ids;
use crate::stats::Counters;

/// The counters concern.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CounterTracker {
    /// Last counter totals read (the baseline for deltas).
    pub last: Option<Counters>,
    /// The counters are unavailable (counters_unavailable was logged).
    pub missing: bool,
    /// drop/early_drop/insert_failed increases seen since watch started:
    /// the "drops N" of the status line.
    pub since_start: Counters,
}

impl CounterTracker {
    /// One sample's reading; returns the increase since the last one
    /// (`None` on the first reading or when unreadable).
    pub fn step(
        &mut self,
        reading: &Result<Counters, String>,
        fill: &Fill,
        level: Level,
    ) -> (Option<Counters>, Vec<Event>) {
        match reading {
            Ok(c) => {
                let delta = self.last.map(|prev| c.delta_since(&prev));
                if let Some(d) = &delta {
                    self.since_start = add(&self.since_start, d);
                }
                self.last = Some(*c);
                self.missing = false;
                (delta, Vec::new())
            }
            Err(why) => {
                let mut out = Vec::new();
                if !self.missing {
                    out.push(fill_fields(
                        Event::new(
                            Priority::Warning,
                            "counters_unavailable",
                            ids::COUNTERS_UNAVAILABLE,
                            format!(
                                "the drop counters are unavailable: {why}; watching the fill level alone"
                            ),
                        ),
                        fill,
                        level,
                    ));
                }
                self.missing = true;
                (None, out)
            }
        }
    }

    /// The module went away: it restarts its counters from zero, so the
    /// next reading is a new baseline, not a decrease.
    pub fn forget_baseline(&mut self) {
        self.last = None;
    }
}
