// SPDX-License-Identifier: MIT OR Apache-2.0
//! conntrack-guard: keeps nf_conntrack sized for busy UDP services behind
//! Docker's bridge NAT, verifies it, and watches it.
//!
//! `main.rs` is a thin shell over this library. All kernel access goes
//! through [`sysroot::SysRoot`]; decisions are pure functions.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod allns;
pub mod applied;
pub mod apply;
pub mod assess;
pub mod cli;
pub mod config;
pub mod ctdump;
pub mod doctor;
pub mod events;
pub mod grow_state;
pub mod hashsize;
pub mod host;
pub mod ids;
pub mod kernel;
pub mod metrics;
pub mod module;
pub mod netlink;
pub mod netns;
pub mod notify;
pub mod nsenter;
pub mod observe;
pub mod output;
pub mod plan;
pub mod ruleset;
pub mod stats;
pub mod status;
pub mod sysroot;
pub mod table;
pub mod top;
pub mod watch;
pub mod writers;

/// Exit codes, as documented in `--help`, the README and conntrack-guard(8).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// A key failed, or a runtime failure.
    pub const FAILURE: i32 = 1;
    /// Bad command line.
    pub const USAGE: i32 = 2;
    /// Conntrack unavailable (EX_UNAVAILABLE).
    pub const UNAVAILABLE: i32 = 69;
    /// Permission denied (EX_NOPERM).
    pub const NOPERM: i32 = 77;
    /// Bad configuration (EX_CONFIG).
    pub const CONFIG: i32 = 78;
}
