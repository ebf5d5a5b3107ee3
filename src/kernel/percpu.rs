// SPDX-License-Identifier: MIT OR Apache-2.0
//! Per-CPU u32 counters: one table type for every per-CPU source, totals,
//! and the one place where deltas are taken.
//!
//! The kernel keeps the conntrack statistics (`struct ip_conntrack_stat`)
//! and the backlog statistics (`struct softnet_data`) as `unsigned int` per
//! CPU and prints them as `%08x`. Each CPU's value wraps at 2^32 on its own
//! schedule, so a sum taken first and differenced later is wrong after any
//! wrap: a delta is taken per CPU with wrapping u32 arithmetic, and only the
//! deltas are summed.
//!
//! # Rules of [`DeltaTracker`]
//! - **Wrap vs. reset.** A CPU's value that moved forward by less than 2^31
//!   (mod 2^32) grew by that much, across a wrap or not. A value that moved
//!   *backwards* (forward distance ≥ 2^31) was reset (the statistics were
//!   reallocated: module reload, netns recreated) and counts from zero: the
//!   delta is the new value. This is serial-number arithmetic (RFC 1982).
//!   It misreads only a CPU that counted ≥ 2^31 events in one window,
//!   which at a 1–10 s cadence is over 200 million events a second on one
//!   CPU; that would be undercounted, never invented.
//! - **A CPU that appears** (first reading, hotplug, a source that changed
//!   shape) is a baseline: its delta is 0 in that window. Its value is
//!   history since boot, most of it from before we looked; counting it from
//!   zero would report that whole history as new drops in one window, the
//!   false alarm this layer exists to prevent. The price is missing what it
//!   counted between coming online and our first look at it: at most one
//!   window on one CPU. (The conntrack statistics cover *possible* CPUs,
//!   which do not change at runtime, so there this only happens on the first
//!   reading; softnet_stat lists *online* CPUs only.)
//! - **A CPU that disappears** keeps its last value. When it comes back its
//!   delta is taken against that value: an offline CPU processes no packets,
//!   and the kernel keeps its per-CPU statistics across offline/online.
//! - **Rows without CPU ids** ([`CpuIds::RowOrder`]: softnet_stat before the
//!   cpu column) cannot be matched across a change in the number of rows, so
//!   such a change re-baselines every CPU.
//! - **A counter absent** from a reading stays `None`: never a false zero.

use std::marker::PhantomData;

/// A closed set of named per-CPU counters (the columns of one source).
pub trait CounterSet: Copy + Eq + std::fmt::Debug + 'static {
    /// Every member, in index order.
    const ALL: &'static [Self];
    /// Position in [`Self::ALL`].
    fn index(self) -> usize;
    /// Stable name, for logs, JSON and metric labels.
    fn name(self) -> &'static str;
}

