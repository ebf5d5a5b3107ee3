// SPDX-License-Identifier: MIT OR Apache-2.0
//! The configuration file: parsing and validation.
//!
//! Parsing walks toml's spanned document tree rather than deriving structs, so
//! every error can name the file, the line and the key, and an unknown key can
//! get a "did you mean" hint. A typo must never leave the kernel untuned
//! silently, so unknown keys are errors, not warnings.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::sysroot::{PathError, SysRoot, DEFAULT_CONFIG};

/// Largest value `nf_conntrack_max` takes: the kernel parses it as an int.
pub const MAX_CONNTRACK_MAX: u64 = i32::MAX as u64;
/// Largest bucket count the kernel allocates (INT_MAX / sizeof(pointer)).
pub const MAX_BUCKETS: u64 = (i32::MAX as u64) / 8;
/// Timeouts are accepted from 1 s to 1 day.
pub const MAX_TIMEOUT: u64 = 86_400;
/// A config larger than this is refused before it is read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

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
}

/// The `[metrics]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metrics {
    /// node_exporter textfile path; `None` when off.
    pub textfile: Option<PathBuf>,
}

/// A whole, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[conntrack]`.
    pub conntrack: Conntrack,
    /// `[sysctl]`, in file order.
    pub sysctl: Vec<Extra>,
    /// `[watch]`.
    pub watch: Watch,
    /// `[metrics]`.
    pub metrics: Metrics,
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
            },
            sysctl: Vec::new(),
            watch: Watch {
                interval: Duration::from_secs(5),
                warn_percent: 80.0,
                critical_percent: 95.0,
                hysteresis_percent: 5.0,
                reminder: Duration::from_secs(300),
            },
            metrics: Metrics::default(),
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
}

impl Config {
    /// Every kernel value this config sets, in the order apply writes them.
    /// Buckets come before max so the table is never briefly large with a
    /// small hash.
    pub fn targets(&self) -> Vec<Target> {
        let c = &self.conntrack;
        let mut out = Vec::new();
        let mut push = |key: &str, v: Option<u64>| {
            if let Some(v) = v {
                out.push(Target {
                    key: key.to_string(),
                    value: v.to_string(),
                });
            }
        };
        push(KEY_BUCKETS, c.buckets_value());
        push(KEY_MAX, c.max.value());
        push(KEY_UDP_TIMEOUT, c.udp_timeout.value());
        push(KEY_UDP_TIMEOUT_STREAM, c.udp_timeout_stream.value());
        out.extend(self.sysctl.iter().map(|e| Target {
            key: e.key.clone(),
            value: e.value.clone(),
        }));
        out
    }

    /// A short name for messages: the file, or "built-in defaults".
    pub fn source_name(&self) -> String {
        match &self.source {
            Some(p) => p.display().to_string(),
            None => "built-in defaults".to_string(),
        }
    }
}

/// A configuration error: file, line where known, key where known.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key (`section.key`), when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// The underlying I/O error, if any.
    #[source]
    pub source: Option<PathError>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Load the configuration: `explicit` (from `--config`), else the rooted
/// default path. A missing default file means built-in defaults; a missing
/// explicit file is an error.
pub fn load(root: &SysRoot, explicit: Option<&Path>) -> Result<Config, ConfigError> {
    let (path, required) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => (root.path(DEFAULT_CONFIG), false),
    };
    let err = |message: String, source: Option<PathError>| ConfigError {
        file: path.clone(),
        line: None,
        key: None,
        message,
        source,
    };
    let io_err = |e: std::io::Error| PathError {
        path: path.clone(),
        source: e,
    };
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(Config::default())
        }
        Err(e) => return Err(err(format!("cannot read config: {e}"), Some(io_err(e)))),
    };
    if meta.is_dir() {
        return Err(err("is a directory, not a config file".into(), None));
    }
    check_ownership(&meta, root.privileged()).map_err(|m| err(m, None))?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(err(
            format!(
                "file is {} bytes; a config larger than {} bytes is refused",
                meta.len(),
                MAX_CONFIG_BYTES
            ),
            None,
        ));
    }
    let bytes = std::fs::read(&path)
        .map_err(|e| err(format!("cannot read config: {e}"), Some(io_err(e))))?;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = good.iter().filter(|b| **b == b'\n').count() + 1;
            return Err(ConfigError {
                line: Some(line),
                ..err("invalid UTF-8".into(), None)
            });
        }
    };
    let mut cfg = parse(&text, &path)?;
    cfg.source = Some(path);
    Ok(cfg)
}

