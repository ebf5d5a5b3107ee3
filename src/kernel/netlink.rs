// SPDX-License-Identifier: MIT OR Apache-2.0
//! The per-CPU conntrack counters over ctnetlink. This is the request
//! `conntrack -S` sends: `IPCTNL_MSG_CT_GET_STATS_CPU` as a dump on a
//! NETLINK_NETFILTER socket, answered with one message per possible CPU
//! (`ctnetlink_ct_stat_cpu_dump`: the CPU number in the nfgenmsg `res_id`,
//! big endian) carrying `CTA_STATS_*` u32 attributes in network byte order.
//!
//! Errors are typed ([`NetlinkError`]) from what the kernel answers:
//! - nfnetlink checks CAP_NET_ADMIN on every request, against the sender at
//!   send time: EPERM;
//! - no `nf_conntrack_netlink` (and the kernel could not load it): the
//!   message is refused with EINVAL by `nfnetlink_rcv_msg` (EOPNOTSUPP on
//!   the batch path); no nfnetlink at all: `socket()` fails with
//!   EPROTONOSUPPORT.
//!
//! A `recv` interrupted by a signal is retried. With a receive timeout set,
//! signal(7) says `recv` returns EINTR even for handlers installed with
//! SA_RESTART, so the watchdog's own SIGHUP/SIGTERM handling would
//! otherwise turn into "counters unavailable".

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

use crate::kernel::ctcounter::{CtCounter, CtTable};
use crate::kernel::nfnl::{self, ErrnoMeaning, NFNL_SUBSYS_CTNETLINK, NLMSG_DONE, NLMSG_ERROR};
use crate::kernel::percpu::CpuIds;

