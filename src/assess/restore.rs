// SPDX-License-Identifier: MIT OR Apache-2.0
//! Restore on drift (`[watch] restore = true`): which drifted values to
//! write back now, and when to stop. Pure: the watchdog does the write and
//! the read-back, and logs `restored`.
//!
//! The rules keep it from ever fighting fast or silently with another
//! writer: a key is written back at most `restore_limit` times within an
//! hour; at the next drift after that the watchdog stops restoring that key
//! and logs `drift_fight` once, and leaves it alone until it is restarted or
//! reloaded. A key that is absent cannot be restored and is not tried.
//!
//! nf_conntrack_max is never lowered below the entries in use plus the
//! headroom ([`super::lower`], the guard `apply` uses too): a restore that
//! would do so is held back, logged once (`restore_refused`) while the
//! drift lasts, and tried again on each sample, so it goes through once the
//! table has drained. The drift itself is reported as before.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use super::lower::{check_lower_max, LowerRefused, LOWER_HEADROOM_PERCENT};
use super::Setting;
use crate::config::{Watch, KEY_MAX};
use crate::report::events::{Event, Priority};
use crate::report::ids;

/// The restore limit counts within this window.
pub const RESTORE_WINDOW: Duration = Duration::from_secs(3600);

/// A value to write back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    /// Dotted key.
    pub key: String,
    /// The configured value, to write.
    pub value: String,
    /// What the other writer left.
    pub foreign: String,
}

/// The restore concern: recent restores per key, and the keys given up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestoreTracker {
    /// When each key was restored within the last hour.
    pub recent: BTreeMap<String, VecDeque<Duration>>,
    /// Keys left alone after `drift_fight`.
    pub given_up: BTreeSet<String>,
    /// Keys whose restore the lowering guard holds back, already logged.
    pub refused: BTreeSet<String>,
}

impl RestoreTracker {
    /// The drifted settings to write back at `now`, and `drift_fight`
    /// and `restore_refused` events. `in_use` is the most entries any
    /// namespace the watchdog can see holds, `None` while that is not known
    /// (a lowering of max then waits for it).
    pub fn step(
        &mut self,
        w: &Watch,
        settings: &[Setting],
        in_use: Option<u64>,
        now: Duration,
    ) -> (Vec<Restore>, Vec<Event>) {
        let (mut todo, mut out) = (Vec::new(), Vec::new());
        if !w.restore {
            return (todo, out);
        }
        // A refusal is logged once per drift: forget it when the key is
        // back in line.
        self.refused
            .retain(|k| settings.iter().any(|s| s.key == *k && !s.ok()));
        let drifted = settings.iter().filter(|s| !s.ok());
        for (set, foreign) in drifted.filter_map(|s| Some((s, s.actual.as_deref()?))) {
            if self.given_up.contains(&set.key) {
                continue;
            }
            match lowering_guard(set, foreign, in_use) {
                Guard::Allowed => {
                    self.refused.remove(&set.key);
                }
                Guard::Wait => continue,
                Guard::Refused(r) => {
                    if self.refused.insert(set.key.clone()) {
                        out.push(refused_event(set, foreign, &r));
                    }
                    continue;
                }
            }
            let recent = self.recent.entry(set.key.clone()).or_default();
            recent.retain(|t| now.saturating_sub(*t) < RESTORE_WINDOW);
            if recent.len() as u64 >= w.restore_limit {
                self.given_up.insert(set.key.clone());
                out.push(fight_event(set, foreign, recent.len()));
                continue;
            }
            recent.push_back(now);
            todo.push(Restore {
                key: set.key.clone(),
                value: set.expected.clone(),
                foreign: foreign.to_string(),
            });
        }
        (todo, out)
    }
}

/// What the lowering guard says about restoring `set`.
enum Guard {
    /// Not a lowering of max, or one with room enough.
    Allowed,
    /// A lowering of max while the entries in use are not known yet.
    Wait,
    /// A lowering of max below the entries in use plus the headroom.
    Refused(LowerRefused),
}

fn lowering_guard(set: &Setting, foreign: &str, in_use: Option<u64>) -> Guard {
    let (Ok(now), Ok(want)) = (foreign.trim().parse::<u64>(), set.expected.parse::<u64>()) else {
        return Guard::Allowed;
    };
    if set.key != KEY_MAX || want >= now {
        return Guard::Allowed;
    }
    match in_use.map(|c| check_lower_max(now, want, c)) {
        None => Guard::Wait,
        Some(Ok(())) => Guard::Allowed,
        Some(Err(r)) => Guard::Refused(r),
    }
}

