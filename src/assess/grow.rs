// SPDX-License-Identifier: MIT OR Apache-2.0
//! Growth: the watchdog raises `nf_conntrack_max` itself, within a memory
//! budget, when the table fills or drops (issue 20, "When and how much").
//!
//! max is only a ceiling: raising it allocates nothing until entries fill
//! it, so the safe answer to a full table is a higher ceiling, bounded by
//! the worst-case memory the operator allows. The rules, each a line below:
//! - **trigger**: the fullest watched namespace at `critical_percent` of
//!   max (max is one global ceiling each namespace's count is held
//!   against), or drop, early_drop or insert_failed rising in any of them;
//! - **how much**: the larger of 2 x max and what `plan` sizes for the
//!   new-flow rate seen ([`crate::assess::sizing::size_for`]), capped by the budget
//!   and the kernel's limit; buckets towards max / 4 as the kernel rounds
//!   them, but only while a live resize is cheap (it rehashes every entry
//!   under a global lock), else they are left for the next boot;
//! - **bounded**: at most one growth per `every`; nothing is ever lowered;
//!   a max the operator set at or above the budget is left alone;
//! - **said once**: when the budget binds, one `grow_limited`, then silence
//!   until the budget, the max or the load changes (what it needs more than
//!   doubles).
//!
//! Pure: the caller samples, calls [`GrowTracker::step`], writes what the
//! returned [`Growth`] says (max first, then buckets, timing that write),
//! and logs [`GrowStep::events`] with the stall it measured.

use std::fmt::Write as _;
use std::time::Duration;

use crate::assess::sizing::{cap_max, size_for, DEFAULT_HEADROOM};
use crate::assess::{Fill, Setting, DROPS};
use crate::config::{KEY_BUCKETS, KEY_MAX, MAX_CONNTRACK_MAX};
use crate::kernel::hashsize::kernel_buckets;
use crate::kernel::slab::{worst_case_bytes, DEFAULT_ENTRY_BYTES};
use crate::report::events::{Event, Priority};
use crate::report::ids;
use crate::report::table::human_bytes;

/// Entries up to which buckets are resized live with max. The resize
/// rehashes every entry of the global table with bottom halves off,
/// stalling packets on every CPU; measured (README "Bucket resize stall",
/// tests/bench/stall.sh) at about 10 ms plus 0.45 µs per entry: 13 ms
/// median at 10 000 entries, 62 ms at 100 000, 472 ms at 1 000 000. At
/// 50 000 entries the stall stays near 35-50 ms, which a UDP service
/// absorbs as jitter; above it max is raised alone and the buckets wait
/// for the next boot, where apply sizes them before the table fills.
pub const LIVE_RESIZE_LIMIT: u64 = 50_000;

/// How growth is bounded. Plain values: the caller builds it from the
/// `[grow]` and `[watch]` sections and the RAM.
#[derive(Debug, Clone, PartialEq)]
pub struct GrowPolicy {
    /// Worst-case memory the table may take at the grown max, in bytes.
    pub budget_bytes: u64,
    /// At most one growth per this long.
    pub every: Duration,
    /// Grow when the fullest namespace reaches this fill (percent).
    pub critical_percent: f64,
}

/// What one sample saw, as plain values.
#[derive(Debug, Clone, PartialEq)]
pub struct GrowSample {
    /// nf_conntrack_max now.
    pub max: u64,
    /// nf_conntrack_buckets now (0 when unknown: then never resized).
    pub buckets: u64,
    /// The page size (the kernel rounds buckets to a page of pointers).
    pub page_size: u64,
    /// The count of the fullest watched namespace.
    pub fullest_count: u64,
    /// Which namespace that is, e.g. `host` or `netns 4026532246
    /// (container tracker)`.
    pub fullest_label: String,
    /// Entries in the whole hash table, every namespace together: a bucket
    /// resize rehashes all of them. The fullest count when nothing better
    /// is known.
    pub table_count: u64,
    /// Rises of [`DROPS`] in this sample, all watched namespaces together.
    pub rises: [u64; 3],
    /// New flows per second over the last window, when known.
    pub new_flow_rate: Option<f64>,
    /// The timeout that holds those flows (`nf_conntrack_udp_timeout` on
    /// kernels with the 2-second rule, see [`crate::assess::sizing`]), seconds.
    pub udp_timeout: u64,
    /// Bytes per entry ([`crate::kernel::slab::entry_bytes`]); 0 means
    /// unknown and counts as the default.
    pub entry_bytes: u64,
}

