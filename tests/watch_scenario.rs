// SPDX-License-Identifier: MIT OR Apache-2.0
//! The fake-root scenario: the real binary at `--interval 0.1` while the
//! test rewrites the count and the stat file: 10% -> 85% -> 96% -> (92, 89,
//! 76, 74) -> 70% -> 50%, with `drop` rising once, then a direct 96% -> 70%.
//! Each step waits for the STATUS= line that shows it, so the watchdog has
//! seen every value; the stderr event sequence must match exactly.

mod common;
use common::*;

fn step(root: &FakeRoot, n: &mut NotifySocket, count: u64) {
    root.count(count);
    n.status(&format!("({count}/1000)"));
    // One more sample, so anything this value triggers has been emitted.
    n.samples(1);
}

#[test]
fn level_sequence_with_hysteresis_and_drops() {
    let root = FakeRoot::new();
    let (mut w, mut n) = root.watch_notified("0.1");

    step(&root, &mut n, 100); // 10%
    step(&root, &mut n, 850); // 85%: warning
    step(&root, &mut n, 960); // 96%: critical
    root.counters(3 + 7, 2, 1); // drop +7, early_drop +2, insert_failed +1
    n.status("drops 7 · early_drops 2");
    step(&root, &mut n, 920); // still critical: above 95 - 5
    step(&root, &mut n, 900); // still critical: 90 is not below 90
    step(&root, &mut n, 899); // back to warning only below 90
    step(&root, &mut n, 760); // still warning: above 80 - 5
    step(&root, &mut n, 750); // still warning: 75 is not below 75
    step(&root, &mut n, 740); // ok only below 75
    step(&root, &mut n, 700); // 70%
    step(&root, &mut n, 500); // 50%
    step(&root, &mut n, 960); // straight to critical
    step(&root, &mut n, 700); // 70% is below both 90 and 75: ok at once
    step(&root, &mut n, 500);

    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0), "exit status");
    let evs = w.events();
    let names: Vec<&str> = evs.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "started",
            "level_warning",
            "level_critical",
            "drops",
            "level_warning",
            "level_ok",
            "level_critical",
            "level_ok"
        ],
        "stderr:\n{}",
        w.lines().join("\n")
    );
    let prio: Vec<&str> = evs.iter().map(|e| e.priority.as_str()).collect();
    assert_eq!(
        prio,
        vec!["info", "warning", "crit", "err", "warning", "info", "crit", "info"]
    );
    let get = |i: usize, k: &str| evs[i].get(k).map(str::to_string);
    assert_eq!(get(1, "CONNTRACK_COUNT").as_deref(), Some("850"));
    assert_eq!(get(1, "CONNTRACK_MAX").as_deref(), Some("1000"));
    assert_eq!(get(1, "CONNTRACK_FILL_PERCENT").as_deref(), Some("85.0"));
    assert_eq!(get(1, "CONNTRACK_LEVEL").as_deref(), Some("warning"));
    assert_eq!(get(2, "CONNTRACK_COUNT").as_deref(), Some("960"));
    assert_eq!(get(2, "CONNTRACK_LEVEL").as_deref(), Some("critical"));
    // Drops: exactly what the test added, at level critical.
    assert_eq!(get(3, "CONNTRACK_DROP_DELTA").as_deref(), Some("7"));
    assert_eq!(get(3, "CONNTRACK_EARLY_DROP_DELTA").as_deref(), Some("2"));
    assert_eq!(
        get(3, "CONNTRACK_INSERT_FAILED_DELTA").as_deref(),
        Some("1")
    );
    assert_eq!(get(3, "CONNTRACK_LEVEL").as_deref(), Some("critical"));
    // Hysteresis: warning again at 899 (not 920 or 900), ok at 740 (not 750).
    assert_eq!(get(4, "CONNTRACK_COUNT").as_deref(), Some("899"));
    assert_eq!(get(4, "CONNTRACK_LEVEL").as_deref(), Some("warning"));
    assert_eq!(get(5, "CONNTRACK_COUNT").as_deref(), Some("740"));
    assert_eq!(get(5, "CONNTRACK_LEVEL").as_deref(), Some("ok"));
    assert_eq!(get(7, "CONNTRACK_COUNT").as_deref(), Some("700"));
    // Every event has a stable MESSAGE_ID.
    for e in &evs {
        let id = e.get("MESSAGE_ID").unwrap_or("");
        assert_eq!(id.len(), 32, "{}", e.line);
    }
    // The STOPPING=1 goodbye.
    assert!(n
        .until(std::time::Duration::from_secs(2), |m| m
            .contains("STOPPING=1"))
        .is_some());
}

#[test]
fn reminder_carries_the_peak() {
    let root = FakeRoot::new();
    root.config("[conntrack]\nmax = 1000\n[watch]\nreminder = \"1s\"\n");
    let (mut w, mut n) = root.watch_notified("0.05");
    n.status("(100/1000)");
    root.count(850);
    n.status("(850/1000) · warning");
    root.count(930); // the peak
    n.status("(930/1000)");
    root.count(860);
    n.status("(860/1000)");
    let r = w
        .wait_event(std::time::Duration::from_secs(5), |e| e.name == "reminder")
        .expect("a reminder within a second or so");
    assert_eq!(r.priority, "warning");
    assert_eq!(r.get("CONNTRACK_PEAK_COUNT"), Some("930"));
    assert_eq!(r.get("CONNTRACK_COUNT"), Some("860"));
    assert_eq!(r.get("CONNTRACK_LEVEL"), Some("warning"));
    assert!(r.message().contains("peak 93.0% (930/1000)"), "{}", r.line);
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    // At most one per second: the run lasted well under 3 s after the warning.
    let n_rem = w.names().iter().filter(|x| *x == "reminder").count();
    assert!((1..=2).contains(&n_rem), "{n_rem} reminders");
}

#[test]
fn time_to_full_in_status_line_and_warning() {
    let root = FakeRoot::new();
    let (mut w, mut n) = root.watch_notified("0.05");
    n.status("(100/1000)");
    // About 200 entries a second: warning at 800 after ~3.5 s.
    let t0 = std::time::Instant::now();
    let mut count = 100;
    while count < 820 {
        count = 100 + (t0.elapsed().as_millis() as u64) / 5;
        root.count(count.min(820));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    n.status("(820/1000) · warning");
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    let rising: Vec<String> = n
        .seen()
        .into_iter()
        .filter_map(|(_, m)| {
            m.lines()
                .find(|l| l.contains(" · full in ~"))
                .map(String::from)
        })
        .collect();
    assert!(!rising.is_empty(), "no ' · full in ~Ns' in STATUS=");
    assert!(rising.iter().all(|l| l.ends_with('s')), "{rising:?}");
    let warn = w
        .events()
        .into_iter()
        .find(|e| e.name == "level_warning")
        .expect("warning");
    let secs: u64 = warn
        .get("CONNTRACK_FULL_IN_SECONDS")
        .unwrap_or_else(|| panic!("no time to full: {}", warn.line))
        .parse()
        .unwrap();
    assert!(secs <= 5, "{secs} s; expected about 1 s at 200/s");
    assert!(warn.message().contains("full in ~"), "{}", warn.line);
}
