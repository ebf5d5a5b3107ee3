// SPDX-License-Identifier: MIT OR Apache-2.0
//! Counter baselines: each sample's readings of the three drop points turned
//! into increases ([`Tally`]), with the per-CPU, wrap-safe arithmetic of
//! [`DeltaTracker`] for the per-CPU sources; and, per source, whether it can
//! be read at all (said once when it cannot, with the reason).

use super::tally::{self, Signal, Tally, BACKLOG, CONNTRACK};
use super::{fill_fields, Fill, Level};
use crate::kernel::ctstats::{CtCounter, CtTable};
use crate::kernel::percpu::{CounterSet, CpuTable, DeltaTracker};
use crate::kernel::snmp::UdpStats;
use crate::kernel::softnet::{SoftnetCounter, SoftnetTable};
use crate::report::events::{Event, Priority};
use crate::report::ids;

/// The reading when there is one; else the reader's error, said once per
/// outage of the source (`missing`: it is unreadable and that was said).
fn available<T, E: std::fmt::Display>(
    missing: &mut bool,
    reading: Result<T, &E>,
    (what, point): (&str, &'static str),
    fill: &Fill,
    level: Level,
) -> (Option<T>, Vec<Event>) {
    match (std::mem::replace(missing, reading.is_err()), reading) {
        (_, Ok(t)) => (Some(t), Vec::new()),
        (true, Err(_)) => (None, Vec::new()),
        (false, Err(why)) => {
            let msg = format!("{what} are unavailable: {why}; watching the rest");
            let (name, id) = ("counters_unavailable", ids::COUNTERS_UNAVAILABLE);
            let ev = Event::new(Priority::Warning, name, id, msg);
            let ev = fill_fields(ev, fill, level).field("CONNTRACK_DROP_POINT", point);
            (None, vec![ev])
        }
    }
}

/// The conntrack statistics: per-CPU baselines and the increases since the
/// watchdog started.
#[derive(Debug, Clone, Default)]
pub struct CtTracker {
    /// Per-CPU baselines; also the monotonic totals for the metrics.
    pub deltas: DeltaTracker<CtCounter>,
    /// Unreadable, and said.
    pub missing: bool,
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
        let what = ("the conntrack drop counters", "conntrack");
        let (t, evs) = available(&mut self.missing, reading, what, fill, level);
        (t.and_then(|t| self.add(t)), evs)
    }

    /// One table: the increase since the previous one (`None` on the
    /// first, which is the baseline).
    pub fn add(&mut self, table: &CtTable) -> Option<Tally> {
        let t = window(&mut self.deltas, table, &CONNTRACK)?;
        self.since_start.add(&t);
        Some(t)
    }
}

/// The UDP MIB of the watched namespace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UdpTracker {
    /// The previous reading.
    pub last: Option<UdpStats>,
    /// Unreadable, and said.
    pub missing: bool,
}

impl UdpTracker {
    /// One reading; the increase since the previous one.
    pub fn step<E: std::fmt::Display>(
        &mut self,
        reading: Result<&UdpStats, &E>,
        fill: &Fill,
        level: Level,
    ) -> (Option<Tally>, Vec<Event>) {
        let what = ("the UDP socket counters", "socket");
        let (now, evs) = available(&mut self.missing, reading, what, fill, level);
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
    /// Unreadable, and said.
    pub missing: bool,
}

impl BacklogTracker {
    /// One reading; the increase since the previous one.
    pub fn step<E: std::fmt::Display>(
        &mut self,
        reading: Result<&SoftnetTable, &E>,
        fill: &Fill,
        level: Level,
    ) -> (Option<Tally>, Vec<Event>) {
        let what = ("the input backlog counters", "backlog");
        let (t, evs) = available(&mut self.missing, reading, what, fill, level);
        (t.and_then(|t| window(&mut self.deltas, t, &BACKLOG)), evs)
    }
}

/// The increase since the previous table, as a tally of `sig` (`None` on
/// the first, which is the baseline).
fn window<K: CounterSet>(d: &mut DeltaTracker<K>, t: &CpuTable<K>, sig: &Signal) -> Option<Tally> {
    let w = d.step(t);
    (!w.is_baseline()).then(|| tally::of_window(&w, sig))
}
