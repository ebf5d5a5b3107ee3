// SPDX-License-Identifier: MIT OR Apache-2.0
//! Every network namespace (`[watch] namespaces = "all"`): the same level,
//! hysteresis and drop-incident rules as the host's table, applied to each
//! namespace's own count against the global max. A namespace's events carry
//! `CONNTRACK_NETNS` and its owner (runtime, container name and id), and
//! say so in their message. A namespace that disappears leaves the set
//! without a level event (containers come and go), but a drop incident in
//! it is closed: the losses held back in its window and its `drops_ended`
//! are logged, as they are for every namespace when the watchdog stops.

use std::collections::BTreeMap;
use std::time::Duration;

use super::counters::CtTracker;
use super::drops::DropTracker;
use super::level::LevelTracker;
use super::{Fill, Fullness, Thresholds, CONNTRACK};
use crate::netns::sample::{NsSample, SampleError};
use crate::netns::Namespace;
use crate::report::events::Event;

/// One watched namespace.
#[derive(Debug, Clone, Default)]
pub struct NsTracker {
    /// `docker web`, `netns blue`, ...
    pub label: String,
    /// The last fill read.
    pub fill: Option<Fill>,
    /// The namespace as last seen, to tag the events that close it.
    pub ns: Option<Namespace>,
    level: LevelTracker,
    counters: CtTracker,
    drops: DropTracker,
}

impl NsTracker {
    /// The namespace is gone or no longer watched: close its incident.
    fn close(mut self, now: Duration) -> Vec<Event> {
        let level = self.level.level;
        let evs = self.drops.close(&CONNTRACK, self.fill.as_ref(), level, now);
        match &self.ns {
            Some(ns) => evs.into_iter().map(|ev| tag(ev, ns)).collect(),
            None => evs,
        }
    }
}

/// All watched namespaces but the host's, by inode.
#[derive(Debug, Clone, Default)]
pub struct NsTrackers {
    /// The trackers.
    pub by_inode: BTreeMap<u64, NsTracker>,
}

impl NsTrackers {
    /// One scan's results. Namespaces not in it, or that vanished while it
    /// ran, are forgotten, their drop incidents closed.
    pub fn step(
        &mut self,
        t: &Thresholds,
        scan: &[(Namespace, Result<NsSample, SampleError>)],
        now: Duration,
    ) -> Vec<Event> {
        let mut out = Vec::new();
        let mut keep = BTreeMap::new();
        for (ns, sample) in scan.iter().filter(|(ns, _)| !ns.host) {
            let mut tr = self.by_inode.remove(&ns.inode).unwrap_or_default();
            tr.label = ns.owner.label();
            tr.ns = Some(ns.clone());
            match sample {
                Err(e) if e.vanished() => {
                    out.extend(tr.close(now));
                    continue;
                }
                // Unreadable this time (a race with the runtime): keep the
                // state, say nothing; the next scan tries again.
                Err(_) => {}
                Ok(s) if s.max > 0 => {
                    let (count, max) = (s.count, s.max);
                    let fill = Fill { count, max };
                    let mut evs = tr.level.step(t, &fill, Fullness::default(), now);
                    // A namespace's unreadable counters are said by the
                    // scan's own report, not as an event here.
                    let delta = s.table.as_ref().and_then(|t| tr.counters.add(t));
                    let (delta, level) = (delta.as_ref(), tr.level.level);
                    evs.extend(tr.drops.step(&CONNTRACK, t, delta, &fill, level, now));
                    out.extend(evs.into_iter().map(|ev| tag(ev, ns)));
                    tr.fill = Some(fill);
                }
                Ok(_) => {}
            }
            keep.insert(ns.inode, tr);
        }
        for (_, gone) in std::mem::replace(&mut self.by_inode, keep) {
            out.extend(gone.close(now));
        }
        out
    }

    /// At exit: close every namespace's drop incident.
    pub fn flush(&mut self, now: Duration) -> Vec<Event> {
        let all = std::mem::take(&mut self.by_inode);
        all.into_values().flat_map(|t| t.close(now)).collect()
    }

    /// Each namespace's drop, early_drop and insert_failed increases since
    /// it was first scanned, by inode (growth takes the rises between two
    /// scans from these).
    pub fn drops_since_start(&self) -> impl Iterator<Item = (u64, [u64; 3])> + '_ {
        let drops = |(inode, t): (&u64, &NsTracker)| (*inode, t.counters.since_start.drops());
        self.by_inode.iter().map(drops)
    }

    /// Each namespace's count at the last scan.
    pub fn counts(&self) -> impl Iterator<Item = u64> + '_ {
        let trackers = self.by_inode.values();
        trackers.filter_map(|t| t.fill.map(|f| f.count))
    }

    /// The fullest watched namespace.
    pub fn worst(&self) -> Option<(u64, &NsTracker)> {
        let p = |t: &NsTracker| t.fill.map_or(0.0, |f| f.percent());
        let filled = self.by_inode.iter().filter(|(_, t)| t.fill.is_some());
        let worst = filled.max_by(|a, b| p(a.1).total_cmp(&p(b.1)));
        worst.map(|(i, t)| (*i, t))
    }

    /// `netns 12 watched, worst docker web 96.0%` for the status line.
    pub fn status(&self) -> String {
        match self.worst() {
            Some((inode, t)) => {
                let (n, fill) = (self.by_inode.len(), t.fill.map_or(0.0, |f| f.percent()));
                format!("netns {n} watched, worst {} ({inode}) {fill:.1}%", t.label)
            }
            None => format!("netns {} watched", self.by_inode.len()),
        }
    }
}

