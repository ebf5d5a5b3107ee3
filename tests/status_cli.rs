// SPDX-License-Identifier: MIT OR Apache-2.0
//! `status` against a fake root: exit codes 0/1/2/3, the JSON fields, the
//! text for people, "rising now" over the window versus old totals, and
//! unreadable kernel values (never a panic).

mod common;
use common::*;

use std::process::Output;
use std::time::Duration;

fn status(root: &FakeRoot, args: &[&str]) -> (i32, String, String) {
    let mut a = vec!["status"];
    a.extend_from_slice(args);
    let Output {
        status,
        stdout,
        stderr,
    } = root.cmd(&a).output().expect("run status");
    let err = String::from_utf8_lossy(&stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (
        status.code().expect("exit code, not a signal"),
        String::from_utf8_lossy(&stdout).into_owned(),
        err,
    )
}

fn json(root: &FakeRoot, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["--json", "--window", "0.1"];
    args.extend_from_slice(extra);
    let (code, out, err) = status(root, &args);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out:?} {err}"));
    (code, v)
}

#[test]
fn ok_with_every_json_field() {
    let root = FakeRoot::new();
    root.counters(1000, 500, 7); // old totals since boot: still OK
    let (code, v) = json(&root, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["status"], "OK");
    assert_eq!(v["count"], 100);
    assert_eq!(v["max"], 1000);
    assert_eq!(v["fill"], 0.1);
    assert_eq!(v["level"], "ok");
    assert_eq!(v["module_loaded"], true);
    assert_eq!(v["counters"]["drop"], 1000);
    assert_eq!(v["counters"]["early_drop"], 500);
    assert_eq!(v["counters"]["insert_failed"], 7);
    assert_eq!(v["rising"]["drop"], 0);
    let settings = v["settings"].as_array().unwrap();
    assert_eq!(settings.len(), 4);
    for s in settings {
        assert_eq!(s["ok"], true, "{s}");
        assert_eq!(s["expected"], s["actual"]);
        assert!(s["key"].as_str().unwrap().starts_with("net.netfilter."));
    }
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);
}

#[test]
fn warning_for_level_and_for_drift() {
    let root = FakeRoot::new();
    root.count(850);
    let (code, v) = json(&root, &[]);
    assert_eq!((code, v["level"].as_str()), (1, Some("warning")), "{v}");

    let root = FakeRoot::new();
    root.sysctl("nf_conntrack_udp_timeout", "30");
    let (code, v) = json(&root, &[]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["level"], "ok");
    let bad: Vec<&serde_json::Value> = v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["ok"] == false)
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["key"], "net.netfilter.nf_conntrack_udp_timeout");
    assert_eq!(bad[0]["expected"], "10");
    assert_eq!(bad[0]["actual"], "30");
    let (code, text, _) = status(&root, &["--window", "0"]);
    assert_eq!(code, 1);
    assert!(text.starts_with("CONNTRACK WARNING"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("nf_conntrack_udp_timeout ") && l.trim_end().ends_with("DRIFT")),
        "{text}"
    );
}

