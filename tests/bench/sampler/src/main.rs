// SPDX-License-Identifier: MIT OR Apache-2.0
//! In-process micro-benchmarks of the watchdog's sample. Two modes; each
//! prints one JSON object on stdout.
//!
//! Default (run.sh section `sampler`, and per table size in `netns`): one
//! watch sample, the four readers `observe::observe` calls (count + max,
//! the conntrack counters over ctnetlink or procfs, `/proc/net/snmp` +
//! `snmp6`, `/proc/net/softnet_stat`), against the floor: open and read(2)
//! the same files into a reused buffer, plus, when the counters came over
//! ctnetlink, one bare dump exchange (socket, send, recv to NLMSG_DONE,
//! close) without parsing. Also `observe::observe` (the sample plus the four
//! configured settings, for drift) against the same floor plus those four
//! files.
//!
//! `--issue10 --tree DIR [--cpus 2,64]` (run.sh section `sample10`): the
//! full sample of issue 10 against the procfs-only sample of the last
//! release (count + max + `/proc/net/stat/nf_conntrack`: `read_fill` and
//! `read_ct_stat`), on the real root and on fake roots under DIR whose
//! per-CPU files have N rows in the real files' layout (see [`make_tree`]).
//! A fake root stands for the read and parse in user space only: the
//! kernel's side (formatting per-CPU rows, folding per-CPU MIBs for snmp,
//! one ctnetlink message per possible CPU) stays at this machine's cost.
//! The `real/raw:*` cases time each file's bare read on the real root, so
//! the kernel's share of each reader shows.
//!
//! Every case is interleaved iteration by iteration with the others, so all
//! see the same machine noise; each call is timed on its own and the
//! medians are reported, with the ratios.
//!
//! Usage: ctg-bench-sampler [--iters N] [--warmup N] [--root DIR]
//!        ctg-bench-sampler --issue10 --tree DIR [--cpus 2,64] [--iters N] [--warmup N]

use std::fmt::Write as _;
use std::fs::File;
use std::hint::black_box;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    bind, recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};

use conntrack_guard::assess::{self, State, Thresholds};
use conntrack_guard::config::Config;
use conntrack_guard::kernel::hashsize;
use conntrack_guard::host::Host;
use conntrack_guard::kernel::ctstats::{read_ct_counters, read_ct_stat, KernelNetlink, NoNetlink};
use conntrack_guard::kernel::snmp::read_udp;
use conntrack_guard::kernel::softnet::read_softnet;
use conntrack_guard::kernel::netlink;
use conntrack_guard::observe;
use conntrack_guard::kernel::stats::{read_fill, CounterSource};
use conntrack_guard::sysroot::SysRoot;

const COUNT: &str = "proc/sys/net/netfilter/nf_conntrack_count";
const MAX: &str = "proc/sys/net/netfilter/nf_conntrack_max";
const STAT: &str = "proc/net/stat/nf_conntrack";
const SNMP: &str = "proc/net/snmp";
const SNMP6: &str = "proc/net/snmp6";
const SOFTNET: &str = "proc/net/softnet_stat";
/// softnet_stat's CPU id column (5.10+), as `kernel::softnet` reads it.
const SOFTNET_CPU_COLUMN: usize = 12;

struct Args {
    iters: usize,
    warmup: usize,
    root: Option<PathBuf>,
    issue10: bool,
    tree: Option<PathBuf>,
    cpus: Vec<usize>,
}

fn main() {
    let mut a = Args {
        iters: 20_000,
        warmup: 500,
        root: None,
        issue10: false,
        tree: None,
        cpus: vec![2, 64],
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| die(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--iters" => a.iters = val().parse().unwrap_or_else(|_| die("bad --iters")),
            "--warmup" => a.warmup = val().parse().unwrap_or_else(|_| die("bad --warmup")),
            "--root" => a.root = Some(PathBuf::from(val())),
            "--issue10" => a.issue10 = true,
            "--tree" => a.tree = Some(PathBuf::from(val())),
            "--cpus" => {
                a.cpus = val()
                    .split(',')
                    .map(|s| match s.parse() {
                        Ok(n) if (1..=4096).contains(&n) => n,
                        _ => die("--cpus takes numbers 1..4096, comma-separated"),
                    })
                    .collect()
            }
            _ => die(&format!("unknown argument {arg}")),
        }
    }
    // Bounded whatever the caller asks.
    a.iters = a.iters.clamp(1, 1_000_000);
    a.warmup = a.warmup.min(100_000);
    if a.issue10 {
        issue10(&a);
    } else {
        sampler(&a);
    }
}