const IPCTNL_MSG_CT_GET_STATS_CPU: u16 = 4;
/// How long one dump may take before it counts as unanswered.
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// Why ctnetlink gave no statistics.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// EPERM/EACCES: the sender lacks CAP_NET_ADMIN in this netns.
    #[error("ctnetlink needs CAP_NET_ADMIN")]
    NeedsCapNetAdmin(#[source] io::Error),
    /// The ctnetlink subsystem (or nfnetlink) is not in the kernel.
    #[error("nf_conntrack_netlink is not loaded")]
    NotLoaded(#[source] io::Error),
    /// Not used by choice (a test root).
    #[error("ctnetlink is not used under a test root")]
    NotUsed,
    /// No answer within [`TIMEOUT`].
    #[error("ctnetlink did not answer within {0:?}")]
    Timeout(Duration),
    /// An answer that does not parse.
    #[error("ctnetlink answer is malformed")]
    Malformed(#[source] io::Error),
    /// Any other failure.
    #[error("ctnetlink failed")]
    Io(#[source] io::Error),
}

impl NetlinkError {
    /// Classify an error from the socket calls or the kernel's NLMSG_ERROR.
    pub fn from_io(e: io::Error) -> Self {
        match nfnl::errno_meaning(e.raw_os_error()) {
            ErrnoMeaning::NeedsCapNetAdmin => NetlinkError::NeedsCapNetAdmin(e),
            ErrnoMeaning::Unavailable => NetlinkError::NotLoaded(e),
            ErrnoMeaning::Timeout => NetlinkError::Timeout(TIMEOUT),
            ErrnoMeaning::Other if e.kind() == io::ErrorKind::InvalidData => {
                NetlinkError::Malformed(e)
            }
            ErrnoMeaning::Other => NetlinkError::Io(e),
        }
    }

    /// True when loading `nf_conntrack_netlink` could fix it.
    pub fn is_not_loaded(&self) -> bool {
        matches!(self, NetlinkError::NotLoaded(_))
    }
}

/// Whether ctnetlink answers a statistics dump here, now. `Err` says why
/// not; [`NetlinkError::is_not_loaded`] tells the apply step to load
/// `nf_conntrack_netlink`.
pub fn netlink_available() -> Result<(), NetlinkError> {
    stats_cpu_table().map(|_| ())
}

pub use crate::kernel::nfnl::{recv_retrying, retry_eintr};

/// Open a NETLINK_NETFILTER socket, send the stats dump request, and feed
/// each datagram of the answer to `handle` until it returns true.
fn exchange(mut handle: impl FnMut(&[u8], u32) -> io::Result<bool>) -> io::Result<()> {
    let seq: u32 = 1;
    let fd = nfnl::open_and_send(&request(seq))?;
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &TimeVal::from(libc_timeval(TIMEOUT)),
    )?;
    let mut buf = vec![0u8; 64 * 1024];
    // A dump of one message per possible CPU fits in a few reads; the bound
    // keeps a misbehaving peer from holding the sampler.
    for _ in 0..4096 {
        let n = recv_retrying(fd.as_raw_fd(), &mut buf)?;
        if handle(&buf[..n], seq)? {
            return Ok(());
        }
    }
    Err(bad("ctnetlink dump did not end"))
}

/// Dump the per-CPU statistics of the caller's netns.
pub fn stats_cpu_table() -> Result<CtTable, NetlinkError> {
    let mut table = CtTable::new(CpuIds::Kernel);
    exchange(|b, seq| parse_stats_cpu(b, seq, &mut table)).map_err(NetlinkError::from_io)?;
    // Every kernel has at least one possible CPU: an empty dump is not an
    // answer, and reading it as one would hide every counter.
    if table.is_empty() {
        return Err(NetlinkError::Malformed(bad("dump ended without a CPU")));
    }
    Ok(table)
}

fn libc_timeval(d: Duration) -> nix::libc::timeval {
    nix::libc::timeval {
        tv_sec: d.as_secs() as _,
        tv_usec: d.subsec_micros() as _,
    }
}

/// The request: nlmsghdr + nfgenmsg, no attributes.
pub fn request(seq: u32) -> [u8; 20] {
    nfnl::dump_request(IPCTNL_MSG_CT_GET_STATS_CPU, seq)
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

/// Parse one datagram of the stats dump into per-CPU rows of `table`.
/// Returns true at NLMSG_DONE. A message without a full nfgenmsg is
/// skipped; attributes this code does not know are ignored, and an
/// attribute the kernel does not send stays `None`.
pub fn parse_stats_cpu(b: &[u8], seq: u32, table: &mut CtTable) -> io::Result<bool> {
    const REPLY: u16 = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET_STATS_CPU;
    walk_messages(b, seq, |ty, payload| {
        let Some(res_id) = payload.get(2..4) else {
            return;
        };
        if ty != REPLY {
            return;
        }
        let row = table.row_mut(u32::from(u16::from_be_bytes([res_id[0], res_id[1]])));
        for_each_u32_attr(payload, |aty, v| {
            if let Some(c) = CtCounter::from_netlink_attr(aty) {
                row.set(c, v);
            }
        });
    })
}

/// Walk the messages of one datagram, calling `on_data(type, payload)` for
/// each data message of our sequence. Returns true at NLMSG_DONE; an
/// NLMSG_ERROR with a non-zero code becomes that errno.
fn walk_messages(mut b: &[u8], seq: u32, mut on_data: impl FnMut(u16, &[u8])) -> io::Result<bool> {
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
                _ => on_data(ty, &msg[16.min(len)..]),
            }
        }
        let step = (len + 3) & !3;
        b = b.get(step..).unwrap_or(&[]);
    }
    Ok(false)
}

/// Call `f(type, value)` for each attribute after the nfgenmsg that holds
/// at least a u32 (big endian, as `nla_put_be32` writes it).
fn for_each_u32_attr(payload: &[u8], mut f: impl FnMut(u16, u32)) {
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
            f(aty & 0x3fff, u32::from_be_bytes([a[4], a[5], a[6], a[7]]));
        }
        let step = (alen + 3) & !3;
        a = a.get(step..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;

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
        assert_eq!(e.raw_os_error(), Some(1));
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
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
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
        assert!(matches!(
            NetlinkError::from_io(e),
            NetlinkError::NeedsCapNetAdmin(_)
        ));
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
        assert!(matches!(
            NetlinkError::from_io(bad("x")),
            NetlinkError::Malformed(_)
        ));
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
