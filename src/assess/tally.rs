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

use crate::kernel::percpu::{CounterSet, CpuRow, Window};
use crate::kernel::snmp::UdpStats;

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

/// The three drop points, in the order their events and the state list them.
pub static POINTS: [&Signal; 3] = [&CONNTRACK, &SOCKET, &BACKLOG];

fn conntrack_advice(t: &Tally) -> &'static str {
    // Only chaintoolong lost packets: the chains, not the size.
    if t.get("chaintoolong") > 0 && t.drops() == [0; 3] {
        "hash chains grew too long: too few buckets for max, raise [conntrack] \
         buckets (about max / 4)"
    } else {
        "the table is too small for the flow rate, raise [conntrack] max \
         (conntrack-guard plan --rate N)"
    }
}

/// The conntrack counters a full table raises: what the summary counts and
/// what triggers a growth.
pub const DROPS: [&str; 3] = ["drop", "early_drop", "insert_failed"];

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

    /// The increases of [`DROPS`], in that order.
    pub fn drops(&self) -> [u64; 3] {
        DROPS.map(|n| self.get(n))
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

/// The member of `K` named `name`, if the source has such a counter.
pub(super) fn counter<K: CounterSet>(name: &str) -> Option<K> {
    K::ALL.iter().copied().find(|k| k.name() == name)
}

/// A per-CPU window (conntrack, softnet) as a tally of `sig`: the increase
/// of each of its counters the source has, and per CPU the sum of the loss
/// counters.
pub fn of_window<K: CounterSet>(w: &Window<K>, sig: &Signal) -> Tally {
    let keys = || {
        sig.counters
            .iter()
            .filter_map(|c| Some((c, counter::<K>(c.name)?)))
    };
    let cpu_loss = |r: &CpuRow<K>| {
        let loss = keys().filter(|(c, _)| c.loss);
        loss.map(|(_, k)| u64::from(r.get(k).unwrap_or(0))).sum()
    };
    Tally {
        counts: keys()
            .filter_map(|(c, k)| Some((c.name, w.sum(k)?)))
            .collect(),
        per_cpu: w.per_cpu().iter().map(|r| (r.cpu, cpu_loss(r))).collect(),
    }
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