/// Refuse a config that someone other than root could have written, when we
/// run privileged (root, or the boot unit's dynamic user holding
/// CAP_NET_ADMIN): it decides what gets written into the kernel (sshd
/// refuses its keys on the same grounds).
pub fn check_ownership(meta: &std::fs::Metadata, privileged: bool) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if !privileged {
        return Ok(());
    }
    if meta.uid() != 0 {
        return Err(format!(
            "owned by uid {}, not root; refusing a config others could change (chown root)",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "mode {:04o} is group- or world-writable; refusing it (chmod go-w)",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

const SECTIONS: &[&str] = &["conntrack", "sysctl", "watch", "metrics"];
const CONNTRACK_KEYS: &[&str] = &["max", "buckets", "udp_timeout", "udp_timeout_stream"];
const WATCH_KEYS: &[&str] = &[
    "interval",
    "warn_percent",
    "critical_percent",
    "hysteresis_percent",
    "reminder",
];
const METRICS_KEYS: &[&str] = &["textfile"];

/// Parse and validate config text. `file` is only used in errors.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let p = Parser { text, file };
    let doc = DeTable::parse(text).map_err(|e| ConfigError {
        file: file.to_path_buf(),
        line: e.span().map(|s| p.line_of(s.start)),
        key: None,
        message: format!("TOML syntax: {}", e.message().trim()),
        source: None,
    })?;
    let mut cfg = Config::default();
    for (name, value) in doc.get_ref() {
        let section = name.get_ref().as_ref();
        let Some(table) = value.get_ref().as_table() else {
            return Err(p.error(
                name.span().start,
                section,
                format!(
                    "expected a [section], found a {}{}",
                    value.get_ref().type_str(),
                    p.suggest(section, CONNTRACK_KEYS.iter().chain(WATCH_KEYS).copied())
                        .map(|s| format!(" (is `{s}` missing its [section] header?)"))
                        .unwrap_or_default()
                ),
            ));
        };
        match section {
            "conntrack" => p.conntrack(table, &mut cfg.conntrack)?,
            "sysctl" => cfg.sysctl = p.sysctl(table)?,
            "watch" => p.watch(table, &mut cfg.watch)?,
            "metrics" => p.metrics(table, &mut cfg.metrics)?,
            other => {
                return Err(p.error(
                    name.span().start,
                    other,
                    p.unknown("section", other, SECTIONS.iter().copied()),
                ))
            }
        }
    }
    p.cross_check(&cfg)?;
    Ok(cfg)
}

struct Parser<'a> {
    text: &'a str,
    file: &'a Path,
}

type Entry<'i> = (
    &'i Spanned<toml::de::DeString<'i>>,
    &'i Spanned<DeValue<'i>>,
);

