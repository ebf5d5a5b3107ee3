// SPDX-License-Identifier: MIT OR Apache-2.0
//! `conntrack-guard watch`: the watchdog service.
//!
//! The loop only samples ([`crate::observe`]), decides
//! ([`crate::assess::assess`], a pure function), emits (journal or stderr,
//! sd_notify, the metrics textfile) and sleeps. The sleep waits on the
//! signal self-pipe with a timeout, so SIGTERM ends a one-hour interval at
//! once, and it is cut into pieces of half `WATCHDOG_USEC` so systemd gets a
//! keep-alive in time whatever the interval. The keep-alive means "the loop
//! is alive", nothing more: `READY=1` follows the first sample whatever it
//! read, and `WATCHDOG=1` goes out on schedule while the loop runs, also
//! while nf_conntrack is absent or unreadable (a restart would not bring it
//! back, and would lose the incident state). The kernel's state is in
//! `STATUS=` and the journal; only a hung loop misses a keep-alive.
//!
//! "drops N" in the `STATUS=` line counts the increases of `drop` (and
//! "early_drops" those of `early_drop`) seen since this watchdog started,
//! not the totals since boot: a restart of the service acknowledges old
//! incidents, and `status` or the metrics give the totals since boot.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;

use crate::assess::grow::{own_growth, FlowWindow, GrowPolicy, GrowSample, GrowTracker, Growth};
use crate::assess::netns::{NsTracker, NsTrackers};
use crate::assess::{self, restore, status_line, State, Thresholds};
use crate::config::{self, fmt_duration, Config, Knob, KEY_BUCKETS, KEY_MAX, KEY_UDP_TIMEOUT};
use crate::host::Host;
use crate::kernel::ctstats::CtCounter;
use crate::kernel::kmsg::{self, TableFull};
use crate::kernel::{kernel_u64, read_current, slab};
use crate::netns::sample::{self, NsSample, SampleError as NsError};
use crate::netns::{self, Namespace};
use crate::observe;
use crate::report::events::{default_sink, Event, Priority, Sink};
use crate::report::ids;
use crate::report::metrics::{self, Textfile};
use crate::report::notify::{Notifier, NotifyState};
use crate::report::output;
use crate::state::grown::{self, Remembered};
use crate::sysroot::{SysRoot, DEFAULT_CONFIG};
use crate::system::writers;
use crate::triage;

/// Waits shorter than this are plain sleeps (see [`SignalWait::wait`]).
const SHORT_WAIT: Duration = Duration::from_millis(20);

/// SIGTERM, SIGINT and SIGHUP through signal-hook's self-pipe, read with a
/// timeout: an interruptible sleep without a second thread.
struct SignalWait {
    delivery: SignalDelivery<UnixStream, SignalOnly>,
}

impl SignalWait {
    fn install() -> std::io::Result<Self> {
        let (read, write) = UnixStream::pair()?;
        let delivery =
            SignalDelivery::with_pipe(read, write, SignalOnly, [SIGTERM, SIGINT, SIGHUP])?;
        Ok(SignalWait { delivery })
    }

    /// Wait up to `timeout` for a signal (zero: just look): true on
    /// SIGTERM or SIGINT, else `reload` on SIGHUP.
    fn wait(&mut self, timeout: Duration, reload: impl FnOnce()) -> bool {
        if !timeout.is_zero() && timeout < SHORT_WAIT {
            // SO_RCVTIMEO counts in jiffies (4 ms at HZ=250), too coarse for
            // millisecond intervals; a short plain sleep delays a signal by
            // at most SHORT_WAIT.
            std::thread::sleep(timeout);
        } else if !timeout.is_zero() {
            let read = self.delivery.get_read_mut();
            match read.set_read_timeout(Some(timeout)) {
                // Returns on a signal's wake-up byte, on timeout or on EINTR;
                // which one does not matter: the pending set below decides.
                Ok(()) => {
                    let _ = read.read(&mut [0u8; 16]);
                }
                Err(_) => std::thread::sleep(timeout.min(Duration::from_millis(100))),
            }
        }
        let pending: Vec<_> = self.delivery.pending().collect();
        let stop = pending.iter().any(|s| *s != SIGHUP);
        if !stop && pending.contains(&SIGHUP) {
            reload();
        }
        stop
    }
}

/// What identifies one version of the configuration file: a rename (an
/// editor's save), an in-place write or a new file all change it. `None`:
/// the file does not exist (built-in defaults).
type Stamp = Option<(u64, u64, i64, i64, i64, i64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.dev(),
        m.ino(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        m.size(),
    ))
}

/// Everything the loop carries between samples.
struct Watcher<'a> {
    host: &'a Host,
    config_path: Option<PathBuf>,
    /// The configuration file as it was when last loaded.
    config_stamp: Stamp,
    cli_interval: Option<Duration>,
    cfg: Config,
    textfile: Option<Textfile>,
    state: State,
    start: Instant,
    last_sample: Instant,
    next_sample: Instant,
    last_ping: Instant,
    ready_sent: bool,
    notifier: Notifier,
    /// The triage running now, if any, and when the last one started.
    triage: Option<triage::Triage>,
    last_triage: Option<Instant>,
    /// `[watch] namespaces = "all"`: the scan running now, when the last
    /// one started, the trackers, and the last "table full in netns" line
    /// seen per namespace.
    ns_scan: Option<mpsc::Receiver<Scan>>,
    last_ns_scan: Option<Instant>,
    namespaces: NsTrackers,
    kmsg_seen: BTreeMap<u64, u64>,
    /// The writer search running now, if any (see `name_the_writer`).
    hints: Option<HintJob>,
    /// What the last namespace scan could not enter for want of a
    /// capability, and whether that was said.
    ns_denied: Option<&'static str>,
    ns_denied_logged: bool,
    /// Saving the totals failed (said once).
    totals_failing: bool,
    /// `[grow]`: raising max on its own (see the Growth section below).
    grower: Grower,
}

/// A writer search on its own thread and the events waiting for it.
struct HintJob {
    rx: mpsc::Receiver<Vec<String>>,
    held: Vec<Event>,
    deadline: Instant,
}

