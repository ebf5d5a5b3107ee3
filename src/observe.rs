// SPDX-License-Identifier: MIT OR Apache-2.0
//! Taking one observation: the thin reader in front of [`crate::assess`].
//!
//! Every file is opened afresh through the host's [`SysRoot`], so a module
//! that goes away and comes back is seen. The cost is a handful of small
//! reads and one ctnetlink request whatever the table holds;
//! `/proc/net/nf_conntrack` (one line per entry) is never read.

use crate::assess::{FillReading, Observation, Setting};
use crate::config::Config;
use crate::host::Host;
use crate::kernel::ctstats::{read_ct_counters, CtTable};
use crate::kernel::hashsize;
use crate::kernel::read_current;
use crate::kernel::snmp::{read_udp, UdpStats};
use crate::kernel::softnet::{read_softnet, SoftnetTable};
use crate::kernel::stats::{read_fill, CounterSource, SampleError};
use crate::sysroot::SysRoot;

/// Read count and max, classified for [`crate::assess::assess`].
pub fn fill(root: &SysRoot) -> FillReading {
    match read_fill(root) {
        Ok((count, max)) => FillReading::Read { count, max },
        Err(e @ SampleError::NoConntrack(_)) => FillReading::Gone(e.to_string()),
        Err(e) => FillReading::Fault(e.to_string()),
    }
}

/// The kernel's value of every configured setting, against the value the
/// kernel stores for it (the bucket count is rounded up to a page).
pub fn settings(host: &Host, cfg: &Config) -> Vec<Setting> {
    hashsize::targets(cfg, host.page_size)
        .into_iter()
        .map(|t| Setting {
            actual: read_current(&host.root, &t.key).ok().flatten(),
            at_least: t.policy == crate::config::Policy::AtLeast,
            key: t.key,
            expected: t.value,
        })
        .collect()
}

/// The conntrack statistics: ctnetlink where it answers, else procfs.
pub fn conntrack_counters(host: &Host) -> (Result<CtTable, String>, Option<CounterSource>) {
    match read_ct_counters(&host.root, host.netlink.as_ref()) {
        Ok(r) => (Ok(r.table), Some(r.source)),
        Err(e) => (Err(e.to_string()), None),
    }
}

/// The UDP MIB of the namespace this process is in.
pub fn udp(host: &Host) -> Result<UdpStats, String> {
    read_udp(&host.root).map_err(|e| e.to_string())
}

/// The per-CPU backlog statistics (global).
pub fn softnet(host: &Host) -> Result<SoftnetTable, String> {
    read_softnet(&host.root).map_err(|e| e.to_string())
}

/// One full observation. The conntrack counters and settings are only read
/// when the fill was: without the module they do not exist either.
pub fn observe(host: &Host, cfg: &Config) -> Observation {
    let fill = fill(&host.root);
    let (udp, softnet) = (udp(host), softnet(host));
    if !matches!(fill, FillReading::Read { .. }) {
        return Observation {
            fill,
            counters: Err("not read".into()),
            counters_source: None,
            udp,
            softnet,
            settings: Vec::new(),
        };
    }
    let (counters, counters_source) = conntrack_counters(host);
    Observation {
        fill,
        counters,
        counters_source,
        udp,
        softnet,
        settings: settings(host, cfg),
    }
}