/// A [`CounterSet`] enum with its `ALL` and its names, from one list.
macro_rules! counter_set {
    ($(#[$m:meta])* pub enum $t:ident { $($(#[$vm:meta])* $v:ident $name:literal,)* }) => {
        $(#[$m])*
        pub enum $t { $($(#[$vm])* $v,)* }

        impl $crate::kernel::percpu::CounterSet for $t {
            const ALL: &'static [Self] = &[$($t::$v,)*];
            fn index(self) -> usize {
                self as usize
            }
            fn name(self) -> &'static str {
                match self { $($t::$v => $name,)* }
            }
        }
    };
}
pub(crate) use counter_set;

/// How the rows of a table map to CPU numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuIds {
    /// The kernel named each CPU (netlink `res_id`, softnet's cpu column,
    /// or procfs rows that are one per possible CPU in order).
    Kernel,
    /// Only the row position is known (old softnet_stat: online CPUs only).
    RowOrder,
}

/// One CPU's values (or, in a [`Window`], its deltas).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuRow<K> {
    /// The CPU number (or the row position under [`CpuIds::RowOrder`]).
    pub cpu: u32,
    values: Vec<Option<u32>>,
    _k: PhantomData<K>,
}

impl<K: CounterSet> CpuRow<K> {
    fn empty(cpu: u32) -> Self {
        CpuRow {
            cpu,
            values: vec![None; K::ALL.len()],
            _k: PhantomData,
        }
    }

    /// The value of `k`, `None` when this source does not have it.
    pub fn get(&self, k: K) -> Option<u32> {
        self.values.get(k.index()).copied().flatten()
    }

    /// Set the value of `k`.
    pub fn set(&mut self, k: K, v: u32) {
        if let Some(slot) = self.values.get_mut(k.index()) {
            *slot = Some(v);
        }
    }
}

/// A reading of per-CPU counters, rows sorted by CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuTable<K> {
    rows: Vec<CpuRow<K>>,
    ids: CpuIds,
}

impl<K: CounterSet> CpuTable<K> {
    /// An empty table.
    pub fn new(ids: CpuIds) -> Self {
        CpuTable {
            rows: Vec::new(),
            ids,
        }
    }

    /// How rows map to CPUs.
    pub fn ids(&self) -> CpuIds {
        self.ids
    }

    /// The row for `cpu`, created empty if needed (a repeated CPU replaces
    /// the earlier row: a parser never yields two rows for one CPU).
    pub fn row_mut(&mut self, cpu: u32) -> &mut CpuRow<K> {
        let i = self.rows.partition_point(|r| r.cpu < cpu);
        if self.rows.get(i).is_some_and(|r| r.cpu == cpu) {
            self.rows.remove(i);
        }
        self.rows.insert(i, CpuRow::empty(cpu));
        &mut self.rows[i]
    }

    /// The rows, sorted by CPU.
    pub fn rows(&self) -> &[CpuRow<K>] {
        &self.rows
    }

    /// The value of `k` on `cpu`.
    pub fn get(&self, cpu: u32, k: K) -> Option<u32> {
        let i = self.rows.binary_search_by_key(&cpu, |r| r.cpu).ok()?;
        self.rows[i].get(k)
    }

    /// Whether any row has `k`.
    pub fn has(&self, k: K) -> bool {
        self.rows.iter().any(|r| r.get(k).is_some())
    }

    /// The sum over CPUs of the current values, for "since boot" display.
    /// This is not monotonic (a CPU's value wraps); use
    /// [`DeltaTracker::monotonic`] for a Prometheus counter. `None` when no
    /// CPU has the counter.
    pub fn total(&self, k: K) -> Option<u64> {
        let values = self.rows.iter().filter_map(|r| r.get(k));
        values.fold(None, |acc, v| Some(acc.unwrap_or(0) + u64::from(v)))
    }

    /// Number of CPU rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// The increase of one CPU's u32 counter from `then` to `now`; see the
/// module notes for why a backwards move is a reset counted from zero.
pub fn delta_u32(now: u32, then: u32) -> u32 {
    match now.wrapping_sub(then) {
        forward if forward < 1 << 31 => forward,
        _ => now,
    }
}

/// The share at which one CPU is said to carry a window's drops (issue 10:
/// one RSS queue or one IRQ taking the load).
pub const HOT_CPU_SHARE: f64 = 0.8;

/// What changed in one window: per-counter sums and per-CPU deltas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window<K> {
    sums: Vec<Option<u64>>,
    per_cpu: Vec<CpuRow<K>>,
    baseline: bool,
}

impl<K: CounterSet> Window<K> {
    /// The increase of `k` over all CPUs; `None` when the source lacks it.
    pub fn sum(&self, k: K) -> Option<u64> {
        self.sums.get(k.index()).copied().flatten()
    }

    /// Per-CPU increases (rows carry deltas, not values).
    pub fn per_cpu(&self) -> &[CpuRow<K>] {
        &self.per_cpu
    }

    /// True for the first window (every delta is 0 by construction).
    pub fn is_baseline(&self) -> bool {
        self.baseline
    }
}

/// Keeps the last value of every counter on every CPU and turns readings
/// into [`Window`]s. Holds state bounded by the number of CPUs.
#[derive(Debug, Clone)]
pub struct DeltaTracker<K> {
    last: Vec<CpuRow<K>>,
    last_ids: Option<CpuIds>,
    last_len: usize,
    monotonic: Vec<Option<u64>>,
    /// A previous watchdog's state, for the first reading (see
    /// [`DeltaTracker::resume`]).
    resume: Option<Saved>,
}

/// What a [`DeltaTracker`] hands to the next watchdog process so that its
/// monotonic totals continue instead of restarting from the raw per-CPU
/// sum (which is lower after a u32 wrap: a Prometheus counter must not
/// fall while the kernel's counters did not reset). The last raw value of
/// every counter on every CPU, and the totals that go with them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Saved {
    /// Rows were identified by the kernel's CPU number (not by position).
    pub kernel_ids: bool,
    /// `(cpu, values in CounterSet order)`.
    pub rows: Vec<(u32, Vec<Option<u32>>)>,
    /// The monotonic totals, in CounterSet order.
    pub totals: Vec<Option<u64>>,
}