/// How often held drift events look for their hint.
const HINT_POLL: Duration = Duration::from_millis(50);

/// How long drift events wait for the name of the other writer.
pub const HINT_TIMEOUT: Duration = Duration::from_secs(2);

/// The "table full" lines of one read of the kernel ring (the last per
/// namespace) that were not reported yet, with their namespace. `seen`
/// becomes the ring's newest line per namespace: a namespace whose lines
/// have left the ring cannot bring an old one back, so it is forgotten and
/// the map never outgrows the ring. Pure.
fn new_table_full(seen: &mut BTreeMap<u64, u64>, ring: Vec<TableFull>) -> Vec<(u64, TableFull)> {
    let before = std::mem::take(seen);
    let fresh = ring.into_iter().filter_map(|line| {
        let inode = line.netns?;
        seen.insert(inode, line.usec);
        let new = before.get(&inode).map_or(true, |u| *u < line.usec);
        new.then_some((inode, line))
    });
    fresh.collect()
}

/// One namespace scan's results, and the capability that kept it out of
/// other namespaces, if one did.
type Scan = (
    Vec<(Namespace, Result<NsSample, NsError>)>,
    Option<Vec<TableFull>>,
    Option<&'static str>,
);

impl Watcher<'_> {
    fn emit_all(sink: &mut dyn Sink, evs: impl IntoIterator<Item = Event>) {
        for ev in evs {
            sink.emit(&ev);
        }
    }

    /// The states given (`None`: left out) in one datagram.
    fn notify<'s>(
        &mut self,
        sink: &mut dyn Sink,
        states: impl IntoIterator<Item = Option<NotifyState<'s>>>,
    ) -> bool {
        let states: Vec<_> = states.into_iter().flatten().collect();
        let sent = self.notifier.send(&states);
        if let Err(Some(ev)) = &sent {
            sink.emit(ev);
        }
        sent.is_ok()
    }

    /// `READY=1` when `ready`, the `STATUS=` line, and `WATCHDOG=1` when
    /// `ping` and the watchdog is on, in one datagram.
    fn notify_status(&mut self, sink: &mut dyn Sink, ready: bool, ping: bool) -> bool {
        let line = self.status_line();
        let ping = ping && self.notifier.watchdog_every().is_some();
        let ready = ready.then_some(NotifyState::Ready);
        let ping = ping.then_some(NotifyState::Watchdog);
        self.notify(sink, [ready, Some(NotifyState::Status(&line)), ping])
    }

    /// The sampling interval: `--interval`, else the configuration's.
    fn interval(&self) -> Duration {
        self.cli_interval.unwrap_or(self.cfg.watch.interval)
    }

    fn thresholds(&self) -> Thresholds {
        Thresholds::new(&self.cfg.watch, self.interval())
    }

    /// `[watch] namespaces = "all"`, and the access to act on it.
    fn all_namespaces(&self) -> bool {
        self.cfg.watch.all_namespaces && self.host.kernel_access
    }

    /// The file `config::load` reads: `--config`, else the default path.
    fn config_file(&self) -> PathBuf {
        self.config_path
            .clone()
            .unwrap_or_else(|| self.host.root.path(DEFAULT_CONFIG))
    }

    fn sample(&mut self, sink: &mut dyn Sink) {
        let now = Instant::now();
        self.last_sample = now;
        self.next_sample = now + self.interval();
        let mut obs = observe::observe(self.host, &self.cfg);
        own_growth(&mut obs.settings, self.grower.own);
        // A setting that differs from the configuration may have just been
        // applied from a newer file (`systemctl restart
        // conntrack-guard-apply` after an edit, or a hand-run apply): follow
        // the file before calling it drift. The file is only looked at
        // when a new drift would be logged, never on a quiet sample.
        if self.state.drift.would_report(&obs.settings)
            && stamp(&self.config_file()) != self.config_stamp
        {
            self.reload(sink);
            obs = observe::observe(self.host, &self.cfg);
            own_growth(&mut obs.settings, self.grower.own);
        }
        let at = now.duration_since(self.start);
        let level_before = self.state.level();
        let drops_before = self.state.counters.since_start.clone();
        let t = self.thresholds();
        let (state, mut evs) = assess::assess(&t, std::mem::take(&mut self.state), &obs, at);
        self.state = state;
        if self.state.level() > level_before {
            self.start_triage(now);
        }
        if let Some(r) = self.triage.as_mut().and_then(triage::Triage::poll) {
            self.triage = None;
            evs.push(triage_event(r, self.state.fill.as_ref()));
            give_back_heap();
        }
        self.start_ns_scan(now);
        evs.extend(self.ns_scan_result(at).unwrap_or_default());
        let in_use = self.entries_in_use(&obs);
        let restore = &mut self.state.restore;
        let (restores, fights) = restore.step(&self.cfg.watch, &obs.settings, in_use, at);
        evs.extend(fights);
        // `[watch] restore`: write the configured value back and read it.
        let root = &self.host.root;
        for r in &restores {
            let back = root
                .write_sysctl(&r.key, &r.value)
                .and_then(|()| read_current(root, &r.key));
            evs.push(restore::restored_event(r, back));
        }
        evs.extend(self.grow_on_sample(&obs, &drops_before, at, now));
        evs.extend(self.hint_result(now));
        Self::emit_all(sink, self.name_the_writer(evs, now));
        // READY=1 is retried with the next sample until it went out.
        if self.notify_status(sink, !self.ready_sent, true) {
            self.ready_sent = true;
        }
        self.last_ping = now;
        // The metrics need a fill: without one the textfile keeps its last
        // timestamp, which is how a scraper sees that the data is stale.
        if self.state.healthy() {
            self.write_metrics(sink, &obs);
        }
    }

    /// The level rose: find out who fills the table, once per
    /// `triage_every`, on its own thread (a dump of a large table takes
    /// hundreds of milliseconds; the sampling loop and the keep-alives must
    /// not wait for it).
    fn start_triage(&mut self, now: Instant) {
        let w = &self.cfg.watch;
        let due = self
            .last_triage
            .map_or(true, |t| now.duration_since(t) >= w.triage_every);
        if w.triage && self.host.kernel_access && self.triage.is_none() && due {
            self.last_triage = Some(now);
            self.triage = Some(triage::Triage::start(self.host, None, TRIAGE_TIMEOUT));
        }
    }

    /// Every `namespaces_every`, scan all network namespaces on a thread of
    /// its own (200 namespaces take about 90 ms; the sampling loop and the
    /// keep-alives must not wait).
    fn start_ns_scan(&mut self, now: Instant) {
        let w = &self.cfg.watch;
        let due = self
            .last_ns_scan
            .map_or(true, |t| now.duration_since(t) >= w.namespaces_every);
        if !(self.all_namespaces() && self.ns_scan.is_none() && due) {
            return;
        }
        self.last_ns_scan = Some(now);
        let root = self.host.root.clone();
        self.ns_scan = spawn("ctg-netns", move || {
            // Without CAP_SYS_ADMIN every setns fails: do not try (one
            // thread per namespace per scan, for nothing).
            if netns::lacks_sys_admin(&root) == Some(true) {
                return (Vec::new(), None, Some(netns::CAP_SYS_ADMIN_NAME));
            }
            let found = netns::scan(&root);
            let samples = sample::sample_all(&found);
            let denied = samples.iter().find_map(|r| match r {
                Err(NsError::Enter(e)) => e.missing_capability(),
                _ => None,
            });
            let kmsg = kmsg::read_table_full(&root).ok();
            (found.into_iter().zip(samples).collect(), kmsg, denied)
        });
    }

    /// The namespace events once a scan is done; `None` while none is.
    fn ns_scan_result(&mut self, at: Duration) -> Option<Vec<Event>> {
        let got = match self.ns_scan.as_ref()?.try_recv() {
            Err(mpsc::TryRecvError::Empty) => return None,
            got => got,
        };
        self.ns_scan = None;
        let Ok((scan, kmsg, denied)) = got else {
            return Some(Vec::new());
        };
        self.grower.scans += 1;
        let mut evs = self.namespaces.step(&self.thresholds(), &scan, at);
        evs.extend(self.ns_access(denied));
        // "table full in netns N": which container that is. Lines from
        // before the first scan are history, not news.
        let first = self.grower.scans == 1;
        let fresh = kmsg.map(|k| new_table_full(&mut self.kmsg_seen, k));
        for (inode, line) in fresh.into_iter().flatten().filter(|_| !first) {
            let ns = scan.iter().map(|(ns, _)| ns).find(|ns| ns.inode == inode);
            let who = ns.map_or("a namespace that is gone now".to_string(), |n| {
                n.owner.label()
            });
            let msg = format!(
                "the kernel reports the conntrack table full in netns {inode}: {who}; \
                 its count reached the global nf_conntrack_max"
            );
            let ev = Event::new(Priority::Err, "netns_full", ids::NETNS_FULL, msg)
                .field("CONNTRACK_KERNEL_LINE", &line.line);
            evs.push(match ns {
                Some(ns) => assess::netns::tag(ev, ns),
                None => ev.field("CONNTRACK_NETNS", inode),
            });
        }
        drop(scan);
        give_back_heap();
        Some(evs)
    }

    /// A scan was kept out of other namespaces by a missing capability
    /// (`denied`), or was not: remember it for the status line, and say
    /// it once per start (a capability does not come back without one).
    fn ns_access(&mut self, denied: Option<&'static str>) -> Option<Event> {
        self.ns_denied = denied;
        let cap = denied?;
        if std::mem::replace(&mut self.ns_denied_logged, true) {
            return None;
        }
        let msg = format!(
            "[watch] namespaces = \"all\" is set, but this process cannot enter other \
             network namespaces: it lacks {cap}; only the host's table is watched. \
             {dropin} grants it: install it as \
             /etc/systemd/system/conntrack-guard.service.d/allns.conf, then \
             systemctl daemon-reload && systemctl restart conntrack-guard",
            dropin = netns::ALLNS_DROPIN
        );
        let (name, id) = ("netns_unavailable", ids::NETNS_UNAVAILABLE);
        let ev = Event::new(Priority::Warning, name, id, msg)
            .field("CONNTRACK_MISSING_CAPABILITY", cap)
            .field("CONNTRACK_DROPIN", netns::ALLNS_DROPIN);
        Some(ev)
    }

    /// The `STATUS=` line, with the namespaces when all are watched.
    fn status_line(&self) -> String {
        let mut parts = vec![status_line(&self.state)];
        if self.all_namespaces() {
            parts.push(match self.ns_denied {
                Some(cap) if self.namespaces.by_inode.is_empty() => {
                    format!("netns: no access (needs {cap})")
                }
                _ => self.namespaces.status(),
            });
        }
        parts.extend(self.grower.tracker.status_fragment());
        parts.join(" · ")
    }

    /// The most entries any namespace this watchdog can see holds, for the
    /// lowering guard of `[watch] restore`: its own count, and with
    /// `namespaces = "all"` each one of the last scan. `None` while not
    /// known: its own count unreadable, or the first scan not in yet.
    fn entries_in_use(&self, obs: &assess::Observation) -> Option<u64> {
        let assess::FillReading::Read { count, .. } = obs.fill else {
            return None;
        };
        if self.all_namespaces() && self.grower.scans == 0 {
            return None;
        }
        Some(self.namespaces.counts().fold(count, u64::max))
    }

    /// Drift events say who else writes the key, where that can be known
    /// (sysctl.d files, kube-proxy and friends, the module parameter). Only
    /// run when such an event goes out. The search reads /proc/*/cmdline,
    /// which can hang on a process in D state, so it runs on a thread of
    /// its own: the events wait for it at most [`HINT_TIMEOUT`], then go
    /// out without the hint. One search at a time: while one is still
    /// running (or hung), new events go out at once, without a hint.
    /// Returns the events to emit now.
    fn name_the_writer(&mut self, evs: Vec<Event>, now: Instant) -> Vec<Event> {
        /// The key and the value someone else wrote to it.
        fn ask(e: &Event) -> Option<[&str; 2]> {
            let foreign = e.get("CONNTRACK_ACTUAL").or(e.get("CONNTRACK_FOREIGN"));
            Some([e.get("CONNTRACK_KEY")?, foreign?])
        }
        let wants =
            |e: &Event| matches!(e.name, "drift" | "drift_fight" | "restored") && ask(e).is_some();
        if self.hints.is_some() || !evs.iter().any(wants) {
            return evs;
        }
        let (held, now_out): (Vec<Event>, Vec<Event>) = evs.into_iter().partition(wants);
        let asks: Vec<_> = held
            .iter()
            .filter_map(ask)
            .map(|a| a.map(String::from))
            .collect();
        let root = self.host.root.clone();
        let hint = move |[key, foreign]: &[String; 2]| {
            writers::hint(&root, key, foreign).unwrap_or_default()
        };
        match spawn("ctg-writers", move || asks.iter().map(hint).collect()) {
            Some(rx) => {
                let deadline = now + HINT_TIMEOUT;
                self.hints = Some(HintJob { rx, held, deadline });
                now_out
            }
            // No thread (TasksMax): the events without the hint.
            None => now_out.into_iter().chain(held).collect(),
        }
    }

    /// The held drift events, once their hints are in or their time is up.
    fn hint_result(&mut self, now: Instant) -> Vec<Event> {
        let Some(job) = self.hints.as_mut() else {
            return Vec::new();
        };
        let texts = match job.rx.try_recv() {
            // Still searching: past the bound the events go out without
            // the hint; the job stays until the thread returns, so a hung
            // search never has a second one piled on it.
            Err(mpsc::TryRecvError::Empty) if now >= job.deadline => {
                return std::mem::take(&mut job.held)
            }
            Err(mpsc::TryRecvError::Empty) => return Vec::new(),
            // Disconnected: the events without the hint.
            texts => texts.unwrap_or_default(),
        };
        let mut held = self.hints.take().map_or_else(Vec::new, |j| j.held);
        for (ev, text) in held.iter_mut().zip(texts) {
            if !text.is_empty() {
                ev.message += &format!("; who else writes it: {text}");
                ev.fields.push(("CONNTRACK_WRITER_HINT", text));
            }
        }
        held
    }

    fn write_metrics(&mut self, sink: &mut dyn Sink, obs: &assess::Observation) {
        let (Some(tf), Some(fill)) = (self.textfile.as_mut(), self.state.fill.as_ref()) else {
            return;
        };
        let (conntrack, softnet) = (self.state.conntrack_totals(), self.state.backlog_totals());
        let counters = obs.counters.as_ref().and_then(|r| r.as_ref().ok());
        let text = metrics::render(&metrics::Snapshot {
            fill,
            level: self.state.level(),
            conntrack: if counters.is_some() { &conntrack } else { &[] },
            counters_source: counters.map(|r| r.source),
            udp: obs.udp.as_ref().ok(),
            softnet: if obs.softnet.is_ok() { &softnet } else { &[] },
            drift: self.state.drifted() > 0,
            grow: self.cfg.grow.enabled.then(|| metrics::GrowMetrics {
                grown: self.grower.tracker.grown,
                budget_bytes: self.grower.budget_bytes,
                limited: self.grower.tracker.at_budget(fill.max),
            }),
            timestamp: unix_now().as_secs_f64(),
        });
        Self::emit_all(sink, tf.write(&text));
        // The totals just exported, for the next process (see
        // assess::SavedTotals). Said once for a run of failed saves: again
        // only after a save has worked in between.
        let saved = metrics::save_totals(&self.host.root, &self.state.saved_totals());
        if let (Err(e), false) = (&saved, self.totals_failing) {
            let msg = format!(
                "cannot keep the metrics' totals for the next start ({e}); after a \
                 restart the *_total counters may start lower (the unit's \
                 RuntimeDirectory=conntrack-guard keeps them)"
            );
            sink.emit(&Event::fault(Priority::Warning, msg));
        }
        self.totals_failing = saved.is_err();
    }

    fn reload(&mut self, sink: &mut dyn Sink) {
        // systemd stays in "reloading" until READY=1 follows RELOADING=1.
        // Before the first sample READY=1 has not been sent, so a reload
        // then is not announced: the service is still starting, and the
        // first sample sends READY=1 with the new configuration in force.
        let announce = self.ready_sent;
        if announce {
            let stamp = NotifyState::monotonic_usec_now().ok();
            self.notify(sink, [Some(NotifyState::Reloading), stamp]);
        }
        // Taken before the read: a write during the read shows as a change
        // next time, never as a missed one. An invalid file is not retried
        // until it changes again.
        self.config_stamp = stamp(&self.config_file());
        match config::load(&self.host.root, self.config_path.as_deref()) {
            Ok(cfg) => {
                // A new configuration is a new start for keys given up on.
                self.state.restore = Default::default();
                // A changed budget or max may say grow_limited again; an
                // edited max forgets the growth (as apply does with the
                // records): the max the operator wrote is expected again.
                if cfg.grow != self.cfg.grow || cfg.conntrack.max != self.cfg.conntrack.max {
                    self.grower.tracker.limited = None;
                }
                if cfg.conntrack.max != self.cfg.conntrack.max {
                    self.grower.tracker.ours = None;
                    self.grower.own = None;
                }
                self.grower.write_failing = false;
                let interval = self.cli_interval.unwrap_or(cfg.watch.interval);
                let path = cfg.metrics.textfile.as_deref();
                if self.textfile.as_ref().map(|t| t.path.as_path()) != path {
                    self.textfile = path.map(Textfile::new);
                }
                self.next_sample = self.next_sample.min(self.last_sample + interval);
                let msg = format!(
                    "configuration reloaded from {}: interval {}, warning {}%, critical {}%, \
                     {} watched settings",
                    cfg.source_name(),
                    fmt_duration(interval),
                    cfg.watch.warn_percent,
                    cfg.watch.critical_percent,
                    cfg.targets().len()
                );
                sink.emit(&Event::new(Priority::Info, "reload", ids::RELOAD, msg));
                self.cfg = cfg;
            }
            Err(e) => {
                let msg = format!("invalid configuration, keeping the previous one: {e}");
                let ev = Event::new(Priority::Err, "reload", ids::RELOAD, msg)
                    .field("CONNTRACK_CONFIG_FILE", e.file.display())
                    .field_opt("CONNTRACK_CONFIG_KEY", e.key.as_ref())
                    .field_opt("CONNTRACK_CONFIG_LINE", e.line);
                sink.emit(&ev);
            }
        }
        self.notify_status(sink, announce, false);
    }

    /// When to wake next: the next sample, or the next keep-alive,
    /// whichever comes first.
    fn wake_at(&self) -> Instant {
        let every = self.notifier.watchdog_every();
        let ping = every.map_or(self.next_sample, |e| self.last_ping + e);
        let at = self.next_sample.min(ping);
        // Held drift events go out when their hint is in or its bound is
        // up, and a namespace scan's result is taken as soon as it is in
        // (see `ns_arrived`): look every HINT_POLL until then.
        if self.hints.as_ref().is_some_and(|j| !j.held.is_empty()) || self.ns_scan.is_some() {
            return at.min(Instant::now() + HINT_POLL);
        }
        at
    }

    fn run(&mut self, signals: &mut SignalWait, sink: &mut dyn Sink) -> i32 {
        loop {
            // Events the journal did not take yet (it stalled): never
            // waited for, tried again on every turn.
            sink.retry();
            if signals.wait(Duration::ZERO, || self.reload(sink)) {
                break;
            }
            if Instant::now() >= self.next_sample {
                self.sample(sink);
            }
            let timeout = self.wake_at().saturating_duration_since(Instant::now());
            if signals.wait(timeout, || self.reload(sink)) {
                break;
            }
            Self::emit_all(sink, self.hint_result(Instant::now()));
            self.ns_arrived(sink);
            let now = Instant::now();
            let every = self.notifier.watchdog_every();
            if every.is_some_and(|e| now >= self.last_ping + e) && now < self.next_sample {
                self.last_ping = now;
                self.notify(sink, [Some(NotifyState::Watchdog)]);
            }
        }
        // Held drift events go out without waiting for their hint.
        Self::emit_all(sink, self.hints.take().into_iter().flat_map(|j| j.held));
        Self::emit_all(sink, assess::flush(std::mem::take(&mut self.state)).1);
        let at = Instant::now().duration_since(self.start);
        Self::emit_all(sink, self.namespaces.flush(at));
        let status = NotifyState::Status("stopping on signal");
        self.notify(sink, [Some(NotifyState::Stopping), Some(status)]);
        // What the journal still holds back gets a moment, not forever:
        // systemd's stop timeout is the hard bound.
        sink.drain(JOURNAL_DRAIN_AT_EXIT);
        crate::exit::OK
    }
}