impl GrowSample {
    fn entry_bytes(&self) -> u64 {
        match self.entry_bytes {
            0 => DEFAULT_ENTRY_BYTES,
            b => b,
        }
    }

    /// Buckets at `max`: towards max / 4 as the kernel rounds them when
    /// resized live, never fewer than now.
    fn buckets_at(&self, max: u64, live: bool) -> u64 {
        match live {
            true => kernel_buckets(max / 4, self.page_size).max(self.buckets),
            false => self.buckets,
        }
    }
}

/// One growth to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Growth {
    /// max before.
    pub max_before: u64,
    /// max to write (always above `max_before`).
    pub max_after: u64,
    /// Buckets before.
    pub buckets_before: u64,
    /// Buckets to write when different (never fewer than before).
    pub buckets_after: u64,
    /// Why, e.g. `fill 96% in host, early_drop +1234`, with a note when
    /// buckets are left for the next boot or the budget capped it.
    pub reason: String,
    /// Worst-case memory at the new max and buckets, bytes.
    pub memory_worst: u64,
    /// The budget, bytes.
    pub budget: u64,
}

impl Growth {
    /// Whether buckets are to be written too.
    pub fn buckets_changed(&self) -> bool {
        self.buckets_after != self.buckets_before
    }

    /// The buckets could not be written (the max was): the growth is
    /// reported with the buckets unchanged, and why.
    pub fn buckets_failed(&mut self, why: &str) {
        let dropped = self.buckets_after.saturating_sub(self.buckets_before);
        self.memory_worst = self
            .memory_worst
            .saturating_sub(dropped.saturating_mul(crate::kernel::slab::BUCKET_BYTES));
        self.buckets_after = self.buckets_before;
        let _ = write!(self.reason, "; buckets not resized: {why}");
    }

    /// The `grown` event, with the stall of the bucket write when it was
    /// timed (`CONNTRACK_RESIZE_STALL_US`).
    pub fn event(&self, stall: Option<Duration>) -> Event {
        let (before, after, reason) = (self.max_before, self.max_after, &self.reason);
        let changed = self.buckets_changed();
        let (b0, b1) = (self.buckets_before, self.buckets_after);
        let buckets = match changed {
            true => format!(", buckets {b0} → {b1}"),
            false => String::new(),
        };
        let stall = stall.filter(|_| changed);
        let us = stall.map(|d| format!(" (the resize stalled packets for {} µs)", d.as_micros()));
        let stall_text = us.unwrap_or_default();
        let (worst, budget) = (human_bytes(self.memory_worst), human_bytes(self.budget));
        let msg = format!(
            "conntrack table grown: max {before} → {after}{buckets}{stall_text} after {reason}; \
             worst case {worst} of the {budget} budget"
        );
        Event::new(Priority::Warning, "grown", ids::GROWN, msg)
            .field("CONNTRACK_MAX_BEFORE", self.max_before)
            .field("CONNTRACK_MAX_AFTER", self.max_after)
            .field("CONNTRACK_BUCKETS_BEFORE", self.buckets_before)
            .field("CONNTRACK_BUCKETS_AFTER", self.buckets_after)
            .field("CONNTRACK_GROW_REASON", &self.reason)
            .field("CONNTRACK_MEMORY_WORST", self.memory_worst)
            .field("CONNTRACK_GROW_BUDGET", self.budget)
            .field_opt("CONNTRACK_RESIZE_STALL_US", stall.map(|d| d.as_micros()))
    }
}

/// What one sample decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GrowStep {
    /// The growth to write, if any.
    pub growth: Option<Growth>,
    /// The `grow_limited` event, when the budget binds (once).
    pub limited: Option<Event>,
}

impl GrowStep {
    /// The events in journal order, once max was written: `grown` (with
    /// the measured bucket-resize stall) then `grow_limited`. When the max
    /// write failed, log the failure instead and call
    /// [`GrowTracker::write_failed`]; when only buckets failed, call
    /// [`Growth::buckets_failed`] first.
    pub fn events(self, stall: Option<Duration>) -> Vec<Event> {
        let grown = self.growth.map(|g| g.event(stall));
        grown.into_iter().chain(self.limited).collect()
    }
}

/// The `grow_limited` already logged, and what it was about: logged again
/// only when one of these changes (the load only when what it needs more than doubles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitedNote {
    /// The budget's cap on max.
    pub cap: u64,
    /// The max the table was left at.
    pub max: u64,
    /// What plan sized for the new-flow rate then (0 when unknown).
    pub rate_max: u64,
}