/// A per-CPU value below this that reads lower later was reset, not
/// wrapped: a wrap from below 2^31 takes over 2^31 events on one CPU in the
/// time the watchdog was down. (The kernel resets the conntrack counters
/// only with a new nf_conntrack; softnet's only with a reboot, which the
/// boot id catches.)
const RESET_BELOW: u32 = 1 << 31;

impl<K: CounterSet> Default for DeltaTracker<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: CounterSet> DeltaTracker<K> {
    /// A tracker that has seen nothing.
    pub fn new() -> Self {
        DeltaTracker {
            last: Vec::new(),
            last_ids: None,
            last_len: 0,
            monotonic: vec![None; K::ALL.len()],
            resume: None,
        }
    }

    /// The state to hand to the next watchdog process; `None` before the
    /// first reading.
    pub fn save(&self) -> Option<Saved> {
        let ids = self.last_ids?;
        let rows = self.last.iter().map(|r| (r.cpu, r.values.clone()));
        Some(Saved {
            kernel_ids: ids == CpuIds::Kernel,
            rows: rows.collect(),
            totals: self.monotonic.clone(),
        })
    }

    /// Continue a previous process's totals from its [`Saved`] state (same
    /// boot): the first reading stays a baseline for the windows (a restart
    /// does not report what happened while it was down as a new increase),
    /// but the totals become the saved ones plus each CPU's wrapping
    /// increase since. A saved state that does not fit the first reading
    /// (other CPU identification, a counter that was reset) is dropped and
    /// the totals start from the raw sum, as without one.
    pub fn resume(&mut self, saved: Saved) {
        if saved.totals.len() == K::ALL.len()
            && saved.rows.iter().all(|r| r.1.len() == K::ALL.len())
        {
            self.resume = Some(saved);
        }
    }

    /// The totals a saved state gives for this first reading, if it fits.
    fn resumed_totals(saved: &Saved, table: &CpuTable<K>) -> Option<Vec<Option<u64>>> {
        let kernel_ids = table.ids == CpuIds::Kernel;
        if saved.kernel_ids != kernel_ids || (!kernel_ids && saved.rows.len() != table.len()) {
            return None;
        }
        let mut out = saved.totals.clone();
        for (j, total) in out.iter_mut().enumerate() {
            let mut sum = 0u64;
            for row in &table.rows {
                let Some(now) = row.values[j] else { continue };
                let then = saved.rows.iter().find(|r| r.0 == row.cpu);
                sum += match then.and_then(|r| r.1[j]) {
                    Some(then) if now < then && then < RESET_BELOW => return None,
                    Some(then) => u64::from(delta_u32(now, then)),
                    // A CPU (or counter) the previous process did not see:
                    // everything it counted is new to the total.
                    None => u64::from(now),
                };
            }
            *total = total.map_or_else(|| table.total(K::ALL[j]), |t| Some(t.saturating_add(sum)));
        }
        Some(out)
    }