// --- Growth ([grow], issue 20) -------------------------------------------
//
// Each sample, the pure GrowTracker decides from plain values; this section
// gathers them (the fullest watched namespace, the rises of the loss
// counters in any of them, the new-flow rate), writes what it decided (max,
// then buckets, timing that write: the packet stall of the rehash), and
// keeps the record under /run (and /var/lib with `remember`) that apply,
// status and doctor read so the grown max is not taken for drift. Two small
// sysctl writes: done on the loop, they never wait for anything but the
// kernel, and the bucket rehash is bounded by the live-resize limit.

#[derive(Debug, Default)]
struct Grower {
    tracker: GrowTracker,
    /// The `insert` total and when it was read, for the new-flow rate.
    last_insert: Option<(u64, Instant)>,
    /// Entries plus losses over the last window: the new-flow rate where
    /// the kernel does not count inserts.
    window: FlowWindow,
    /// The running sum of the loss-counter rises (for `window`).
    losses: u64,
    /// The host's count at the last sample (a namespace scan that finishes
    /// between samples is held against it).
    last_host_count: Option<u64>,
    /// The max and buckets this watchdog grew the table to (this process,
    /// or an earlier one this boot): expected from then on, not drift.
    own: Option<(u64, u64)>,
    /// Namespace scan results taken (0: the first is not in yet), and how
    /// many of them the last growth step had seen.
    scans: u64,
    scans_used: u64,
    /// Scan results whose loss rises do not trigger a growth (they were
    /// read before the last growth took effect).
    absorb: u8,
    /// Writing max failed and was said (once until a write works).
    write_failing: bool,
    /// Each watched namespace's drop totals as last seen, by inode.
    ns_seen: BTreeMap<u64, [u64; 3]>,
    /// Bytes per entry, read from the slab once (its size is fixed while
    /// the kernel runs).
    entry_bytes: Option<u64>,
    /// The budget in bytes at the last sample (for the metrics).
    budget_bytes: u64,
    /// The configured max the first growth of this boot started from, as
    /// this boot's record says (a `max = "keep"` configuration has none of
    /// its own).
    configured: Option<u64>,
}

