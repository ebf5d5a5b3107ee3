// SPDX-License-Identifier: MIT OR Apache-2.0
//! Issue 10 on a fake root, with the real binary: every drop point gets its
//! own event with exact deltas (socket receive buffers, the input backlog
//! with the CPU that carried it, conntrack's chaintoolong with its own
//! advice), a per-CPU u32 wrap is no false burst, and `status` names the
//! drop point.

mod common;
use common::*;
use std::time::Duration;

fn sum(evs: &[Ev], name: &str, field: &str) -> u64 {
    evs.iter()
        .filter(|e| e.name == name)
        .map(|e| e.get(field).unwrap_or("0").parse::<u64>().unwrap())
        .sum()
}

#[test]
fn socket_and_backlog_drops_have_their_own_events() {
    let root = FakeRoot::new();
    let (mut w, mut n) = root.watch_notified("0.1");
    n.samples(2);
    // Socket receive buffers: +40 RcvbufErrors (+3 other InErrors), twice.
    root.udp(40, 3);
    n.status("socket drops 40");
    root.udp(100, 3);
    n.samples(2);
    // The backlog: 95 of 100 drops on CPU 1.
    root.softnet(&[(5, 1), (95, 20)]);
    n.status("backlog drops 100");
    n.samples(1);
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    let evs = w.events();
    let names: Vec<&str> = evs.iter().map(|e| e.name.as_str()).collect();
    assert!(!names.contains(&"counters_unavailable"), "{names:?}");
    assert!(
        !names.contains(&"drops"),
        "conntrack stayed flat: {names:?}"
    );

    let udp: Vec<&Ev> = evs.iter().filter(|e| e.name == "udp_drops").collect();
    assert!(!udp.is_empty(), "{names:?}");
    assert_eq!(udp[0].get("CONNTRACK_DROP_POINT"), Some("socket"));
    assert_eq!(udp[0].priority, "err");
    assert!(
        udp[0].message().contains("socket receive buffer"),
        "{}",
        udp[0].message()
    );
    assert!(
        udp[0].message().contains("SO_RCVBUF"),
        "{}",
        udp[0].message()
    );
    // Every RcvbufErrors increase is in exactly one event (the last ones
    // come with the flush at exit).
    assert_eq!(
        sum(&evs, "udp_drops", "CONNTRACK_UDP_RCVBUF_ERRORS_DELTA"),
        100
    );
    assert_eq!(sum(&evs, "udp_drops", "CONNTRACK_UDP_IN_ERRORS_DELTA"), 103);

    let bl: Vec<&Ev> = evs.iter().filter(|e| e.name == "backlog_drops").collect();
    assert_eq!(bl.len(), 1, "{names:?}");
    assert_eq!(bl[0].get("CONNTRACK_BACKLOG_DROPPED_DELTA"), Some("100"));
    assert_eq!(bl[0].get("CONNTRACK_TIME_SQUEEZE_DELTA"), Some("21"));
    assert_eq!(bl[0].get("CONNTRACK_TOP_CPU"), Some("1"));
    assert_eq!(bl[0].get("CONNTRACK_TOP_CPU_SHARE"), Some("95"));
    assert!(
        bl[0].message().contains("95% of them on CPU 1"),
        "{}",
        bl[0].message()
    );
    assert!(
        bl[0].message().contains("netdev_max_backlog"),
        "{}",
        bl[0].message()
    );
}

/// The stat file with explicit per-CPU (drop, chainlength) words.
fn stat(root: &FakeRoot, cpus: &[(u32, u32)]) {
    let mut text = format!("{HEADER}\n");
    for (drop, chain) in cpus {
        text.push_str(&format!(
            "000003e8  00000000 00000000 00000000 00000000 00000000 00000000 {chain:08x} 00000000 00000000 {drop:08x} 00000000 00000000  00000000 00000000 00000000 00000000\n"
        ));
    }
    root.write(STAT, &text);
}

#[test]
fn a_per_cpu_wrap_is_no_false_burst() {
    let root = FakeRoot::new();
    stat(&root, &[(0xffff_fff0, 0), (7, 0)]);
    let (mut w, mut n) = root.watch_notified("0.1");
    n.samples(2);
    // CPU 0 wraps (+0x20 = 32), CPU 1 counts on (+3): 35 drops, not 4 billion.
    stat(&root, &[(0x10, 0), (10, 0)]);
    n.status("drops 35");
    n.samples(1);
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    let evs = w.events();
    assert_eq!(
        sum(&evs, "drops", "CONNTRACK_DROP_DELTA"),
        35,
        "{:?}",
        w.lines()
    );
}

#[test]
fn chaintoolong_says_buckets() {
    let root = FakeRoot::new();
    stat(&root, &[(0, 0), (0, 0)]);
    let (mut w, mut n) = root.watch_notified("0.1");
    n.samples(2);
    stat(&root, &[(0, 9), (0, 1)]);
    n.samples(2);
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    let d = w
        .wait_event(Duration::from_secs(1), |e| e.name == "drops")
        .expect("chaintoolong is a loss: a drops event");
    assert_eq!(d.get("CONNTRACK_CHAINTOOLONG_DELTA"), Some("10"));
    assert_eq!(d.get("CONNTRACK_DROP_DELTA"), Some("0"));
    assert!(d.message().contains("buckets"), "{}", d.message());
    assert!(
        !d.message().contains("raise [conntrack] max"),
        "{}",
        d.message()
    );
}

#[test]
fn status_names_the_socket_receive_buffer() {
    let root = FakeRoot::new();
    root.udp(10, 0);
    let child = root
        .cmd(&["status", "--json", "--window", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    root.udp(510, 0);
    let out = child.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["rising"]["drop_points"],
        serde_json::json!(["socket receive buffer"])
    );
    assert_eq!(v["rising"]["socket"]["rcvbuf_errors"], 500);
    assert_eq!(v["rising"]["drop"], 0, "conntrack counters flat");
    assert_eq!(v["sockets"]["rcvbuf_errors"], 510);
    assert_eq!(v["status"], "WARNING");
    assert_eq!(out.status.code(), Some(1));
    let text = root.cmd(&["status", "--window", "0"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("sockets   UDP rcvbuf_errors 510"), "{text}");
    assert!(
        text.contains("backlog   dropped 0  time_squeeze 0"),
        "{text}"
    );
}
