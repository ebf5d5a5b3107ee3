// SPDX-License-Identifier: MIT OR Apache-2.0
//! `conntrack-guard watch` (placeholder until the watchdog lands).
use std::path::Path;
use std::time::Duration;

use crate::sysroot::SysRoot;

/// Run the watchdog.
pub fn run(_root: &SysRoot, _config: Option<&Path>, _interval: Option<Duration>) -> i32 {
    eprintln!("conntrack-guard: watch is not implemented yet");
    crate::exit::FAILURE
}
