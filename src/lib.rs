// SPDX-License-Identifier: MIT OR Apache-2.0
//! conntrack-guard: keeps nf_conntrack sized for busy UDP services behind
//! Docker's bridge NAT, verifies it, and watches it.
//!
//! `main.rs` is a thin shell over this library. All kernel access goes
//! through [`sysroot::SysRoot`]; decisions are pure functions.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod assess;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod host;
pub mod kernel;
pub mod netns;
pub mod observe;
pub mod report;
pub mod state;
pub mod sysroot;
pub mod system;

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
