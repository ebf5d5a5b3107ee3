// SPDX-License-Identifier: MIT OR Apache-2.0
//! Golden-tree tests: each `tests/golden/NN-name/` holds an `input/` tree, an
//! `expected/` tree, the `args`, the `exit-code`, an optional `config.toml`
//! and optional `stdout-contains` / `stderr-contains` lines. The input is
//! copied to a temp dir, the real binary runs with CONNTRACK_GUARD_ROOT
//! pointing at it, and the resulting tree must equal `expected/` exactly.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{copy_tree, tree};

fn lines(p: &Path) -> Vec<String> {
    fs::read_to_string(p)
        .map(|s| {
            s.lines()
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn run_case(dir: &Path) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    copy_tree(&dir.join("input"), &root);
    let mut args: Vec<String> = fs::read_to_string(dir.join("args"))
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    let cfg_src = dir.join("config.toml");
    if cfg_src.exists() {
        // A root-run tool refuses group/world-writable configs; the checkout's
        // mode depends on the umask, so copy it with a known mode.
        let cfg = tmp.path().join("config.toml");
        fs::copy(&cfg_src, &cfg).unwrap();
        fs::set_permissions(&cfg, fs::Permissions::from_mode(0o600)).unwrap();
        args.insert(0, cfg.display().to_string());
        args.insert(0, "--config".into());
    }
    let out = Command::new(env!("CARGO_BIN_EXE_conntrack-guard"))
        .args(&args)
        .env("CONNTRACK_GUARD_ROOT", &root)
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ctx = format!("\n--- stdout\n{stdout}--- stderr\n{stderr}");
    let want: i32 = fs::read_to_string(dir.join("exit-code"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if out.status.code() != Some(want) {
        return Err(format!("exit {:?}, want {want}{ctx}", out.status.code()));
    }
    for l in lines(&dir.join("stdout-contains")) {
        if !stdout.contains(&l) {
            return Err(format!("stdout lacks {l:?}{ctx}"));
        }
    }
    for l in lines(&dir.join("stderr-contains")) {
        if !stderr.contains(&l) {
            return Err(format!("stderr lacks {l:?}{ctx}"));
        }
    }
    let got = tree(&root);
    let expected = tree(&dir.join("expected"));
    if got != expected {
        let mut diff = String::new();
        for k in got
            .keys()
            .chain(expected.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            let (g, e) = (got.get(k), expected.get(k));
            if g != e {
                let show = |v: Option<&Option<Vec<u8>>>| match v {
                    None => "(absent)".to_string(),
                    Some(None) => "(dir)".to_string(),
                    Some(Some(b)) => format!("{:?}", String::from_utf8_lossy(b)),
                };
                diff.push_str(&format!("  {k}: got {} want {}\n", show(g), show(e)));
            }
        }
        return Err(format!("tree differs:\n{diff}{ctx}"));
    }
    Ok(())
}

#[test]
fn golden_trees() {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<PathBuf> = fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("args").exists())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 17,
        "expected the golden cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for c in &cases {
        if let Err(e) = run_case(c) {
            failures.push(format!("{}: {e}", c.file_name().unwrap().to_string_lossy()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
