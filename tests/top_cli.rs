// SPDX-License-Identifier: MIT OR Apache-2.0
//! `conntrack-guard top`: exit codes and messages of the real binary, the
//! fuzz seeds through the parser, and (as root) the triage API against the
//! real kernel.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use conntrack_guard::host::Host;
use conntrack_guard::kernel::ctdump::{parse_datagram, NetlinkError, Progress};
use conntrack_guard::triage::Triage;

const BIN: &str = env!("CARGO_BIN_EXE_conntrack-guard");

fn top(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("top")
        .args(args)
        .env_remove("CONNTRACK_GUARD_ROOT")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(BIN)
        .arg("top")
        .args(args)
        .env_remove("CONNTRACK_GUARD_ROOT")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn not_a_network_namespace_is_a_usage_error() {
    for p in ["/etc/hostname", "/proc/self/ns/uts"] {
        if !Path::new(p).exists() {
            continue;
        }
        let o = top(&["--netns", p]);
        assert_eq!(o.status.code(), Some(2), "{p}: {}", err(&o));
        assert!(
            err(&o).contains("is not a network namespace"),
            "{}",
            err(&o)
        );
    }
    let o = top(&["--netns", "/nonexistent/netns"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("/nonexistent/netns"), "{}", err(&o));
}

#[test]
fn usage_errors_and_help() {
    for bad in [
        &["--by", "colour"][..],
        &["-n", "0"],
        &["--bogus"],
        &["--timeout"],
    ] {
        let o = top(bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", err(&o));
        assert!(err(&o).contains("top --help"), "{}", err(&o));
    }
    let o = top(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("--netns PATH") && out.contains("77"), "{out}");
    let o = Command::new(BIN).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("top [--by KEY]"));
}

#[test]
fn a_test_root_is_not_a_kernel() {
    let d = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .arg("top")
        .env("CONNTRACK_GUARD_ROOT", d.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(69), "{}", err(&o));
    assert!(err(&o).contains("CONNTRACK_GUARD_ROOT"), "{}", err(&o));
}

#[test]
fn fuzz_seeds_parse_as_described() {
    let seed = |n: &str| {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fuzz/seeds/ct_dump_parse")
                .join(n),
        )
        .unwrap()
    };
    let run = |b: &[u8]| {
        let mut p = Progress::default();
        let mut n = 0;
        let r = parse_datagram(b, 1, &mut p, &mut |_| n += 1);
        (r, p, n)
    };
    let (r, p, n) = run(&seed("udp-dnat-done"));
    assert!(r.unwrap());
    assert_eq!((n, p.malformed, p.interrupted), (1, 0, false));
    let (r, _, n) = run(&seed("tcp6-established"));
    assert_eq!((r.unwrap(), n), (false, 1));
    let (r, p, n) = run(&seed("dump-intr"));
    assert!(r.unwrap() && p.interrupted && n == 2);
    let (r, _, _) = run(&seed("error-eperm"));
    assert!(matches!(r, Err(NetlinkError::NeedsCapNetAdmin(_))));
    let (r, _, n) = run(&seed("other-seq"));
    assert_eq!((r.unwrap(), n), (false, 0));
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
#[ignore = "needs root and nf_conntrack"]
fn without_cap_net_admin_exits_77() {
    assert!(is_root(), "setpriv needs root");
    let o = as_nobody(&[]);
    assert_eq!(o.status.code(), Some(77), "{}", err(&o));
    assert!(err(&o).contains("CAP_NET_ADMIN"), "{}", err(&o));
    let o = as_nobody(&["--netns", "/proc/1/ns/net"]);
    assert_eq!(o.status.code(), Some(77), "{}", err(&o));
    assert!(err(&o).contains("needs root"), "{}", err(&o));
    // Not a namespace beats "not allowed": the path is wrong either way.
    let o = as_nobody(&["--netns", "/etc/hostname"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
}

#[test]
#[ignore = "needs root and nf_conntrack"]
fn reads_this_namespace_as_json() {
    let o = top(&["--json", "--timeout", "10s"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["complete"], true);
    assert!(v["max"].as_u64().unwrap() > 0);
    assert_eq!(v["groups"][0]["by"], "dport");
}

#[test]
#[ignore = "needs root and nf_conntrack"]
fn triage_runs_off_thread_and_answers_once() {
    let mut t = Triage::start(&Host::real(), None, Duration::from_secs(5));
    let t0 = Instant::now();
    let r = loop {
        // The watchdog loop would sample and ping sd_notify here.
        if let Some(r) = t.poll() {
            break r;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "triage hung");
        std::thread::sleep(Duration::from_millis(10));
    };
    let s = r.unwrap();
    assert!(s.complete, "{s:?}");
    assert!(s.message.contains("entries read"), "{}", s.message);
    assert!(t.poll().is_none());
}
