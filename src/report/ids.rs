// SPDX-License-Identifier: MIT OR Apache-2.0
//! Stable journal `MESSAGE_ID`s. Each one has an entry in
//! `packaging/conntrack-guard.catalog`; tests/packaging/run.sh checks the two
//! lists match, reading the `pub const` lines below as text.

/// `apply` verified every configured key.
pub const APPLIED: &str = "ba7a39ca12884f2a90d09a1b1fc069d6";
/// `apply` could not set or verify at least one key.
pub const APPLY_FAILED: &str = "7f6bca376d614dd2b32425708b93311a";
/// Fill rose to the warning level.
pub const LEVEL_WARNING: &str = "4b918d72078d4a21b20d2602bae39255";
/// Fill rose to the critical level.
pub const LEVEL_CRITICAL: &str = "7a41e50edae04a24931a4013ebf49767";
/// Fill fell back to ok.
pub const LEVEL_OK: &str = "5d6412841ec240c88a44f33fba9e2f9a";
/// Still at warning or critical: periodic reminder with the peak.
pub const REMINDER: &str = "3309ed59f38f41a58c7d6f20759bdad7";
/// drop, early_drop or insert_failed rose.
pub const DROPS: &str = "3ecf2d7acba543f79c1f7ba39fc7d597";
/// UDP sockets dropped datagrams: receive buffer full (RcvbufErrors).
pub const UDP_DROPS: &str = "074f0b35d13e40d9b676018d1e8ce273";
/// The input backlog dropped packets (softnet_stat dropped).
pub const BACKLOG_DROPS: &str = "761fd3d3275c440bb690aa1fd41c0b29";
/// A drifted value was written back ([watch] restore).
pub const RESTORED: &str = "94a30e51ae974d9186f2212a583411ab";
/// A restore would have lowered max below the entries in use: held back.
pub const RESTORE_REFUSED: &str = "1a3e154b49634fb8aad60663bea9b4b3";
/// Another writer kept rewriting a key; restoring it stopped.
pub const DRIFT_FIGHT: &str = "9ced345635e04cd5b13faef7c3e299e1";
/// Who fills the table: the automatic triage when the level rises.
pub const TRIAGE: &str = "f8d9f1d3bc144bb1a8af21a39566efec";
/// The kernel said "table full in netns N": which container that is.
pub const NETNS_FULL: &str = "9d0340fd8ef144a28f9054f84db833d7";
/// A drop incident ended: a whole window without a drop.
pub const DROPS_ENDED: &str = "1dc89f77f52a4c7a85508b5a8b5d76ca";
/// A configured value no longer matches the kernel.
pub const DRIFT: &str = "6413e8d64d0e4a60a660377427f403a3";
/// A drifted value matches the configuration again.
pub const DRIFT_CLEARED: &str = "4d4c4e6510ab47909556698e9b29d12a";
/// The watchdog raised nf_conntrack_max (and buckets) within the budget.
pub const GROWN: &str = "52caffdcddea48828fb9da74aedb2e03";
/// The memory budget stops the table from growing as far as the load needs.
pub const GROW_LIMITED: &str = "4590c578a996426a9cd4cdda5b8dbb21";
/// The conntrack sysctl keys disappeared.
pub const MODULE_GONE: &str = "8b8513ce70df4fc9a9f14405c50e725b";
/// The conntrack sysctl keys are back.
pub const MODULE_BACK: &str = "363121271eec4f4e984b6a69aebb02f3";
/// Periodic info summary.
pub const SUMMARY: &str = "3b4510a703e048f5be3a24d8f36e021d";
/// The watchdog started (first good sample).
pub const STARTED: &str = "ae526c3a34f744e499ba6f5654837c9f";
/// Neither the stat file nor ctnetlink gives the counters.
pub const COUNTERS_UNAVAILABLE: &str = "8315ef0a02d849d6b93199a654622582";
/// SIGHUP: configuration reloaded, or kept because the new one is invalid.
pub const RELOAD: &str = "0cdbd1b3304a4b76b95934de5d832e56";
/// A sample, sd_notify or the metrics textfile failed.
pub const FAULT: &str = "added0a9e80c4d5f853289718bbb178b";

/// `[watch] namespaces = "all"` without the capability to enter them.
pub const NETNS_UNAVAILABLE: &str = "234f6812e0184517ac87e4c493460c25";
