// SPDX-License-Identifier: MIT OR Apache-2.0
//! `conntrack-guard top`: who is filling the table. One read of a
//! namespace's table through [`crate::triage`], printed as a table per
//! dimension or as JSON; `--netns all` reads the fullest namespaces.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::assess::Fill;
use crate::exit;
use crate::host::Host;
use crate::report::output;
use crate::sysroot::SysRoot;
use crate::triage::agg::share;
use crate::triage::{self, Collected, Dim, DimReport, Group, GROUP_CAP};

/// Default time bound of one dump.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) const HELP: &str = "\
conntrack-guard top - who is filling the conntrack table

USAGE:
    conntrack-guard [--config PATH] top [--by KEY]... [-n N] [--json]
                        [--netns PATH] [--timeout DUR] [--prefix V4LEN[,V6LEN]]

Reads the table once over ctnetlink (IPv4 and IPv6) and groups the entries
as they stream. The table keeps changing while it is read: the figures are
a snapshot of a moving target, and the header shows the kernel's own count
before and after the read.

OPTIONS:
    --by KEY        Group by KEY (repeatable, or comma-separated): dport,
                    state, source, nat, zone, mark. Default: dport, state,
                    source, nat, and zone/mark when any entry has one.
    -n N            Show the N largest groups of each kind (default 10)
    --json          Machine-readable output
    --netns PATH    Read the table of another network namespace, e.g.
                    /run/netns/NAME, /proc/PID/ns/net, /run/docker/netns/ID;
                    `all`: every namespace at or above the warning level
                    (the fullest alone when none is), fullest first
                    (needs root)
    --timeout DUR   Bound on the read (default 5s); a cut-short read is
                    reported as partial
    --prefix V4LEN[,V6LEN]
                    Source prefix lengths (default 24,64)

EXIT STATUS:
    0   complete read
    1   partial read (time bound, interrupted dump) or runtime failure
    2   usage error, or PATH is not a network namespace
    69  ctnetlink unavailable (nf_conntrack_netlink absent)
    77  permission denied (needs CAP_NET_ADMIN; --netns needs root)
    78  invalid configuration (the warning level of `--netns all`
        comes from it), or a `--config` file that cannot be read
";

/// `top`'s options (parsed by [`crate::cli`]); `by` empty means the
/// default set, `n` is the groups shown per dimension, `prefix4` and
/// `prefix6` the source prefix lengths.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Options {
    pub(crate) by: Vec<Dim>,
    pub(crate) n: usize,
    pub(crate) json: bool,
    pub(crate) netns: Option<PathBuf>,
    pub(crate) timeout: Duration,
    pub(crate) prefix4: u8,
    pub(crate) prefix6: u8,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            by: Vec::new(),
            n: 10,
            json: false,
            netns: None,
            timeout: DEFAULT_TIMEOUT,
            prefix4: 24,
            prefix6: 64,
        }
    }
}

/// Everything `top` prints (`--json`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// The namespace read: a path, or "current".
    namespace: String,
    /// True only for a dump that reached its end uninterrupted; else why
    /// it is partial.
    complete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    partial: Option<String>,
    /// Entries read, and the entry messages that could not be parsed (not
    /// in `total`).
    total: u64,
    malformed: u64,
    /// nf_conntrack_count before and after the read, nf_conntrack_max.
    count_before: Option<u64>,
    count_after: Option<u64>,
    max: Option<u64>,
    elapsed_ms: u64,
    groups: Vec<DimReport>,
    /// What the patterns suggest.
    advice: Vec<String>,
}

impl Report {
    /// The report of one read for these dimensions (empty: the default set).
    fn new(c: &Collected, namespace: &str, dims: &[Dim], n: usize) -> Report {
        let dims = match dims {
            [] => c.agg.default_dims(),
            d => d.to_vec(),
        };
        let partial = c.partial();
        Report {
            namespace: namespace.to_string(),
            complete: partial.is_none(),
            partial,
            total: c.agg.total(),
            malformed: c.outcome.progress.malformed,
            count_before: c.count_before,
            count_after: c.count_after,
            max: c.max,
            elapsed_ms: c.elapsed.as_millis() as u64,
            groups: dims.iter().map(|d| c.agg.report(*d, n)).collect(),
            advice: triage::advise(&c.agg, c.udp_timeout),
        }
    }

