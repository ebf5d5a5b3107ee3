// SPDX-License-Identifier: MIT OR Apache-2.0
//! The metrics textfile: contents after each sample, never half-written
//! (a reader loop during 1 ms rewrites), and a missing or read-only
//! directory reported once while the watchdog keeps running.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn config_with_textfile(root: &FakeRoot, path: &Path) {
    root.config(&format!(
        "[conntrack]\nmax = 1000\n[metrics]\ntextfile = \"{}\"\n",
        path.display()
    ));
}

/// Parse the Prometheus text format strictly enough to catch a torn file.
fn parse(text: &str) -> Result<BTreeMap<String, f64>, String> {
    if !text.ends_with('\n') {
        return Err("no final newline".into());
    }
    let mut m = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').ok_or(format!("bad line {line:?}"))?;
        let v: f64 = value.parse().map_err(|_| format!("bad value {line:?}"))?;
        m.insert(name.to_string(), v);
    }
    for need in [
        "conntrack_guard_entries",
        "conntrack_guard_entries_limit",
        "conntrack_guard_fill_ratio",
        "conntrack_guard_level",
        "conntrack_guard_stat_total{counter=\"drop\"}",
        "conntrack_guard_stat_total{counter=\"early_drop\"}",
        "conntrack_guard_stat_total{counter=\"insert_failed\"}",
        "conntrack_guard_settings_drift",
        "conntrack_guard_last_sample_timestamp_seconds",
    ] {
        if !m.contains_key(need) {
            return Err(format!("missing {need}"));
        }
    }
    Ok(m)
}

