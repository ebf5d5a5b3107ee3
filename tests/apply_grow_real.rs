// SPDX-License-Identifier: MIT OR Apache-2.0
//! Issue 20 on the real kernel: `apply` starts from a remembered grown max,
//! records it for this boot so `status` and `apply --dry-run` expect it,
//! hands the slab's bytes per entry to the watchdog, and forgets the growth
//! when max is edited. It writes the global nf_conntrack_max and the real
//! state files, so it holds the global test lock and puts every one of
//! them back on drop, also when it fails.

mod common;
use common::{global_lock, is_root};

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_conntrack-guard");
const MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
/// Every file the test may change, restored as found.
const FILES: [&str; 5] = [
    MAX,
    "/var/lib/conntrack-guard/grown",
    "/run/conntrack-guard/grown",
    "/run/conntrack-guard/applied",
    "/run/conntrack-guard/entry-bytes",
];

/// The lock and what the files held before.
struct Kept {
    saved: Vec<(&'static str, Option<Vec<u8>>)>,
    var_lib_existed: bool,
    run_existed: bool,
    _lock: nix::fcntl::Flock<fs::File>,
}

impl Kept {
    fn new() -> Self {
        let lock = global_lock();
        Kept {
            saved: FILES.iter().map(|p| (*p, fs::read(p).ok())).collect(),
            var_lib_existed: Path::new("/var/lib/conntrack-guard").exists(),
            run_existed: Path::new("/run/conntrack-guard").exists(),
            _lock: lock,
        }
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        for (p, before) in &self.saved {
            match before {
                Some(b) => drop(fs::write(p, b)),
                None => drop(fs::remove_file(p)),
            }
        }
        if !self.var_lib_existed {
            let _ = fs::remove_dir("/var/lib/conntrack-guard");
        }
        if !self.run_existed {
            let _ = fs::remove_dir("/run/conntrack-guard");
        }
    }
}

fn run(args: &[&str]) -> (i32, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(BIN)
        .args(args)
        .env_remove("CONNTRACK_GUARD_ROOT")
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    assert!(!text.contains("panicked"), "{text}");
    (status.code().unwrap_or(-1), text)
}

fn kernel_max() -> u64 {
    fs::read_to_string(MAX).unwrap().trim().parse().unwrap()
}

/// A config setting only max (everything else "keep": nothing else global
/// is written), mode 0600 as a root-run tool wants it.
fn config(dir: &Path, max: u64) -> String {
    let p = dir.join("c.toml");
    fs::write(
        &p,
        format!(
            "[conntrack]\nmax = {max}\nbuckets = \"keep\"\nudp_timeout = \"keep\"\n\
             udp_timeout_stream = \"keep\"\n\n[grow]\nbudget = \"1GiB\"\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    p.display().to_string()
}

#[test]
#[ignore = "needs root and nf_conntrack; writes nf_conntrack_max and the state files (restored)"]
fn a_boot_starts_from_the_remembered_max_and_an_edit_forgets_it() {
    assert!(
        is_root(),
        "this test writes nf_conntrack_max and must run as root"
    );
    let _kept = Kept::new();
    let t = tempfile::tempdir().unwrap();
    // A boot: nothing of this boot under /run, the growth remembered.
    let _ = fs::remove_file("/run/conntrack-guard/grown");
    let configured = kernel_max();
    let grown = configured * 2;
    fs::create_dir_all("/var/lib/conntrack-guard").unwrap();
    fs::write(
        "/var/lib/conntrack-guard/grown",
        format!(
            "max={grown}\nbuckets=0\nconfigured={configured}\nat=1796652180\n\
             reason=early_drop +1234\n"
        ),
    )
    .unwrap();
    let cfg = config(t.path(), configured);

    let (code, out) = run(&["--config", &cfg, "apply"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "raised (grown on 2026-12-07 14:03 UTC after early_drop +1234; configured {configured})"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("CONNTRACK_GROWN_MAX={grown}")),
        "{out}"
    );
    assert_eq!(kernel_max(), grown);
    let this_boot = fs::read_to_string("/run/conntrack-guard/grown").unwrap();
    assert!(
        this_boot.contains(&format!("\nmax={grown}\n")),
        "{this_boot}"
    );
    // The bytes per entry handed to the watchdog: the slab object as root
    // reads it from /proc/slabinfo, plus the 128 B extension area.
    let objsize: u64 = fs::read_to_string("/proc/slabinfo")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("nf_conntrack "))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .expect("an nf_conntrack row");
    assert_eq!(
        fs::read_to_string("/run/conntrack-guard/entry-bytes")
            .unwrap()
            .trim(),
        (objsize + 128).to_string()
    );

    // Not drift for status, and nothing to do for a dry run or a rerun.
    let (_, json) = run(&["--config", &cfg, "status", "--json", "--window", "0"]);
    let v: serde_json::Value = serde_json::from_str(&json[..json.rfind('}').unwrap() + 1])
        .unwrap_or_else(|e| panic!("{e}: {json}"));
    let max_row = v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "net.netfilter.nf_conntrack_max")
        .unwrap()
        .clone();
    assert_eq!(max_row["ok"], true, "{v}");
    assert_eq!(max_row["expected"], grown.to_string());
    assert_eq!(v["grow"]["grown"]["max"], grown);
    assert_eq!(v["grow"]["budget"]["entry_bytes"], objsize + 128);
    let (code, out) = run(&["--config", &cfg, "apply", "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 would change"), "{out}");
    let (code, out) = run(&["--config", &cfg, "apply"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(kernel_max(), grown);

    // Editing max forgets both records and applies the new max.
    let edited = configured + 512;
    let cfg = config(t.path(), edited);
    let (code, out) = run(&["--config", &cfg, "apply"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("is forgotten (removed /run/conntrack-guard/grown)"),
        "{out}"
    );
    assert!(
        out.contains("is forgotten (removed /var/lib/conntrack-guard/grown)"),
        "{out}"
    );
    assert_eq!(kernel_max(), edited);
    assert!(!Path::new("/run/conntrack-guard/grown").exists());
    assert!(!Path::new("/var/lib/conntrack-guard/grown").exists());
}
