// SPDX-License-Identifier: MIT OR Apache-2.0
//! UDP socket drops: `/proc/net/snmp` and `/proc/net/snmp6`.
//!
//! Both files belong to the reader's network namespace (`/proc/net` is
//! `/proc/self/net`), so a container's socket drops are only seen from its
//! namespace: [`read_udp_in`] takes the `net` directory to read, such as
//! `proc/<pid>/net`, or `proc/thread-self/net` for a thread that entered a
//! namespace with setns (`/proc/self` is the thread-group leader's).
//!
//! Formats (net/ipv4/proc.c `snmp_seq_show_tcp_udp`, net/ipv6/proc.c
//! `snmp6_seq_show_item`, the same from 5.10 to 6.18):
//! - snmp: pairs of lines, `Udp:` then the names from `snmp4_udp_list`, then
//!   `Udp:` and the values as `" %lu"`; the same for `UdpLite:`. Columns are
//!   found by name: `IgnoredMulti` (3.19) and `MemErrors` (5.9) were added
//!   at the end, so older kernels have fewer.
//! - snmp6: one `"%-32s\t%lu\n"` line per counter, names prefixed `Udp6` or
//!   `UdpLite6`; absent when IPv6 is disabled.
//!
//! The values are sums over CPUs of `unsigned long` per-CPU counters: 64
//! bit on 64-bit kernels, where they do not wrap. `InErrors` already counts
//! every `RcvbufErrors` (and `MemErrors`, `InCsumErrors`): never add them.

use crate::kernel::{read_parse, FileError};
use crate::sysroot::SysRoot;

/// The UDP MIB struct, its field for each kernel name and its delta,
/// from one list.
macro_rules! udp_mib {
    ($($field:ident $name:literal $doc:literal,)*) => {
        /// The UDP MIB of one protocol (Udp, UdpLite, Udp6 or UdpLite6). Each
        /// field is `None` when this kernel does not print it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
        pub struct UdpMib {
            $(#[doc = $doc] pub $field: Option<u64>,)*
        }

        impl UdpMib {
            fn slot(&mut self, name: &str) -> Option<&mut Option<u64>> {
                Some(match name {
                    $($name => &mut self.$field,)*
                    _ => return None,
                })
            }

            /// The increase of each counter since `earlier`. A counter that
            /// went down (the namespace is a new one, or a 32-bit kernel
            /// wrapped) counts from zero: an undercount, never an invented
            /// drop.
            pub fn delta_since(&self, earlier: &UdpMib) -> UdpMib {
                let d = |now: Option<u64>, then: Option<u64>| match (now, then) {
                    (Some(n), Some(t)) => Some(if n >= t { n - t } else { n }),
                    (Some(_), None) => Some(0),
                    (None, _) => None,
                };
                UdpMib { $($field: d(self.$field, earlier.$field),)* }
            }
        }
    };
}

udp_mib! {
    in_datagrams "InDatagrams" "Datagrams delivered to sockets.",
    no_ports "NoPorts" "Datagrams to a port nothing listens on.",
    in_errors "InErrors" "Datagrams dropped on receive for any reason (includes \
        `rcvbuf_errors`, `in_csum_errors` and `mem_errors`).",
    out_datagrams "OutDatagrams" "Datagrams sent.",
    rcvbuf_errors "RcvbufErrors" "Dropped because the socket's receive buffer was full.",
    sndbuf_errors "SndbufErrors" "Send failures for lack of send buffer.",
    in_csum_errors "InCsumErrors" "Bad checksums.",
    ignored_multi "IgnoredMulti" "Broadcast/multicast with no listener (not an error).",
    mem_errors "MemErrors" "Dropped because socket memory (udp_mem) was exhausted.",
}

/// The UDP counters of one network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct UdpStats {
    /// `Udp:` in snmp.
    pub udp: UdpMib,
    /// `UdpLite:` in snmp, when present.
    pub udplite: Option<UdpMib>,
    /// `Udp6*` in snmp6; `None` without IPv6.
    pub udp6: Option<UdpMib>,
    /// `UdpLite6*` in snmp6.
    pub udplite6: Option<UdpMib>,
}

