// SPDX-License-Identifier: MIT OR Apache-2.0
//! sd_notify against a real datagram socket: READY=1, STATUS= with the
//! right numbers, WATCHDOG=1 at half WATCHDOG_USEC even with a one-hour
//! interval, keep-alives also while the module is gone, STOPPING=1 at exit, and a
//! NOTIFY_SOCKET that points at nothing.

mod common;
use common::*;

use std::time::{Duration, Instant};

#[test]
fn ready_status_watchdog_stopping() {
    let root = FakeRoot::new();
    root.count(130);
    root.counters(0, 0, 0);
    let mut n = NotifySocket::new();
    let mut cmd = root.cmd(&["watch", "--interval", "1h"]);
    cmd.env("NOTIFY_SOCKET", &n.path)
        .env("WATCHDOG_USEC", "1000000"); // ping every 500 ms
    let mut w = Running::spawn(cmd);

    let first = n
        .until(Duration::from_secs(5), |m| m.contains("READY=1"))
        .expect("READY=1");
    assert!(
        first.lines().any(|l| l
            == "STATUS=conntrack 13.0% (130/1000) · ok · drops 0 · early_drops 0 · settings ok"),
        "{first:?}"
    );
    assert!(first.lines().any(|l| l == "WATCHDOG=1"), "{first:?}");
    // The interval is an hour: keep-alives must come from the split sleep.
    std::thread::sleep(Duration::from_millis(3000));
    let pings: Vec<Instant> = n
        .seen()
        .into_iter()
        .filter(|(_, m)| m == "WATCHDOG=1\n")
        .map(|(t, _)| t)
        .collect();
    // Pings at half WATCHDOG_USEC; what matters is that none is late
    // enough for systemd to kill the service (WATCHDOG_USEC itself), with
    // room for a loaded test machine.
    assert!(pings.len() >= 4, "{} keep-alives in 3 s", pings.len());
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap < Duration::from_millis(1000), "gap {gap:?}");
    }
    // Only one READY=1 and one sample in those seconds.
    let all = n.seen();
    assert_eq!(all.iter().filter(|(_, m)| m.contains("READY=1")).count(), 1);
    assert_eq!(all.iter().filter(|(_, m)| m.contains("STATUS=")).count(), 1);

    let (st, took) = w.term();
    assert_eq!(st.code(), Some(0));
    assert!(took < Duration::from_secs(1), "{took:?}");
    let bye = n
        .until(Duration::from_secs(2), |m| m.contains("STOPPING=1"))
        .expect("STOPPING=1");
    assert!(bye.lines().any(|l| l == "STOPPING=1"));
}

/// The keep-alive says "the loop runs", not "the kernel is fine": with a
/// root that has no conntrack keys from the start, READY=1 follows the
/// first sample and WATCHDOG=1 keeps coming at half WATCHDOG_USEC (from the
/// split sleep: the interval is an hour), while STATUS= says why there is
/// no fill. When the module comes back the same process reports it.
#[test]
fn keepalive_while_the_module_is_gone() {
    let root = FakeRoot::new();
    root.unload();
    let mut n = NotifySocket::new();
    let mut cmd = root.cmd(&["watch", "--interval", "1h"]);
    cmd.env("NOTIFY_SOCKET", &n.path)
        .env("WATCHDOG_USEC", "200000"); // ping every 100 ms
    let mut w = Running::spawn(cmd);
    let first = n
        .until(Duration::from_secs(5), |m| m.contains("READY=1"))
        .expect("READY=1 without the module");
    assert!(
        first
            .lines()
            .any(|l| l.starts_with("STATUS=nf_conntrack not loaded: waiting for it")),
        "{first:?}"
    );
    assert!(first.lines().any(|l| l == "WATCHDOG=1"), "{first:?}");
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    let pings: Vec<Instant> = n
        .seen()
        .into_iter()
        .filter(|(t, m)| *t > t0 && m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| t)
        .collect();
    assert!(pings.len() >= 5, "{} keep-alives in 1 s", pings.len());
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap < Duration::from_millis(200), "gap {gap:?}");
    }
    assert!(w.alive(), "keeps running without the module");
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    let all = n.seen();
    assert_eq!(
        all.iter().filter(|(_, m)| m.contains("READY=1")).count(),
        1,
        "READY=1 once"
    );
    let names = w.names();
    assert_eq!(
        names.iter().filter(|x| *x == "module_gone").count(),
        1,
        "{names:?}"
    );
    let gone = w
        .events()
        .into_iter()
        .find(|e| e.name == "module_gone")
        .unwrap();
    assert_eq!(gone.priority, "err");
}

