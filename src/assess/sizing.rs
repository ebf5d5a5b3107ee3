// SPDX-License-Identifier: MIT OR Apache-2.0
//! Sizing the table from the workload: the pure part of `plan`, also used
//! by the watchdog's growth ([`crate::assess::grow`]).
//!
//! The entries a workload holds are new flows per second times the timeout
//! that really holds such a flow. Since Linux 5.15 (netfilter commit "udp:
//! only extend timeout to stream mode after 2s") a UDP flow becomes ASSURED,
//! and moves to `nf_conntrack_udp_timeout_stream`, only if it is still active
//! more than 2 s after its first packet. A tracker announce or a DNS query
//! completes in milliseconds, so on those kernels it lives for
//! `nf_conntrack_udp_timeout`. Older kernels moved every replied flow to the
//! stream timeout.

use serde::Serialize;

use crate::config::{Config, MAX_CONNTRACK_MAX};
pub use crate::kernel::facts::{parse_version, KernelFacts};
use crate::kernel::hashsize;
use crate::report::table::human_bytes;

/// The first kernel with the 2-second rule.
pub const TWO_SECOND_RULE: (u32, u32) = (5, 15);
/// Kernel defaults, used when neither config nor kernel tells.
pub const DEFAULT_UDP_TIMEOUT: u64 = 30;
/// See [`DEFAULT_UDP_TIMEOUT`].
pub const DEFAULT_UDP_TIMEOUT_STREAM: u64 = 120;

/// The plan request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// New UDP flows per second at peak.
    pub rate: f64,
    /// Timeout override, seconds.
    pub timeout: Option<u64>,
    /// Headroom factor (>= 1).
    pub headroom: f64,
}

/// The plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Input rate.
    pub rate: f64,
    /// Timeout used, seconds.
    pub timeout: u64,
    /// Which setting that timeout comes from and why.
    pub timeout_reason: String,
    /// rate x timeout.
    pub entries_needed: u64,
    /// Headroom factor.
    pub headroom: f64,
    /// Recommended max (a power of two while that fits the kernel's limit).
    pub max: u64,
    /// Recommended buckets: max / 4, rounded up as the kernel rounds it.
    pub buckets: u64,
    /// Why the recommendation is smaller than the entries needed, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limited: Option<String>,
    /// Bytes per entry used.
    pub entry_bytes: u64,
    /// Memory of the full table, entries only.
    pub memory_entries_bytes: u64,
    /// Memory of the bucket array (allocated up front).
    pub memory_buckets_bytes: u64,
    /// Sustainable flows/s at the current kernel settings, if known.
    pub current_rate: Option<f64>,
    /// Current max, if known.
    pub current_max: Option<u64>,
    /// Sustainable flows/s at the recommended settings.
    pub recommended_rate: f64,
    /// `exact` or `at-least`: which `max_policy` fits, and why.
    pub max_policy: &'static str,
    /// Why that policy.
    pub policy_reason: String,
    /// The `[conntrack]` block to paste.
    pub config_block: String,
}

/// Pick the timeout that holds a short request/response flow on this
/// kernel. Pure: takes the config and the kernel facts.
pub fn effective_timeout(cfg: &Config, k: &KernelFacts, stream: bool) -> u64 {
    let c = &cfg.conntrack;
    if stream {
        c.udp_timeout_stream
            .value()
            .or(k.udp_timeout_stream)
            .unwrap_or(DEFAULT_UDP_TIMEOUT_STREAM)
    } else {
        c.udp_timeout
            .value()
            .or(k.udp_timeout)
            .unwrap_or(DEFAULT_UDP_TIMEOUT)
    }
}

/// The largest max that still keeps max / 4 a whole number of 4 KiB-page
/// bucket groups: the kernel's limit (INT_MAX) rounded down to 2048.
pub const LARGEST_MAX: u64 = MAX_CONNTRACK_MAX / 2048 * 2048;

/// Round `wanted` up to a power of two (at least 1024). Past 2^30 the next
/// power of two is beyond the kernel's limit (INT_MAX): recommend the
/// largest aligned max instead, and say so when even that holds fewer
/// entries than wanted (or than needed without headroom).
fn recommended_max(wanted: u64, needed: u64) -> (u64, Option<String>) {
    let pow2 = wanted.max(1024).checked_next_power_of_two();
    match pow2 {
        Some(m) if m <= MAX_CONNTRACK_MAX => (m, None),
        _ if wanted <= LARGEST_MAX => (wanted.div_ceil(2048) * 2048, None),
        _ => {
            let what = if needed > LARGEST_MAX {
                format!("the workload needs {needed} entries")
            } else {
                format!("{wanted} entries with the headroom")
            };
            (
                LARGEST_MAX,
                Some(format!(
                    "{what}, more than the kernel's nf_conntrack_max limit ({MAX_CONNTRACK_MAX}); \
                     recommending {LARGEST_MAX}: shorten the timeout or keep this traffic out of \
                     conntrack (host networking or NOTRACK; NAT needs conntrack)"
                )),
            )
        }
    }
}

