// SPDX-License-Identifier: MIT OR Apache-2.0
//! `conntrack-guard top`: who is filling the table.
//!
//! One ctnetlink dump of a namespace's table ([`crate::kernel::ctdump`]), grouped
//! while it streams: by protocol and original destination port, by state,
//! by source prefix, by NAT, by zone and by mark. Each dimension keeps at
//! most [`GROUP_CAP`] distinct groups; entries of groups first seen after
//! that are counted as "other", so memory does not grow with the table.
//! Nothing is allocated per entry: keys are fixed-size values.
//!
//! The same aggregation feeds the watchdog's automatic triage through
//! [`Triage::start`] / [`Triage::poll`], which run it on their own thread
//! with a deadline so the sampling loop keeps its sd_notify ping.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hash, Hasher};
use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::exit;
use crate::kernel::ctdump::IPS_SRC_NAT;
use crate::kernel::ctdump::{
    self, DumpError, End, Entry, IPS_ASSURED, IPS_DST_NAT, IPS_SEEN_REPLY,
};
use crate::kernel::nsenter::{self, NetnsError};
use crate::sysroot::SysRoot;

/// Distinct groups kept per dimension.
pub const GROUP_CAP: usize = 4096;
/// Default time bound of one dump.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// `conntrack-guard top --help`.
pub const HELP: &str = "\
conntrack-guard top - who is filling the conntrack table

USAGE:
    conntrack-guard [--config PATH] top [--by KEY]... [-n N] [--json]
                        [--netns PATH] [--timeout DUR] [--prefix V4LEN[,V6LEN]]

Reads the table once over ctnetlink (IPv4 and IPv6) and groups the entries
as they stream. The table keeps changing while it is read: the figures are
a snapshot of a moving target, and the header shows the kernel's own count
before and after the read.

OPTIONS:
    --by KEY        Group by KEY (repeatable, or comma-separated): dport,
                    state, source, nat, zone, mark. Default: dport, state,
                    source, nat, and zone/mark when any entry has one.
    -n N            Show the N largest groups of each kind (default 10)
    --json          Machine-readable output
    --netns PATH    Read the table of another network namespace, e.g.
                    /run/netns/NAME, /proc/PID/ns/net, /run/docker/netns/ID;
                    `all`: every namespace at or above the warning level
                    (the fullest alone when none is), fullest first
                    (needs root)
    --timeout DUR   Bound on the read (default 5s); a cut-short read is
                    reported as partial
    --prefix V4LEN[,V6LEN]
                    Source prefix lengths (default 24,64)

EXIT STATUS:
    0   complete read
    1   partial read (time bound, interrupted dump) or runtime failure
    2   usage error, or PATH is not a network namespace
    69  ctnetlink unavailable (nf_conntrack_netlink absent)
    77  permission denied (needs CAP_NET_ADMIN; --netns needs root)
    78  invalid configuration (the warning level of `--netns all`
        comes from it), or a `--config` file that cannot be read
";

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
    fn parse(s: &str) -> Option<Dim> {
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

    fn title(self) -> &'static str {
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

/// Parsed `top` options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Requested dimensions; empty means the default set.
    pub by: Vec<Dim>,
    /// Groups shown per dimension.
    pub n: usize,
    /// `--json`.
    pub json: bool,
    /// `--netns`.
    pub netns: Option<PathBuf>,
    /// `--timeout`.
    pub timeout: Duration,
    /// IPv4 source prefix length.
    pub prefix4: u8,
    /// IPv6 source prefix length.
    pub prefix6: u8,
    /// `--config` given after `top` (the global one also counts).
    pub config: Option<PathBuf>,
    /// `--help`.
    pub help: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            by: Vec::new(),
            n: 10,
            json: false,
            netns: None,
            timeout: DEFAULT_TIMEOUT,
            prefix4: 24,
            prefix6: 64,
            config: None,
            help: false,
        }
    }
}

