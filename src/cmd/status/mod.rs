// SPDX-License-Identifier: MIT OR Apache-2.0
//! `conntrack-guard status`: a one-shot health snapshot for people and for
//! Nagios-style monitoring.
//!
//! The counters are read twice, `--window` apart, so "rising now" is judged
//! on this window only: drops from last week (the totals since boot, shown
//! separately) must not make today's check critical.
//!
//! Exit codes follow the monitoring-plugins convention: 0 OK, 1 WARNING
//! (warning level, or a configured value drifted), 2 CRITICAL (critical
//! level, or drop/early_drop/insert_failed rising now), 3 UNKNOWN (the
//! configuration or the kernel values could not be read). When several
//! apply, CRITICAL wins over UNKNOWN, which wins over WARNING: a table known
//! to be full is the most urgent news even if the counters are unreadable.
//!
//! A count above max is not treated as unreadable: the kernel counts a new
//! entry before checking it against max, and lowering max leaves the
//! entries in place, so it happens on a healthy kernel and means over-full.

pub mod allns;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::assess::sizing::BudgetView;
use crate::assess::tally::{self, Signal, Tally};
use crate::assess::verdict::{plugin_line, Perf, Verdict};
use crate::assess::{FillReading, Level, Setting, Thresholds, BACKLOG, CONNTRACK, SOCKET};
use crate::config::{self, fmt_duration};
use crate::host::Host;
use crate::kernel::ctstats::{CounterSource, CtCounter, CtReading, CtTable, CtUnavailable};
use crate::kernel::percpu::{CounterSet, CpuTable, DeltaTracker, Window, HOT_CPU_SHARE};
use crate::kernel::snmp::{read_udp, SnmpError, UdpStats};
use crate::kernel::softnet::{read_softnet, SoftnetCounter, SoftnetError, SoftnetTable};
use crate::kernel::{kernel_u64, slab, FileError};
use crate::observe;
use crate::report::output;
use crate::report::table::human_bytes;
use crate::state::grown;

// The JSON of `status --json`: serde writes each struct's fields in the
// order given here.

/// One problem found, with its weight.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Problem {
    severity: Verdict,
    message: String,
}

/// Counter increases over the window, per drop point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Rising {
    window_seconds: f64,
    /// Conntrack counters (those the kernel has), at the top level.
    #[serde(flatten)]
    conntrack: BTreeMap<&'static str, u64>,
    /// UDP socket counters of this namespace (rcvbuf_errors, in_errors).
    socket: BTreeMap<&'static str, u64>,
    /// Input backlog counters (dropped, time_squeeze).
    backlog: BTreeMap<&'static str, u64>,
    /// Where packets are dying in this window: "conntrack table", "socket
    /// receive buffer", "input backlog".
    drop_points: Vec<&'static str>,
    /// The loss per CPU, when some drop point lost packets and the source
    /// is per CPU.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    per_cpu: Vec<CpuLoss>,
}

/// One CPU's losses in the window: conntrack drop + early_drop +
/// insert_failed + chaintoolong, and softnet dropped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct CpuLoss {
    cpu: u32,
    conntrack: u64,
    backlog: u64,
}

/// The UDP counters of this namespace since boot (IPv4 + IPv6).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SocketTotals {
    rcvbuf_errors: Option<u64>,
    /// Every receive drop (includes rcvbuf_errors).
    in_errors: Option<u64>,
    /// Datagrams to a port nothing listens on: not loss.
    no_ports: Option<u64>,
}

/// A configured setting against the kernel (`actual`: null when absent).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SettingRow {
    #[serde(flatten)]
    s: Setting,
    ok: bool,
    /// Who else writes this key, where that can be known (drifted keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    writer_hint: Option<String>,
}

