// SPDX-License-Identifier: MIT OR Apache-2.0
//! The watchdog's decisions, as pure functions of values.
//!
//! [`assess`] takes the thresholds, the previous [`State`], one
//! [`Observation`] and the time since the watchdog started, and returns the
//! next state with the events to log. Nothing here reads a file, looks at
//! the clock or sends anything, so every rule (hysteresis, reminders, drop
//! aggregation, drift, the module going away) is unit-tested with made-up
//! numbers and made-up time.
//!
//! Memory is bounded whatever the interval: the trend keeps at most
//! [`TREND_POINTS`] points, the drift map at most one entry per configured
//! key, and the events of one sample are handed back and dropped.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::apply::same_value;
use crate::config::{fmt_duration, Watch};
use crate::events::{Event, Priority};
use crate::ids;
use crate::stats::Counters;

/// What a drift event tells the operator to do.
pub const REMEDY: &str = "systemctl restart conntrack-guard-apply";
/// The periodic info summary comes at most this often.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(600);
/// Drop events are aggregated to at most one per this long, even when
/// sampling faster (intervals under a second are for tests and benchmarks;
/// the journal should not get a thousand entries a second).
pub const DROPS_FLOOR: Duration = Duration::from_secs(1);
/// The time-to-full estimate looks at this much history.
pub const TREND_WINDOW: Duration = Duration::from_secs(60);
/// At most this many trend points are kept (one per window/points), so the
/// trend costs the same at a 1 ms interval as at 5 s.
pub const TREND_POINTS: usize = 60;
/// A time-to-full further away than this is not reported: a table that
/// fills in a day is not "rising now".
pub const FULL_IN_HORIZON: Duration = Duration::from_secs(3600);

/// Fill level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Below the warning threshold.
    #[default]
    Ok,
    /// At or above `warn_percent`.
    Warning,
    /// At or above `critical_percent`.
    Critical,
}

impl Level {
    /// `ok`, `warning` or `critical` (the `CONNTRACK_LEVEL` value).
    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }

    /// 0, 1 or 2 (the `conntrack_guard_level` gauge).
    pub fn gauge(self) -> u8 {
        self as u8
    }

    /// The level of a fill with no history (what `status` uses).
    pub fn of(fill_percent: f64, t: &Thresholds) -> Level {
        if fill_percent >= t.critical_percent {
            Level::Critical
        } else if fill_percent >= t.warn_percent {
            Level::Warning
        } else {
            Level::Ok
        }
    }
}

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
    /// Minimum time between two drops events.
    pub drops_every: Duration,
    /// Minimum time between two summaries.
    pub summary_every: Duration,
}

impl Thresholds {
    /// From the `[watch]` section and the effective interval.
    pub fn new(w: &Watch, interval: Duration) -> Self {
        Thresholds {
            warn_percent: w.warn_percent,
            critical_percent: w.critical_percent,
            hysteresis_percent: w.hysteresis_percent,
            reminder: w.reminder,
            drops_every: interval.max(DROPS_FLOOR),
            summary_every: SUMMARY_EVERY,
        }
    }
}

/// The level after `prev` given the current fill: rising is immediate,
/// falling needs the fill below the threshold minus the hysteresis, so a
/// table hovering at a threshold does not flap.
pub fn next_level(prev: Level, fill_percent: f64, t: &Thresholds) -> Level {
    let raw = Level::of(fill_percent, t);
    if raw >= prev {
        return raw;
    }
    let h = t.hysteresis_percent;
    let held = |level: Level| match level {
        Level::Critical => fill_percent >= t.critical_percent - h,
        Level::Warning => fill_percent >= t.warn_percent - h,
        Level::Ok => true,
    };
    // Walk down from the previous level; stop at the first one still held.
    let mut level = prev;
    while level > raw && !held(level) {
        level = match level {
            Level::Critical => Level::Warning,
            _ => Level::Ok,
        };
    }
    level
}

/// How the fill reading went.
#[derive(Debug, Clone, PartialEq)]
pub enum FillReading {
    /// Both numbers read.
    Read {
        /// nf_conntrack_count.
        count: u64,
        /// nf_conntrack_max.
        max: u64,
    },
    /// The conntrack keys do not exist (module gone or not loaded).
    Gone(String),
    /// The keys exist but could not be read or understood.
    Fault(String),
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
}

