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

use std::fmt::Write as _;

use serde::Serialize;

use crate::config::{Config, MAX_CONNTRACK_MAX};
pub use crate::kernel::facts::{parse_version, KernelFacts};
use crate::kernel::hashsize;
use crate::kernel::slab::worst_case_bytes;
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
    /// The recommended max against the `[grow]` budget on this machine
    /// (set by the caller, which knows the RAM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetView>,
}

/// The largest max that still keeps max / 4 a whole number of 4 KiB-page
/// bucket groups: the kernel's limit (INT_MAX) rounded down to 2048.
pub const LARGEST_MAX: u64 = MAX_CONNTRACK_MAX / 2048 * 2048;

/// Round `wanted` up to a power of two (at least 1024). Past 2^30 the next
/// power of two is beyond the kernel's limit (INT_MAX): recommend the
/// largest aligned max instead, and say so when even that holds fewer
/// entries than wanted (or than needed without headroom).
fn recommended_max(wanted: u64, needed: u64) -> (u64, Option<String>) {
    match wanted.max(1024).checked_next_power_of_two() {
        Some(m) if m <= MAX_CONNTRACK_MAX => (m, None),
        _ if wanted <= LARGEST_MAX => (wanted.div_ceil(2048) * 2048, None),
        _ => {
            let what = if needed > LARGEST_MAX {
                format!("the workload needs {needed} entries")
            } else {
                format!("{wanted} entries with the headroom")
            };
            let why = format!(
                "{what}, more than the kernel's nf_conntrack_max limit ({MAX_CONNTRACK_MAX}); \
                 recommending {LARGEST_MAX}: shorten the timeout or keep this traffic out of \
                 conntrack (host networking or NOTRACK; NAT needs conntrack)"
            );
            (LARGEST_MAX, Some(why))
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
    let two_second_rule = k.version.map_or(true, |v| v >= TWO_SECOND_RULE);
    let release = k.release.as_deref().unwrap_or("(unknown)");
    // The kernel's timeouts (else its defaults), and those in effect:
    // configured, else the kernel's.
    let k_short = k.udp_timeout.unwrap_or(DEFAULT_UDP_TIMEOUT);
    let k_stream = k.udp_timeout_stream.unwrap_or(DEFAULT_UDP_TIMEOUT_STREAM);
    let short = cfg.conntrack.udp_timeout.value().unwrap_or(k_short);
    let stream = cfg.conntrack.udp_timeout_stream.value().unwrap_or(k_stream);
    let (timeout, reason) = match req.timeout {
        Some(t) => (t, format!("--timeout {t} given")),
        None if two_second_rule => (
            short,
            format!(
                "kernel {release} has the 2-second rule (since 5.15): a request/response flow shorter than 2 s \
                 stays unassured and is held by nf_conntrack_udp_timeout; flows that stay active longer \
                 move to nf_conntrack_udp_timeout_stream ({stream} s) - pass --timeout for those"
            ),
        ),
        None => (
            stream,
            format!("kernel {release} predates 5.15: any replied UDP flow moves to nf_conntrack_udp_timeout_stream"),
        ),
    };
    let rate = req.rate.max(0.0);
    let sized = size_for(rate, timeout, req.headroom);
    let max = sized.max;
    let buckets = hashsize::kernel_buckets((max / 4).max(1), k.page_size);
    let current_timeout = if two_second_rule { k_short } else { k_stream };
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
        "[conntrack]\nmax = {max}\nmax_policy = \"{max_policy}\"\nbuckets = {buckets}\nudp_timeout = {short}\nudp_timeout_stream = {stream}\n"
    );
    Plan {
        rate,
        timeout,
        timeout_reason: reason,
        entries_needed: sized.entries_needed,
        headroom: req.headroom,
        max,
        buckets,
        limited: sized.limited,
        entry_bytes: k.entry_bytes,
        memory_entries_bytes: max.saturating_mul(k.entry_bytes),
        memory_buckets_bytes: buckets * 8,
        current_rate,
        current_max: k.max,
        recommended_rate: max as f64 / timeout.max(1) as f64,
        max_policy,
        policy_reason,
        config_block,
        budget: None,
    }
}

/// The table against the `[grow]` budget: what `status` shows for the
/// current max, `plan` for the recommended one, `doctor` for the
/// configured one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetView {
    /// `[grow] budget` as configured ("2%", "512MiB").
    pub budget: String,
    /// The budget in bytes on this machine.
    pub budget_bytes: u64,
    /// Bytes per entry counted ([`crate::kernel::slab::entry_bytes`]).
    pub entry_bytes: u64,
    /// The max judged.
    pub max: u64,
    /// The buckets with it.
    pub buckets: u64,
    /// Worst-case memory at `max` and `buckets`: every entry in use.
    pub worst_case_bytes: u64,
    /// What is left of the budget at `max`; 0 when over it.
    pub headroom_bytes: u64,
    /// Whether `max` fits the budget.
    pub fits: bool,
    /// The largest max the budget allows here, buckets sized with it as
    /// apply does at boot (max / 4, never fewer than `buckets`): how far
    /// the watchdog may grow and the next boot start from.
    pub max_allowed: u64,
}