/// Parse the arguments after `top`.
pub fn parse_args(args: &[OsString]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(raw) = it.next() {
        // --netns keeps its path as OsString; everything else is text.
        let a = raw.to_string_lossy();
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with('-') => (n.to_string(), Some(v.to_string())),
            _ => (a.to_string(), None),
        };
        let value = |it: &mut std::slice::Iter<OsString>| -> Result<OsString, String> {
            match &inline {
                Some(v) => Ok(OsString::from(v)),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value")),
            }
        };
        match name.as_str() {
            "-h" | "--help" => o.help = true,
            "--json" => o.json = true,
            "--config" => o.config = Some(PathBuf::from(value(&mut it)?)),
            "--by" => {
                for k in value(&mut it)?.to_string_lossy().split(',') {
                    let d = Dim::parse(k.trim()).ok_or_else(|| {
                        format!("--by: unknown key {k:?} (dport, state, source, nat, zone, mark)")
                    })?;
                    if !o.by.contains(&d) {
                        o.by.push(d);
                    }
                }
            }
            "-n" | "--top" => {
                let v = value(&mut it)?.to_string_lossy().into_owned();
                o.n = match v.parse::<usize>() {
                    Ok(n) if (1..=GROUP_CAP).contains(&n) => n,
                    _ => return Err(format!("-n: expected 1 to {GROUP_CAP}, got {v:?}")),
                };
            }
            "--netns" => {
                // A separate argument keeps its bytes (paths need not be
                // UTF-8); only `--netns=PATH` goes through lossy text.
                let v = value(&mut it)?;
                if v.is_empty() {
                    return Err("--netns needs a path".into());
                }
                o.netns = Some(PathBuf::from(v));
            }
            "--timeout" => {
                let v = value(&mut it)?.to_string_lossy().into_owned();
                let d = crate::config::parse_duration(&v).map_err(|e| format!("--timeout: {e}"))?;
                if d < Duration::from_millis(10) || d > Duration::from_secs(600) {
                    return Err("--timeout must be between 10ms and 10m".into());
                }
                o.timeout = d;
            }
            "--prefix" => {
                let v = value(&mut it)?.to_string_lossy().into_owned();
                let (v4, v6) = match v.split_once(',') {
                    Some((a, b)) => (a, Some(b)),
                    None => (v.as_str(), None),
                };
                o.prefix4 = match v4.trim().parse::<u8>() {
                    Ok(n) if n <= 32 => n,
                    _ => return Err(format!("--prefix: bad IPv4 length {v4:?} (0 to 32)")),
                };
                if let Some(v6) = v6 {
                    o.prefix6 = match v6.trim().parse::<u8>() {
                        Ok(n) if n <= 128 => n,
                        _ => return Err(format!("--prefix: bad IPv6 length {v6:?} (0 to 128)")),
                    };
                }
            }
            _ => return Err(format!("unknown option {a:?} for top")),
        }
    }
    Ok(o)
}

// ---------------------------------------------------------------- grouping

/// A fast seeded hasher for the small fixed-size keys: the dump's per-entry
/// budget is about a microsecond of kernel time, and SipHash on six keys
/// would be a visible share of it. The per-process random seed and the
/// group cap keep crafted collisions from costing more than a bounded map.
#[derive(Clone, Copy)]
struct Seeded(u64);

impl Seeded {
    fn new() -> Self {
        Seeded(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64))
    }
}

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

impl Hasher for Fold {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, v: u8) {
        self.mix(u64::from(v));
    }
    fn write_u16(&mut self, v: u16) {
        self.mix(u64::from(v));
    }
    fn write_u32(&mut self, v: u32) {
        self.mix(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.mix(v);
    }
    fn write_usize(&mut self, v: usize) {
        self.mix(v as u64);
    }
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
        let h = Seeded::new();
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
        if !replied {
            self.unreplied += 1;
        }

        let o = &e.orig;
        let port = if has_ports(o.proto) { o.dport } else { 0 };
        let ps = self.dport.slot(PortKey {
            proto: o.proto,
            port,
        });
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

        let mut addr = o.src;
        if o.family == 6 {
            mask(&mut addr, self.prefix6, 16);
        } else {
            mask(&mut addr, self.prefix4, 4);
        }
        *self.source.slot(AddrKey {
            family: o.family,
            addr,
        }) += 1;

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
    const NAMES: [&str; 10] = [
        "NONE",
        "SYN_SENT",
        "SYN_RECV",
        "ESTABLISHED",
        "FIN_WAIT",
        "CLOSE_WAIT",
        "LAST_ACK",
        "TIME_WAIT",
        "CLOSE",
        "SYN_SENT2",
    ];
    NAMES.get(usize::from(s)).copied().unwrap_or("UNKNOWN")
}

