// SPDX-License-Identifier: MIT OR Apache-2.0
//! The kernel's "table full" lines, attributed to a namespace.
//!
//! Since mid-2025 the kernel names the namespace:
//! `nf_conntrack: nf_conntrack: table full in netns 4026532246, dropping packet`
//! (the number is the netns inode). Older kernels say only
//! `nf_conntrack: table full, dropping packet`. The line is rate-limited, so
//! its absence proves nothing; its presence dates the last overflow.
//!
//! `/dev/kmsg` gives one record per read(2): `prio,seq,usec,flags;text`.
//! Opened with O_NONBLOCK, a read past the newest record fails with EAGAIN,
//! which ends the scan. Reading needs CAP_SYSLOG when
//! kernel.dmesg_restrict=1.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;

use serde::Serialize;

use crate::sysroot::{PathError, SysRoot};

/// The device, relative to the root.
pub const KMSG: &str = "dev/kmsg";

/// A "table full" line: `Some(inode)` when the kernel named the
/// namespace, `None` for the older form.
pub fn parse_table_full(text: &str) -> Option<Option<u64>> {
    let rest = &text[text.find("table full")? + "table full".len()..];
    if !text.contains("nf_conntrack") {
        return None;
    }
    if let Some(n) = rest.strip_prefix(" in netns ") {
        let digits: &str = &n[..n.find(|c: char| !c.is_ascii_digit()).unwrap_or(n.len())];
        return digits.parse().ok().map(Some);
    }
    rest.starts_with(", dropping packet").then_some(None)
}

/// One `/dev/kmsg` record: sequence number, microseconds since boot, text
/// (the first line; continuation lines carry the structured dictionary).
pub fn parse_record(rec: &str) -> Option<(u64, u64, &str)> {
    let (head, text) = rec.split_once(';')?;
    let mut f = head.split(',').skip(1); // the priority
    let seq = f.next()?.parse().ok()?;
    let usec = f.next()?.parse().ok()?;
    Some((seq, usec, text.split('\n').next().unwrap_or("")))
}

/// The last "table full" line of one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableFull {
    /// The netns inode; None for the older form that names none.
    pub netns: Option<u64>,
    /// Microseconds since boot, as the kernel stamped it.
    pub usec: u64,
    /// The line.
    pub line: String,
}

/// `rec`, if it is a "table full" line, becomes its namespace's last one.
fn keep_last(last: &mut BTreeMap<Option<u64>, TableFull>, rec: &str) -> Option<()> {
    let (_, usec, text) = parse_record(rec)?;
    let (netns, line) = (parse_table_full(text)?, text.to_string());
    last.insert(netns, TableFull { netns, usec, line });
    Some(())
}

/// At most this many records are read: the ring buffer holds far fewer,
/// and a kernel logging faster than we read must not keep us here.
pub const MAX_RECORDS: usize = 200_000;

/// Read the whole kernel ring buffer once, without blocking, and return
/// the last "table full" line per namespace. For the real machine only
/// (`Host::kernel_access`): a test root has no kernel log to ask.
pub fn read_table_full(root: &SysRoot) -> Result<Vec<TableFull>, PathError> {
    let path = root.path(KMSG);
    let err = PathError::on(&path);
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&path)
        .map_err(err)?;
    let mut buf = vec![0u8; 8192];
    // Only the newest line per namespace is kept as the ring is read: a
    // ring full of "table full" lines (a table full for hours) must not be
    // held in memory whole.
    let mut last = BTreeMap::new();
    for _ in 0..MAX_RECORDS {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                // Cheap filter first: almost no record is ours.
                if rec.contains("table full") {
                    keep_last(&mut last, &rec);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            // The record was overwritten while we read: go on.
            Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(err(e)),
        }
    }
    Ok(last.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_full_forms() {
        assert_eq!(
            parse_table_full(
                "nf_conntrack: nf_conntrack: table full in netns 4026532246, dropping packet"
            ),
            Some(Some(4026532246))
        );
        assert_eq!(
            parse_table_full("nf_conntrack: table full, dropping packet"),
            Some(None)
        );
        // The journal's form: kernel prefix and a timestamp before it.
        assert_eq!(
            parse_table_full(
                "Dec 01 05:26:01 vm kernel: nf_conntrack: nf_conntrack: table full in netns 4026531840, dropping packet"
            ),
            Some(Some(4026531840))
        );
        assert_eq!(parse_table_full("ext4: table full of stuff"), None);
        assert_eq!(
            parse_table_full("nf_conntrack: table full in netns x"),
            None
        );
        assert_eq!(
            parse_table_full("net_ratelimit: 12 callbacks suppressed"),
            None
        );
        assert_eq!(parse_table_full(""), None);
    }

    #[test]
    fn last_line_per_namespace() {
        let recs = [
            "4,100,5000000,-;nf_conntrack: nf_conntrack: table full in netns 7, dropping packet",
            "4,101,6000000,-;net_ratelimit: 3 callbacks suppressed",
            "4,102,7000000,-;nf_conntrack: nf_conntrack: table full in netns 7, dropping packet\n SUBSYSTEM=net",
            "4,103,8000000,-;nf_conntrack: nf_conntrack: table full in netns 9, dropping packet",
            "4,104,9000000,-;nf_conntrack: table full, dropping packet",
            "garbage",
        ];
        let mut last = BTreeMap::new();
        for rec in recs {
            keep_last(&mut last, rec);
        }
        let got: Vec<_> = last.into_values().collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].netns, None);
        assert_eq!((got[1].netns, got[1].usec), (Some(7), 7_000_000));
        assert!(!got[1].line.contains("SUBSYSTEM"));
        assert_eq!((got[2].netns, got[2].usec), (Some(9), 8_000_000));
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,200}") {
            let _ = parse_table_full(&s);
            let _ = parse_record(&s);
        }
    }
}