impl Grower {
    /// Start from this boot's record: a max grown by an earlier process of
    /// this watchdog stays its own. A record that cannot be read is said
    /// once and otherwise ignored.
    fn resume(&mut self, root: &SysRoot) -> Option<Event> {
        let r = match grown::read(root, grown::THIS_BOOT) {
            Ok(r) => r?,
            Err(e) => {
                let msg = format!("ignoring this boot's growth record: {e}");
                return Some(Event::fault(Priority::Warning, msg));
            }
        };
        self.tracker = GrowTracker::resumed(r.max);
        self.own = Some((r.max, r.buckets));
        self.configured = Some(r.configured);
        None
    }
}

/// The rises of drop, early_drop and insert_failed since the last look,
/// summed over namespaces, from each one's totals since it was first
/// watched; `seen` becomes `now` (a namespace gone is forgotten, a new one
/// counts from zero, as its totals do).
fn ns_rises(
    seen: &mut BTreeMap<u64, [u64; 3]>,
    now: impl Iterator<Item = (u64, [u64; 3])>,
) -> [u64; 3] {
    let next: BTreeMap<_, _> = now.collect();
    let mut rises = [0u64; 3];
    for (inode, totals) in &next {
        let before = seen.get(inode).copied().unwrap_or_default();
        for (r, (n, b)) in rises.iter_mut().zip(totals.iter().zip(before)) {
            *r = r.saturating_add(n.saturating_sub(b));
        }
    }
    *seen = next;
    rises
}

