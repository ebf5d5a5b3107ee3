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
            let (key, expected, actual) = (&set.key, &set.expected, set.actual_text());
            let ev = if set.ok() {
                if self.drifted.remove(key).is_none() {
                    continue;
                }
                let msg = format!("{key} matches the configuration again ({expected})");
                Event::new(Priority::Info, "drift_cleared", ids::DRIFT_CLEARED, msg)
            } else {
                let seen = (expected.clone(), actual.clone());
                if self.drifted.get(key) == Some(&seen) {
                    continue;
                }
                self.drifted.insert(key.clone(), seen);
                let msg = format!(
                    "{key} is {actual} in the kernel but configured as {expected} (changed by \
                     something else, or never applied); to apply the configuration: {REMEDY}"
                );
                Event::new(Priority::Warning, "drift", ids::DRIFT, msg)
            };
            let ev = (ev.field("CONNTRACK_KEY", key))
                .field("CONNTRACK_EXPECTED", expected)
                .field("CONNTRACK_ACTUAL", actual);
            out.push(ev.field_opt("CONNTRACK_REMEDY", (!set.ok()).then_some(REMEDY)));
        }
        out
    }
}
