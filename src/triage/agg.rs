// SPDX-License-Identifier: MIT OR Apache-2.0
//! The table aggregation: dump entries grouped while they stream, by
//! protocol and original destination port, by state, by source prefix, by
//! NAT, by zone and by mark. Each dimension keeps at most [`GROUP_CAP`]
//! distinct groups; entries of groups first seen after that are counted as
//! "other", so memory does not grow with the table. Nothing is allocated
//! per entry: keys are fixed-size values.
//!
//! Pure: entries in, groups and advice out. `top` prints it; the
//! watchdog's triage summarises it.

use std::collections::{hash_map::RandomState, HashMap};
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use crate::kernel::ctdump::{Entry, IPS_ASSURED, IPS_DST_NAT, IPS_SEEN_REPLY, IPS_SRC_NAT};

/// Distinct groups kept per dimension.
pub const GROUP_CAP: usize = 4096;

/// A grouping dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dim {
    /// Protocol and original destination port.
    Dport,
    /// Unreplied / replied / assured, or the TCP state.
    State,
    /// Original source address, as a prefix.
    Source,
    /// DNAT (with its target) / SNAT / none.
    Nat,
    /// Conntrack zone.
    Zone,
    /// Connection mark.
    Mark,
}

impl Dim {
    /// A `--by` key.
    pub fn parse(s: &str) -> Option<Dim> {
        Some(match s {
            "dport" | "port" => Dim::Dport,
            "state" => Dim::State,
            "source" | "src" => Dim::Source,
            "nat" => Dim::Nat,
            "zone" => Dim::Zone,
            "mark" => Dim::Mark,
            _ => return None,
        })
    }

    /// The column title.
    pub fn title(self) -> &'static str {
        match self {
            Dim::Dport => "PROTO/DPORT",
            Dim::State => "STATE",
            Dim::Source => "SOURCE",
            Dim::Nat => "NAT",
            Dim::Zone => "ZONE",
            Dim::Mark => "MARK",
        }
    }
}

/// A fast seeded hasher for the small fixed-size keys: the dump's per-entry
/// budget is about a microsecond of kernel time, and SipHash on six keys
/// would be a visible share of it. The per-process random seed and the
/// group cap keep crafted collisions from costing more than a bounded map.
#[derive(Clone, Copy)]
struct Seeded(u64);

impl BuildHasher for Seeded {
    type Hasher = Fold;
    fn build_hasher(&self) -> Fold {
        Fold(self.0)
    }
}

struct Fold(u64);

impl Fold {
    #[inline]
    fn mix(&mut self, v: u64) {
        let r = u128::from(self.0 ^ v) * 0x9e37_79b9_7f4a_7c15_u128;
        self.0 = (r as u64) ^ ((r >> 64) as u64);
    }
}

macro_rules! mix_ints {
    ($($name:ident: $t:ty),*) => {$(
        fn $name(&mut self, v: $t) {
            self.mix(v as u64);
        }
    )*};
}

impl Hasher for Fold {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
    }
    // Each integer is one mix, not a byte slice through `write`.
    mix_ints!(write_u8: u8, write_u16: u16, write_u32: u32, write_u64: u64, write_usize: usize);
    fn finish(&self) -> u64 {
        let r = u128::from(self.0) * 0xa076_1d64_78bd_642f_u128;
        (r as u64) ^ ((r >> 64) as u64)
    }
}

/// A map that keeps at most `cap` keys; later keys share one "other" slot.
#[derive(Clone)]
struct Bounded<K, V> {
    map: HashMap<K, V, Seeded>,
    other: V,
    cap: usize,
}

impl<K: Hash + Eq + Copy, V: Default> Bounded<K, V> {
    fn new(cap: usize, hasher: Seeded) -> Self {
        Bounded {
            map: HashMap::with_hasher(hasher),
            other: V::default(),
            cap,
        }
    }