// --- shared helpers ---------------------------------------------------------

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `v` sorted.
fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// A named case: a closure timed once per iteration.
struct Case<'a> {
    name: String,
    f: Box<dyn FnMut() + 'a>,
    t: Vec<f64>,
}

impl<'a> Case<'a> {
    fn new(name: impl Into<String>, f: impl FnMut() + 'a) -> Self {
        Case {
            name: name.into(),
            f: Box::new(f),
            t: Vec::new(),
        }
    }
}

/// Run every case `warmup` times untimed, then `iters` times timed, the
/// cases interleaved. Returns the wall time of the timed part.
fn run(cases: &mut [Case], iters: usize, warmup: usize) -> f64 {
    for _ in 0..warmup {
        for c in cases.iter_mut() {
            (c.f)();
        }
    }
    for c in cases.iter_mut() {
        c.t = Vec::with_capacity(iters);
    }
    let wall = Instant::now();
    for _ in 0..iters {
        for c in cases.iter_mut() {
            let t0 = Instant::now();
            (c.f)();
            c.t.push(t0.elapsed().as_nanos() as f64);
        }
    }
    wall.elapsed().as_secs_f64()
}

/// The floor for files: open, read(2) into a page-sized buffer until EOF,
/// close. No parsing, no allocation, no stat.
fn raw_files(buf: &mut [u8], files: &[PathBuf]) -> usize {
    let mut n = 0;
    for p in files {
        let mut f = File::open(p).unwrap_or_else(|e| die(&format!("{}: {e}", p.display())));
        loop {
            match f.read(buf) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => die(&format!("{}: {e}", p.display())),
            }
        }
    }
    n
}