fn refused_event(set: &Setting, foreign: &str, r: &LowerRefused) -> Event {
    let (key, expected) = (&set.key, &set.expected);
    let fits = r.want.saturating_mul(100) / (100 + LOWER_HEADROOM_PERCENT);
    let msg = format!(
        "{key} not restored: {r}. The drift stays reported; the watchdog writes {expected} back \
         once about {fits} entries or fewer are in use"
    );
    let id = ids::RESTORE_REFUSED;
    Event::new(Priority::Warning, "restore_refused", id, msg)
        .field("CONNTRACK_KEY", key)
        .field("CONNTRACK_EXPECTED", expected)
        .field("CONNTRACK_ACTUAL", foreign)
        .field("CONNTRACK_IN_USE", r.in_use)
        .field("CONNTRACK_NEEDED", r.needed)
}

fn fight_event(set: &Setting, foreign: &str, n: usize) -> Event {
    let (key, expected) = (&set.key, &set.expected);
    let msg = format!(
        "{key} was rewritten to {foreign} again after {n} restores to {expected} within an hour: \
         another program keeps writing this key; conntrack-guard stops restoring it. \
         Stop one of us: configure the other writer, or set the value it wants here"
    );
    Event::new(Priority::Err, "drift_fight", ids::DRIFT_FIGHT, msg)
        .field("CONNTRACK_KEY", key)
        .field("CONNTRACK_EXPECTED", &set.expected)
        .field("CONNTRACK_ACTUAL", foreign)
        .field("CONNTRACK_RESTORES", n)
}