/// New flows per second from two readings of the `insert` total. `None`
/// without a previous reading, when no time passed, or while the total
/// stays 0 (kernels since 5.x no longer count inserts: unknown, not zero).
fn flow_rate(last: Option<(u64, Instant)>, total: u64, now: Instant) -> Option<f64> {
    let (before, then) = last?;
    let secs = now.saturating_duration_since(then).as_secs_f64();
    (total > 0 && secs > 0.0).then(|| total.saturating_sub(before) as f64 / secs)
}

/// The fullest of the host's table (`host`, count) and the fullest other
/// namespace: its count and label. max is one global ceiling, so counts
/// compare directly.
fn fullest(host: u64, other: Option<(u64, &NsTracker)>) -> (u64, String) {
    match other.and_then(|(inode, t)| Some((inode, t, t.fill?.count))) {
        Some((inode, t, count)) if count > host => (count, format!("netns {inode} ({})", t.label)),
        _ => (host, "host".to_string()),
    }
}

/// The record of a growth, for /run and /var/lib.
fn record(g: &Growth, configured: u64, at: u64) -> Remembered {
    Remembered {
        max: g.max_after,
        buckets: g.buckets_after,
        configured,
        at,
        reason: g.reason.clone(),
    }
}

impl Watcher<'_> {
    /// One growth step on a sample: the host's fill and loss-counter rises
    /// from this observation, the namespaces' from the last scan.
    fn grow_on_sample(
        &mut self,
        obs: &assess::Observation,
        drops_before: &assess::Tally,
        at: Duration,
        now: Instant,
    ) -> Vec<Event> {
        let assess::FillReading::Read { count, max } = obs.fill else {
            return Vec::new();
        };
        let after = &self.state.counters.since_start;
        let rises =
            assess::DROPS.map(|name| after.get(name).saturating_sub(drops_before.get(name)));
        self.grower.last_host_count = Some(count);
        self.grow(count, max, rises, at, now)
    }

    /// A namespace scan finished between samples: its events now, and a
    /// growth decided on it at once rather than an interval later (the
    /// namespaces are read only once per `namespaces_every`; a full one
    /// drops packets until then). The host's count is the last sample's;
    /// max is read afresh, as a growth of the last sample changed it.
    fn ns_arrived(&mut self, sink: &mut dyn Sink) {
        let now = Instant::now();
        let at = now.duration_since(self.start);
        let Some(mut evs) = self.ns_scan_result(at) else {
            return; // no scan, or still scanning
        };
        let max = kernel_u64(&self.host.root, KEY_MAX);
        if let (Some(count), Some(max)) = (self.grower.last_host_count, max) {
            evs.extend(self.grow(count, max, [0; 3], at, now));
        }
        Self::emit_all(sink, evs);
    }

    /// One growth step: decide, write, read back, record; the events.
    /// `count` and `max` are the host's, `host_rises` its drop,
    /// early_drop and insert_failed rises since the last step.
    fn grow(
        &mut self,
        count: u64,
        max: u64,
        host_rises: [u64; 3],
        at: Duration,
        now: Instant,
    ) -> Vec<Event> {
        let (grow, w) = (&self.cfg.grow, &self.cfg.watch);
        if !grow.enabled {
            return Vec::new();
        }
        let (root, interval) = (&self.host.root, self.interval());
        let scanning = self.ns_scan.is_some();
        let all = self.all_namespaces();
        let g = &mut self.grower;
        // The other namespaces' entries and loss rises, and how often they
        // are read (the flow-rate window below holds two scans).
        let (others, ns, scan_every) = if all {
            let ns = ns_rises(&mut g.ns_seen, self.namespaces.drops_since_start());
            let others: u64 = self.namespaces.counts().sum();
            (others, ns, w.namespaces_every)
        } else {
            (0, [0; 3], Duration::ZERO)
        };
        let rises: [u64; 3] = std::array::from_fn(|i| host_rises[i].saturating_add(ns[i]));
        // A scan read while or just before the table grew still shows the
        // drops the growth answered: they count as flows, not as a reason
        // to grow again (seen here: a second doubling one scan later).
        let fresh_scan = std::mem::replace(&mut g.scans_used, g.scans) != g.scans;
        let trigger_rises = if fresh_scan && g.absorb > 0 {
            g.absorb -= 1;
            host_rises
        } else {
            rises
        };
        let (fullest_count, fullest_label) =
            fullest(count, all.then(|| self.namespaces.worst()).flatten());
        let table_count = count.saturating_add(others);
        // New flows per second: the kernel's `insert` count where it still
        // counts, else (and at least) what the entries and losses show over
        // the last window, long enough to hold two namespace scans.
        let inserted = self.state.counters.deltas.monotonic(CtCounter::Insert);
        let inserted = inserted.and_then(|t| flow_rate(g.last_insert.replace((t, now)), t, now));
        g.losses = g.losses.saturating_add(rises.iter().sum());
        let window = interval.max(scan_every) * 2;
        let seen = g
            .window
            .rate(at, table_count.saturating_add(g.losses), window);
        let rate = inserted.into_iter().chain(seen).reduce(f64::max);
        g.budget_bytes = observe::budget_bytes(crate::kernel::ram_bytes(root), grow.budget);
        let sample = GrowSample {
            max,
            buckets: kernel_u64(root, KEY_BUCKETS).unwrap_or(0),
            page_size: self.host.page_size,
            fullest_count,
            fullest_label,
            table_count,
            rises: trigger_rises,
            new_flow_rate: rate,
            udp_timeout: kernel_u64(root, KEY_UDP_TIMEOUT).unwrap_or(30),
            entry_bytes: *g.entry_bytes.get_or_insert_with(|| slab::entry_bytes(root)),
        };
        let policy = GrowPolicy {
            budget_bytes: g.budget_bytes,
            every: grow.every,
            critical_percent: w.critical_percent,
        };
        let mut step = g.tracker.step(&policy, &sample, at);
        let Some(growth) = step.growth.as_mut() else {
            return step.events(None);
        };
        if let Err(e) = root.write_sysctl(KEY_MAX, &growth.max_after.to_string()) {
            g.tracker.write_failed();
            // Tried again after [grow] every, but said once until a write
            // works (or a reload): in a network namespace other than the
            // initial one max is read-only for good, and a sandbox without
            // the path stays so until restarted.
            if std::mem::replace(&mut g.write_failing, true) {
                return Vec::new();
            }
            let msg = format!(
                "cannot grow nf_conntrack_max {} → {} ({}): {e}; the watchdog needs \
                 the initial network namespace, CAP_NET_ADMIN and write access to \
                 /proc/sys/net/netfilter (the shipped unit's ReadWritePaths=); tried \
                 again after [grow] every, said again once it works",
                growth.max_before, growth.max_after, growth.reason
            );
            return vec![Event::fault(Priority::Err, msg).field("CONNTRACK_KEY", KEY_MAX)];
        }
        g.write_failing = false;
        let mut stall = None;
        if growth.buckets_changed() {
            let started = Instant::now();
            match root.write_sysctl(KEY_BUCKETS, &growth.buckets_after.to_string()) {
                // The write returns once every entry is rehashed: its time
                // bounds the stall packets saw (README "Bucket resize stall").
                Ok(()) => stall = Some(started.elapsed()),
                Err(e) => growth.buckets_failed(&e.to_string()),
            }
        }
        // What the kernel stores is what is recorded and reported.
        if let Some(v) = kernel_u64(root, KEY_MAX).filter(|v| *v != growth.max_after) {
            growth.reason.push_str(&format!("; max read back as {v}"));
            growth.max_after = v;
        }
        if growth.buckets_changed() {
            growth.buckets_after = kernel_u64(root, KEY_BUCKETS).unwrap_or(growth.buckets_after);
        }
        let configured = match self.cfg.conntrack.max {
            Knob::Set(m) => m,
            _ => *g.configured.get_or_insert(growth.max_before),
        };
        let rec = record(growth, configured, unix_now().as_secs());
        g.own = Some((rec.max, rec.buckets));
        // The scan running now (if any) and the next one read drops from
        // before this growth.
        g.absorb = if scanning { 2 } else { 1 };
        let mut evs = step.events(stall);
        let remembered = grow.remember.then_some(grown::REMEMBERED);
        for rel in [grown::THIS_BOOT].into_iter().chain(remembered) {
            if let Err(e) = grown::write(root, rel, &rec) {
                let msg = format!(
                    "cannot record the growth to {} in {e}; status and apply may \
                     take the grown max for drift",
                    rec.max
                );
                evs.push(Event::fault(Priority::Warning, msg));
            }
        }
        evs
    }
}