impl UdpStats {
    /// Receive-buffer drops over IPv4 and IPv6 UDP (UdpLite left out: it is
    /// rare and its drops are its own line). `None` only when no family
    /// prints the counter.
    pub fn rcvbuf_errors(&self) -> Option<u64> {
        self.v4_v6(|m| m.rcvbuf_errors)
    }

    /// Every receive error over IPv4 and IPv6 UDP, likewise.
    pub fn in_errors(&self) -> Option<u64> {
        self.v4_v6(|m| m.in_errors)
    }

    /// Datagrams to a port nothing listens on, likewise.
    pub fn no_ports(&self) -> Option<u64> {
        self.v4_v6(|m| m.no_ports)
    }

    fn v4_v6(&self, f: impl Fn(&UdpMib) -> Option<u64>) -> Option<u64> {
        match (f(&self.udp), self.udp6.as_ref().and_then(f)) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        }
    }

    /// Increase of every counter since `earlier`.
    pub fn delta_since(&self, earlier: &UdpStats) -> UdpStats {
        // A MIB that appeared since counts from its first reading.
        let opt = |a: Option<UdpMib>, b: Option<UdpMib>| a.map(|a| a.delta_since(&b.unwrap_or(a)));
        UdpStats {
            udp: self.udp.delta_since(&earlier.udp),
            udplite: opt(self.udplite, earlier.udplite),
            udp6: opt(self.udp6, earlier.udp6),
            udplite6: opt(self.udplite6, earlier.udplite6),
        }
    }
}

/// A snmp or snmp6 text that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnmpError {
    /// No `Udp:` header/value pair.
    #[error("no Udp: lines")]
    NoUdp,
    /// A header line without its value line, or of another length.
    #[error("line {line}: {section} header has {names} names but {values} values")]
    Mismatch {
        /// 1-based line of the values.
        line: usize,
        /// `Udp` or `UdpLite`.
        section: String,
        /// Names in the header.
        names: usize,
        /// Values in the value line.
        values: usize,
    },
    /// A value that is not an unsigned number.
    #[error("line {line}: {word:?} is not a number")]
    NotNumber {
        /// 1-based line.
        line: usize,
        /// The word.
        word: String,
    },
}

fn number(line: usize, w: &str) -> Result<u64, SnmpError> {
    let word = || w.chars().take(32).collect();
    w.parse()
        .map_err(|_| SnmpError::NotNumber { line, word: word() })
}

/// Parse `/proc/net/snmp`: the `Udp:` pair (required) and the `UdpLite:`
/// pair (optional), columns by header name. Other sections (Ip, Tcp with
/// its signed MaxConn...) are not looked at.
pub fn parse_snmp(text: &str) -> Result<(UdpMib, Option<UdpMib>), SnmpError> {
    let (mut udp, mut lite) = (None, None);
    let mut lines = text.lines().enumerate().peekable();
    while let Some((_, line)) = lines.next() {
        let Some((section, rest)) = line.split_once(':') else {
            continue;
        };
        let target = match section {
            "Udp" => &mut udp,
            "UdpLite" => &mut lite,
            _ => continue,
        };
        let names: Vec<&str> = rest.split_whitespace().collect();
        // The value line follows its header at once, with the same prefix
        // (none: line 0, no values).
        let value_line = lines.next_if(|(_, l)| l.split_once(':').map(|p| p.0) == Some(section));
        let (n, values) = value_line.map_or((0, ""), |(n, l)| {
            (n + 1, l.split_once(':').map_or("", |p| p.1))
        });
        let values: Vec<&str> = values.split_whitespace().collect();
        if value_line.is_none() || values.len() != names.len() {
            return Err(SnmpError::Mismatch {
                line: n,
                section: section.to_string(),
                names: names.len(),
                values: values.len(),
            });
        }
        let mut mib = UdpMib::default();
        for (name, v) in names.iter().zip(&values) {
            if let Some(slot) = mib.slot(name) {
                *slot = Some(number(n, v)?);
            }
        }
        *target = Some(mib);
    }
    Ok((udp.ok_or(SnmpError::NoUdp)?, lite))
}

