// SPDX-License-Identifier: MIT OR Apache-2.0
//! `doctor` fixture tests: each `tests/doctor/NN-name/` holds a `root/`
//! tree (real file layouts: sysctl.d, modprobe.d, modules-load.d, units, a
//! kube-proxy config, a fake /proc, and `ruleset/nft.json` or
//! `ruleset/iptables-save` for the ruleset), the `args`, the `exit-code`,
//! and the exact `stdout` (or `stderr-contains` for usage errors). The
//! root is copied to a temp dir, the binary runs on it, and the tree must
//! be unchanged afterwards: doctor is read-only.
//!
//! To regenerate `stdout` after a deliberate change:
//! `DOCTOR_BLESS=1 cargo test --test doctor`, then review the diff.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{copy_tree, tree};

fn run_case(dir: &Path) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    copy_tree(&dir.join("root"), &root);
    let before = tree(&root);
    let args: Vec<String> = fs::read_to_string(dir.join("args"))
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_conntrack-guard"))
        .args(&args)
        .env("CONNTRACK_GUARD_ROOT", &root)
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    // A path doctor could not read is named as the host sees it, under the
    // temp root here: compared without that prefix.
    let stdout = String::from_utf8_lossy(&out.stdout).replace(root.to_str().unwrap(), "");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let ctx = format!("\n--- stdout\n{stdout}--- stderr\n{stderr}");
    let want: i32 = fs::read_to_string(dir.join("exit-code"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if out.status.code() != Some(want) {
        return Err(format!("exit {:?}, want {want}{ctx}", out.status.code()));
    }
    let expected = dir.join("stdout");
    if std::env::var_os("DOCTOR_BLESS").is_some() && !dir.join("stderr-contains").exists() {
        fs::write(&expected, &stdout).unwrap();
    }
    if let Ok(e) = fs::read_to_string(&expected) {
        if e != stdout {
            return Err(format!("stdout differs; want\n{e}{ctx}"));
        }
    }
    if let Ok(e) = fs::read_to_string(dir.join("stderr-contains")) {
        for l in e.lines().filter(|l| !l.is_empty()) {
            if !stderr.contains(l) {
                return Err(format!("stderr lacks {l:?}{ctx}"));
            }
        }
    }
    if tree(&root) != before {
        return Err(format!("doctor changed the tree{ctx}"));
    }
    Ok(())
}

fn cases() -> Vec<PathBuf> {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/doctor");
    let mut cases: Vec<PathBuf> = fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("args").exists())
        .collect();
    cases.sort();
    cases
}

#[test]
fn doctor_fixtures() {
    let cases = cases();
    assert!(cases.len() >= 17, "found {} cases", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            run_case(c)
                .err()
                .map(|e| format!("{}: {e}", c.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} doctor cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// Every non-OK finding line of every case, by check name: each check
/// that can fire must fire in some fixture, and the clean fixture fires
/// none.
#[test]
fn every_check_has_a_triggering_fixture_and_clean_has_none() {
    let mut fired: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in cases() {
        // Text cases only; the JSON case checks the shape of the same report.
        let Ok(s) = fs::read_to_string(c.join("stdout")) else {
            continue;
        };
        if s.starts_with('{') {
            continue;
        }
        let name = c.file_name().unwrap().to_string_lossy().into_owned();
        for l in s.lines().skip(1) {
            let mut w = l.split_whitespace();
            let (Some(sev), Some(check)) = (w.next(), w.next()) else {
                continue;
            };
            if sev != "OK" {
                fired
                    .entry(check.trim_end_matches(':').to_string())
                    .or_default()
                    .push(name.clone());
            }
        }
    }
    for check in [
        "sysctl.d",
        "modules-load.d",
        "modprobe.d",
        "units",
        "writers",
        "ruleset",
    ] {
        assert!(fired.contains_key(check), "no fixture triggers {check}");
    }
    for (check, cases) in &fired {
        assert!(
            !cases.iter().any(|c| c.contains("clean")),
            "clean fixture triggers {check}"
        );
    }
}
