// SPDX-License-Identifier: MIT OR Apache-2.0
//! The nfnetlink plumbing both ctnetlink readers share, written once: the
//! socket, the dump loop, the message walker and the errno mapping. The
//! per-CPU statistics ([`crate::kernel::netlink`]) and the table
//! ([`crate::kernel::ctdump`]) only say which dump they ask for and what a
//! data message means.
//!
//! Facts this relies on (include/uapi/linux/netlink.h, nfnetlink.c):
//! - message lengths are host endian, every message is 4-byte aligned (the
//!   last may lack its padding);
//! - nfnetlink checks CAP_NET_ADMIN on every request, against the sender at
//!   send time: EPERM comes back as an NLMSG_ERROR, not from `socket()`;
//! - a request for a subsystem with no client (`nf_conntrack_netlink` not
//!   loaded) is refused with EINVAL (EOPNOTSUPP on the batch path, ENOENT
//!   where the module request failed); without nfnetlink `socket()` fails
//!   with EPROTONOSUPPORT, without netlink with EAFNOSUPPORT;
//! - the kernel fills one skb per `recv` (at most 32 KiB or a page more), so
//!   a slow reader never loses messages and 64 KiB always holds one.
//!
//! A `recv` interrupted by a signal is retried: with a receive timeout set,
//! signal(7) says `recv` returns EINTR even for handlers installed with
//! SA_RESTART, so the watchdog's own SIGHUP/SIGTERM handling would otherwise
//! turn into "counters unavailable".

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    bind, recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr,
    SockFlag, SockProtocol, SockType,
};
use nix::sys::time::{TimeVal, TimeValLike};
use NetlinkError::Malformed;

/// `NFNL_SUBSYS_CTNETLINK`: the high byte of a ctnetlink message type.
pub const NFNL_SUBSYS_CTNETLINK: u16 = 1;
/// How long a statistics dump may take before it counts as unanswered.
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// A request (nlmsghdr flags).
pub const NLM_F_REQUEST: u16 = 0x1;
/// A dump: every object, in as many messages as it takes.
pub const NLM_F_DUMP: u16 = 0x300;
/// The dump was interrupted by a change of the table under it.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// Nothing: skip.
pub const NLMSG_NOOP: u16 = 1;
/// An error (or an acknowledgement, code 0).
pub const NLMSG_ERROR: u16 = 2;
/// The end of a dump.
pub const NLMSG_DONE: u16 = 3;
/// Data lost.
pub const NLMSG_OVERRUN: u16 = 4;
/// The sequence number of every request: one request per socket.
pub const SEQ: u32 = 1;

