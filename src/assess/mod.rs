// SPDX-License-Identifier: MIT OR Apache-2.0
//! The watchdog's decisions, as pure functions of values.
//!
//! [`assess`] takes the thresholds, the previous [`State`], one
//! [`Observation`] and the time since the watchdog started, and returns the
//! next state with the events to log. Nothing here reads a file, looks at
//! the clock or sends anything, so every rule is unit-tested with made-up
//! numbers and made-up time.
//!
//! Each concern is a small tracker with its own state and a `step`:
//! [`health`] (module gone/back, faults, the first sample), [`counters`]
//! (per-CPU, wrap-safe increases of the three drop points' counters),
//! [`level`] (hysteresis and reminders), [`drops`] (incidents per drop
//! point: first, periodic aggregate, end; see [`tally`]), [`drift`]
//! (configured keys against the kernel), plus the trend and the periodic
//! summary below. [`assess`] lists them in order: that list is the
//! watchdog's whole decision table.
//!
//! Memory is bounded whatever the interval: the trend keeps at most
//! [`trend::TREND_POINTS`] points, the drift map at most one entry per
//! configured key, and the events of one sample are handed back and dropped.

pub mod counters;
pub mod drift;
pub mod drops;
pub mod grow;
pub mod health;
pub mod level;
pub mod lower;
pub mod netns;
pub mod restore;
pub mod sizing;
pub mod tally;
pub mod trend;
pub mod verdict;

use std::fmt::Write as _;
use std::time::Duration;

use crate::config::{fmt_duration, Watch};
use crate::kernel::ctstats::{CtReading, CtUnavailable};
use crate::kernel::percpu::{CounterSet, DeltaTracker, Saved};
use crate::kernel::same_value;
use crate::kernel::snmp::{SnmpError, UdpStats};
use crate::kernel::softnet::{SoftnetError, SoftnetTable};
use crate::kernel::sysctl::{compact, SysctlError};
use crate::kernel::FileError;
use crate::report::events::{Event, Priority};
use crate::report::ids;

pub use counters::{BacklogTracker, CtTracker, UdpTracker};
pub use drift::{DriftTracker, REMEDY};
pub use drops::DropTracker;
pub use health::HealthTracker;
pub use level::{next_level, Level, LevelTracker};
pub use tally::{Signal, Tally, BACKLOG, CONNTRACK, DROPS, POINTS, SOCKET};
pub use trend::{Trend, FULL_IN_HORIZON, TREND_POINTS, TREND_WINDOW};

/// The periodic info summary comes at most this often.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(600);

/// The thresholds and timings the decisions use.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Warning at or above this fill (percent).
    pub warn_percent: f64,
    /// Critical at or above this fill (percent).
    pub critical_percent: f64,
    /// A level is left only below its threshold minus this.
    pub hysteresis_percent: f64,
    /// Minimum time between reminders.
    pub reminder: Duration,
    /// While drops go on, at most one drops event per this long; an
    /// incident ends after this long without a drop.
    pub drops_every: Duration,
}

impl Thresholds {
    /// From the `[watch]` section and the effective interval. The drops
    /// window is never shorter than the interval.
    pub fn new(w: &Watch, interval: Duration) -> Self {
        Thresholds {
            warn_percent: w.warn_percent,
            critical_percent: w.critical_percent,
            hysteresis_percent: w.hysteresis_percent,
            reminder: w.reminder,
            drops_every: w.drops_every.max(interval),
        }
    }
}

/// How the fill reading went. The reader's error is kept as it came: the
/// events and the status text say it in their own words.
#[derive(Debug)]
pub enum FillReading {
    /// Both numbers read.
    Read {
        /// nf_conntrack_count.
        count: u64,
        /// nf_conntrack_max.
        max: u64,
    },
    /// The conntrack keys do not exist (module gone or not loaded).
    Gone(SysctlError),
    /// The keys exist but could not be read or understood.
    Fault(SysctlError),
}

/// One configured setting and what the kernel has.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Setting {
    /// Dotted sysctl key.
    pub key: String,
    /// The configured value.
    pub expected: String,
    /// The kernel's value; `None` when absent or unreadable.
    pub actual: Option<String>,
    /// `at-least`: a larger kernel value is fine too.
    #[serde(skip)]
    pub at_least: bool,
}

impl Setting {
    /// The kernel has the configured value.
    pub fn ok(&self) -> bool {
        self.actual.as_deref().is_some_and(|a| {
            same_value(a, &self.expected)
                || (self.at_least
                    && matches!(
                        (a.trim().parse::<u64>(), self.expected.parse::<u64>()),
                        (Ok(a), Ok(e)) if a >= e
                    ))
        })
    }

    pub(crate) fn actual_text(&self) -> String {
        self.actual.as_deref().map_or("absent".into(), compact)
    }
}

