// SPDX-License-Identifier: MIT OR Apache-2.0
//! `conntrack-guard status` (placeholder until it lands).
use std::path::Path;
use std::time::Duration;

use crate::sysroot::SysRoot;

/// Print the snapshot.
pub fn run(_root: &SysRoot, _config: Option<&Path>, _json: bool, _window: Duration) -> i32 {
    eprintln!("conntrack-guard: status is not implemented yet");
    3
}
