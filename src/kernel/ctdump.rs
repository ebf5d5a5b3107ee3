// SPDX-License-Identifier: MIT OR Apache-2.0
//! The conntrack table over ctnetlink, streamed: one `IPCTNL_MSG_CT_GET`
//! dump (`NLM_F_DUMP`, family AF_UNSPEC so IPv4 and IPv6 both come) of the
//! network namespace the calling thread is in, handed to a callback one
//! [`Entry`] at a time. No list of entries is ever built and nothing is
//! allocated per entry: an [`Entry`] is a fixed-size `Copy` value parsed
//! from the receive buffer, which is allocated once.
//!
//! Facts this relies on (include/uapi/linux/netfilter/nfnetlink_conntrack.h,
//! nf_conntrack_common.h); the socket, the walk and the errors are
//! [`crate::kernel::nfnl`]'s:
//! - each entry is one `IPCTNL_MSG_CT_NEW` message: nfgenmsg, then
//!   attributes; numbers are big endian, lengths host endian;
//! - the table changes while it is dumped: entries inserted or removed
//!   meanwhile may be missed, and a resize marks messages `NLM_F_DUMP_INTR`.

use std::time::Duration;

use crate::kernel::nfnl::{self, be16, be32, each_attr, NFNL_SUBSYS_CTNETLINK, NLM_F_DUMP_INTR};

pub use crate::kernel::nfnl::{End, NetlinkError};

const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;

// enum ctattr_type
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_MARK: u16 = 8;
const CTA_ZONE: u16 = 18;
// enum ctattr_tuple
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
// enum ctattr_ip
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
// enum ctattr_l4proto
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
// enum ctattr_protoinfo / ctattr_protoinfo_tcp
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;

/// `IPS_SEEN_REPLY`: a packet was seen in the reply direction.
pub const IPS_SEEN_REPLY: u32 = 1 << 1;
/// `IPS_ASSURED`: the entry is not dropped early when the table is full.
pub const IPS_ASSURED: u32 = 1 << 2;
/// `IPS_SRC_NAT`: the source was translated (SNAT, masquerade).
pub const IPS_SRC_NAT: u32 = 1 << 4;
/// `IPS_DST_NAT`: the destination was translated (DNAT, Docker's -p).
pub const IPS_DST_NAT: u32 = 1 << 5;

/// One direction of a connection. IPv4 addresses sit in the first four bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tuple {
    /// 4 or 6; 0 when the kernel sent no address.
    pub family: u8,
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// IP protocol number (6 tcp, 17 udp, ...).
    pub proto: u8,
    /// Source port (0 for protocols without ports).
    pub sport: u16,
    /// Destination port (0 for protocols without ports).
    pub dport: u16,
}

/// One conntrack entry: only what `top` groups by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    /// The original direction, as the first packet saw it.
    pub orig: Tuple,
    /// The reply direction; after DNAT its source is the translated
    /// destination.
    pub reply: Tuple,
    /// `IPS_*` status bits.
    pub status: u32,
    /// TCP state (`enum tcp_conntrack`), for TCP entries.
    pub tcp_state: Option<u8>,
    /// Conntrack zone (0 when absent).
    pub zone: u16,
    /// Connection mark (0 when absent).
    pub mark: u32,
}

/// What a dump delivered.
#[derive(Debug)]
pub struct Outcome {
    /// What the walk counted.
    pub progress: Progress,
    /// How it ended.
    pub end: End,
}

/// What the walk counted so far, across datagrams.
#[derive(Debug, Default)]
pub struct Progress {
    /// Entries handed to the callback.
    pub entries: u64,
    /// Entry messages skipped because their attributes did not parse.
    pub malformed: u64,
    /// Some message carried `NLM_F_DUMP_INTR` (the table changed under the
    /// walk in a way the kernel noticed).
    pub interrupted: bool,
}