fn addr_text(family: u8, a: &[u8; 16]) -> String {
    if family == 6 {
        Ipv6Addr::from(*a).to_string()
    } else {
        Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string()
    }
}

impl PortKey {
    fn label(&self) -> String {
        if has_ports(self.proto) {
            format!("{}/{}", proto_name(self.proto), self.port)
        } else {
            proto_name(self.proto)
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
        let mut s = String::new();
        if self.dnat {
            let _ = write!(s, "dnat to ");
            match (self.family, has_ports(self.proto)) {
                (6, true) => {
                    let _ = write!(s, "[{}]:{}", addr_text(6, &self.to), self.to_port);
                }
                (f, true) => {
                    let _ = write!(s, "{}:{}", addr_text(f, &self.to), self.to_port);
                }
                (f, false) => s.push_str(&addr_text(f, &self.to)),
            }
        }
        if self.snat {
            if !s.is_empty() {
                s.push_str(", ");
            }
            let _ = write!(s, "snat to {}", addr_text(self.family, &self.snat_to));
        }
        if s.is_empty() {
            s.push_str("none");
        }
        s
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

fn share(n: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        n as f64 / total as f64
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
        match dim {
            Dim::Dport => top_of(
                &self.dport,
                n,
                |v| v.count,
                PortKey::label,
                |v| Some(*v),
                t,
                dim,
            ),
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

    fn top_port(&self) -> Option<(PortKey, PortStats)> {
        self.dport
            .map
            .iter()
            .max_by(|a, b| a.1.count.cmp(&b.1.count).then(b.0.cmp(a.0)))
            .map(|(k, v)| (*k, *v))
    }

    fn top_plain<K: Ord + Copy>(b: &Bounded<K, u64>) -> Option<(K, u64)> {
        b.map
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(k, v)| (*k, *v))
    }
}

/// "What this suggests": remedies for the patterns that have one. Pure:
/// the aggregation and the namespace's UDP timeout in, sentences out.
pub fn advise(a: &Aggregator, udp_timeout: Option<u64>) -> Vec<String> {
    let mut out = Vec::new();
    let total = a.total;
    if total < 100 {
        return out;
    }
    if let Some((k, s)) = a.top_port() {
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
                let _ = write!(
                    m,
                    ". But {:.0}% of them are DNATed, and NAT needs conntrack: notrack cannot \
                     be used on this port while it is published through NAT (use host \
                     networking, shorter timeouts or a larger table)",
                    share(s.dnat, s.count) * 100.0
                );
            }
            m.push('.');
            out.push(m);
        }
    }
    if let Some((k, n)) = Aggregator::top_plain(&a.source) {
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

/// Everything `top` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The namespace read: a path, or "current".
    pub namespace: String,
    /// True only for a dump that reached its end uninterrupted.
    pub complete: bool,
    /// Why it is partial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial: Option<String>,
    /// Entries read.
    pub total: u64,
    /// Entry messages that could not be parsed (not in `total`).
    pub malformed: u64,
    /// nf_conntrack_count before the read.
    pub count_before: Option<u64>,
    /// nf_conntrack_count after the read.
    pub count_after: Option<u64>,
    /// nf_conntrack_max.
    pub max: Option<u64>,
    /// Wall time of the read.
    pub elapsed_ms: u64,
    /// The groups, per dimension.
    pub groups: Vec<DimReport>,
    /// What the patterns suggest.
    pub advice: Vec<String>,
}

/// Why `top` could not run.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// Entering `--netns` failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The dump could not start.
    #[error(transparent)]
    Dump(#[from] DumpError),
    /// Under CONNTRACK_GUARD_ROOT there is no kernel to ask.
    #[error("top reads the kernel over netlink, which a test root (CONNTRACK_GUARD_ROOT) cannot stand in for")]
    NotHost,
    /// The triage thread ended without an answer.
    #[error("the triage thread ended without a result")]
    Lost,
}

impl TopError {
    /// The documented exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            TopError::Netns(NetnsError::Permission { .. }) => exit::NOPERM,
            TopError::Netns(NetnsError::Other { .. }) => exit::FAILURE,
            TopError::Netns(_) => exit::USAGE,
            TopError::Dump(DumpError::Permission(_)) => exit::NOPERM,
            TopError::Dump(DumpError::Unavailable(_)) | TopError::NotHost => exit::UNAVAILABLE,
            TopError::Dump(_) | TopError::Lost => exit::FAILURE,
        }
    }
}