/// Everything one sample read, as the readers returned it.
#[derive(Debug)]
pub struct Observation {
    /// Count and max.
    pub fill: FillReading,
    /// The conntrack statistics and the source that answered, or why
    /// neither did; `None` when not read (the fill was not read, and
    /// without the module the counters do not exist either).
    pub counters: Option<Result<CtReading, CtUnavailable>>,
    /// The UDP MIB of this namespace (socket receive buffer drops).
    pub udp: Result<UdpStats, FileError<SnmpError>>,
    /// The per-CPU input backlog statistics.
    pub softnet: Result<SoftnetTable, FileError<SoftnetError>>,
    /// Every configured setting (`keep` ones are not listed).
    pub settings: Vec<Setting>,
}

/// A fill reading kept for peaks and the status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    /// nf_conntrack_count.
    pub count: u64,
    /// nf_conntrack_max, never 0.
    pub max: u64,
}

impl Fill {
    /// Percent full (above 100 when count exceeds max).
    pub fn percent(&self) -> f64 {
        self.count as f64 * 100.0 / self.max.max(1) as f64
    }

    /// `85.0% (870/1024)`.
    pub fn text(&self) -> String {
        format!("{:.1}% ({}/{})", self.percent(), self.count, self.max)
    }
}

/// How full the table is beyond the percentage: completely full since a
/// moment, or filling at a rate that reaches max soon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fullness {
    /// Estimated time until full, when rising (and not full yet).
    pub full_in: Option<Duration>,
    /// How long count has been at or above max, when it is.
    pub full_for: Option<Duration>,
}

impl Fullness {
    /// `; the table is full (for 12s)` or `; full in ~30s at the current
    /// rate`, or nothing.
    pub fn text(&self) -> String {
        match (self.full_for, self.full_in) {
            (Some(d), _) => format!("; the table is full ({})", full_for_text(d)),
            (None, Some(d)) => format!("; full in ~{}s at the current rate", d.as_secs()),
            (None, None) => String::new(),
        }
    }

    /// The same as journal fields.
    pub fn fields(&self, ev: Event) -> Event {
        match (self.full_for, self.full_in) {
            (Some(d), _) => ev.field("CONNTRACK_FULL_FOR_SECONDS", d.as_secs()),
            (None, Some(d)) => ev.field("CONNTRACK_FULL_IN_SECONDS", d.as_secs()),
            (None, None) => ev,
        }
    }
}

/// `for 14s`, or `just now` within the first second.
fn full_for_text(d: Duration) -> String {
    match d.as_secs() {
        0 => "just now".to_string(),
        n => format!("for {}", fmt_duration(Duration::from_secs(n))),
    }
}

/// The watchdog's memory between samples: one value per concern.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Sampling works, module present, first sample seen.
    pub health: HealthTracker,
    /// The last good fill.
    pub fill: Option<Fill>,
    /// Fill history for the time to full.
    pub trend: Trend,
    /// Estimated time until full, when rising.
    pub full_in: Option<Duration>,
    /// When count reached max, while it stays there.
    pub full_since: Option<Duration>,
    /// The time of the last sample.
    pub now: Duration,
    /// Conntrack counter baselines and increases since start.
    pub counters: CtTracker,
    /// UDP socket counter baseline.
    pub udp: UdpTracker,
    /// Backlog counter baselines.
    pub backlog: BacklogTracker,
    /// Level, reminders and peak.
    pub level: LevelTracker,
    /// Drop incidents of each drop point, in [`POINTS`] order (conntrack,
    /// socket receive buffers, input backlog).
    pub drops: [DropTracker; 3],
    /// Drifted settings.
    pub drift: DriftTracker,
    /// Restores on drift (`[watch] restore`).
    pub restore: restore::RestoreTracker,
    /// When the last summary went out (or the first sample).
    pub last_summary_at: Option<Duration>,
}

/// The per-CPU counter state behind the metrics' `*_total` counters, kept
/// across restarts of the watchdog by [`crate::report::metrics`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedTotals {
    /// The conntrack counters.
    pub conntrack: Option<Saved>,
    /// The softnet backlog counters.
    pub softnet: Option<Saved>,
}

impl State {
    /// Number of configured settings that drifted.
    pub fn drifted(&self) -> usize {
        self.drift.drifted.len()
    }

    /// The current level.
    pub fn level(&self) -> Level {
        self.level.level
    }

    /// The last sample read the fill: ping the watchdog.
    pub fn healthy(&self) -> bool {
        self.health.healthy
    }

    /// Increases of the conntrack counters since the watchdog started.
    pub fn since_start(&self) -> &Tally {
        &self.counters.since_start
    }

    /// The conntrack counters since boot, monotonic across u32 wraps, for
    /// the metrics (the counters this kernel has, in [`CONNTRACK`] order).
    pub fn conntrack_totals(&self) -> Vec<(&'static str, u64)> {
        totals(&self.counters.deltas, &CONNTRACK)
    }

    /// The backlog counters since boot, monotonic, for the metrics.
    pub fn backlog_totals(&self) -> Vec<(&'static str, u64)> {
        totals(&self.backlog.deltas, &BACKLOG)
    }

