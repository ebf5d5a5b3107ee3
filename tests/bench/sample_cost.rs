// SPDX-License-Identifier: MIT OR Apache-2.0
//! Times one full issue-10 sample (count + max, conntrack counters over
//! ctnetlink, /proc/net/snmp(6), /proc/net/softnet_stat) against today's
//! procfs-only sample of the last release (count, max, the stat file), interleaved, and prints medians
//! and 99th percentiles in microseconds. Run as root on the host:
//! `cargo run --release --example sample_cost -- [ITERS]`.

use std::hint::black_box;
use std::time::Instant;

use conntrack_guard::kernel::ctstats::{read_ct_counters, read_ct_stat, KernelNetlink};
use conntrack_guard::kernel::snmp::read_udp;
use conntrack_guard::kernel::softnet::read_softnet;
use conntrack_guard::kernel::sysctl::read_fill;
use conntrack_guard::sysroot::SysRoot;

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[(v.len() - 1) * 99 / 100])
}

fn main() {
    let iters: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000)
        .clamp(10, 1_000_000);
    let root = SysRoot::host();
    let cases: [(&str, &dyn Fn()); 6] = [
        ("procfs_only_sample", &|| {
            // The sample of the last release: count, max and the procfs
            // counters.
            black_box(read_fill(&root).unwrap());
            black_box(read_ct_stat(&root).unwrap());
        }),
        ("full_sample", &|| {
            black_box(read_fill(&root).unwrap());
            black_box(read_ct_counters(&root, &KernelNetlink).unwrap());
            black_box(read_udp(&root).unwrap());
            black_box(read_softnet(&root).unwrap());
        }),
        ("ct_netlink", &|| {
            black_box(conntrack_guard::kernel::netlink::stats_cpu_table().unwrap());
        }),
        ("ct_procfs_table", &|| {
            black_box(read_ct_stat(&root).unwrap());
        }),
        ("snmp_and_snmp6", &|| {
            black_box(read_udp(&root).unwrap());
        }),
        ("softnet", &|| {
            black_box(read_softnet(&root).unwrap());
        }),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(iters); cases.len()];
    for i in 0..iters + iters / 10 {
        for (j, (_, f)) in cases.iter().enumerate() {
            let t = Instant::now();
            f();
            if i >= iters / 10 {
                times[j].push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    for ((name, _), t) in cases.iter().zip(times) {
        let (med, p99) = stats(t);
        println!("{name:20} median {med:7.1} us   p99 {p99:7.1} us");
    }
}
