// SPDX-License-Identifier: MIT OR Apache-2.0
//! The node-exporter textfile: Prometheus text format, written atomically.
//!
//! The file is replaced by rename after every good sample, so the textfile
//! collector never reads half a file. A failed sample does not rewrite it:
//! `conntrack_guard_last_sample_timestamp_seconds` then goes stale, which is
//! what the shipped "stale sample" alert looks at. The path is an output
//! path chosen by the operator, not a kernel path, so it is not joined onto
//! the test root.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::assess::SavedTotals;
use crate::assess::{Fill, Level};
use crate::kernel::ctstats::CounterSource;
use crate::kernel::snmp::UdpStats;
use crate::report::events::{Event, Priority};
use crate::sysroot::{write_atomic, PathError, SysRoot};

/// Where the `*_total` counters' state outlives the watchdog process:
/// under /run (gone at reboot, like the kernel's counters), in the unit's
/// RuntimeDirectory= (kept across restarts by RuntimeDirectoryPreserve=).
pub const TOTALS_FILE: &str = "run/conntrack-guard/totals.json";

/// The kernel's id of this boot: a saved state from another boot is void.
const BOOT_ID: &str = "proc/sys/kernel/random/boot_id";

/// The file's form: the per-CPU state behind the `*_total` counters
/// ([`SavedTotals`]) and the boot it belongs to, kept across restarts of
/// the watchdog.
///
/// Why: the exported totals are wrap-extended (each CPU's u32 counter is
/// followed with wrapping deltas). A new process without this state starts
/// from the raw per-CPU sum, which is lower after any wrap, and a falling
/// `*_total` reads as a counter reset (`increase()` jumps). With it, the
/// next process adds each CPU's wrapping increase since the saved raw
/// values to the saved totals, so the totals never fall while the kernel's
/// counters did not reset. Chosen over exporting the raw sum (which falls
/// at every wrap) and over a persisted offset alone (it cannot tell the
/// increase during the downtime without the per-CPU raw values). Written
/// with every metrics write, only when a textfile is configured; keyed by
/// the boot id; counters that read lower than saved on a CPU far from the
/// wrap point are taken as reset and the state is dropped.
#[derive(serde::Serialize, serde::Deserialize)]
struct TotalsFile {
    boot_id: String,
    #[serde(flatten)]
    totals: SavedTotals,
}

fn boot_id(root: &SysRoot) -> Option<String> {
    let id = root.read_opt(BOOT_ID).ok().flatten()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// The state a previous watchdog process of this boot left, if any. A
/// missing, unreadable or foreign file is no state: the totals then start
/// from the kernel's sums, as on a first start.
pub fn load_totals(root: &SysRoot) -> Option<SavedTotals> {
    let boot = boot_id(root)?;
    let text = root.read_opt(TOTALS_FILE).ok().flatten()?;
    let file: TotalsFile = serde_json::from_str(&text).ok()?;
    (file.boot_id == boot).then_some(file.totals)
}

/// Keep the state for the next process. Nothing is written without a boot
/// id (it could not be told apart from the next boot's), nor without the
/// directory: the unit's RuntimeDirectory= makes it; a watchdog run by hand
/// leaves nothing behind in /run.
pub fn save_totals(root: &SysRoot, totals: &SavedTotals) -> Result<(), PathError> {
    let path = root.path(TOTALS_FILE);
    match boot_id(root) {
        Some(boot_id) if path.parent().is_some_and(Path::is_dir) => {
            let totals = totals.clone();
            let text = serde_json::to_string(&TotalsFile { boot_id, totals }).unwrap_or_default();
            write_atomic(&path, text.as_bytes())
        }
        _ => Ok(()),
    }
}

/// The watchdog's own growth of the table (`[grow]`): growths since it
/// started, `[grow] budget` in bytes, and whether the table is at the
/// budget after a growth (a `grow_limited` was logged and still holds).
/// The max it grew to is `conntrack_guard_entries_limit`, like any max.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GrowMetrics {
    pub(crate) grown: u32,
    pub(crate) budget_bytes: u64,
    pub(crate) limited: bool,
}

/// What one sample contributes to the metrics.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot<'a> {
    pub(crate) fill: &'a Fill,
    pub(crate) level: Level,
    /// Conntrack counter totals since boot, monotonic across u32 wraps
    /// (empty when unreadable), and where they came from.
    pub(crate) conntrack: &'a [(&'static str, u64)],
    pub(crate) counters_source: Option<CounterSource>,
    /// The UDP MIB of this namespace, when readable.
    pub(crate) udp: Option<&'a UdpStats>,
    /// Backlog counter totals since boot, monotonic (empty when unreadable).
    pub(crate) softnet: &'a [(&'static str, u64)],
    /// Any configured setting drifted.
    pub(crate) drift: bool,
    /// Growth, when `[grow] enabled`.
    pub(crate) grow: Option<GrowMetrics>,
    /// Unix time of the sample, seconds.
    pub(crate) timestamp: f64,
}