    /// The per-CPU counter state behind the metrics' totals, for the next
    /// watchdog process (see [`crate::report::metrics::save_totals`]).
    pub fn saved_totals(&self) -> SavedTotals {
        SavedTotals {
            conntrack: self.counters.deltas.save(),
            softnet: self.backlog.deltas.save(),
        }
    }

    /// Continue a previous process's totals (same boot).
    pub fn resume_totals(&mut self, saved: SavedTotals) {
        if let Some(s) = saved.conntrack {
            self.counters.deltas.resume(s);
        }
        if let Some(s) = saved.softnet {
            self.backlog.deltas.resume(s);
        }
    }

    /// Full, or rising towards full, as of the last sample.
    pub fn fullness(&self) -> Fullness {
        Fullness {
            full_in: self.full_in,
            full_for: self.full_since.map(|s| self.now.saturating_sub(s)),
        }
    }
}

/// `sig`'s counters that `d` has, since boot, monotonic.
fn totals<K: CounterSet>(d: &DeltaTracker<K>, sig: &Signal) -> Vec<(&'static str, u64)> {
    let total = |c: &tally::Counter| Some((c.name, d.monotonic(tally::counter(c.name)?)?));
    sig.counters.iter().filter_map(total).collect()
}

fn fill_fields(ev: Event, fill: &Fill, level: Level) -> Event {
    ev.field("CONNTRACK_COUNT", fill.count)
        .field("CONNTRACK_MAX", fill.max)
        .field("CONNTRACK_FILL_PERCENT", format!("{:.1}", fill.percent()))
        .field("CONNTRACK_LEVEL", level.name())
}

/// Decide: the next state and the events for one observation at `now`
/// (time since the watchdog started). The order of the concerns below is
/// the order of their events in the journal.
pub fn assess(
    t: &Thresholds,
    mut s: State,
    obs: &Observation,
    now: Duration,
) -> (State, Vec<Event>) {
    s.now = now;
    let (reading, mut out) = s.health.step(&obs.fill, s.fill.as_ref(), s.level());
    let fill = match reading {
        health::Reading::Fill(f) => f,
        health::Reading::Gone => {
            // Counts and counters restart with the module: its next counter
            // reading is a new baseline, not a decrease.
            (s.full_in, s.full_since, s.trend) = (None, None, Trend::default());
            s.counters = CtTracker {
                since_start: std::mem::take(&mut s.counters.since_start),
                ..CtTracker::default()
            };
            return (s, out);
        }
        health::Reading::Fault => {
            s.full_in = None;
            return (s, out);
        }
    };
    s.trend.push(now, fill.count);
    if fill.count >= fill.max {
        s.full_since.get_or_insert(now);
        s.full_in = None;
    } else {
        s.full_since = None;
        s.full_in = s.trend.full_in(now, fill.count, fill.max);
    }
    let level = s.level();
    let (ct, evs) = match &obs.counters {
        Some(r) => s.counters.step(r.as_ref().map(|r| &r.table), &fill, level),
        None => (None, Vec::new()),
    };
    let (udp, evs2) = s.udp.step(obs.udp.as_ref(), &fill, level);
    let (backlog, evs3) = s.backlog.step(obs.softnet.as_ref(), &fill, level);
    out.extend(evs.into_iter().chain(evs2).chain(evs3));
    out.extend(s.level.step(t, &fill, s.fullness(), now));
    let level = s.level();
    for ((drops, sig), delta) in s.drops.iter_mut().zip(POINTS).zip([ct, udp, backlog]) {
        out.extend(drops.step(sig, t, delta.as_ref(), &fill, level, now));
    }
    out.extend(s.drift.step(&obs.settings));
    s.fill = Some(fill);
    out.extend(summary(&mut s, &fill, now));
    (s, out)
}

/// The periodic info summary, every `summary_every`.
fn summary(s: &mut State, fill: &Fill, now: Duration) -> Option<Event> {
    let since = *s.last_summary_at.get_or_insert(now);
    if now.saturating_sub(since) < SUMMARY_EVERY {
        return None;
    }
    s.last_summary_at = Some(now);
    let [drop, early, failed] = s.since_start().drops();
    let msg = format!(
        "summary: {}; drops since start: drop {drop}, early_drop {early}, insert_failed {failed}",
        status_line(s)
    );
    let ev = Event::new(Priority::Info, "summary", ids::SUMMARY, msg);
    Some(s.fullness().fields(fill_fields(ev, fill, s.level())))
}

/// Events still owed at exit: drops held back for the incident's window.
pub fn flush(mut s: State) -> (State, Vec<Event>) {
    let (level, fill, now) = (s.level(), s.fill, s.now);
    let points = s.drops.iter_mut().zip(POINTS);
    let evs = points.flat_map(|(d, sig)| d.flush(sig, fill.as_ref(), level, now));
    let evs = evs.collect();
    (s, evs)
}

