// SPDX-License-Identifier: MIT OR Apache-2.0
//! `conntrack-guard plan`: size the table from the workload
//! ([`crate::assess::sizing`]) against the running kernel.

use std::path::Path;

use crate::assess::sizing::{budget_view, plan, BudgetView, Request};
use crate::config::Config;
use crate::exit;
use crate::host::Host;
use crate::kernel::facts::KernelFacts;
use crate::report::output;
use crate::sysroot::SysRoot;

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
    p.budget = budget(root, &cfg, &facts, p.max, p.buckets);
    output::report(&p, json, |p| p.text(), exit::OK, exit::FAILURE)
}

/// The recommended max against `[grow] budget` on this machine; `None`
/// with growth off, or when the budget is a share of RAM that cannot be
/// read.
fn budget(
    root: &SysRoot,
    cfg: &Config,
    facts: &KernelFacts,
    max: u64,
    buckets: u64,
) -> Option<BudgetView> {
    let bytes = crate::state::grown::budget_bytes(root, cfg.grow.budget);
    (cfg.grow.enabled && bytes > 0).then(|| {
        budget_view(
            &cfg.grow.budget.to_string(),
            bytes,
            facts.entry_bytes,
            facts.page_size,
            max,
            buckets,
        )
    })
}