/// The file's text, written one metric at a time.
struct Prom(String);

impl Prom {
    fn metric(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    /// A gauge with one unlabelled value.
    fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.metric(name, "gauge", help);
        let _ = writeln!(self.0, "{name} {value}");
    }

    /// A family with one `label` per row; the HELP and TYPE lines even when
    /// `rows` is empty.
    fn family<V: std::fmt::Display>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        label: &str,
        rows: impl IntoIterator<Item = (&'static str, V)>,
    ) {
        self.metric(name, kind, help);
        for (value_of_label, v) in rows {
            let _ = writeln!(self.0, "{name}{{{label}=\"{value_of_label}\"}} {v}");
        }
    }
}

/// The file contents.
pub(crate) fn render(s: &Snapshot<'_>) -> String {
    let mut o = Prom(String::with_capacity(1536));
    // Entries, limit, fill ratio and level.
    o.gauge(
        "conntrack_guard_entries",
        "Entries in the conntrack table (nf_conntrack_count of this network namespace).",
        s.fill.count,
    );
    o.gauge(
        "conntrack_guard_entries_limit",
        "Size of the conntrack table (nf_conntrack_max).",
        s.fill.max,
    );
    o.gauge(
        "conntrack_guard_fill_ratio",
        "Entries divided by the limit (0-1; above 1 when max was lowered below the count).",
        s.fill.count as f64 / s.fill.max.max(1) as f64,
    );
    o.gauge(
        "conntrack_guard_level",
        "Fill level with hysteresis: 0 ok, 1 warning, 2 critical.",
        s.level.gauge(),
    );
    if !s.conntrack.is_empty() {
        o.family(
            "conntrack_guard_stat_total",
            "counter",
            "Conntrack counters summed over CPUs since boot (ctnetlink or /proc/net/stat/nf_conntrack), monotonic across the kernel's per-CPU u32 wraps.",
            "counter",
            s.conntrack.iter().copied(),
        );
    }
    if let Some(src) = s.counters_source {
        let netlink = src == CounterSource::Netlink;
        o.family(
            "conntrack_guard_counters_source",
            "gauge",
            "Where the conntrack counters come from: 1 for the source in use.",
            "source",
            [(if netlink { "netlink" } else { "procfs" }, 1)],
        );
    }
    if let Some(u) = s.udp {
        // IPv4 plus IPv6, those the kernel prints, as `status` tallies them.
        o.family(
            "conntrack_guard_udp_errors_total",
            "counter",
            "UDP receive errors of this network namespace, IPv4 and IPv6 (/proc/net/snmp, snmp6): rcvbuf_errors = socket receive buffer full; in_errors = every receive drop (includes rcvbuf_errors).",
            "counter",
            crate::assess::tally::socket(u).counts,
        );
    }
    if !s.softnet.is_empty() {
        o.family(
            "conntrack_guard_softnet_total",
            "counter",
            "Input backlog counters summed over CPUs (/proc/net/softnet_stat): dropped = netdev_max_backlog exceeded; time_squeeze = the softirq budget ran out.",
            "counter",
            s.softnet.iter().copied(),
        );
    }
    // Growth: how often, within what, and whether the budget binds.
    if let Some(g) = s.grow {
        o.metric(
            "conntrack_guard_grown_total",
            "counter",
            "Times the watchdog raised nf_conntrack_max itself ([grow]) since it started.",
        );
        let _ = writeln!(o.0, "conntrack_guard_grown_total {}", g.grown);
        o.gauge(
            "conntrack_guard_grow_budget_bytes",
            "[grow] budget: the worst-case memory the table may take at a grown max, bytes.",
            g.budget_bytes,
        );
        o.gauge(
            "conntrack_guard_grow_limited",
            "1 while the table sits at the [grow] budget after a growth the load wanted larger (grow_limited).",
            u8::from(g.limited),
        );
    }
    o.gauge(
        "conntrack_guard_settings_drift",
        "1 when a configured value no longer matches the kernel.",
        u8::from(s.drift),
    );
    o.gauge(
        "conntrack_guard_last_sample_timestamp_seconds",
        "Unix time of the last good sample.",
        format_args!("{:.3}", s.timestamp),
    );
    o.0
}