/// The time since the Unix epoch (0 before it).
fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// `job` on a thread of its own, its result through the receiver; `None`
/// when no thread can be had (TasksMax).
fn spawn<T: Send + 'static>(
    name: &str,
    job: impl FnOnce() -> T + Send + 'static,
) -> Option<mpsc::Receiver<T>> {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new().name(name.into());
    thread.spawn(move || tx.send(job())).ok().map(|_| rx)
}

/// How long the exit waits for a stalled journal to take held events.
const JOURNAL_DRAIN_AT_EXIT: Duration = Duration::from_secs(2);

pub const TRIAGE_TIMEOUT: Duration = Duration::from_secs(5);

fn triage_event(
    r: Result<triage::TriageSummary, triage::ReadError>,
    fill: Option<&assess::Fill>,
) -> Event {
    let table = fill
        .map(|f| format!(" (table {})", f.text()))
        .unwrap_or_default();
    match r {
        Ok(t) => {
            let top = |top: &Option<triage::Top>| {
                top.as_ref()
                    .map(|top| format!("{} {:.1}%", top.key, top.share * 100.0))
            };
            let msg = format!("who fills the conntrack table{table}: {}", t.message);
            Event::new(Priority::Warning, "triage", ids::TRIAGE, msg)
                .field("CONNTRACK_TRIAGE_ENTRIES", t.total)
                .field("CONNTRACK_TRIAGE_COMPLETE", t.complete)
                .field_opt("CONNTRACK_TOP_DPORT", top(&t.top_dport))
                .field_opt("CONNTRACK_TOP_STATE", top(&t.top_state))
                .field_opt("CONNTRACK_TOP_SOURCE", top(&t.top_source))
        }
        Err(e) => {
            let msg = format!("could not read the conntrack table to see who fills it{table}: {e}");
            Event::new(Priority::Notice, "triage", ids::TRIAGE, msg)
        }
    }
}