/// One read of a namespace's table.
pub struct Collected {
    /// The groups.
    pub agg: Aggregator,
    /// How the dump ended.
    pub outcome: ctdump::Outcome,
    /// nf_conntrack_count before.
    pub count_before: Option<u64>,
    /// nf_conntrack_count after.
    pub count_after: Option<u64>,
    /// nf_conntrack_max.
    pub max: Option<u64>,
    /// nf_conntrack_udp_timeout of that namespace.
    pub udp_timeout: Option<u64>,
    /// Wall time of the dump.
    pub elapsed: Duration,
}

fn sysctl_u64(root: &SysRoot, key: &str) -> Option<u64> {
    root.read_sysctl(key).ok().flatten()?.trim().parse().ok()
}

/// Read and group the table of `netns` (or the caller's namespace), within
/// `timeout`. The sysctls are read on the same thread as the dump, so they
/// come from the same namespace.
pub fn collect(
    root: &SysRoot,
    netns: Option<&Path>,
    timeout: Duration,
    prefix4: u8,
    prefix6: u8,
) -> Result<Collected, TopError> {
    if !root.is_host() {
        return Err(TopError::NotHost);
    }
    let work = || -> Result<Collected, TopError> {
        let mut agg = Aggregator::new(prefix4, prefix6, GROUP_CAP);
        let count_before = sysctl_u64(root, "net.netfilter.nf_conntrack_count");
        let max = sysctl_u64(root, "net.netfilter.nf_conntrack_max");
        let udp_timeout = sysctl_u64(root, "net.netfilter.nf_conntrack_udp_timeout");
        let t0 = Instant::now();
        let outcome = ctdump::dump(timeout, &mut |e| agg.add(e))?;
        let elapsed = t0.elapsed();
        let count_after = sysctl_u64(root, "net.netfilter.nf_conntrack_count");
        Ok(Collected {
            agg,
            outcome,
            count_before,
            count_after,
            max,
            udp_timeout,
            elapsed,
        })
    };
    match netns {
        Some(p) => nsenter::run_in(p, work)?,
        None => work(),
    }
}

impl Collected {
    /// The report for these dimensions (empty: the default set).
    pub fn report(&self, namespace: &str, dims: &[Dim], n: usize) -> Report {
        let dims = if dims.is_empty() {
            self.agg.default_dims()
        } else {
            dims.to_vec()
        };
        let o = &self.outcome;
        let partial = match &o.end {
            End::Done if o.interrupted => Some(
                "the kernel flagged the dump as interrupted (NLM_F_DUMP_INTR): the table \
                 changed under the walk and entries may be missing or repeated"
                    .to_string(),
            ),
            End::Done => None,
            End::Timeout => Some(format!(
                "the time bound ran out after {:.1} s; only the entries read so far are counted",
                self.elapsed.as_secs_f64()
            )),
            End::Failed(e) => Some(format!("the read failed part way: {e}")),
        };
        Report {
            namespace: namespace.to_string(),
            complete: partial.is_none(),
            partial,
            total: self.agg.total,
            malformed: o.malformed,
            count_before: self.count_before,
            count_after: self.count_after,
            max: self.max,
            elapsed_ms: self.elapsed.as_millis() as u64,
            groups: dims.iter().map(|d| self.agg.report(*d, n)).collect(),
            advice: advise(&self.agg, self.udp_timeout),
        }
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "?".into(), |n| n.to_string())
}

