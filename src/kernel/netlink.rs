// SPDX-License-Identifier: MIT OR Apache-2.0
//! The per-CPU conntrack counters over ctnetlink. This is the request
//! `conntrack -S` sends: `IPCTNL_MSG_CT_GET_STATS_CPU` as a dump on a
//! NETLINK_NETFILTER socket, answered with one message per possible CPU
//! (`ctnetlink_ct_stat_cpu_dump`: the CPU number in the nfgenmsg `res_id`,
//! big endian) carrying `CTA_STATS_*` u32 attributes in network byte order.
//! The socket, the walk and the errors are [`crate::kernel::nfnl`]'s.

use crate::kernel::ctcounter::{CtCounter, CtTable};
use crate::kernel::nfnl::{self, be16, be32, End, NFNL_SUBSYS_CTNETLINK};
use crate::kernel::percpu::CpuIds;

pub use crate::kernel::nfnl::{recv_retrying, retry_eintr, NetlinkError, TIMEOUT};

const IPCTNL_MSG_CT_GET_STATS_CPU: u16 = 4;

/// Whether ctnetlink answers a statistics dump here, now. `Err` says why
/// not; [`NetlinkError::is_not_loaded`] tells the apply step to load
/// `nf_conntrack_netlink`.
pub fn netlink_available() -> Result<(), NetlinkError> {
    stats_cpu_table().map(|_| ())
}

/// Dump the per-CPU statistics of the caller's netns.
pub fn stats_cpu_table() -> Result<CtTable, NetlinkError> {
    let mut table = CtTable::new(CpuIds::Kernel);
    match nfnl::dump(
        IPCTNL_MSG_CT_GET_STATS_CPU,
        nfnl::BUF_STATS,
        TIMEOUT,
        &mut |ty, _, p| add_cpu(ty, p, &mut table),
    ) {
        End::Done => {}
        End::Timeout => return Err(NetlinkError::Timeout(TIMEOUT)),
        End::Failed(e) => return Err(e),
    }
    // Every kernel has at least one possible CPU: an empty dump is not an
    // answer, and reading it as one would hide every counter.
    if table.is_empty() {
        return Err(NetlinkError::Malformed("dump ended without a CPU"));
    }
    Ok(table)
}

/// The request: nlmsghdr + nfgenmsg, no attributes.
pub fn request(seq: u32) -> [u8; 20] {
    nfnl::dump_request(IPCTNL_MSG_CT_GET_STATS_CPU, seq)
}

/// Parse one datagram of the stats dump into per-CPU rows of `table`.
/// Returns true at NLMSG_DONE. A message without a full nfgenmsg is
/// skipped; attributes this code does not know are ignored, and an
/// attribute the kernel does not send stays `None`.
pub fn parse_stats_cpu(b: &[u8], seq: u32, table: &mut CtTable) -> Result<bool, NetlinkError> {
    nfnl::walk(b, seq, &mut |ty, _, p| add_cpu(ty, p, table))
}

