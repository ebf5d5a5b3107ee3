// SPDX-License-Identifier: MIT OR Apache-2.0
//! `conntrack-guard status --all-netns`: the fill of every network
//! namespace against the one global max, named by container.
//!
//! The kernel holds each namespace's own count against the global
//! nf_conntrack_max, so a container's table can be full while the host's
//! is nearly empty. This reads each namespace from inside it (see
//! [`crate::kernel::nsenter`]), judges each one as `status` does, and reports
//! the worst: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::assess::verdict::{plugin_line, Perf, Verdict};
use crate::assess::{Level, Thresholds};
use crate::config;
use crate::host::Host;
use crate::kernel::kmsg::{self, TableFull};
use crate::netns::sample::*;
use crate::netns::{self, Namespace, Owner};

#[derive(Debug, Serialize)]
pub(crate) struct NsRow {
    inode: u64,
    /// The initial namespace.
    host: bool,
    owner: Owner,
    label: String,
    /// `ip netns` / Docker sandbox name.
    bind_name: Option<String>,
    processes: usize,
    status: Verdict,
    fill: Option<f64>,
    level: Option<Level>,
    /// "active" or "inactive" (nothing uses conntrack here), when read.
    conntrack: Option<&'static str>,
    #[serde(flatten)]
    sample: Option<NsSample>,
    /// Why it could not be read.
    error: Option<String>,
    /// The last "table full" kernel line for this namespace.
    table_full: Option<TableFull>,
}

/// The whole report (the `--json` output).
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// The worst namespace's verdict, and its exit code.
    status: Verdict,
    pub(crate) exit_code: i32,
    /// nf_conntrack_max (global).
    max: Option<u64>,
    warn_percent: Option<f64>,
    critical_percent: Option<f64>,
    /// The configuration used, or why it could not be read.
    config: String,
    /// Fullest first.
    namespaces: Vec<NsRow>,
    /// Namespaces that went away during the scan (normal).
    vanished: usize,
    /// The last "table full" line of kernels that do not name the netns.
    table_full_unattributed: Option<TableFull>,
    kmsg_error: Option<String>,
    /// Microseconds since boot when the report was made (for the
    /// `table_full` ages).
    now_usec: Option<u64>,
    /// The capabilities that kept namespaces from being entered, and what
    /// is missing and how to grant it, when something is.
    missing_capabilities: Vec<&'static str>,
    missing_privilege: Option<String>,
}