/// The `STATUS=` line: `conntrack 12.4% (130012/1048576) · ok · drops 0 ·
/// early_drops 0 · settings ok`, plus ` · full in ~Ns` when rising or
/// ` · full for Ns` when full. The drop numbers count since this watchdog
/// started (see [`CtTracker::since_start`]). While socket or backlog drops
/// go on, ` · socket drops N` / ` · backlog drops N` (since start) follow.
pub fn status_line(s: &State) -> String {
    let h = &s.health;
    let head = match (&s.fill, h.gone, &h.fault) {
        (_, true, _) => {
            "nf_conntrack not loaded: waiting for it (its sysctl keys are gone)".to_string()
        }
        (_, _, Some(why)) => format!("conntrack unreadable ({why})"),
        (Some(f), _, _) => format!("conntrack {} · {}", f.text(), s.level().name()),
        (None, _, _) => "conntrack not sampled yet".to_string(),
    };
    let [drop, early, _] = s.since_start().drops();
    let drops = match s.counters.missing {
        true => "drops n/a · early_drops n/a".to_string(),
        false => format!("drops {drop} · early_drops {early}"),
    };
    let settings = match s.drifted() {
        0 => "settings ok".to_string(),
        1 => "settings DRIFT (1 key)".to_string(),
        n => format!("settings DRIFT ({n} keys)"),
    };
    let mut line = format!("{head} · {drops} · {settings}");
    // Conntrack's drops are said above, always; the others while they go on.
    for (t, sig) in s.drops.iter().zip(POINTS).skip(1) {
        if t.active() {
            let _ = write!(line, " · {} drops {}", sig.point, t.since_start);
        }
    }
    let f = s.fullness();
    let _ = match (f.full_for, f.full_in) {
        _ if h.gone || h.fault.is_some() => Ok(()),
        (Some(d), _) => write!(line, " · full {}", full_for_text(d)),
        (None, Some(d)) => write!(line, " · full in ~{}s", d.as_secs()),
        _ => Ok(()),
    };
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::ctstats::{CounterSource, CtTable};
    use crate::kernel::netlink::NetlinkError;

    /// A missing file, as the readers say it.
    pub(crate) fn absent<E: std::error::Error>() -> FileError<E> {
        FileError::Absent("/test/absent".into())
    }

    /// Neither counter source answered.
    pub(crate) fn no_counters() -> CtUnavailable {
        CtUnavailable {
            netlink: NetlinkError::NotUsed,
            procfs: absent(),
        }
    }

    /// The keys are gone.
    fn keys_gone() -> FillReading {
        FillReading::Gone(SysctlError::Absent("/test/nf_conntrack_count".into()))
    }

    /// The module is gone: no fill, nothing else read.
    fn gone() -> Observation {
        Observation {
            fill: keys_gone(),
            counters: None,
            udp: Err(absent()),
            softnet: Err(absent()),
            settings: vec![],
        }
    }

    fn counted(table: CtTable) -> Option<Result<CtReading, CtUnavailable>> {
        Some(Ok(CtReading {
            table,
            source: CounterSource::Procfs,
            netlink_error: None,
        }))
    }

    fn th() -> Thresholds {
        Thresholds {
            warn_percent: 80.0,
            critical_percent: 95.0,
            hysteresis_percent: 5.0,
            reminder: Duration::from_secs(300),
            drops_every: Duration::from_secs(5),
        }
    }

    use crate::kernel::ctstats::CtCounter;
    use crate::kernel::percpu::CpuIds;

    /// Two CPUs; the totals split between them like the FakeRoot's stat file.
    pub(super) fn ct_table(drop: u64, early: u64, failed: u64) -> CtTable {
        let mut t = CtTable::new(CpuIds::Kernel);
        for (cpu, part) in [(0u32, 0u64), (1, 1)] {
            let half = |v: u64| (if part == 0 { v / 2 } else { v - v / 2 }) as u32;
            let row = t.row_mut(cpu);
            row.set(CtCounter::Drop, half(drop));
            row.set(CtCounter::EarlyDrop, half(early));
            row.set(CtCounter::InsertFailed, half(failed));
        }
        t
    }

    fn obs(count: u64, max: u64) -> Observation {
        Observation {
            fill: FillReading::Read { count, max },
            counters: counted(ct_table(0, 0, 0)),
            udp: Ok(UdpStats::default()),
            softnet: Ok(SoftnetTable::new(CpuIds::Kernel)),
            settings: vec![],
        }
    }

    fn with_drops(mut o: Observation, drop: u64, early: u64, failed: u64) -> Observation {
        o.counters = counted(ct_table(drop, early, failed));
        o
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn names(evs: &[Event]) -> Vec<&'static str> {
        evs.iter().map(|e| e.name).collect()
    }

    /// Run a list of (time, observation) and return all events by name.
    fn run(steps: &[(u64, Observation)]) -> (State, Vec<Event>) {
        let t = th();
        let mut s = State::default();
        let mut all = Vec::new();
        for (at, o) in steps {
            let (n, evs) = assess(&t, s, o, secs(*at));
            s = n;
            all.extend(evs);
        }
        (s, all)
    }

    #[test]
    fn hysteresis_levels() {
        let t = th();
        use Level::*;
        assert_eq!(next_level(Ok, 79.9, &t), Ok);
        assert_eq!(next_level(Ok, 80.0, &t), Warning);
        assert_eq!(next_level(Ok, 96.0, &t), Critical);
        assert_eq!(next_level(Warning, 76.0, &t), Warning);
        assert_eq!(next_level(Warning, 75.0, &t), Warning);
        assert_eq!(next_level(Warning, 74.9, &t), Ok);
        assert_eq!(next_level(Critical, 92.0, &t), Critical);
        assert_eq!(next_level(Critical, 90.0, &t), Critical);
        assert_eq!(next_level(Critical, 89.9, &t), Warning);
        assert_eq!(next_level(Critical, 76.0, &t), Warning);
        assert_eq!(next_level(Critical, 70.0, &t), Ok);
        assert_eq!(next_level(Warning, 99.0, &t), Critical);
    }

    #[test]
    fn scenario_events_in_order() {
        let (s, evs) = run(&[
            (0, obs(100, 1000)),
            (5, obs(850, 1000)),
            (10, obs(960, 1000)),
            (15, obs(920, 1000)),
            (20, obs(899, 1000)),
            (25, obs(760, 1000)),
            (30, obs(740, 1000)),
            (35, obs(500, 1000)),
        ]);
        assert_eq!(
            names(&evs),
            vec![
                "started",
                "level_warning",
                "level_critical",
                "level_warning",
                "level_ok"
            ]
        );
        assert_eq!(evs[1].priority, Priority::Warning);
        assert_eq!(evs[2].priority, Priority::Crit);
        assert_eq!(evs[4].priority, Priority::Info);
        assert_eq!(evs[3].get("CONNTRACK_COUNT"), Some("899"));
        assert_eq!(evs[4].get("CONNTRACK_COUNT"), Some("740"));
        assert_eq!(evs[2].get("CONNTRACK_FILL_PERCENT"), Some("96.0"));
        assert_eq!(evs[2].get("CONNTRACK_LEVEL"), Some("critical"));
        assert_eq!(evs[2].get("CONNTRACK_MAX"), Some("1000"));
        assert_eq!(s.level(), Level::Ok);
    }

    #[test]
    fn drops_any_level_aggregated_and_rate_limited() {
        let t = th(); // drops_every = 5 s
        let mut s = State::default();
        let mut got = Vec::new();
        for (at, d) in [(0, 0), (1, 3), (2, 10), (3, 10), (6, 12), (7, 12), (20, 12)] {
            let (n, evs) = assess(&t, s, &with_drops(obs(10, 1000), d, 1, 0), secs(at));
            s = n;
            got.extend(evs.into_iter().filter(|e| e.name == "drops"));
        }
        // +3 at 1 s logs at once; +7 at 2 s waits for 6 s where +2 joins it.
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].priority, Priority::Err);
        assert_eq!(got[0].get("CONNTRACK_DROP_DELTA"), Some("3"));
        assert_eq!(got[0].get("CONNTRACK_EARLY_DROP_DELTA"), Some("0"));
        assert_eq!(got[1].get("CONNTRACK_DROP_DELTA"), Some("9"));
        assert_eq!(got[0].get("CONNTRACK_LEVEL"), Some("ok"));
        assert_eq!(s.since_start().get("drop"), 12);
    }

    #[test]
    fn drops_pending_are_flushed_at_exit() {
        let t = th();
        let (s, _) = assess(&t, State::default(), &obs(10, 100), secs(0));
        let (s, e1) = assess(&t, s, &with_drops(obs(10, 100), 1, 0, 0), secs(1));
        let (s, e2) = assess(&t, s, &with_drops(obs(10, 100), 5, 2, 7), secs(2));
        assert_eq!(names(&e1), vec!["drops"]);
        assert!(e2.is_empty());
        let (s, e3) = flush(s);
        assert_eq!(e3.len(), 1);
        assert_eq!(e3[0].get("CONNTRACK_DROP_DELTA"), Some("4"));
        assert_eq!(e3[0].get("CONNTRACK_EARLY_DROP_DELTA"), Some("2"));
        assert_eq!(e3[0].get("CONNTRACK_INSERT_FAILED_DELTA"), Some("7"));
        assert!(flush(s).1.is_empty());
    }

    #[test]
    fn reminders_carry_the_peak() {
        let (_, evs) = run(&[
            (0, obs(850, 1000)),
            (100, obs(900, 1000)),
            (200, obs(870, 1000)),
            (299, obs(860, 1000)),
            (300, obs(855, 1000)),
            (400, obs(880, 1000)),
            (600, obs(850, 1000)),
        ]);
        let rem: Vec<&Event> = evs.iter().filter(|e| e.name == "reminder").collect();
        assert_eq!(rem.len(), 2, "{:?}", names(&evs));
        assert_eq!(rem[0].get("CONNTRACK_PEAK_COUNT"), Some("900"));
        assert_eq!(rem[0].get("CONNTRACK_COUNT"), Some("855"));
        assert_eq!(rem[1].get("CONNTRACK_PEAK_COUNT"), Some("880"));
        assert_eq!(rem[0].priority, Priority::Warning);
    }

    #[test]
    fn no_reminder_when_ok() {
        let (_, evs) = run(&[(0, obs(1, 1000)), (1000, obs(1, 1000))]);
        assert!(!names(&evs).contains(&"reminder"));
    }

    fn set(key: &str, expected: &str, actual: Option<&str>) -> Setting {
        Setting {
            key: key.into(),
            expected: expected.into(),
            actual: actual.map(String::from),
            at_least: false,
        }
    }

    #[test]
    fn at_least_accepts_a_larger_value_only() {
        let mut s = set("net.netfilter.nf_conntrack_max", "1048576", Some("2097152"));
        assert!(!s.ok(), "exact: larger is drift");
        s.at_least = true;
        assert!(s.ok(), "at-least: larger is fine");
        s.actual = Some("1048576".into());
        assert!(s.ok());
        s.actual = Some("65536".into());
        assert!(!s.ok(), "at-least: smaller is drift");
        s.actual = Some("garbage".into());
        assert!(!s.ok());
    }

    #[test]
    fn drift_once_per_change_then_cleared() {
        let mut steps = Vec::new();
        for (at, actual) in [
            (0, "1048576"),
            (1, "65536"),
            (2, "65536"),
            (3, "65537"),
            (4, "1048576"),
            (5, "1048576"),
        ] {
            let mut o = obs(1, 1000);
            o.settings = vec![
                set("net.netfilter.nf_conntrack_max", "1048576", Some(actual)),
                set("net.core.rmem_max", "4096 87380", Some("4096\t87380")),
            ];
            steps.push((at, o));
        }
        let (s, evs) = run(&steps);
        let d: Vec<&Event> = evs.iter().filter(|e| e.name.starts_with("drift")).collect();
        assert_eq!(
            d.iter().map(|e| e.name).collect::<Vec<_>>(),
            vec!["drift", "drift", "drift_cleared"]
        );
        assert_eq!(d[0].get("CONNTRACK_ACTUAL"), Some("65536"));
        assert_eq!(d[0].get("CONNTRACK_EXPECTED"), Some("1048576"));
        assert_eq!(
            d[0].get("CONNTRACK_KEY"),
            Some("net.netfilter.nf_conntrack_max")
        );
        assert!(d[0].message.contains(REMEDY));
        assert_eq!(d[1].get("CONNTRACK_ACTUAL"), Some("65537"));
        assert_eq!(s.drifted(), 0);
    }

    #[test]
    fn absent_key_is_drift() {
        let mut o = obs(1, 1000);
        o.settings = vec![set("net.core.somaxconn", "4096", None)];
        let (s, evs) = run(&[(0, o)]);
        assert_eq!(evs[1].name, "drift");
        assert_eq!(evs[1].get("CONNTRACK_ACTUAL"), Some("absent"));
        assert!(status_line(&s).ends_with("settings DRIFT (1 key)"));
    }

    #[test]
    fn module_gone_and_back() {
        let (s, evs) = run(&[
            (0, with_drops(obs(10, 100), 50, 0, 0)),
            (1, gone()),
            (2, gone()),
            (3, with_drops(obs(0, 100), 2, 0, 0)),
            (4, with_drops(obs(0, 100), 2, 0, 0)),
        ]);
        assert_eq!(names(&evs), vec!["started", "module_gone", "module_back"]);
        assert_eq!(evs[1].priority, Priority::Err);
        // Counters restart with the module: no drop from 50 -> 2.
        assert_eq!(s.since_start().get("drop"), 0);
        assert!(s.healthy());
    }

    #[test]
    fn unhealthy_while_gone_or_faulty() {
        let t = th();
        let (s, _) = assess(&t, State::default(), &obs(1, 10), secs(0));
        assert!(s.healthy());
        let (s, _) = assess(&t, s, &gone(), secs(1));
        assert!(!s.healthy());
        assert!(status_line(&s).starts_with("nf_conntrack not loaded: waiting for it"));
        let (s, _) = assess(&t, s, &obs(1, 10), secs(2));
        assert!(s.healthy());
        let (s, evs) = assess(&t, s, &obs(1, 0), secs(3));
        assert!(!s.healthy());
        assert_eq!(names(&evs), vec!["fault"]);
        assert!(evs[0].message.contains("is 0"));
        let (s, evs) = assess(&t, s, &obs(1, 0), secs(4));
        assert!(evs.is_empty(), "fault logged once");
        let (s, evs) = assess(&t, s, &obs(1, 10), secs(5));
        assert_eq!(names(&evs), vec!["fault"]);
        assert_eq!(evs[0].priority, Priority::Info);
        assert!(s.healthy());
    }

    #[test]
    fn counters_unavailable_said_once() {
        let o = || Observation {
            counters: Some(Err(no_counters())),
            ..obs(1, 10)
        };
        let (s, evs) = run(&[(0, o()), (1, o()), (2, o())]);
        assert_eq!(names(&evs), vec!["started", "counters_unavailable"]);
        assert!(status_line(&s).contains("drops n/a"));
    }

    #[test]
    fn count_over_max_is_critical_and_said_once() {
        let (s, evs) = run(&[(0, obs(1100, 1000)), (1, obs(1100, 1000))]);
        assert_eq!(names(&evs), vec!["started", "fault", "level_critical"]);
        assert_eq!(s.level(), Level::Critical);
    }

    #[test]
    fn summary_at_most_every_ten_minutes() {
        let mut steps = Vec::new();
        for i in 0..=250u64 {
            steps.push((i * 5, obs(1, 10)));
        }
        let (_, evs) = run(&steps); // 0 .. 1250 s
        let n = evs.iter().filter(|e| e.name == "summary").count();
        assert_eq!(n, 2);
        let sum = evs.iter().find(|e| e.name == "summary").unwrap();
        assert_eq!(sum.priority, Priority::Info);
        assert!(sum.message.contains("conntrack 10.0% (1/10)"));
    }

    #[test]
    fn time_to_full_from_trend() {
        let t = th();
        let mut s = State::default();
        // +10 entries per second towards max 1000.
        for i in 0..=30u64 {
            s = assess(&t, s, &obs(100 + 10 * i, 1000), secs(i)).0;
        }
        // count 400, 600 left at 10/s.
        let d = s.full_in.expect("rising");
        assert!((59..=61).contains(&d.as_secs()), "{d:?}");
        assert!(
            status_line(&s).ends_with(" · full in ~60s"),
            "{}",
            status_line(&s)
        );
        // Flat: no estimate.
        for i in 31..=120u64 {
            s = assess(&t, s, &obs(400, 1000), secs(i)).0;
        }
        assert_eq!(s.full_in, None);
        assert!(!status_line(&s).contains("full in"));
    }

    #[test]
    fn warning_event_carries_time_to_full() {
        let t = th();
        let mut s = State::default();
        let mut warn = None;
        for i in 0..=20u64 {
            let (n, evs) = assess(&t, s, &obs(700 + 10 * i, 1000), secs(i));
            s = n;
            if let Some(e) = evs.into_iter().find(|e| e.name == "level_warning") {
                warn = Some(e);
            }
        }
        let w = warn.expect("warning at 800");
        assert_eq!(w.get("CONNTRACK_FULL_IN_SECONDS"), Some("20"));
        assert!(w.message.contains("full in ~20s"), "{}", w.message);
    }

    #[test]
    fn trend_is_bounded_at_any_interval() {
        let mut tr = Trend::default();
        for i in 0..200_000u64 {
            tr.push(Duration::from_millis(i), i);
        }
        assert!(tr.len() <= TREND_POINTS + 1, "{}", tr.len());
        assert!(tr.len() >= 50);
    }

    #[test]
    fn status_line_format() {
        let (s, _) = run(&[(0, obs(130_012, 1_048_576))]);
        assert_eq!(
            status_line(&s),
            "conntrack 12.4% (130012/1048576) · ok · drops 0 · early_drops 0 · settings ok"
        );
        let (s, _) = run(&[
            (0, with_drops(obs(130_012, 1_048_576), 1, 1, 0)),
            (1, with_drops(obs(900_000, 1_048_576), 4, 9, 0)),
        ]);
        assert_eq!(
            status_line(&s),
            "conntrack 85.8% (900000/1048576) · warning · drops 3 · early_drops 8 · settings ok"
        );
    }

    #[test]
    fn sustained_drops_log_one_aggregate_a_minute_then_an_end() {
        let mut t = th();
        t.drops_every = Duration::from_secs(60);
        let mut s = State::default();
        let mut evs = Vec::new();
        // 150 s of drops at 1 s samples (+10 drop, +2 early_drop each), then
        // 70 s without.
        let mut total = (0u64, 0u64);
        for i in 0..=220u64 {
            if (1..=150).contains(&i) {
                total = (total.0 + 10, total.1 + 2);
            }
            let (n, e) = assess(
                &t,
                s,
                &with_drops(obs(1000, 1000), total.0, total.1, 0),
                secs(i),
            );
            s = n;
            evs.extend(e);
        }
        let drops: Vec<&Event> = evs.iter().filter(|e| e.name == "drops").collect();
        // First at once (1 s), aggregates at 61 s and 121 s, the rest with
        // the end (after 60 s without a drop).
        assert_eq!(drops.len(), 4, "{:?}", names(&evs));
        assert_eq!(drops[0].get("CONNTRACK_DROP_DELTA"), Some("10"));
        assert_eq!(drops[0].get("CONNTRACK_INCIDENT_SECONDS"), Some("0"));
        assert_eq!(drops[1].get("CONNTRACK_DROP_DELTA"), Some("600"));
        assert_eq!(drops[1].get("CONNTRACK_DROPS_WINDOW_SECONDS"), Some("60"));
        assert_eq!(drops[1].get("CONNTRACK_DROPS_PEAK_PER_SECOND"), Some("12"));
        assert!(
            drops[1].message.contains("in the last 1m (peak 12/s)"),
            "{}",
            drops[1].message
        );
        let sum: u64 = drops
            .iter()
            .map(|e| {
                e.get("CONNTRACK_DROP_DELTA")
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum();
        assert_eq!(sum, total.0, "every drop is in exactly one event");
        let ended: Vec<&Event> = evs.iter().filter(|e| e.name == "drops_ended").collect();
        assert_eq!(ended.len(), 1);
        let end = ended[0];
        assert_eq!(end.id, ids::DROPS_ENDED);
        assert_eq!(end.get("CONNTRACK_DROP_TOTAL"), Some("1500"));
        assert_eq!(end.get("CONNTRACK_EARLY_DROP_TOTAL"), Some("300"));
        assert_eq!(end.get("CONNTRACK_INCIDENT_SECONDS"), Some("149"));
        assert_eq!(end.priority, Priority::Notice);
        // The end comes a whole window after the last drop (150 s), not before.
        let at = evs.iter().position(|e| e.name == "drops_ended").unwrap();
        assert!(names(&evs[at..]).iter().all(|n| *n != "drops"));
        assert!(s.drops[0].incident.is_none());
        // A new loss starts a new incident, logged at once.
        let (_, e) = assess(
            &t,
            s,
            &with_drops(obs(10, 1000), total.0 + 1, total.1, 0),
            secs(221),
        );
        let d: Vec<&Event> = e.iter().filter(|e| e.name.starts_with("drops")).collect();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].get("CONNTRACK_DROP_DELTA"), Some("1"));
        assert_eq!(d[0].get("CONNTRACK_INCIDENT_SECONDS"), Some("0"));
    }

    #[test]
    fn full_table_says_full_for_not_full_in_zero() {
        let mut steps = Vec::new();
        for i in 0..=5u64 {
            steps.push((i, obs(500, 1000)));
        }
        for i in 6..=20u64 {
            steps.push((i, obs(1000, 1000)));
        }
        let (s, evs) = run(&steps);
        let line = status_line(&s);
        assert!(line.ends_with(" · full for 14s"), "{line}");
        assert!(!line.contains("full in"), "{line}");
        let crit = evs.iter().find(|e| e.name == "level_critical").unwrap();
        assert!(!crit.message.contains("full in ~0s"), "{}", crit.message);
        // A jump straight to max: the critical event says full, not ~0s.
        assert_eq!(crit.get("CONNTRACK_COUNT"), Some("1000"));
        assert!(
            crit.message.contains("the table is full (just now)"),
            "{}",
            crit.message
        );
        assert_eq!(crit.get("CONNTRACK_FULL_FOR_SECONDS"), Some("0"));
        assert_eq!(crit.get("CONNTRACK_FULL_IN_SECONDS"), None);
        // Below max again: no "full for", a prediction at most.
        let (s, _) = assess(&th(), s, &obs(900, 1000), secs(21));
        assert!(!status_line(&s).contains("full for"), "{}", status_line(&s));
    }

    proptest::proptest! {
        #[test]
        fn assess_never_panics(steps in proptest::collection::vec(
            (0u64..5, 0u64..u64::MAX, 0u64..3, 0u64..(2 * u64::from(u32::MAX)), 0u64..u64::MAX), 1..40)) {
            let t = th();
            let mut s = State::default();
            let mut now = Duration::ZERO;
            for (kind, count, maxsel, drop, dt) in steps {
                let max = [0, 1, u64::MAX][maxsel as usize];
                let fill = match kind {
                    0 => keys_gone(),
                    1 => FillReading::Fault(SysctlError::NotNumber { path: "/f".into(), value: "f".into() }),
                    _ => FillReading::Read { count, max: if kind == 2 { max } else { count / 2 + 1 } },
                };
                let o = Observation {
                    fill,
                    counters: if drop % 3 == 0 { Some(Err(no_counters())) } else {
                        counted(ct_table(drop, drop / 2, 0))
                    },
                    udp: Err(absent()),
                    softnet: Err(absent()),
                    settings: vec![],
                };
                now = now.saturating_add(Duration::from_millis(dt % 100_000));
                s = assess(&t, s, &o, now).0;
                let _ = status_line(&s);
            }
        }
    }
}