/// `plan`'s default `--headroom`; the watchdog's growth sizes with it too.
pub const DEFAULT_HEADROOM: f64 = 2.0;

/// The size a workload needs: what `plan` recommends, and what the
/// watchdog grows to for the new-flow rate it sees.
#[derive(Debug, Clone, PartialEq)]
pub struct Sizing {
    /// rate x timeout.
    pub entries_needed: u64,
    /// The recommended max: entries needed x headroom, rounded up to a
    /// power of two while that fits the kernel's limit.
    pub max: u64,
    /// Why `max` is smaller than wanted, when the kernel's limit binds.
    pub limited: Option<String>,
}

/// The max for `rate` new flows per second each held `timeout` seconds,
/// with `headroom` (at least 1). Pure; a negative or NaN rate counts as 0.
pub fn size_for(rate: f64, timeout: u64, headroom: f64) -> Sizing {
    let rate = rate.max(0.0);
    let entries_needed = (rate * timeout as f64).ceil().min(u64::MAX as f64) as u64;
    let wanted = (entries_needed as f64 * headroom.max(1.0))
        .ceil()
        .min(u64::MAX as f64) as u64;
    let (max, limited) = recommended_max(wanted, entries_needed);
    Sizing {
        entries_needed,
        max,
        limited,
    }
}

/// Compute the plan. Pure.
pub fn plan(req: &Request, cfg: &Config, k: &KernelFacts) -> Plan {
    let two_second_rule = k.version.map(|v| v >= TWO_SECOND_RULE).unwrap_or(true);
    let (timeout, reason) = match req.timeout {
        Some(t) => (t, format!("--timeout {t} given")),
        None if two_second_rule => (
            effective_timeout(cfg, k, false),
            format!(
                "kernel {} has the 2-second rule (since 5.15): a request/response flow shorter than 2 s \
                 stays unassured and is held by nf_conntrack_udp_timeout; flows that stay active longer \
                 move to nf_conntrack_udp_timeout_stream ({} s) - pass --timeout for those",
                k.release.as_deref().unwrap_or("(unknown)"),
                effective_timeout(cfg, k, true)
            ),
        ),
        None => (
            effective_timeout(cfg, k, true),
            format!(
                "kernel {} predates 5.15: any replied UDP flow moves to nf_conntrack_udp_timeout_stream",
                k.release.as_deref().unwrap_or("(unknown)")
            ),
        ),
    };
    let rate = req.rate.max(0.0);
    let Sizing {
        entries_needed,
        max,
        limited,
    } = size_for(rate, timeout, req.headroom);
    let buckets = hashsize::kernel_buckets((max / 4).max(1), k.page_size);
    let current_timeout = if two_second_rule {
        k.udp_timeout.unwrap_or(DEFAULT_UDP_TIMEOUT)
    } else {
        k.udp_timeout_stream.unwrap_or(DEFAULT_UDP_TIMEOUT_STREAM)
    };
    let current_rate = k.max.map(|m| m as f64 / current_timeout.max(1) as f64);
    // A larger max already in the kernel (the module's own default on a big
    // machine, kube-proxy, an operator) covers this rate too: "at-least"
    // keeps it instead of lowering it.
    let (max_policy, policy_reason) = match k.max {
        Some(m) if m > max => (
            "at-least",
            format!("the current max ({m}) is larger: \"at-least\" keeps it, \"exact\" would lower it to {max}"),
        ),
        _ => (
            "exact",
            "the recommended max is at least the current one: \"exact\" sets it, and reports anyone who changes it".to_string(),
        ),
    };
    let config_block = format!(
        "[conntrack]\nmax = {max}\nmax_policy = \"{max_policy}\"\nbuckets = {buckets}\nudp_timeout = {}\nudp_timeout_stream = {}\n",
        effective_timeout(cfg, k, false),
        effective_timeout(cfg, k, true)
    );
    Plan {
        rate,
        timeout,
        timeout_reason: reason,
        entries_needed,
        headroom: req.headroom,
        max,
        buckets,
        limited,
        entry_bytes: k.entry_bytes,
        memory_entries_bytes: max.saturating_mul(k.entry_bytes),
        memory_buckets_bytes: buckets * 8,
        current_rate,
        current_max: k.max,
        recommended_rate: max as f64 / timeout.max(1) as f64,
        max_policy,
        policy_reason,
        config_block,
    }
}

