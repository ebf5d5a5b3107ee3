// SPDX-License-Identifier: MIT OR Apache-2.0
//! The three places where the kernel drops UDP silently, as one shape: a
//! [`Signal`] names its counters and what to do about them; a [`Tally`] holds
//! one window's increases (per counter, and the loss per CPU where the
//! source is per CPU). The incident tracker in [`super::drops`] works on
//! tallies, whatever the source.
//!
//! - conntrack: `drop` (table full), `early_drop` (an unassured entry evicted
//!   to make room), `insert_failed` (an unresolved clash), `chaintoolong`
//!   (5.15+: an insert refused because its hash chain was too long) each cost
//!   a packet; `invalid`, `search_restart` and `clash_resolve` are shown but
//!   are not loss;
//! - socket receive buffers: UDP `RcvbufErrors` (the buffer was full) within
//!   `InErrors` (every receive drop);
//! - the input backlog: softnet `dropped` (netdev_max_backlog exceeded), with
//!   `time_squeeze` (the budget ran out: a sign of the same pressure).

use crate::kernel::ctstats::CtCounter;
use crate::kernel::percpu::{CounterSet, CpuRow, Window};
use crate::kernel::snmp::UdpStats;
use crate::kernel::softnet::SoftnetCounter;

/// One counter of a signal.
#[derive(Debug, PartialEq, Eq)]
pub struct Counter {
    /// Its name in messages, JSON and metric labels.
    pub name: &'static str,
    /// Journal field of its increase in one event.
    pub delta_field: &'static str,
    /// Journal field of its increase over a whole incident.
    pub total_field: &'static str,
    /// Each increase is a lost packet (starts or continues an incident).
    pub loss: bool,
}

/// A drop point: its counters, its events and its advice.
#[derive(Debug)]
pub struct Signal {
    /// `conntrack`, `socket` or `backlog` (CONNTRACK_DROP_POINT).
    pub point: &'static str,
    /// Said in messages: where the packets died.
    pub what: &'static str,
    /// Event name of the first and the periodic events.
    pub event: &'static str,
    /// Their MESSAGE_ID.
    pub id: &'static str,
    /// The counters, in the order messages list them.
    pub counters: &'static [Counter],
    /// What to do, given the window's increases.
    pub advice: fn(&Tally) -> &'static str,
}

macro_rules! counter {
    ($name:literal, $field:literal, $loss:expr) => {
        Counter {
            name: $name,
            delta_field: concat!("CONNTRACK_", $field, "_DELTA"),
            total_field: concat!("CONNTRACK_", $field, "_TOTAL"),
            loss: $loss,
        }
    };
}

/// The conntrack counters, in [`CtCounter`] order where they are shown.
pub static CONNTRACK: Signal = Signal {
    point: "conntrack",
    what: "conntrack dropped flows",
    event: "drops",
    id: crate::report::ids::DROPS,
    counters: &[
        counter!("drop", "DROP", true),
        counter!("early_drop", "EARLY_DROP", true),
        counter!("insert_failed", "INSERT_FAILED", true),
        counter!("chaintoolong", "CHAINTOOLONG", true),
        counter!("invalid", "INVALID", false),
        counter!("search_restart", "SEARCH_RESTART", false),
        counter!("clash_resolve", "CLASH_RESOLVE", false),
    ],
    advice: conntrack_advice,
};

/// UDP socket receive buffers.
pub static SOCKET: Signal = Signal {
    point: "socket",
    what: "UDP sockets dropped datagrams (socket receive buffer)",
    event: "udp_drops",
    id: crate::report::ids::UDP_DROPS,
    counters: &[
        counter!("rcvbuf_errors", "UDP_RCVBUF_ERRORS", true),
        counter!("in_errors", "UDP_IN_ERRORS", false),
    ],
    advice: |_| {
        "the receiving application does not read fast enough: raise its SO_RCVBUF \
         and net.core.rmem_max (the [sysctl] section), or read on more threads"
    },
};

/// The per-CPU input backlog.
pub static BACKLOG: Signal = Signal {
    point: "backlog",
    what: "the input backlog dropped packets",
    event: "backlog_drops",
    id: crate::report::ids::BACKLOG_DROPS,
    counters: &[
        counter!("dropped", "BACKLOG_DROPPED", true),
        counter!("time_squeeze", "TIME_SQUEEZE", false),
    ],
    advice: |_| {
        "packets arrive faster than softirq processing takes them: raise \
         net.core.netdev_max_backlog and net.core.netdev_budget, and spread the \
         load over CPUs with RSS or RPS"
    },
};

fn conntrack_advice(t: &Tally) -> &'static str {
    // Only chaintoolong lost packets: the chains, not the size.
    let others = ["drop", "early_drop", "insert_failed"].map(|n| t.get(n));
    if t.get("chaintoolong") > 0 && others == [0; 3] {
        "hash chains grew too long: too few buckets for max, raise [conntrack] \
         buckets (about max / 4)"
    } else {
        "the table is too small for the flow rate, raise [conntrack] max \
         (conntrack-guard plan --rate N)"
    }
}

