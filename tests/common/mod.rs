// SPDX-License-Identifier: MIT OR Apache-2.0
//! Helpers for the watch/status integration tests: a fake root tree, the
//! real binary as a subprocess (environment variables are process-global,
//! so they are only ever set on the child), its stderr event lines, and a
//! real sd_notify socket.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_conntrack-guard");
pub const NF: &str = "proc/sys/net/netfilter";
pub const STAT: &str = "proc/net/stat/nf_conntrack";
pub const HEADER: &str = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart";

/// A temporary tree that stands for `/`.
pub struct FakeRoot {
    pub dir: tempfile::TempDir,
}

impl FakeRoot {
    /// count 100 of max 1000, buckets 512 (max/4 as the kernel rounds it),
    /// timeouts 10/15, drop 3, and a
    /// config that matches (so no drift).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let r = FakeRoot { dir };
        std::fs::create_dir_all(r.path().join(NF)).unwrap();
        std::fs::create_dir_all(r.path().join("proc/net/stat")).unwrap();
        std::fs::create_dir_all(r.path().join("etc/conntrack-guard")).unwrap();
        r.sysctl("nf_conntrack_count", "100");
        r.sysctl("nf_conntrack_max", "1000");
        r.sysctl("nf_conntrack_buckets", "512");
        r.sysctl("nf_conntrack_udp_timeout", "10");
        r.sysctl("nf_conntrack_udp_timeout_stream", "15");
        r.counters(3, 0, 0);
        r.udp(0, 0);
        r.softnet(&[(0, 0), (0, 0)]);
        r.config("[conntrack]\nmax = 1000\n");
        r
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Replace a file atomically, as the kernel's files never read half
    /// written.
    pub fn write(&self, rel: &str, contents: &str) {
        let p = self.path().join(rel);
        let tmp = p.with_extension("tmp-write");
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
    }

    pub fn sysctl(&self, name: &str, value: &str) {
        self.write(&format!("{NF}/{name}"), &format!("{value}\n"));
    }

    pub fn count(&self, n: u64) {
        self.sysctl("nf_conntrack_count", &n.to_string());
    }

    /// The stat file with two CPUs, the totals split between them.
    pub fn counters(&self, drop: u64, early_drop: u64, insert_failed: u64) {
        let line = |d: u64, e: u64, f: u64| {
            format!(
                "000003e8  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 {f:08x} {d:08x} {e:08x} 00000000  00000000 00000000 00000000 00000000\n"
            )
        };
        let text = format!(
            "{HEADER}\n{}{}",
            line(drop / 2, early_drop / 2, insert_failed / 2),
            line(
                drop - drop / 2,
                early_drop - early_drop / 2,
                insert_failed - insert_failed / 2
            )
        );
        self.write(STAT, &text);
    }

    /// `/proc/net/snmp` (6.x layout) with these UDP receive errors.
    pub fn udp(&self, rcvbuf_errors: u64, other_in_errors: u64) {
        self.write(
            "proc/net/snmp",
            &format!(
                "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                 Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
                 Udp: 1000 5 {} 900 {rcvbuf_errors} 0 0 0 0\n\
                 UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
                 UdpLite: 0 0 0 0 0 0 0 0 0\n",
                rcvbuf_errors + other_in_errors
            ),
        );
    }

    /// `/proc/net/softnet_stat` (6.12 layout), one row per CPU of
    /// (dropped, time_squeeze).
    pub fn softnet(&self, cpus: &[(u32, u32)]) {
        let mut text = String::new();
        for (i, (dropped, squeeze)) in cpus.iter().enumerate() {
            text.push_str(&format!(
                "00001000 {dropped:08x} {squeeze:08x} 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 {i:08x} 00000000 00000000\n"
            ));
        }
        self.write("proc/net/softnet_stat", &text);
    }

    pub fn config(&self, text: &str) {
        self.write("etc/conntrack-guard/conntrack-guard.toml", text);
    }

    /// The module goes away: its sysctl directory and stat file vanish.
    pub fn unload(&self) {
        std::fs::rename(self.path().join(NF), self.path().join("nf.gone")).unwrap();
        std::fs::rename(self.path().join(STAT), self.path().join("stat.gone")).unwrap();
    }

    pub fn reload_module(&self) {
        std::fs::rename(self.path().join("nf.gone"), self.path().join(NF)).unwrap();
        std::fs::rename(self.path().join("stat.gone"), self.path().join(STAT)).unwrap();
    }

    /// `watch --interval INTERVAL` on this root, reporting to a fresh
    /// sd_notify socket.
    pub fn watch_notified(&self, interval: &str) -> (Running, NotifySocket) {
        let n = NotifySocket::new();
        let mut cmd = self.cmd(&["watch", "--interval", interval]);
        cmd.env("NOTIFY_SOCKET", &n.path);
        (Running::spawn(cmd), n)
    }

    /// The binary with this root and a clean environment: no journal, no
    /// service manager unless the test adds one.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("CONNTRACK_GUARD_ROOT", self.path())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null());
        c
    }
}

/// One parsed stderr event line.
#[derive(Debug, Clone)]
pub struct Ev {
    pub priority: String,
    pub name: String,
    pub fields: Vec<(String, String)>,
    pub line: String,
}