    /// Take a reading; return what changed since the previous one.
    pub fn step(&mut self, table: &CpuTable<K>) -> Window<K> {
        let baseline = self.last_ids.is_none();
        let saved = self.resume.take().filter(|_| baseline);
        let resumed = saved.and_then(|s| Self::resumed_totals(&s, table));
        // Rows known only by position cannot be matched once their number
        // changes; neither can rows across a change of identification.
        let rebase = self.last_ids != Some(table.ids)
            || (table.ids == CpuIds::RowOrder && self.last_len != table.len());
        if rebase {
            self.last.clear();
        }
        let mut sums = vec![None; K::ALL.len()];
        let mut per_cpu = Vec::with_capacity(table.len());
        for row in &table.rows {
            let prev = self.last.partition_point(|r| r.cpu < row.cpu);
            if self.last.get(prev).map_or(true, |r| r.cpu != row.cpu) {
                self.last.insert(prev, CpuRow::empty(row.cpu));
            }
            let (last, mut d) = (&mut self.last[prev].values, CpuRow::<K>::empty(row.cpu));
            for (j, slot) in d.values.iter_mut().enumerate() {
                // A new CPU or a newly present counter: baseline (0).
                *slot = row.values[j].map(|now| last[j].map_or(0, |then| delta_u32(now, then)));
                if let Some(v) = *slot {
                    *sums[j].get_or_insert(0) += u64::from(v);
                }
                // A counter missing from this reading keeps its last value.
                last[j] = row.values[j].or(last[j]);
            }
            per_cpu.push(d);
        }
        for (j, k) in K::ALL.iter().enumerate() {
            self.monotonic[j] = match self.monotonic[j] {
                Some(m) => Some(m.saturating_add(sums[j].unwrap_or(0))),
                // First sight of this counter: continue a previous
                // process's total, else start at its since-boot sum.
                None => (resumed.as_ref().and_then(|r| r[j])).or_else(|| table.total(*k)),
            };
        }
        self.last_ids = Some(table.ids);
        self.last_len = table.len();
        Window {
            sums,
            per_cpu,
            baseline,
        }
    }

    /// A total that never goes backwards: the since-boot sum at the first
    /// reading plus every window's increase since. This is the value to
    /// export as a Prometheus counter. `None` until the counter was seen.
    pub fn monotonic(&self, k: K) -> Option<u64> {
        self.monotonic.get(k.index()).copied().flatten()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A two-counter set for the tests of this module.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum T {
        A,
        B,
    }
    impl CounterSet for T {
        const ALL: &'static [Self] = &[T::A, T::B];
        fn index(self) -> usize {
            self as usize
        }
        fn name(self) -> &'static str {
            match self {
                T::A => "a",
                T::B => "b",
            }
        }
    }

    fn table(ids: CpuIds, rows: &[(u32, Option<u32>, Option<u32>)]) -> CpuTable<T> {
        let mut t = CpuTable::new(ids);
        for &(cpu, a, b) in rows {
            let r = t.row_mut(cpu);
            if let Some(a) = a {
                r.set(T::A, a);
            }
            if let Some(b) = b {
                r.set(T::B, b);
            }
        }
        t
    }

    /// A restart of the watchdog (a new tracker) after a u32 wrap: with the
    /// saved state the total continues, across another wrap during the
    /// downtime too; without it, it would restart from the raw sum, almost
    /// 2^32 lower.
    #[test]
    fn totals_stay_monotonic_across_a_restart_after_a_wrap() {
        let high = u32::MAX - 200;
        let mut before = DeltaTracker::new();
        before.step(&table(
            CpuIds::Kernel,
            &[(0, Some(u32::MAX - 9), Some(7)), (1, Some(high), None)],
        ));
        // CPU 0 wraps (+30), CPU 1 counts +5.
        before.step(&table(
            CpuIds::Kernel,
            &[(0, Some(20), Some(7)), (1, Some(high + 5), None)],
        ));
        let exported = before.monotonic(T::A).unwrap();
        assert_eq!(exported, u64::from(u32::MAX) - 9 + u64::from(high) + 35);
        let saved = before.save().unwrap();
        // Through the file, as the next process reads it.
        let saved: Saved = serde_json::from_str(&serde_json::to_string(&saved).unwrap()).unwrap();

        // The restart: CPU 0 +50 in the downtime, CPU 1 wraps (196 up to
        // 2^32, then 10), and a CPU 2 comes online with 3.
        let now = table(
            CpuIds::Kernel,
            &[
                (0, Some(70), Some(9)),
                (1, Some(10), None),
                (2, Some(3), None),
            ],
        );
        let mut naive = DeltaTracker::new();
        naive.step(&now);
        assert!(
            naive.monotonic(T::A).unwrap() < exported,
            "the defect: a fall"
        );

        let mut after = DeltaTracker::new();
        after.resume(saved);
        let w = after.step(&now);
        assert!(w.is_baseline(), "the downtime is not a new window");
        let downtime = 50 + (196 + 10) + 3;
        assert_eq!(after.monotonic(T::A), Some(exported + downtime));
        assert_eq!(after.monotonic(T::B), Some(7 + 2));
        // And it goes on from there.
        after.step(&table(
            CpuIds::Kernel,
            &[
                (0, Some(71), Some(9)),
                (1, Some(10), None),
                (2, Some(3), None),
            ],
        ));
        assert_eq!(after.monotonic(T::A), Some(exported + downtime + 1));
    }

