// SPDX-License-Identifier: MIT OR Apache-2.0
//! Drop incidents: the first loss is logged at once; while the losses go on,
//! one aggregate per `drops_every` (a minute by default) gives the window's
//! totals and the peak rate; when a whole window passes without loss, one
//! closing event gives the incident's duration and totals.
//!
//! An incident that lasts days (the write-up's did) thus writes about one
//! journal line a minute instead of one per sample, and the deltas of all
//! `drops` events still add up exactly to the kernel's counters.

use std::time::Duration;

use super::{fill_fields, Fill, Level, Thresholds};
use crate::config::fmt_duration;
use crate::events::{Event, Priority};
use crate::ids;
use crate::stats::Counters;

/// Counter sum with saturation (garbage near u64::MAX must not wrap).
pub fn add(a: &Counters, b: &Counters) -> Counters {
    Counters {
        drop: a.drop.saturating_add(b.drop),
        early_drop: a.early_drop.saturating_add(b.early_drop),
        insert_failed: a.insert_failed.saturating_add(b.insert_failed),
        clashres: None,
    }
}

fn losses(c: &Counters) -> u64 {
    c.drop
        .saturating_add(c.early_drop)
        .saturating_add(c.insert_failed)
}

/// One incident: from the first loss until a whole window without one.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// When the first loss was seen.
    pub started_at: Duration,
    /// When the last loss was seen.
    pub last_loss_at: Duration,
    /// When the last drops event went out.
    pub last_event_at: Duration,
    /// Everything lost in this incident.
    pub totals: Counters,
    /// Lost since the last drops event (not logged yet).
    pub window: Counters,
    /// Highest loss rate of one sample in the current window, per second.
    pub window_peak: f64,
    /// Highest loss rate of one sample in the whole incident, per second.
    pub peak: f64,
}

/// The drops concern: the incident in progress, if any.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DropTracker {
    /// The incident in progress.
    pub incident: Option<Incident>,
    /// When the previous sample was taken (for the rate).
    last_sample_at: Option<Duration>,
}

impl DropTracker {
    /// One sample's increase `delta` (`None` when the counters could not
    /// be read, which neither starts nor ends an incident).
    pub fn step(
        &mut self,
        t: &Thresholds,
        delta: Option<&Counters>,
        fill: &Fill,
        level: Level,
        now: Duration,
    ) -> Vec<Event> {
        let dt = self
            .last_sample_at
            .map(|p| now.saturating_sub(p))
            .filter(|d| !d.is_zero());
        self.last_sample_at = Some(now);
        let Some(delta) = delta else {
            return Vec::new();
        };
        let rate = dt.map_or(0.0, |d| losses(delta) as f64 / d.as_secs_f64());
        let mut out = Vec::new();
        if delta.any_loss() {
            match &mut self.incident {
                None => {
                    let inc = Incident {
                        started_at: now,
                        last_loss_at: now,
                        last_event_at: now,
                        totals: *delta,
                        window: Counters::default(),
                        window_peak: 0.0,
                        peak: rate,
                    };
                    out.push(first_event(delta, rate, fill, level));
                    self.incident = Some(inc);
                }
                Some(inc) => {
                    inc.totals = add(&inc.totals, delta);
                    inc.window = add(&inc.window, delta);
                    inc.last_loss_at = now;
                    inc.window_peak = inc.window_peak.max(rate);
                    inc.peak = inc.peak.max(rate);
                    if now.saturating_sub(inc.last_event_at) >= t.drops_every {
                        out.push(window_event(inc, fill, level, now));
                    }
                }
            }
        } else if let Some(inc) = &mut self.incident {
            if now.saturating_sub(inc.last_loss_at) >= t.drops_every {
                if inc.window.any_loss() {
                    out.push(window_event(inc, fill, level, now));
                }
                out.push(ended_event(inc, fill, level, now));
                self.incident = None;
            }
        }
        out
    }