    #[inline]
    fn slot(&mut self, k: K) -> &mut V {
        if self.map.len() >= self.cap && !self.map.contains_key(&k) {
            return &mut self.other;
        }
        self.map.entry(k).or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct PortKey {
    proto: u8,
    port: u16,
}

/// Per port: the state mix and how much of it is DNATed, for the advice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PortStats {
    /// Entries.
    pub count: u64,
    /// No reply seen.
    pub unreplied: u64,
    /// Not ASSURED (unreplied included).
    pub unassured: u64,
    /// DNATed.
    pub dnat: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum StateKey {
    Unreplied,
    Replied,
    Assured,
    Tcp(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct AddrKey {
    family: u8,
    addr: [u8; 16],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct NatKey {
    dnat: bool,
    snat: bool,
    family: u8,
    to: [u8; 16],
    to_port: u16,
    proto: u8,
    snat_to: [u8; 16],
}

/// The running aggregation: fixed memory per dimension, no per-entry
/// allocation once a group exists.
#[derive(Clone)]
pub struct Aggregator {
    prefix4: u8,
    prefix6: u8,
    total: u64,
    unreplied: u64,
    dport: Bounded<PortKey, PortStats>,
    state: Bounded<StateKey, u64>,
    source: Bounded<AddrKey, u64>,
    nat: Bounded<NatKey, u64>,
    zone: Bounded<u16, u64>,
    mark: Bounded<u32, u64>,
}

fn mask(addr: &mut [u8; 16], bits: u8, width: usize) {
    let bits = usize::from(bits).min(width * 8);
    for (i, b) in addr.iter_mut().enumerate() {
        let keep = bits.saturating_sub(i * 8).min(8);
        *b &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
    }
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 33 | 132 | 136)
}

impl Aggregator {
    /// A fresh aggregation with source prefixes of these lengths.
    pub fn new(prefix4: u8, prefix6: u8, cap: usize) -> Self {
        let h = Seeded(RandomState::new().hash_one(0x5eed_u64));
        Aggregator {
            prefix4,
            prefix6,
            total: 0,
            unreplied: 0,
            dport: Bounded::new(cap, h),
            state: Bounded::new(cap, h),
            source: Bounded::new(cap, h),
            nat: Bounded::new(cap, h),
            zone: Bounded::new(cap, h),
            mark: Bounded::new(cap, h),
        }
    }

    /// Entries added.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Count one entry in every dimension.
    #[inline]
    pub fn add(&mut self, e: &Entry) {
        self.total += 1;
        let replied = e.status & IPS_SEEN_REPLY != 0;
        let assured = e.status & IPS_ASSURED != 0;
        let dnat = e.status & IPS_DST_NAT != 0;
        let snat = e.status & IPS_SRC_NAT != 0;
        self.unreplied += u64::from(!replied);

        let o = &e.orig;
        let port = if has_ports(o.proto) { o.dport } else { 0 };
        let proto = o.proto;
        let ps = self.dport.slot(PortKey { proto, port });
        ps.count += 1;
        ps.unreplied += u64::from(!replied);
        ps.unassured += u64::from(!assured);
        ps.dnat += u64::from(dnat);

        let st = match e.tcp_state {
            Some(s) if o.proto == 6 => StateKey::Tcp(s),
            _ if !replied => StateKey::Unreplied,
            _ if !assured => StateKey::Replied,
            _ => StateKey::Assured,
        };
        *self.state.slot(st) += 1;

        let (mut addr, family) = (o.src, o.family);
        match family {
            6 => mask(&mut addr, self.prefix6, 16),
            _ => mask(&mut addr, self.prefix4, 4),
        }
        *self.source.slot(AddrKey { family, addr }) += 1;

        let nk = NatKey {
            dnat,
            snat,
            family: if dnat || snat { e.reply.family } else { 0 },
            to: if dnat { e.reply.src } else { [0; 16] },
            to_port: if dnat && has_ports(e.reply.proto) {
                e.reply.sport
            } else {
                0
            },
            proto: if dnat { e.reply.proto } else { 0 },
            snat_to: if snat { e.reply.dst } else { [0; 16] },
        };
        *self.nat.slot(nk) += 1;
        *self.zone.slot(e.zone) += 1;
        *self.mark.slot(e.mark) += 1;
    }
}

// ---------------------------------------------------------------- labels

fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        2 => "igmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        33 => "dccp".into(),
        47 => "gre".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        n => format!("proto-{n}"),
    }
}

fn tcp_state_name(s: u8) -> &'static str {
    const NAMES: &str =
        "NONE SYN_SENT SYN_RECV ESTABLISHED FIN_WAIT CLOSE_WAIT LAST_ACK TIME_WAIT CLOSE SYN_SENT2";
    NAMES.split(' ').nth(usize::from(s)).unwrap_or("UNKNOWN")
}

fn addr_text(family: u8, a: &[u8; 16]) -> String {
    match family {
        6 => Ipv6Addr::from(*a).to_string(),
        _ => Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string(),
    }
}

impl PortKey {
    fn label(&self) -> String {
        match has_ports(self.proto) {
            true => format!("{}/{}", proto_name(self.proto), self.port),
            false => proto_name(self.proto),
        }
    }
}

impl StateKey {
    fn label(&self) -> String {
        match self {
            StateKey::Unreplied => "unreplied".into(),
            StateKey::Replied => "replied".into(),
            StateKey::Assured => "assured".into(),
            StateKey::Tcp(s) => format!("tcp:{}", tcp_state_name(*s)),
        }
    }
}

impl NatKey {
    fn label(&self) -> String {
        let to = addr_text(self.family, &self.to);
        let dnat = match (self.family, has_ports(self.proto)) {
            (6, true) => format!("dnat to [{to}]:{}", self.to_port),
            (_, true) => format!("dnat to {to}:{}", self.to_port),
            (_, false) => format!("dnat to {to}"),
        };
        let snat = format!("snat to {}", addr_text(self.family, &self.snat_to));
        match (self.dnat, self.snat) {
            (true, true) => format!("{dnat}, {snat}"),
            (true, false) => dnat,
            (false, true) => snat,
            (false, false) => "none".into(),
        }
    }
}

// ---------------------------------------------------------------- report

/// One group of one dimension.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// Its label, e.g. `udp/6969`, `unreplied`, `198.18.0.0/24`.
    pub key: String,
    /// Entries.
    pub count: u64,
    /// Share of all entries read, 0 to 1.
    pub share: f64,
    /// For ports: state mix and DNAT count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<PortStats>,
}