/// Dump the table of the calling thread's network namespace, calling
/// `on_entry` for each entry, for at most `timeout`.
///
/// Errors before the first entry (socket, permission, ctnetlink absent)
/// come back as `Err`; later trouble ends the dump with [`End::Failed`] so
/// the caller keeps what it has aggregated and can say it is partial.
pub fn dump(timeout: Duration, on_entry: &mut dyn FnMut(&Entry)) -> Result<Outcome, NetlinkError> {
    let mut progress = Progress::default();
    let end = nfnl::dump(
        IPCTNL_MSG_CT_GET,
        nfnl::BUF_TABLE,
        timeout,
        &mut |ty, flags, body| on_message(ty, flags, body, &mut progress, on_entry),
    );
    match end {
        End::Failed(e) if progress.entries == 0 => Err(e),
        end => Ok(Outcome { progress, end }),
    }
}

/// Parse one datagram of netlink messages, calling `on_entry` for each
/// conntrack entry. Returns true at NLMSG_DONE. A bad message header stops
/// the datagram with an error; a bad entry is counted in `malformed` and
/// skipped.
pub fn parse_datagram(
    b: &[u8],
    seq: u32,
    p: &mut Progress,
    on_entry: &mut dyn FnMut(&Entry),
) -> Result<bool, NetlinkError> {
    nfnl::walk(b, seq, &mut |ty, flags, body| {
        on_message(ty, flags, body, p, on_entry)
    })
}