/// The floor for ctnetlink: the exchange `netlink::stats_cpu_table` makes
/// (socket, bind, send the same request, recv until NLMSG_DONE, close)
/// without the receive timeout, the parse or a fresh buffer. Returns the
/// bytes received.
fn raw_netlink(buf: &mut [u8]) -> usize {
    const NLMSG_DONE: u16 = 3;
    const NLMSG_ERROR: u16 = 2;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )
    .unwrap_or_else(|e| die(&format!("netlink socket: {e}")));
    let raw = fd.as_raw_fd();
    bind(raw, &NetlinkAddr::new(0, 0)).unwrap_or_else(|e| die(&format!("netlink bind: {e}")));
    let req = netlink::request(1);
    sendto(raw, &req, &NetlinkAddr::new(0, 0), MsgFlags::empty())
        .unwrap_or_else(|e| die(&format!("netlink send: {e}")));
    let mut total = 0;
    for _ in 0..4096 {
        let n = recv(raw, buf, MsgFlags::empty())
            .unwrap_or_else(|e| die(&format!("netlink recv: {e}")));
        total += n;
        // Walk the nlmsghdr lengths only, to find the end of the dump.
        let mut i = 0;
        while i + 16 <= n {
            let len = u32::from_ne_bytes(buf[i..i + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(buf[i + 4..i + 6].try_into().unwrap());
            if ty == NLMSG_DONE || ty == NLMSG_ERROR {
                return total;
            }
            if len < 16 {
                die("netlink: malformed message");
            }
            i += (len + 3) & !3;
        }
    }
    die("netlink dump did not end")
}

fn die(msg: &str) -> ! {
    eprintln!("ctg-bench-sampler: {msg}");
    std::process::exit(1)
}

/// The files the readers open, as absolute paths under `root`.
fn paths(root: &SysRoot, rels: &[&str]) -> Vec<PathBuf> {
    rels.iter()
        .map(|r| root.path(r))
        .filter(|p| p.exists())
        .collect()
}

// --- default mode: one watch sample vs the raw floor ------------------------

fn sampler(a: &Args) {
    let host = match &a.root {
        Some(r) => Host::at(SysRoot::at(r.clone())),
        None => Host::real(),
    };
    let root = &host.root;
    let cfg = Config::default();

    // Sanity: one sample must work and must carry the counters.
    let (first_count, first_max) = read_fill(root).unwrap_or_else(|e| die(&format!("fill: {e}")));
    let source = read_ct_counters(root, host.netlink.as_ref())
        .unwrap_or_else(|e| die(&format!("counters: {e}")))
        .source;
    read_udp(root).unwrap_or_else(|e| die(&format!("snmp: {e}")));
    read_softnet(root).unwrap_or_else(|e| die(&format!("softnet: {e}")));

    // The files the sample opens (snmp6 only where IPv6 is there); the
    // counters' file only when procfs answers, else the bare netlink dump.
    let mut rels = vec![COUNT, MAX];
    if source == CounterSource::Procfs {
        rels.push(STAT);
    }
    rels.extend([SNMP, SNMP6, SOFTNET]);
    let files = paths(root, &rels);
    let mut files_obs = files.clone();
    let settings: Vec<PathBuf> = hashsize::targets(&cfg, host.page_size)
        .iter()
        .map(|t| root.sysctl_path(&t.key))
        .collect();
    files_obs.extend(settings.iter().cloned());
    let netlink_too = source == CounterSource::Netlink;

    let mut raw_bytes = 0usize;
    let mut count_min = u64::MAX;
    let mut count_max = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let buf = std::cell::RefCell::new(&mut buf[..]);
    let raw = |files: &[PathBuf]| -> usize {
        let mut b = buf.borrow_mut();
        let mut n = raw_files(&mut b, files);
        if netlink_too {
            n += raw_netlink(&mut b);
        }
        n
    };
    let mut cases = vec![
        Case::new("sample", || {
            let fill = observe::fill(root);
            if let assess::FillReading::Read { count, .. } = fill {
                count_min = count_min.min(count);
                count_max = count_max.max(count);
            }
            black_box(fill);
            black_box(observe::conntrack_counters(&host).0.unwrap());
            black_box(observe::udp(&host).unwrap());
            black_box(observe::softnet(&host).unwrap());
        }),
        Case::new("raw", || raw_bytes = black_box(raw(&files))),
        Case::new("observe", || {
            black_box(observe::observe(&host, &cfg));
        }),
        Case::new("raw_obs", || {
            black_box(raw(&files_obs));
        }),
    ];
    let wall_s = run(&mut cases, a.iters, a.warmup);
    let mut m: Vec<f64> = Vec::new();
    let mut p: Vec<(f64, f64)> = Vec::new();
    for c in cases.iter_mut() {
        m.push(median(&mut c.t));
        p.push((pct(&c.t, 0.1), pct(&c.t, 0.9)));
    }
    drop(cases);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.display().to_string())
        .chain(netlink_too.then(|| "ctnetlink stats dump".to_string()))
        .collect();
    println!(
        "{{\"iters\":{},\"sample_median_ns\":{:.0},\"raw_median_ns\":{:.0},\"ratio\":{:.3},\
         \"observe_median_ns\":{:.0},\"raw_obs_median_ns\":{:.0},\"observe_ratio\":{:.3},\
         \"sample_p10_ns\":{:.0},\"sample_p90_ns\":{:.0},\"raw_p10_ns\":{:.0},\"raw_p90_ns\":{:.0},\
         \"raw_bytes\":{raw_bytes},\"raw_reads\":{},\"observe_extra_files\":{},\
         \"count\":{first_count},\"count_min\":{count_min},\"count_max\":{count_max},\
         \"max\":{first_max},\"source\":\"{source:?}\",\"wall_s\":{wall_s:.3}}}",
        a.iters,
        m[0],
        m[1],
        m[0] / m[1],
        m[2],
        m[3],
        m[2] / m[3],
        p[0].0,
        p[0].1,
        p[1].0,
        p[1].1,
        serde_json_str_list(&names),
        settings.len(),
    );
}