/// The namespace and its owner, as fields and in the message.
pub fn tag(mut ev: Event, ns: &Namespace) -> Event {
    ev.message = format!("netns {} ({}): {}", ns.inode, ns.owner.label(), ev.message);
    ev.field("CONNTRACK_NETNS", ns.inode)
        .field("CONNTRACK_RUNTIME", ns.owner.runtime.name())
        .field_opt("CONNTRACK_CONTAINER", ns.owner.name.as_ref())
        .field_opt("CONNTRACK_CONTAINER_ID", ns.owner.id.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::kernel::ctstats::{CtCounter, CtTable};
    use crate::kernel::percpu::CpuIds;
    use crate::netns::owner::{Owner, Runtime};
    use std::path::PathBuf;

    fn ns(inode: u64, host: bool) -> Namespace {
        Namespace {
            inode,
            host,
            owner: Owner {
                runtime: if host { Runtime::Host } else { Runtime::Docker },
                id: (!host).then(|| "ab".repeat(32)),
                name: (!host).then(|| "tracker".to_string()),
            },
            processes: 1,
            pid: Some(100),
            bind_name: None,
            enter: PathBuf::from("/nonexistent"),
        }
    }

    fn sample(count: u64, drop: u32) -> Result<NsSample, SampleError> {
        let mut t = CtTable::new(CpuIds::Kernel);
        t.row_mut(0).set(CtCounter::Drop, drop);
        Ok(NsSample {
            count,
            max: 1000,
            counters: None,
            counters_source: None,
            counters_error: None,
            udp: None,
            table: Some(t),
        })
    }

    #[test]
    fn a_container_namespace_levels_and_drops_carry_its_owner() {
        let cfg = Config::default();
        let t = Thresholds::new(&cfg.watch, Duration::from_secs(1));
        let mut tr = NsTrackers::default();
        let mut evs = Vec::new();
        for (i, (count, drop)) in [(100, 0), (960, 0), (1000, 40), (1000, 90)]
            .into_iter()
            .enumerate()
        {
            let scan = vec![
                (ns(1, true), sample(5000, 0)),
                (ns(42, false), sample(count, drop)),
            ];
            evs.extend(tr.step(&t, &scan, Duration::from_secs(i as u64 * 60)));
        }
        let names: Vec<&str> = evs.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            vec!["level_critical", "drops", "drops"],
            "host ignored"
        );
        for e in &evs {
            assert_eq!(e.get("CONNTRACK_NETNS"), Some("42"));
            assert_eq!(e.get("CONNTRACK_CONTAINER"), Some("tracker"));
            assert_eq!(e.get("CONNTRACK_RUNTIME"), Some("docker"));
            assert!(
                e.message.starts_with("netns 42 (docker tracker): "),
                "{}",
                e.message
            );
        }
        assert_eq!(evs[1].get("CONNTRACK_DROP_DELTA"), Some("40"));
        assert_eq!(evs[2].get("CONNTRACK_DROP_DELTA"), Some("50"));
        assert!(tr
            .status()
            .starts_with("netns 1 watched, worst docker tracker (42) 100.0%"));
    }

    /// A namespace that vanishes mid-incident: the drops held back in its
    /// window are logged, then its drops_ended, tagged with its owner; at
    /// exit the same for every namespace still watched.
    #[test]
    fn a_vanished_namespace_closes_its_incident() {
        let cfg = Config::default();
        let mut t = Thresholds::new(&cfg.watch, Duration::from_secs(1));
        t.drops_every = Duration::from_secs(60);
        let mut tr = NsTrackers::default();
        let mut evs = Vec::new();
        for (i, drop) in [0, 10, 25].into_iter().enumerate() {
            let scan = vec![
                (ns(42, false), sample(500, drop)),
                (ns(43, false), sample(500, drop)),
            ];
            evs.extend(tr.step(&t, &scan, Duration::from_secs(i as u64)));
        }
        let names: Vec<&str> = evs.iter().map(|e| e.name).collect();
        assert_eq!(names, vec!["drops", "drops"], "first drop of each at once");
        // 43 goes away with 15 drops held back in its window.
        let evs = tr.step(
            &t,
            &[(ns(42, false), sample(500, 25))],
            Duration::from_secs(3),
        );
        let names: Vec<&str> = evs.iter().map(|e| e.name).collect();
        assert_eq!(names, vec!["drops", "drops_ended"], "{evs:?}");
        assert_eq!(evs[0].get("CONNTRACK_DROP_DELTA"), Some("15"));
        for e in &evs {
            assert_eq!(e.get("CONNTRACK_NETNS"), Some("43"));
            assert!(e.message.starts_with("netns 43 (docker tracker): "));
        }
        // At exit, 42's incident is closed too: its 15 held back, then
        // the end.
        let evs = tr.flush(Duration::from_secs(4));
        let names: Vec<&str> = evs.iter().map(|e| e.name).collect();
        assert_eq!(names, vec!["drops", "drops_ended"], "{evs:?}");
        assert!(evs.iter().all(|e| e.get("CONNTRACK_NETNS") == Some("42")));
        assert!(tr.by_inode.is_empty());
        assert!(tr.flush(Duration::from_secs(5)).is_empty());
    }

    #[test]
    fn a_vanished_namespace_leaves_quietly() {
        let cfg = Config::default();
        let t = Thresholds::new(&cfg.watch, Duration::from_secs(1));
        let mut tr = NsTrackers::default();
        tr.step(&t, &[(ns(42, false), sample(990, 0))], Duration::ZERO);
        assert_eq!(tr.by_inode.len(), 1);
        let evs = tr.step(&t, &[], Duration::from_secs(60));
        assert!(evs.is_empty());
        assert!(tr.by_inode.is_empty());
    }
}