/// Why ctnetlink gave no answer: one type, one mapping, for both readers,
/// so one errno never means "not loaded" to one and "failed" to the other.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// EPERM/EACCES: the sender lacks CAP_NET_ADMIN in this netns.
    #[error("ctnetlink needs CAP_NET_ADMIN ({0})")]
    NeedsCapNetAdmin(#[source] io::Error),
    /// The ctnetlink subsystem (or nfnetlink) is not in the kernel.
    #[error("ctnetlink is not available: nf_conntrack_netlink is not loaded or not built ({0})")]
    NotLoaded(#[source] io::Error),
    /// Not used by choice (a test root).
    #[error("ctnetlink is not used under a test root")]
    NotUsed,
    /// No answer within the time bound.
    #[error("ctnetlink did not answer within {0:?}")]
    Timeout(Duration),
    /// An answer that does not parse.
    #[error("malformed netlink answer: {0}")]
    Malformed(&'static str),
    /// Any other failure.
    #[error("ctnetlink failed: {0}")]
    Io(#[source] io::Error),
}

impl NetlinkError {
    /// Classify an error from the socket calls or the kernel's NLMSG_ERROR.
    /// Pure. EAGAIN is the socket's receive timeout.
    pub fn from_io(e: io::Error) -> Self {
        match e.raw_os_error().map(Errno::from_raw) {
            Some(Errno::EPERM | Errno::EACCES) => NetlinkError::NeedsCapNetAdmin(e),
            Some(
                Errno::EINVAL
                | Errno::EOPNOTSUPP
                | Errno::ENOENT
                | Errno::EPROTONOSUPPORT
                | Errno::EAFNOSUPPORT,
            ) => NetlinkError::NotLoaded(e),
            Some(Errno::EAGAIN) => NetlinkError::Timeout(TIMEOUT),
            _ => NetlinkError::Io(e),
        }
    }

    /// True when loading `nf_conntrack_netlink` could fix it.
    pub fn is_not_loaded(&self) -> bool {
        matches!(self, NetlinkError::NotLoaded(_))
    }
}

impl From<Errno> for NetlinkError {
    fn from(e: Errno) -> Self {
        NetlinkError::from_io(e.into())
    }
}

/// A ctnetlink dump request of `msg_type` (`IPCTNL_MSG_CT_*`):
/// nlmsghdr + nfgenmsg with family AF_UNSPEC (IPv4 and IPv6 both) and no
/// attributes.
pub fn dump_request(msg_type: u16, seq: u32) -> [u8; 20] {
    let mut m = [0u8; 20];
    m[0..4].copy_from_slice(&20u32.to_ne_bytes());
    m[4..6].copy_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | msg_type).to_ne_bytes());
    m[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nfgenmsg: AF_UNSPEC, version NFNETLINK_V0 and res_id 0 are all zero.
    m
}

/// How a dump ended.
#[derive(Debug)]
pub enum End {
    /// NLMSG_DONE: every object the kernel walked was delivered.
    Done,
    /// The time bound ran out first.
    Timeout,
    /// An error (for the table dump: after some entries were delivered).
    Failed(NetlinkError),
}

/// The receive buffer for the per-CPU statistics: a watchdog sample then
/// touches 8 KiB of heap, not 64 (issue 19's resident-memory target).
pub const BUF_STATS: usize = 8 * 1024;
/// The receive buffer for the table dump: the largest datagram a dump sends.
pub const BUF_TABLE: usize = 32 * 1024;

/// Send the ctnetlink dump request `msg_type` in the calling thread's
/// network namespace and hand every data message of the answer to
/// `on_msg(type, flags, payload)` until NLMSG_DONE, an error, or `timeout`.
/// The receive buffer of `buf_len` bytes is allocated once; nothing is
/// allocated per message. The kernel sizes each dump datagram to the
/// reader's buffer, at most 32 KiB (`netlink_recvmsg` caps
/// `max_recvmsg_len` at `SKB_WITH_OVERHEAD(32768)`), and the first one to
/// `NLMSG_GOODSIZE` (at most 8 KiB): [`BUF_STATS`] holds any statistics
/// answer and [`BUF_TABLE`] any table datagram, and a longer one is
/// reported, never cut.
pub fn dump(
    msg_type: u16,
    buf_len: usize,
    timeout: Duration,
    on_msg: &mut dyn FnMut(u16, u16, &[u8]),
) -> End {
    let deadline = Instant::now() + timeout;
    let mut run = || -> Result<End, NetlinkError> {
        // A NETLINK_NETFILTER socket in the calling thread's network
        // namespace, bound, with the request sent on it: the one socket opener.
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )?;
        let (raw, req) = (fd.as_raw_fd(), dump_request(msg_type, SEQ));
        bind(raw, &NetlinkAddr::new(0, 0))?;
        retry_eintr(|| sendto(raw, &req, &NetlinkAddr::new(0, 0), MsgFlags::empty()))?;
        let mut buf = vec![0u8; buf_len];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(End::Timeout);
            }
            // A zero SO_RCVTIMEO means "block forever": never pass one.
            let tv = TimeVal::microseconds(left.as_micros().clamp(1, i64::MAX as u128) as i64);
            setsockopt(&fd, sockopt::ReceiveTimeout, &tv)?;
            let n = match recv(raw, &mut buf, MsgFlags::MSG_TRUNC) {
                Ok(n) if n > buf.len() => {
                    Err(Malformed("netlink datagram larger than the buffer"))?
                }
                Ok(n) => n,
                Err(Errno::EAGAIN) => return Ok(End::Timeout),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            if walk(&buf[..n], SEQ, &mut *on_msg)? {
                return Ok(End::Done);
            }
        }
    };
    run().unwrap_or_else(End::Failed)
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(i..i + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
}
/// The big-endian u16 at the start of an attribute value.
pub fn be16(v: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(v.get(..2)?.try_into().ok()?))
}
/// The big-endian u32 at the start of an attribute value.
pub fn be32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

