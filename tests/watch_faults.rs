// SPDX-License-Identifier: MIT OR Apache-2.0
//! Hostile kernel-side input and drift, against the running watchdog:
//! garbage stat files and sysctls are reported (once each) and the loop
//! keeps running; a configured key changed behind its back is reported with
//! key, expected, actual and remedy, once per change, and cleared.

mod common;
use common::*;

use std::time::Duration;

const GOOD_LINE: &str = "000003e8  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000003 00000000 00000000  00000000 00000000 00000000 00000000\n";

#[test]
fn garbage_stat_files_are_reported_and_survived() {
    let root = FakeRoot::new();
    let (mut w, mut n) = root.watch_notified("0.05");
    n.status("drops 0 · early_drops 0");

    let cases: Vec<(&str, String, &str)> = vec![
        ("empty", String::new(), "empty stat file"),
        (
            "truncated",
            format!("{HEADER}\n000003e8  00000000 0000"),
            "words, header has",
        ),
        (
            "garbage",
            "\u{1}\u{2}garbage!!\n\n".into(),
            "no `drop` column",
        ),
        (
            "unknown columns",
            "entries searched found new\n00000001 00000002 00000003 00000004\n".into(),
            "no `drop` column",
        ),
        ("missing header", GOOD_LINE.into(), "no `drop` column"),
        (
            "non-hex",
            format!("{HEADER}\n{}", GOOD_LINE.replace("00000003", "0000zz03")),
            "not a hex number",
        ),
        ("header only", format!("{HEADER}\n"), "no CPU lines"),
    ];
    for (what, text, needle) in &cases {
        root.write(STAT, text);
        n.status("drops n/a");
        let ev = w
            .wait_event(Duration::from_secs(5), |e| {
                e.name == "counters_unavailable" && e.message().contains(needle)
            })
            .unwrap_or_else(|| panic!("{what}: no report containing {needle:?}: {:?}", w.lines()));
        assert_eq!(ev.priority, "warning", "{what}");
        // Still healthy: fill is fine, the loop goes on.
        assert!(w.alive(), "{what}");
        root.counters(3, 0, 0);
        n.status("drops 0 · early_drops 0");
    }
    // Said once per outage, not once per sample.
    n.samples(3);
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    let count = w
        .names()
        .iter()
        .filter(|x| *x == "counters_unavailable")
        .count();
    assert_eq!(count, cases.len(), "{:?}", w.lines());
    // The module also came back with counters equal: no drops invented.
    assert!(!w.names().contains(&"drops".to_string()));
}

#[test]
fn garbage_fill_values_are_reported_and_survived() {
    let root = FakeRoot::new();
    let (mut w, mut n) = root.watch_notified("0.05");
    n.status("(100/1000)");

    for (file, value, needle) in [
        ("nf_conntrack_count", "lots", "is not a number"),
        ("nf_conntrack_count", "", "is not a number"),
        ("nf_conntrack_max", "0", "nf_conntrack_max is 0"),
        ("nf_conntrack_max", "-5", "is not a number"),
        (
            "nf_conntrack_max",
            "99999999999999999999999",
            "is not a number",
        ),
    ] {
        root.write(&format!("{NF}/{file}"), value);
        n.status("conntrack unreadable");
        let ev = w
            .wait_event(Duration::from_secs(5), |e| {
                e.name == "fault" && e.priority == "err" && e.message().contains(needle)
            })
            .unwrap_or_else(|| panic!("{file}={value:?}: {:?}", w.lines()));
        assert!(ev.message().contains("still running"));
        root.sysctl("nf_conntrack_count", "100");
        root.sysctl("nf_conntrack_max", "1000");
        n.status("(100/1000)");
    }
    // count > max: over-full, reported once, level critical.
    root.count(1500);
    n.status("(1500/1000) · critical");
    n.samples(3);
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    let evs = w.events();
    let over: Vec<&Ev> = evs
        .iter()
        .filter(|e| e.name == "fault" && e.message().contains("exceeds nf_conntrack_max"))
        .collect();
    assert_eq!(over.len(), 1, "{:?}", w.lines());
    assert!(evs.iter().any(|e| e.name == "level_critical"));
    // Each fault said once, and a recovery note after each.
    let errs = evs
        .iter()
        .filter(|e| e.name == "fault" && e.priority == "err")
        .count();
    assert_eq!(errs, 5, "{:?}", w.lines());
    let recovered = evs
        .iter()
        .filter(|e| e.name == "fault" && e.message().contains("works again"))
        .count();
    assert_eq!(recovered, 5);
}

#[test]
fn module_vanishes_and_returns() {
    let root = FakeRoot::new();
    let (mut w, mut n) = root.watch_notified("0.05");
    n.status("(100/1000)");
    root.unload();
    n.status("nf_conntrack not loaded: waiting for it");
    n.samples(5);
    assert!(w.alive());
    root.reload_module();
    root.count(900);
    n.status("(900/1000) · warning");
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    let names = w.names();
    assert_eq!(
        names,
        vec!["started", "module_gone", "module_back", "level_warning"],
        "{:?}",
        w.lines()
    );
}