/// The whole snapshot (the `--json` output).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Report {
    /// OK, WARNING, CRITICAL or UNKNOWN, and its exit code.
    status: Verdict,
    pub(crate) exit_code: i32,
    count: Option<u64>,
    max: Option<u64>,
    /// count / max (above 1 when max was lowered below the count).
    fill: Option<f64>,
    /// No hysteresis: one sample.
    level: Option<Level>,
    /// The conntrack keys exist.
    module_loaded: bool,
    /// Conntrack counter totals since boot (those the kernel has).
    counters: Option<BTreeMap<&'static str, u64>>,
    counters_source: Option<CounterSource>,
    sockets: Option<SocketTotals>,
    /// Input backlog counters since boot, all CPUs.
    backlog: Option<BTreeMap<&'static str, u64>>,
    /// Increases over the window, when measured.
    rising: Option<Rising>,
    settings: Vec<SettingRow>,
    warn_percent: Option<f64>,
    critical_percent: Option<f64>,
    config: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grow: Option<GrowReport>,
    /// Everything that is not OK.
    problems: Vec<Problem>,
}

/// Growth in the report: the current max against `[grow] budget` (`None`
/// when the budget is a share of RAM that cannot be read), and this boot's
/// growth record when it is trusted, or why it is not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct GrowReport {
    enabled: bool,
    budget: Option<BudgetView>,
    grown: Option<GrownRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record_ignored: Option<String>,
}

/// This boot's growth record, for the report (`at`: seconds since the
/// epoch; `at_utc`: `2026-12-07 14:03 UTC`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct GrownRow {
    max: u64,
    buckets: u64,
    configured: u64,
    at: u64,
    at_utc: String,
    reason: String,
}

/// What was read, as values: the input of [`judge`].
#[derive(Debug)]
pub(crate) struct Readings {
    /// The thresholds and the configuration's name.
    config: Result<(Thresholds, String), config::ConfigError>,
    fill: FillReading,
    /// Counters at the start and the end of the window (None: no window).
    before: Counts,
    after: Option<Counts>,
    window: Duration,
    settings: Vec<Setting>,
    /// Who else writes a drifted key: key -> hint.
    writer_hints: BTreeMap<String, String>,
    /// Growth, when the configuration and the fill were read.
    grow: Option<GrowReport>,
}

/// The counters of the three drop points at one moment, as the readers
/// returned them.
#[derive(Debug)]
struct Counts {
    conntrack: Result<CtReading, CtUnavailable>,
    udp: Result<UdpStats, FileError<SnmpError>>,
    softnet: Result<SoftnetTable, FileError<SoftnetError>>,
}

impl Counts {
    fn read(host: &Host) -> Self {
        Counts {
            conntrack: observe::conntrack_counters(host),
            udp: read_udp(&host.root),
            softnet: read_softnet(&host.root),
        }
    }
}

fn ct_totals(t: &CtTable) -> BTreeMap<&'static str, u64> {
    CtCounter::ALL
        .iter()
        .filter(|k| CONNTRACK.counters.iter().any(|c| c.name == k.name()))
        .filter_map(|k| Some((k.name(), t.total(*k)?)))
        .collect()
}

fn tally_map(t: &Tally, sig: &Signal) -> BTreeMap<&'static str, u64> {
    sig.counters
        .iter()
        .filter(|c| t.has(c.name))
        .map(|c| (c.name, t.get(c.name)))
        .collect()
}

/// The increases between two readings of each drop point (`None` where
/// either reading failed).
fn window_tallies(a: &Counts, b: &Counts) -> [Option<Tally>; 3] {
    fn both<'a, T, E>(a: &'a Result<T, E>, b: &'a Result<T, E>) -> Option<(&'a T, &'a T)> {
        a.as_ref().ok().zip(b.as_ref().ok())
    }
    fn window<K: CounterSet>(x: &CpuTable<K>, y: &CpuTable<K>) -> Window<K> {
        let mut d = DeltaTracker::<K>::new();
        d.step(x);
        d.step(y)
    }
    [
        both(&a.conntrack, &b.conntrack)
            .map(|(x, y)| tally::of_window(&window(&x.table, &y.table), &CONNTRACK)),
        both(&a.udp, &b.udp).map(|(x, y)| tally::socket(&y.delta_since(x))),
        both(&a.softnet, &b.softnet).map(|(x, y)| tally::of_window(&window(x, y), &BACKLOG)),
    ]
}