/// The event after a write-back: `restored` when the kernel reads back the
/// configured value, else a `fault` naming the key. `result`: what the
/// kernel reads back after the write (`None`: the key is gone), or the
/// error of the write or the read.
pub fn restored_event<E: std::fmt::Display>(
    r: &Restore,
    result: Result<Option<String>, E>,
) -> Event {
    let hint = |why: &str| {
        format!(
            "{why} (the watchdog needs CAP_NET_ADMIN and write access to \
             /proc/sys/net/netfilter, as the shipped unit's ReadWritePaths= gives)"
        )
    };
    let why = match result {
        Ok(Some(after)) if crate::kernel::same_value(&after, &r.value) => {
            let (key, foreign, value) = (&r.key, &r.foreign, &r.value);
            let msg = format!(
                "{key} restored: something set it to {foreign}, conntrack-guard wrote {value} \
                 back and the kernel reads it back"
            );
            return Event::new(Priority::Notice, "restored", ids::RESTORED, msg)
                .field("CONNTRACK_KEY", &r.key)
                .field("CONNTRACK_FOREIGN", &r.foreign)
                .field("CONNTRACK_RESTORED", &r.value);
        }
        Ok(Some(after)) => format!("wrote {} but the kernel reads back {after}", r.value),
        Ok(None) => hint("the key vanished after the write"),
        Err(e) => hint(&e.to_string()),
    };
    let msg = format!("could not restore {}: {why}", r.key);
    Event::new(Priority::Err, "fault", ids::FAULT, msg).field("CONNTRACK_KEY", &r.key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn drifted(actual: &str) -> Vec<Setting> {
        vec![Setting {
            key: "net.netfilter.nf_conntrack_max".into(),
            expected: "1048576".into(),
            actual: Some(actual.into()),
            at_least: false,
        }]
    }

    #[test]
    fn restores_up_to_the_limit_then_gives_up_once() {
        let mut w = Config::default().watch;
        w.restore = true;
        w.restore_limit = 3;
        let mut t = RestoreTracker::default();
        let mut writes = 0;
        let mut fights = Vec::new();
        // The other writer rewrites it before every sample for 20 minutes.
        for i in 0..240u64 {
            let (todo, evs) = t.step(&w, &drifted("262144"), Some(0), Duration::from_secs(i * 5));
            writes += todo.len();
            fights.extend(evs);
        }
        assert_eq!(writes, 3, "never more writes than the limit");
        assert_eq!(fights.len(), 1, "drift_fight once");
        assert_eq!(fights[0].name, "drift_fight");
        assert_eq!(fights[0].get("CONNTRACK_RESTORES"), Some("3"));
        // Given up stays given up, even after the hour.
        let (todo, evs) = t.step(&w, &drifted("262144"), Some(0), Duration::from_secs(7200));
        assert!(todo.is_empty() && evs.is_empty());
    }

    #[test]
    fn restores_spread_over_hours_are_allowed() {
        let mut w = Config::default().watch;
        w.restore = true;
        w.restore_limit = 2;
        let mut t = RestoreTracker::default();
        let mut writes = 0;
        for h in 0..5u64 {
            writes += t
                .step(&w, &drifted("1"), None, Duration::from_secs(h * 3600))
                .0
                .len();
        }
        assert_eq!(writes, 5);
        assert!(t.given_up.is_empty());
    }

    #[test]
    fn off_absent_and_ok_keys_are_not_written() {
        let mut w = Config::default().watch;
        let mut t = RestoreTracker::default();
        assert!(
            t.step(&w, &drifted("1"), None, Duration::ZERO).0.is_empty(),
            "off by default"
        );
        w.restore = true;
        let mut s = drifted("1048576");
        assert!(t.step(&w, &s, None, Duration::ZERO).0.is_empty(), "ok");
        s[0].actual = None;
        assert!(t.step(&w, &s, None, Duration::ZERO).0.is_empty(), "absent");
    }

    fn max_drift(expected: &str, actual: &str) -> Vec<Setting> {
        vec![Setting {
            key: KEY_MAX.into(),
            expected: expected.into(),
            actual: Some(actual.into()),
            at_least: false,
        }]
    }

    #[test]
    fn never_lowers_max_below_the_entries_in_use() {
        // The case: count 1500, kernel max 2000, configured 1000.
        let mut w = Config::default().watch;
        w.restore = true;
        w.restore_limit = 3;
        let mut t = RestoreTracker::default();
        let mut refusals = Vec::new();
        for i in 0..20u64 {
            let (todo, evs) = t.step(
                &w,
                &max_drift("1000", "2000"),
                Some(1500),
                Duration::from_secs(i),
            );
            assert!(todo.is_empty(), "sample {i}: wrote {todo:?}");
            refusals.extend(evs);
        }
        assert_eq!(refusals.len(), 1, "logged once: {refusals:?}");
        let ev = &refusals[0];
        assert_eq!(ev.name, "restore_refused");
        assert_eq!(ev.get("CONNTRACK_IN_USE"), Some("1500"));
        assert_eq!(ev.get("CONNTRACK_NEEDED"), Some("1800"));
        assert!(
            ev.message.contains("1500 entries are in use"),
            "{}",
            ev.message
        );
        assert!(t.recent.is_empty(), "a refusal is not a restore");
        // Not known yet (the first namespace scan): wait, silently.
        let (todo, evs) = t.step(&w, &max_drift("1000", "2000"), None, Duration::ZERO);
        assert!(todo.is_empty() && evs.is_empty());
        // The table drained: now it goes through.
        let (todo, evs) = t.step(&w, &max_drift("1000", "2000"), Some(800), Duration::ZERO);
        assert_eq!(todo.len(), 1);
        assert!(evs.is_empty());
        // A later drift that is refused again is logged again.
        t.step(&w, &max_drift("1000", "1000"), Some(800), Duration::ZERO);
        let (todo, evs) = t.step(&w, &max_drift("1000", "4000"), Some(3000), Duration::ZERO);
        assert!(todo.is_empty());
        assert_eq!(evs.len(), 1);
    }

    #[test]
    fn raising_max_and_other_keys_are_not_held_back() {
        let mut w = Config::default().watch;
        w.restore = true;
        let mut t = RestoreTracker::default();
        // A foreign writer lowered max below the entries in use: writing the
        // configured value back only makes room.
        let (todo, evs) = t.step(&w, &max_drift("2000", "1000"), Some(1500), Duration::ZERO);
        assert_eq!((todo.len(), evs.len()), (1, 0));
        let other = vec![Setting {
            key: "net.netfilter.nf_conntrack_udp_timeout".into(),
            expected: "10".into(),
            actual: Some("30".into()),
            at_least: false,
        }];
        let (todo, evs) = t.step(&w, &other, None, Duration::ZERO);
        assert_eq!((todo.len(), evs.len()), (1, 0));
    }
}