impl Parser<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn error(&self, offset: usize, key: &str, message: String) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: Some(self.line_of(offset)),
            key: Some(key.to_string()),
            message,
            source: None,
        }
    }

    fn suggest<'k>(&self, word: &str, known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
        known
            .map(|k| (edit_distance(word, k), k))
            .filter(|(d, k)| *d <= 3.max(k.len() / 3) && *d < k.len())
            .min_by_key(|(d, _)| *d)
            .map(|(_, k)| k)
    }

    fn unknown<'k>(
        &self,
        what: &str,
        word: &str,
        known: impl Iterator<Item = &'k str> + Clone,
    ) -> String {
        let list: Vec<&str> = known.clone().collect();
        match self.suggest(word, known) {
            Some(s) => format!("unknown {what} `{word}`; did you mean `{s}`?"),
            None => format!(
                "unknown {what} `{word}`; expected one of: {}",
                list.join(", ")
            ),
        }
    }

    fn entries<'i>(table: &'i DeTable<'i>) -> impl Iterator<Item = Entry<'i>> {
        table.iter()
    }

    fn conntrack(&self, table: &DeTable<'_>, out: &mut Conntrack) -> Result<(), ConfigError> {
        for (k, v) in Self::entries(table) {
            let key = k.get_ref().as_ref();
            let full = format!("conntrack.{key}");
            let at = k.span().start;
            match key {
                "max" => out.max = self.knob(v, &full, at, 1, MAX_CONNTRACK_MAX)?,
                "buckets" => {
                    out.buckets = match v.get_ref().as_str() {
                        Some("auto") => Buckets::Auto,
                        _ => match self.knob(v, &full, at, 1, MAX_BUCKETS).map_err(|mut e| {
                            e.message = e.message.replace("or \"keep\"", "\"auto\" or \"keep\"");
                            e
                        })? {
                            Knob::Set(b) => Buckets::Set(b),
                            Knob::Keep => Buckets::Keep,
                        },
                    }
                }
                "udp_timeout" => out.udp_timeout = self.knob(v, &full, at, 1, MAX_TIMEOUT)?,
                "udp_timeout_stream" => {
                    out.udp_timeout_stream = self.knob(v, &full, at, 1, MAX_TIMEOUT)?
                }
                other => {
                    return Err(self.error(
                        at,
                        &full,
                        self.unknown("key", other, CONNTRACK_KEYS.iter().copied()),
                    ))
                }
            }
        }
        Ok(())
    }

    fn knob(
        &self,
        v: &Spanned<DeValue<'_>>,
        key: &str,
        at: usize,
        min: u64,
        max: u64,
    ) -> Result<Knob, ConfigError> {
        match v.get_ref() {
            DeValue::String(s) if s.as_ref() == "keep" => Ok(Knob::Keep),
            DeValue::Integer(i) => self.int_in(i, key, at, min, max).map(Knob::Set),
            other => Err(self.error(
                at,
                key,
                format!("expected an integer or \"keep\", found {}", describe(other)),
            )),
        }
    }

    fn int_in(
        &self,
        i: &toml::de::DeInteger<'_>,
        key: &str,
        at: usize,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let raw = i.as_str();
        if raw.starts_with('-') {
            return Err(self.error(at, key, format!("must be at least {min}, found {raw}")));
        }
        let n = u64::from_str_radix(raw.trim_start_matches('+'), i.radix())
            .map_err(|_| self.error(at, key, format!("{raw} is too large (at most {max})")))?;
        if n < min || n > max {
            return Err(self.error(
                at,
                key,
                format!("must be between {min} and {max}, found {n}"),
            ));
        }
        Ok(n)
    }

    fn sysctl(&self, table: &DeTable<'_>) -> Result<Vec<Extra>, ConfigError> {
        let mut out = Vec::new();
        for (k, v) in Self::entries(table) {
            let key = k.get_ref().as_ref();
            let at = k.span().start;
            let full = format!("sysctl.\"{key}\"");
            if let Err(why) = valid_sysctl_key(key) {
                return Err(self.error(at, &full, why));
            }
            if key.starts_with("net.netfilter.nf_conntrack_")
                && [
                    KEY_MAX,
                    KEY_BUCKETS,
                    KEY_UDP_TIMEOUT,
                    KEY_UDP_TIMEOUT_STREAM,
                    KEY_COUNT,
                ]
                .contains(&key)
            {
                return Err(self.error(
                    at,
                    &full,
                    "is managed by the [conntrack] section; set it there".into(),
                ));
            }
            let value = match v.get_ref() {
                DeValue::Integer(i) => {
                    let raw = i.as_str();
                    i128::from_str_radix(raw, i.radix())
                        .map_err(|_| self.error(at, &full, format!("{raw} is out of range")))?
                        .to_string()
                }
                DeValue::String(s) => {
                    let s = s.as_ref();
                    if s.is_empty() || s.contains(['\n', '\r', '\0']) {
                        return Err(self.error(
                            at,
                            &full,
                            "value must be non-empty and on one line".into(),
                        ));
                    }
                    s.to_string()
                }
                DeValue::Boolean(b) => u8::from(*b).to_string(),
                other => {
                    return Err(self.error(
                        at,
                        &full,
                        format!("expected an integer or a string, found {}", describe(other)),
                    ))
                }
            };
            out.push(Extra {
                key: key.to_string(),
                value,
                line: Some(self.line_of(at)),
            });
        }
        Ok(out)
    }

    fn watch(&self, table: &DeTable<'_>, out: &mut Watch) -> Result<(), ConfigError> {
        for (k, v) in Self::entries(table) {
            let key = k.get_ref().as_ref();
            let full = format!("watch.{key}");
            let at = k.span().start;
            match key {
                "interval" => {
                    out.interval = self.duration(
                        v,
                        &full,
                        at,
                        Duration::from_millis(1),
                        Duration::from_secs(3600),
                    )?
                }
                "reminder" => {
                    out.reminder = self.duration(
                        v,
                        &full,
                        at,
                        Duration::from_secs(1),
                        Duration::from_secs(86_400),
                    )?
                }
                "warn_percent" => out.warn_percent = self.percent(v, &full, at)?,
                "critical_percent" => out.critical_percent = self.percent(v, &full, at)?,
                "hysteresis_percent" => {
                    out.hysteresis_percent = self.number(v, &full, at, 0.0, 50.0)?
                }
                other => {
                    return Err(self.error(
                        at,
                        &full,
                        self.unknown("key", other, WATCH_KEYS.iter().copied()),
                    ))
                }
            }
        }
        Ok(())
    }

    fn metrics(&self, table: &DeTable<'_>, out: &mut Metrics) -> Result<(), ConfigError> {
        for (k, v) in Self::entries(table) {
            let key = k.get_ref().as_ref();
            let full = format!("metrics.{key}");
            let at = k.span().start;
            match key {
                "textfile" => {
                    let Some(s) = v.get_ref().as_str() else {
                        return Err(self.error(
                            at,
                            &full,
                            format!("expected a path string, found {}", describe(v.get_ref())),
                        ));
                    };
                    out.textfile = if s.is_empty() {
                        None
                    } else if !s.starts_with('/') || s.ends_with('/') || s.contains('\0') {
                        return Err(self.error(
                            at,
                            &full,
                            format!("must be an absolute file path, found {s:?}"),
                        ));
                    } else {
                        Some(PathBuf::from(s))
                    };
                }
                other => {
                    return Err(self.error(
                        at,
                        &full,
                        self.unknown("key", other, METRICS_KEYS.iter().copied()),
                    ))
                }
            }
        }
        Ok(())
    }

    fn number(
        &self,
        v: &Spanned<DeValue<'_>>,
        key: &str,
        at: usize,
        min: f64,
        max: f64,
    ) -> Result<f64, ConfigError> {
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            other => {
                return Err(self.error(
                    at,
                    key,
                    format!("expected a number, found {}", describe(other)),
                ))
            }
        };
        match n {
            Some(n) if n.is_finite() && n >= min && n <= max => Ok(n),
            _ => Err(self.error(
                at,
                key,
                format!(
                    "must be between {min} and {max}, found {}",
                    raw_of(v.get_ref())
                ),
            )),
        }
    }

    fn percent(&self, v: &Spanned<DeValue<'_>>, key: &str, at: usize) -> Result<f64, ConfigError> {
        let n = self.number(v, key, at, 0.0, 100.0)?;
        if n <= 0.0 {
            return Err(self.error(at, key, "must be above 0".into()));
        }
        Ok(n)
    }

    fn duration(
        &self,
        v: &Spanned<DeValue<'_>>,
        key: &str,
        at: usize,
        min: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        let parsed = match v.get_ref() {
            DeValue::String(s) => parse_duration(s.as_ref()),
            DeValue::Integer(_) | DeValue::Float(_) => parse_duration(&raw_of(v.get_ref())),
            other => Err(format!(
                "expected a duration such as \"5s\", found {}",
                describe(other)
            )),
        }
        .map_err(|m| self.error(at, key, m))?;
        if parsed < min || parsed > max {
            return Err(self.error(
                at,
                key,
                format!(
                    "must be between {} and {}, found {}",
                    fmt_duration(min),
                    fmt_duration(max),
                    fmt_duration(parsed)
                ),
            ));
        }
        Ok(parsed)
    }

    fn cross_check(&self, cfg: &Config) -> Result<(), ConfigError> {
        let line_of_key = |section: &str, key: &str| self.find_line(section, key);
        let err = |section: &str, key: &str, message: String| ConfigError {
            file: self.file.to_path_buf(),
            line: line_of_key(section, key),
            key: Some(format!("{section}.{key}")),
            message,
            source: None,
        };
        if let (Buckets::Set(b), Knob::Set(m)) = (cfg.conntrack.buckets, cfg.conntrack.max) {
            if b > m {
                return Err(err(
                    "conntrack",
                    "buckets",
                    format!("buckets ({b}) must not exceed max ({m}); about max/4 is usual"),
                ));
            }
        }
        let w = &cfg.watch;
        if w.warn_percent >= w.critical_percent {
            return Err(err(
                "watch",
                "warn_percent",
                format!(
                    "warn_percent ({}) must be below critical_percent ({})",
                    w.warn_percent, w.critical_percent
                ),
            ));
        }
        if w.hysteresis_percent >= w.warn_percent {
            return Err(err(
                "watch",
                "hysteresis_percent",
                format!(
                    "hysteresis_percent ({}) must be below warn_percent ({})",
                    w.hysteresis_percent, w.warn_percent
                ),
            ));
        }
        Ok(())
    }

    /// Best-effort line of `key` inside `[section]`, for cross-key errors.
    fn find_line(&self, section: &str, key: &str) -> Option<usize> {
        let mut in_section = false;
        for (i, line) in self.text.lines().enumerate() {
            let t = line.trim();
            if t.starts_with('[') {
                in_section = t.trim_matches(['[', ']', ' ']) == section;
            } else if in_section && t.split('=').next().map(str::trim) == Some(key) {
                return Some(i + 1);
            }
        }
        None
    }
}

