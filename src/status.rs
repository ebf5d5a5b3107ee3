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

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::assess::{FillReading, Level, Setting, Thresholds};
use crate::config::{self, fmt_duration};
use crate::observe;
use crate::output;
use crate::stats::{read_counters, CounterSource, Counters};
use crate::sysroot::SysRoot;

/// Monitoring-plugins states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// 0.
    Ok,
    /// 1.
    Warning,
    /// 2.
    Critical,
    /// 3.
    Unknown,
}

impl Verdict {
    /// The exit code.
    pub fn code(self) -> i32 {
        match self {
            Verdict::Ok => 0,
            Verdict::Warning => 1,
            Verdict::Critical => 2,
            Verdict::Unknown => 3,
        }
    }

    fn rank(self) -> u8 {
        match self {
            Verdict::Ok => 0,
            Verdict::Warning => 1,
            Verdict::Unknown => 2,
            Verdict::Critical => 3,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::Warning => "WARNING",
            Verdict::Critical => "CRITICAL",
            Verdict::Unknown => "UNKNOWN",
        }
    }
}

/// One problem found, with its weight.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// How bad.
    pub severity: Verdict,
    /// What, for a person.
    pub message: String,
}

/// Counter increases over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rising {
    /// The window, seconds.
    pub window_seconds: f64,
    /// drop increase.
    pub drop: u64,
    /// early_drop increase.
    pub early_drop: u64,
    /// insert_failed increase.
    pub insert_failed: u64,
}

/// A configured setting, for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingRow {
    /// Dotted key.
    pub key: String,
    /// Configured value.
    pub expected: String,
    /// Kernel value; null when absent.
    pub actual: Option<String>,
    /// Whether they match.
    pub ok: bool,
}

impl From<&Setting> for SettingRow {
    fn from(s: &Setting) -> Self {
        SettingRow {
            key: s.key.clone(),
            expected: s.expected.clone(),
            actual: s.actual.clone(),
            ok: s.ok(),
        }
    }
}

/// The whole snapshot (the `--json` output).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// OK, WARNING, CRITICAL or UNKNOWN.
    pub status: Verdict,
    /// The exit code.
    pub exit_code: i32,
    /// nf_conntrack_count.
    pub count: Option<u64>,
    /// nf_conntrack_max.
    pub max: Option<u64>,
    /// count / max (above 1 when max was lowered below the count).
    pub fill: Option<f64>,
    /// ok, warning or critical (no hysteresis: one sample).
    pub level: Option<Level>,
    /// The conntrack keys exist.
    pub module_loaded: bool,
    /// Counter totals since boot.
    pub counters: Option<Counters>,
    /// Where the counters came from.
    pub counters_source: Option<CounterSource>,
    /// Increases over the window, when measured.
    pub rising: Option<Rising>,
    /// Every configured setting.
    pub settings: Vec<SettingRow>,
    /// Warning threshold, percent.
    pub warn_percent: Option<f64>,
    /// Critical threshold, percent.
    pub critical_percent: Option<f64>,
    /// The configuration used.
    pub config: Option<String>,
    /// Everything that is not OK.
    pub problems: Vec<Problem>,
}

/// What was read, as values: the input of [`judge`].
#[derive(Debug, Clone)]
pub struct Readings {
    /// Configuration, or its error text.
    pub config: Result<(Thresholds, String), String>,
    /// The (last) fill reading.
    pub fill: FillReading,
    /// Counters at the start of the window.
    pub counters_before: Result<(Counters, CounterSource), String>,
    /// Counters at the end of the window (None: no window).
    pub counters_after: Option<Result<(Counters, CounterSource), String>>,
    /// The window.
    pub window: Duration,
    /// Configured settings against the kernel.
    pub settings: Vec<Setting>,
}