/// One window's increases of one signal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// (counter, increase) for the counters the kernel has.
    pub counts: Vec<(&'static str, u64)>,
    /// (cpu, loss) where the source is per CPU.
    pub per_cpu: Vec<(u32, u64)>,
}

impl Tally {
    /// The increase of `name` (0 when absent).
    pub fn get(&self, name: &str) -> u64 {
        let found = self.counts.iter().find(|(n, _)| *n == name);
        found.map_or(0, |(_, v)| *v)
    }

    /// Whether the kernel has `name` at all.
    pub fn has(&self, name: &str) -> bool {
        self.counts.iter().any(|(n, _)| *n == name)
    }

    /// Packets lost: the sum of the loss counters of `signal`.
    pub fn loss(&self, signal: &Signal) -> u64 {
        let loss = signal.counters.iter().filter(|c| c.loss);
        loss.fold(0u64, |a, c| a.saturating_add(self.get(c.name)))
    }

    /// Add `other` into this one, counter by counter and CPU by CPU.
    pub fn add(&mut self, other: &Tally) {
        merge(&mut self.counts, &other.counts);
        merge(&mut self.per_cpu, &other.per_cpu);
    }

    /// The CPU that carries at least `share` of the loss, with its share,
    /// when two or more CPUs reported.
    pub fn hot_cpu(&self, share: f64) -> Option<(u32, f64)> {
        let cpus = self.per_cpu.iter();
        let total = cpus.clone().fold(0u64, |a, (_, v)| a.saturating_add(*v));
        if self.per_cpu.len() < 2 || total == 0 {
            return None;
        }
        let (cpu, top) = cpus.max_by_key(|(c, v)| (*v, std::cmp::Reverse(*c)))?;
        let s = *top as f64 / total as f64;
        (s >= share).then_some((*cpu, s))
    }

    /// `drop +3, early_drop +1, insert_failed +0`: the signal's first three
    /// counters always (where the kernel has them), the others only when
    /// they rose.
    pub fn text(&self, signal: &Signal) -> String {
        let shown = signal.counters.iter().enumerate();
        let shown = shown.filter(|(i, c)| self.has(c.name) && (*i < 3 || self.get(c.name) > 0));
        let parts = shown.map(|(_, c)| format!("{} +{}", c.name, self.get(c.name)));
        parts.collect::<Vec<_>>().join(", ")
    }
}

fn merge<K: PartialEq + Copy>(mine: &mut Vec<(K, u64)>, other: &[(K, u64)]) {
    for &(k, v) in other {
        match mine.iter_mut().find(|(m, _)| *m == k) {
            Some((_, m)) => *m = m.saturating_add(v),
            None => mine.push((k, v)),
        }
    }
}

pub(super) fn ct_counter(name: &str) -> Option<CtCounter> {
    CtCounter::ALL.iter().copied().find(|c| c.name() == name)
}

/// A window as a tally: the increase of each of `counts` the source has,
/// and per CPU the sum of the `loss` counters.
fn of_window<K: CounterSet>(w: &Window<K>, counts: &[(&'static str, K)], loss: &[K]) -> Tally {
    let cpu_loss = |r: &CpuRow<K>| loss.iter().map(|k| u64::from(r.get(*k).unwrap_or(0))).sum();
    let counts = counts.iter().filter_map(|&(n, k)| Some((n, w.sum(k)?)));
    Tally {
        counts: counts.collect(),
        per_cpu: w.per_cpu().iter().map(|r| (r.cpu, cpu_loss(r))).collect(),
    }
}

/// A conntrack window as a tally (loss per CPU: the loss counters summed).
pub fn conntrack(w: &Window<CtCounter>) -> Tally {
    let known = |c: &Counter| Some((c.name, ct_counter(c.name)?));
    let counts: Vec<_> = CONNTRACK.counters.iter().filter_map(known).collect();
    let loss = CONNTRACK.counters.iter().filter(|c| c.loss);
    let loss: Vec<_> = loss.filter_map(|c| ct_counter(c.name)).collect();
    of_window(w, &counts, &loss)
}

/// A UDP MIB increase as a tally (IPv4 and IPv6 added; no CPUs).
pub fn socket(d: &UdpStats) -> Tally {
    let counts = [
        ("rcvbuf_errors", d.rcvbuf_errors()),
        ("in_errors", d.in_errors()),
    ];
    let counts = counts.into_iter().filter_map(|(n, v)| Some((n, v?)));
    Tally {
        counts: counts.collect(),
        per_cpu: Vec::new(),
    }
}

/// A softnet window as a tally (loss per CPU: `dropped`).
pub fn backlog(w: &Window<SoftnetCounter>) -> Tally {
    use SoftnetCounter::{Dropped, TimeSqueeze};
    of_window(
        w,
        &[("dropped", Dropped), ("time_squeeze", TimeSqueeze)],
        &[Dropped],
    )
}
