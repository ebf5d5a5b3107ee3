// SPDX-License-Identifier: MIT OR Apache-2.0
//! Drop incidents, for any drop point ([`Signal`]): the first loss is
//! logged at once; while the losses go on, one aggregate per `drops_every`
//! (a minute by default) gives the window's increases per counter, the peak
//! rate and the CPU that carried them; when a whole window passes without
//! loss, one closing `drops_ended` event gives the incident's duration and
//! totals.
//!
//! An incident that lasts days (the write-up's did) thus writes about one
//! journal line a minute instead of one per sample, and the deltas of all
//! events of a drop point still add up exactly to the kernel's counters.

use std::time::Duration;

use super::tally::{Signal, Tally};
use super::{fill_fields, Fill, Level, Thresholds};
use crate::config::fmt_duration;
use crate::kernel::percpu::HOT_CPU_SHARE;
use crate::report::events::{Event, Priority};
use crate::report::ids;

/// One incident: from the first loss until a whole window without one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Incident {
    /// When the first loss was seen.
    pub started_at: Duration,
    /// When the last loss was seen.
    pub last_loss_at: Duration,
    /// When the last event went out.
    pub last_event_at: Duration,
    /// Everything counted in this incident.
    pub totals: Tally,
    /// Counted since the last event (not logged yet).
    pub window: Tally,
    /// Highest loss rate of one sample in the current window, per second.
    pub window_peak: f64,
    /// Highest loss rate of one sample in the whole incident, per second.
    pub peak: f64,
}

/// The incidents of one drop point.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DropTracker {
    /// The incident in progress.
    pub incident: Option<Incident>,
    /// Loss counted since the watchdog started.
    pub since_start: u64,
    /// When the previous sample was taken (for the rate).
    last_sample_at: Option<Duration>,
}

impl DropTracker {
    /// One sample's increase (`None` when the counters could not be read,
    /// which neither starts nor ends an incident).
    pub fn step(
        &mut self,
        sig: &'static Signal,
        t: &Thresholds,
        delta: Option<&Tally>,
        fill: &Fill,
        level: Level,
        now: Duration,
    ) -> Vec<Event> {
        let last = self.last_sample_at.replace(now);
        let dt = last.map(|p| now.saturating_sub(p)).filter(|d| !d.is_zero());
        let Some(delta) = delta else {
            return Vec::new();
        };
        let loss = delta.loss(sig);
        self.since_start = self.since_start.saturating_add(loss);
        let rate = dt.map_or(0.0, |d| loss as f64 / d.as_secs_f64());
        let first = loss > 0 && self.incident.is_none();
        if first {
            // The loss below sets the last loss and the peaks.
            self.incident = Some(Incident {
                started_at: now,
                last_event_at: now,
                ..Incident::default()
            });
        }
        let Some(inc) = &mut self.incident else {
            return Vec::new();
        };
        // Increases of the counters that are not loss belong to the
        // incident too, so its events add up to the kernel's change.
        inc.totals.add(delta);
        inc.window.add(delta);
        if loss > 0 {
            inc.last_loss_at = now;
            inc.window_peak = inc.window_peak.max(rate);
            inc.peak = inc.peak.max(rate);
            if first || now.saturating_sub(inc.last_event_at) >= t.drops_every {
                return vec![window_event(sig, inc, fill, level, now)];
            }
        } else if now.saturating_sub(inc.last_loss_at) >= t.drops_every {
            return self.close(sig, Some(fill), level, now);
        }
        Vec::new()
    }

    /// At exit: the window's losses not logged yet, so nothing is lost.
    pub fn flush(
        &mut self,
        sig: &'static Signal,
        fill: Option<&Fill>,
        level: Level,
        now: Duration,
    ) -> Vec<Event> {
        match (&mut self.incident, fill) {
            (Some(inc), Some(f)) if inc.window.loss(sig) > 0 => {
                vec![window_event(sig, inc, f, level, now)]
            }
            _ => Vec::new(),
        }
    }

    /// The drop point goes away (a namespace that vanished, or the
    /// watchdog stops watching it): the window's losses not logged yet,
    /// then the incident's `drops_ended`, so every incident is closed.
    pub fn close(
        &mut self,
        sig: &'static Signal,
        fill: Option<&Fill>,
        level: Level,
        now: Duration,
    ) -> Vec<Event> {
        let mut out = self.flush(sig, fill, level, now);
        if let (Some(inc), Some(f)) = (self.incident.take(), fill) {
            out.push(ended_event(sig, &inc, f, level, now));
        }
        out
    }