/// The textfile and whether its last write failed (to say so once).
#[derive(Debug)]
pub struct Textfile {
    /// The path (absolute, not rooted).
    pub path: PathBuf,
    failing: bool,
}

impl Textfile {
    /// A textfile at `path` (absolute, not rooted).
    pub fn new(path: &Path) -> Self {
        Textfile {
            path: path.to_path_buf(),
            failing: false,
        }
    }

    /// Replace the file. Returns an event on the first failure, and one
    /// when writing works again.
    pub fn write(&mut self, contents: &str) -> Option<Event> {
        let written = write_atomic(&self.path, contents.as_bytes());
        let was_failing = std::mem::replace(&mut self.failing, written.is_err());
        match written {
            Ok(()) if was_failing => {
                let msg = format!("metrics textfile {} is written again", self.path.display());
                Some(Event::fault(Priority::Info, msg))
            }
            Err(e) if !was_failing => {
                let hint = match e.source.kind() {
                    std::io::ErrorKind::NotFound => "the directory does not exist",
                    std::io::ErrorKind::PermissionDenied => {
                        "the directory is not writable by this service (ReadWritePaths= drop-in?)"
                    }
                    std::io::ErrorKind::ReadOnlyFilesystem => "the file system is read-only",
                    _ => "cannot replace the file",
                };
                let (path, e) = (self.path.display(), e.source);
                let msg = format!(
                    "cannot write the metrics textfile {path}: {hint} ({e}); \
                     watching continues without metrics"
                );
                Some(Event::fault(Priority::Err, msg).field("CONNTRACK_TEXTFILE", path))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric() {
        let fill = Fill {
            count: 870,
            max: 1000,
        };
        let conntrack = [
            ("drop", 3),
            ("early_drop", 4),
            ("insert_failed", 5),
            ("chaintoolong", 6),
        ];
        let udp = crate::kernel::snmp::parse_snmp(
            "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\nUdp: 10 2 9 4 7\n",
        )
        .unwrap()
        .0;
        let udp = UdpStats {
            udp,
            ..UdpStats::default()
        };
        let text = render(&Snapshot {
            fill: &fill,
            level: Level::Warning,
            conntrack: &conntrack,
            counters_source: Some(CounterSource::Netlink),
            udp: Some(&udp),
            softnet: &[("dropped", 11), ("time_squeeze", 12)],
            drift: true,
            grow: Some(GrowMetrics {
                grown: 2,
                budget_bytes: 536_870_912,
                limited: true,
            }),
            timestamp: 1_700_000_000.25,
        });
        for line in [
            "conntrack_guard_entries 870",
            "conntrack_guard_entries_limit 1000",
            "conntrack_guard_fill_ratio 0.87",
            "conntrack_guard_level 1",
            "conntrack_guard_stat_total{counter=\"drop\"} 3",
            "conntrack_guard_stat_total{counter=\"early_drop\"} 4",
            "conntrack_guard_stat_total{counter=\"insert_failed\"} 5",
            "conntrack_guard_stat_total{counter=\"chaintoolong\"} 6",
            "conntrack_guard_counters_source{source=\"netlink\"} 1",
            "conntrack_guard_udp_errors_total{counter=\"rcvbuf_errors\"} 7",
            "conntrack_guard_udp_errors_total{counter=\"in_errors\"} 9",
            "conntrack_guard_softnet_total{counter=\"dropped\"} 11",
            "conntrack_guard_softnet_total{counter=\"time_squeeze\"} 12",
            "conntrack_guard_settings_drift 1",
            "conntrack_guard_grown_total 2",
            "# TYPE conntrack_guard_grown_total counter",
            "conntrack_guard_grow_budget_bytes 536870912",
            "conntrack_guard_grow_limited 1",
            "conntrack_guard_last_sample_timestamp_seconds 1700000000.250",
            "# TYPE conntrack_guard_stat_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?}:\n{text}");
        }
        // Every sample line is "name{labels} value" with a numeric value.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let v = l.rsplit(' ').next().unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn missing_directory_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Textfile::new(&dir.path().join("nope/x.prom"));
        let ev = t.write("a 1\n").expect("error event");
        assert_eq!(ev.priority, Priority::Err);
        assert!(ev.message.contains("does not exist"), "{}", ev.message);
        assert!(t.write("a 1\n").is_none());
        std::fs::create_dir(dir.path().join("nope")).unwrap();
        assert_eq!(t.write("a 1\n").map(|e| e.priority), Some(Priority::Info));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("nope/x.prom")).unwrap(),
            "a 1\n"
        );
    }
}
