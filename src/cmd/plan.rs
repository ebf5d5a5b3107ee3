// SPDX-License-Identifier: MIT OR Apache-2.0
//! `conntrack-guard plan`: size the table from the workload
//! ([`crate::assess::sizing`]) against the running kernel.

use std::path::Path;

use crate::assess::sizing::{plan, Request};
use crate::exit;
use crate::kernel::facts::KernelFacts;
use crate::report::output;
use crate::sysroot::SysRoot;

/// `plan` against the kernel under `root`; returns the exit code.
pub fn run(
    root: &SysRoot,
    config_path: Option<&Path>,
    rate: f64,
    timeout: Option<u64>,
    headroom: f64,
    json: bool,
) -> i32 {
    let cfg = match crate::config::load(root, config_path) {
        Ok(c) => c,
        Err(e) => {
            output::err(&format!("conntrack-guard: invalid configuration: {e}"));
            return exit::CONFIG;
        }
    };
    let facts = KernelFacts::read(root);
    let p = plan(
        &Request {
            rate,
            timeout,
            headroom,
        },
        &cfg,
        &facts,
    );
    let text = if json {
        serde_json::to_string_pretty(&p).unwrap_or_default() + "\n"
    } else {
        p.text()
    };
    output::out_or(&text, exit::OK, exit::FAILURE)
}