/// The top groups of one dimension.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DimReport {
    /// The dimension.
    pub by: Dim,
    /// The largest groups, largest first.
    pub groups: Vec<Group>,
    /// Distinct groups kept (at most the cap).
    pub distinct: usize,
    /// Entries in kept groups not shown.
    pub rest: u64,
    /// Entries whose group was first seen after the cap was reached.
    pub over_cap: u64,
}

/// `n` as a share of `total`, 0 to 1 (0 for an empty table).
pub fn share(n: u64, total: u64) -> f64 {
    match total {
        0 => 0.0,
        t => n as f64 / t as f64,
    }
}

fn top_of<K: Ord + Copy, V: Copy>(
    b: &Bounded<K, V>,
    n: usize,
    count: impl Fn(&V) -> u64,
    label: impl Fn(&K) -> String,
    detail: impl Fn(&V) -> Option<PortStats>,
    total: u64,
    dim: Dim,
) -> DimReport {
    let mut all: Vec<(K, V)> = b.map.iter().map(|(k, v)| (*k, *v)).collect();
    all.sort_by(|a, b| count(&b.1).cmp(&count(&a.1)).then(a.0.cmp(&b.0)));
    let shown = all.len().min(n);
    DimReport {
        by: dim,
        groups: all[..shown]
            .iter()
            .map(|(k, v)| Group {
                key: label(k),
                count: count(v),
                share: share(count(v), total),
                detail: detail(v),
            })
            .collect(),
        distinct: all.len(),
        rest: all[shown..].iter().map(|(_, v)| count(v)).sum(),
        over_cap: count(&b.other),
    }
}

impl Aggregator {
    /// The top `n` groups of `dim`.
    pub fn report(&self, dim: Dim, n: usize) -> DimReport {
        let t = self.total;
        let c = |v: &u64| *v;
        let none = |_: &u64| None;
        let port = |v: &PortStats| v.count;
        match dim {
            Dim::Dport => top_of(&self.dport, n, port, PortKey::label, |v| Some(*v), t, dim),
            Dim::State => top_of(&self.state, n, c, StateKey::label, none, t, dim),
            Dim::Source => {
                let (p4, p6) = (self.prefix4, self.prefix6);
                let label = |k: &AddrKey| match k.family {
                    6 => format!("{}/{p6}", addr_text(6, &k.addr)),
                    4 => format!("{}/{p4}", addr_text(4, &k.addr)),
                    _ => "unknown".into(),
                };
                top_of(&self.source, n, c, label, none, t, dim)
            }
            Dim::Nat => top_of(&self.nat, n, c, NatKey::label, none, t, dim),
            Dim::Zone => top_of(&self.zone, n, c, |z| format!("zone {z}"), none, t, dim),
            Dim::Mark => top_of(&self.mark, n, c, |m| format!("mark {m:#x}"), none, t, dim),
        }
    }

    /// The dimensions shown by default: zone and mark only where some
    /// entry is not in zone 0 / has a mark.
    pub fn default_dims(&self) -> Vec<Dim> {
        let mut d = vec![Dim::Dport, Dim::State, Dim::Source, Dim::Nat];
        if self.zone.map.keys().any(|z| *z != 0) || self.zone.other != 0 {
            d.push(Dim::Zone);
        }
        if self.mark.map.keys().any(|m| *m != 0) || self.mark.other != 0 {
            d.push(Dim::Mark);
        }
        d
    }
}