    /// Counters that restarted from zero (a new nf_conntrack while the
    /// watchdog was down) are a reset: the saved totals are dropped.
    #[test]
    fn a_reset_during_the_restart_drops_the_saved_totals() {
        let mut before = DeltaTracker::new();
        before.step(&table(CpuIds::Kernel, &[(0, Some(5000), None)]));
        let saved = before.save().unwrap();
        let mut after = DeltaTracker::new();
        after.resume(saved);
        after.step(&table(CpuIds::Kernel, &[(0, Some(12), None)]));
        assert_eq!(after.monotonic(T::A), Some(12));
        // Row-order tables of another length cannot be matched either.
        let mut before = DeltaTracker::new();
        before.step(&table(CpuIds::RowOrder, &[(0, Some(5), None)]));
        let mut after = DeltaTracker::new();
        after.resume(before.save().unwrap());
        after.step(&table(
            CpuIds::RowOrder,
            &[(0, Some(9), None), (1, Some(4), None)],
        ));
        assert_eq!(after.monotonic(T::A), Some(13));
    }

    #[test]
    fn wrap_on_one_cpu_while_another_counts() {
        let mut tr = DeltaTracker::new();
        let w = tr.step(&table(
            CpuIds::Kernel,
            &[(0, Some(u32::MAX - 9), None), (1, Some(100), None)],
        ));
        assert!(w.is_baseline());
        assert_eq!(w.sum(T::A), Some(0));
        assert_eq!(w.sum(T::B), None, "absent stays absent, not 0");
        assert_eq!(tr.monotonic(T::A), Some(u64::from(u32::MAX) - 9 + 100));
        // CPU 0 crosses 2^32 (+30), CPU 1 counts +5.
        let w = tr.step(&table(
            CpuIds::Kernel,
            &[(0, Some(20), None), (1, Some(105), None)],
        ));
        assert_eq!(w.sum(T::A), Some(35));
        assert_eq!(w.per_cpu()[0].get(T::A), Some(30));
        assert_eq!(w.per_cpu()[1].get(T::A), Some(5));
        assert_eq!(tr.monotonic(T::A), Some(u64::from(u32::MAX) - 9 + 100 + 35));
        // The naive sum went down by almost 2^32; the monotonic total did not.
        assert!(
            table(CpuIds::Kernel, &[(0, Some(20), None), (1, Some(105), None)])
                .total(T::A)
                .unwrap()
                < u64::from(u32::MAX)
        );
    }

    #[test]
    fn reset_counts_from_zero() {
        let mut tr = DeltaTracker::new();
        tr.step(&table(CpuIds::Kernel, &[(0, Some(1000), None)]));
        let w = tr.step(&table(CpuIds::Kernel, &[(0, Some(7), None)]));
        assert_eq!(w.sum(T::A), Some(7));
    }

