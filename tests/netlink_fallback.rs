// SPDX-License-Identifier: MIT OR Apache-2.0
//! The counter source order against the real kernel: a root whose
//! `proc/net/stat/nf_conntrack` is missing (as on kernels without
//! CONFIG_NF_CONNTRACK_PROCFS), on a host whose counter source is the real
//! ctnetlink, gives the kernel's own counters and names netlink as the
//! source; the same root with no netlink says why neither source answered.
//! Needs root (nfnetlink requires CAP_NET_ADMIN).

use conntrack_guard::host::Host;
use conntrack_guard::kernel::ctstats::CounterSource;
use conntrack_guard::kernel::ctstats::{parse_ct_stat, CtCounter, KernelNetlink};
use conntrack_guard::kernel::percpu::CounterSet;
use conntrack_guard::observe;
use conntrack_guard::sysroot::SysRoot;

mod common;
use common::is_root;

#[test]
#[ignore = "needs root and nf_conntrack: ctnetlink requires CAP_NET_ADMIN"]
fn netlink_reads_the_real_counters_when_the_stat_file_is_absent() {
    assert!(
        is_root(),
        "ctnetlink needs CAP_NET_ADMIN: run as root (CI does)"
    );
    let t = tempfile::tempdir().unwrap();

    // No netlink (a test root): a clear error naming both sources.
    let e = observe::conntrack_counters(&Host::at(SysRoot::at(t.path())))
        .unwrap_err()
        .to_string();
    assert!(e.contains("ctnetlink") && e.contains("nf_conntrack"), "{e}");

    // The real ctnetlink: read procfs, netlink, procfs; if the two procfs
    // reads agree, nothing moved in between, and netlink must agree exactly.
    let host = Host::at(SysRoot::at(t.path())).with_netlink(Box::new(KernelNetlink));
    let procfs =
        || parse_ct_stat(&std::fs::read_to_string("/proc/net/stat/nf_conntrack").unwrap()).unwrap();
    for _ in 0..20 {
        let before = procfs();
        let r = observe::conntrack_counters(&host).unwrap();
        let after = procfs();
        assert_eq!(r.source, CounterSource::Netlink);
        let nl = r.table;
        if before == after {
            for k in [
                CtCounter::Drop,
                CtCounter::EarlyDrop,
                CtCounter::InsertFailed,
                CtCounter::ClashResolve,
            ] {
                assert_eq!(nl.total(k), before.total(k), "{}", k.name());
            }
            return;
        }
    }
    panic!("counters kept moving; could not compare");
}