/// The largest group of `b` by `count`, the smallest key on a tie.
fn largest<K: Ord + Copy, V: Copy>(b: &Bounded<K, V>, count: impl Fn(&V) -> u64) -> Option<(K, V)> {
    b.map
        .iter()
        .max_by(|x, y| count(x.1).cmp(&count(y.1)).then(y.0.cmp(x.0)))
        .map(|(k, v)| (*k, *v))
}

/// "What this suggests": remedies for the patterns that have one. Pure:
/// the aggregation and the namespace's UDP timeout in, sentences out.
pub fn advise(a: &Aggregator, udp_timeout: Option<u64>) -> Vec<String> {
    let mut out = Vec::new();
    let total = a.total;
    if total < 100 {
        return out;
    }
    if let Some((k, s)) = largest(&a.dport, |s| s.count) {
        let sh = share(s.count, total);
        if k.proto == 17 && sh >= 0.5 && share(s.unassured, s.count) >= 0.8 {
            let timeout = udp_timeout
                .map(|t| format!(" (nf_conntrack_udp_timeout is {t} s here)"))
                .unwrap_or_default();
            let mut m = format!(
                "{} holds {:.0}% of the table and {:.0}% of its entries never became ASSURED \
                 ({:.0}% never saw a reply): short request/response flows that wait out the \
                 UDP timeout{timeout}. Shorter UDP timeouts free them sooner; size the table \
                 for the rate with `conntrack-guard plan --rate N`; or keep the port out of \
                 conntrack with host networking or an nftables notrack rule",
                k.label(),
                sh * 100.0,
                share(s.unassured, s.count) * 100.0,
                share(s.unreplied, s.count) * 100.0,
            );
            if s.dnat > 0 {
                let dnat = share(s.dnat, s.count) * 100.0;
                let _ = write!(
                    m,
                    ". But {dnat:.0}% of them are DNATed, and NAT needs conntrack: notrack cannot \
                     be used on this port while it is published through NAT (use host \
                     networking, shorter timeouts or a larger table)"
                );
            }
            m.push('.');
            out.push(m);
        }
    }
    if let Some((k, n)) = largest(&a.source, |n| *n) {
        let sh = share(n, total);
        if sh >= 0.5 && (a.source.map.len() > 1 || a.source.other > 0) {
            let p = if k.family == 6 { a.prefix6 } else { a.prefix4 };
            out.push(format!(
                "{}/{p} is the source of {:.0}% of the entries: one source filling the table \
                 suggests a scanner or a flood (or a proxy in front of the service); \
                 rate-limit new flows from it or block it.",
                addr_text(k.family, &k.addr),
                sh * 100.0
            ));
        }
    }
    if out.is_empty() && share(a.unreplied, total) >= 0.5 {
        out.push(format!(
            "{:.0}% of the entries never saw a reply: traffic to something that does not \
             answer, spoofed sources or a scan.",
            share(a.unreplied, total) * 100.0
        ));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kernel::ctdump::Tuple;

    pub(crate) fn udp(src: [u8; 4], dport: u16, status: u32, to: Option<[u8; 4]>) -> Entry {
        let mut s = [0; 16];
        s[..4].copy_from_slice(&src);
        let mut d = [0; 16];
        d[..4].copy_from_slice(&[198, 18, 0, 1]);
        let mut r = [0; 16];
        r[..4].copy_from_slice(&to.unwrap_or([198, 18, 0, 1]));
        Entry {
            orig: Tuple {
                family: 4,
                src: s,
                dst: d,
                proto: 17,
                sport: 40000,
                dport,
            },
            reply: Tuple {
                family: 4,
                src: r,
                dst: s,
                proto: 17,
                sport: dport,
                dport: 40000,
            },
            status: status | if to.is_some() { IPS_DST_NAT } else { 0 },
            ..Entry::default()
        }
    }

    #[test]
    fn masks_prefixes() {
        let mut a = [255u8; 16];
        mask(&mut a, 20, 4);
        assert_eq!(&a[..5], &[255, 255, 240, 0, 0]);
        let mut b = [255u8; 16];
        mask(&mut b, 64, 16);
        assert_eq!(
            b,
            [255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        let mut c = [255u8; 16];
        mask(&mut c, 32, 4);
        assert_eq!(&c[..5], &[255, 255, 255, 255, 0]);
    }

    /// 800 unanswered DNATed UDP flows to 6970 from one /24, 150 answered
    /// to 6969, 50 established TCP with a mark.
    pub(crate) fn mix() -> Aggregator {
        let mut a = Aggregator::new(24, 64, GROUP_CAP);
        for i in 0..800u32 {
            a.add(&udp([198, 18, 2, i as u8], 6970, 0, Some([198, 18, 1, 2])));
        }
        for i in 0..150u32 {
            a.add(&udp(
                [198, 18, 0, i as u8],
                6969,
                IPS_SEEN_REPLY,
                Some([198, 18, 1, 2]),
            ));
        }
        for _ in 0..50 {
            let mut e = udp([10, 0, 0, 1], 443, IPS_SEEN_REPLY | IPS_ASSURED, None);
            e.orig.proto = 6;
            e.tcp_state = Some(3);
            e.mark = 7;
            a.add(&e);
        }
        a
    }

    #[test]
    fn groups_a_known_mix() {
        let a = mix();
        let d = a.report(Dim::Dport, 10);
        let got: Vec<_> = d.groups.iter().map(|g| (g.key.as_str(), g.count)).collect();
        assert_eq!(got, [("udp/6970", 800), ("udp/6969", 150), ("tcp/443", 50)]);
        assert_eq!(d.groups[0].share, 0.8);
        let p = d.groups[0].detail.unwrap();
        assert_eq!((p.unreplied, p.unassured, p.dnat), (800, 800, 800));
        let s = a.report(Dim::State, 10);
        let got: Vec<_> = s.groups.iter().map(|g| (g.key.as_str(), g.count)).collect();
        assert_eq!(
            got,
            [
                ("unreplied", 800),
                ("replied", 150),
                ("tcp:ESTABLISHED", 50)
            ]
        );
        let src = a.report(Dim::Source, 10);
        assert_eq!(src.groups[0].key, "198.18.2.0/24");
        let nat = a.report(Dim::Nat, 10);
        let got: Vec<_> = nat
            .groups
            .iter()
            .map(|g| (g.key.as_str(), g.count))
            .collect();
        assert_eq!(
            got,
            [
                ("dnat to 198.18.1.2:6970", 800),
                ("dnat to 198.18.1.2:6969", 150),
                ("none", 50)
            ]
        );
        assert_eq!(
            a.default_dims(),
            [Dim::Dport, Dim::State, Dim::Source, Dim::Nat, Dim::Mark]
        );
        let m = a.report(Dim::Mark, 1);
        assert_eq!((m.groups[0].key.as_str(), m.rest), ("mark 0x0", 50));
    }

    #[test]
    fn advice_names_the_port_and_the_nat_caveat() {
        let adv = advise(&mix(), Some(30));
        assert_eq!(adv.len(), 2, "{adv:?}");
        assert!(adv[0].starts_with("udp/6970 holds 80%"), "{}", adv[0]);
        assert!(adv[0].contains("plan --rate") && adv[0].contains("NAT needs conntrack"));
        assert!(
            adv[1].starts_with("198.18.2.0/24 is the source of 80%"),
            "{}",
            adv[1]
        );
        // Without DNAT, no caveat; a single source alone is not a flood.
        let mut a = Aggregator::new(24, 64, GROUP_CAP);
        for _ in 0..500 {
            a.add(&udp([192, 0, 2, 1], 53, 0, None));
        }
        let adv = advise(&a, None);
        assert_eq!(adv.len(), 1, "{adv:?}");
        assert!(!adv[0].contains("NAT needs conntrack"));
        assert!(advise(&Aggregator::new(24, 64, 16), None).is_empty());
    }

    #[test]
    fn groups_beyond_the_cap_count_as_other() {
        let mut a = Aggregator::new(32, 128, 8);
        for i in 0..100u8 {
            a.add(&udp([10, 0, 0, i], 53, 0, None));
        }
        let r = a.report(Dim::Source, 3);
        assert_eq!(
            (r.distinct, r.groups.len(), r.rest, r.over_cap),
            (8, 3, 5, 92)
        );
        assert_eq!(a.source.map.len(), 8);
    }

    #[test]
    fn ipv6_sources_and_dnat_targets_print() {
        let mut e = udp([0; 4], 5353, 0, None);
        e.orig.family = 6;
        e.orig.src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9];
        e.reply.family = 6;
        e.reply.src = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        e.status = IPS_DST_NAT;
        let mut a = Aggregator::new(24, 64, 16);
        a.add(&e);
        assert_eq!(a.report(Dim::Source, 1).groups[0].key, "2001:db8:0:1::/64");
        assert_eq!(
            a.report(Dim::Nat, 1).groups[0].key,
            "dnat to [fd00::2]:5353"
        );
    }
}