impl Report {
    /// The human-readable report.
    pub fn text(&self) -> String {
        let mut s = self.header();
        if self.total == 0 {
            s.push_str("\nThe table is empty.\n");
            return s;
        }
        for d in &self.groups {
            d.table(&mut s, self.total);
        }
        s.push_str("\nWhat this suggests:\n");
        if self.advice.is_empty() {
            s.push_str("  no single pattern with a known remedy stands out.\n");
        }
        for a in &self.advice {
            let _ = writeln!(s, "  - {a}");
        }
        s
    }

    /// What was read, how completely, against the kernel's own count.
    fn header(&self) -> String {
        let mut s = String::new();
        let state = if self.complete { "complete" } else { "PARTIAL" };
        let _ = writeln!(
            s,
            "conntrack table of {}: {} entries read in {:.2} s ({state})",
            self.namespace,
            self.total,
            self.elapsed_ms as f64 / 1000.0
        );
        let fill = match (self.count_after, self.max) {
            (Some(c), Some(m)) if m > 0 => format!(" ({:.0}% full)", c as f64 * 100.0 / m as f64),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "kernel count {} before, {} after; max {}{fill}",
            opt(self.count_before),
            opt(self.count_after),
            opt(self.max)
        );
        let _ = writeln!(
            s,
            "The table changes while it is read: entries added or removed meanwhile may be \
             missed, so the total can differ from the kernel's count."
        );
        if let Some(p) = &self.partial {
            let _ = writeln!(s, "PARTIAL: {p}.");
        }
        if self.malformed > 0 {
            let _ = writeln!(
                s,
                "{} entries could not be parsed and are not counted.",
                self.malformed
            );
        }
        s
    }
}

impl DimReport {
    /// This dimension's table: its groups, then what is not shown.
    fn table(&self, s: &mut String, total: u64) {
        let width = self
            .groups
            .iter()
            .map(|g| g.key.len())
            .max()
            .unwrap_or(0)
            .max(self.by.title().len())
            .max(24);
        let _ = writeln!(
            s,
            "\n{:<width$}  {:>9}  {:>6}",
            self.by.title(),
            "COUNT",
            "SHARE"
        );
        for g in &self.groups {
            g.row(s, width);
        }
        if self.rest > 0 {
            let more = format!("({} more groups)", self.distinct - self.groups.len());
            let _ = writeln!(
                s,
                "{more:<width$}  {:>9}  {:>5.1}%",
                self.rest,
                share(self.rest, total) * 100.0
            );
        }
        if self.over_cap > 0 {
            let _ = writeln!(
                s,
                "{:<width$}  {:>9}  {:>5.1}%",
                format!("(other: over {GROUP_CAP} groups)"),
                self.over_cap,
                share(self.over_cap, total) * 100.0
            );
        }
    }
}

impl Group {
    /// One row, with a port's state mix when known.
    fn row(&self, s: &mut String, width: usize) {
        let _ = write!(
            s,
            "{:<width$}  {:>9}  {:>5.1}%",
            self.key,
            self.count,
            self.share * 100.0
        );
        if let Some(p) = &self.detail {
            let _ = write!(
                s,
                "  unreplied {:.0}%, not assured {:.0}%{}",
                share(p.unreplied, p.count) * 100.0,
                share(p.unassured, p.count) * 100.0,
                if p.dnat > 0 {
                    format!(", DNAT {:.0}%", share(p.dnat, p.count) * 100.0)
                } else {
                    String::new()
                }
            );
        }
        s.push('\n');
    }
}

