// SPDX-License-Identifier: MIT OR Apache-2.0
//! Command-line behaviour: exit codes and the key words of messages, including
//! the permission cases (77) and `apply` for real inside a fresh network
//! namespace. Those need root and are ignored by a plain `cargo test`;
//! tests/run-all.sh runs them with --include-ignored, and then they fail,
//! not skip, without root.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{global_lock, is_root, stock_root as fake_root};

const BIN: &str = env!("CARGO_BIN_EXE_conntrack-guard");

fn run(args: &[&str], root: Option<&Path>) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET");
    match root {
        Some(r) => c.env("CONNTRACK_GUARD_ROOT", r),
        None => c.env_remove("CONNTRACK_GUARD_ROOT"),
    };
    c.output().unwrap()
}

/// Run the binary as uid/gid 65534 through setpriv, with `caps` setpriv
/// options, on the test root `root`.
fn as_nobody(root: &Path, caps: &[&str], args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(caps)
        .arg(BIN)
        .args(args)
        .env("CONNTRACK_GUARD_ROOT", root)
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn help_and_version() {
    let o = run(&["--help"], None);
    assert_eq!(o.status.code(), Some(0));
    let t = text(&o);
    for w in [
        "apply",
        "watch",
        "status",
        "plan",
        "EXIT STATUS",
        "69",
        "77",
        "78",
        "CONNTRACK_GUARD_ROOT",
    ] {
        assert!(t.contains(w), "--help lacks {w}");
    }
    let o = run(&["--version"], None);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o).starts_with(&format!("conntrack-guard {}", env!("CARGO_PKG_VERSION"))));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["apply", "--bogus"],
        &["plan"],
        &["plan", "--rate", "x"],
        &["watch", "--interval", "0"],
    ] {
        let o = run(args, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains("--help"), "{args:?}");
    }
}

/// Run with stdout a pipe whose reader is already gone, as in
/// `conntrack-guard status | true`.
fn run_into_closed_pipe(args: &[&str], root: &Path) -> Output {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    Command::new(BIN)
        .args(args)
        .env("CONNTRACK_GUARD_ROOT", root)
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::from(write))
        .output()
        .unwrap()
}

