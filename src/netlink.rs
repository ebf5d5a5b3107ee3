// SPDX-License-Identifier: MIT OR Apache-2.0
//! The per-CPU conntrack counters over ctnetlink, for kernels built without
//! `CONFIG_NF_CONNTRACK_PROCFS`. This is the request `conntrack -S` sends:
//! `IPCTNL_MSG_CT_GET_STATS_CPU` as a dump on a NETLINK_NETFILTER socket,
//! answered with one message per CPU carrying `CTA_STATS_*` u32 attributes
//! in network byte order. nfnetlink requires CAP_NET_ADMIN for every request,
//! so an unprivileged watchdog gets EPERM here and says so once.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{
    bind, recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr,
    SockFlag, SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

use crate::stats::Counters;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET_STATS_CPU: u16 = 4;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NFNETLINK_V0: u8 = 0;
// enum ctattr_stats_cpu in include/uapi/linux/netfilter/nfnetlink_conntrack.h
const CTA_STATS_INSERT_FAILED: u16 = 9;
const CTA_STATS_DROP: u16 = 10;
const CTA_STATS_EARLY_DROP: u16 = 11;
const CTA_STATS_CLASH_RESOLVE: u16 = 14;

/// Dump the per-CPU stats and sum them.
pub fn stats_cpu() -> io::Result<Counters> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )?;
    let raw = fd.as_raw_fd();
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &TimeVal::from(libc_timeval(Duration::from_secs(1))),
    )?;
    bind(raw, &NetlinkAddr::new(0, 0))?;
    let seq: u32 = 1;
    sendto(
        raw,
        &request(seq),
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut sum = Counters {
        clashres: Some(0),
        ..Counters::default()
    };
    let mut buf = vec![0u8; 64 * 1024];
    // A dump of one message per possible CPU fits in a few reads; the bound
    // keeps a misbehaving peer from holding the sampler.
    for _ in 0..4096 {
        let n = recv(raw, &mut buf, MsgFlags::empty())?;
        if parse_messages(&buf[..n], seq, &mut sum)? {
            return Ok(sum);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "ctnetlink dump did not end",
    ))
}

fn libc_timeval(d: Duration) -> nix::libc::timeval {
    nix::libc::timeval {
        tv_sec: d.as_secs() as _,
        tv_usec: d.subsec_micros() as _,
    }
}

/// The request: nlmsghdr + nfgenmsg, no attributes.
pub fn request(seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(20);
    m.extend_from_slice(&20u32.to_ne_bytes());
    m.extend_from_slice(
        &((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET_STATS_CPU).to_ne_bytes(),
    );
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family AF_UNSPEC, version, res_id (big endian).
    m.extend_from_slice(&[0, NFNETLINK_V0, 0, 0]);
    m
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(i..i + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
}
fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Parse one datagram of netlink messages into `sum`. Returns true at
/// NLMSG_DONE. Bounds-checked throughout: the input is the kernel's, but a
/// parser must not trust lengths.
pub fn parse_messages(mut b: &[u8], seq: u32, sum: &mut Counters) -> io::Result<bool> {
    while b.len() >= 16 {
        let len = u32_at(b, 0).ok_or_else(|| bad("short header"))? as usize;
        let ty = u16_at(b, 4).ok_or_else(|| bad("short header"))?;
        let mseq = u32_at(b, 8).ok_or_else(|| bad("short header"))?;
        if len < 16 || len > b.len() {
            return Err(bad("netlink message length out of bounds"));
        }
        let msg = &b[..len];
        if mseq == seq {
            match ty {
                NLMSG_DONE => return Ok(true),
                NLMSG_ERROR => {
                    // The kernel sends -errno; i32::MIN has no positive
                    // counterpart and is garbage, not an errno (found by
                    // cargo-fuzz).
                    match u32_at(msg, 16).map(|e| (e as i32).checked_neg()) {
                        Some(Some(0)) | None => {}
                        Some(Some(errno)) => return Err(io::Error::from_raw_os_error(errno)),
                        Some(None) => return Err(bad("netlink error code out of range")),
                    }
                }
                _ => parse_attrs(&msg[16.min(len)..], sum),
            }
        }
        let step = (len + 3) & !3;
        b = b.get(step..).unwrap_or(&[]);
    }
    Ok(false)
}

fn parse_attrs(payload: &[u8], sum: &mut Counters) {
    // Skip the 4-byte nfgenmsg.
    let mut a = payload.get(4..).unwrap_or(&[]);
    while a.len() >= 4 {
        let (Some(alen), Some(aty)) = (u16_at(a, 0), u16_at(a, 2)) else {
            break;
        };
        let alen = alen as usize;
        if alen < 4 || alen > a.len() {
            break;
        }
        if alen >= 8 {
            let v = u64::from(u32::from_be_bytes([a[4], a[5], a[6], a[7]]));
            match aty & 0x3fff {
                CTA_STATS_DROP => sum.drop += v,
                CTA_STATS_EARLY_DROP => sum.early_drop += v,
                CTA_STATS_INSERT_FAILED => sum.insert_failed += v,
                CTA_STATS_CLASH_RESOLVE => {
                    if let Some(c) = sum.clashres.as_mut() {
                        *c += v
                    }
                }
                _ => {}
            }
        }
        let step = (alen + 3) & !3;
        a = a.get(step..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        body.extend(attr(CTA_STATS_DROP, 7));
        body.extend(attr(CTA_STATS_EARLY_DROP, 2));
        body.extend(attr(CTA_STATS_INSERT_FAILED, 1));
        let mut dgram = msg(0x104, 1, &body);
        dgram.extend(msg(0x104, 1, &body));
        let mut sum = Counters {
            clashres: Some(0),
            ..Counters::default()
        };
        assert!(!parse_messages(&dgram, 1, &mut sum).unwrap());
        assert_eq!((sum.drop, sum.early_drop, sum.insert_failed), (14, 4, 2));
        assert!(parse_messages(&msg(NLMSG_DONE, 1, &[0; 4]), 1, &mut sum).unwrap());
    }

    #[test]
    fn error_message_maps_errno() {
        let e = parse_messages(
            &msg(NLMSG_ERROR, 1, &(-1i32).to_ne_bytes()),
            1,
            &mut Counters::default(),
        )
        .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(1));
    }

    #[test]
    fn error_code_i32_min_is_bad_data_not_a_panic() {
        // The cargo-fuzz reproducer: NLMSG_ERROR carrying 0x80000000.
        let e = parse_messages(
            &msg(NLMSG_ERROR, 1, &0x8000_0000u32.to_ne_bytes()),
            1,
            &mut Counters::default(),
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(b in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_messages(&b, 1, &mut Counters::default());
        }
    }
}
