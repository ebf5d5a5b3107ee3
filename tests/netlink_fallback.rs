// SPDX-License-Identifier: MIT OR Apache-2.0
//! The ctnetlink fallback against the real kernel: a root whose
//! `proc/net/stat/nf_conntrack` is missing, paired with the real
//! IPCTNL_MSG_CT_GET_STATS_CPU path, must give the same counters as the
//! kernel's own procfs file. Needs root (nfnetlink requires CAP_NET_ADMIN).

use conntrack_guard::stats::{parse_stat, read_counters, read_counters_via, CounterSource};
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
    let fake = SysRoot::at(t.path());

    // Without a fallback (any test root): a clear error, no panic.
    let e = read_counters(&fake).unwrap_err();
    assert!(e.contains("is absent"), "{e}");

    // Read procfs, netlink, procfs: if the two procfs reads agree, nothing
    // moved in between, and netlink must agree with them exactly.
    for _ in 0..20 {
        let before =
            parse_stat(&std::fs::read_to_string("/proc/net/stat/nf_conntrack").unwrap()).unwrap();
        let (nl, src) =
            read_counters_via(&fake, Some(conntrack_guard::netlink::stats_cpu)).unwrap();
        let after =
            parse_stat(&std::fs::read_to_string("/proc/net/stat/nf_conntrack").unwrap()).unwrap();
        assert_eq!(src, CounterSource::Netlink);
        if before == after {
            assert_eq!(
                (nl.drop, nl.early_drop, nl.insert_failed),
                (before.drop, before.early_drop, before.insert_failed)
            );
            assert_eq!(nl.clashres, before.clashres);
            return;
        }
    }
    panic!("counters kept moving; could not compare");
}
