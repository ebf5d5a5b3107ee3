// SPDX-License-Identifier: MIT OR Apache-2.0
//! Signals: SIGTERM/SIGINT end a one-hour interval at once with status 0;
//! SIGHUP rereads the configuration, keeps the old one when the new one is
//! invalid (and names the key), tells systemd RELOADING=1 then READY=1; a
//! storm of SIGHUPs loses nothing.

mod common;
use common::*;

use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

fn stop_during_long_interval(sig: Signal) {
    let root = FakeRoot::new();
    let mut w = Running::spawn(root.cmd(&["watch", "--interval", "1h"]));
    w.wait_event(Duration::from_secs(5), |e| e.name == "started")
        .expect("started");
    std::thread::sleep(Duration::from_millis(300)); // well inside the sleep
    w.signal(sig);
    let (st, took) = w.wait_exit(Duration::from_secs(5)).expect("exits");
    assert_eq!(st.code(), Some(0), "{sig:?}");
    assert!(took < Duration::from_secs(1), "{sig:?} took {took:?}");
}

#[test]
fn sigterm_during_one_hour_interval() {
    stop_during_long_interval(Signal::SIGTERM);
}

#[test]
fn sigint_during_one_hour_interval() {
    stop_during_long_interval(Signal::SIGINT);
}

#[test]
fn sighup_with_broken_config_keeps_the_old_one() {
    let root = FakeRoot::new();
    root.config("[conntrack]\nmax = 1000\n[watch]\nwarn_percent = 80\n");
    let (mut w, mut n) = root.watch_notified("0.05");
    n.status("(100/1000)");

    // Broken: a wrong type for warn_percent.
    root.config("[conntrack]\nmax = 1000\n[watch]\nwarn_percent = \"lots\"\n");
    w.signal(Signal::SIGHUP);
    let ev = w
        .wait_event(Duration::from_secs(5), |e| e.name == "reload")
        .expect("reload event");
    assert_eq!(ev.priority, "err");
    assert_eq!(ev.get("CONNTRACK_CONFIG_KEY"), Some("watch.warn_percent"));
    assert!(ev.message().contains("watch.warn_percent"), "{}", ev.line);
    assert!(ev.message().contains("keeping the previous"), "{}", ev.line);
    let reloading = n
        .until(Duration::from_secs(5), |m| m.contains("RELOADING=1"))
        .expect("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading:?}");
    n.until(Duration::from_secs(5), |m| m.contains("READY=1"))
        .expect("READY=1 after the reload");
    // The old thresholds are in force: 85% warns.
    root.count(850);
    w.wait_event(Duration::from_secs(5), |e| e.name == "level_warning")
        .expect("old warn_percent 80 still applies");
    root.count(100);
    w.wait_event(Duration::from_secs(5), |e| e.name == "level_ok")
        .expect("back to ok");

    // A valid one takes effect: warning moves to 90%.
    root.config("[conntrack]\nmax = 1000\n[watch]\nwarn_percent = 90\n");
    w.signal(Signal::SIGHUP);
    let ok = w
        .wait_event(Duration::from_secs(5), |e| {
            e.name == "reload" && e.priority == "info"
        })
        .expect("reloaded");
    assert!(ok.message().contains("warning 90%"), "{}", ok.line);
    n.samples(2);
    root.count(850);
    n.status("(850/1000) · ok");
    n.samples(2);
    root.count(910);
    n.status("(910/1000) · warning");
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    let warnings: Vec<Ev> = w
        .events()
        .into_iter()
        .filter(|e| e.name == "level_warning")
        .collect();
    assert_eq!(warnings.len(), 2, "{:?}", w.names());
    assert_eq!(warnings[1].get("CONNTRACK_COUNT"), Some("910"));
}

#[test]
fn sighup_storm() {
    let root = FakeRoot::new();
    let (mut w, mut n) = root.watch_notified("0.05");
    n.status("(100/1000)");
    root.count(850);
    n.status("(850/1000) · warning");

    // 100 SIGHUPs in about a second, with a drop rise in the middle.
    let t0 = Instant::now();
    for i in 0..100 {
        w.signal(Signal::SIGHUP);
        if i == 50 {
            root.counters(3 + 5, 0, 0);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(w.alive(), "survived the storm");
    n.status("drops 5");
    n.samples(3);
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    let evs = w.events();
    let names: Vec<&str> = evs.iter().map(|e| e.name.as_str()).collect();
    // Level state survived: no second warning, no spurious ok.
    assert_eq!(names.iter().filter(|x| **x == "level_warning").count(), 1);
    assert!(!names.contains(&"level_ok"));
    assert_eq!(names.iter().filter(|x| **x == "started").count(), 1);
    let reloads = names.iter().filter(|x| **x == "reload").count();
    assert!((1..=100).contains(&reloads), "{reloads} reloads");
    // Counters survived: the drop rise is reported exactly.
    let drops: u64 = evs
        .iter()
        .filter(|e| e.name == "drops")
        .map(|e| {
            e.get("CONNTRACK_DROP_DELTA")
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(drops, 5);
    assert!(
        !w.lines().iter().any(|l| l.contains("panicked")),
        "{:?}",
        w.lines()
    );
}