/// Judge `max` (with `buckets`) against a budget of `budget_bytes`. Pure.
pub fn budget_view(
    budget: &str,
    budget_bytes: u64,
    entry_bytes: u64,
    page_size: u64,
    max: u64,
    buckets: u64,
) -> BudgetView {
    let worst = worst_case_bytes(max, buckets, entry_bytes);
    BudgetView {
        budget: budget.to_string(),
        budget_bytes,
        entry_bytes,
        max,
        buckets,
        worst_case_bytes: worst,
        headroom_bytes: budget_bytes.saturating_sub(worst),
        fits: worst <= budget_bytes,
        max_allowed: boot_cap(budget_bytes, entry_bytes, buckets, page_size),
    }
}

impl BudgetView {
    /// `[grow] budget 2% = 491.5 MiB`.
    pub fn budget_text(&self) -> String {
        let bytes = human_bytes(self.budget_bytes);
        format!("[grow] budget {} = {bytes}", self.budget)
    }

    /// `worst case at max 524288: 192.3 MiB (384 B per entry + buckets)`.
    pub fn worst_text(&self) -> String {
        let (max, worst) = (self.max, human_bytes(self.worst_case_bytes));
        let (entry, buckets) = (self.entry_bytes, self.buckets);
        format!("worst case at max {max}: {worst} ({entry} B per entry + {buckets} buckets x 8 B)")
    }
}

impl Plan {
    /// The text report.
    pub fn text(&self) -> String {
        let mut s = format!(
            "rate:              {} new UDP flows/s at peak\n\
             timeout:           {} s\n  why: {}\n\
             entries needed:    {} (rate x timeout)\n\
             recommended max:   {} (x{} headroom, {})\n",
            self.rate,
            self.timeout,
            self.timeout_reason,
            self.entries_needed,
            self.max,
            self.headroom,
            if self.max.is_power_of_two() {
                "rounded up to a power of two"
            } else {
                "near the kernel's limit"
            }
        );
        if let Some(why) = &self.limited {
            let _ = writeln!(s, "LIMITED:           {why}");
        }
        let _ = writeln!(
            s,
            "buckets:           {} (max / 4, a whole page of buckets as the kernel stores it)\n\
             memory when full:  {} for entries ({} B each) + {} for the bucket array (allocated up front)",
            self.buckets,
            human_bytes(self.memory_entries_bytes),
            self.entry_bytes,
            human_bytes(self.memory_buckets_bytes)
        );
        match (self.current_rate, self.current_max) {
            (Some(r), Some(m)) => {
                let _ = writeln!(s, "sustainable now:   {r:.0} flows/s (current max {m})");
            }
            _ => s.push_str("sustainable now:   unknown (conntrack not loaded)\n"),
        }
        let _ = writeln!(s, "sustainable after: {:.0} flows/s", self.recommended_rate);
        if let Some(m) = self.current_max.filter(|m| *m > self.max) {
            let _ = writeln!(
                s,
                "note:              the current max ({m}) already covers this rate; \
                 there is no need to lower it"
            );
        }
        let _ = writeln!(
            s,
            "policy:            max_policy = \"{}\": {}",
            self.max_policy, self.policy_reason
        );
        if let Some(b) = &self.budget {
            let verdict = if b.fits {
                format!("the recommended max fits ({})", b.worst_text())
            } else {
                format!(
                    "the recommended max does NOT fit ({}): configured, apply still sets \
                     it, and the watchdog never grows past it; raise [grow] budget to at \
                     least {} to cover it",
                    b.worst_text(),
                    human_bytes(b.worst_case_bytes)
                )
            };
            let _ = writeln!(
                s,
                "budget:            {} allows max up to {} here; {verdict}",
                b.budget_text(),
                b.max_allowed
            );
        }
        s.push_str(
            "drop points:       these settings size the conntrack table; UDP is also \
             dropped silently when a socket's receive buffer is full (SO_RCVBUF, \
             net.core.rmem_max) and when the input backlog is full \
             (net.core.netdev_max_backlog): `conntrack-guard status --window 5` \
             shows which one loses packets\n\n\
             # paste into /etc/conntrack-guard/conntrack-guard.toml\n",
        );
        s.push_str(&self.config_block);
        s
    }
}