/// One CPU's message (type `ty`, payload `p`) into its row of `table`.
fn add_cpu(ty: u16, p: &[u8], table: &mut CtTable) {
    const REPLY: u16 = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET_STATS_CPU;
    let Some(res_id) = p.get(2..).and_then(be16).filter(|_| ty == REPLY) else {
        return;
    };
    let row = table.row_mut(u32::from(res_id));
    // The attributes after the 4-byte nfgenmsg that hold at least a u32
    // (big endian, as `nla_put_be32` writes it); a malformed one ends the
    // message, keeping those before it.
    let _ = nfnl::each_attr(p.get(4..).unwrap_or(&[]), |ty, v| {
        if let (Some(c), Some(v)) = (CtCounter::from_netlink_attr(ty), be32(v)) {
            row.set(c, v);
        }
        Some(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::nfnl::{NLMSG_DONE, NLMSG_ERROR};
    use nix::errno::Errno;
    use std::io;

    fn attr(ty: u16, v: u32) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&8u16.to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(&v.to_be_bytes());
        a
    }

    fn msg(ty: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn sums_cpu_messages() {
        let mut body = vec![0, 0, 0, 0];
        body.extend(attr(CtCounter::Drop.netlink_attr(), 7));
        body.extend(attr(CtCounter::EarlyDrop.netlink_attr(), 2));
        body.extend(attr(CtCounter::InsertFailed.netlink_attr(), 1));
        let mut dgram = msg(0x104, 1, &body);
        let mut body1 = vec![0, 0, 0, 1];
        body1.extend_from_slice(&body[4..]);
        dgram.extend(msg(0x104, 1, &body1));
        let mut t = CtTable::new(CpuIds::Kernel);
        assert!(!parse_stats_cpu(&dgram, 1, &mut t).unwrap());
        let total = |k| t.total(k).unwrap();
        assert_eq!(
            (
                total(CtCounter::Drop),
                total(CtCounter::EarlyDrop),
                total(CtCounter::InsertFailed)
            ),
            (14, 4, 2)
        );
        assert!(parse_stats_cpu(&msg(NLMSG_DONE, 1, &[0; 4]), 1, &mut t).unwrap());
    }

    #[test]
    fn error_message_maps_errno() {
        let e = parse_stats_cpu(
            &msg(NLMSG_ERROR, 1, &(-1i32).to_ne_bytes()),
            1,
            &mut CtTable::new(CpuIds::Kernel),
        )
        .unwrap_err();
        assert!(
            matches!(e, NetlinkError::NeedsCapNetAdmin(ref io) if io.raw_os_error() == Some(1))
        );
    }

    #[test]
    fn error_code_i32_min_is_bad_data_not_a_panic() {
        // The cargo-fuzz reproducer: NLMSG_ERROR carrying 0x80000000.
        let e = parse_stats_cpu(
            &msg(NLMSG_ERROR, 1, &0x8000_0000u32.to_ne_bytes()),
            1,
            &mut CtTable::new(CpuIds::Kernel),
        )
        .unwrap_err();
        assert!(matches!(e, NetlinkError::Malformed(_)));
    }

    fn cpu_msg(cpu: u16, attrs: &[(u16, u32)]) -> Vec<u8> {
        let mut body = vec![0, 0];
        body.extend_from_slice(&cpu.to_be_bytes());
        for &(t, v) in attrs {
            body.extend(attr(t, v));
        }
        msg(0x104, 1, &body)
    }

    #[test]
    fn per_cpu_rows_by_res_id() {
        // As ctnetlink_ct_stat_cpu_dump sends it: one message per possible
        // CPU, res_id = htons(cpu); here CPUs 0 and 3, CPU 3 on a kernel
        // without CTA_STATS_CHAIN_TOOLONG.
        let mut dgram = cpu_msg(0, &[(10, 7), (11, 2), (9, 1), (14, 4), (15, 1)]);
        dgram.extend(cpu_msg(3, &[(10, u32::MAX), (9, 0)]));
        // Another message type and another sequence are ignored.
        dgram.extend(msg(0x100, 1, &[0, 0, 0, 9]));
        dgram.extend(msg(0x104, 2, &[0, 0, 0, 5]));
        let mut t = CtTable::new(CpuIds::Kernel);
        assert!(!parse_stats_cpu(&dgram, 1, &mut t).unwrap());
        assert_eq!(
            t.rows().iter().map(|r| r.cpu).collect::<Vec<_>>(),
            vec![0, 3]
        );
        assert_eq!(t.get(0, CtCounter::Drop), Some(7));
        assert_eq!(t.get(3, CtCounter::Drop), Some(u32::MAX));
        assert_eq!(t.get(0, CtCounter::ChainTooLong), Some(1));
        assert_eq!(t.get(3, CtCounter::ChainTooLong), None);
        assert_eq!(t.total(CtCounter::Drop), Some(u64::from(u32::MAX) + 7));
        assert!(parse_stats_cpu(&msg(NLMSG_DONE, 1, &[0; 4]), 1, &mut t).unwrap());
        let e =
            parse_stats_cpu(&msg(NLMSG_ERROR, 1, &(-1i32).to_ne_bytes()), 1, &mut t).unwrap_err();
        assert!(matches!(e, NetlinkError::NeedsCapNetAdmin(_)));
    }

    #[test]
    fn errors_are_classified() {
        let kind = |errno| NetlinkError::from_io(io::Error::from_raw_os_error(errno));
        assert!(matches!(kind(1), NetlinkError::NeedsCapNetAdmin(_)));
        for errno in [2, 22, 93, 95] {
            assert!(kind(errno).is_not_loaded(), "errno {errno}");
        }
        assert!(matches!(kind(11), NetlinkError::Timeout(_)));
        assert!(matches!(kind(5), NetlinkError::Io(_)));
        assert!(kind(1).to_string().contains("CAP_NET_ADMIN"));
        assert!(kind(22).to_string().contains("nf_conntrack_netlink"));
    }

    #[test]
    fn eintr_is_retried_other_errors_are_not() {
        let mut calls = 0;
        let r = retry_eintr(|| {
            calls += 1;
            if calls < 5 {
                Err(Errno::EINTR)
            } else {
                Ok(calls)
            }
        });
        assert_eq!(r, Ok(5));
        let mut calls = 0;
        let r: nix::Result<()> = retry_eintr(|| {
            calls += 1;
            Err(Errno::EAGAIN)
        });
        assert_eq!((r, calls), (Err(Errno::EAGAIN), 1));
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(b in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_stats_cpu(&b, 1, &mut CtTable::new(CpuIds::Kernel));
        }
    }
}