/// Parse `/proc/net/snmp6` for `Udp6*` and `UdpLite6*`; either is `None`
/// when no line has its prefix.
pub fn parse_snmp6(text: &str) -> Result<(Option<UdpMib>, Option<UdpMib>), SnmpError> {
    let (mut udp6, mut lite6) = (None, None);
    for (i, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        let (Some(name), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let (mib, field) = if let Some(f) = name.strip_prefix("UdpLite6") {
            (&mut lite6, f)
        } else if let Some(f) = name.strip_prefix("Udp6") {
            (&mut udp6, f)
        } else {
            continue;
        };
        if let Some(slot) = mib.get_or_insert_with(UdpMib::default).slot(field) {
            *slot = Some(number(i + 1, value)?);
        }
    }
    Ok((udp6, lite6))
}

/// Read the UDP counters of the namespace whose `net` directory is `net_dir`
/// (relative to the root: `proc/net`, `proc/<pid>/net`,
/// `proc/thread-self/net`). snmp is required; snmp6 may be absent.
pub fn read_udp_in(root: &SysRoot, net_dir: &str) -> Result<UdpStats, FileError<SnmpError>> {
    let dir = net_dir.trim_end_matches('/');
    let (udp, udplite) = read_parse(root, &format!("{dir}/snmp"), parse_snmp)?;
    let (udp6, udplite6) = match read_parse(root, &format!("{dir}/snmp6"), parse_snmp6) {
        Ok(v) => v,
        Err(FileError::Absent(_)) => (None, None),
        Err(e) => return Err(e),
    };
    Ok(UdpStats {
        udp,
        udplite,
        udp6,
        udplite6,
    })
}

/// The UDP counters of the reader's own namespace.
pub fn read_udp(root: &SysRoot) -> Result<UdpStats, FileError<SnmpError>> {
    read_udp_in(root, "proc/net")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 6.12/6.18 layout (`snmp4_udp_list` with MemErrors, 5.9+), as
    /// `snmp_seq_show_tcp_udp` prints it: header names, then `" %lu"` each.
    /// Measured on this 6.18 VM; Ip/Icmp/Tcp lines trimmed but one kept for
    /// its signed value.
    const SNMP_612: &str = "\
Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 12345
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn
Tcp: 1 200 120000 -1
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 27 3 2999 28 2997 0 2 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 0 0 0 0 0
";
    /// 5.4-style layout, before MemErrors (5.9): eight columns.
    const SNMP_54: &str = "\
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti
Udp: 10 0 4 10 4 0 0 1
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti
UdpLite: 0 0 0 0 0 0 0 0
";
    /// `snmp6_seq_show_item`: `"%-32s\t%lu\n"`.
    const SNMP6: &str = "Ip6InReceives                   \t5\n\
Udp6InDatagrams                 \t7\n\
Udp6NoPorts                     \t0\n\
Udp6InErrors                    \t11\n\
Udp6RcvbufErrors                \t10\n\
Udp6MemErrors                   \t0\n\
UdpLite6InDatagrams             \t0\n\
UdpLite6RcvbufErrors            \t0\n";

    #[test]
    fn snmp_by_name() {
        let (udp, lite) = parse_snmp(SNMP_612).unwrap();
        assert_eq!(udp.rcvbuf_errors, Some(2997));
        assert_eq!(udp.in_errors, Some(2999));
        assert_eq!(udp.in_csum_errors, Some(2));
        assert_eq!(udp.mem_errors, Some(0));
        assert_eq!(lite.unwrap().in_datagrams, Some(0));
        let (udp, _) = parse_snmp(SNMP_54).unwrap();
        assert_eq!(udp.mem_errors, None, "absent, not zero");
        assert_eq!(udp.ignored_multi, Some(1));
    }

    #[test]
    fn snmp6_by_name() {
        let (u6, l6) = parse_snmp6(SNMP6).unwrap();
        let u6 = u6.unwrap();
        assert_eq!((u6.rcvbuf_errors, u6.in_errors), (Some(10), Some(11)));
        assert_eq!(u6.sndbuf_errors, None);
        assert_eq!(l6.unwrap().rcvbuf_errors, Some(0));
        assert_eq!(parse_snmp6("Ip6InReceives 4\n").unwrap(), (None, None));
    }

    #[test]
    fn rcvbuf_is_not_added_to_in_errors() {
        let (udp, _) = parse_snmp(SNMP_612).unwrap();
        let (u6, _) = parse_snmp6(SNMP6).unwrap();
        let s = UdpStats {
            udp,
            udplite: None,
            udp6: u6,
            udplite6: None,
        };
        assert_eq!(s.rcvbuf_errors(), Some(2997 + 10));
        let earlier = s;
        let mut later = s;
        later.udp.rcvbuf_errors = Some(3000);
        later.udp.in_errors = Some(3002);
        let d = later.delta_since(&earlier);
        assert_eq!(d.udp.rcvbuf_errors, Some(3));
        assert_eq!(d.udp.in_errors, Some(3));
        assert_eq!(d.rcvbuf_errors(), Some(3));
    }

    #[test]
    fn snmp_errors() {
        assert_eq!(parse_snmp(""), Err(SnmpError::NoUdp));
        assert!(matches!(
            parse_snmp("Udp: InDatagrams RcvbufErrors\nUdp: 1\n"),
            Err(SnmpError::Mismatch { line: 2, .. })
        ));
        assert!(matches!(
            parse_snmp("Udp: InDatagrams RcvbufErrors\n"),
            Err(SnmpError::Mismatch { .. })
        ));
        assert!(matches!(
            parse_snmp("Udp: InDatagrams RcvbufErrors\nUdp: 1 -2\n"),
            Err(SnmpError::NotNumber { line: 2, .. })
        ));
        assert!(matches!(
            parse_snmp6("Udp6RcvbufErrors x\n"),
            Err(SnmpError::NotNumber { line: 1, .. })
        ));
        // Unknown columns are ignored, known ones still land.
        let (u, _) = parse_snmp("Udp: Future RcvbufErrors\nUdp: 9 4\n").unwrap();
        assert_eq!(u.rcvbuf_errors, Some(4));
    }

    #[test]
    fn reader_through_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::at(dir.path());
        assert!(matches!(read_udp(&root), Err(FileError::Absent(_))));
        std::fs::create_dir_all(dir.path().join("proc/net")).unwrap();
        std::fs::write(dir.path().join("proc/net/snmp"), SNMP_612).unwrap();
        let s = read_udp(&root).unwrap();
        assert_eq!(s.udp6, None, "no snmp6: no IPv6, not an error");
        std::fs::write(dir.path().join("proc/net/snmp6"), SNMP6).unwrap();
        let s = read_udp(&root).unwrap();
        assert_eq!(s.rcvbuf_errors(), Some(3007));
        std::fs::create_dir_all(dir.path().join("proc/42/net")).unwrap();
        std::fs::write(dir.path().join("proc/42/net/snmp"), "garbage").unwrap();
        let e = read_udp_in(&root, "proc/42/net").unwrap_err();
        assert!(e.to_string().contains("proc/42/net/snmp"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            let _ = parse_snmp(&s);
            let _ = parse_snmp6(&s);
        }

        #[test]
        fn never_panics_shaped(s in "(Udp:|UdpLite:|Udp6RcvbufErrors|InErrors|RcvbufErrors| |\t|\n|[0-9]{1,21}|-1){0,40}") {
            let _ = parse_snmp(&s);
            let _ = parse_snmp6(&s);
        }
    }
}