/// The growth concern: its state between samples. A restarted watchdog
/// starts from [`GrowTracker::resumed`] with this boot's record, so a max
/// it grew to before is still known as its own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GrowTracker {
    /// When the last growth was decided.
    pub last_at: Option<Duration>,
    /// Growths since the watchdog started.
    pub grown: u32,
    /// The max the last growth set: a max at the cap that the watchdog
    /// did not set is the operator's, and is left alone in silence.
    pub ours: Option<u64>,
    /// The last `grow_limited`.
    pub limited: Option<LimitedNote>,
}

impl GrowTracker {
    /// One sample: grow, say the budget binds, or nothing.
    pub fn step(&mut self, p: &GrowPolicy, s: &GrowSample, now: Duration) -> GrowStep {
        let recent = self
            .last_at
            .is_some_and(|at| now.saturating_sub(at) < p.every);
        let trigger = trigger(p, s).filter(|_| s.max > 0 && s.max < MAX_CONNTRACK_MAX && !recent);
        let Some(trigger) = trigger else {
            return GrowStep::default();
        };
        let bpe = s.entry_bytes();
        // A bucket resize only while it is cheap enough to do now.
        let live = s.buckets > 0 && s.table_count <= LIVE_RESIZE_LIMIT;
        let cap = cap_max(p.budget_bytes, bpe, |m| s.buckets_at(m, live));
        let rate_max = s
            .new_flow_rate
            .map_or(0, |r| size_for(r, s.udp_timeout, DEFAULT_HEADROOM).max);
        let needed = s.max.saturating_mul(2).max(rate_max).min(MAX_CONNTRACK_MAX);
        let max = s.max;
        let note = LimitedNote { cap, max, rate_max };
        if cap <= s.max {
            // At the budget already: the operator's max is kept in silence;
            // the max we grew to is said once more only when something
            // changed since the last word.
            let again = self.ours == Some(s.max) && self.limited_again(note);
            let limited = again.then(|| limited_event(p, s, &trigger, needed, live));
            self.limited = if again { Some(note) } else { self.limited };
            return GrowStep {
                growth: None,
                limited,
            };
        }
        let max_after = needed.min(cap);
        let target = kernel_buckets(max_after / 4, s.page_size);
        let buckets_after = s.buckets_at(max_after, live);
        let mut reason = trigger.clone();
        if rate_max > s.max.saturating_mul(2) {
            let (rate, held) = (s.new_flow_rate.unwrap_or(0.0), s.udp_timeout);
            let _ = write!(
                reason,
                "; sized by plan for {rate:.0} new flows/s held {held} s"
            );
        }
        if max_after < needed {
            let _ = write!(reason, "; capped by the budget (wanted {needed})");
        }
        if !live && s.buckets > 0 && target > s.buckets {
            let (kept, n) = (s.buckets, s.table_count);
            let _ = write!(
                reason,
                "; buckets stay {kept} until the next boot: a live resize of {n} entries \
                 (limit {LIVE_RESIZE_LIMIT}) would stall packets"
            );
        }
        let growth = Growth {
            max_before: s.max,
            max_after,
            buckets_before: s.buckets,
            buckets_after,
            reason,
            memory_worst: worst_case_bytes(max_after, buckets_after, bpe),
            budget: p.budget_bytes,
        };
        self.last_at = Some(now);
        self.grown = self.grown.saturating_add(1);
        self.ours = Some(max_after);
        let limited = (max_after < needed).then(|| {
            let after = GrowSample {
                max: max_after,
                buckets: buckets_after,
                ..s.clone()
            };
            self.limited = Some(LimitedNote {
                max: max_after,
                ..note
            });
            limited_event(p, &after, &trigger, needed, live)
        });
        GrowStep {
            growth: Some(growth),
            limited,
        }
    }

    /// A tracker that knows `max` as its own growth (from this boot's
    /// record, [`crate::state::grown::THIS_BOOT`]), so at the budget it says
    /// `grow_limited` once rather than taking the max for the operator's.
    pub fn resumed(max: u64) -> Self {
        GrowTracker {
            ours: Some(max),
            ..GrowTracker::default()
        }
    }

    /// The caller could not write the growth: it does not count and is not
    /// ours. The `every` interval still holds, so a failing write is tried
    /// at most once per interval.
    pub fn write_failed(&mut self) {
        self.grown = self.grown.saturating_sub(1);
        self.ours = None;
        self.limited = None;
    }

    /// The status-line fragment: `grown ×2 since start` once this process
    /// grew the table; before that, `grown to 524288 earlier this boot`
    /// when it resumed from this boot's record (which keeps the last growth,
    /// not how many there were).
    pub fn status_fragment(&self) -> Option<String> {
        match (self.grown, self.ours) {
            (0, Some(max)) => Some(format!("grown to {max} earlier this boot")),
            (0, None) => None,
            (n, _) => Some(format!("grown ×{n} since start")),
        }
    }