/// Decide the verdict from readings. Pure.
pub fn judge(r: &Readings) -> Report {
    let mut problems = Vec::new();
    let mut push = |severity, message: String| problems.push(Problem { severity, message });
    let (thresholds, source) = match &r.config {
        Ok((t, s)) => (Some(t), Some(s.clone())),
        Err(e) => {
            push(Verdict::Unknown, format!("invalid configuration: {e}"));
            (None, None)
        }
    };
    let (mut count, mut max, mut fill, mut level) = (None, None, None, None);
    let module_loaded = !matches!(r.fill, FillReading::Gone(_));
    match &r.fill {
        FillReading::Read { max: 0, .. } => {
            push(
                Verdict::Unknown,
                "nf_conntrack_max is 0: the fill cannot be computed".into(),
            );
        }
        FillReading::Read { count: c, max: m } => {
            count = Some(*c);
            max = Some(*m);
            let ratio = *c as f64 / *m as f64;
            fill = Some(ratio);
            if let Some(t) = thresholds {
                let lv = Level::of(ratio * 100.0, t);
                level = Some(lv);
                let text = format!("{:.1}% full ({c}/{m})", ratio * 100.0);
                match lv {
                    Level::Critical => push(
                        Verdict::Critical,
                        format!(
                            "{text}: at or above the critical level of {}%",
                            t.critical_percent
                        ),
                    ),
                    Level::Warning => push(
                        Verdict::Warning,
                        format!(
                            "{text}: at or above the warning level of {}%",
                            t.warn_percent
                        ),
                    ),
                    Level::Ok => {}
                }
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
        }
        FillReading::Gone(why) => push(Verdict::Unknown, format!("conntrack not available: {why}")),
        FillReading::Fault(why) => push(Verdict::Unknown, format!("cannot read the fill: {why}")),
    }
    let (counters, counters_source) = match (&r.counters_after, &r.counters_before) {
        (Some(Ok((c, s))), _) | (None, Ok((c, s))) => (Some(*c), Some(*s)),
        _ => (None, None),
    };
    let mut rising = None;
    match (&r.counters_before, &r.counters_after) {
        (Err(e), _) | (_, Some(Err(e))) => {
            if module_loaded {
                push(Verdict::Unknown, format!("cannot read the counters: {e}"));
            }
        }
        (Ok((a, _)), Some(Ok((b, _)))) => {
            let d = b.delta_since(a);
            if d.any_loss() {
                push(
                    Verdict::Critical,
                    format!(
                        "packets are being dropped now: drop +{}, early_drop +{}, \
                         insert_failed +{} in {}",
                        d.drop,
                        d.early_drop,
                        d.insert_failed,
                        fmt_duration(r.window)
                    ),
                );
            }
            rising = Some(Rising {
                window_seconds: r.window.as_secs_f64(),
                drop: d.drop,
                early_drop: d.early_drop,
                insert_failed: d.insert_failed,
            });
        }
        (Ok(_), None) => {}
    }
    let settings: Vec<SettingRow> = r.settings.iter().map(SettingRow::from).collect();
    for s in settings.iter().filter(|s| !s.ok) {
        push(
            Verdict::Warning,
            format!(
                "{} is {} but configured as {} (drift; systemctl restart conntrack-guard-apply)",
                s.key,
                s.actual.as_deref().unwrap_or("absent"),
                s.expected
            ),
        );
    }
    let status = problems
        .iter()
        .map(|p| p.severity)
        .max_by_key(|v| v.rank())
        .unwrap_or(Verdict::Ok);
    Report {
        status,
        exit_code: status.code(),
        count,
        max,
        fill,
        level,
        module_loaded,
        counters,
        counters_source,
        rising,
        settings,
        warn_percent: thresholds.map(|t| t.warn_percent),
        critical_percent: thresholds.map(|t| t.critical_percent),
        config: source,
        problems,
    }
}

fn bar(ratio: f64, width: usize) -> String {
    let r = if ratio.is_finite() {
        ratio.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let filled = ((r * width as f64).round() as usize).min(width);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// The text for people. The first line is a monitoring-plugins summary with
/// performance data.
pub fn text(r: &Report) -> String {
    let mut s = String::new();
    let summary = match (r.count, r.max, r.fill) {
        (Some(c), Some(m), Some(f)) => format!(
            "{:.1}% full ({c}/{m}), level {}",
            f * 100.0,
            r.level.map(Level::name).unwrap_or("unknown")
        ),
        _ => "fill unknown".to_string(),
    };
    // The first of the worst problems: the one that decided the status.
    let first_problem = r
        .problems
        .iter()
        .find(|p| p.severity == r.status)
        .map(|p| format!("; {}", p.message))
        .unwrap_or_default();
    let _ = write!(
        s,
        "CONNTRACK {} - {summary}{first_problem}",
        r.status.name()
    );
    if let (Some(c), Some(m), Some(f)) = (r.count, r.max, r.fill) {
        let _ = write!(
            s,
            " | fill={:.2}%;{};{};0;100 entries={c};;;0;{m}",
            f * 100.0,
            r.warn_percent.unwrap_or(0.0),
            r.critical_percent.unwrap_or(0.0)
        );
    }
    s.push('\n');
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
    match &r.counters {
        Some(c) => {
            let _ = writeln!(
                s,
                "  counters  drop {}  early_drop {}  insert_failed {}{}  (since boot, from {})",
                c.drop,
                c.early_drop,
                c.insert_failed,
                c.clashres
                    .map(|v| format!("  clashres {v}"))
                    .unwrap_or_default(),
                match r.counters_source {
                    Some(CounterSource::Netlink) => "ctnetlink",
                    _ => "/proc/net/stat/nf_conntrack",
                }
            );
        }
        None => {
            let _ = writeln!(s, "  counters  unavailable");
        }
    }
    if let Some(x) = &r.rising {
        let _ = writeln!(
            s,
            "  now       {} over {:.1}s",
            if x.drop > 0 || x.early_drop > 0 || x.insert_failed > 0 {
                format!(
                    "RISING: drop +{}  early_drop +{}  insert_failed +{}",
                    x.drop, x.early_drop, x.insert_failed
                )
            } else {
                "no drops".to_string()
            },
            x.window_seconds
        );
    }
    let _ = writeln!(
        s,
        "  settings  {}",
        r.config.as_deref().unwrap_or("(configuration unreadable)")
    );
    let kw = r.settings.iter().map(|x| x.key.len()).max().unwrap_or(0);
    let vw = r
        .settings
        .iter()
        .map(|x| {
            x.expected
                .len()
                .max(x.actual.as_deref().map_or(6, str::len))
        })
        .max()
        .unwrap_or(0)
        .max(8);
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
            x.key,
            x.expected,
            x.actual.as_deref().unwrap_or("absent"),
            if x.ok { "ok" } else { "DRIFT" }
        );
    }
    if r.settings.is_empty() && r.config.is_some() {
        let _ = writeln!(s, "    (none configured: every key is \"keep\")");
    }
    if !r.problems.is_empty() {
        let _ = writeln!(s, "  problems");
        for p in &r.problems {
            let _ = writeln!(s, "    {:8}  {}", p.severity.name(), p.message);
        }
    }
    s
}

/// Read everything `status` needs. `window` zero: one sample, no "rising".
pub fn read(root: &SysRoot, config_path: Option<&Path>, window: Duration) -> Readings {
    let cfg = config::load(root, config_path);
    let counters_before = read_counters(root);
    let mut fill = observe::fill(root);
    let counters_after = if window.is_zero() || counters_before.is_err() {
        None
    } else {
        std::thread::sleep(window);
        // The count of the end of the window is the one reported: it is the
        // closest to what anyone reads right after the check.
        fill = observe::fill(root);
        Some(read_counters(root))
    };
    let settings = match (&cfg, &fill) {
        (Ok(c), FillReading::Read { .. }) => observe::settings(root, c),
        _ => Vec::new(),
    };
    Readings {
        config: cfg
            .map(|c| (Thresholds::new(&c.watch, c.watch.interval), c.source_name()))
            .map_err(|e| e.to_string()),
        fill,
        counters_before,
        counters_after,
        window,
        settings,
    }
}

/// `conntrack-guard status`.
pub fn run(root: &SysRoot, config_path: Option<&Path>, json: bool, window: Duration) -> i32 {
    let report = judge(&read(root, config_path, window));
    let unknown = Verdict::Unknown.code();
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => output::out_or(&(j + "\n"), report.exit_code, unknown),
            Err(e) => {
                let j = format!(
                    "{{\"status\":\"UNKNOWN\",\"exit_code\":3,\"error\":{:?}}}\n",
                    e.to_string()
                );
                output::out_or(&j, unknown, unknown)
            }
        }
    } else {
        output::out_or(&text(&report), report.exit_code, unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds() -> Thresholds {
        Thresholds::new(&config::Config::default().watch, Duration::from_secs(5))
    }

    fn counters(drop: u64) -> Result<(Counters, CounterSource), String> {
        Ok((
            Counters {
                drop,
                early_drop: 0,
                insert_failed: 0,
                clashres: Some(0),
            },
            CounterSource::Procfs,
        ))
    }

    fn readings(count: u64, max: u64) -> Readings {
        Readings {
            config: Ok((thresholds(), "test".into())),
            fill: FillReading::Read { count, max },
            counters_before: counters(100),
            counters_after: Some(counters(100)),
            window: Duration::from_secs(1),
            settings: vec![Setting {
                key: "net.netfilter.nf_conntrack_max".into(),
                expected: "1000".into(),
                actual: Some("1000".into()),
            }],
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(judge(&readings(100, 1000)).exit_code, 0);
        assert_eq!(judge(&readings(800, 1000)).exit_code, 1);
        assert_eq!(judge(&readings(950, 1000)).exit_code, 2);
        // Old drops (totals since boot) do not count; rising ones do.
        let mut r = readings(100, 1000);
        r.counters_after = Some(counters(101));
        let rep = judge(&r);
        assert_eq!(rep.exit_code, 2);
        assert_eq!(rep.rising.as_ref().unwrap().drop, 1);
        assert_eq!(rep.counters.unwrap().drop, 101);
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
        r.fill = FillReading::Gone("absent".into());
        let rep = judge(&r);
        assert_eq!(rep.exit_code, 3);
        assert!(!rep.module_loaded);
        let mut r = readings(100, 1000);
        r.counters_before = Err("garbage".into());
        r.counters_after = None;
        assert_eq!(judge(&r).exit_code, 3);
        let mut r = readings(100, 1000);
        r.config = Err("bad".into());
        let rep = judge(&r);
        assert_eq!(rep.exit_code, 3);
        assert!(rep.problems[0].message.contains("invalid configuration"));
        // Critical beats unknown; unknown beats warning.
        let mut r = readings(990, 1000);
        r.counters_before = Err("garbage".into());
        assert_eq!(judge(&r).exit_code, 2);
        let mut r = readings(850, 1000);
        r.counters_before = Err("garbage".into());
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
