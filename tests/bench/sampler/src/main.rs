// SPDX-License-Identifier: MIT OR Apache-2.0
//! Times `conntrack_guard::stats::sample` (count + max + stat counters)
//! against the floor: a loop that only opens and reads the same three files
//! into a reused buffer. Also times what one watch tick actually reads,
//! `conntrack_guard::observe::observe` with the default configuration
//! (the sample plus the four configured settings, for drift), against a raw
//! read of the same seven files.
//!
//! The four are interleaved iteration by iteration so all see the same
//! machine noise; each call is timed on its own and the medians are
//! reported, with the ratios.
//!
//! Usage: ctg-bench-sampler [--iters N] [--warmup N] [--root DIR]
//! Prints one JSON object on stdout.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use std::hint::black_box;

use conntrack_guard::config::Config;
use conntrack_guard::sysroot::SysRoot;
use conntrack_guard::{observe, stats};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn pct(v: &[f64], p: f64) -> f64 {
    // v sorted
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}

fn main() {
    let mut iters: usize = 20_000;
    let mut warmup: usize = 500;
    let mut root: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| die(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--iters" => iters = val().parse().unwrap_or_else(|_| die("bad --iters")),
            "--warmup" => warmup = val().parse().unwrap_or_else(|_| die("bad --warmup")),
            "--root" => root = Some(PathBuf::from(val())),
            _ => die(&format!("unknown argument {a}")),
        }
    }
    // Bounded whatever the caller asks.
    let iters = iters.clamp(1, 1_000_000);
    let warmup = warmup.min(100_000);

    let sysroot = match &root {
        Some(r) => SysRoot::at(r.clone()),
        None => SysRoot::host(),
    };
    let files: Vec<PathBuf> = [
        "proc/sys/net/netfilter/nf_conntrack_count",
        "proc/sys/net/netfilter/nf_conntrack_max",
        "proc/net/stat/nf_conntrack",
    ]
    .iter()
    .map(|p| sysroot.path(p))
    .collect();
    // What observe() opens with the default configuration: the fill, the
    // counters, then buckets, max, udp_timeout, udp_timeout_stream.
    let files7: Vec<PathBuf> = [
        "proc/sys/net/netfilter/nf_conntrack_count",
        "proc/sys/net/netfilter/nf_conntrack_max",
        "proc/net/stat/nf_conntrack",
        "proc/sys/net/netfilter/nf_conntrack_buckets",
        "proc/sys/net/netfilter/nf_conntrack_max",
        "proc/sys/net/netfilter/nf_conntrack_udp_timeout",
        "proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream",
    ]
    .iter()
    .map(|p| sysroot.path(p))
    .collect();
    let cfg = Config::default();

    // Sanity: one sample must work and must carry the counters.
    let first = stats::sample(&sysroot).unwrap_or_else(|e| die(&format!("sample failed: {e}")));
    if first.counters.is_none() {
        die(&format!(
            "sample has no counters: {}",
            first.counters_error.as_deref().unwrap_or("?")
        ));
    }

    // The floor: open, read(2) into a page-sized buffer until EOF, close. No
    // parsing, no allocation, no stat.
    let mut buf = vec![0u8; 4096];
    let mut raw_bytes = 0usize;
    let raw = |buf: &mut [u8], files: &[PathBuf]| -> usize {
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
    };

    let mut sink = 0u64;
    for _ in 0..warmup {
        let s = stats::sample(&sysroot).unwrap();
        sink = sink.wrapping_add(s.count);
        raw_bytes = raw(&mut buf, &files);
        black_box(observe::observe(&sysroot, &cfg));
        raw(&mut buf, &files7);
    }

    let mut t_sample = Vec::with_capacity(iters);
    let mut t_raw = Vec::with_capacity(iters);
    let mut t_obs = Vec::with_capacity(iters);
    let mut t_raw7 = Vec::with_capacity(iters);
    let mut count_min = u64::MAX;
    let mut count_max = 0u64;
    let wall = Instant::now();
    for _ in 0..iters {
        let t0 = Instant::now();
        let s = stats::sample(&sysroot);
        let t1 = Instant::now();
        let n = raw(&mut buf, &files);
        let t2 = Instant::now();
        black_box(observe::observe(&sysroot, &cfg));
        let t3 = Instant::now();
        black_box(raw(&mut buf, &files7));
        let t4 = Instant::now();
        t_obs.push((t3 - t2).as_nanos() as f64);
        t_raw7.push((t4 - t3).as_nanos() as f64);
        let s = s.unwrap_or_else(|e| die(&format!("sample failed: {e}")));
        count_min = count_min.min(s.count);
        count_max = count_max.max(s.count);
        sink = sink.wrapping_add(s.count).wrapping_add(n as u64);
        t_sample.push((t1 - t0).as_nanos() as f64);
        t_raw.push((t2 - t1).as_nanos() as f64);
    }
    let wall_s = wall.elapsed().as_secs_f64();

    let ms = median(&mut t_sample);
    let mr = median(&mut t_raw);
    let mo = median(&mut t_obs);
    let mr7 = median(&mut t_raw7);
    println!(
        "{{\"iters\":{iters},\"sample_median_ns\":{ms:.0},\"raw_median_ns\":{mr:.0},\
         \"ratio\":{:.3},\"observe_median_ns\":{mo:.0},\"raw7_median_ns\":{mr7:.0},\
         \"observe_ratio\":{:.3},\"sample_p10_ns\":{:.0},\"sample_p90_ns\":{:.0},\
         \"raw_p10_ns\":{:.0},\"raw_p90_ns\":{:.0},\"raw_bytes\":{raw_bytes},\
         \"count\":{},\"count_min\":{count_min},\"count_max\":{count_max},\"max\":{},\
         \"source\":\"{:?}\",\"wall_s\":{wall_s:.3},\"sink\":{}}}",
        ms / mr,
        mo / mr7,
        pct(&t_sample, 0.1),
        pct(&t_sample, 0.9),
        pct(&t_raw, 0.1),
        pct(&t_raw, 0.9),
        first.count,
        first.max,
        first.source.unwrap(),
        sink % 2
    );
}

fn die(msg: &str) -> ! {
    eprintln!("ctg-bench-sampler: {msg}");
    std::process::exit(1)
}