/// The largest max whose worst-case memory fits `budget_bytes`, with
/// `buckets_at` giving the bucket count at a max (monotonic). At most the
/// kernel's limit; 0 when not even an empty table fits.
pub fn cap_max(budget_bytes: u64, entry_bytes: u64, buckets_at: impl Fn(u64) -> u64) -> u64 {
    let fits = |m: u64| worst_case_bytes(m, buckets_at(m), entry_bytes) <= budget_bytes;
    if !fits(0) {
        return 0;
    }
    // Worst-case memory only rises with max: binary search, 31 steps.
    let (mut lo, mut hi) = (0, MAX_CONNTRACK_MAX);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// The budget's cap at boot, where apply sizes buckets with max (to max /
/// 4, as the kernel rounds it, never below `buckets`): what a remembered
/// max is checked against.
pub fn boot_cap(budget_bytes: u64, entry_bytes: u64, buckets: u64, page_size: u64) -> u64 {
    cap_max(budget_bytes, entry_bytes, |m| {
        hashsize::kernel_buckets(m / 4, page_size).max(buckets)
    })
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

    #[test]
    fn budget_view_says_what_fits() {
        let v = budget_view("512MiB", 512 << 20, 384, 4096, 262_144, 65_536);
        assert_eq!(v.worst_case_bytes, 262_144 * 384 + 65_536 * 8);
        assert!(v.fits);
        assert_eq!(v.headroom_bytes, (512 << 20) - v.worst_case_bytes);
        // The cap counts buckets at max / 4 as the kernel rounds them.
        let cap = v.max_allowed;
        let worst =
            |m: u64| worst_case_bytes(m, hashsize::kernel_buckets(m / 4, 4096).max(65_536), 384);
        assert!(
            worst(cap) <= 512 << 20 && worst(cap + 1) > 512 << 20,
            "{cap}"
        );
        assert_eq!(v.budget_text(), "[grow] budget 512MiB = 512.0 MiB");
        // Over: no headroom, not a wrapped number.
        let v = budget_view("1MiB", 1 << 20, 384, 4096, 262_144, 65_536);
        assert!(!v.fits);
        assert_eq!(v.headroom_bytes, 0);
        // Plan's text names the budget and the verdict.
        let mut p = plan(
            &Request {
                rate: 750.0,
                timeout: None,
                headroom: 2.0,
            },
            &Config::default(),
            &k((6, 18)),
        );
        assert!(!p.text().contains("budget:"));
        p.budget = Some(budget_view("1MiB", 1 << 20, 320, 4096, p.max, p.buckets));
        let t = p.text();
        assert!(
            t.contains("budget:            [grow] budget 1MiB = 1.0 MiB allows max up to "),
            "{t}"
        );
        assert!(t.contains("the recommended max does NOT fit"), "{t}");
    }
    #[test]
    fn boot_cap_fits_the_budget() {
        use crate::kernel::hashsize::kernel_buckets;
        const MIB: u64 = 1 << 20;
        let cap = boot_cap(64 * MIB, 384, 512, 4096);
        let used = worst_case_bytes(cap, kernel_buckets(cap / 4, 4096).max(512), 384);
        assert!(used <= 64 * MIB);
        let over = worst_case_bytes(cap + 1, kernel_buckets((cap + 1) / 4, 4096).max(512), 384);
        assert!(over > 64 * MIB);
    }
}