/// The one message walker: walk the messages of one datagram, calling
/// `on_msg(type, flags, payload)` for each data message of sequence `seq`
/// (messages of another sequence are skipped). Returns true at NLMSG_DONE.
/// A bad message header stops the datagram with [`NetlinkError::Malformed`];
/// an NLMSG_ERROR with a non-zero code becomes that errno, classified.
pub fn walk(
    mut b: &[u8],
    seq: u32,
    on_msg: &mut dyn FnMut(u16, u16, &[u8]),
) -> Result<bool, NetlinkError> {
    while !b.is_empty() {
        let (Some(len), Some(ty), Some(flags), Some(mseq)) =
            (u32_at(b, 0), u16_at(b, 4), u16_at(b, 6), u32_at(b, 8))
        else {
            return Err(Malformed("short netlink header"));
        };
        let len = len as usize;
        if len < 16 || len > b.len() {
            return Err(Malformed("netlink message length out of bounds"));
        }
        let msg = &b[..len];
        if mseq == seq {
            match ty {
                NLMSG_DONE => return Ok(true),
                // The kernel sends -errno; i32::MIN has no positive
                // counterpart and is garbage, not an errno (found by
                // cargo-fuzz).
                NLMSG_ERROR => match u32_at(msg, 16).map(|e| (e as i32).checked_neg()) {
                    Some(Some(0)) => {}
                    Some(Some(errno)) if errno > 0 => {
                        return Err(NetlinkError::from_io(io::Error::from_raw_os_error(errno)))
                    }
                    _ => return Err(Malformed("netlink error code out of range")),
                },
                NLMSG_NOOP => {}
                NLMSG_OVERRUN => return Err(Malformed("netlink overrun")),
                _ => on_msg(ty, flags, &msg[16..]),
            }
        }
        let step = (len + 3) & !3;
        b = b.get(step..).unwrap_or(&[]);
    }
    Ok(false)
}

/// The attribute type without its nested and byte-order flags.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Call `f` on each attribute `(type, value)` of one nesting level. `None`
/// at the first malformed header, or as soon as `f` refuses a value, so the
/// caller can reject the entry.
pub fn each_attr<'a>(
    mut b: &'a [u8],
    mut f: impl FnMut(u16, &'a [u8]) -> Option<()>,
) -> Option<()> {
    while !b.is_empty() {
        let &[l0, l1, t0, t1] = b.get(..4)? else {
            return None;
        };
        let alen = usize::from(u16::from_ne_bytes([l0, l1]));
        if alen < 4 || alen > b.len() {
            return None;
        }
        f(u16::from_ne_bytes([t0, t1]) & NLA_TYPE_MASK, &b[4..alen])?;
        b = b.get((alen + 3) & !3..).unwrap_or(&[]);
    }
    Some(())
}

/// Run `f` again while it fails with EINTR.
pub fn retry_eintr<T>(mut f: impl FnMut() -> nix::Result<T>) -> nix::Result<T> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// `recv` that a signal does not interrupt. A timeout (EAGAIN) still ends
/// it: each retry waits at most the socket's own timeout again, and a
/// signal storm is the caller's bound, not ours.
pub fn recv_retrying(fd: RawFd, buf: &mut [u8]) -> nix::Result<usize> {
    retry_eintr(|| recv(fd, buf, MsgFlags::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_request_bytes() {
        let r = dump_request(4, 7);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 20);
        assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), 0x104);
        assert_eq!(u16::from_ne_bytes(r[6..8].try_into().unwrap()), 0x301);
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 7);
        assert_eq!(&r[16..20], &[0, 0, 0, 0], "AF_UNSPEC, version 0, res_id 0");
    }

    #[test]
    fn errno_mapping() {
        use nix::libc::*;
        let kind = |e| NetlinkError::from_io(io::Error::from_raw_os_error(e));
        for e in [EPERM, EACCES] {
            assert!(matches!(kind(e), NetlinkError::NeedsCapNetAdmin(_)));
        }
        for e in [EINVAL, EOPNOTSUPP, ENOENT, EPROTONOSUPPORT, EAFNOSUPPORT] {
            assert!(kind(e).is_not_loaded(), "{e}");
        }
        assert!(matches!(kind(EAGAIN), NetlinkError::Timeout(_)));
        for e in [EIO, ENOBUFS, EBADF, 0, -1, i32::MAX] {
            assert!(matches!(kind(e), NetlinkError::Io(_)), "{e}");
        }
        let none = io::Error::other("x");
        assert!(matches!(NetlinkError::from_io(none), NetlinkError::Io(_)));
    }
}