#[test]
fn drift_reported_once_per_change_and_cleared() {
    let root = FakeRoot::new();
    // udp_timeout_stream is "keep": never watched.
    root.config(
        "[conntrack]\nmax = 1000\nbuckets = 250\nudp_timeout = 10\nudp_timeout_stream = \"keep\"\n",
    );
    let (mut w, mut n) = root.watch_notified("0.05");
    n.status("settings ok");

    root.sysctl("nf_conntrack_udp_timeout_stream", "120"); // kept: no drift
    n.samples(3);
    root.sysctl("nf_conntrack_udp_timeout", "30");
    n.status("settings DRIFT (1 key)");
    n.samples(3);
    root.sysctl("nf_conntrack_udp_timeout", "31");
    n.samples(3);
    root.sysctl("nf_conntrack_max", "65536");
    n.status("settings DRIFT (2 keys)");
    root.sysctl("nf_conntrack_max", "1000");
    root.sysctl("nf_conntrack_udp_timeout", "10");
    n.status("settings ok");
    n.samples(3);
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    let evs: Vec<Ev> = w
        .events()
        .into_iter()
        .filter(|e| e.name.starts_with("drift"))
        .collect();
    let summary: Vec<(String, String, String)> = evs
        .iter()
        .map(|e| {
            (
                e.name.clone(),
                e.get("CONNTRACK_KEY").unwrap_or("").to_string(),
                e.get("CONNTRACK_ACTUAL").unwrap_or("").to_string(),
            )
        })
        .collect();
    let k = |s: &str| format!("net.netfilter.nf_conntrack_{s}");
    let mut cleared: Vec<(String, String, String)> = summary[3..].to_vec();
    cleared.sort();
    assert_eq!(
        summary[..3].to_vec(),
        vec![
            ("drift".into(), k("udp_timeout"), "30".into()),
            ("drift".into(), k("udp_timeout"), "31".into()),
            ("drift".into(), k("max"), "65536".into()),
        ],
        "{:?}",
        w.lines()
    );
    assert_eq!(
        cleared,
        vec![
            ("drift_cleared".into(), k("max"), "1000".into()),
            ("drift_cleared".into(), k("udp_timeout"), "10".into()),
        ]
    );
    let first = &evs[0];
    assert_eq!(first.get("CONNTRACK_EXPECTED"), Some("10"));
    assert_eq!(
        first.get("CONNTRACK_REMEDY"),
        Some("systemctl restart conntrack-guard-apply")
    );
    assert!(first
        .message()
        .contains("systemctl restart conntrack-guard-apply"));
}

/// The writer search for a drift event reads /proc/*/comm and cmdline; one
/// that hangs (a process in D state; here a FIFO nobody writes) must not
/// hold up the loop: keep-alives go on, and the drift event goes out
/// without the hint once the bound (2 s) is up. A later drift does not
/// wait behind the hung search.
#[test]
fn a_hung_process_scan_does_not_block_the_loop() {
    let root = FakeRoot::new();
    let pid_dir = root.path().join("proc/77");
    std::fs::create_dir_all(&pid_dir).unwrap();
    nix::unistd::mkfifo(&pid_dir.join("comm"), nix::sys::stat::Mode::S_IRUSR).unwrap();
    let mut n = NotifySocket::new();
    let mut cmd = root.cmd(&["watch", "--interval", "0.05"]);
    cmd.env("NOTIFY_SOCKET", &n.path)
        .env("WATCHDOG_USEC", "200000");
    let mut w = Running::spawn(cmd);
    n.status("settings ok");
    let t0 = std::time::Instant::now();
    root.sysctl("nf_conntrack_udp_timeout", "30");
    n.status("settings DRIFT (1 key)");
    let drift = w
        .wait_event(Duration::from_secs(6), |e| e.name == "drift")
        .expect("drift event despite the hung scan");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "held for the bound: {took:?}"
    );
    assert!(drift.get("CONNTRACK_WRITER_HINT").is_none(), "{drift:?}");
    // Keep-alives never paused while the scan hung.
    let pings: Vec<std::time::Instant> = n
        .seen()
        .into_iter()
        .filter(|(t, m)| *t > t0 && m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| t)
        .collect();
    assert!(pings.len() >= 10, "{} keep-alives", pings.len());
    for pair in pings.windows(2) {
        assert!(
            pair[1] - pair[0] < Duration::from_millis(200),
            "{:?}",
            pair[1] - pair[0]
        );
    }
    let t1 = std::time::Instant::now();
    root.sysctl("nf_conntrack_max", "2000");
    w.wait_event(Duration::from_secs(5), |e| {
        e.name == "drift" && e.get("CONNTRACK_ACTUAL") == Some("2000")
    })
    .expect("second drift");
    assert!(
        t1.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t1.elapsed()
    );
    let (st, took) = w.term();
    assert_eq!(st.code(), Some(0));
    assert!(
        took < Duration::from_secs(2),
        "exit not held by the hung thread: {took:?}"
    );
}
