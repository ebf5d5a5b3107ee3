// SPDX-License-Identifier: MIT OR Apache-2.0
//! The bad-input corpus: every config under `tests/bad-configs/` (listed in
//! its EXPECT file), plus generated ones that cannot live in git (10 MB,
//! invalid UTF-8, a directory, unreadable, a symlink loop, unsafe ownership
//! and mode). Each must give exit 78, a message naming the file, the line
//! where known and the key, and leave the fake root byte-for-byte unchanged.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::is_root;

const BIN: &str = env!("CARGO_BIN_EXE_conntrack-guard");

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn apply(root: &Path, config: &Path, as_nobody: bool) -> Output {
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    cmd.arg("--config")
        .arg(config)
        .arg("apply")
        .env("CONNTRACK_GUARD_ROOT", root)
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap()
}

fn check(root: &Path, config: &Path, needles: &[String], as_nobody: bool) -> Result<(), String> {
    let before = snapshot(root);
    let out = apply(root, config, as_nobody);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ctx = format!(
        "{}: exit {:?}\n{stderr}",
        config.display(),
        out.status.code()
    );
    if out.status.code() != Some(78) {
        return Err(format!("want exit 78; {ctx}"));
    }
    for n in needles {
        if !stderr.contains(n.as_str()) {
            return Err(format!("stderr lacks {n:?}; {ctx}"));
        }
    }
    if !stderr.contains("Nothing was written") {
        return Err(format!("no 'Nothing was written'; {ctx}"));
    }
    if snapshot(root) != before {
        return Err(format!("the fake root changed; {ctx}"));
    }
    Ok(())
}

#[test]
fn corpus_in_git() {
    let dir = manifest().join("tests/bad-configs");
    let tmp = tempfile::tempdir().unwrap();
    let root = common::stock_root(tmp.path());
    let mut failures = Vec::new();
    let mut n = 0;
    for line in fs::read_to_string(dir.join("EXPECT")).unwrap().lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 4, "bad EXPECT line {line:?}");
        let cfg = tmp.path().join(f[0]);
        fs::copy(dir.join(f[0]), &cfg).unwrap();
        fs::set_permissions(&cfg, fs::Permissions::from_mode(0o600)).unwrap();
        let mut prefix = format!("{}:{}", cfg.display(), f[1]);
        if f[2] != "-" {
            prefix.push_str(&format!(": {}", f[2]));
        }
        if let Err(e) = check(&root, &cfg, &[prefix, f[3].to_string()], false) {
            failures.push(e);
        }
        n += 1;
    }
    assert!(n >= 40, "corpus has only {n} configs");
    assert!(
        failures.is_empty(),
        "{} of {n} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("{n} bad configs rejected with exit 78 and nothing written");
}