/// `conntrack-guard top ARGS`; returns the exit code.
pub fn run(root: &SysRoot, global_config: Option<&Path>, args: &[OsString]) -> i32 {
    let o = match parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("conntrack-guard top: {e}\nTry `conntrack-guard top --help`.");
            return exit::USAGE;
        }
    };
    if o.help {
        print!("{HELP}");
        return exit::OK;
    }
    // Loaded like every other command does, so a missing `--config` file
    // is an error here too, not a silent fall back to the default file.
    let cfg = match crate::config::load(root, o.config.as_deref().or(global_config)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("conntrack-guard top: invalid configuration: {e}");
            return exit::CONFIG;
        }
    };
    if o.netns.as_deref() == Some(Path::new("all")) {
        return run_all(root, &o, cfg.watch.warn_percent);
    }
    let c = match collect(root, o.netns.as_deref(), o.timeout, o.prefix4, o.prefix6) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("conntrack-guard top: {e}");
            return e.exit_code();
        }
    };
    let ns = o.netns.as_ref().map_or_else(
        || "this network namespace".to_string(),
        |p| p.display().to_string(),
    );
    let r = c.report(&ns, &o.by, o.n);
    let text = if o.json {
        serde_json::to_string_pretty(&r).unwrap_or_default() + "\n"
    } else {
        r.text()
    };
    // EPIPE (`| head`) is a normal end for a pipe citizen.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    if r.complete {
        exit::OK
    } else {
        eprintln!(
            "conntrack-guard top: partial result: {}",
            r.partial.as_deref().unwrap_or("")
        );
        exit::FAILURE
    }
}

// ---------------------------------------------------------------- triage

/// The largest group of one dimension.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Top {
    /// Its label.
    pub key: String,
    /// Entries.
    pub count: u64,
    /// Share of the entries read, 0 to 1.
    pub share: f64,
}

/// What the watchdog logs when the table fills: who fills it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TriageSummary {
    /// Entries read.
    pub total: u64,
    /// False when the dump was cut short or interrupted.
    pub complete: bool,
    /// Largest protocol/port group.
    pub top_dport: Option<Top>,
    /// Largest state group.
    pub top_state: Option<Top>,
    /// Largest source prefix.
    pub top_source: Option<Top>,
    /// One line for a person.
    pub message: String,
}

impl Collected {
    /// The triage summary of this read.
    pub fn summary(&self) -> TriageSummary {
        let r = self.report("", &[Dim::Dport, Dim::State, Dim::Source], 1);
        let top = |i: usize| {
            r.groups[i].groups.first().map(|g| Top {
                key: g.key.clone(),
                count: g.count,
                share: g.share,
            })
        };
        let (d, st, src) = (top(0), top(1), top(2));
        let mut m = format!("{} entries read", r.total);
        if !r.complete {
            m.push_str(" (partial)");
        }
        for (what, t) in [("port", &d), ("state", &st), ("source", &src)] {
            if let Some(t) = t {
                let _ = write!(m, "; top {what} {} {:.0}%", t.key, t.share * 100.0);
            }
        }
        if let Some(a) = r.advice.first() {
            let _ = write!(m, ". Suggests: {a}");
        }
        TriageSummary {
            total: r.total,
            complete: r.complete,
            top_dport: d,
            top_state: st,
            top_source: src,
            message: m,
        }
    }
}

/// One namespace `--netns all` may read: its inode, owner, fill percent
/// and the file to enter it by.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// nsfs inode.
    pub inode: u64,
    /// Owner label (`docker web`).
    pub label: String,
    /// count / max, percent.
    pub percent: f64,
    /// The namespace file.
    pub enter: PathBuf,
}

/// `--netns all`: every namespace at or above the warning level, fullest
/// first; when none is, the fullest one alone. Pure.
pub fn pick(mut all: Vec<Candidate>, warn_percent: f64) -> Vec<Candidate> {
    all.sort_by(|a, b| b.percent.total_cmp(&a.percent));
    let hot = all.iter().take_while(|c| c.percent >= warn_percent).count();
    all.truncate(hot.max(1));
    all
}

