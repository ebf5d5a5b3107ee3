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

use crate::assess::{Fill, Level};
use crate::events::{Event, Priority};
use crate::ids;
use crate::stats::Counters;
use crate::sysroot::write_atomic;

/// What one sample contributes to the metrics.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    /// Count and max.
    pub fill: &'a Fill,
    /// Current level.
    pub level: Level,
    /// Counter totals since boot, when readable.
    pub counters: Option<&'a Counters>,
    /// Any configured setting drifted.
    pub drift: bool,
    /// Unix time of the sample, seconds.
    pub timestamp: f64,
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The file contents.
pub fn render(s: &Snapshot<'_>) -> String {
    let mut o = String::with_capacity(1536);
    metric(
        &mut o,
        "conntrack_guard_entries",
        "gauge",
        "Entries in the conntrack table (nf_conntrack_count of this network namespace).",
    );
    let _ = writeln!(o, "conntrack_guard_entries {}", s.fill.count);
    metric(
        &mut o,
        "conntrack_guard_entries_limit",
        "gauge",
        "Size of the conntrack table (nf_conntrack_max).",
    );
    let _ = writeln!(o, "conntrack_guard_entries_limit {}", s.fill.max);
    metric(
        &mut o,
        "conntrack_guard_fill_ratio",
        "gauge",
        "Entries divided by the limit (0-1; above 1 when max was lowered below the count).",
    );
    let _ = writeln!(
        o,
        "conntrack_guard_fill_ratio {}",
        s.fill.count as f64 / s.fill.max.max(1) as f64
    );
    metric(
        &mut o,
        "conntrack_guard_level",
        "gauge",
        "Fill level with hysteresis: 0 ok, 1 warning, 2 critical.",
    );
    let _ = writeln!(o, "conntrack_guard_level {}", s.level.gauge());
    if let Some(c) = s.counters {
        metric(
            &mut o,
            "conntrack_guard_stat_total",
            "counter",
            "Conntrack counters summed over CPUs since boot (/proc/net/stat/nf_conntrack).",
        );
        for (name, v) in [
            ("drop", c.drop),
            ("early_drop", c.early_drop),
            ("insert_failed", c.insert_failed),
        ] {
            let _ = writeln!(o, "conntrack_guard_stat_total{{counter=\"{name}\"}} {v}");
        }
    }
    metric(
        &mut o,
        "conntrack_guard_settings_drift",
        "gauge",
        "1 when a configured value no longer matches the kernel.",
    );
    let _ = writeln!(o, "conntrack_guard_settings_drift {}", u8::from(s.drift));
    metric(
        &mut o,
        "conntrack_guard_last_sample_timestamp_seconds",
        "gauge",
        "Unix time of the last good sample.",
    );
    let _ = writeln!(
        o,
        "conntrack_guard_last_sample_timestamp_seconds {:.3}",
        s.timestamp
    );
    o
}

/// The textfile and whether its last write failed (to say so once).
#[derive(Debug)]
pub struct Textfile {
    path: PathBuf,
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

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replace the file. Returns an event on the first failure, and one
    /// when writing works again.
    pub fn write(&mut self, contents: &str) -> Option<Event> {
        match write_atomic(&self.path, contents.as_bytes()) {
            Ok(()) if self.failing => {
                self.failing = false;
                Some(Event::new(
                    Priority::Info,
                    "fault",
                    ids::FAULT,
                    format!("metrics textfile {} is written again", self.path.display()),
                ))
            }
            Ok(()) => None,
            Err(e) if !self.failing => {
                self.failing = true;
                let hint = match e.source.kind() {
                    std::io::ErrorKind::NotFound => "the directory does not exist",
                    std::io::ErrorKind::PermissionDenied => {
                        "the directory is not writable by this service (ReadWritePaths= drop-in?)"
                    }
                    std::io::ErrorKind::ReadOnlyFilesystem => "the file system is read-only",
                    _ => "cannot replace the file",
                };
                Some(
                    Event::new(
                        Priority::Err,
                        "fault",
                        ids::FAULT,
                        format!(
                            "cannot write the metrics textfile {}: {hint} ({}); \
                             watching continues without metrics",
                            self.path.display(),
                            e.source
                        ),
                    )
                    .field("CONNTRACK_TEXTFILE", self.path.display()),
                )
            }
            Err(_) => None,
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
        let c = Counters {
            drop: 3,
            early_drop: 4,
            insert_failed: 5,
            clashres: Some(1),
        };
        let text = render(&Snapshot {
            fill: &fill,
            level: Level::Warning,
            counters: Some(&c),
            drift: true,
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
            "conntrack_guard_settings_drift 1",
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
