// SPDX-License-Identifier: MIT OR Apache-2.0
//! The fill trend: recent (time, count) points and the time-to-full
//! estimate drawn from them. Bounded: at most [`TREND_POINTS`] points
//! whatever the interval.

use std::collections::VecDeque;
use std::time::Duration;

/// The time-to-full estimate looks at this much history.
pub const TREND_WINDOW: Duration = Duration::from_secs(60);
/// At most this many trend points are kept (one per window/points), so the
/// trend costs the same at a 1 ms interval as at 5 s.
pub const TREND_POINTS: usize = 60;
/// A time-to-full further away than this is not reported: a table that
/// fills in a day is not "rising now".
pub const FULL_IN_HORIZON: Duration = Duration::from_secs(3600);

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
        let last = self.points.back();
        if last.map_or(true, |(t, _)| now.saturating_sub(*t) >= spacing) {
            self.points.push_back((now, count));
        }
        self.points
            .retain(|(t, _)| now.saturating_sub(*t) <= TREND_WINDOW);
        while self.points.len() > TREND_POINTS + 1 {
            self.points.pop_front();
        }
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
        let past = self.points.iter().copied().filter(|(t, _)| *t < now);
        let pts = past.chain(std::iter::once((now, count)));
        let sums = (0.0, 0.0, 0.0, 0.0, 0.0);
        let (n, sx, sy, sxx, sxy) = pts.fold(sums, |(n, sx, sy, sxx, sxy), (t, c)| {
            // Relative to the first point, so the squares stay small.
            let (x, y) = (t.saturating_sub(first).as_secs_f64(), c as f64);
            (n + 1.0, sx + x, sy + y, sxx + x * x, sxy + x * y)
        });
        let denom = n * sxx - sx * sx;
        if n < 2.0 || denom <= f64::EPSILON {
            return None;
        }
        let slope = (n * sxy - sx * sy) / denom; // entries per second
        if !slope.is_finite() || slope <= 0.0 {
            return None;
        }
        let secs = max.saturating_sub(count) as f64 / slope;
        if !secs.is_finite() || secs > FULL_IN_HORIZON.as_secs_f64() {
            return None;
        }
        Some(Duration::from_secs_f64(secs))
    }
}

#[cfg(test)]
impl Trend {
    /// Number of points held (for the bound's test in `assess`).
    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }
}