    fn text(&self) -> String {
        let mut s = self.header();
        if self.total == 0 {
            s.push_str("\nThe table is empty.\n");
            return s;
        }
        for d in &self.groups {
            d.table(&mut s, self.total);
        }
        s.push_str("\nWhat this suggests:\n");
        if self.advice.is_empty() {
            s.push_str("  no single pattern with a known remedy stands out.\n");
        }
        for a in &self.advice {
            let _ = writeln!(s, "  - {a}");
        }
        s
    }

    /// What was read, how completely, against the kernel's own count.
    fn header(&self) -> String {
        let mut s = String::new();
        let state = if self.complete { "complete" } else { "PARTIAL" };
        let _ = writeln!(
            s,
            "conntrack table of {}: {} entries read in {:.2} s ({state})",
            self.namespace,
            self.total,
            self.elapsed_ms as f64 / 1000.0
        );
        let fill = match (self.count_after, self.max) {
            (Some(count), Some(max)) if max > 0 => {
                format!(" ({:.0}% full)", Fill { count, max }.percent())
            }
            _ => String::new(),
        };
        let opt = |v: Option<u64>| v.map_or_else(|| "?".into(), |n| n.to_string());
        let _ = writeln!(
            s,
            "kernel count {} before, {} after; max {}{fill}",
            opt(self.count_before),
            opt(self.count_after),
            opt(self.max)
        );
        let _ = writeln!(
            s,
            "The table changes while it is read: entries added or removed meanwhile may be \
             missed, so the total can differ from the kernel's count."
        );
        if let Some(p) = &self.partial {
            let _ = writeln!(s, "PARTIAL: {p}.");
        }
        if self.malformed > 0 {
            let _ = writeln!(
                s,
                "{} entries could not be parsed and are not counted.",
                self.malformed
            );
        }
        s
    }
}

impl DimReport {
    /// This dimension's table: its groups, then what is not shown.
    fn table(&self, s: &mut String, total: u64) {
        let least = self.by.title().len().max(24);
        let width = self
            .groups
            .iter()
            .map(|g| g.key.len())
            .fold(least, usize::max);
        let _ = writeln!(
            s,
            "\n{:<width$}  {:>9}  {:>6}",
            self.by.title(),
            "COUNT",
            "SHARE"
        );
        for g in &self.groups {
            g.row(s, width);
        }
        let more = format!("({} more groups)", self.distinct - self.groups.len());
        let other = format!("(other: over {GROUP_CAP} groups)");
        for (label, n) in [(more, self.rest), (other, self.over_cap)] {
            if n > 0 {
                share_row(s, width, &label, n, share(n, total));
                s.push('\n');
            }
        }
    }
}

impl Group {
    /// One row, with a port's state mix when known.
    fn row(&self, s: &mut String, width: usize) {
        share_row(s, width, &self.key, self.count, self.share);
        if let Some(p) = &self.detail {
            let _ = write!(
                s,
                "  unreplied {:.0}%, not assured {:.0}%{}",
                share(p.unreplied, p.count) * 100.0,
                share(p.unassured, p.count) * 100.0,
                if p.dnat > 0 {
                    format!(", DNAT {:.0}%", share(p.dnat, p.count) * 100.0)
                } else {
                    String::new()
                }
            );
        }
        s.push('\n');
    }
}

/// A `KEY  COUNT  SHARE` row of a dimension's table, without its newline.
fn share_row(s: &mut String, width: usize, key: &str, count: u64, share: f64) {
    let _ = write!(s, "{key:<width$}  {count:>9}  {:>5.1}%", share * 100.0);
}

/// `conntrack-guard top`; returns the exit code.
pub(crate) fn run(host: &Host, config_path: Option<&Path>, o: &Options) -> i32 {
    let root = &host.root;
    // Loaded like every other command does, so a missing `--config` file
    // is an error here too, not a silent fall back to the default file.
    let Some(cfg) = output::config(root, config_path, "conntrack-guard top") else {
        return exit::CONFIG;
    };
    if o.netns.as_deref() == Some(Path::new("all")) {
        return run_all(root, o, cfg.watch.warn_percent);
    }
    let read = if host.kernel_access {
        triage::collect(root, o.netns.as_deref(), o.timeout, o.prefix4, o.prefix6)
    } else {
        Err(triage::ReadError::NotHost)
    };
    let c = match read {
        Ok(c) => c,
        Err(e) => {
            eprintln!("conntrack-guard top: {e}");
            return e.exit_code();
        }
    };
    let ns = o.netns.as_ref().map_or_else(
        || "this network namespace".to_string(),
        |p| p.display().to_string(),
    );
    let r = Report::new(&c, &ns, &o.by, o.n);
    // A closed pipe (`| head`) is a normal end for a pipe citizen.
    let code = output::report(&r, o.json, Report::text, exit::OK, exit::FAILURE);
    if r.complete {
        return code;
    }
    eprintln!(
        "conntrack-guard top: partial result: {}",
        r.partial.as_deref().unwrap_or("")
    );
    exit::FAILURE
}