fn serde_json_str_list(v: &[String]) -> String {
    let mut s = String::from("[");
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        for ch in x.chars() {
            match ch {
                '"' | '\\' => {
                    s.push('\\');
                    s.push(ch)
                }
                c if (c as u32) < 0x20 => {
                    let _ = write!(s, "\\u{:04x}", c as u32);
                }
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push(']');
    s
}

// --- issue 10: full sample vs the last release's, at N simulated CPUs -------

/// Write a fake root under `dir` standing for a machine with `cpus`
/// possible CPUs: the per-CPU files (`/proc/net/stat/nf_conntrack`,
/// `/proc/net/softnet_stat`) get one row per CPU in the layout the running
/// kernel prints (header, column count, separators and 8-digit hex words
/// copied from the real files; the values vary per row and column so the
/// parser sees no repetition); the per-netns and scalar files (snmp, snmp6,
/// count, max and the four settings) are copied as they are, since their
/// text does not grow with CPUs.
fn make_tree(host: &SysRoot, dir: &Path, cpus: usize) {
    let w = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap())
            .and_then(|_| std::fs::write(&p, text))
            .unwrap_or_else(|e| die(&format!("{}: {e}", p.display())));
    };
    let read = |rel: &str| {
        host.read(rel)
            .unwrap_or_else(|e| die(&format!("{rel}: {e}")))
    };
    for key in [
        "count",
        "max",
        "buckets",
        "udp_timeout",
        "udp_timeout_stream",
    ] {
        let rel = format!("proc/sys/net/netfilter/nf_conntrack_{key}");
        w(&rel, &read(&rel));
    }
    w(SNMP, &read(SNMP));
    if let Ok(Some(t)) = host.read_opt(SNMP6) {
        w(SNMP6, &t);
    }
    // A cheap, deterministic spread of values.
    let val = |row: usize, col: usize| -> u32 {
        ((row as u32).wrapping_mul(2_654_435_761) ^ (col as u32).wrapping_mul(40_503)) & 0x00ff_ffff
    };

    let stat = read(STAT);
    let mut lines = stat.lines();
    let header = lines.next().unwrap_or_else(|| die("empty stat file"));
    let row0 = lines
        .next()
        .unwrap_or_else(|| die("stat file without rows"));
    let mut out = format!("{header}\n");
    for cpu in 0..cpus {
        // `entries` (column 0) is the netns total repeated on every row.
        out.push_str(&relabel(
            row0,
            |col| if col == 0 { 0x2a } else { val(cpu, col) },
        ));
        out.push('\n');
    }
    w(STAT, &out);

    let softnet = read(SOFTNET);
    let row0 = softnet
        .lines()
        .next()
        .unwrap_or_else(|| die("empty softnet_stat"));
    let mut out = String::new();
    for cpu in 0..cpus {
        out.push_str(&relabel(row0, |col| {
            if col == SOFTNET_CPU_COLUMN {
                cpu as u32
            } else {
                val(cpu, col)
            }
        }));
        out.push('\n');
    }
    w(SOFTNET, &out);
}

/// `line` with its n-th whitespace-separated word replaced by `value(n)` in
/// `%08x`, the separators kept.
fn relabel(line: &str, value: impl Fn(usize) -> u32) -> String {
    let mut out = String::with_capacity(line.len());
    let mut col = 0;
    let mut in_word = false;
    for ch in line.chars() {
        if ch.is_whitespace() {
            in_word = false;
            out.push(ch);
        } else if !in_word {
            in_word = true;
            let _ = write!(out, "{:08x}", value(col));
            col += 1;
        }
    }
    out
}

/// One root's cases for the issue-10 comparison.
struct Rig {
    label: String,
    host: Host,
    rows: usize,
}