fn wait_metrics(
    path: &Path,
    pred: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            let m = parse(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
            if pred(&m) {
                return m;
            }
        }
        assert!(Instant::now() < end, "metrics never matched");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn textfile_contents_follow_the_samples() {
    let root = FakeRoot::new();
    let out = tempfile::tempdir().unwrap();
    let prom = out.path().join("conntrack.prom");
    config_with_textfile(&root, &prom);
    let mut w = Running::spawn(root.cmd(&["watch", "--interval", "0.05"]));
    let m = wait_metrics(&prom, |_| true);
    assert_eq!(m["conntrack_guard_entries"], 100.0);
    assert_eq!(m["conntrack_guard_entries_limit"], 1000.0);
    assert_eq!(m["conntrack_guard_fill_ratio"], 0.1);
    assert_eq!(m["conntrack_guard_level"], 0.0);
    assert_eq!(m["conntrack_guard_stat_total{counter=\"drop\"}"], 3.0);
    assert_eq!(m["conntrack_guard_settings_drift"], 0.0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let ts = m["conntrack_guard_last_sample_timestamp_seconds"];
    assert!((now - ts).abs() < 5.0, "{ts} vs {now}");

    root.count(960);
    root.counters(10, 4, 2);
    root.sysctl("nf_conntrack_udp_timeout", "30");
    let m = wait_metrics(&prom, |m| {
        m["conntrack_guard_entries"] == 960.0
            && m["conntrack_guard_settings_drift"] == 1.0
            && m["conntrack_guard_stat_total{counter=\"drop\"}"] == 10.0
    });
    assert_eq!(m["conntrack_guard_level"], 2.0);
    assert_eq!(m["conntrack_guard_fill_ratio"], 0.96);
    assert_eq!(m["conntrack_guard_stat_total{counter=\"early_drop\"}"], 4.0);
    assert_eq!(
        m["conntrack_guard_stat_total{counter=\"insert_failed\"}"],
        2.0
    );
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    assert!(!w.names().contains(&"fault".to_string()), "{:?}", w.lines());
    // No temporary files left behind next to it.
    let names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["conntrack.prom"]);
}

#[test]
fn textfile_is_never_seen_half_written() {
    let root = FakeRoot::new();
    let out = tempfile::tempdir().unwrap();
    let prom = out.path().join("conntrack.prom");
    config_with_textfile(&root, &prom);
    let mut w = Running::spawn(root.cmd(&["watch", "--interval", "0.001"]));
    wait_metrics(&prom, |_| true);
    // Change the values while reading, so rewrites differ in length.
    let end = Instant::now() + Duration::from_millis(1500);
    let (mut reads, mut distinct, mut last) = (0u32, 0u32, String::new());
    let mut i = 0u64;
    while Instant::now() < end {
        i += 1;
        if i % 50 == 0 {
            root.count(100 + (i * 7919) % 900);
        }
        let text = std::fs::read_to_string(&prom).expect("always present");
        if let Err(e) = parse(&text) {
            panic!("torn read #{reads}: {e}\n{text}");
        }
        if text != last {
            distinct += 1;
            last = text;
        }
        reads += 1;
    }
    assert!(reads > 500, "{reads} reads");
    assert!(
        distinct > 20,
        "only {distinct} distinct versions: not rewriting?"
    );
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
}

#[test]
fn missing_directory_reported_once_and_recovers() {
    let root = FakeRoot::new();
    let out = tempfile::tempdir().unwrap();
    let prom = out.path().join("not-yet/conntrack.prom");
    config_with_textfile(&root, &prom);
    let mut w = Running::spawn(root.cmd(&["watch", "--interval", "0.02"]));
    let ev = w
        .wait_event(Duration::from_secs(5), |e| e.name == "fault")
        .expect("an error about the textfile");
    assert_eq!(ev.priority, "err");
    assert!(ev.message().contains("does not exist"), "{}", ev.line);
    assert!(
        ev.message().contains("not-yet/conntrack.prom"),
        "{}",
        ev.line
    );
    std::thread::sleep(Duration::from_millis(300)); // ~15 more samples
    assert!(w.alive());
    root.count(900);
    w.wait_event(Duration::from_secs(5), |e| e.name == "level_warning")
        .expect("still watching");
    std::fs::create_dir(out.path().join("not-yet")).unwrap();
    let m = wait_metrics(&prom, |_| true);
    assert_eq!(m["conntrack_guard_entries"], 900.0);
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    let faults: Vec<Ev> = w
        .events()
        .into_iter()
        .filter(|e| e.name == "fault")
        .collect();
    assert_eq!(faults.len(), 2, "once, then recovered: {:?}", w.lines());
    assert_eq!(faults[1].priority, "info");
}

#[test]
fn read_only_directory_reported_once() {
    let root = FakeRoot::new();
    let out = tempfile::tempdir().unwrap();
    let ro = out.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let prom = ro.join("conntrack.prom");
    config_with_textfile(&root, &prom);
    let mut cmd = root.cmd(&["watch", "--interval", "0.02"]);
    if is_root() {
        // Root ignores mode bits: run as nobody, as the DynamicUser unit does.
        for d in [root.path(), out.path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        cmd.uid(65534).gid(65534);
    }
    let mut w = Running::spawn(cmd);
    let ev = w
        .wait_event(Duration::from_secs(5), |e| e.name == "fault")
        .unwrap_or_else(|| panic!("no fault: {:?}", w.lines()));
    assert_eq!(ev.priority, "err");
    assert!(ev.message().contains("not writable"), "{}", ev.line);
    std::thread::sleep(Duration::from_millis(300));
    assert!(w.alive());
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    assert_eq!(w.names().iter().filter(|n| *n == "fault").count(), 1);
    assert!(!prom.exists());
}

/// The stat file with these per-CPU raw `drop` values.
fn drops_per_cpu(root: &FakeRoot, cpus: &[u32]) {
    let mut text = format!("{HEADER}\n");
    for d in cpus {
        text.push_str(&format!(
            "000003e8  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 {d:08x} 00000000 00000000  00000000 00000000 00000000 00000000\n"
        ));
    }
    root.write(STAT, &text);
}

const DROP_TOTAL: &str = "conntrack_guard_stat_total{counter=\"drop\"}";

/// `*_total` never falls across a restart of the watchdog in the same boot
/// (issue 18.9): CPU 0's u32 drop counter wraps under one process, counts
/// on while none runs, and the next process continues the total from the
/// state kept in run/conntrack-guard/ instead of restarting from the raw
/// sum (which is almost 2^32 lower). Another boot id starts afresh.
#[test]
fn totals_never_fall_across_a_restart_after_a_wrap() {
    let root = FakeRoot::new();
    std::fs::create_dir_all(root.path().join("proc/sys/kernel/random")).unwrap();
    root.write("proc/sys/kernel/random/boot_id", "boot-1\n");
    std::fs::create_dir_all(root.path().join("run/conntrack-guard")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let prom = out.path().join("conntrack.prom");
    config_with_textfile(&root, &prom);
    let near = u32::MAX - 15;
    drops_per_cpu(&root, &[near, 16]);
    let first = u64::from(near) + 16;

    let mut w = Running::spawn(root.cmd(&["watch", "--interval", "0.05"]));
    wait_metrics(&prom, |m| m[DROP_TOTAL] == first as f64);
    drops_per_cpu(&root, &[32, 16]); // CPU 0 wraps: +48
    wait_metrics(&prom, |m| m[DROP_TOTAL] == (first + 48) as f64);
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    let saved = std::fs::read_to_string(root.path().join("run/conntrack-guard/totals.json"))
        .expect("state kept");
    assert!(saved.contains("\"boot_id\":\"boot-1\""), "{saved}");

    // While no watchdog runs, CPU 0 counts +5.
    drops_per_cpu(&root, &[37, 16]);
    std::fs::remove_file(&prom).unwrap();
    let mut w = Running::spawn(root.cmd(&["watch", "--interval", "0.05"]));
    let m = wait_metrics(&prom, |_| true);
    assert_eq!(m[DROP_TOTAL], (first + 48 + 5) as f64, "continued, not 53");
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    assert!(!w.names().contains(&"fault".to_string()), "{:?}", w.lines());

    // Another boot: the kept state is not this boot's counters.
    root.write("proc/sys/kernel/random/boot_id", "boot-2\n");
    std::fs::remove_file(&prom).unwrap();
    let mut w = Running::spawn(root.cmd(&["watch", "--interval", "0.05"]));
    let m = wait_metrics(&prom, |_| true);
    assert_eq!(m[DROP_TOTAL], 53.0);
    w.term();
}