/// The module goes away and comes back under a running watchdog: the
/// keep-alives never stop, the status line says so, and each change is
/// logged once.
#[test]
fn keepalive_while_the_module_goes_and_returns() {
    let root = FakeRoot::new();
    let mut n = NotifySocket::new();
    let mut cmd = root.cmd(&["watch", "--interval", "0.05"]);
    cmd.env("NOTIFY_SOCKET", &n.path)
        .env("WATCHDOG_USEC", "100000");
    let mut w = Running::spawn(cmd);
    n.status("(100/1000)");

    root.unload();
    n.status("nf_conntrack not loaded: waiting for it");
    let t_gone = Instant::now();
    std::thread::sleep(Duration::from_millis(600));
    let pings_while_gone = n
        .seen()
        .into_iter()
        .filter(|(t, m)| *t > t_gone && m.contains("WATCHDOG=1"))
        .count();
    assert!(
        pings_while_gone >= 5,
        "{pings_while_gone} WATCHDOG=1 while gone"
    );
    assert!(w.alive(), "keeps running without the module");

    root.reload_module();
    let back = n.status("(100/1000)");
    assert!(back.contains("WATCHDOG=1"), "{back:?}");
    n.samples(2);
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    let names = w.names();
    assert_eq!(
        names.iter().filter(|x| *x == "module_gone").count(),
        1,
        "{names:?}"
    );
    assert_eq!(names.iter().filter(|x| *x == "module_back").count(), 1);
}

#[test]
fn notify_socket_pointing_at_nothing() {
    let root = FakeRoot::new();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = root.cmd(&["watch", "--interval", "0.05"]);
    cmd.env("NOTIFY_SOCKET", dir.path().join("nobody-listens"))
        .env("WATCHDOG_USEC", "100000");
    let mut w = Running::spawn(cmd);
    w.wait_event(Duration::from_secs(5), |e| e.name == "started")
        .expect("started");
    std::thread::sleep(Duration::from_millis(500));
    // Still sampling: a level change is seen and logged.
    root.count(900);
    w.wait_event(Duration::from_secs(5), |e| e.name == "level_warning")
        .expect("still watching");
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    let faults: Vec<Ev> = w
        .events()
        .into_iter()
        .filter(|e| e.name == "fault" && e.message().contains("NOTIFY_SOCKET"))
        .collect();
    assert_eq!(faults.len(), 1, "logged once: {:?}", w.lines());
    assert!(faults[0].message().contains("nobody-listens"));
}

/// Every RELOADING=1 must be closed by READY=1 in the very next datagram:
/// systemd stays in "reloading" until then, also when the module is absent
/// (READY=1 follows the first sample whatever it read).
#[test]
fn sighup_without_the_module_leaves_no_reload_open() {
    let root = FakeRoot::new();
    root.unload();
    let mut n = NotifySocket::new();
    let mut cmd = root.cmd(&["watch", "--interval", "0.05"]);
    cmd.env("NOTIFY_SOCKET", &n.path);
    let mut w = Running::spawn(cmd);
    n.status("nf_conntrack not loaded");
    w.signal(nix::sys::signal::Signal::SIGHUP);
    w.wait_event(Duration::from_secs(5), |e| e.name == "reload")
        .expect("reload event");
    n.samples(2);
    root.reload_module();
    n.status("(100/1000)");
    // And with the module back, a SIGHUP is RELOADING=1 then READY=1.
    w.signal(nix::sys::signal::Signal::SIGHUP);
    n.until(Duration::from_secs(5), |m| m.contains("RELOADING=1"))
        .expect("RELOADING=1 after ready");
    n.samples(2);
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    let all: Vec<String> = n.seen().into_iter().map(|(_, m)| m).collect();
    assert!(all.iter().any(|m| m.contains("RELOADING=1")), "{all:?}");
    for (i, m) in all.iter().enumerate() {
        if m.contains("RELOADING=1") {
            let next = all.get(i + 1).map(String::as_str).unwrap_or("");
            assert!(
                next.lines().any(|l| l == "READY=1"),
                "RELOADING=1 not closed by READY=1: {m:?} then {next:?}"
            );
        }
    }
}