impl Setting {
    /// The kernel has the configured value.
    pub fn ok(&self) -> bool {
        self.actual
            .as_deref()
            .is_some_and(|a| same_value(a, &self.expected))
    }

    fn actual_text(&self) -> String {
        match &self.actual {
            Some(a) => a.split_whitespace().collect::<Vec<_>>().join(" "),
            None => "absent".to_string(),
        }
    }
}

/// Everything one sample read.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Count and max.
    pub fill: FillReading,
    /// Counter totals since boot, or why they are unavailable.
    pub counters: Result<Counters, String>,
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

/// Recent (time, count) points for the time-to-full estimate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trend {
    points: VecDeque<(Duration, u64)>,
}

impl Trend {
    /// Record a sample. One point per `TREND_WINDOW / TREND_POINTS` at most,
    /// and nothing older than the window, so the length is bounded.
    pub fn push(&mut self, now: Duration, count: u64) {
        let spacing = TREND_WINDOW / TREND_POINTS as u32;
        if self
            .points
            .back()
            .map_or(true, |(t, _)| now.saturating_sub(*t) >= spacing)
        {
            self.points.push_back((now, count));
        }
        while self
            .points
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) > TREND_WINDOW)
        {
            self.points.pop_front();
        }
        while self.points.len() > TREND_POINTS + 1 {
            self.points.pop_front();
        }
    }

    /// Forget everything (the module went away: counts restart).
    pub fn clear(&mut self) {
        self.points.clear();
    }

    /// Number of points held.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True when no point is held.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// When the table will be full at the current rate: a least-squares
    /// slope over the window plus the current sample. `None` when not
    /// rising, with too little history (under 2 s), or beyond
    /// [`FULL_IN_HORIZON`].
    pub fn full_in(&self, now: Duration, count: u64, max: u64) -> Option<Duration> {
        let first = self.points.front()?.0;
        if now.saturating_sub(first) < Duration::from_secs(2) {
            return None;
        }
        let pts = self
            .points
            .iter()
            .copied()
            .filter(|(t, _)| *t < now)
            .chain(std::iter::once((now, count)));
        let (mut n, mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (t, c) in pts {
            // Relative to the first point, so the squares stay small.
            let x = t.saturating_sub(first).as_secs_f64();
            let y = c as f64;
            n += 1.0;
            sx += x;
            sy += y;
            sxx += x * x;
            sxy += x * y;
        }
        let denom = n * sxx - sx * sx;
        if n < 2.0 || denom <= f64::EPSILON {
            return None;
        }
        let slope = (n * sxy - sx * sy) / denom; // entries per second
        if !slope.is_finite() || slope <= 0.0 {
            return None;
        }
        let left = max.saturating_sub(count) as f64;
        let secs = left / slope;
        if !secs.is_finite() || secs > FULL_IN_HORIZON.as_secs_f64() {
            return None;
        }
        Some(Duration::from_secs_f64(secs))
    }
}

/// The watchdog's memory between samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// Current level.
    pub level: Level,
    /// A good sample has been seen (READY=1 was due).
    pub started: bool,
    /// The last sample read the fill: ping the watchdog.
    pub healthy: bool,
    /// The conntrack keys are gone (module_gone was logged).
    pub gone: bool,
    /// The reading fault last logged, until sampling works again.
    pub fault: Option<String>,
    /// count > max was logged.
    pub over_max: bool,
    /// The last good fill.
    pub fill: Option<Fill>,
    /// Last counter totals read (the baseline for deltas).
    pub counters: Option<Counters>,
    /// The counters are unavailable (counters_unavailable was logged).
    pub counters_missing: bool,
    /// drop/early_drop/insert_failed increases seen since watch started:
    /// the "drops N" of the status line.
    pub since_start: Counters,
    /// Increases not logged yet (rate limit).
    pub pending: Counters,
    /// When the last drops event went out.
    pub last_drops_at: Option<Duration>,
    /// Last level change or reminder.
    pub last_reminder_at: Duration,
    /// Highest fill since the last level change or reminder.
    pub peak: Option<Fill>,
    /// When the last summary went out (or the start).
    pub last_summary_at: Duration,
    /// Drifted keys as last logged: key -> (expected, actual).
    pub drift: BTreeMap<String, (String, String)>,
    /// Fill history for the time to full.
    pub trend: Trend,
    /// Estimated time until full, when rising.
    pub full_in: Option<Duration>,
}

