// SPDX-License-Identifier: MIT OR Apache-2.0
//! The configuration model: types, defaults and the ranges each key accepts.
//! Nothing here reads a file or TOML.

use std::path::PathBuf;
use std::time::Duration;

/// Largest value `nf_conntrack_max` takes: the kernel parses it as an int.
pub const MAX_CONNTRACK_MAX: u64 = i32::MAX as u64;
/// Largest bucket count the kernel allocates (INT_MAX / sizeof(pointer)).
pub const MAX_BUCKETS: u64 = (i32::MAX as u64) / 8;
/// Timeouts are accepted from 1 s to 1 day.
pub const MAX_TIMEOUT: u64 = 86_400;
/// A config larger than this is refused (checked on the size and on the read).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// `[watch] interval`, and `watch --interval`.
pub const INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_millis(1), Duration::from_secs(3600));
/// Percentages: `warn_percent` and `critical_percent` must also be above 0.
pub const PERCENT_RANGE: (f64, f64) = (0.0, 100.0);
/// `[watch] reminder`, `drops_every`, `triage_every` and
/// `namespaces_every`, `[grow] every`.
pub const EVERY_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(86_400));
/// `[watch] restore_limit`: restores of one key per hour.
pub const RESTORE_LIMIT_RANGE: (u64, u64) = (1, 60);
/// `[watch] hysteresis_percent`.
pub const HYSTERESIS_RANGE: (f64, f64) = (0.0, 50.0);
/// `[grow] budget` as a size: above 0 and below 1 PiB (a larger figure is
/// a typo, not a budget).
pub const BUDGET_MAX_BYTES: u64 = 1 << 50;

/// sysctl keys of the four conntrack settings.
pub const KEY_MAX: &str = "net.netfilter.nf_conntrack_max";
/// See [`KEY_MAX`].
pub const KEY_BUCKETS: &str = "net.netfilter.nf_conntrack_buckets";
/// See [`KEY_MAX`].
pub const KEY_UDP_TIMEOUT: &str = "net.netfilter.nf_conntrack_udp_timeout";
/// See [`KEY_MAX`].
pub const KEY_UDP_TIMEOUT_STREAM: &str = "net.netfilter.nf_conntrack_udp_timeout_stream";
/// The count, read-only.
pub const KEY_COUNT: &str = "net.netfilter.nf_conntrack_count";

/// A kernel value to set, or `Keep` to leave it (and not watch it for drift).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knob {
    /// Set to this value.
    Set(u64),
    /// Leave the kernel's value alone.
    Keep,
}

impl Knob {
    /// The value, if set.
    pub fn value(self) -> Option<u64> {
        match self {
            Knob::Set(v) => Some(v),
            Knob::Keep => None,
        }
    }
}

/// Which direction a size key may be moved in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// The configured value wins, up or down.
    #[default]
    Exact,
    /// Raise to the configured value, never lower: a larger value set by
    /// someone else (the module default, kube-proxy) is kept.
    AtLeast,
}

impl Policy {
    /// `exact` or `at-least`, as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Exact => "exact",
            Policy::AtLeast => "at-least",
        }
    }
}

/// The bucket setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buckets {
    /// max / 4 (kube-proxy and the write-up use this ratio).
    Auto,
    /// An explicit count.
    Set(u64),
    /// Leave the kernel's value alone.
    Keep,
}

/// The `[conntrack]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conntrack {
    /// nf_conntrack_max.
    pub max: Knob,
    /// nf_conntrack_buckets.
    pub buckets: Buckets,
    /// nf_conntrack_udp_timeout, seconds.
    pub udp_timeout: Knob,
    /// nf_conntrack_udp_timeout_stream, seconds.
    pub udp_timeout_stream: Knob,
    /// May apply lower nf_conntrack_max?
    pub max_policy: Policy,
    /// May apply lower nf_conntrack_buckets?
    pub buckets_policy: Policy,
}

impl Conntrack {
    /// The bucket count to write, if any. "auto" with `max = "keep"` keeps
    /// the buckets too: there is no configured max to derive them from.
    pub fn buckets_value(&self) -> Option<u64> {
        match (self.buckets, self.max) {
            (Buckets::Set(b), _) => Some(b),
            (Buckets::Auto, Knob::Set(m)) => Some((m / 4).max(1)),
            _ => None,
        }
    }
}

/// One extra `[sysctl]` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extra {
    /// Dotted key, validated.
    pub key: String,
    /// Value as it will be written.
    pub value: String,
    /// Line in the config file, for errors found later (key absent).
    pub line: Option<usize>,
}

/// The `[watch]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    /// Sampling interval.
    pub interval: Duration,
    /// Fill percentage for the warning level.
    pub warn_percent: f64,
    /// Fill percentage for the critical level.
    pub critical_percent: f64,
    /// How far below a threshold the fill must fall to leave its level.
    pub hysteresis_percent: f64,
    /// Minimum time between reminders while not ok.
    pub reminder: Duration,
    /// While drops go on, one aggregate event per this long.
    pub drops_every: Duration,
    /// Write a drifted value back (and read it back).
    pub restore: bool,
    /// Restores of one key per hour before giving up (`drift_fight`).
    pub restore_limit: u64,
    /// Run `top`'s aggregation once when the level rises.
    pub triage: bool,
    /// At most one triage per this long.
    pub triage_every: Duration,
    /// Watch every network namespace, not only the host's.
    pub all_namespaces: bool,
    /// Scan the namespaces this often.
    pub namespaces_every: Duration,
}