#[test]
fn closed_stdout_pipe_ends_quietly() {
    let t = tempfile::tempdir().unwrap();
    let root = fake_root(t.path());
    for (args, code) in [
        (&["--help"][..], 0),
        (&["--version"], 0),
        (&["plan", "--rate", "100"], 0),
        (&["plan", "--rate", "100", "--json"], 0),
        (&["apply", "--dry-run"], 0),
    ] {
        let o = run_into_closed_pipe(args, &root);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{args:?}: {:?} {err}",
            o.status
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // status keeps its verdict (whatever this root gives) and never aborts.
    for args in [
        &["status", "--window=0"][..],
        &["status", "--json", "--window=0"],
    ] {
        let o = run_into_closed_pipe(args, &root);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            matches!(o.status.code(), Some(0..=3)),
            "{args:?}: {:?} {err}",
            o.status
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn status_usage_and_config_errors_are_unknown() {
    let t = tempfile::tempdir().unwrap();
    let root = fake_root(t.path());
    for args in [
        &["status", "--bogus"][..],
        &["status", "--window"],
        &["status", "--json", "--json"],
        &["status", "--window", "2m"],
        &["--config", "/nonexistent/c.toml", "status", "--window=0"],
        // --all-netns parses its own flags: the same codes.
        &["status", "--all-netns", "--window", "5s"],
        &["status", "--all-netns", "--bogus"],
        &["--bogus", "status", "--all-netns"],
        &["status", "--all-netns", "--config"],
    ] {
        let o = run(args, Some(&root));
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", text(&o));
    }
    let o = run(&["status", "--json", "--json"], Some(&root));
    assert!(
        text(&o).contains("--json given more than once"),
        "{}",
        text(&o)
    );
}

#[test]
fn non_utf8_config_path_reaches_open() {
    use std::os::unix::ffi::OsStrExt;
    let t = tempfile::tempdir().unwrap();
    let root = fake_root(t.path());
    let cfg = t.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9.toml"));
    fs::write(&cfg, "[conntrack]\nmax = 131072\n").unwrap();
    fs::set_permissions(&cfg, fs::Permissions::from_mode(0o600)).unwrap();
    let o = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["apply", "--dry-run"])
        .env("CONNTRACK_GUARD_ROOT", &root)
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("131072"), "{}", text(&o));
}

#[test]
fn missing_explicit_config_is_78() {
    let t = tempfile::tempdir().unwrap();
    let root = fake_root(t.path());
    let o = run(&["--config", "/nonexistent/c.toml", "apply"], Some(&root));
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    assert!(text(&o).contains("/nonexistent/c.toml"));
}

/// Every command reads the file the global `--config` names: a missing one
/// is an error naming it (status and doctor UNKNOWN, the others 78), and
/// never a silent fall back to the default file.
#[test]
fn every_command_honours_a_missing_explicit_config() {
    let t = tempfile::tempdir().unwrap();
    let root = fake_root(t.path());
    let missing = "/nonexistent/c.toml";
    for (cmd, code) in [
        (&["apply", "--dry-run"][..], 78),
        (&["watch", "--interval", "1s"], 78),
        (&["plan", "--rate", "10"], 78),
        (&["status", "--window=0"], 3),
        (&["status", "--all-netns"], 3),
        (&["status", "--all-netns", "--json"], 3),
        (&["doctor"], 3),
        (&["doctor", "--json"], 3),
        (&["top"], 78),
        (&["top", "--netns", "all"], 78),
    ] {
        for form in [
            &["--config", missing][..],
            &[&format!("--config={missing}")],
        ] {
            let args: Vec<&str> = form.iter().copied().chain(cmd.iter().copied()).collect();
            let o = run(&args, Some(&root));
            assert_eq!(o.status.code(), Some(code), "{args:?}: {}", text(&o));
            assert!(text(&o).contains(missing), "{args:?}: {}", text(&o));
        }
    }
    // top reads the file it is given: a bad key in it is named.
    let cfg = t.path().join("bad.toml");
    fs::write(&cfg, "[watch]\nwarn_percent = \"lots\"\n").unwrap();
    fs::set_permissions(&cfg, fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = cfg.to_str().unwrap();
    for args in [&["--config", cfg, "top"][..], &["top", "--config", cfg]] {
        let o = run(args, Some(&root));
        assert_eq!(o.status.code(), Some(78), "{args:?}: {}", text(&o));
        assert!(text(&o).contains("warn_percent"), "{args:?}: {}", text(&o));
    }
}

/// Issue 18.3: without CAP_SYS_ADMIN (setns) `status --all-netns` is
/// UNKNOWN and its first line names the capability and the drop-in.
#[test]
#[ignore = "needs root: drops CAP_SYS_ADMIN with setpriv"]
fn all_netns_without_cap_sys_admin_is_3_naming_it() {
    assert!(is_root(), "run as root (tests/run-all.sh)");
    let drop = ["--bounding-set=-sys_admin", "--inh-caps=-sys_admin"];
    let o = Command::new("setpriv")
        .args(drop)
        .args([BIN, "status", "--all-netns"])
        .env_remove("CONNTRACK_GUARD_ROOT")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let first = out.lines().next().unwrap_or("");
    for w in [
        "CONNTRACK UNKNOWN",
        "needs CAP_SYS_ADMIN",
        "conntrack-guard-allns.conf",
    ] {
        assert!(first.contains(w), "{w} not in the first line: {out}");
    }
    let o = Command::new("setpriv")
        .args(drop)
        .args([BIN, "status", "--all-netns", "--json"])
        .env_remove("CONNTRACK_GUARD_ROOT")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["missing_capabilities"][0], "CAP_SYS_ADMIN", "{j}");
    assert!(j["missing_privilege"]
        .as_str()
        .is_some_and(|m| m.contains("conntrack-guard-allns.conf")));
    // With the capability the same command enters them.
    let o = run(&["status", "--all-netns", "--json"], None);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["missing_capabilities"], serde_json::json!([]), "{j}");
}

/// apply on the real host leaves /run/conntrack-guard/applied; a test is
/// not the host's boot step, so the mark is put back as it was on drop.
/// The tests that hold one run one at a time (the lock), so none records
/// another's mark as the host's.
struct MarkKept(
    Option<Vec<u8>>,
    #[allow(dead_code)] std::sync::MutexGuard<'static, ()>,
);

impl MarkKept {
    const PATH: &'static str = "/run/conntrack-guard/applied";
    fn new() -> Self {
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let lock = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        MarkKept(fs::read(Self::PATH).ok(), lock)
    }
}

impl Drop for MarkKept {
    fn drop(&mut self) {
        match &self.0 {
            Some(b) => drop(fs::write(Self::PATH, b)),
            None => {
                let _ = fs::remove_file(Self::PATH);
                let _ = fs::remove_dir("/run/conntrack-guard");
            }
        }
    }
}

#[test]
fn plan_json() {
    let t = tempfile::tempdir().unwrap();
    let root = fake_root(t.path());
    let o = run(&["plan", "--rate", "750", "--json"], Some(&root));
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["entries_needed"], 7500);
    assert_eq!(v["max"], 16384);
    assert_eq!(v["buckets"], 4096);
    assert_eq!(v["timeout"], 10);
    // The fixture's slab object (320 B) plus the extension area.
    assert_eq!(v["memory_entries_bytes"], 16384 * (320 + 128));
}