/// `top --netns all`: scan the namespaces, read the fill of each, and run
/// the aggregation in the fullest, or in each above the warning level.
fn run_all(root: &SysRoot, o: &Options, warn: f64) -> i32 {
    let found = crate::netns::scan(root);
    let samples = crate::netns::sample::sample_all(&found);
    let all: Vec<Candidate> = found
        .iter()
        .zip(samples)
        .filter_map(|(ns, s)| {
            let s = s.ok()?;
            Some(Candidate {
                inode: ns.inode,
                label: ns.owner.label(),
                percent: s.count as f64 * 100.0 / s.max.max(1) as f64,
                enter: ns.enter.clone(),
            })
        })
        .collect();
    if all.is_empty() {
        eprintln!("conntrack-guard top: no network namespace could be read (needs root)");
        return exit::NOPERM;
    }
    let mut code = exit::OK;
    let mut reports = Vec::new();
    let mut text = String::new();
    for c in pick(all, warn) {
        let title = format!("netns {} ({}, {:.1}% full)", c.inode, c.label, c.percent);
        match collect(root, Some(&c.enter), o.timeout, o.prefix4, o.prefix6) {
            Ok(col) => {
                let r = col.report(&title, &o.by, o.n);
                if !r.complete {
                    code = code.max(exit::FAILURE);
                }
                text.push_str(&r.text());
                text.push('\n');
                reports.push(r);
            }
            Err(e) => {
                eprintln!("conntrack-guard top: {title}: {e}");
                // ctnetlink missing is the kernel's, not one namespace's:
                // 69 as for one namespace. Anything else (most often a
                // namespace gone between the scan and the read) is 1.
                code = match e.exit_code() {
                    exit::UNAVAILABLE => exit::UNAVAILABLE,
                    _ if code == exit::UNAVAILABLE => code,
                    _ => code.max(exit::FAILURE),
                };
            }
        }
    }
    let out = if o.json {
        serde_json::to_string_pretty(&reports).unwrap_or_default() + "\n"
    } else {
        text
    };
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    code
}

/// Run the aggregation once with a deadline and summarise it.
pub fn triage(
    root: &SysRoot,
    netns: Option<&Path>,
    timeout: Duration,
) -> Result<TriageSummary, TopError> {
    Ok(collect(root, netns, timeout, 24, 64)?.summary())
}

/// A triage running on its own thread, so the watchdog loop keeps
/// sampling and pinging sd_notify while the table is read.
pub struct Triage {
    rx: mpsc::Receiver<Result<TriageSummary, TopError>>,
    done: bool,
}

impl Triage {
    /// Start a triage of `netns` (or the watchdog's own namespace) bounded
    /// by `timeout`. The thread ends on its own when the dump does.
    pub fn start(root: SysRoot, netns: Option<PathBuf>, timeout: Duration) -> Triage {
        let (tx, rx) = mpsc::channel();
        // A thread that cannot start drops `tx`, and poll reports Lost.
        let _ = std::thread::Builder::new()
            .name("ctg-triage".into())
            .spawn(move || {
                let _ = tx.send(triage(&root, netns.as_deref(), timeout));
            });
        Triage { rx, done: false }
    }

    /// Non-blocking: `None` while it runs (and after the result was
    /// taken); `Some` exactly once with the result.
    pub fn poll(&mut self) -> Option<Result<TriageSummary, TopError>> {
        if self.done {
            return None;
        }
        let r = match self.rx.try_recv() {
            Ok(r) => r,
            Err(mpsc::TryRecvError::Empty) => return None,
            Err(mpsc::TryRecvError::Disconnected) => Err(TopError::Lost),
        };
        self.done = true;
        Some(r)
    }