    /// Whether `max` is the one the last `grow_limited` left the table at:
    /// the budget binds now (the metrics' `grow_limited` gauge).
    pub fn at_budget(&self, max: u64) -> bool {
        self.limited
            .is_some_and(|l| l.max == max && self.ours == Some(max))
    }

    fn limited_again(&self, note: LimitedNote) -> bool {
        // The rate is estimated over a window that starts before a ramp-up:
        // its plan size climbs a rounding step or two while the load
        // settles. Only more than twice the need said is news.
        self.limited.map_or(true, |l| {
            l.cap != note.cap || l.max != note.max || note.rate_max > l.rate_max.saturating_mul(2)
        })
    }
}

/// Why to grow, or `None`: `fill 96% in host`, `early_drop +1234`, ...
fn trigger(p: &GrowPolicy, s: &GrowSample) -> Option<String> {
    let mut parts = Vec::new();
    let (count, max) = (s.fullest_count, s.max);
    let fill = Fill { count, max }.percent();
    if fill >= p.critical_percent {
        parts.push(format!("fill {fill:.0}% in {}", s.fullest_label));
    }
    let rose = DROPS.iter().zip(s.rises).filter(|(_, rise)| *rise > 0);
    parts.extend(rose.map(|(name, rise)| format!("{name} +{rise}")));
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// `grow_limited`: the budget, what it allows, and what the load needs.
fn limited_event(p: &GrowPolicy, s: &GrowSample, trigger: &str, needed: u64, live: bool) -> Event {
    let bpe = s.entry_bytes();
    let worst = worst_case_bytes(s.max, s.buckets, bpe);
    let need_bytes = worst_case_bytes(needed, s.buckets_at(needed, live), bpe);
    let (max, budget) = (s.max, human_bytes(p.budget_bytes));
    let (worst_text, need_text) = (human_bytes(worst), human_bytes(need_bytes));
    let msg = format!(
        "conntrack table at its memory budget: max {max} may take {worst_text} of the {budget} \
         budget; {trigger}; max {needed} would need {need_text}. Raise [grow] budget, or \
         shorten the UDP timeouts so fewer entries are held"
    );
    Event::new(Priority::Warning, "grow_limited", ids::GROW_LIMITED, msg)
        .field("CONNTRACK_MAX", s.max)
        .field("CONNTRACK_GROW_NEEDED", needed)
        .field("CONNTRACK_MEMORY_WORST", worst)
        .field("CONNTRACK_MEMORY_NEEDED", need_bytes)
        .field("CONNTRACK_GROW_BUDGET", p.budget_bytes)
        .field("CONNTRACK_GROW_REASON", trigger)
}

/// The watchdog's own growth is not drift: where it grew max (and
/// buckets) above what the configuration expects, the grown value becomes
/// the expected one, so the watchdog neither reports its own growth as
/// drift nor lets `[watch] restore` write the configured, lower value back
/// over it. A kernel value below the grown one (a foreign writer lowered
/// it) is still drift against the grown value. `own` is the growth this
/// process made or resumed: (max, buckets).
pub fn own_growth(settings: &mut [Setting], own: Option<(u64, u64)>) {
    let Some((max, buckets)) = own else { return };
    for set in settings {
        let grown = match set.key.as_str() {
            KEY_MAX => max,
            KEY_BUCKETS => buckets,
            _ => continue,
        };
        if set.expected.trim().parse::<u64>().is_ok_and(|e| grown > e) {
            set.expected = grown.to_string();
        }
    }
}

/// New flows per second seen over a window, from readings of `seen`: the
/// entries held in every watched namespace plus the running sum of the
/// drop, early_drop and insert_failed rises. Each new flow either takes an
/// entry, evicts one early, or is refused, so the rise of `seen` is a lower
/// bound on new flows (entries expiring meanwhile make it lower still) that
/// works on kernels that no longer count `insert`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowWindow {
    readings: std::collections::VecDeque<(Duration, u64)>,
}