/// One data message of the dump.
fn on_message(ty: u16, flags: u16, body: &[u8], p: &mut Progress, each: &mut dyn FnMut(&Entry)) {
    p.interrupted |= flags & NLM_F_DUMP_INTR != 0;
    if ty != (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW {
        return;
    }
    match parse_entry(body) {
        Some(e) => {
            p.entries += 1;
            each(&e);
        }
        None => p.malformed += 1,
    }
}

/// Parse one entry message body (nfgenmsg + attributes). `None` when the
/// attributes are malformed or the original tuple is missing.
pub fn parse_entry(body: &[u8]) -> Option<Entry> {
    let mut e = Entry::default();
    let mut have_orig = false;
    each_attr(body.get(4..)?, |ty, v| {
        match ty {
            CTA_TUPLE_ORIG => {
                e.orig = parse_tuple(v)?;
                have_orig = true;
            }
            CTA_TUPLE_REPLY => e.reply = parse_tuple(v)?,
            CTA_STATUS => e.status = be32(v)?,
            CTA_MARK => e.mark = be32(v)?,
            CTA_ZONE => e.zone = be16(v)?,
            CTA_PROTOINFO => e.tcp_state = parse_protoinfo(v)?,
            _ => {}
        }
        Some(())
    })?;
    have_orig.then_some(e)
}

fn parse_tuple(b: &[u8]) -> Option<Tuple> {
    let mut t = Tuple::default();
    each_attr(b, |ty, v| match ty {
        CTA_TUPLE_IP => each_attr(v, |ty, v| {
            let src = matches!(ty, CTA_IP_V4_SRC | CTA_IP_V6_SRC);
            let (family, len) = match ty {
                CTA_IP_V4_SRC | CTA_IP_V4_DST => (4, 4),
                CTA_IP_V6_SRC | CTA_IP_V6_DST => (6, 16),
                _ => return Some(()),
            };
            let addr = if src { &mut t.src } else { &mut t.dst };
            addr[..len].copy_from_slice(v.get(..len)?);
            t.family = family;
            Some(())
        }),
        CTA_TUPLE_PROTO => each_attr(v, |ty, v| {
            match ty {
                CTA_PROTO_NUM => t.proto = *v.first()?,
                CTA_PROTO_SRC_PORT => t.sport = be16(v)?,
                CTA_PROTO_DST_PORT => t.dport = be16(v)?,
                _ => {}
            }
            Some(())
        }),
        _ => Some(()),
    })?;
    Some(t)
}

/// `Some(None)`: protocol info without a TCP state (SCTP, DCCP).
fn parse_protoinfo(b: &[u8]) -> Option<Option<u8>> {
    let mut state = None;
    each_attr(b, |ty, v| match ty {
        CTA_PROTOINFO_TCP => each_attr(v, |ty, v| {
            if ty == CTA_PROTOINFO_TCP_STATE {
                state = Some(*v.first()?);
            }
            Some(())
        }),
        _ => Some(()),
    })?;
    Some(state)
}

#[cfg(test)]
/// Builders for the unit tests' netlink data. Not used by the tool itself.
mod build {
    use super::*;
    use crate::kernel::nfnl::{NLMSG_DONE, NLMSG_ERROR};

    /// One attribute, padded to 4 bytes.
    pub fn attr(ty: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::with_capacity(4 + value.len() + 3);
        a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(value);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    /// A nested attribute.
    pub fn nested(ty: u16, parts: &[Vec<u8>]) -> Vec<u8> {
        attr(ty | 0x8000, &parts.concat())
    }

    /// A tuple: addresses of 4 or 16 bytes.
    pub fn tuple(ty: u16, src: &[u8], dst: &[u8], proto: u8, sport: u16, dport: u16) -> Vec<u8> {
        let (s, d) = if src.len() == 4 {
            (CTA_IP_V4_SRC, CTA_IP_V4_DST)
        } else {
            (CTA_IP_V6_SRC, CTA_IP_V6_DST)
        };
        nested(
            ty,
            &[
                nested(CTA_TUPLE_IP, &[attr(s, src), attr(d, dst)]),
                nested(
                    CTA_TUPLE_PROTO,
                    &[
                        attr(CTA_PROTO_NUM, &[proto]),
                        attr(CTA_PROTO_SRC_PORT, &sport.to_be_bytes()),
                        attr(CTA_PROTO_DST_PORT, &dport.to_be_bytes()),
                    ],
                ),
            ],
        )
    }

    /// An entry message body: nfgenmsg + attributes.
    #[allow(clippy::too_many_arguments)]
    pub fn entry_body(
        orig: Vec<u8>,
        reply: Vec<u8>,
        status: u32,
        tcp_state: Option<u8>,
        zone: u16,
        mark: u32,
    ) -> Vec<u8> {
        let mut b = vec![2, 0, 0, 0];
        b.extend(orig);
        b.extend(reply);
        b.extend(attr(CTA_STATUS, &status.to_be_bytes()));
        if let Some(s) = tcp_state {
            b.extend(nested(
                CTA_PROTOINFO,
                &[nested(
                    CTA_PROTOINFO_TCP,
                    &[attr(CTA_PROTOINFO_TCP_STATE, &[s])],
                )],
            ));
        }
        if mark != 0 {
            b.extend(attr(CTA_MARK, &mark.to_be_bytes()));
        }
        if zone != 0 {
            b.extend(attr(CTA_ZONE, &zone.to_be_bytes()));
        }
        b
    }

    /// A netlink message of type `ty` with `flags`.
    pub fn msg(ty: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    /// An entry message (IPCTNL_MSG_CT_NEW) with multipart flags.
    pub fn entry_msg(seq: u32, body: &[u8]) -> Vec<u8> {
        msg(NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW, 2, seq, body)
    }

    /// NLMSG_DONE.
    pub fn done(seq: u32) -> Vec<u8> {
        msg(NLMSG_DONE, 2, seq, &0u32.to_ne_bytes())
    }

    /// NLMSG_ERROR with `-errno`.
    pub fn error(seq: u32, errno: i32) -> Vec<u8> {
        let mut body = (-errno).to_ne_bytes().to_vec();
        body.extend_from_slice(&nfnl::dump_request(IPCTNL_MSG_CT_GET, seq)[..16]);
        msg(NLMSG_ERROR, 0, seq, &body)
    }

    /// A UDP IPv4 entry src:sport -> dst:dport, DNATed to `to` when given.
    pub fn udp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, status: u32) -> Vec<u8> {
        entry_body(
            tuple(CTA_TUPLE_ORIG, &src, &dst, 17, sport, dport),
            tuple(CTA_TUPLE_REPLY, &dst, &src, 17, dport, sport),
            status,
            None,
            0,
            0,
        )
    }

    /// The tuple attribute numbers, for callers building their own.
    pub const ORIG: u16 = CTA_TUPLE_ORIG;
    /// See [`ORIG`].
    pub const REPLY: u16 = CTA_TUPLE_REPLY;
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;
    use crate::kernel::nfnl::NLMSG_ERROR;

    fn collect(d: &[u8]) -> (Result<bool, NetlinkError>, Vec<Entry>, Progress) {
        let mut v = Vec::new();
        let mut p = Progress::default();
        let r = parse_datagram(d, 1, &mut p, &mut |e| v.push(*e));
        (r, v, p)
    }

    #[test]
    fn request_is_a_ct_get_dump_for_all_families() {
        let r = nfnl::dump_request(IPCTNL_MSG_CT_GET, 7);
        let ne16 = |i: usize| u16::from_ne_bytes([r[i], r[i + 1]]);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 20);
        assert_eq!((ne16(4), ne16(6)), (0x101, 0x301));
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 7);
        assert_eq!(r[16], 0, "AF_UNSPEC");
    }

    #[test]
    fn parses_ipv4_dnat_entry() {
        let body = entry_body(
            tuple(ORIG, &[198, 18, 0, 2], &[198, 18, 0, 1], 17, 40000, 6969),
            tuple(REPLY, &[198, 18, 1, 2], &[198, 18, 0, 2], 17, 6969, 40000),
            IPS_DST_NAT | 8,
            None,
            3,
            0x2a,
        );
        let mut d = entry_msg(1, &body);
        d.extend(done(1));
        let (r, v, p) = collect(&d);
        assert!(r.unwrap());
        assert_eq!((p.entries, p.malformed, p.interrupted), (1, 0, false));
        let e = v[0];
        assert_eq!(e.orig.family, 4);
        assert_eq!(&e.orig.src[..4], &[198, 18, 0, 2]);
        assert_eq!(
            (e.orig.proto, e.orig.sport, e.orig.dport),
            (17, 40000, 6969)
        );
        assert_eq!(&e.reply.src[..4], &[198, 18, 1, 2]);
        assert_eq!(e.status & IPS_DST_NAT, IPS_DST_NAT);
        assert_eq!((e.zone, e.mark, e.tcp_state), (3, 0x2a, None));
    }

    #[test]
    fn parses_ipv6_tcp_entry_with_state() {
        let a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let b = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let body = entry_body(
            tuple(ORIG, &a, &b, 6, 1234, 443),
            tuple(REPLY, &b, &a, 6, 443, 1234),
            IPS_SEEN_REPLY | IPS_ASSURED,
            Some(3),
            0,
            0,
        );
        let (r, v, _) = collect(&entry_msg(1, &body));
        assert!(!r.unwrap());
        assert_eq!(v[0].orig.family, 6);
        assert_eq!(v[0].orig.src, a);
        assert_eq!(v[0].tcp_state, Some(3));
    }

    #[test]
    fn dump_intr_flag_is_noticed() {
        let body = udp4([1, 2, 3, 4], 1, [5, 6, 7, 8], 53, 0);
        let m = msg(0x100, 2 | NLM_F_DUMP_INTR, 1, &body);
        let (_, v, p) = collect(&m);
        assert_eq!(v.len(), 1);
        assert!(p.interrupted);
    }

    #[test]
    fn errors_map_to_kinds() {
        let (r, _, _) = collect(&error(1, nix::libc::EPERM));
        assert!(matches!(r, Err(NetlinkError::NeedsCapNetAdmin(_))));
        let (r, _, _) = collect(&error(1, nix::libc::EOPNOTSUPP));
        assert!(matches!(r, Err(NetlinkError::NotLoaded(_))));
        let (r, _, _) = collect(&error(1, nix::libc::ENOENT));
        assert!(matches!(r, Err(NetlinkError::NotLoaded(_))));
        // What nfnetlink answers when nf_conntrack_netlink is absent; it
        // was "dump failed" (exit 1) here and "not loaded" in netlink.rs.
        let (r, _, _) = collect(&error(1, nix::libc::EINVAL));
        assert!(matches!(r, Err(NetlinkError::NotLoaded(_))));
        let (r, _, _) = collect(&error(1, nix::libc::EIO));
        assert!(matches!(r, Err(NetlinkError::Io(_))));
        let (r, _, _) = collect(&error(1, 0));
        assert!(!r.unwrap(), "an ACK is not an error");
        let (r, _, _) = collect(&msg(NLMSG_ERROR, 0, 1, &i32::MIN.to_ne_bytes()));
        assert!(matches!(r, Err(NetlinkError::Malformed(_))));
    }

    #[test]
    fn other_sequence_numbers_are_ignored() {
        let (r, v, _) = collect(&entry_msg(9, &udp4([1, 1, 1, 1], 1, [2, 2, 2, 2], 2, 0)));
        assert!(!r.unwrap());
        assert!(v.is_empty());
        let (r, _, _) = collect(&done(9));
        assert!(!r.unwrap());
    }

    #[test]
    fn truncated_message_is_an_error_not_a_panic() {
        let mut d = entry_msg(1, &udp4([1, 1, 1, 1], 1, [2, 2, 2, 2], 2, 0));
        for cut in 1..d.len() {
            let (r, _, _) = collect(&d[..cut]);
            assert!(r.is_err(), "cut at {cut}");
        }
        // A length field that overstates the datagram.
        d[0] = 0xff;
        assert!(collect(&d).0.is_err());
    }

    #[test]
    fn malformed_attributes_skip_the_entry() {
        let mut body = udp4([1, 1, 1, 1], 1, [2, 2, 2, 2], 2, 0);
        // Break the first nested attribute's length (the orig tuple).
        body[4] = 3;
        let mut d = entry_msg(1, &body);
        d.extend(entry_msg(1, &udp4([1, 1, 1, 1], 1, [2, 2, 2, 2], 2, 0)));
        let (r, v, p) = collect(&d);
        assert!(!r.unwrap());
        assert_eq!((v.len(), p.malformed), (1, 1));
        // No original tuple at all.
        let (_, v, p) = collect(&entry_msg(1, &[2, 0, 0, 0]));
        assert_eq!((v.len(), p.malformed), (0, 1));
        // Short values inside a well-formed nest.
        let bad = entry_body(
            nested(
                ORIG,
                &[nested(CTA_TUPLE_IP, &[attr(CTA_IP_V4_SRC, &[1, 2])])],
            ),
            vec![],
            0,
            None,
            0,
            0,
        );
        let (_, v, p) = collect(&entry_msg(1, &bad));
        assert_eq!((v.len(), p.malformed), (0, 1));
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(b in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let mut p = Progress::default();
            let _ = parse_datagram(&b, 1, &mut p, &mut |_| {});
            let _ = parse_entry(&b);
        }

        #[test]
        fn mutated_entries_never_panic(
            flips in proptest::collection::vec((0usize..400, proptest::num::u8::ANY), 1..8)
        ) {
            let mut d = entry_msg(1, &udp4([198, 18, 0, 2], 40000, [198, 18, 0, 1], 6969, IPS_DST_NAT));
            d.extend(done(1));
            for (i, v) in flips {
                let n = d.len();
                d[i % n] = v;
            }
            let mut p = Progress::default();
            let _ = parse_datagram(&d, 1, &mut p, &mut |_| {});
        }
    }
}