fn describe(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("the string {:?}", s.as_ref()),
        DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) => {
            format!("the {} {}", v.type_str(), raw_of(v))
        }
        other => format!("a {}", other.type_str()),
    }
}

fn raw_of(v: &DeValue<'_>) -> String {
    match v {
        DeValue::Integer(i) => match i.radix() {
            10 => i.as_str().to_string(),
            r => format!("{} (base {r})", i.as_str()),
        },
        DeValue::Float(f) => f.as_str().to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::String(s) => format!("{:?}", s.as_ref()),
        other => other.type_str().to_string(),
    }
}

/// Check a `[sysctl]` key: dotted, each part made of `[A-Za-z0-9_-]`, so it
/// maps to a path strictly inside /proc/sys (no `/`, `..`, spaces or
/// absolute paths).
pub fn valid_sysctl_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("empty sysctl key".into());
    }
    if key.len() > 255 {
        return Err("sysctl key is too long".into());
    }
    if key.starts_with('/') || key.contains('/') {
        return Err(format!(
            "{key:?} is not a dotted sysctl name: `/` is not allowed (write e.g. net.core.rmem_max)"
        ));
    }
    if key.split('.').any(str::is_empty) {
        return Err(format!(
            "{key:?} is not a dotted sysctl name: empty part (leading, trailing or double dot)"
        ));
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "{key:?} is not a dotted sysctl name: character {c:?} is not allowed"
        ));
    }
    if key.split('.').count() < 2 {
        return Err(format!(
            "{key:?} is not a dotted sysctl name such as net.core.rmem_max"
        ));
    }
    Ok(())
}