/// glibc's allocator, set for a daemon that runs for months:
/// - one arena: the short-lived threads (triage, namespace scan, writer
///   search) would each get an arena of their own when they overlap, and
///   arenas are never given back (the soak, tests/netns/soak.sh, showed RSS
///   7% up in steps as overlaps first happened). The threads allocate little
///   and seldom, so the lock costs nothing;
/// - fixed thresholds: by default glibc raises its mmap threshold to the
///   largest mapped block freed (up to 32 MiB) and then keeps up to twice
///   that free at the top of the heap (mallopt(3)), so the group tables of
///   one triage of a large, varied table (up to 4096 groups per dimension)
///   would move to the heap and could leave it that large. Here blocks of
///   64 KiB and more are always mapped and unmapped on their own, and more
///   than 64 KiB free at the top of the heap goes back at once.
#[allow(unsafe_code)]
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator tunables; called before any
    // thread of ours exists.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 64 * 1024);
        nix::libc::mallopt(nix::libc::M_TRIM_THRESHOLD, 64 * 1024);
    }
}

/// Give the heap's free pages back to the kernel, also those between live
/// blocks, which the trim threshold cannot reach. Called when a triage or a
/// namespace scan has ended: their short-lived blocks leave holes whose
/// pages stay resident once touched. In the soak (tests/netns/soak.sh,
/// 2026-12-07) the live heap was flat (heaptrack: 26 KiB at 77 s and at
/// 500 s) while the heap's resident pages rose towards its full size.
#[allow(unsafe_code)]
fn give_back_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages; it takes the arena lock.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Run the watchdog until SIGTERM or SIGINT. `cli_interval` (from
/// `--interval`) overrides the configuration, also across reloads.
pub fn run(host: &Host, config_path: Option<&Path>, cli_interval: Option<Duration>) -> i32 {
    tune_malloc();
    let root = &host.root;
    let config_stamp =
        stamp(&config_path.map_or_else(|| root.path(DEFAULT_CONFIG), Path::to_path_buf));
    let Some(cfg) = output::config(root, config_path, "conntrack-guard") else {
        return crate::exit::CONFIG;
    };
    let mut signals = match SignalWait::install() {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("conntrack-guard: cannot install signal handlers: {e}");
            output::err(&msg);
            return crate::exit::FAILURE;
        }
    };
    let mut sink = default_sink();
    let now = Instant::now();
    let mut w = Watcher {
        host,
        config_path: config_path.map(Path::to_path_buf),
        config_stamp,
        cli_interval,
        textfile: cfg.metrics.textfile.as_deref().map(Textfile::new),
        cfg,
        state: State::default(),
        start: now,
        last_sample: now,
        next_sample: now,
        last_ping: now,
        ready_sent: false,
        notifier: Notifier::from_env(),
        triage: None,
        last_triage: None,
        ns_scan: None,
        last_ns_scan: None,
        namespaces: NsTrackers::default(),
        kmsg_seen: BTreeMap::new(),
        hints: None,
        ns_denied: None,
        ns_denied_logged: false,
        totals_failing: false,
        grower: Grower::default(),
    };
    // A restarted watchdog knows the max it grew to earlier this boot.
    Watcher::emit_all(&mut *sink, w.grower.resume(root));
    // Continue the metrics' totals of the previous process of this boot.
    if let Some(saved) = w.textfile.as_ref().and_then(|_| metrics::load_totals(root)) {
        w.state.resume_totals(saved);
    }
    w.run(&mut signals, &mut *sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_full_lines_are_news_once_and_seen_shrinks_with_the_ring() {
        let line = |netns, usec| TableFull {
            netns,
            usec,
            line: format!("table full in netns {netns:?} at {usec}"),
        };
        let inodes = |f: &[(u64, TableFull)]| f.iter().map(|(i, _)| *i).collect::<Vec<_>>();
        let mut seen = BTreeMap::new();
        let ring = vec![line(Some(7), 5), line(Some(9), 8), line(None, 9)];
        assert_eq!(inodes(&new_table_full(&mut seen, ring.clone())), [7, 9]);
        // The same ring again: nothing new.
        assert!(new_table_full(&mut seen, ring).is_empty());
        // 7 logs again, 9's lines have left the ring: only 7 is news, and 9
        // is no longer held.
        let ring = vec![line(Some(7), 12)];
        assert_eq!(inodes(&new_table_full(&mut seen, ring)), [7]);
        assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [7]);
        // An empty ring (after a clear) holds nothing.
        assert!(new_table_full(&mut seen, Vec::new()).is_empty());
        assert!(seen.is_empty());
    }

    #[test]
    fn namespace_rises_are_summed_since_the_last_look() {
        let mut seen = BTreeMap::new();
        // First look: each namespace's totals since it was first watched
        // are rises (they start from 0 at its first scan).
        let r = ns_rises(&mut seen, [(1, [2, 0, 0]), (2, [0, 5, 1])].into_iter());
        assert_eq!(r, [2, 5, 1]);
        // Nothing new: no rise.
        let r = ns_rises(&mut seen, [(1, [2, 0, 0]), (2, [0, 5, 1])].into_iter());
        assert_eq!(r, [0, 0, 0]);
        // Namespace 2 gone, 3 new, 1 rises: a vanished namespace never
        // makes a rise negative.
        let r = ns_rises(&mut seen, [(1, [7, 1, 0]), (3, [0, 0, 4])].into_iter());
        assert_eq!(r, [5, 1, 4]);
        assert_eq!(seen.len(), 2);
        // Namespace 2 back under the same inode counts from zero again.
        let r = ns_rises(&mut seen, [(2, [0, 1, 0])].into_iter());
        assert_eq!(r, [0, 1, 0]);
    }

    #[test]
    fn flow_rate_needs_two_readings_and_a_counting_kernel() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(flow_rate(None, 100, t1), None);
        assert_eq!(flow_rate(Some((100, t0)), 2100, t1), Some(1000.0));
        // No time passed.
        assert_eq!(flow_rate(Some((100, t1)), 2100, t1), None);
        // Kernels that no longer count inserts: unknown, not 0 flows/s.
        assert_eq!(flow_rate(Some((0, t0)), 0, t1), None);
        // A reset total (module reloaded) is not a negative rate.
        assert_eq!(flow_rate(Some((5000, t0)), 10, t1), Some(0.0));
    }

    #[test]
    fn the_fullest_namespace_names_itself() {
        let mut t = NsTracker::default();
        t.label = "docker web".into();
        t.fill = Some(assess::Fill {
            count: 900,
            max: 1000,
        });
        assert_eq!(
            fullest(100, Some((4026532246, &t))),
            (900, "netns 4026532246 (docker web)".into())
        );
        assert_eq!(fullest(950, Some((4026532246, &t))), (950, "host".into()));
        assert_eq!(fullest(10, None), (10, "host".into()));
        // A namespace not read yet does not count.
        t.fill = None;
        assert_eq!(fullest(10, Some((1, &t))), (10, "host".into()));
    }

    #[test]
    fn the_record_says_what_when_why_and_from_what() {
        let g = Growth {
            max_before: 1024,
            max_after: 2048,
            buckets_before: 512,
            buckets_after: 1024,
            reason: "early_drop +12".into(),
            memory_worst: 0,
            budget: 0,
        };
        let r = record(&g, 1024, 1_765_000_000);
        assert_eq!(
            r,
            Remembered {
                max: 2048,
                buckets: 1024,
                configured: 1024,
                at: 1_765_000_000,
                reason: "early_drop +12".into(),
            }
        );
        // What is written reads back the same (the other readers' view).
        assert_eq!(grown::parse(&r.format()), Ok(r));
    }
}