fn issue10(a: &Args) {
    let tree = a
        .tree
        .clone()
        .unwrap_or_else(|| die("--issue10 needs --tree DIR"));
    let real = Host::real();
    let cpus_real = real
        .root
        .read(STAT)
        .unwrap_or_else(|e| die(&format!("{STAT}: {e}")))
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count();
    let first = read_ct_counters(&real.root, &KernelNetlink)
        .unwrap_or_else(|e| die(&format!("counters: {e}")));
    if first.source != CounterSource::Netlink {
        die(&format!(
            "ctnetlink did not answer ({:?}): run as root with nf_conntrack_netlink",
            first.netlink_error
        ));
    }
    let mut rigs = vec![Rig {
        label: "real".into(),
        host: real,
        rows: cpus_real,
    }];
    for &n in &a.cpus {
        let dir = tree.join(format!("cpus-{n}"));
        make_tree(&SysRoot::host(), &dir, n);
        rigs.push(Rig {
            label: format!("fake{n}"),
            host: Host::at(SysRoot::at(dir)),
            rows: n,
        });
    }
    let cfg = Config::default();
    let th = Thresholds::new(&cfg.watch, Duration::from_secs(5));

    // Per root: the last release's sample, the full sample (ctnetlink on the
    // real root; the procfs fallback on a fake root, as observe() does
    // there, plus on the real root for a like-for-like baseline), the parts,
    // and one watch step (observe + assess) in a steady state.
    let mut cases: Vec<Case> = Vec::new();
    for r in &rigs {
        let root = &r.host.root;
        let l = &r.label;
        cases.push(Case::new(format!("{l}/release_sample"), move || {
            black_box(read_fill(root).unwrap());
            black_box(read_ct_stat(root).unwrap());
        }));
        if l == "real" {
            cases.push(Case::new(format!("{l}/full_sample"), move || {
                black_box(read_fill(root).unwrap());
                black_box(read_ct_counters(root, &KernelNetlink).unwrap());
                black_box(read_udp(root).unwrap());
                black_box(read_softnet(root).unwrap());
            }));
            cases.push(Case::new(format!("{l}/ct_netlink"), move || {
                black_box(read_ct_counters(root, &KernelNetlink).unwrap());
            }));
        }
        cases.push(Case::new(format!("{l}/full_sample_procfs"), move || {
            black_box(read_fill(root).unwrap());
            black_box(read_ct_counters(root, &NoNetlink).unwrap());
            black_box(read_udp(root).unwrap());
            black_box(read_softnet(root).unwrap());
        }));
        cases.push(Case::new(format!("{l}/fill"), move || {
            black_box(read_fill(root).unwrap());
        }));
        cases.push(Case::new(format!("{l}/ct_procfs"), move || {
            black_box(read_ct_stat(root).unwrap());
        }));
        cases.push(Case::new(format!("{l}/snmp"), move || {
            black_box(read_udp(root).unwrap());
        }));
        cases.push(Case::new(format!("{l}/softnet"), move || {
            black_box(read_softnet(root).unwrap());
        }));
        if l == "real" {
            for rel in [COUNT, MAX, STAT, SNMP, SNMP6, SOFTNET] {
                let files = paths(root, &[rel]);
                let mut buf = vec![0u8; 4096];
                let name = rel.rsplit('/').next().unwrap_or(rel);
                cases.push(Case::new(format!("{l}/raw:{name}"), move || {
                    black_box(raw_files(&mut buf, &files));
                }));
            }
            let mut buf = vec![0u8; 64 * 1024];
            cases.push(Case::new(format!("{l}/raw:ctnetlink"), move || {
                black_box(raw_netlink(&mut buf));
            }));
        }
        let host = &r.host;
        let (cfg, th) = (&cfg, &th);
        let mut state = Some(State::default());
        let mut now = Duration::ZERO;
        cases.push(Case::new(format!("{l}/watch_step"), move || {
            let obs = observe::observe(host, cfg);
            now += Duration::from_secs(5);
            let (s, evs) = assess::assess(th, state.take().unwrap(), &obs, now);
            state = Some(s);
            black_box(evs);
        }));
    }
    let wall_s = run(&mut cases, a.iters, a.warmup);

    let mut med = std::collections::BTreeMap::new();
    let mut out = String::from("{");
    let _ = write!(
        out,
        "\"iters\":{},\"wall_s\":{wall_s:.3},\"cpus_real\":{cpus_real},\"medians_ns\":{{",
        a.iters
    );
    for (i, c) in cases.iter_mut().enumerate() {
        let m = median(&mut c.t);
        let _ = write!(
            out,
            "{}\"{}\":[{m:.0},{:.0},{:.0}]",
            if i > 0 { "," } else { "" },
            c.name,
            pct(&c.t, 0.1),
            pct(&c.t, 0.9)
        );
        med.insert(c.name.clone(), m);
    }
    out.push_str("},\"ratios\":{");
    let mut first_ratio = true;
    for r in &rigs {
        let l = &r.label;
        let base = med[&format!("{l}/release_sample")];
        let mut push = |name: &str, v: f64| {
            let _ = write!(
                out,
                "{}\"{l}/{name}\":{v:.3}",
                if first_ratio { "" } else { "," }
            );
            first_ratio = false;
        };
        if let Some(f) = med.get(&format!("{l}/full_sample")) {
            push("full_sample", f / base);
        }
        push(
            "full_sample_procfs",
            med[&format!("{l}/full_sample_procfs")] / base,
        );
        push("watch_step", med[&format!("{l}/watch_step")] / base);
    }
    out.push_str("},\"rows\":{");
    for (i, r) in rigs.iter().enumerate() {
        let _ = write!(
            out,
            "{}\"{}\":{}",
            if i > 0 { "," } else { "" },
            r.label,
            r.rows
        );
    }
    out.push_str("}}");
    println!("{out}");
}