/// Decide the verdict from readings. Pure. The problems keep this order
/// (config, fill, counter reads, drop points, drift): the text's first line
/// names the first problem of the worst severity.
pub(crate) fn judge(r: &Readings) -> Report {
    let mut problems = Vec::new();
    let (thresholds, source) = match &r.config {
        Ok((t, s)) => (Some(t), Some(s.clone())),
        Err(e) => {
            problems.push(Problem::new(
                Verdict::Unknown,
                format!("invalid configuration: {e}"),
            ));
            (None, None)
        }
    };
    let module_loaded = !matches!(r.fill, FillReading::Gone(_));
    let fill = judge_fill(&r.fill, thresholds, &mut problems);
    let last = r.after.as_ref().unwrap_or(&r.before);
    let ct = last.conntrack.as_ref().ok();
    // Unreadable conntrack counters, at either end of the window (once).
    let after = r.after.as_ref().map(|a| &a.conntrack);
    if let (Err(e), _) | (Ok(_), Some(Err(e))) = (&r.before.conntrack, after) {
        if module_loaded {
            let message = format!("cannot read the counters: {e}");
            problems.push(Problem::new(Verdict::Unknown, message));
        }
    }
    let rising = r
        .after
        .as_ref()
        .map(|after| judge_window(r, after, &mut problems));
    let settings = judge_settings(r, &mut problems);
    let status = Verdict::worst_of(problems.iter().map(|p| p.severity));
    Report {
        status,
        exit_code: status.code(),
        count: fill.map(|f| f.0),
        max: fill.map(|f| f.1),
        fill: fill.map(|f| f.2),
        level: fill.and_then(|f| f.3),
        module_loaded,
        counters: ct.map(|r| ct_totals(&r.table)),
        counters_source: ct.map(|r| r.source),
        sockets: last.udp.as_ref().ok().map(|u| SocketTotals {
            rcvbuf_errors: u.rcvbuf_errors(),
            in_errors: u.in_errors(),
            no_ports: u.no_ports(),
        }),
        backlog: last.softnet.as_ref().ok().map(backlog_totals),
        rising,
        settings,
        warn_percent: thresholds.map(|t| t.warn_percent),
        critical_percent: thresholds.map(|t| t.critical_percent),
        config: source,
        grow: r.grow.clone(),
        problems,
    }
}

impl Problem {
    fn new(severity: Verdict, message: String) -> Self {
        Problem { severity, message }
    }
}

/// The fill (count, max, their ratio and its level, when read) and its
/// problems.
fn judge_fill(
    reading: &FillReading,
    thresholds: Option<&Thresholds>,
    problems: &mut Vec<Problem>,
) -> Option<(u64, u64, f64, Option<Level>)> {
    let mut push = |severity, message: String| problems.push(Problem::new(severity, message));
    let &FillReading::Read {
        count: c,
        max: m @ 1..,
    } = reading
    else {
        let why = match reading {
            FillReading::Gone(why) => format!("conntrack not available: {why}"),
            FillReading::Fault(why) => format!("cannot read the fill: {why}"),
            _ => "nf_conntrack_max is 0: the fill cannot be computed".into(),
        };
        push(Verdict::Unknown, why);
        return None;
    };
    let ratio = c as f64 / m as f64;
    let level = thresholds.map(|t| Level::of(ratio * 100.0, t));
    if let (Some(lv), Some(t)) = (level.filter(|lv| *lv != Level::Ok), thresholds) {
        let at = match lv {
            Level::Critical => t.critical_percent,
            _ => t.warn_percent,
        };
        let text = format!("{:.1}% full ({c}/{m})", ratio * 100.0);
        push(
            lv.into(),
            format!("{text}: at or above the {} level of {at}%", lv.name()),
        );
    }
    if c > m {
        push(
            Verdict::Critical,
            format!(
                "count {c} exceeds max {m}: the table is over-full (max was lowered \
                 below the entries in use, or the kernel was mid-allocation)"
            ),
        );
    }
    Some((c, m, ratio, level))
}

