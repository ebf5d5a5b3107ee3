// SPDX-License-Identifier: MIT OR Apache-2.0
//! The conntrack statistics as a type: [`CtCounter`] names each counter of
//! `struct ip_conntrack_stat` with its procfs column and its ctnetlink
//! attribute, and [`CtTable`] holds one reading per CPU. Both sources
//! ([`crate::kernel::ctstats`] for procfs and the choice between them,
//! [`crate::kernel::netlink`] for the socket) build on this; it imports neither.

use crate::kernel::percpu::{counter_set, CounterSet, CpuTable};

counter_set! {
    /// A conntrack statistic.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum CtCounter {
        /// A new entry could not be allocated: "table full, dropping packet".
        Drop "drop",
        /// A non-assured entry was evicted to make room (leading indicator).
        EarlyDrop "early_drop",
        /// An insert clash that could not be resolved: the packet is dropped.
        InsertFailed "insert_failed",
        /// A packet conntrack could not track (bad state, bad checksum...).
        Invalid "invalid",
        /// A lookup restarted because the chain changed under it.
        SearchRestart "search_restart",
        /// An insert clash that was resolved.
        ClashResolve "clash_resolve",
        /// An insert refused because its hash chain was too long (5.15+):
        /// too few buckets for the load.
        ChainTooLong "chaintoolong",
        /// ICMP errors that could not be matched to a connection.
        Error "icmp_error",
        /// Lookups that found an entry.
        Found "found",
        /// Entries inserted.
        Insert "insert",
    }
}

impl CtCounter {
    /// The column header in `/proc/net/stat/nf_conntrack`.
    pub fn procfs_column(self) -> &'static str {
        match self {
            CtCounter::ClashResolve => "clashres",
            CtCounter::ChainTooLong => "chainlength",
            other => other.name(),
        }
    }

    /// The `CTA_STATS_*` attribute type (enum ctattr_stats_cpu in
    /// include/uapi/linux/netfilter/nfnetlink_conntrack.h), in `ALL` order:
    /// the table in [`crate::kernel::ctstats`]'s notes.
    pub fn netlink_attr(self) -> u16 {
        [10, 11, 9, 4, 13, 14, 15, 12, 2, 8][self as usize]
    }

    /// The counter a `CTA_STATS_*` attribute carries, if we map it.
    pub fn from_netlink_attr(ty: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.netlink_attr() == ty)
    }

    /// The counters that mean a packet was lost.
    pub const LOSS: &'static [CtCounter] = &[
        CtCounter::Drop,
        CtCounter::EarlyDrop,
        CtCounter::InsertFailed,
    ];
}

/// The conntrack statistics of every CPU.
pub type CtTable = CpuTable<CtCounter>;