#[test]
#[ignore = "needs root: drops to nobody with setpriv"]
fn not_root_is_77_naming_the_key() {
    assert!(
        is_root(),
        "this test drops privileges with setpriv and must start as root"
    );
    let t = tempfile::tempdir().unwrap();
    let root = fake_root(t.path());
    let o = as_nobody(&root, &["--inh-caps=-all"], &["apply"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(77), "{t}");
    assert!(
        t.contains("net.netfilter.nf_conntrack_max") && t.contains("FAILED"),
        "{t}"
    );
    assert!(t.contains("not running as root"), "{t}");
}

#[test]
#[ignore = "needs root: mounts a read-only /proc/sys in a namespace"]
fn read_only_proc_sys_is_77_and_says_container() {
    assert!(
        is_root(),
        "this test bind-mounts read-only and must run as root"
    );
    let t = tempfile::tempdir().unwrap();
    let root = fake_root(t.path());
    let ps = root.join("proc/sys");
    let script = format!(
        "mount --bind '{0}' '{0}' && mount -o remount,bind,ro '{0}' && exec '{1}' apply",
        ps.display(),
        BIN
    );
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("CONNTRACK_GUARD_ROOT", &root)
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(77), "{t}");
    assert!(t.contains("read-only") && t.contains("container"), "{t}");
    assert!(t.contains("run `conntrack-guard apply` on the host"), "{t}");
}

/// Deletes the namespace even if the test fails.
/// A fresh network namespace, created under the global test lock and
/// deleted (then the lock released) even if the test fails.
struct Netns(String, #[allow(dead_code)] nix::fcntl::Flock<fs::File>);

impl Netns {
    fn new(tag: &str) -> Netns {
        assert!(
            is_root(),
            "this test creates a network namespace and must run as root"
        );
        let lock = global_lock();
        let name = format!("ctg-{tag}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(ok.success(), "ip netns add {name}");
        Netns(name, lock)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Write a config with mode 0600 (a root-run tool refuses looser ones).
fn config_file(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    p.display().to_string()
}

fn netns_read(ns: Option<&str>, key: &str) -> String {
    let path = format!("/proc/sys/net/netfilter/{key}");
    let o = match ns {
        Some(ns) => Command::new("ip")
            .args(["netns", "exec", ns, "cat", &path])
            .output()
            .unwrap(),
        None => Command::new("cat").arg(&path).output().unwrap(),
    };
    assert!(o.status.success(), "read {path}");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
#[ignore = "needs root and nf_conntrack: a real network namespace"]
fn apply_for_real_in_a_fresh_netns() {
    let _mark = MarkKept::new();
    let ns = Netns::new("apply");
    let host_before = (
        netns_read(None, "nf_conntrack_udp_timeout"),
        netns_read(None, "nf_conntrack_udp_timeout_stream"),
    );
    let t = tempfile::tempdir().unwrap();
    let cfgs = config_file(
        t.path(),
        "c.toml",
        "[conntrack]\nmax = \"keep\"\nbuckets = \"keep\"\nudp_timeout = 11\nudp_timeout_stream = 17\n",
    );

    let dry = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            BIN,
            "--config",
            &cfgs,
            "apply",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert!(text(&dry).contains("would change"));
    assert_eq!(
        netns_read(Some(&ns.0), "nf_conntrack_udp_timeout"),
        "30",
        "dry run wrote"
    );

    let o = Command::new("ip")
        .args(["netns", "exec", &ns.0, BIN, "--config", &cfgs, "apply"])
        .env_remove("CONNTRACK_GUARD_ROOT")
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("2 changed, 0 failed"), "{}", text(&o));
    assert_eq!(netns_read(Some(&ns.0), "nf_conntrack_udp_timeout"), "11");
    assert_eq!(
        netns_read(Some(&ns.0), "nf_conntrack_udp_timeout_stream"),
        "17"
    );
    let host_after = (
        netns_read(None, "nf_conntrack_udp_timeout"),
        netns_read(None, "nf_conntrack_udp_timeout_stream"),
    );
    assert_eq!(host_before, host_after, "the initial netns must not change");

    // Run again: everything unchanged, still exit 0.
    let o = Command::new("ip")
        .args(["netns", "exec", &ns.0, BIN, "--config", &cfgs, "apply"])
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o).contains("0 changed, 0 failed"), "{}", text(&o));

    // max is global and read-only in a child netns: a config that sets it
    // there fails with a permission error (77) that names the key.
    let cur_max = netns_read(None, "nf_conntrack_max");
    let other: u64 = cur_max.parse::<u64>().unwrap() + 1;
    let cfg2 = config_file(
        t.path(),
        "c2.toml",
        &format!("[conntrack]\nmax = {other}\nbuckets = \"keep\"\nudp_timeout = \"keep\"\nudp_timeout_stream = \"keep\"\n"),
    );
    let o = Command::new("ip")
        .args(["netns", "exec", &ns.0, BIN, "--config", &cfg2, "apply"])
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(77), "{}", text(&o));
    assert!(
        text(&o).contains("net.netfilter.nf_conntrack_max"),
        "{}",
        text(&o)
    );
    assert_eq!(
        netns_read(None, "nf_conntrack_max"),
        cur_max,
        "global max must be untouched"
    );
}

#[test]
#[ignore = "needs root and nf_conntrack: a real network namespace"]
fn kernel_rejecting_a_value_fails_that_key_only() {
    let _mark = MarkKept::new();
    let ns = Netns::new("einval");
    let t = tempfile::tempdir().unwrap();
    // ip_default_ttl is per netns and limited to 1..255: the kernel answers 0 with EINVAL.
    let cfg = config_file(
        t.path(),
        "c.toml",
        "[conntrack]\nmax = \"keep\"\nbuckets = \"keep\"\nudp_timeout = 12\nudp_timeout_stream = \"keep\"\n\
         [sysctl]\n\"net.ipv4.ip_default_ttl\" = 0\n",
    );
    let o = Command::new("ip")
        .args(["netns", "exec", &ns.0, BIN, "--config", &cfg, "apply"])
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("net.ipv4.ip_default_ttl") && t.contains("rejected the value"),
        "{t}"
    );
    assert!(t.contains("1 changed, 1 failed"), "{t}");
    assert!(t.contains("EVENT=apply_failed"), "{t}");
    assert_eq!(netns_read(Some(&ns.0), "nf_conntrack_udp_timeout"), "12");
}