impl Ev {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }

    pub fn message(&self) -> &str {
        self.get("MESSAGE").unwrap_or("")
    }
}

/// Parse `<prio>: EVENT=name KEY=value KEY="quoted \"value\"" ...`.
pub fn parse_event(line: &str) -> Option<Ev> {
    let (prio, rest) = line.split_once(": ")?;
    if ![
        "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
    ]
    .contains(&prio)
    {
        return None;
    }
    let mut fields = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if key.is_empty() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(match n {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                        }
                    }
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        fields.push((key, val));
    }
    let name = fields.iter().find(|(k, _)| k == "EVENT")?.1.clone();
    Some(Ev {
        priority: prio.to_string(),
        name,
        fields,
        line: line.to_string(),
    })
}

/// A running `watch` with its stderr collected line by line.
pub struct Running {
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn conntrack-guard");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                match line {
                    Ok(l) => l2.lock().unwrap().push(l),
                    Err(_) => break,
                }
            }
        });
        Running {
            child,
            lines,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn events(&self) -> Vec<Ev> {
        self.lines().iter().filter_map(|l| parse_event(l)).collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.events().into_iter().map(|e| e.name).collect()
    }

    /// Wait until an event satisfies `pred`; return it.
    pub fn wait_event(&self, timeout: Duration, pred: impl Fn(&Ev) -> bool) -> Option<Ev> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return Some(e);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Wait for the exit (up to `timeout`), then collect all of stderr.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<(ExitStatus, Duration)> {
        let t0 = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                let took = t0.elapsed();
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                return Some((st, took));
            }
            if t0.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// SIGTERM, and the exit status with how long it took.
    pub fn term(&mut self) -> (ExitStatus, Duration) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(5))
            .expect("watch did not exit within 5 s of SIGTERM")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bound datagram socket standing in for systemd's notify socket. A
/// thread drains it all the time, as systemd does.
pub struct NotifySocket {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
    all: Arc<Mutex<Vec<(Instant, String)>>>,
    cursor: usize,
}

impl NotifySocket {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let all = Arc::new(Mutex::new(Vec::new()));
        let a2 = all.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                a2.lock().unwrap().push((Instant::now(), msg));
            }
        });
        NotifySocket {
            path,
            _dir: dir,
            all,
            cursor: 0,
        }
    }

    /// Every datagram received so far, with its arrival time.
    pub fn seen(&self) -> Vec<(Instant, String)> {
        self.all.lock().unwrap().clone()
    }

    /// How many datagrams arrived so far (one per sample, at least).
    pub fn count(&self) -> usize {
        self.all.lock().unwrap().len()
    }

    /// Wait for a datagram after the cursor that satisfies `pred`; the
    /// cursor moves past it.
    pub fn until(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let end = Instant::now() + timeout;
        loop {
            {
                let all = self.all.lock().unwrap();
                while self.cursor < all.len() {
                    let m = &all[self.cursor].1;
                    self.cursor += 1;
                    if pred(m) {
                        return Some(m.clone());
                    }
                }
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Wait for a STATUS= line containing `needle`.
    pub fn status(&mut self, needle: &str) -> String {
        let needle = needle.to_string();
        self.until(Duration::from_secs(5), |m| {
            m.lines()
                .any(|l| l.starts_with("STATUS=") && l.contains(&needle))
        })
        .unwrap_or_else(|| panic!("no STATUS= with {needle:?}; last seen {:?}", self.tail()))
    }

    /// Wait for `n` more samples (STATUS= datagrams).
    pub fn samples(&mut self, n: usize) {
        for _ in 0..n {
            self.until(Duration::from_secs(5), |m| m.contains("STATUS="))
                .expect("samples keep coming");
        }
    }

    pub fn tail(&self) -> Vec<String> {
        self.seen()
            .iter()
            .rev()
            .take(5)
            .map(|x| x.1.clone())
            .collect()
    }
}

/// Is this test run as root?
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A copy of the stock-kernel golden input (max 65536, buckets 16384,
/// timeouts 30/120, 16 GiB RAM) in `dir/root`; `dir` is made traversable for
/// tests that drop to uid 65534.
pub fn stock_root(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/01-dry-run-writes-nothing/input");
    let root = dir.join("root");
    let ok = Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&root)
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    root
}

/// The lock every test that touches global kernel state takes, so the shell
/// suites and these tests never interleave.
pub fn global_lock() -> nix::fcntl::Flock<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/conntrack-guard-tests.lock")
        .unwrap();
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap()
}

/// A tree as path -> contents (`None` for a directory, `-> target` for a
/// symlink), to compare a whole fake root before and after a run.
pub fn tree(root: &Path) -> std::collections::BTreeMap<String, Option<Vec<u8>>> {
    let mut out = std::collections::BTreeMap::new();
    fn walk(
        base: &Path,
        dir: &Path,
        out: &mut std::collections::BTreeMap<String, Option<Vec<u8>>>,
    ) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.insert(rel, Some(format!("-> {}", target.display()).into_bytes()));
            } else if meta.is_dir() {
                out.insert(rel + "/", None);
                walk(base, &p, out);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// Copy a fixture tree, symlinks as symlinks.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        let ft = e.file_type().unwrap();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &dest).unwrap();
        } else if ft.is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}
