// SPDX-License-Identifier: MIT OR Apache-2.0
//! The nfnetlink plumbing both ctnetlink readers share: the per-CPU
//! statistics dump ([`crate::kernel::netlink`]) and the table dump
//! ([`crate::kernel::ctdump`]). Message constants, the dump request, the socket,
//! and system calls that a signal does not interrupt.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    bind, recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};

/// `NFNL_SUBSYS_CTNETLINK`: the high byte of a ctnetlink message type.
pub const NFNL_SUBSYS_CTNETLINK: u16 = 1;
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
/// nfgenmsg version.
pub const NFNETLINK_V0: u8 = 0;

/// A ctnetlink dump request of `msg_type` (`IPCTNL_MSG_CT_*`):
/// nlmsghdr + nfgenmsg with family AF_UNSPEC (IPv4 and IPv6 both) and no
/// attributes.
pub fn dump_request(msg_type: u16, seq: u32) -> [u8; 20] {
    let mut m = [0u8; 20];
    m[0..4].copy_from_slice(&20u32.to_ne_bytes());
    m[4..6].copy_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | msg_type).to_ne_bytes());
    m[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    m[17] = NFNETLINK_V0;
    m
}

/// A NETLINK_NETFILTER socket in the calling thread's network namespace,
/// bound, with `req` sent on it. nfnetlink checks CAP_NET_ADMIN on the
/// send: an EPERM comes back from the first recv as NLMSG_ERROR.
pub fn open_and_send(req: &[u8]) -> nix::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )?;
    let raw = fd.as_raw_fd();
    bind(raw, &NetlinkAddr::new(0, 0))?;
    retry_eintr(|| sendto(raw, req, &NetlinkAddr::new(0, 0), MsgFlags::empty()))?;
    Ok(fd)
}

/// What an errno from a ctnetlink socket call, or from the kernel's
/// NLMSG_ERROR, means. Both readers ([`crate::kernel::netlink`] and
/// [`crate::kernel::ctdump`]) classify through [`errno_meaning`], so one errno
/// never means "not loaded" to one and "failed" to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrnoMeaning {
    /// The sender lacks CAP_NET_ADMIN in this netns: nfnetlink checks it
    /// on every message (`netlink_net_capable`), answering EPERM.
    NeedsCapNetAdmin,
    /// ctnetlink is not there: `nfnetlink_rcv_msg` refuses a message of a
    /// subsystem it has no client for with EINVAL (EOPNOTSUPP on the batch
    /// path, ENOENT where the module request failed); `socket()` fails
    /// with EPROTONOSUPPORT without nfnetlink and EAFNOSUPPORT without
    /// netlink itself.
    Unavailable,
    /// No answer within the socket's receive timeout.
    Timeout,
    /// Anything else: a real failure.
    Other,
}

/// Classify `errno` (a positive error number, `None` for an error that
/// carries none). Pure.
pub fn errno_meaning(errno: Option<i32>) -> ErrnoMeaning {
    match errno.map(Errno::from_raw) {
        Some(Errno::EPERM | Errno::EACCES) => ErrnoMeaning::NeedsCapNetAdmin,
        Some(
            Errno::EINVAL
            | Errno::EOPNOTSUPP
            | Errno::ENOENT
            | Errno::EPROTONOSUPPORT
            | Errno::EAFNOSUPPORT,
        ) => ErrnoMeaning::Unavailable,
        Some(Errno::EAGAIN) => ErrnoMeaning::Timeout,
        _ => ErrnoMeaning::Other,
    }
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
        for e in [EPERM, EACCES] {
            assert_eq!(errno_meaning(Some(e)), ErrnoMeaning::NeedsCapNetAdmin);
        }
        for e in [EINVAL, EOPNOTSUPP, ENOENT, EPROTONOSUPPORT, EAFNOSUPPORT] {
            assert_eq!(errno_meaning(Some(e)), ErrnoMeaning::Unavailable, "{e}");
        }
        assert_eq!(errno_meaning(Some(EAGAIN)), ErrnoMeaning::Timeout);
        for e in [EIO, ENOBUFS, EBADF, 0, -1, i32::MAX] {
            assert_eq!(errno_meaning(Some(e)), ErrnoMeaning::Other, "{e}");
        }
        assert_eq!(errno_meaning(None), ErrnoMeaning::Other);
    }
}
