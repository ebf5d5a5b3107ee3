// SPDX-License-Identifier: MIT OR Apache-2.0
//! The fill level: hysteresis between ok, warning and critical, reminders
//! while it stays high (with the peak since the last one), and how long the
//! table has been completely full.

use std::time::Duration;

use super::{fill_fields, Fill, Fullness, Thresholds};
use crate::config::fmt_duration;
use crate::report::events::{Event, Priority};
use crate::report::ids;

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
        ["ok", "warning", "critical"][self as usize]
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

/// The level after `prev` given the current fill: rising is immediate,
/// falling needs the fill below the threshold minus the hysteresis, so a
/// table hovering at a threshold does not flap.
pub fn next_level(prev: Level, fill_percent: f64, t: &Thresholds) -> Level {
    let raw = Level::of(fill_percent, t);
    // Falling stops at the first level, from prev down, whose threshold
    // minus the hysteresis the fill still reaches.
    let held = |l: Level, at: f64| prev >= l && fill_percent >= at - t.hysteresis_percent;
    if raw >= prev {
        raw
    } else if held(Level::Critical, t.critical_percent) {
        Level::Critical
    } else if held(Level::Warning, t.warn_percent) {
        Level::Warning
    } else {
        raw
    }
}

/// The level concern: its state between samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LevelTracker {
    /// Current level.
    pub level: Level,
    /// Last level change or reminder.
    pub last_reminder_at: Duration,
    /// Highest fill since the last level change or reminder.
    pub peak: Option<Fill>,
}

impl LevelTracker {
    /// One sample: a level change (rising at once, falling past the
    /// hysteresis), or a reminder when the level has held for `reminder`.
    pub fn step(
        &mut self,
        t: &Thresholds,
        fill: &Fill,
        full: Fullness,
        now: Duration,
    ) -> Vec<Event> {
        let level = next_level(self.level, fill.percent(), t);
        if level != self.level {
            let ev = change_event(t, self.level, level, fill, full);
            self.level = level;
            self.last_reminder_at = now;
            self.peak = Some(*fill);
            return vec![ev];
        }
        if level == Level::Ok {
            return Vec::new();
        }
        if self.peak.map_or(true, |p| fill.percent() > p.percent()) {
            self.peak = Some(*fill);
        }
        if now.saturating_sub(self.last_reminder_at) < t.reminder {
            return Vec::new();
        }
        let peak = self.peak.unwrap_or(*fill);
        let prio = match level {
            Level::Critical => Priority::Crit,
            _ => Priority::Warning,
        };
        let (name, cur, pk, ft) = (level.name(), fill.text(), peak.text(), full.text());
        let since = fmt_duration(now.saturating_sub(self.last_reminder_at));
        let msg = format!(
            "conntrack table still at {name}: now {cur}, peak {pk} in the last {since}{ft}"
        );
        let ev = Event::new(prio, "reminder", ids::REMINDER, msg);
        let ev = fill_fields(ev, fill, level)
            .field("CONNTRACK_PEAK_COUNT", peak.count)
            .field("CONNTRACK_PEAK_PERCENT", format!("{:.1}", peak.percent()));
        let ev = full.fields(ev);
        self.last_reminder_at = now;
        self.peak = Some(*fill);
        vec![ev]
    }
}

fn change_event(t: &Thresholds, from: Level, to: Level, fill: &Fill, full: Fullness) -> Event {
    let (f, ft, h) = (fill.text(), full.text(), t.hysteresis_percent);
    let (warn, crit) = (t.warn_percent, t.critical_percent);
    let msg = match (to, to > from) {
        (Level::Critical, _) => format!(
            "conntrack table {f} full: at or above the critical level of {crit}%; \
             new flows are dropped once it is full{ft}"
        ),
        (Level::Warning, true) => {
            format!("conntrack table {f} full: at or above the warning level of {warn}%{ft}")
        }
        (Level::Warning, false) => format!(
            "conntrack table down to {f}: below critical ({crit}% - {h}% hysteresis), \
             still at or above warning{ft}"
        ),
        (Level::Ok, _) => {
            format!("conntrack table back to normal: {f} (below {warn}% - {h}% hysteresis)")
        }
    };
    let (prio, name, id) = match to {
        Level::Critical => (Priority::Crit, "level_critical", ids::LEVEL_CRITICAL),
        Level::Warning => (Priority::Warning, "level_warning", ids::LEVEL_WARNING),
        Level::Ok => (Priority::Info, "level_ok", ids::LEVEL_OK),
    };
    let ev = fill_fields(Event::new(prio, name, id, msg), fill, to);
    match to {
        Level::Ok => ev,
        _ => full.fields(ev),
    }
}