#[test]
#[ignore = "needs root: setpriv with capabilities"]
fn capability_holder_refuses_unsafe_config_too() {
    // The boot unit runs as a dynamic user with CAP_NET_ADMIN: the ownership
    // rule must hold for it as for root.
    assert!(is_root(), "this test uses setpriv and must start as root");
    let t = tempfile::tempdir().unwrap();
    let root = fake_root(t.path());
    // Under a test root, the capability set is read from the root's
    // proc/self/status like every other /proc file.
    fs::create_dir_all(root.join("proc/self")).unwrap();
    fs::write(
        root.join("proc/self/status"),
        "Uid:\t65534\t65534\t65534\t65534\nCapEff:\t0000000000001000\n",
    )
    .unwrap();
    let cfg = t.path().join("ww.toml");
    fs::write(&cfg, "[conntrack]\nmax = 2000\n").unwrap();
    fs::set_permissions(&cfg, fs::Permissions::from_mode(0o666)).unwrap();
    let o = as_nobody(
        &root,
        &["--inh-caps=+net_admin", "--ambient-caps=+net_admin"],
        &["--config", &cfg.display().to_string(), "apply"],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(78), "{t}");
    assert!(t.contains("group- or world-writable"), "{t}");
}

#[test]
#[ignore = "needs root: mounts a tmpfs in a mount namespace"]
fn journal_unavailable_falls_back_to_stderr_losing_nothing() {
    // stderr "is" the journal (JOURNAL_STREAM names it, as systemd sets it),
    // but no journald socket exists: a tmpfs hides it if this host has one.
    use std::os::unix::fs::MetadataExt;
    assert!(
        is_root(),
        "this test mounts a tmpfs in a mount namespace and must run as root"
    );
    let t = tempfile::tempdir().unwrap();
    let root = fake_root(t.path());
    let err_path = t.path().join("stderr");
    let err = fs::File::create(&err_path).unwrap();
    let meta = err.metadata().unwrap();
    let script = format!(
        "[ -d /run/systemd/journal ] && mount -t tmpfs none /run/systemd/journal; exec '{BIN}' apply"
    );
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("CONNTRACK_GUARD_ROOT", &root)
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(err)
        .output()
        .unwrap();
    let stderr = fs::read_to_string(&err_path).unwrap();
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr
            .matches("cannot send to /run/systemd/journal/socket")
            .count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("EVENT=applied") && stderr.contains("CONNTRACK_CHANGED=4"),
        "the event was lost: {stderr}"
    );
    // Connected to the "journal", stdout carries the table but not the
    // summary line (the structured entry carries it).
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("RESULT") && !stdout.contains("settings applied"),
        "{stdout}"
    );
}