    /// True once the result was taken.
    pub fn finished(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn netns_all_picks_the_hot_ones_or_the_fullest() {
        let c = |inode: u64, percent: f64| Candidate {
            inode,
            label: format!("netns n{inode}"),
            percent,
            enter: PathBuf::from(format!("/run/netns/n{inode}")),
        };
        let got = pick(vec![c(1, 10.0), c(2, 96.0), c(3, 85.0), c(4, 79.9)], 80.0);
        assert_eq!(got.iter().map(|c| c.inode).collect::<Vec<_>>(), vec![2, 3]);
        let got = pick(vec![c(1, 10.0), c(2, 30.0)], 80.0);
        assert_eq!(got.iter().map(|c| c.inode).collect::<Vec<_>>(), vec![2]);
        assert!(pick(Vec::new(), 80.0).is_empty());
    }

    use super::*;
    use crate::kernel::ctdump::Tuple;

    fn os(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    fn udp(src: [u8; 4], dport: u16, status: u32, to: Option<[u8; 4]>) -> Entry {
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
    fn parses_options() {
        let o = parse_args(&os(&[
            "--by",
            "dport,state",
            "--by=nat",
            "-n",
            "3",
            "--json",
            "--netns",
            "/run/netns/x",
            "--timeout",
            "2s",
            "--prefix",
            "16,48",
        ]))
        .unwrap();
        assert_eq!(o.by, vec![Dim::Dport, Dim::State, Dim::Nat]);
        assert_eq!((o.n, o.json, o.prefix4, o.prefix6), (3, true, 16, 48));
        assert_eq!(o.netns, Some(PathBuf::from("/run/netns/x")));
        assert_eq!(o.timeout, Duration::from_secs(2));
        assert_eq!(parse_args(&[]).unwrap(), Options::default());
        for bad in [
            &["--by", "colour"][..],
            &["-n", "0"],
            &["-n"],
            &["--prefix", "33"],
            &["--prefix", "24,129"],
            &["--timeout", "1h"],
            &["--netns", ""],
            &["extra"],
        ] {
            assert!(parse_args(&os(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ctnetlink_unavailable_is_69_whatever_the_errno() {
        use nix::libc::*;
        let code = |errno| {
            TopError::Dump(DumpError::from_errno(std::io::Error::from_raw_os_error(
                errno,
            )))
            .exit_code()
        };
        for errno in [EINVAL, EOPNOTSUPP, ENOENT, EPROTONOSUPPORT, EAFNOSUPPORT] {
            assert_eq!(code(errno), exit::UNAVAILABLE, "errno {errno}");
        }
        assert_eq!(code(EPERM), exit::NOPERM);
        assert_eq!(code(EIO), exit::FAILURE);
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

    fn mix() -> Aggregator {
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

    #[test]
    fn partial_is_never_complete() {
        let c = Collected {
            agg: mix(),
            outcome: ctdump::Outcome {
                entries: 1000,
                malformed: 0,
                interrupted: false,
                end: End::Timeout,
            },
            count_before: Some(1000),
            count_after: Some(1000),
            max: Some(4000),
            udp_timeout: Some(30),
            elapsed: Duration::from_secs(5),
        };
        let r = c.report("x", &[], 10);
        assert!(!r.complete);
        assert!(r.text().contains("PARTIAL"));
        let s = c.summary();
        assert!(
            !s.complete && s.message.contains("(partial)"),
            "{}",
            s.message
        );
        assert_eq!(s.top_dport.as_ref().unwrap().key, "udp/6970");
        assert_eq!(s.top_state.as_ref().unwrap().share, 0.8);
        let mut c = c;
        c.outcome.end = End::Done;
        c.outcome.interrupted = true;
        assert!(!c.report("x", &[], 10).complete);
        c.outcome.interrupted = false;
        let r = c.report("x", &[], 10);
        assert!(r.complete && r.partial.is_none());
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["groups"][0]["by"], "dport");
        assert_eq!(j["groups"][0]["groups"][0]["count"], 800);
    }

    #[test]
    fn triage_under_a_test_root_reports_not_host() {
        let mut t = Triage::start(SysRoot::at("/nonexistent"), None, Duration::from_secs(1));
        let t0 = Instant::now();
        let r = loop {
            if let Some(r) = t.poll() {
                break r;
            }
            assert!(t0.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(matches!(r, Err(TopError::NotHost)));
        assert!(t.poll().is_none() && t.finished());
    }
}