/// What was read, as values: the input of [`judge`].
#[derive(Debug)]
pub(crate) struct Readings {
    /// Thresholds and the config's name, or the config error.
    config: Result<(Thresholds, String), String>,
    namespaces: Vec<(Namespace, Result<NsSample, String>)>,
    vanished: usize,
    /// The kernel's "table full" lines, or why they are missing.
    kmsg: Result<Vec<TableFull>, String>,
    now_usec: Option<u64>,
    /// Capabilities whose lack kept namespaces from being entered, each
    /// once, with how many namespaces each kept out.
    missing: Vec<(&'static str, usize)>,
}

/// What a missing capability costs, said once for the whole report, with
/// how to grant it: to a person at a shell, and to the service.
fn missing_text(missing: &[(&'static str, usize)]) -> Option<String> {
    if missing.is_empty() {
        return None;
    }
    let caps: Vec<String> = missing
        .iter()
        .map(|(cap, n)| format!("{cap} ({n} not entered)"))
        .collect();
    Some(format!(
        "cannot enter network namespaces: needs {} (root with full capabilities \
         has them; for conntrack-guard.service install the drop-in {} as \
         /etc/systemd/system/conntrack-guard.service.d/allns.conf)",
        caps.join(" and "),
        netns::ALLNS_DROPIN
    ))
}

/// Judge every namespace and the whole. Pure. As in `status`, CRITICAL
/// beats UNKNOWN beats WARNING; a configuration that cannot be read is
/// UNKNOWN.
pub(crate) fn judge(r: Readings) -> Report {
    let thresholds = r.config.as_ref().ok().map(|(t, _)| t.clone());
    let kmsg = r.kmsg.as_ref().ok();
    let mut max = None;
    let mut rows: Vec<NsRow> = r
        .namespaces
        .into_iter()
        .map(|(ns, s)| {
            let read = s.as_ref().ok().filter(|x| x.max > 0);
            let fill = read.map(|x| x.count as f64 / x.max as f64);
            let level = fill
                .zip(thresholds.as_ref())
                .map(|(f, t)| Level::of(f * 100.0, t));
            let status = match (read, level) {
                (Some(x), _) if x.count > x.max => Verdict::Critical,
                (_, Some(lv)) => lv.into(),
                _ => Verdict::Unknown,
            };
            let error = match &s {
                Ok(x) if x.max == 0 => Some("nf_conntrack_max is 0".to_string()),
                Ok(_) => None,
                Err(e) => Some(e.clone()),
            };
            max = read.map(|x| x.max).or(max);
            NsRow {
                inode: ns.inode,
                host: ns.host,
                label: ns.owner.label(),
                owner: ns.owner,
                bind_name: ns.bind_name,
                processes: ns.processes,
                status,
                fill,
                level,
                conntrack: read.map(|x| if x.inactive() { "inactive" } else { "active" }),
                sample: s.ok(),
                error,
                table_full: kmsg
                    .and_then(|k| k.iter().find(|t| t.netns == Some(ns.inode)).cloned()),
            }
        })
        .collect();
    let unknown = r.config.is_err() || !r.missing.is_empty();
    let worst = Verdict::worst_of(
        (rows.iter().map(|r| r.status)).chain(unknown.then_some(Verdict::Unknown)),
    );
    // Fullest first; the unreadable after the readable.
    rows.sort_by(|a, b| {
        let key = |r: &NsRow| r.fill.unwrap_or(-1.0);
        key(b).total_cmp(&key(a)).then(a.inode.cmp(&b.inode))
    });
    Report {
        status: worst,
        exit_code: worst.code(),
        max,
        warn_percent: thresholds.as_ref().map(|t| t.warn_percent),
        critical_percent: thresholds.as_ref().map(|t| t.critical_percent),
        config: match &r.config {
            Ok((_, name)) => name.clone(),
            Err(e) => format!("invalid configuration: {e}"),
        },
        namespaces: rows,
        vanished: r.vanished,
        table_full_unattributed: kmsg.and_then(|k| k.iter().find(|t| t.netns.is_none()).cloned()),
        kmsg_error: r.kmsg.err(),
        now_usec: r.now_usec,
        missing_capabilities: r.missing.iter().map(|(c, _)| *c).collect(),
        missing_privilege: missing_text(&r.missing),
    }
}

fn age(t: &TableFull, now: Option<u64>) -> String {
    let at = t.usec as f64 / 1e6;
    match now {
        Some(n) if n >= t.usec => {
            format!("[{at:.1}s after boot, {}s ago]", (n - t.usec) / 1_000_000)
        }
        _ => format!("[{at:.1}s after boot]"),
    }
}

/// The text for people: a monitoring-plugins summary line, then one row
/// per namespace, fullest first.
pub(crate) fn text(r: &Report) -> String {
    let mut s = summary_line(r);
    let _ = writeln!(
        s,
        "  max {}  warning at {}%  critical at {}%  ({})",
        r.max.map_or("unknown".into(), |m| m.to_string()),
        r.warn_percent.map_or("?".into(), |v| v.to_string()),
        r.critical_percent.map_or("?".into(), |v| v.to_string()),
        r.config
    );
    // The column widths of `row_lines`.
    s.push_str(
        "  STATUS          NETNS    FILL     COUNT     DROP    EARLY  INSFAIL \
         UDP-RCVBF UDP-INERR  CONNTRACK  OWNER\n",
    );
    for row in &r.namespaces {
        row_lines(&mut s, row, r.now_usec);
    }
    footer_lines(&mut s, r);
    s
}

/// `CONNTRACK OK - N network namespaces, fullest ... | perfdata`, with its
/// newline.
fn summary_line(r: &Report) -> String {
    let n = r.namespaces.len();
    let mut s = format!("{n} network namespaces");
    // First, so a monitoring system's one line says it.
    if let Some(m) = &r.missing_privilege {
        let _ = write!(s, ": {m}");
    }
    let head = r.namespaces.first();
    let mut perf = Vec::new();
    if let (Some(h), Some(f)) = (head, head.and_then(|h| h.fill)) {
        let _ = write!(
            s,
            ", fullest {:.1}% ({}/{}) in netns {} ({})",
            f * 100.0,
            h.sample.as_ref().map_or(0, |x| x.count),
            r.max.unwrap_or(0),
            h.inode,
            h.label
        );
        perf = vec![
            Perf::percent("fill_max", f, r.warn_percent, r.critical_percent),
            Perf::count("namespaces", n as u64, None),
        ];
    }
    plugin_line(r.status, &s, &perf)
}

/// One namespace's row, then its read errors and last "table full" line.
fn row_lines(s: &mut String, row: &NsRow, now_usec: Option<u64>) {
    let x = row.sample.as_ref();
    let c = x.and_then(|x| x.counters);
    let u = x.and_then(|x| x.udp);
    let opt = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
    let _ = writeln!(
        s,
        "  {:<8} {:>12} {:>7} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9}  {:<8}  {}{}",
        row.status.name(),
        row.inode,
        row.fill
            .map_or("-".into(), |f| format!("{:.1}%", f * 100.0)),
        opt(x.map(|x| x.count)),
        opt(c.map(|c| c.drop)),
        opt(c.map(|c| c.early_drop)),
        opt(c.map(|c| c.insert_failed)),
        opt(u.map(|u| u.rcvbuf_errors)),
        opt(u.map(|u| u.in_errors)),
        row.conntrack.unwrap_or("-"),
        row.label,
        match (&row.bind_name, row.owner.runtime) {
            (Some(b), rt) if rt != netns::Runtime::Netns => format!(" (netns {b})"),
            _ => String::new(),
        }
    );
    if let Some(e) = &row.error {
        let _ = writeln!(s, "           cannot read: {e}");
    }
    if let Some(x) = x.and_then(|x| x.counters_error.as_ref()) {
        let _ = writeln!(s, "           counters unavailable: {x}");
    }
    if let Some(t) = &row.table_full {
        let _ = writeln!(
            s,
            "           last kernel line {} {}",
            age(t, now_usec),
            t.line
        );
    }
}

/// What the scan could not attribute or read.
fn footer_lines(s: &mut String, r: &Report) {
    if let Some(t) = &r.table_full_unattributed {
        let _ = writeln!(
            s,
            "  last \"table full\" line (this kernel does not name the netns) {} {}",
            age(t, r.now_usec),
            t.line
        );
    }
    if r.vanished > 0 {
        let _ = writeln!(s, "  {} namespace(s) went away during the scan", r.vanished);
    }
    if let Some(e) = &r.kmsg_error {
        let _ = writeln!(
            s,
            "  kernel log not read: {e} (needs CAP_SYSLOG when kernel.dmesg_restrict=1)"
        );
    }
}

/// Microseconds on the clock the kernel log is stamped with.
fn now_usec() -> Option<u64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    Some(t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
}

/// Scan, then sample every namespace. Under a test root nothing is
/// entered: the rows carry the owners and an error.
pub(crate) fn read(host: &Host, config_path: Option<&Path>) -> Readings {
    let root = &host.root;
    let cfg = config::load(root, config_path)
        .map(|c| (Thresholds::new(&c.watch, c.watch.interval), c.source_name()))
        .map_err(|e| e.to_string());
    let found = netns::scan(root);
    // None: the namespace went away since the scan (normal, not listed).
    let mut missing: Vec<(&'static str, usize)> = Vec::new();
    let samples: Vec<Option<Result<NsSample, String>>> = if host.kernel_access {
        sample_all(&found)
            .into_iter()
            .map(|r| match r {
                Err(e) if e.vanished() => None,
                r => {
                    if let Err(SampleError::Enter(e)) = &r {
                        if let Some(cap) = e.missing_capability() {
                            match missing.iter_mut().find(|(c, _)| *c == cap) {
                                Some((_, n)) => *n += 1,
                                None => missing.push((cap, 1)),
                            }
                        }
                    }
                    Some(r.map_err(|e| e.to_string()))
                }
            })
            .collect()
    } else {
        found
            .iter()
            .map(|_| Some(Err("not entered under a test root".to_string())))
            .collect()
    };
    let vanished = samples.iter().filter(|s| s.is_none()).count();
    let namespaces = found
        .into_iter()
        .zip(samples)
        .filter_map(|(ns, s)| Some((ns, s?)))
        .collect();
    Readings {
        config: cfg,
        namespaces,
        vanished,
        kmsg: if host.kernel_access {
            kmsg::read_table_full(root).map_err(|e| e.to_string())
        } else {
            Ok(Vec::new())
        },
        now_usec: now_usec(),
        missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::ctstats::CounterSource;
    use crate::netns::Runtime;
    use std::path::PathBuf;
    use std::time::Duration;

    const SNMP: &str = "Ip: Forwarding DefaultTTL InReceives\nIp: 1 64 10\n\
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
Udp: 12 0 2999 5 2997 0 2 0 0\n\
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
UdpLite: 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn snmp_udp_by_name() {
        assert_eq!(
            parse_snmp_udp(SNMP),
            Some(UdpDrops {
                rcvbuf_errors: 2997,
                in_errors: 2999
            })
        );
        assert_eq!(parse_snmp_udp("Udp: InErrors\n"), None);
        assert_eq!(parse_snmp_udp("Udp: Foo\nUdp: 1\n"), None);
        assert_eq!(parse_snmp_udp(""), None);
    }

    fn ns(inode: u64, name: &str) -> Namespace {
        Namespace {
            inode,
            host: inode == 1,
            owner: Owner {
                runtime: if inode == 1 {
                    Runtime::Host
                } else {
                    Runtime::Netns
                },
                id: None,
                name: Some(name.into()),
            },
            processes: 1,
            pid: None,
            bind_name: None,
            enter: PathBuf::from("/nonexistent"),
        }
    }

    fn smp(count: u64, drop: u64) -> Result<NsSample, String> {
        Ok(NsSample {
            count,
            max: 1000,
            counters: Some(Counters {
                drop,
                early_drop: 0,
                insert_failed: 0,
                clashres: Some(0),
            }),
            counters_source: Some(CounterSource::Netlink),
            counters_error: None,
            udp: Some(UdpDrops::default()),
            table: None,
        })
    }

    fn readings(ns: Vec<(Namespace, Result<NsSample, String>)>) -> Readings {
        Readings {
            config: Ok((
                Thresholds::new(&config::Config::default().watch, Duration::from_secs(5)),
                "test".into(),
            )),
            namespaces: ns,
            vanished: 1,
            kmsg: Ok(vec![TableFull {
                netns: Some(3),
                usec: 5_000_000,
                line: "nf_conntrack: nf_conntrack: table full in netns 3, dropping packet".into(),
            }]),
            now_usec: Some(65_000_000),
            missing: Vec::new(),
        }
    }

    #[test]
    fn worst_namespace_decides_and_fullest_first() {
        let r = judge(readings(vec![
            (ns(1, "host"), smp(10, 0)),
            (ns(2, "idle"), smp(0, 0)),
            (ns(3, "busy"), smp(990, 40)),
            (ns(4, "warm"), smp(850, 0)),
        ]));
        assert_eq!(r.status, Verdict::Critical);
        assert_eq!(r.exit_code, 2);
        let order: Vec<u64> = r.namespaces.iter().map(|n| n.inode).collect();
        assert_eq!(order, [3, 4, 1, 2]);
        assert_eq!(r.namespaces[0].status, Verdict::Critical);
        assert_eq!(r.namespaces[1].status, Verdict::Warning);
        assert_eq!(r.namespaces[3].conntrack, Some("inactive"));
        assert_eq!(r.namespaces[0].conntrack, Some("active"));
        assert!(r.namespaces[0].table_full.is_some());
        let t = text(&r);
        assert!(t.starts_with("CONNTRACK CRITICAL - 4 network namespaces, fullest 99.0% (990/1000) in netns 3 (netns busy)"), "{t}");
        assert!(t.contains("60s ago"), "{t}");
        assert!(t.contains("1 namespace(s) went away"), "{t}");
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["namespaces"][0]["count"], 990);
        assert_eq!(j["namespaces"][0]["owner"]["runtime"], "netns");
        assert_eq!(j["namespaces"][0]["status"], "CRITICAL");
    }

    #[test]
    fn unknown_and_over_max() {
        let r = judge(readings(vec![
            (ns(1, "host"), smp(10, 0)),
            (ns(2, "locked"), Err("setns: EPERM".into())),
        ]));
        assert_eq!(r.exit_code, 3);
        assert_eq!(r.namespaces.last().unwrap().inode, 2);
        let r = judge(readings(vec![(ns(2, "x"), smp(1001, 0))]));
        assert_eq!(r.exit_code, 2);
        let mut rd = readings(vec![(ns(1, "host"), smp(10, 0))]);
        rd.config = Err("bad".into());
        assert_eq!(judge(rd).exit_code, 3);
        let r = judge(readings(vec![(ns(1, "host"), smp(10, 0))]));
        assert_eq!(r.exit_code, 0);
    }

    #[test]
    fn a_missing_capability_is_unknown_and_named_first() {
        let mut rd = readings(vec![
            (ns(1, "host"), Err("setns: EPERM".into())),
            (ns(2, "blue"), Err("setns: EPERM".into())),
        ]);
        rd.missing = vec![("CAP_SYS_ADMIN", 2)];
        let r = judge(rd);
        assert_eq!((r.status, r.exit_code), (Verdict::Unknown, 3));
        assert_eq!(r.missing_capabilities, ["CAP_SYS_ADMIN"]);
        let first = text(&r).lines().next().unwrap().to_string();
        for w in [
            "CONNTRACK UNKNOWN - 2 network namespaces: cannot enter",
            "CAP_SYS_ADMIN (2 not entered)",
            "conntrack-guard-allns.conf",
        ] {
            assert!(first.contains(w), "{w}: {first}");
        }
        // Even when the readable rest is fine, the report is not OK.
        let mut rd = readings(vec![(ns(1, "host"), smp(10, 0))]);
        rd.missing = vec![("CAP_SYS_PTRACE", 1)];
        assert_eq!(judge(rd).exit_code, 3);
    }
}