/// The `[metrics]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metrics {
    /// node_exporter textfile path; `None` when off.
    pub textfile: Option<PathBuf>,
}

/// `[grow] budget`: the most memory the table may cost at its grown max.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// A share of RAM (MemTotal), in percent: above 0, at most 100.
    Percent(f64),
    /// A fixed size in bytes.
    Bytes(u64),
}

impl Budget {
    /// The budget in bytes on a machine with `mem_total` bytes of RAM
    /// (MemTotal of /proc/meminfo, which is given in KiB, times 1024).
    pub fn bytes(self, mem_total: u64) -> u64 {
        match self {
            // f64 is exact for every RAM size below 8 PiB; the cast floors.
            Budget::Percent(p) => (mem_total as f64 * p / 100.0) as u64,
            Budget::Bytes(b) => b,
        }
    }
}

/// Written the way the config accepts it: "2%", "512MiB", "1000B".
impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Budget::Percent(p) => write!(f, "{p}%"),
            Budget::Bytes(b) => {
                let (n, unit) = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")]
                    .into_iter()
                    .find(|(shift, _)| b != 0 && b % (1u64 << shift) == 0)
                    .map_or((b, "B"), |(shift, unit)| (b >> shift, unit));
                write!(f, "{n}{unit}")
            }
        }
    }
}

/// The `[grow]` section: raising nf_conntrack_max on its own when the
/// table fills, within a memory budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Grow {
    /// Grow at all.
    pub enabled: bool,
    /// The worst-case memory of the table at the grown max.
    pub budget: Budget,
    /// At most one growth per this long.
    pub every: Duration,
    /// The next boot starts from the grown value.
    pub remember: bool,
}

impl Default for Grow {
    fn default() -> Self {
        Grow {
            enabled: true,
            budget: Budget::Percent(2.0),
            every: Duration::from_secs(10),
            remember: true,
        }
    }
}

/// A whole, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[conntrack]`.
    pub conntrack: Conntrack,
    /// `[sysctl]`, sorted by key (toml's table order).
    pub sysctl: Vec<Extra>,
    /// `[watch]`.
    pub watch: Watch,
    /// `[metrics]`.
    pub metrics: Metrics,
    /// `[grow]`.
    pub grow: Grow,
    /// Where it came from; `None` for the built-in defaults.
    pub source: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            conntrack: Conntrack {
                max: Knob::Set(1_048_576),
                buckets: Buckets::Auto,
                udp_timeout: Knob::Set(10),
                udp_timeout_stream: Knob::Set(15),
                max_policy: Policy::Exact,
                buckets_policy: Policy::Exact,
            },
            sysctl: Vec::new(),
            watch: Watch {
                interval: Duration::from_secs(5),
                warn_percent: 80.0,
                critical_percent: 95.0,
                hysteresis_percent: 5.0,
                reminder: Duration::from_secs(300),
                drops_every: Duration::from_secs(60),
                restore: false,
                restore_limit: 3,
                triage: true,
                triage_every: Duration::from_secs(600),
                all_namespaces: false,
                namespaces_every: Duration::from_secs(60),
            },
            metrics: Metrics::default(),
            grow: Grow::default(),
            source: None,
        }
    }
}

/// One kernel setting the config asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Dotted sysctl key.
    pub key: String,
    /// The value to write and expect back.
    pub value: String,
    /// Whether a larger kernel value is kept.
    pub policy: Policy,
}

impl Config {
    /// Every kernel value this config sets, in the order apply writes them.
    /// Buckets come before max so the table is never briefly large with a
    /// small hash.
    pub fn targets(&self) -> Vec<Target> {
        let c = &self.conntrack;
        let (timeout, stream) = (c.udp_timeout.value(), c.udp_timeout_stream.value());
        let conntrack = [
            (KEY_BUCKETS, c.buckets_value(), c.buckets_policy),
            (KEY_MAX, c.max.value(), c.max_policy),
            (KEY_UDP_TIMEOUT, timeout, Policy::Exact),
            (KEY_UDP_TIMEOUT_STREAM, stream, Policy::Exact),
        ];
        let conntrack = conntrack
            .into_iter()
            .filter_map(|(key, v, policy)| Some((key.to_string(), v?.to_string(), policy)));
        let sysctl = self
            .sysctl
            .iter()
            .map(|e| (e.key.clone(), e.value.clone(), Policy::Exact));
        let target = |(key, value, policy)| Target { key, value, policy };
        conntrack.chain(sysctl).map(target).collect()
    }

    /// A short name for messages: the file, or "built-in defaults".
    pub fn source_name(&self) -> String {
        let source = self.source.as_ref().map(|p| p.display().to_string());
        source.unwrap_or_else(|| "built-in defaults".into())
    }
}