#[test]
#[ignore = "needs root: root-owned configs, chown, and setpriv to nobody"]
fn generated_bad_files() {
    assert!(is_root(), "run as root (tests/run-all.sh does)");
    let tmp = tempfile::tempdir().unwrap();
    let root = common::stock_root(tmp.path());
    let p = |name: &str| tmp.path().join(name);
    let mut failures = Vec::new();
    let mut run = |cfg: PathBuf, needles: Vec<String>, as_nobody: bool| {
        if let Err(e) = check(&root, &cfg, &needles, as_nobody) {
            failures.push(e);
        }
    };

    let huge = p("huge.toml");
    let mut body = String::from("[conntrack]\n");
    while body.len() < 10 << 20 {
        body.push_str("# padding padding padding padding padding padding padding\n");
    }
    fs::write(&huge, body).unwrap();
    fs::set_permissions(&huge, fs::Permissions::from_mode(0o600)).unwrap();
    run(
        huge.clone(),
        vec![format!("{}: file is", huge.display()), "is refused".into()],
        false,
    );

    let utf = p("utf8.toml");
    fs::write(&utf, b"[conntrack]\nmax = 5\n# caf\xe9\n").unwrap();
    fs::set_permissions(&utf, fs::Permissions::from_mode(0o600)).unwrap();
    run(
        utf.clone(),
        vec![format!("{}:3: invalid UTF-8", utf.display())],
        false,
    );

    let dir = p("dir.toml");
    fs::create_dir(&dir).unwrap();
    run(
        dir.clone(),
        vec![format!("{}: is a directory", dir.display())],
        false,
    );

    let (a, b) = (p("loop-a.toml"), p("loop-b.toml"));
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    run(
        a.clone(),
        vec![
            format!("{}: cannot read config", a.display()),
            "symbolic links".into(),
        ],
        false,
    );

    let missing = p("missing.toml");
    run(
        missing.clone(),
        vec![format!("{}: cannot read config", missing.display())],
        false,
    );

    let ww = p("world-writable.toml");
    fs::write(&ww, "[conntrack]\nmax = 5\n").unwrap();
    fs::set_permissions(&ww, fs::Permissions::from_mode(0o666)).unwrap();
    run(
        ww.clone(),
        vec![format!(
            "{}: mode 0666 is group- or world-writable",
            ww.display()
        )],
        false,
    );

    let gw = p("group-writable.toml");
    fs::write(&gw, "[conntrack]\nmax = 5\n").unwrap();
    fs::set_permissions(&gw, fs::Permissions::from_mode(0o620)).unwrap();
    run(gw.clone(), vec!["group- or world-writable".into()], false);

    let owned = p("not-root.toml");
    fs::write(&owned, "[conntrack]\nmax = 5\n").unwrap();
    fs::set_permissions(&owned, fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(&owned, Some(65534), Some(65534)).unwrap();
    run(
        owned.clone(),
        vec![format!("{}: owned by uid 65534, not root", owned.display())],
        false,
    );

    // Unreadable: root reads anything, so drop to nobody for this one. The
    // temp dir must be traversable by nobody.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let unreadable = p("unreadable.toml");
    fs::write(&unreadable, "[conntrack]\nmax = 5\n").unwrap();
    fs::set_permissions(&unreadable, fs::Permissions::from_mode(0o000)).unwrap();
    run(
        unreadable.clone(),
        vec![
            format!("{}: cannot read config", unreadable.display()),
            "ermission denied".into(),
        ],
        true,
    );

    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The ownership check and the read must look at the same file. A symlink
/// flips between a safe config and a world-writable one with another value;
/// a loader that checks one name and reads it again can pass the check on
/// the safe file and read the other. Racy by nature: it hits within a few
/// thousand loads on the old loader and must never hit on the new one.
#[test]
#[ignore = "needs root: the safe config must be owned by root"]
fn ownership_check_and_read_see_the_same_file() {
    use std::sync::atomic::{AtomicBool, Ordering};
    assert!(is_root(), "run as root (tests/run-all.sh does)");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let good = dir.join("good.toml");
    let evil = dir.join("evil.toml");
    fs::write(&good, "[conntrack]\nmax = 1000\n").unwrap();
    fs::set_permissions(&good, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&evil, "[conntrack]\nmax = 6666\n").unwrap();
    fs::set_permissions(&evil, fs::Permissions::from_mode(0o666)).unwrap();
    let link = dir.join("conntrack-guard.toml");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    let stop = AtomicBool::new(false);
    let root = conntrack_guard::sysroot::SysRoot::at(dir);
    let (mut loaded, mut refused) = (0, 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let (ln_good, ln_evil) = (dir.join("ln-good"), dir.join("ln-evil"));
            while !stop.load(Ordering::Relaxed) {
                for (tmp, target) in [(&ln_evil, &evil), (&ln_good, &good)] {
                    let _ = fs::remove_file(tmp);
                    std::os::unix::fs::symlink(target, tmp).unwrap();
                    fs::rename(tmp, &link).unwrap();
                }
            }
        });
        for _ in 0..20_000 {
            match conntrack_guard::config::load(&root, Some(&link)) {
                Ok(c) => {
                    loaded += 1;
                    if c.conntrack.max != conntrack_guard::config::Knob::Set(1000) {
                        stop.store(true, Ordering::Relaxed);
                        panic!("read the world-writable file after checking the safe one");
                    }
                }
                Err(_) => refused += 1,
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(
        loaded > 0 && refused > 0,
        "{loaded} loaded, {refused} refused"
    );
}