/// Issue 18.7: a writer hint says only what it knows. Where apply never
/// ran in this boot, a kernel default is not blamed on a module reload
/// "after conntrack-guard-apply ran".
#[test]
fn kernel_default_hint_knows_whether_apply_ran() {
    let root = FakeRoot::new();
    root.sysctl("nf_conntrack_udp_timeout", "30");
    std::fs::create_dir_all(root.path().join("proc/sys/kernel/random")).unwrap();
    root.write(
        "proc/sys/kernel/random/boot_id",
        "3f2c8a4e-5b1d-4c6e-9a7f-0e1d2c3b4a59\n",
    );
    let hint = |v: &serde_json::Value| {
        v["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["ok"] == false)
            .and_then(|s| s["writer_hint"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let (code, v) = json(&root, &[]);
    assert_eq!(code, 1, "{v}");
    let h = hint(&v);
    assert!(
        h.contains("conntrack-guard-apply has not run since boot"),
        "{h}"
    );
    assert!(!h.contains("reloaded"), "{h}");
    // A mark from an earlier boot (a kept /run) is not this boot's.
    std::fs::create_dir_all(root.path().join("run/conntrack-guard")).unwrap();
    root.write(
        "run/conntrack-guard/applied",
        "boot_id=0d4b9c57-7a5e-4f0e-9d59-0c1b2f3a4e5d\n",
    );
    let (_, v) = json(&root, &[]);
    assert!(hint(&v).contains("has not run since boot"), "{v}");
    // apply (for real, under this root) leaves this boot's mark.
    let o = root.cmd(&["apply"]).output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let mark = std::fs::read_to_string(root.path().join("run/conntrack-guard/applied")).unwrap();
    assert!(
        mark.contains("boot_id=3f2c8a4e-5b1d-4c6e-9a7f-0e1d2c3b4a59"),
        "{mark}"
    );
    root.sysctl("nf_conntrack_udp_timeout", "30");
    let (_, v) = json(&root, &[]);
    let h = hint(&v);
    assert!(
        h.contains("ran in this boot, so nf_conntrack was loaded or reloaded after it"),
        "{h}"
    );
    let (_, text, _) = status(&root, &["--window", "0"]);
    assert!(text.contains("ran in this boot"), "{text}");
}

#[test]
fn critical_for_level_over_max_and_rising_drops() {
    let root = FakeRoot::new();
    root.count(960);
    let (code, v) = json(&root, &[]);
    assert_eq!((code, v["level"].as_str()), (2, Some("critical")), "{v}");

    // The kernel counts an entry before checking max: count > max is real.
    root.count(1025);
    let (code, v) = json(&root, &[]);
    assert_eq!(code, 2, "{v}");
    assert!(v["problems"].to_string().contains("exceeds max"), "{v}");

    // Drops rising during the window.
    let root = FakeRoot::new();
    root.counters(1000, 0, 0);
    let child = root
        .cmd(&["status", "--json", "--window", "1s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    root.counters(1003, 2, 0);
    let out = child.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(2), "{v}");
    assert_eq!(v["rising"]["drop"], 3);
    assert_eq!(v["rising"]["early_drop"], 2);
    assert_eq!(v["counters"]["drop"], 1003);
    assert_eq!(v["level"], "ok");
}

/// Something that breaks a fake root.
type Breaker = Box<dyn Fn(&FakeRoot)>;

#[test]
fn unknown_when_unreadable() {
    let header_only = format!("{HEADER}\n");
    let cases: Vec<(&str, Breaker)> = vec![
        (
            "empty stat file",
            Box::new(|r: &FakeRoot| r.write(STAT, "")),
        ),
        (
            "garbage stat file",
            Box::new(|r: &FakeRoot| r.write(STAT, "\u{0}\u{7f}zzz\n")),
        ),
        (
            "truncated stat",
            Box::new(|r: &FakeRoot| r.write(STAT, &format!("{HEADER}\n0000"))),
        ),
        (
            "unknown columns",
            Box::new(|r: &FakeRoot| r.write(STAT, "a b c\n1 2 3\n")),
        ),
        (
            "missing header",
            Box::new(|r: &FakeRoot| r.write(STAT, "00000001 00000002 00000003\n")),
        ),
        (
            "non-hex",
            Box::new(|r: &FakeRoot| {
                let t = std::fs::read_to_string(r.path().join(STAT)).unwrap();
                r.write(STAT, &t.replacen("00000000", "0000xx00", 1));
            }),
        ),
        (
            "header only",
            Box::new(move |r: &FakeRoot| r.write(STAT, &header_only)),
        ),
        (
            "stat file absent",
            Box::new(|r: &FakeRoot| std::fs::remove_file(r.path().join(STAT)).unwrap()),
        ),
        (
            "max = 0",
            Box::new(|r: &FakeRoot| r.sysctl("nf_conntrack_max", "0")),
        ),
        (
            "max empty",
            Box::new(|r: &FakeRoot| r.write(&format!("{NF}/nf_conntrack_max"), "")),
        ),
        (
            "count garbage",
            Box::new(|r: &FakeRoot| r.sysctl("nf_conntrack_count", "1e3")),
        ),
        (
            "count empty",
            Box::new(|r: &FakeRoot| r.write(&format!("{NF}/nf_conntrack_count"), "")),
        ),
        ("module absent", Box::new(|r: &FakeRoot| r.unload())),
        (
            "bad config",
            Box::new(|r: &FakeRoot| {
                r.config("[watch]\nwarn_percent = 99\ncritical_percent = 90\n")
            }),
        ),
    ];
    for (what, break_it) in cases {
        let root = FakeRoot::new();
        break_it(&root);
        let (code, v) = json(&root, &[]);
        assert_eq!(code, 3, "{what}: {v}");
        assert_eq!(v["status"], "UNKNOWN", "{what}");
        assert!(!v["problems"].as_array().unwrap().is_empty(), "{what}");
        let (code, text, _) = status(&root, &["--window", "0.05"]);
        assert_eq!(code, 3, "{what}: {text}");
        assert!(text.starts_with("CONNTRACK UNKNOWN"), "{what}: {text}");
    }
    // The config error is printed with its key.
    let root = FakeRoot::new();
    root.config("[watch]\nwarn_percent = 99\ncritical_percent = 90\n");
    let (_, text, _) = status(&root, &[]);
    assert!(text.contains("invalid configuration"), "{text}");
    assert!(text.contains("watch.warn_percent"), "{text}");
    // Module absent: said so.
    let root = FakeRoot::new();
    root.unload();
    let (_, v) = json(&root, &[]);
    assert_eq!(v["module_loaded"], false);
    assert!(v["count"].is_null());
}

#[test]
fn text_for_people() {
    let root = FakeRoot::new();
    root.count(500);
    let (code, text, _) = status(&root, &["--window", "0.1"]);
    assert_eq!(code, 0);
    assert!(
        text.starts_with("CONNTRACK OK - 50.0% full (500/1000)"),
        "{text}"
    );
    assert!(text.contains("[##########----------]"), "{text}");
    assert!(text.contains("nf_conntrack loaded"), "{text}");
    assert!(text.contains("drop 3"), "{text}");
    assert!(text.contains("since boot"), "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.trim_end().ends_with(" ok"))
            .count(),
        4,
        "{text}"
    );
}