/// One namespace `--netns all` may read: its inode, owner label (`docker
/// web`), fill percent and the namespace file to enter it by.
#[derive(Debug, Clone, PartialEq)]
struct Candidate {
    inode: u64,
    label: String,
    percent: f64,
    enter: PathBuf,
}

/// `--netns all`: every namespace at or above the warning level, fullest
/// first; when none is, the fullest one alone. Pure.
fn pick(mut all: Vec<Candidate>, warn_percent: f64) -> Vec<Candidate> {
    all.sort_by(|a, b| b.percent.total_cmp(&a.percent));
    let hot = all.iter().take_while(|c| c.percent >= warn_percent).count();
    all.truncate(hot.max(1));
    all
}

/// `top --netns all`: scan the namespaces, read the fill of each, and run
/// the aggregation in the fullest, or in each above the warning level.
fn run_all(root: &SysRoot, o: &Options, warn: f64) -> i32 {
    let found = crate::netns::scan(root);
    let samples = crate::netns::sample::sample_all(&found);
    let all: Vec<Candidate> = found
        .iter()
        .zip(samples)
        .filter_map(|(ns, s)| {
            let s = s.ok()?;
            Some(Candidate {
                inode: ns.inode,
                label: ns.owner.label(),
                percent: Fill {
                    count: s.count,
                    max: s.max,
                }
                .percent(),
                enter: ns.enter.clone(),
            })
        })
        .collect();
    if all.is_empty() {
        eprintln!("conntrack-guard top: no network namespace could be read (needs root)");
        return exit::NOPERM;
    }
    let mut code = exit::OK;
    let mut reports = Vec::new();
    let mut text = String::new();
    for c in pick(all, warn) {
        let title = format!("netns {} ({}, {:.1}% full)", c.inode, c.label, c.percent);
        match triage::collect(root, Some(&c.enter), o.timeout, o.prefix4, o.prefix6) {
            Ok(col) => {
                let r = Report::new(&col, &title, &o.by, o.n);
                if !r.complete {
                    code = code.max(exit::FAILURE);
                }
                text.push_str(&r.text());
                text.push('\n');
                reports.push(r);
            }
            Err(e) => {
                eprintln!("conntrack-guard top: {title}: {e}");
                // ctnetlink missing is the kernel's, not one namespace's:
                // 69 as for one namespace. Anything else (most often a
                // namespace gone between the scan and the read) is 1.
                code = match e.exit_code() {
                    exit::UNAVAILABLE => exit::UNAVAILABLE,
                    _ if code == exit::UNAVAILABLE => code,
                    _ => code.max(exit::FAILURE),
                };
            }
        }
    }
    output::report(&reports, o.json, |_| text, code, exit::FAILURE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::ctdump::End;
    use crate::triage::tests::collected;

    #[test]
    fn netns_all_picks_the_hot_ones_or_the_fullest() {
        let c = |inode: u64, percent: f64| Candidate {
            inode,
            label: format!("netns n{inode}"),
            percent,
            enter: PathBuf::from(format!("/run/netns/n{inode}")),
        };
        let got = pick(vec![c(1, 10.0), c(2, 96.0), c(3, 85.0), c(4, 79.9)], 80.0);
        assert_eq!(got.iter().map(|c| c.inode).collect::<Vec<_>>(), vec![2, 3]);
        let got = pick(vec![c(1, 10.0), c(2, 30.0)], 80.0);
        assert_eq!(got.iter().map(|c| c.inode).collect::<Vec<_>>(), vec![2]);
        assert!(pick(Vec::new(), 80.0).is_empty());
    }

    #[test]
    fn partial_is_never_complete() {
        let report = |end, intr| Report::new(&collected(end, intr), "x", &[], 10);
        let r = report(End::Timeout, false);
        assert!(!r.complete);
        assert!(r.text().contains("PARTIAL"));
        assert!(!report(End::Done, true).complete);
        let r = report(End::Done, false);
        assert!(r.complete && r.partial.is_none());
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["groups"][0]["by"], "dport");
        assert_eq!(j["groups"][0]["groups"][0]["count"], 800);
    }
}