impl State {
    /// Number of configured settings that drifted.
    pub fn drifted(&self) -> usize {
        self.drift.len()
    }
}

fn fill_fields(ev: Event, fill: &Fill, level: Level) -> Event {
    ev.field("CONNTRACK_COUNT", fill.count)
        .field("CONNTRACK_MAX", fill.max)
        .field("CONNTRACK_FILL_PERCENT", format!("{:.1}", fill.percent()))
        .field("CONNTRACK_LEVEL", level.name())
}

fn full_in_text(full_in: Option<Duration>) -> String {
    match full_in {
        Some(d) => format!("; full in ~{}s at the current rate", d.as_secs()),
        None => String::new(),
    }
}

fn with_full_in(ev: Event, full_in: Option<Duration>) -> Event {
    match full_in {
        Some(d) => ev.field("CONNTRACK_FULL_IN_SECONDS", d.as_secs()),
        None => ev,
    }
}

fn drops_event(pending: &Counters, fill: Option<&Fill>, level: Level) -> Event {
    let msg = format!(
        "conntrack dropped flows: drop +{}, early_drop +{}, insert_failed +{}{}; \
         the table is too small for the flow rate, raise [conntrack] max \
         (conntrack-guard plan --rate N)",
        pending.drop,
        pending.early_drop,
        pending.insert_failed,
        fill.map(|f| format!(" (table {})", f.text()))
            .unwrap_or_default()
    );
    let mut ev = Event::new(Priority::Err, "drops", ids::DROPS, msg);
    if let Some(f) = fill {
        ev = fill_fields(ev, f, level);
    }
    ev.field("CONNTRACK_DROP_DELTA", pending.drop)
        .field("CONNTRACK_EARLY_DROP_DELTA", pending.early_drop)
        .field("CONNTRACK_INSERT_FAILED_DELTA", pending.insert_failed)
}

fn add(a: &Counters, b: &Counters) -> Counters {
    Counters {
        drop: a.drop.saturating_add(b.drop),
        early_drop: a.early_drop.saturating_add(b.early_drop),
        insert_failed: a.insert_failed.saturating_add(b.insert_failed),
        clashres: None,
    }
}

