// SPDX-License-Identifier: MIT OR Apache-2.0
//! `conntrack-guard plan`: size the table from the workload
//! ([`crate::assess::sizing`]) against the running kernel.

use std::path::Path;

use crate::assess::sizing::{plan, Request};
use crate::exit;
use crate::host::Host;
use crate::kernel::facts::KernelFacts;
use crate::report::output;

/// `plan` against the kernel of `host`; returns the exit code.
pub fn run(
    host: &Host,
    config_path: Option<&Path>,
    rate: f64,
    timeout: Option<u64>,
    headroom: f64,
    json: bool,
) -> i32 {
    let root = &host.root;
    let Some(cfg) = output::config(root, config_path, "conntrack-guard") else {
        return exit::CONFIG;
    };
    let facts = KernelFacts::read(root);
    let mut p = plan(
        &Request {
            rate,
            timeout,
            headroom,
        },
        &cfg,
        &facts,
    );
    // No budget with growth off, nor one of 0 bytes.
    let (entry, page) = (facts.entry_bytes, facts.page_size);
    let view = crate::observe::budget_view(root, cfg.grow.budget, entry, page, p.max, p.buckets);
    p.budget = view.filter(|v| cfg.grow.enabled && v.budget_bytes > 0);
    output::report(&p, json, |p| p.text(), exit::OK, exit::FAILURE)
}