fn backlog_totals(t: &SoftnetTable) -> BTreeMap<&'static str, u64> {
    let keys = [SoftnetCounter::Dropped, SoftnetCounter::TimeSqueeze];
    keys.into_iter()
        .filter_map(|k| Some((k.name(), t.total(k)?)))
        .collect()
}

/// What rose over the window, and its problems: the drop points losing
/// packets now, and a CPU that carries most of the conntrack drops.
fn judge_window(r: &Readings, after: &Counts, problems: &mut Vec<Problem>) -> Rising {
    let [ct, udp, bl] = window_tallies(&r.before, after);
    let window = fmt_duration(r.window);
    // The drop points that lost packets in the window, each with its problem.
    let mut points = Vec::new();
    for (t, sig, point, severity, dying, advice) in [
        (
            &ct,
            &CONNTRACK,
            "conntrack table",
            Verdict::Critical,
            "packets",
            "",
        ),
        (
            &udp,
            &SOCKET,
            "socket receive buffer",
            Verdict::Warning,
            "UDP datagrams",
            "; raise the receiver's SO_RCVBUF and net.core.rmem_max",
        ),
        (
            &bl,
            &BACKLOG,
            "input backlog",
            Verdict::Warning,
            "packets",
            "; raise net.core.netdev_max_backlog, spread the load with RSS/RPS",
        ),
    ] {
        let Some(t) = t.as_ref().filter(|t| t.loss(sig) > 0) else {
            continue;
        };
        points.push(point);
        let lost = t.text(sig);
        let what = format!("{dying} are being dropped now at the {point}: {lost} in {window}");
        problems.push(Problem::new(severity, what + advice));
    }
    let mut per_cpu = Vec::new();
    if !points.is_empty() {
        per_cpu = per_cpu_loss(ct.as_ref(), bl.as_ref());
        if let Some((cpu, share)) = ct.as_ref().and_then(|t| t.hot_cpu(HOT_CPU_SHARE)) {
            problems.push(Problem::new(
                Verdict::Critical,
                format!(
                    "{:.0}% of the conntrack drops are on CPU {cpu}: one RX queue or softirq \
                     carries the load (check RSS/RPS and IRQ affinity)",
                    share * 100.0
                ),
            ));
        }
    }
    let map =
        |t: &Option<Tally>, sig: &Signal| t.as_ref().map(|t| tally_map(t, sig)).unwrap_or_default();
    Rising {
        window_seconds: r.window.as_secs_f64(),
        conntrack: map(&ct, &CONNTRACK),
        socket: map(&udp, &SOCKET),
        backlog: map(&bl, &BACKLOG),
        drop_points: points,
        per_cpu,
    }
}

/// The settings rows; each drifted key is a warning naming who else
/// writes it, where known.
fn judge_settings(r: &Readings, problems: &mut Vec<Problem>) -> Vec<SettingRow> {
    let row = |s: &Setting| {
        let hint = r.writer_hints.get(&s.key).filter(|_| !s.ok());
        if !s.ok() {
            let who = hint.map(|h| format!("; who else writes it: {h}"));
            problems.push(Problem::new(
                Verdict::Warning,
                format!(
                    "{} is {} but configured as {} (drift; systemctl restart conntrack-guard-apply){}",
                    s.key,
                    s.actual.as_deref().unwrap_or("absent"),
                    s.expected,
                    who.unwrap_or_default()
                ),
            ));
        }
        SettingRow {
            ok: s.ok(),
            writer_hint: hint.cloned(),
            s: s.clone(),
        }
    };
    r.settings.iter().map(row).collect()
}