impl FlowWindow {
    /// Add the reading at `at` (time since start), forget those older than
    /// `window`, and return the rate from the oldest kept reading, if one
    /// is older than this one. A fall (entries expired) is 0, not negative.
    pub fn rate(&mut self, at: Duration, seen: u64, window: Duration) -> Option<f64> {
        self.readings
            .retain(|(t, _)| at.saturating_sub(*t) <= window);
        let rate = self.readings.front().and_then(|&(t, before)| {
            let secs = at.saturating_sub(t).as_secs_f64();
            (secs > 0.0).then(|| seen.saturating_sub(before) as f64 / secs)
        });
        self.readings.push_back((at, seen));
        rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn policy(budget: u64) -> GrowPolicy {
        GrowPolicy {
            budget_bytes: budget,
            every: Duration::from_secs(10),
            critical_percent: 95.0,
        }
    }

    /// A full host table of `max` with buckets max / 4, nothing dropped.
    fn full(max: u64) -> GrowSample {
        GrowSample {
            max,
            buckets: kernel_buckets(max / 4, 4096),
            page_size: 4096,
            fullest_count: max,
            fullest_label: "host".into(),
            table_count: max,
            rises: [0; 3],
            new_flow_rate: None,
            udp_timeout: 30,
            entry_bytes: 384,
        }
    }

    fn quiet(max: u64) -> GrowSample {
        GrowSample {
            fullest_count: max / 2,
            table_count: max / 2,
            ..full(max)
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn no_trigger_no_growth() {
        let mut t = GrowTracker::default();
        assert_eq!(
            t.step(&policy(1 << 40), &quiet(1024), secs(0)),
            GrowStep::default()
        );
        // 94% is below the critical 95%.
        let s = GrowSample {
            fullest_count: 962,
            ..quiet(1024)
        };
        assert_eq!(t.step(&policy(1 << 40), &s, secs(0)), GrowStep::default());
        assert_eq!(t.status_fragment(), None);
    }

    #[test]
    fn fill_doubles_max_and_buckets_towards_a_quarter() {
        let mut t = GrowTracker::default();
        let s = GrowSample {
            fullest_count: 1000,
            fullest_label: "netns 4026532246 (container tracker)".into(),
            ..quiet(1024)
        };
        let g = t.step(&policy(1 << 40), &s, secs(0)).growth.unwrap();
        assert_eq!((g.max_before, g.max_after), (1024, 2048));
        // 2048 / 4 = 512: one page of bucket pointers.
        assert_eq!((g.buckets_before, g.buckets_after), (512, 512));
        assert!(!g.buckets_changed());
        assert_eq!(g.reason, "fill 98% in netns 4026532246 (container tracker)");
        assert_eq!(g.memory_worst, 2048 * 384 + 512 * 8);
        let ev = g.event(None);
        assert_eq!(ev.name, "grown");
        assert_eq!(ev.id, ids::GROWN);
        assert_eq!(ev.priority, Priority::Warning);
        assert_eq!(ev.get("CONNTRACK_MAX_BEFORE"), Some("1024"));
        assert_eq!(ev.get("CONNTRACK_MAX_AFTER"), Some("2048"));
        assert_eq!(ev.get("CONNTRACK_BUCKETS_AFTER"), Some("512"));
        assert_eq!(ev.get("CONNTRACK_GROW_BUDGET"), Some("1099511627776"));
        assert_eq!(ev.get("CONNTRACK_RESIZE_STALL_US"), None);
        assert_eq!(t.status_fragment().as_deref(), Some("grown ×1 since start"));
    }

    #[test]
    fn drops_trigger_and_buckets_round_as_the_kernel_does() {
        let mut t = GrowTracker::default();
        // max 250000 with 62976 buckets; 2x = 500000, / 4 = 125000, which
        // the kernel stores as 125440 (a multiple of 512).
        let s = GrowSample {
            max: 250_000,
            buckets: 62_976,
            rises: [7, 1234, 0],
            table_count: 50_000,
            ..quiet(250_000)
        };
        let step = t.step(&policy(1 << 40), &s, secs(0));
        let g = step.growth.clone().unwrap();
        assert_eq!(g.max_after, 500_000);
        assert_eq!(g.buckets_after, 125_440);
        assert_eq!(g.reason, "drop +7, early_drop +1234");
        let evs = step.events(Some(Duration::from_micros(1500)));
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].get("CONNTRACK_RESIZE_STALL_US"), Some("1500"));
        assert!(
            evs[0].message.contains("buckets 62976 → 125440"),
            "{}",
            evs[0].message
        );
        assert!(evs[0].message.contains("1500 µs"), "{}", evs[0].message);
        // 64 KiB pages: multiples of 8192.
        let mut t = GrowTracker::default();
        let s64 = GrowSample {
            page_size: 65_536,
            ..s
        };
        let g = t.step(&policy(1 << 40), &s64, secs(0)).growth.unwrap();
        assert_eq!(g.buckets_after, 131_072);
    }

    #[test]
    fn big_tables_keep_their_buckets_for_the_next_boot() {
        let mut t = GrowTracker::default();
        let s = GrowSample {
            table_count: 250_000,
            ..full(262_144)
        };
        let g = t.step(&policy(1 << 40), &s, secs(0)).growth.unwrap();
        assert_eq!(g.max_after, 524_288);
        assert_eq!(g.buckets_after, 65_536, "no live resize of 250k entries");
        assert!(
            g.reason.contains(
                "buckets stay 65536 until the next boot: a live resize of 250000 entries"
            ),
            "{}",
            g.reason
        );
        // The stall is not reported when buckets did not change.
        assert_eq!(
            g.event(Some(secs(1))).get("CONNTRACK_RESIZE_STALL_US"),
            None
        );
        // Unknown buckets are never written.
        let mut t = GrowTracker::default();
        let g = t
            .step(
                &policy(1 << 40),
                &GrowSample {
                    buckets: 0,
                    ..full(1024)
                },
                secs(0),
            )
            .growth
            .unwrap();
        assert_eq!(g.buckets_after, 0);
        assert!(!g.buckets_changed());
    }

    #[test]
    fn rate_sizes_when_larger_than_doubling() {
        let mut t = GrowTracker::default();
        // 1000 flows/s x 30 s = 30000, x2 headroom = 60000 -> 65536 (plan).
        let s = GrowSample {
            new_flow_rate: Some(1000.0),
            ..full(1024)
        };
        let g = t.step(&policy(1 << 40), &s, secs(0)).growth.unwrap();
        assert_eq!(g.max_after, size_for(1000.0, 30, 2.0).max);
        assert_eq!(g.max_after, 65_536);
        assert_eq!(g.buckets_after, 16_384);
        assert!(g
            .reason
            .contains("sized by plan for 1000 new flows/s held 30 s"));
        // A low rate does not shrink the step below doubling.
        let mut t = GrowTracker::default();
        let s = GrowSample {
            new_flow_rate: Some(1.0),
            ..full(100_000)
        };
        let g = t.step(&policy(1 << 40), &s, secs(0)).growth.unwrap();
        assert_eq!(g.max_after, 200_000);
        assert!(!g.reason.contains("plan"));
    }

    #[test]
    fn at_most_once_per_every() {
        let p = policy(1 << 40);
        let mut t = GrowTracker::default();
        let mut s = full(1024);
        let mut at = Vec::new();
        for i in 0..=30u64 {
            if let Some(g) = t.step(&p, &s, secs(i)).growth {
                at.push(i);
                s = full(g.max_after);
            }
        }
        assert_eq!(at, vec![0, 10, 20, 30]);
        assert_eq!(s.max, 1024 << 4);
        assert_eq!(t.grown, 4);
    }

    #[test]
    fn capped_then_one_limited_then_silence() {
        let budget = 768 * 1024; // about 2000 entries at 384 B
        let p = policy(budget);
        let mut t = GrowTracker::default();
        let step = t.step(&p, &full(1024), secs(0));
        let g = step.growth.clone().unwrap();
        // (786432 - 512 buckets x 8) / 384 = 2037.3
        let cap = cap_max(budget, 384, |m| kernel_buckets(m / 4, 4096).max(512));
        assert_eq!(cap, 2037);
        assert_eq!(g.max_after, cap);
        assert!(g.memory_worst <= budget);
        assert!(
            g.reason.contains("capped by the budget (wanted 2048)"),
            "{}",
            g.reason
        );
        let evs = step.events(None);
        assert_eq!(
            evs.iter().map(|e| e.name).collect::<Vec<_>>(),
            vec!["grown", "grow_limited"]
        );
        let l = &evs[1];
        assert_eq!(l.id, ids::GROW_LIMITED);
        assert_eq!(l.priority, Priority::Warning);
        assert_eq!(l.get("CONNTRACK_GROW_BUDGET"), Some("786432"));
        assert_eq!(l.get("CONNTRACK_GROW_NEEDED"), Some("2048"));
        assert_eq!(l.get("CONNTRACK_MAX"), Some(cap.to_string().as_str()));
        assert!(
            l.message.contains("of the 768.0 KiB budget"),
            "{}",
            l.message
        );
        // Full at the cap, drops going on: nothing more, ever, while
        // nothing changes.
        let mut at_cap = full(cap);
        at_cap.buckets = g.buckets_after;
        at_cap.rises[0] = 50;
        for i in 1..100u64 {
            assert_eq!(t.step(&p, &at_cap, secs(i * 10)), GrowStep::default());
        }
        // The load rises (plan wants more for the new rate): said again, once.
        at_cap.new_flow_rate = Some(5000.0);
        let step = t.step(&p, &at_cap, secs(2000));
        assert!(step.growth.is_none());
        assert_eq!(
            step.limited.unwrap().get("CONNTRACK_GROW_NEEDED"),
            Some("524288")
        );
        assert_eq!(t.step(&p, &at_cap, secs(2010)), GrowStep::default());
        // Plan's size one rounding step up (at most twice): no news.
        at_cap.new_flow_rate = Some(9000.0);
        assert_eq!(t.step(&p, &at_cap, secs(2015)), GrowStep::default());
        // A lower rate is no news.
        at_cap.new_flow_rate = Some(10.0);
        assert_eq!(t.step(&p, &at_cap, secs(2020)), GrowStep::default());
        // A larger budget: grows again.
        let g = t
            .step(&policy(4 * MIB), &at_cap, secs(2030))
            .growth
            .unwrap();
        assert!(g.max_after > cap);
    }

    #[test]
    fn operator_max_above_the_budget_is_left_alone_silently() {
        let p = policy(MIB);
        let mut t = GrowTracker::default();
        for i in 0..10u64 {
            let s = GrowSample {
                rises: [100, 0, 0],
                ..full(262_144)
            };
            assert_eq!(t.step(&p, &s, secs(i * 60)), GrowStep::default());
        }
        // Exactly at the cap, too.
        let cap = cap_max(MIB, 384, |m| kernel_buckets(m / 4, 4096).max(512));
        let s = GrowSample {
            buckets: 512,
            ..full(cap)
        };
        assert_eq!(t.step(&p, &s, secs(0)), GrowStep::default());
    }

    #[test]
    fn a_restarted_watchdog_knows_its_growth() {
        let budget = 768 * 1024;
        let cap = cap_max(budget, 384, |m| kernel_buckets(m / 4, 4096).max(512));
        let s = GrowSample {
            buckets: 512,
            ..full(cap)
        };
        // Without the record: the operator's max, left alone in silence.
        let mut t = GrowTracker::default();
        assert_eq!(t.step(&policy(budget), &s, secs(0)), GrowStep::default());
        // With it: said once.
        let mut t = GrowTracker::resumed(cap);
        assert_eq!(
            t.status_fragment().as_deref(),
            Some(format!("grown to {cap} earlier this boot").as_str())
        );
        assert!(!t.at_budget(cap));
        let step = t.step(&policy(budget), &s, secs(0));
        assert_eq!(step.limited.unwrap().name, "grow_limited");
        assert_eq!(t.step(&policy(budget), &s, secs(60)), GrowStep::default());
        assert!(t.at_budget(cap));
        assert!(!t.at_budget(cap + 1));
    }

    #[test]
    fn buckets_that_fail_are_reported_unchanged() {
        let mut t = GrowTracker::default();
        let s = GrowSample {
            table_count: 10,
            ..full(262_144)
        };
        let mut g = t.step(&policy(1 << 40), &s, secs(0)).growth.unwrap();
        assert_eq!(g.buckets_after, 131_072);
        g.buckets_failed("Permission denied");
        assert!(!g.buckets_changed());
        assert_eq!(g.memory_worst, worst_case_bytes(524_288, 65_536, 384));
        assert!(g
            .reason
            .ends_with("; buckets not resized: Permission denied"));
        assert_eq!(
            g.event(Some(secs(1))).get("CONNTRACK_RESIZE_STALL_US"),
            None
        );
    }

    #[test]
    fn a_failed_write_does_not_count() {
        let p = policy(1 << 40);
        let mut t = GrowTracker::default();
        assert!(t.step(&p, &full(1024), secs(0)).growth.is_some());
        t.write_failed();
        assert_eq!(t.grown, 0);
        assert_eq!(t.ours, None);
        // Retried after `every`, not before.
        assert!(t.step(&p, &full(1024), secs(5)).growth.is_none());
        assert!(t.step(&p, &full(1024), secs(10)).growth.is_some());
    }

    #[test]
    fn kernel_limit_and_garbage_do_not_panic_or_overflow() {
        let p = policy(u64::MAX);
        let mut t = GrowTracker::default();
        let g = t
            .step(&p, &full(MAX_CONNTRACK_MAX - 1), secs(0))
            .growth
            .unwrap();
        assert_eq!(g.max_after, MAX_CONNTRACK_MAX);
        let mut t = GrowTracker::default();
        assert_eq!(
            t.step(&p, &full(MAX_CONNTRACK_MAX), secs(0)),
            GrowStep::default()
        );
        assert_eq!(t.step(&p, &full(0), secs(0)), GrowStep::default());
        let s = GrowSample {
            new_flow_rate: Some(f64::NAN),
            entry_bytes: 0,
            page_size: 0,
            ..full(1024)
        };
        let g = t.step(&p, &s, secs(0)).growth.unwrap();
        assert_eq!(g.max_after, 2048);
        assert_eq!(cap_max(0, 384, |_| 512), 0);
        assert_eq!(cap_max(u64::MAX, 384, |_| 512), MAX_CONNTRACK_MAX);
    }

    proptest::proptest! {
        #[test]
        fn never_above_the_budget_never_lower(
            budget in 0u64..(1 << 36),
            max in 1u64..(1 << 31),
            buckets_sel in 0u64..4,
            count_pct in 0u64..120,
            drop in 0u64..3,
            rate in proptest::option::of(0.0f64..1e7),
            table_count in 0u64..300_000,
            bpe in 0u64..2000,
            page_sel in 0u64..3,
            steps in 1usize..6,
        ) {
            let page_size = [4096, 16_384, 65_536][page_sel as usize];
            let buckets = [0, 512, max / 4, max][buckets_sel as usize];
            let p = policy(budget);
            let mut t = GrowTracker::default();
            let mut s = GrowSample {
                max,
                buckets,
                page_size,
                fullest_count: max / 100 * count_pct,
                fullest_label: "host".into(),
                table_count,
                rises: [drop, 0, 0],
                new_flow_rate: rate,
                udp_timeout: 30,
                entry_bytes: bpe,
            };
            for i in 0..steps {
                let step = t.step(&p, &s, secs(i as u64 * 10));
                if let Some(g) = &step.growth {
                    proptest::prop_assert!(g.max_after > g.max_before);
                    proptest::prop_assert!(g.buckets_after >= g.buckets_before);
                    proptest::prop_assert!(g.max_after <= MAX_CONNTRACK_MAX);
                    proptest::prop_assert!(g.memory_worst <= budget, "{} > {}", g.memory_worst, budget);
                    proptest::prop_assert_eq!(
                        g.memory_worst,
                        worst_case_bytes(g.max_after, g.buckets_after, s.entry_bytes())
                    );
                    s.max = g.max_after;
                    s.buckets = g.buckets_after;
                }
                let _ = step.events(Some(Duration::from_micros(7)));
            }
        }
    }

    #[test]
    fn own_growth_is_expected_not_drift() {
        let set = |key: &str, expected: &str, actual: &str| Setting {
            key: key.into(),
            expected: expected.into(),
            actual: Some(actual.into()),
            at_least: false,
        };
        let mut s = vec![
            set(KEY_MAX, "1024", "65536"),
            set(KEY_BUCKETS, "1024", "16384"),
            set("net.netfilter.nf_conntrack_udp_timeout", "10", "30"),
        ];
        own_growth(&mut s, None);
        assert!(!s[0].ok());
        own_growth(&mut s, Some((65536, 16384)));
        assert!(s[0].ok() && s[1].ok());
        // Other keys are untouched: their drift is still drift.
        assert!(!s[2].ok());
        // A foreign writer lowering the grown max is drift against it.
        let mut s = vec![set(KEY_MAX, "1024", "2048")];
        own_growth(&mut s, Some((65536, 0)));
        assert_eq!(s[0].expected, "65536");
        assert!(!s[0].ok());
        // A configured max above the growth stays what is expected.
        let mut s = vec![set(KEY_MAX, "1000000", "65536")];
        own_growth(&mut s, Some((65536, 0)));
        assert_eq!(s[0].expected, "1000000");
        // Buckets never grown (0) expect the configured value.
        let mut s = vec![set(KEY_BUCKETS, "1024", "1024")];
        own_growth(&mut s, Some((65536, 0)));
        assert_eq!(s[0].expected, "1024");
    }

    #[test]
    fn flow_window_rates_from_its_oldest_reading() {
        let mut w = FlowWindow::default();
        let win = secs(2);
        assert_eq!(w.rate(secs(0), 0, win), None);
        assert_eq!(w.rate(secs(1), 1000, win), Some(1000.0));
        assert_eq!(w.rate(secs(2), 1500, win), Some(750.0));
        // The reading at 0 is out of the window now.
        assert_eq!(w.rate(secs(3), 2500, win), Some(750.0));
        // Entries expiring faster than new ones come: 0, not negative.
        assert_eq!(w.rate(secs(4), 100, win), Some(0.0));
        // No time passed.
        let mut w = FlowWindow::default();
        w.rate(secs(5), 10, win);
        assert_eq!(w.rate(secs(5), 20, win), None);
    }
}
