// SPDX-License-Identifier: MIT OR Apache-2.0
//! Settings drift: every configured key whose kernel value differs, logged
//! once per distinct (expected, actual), and cleared when it matches again.

use std::collections::BTreeMap;

use super::Setting;
use crate::report::events::{Event, Priority};
use crate::report::ids;

/// What a drift event tells the operator to do.
pub const REMEDY: &str = "systemctl restart conntrack-guard-apply";

/// The drift concern: drifted keys as last logged, key -> (expected,
/// actual). At most one entry per configured key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DriftTracker {
    /// Drifted keys as last logged.
    pub drifted: BTreeMap<String, (String, String)>,
}

impl DriftTracker {
    /// Would this observation log a drift that is not logged yet? The
    /// watchdog asks before logging, to reread a configuration file that
    /// changed under it (the apply step may have just applied it).
    pub fn would_report(&self, settings: &[Setting]) -> bool {
        settings.iter().any(|set| {
            !set.ok()
                && self.drifted.get(&set.key) != Some(&(set.expected.clone(), set.actual_text()))
        })
    }

    /// One sample's settings.
    pub fn step(&mut self, settings: &[Setting]) -> Vec<Event> {
        let mut out = Vec::new();
        self.drifted
            .retain(|k, _| settings.iter().any(|set| &set.key == k));
        for set in settings {
            if set.ok() {
                if self.drifted.remove(&set.key).is_some() {
                    out.push(
                        Event::new(
                            Priority::Info,
                            "drift_cleared",
                            ids::DRIFT_CLEARED,
                            format!(
                                "{} matches the configuration again ({})",
                                set.key, set.expected
                            ),
                        )
                        .field("CONNTRACK_KEY", &set.key)
                        .field("CONNTRACK_EXPECTED", &set.expected)
                        .field("CONNTRACK_ACTUAL", set.actual_text()),
                    );
                }
                continue;
            }
            let seen = (set.expected.clone(), set.actual_text());
            if self.drifted.get(&set.key) == Some(&seen) {
                continue;
            }
            out.push(
                Event::new(
                    Priority::Warning,
                    "drift",
                    ids::DRIFT,
                    format!(
                        "{} is {} in the kernel but configured as {} (changed by something \
                         else, or never applied); to apply the configuration: {REMEDY}",
                        set.key, seen.1, set.expected
                    ),
                )
                .field("CONNTRACK_KEY", &set.key)
                .field("CONNTRACK_EXPECTED", &set.expected)
                .field("CONNTRACK_ACTUAL", &seen.1)
                .field("CONNTRACK_REMEDY", REMEDY),
            );
            self.drifted.insert(set.key.clone(), seen);
        }
        out
    }
}
