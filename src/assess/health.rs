// SPDX-License-Identifier: MIT OR Apache-2.0
//! Whether sampling works: the first good sample, the module going away and
//! coming back, readings that make no sense, and a count above max. Each is
//! said once per change. `healthy` decides whether the metrics are written;
//! systemd's keep-alive does not depend on it (it says the loop runs, see
//! [`crate::cmd::watch`]).

use super::{fill_fields, Fill, FillReading, Level};
use crate::report::events::{Event, Priority};
use crate::report::ids;

/// The health concern.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthTracker {
    /// A good sample has been seen (READY=1 was due).
    pub started: bool,
    /// The last sample read a usable fill.
    pub healthy: bool,
    /// The conntrack keys are gone (module_gone was logged).
    pub gone: bool,
    /// The reading fault last logged, until sampling works again.
    pub fault: Option<String>,
    /// count > max was logged.
    pub over_max: bool,
}

/// What one fill reading means.
pub enum Reading {
    /// A usable fill.
    Fill(Fill),
    /// The keys are gone: the module went away.
    Gone,
    /// A reading that cannot be used.
    Fault,
}

impl HealthTracker {
    /// Classify one reading and say what changed. `last` is the last good
    /// fill and `level` the current level, for the events' fields.
    pub fn step(
        &mut self,
        reading: &FillReading,
        last: Option<&Fill>,
        level: Level,
    ) -> (Reading, Vec<Event>) {
        match reading {
            &FillReading::Read { count, max } if max > 0 => {
                let fill = Fill { count, max };
                (Reading::Fill(fill), self.sampled(&fill, level))
            }
            FillReading::Read { .. } => (
                Reading::Fault,
                self.fault("nf_conntrack_max is 0; the fill cannot be computed"),
            ),
            // Kept as text: a fault is said once until its text changes.
            FillReading::Fault(why) => (Reading::Fault, self.fault(&why.to_string())),
            // The keys are gone: say so on the first sample of the outage.
            FillReading::Gone(why) => {
                let mut out = Vec::new();
                if !self.gone {
                    let msg = format!(
                        "nf_conntrack is gone: {why}; still watching, and will report when it returns"
                    );
                    let ev = Event::new(Priority::Err, "module_gone", ids::MODULE_GONE, msg);
                    out.push(match last {
                        Some(f) => fill_fields(ev, f, level),
                        None => ev,
                    });
                }
                (self.gone, self.healthy, self.fault) = (true, false, None);
                (Reading::Gone, out)
            }
        }
    }

    /// A usable fill: the module back, sampling working again, the first
    /// good sample, and a count above max.
    fn sampled(&mut self, fill: &Fill, level: Level) -> Vec<Event> {
        let (mut out, table) = (Vec::new(), fill.text());
        if self.gone {
            let msg = format!("nf_conntrack is back: table {table}");
            let ev = Event::new(Priority::Notice, "module_back", ids::MODULE_BACK, msg);
            out.push(fill_fields(ev, fill, level));
            self.gone = false;
        }
        if let Some(why) = self.fault.take() {
            let msg = format!("sampling works again (it failed with: {why}); table {table}");
            out.push(Event::new(Priority::Info, "fault", ids::FAULT, msg));
        }
        self.healthy = true;
        if !self.started {
            self.started = true;
            let msg = format!("watching the conntrack table: {table}");
            let ev = Event::new(Priority::Info, "started", ids::STARTED, msg);
            out.push(fill_fields(ev, fill, level));
        }
        let over = fill.count > fill.max;
        if over && !self.over_max {
            let msg = format!(
                "nf_conntrack_count {} exceeds nf_conntrack_max {}: max was lowered below the \
                 entries in use (they stay until they expire) or the kernel was mid-allocation; \
                 treated as over-full",
                fill.count, fill.max
            );
            let ev = Event::new(Priority::Warning, "fault", ids::FAULT, msg);
            out.push(fill_fields(ev, fill, Level::Critical));
        }
        self.over_max = over;
        out
    }

    /// The keys exist but make no sense: say so once per distinct problem.
    fn fault(&mut self, why: &str) -> Vec<Event> {
        self.healthy = false;
        if self.fault.as_deref() == Some(why) {
            return Vec::new();
        }
        self.fault = Some(why.to_string());
        let msg = format!("cannot sample the conntrack table: {why}; still running");
        vec![Event::new(Priority::Err, "fault", ids::FAULT, msg)]
    }
}
