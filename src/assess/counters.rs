// SPDX-License-Identifier: MIT OR Apache-2.0
//! Counter baselines: each sample's readings of the three drop points turned
//! into increases ([`Tally`]), with the per-CPU, wrap-safe arithmetic of
//! [`DeltaTracker`] for the per-CPU sources; and, per source, whether it can
//! be read at all (said once when it cannot, with the reason).

use super::tally::{self, Tally};
use super::{fill_fields, Fill, Level};
use crate::kernel::ctstats::{CtCounter, CtTable};
use crate::kernel::percpu::DeltaTracker;
use crate::kernel::snmp::UdpStats;
use crate::kernel::softnet::{SoftnetCounter, SoftnetTable};
use crate::report::events::{Event, Priority};
use crate::report::ids;

/// Said once per outage of one source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Availability {
    /// The source is unreadable (its event was logged).
    pub missing: bool,
}

impl Availability {
    /// The reading when there is one; else the reader's error, said once.
    fn step<T, E: std::fmt::Display>(
        &mut self,
        reading: Result<T, &E>,
        what: &str,
        point: &'static str,
        fill: &Fill,
        level: Level,
    ) -> (Option<T>, Vec<Event>) {
        let was_missing = std::mem::replace(&mut self.missing, reading.is_err());
        match reading {
            Ok(t) => (Some(t), Vec::new()),
            Err(_) if was_missing => (None, Vec::new()),
            Err(why) => {
                let msg = format!("{what} are unavailable: {why}; watching the rest");
                let (name, id) = ("counters_unavailable", ids::COUNTERS_UNAVAILABLE);
                let ev = Event::new(Priority::Warning, name, id, msg);
                let ev = fill_fields(ev, fill, level).field("CONNTRACK_DROP_POINT", point);
                (None, vec![ev])
            }
        }
    }
}

/// The conntrack statistics: per-CPU baselines and the increases since the
/// watchdog started.
#[derive(Debug, Clone, Default)]
pub struct CtTracker {
    /// Per-CPU baselines; also the monotonic totals for the metrics.
    pub deltas: DeltaTracker<CtCounter>,
    /// Readable or not.
    pub available: Availability,
    /// Increases since the watchdog started (the status line's "drops N").
    pub since_start: Tally,
}

impl CtTracker {
    /// One reading; the increase since the previous one (`None` on the
    /// first reading, which is the baseline, or when unreadable).
    pub fn step<E: std::fmt::Display>(
        &mut self,
        reading: Result<&CtTable, &E>,
        fill: &Fill,
        level: Level,
    ) -> (Option<Tally>, Vec<Event>) {
        let what = "the conntrack drop counters";
        let (t, evs) = self.available.step(reading, what, "conntrack", fill, level);
        (t.and_then(|t| self.add(t)), evs)
    }

    /// One table: the increase since the previous one (`None` on the
    /// first, which is the baseline).
    pub fn add(&mut self, table: &CtTable) -> Option<Tally> {
        let w = self.deltas.step(table);
        if w.is_baseline() {
            return None;
        }
        let t = tally::conntrack(&w);
        self.since_start.add(&t);
        Some(t)
    }
}

/// The UDP MIB of the watched namespace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UdpTracker {
    /// The previous reading.
    pub last: Option<UdpStats>,
    /// Readable or not.
    pub available: Availability,
}

impl UdpTracker {
    /// One reading; the increase since the previous one.
    pub fn step<E: std::fmt::Display>(
        &mut self,
        reading: Result<&UdpStats, &E>,
        fill: &Fill,
        level: Level,
    ) -> (Option<Tally>, Vec<Event>) {
        let what = "the UDP socket counters";
        let (now, evs) = self.available.step(reading, what, "socket", fill, level);
        let Some(now) = now else { return (None, evs) };
        let t = self.last.map(|prev| tally::socket(&now.delta_since(&prev)));
        self.last = Some(*now);
        (t, evs)
    }
}

/// The softnet backlog statistics (global, per CPU).
#[derive(Debug, Clone, Default)]
pub struct BacklogTracker {
    /// Per-CPU baselines; also the monotonic totals for the metrics.
    pub deltas: DeltaTracker<SoftnetCounter>,
    /// Readable or not.
    pub available: Availability,
}

impl BacklogTracker {
    /// One reading; the increase since the previous one.
    pub fn step<E: std::fmt::Display>(
        &mut self,
        reading: Result<&SoftnetTable, &E>,
        fill: &Fill,
        level: Level,
    ) -> (Option<Tally>, Vec<Event>) {
        let what = "the input backlog counters";
        let (t, evs) = self.available.step(reading, what, "backlog", fill, level);
        let Some(table) = t else { return (None, evs) };
        let w = self.deltas.step(table);
        ((!w.is_baseline()).then(|| tally::backlog(&w)), evs)
    }
}