    /// A drop incident is in progress.
    pub fn active(&self) -> bool {
        self.incident.is_some()
    }
}

/// A measured span for people: whole seconds from one second on (the
/// samples' jitter is noise), milliseconds below.
fn span(d: Duration) -> String {
    match d >= Duration::from_secs(1) {
        true => fmt_duration(Duration::from_secs(d.as_secs_f64().round() as u64)),
        false => fmt_duration(d),
    }
}

fn counter_fields(mut ev: Event, sig: &Signal, t: &Tally, total: bool) -> Event {
    for c in sig.counters.iter().filter(|c| t.has(c.name)) {
        let key = if total { c.total_field } else { c.delta_field };
        ev = ev.field(key, t.get(c.name));
    }
    ev
}

/// The first event of an incident, or the aggregate of one window; resets
/// the window.
fn window_event(
    sig: &'static Signal,
    inc: &mut Incident,
    fill: &Fill,
    level: Level,
    now: Duration,
) -> Event {
    let first = inc.started_at == now;
    let window = now.saturating_sub(inc.last_event_at);
    let running = now.saturating_sub(inc.started_at);
    // `; 93% of them on CPU 3 (...)` when one CPU carried the window.
    let cpu = inc.window.hot_cpu(HOT_CPU_SHARE);
    let cpu_text = cpu.map_or(String::new(), |(c, s)| {
        format!(
            "; {:.0}% of them on CPU {c} (one RX queue or softirq carries the load: \
             check RSS/RPS and IRQ affinity)",
            s * 100.0
        )
    });
    let (what, text, table) = (sig.what, inc.window.text(sig), fill.text());
    let (advice, peak) = ((sig.advice)(&inc.window), format!("{:.0}", inc.window_peak));
    let msg = if first {
        format!("{what}: {text}{cpu_text} (table {table}); {advice}")
    } else {
        let (window, running) = (span(window), span(running));
        format!(
            "{what}, still: {text} in the last {window} (peak {peak}/s), for {running} \
             now{cpu_text} (table {table}); {advice}"
        )
    };
    let ev = Event::new(Priority::Err, sig.event, sig.id, msg);
    let window_secs = (!first).then_some(window.as_secs());
    let share = cpu.map(|(_, s)| format!("{:.0}", s * 100.0));
    let ev = counter_fields(fill_fields(ev, fill, level), sig, &inc.window, false)
        .field("CONNTRACK_DROP_POINT", sig.point)
        .field("CONNTRACK_DROPS_PEAK_PER_SECOND", peak)
        .field("CONNTRACK_INCIDENT_SECONDS", running.as_secs())
        .field_opt("CONNTRACK_DROPS_WINDOW_SECONDS", window_secs)
        .field_opt("CONNTRACK_TOP_CPU", cpu.map(|(c, _)| c))
        .field_opt("CONNTRACK_TOP_CPU_SHARE", share);
    inc.window = Tally::default();
    inc.window_peak = 0.0;
    inc.last_event_at = now;
    ev
}

fn ended_event(sig: &Signal, inc: &Incident, fill: &Fill, level: Level, now: Duration) -> Event {
    let lasted = inc.last_loss_at.saturating_sub(inc.started_at);
    let totals = inc.totals.text(sig).replace(" +", " ");
    let (quiet, span_lasted) = (span(now.saturating_sub(inc.last_loss_at)), span(lasted));
    let peak = format!("{:.0}", inc.peak);
    let msg = format!(
        "{} no longer: none for {quiet}; the incident lasted {span_lasted} and counted \
         {totals} (peak {peak}/s)",
        sig.what
    );
    let ev = Event::new(Priority::Notice, "drops_ended", ids::DROPS_ENDED, msg);
    counter_fields(fill_fields(ev, fill, level), sig, &inc.totals, true)
        .field("CONNTRACK_DROP_POINT", sig.point)
        .field("CONNTRACK_INCIDENT_SECONDS", lasted.as_secs())
        .field("CONNTRACK_DROPS_PEAK_PER_SECOND", peak)
}
