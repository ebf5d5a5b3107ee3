// SPDX-License-Identifier: MIT OR Apache-2.0
//! Sampling every network namespace: count, max, the conntrack counters
//! and the UDP receive errors, each read from inside the namespace.
//!
//! Inside a namespace, `/proc/sys/net/netfilter/nf_conntrack_count` is the
//! entering thread's namespace's (the sysctl table is looked up from the
//! opening task's netns), but `/proc/net` is `/proc/self/net`, the
//! thread-group leader's: per-namespace files are read through
//! `/proc/thread-self/net`.
//!
//! Used by `status --all-netns`, by `apply` (a lowered max is checked
//! against the fullest namespace), by `top --netns all` and by the
//! watchdog (`[watch] namespaces = "all"`), off the sampling cadence:
//!
//! ```no_run
//! use conntrack_guard::{netns::{self, sample}, sysroot::SysRoot};
//! let root = SysRoot::host();
//! let found = netns::scan(&root); // links and inodes only; opens nothing
//! for (ns, r) in found.iter().zip(sample::sample_all(&found)) {
//!     match r {
//!         Ok(s) => println!("{} {} {}/{}", ns.inode, ns.owner.label(), s.count, s.max),
//!         Err(e) if e.vanished() => {} // gone since the scan: forget it
//!         Err(e) => eprintln!("netns {}: {e}", ns.inode),
//!     }
//! }
//! ```

use serde::Serialize;

use crate::kernel::ctstats::{
    read_ct_counters_at, CounterSource, CtCounter, CtTable, CtUnavailable, KernelNetlink,
    THREAD_STAT_FILE,
};
use crate::kernel::nsenter::{self, NetnsError};
use crate::kernel::sysctl::{read_fill, SysctlError};
use crate::netns::Namespace;
use crate::sysroot::SysRoot;

/// A namespace's UDP receive errors since it was created (`Udp:` in its
/// `/proc/net/snmp`). InErrors includes RcvbufErrors: do not add them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct UdpDrops {
    /// Datagrams dropped because the socket's receive buffer was full.
    pub rcvbuf_errors: u64,
    /// All UDP receive errors (checksum, buffer, ...).
    pub in_errors: u64,
}

/// `RcvbufErrors` and `InErrors` (IPv4 `Udp:`) from a `/proc/net/snmp`
/// text, through the watchdog's own parser.
pub fn parse_snmp_udp(text: &str) -> Option<UdpDrops> {
    let (udp, _) = crate::kernel::snmp::parse_snmp(text).ok()?;
    Some(UdpDrops {
        rcvbuf_errors: udp.rcvbuf_errors?,
        in_errors: udp.in_errors?,
    })
}

/// A namespace's conntrack counters since it was created, summed over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Counters {
    /// Table full: the packet was dropped.
    pub drop: u64,
    /// An unassured entry was evicted to make room.
    pub early_drop: u64,
    /// An unresolved insert clash.
    pub insert_failed: u64,
    /// Resolved clashes, where the kernel has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clashres: Option<u64>,
}

impl Counters {
    /// Sum a per-CPU table.
    pub fn of(t: &CtTable) -> Self {
        let total = |k| t.total(k).unwrap_or(0);
        Counters {
            drop: total(CtCounter::Drop),
            early_drop: total(CtCounter::EarlyDrop),
            insert_failed: total(CtCounter::InsertFailed),
            clashres: t.total(CtCounter::ClashResolve),
        }
    }
}

/// What one namespace holds, read from inside it.
#[derive(Debug, Serialize)]
pub struct NsSample {
    /// Its nf_conntrack_count.
    pub count: u64,
    /// nf_conntrack_max (global).
    pub max: u64,
    /// Its counters since the namespace was created.
    pub counters: Option<Counters>,
    /// Where they came from.
    pub counters_source: Option<CounterSource>,
    /// Why they are missing (its text in JSON).
    #[serde(serialize_with = "text_of")]
    pub counters_error: Option<CtUnavailable>,
    /// Its UDP socket drops.
    pub udp: Option<UdpDrops>,
    /// The per-CPU counters behind `counters` (for the watchdog's
    /// wrap-safe deltas).
    #[serde(skip)]
    pub table: Option<CtTable>,
}

impl NsSample {
    /// Nothing uses conntrack here: no entries and no counter ever moved.
    /// (Conntrack starts in a namespace only once a rule needs it.)
    pub fn inactive(&self) -> bool {
        let moved = |c: Counters| c.drop | c.early_drop | c.insert_failed | c.clashres.unwrap_or(0);
        self.count == 0 && self.counters.is_some_and(|c| moved(c) == 0)
    }
}

fn text_of<S: serde::Serializer>(e: &Option<CtUnavailable>, s: S) -> Result<S::Ok, S::Error> {
    e.as_ref().map(ToString::to_string).serialize(s)
}

/// Why a namespace could not be sampled.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// Entering failed (or it vanished: [`SampleError::vanished`]).
    #[error(transparent)]
    Enter(#[from] NetnsError),
    /// Count or max inside could not be read.
    #[error(transparent)]
    Read(#[from] SysctlError),
}

impl SampleError {
    /// The namespace went away: normal, not a failure.
    pub fn vanished(&self) -> bool {
        matches!(self, SampleError::Enter(NetnsError::Vanished { .. }))
    }
}

/// Read the calling thread's namespace. Real kernel only.
fn read_here() -> Result<NsSample, SampleError> {
    let root = SysRoot::host();
    let (count, max) = read_fill(&root)?;
    // The host's counter source and order (ctnetlink, then procfs): the
    // socket is made on this thread, so in this namespace. Only the real
    // kernel is ever entered, so its ctnetlink is the one to ask.
    let (table, counters_source, counters_error) =
        match read_ct_counters_at(&root, THREAD_STAT_FILE, &KernelNetlink) {
            Ok(r) => (Some(r.table), Some(r.source), None),
            Err(e) => (None, None, Some(e)),
        };
    let counters = table.as_ref().map(Counters::of);
    let udp = root
        .read_some("proc/thread-self/net/snmp")
        .and_then(|t| parse_snmp_udp(&t));
    Ok(NsSample {
        count,
        max,
        counters,
        counters_source,
        counters_error,
        udp,
        table,
    })
}

/// Sample one namespace from inside it, on a short-lived thread. For the
/// watchdog: call it for a namespace of a [`crate::netns::scan`], off the
/// sampling cadence; a [`SampleError::vanished`] result means "forget it".
pub fn sample(ns: &Namespace) -> Result<NsSample, SampleError> {
    let vanished = NetnsError::Vanished { inode: ns.inode };
    let mut v = sample_all(std::slice::from_ref(ns));
    v.pop().unwrap_or(Err(SampleError::Enter(vanished)))
}

/// [`sample`] for many namespaces on one short-lived thread (cheaper than
/// a thread each); the results are in the order given.
pub fn sample_all(namespaces: &[Namespace]) -> Vec<Result<NsSample, SampleError>> {
    let found = nsenter::run_each(
        namespaces,
        |ns| (ns.enter.as_path(), Some(ns.inode)),
        |_| read_here(),
    );
    match found {
        Ok(v) => v.into_iter().map(|r| r?).collect(),
        Err(e) => namespaces
            .iter()
            .map(|_| Err(NetnsError::Thread(std::io::Error::other(e.to_string())).into()))
            .collect(),
    }
}