impl Plan {
    /// The text report.
    pub fn text(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "rate:              {} new UDP flows/s at peak\n",
            self.rate
        ));
        s.push_str(&format!(
            "timeout:           {} s\n  why: {}\n",
            self.timeout, self.timeout_reason
        ));
        s.push_str(&format!(
            "entries needed:    {} (rate x timeout)\n",
            self.entries_needed
        ));
        if self.max.is_power_of_two() {
            s.push_str(&format!(
                "recommended max:   {} (x{} headroom, rounded up to a power of two)\n",
                self.max, self.headroom
            ));
        } else {
            s.push_str(&format!(
                "recommended max:   {} (x{} headroom, near the kernel's limit)\n",
                self.max, self.headroom
            ));
        }
        if let Some(why) = &self.limited {
            s.push_str(&format!("LIMITED:           {why}\n"));
        }
        s.push_str(&format!(
            "buckets:           {} (max / 4, a whole page of buckets as the kernel stores it)\n",
            self.buckets
        ));
        s.push_str(&format!(
            "memory when full:  {} for entries ({} B each) + {} for the bucket array (allocated up front)\n",
            human_bytes(self.memory_entries_bytes),
            self.entry_bytes,
            human_bytes(self.memory_buckets_bytes)
        ));
        match (self.current_rate, self.current_max) {
            (Some(r), Some(m)) => s.push_str(&format!(
                "sustainable now:   {:.0} flows/s (current max {m})\n",
                r
            )),
            _ => s.push_str("sustainable now:   unknown (conntrack not loaded)\n"),
        }
        s.push_str(&format!(
            "sustainable after: {:.0} flows/s\n",
            self.recommended_rate
        ));
        if let Some(m) = self.current_max.filter(|m| *m > self.max) {
            s.push_str(&format!(
                "note:              the current max ({m}) already covers this rate; \
                 there is no need to lower it\n"
            ));
        }
        s.push_str(&format!(
            "policy:            max_policy = \"{}\": {}\n",
            self.max_policy, self.policy_reason
        ));
        s.push_str(
            "drop points:       these settings size the conntrack table; UDP is also \
             dropped silently when a socket's receive buffer is full (SO_RCVBUF, \
             net.core.rmem_max) and when the input backlog is full \
             (net.core.netdev_max_backlog): `conntrack-guard status --window 5` \
             shows which one loses packets\n",
        );
        s.push('\n');
        s.push_str("# paste into /etc/conntrack-guard/conntrack-guard.toml\n");
        s.push_str(&self.config_block);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(version: (u32, u32)) -> KernelFacts {
        KernelFacts {
            version: Some(version),
            release: Some(format!("{}.{}.0", version.0, version.1)),
            max: Some(262_144),
            buckets: Some(65_536),
            udp_timeout: Some(30),
            udp_timeout_stream: Some(120),
            entry_bytes: 320,
            page_size: 4096,
        }
    }

    #[test]
    fn recent_kernel_uses_udp_timeout() {
        let p = plan(
            &Request {
                rate: 750.0,
                timeout: None,
                headroom: 2.0,
            },
            &Config::default(),
            &k((6, 18)),
        );
        assert_eq!(p.timeout, 10);
        assert_eq!(p.entries_needed, 7500);
        assert_eq!(p.max, 16384);
        assert_eq!(p.buckets, 4096);
        assert_eq!(p.memory_entries_bytes, 16384 * 320);
        assert_eq!(p.current_rate, Some(262_144.0 / 30.0));
        assert!(p.config_block.contains("max = 16384"));
        // The kernel's 262144 is larger: keep it.
        assert_eq!(p.max_policy, "at-least");
        assert!(p.config_block.contains("max_policy = \"at-least\""));
    }

    #[test]
    fn old_kernel_uses_stream_timeout() {
        let p = plan(
            &Request {
                rate: 750.0,
                timeout: None,
                headroom: 2.0,
            },
            &Config::default(),
            &k((5, 10)),
        );
        assert_eq!(p.timeout, 15);
        assert_eq!(p.entries_needed, 11_250);
        assert_eq!(p.max, 32_768);
        assert!(p.timeout_reason.contains("predates 5.15"));
    }

    #[test]
    fn explicit_timeout_and_caps() {
        let p = plan(
            &Request {
                rate: 1e12,
                timeout: Some(120),
                headroom: 2.0,
            },
            &Config::default(),
            &k((6, 1)),
        );
        assert_eq!(p.max, LARGEST_MAX);
        assert!(p.max <= MAX_CONNTRACK_MAX);
        let why = p.limited.as_deref().expect("a capped plan says so");
        assert!(why.contains("120000000000000 entries"), "{why}");
        assert!(p.text().contains("LIMITED:"));
        // Beyond 2^30 but within the limit: not capped, aligned, no note.
        let p = plan(
            &Request {
                rate: 1e8,
                timeout: Some(10),
                headroom: 1.5,
            },
            &Config::default(),
            &k((6, 1)),
        );
        assert_eq!(p.max, 1_500_000_256);
        assert_eq!(p.limited, None);
        assert_eq!(p.buckets % 512, 0);
        assert!(p.entries_needed <= p.max);
        let p = plan(
            &Request {
                rate: 0.0,
                timeout: Some(1),
                headroom: 1.0,
            },
            &Config::default(),
            &KernelFacts {
                page_size: 4096,
                ..KernelFacts::default()
            },
        );
        assert_eq!(p.max, 1024);
        // max / 4 = 256 is stored by the kernel as one page of buckets.
        assert_eq!(p.buckets, 512);
        assert_eq!(p.current_rate, None);
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("6.18.0-1-amd64"), Some((6, 18)));
        assert_eq!(parse_version("5.4.0"), Some((5, 4)));
        assert_eq!(parse_version("garbage"), None);
    }
}
