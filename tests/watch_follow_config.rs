// SPDX-License-Identifier: MIT OR Apache-2.0
//! Issue 15, finding 2: after "edit the config, then restart the boot
//! step", the running watchdog follows the new file instead of logging a
//! false drift. Here the "apply" is the test writing the new kernel values
//! under a fake root, as `conntrack-guard apply` would; the unit-level
//! mechanism (the boot step reloading the watchdog) is tested under real
//! systemd in tests/systemd.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn applied_config_edit_is_followed_not_reported_as_drift() {
    let root = FakeRoot::new(); // max 1000 in kernel and config, count 100
    let (mut w, mut n) = root.watch_notified("0.1");
    n.status("(100/1000)");

    // Edit: a larger max and a lower warning level; then "apply" it.
    root.config("[conntrack]\nmax = 2000\n\n[watch]\nwarn_percent = 40\ncritical_percent = 90\n");
    root.sysctl("nf_conntrack_max", "2000");
    root.sysctl("nf_conntrack_buckets", "512");
    root.count(900); // 45%: warning under the new thresholds only
    n.status("(900/2000)");
    n.samples(2);

    // Something else now lowers max: that is drift, and still reported.
    root.sysctl("nf_conntrack_max", "1500");
    assert!(
        w.wait_event(Duration::from_secs(5), |e| e.name == "drift")
            .is_some(),
        "a real drift is still reported:\n{}",
        w.lines().join("\n")
    );
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));

    let evs = w.events();
    let names: Vec<&str> = evs.iter().map(|e| e.name.as_str()).collect();
    let first_drift = names.iter().position(|n| *n == "drift").unwrap();
    let reload = names
        .iter()
        .position(|n| *n == "reload")
        .expect("the changed file was reloaded");
    assert!(reload < first_drift, "{names:?}");
    let drifts: Vec<&Ev> = evs.iter().filter(|e| e.name == "drift").collect();
    assert_eq!(drifts.len(), 1, "only the real drift: {names:?}");
    assert_eq!(drifts[0].get("CONNTRACK_EXPECTED"), Some("2000"));
    assert_eq!(drifts[0].get("CONNTRACK_ACTUAL"), Some("1500"));
    let warn = evs
        .iter()
        .find(|e| e.name == "level_warning")
        .expect("the new warning threshold (40%) is in use");
    assert_eq!(warn.get("CONNTRACK_COUNT"), Some("900"));
    assert!(
        warn.message().contains("warning level of 40%"),
        "{}",
        warn.message()
    );
}

#[test]
fn an_edit_that_was_not_applied_is_not_picked_up_early() {
    let root = FakeRoot::new();
    let (mut w, mut n) = root.watch_notified("0.1");
    n.status("(100/1000)");
    // Edited but not applied: the kernel still matches the loaded file, so
    // nothing is reported and nothing is reread.
    root.config("[conntrack]\nmax = 2000\n");
    n.samples(3);
    let (st, _) = w.term();
    assert_eq!(st.code(), Some(0));
    let names = w.names();
    assert!(
        !names.iter().any(|n| n == "drift" || n == "reload"),
        "{names:?}"
    );
}