/// Parse a duration: "500ms", "5s", "1.5s", "5m", "1h", "1d", or plain
/// seconds ("5", "0.5").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "" | "s" | "sec" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        other => {
            return Err(format!(
                "bad duration {s:?}: unknown unit {other:?} (use ms, s, m, h or d)"
            ))
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?}: expected a number such as \"5s\" or 0.5"))?;
    let secs = n * scale;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("bad duration {s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Print a duration the way the config accepts it.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        format!("{}us", d.as_micros())
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Config, ConfigError> {
        parse(s, Path::new("/etc/x.toml"))
    }

    #[test]
    fn empty_is_default() {
        assert_eq!(p("").unwrap(), Config::default());
    }

    #[test]
    fn defaults_give_write_up_targets() {
        let t = Config::default().targets();
        let pairs: Vec<(&str, &str)> = t
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                (KEY_BUCKETS, "262144"),
                (KEY_MAX, "1048576"),
                (KEY_UDP_TIMEOUT, "10"),
                (KEY_UDP_TIMEOUT_STREAM, "15"),
            ]
        );
    }

    #[test]
    fn full_example_parses() {
        let c = p(r#"
[conntrack]
max = 2097152
buckets = 524288
udp_timeout = "keep"
udp_timeout_stream = 15

[sysctl]
"net.core.rmem_max" = 26214400
"net.ipv4.tcp_rmem" = "4096 87380 6291456"

[watch]
interval = 0.5
warn_percent = 70
critical_percent = 90.5
hysteresis_percent = 2
reminder = "10m"

[metrics]
textfile = "/var/lib/prometheus/node-exporter/conntrack.prom"
"#)
        .unwrap();
        assert_eq!(c.conntrack.max, Knob::Set(2_097_152));
        assert_eq!(c.conntrack.buckets, Buckets::Set(524_288));
        assert_eq!(c.conntrack.udp_timeout, Knob::Keep);
        assert_eq!(c.sysctl.len(), 2);
        assert_eq!(c.sysctl[1].value, "4096 87380 6291456");
        assert_eq!(c.watch.interval, Duration::from_millis(500));
        assert_eq!(c.watch.critical_percent, 90.5);
        assert_eq!(c.watch.reminder, Duration::from_secs(600));
        assert!(c.metrics.textfile.is_some());
        assert_eq!(c.targets().len(), 5);
    }

    #[test]
    fn auto_buckets_with_kept_max_keeps_buckets() {
        let c = p("[conntrack]\nmax = \"keep\"\n").unwrap();
        assert_eq!(c.conntrack.buckets_value(), None);
        assert!(c
            .targets()
            .iter()
            .all(|t| t.key != KEY_BUCKETS && t.key != KEY_MAX));
    }

    #[test]
    fn unknown_key_suggests() {
        let e = p("[conntrack]\nmax = 5\nudp_timout = 3\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert_eq!(e.key.as_deref(), Some("conntrack.udp_timout"));
        assert!(e.message.contains("did you mean `udp_timeout`"), "{e}");
        assert!(e
            .to_string()
            .starts_with("/etc/x.toml:3: conntrack.udp_timout: "));
    }

    #[test]
    fn unknown_section_suggests() {
        let e = p("[conntrak]\nmax = 5\n").unwrap_err();
        assert!(e.message.contains("did you mean `conntrack`"), "{e}");
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn ranges() {
        for (src, needle) in [
            ("[conntrack]\nmax = 0", "between 1"),
            ("[conntrack]\nmax = -5", "at least 1"),
            ("[conntrack]\nmax = 99999999999999999999999", "too large"),
            ("[conntrack]\nmax = 4294967296", "between 1 and 2147483647"),
            (
                "[conntrack]\nmax = 100\nbuckets = 200",
                "must not exceed max",
            ),
            ("[conntrack]\nudp_timeout = 86401", "between 1 and 86400"),
            ("[conntrack]\nmax = 1.5", "expected an integer"),
            ("[conntrack]\nbuckets = \"lots\"", "\"auto\" or \"keep\""),
            (
                "[watch]\nwarn_percent = 95\ncritical_percent = 95",
                "below critical",
            ),
            ("[watch]\ncritical_percent = 101", "between 0 and 100"),
            ("[watch]\ninterval = \"5 parsecs\"", "unknown unit"),
            ("[watch]\ninterval = \"2h\"", "between 1ms and 1h"),
            ("[watch]\ninterval = 0", "between 1ms and 1h"),
            ("[metrics]\ntextfile = \"relative.prom\"", "absolute"),
            (
                "[sysctl]\n\"../../etc/passwd\" = 1",
                "not a dotted sysctl name",
            ),
            ("[sysctl]\n\"net..core\" = 1", "empty part"),
            (
                "[sysctl]\n\"/proc/sys/net/core/rmem_max\" = 1",
                "`/` is not allowed",
            ),
            ("[sysctl]\n\"net.core.rmem max\" = 1", "not allowed"),
            (
                "[sysctl]\n\"net.netfilter.nf_conntrack_max\" = 1",
                "[conntrack] section",
            ),
            ("max = 5", "missing its [section] header"),
            ("[conntrack]\nmax = 5\nmax = 6", "TOML syntax"),
            ("[conntrack\nmax = 5", "TOML syntax"),
        ] {
            let e = p(src).expect_err(src);
            assert!(e.to_string().contains(needle), "{src:?}: {e}");
            assert!(e.line.is_some(), "{src:?}: no line in {e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1e400").is_err());
        assert!(parse_duration("5 fortnights").is_err());
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn sysctl_keys() {
        assert!(valid_sysctl_key("net.core.rmem_max").is_ok());
        assert!(valid_sysctl_key("net.ipv4.conf.eth-0.rp_filter").is_ok());
        for bad in [
            "",
            "net..core",
            ".net.core",
            "net.core.",
            "net/core",
            "/etc/passwd",
            "a b.c",
            "net",
            "x.y\u{0}",
        ] {
            assert!(valid_sysctl_key(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = p(&s);
        }

        #[test]
        fn parse_never_panics_tomlish(s in "(\\[(conntrack|watch|sysctl|metrics)\\]\n)?([a-z_\"\\.]{1,20} = (-?[0-9]{1,25}|\"[a-z0-9 .]{0,8}\"|[0-9]\\.[0-9]|true)\n){0,5}") {
            let _ = p(&s);
        }

        #[test]
        fn duration_never_panics(s in "\\PC{0,30}") {
            let _ = parse_duration(&s);
        }
    }
}