    /// At exit: the window's losses not logged yet, so nothing is lost.
    pub fn flush(&mut self, fill: Option<&Fill>, level: Level, now: Duration) -> Vec<Event> {
        match (&mut self.incident, fill) {
            (Some(inc), Some(f)) if inc.window.any_loss() => vec![window_event(inc, f, level, now)],
            _ => Vec::new(),
        }
    }
}

fn delta_fields(ev: Event, d: &Counters) -> Event {
    ev.field("CONNTRACK_DROP_DELTA", d.drop)
        .field("CONNTRACK_EARLY_DROP_DELTA", d.early_drop)
        .field("CONNTRACK_INSERT_FAILED_DELTA", d.insert_failed)
}

fn counts(d: &Counters) -> String {
    format!(
        "drop +{}, early_drop +{}, insert_failed +{}",
        d.drop, d.early_drop, d.insert_failed
    )
}

const ADVICE: &str = "the table is too small for the flow rate, raise [conntrack] max \
                      (conntrack-guard plan --rate N)";

fn first_event(d: &Counters, rate: f64, fill: &Fill, level: Level) -> Event {
    let msg = format!(
        "conntrack dropped flows: {} (table {}); {ADVICE}",
        counts(d),
        fill.text()
    );
    let ev = Event::new(Priority::Err, "drops", ids::DROPS, msg);
    delta_fields(fill_fields(ev, fill, level), d)
        .field("CONNTRACK_DROPS_PEAK_PER_SECOND", format!("{rate:.0}"))
        .field("CONNTRACK_INCIDENT_SECONDS", 0)
}

/// The aggregate of one window; resets the window.
fn window_event(inc: &mut Incident, fill: &Fill, level: Level, now: Duration) -> Event {
    let window = now.saturating_sub(inc.last_event_at);
    let running = now.saturating_sub(inc.started_at);
    let msg = format!(
        "conntrack still dropping flows: {} in the last {} (peak {:.0}/s), for {} now \
         (table {}); {ADVICE}",
        counts(&inc.window),
        fmt_duration(window),
        inc.window_peak,
        fmt_duration(running),
        fill.text()
    );
    let ev = Event::new(Priority::Err, "drops", ids::DROPS, msg);
    let ev = delta_fields(fill_fields(ev, fill, level), &inc.window)
        .field("CONNTRACK_DROPS_WINDOW_SECONDS", window.as_secs())
        .field(
            "CONNTRACK_DROPS_PEAK_PER_SECOND",
            format!("{:.0}", inc.window_peak),
        )
        .field("CONNTRACK_INCIDENT_SECONDS", running.as_secs());
    inc.window = Counters::default();
    inc.window_peak = 0.0;
    inc.last_event_at = now;
    ev
}

fn ended_event(inc: &Incident, fill: &Fill, level: Level, now: Duration) -> Event {
    let lasted = inc.last_loss_at.saturating_sub(inc.started_at);
    let msg = format!(
        "conntrack drops stopped: none for {}; the incident lasted {} and lost drop {}, \
         early_drop {}, insert_failed {} (peak {:.0}/s)",
        fmt_duration(now.saturating_sub(inc.last_loss_at)),
        fmt_duration(lasted),
        inc.totals.drop,
        inc.totals.early_drop,
        inc.totals.insert_failed,
        inc.peak
    );
    let ev = Event::new(Priority::Notice, "drops_ended", ids::DROPS_ENDED, msg);
    fill_fields(ev, fill, level)
        .field("CONNTRACK_INCIDENT_SECONDS", lasted.as_secs())
        .field("CONNTRACK_DROP_TOTAL", inc.totals.drop)
        .field("CONNTRACK_EARLY_DROP_TOTAL", inc.totals.early_drop)
        .field("CONNTRACK_INSERT_FAILED_TOTAL", inc.totals.insert_failed)
        .field(
            "CONNTRACK_DROPS_PEAK_PER_SECOND",
            format!("{:.0}", inc.peak),
        )
}