fn per_cpu_loss(ct: Option<&Tally>, bl: Option<&Tally>) -> Vec<CpuLoss> {
    let mut rows: BTreeMap<u32, [u64; 2]> = BTreeMap::new();
    for (i, t) in [ct, bl].into_iter().enumerate() {
        for (cpu, v) in t.map(|t| t.per_cpu.as_slice()).unwrap_or_default() {
            rows.entry(*cpu).or_default()[i] += v;
        }
    }
    let rows = rows.into_iter().filter(|(_, [c, b])| c + b > 0);
    rows.map(|(cpu, [conntrack, backlog])| CpuLoss {
        cpu,
        conntrack,
        backlog,
    })
    .collect()
}

fn bar(ratio: f64, width: usize) -> String {
    let r = Some(ratio)
        .filter(|r| r.is_finite())
        .map_or(0.0, |r| r.clamp(0.0, 1.0));
    let filled = ((r * width as f64).round() as usize).min(width);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// The text for people. The first line is a monitoring-plugins summary with
/// performance data.
pub(crate) fn text(r: &Report) -> String {
    let mut s = summary_line(r);
    fill_lines(&mut s, r);
    for (name, line) in [
        ("counters", counters_line(r)),
        ("sockets", sockets_line(r)),
        ("backlog", backlog_line(r)),
    ] {
        let _ = writeln!(s, "  {name:9} {}", line.as_deref().unwrap_or("unavailable"));
    }
    if let Some(x) = &r.rising {
        rising_lines(&mut s, x);
    }
    settings_lines(&mut s, r);
    if let Some(g) = &r.grow {
        grow_lines(&mut s, g);
    }
    if !r.problems.is_empty() {
        let _ = writeln!(s, "  problems");
        for p in &r.problems {
            let _ = writeln!(s, "    {:8}  {}", p.severity.name(), p.message);
        }
    }
    s
}

/// `CONNTRACK OK - ... | perfdata`, with its newline.
fn summary_line(r: &Report) -> String {
    let level = r.level.map(Level::name).unwrap_or("unknown");
    let (summary, perf) = match (r.count, r.max, r.fill) {
        (Some(c), Some(m), Some(f)) => (
            format!("{:.1}% full ({c}/{m}), level {level}", f * 100.0),
            vec![
                Perf::percent("fill", f, r.warn_percent, r.critical_percent),
                Perf::count("entries", c, Some(m)),
            ],
        ),
        _ => ("fill unknown".to_string(), Vec::new()),
    };
    // The first of the worst problems: the one that decided the status.
    let first_problem = r
        .problems
        .iter()
        .find(|p| p.severity == r.status)
        .map(|p| format!("; {}", p.message))
        .unwrap_or_default();
    plugin_line(r.status, &format!("{summary}{first_problem}"), &perf)
}

/// The fill bar, the level and whether the module is loaded.
fn fill_lines(s: &mut String, r: &Report) {
    if let (Some(c), Some(m), Some(f)) = (r.count, r.max, r.fill) {
        let _ = writeln!(
            s,
            "  fill      {} {:5.1}%  {c} of {m} entries",
            bar(f, 20),
            f * 100.0
        );
    }
    let _ = writeln!(
        s,
        "  level     {}{}",
        r.level.map(Level::name).unwrap_or("unknown"),
        match (r.warn_percent, r.critical_percent) {
            (Some(w), Some(c)) => format!("  (warning at {w}%, critical at {c}%)"),
            _ => String::new(),
        }
    );
    let _ = writeln!(
        s,
        "  module    {}",
        if r.module_loaded {
            "nf_conntrack loaded (its keys exist)"
        } else {
            "nf_conntrack NOT loaded (keys absent)"
        }
    );
}

/// The totals since boot of each drop point, `None` where unavailable.
fn counters_line(r: &Report) -> Option<String> {
    let c = r.counters.as_ref()?;
    let list = CONNTRACK
        .counters
        .iter()
        .filter_map(|k| Some(format!("{} {}", k.name, c.get(k.name)?)))
        .collect::<Vec<_>>()
        .join("  ");
    let source = match r.counters_source {
        Some(CounterSource::Netlink) => "ctnetlink",
        _ => "/proc/net/stat/nf_conntrack",
    };
    Some(format!("{list}  (since boot, from {source})"))
}

fn sockets_line(r: &Report) -> Option<String> {
    let u = r.sockets.as_ref()?;
    let n = |v: Option<u64>| v.map_or("n/a".to_string(), |v| v.to_string());
    Some(format!(
        "UDP rcvbuf_errors {}  in_errors {}  (no_ports {}: not loss)  (since boot, this namespace)",
        n(u.rcvbuf_errors),
        n(u.in_errors),
        n(u.no_ports)
    ))
}

fn backlog_line(r: &Report) -> Option<String> {
    let list = r.backlog.as_ref()?.iter().map(|(k, v)| format!("{k} {v}"));
    Some(format!(
        "{}  (since boot, all CPUs)",
        list.collect::<Vec<_>>().join("  ")
    ))
}

/// `now`: what rose over the window, and `per CPU` when something did.
fn rising_lines(s: &mut String, x: &Rising) {
    let now = if x.drop_points.is_empty() {
        "no drops".to_string()
    } else {
        // `drop_points` keeps the order of the three maps.
        let parts = x.drop_points.iter().map(|point| {
            let map = match *point {
                "conntrack table" => &x.conntrack,
                "socket receive buffer" => &x.socket,
                _ => &x.backlog,
            };
            let list = map.iter().filter(|(_, v)| **v > 0);
            let list: Vec<_> = list.map(|(k, v)| format!("{k} +{v}")).collect();
            format!("{point}: {}", list.join("  "))
        });
        format!("RISING at {}", parts.collect::<Vec<_>>().join("; "))
    };
    let _ = writeln!(s, "  now       {now} over {:.1}s", x.window_seconds);
    if !x.per_cpu.is_empty() {
        let list = x
            .per_cpu
            .iter()
            .map(|c| match (c.conntrack, c.backlog) {
                (ct, 0) => format!("cpu{} {ct}", c.cpu),
                (0, bl) => format!("cpu{} backlog {bl}", c.cpu),
                (ct, bl) => format!("cpu{} {ct} (backlog {bl})", c.cpu),
            })
            .collect::<Vec<_>>()
            .join("  ");
        let _ = writeln!(s, "  per CPU   {list}");
    }
}

/// The configuration name and the KEY/EXPECTED/ACTUAL table.
fn settings_lines(s: &mut String, r: &Report) {
    let _ = writeln!(
        s,
        "  settings  {}",
        r.config.as_deref().unwrap_or("(configuration unreadable)")
    );
    let kw = r.settings.iter().map(|x| x.s.key.len()).max().unwrap_or(0);
    let width = |x: &SettingRow| {
        x.s.expected
            .len()
            .max(x.s.actual.as_deref().map_or(6, str::len))
    };
    let vw = r.settings.iter().map(width).fold(8, usize::max);
    if !r.settings.is_empty() {
        let _ = writeln!(
            s,
            "    {:kw$}  {:>vw$}  {:>vw$}",
            "KEY", "EXPECTED", "ACTUAL"
        );
    }
    for x in &r.settings {
        let _ = writeln!(
            s,
            "    {:kw$}  {:>vw$}  {:>vw$}  {}",
            x.s.key,
            x.s.expected,
            x.s.actual.as_deref().unwrap_or("absent"),
            if x.ok { "ok" } else { "DRIFT" }
        );
    }
    if r.settings.is_empty() && r.config.is_some() {
        let _ = writeln!(s, "    (none configured: every key is \"keep\")");
    }
}

/// Read everything `status` needs. `window` zero: one sample, no "rising".
pub(crate) fn read(host: &Host, config_path: Option<&Path>, window: Duration) -> Readings {
    let cfg = config::load(&host.root, config_path);
    let before = Counts::read(host);
    let mut fill = observe::fill(&host.root);
    let after = if window.is_zero() {
        None
    } else {
        std::thread::sleep(window);
        // The count of the end of the window is the one reported: it is the
        // closest to what anyone reads right after the check.
        fill = observe::fill(&host.root);
        Some(Counts::read(host))
    };
    let (settings, grow) = match (&cfg, &fill) {
        (Ok(c), FillReading::Read { max, .. }) => {
            (observe::settings(host, c), Some(grow_report(host, c, *max)))
        }
        _ => (Vec::new(), None),
    };
    let writer_hints = settings
        .iter()
        .filter(|s| !s.ok())
        .filter_map(|s| {
            let h = crate::system::writers::hint(&host.root, &s.key, s.actual.as_deref()?)?;
            Some((s.key.clone(), h))
        })
        .collect();
    Readings {
        grow,
        config: cfg.map(|c| (Thresholds::new(&c.watch, c.watch.interval), c.source_name())),
        fill,
        before,
        after,
        window,
        settings,
        writer_hints,
    }
}

/// Growth as this host has it: the current `max` against the budget, and
/// this boot's record as every reader judges it.
fn grow_report(host: &Host, cfg: &config::Config, max: u64) -> GrowReport {
    let root = &host.root;
    let buckets = kernel_u64(root, config::KEY_BUCKETS).unwrap_or(0);
    let (entry, page) = (slab::entry_bytes(root), host.page_size);
    let boot = observe::this_boot(root, cfg);
    GrowReport {
        enabled: cfg.grow.enabled,
        budget: observe::budget_view(root, cfg.grow.budget, entry, page, max, buckets),
        grown: boot.grown().map(|r| GrownRow {
            max: r.max,
            buckets: r.buckets,
            configured: r.configured,
            at: r.at,
            at_utc: grown::fmt_utc(r.at),
            reason: r.reason.clone(),
        }),
        record_ignored: boot.ignored,
    }
}

/// The `grow` and `grown` lines.
fn grow_lines(s: &mut String, g: &GrowReport) {
    let off = if g.enabled {
        ""
    } else {
        " (growth off: [grow] enabled = false)"
    };
    let budget = g
        .budget
        .as_ref()
        .map_or("unknown (RAM unreadable)".into(), |b| {
            let left = if b.fits {
                format!("headroom {}", human_bytes(b.headroom_bytes))
            } else {
                format!(
                    "OVER the budget by {}: kept as configured, never grown",
                    human_bytes(b.worst_case_bytes.saturating_sub(b.budget_bytes))
                )
            };
            let (budget, worst, allowed) = (b.budget_text(), b.worst_text(), b.max_allowed);
            format!("{budget}; {worst}; {left}; the budget allows max up to {allowed}")
        });
    let _ = writeln!(s, "  budget    {budget}{off}");
    if let Some(r) = &g.grown {
        let _ = writeln!(
            s,
            "  grown     to {} on {} after {}; configured {}",
            r.max, r.at_utc, r.reason, r.configured
        );
    }
    if let Some(why) = &g.record_ignored {
        let _ = writeln!(s, "  grown     {why}");
    }
}

/// `conntrack-guard status`.
/// With `all_netns`, every namespace ([`allns`]). Returns the exit code.
pub fn run(
    host: &Host,
    config_path: Option<&Path>,
    json: bool,
    window: Duration,
    all_netns: bool,
) -> i32 {
    // A report that cannot be written is UNKNOWN.
    let unknown = Verdict::Unknown.code();
    if all_netns {
        let r = allns::judge(allns::read(host, config_path));
        return output::report(&r, json, allns::text, r.exit_code, unknown);
    }
    let r = judge(&read(host, config_path, window));
    output::report(&r, json, text, r.exit_code, unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::netlink::NetlinkError;
    use crate::kernel::sysctl::SysctlError;

    /// Neither counter source answered.
    fn no_counters() -> CtUnavailable {
        CtUnavailable {
            netlink: NetlinkError::NotUsed,
            procfs: FileError::Absent("/test/stat".into()),
        }
    }

    fn thresholds() -> Thresholds {
        Thresholds::new(&config::Config::default().watch, Duration::from_secs(5))
    }

    fn counters(drop: u32) -> Counts {
        let mut t = CtTable::new(crate::kernel::percpu::CpuIds::Kernel);
        for cpu in 0..2 {
            let row = t.row_mut(cpu);
            row.set(CtCounter::Drop, if cpu == 0 { drop } else { 0 });
            row.set(CtCounter::EarlyDrop, 0);
            row.set(CtCounter::InsertFailed, 0);
        }
        Counts {
            conntrack: Ok(CtReading {
                table: t,
                source: CounterSource::Procfs,
                netlink_error: None,
            }),
            udp: Err(FileError::Absent("/test/snmp".into())),
            softnet: Err(FileError::Absent("/test/softnet_stat".into())),
        }
    }

    fn readings(count: u64, max: u64) -> Readings {
        Readings {
            config: Ok((thresholds(), "test".into())),
            fill: FillReading::Read { count, max },
            before: counters(100),
            after: Some(counters(100)),
            window: Duration::from_secs(1),
            settings: vec![Setting {
                key: "net.netfilter.nf_conntrack_max".into(),
                expected: "1000".into(),
                actual: Some("1000".into()),
                at_least: false,
            }],
            writer_hints: BTreeMap::new(),
            grow: None,
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(judge(&readings(100, 1000)).exit_code, 0);
        assert_eq!(judge(&readings(800, 1000)).exit_code, 1);
        assert_eq!(judge(&readings(950, 1000)).exit_code, 2);
        // Old drops (totals since boot) do not count; rising ones do.
        let mut r = readings(100, 1000);
        r.after = Some(counters(101));
        let rep = judge(&r);
        assert_eq!(rep.exit_code, 2);
        assert_eq!(rep.rising.as_ref().unwrap().conntrack["drop"], 1);
        assert_eq!(rep.counters.unwrap()["drop"], 101);
        // Drift.
        let mut r = readings(100, 1000);
        r.settings[0].actual = Some("65536".into());
        assert_eq!(judge(&r).exit_code, 1);
        r.settings[0].actual = None;
        assert_eq!(judge(&r).exit_code, 1);
    }

    #[test]
    fn unknowns() {
        let mut r = readings(100, 0);
        assert_eq!(judge(&r).exit_code, 3);
        r.fill = FillReading::Gone(SysctlError::Absent("/test/count".into()));
        let rep = judge(&r);
        assert_eq!(rep.exit_code, 3);
        assert!(!rep.module_loaded);
        let mut r = readings(100, 1000);
        r.before.conntrack = Err(no_counters());
        r.after = None;
        assert_eq!(judge(&r).exit_code, 3);
        let mut r = readings(100, 1000);
        r.config = Err(config::ConfigError {
            file: "/test/c.toml".into(),
            line: None,
            key: None,
            message: "bad".into(),
            source: None,
        });
        let rep = judge(&r);
        assert_eq!(rep.exit_code, 3);
        assert!(rep.problems[0].message.contains("invalid configuration"));
        // Critical beats unknown; unknown beats warning.
        let mut r = readings(990, 1000);
        r.before.conntrack = Err(no_counters());
        assert_eq!(judge(&r).exit_code, 2);
        let mut r = readings(850, 1000);
        r.before.conntrack = Err(no_counters());
        assert_eq!(judge(&r).exit_code, 3);
    }

    #[test]
    fn over_max_is_critical() {
        let rep = judge(&readings(1025, 1024));
        assert_eq!(rep.exit_code, 2);
        assert!(rep
            .problems
            .iter()
            .any(|p| p.message.contains("exceeds max")));
    }

    #[test]
    fn text_has_bar_and_settings() {
        let t = text(&judge(&readings(500, 1000)));
        assert!(t.starts_with("CONNTRACK OK - 50.0% full (500/1000)"), "{t}");
        assert!(t.contains("[##########----------]"), "{t}");
        assert!(t.contains("net.netfilter.nf_conntrack_max"), "{t}");
        assert!(t.lines().any(|l| l.trim_end().ends_with(" ok")), "{t}");
        assert_eq!(bar(f64::NAN, 4), "[----]");
        assert_eq!(bar(7.0, 4), "[####]");
    }
}