    #[test]
    fn hotplug_is_a_baseline_and_a_return_continues() {
        let mut tr = DeltaTracker::new();
        tr.step(&table(
            CpuIds::Kernel,
            &[(0, Some(10), None), (2, Some(50), None)],
        ));
        // CPU 2 goes offline, CPU 0 counts.
        let w = tr.step(&table(CpuIds::Kernel, &[(0, Some(12), None)]));
        assert_eq!(w.sum(T::A), Some(2));
        // CPU 1 appears with history: baseline, not 5000 new events.
        // CPU 2 returns: counted from its last value.
        let w = tr.step(&table(
            CpuIds::Kernel,
            &[
                (0, Some(12), None),
                (1, Some(5000), None),
                (2, Some(53), None),
            ],
        ));
        assert_eq!(w.sum(T::A), Some(3));
        let w = tr.step(&table(
            CpuIds::Kernel,
            &[
                (0, Some(12), None),
                (1, Some(5001), None),
                (2, Some(53), None),
            ],
        ));
        assert_eq!(w.sum(T::A), Some(1));
    }

    #[test]
    fn row_order_tables_rebase_when_rows_change() {
        let mut tr = DeltaTracker::new();
        tr.step(&table(
            CpuIds::RowOrder,
            &[(0, Some(10), None), (1, Some(500), None)],
        ));
        // A CPU went offline: row 1 is now another CPU. No false delta.
        let w = tr.step(&table(CpuIds::RowOrder, &[(0, Some(900), None)]));
        assert_eq!(w.sum(T::A), Some(0));
        let w = tr.step(&table(CpuIds::RowOrder, &[(0, Some(901), None)]));
        assert_eq!(w.sum(T::A), Some(1));
    }

    #[test]
    fn counter_missing_for_one_reading_is_not_zero() {
        let mut tr = DeltaTracker::new();
        tr.step(&table(CpuIds::Kernel, &[(0, Some(10), Some(1))]));
        let w = tr.step(&table(CpuIds::Kernel, &[(0, Some(11), None)]));
        assert_eq!((w.sum(T::A), w.sum(T::B)), (Some(1), None));
        assert_eq!(tr.monotonic(T::B), Some(1));
        let w = tr.step(&table(CpuIds::Kernel, &[(0, Some(11), Some(4))]));
        assert_eq!(w.sum(T::B), Some(3));
    }

    proptest::proptest! {
        /// Any sequence of readings: no panic, and the monotonic total
        /// never goes down.
        #[test]
        fn never_panics_never_decreases(
            readings in proptest::collection::vec(
                (proptest::bool::ANY,
                 proptest::collection::vec(
                    (0u32..6, proptest::option::of(proptest::num::u32::ANY),
                     proptest::option::of(proptest::num::u32::ANY)), 0..6)),
                0..12)
        ) {
            let mut tr = DeltaTracker::new();
            let mut prev = (0u64, 0u64);
            for (by_row, rows) in readings {
                let ids = if by_row { CpuIds::RowOrder } else { CpuIds::Kernel };
                tr.step(&table(ids, &rows));
                let now = (tr.monotonic(T::A).unwrap_or(0), tr.monotonic(T::B).unwrap_or(0));
                proptest::prop_assert!(now.0 >= prev.0 && now.1 >= prev.1);
                prev = now;
            }
        }

        /// Per-CPU increases below 2^31 are measured exactly, wraps and all.
        #[test]
        fn deltas_equal_true_increase(
            start in proptest::collection::vec(proptest::num::u32::ANY, 1..8),
            steps in proptest::collection::vec(
                proptest::collection::vec(0u32..(1 << 31), 8), 1..6)
        ) {
            let mut tr = DeltaTracker::new();
            let mut cur = start.clone();
            let mk = |v: &[u32]| {
                let rows: Vec<_> = v.iter().enumerate().map(|(i, &a)| (i as u32, Some(a), None)).collect();
                table(CpuIds::Kernel, &rows)
            };
            tr.step(&mk(&cur));
            let mut truth = 0u64;
            for inc in steps {
                let mut want = 0u64;
                for (c, i) in cur.iter_mut().zip(&inc) {
                    *c = c.wrapping_add(*i);
                    want += u64::from(*i);
                }
                truth += want;
                let w = tr.step(&mk(&cur));
                proptest::prop_assert_eq!(w.sum(T::A), Some(want));
            }
            let first: u64 = start.iter().map(|&v| u64::from(v)).sum();
            proptest::prop_assert_eq!(tr.monotonic(T::A), Some(first + truth));
        }
    }
}