/// Decide: the next state and the events for one observation at `now`
/// (time since the watchdog started).
pub fn assess(
    t: &Thresholds,
    mut s: State,
    obs: &Observation,
    now: Duration,
) -> (State, Vec<Event>) {
    let fill = match &obs.fill {
        FillReading::Read { count, max } if *max > 0 => Fill {
            count: *count,
            max: *max,
        },
        FillReading::Read { .. } => {
            return on_fault(s, "nf_conntrack_max is 0; the fill cannot be computed")
        }
        FillReading::Fault(why) => return on_fault(s, why),
        FillReading::Gone(why) => return on_gone(s, why),
    };
    let mut out = Vec::new();
    if s.gone {
        out.push(fill_fields(
            Event::new(
                Priority::Notice,
                "module_back",
                ids::MODULE_BACK,
                format!("nf_conntrack is back: table {}", fill.text()),
            ),
            &fill,
            s.level,
        ));
        s.gone = false;
    }
    if let Some(why) = s.fault.take() {
        out.push(Event::new(
            Priority::Info,
            "fault",
            ids::FAULT,
            format!(
                "sampling works again (it failed with: {why}); table {}",
                fill.text()
            ),
        ));
    }
    s.healthy = true;
    if !s.started {
        s.started = true;
        s.last_summary_at = now;
        out.push(fill_fields(
            Event::new(
                Priority::Info,
                "started",
                ids::STARTED,
                format!("watching the conntrack table: {}", fill.text()),
            ),
            &fill,
            s.level,
        ));
    }

    if fill.count > fill.max {
        if !s.over_max {
            out.push(fill_fields(
                Event::new(
                    Priority::Warning,
                    "fault",
                    ids::FAULT,
                    format!(
                        "nf_conntrack_count {} exceeds nf_conntrack_max {}: max was lowered \
                         below the entries in use (they stay until they expire) or the kernel \
                         was mid-allocation; treated as over-full",
                        fill.count, fill.max
                    ),
                ),
                &fill,
                Level::Critical,
            ));
        }
        s.over_max = true;
    } else {
        s.over_max = false;
    }

    s.trend.push(now, fill.count);
    s.full_in = s.trend.full_in(now, fill.count, fill.max);

    // Counters: deltas against the last totals seen, aggregated.
    match &obs.counters {
        Ok(c) => {
            if let Some(prev) = &s.counters {
                let d = c.delta_since(prev);
                s.pending = add(&s.pending, &d);
                s.since_start = add(&s.since_start, &d);
            }
            s.counters = Some(*c);
            s.counters_missing = false;
        }
        Err(why) => {
            if !s.counters_missing {
                out.push(fill_fields(
                    Event::new(
                        Priority::Warning,
                        "counters_unavailable",
                        ids::COUNTERS_UNAVAILABLE,
                        format!(
                            "the drop counters are unavailable: {why}; watching the fill level alone"
                        ),
                    ),
                    &fill,
                    s.level,
                ));
            }
            s.counters_missing = true;
        }
    }

    // Level, with hysteresis.
    let level = next_level(s.level, fill.percent(), t);
    if level != s.level {
        let rising = level > s.level;
        let (prio, name, id, msg) = match (level, rising) {
            (Level::Critical, _) => (
                Priority::Crit,
                "level_critical",
                ids::LEVEL_CRITICAL,
                format!(
                    "conntrack table {} full: at or above the critical level of {}%; \
                     new flows are dropped once it is full{}",
                    fill.text(),
                    t.critical_percent,
                    full_in_text(s.full_in)
                ),
            ),
            (Level::Warning, true) => (
                Priority::Warning,
                "level_warning",
                ids::LEVEL_WARNING,
                format!(
                    "conntrack table {} full: at or above the warning level of {}%{}",
                    fill.text(),
                    t.warn_percent,
                    full_in_text(s.full_in)
                ),
            ),
            (Level::Warning, false) => (
                Priority::Warning,
                "level_warning",
                ids::LEVEL_WARNING,
                format!(
                    "conntrack table down to {}: below critical ({}% - {}% hysteresis), \
                     still at or above warning{}",
                    fill.text(),
                    t.critical_percent,
                    t.hysteresis_percent,
                    full_in_text(s.full_in)
                ),
            ),
            (Level::Ok, _) => (
                Priority::Info,
                "level_ok",
                ids::LEVEL_OK,
                format!(
                    "conntrack table back to normal: {} (below {}% - {}% hysteresis)",
                    fill.text(),
                    t.warn_percent,
                    t.hysteresis_percent
                ),
            ),
        };
        let ev = fill_fields(Event::new(prio, name, id, msg), &fill, level);
        out.push(if level == Level::Ok {
            ev
        } else {
            with_full_in(ev, s.full_in)
        });
        s.level = level;
        s.last_reminder_at = now;
        s.peak = Some(fill);
    } else if level != Level::Ok {
        if s.peak.map_or(true, |p| fill.percent() > p.percent()) {
            s.peak = Some(fill);
        }
        if now.saturating_sub(s.last_reminder_at) >= t.reminder {
            let peak = s.peak.unwrap_or(fill);
            let ev = Event::new(
                if level == Level::Critical {
                    Priority::Crit
                } else {
                    Priority::Warning
                },
                "reminder",
                ids::REMINDER,
                format!(
                    "conntrack table still at {}: now {}, peak {} in the last {}{}",
                    level.name(),
                    fill.text(),
                    peak.text(),
                    fmt_duration(now.saturating_sub(s.last_reminder_at)),
                    full_in_text(s.full_in)
                ),
            );
            out.push(with_full_in(
                fill_fields(ev, &fill, level)
                    .field("CONNTRACK_PEAK_COUNT", peak.count)
                    .field("CONNTRACK_PEAK_PERCENT", format!("{:.1}", peak.percent())),
                s.full_in,
            ));
            s.last_reminder_at = now;
            s.peak = Some(fill);
        }
    }

    // Drops: whatever the level, aggregated and rate-limited.
    if s.pending.any_loss()
        && s.last_drops_at.map_or(true, |last| {
            now.saturating_add(Duration::from_millis(1)) >= last.saturating_add(t.drops_every)
        })
    {
        out.push(drops_event(&s.pending, Some(&fill), s.level));
        s.pending = Counters::default();
        s.last_drops_at = Some(now);
    }

    // Drift: every configured key, logged once per change.
    s.drift
        .retain(|k, _| obs.settings.iter().any(|set| &set.key == k));
    for set in &obs.settings {
        if set.ok() {
            if s.drift.remove(&set.key).is_some() {
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
        if s.drift.get(&set.key) != Some(&seen) {
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
            s.drift.insert(set.key.clone(), seen);
        }
    }

    // The periodic summary.
    if now.saturating_sub(s.last_summary_at) >= t.summary_every {
        let ev = Event::new(
            Priority::Info,
            "summary",
            ids::SUMMARY,
            format!(
                "summary: {}; drops since start: drop {}, early_drop {}, insert_failed {}",
                status_line(&s),
                s.since_start.drop,
                s.since_start.early_drop,
                s.since_start.insert_failed
            ),
        );
        out.push(with_full_in(fill_fields(ev, &fill, s.level), s.full_in));
        s.last_summary_at = now;
    }
    s.fill = Some(fill);
    (s, out)
}

/// The keys vanished: say so once, stop being healthy, and forget what
/// restarts with the module (counters, trend).
fn on_gone(mut s: State, why: &str) -> (State, Vec<Event>) {
    let mut out = Vec::new();
    if !s.gone {
        let mut ev = Event::new(
            Priority::Err,
            "module_gone",
            ids::MODULE_GONE,
            format!("nf_conntrack is gone: {why}; still watching, and will report when it returns"),
        );
        if let Some(f) = &s.fill {
            ev = fill_fields(ev, f, s.level);
        }
        out.push(ev);
    }
    s.gone = true;
    s.healthy = false;
    s.fault = None;
    s.full_in = None;
    s.trend.clear();
    // A module that comes back starts its counters from zero.
    s.counters = None;
    (s, out)
}

/// The keys exist but make no sense: say so once per distinct problem.
fn on_fault(mut s: State, why: &str) -> (State, Vec<Event>) {
    let mut out = Vec::new();
    if s.fault.as_deref() != Some(why) {
        out.push(Event::new(
            Priority::Err,
            "fault",
            ids::FAULT,
            format!("cannot sample the conntrack table: {why}; still running"),
        ));
        s.fault = Some(why.to_string());
    }
    s.healthy = false;
    s.full_in = None;
    (s, out)
}

/// Events still owed at exit: drops held back by the rate limit.
pub fn flush(mut s: State) -> (State, Vec<Event>) {
    let mut out = Vec::new();
    if s.pending.any_loss() {
        out.push(drops_event(&s.pending, s.fill.as_ref(), s.level));
        s.pending = Counters::default();
    }
    (s, out)
}

/// The `STATUS=` line: `conntrack 12.4% (130012/1048576) · ok · drops 0 ·
/// early_drops 0 · settings ok`, plus ` · full in ~Ns` when rising. The drop
/// numbers count since this watchdog started (see [`State::since_start`]).
pub fn status_line(s: &State) -> String {
    let head = match (&s.fill, s.gone, &s.fault) {
        (_, true, _) => "conntrack unavailable (nf_conntrack keys are gone)".to_string(),
        (_, _, Some(why)) => format!("conntrack unreadable ({why})"),
        (Some(f), _, _) => format!("conntrack {} · {}", f.text(), s.level.name()),
        (None, _, _) => "conntrack not sampled yet".to_string(),
    };
    let drops = if s.counters_missing {
        "drops n/a · early_drops n/a".to_string()
    } else {
        format!(
            "drops {} · early_drops {}",
            s.since_start.drop, s.since_start.early_drop
        )
    };
    let settings = match s.drifted() {
        0 => "settings ok".to_string(),
        1 => "settings DRIFT (1 key)".to_string(),
        n => format!("settings DRIFT ({n} keys)"),
    };
    let mut line = format!("{head} · {drops} · {settings}");
    if let (Some(d), false, None) = (s.full_in, s.gone, &s.fault) {
        line.push_str(&format!(" · full in ~{}s", d.as_secs()));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn th() -> Thresholds {
        Thresholds {
            warn_percent: 80.0,
            critical_percent: 95.0,
            hysteresis_percent: 5.0,
            reminder: Duration::from_secs(300),
            drops_every: Duration::from_secs(5),
            summary_every: SUMMARY_EVERY,
        }
    }

    fn obs(count: u64, max: u64) -> Observation {
        Observation {
            fill: FillReading::Read { count, max },
            counters: Ok(Counters::default()),
            settings: vec![],
        }
    }

    fn with_drops(mut o: Observation, drop: u64, early: u64, failed: u64) -> Observation {
        o.counters = Ok(Counters {
            drop,
            early_drop: early,
            insert_failed: failed,
            clashres: None,
        });
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
        assert_eq!(s.level, Level::Ok);
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
        assert_eq!(s.since_start.drop, 12);
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
        }
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
        let gone = Observation {
            fill: FillReading::Gone("keys absent".into()),
            counters: Err("absent".into()),
            settings: vec![],
        };
        let (s, evs) = run(&[
            (0, with_drops(obs(10, 100), 50, 0, 0)),
            (1, gone.clone()),
            (2, gone.clone()),
            (3, with_drops(obs(0, 100), 2, 0, 0)),
            (4, with_drops(obs(0, 100), 2, 0, 0)),
        ]);
        assert_eq!(names(&evs), vec!["started", "module_gone", "module_back"]);
        assert_eq!(evs[1].priority, Priority::Err);
        // Counters restart with the module: no drop from 50 -> 2.
        assert_eq!(s.since_start.drop, 0);
        assert!(s.healthy);
    }

    #[test]
    fn unhealthy_while_gone_or_faulty() {
        let t = th();
        let (s, _) = assess(&t, State::default(), &obs(1, 10), secs(0));
        assert!(s.healthy);
        let gone = Observation {
            fill: FillReading::Gone("x".into()),
            counters: Err("x".into()),
            settings: vec![],
        };
        let (s, _) = assess(&t, s, &gone, secs(1));
        assert!(!s.healthy);
        assert!(status_line(&s).starts_with("conntrack unavailable"));
        let (s, _) = assess(&t, s, &obs(1, 10), secs(2));
        assert!(s.healthy);
        let (s, evs) = assess(&t, s, &obs(1, 0), secs(3));
        assert!(!s.healthy);
        assert_eq!(names(&evs), vec!["fault"]);
        assert!(evs[0].message.contains("is 0"));
        let (s, evs) = assess(&t, s, &obs(1, 0), secs(4));
        assert!(evs.is_empty(), "fault logged once");
        let (s, evs) = assess(&t, s, &obs(1, 10), secs(5));
        assert_eq!(names(&evs), vec!["fault"]);
        assert_eq!(evs[0].priority, Priority::Info);
        assert!(s.healthy);
    }

    #[test]
    fn counters_unavailable_said_once() {
        let mut o = obs(1, 10);
        o.counters = Err("no stat file".into());
        let (s, evs) = run(&[(0, o.clone()), (1, o.clone()), (2, o)]);
        assert_eq!(names(&evs), vec!["started", "counters_unavailable"]);
        assert!(status_line(&s).contains("drops n/a"));
    }

    #[test]
    fn count_over_max_is_critical_and_said_once() {
        let (s, evs) = run(&[(0, obs(1100, 1000)), (1, obs(1100, 1000))]);
        assert_eq!(names(&evs), vec!["started", "fault", "level_critical"]);
        assert_eq!(s.level, Level::Critical);
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

    proptest::proptest! {
        #[test]
        fn assess_never_panics(steps in proptest::collection::vec(
            (0u64..5, 0u64..u64::MAX, 0u64..3, 0u64..u64::MAX, 0u64..u64::MAX), 1..40)) {
            let t = th();
            let mut s = State::default();
            let mut now = Duration::ZERO;
            for (kind, count, maxsel, drop, dt) in steps {
                let max = [0, 1, u64::MAX][maxsel as usize];
                let fill = match kind {
                    0 => FillReading::Gone("g".into()),
                    1 => FillReading::Fault("f".into()),
                    _ => FillReading::Read { count, max: if kind == 2 { max } else { count / 2 + 1 } },
                };
                let o = Observation {
                    fill,
                    counters: if drop % 3 == 0 { Err("x".into()) } else {
                        Ok(Counters { drop, early_drop: drop / 2, insert_failed: 0, clashres: None })
                    },
                    settings: vec![],
                };
                now = now.saturating_add(Duration::from_millis(dt % 100_000));
                s = assess(&t, s, &o, now).0;
                let _ = status_line(&s);
            }
        }
    }
}
