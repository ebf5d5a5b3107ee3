// SPDX-License-Identifier: MIT OR Apache-2.0
//! Config text into a [`Config`]: serde derives the shape (which sections
//! and keys exist, `deny_unknown_fields`), every value arrives as a spanned
//! [`Scalar`] whatever its type, and plain code below checks each one. So
//! every error names the file, the line and the key with a message of our
//! own rather than serde's "invalid type", and checks across two keys can
//! name the line of either.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::ConfigError;
use super::model::*;
use super::values::{fmt_duration, parse_budget, parse_duration, valid_sysctl_key};

/// A value as written, of any TOML type.
#[derive(Debug)]
enum Scalar {
    Int(i128),
    Float(f64),
    Bool(bool),
    Str(String),
    /// "array", "table" or "datetime": never a valid value here.
    Other(&'static str),
}

type Field = Option<Spanned<Scalar>>;

// The sections and their keys: adding a key starts here.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Raw {
    conntrack: RawConntrack,
    sysctl: std::collections::BTreeMap<String, Spanned<Scalar>>,
    watch: RawWatch,
    metrics: RawMetrics,
    grow: RawGrow,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawConntrack {
    max: Field,
    buckets: Field,
    udp_timeout: Field,
    udp_timeout_stream: Field,
    max_policy: Field,
    buckets_policy: Field,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawWatch {
    interval: Field,
    warn_percent: Field,
    critical_percent: Field,
    hysteresis_percent: Field,
    reminder: Field,
    drops_every: Field,
    restore: Field,
    restore_limit: Field,
    triage: Field,
    triage_every: Field,
    namespaces: Field,
    namespaces_every: Field,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawMetrics {
    textfile: Field,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawGrow {
    enabled: Field,
    budget: Field,
    every: Field,
    remember: Field,
}

/// Parse and validate config text. `file` is only used in errors.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let cx = Cx { text, file };
    let doc = DeTable::parse(text).map_err(|e| cx.syntax_error(&e))?;
    // A section must be a table: serde would also fill a struct from an
    // array, by position (`conntrack = [5]` as max = 5).
    for (name, value) in doc.get_ref() {
        let value = value.get_ref();
        if value.as_table().is_none() {
            let at = Some(name.span().start);
            let name = name.get_ref().as_ref();
            let hint = match value {
                DeValue::Array(_) => String::new(),
                _ => format!(" (is `{name}` missing its [section] header?)"),
            };
            let found = format!("expected a [section], found a {}{hint}", value.type_str());
            return Err(cx.error(name, at, found));
        }
    }
    let raw = Raw::deserialize(toml::de::Deserializer::from(doc.clone()))
        .map_err(|e| cx.serde_error(doc.get_ref(), &e))?;
    cx.check(raw)
}

struct Cx<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Cx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn error(&self, key: &str, at: Option<usize>, message: String) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: at.map(|at| self.line_of(at)),
            key: Some(key.to_string()),
            message,
            source: None,
        }
    }

    /// A value as written in the file, for messages ("1_000", "0x10").
    fn raw(&self, span: Range<usize>) -> &str {
        self.text.get(span).unwrap_or("?")
    }

    /// Check `key` if the file sets it, else keep `default`.
    fn get<T>(
        &self,
        key: &str,
        field: &Field,
        default: T,
        check: impl FnOnce(&Scalar, &str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match field {
            None => Ok(default),
            Some(v) => check(v.get_ref(), self.raw(v.span()))
                .map_err(|m| self.error(key, Some(v.span().start), m)),
        }
    }

    /// A TOML syntax error. toml reports a repeated key as just "duplicate
    /// key" at the repeat; the document as far as it parses names the key
    /// and its section.
    fn syntax_error(&self, e: &toml::de::Error) -> ConfigError {
        let mut err = ConfigError {
            file: self.file.to_path_buf(),
            line: e.span().map(|s| self.line_of(s.start)),
            key: None,
            message: format!("TOML syntax: {}", e.message().trim()),
            source: None,
        };
        if let (Some(span), "duplicate key") = (e.span(), e.message().trim()) {
            if let Some((key, message)) = self.name_duplicate(span) {
                err.key = Some(key);
                err.message = format!("TOML syntax: {message}");
            }
        }
        err
    }

    /// The `section.key` and a message for the repeated key at `span`.
    fn name_duplicate(&self, span: Range<usize>) -> Option<(String, String)> {
        let raw = self.text.get(span.clone())?.trim();
        let name = raw
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .or_else(|| raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
            .unwrap_or(raw);
        let (doc, _) = DeTable::parse_recoverable(self.text);
        // The first definition: the last section before the repeat that
        // holds the name.
        let section = doc
            .get_ref()
            .iter()
            .filter_map(|(s, v)| Some((s, v.get_ref().as_table()?)))
            .filter_map(|(s, t)| {
                let (k, _) = t.iter().find(|(k, _)| k.get_ref().as_ref() == name)?;
                (k.span().start < span.start).then_some((s.get_ref().as_ref(), k.span().start))
            })
            .max_by_key(|(_, at)| *at)
            .map(|(s, _)| s.to_string());
        if let Some(s) = section {
            return Some((
                format!("{s}.{name}"),
                format!("duplicate key `{name}` in [{s}]"),
            ));
        }
        let line_start = self.text[..span.start].rfind('\n').map_or(0, |i| i + 1);
        let header = self.text[line_start..span.start]
            .trim_start()
            .starts_with('[');
        let what = if header { "section [" } else { "key `" };
        let close = if header { "]" } else { "`" };
        Some((name.to_string(), format!("duplicate {what}{name}{close}")))
    }

    /// An error of the derived shape: an unknown section or key, or a number
    /// toml itself refused (an integer beyond 128 bits, a float beyond f64). toml gives the span
    /// of the key or the value, and the names serde expected.
    fn serde_error(&self, doc: &DeTable<'_>, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or_default();
        let hit = |k: &Spanned<_>, v: &Spanned<_>| k.span() == span || v.span() == span;
        let mut found = None;
        for (s, v) in doc {
            let s_name = s.get_ref().as_ref();
            if hit(s, v) {
                found = Some((s_name.to_string(), s_name, true));
            }
            for (k, kv) in v.get_ref().as_table().into_iter().flatten() {
                if hit(k, kv) {
                    found = Some((full_key(s_name, k.get_ref()), k.get_ref().as_ref(), false));
                }
            }
        }
        let (key, name, is_section) = found.unwrap_or_default();
        let message = match e.message().split_once(", expected ") {
            Some((unknown_field, expected)) if unknown_field.starts_with("unknown field") => {
                let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
                unknown(if is_section { "section" } else { "key" }, name, &known)
            }
            _ => format!("{} is out of range ({})", self.raw(span), e.message()),
        };
        ConfigError {
            file: self.file.to_path_buf(),
            line: e.span().map(|s| self.line_of(s.start)),
            key: (!key.is_empty()).then_some(key),
            message,
            source: None,
        }
    }

    fn check(&self, raw: Raw) -> Result<Config, ConfigError> {
        let d = Config::default();
        let r = &raw.conntrack;
        let c = &d.conntrack;
        let conntrack = Conntrack {
            max: self.get("conntrack.max", &r.max, c.max, |v, raw| {
                knob(v, raw, 1, MAX_CONNTRACK_MAX)
            })?,
            buckets: self.get("conntrack.buckets", &r.buckets, c.buckets, buckets)?,
            udp_timeout: self.get(
                "conntrack.udp_timeout",
                &r.udp_timeout,
                c.udp_timeout,
                |v, raw| knob(v, raw, 1, MAX_TIMEOUT),
            )?,
            udp_timeout_stream: self.get(
                "conntrack.udp_timeout_stream",
                &r.udp_timeout_stream,
                c.udp_timeout_stream,
                |v, raw| knob(v, raw, 1, MAX_TIMEOUT),
            )?,
            max_policy: self.get("conntrack.max_policy", &r.max_policy, c.max_policy, policy)?,
            buckets_policy: self.get(
                "conntrack.buckets_policy",
                &r.buckets_policy,
                c.buckets_policy,
                policy,
            )?,
        };
        let r = &raw.watch;
        let w = &d.watch;
        let watch = Watch {
            interval: self.get("watch.interval", &r.interval, w.interval, |v, _| {
                duration(v, INTERVAL_RANGE)
            })?,
            warn_percent: self.get(
                "watch.warn_percent",
                &r.warn_percent,
                w.warn_percent,
                percent,
            )?,
            critical_percent: self.get(
                "watch.critical_percent",
                &r.critical_percent,
                w.critical_percent,
                percent,
            )?,
            hysteresis_percent: self.get(
                "watch.hysteresis_percent",
                &r.hysteresis_percent,
                w.hysteresis_percent,
                |v, raw| number(v, raw, HYSTERESIS_RANGE),
            )?,
            reminder: self.get("watch.reminder", &r.reminder, w.reminder, |v, _| {
                duration(v, REMINDER_RANGE)
            })?,
            drops_every: self.get(
                "watch.drops_every",
                &r.drops_every,
                w.drops_every,
                |v, _| duration(v, DROPS_EVERY_RANGE),
            )?,
            restore: self.get("watch.restore", &r.restore, w.restore, boolean)?,
            restore_limit: self.get(
                "watch.restore_limit",
                &r.restore_limit,
                w.restore_limit,
                |v, raw| match v {
                    Scalar::Int(n) => int_in(*n, raw, RESTORE_LIMIT_RANGE),
                    _ => Err(format!("expected an integer, found {}", describe(v, raw))),
                },
            )?,
            triage: self.get("watch.triage", &r.triage, w.triage, boolean)?,
            triage_every: self.get(
                "watch.triage_every",
                &r.triage_every,
                w.triage_every,
                |v, _| duration(v, EVERY_RANGE),
            )?,
            all_namespaces: self.get(
                "watch.namespaces",
                &r.namespaces,
                w.all_namespaces,
                |v, raw| match v {
                    Scalar::Str(s) if s == "host" => Ok(false),
                    Scalar::Str(s) if s == "all" => Ok(true),
                    _ => Err(format!(
                        "expected \"host\" or \"all\", found {}",
                        describe(v, raw)
                    )),
                },
            )?,
            namespaces_every: self.get(
                "watch.namespaces_every",
                &r.namespaces_every,
                w.namespaces_every,
                |v, _| duration(v, EVERY_RANGE),
            )?,
        };
        let metrics = Metrics {
            textfile: self.get("metrics.textfile", &raw.metrics.textfile, None, textfile)?,
        };
        let r = &raw.grow;
        let g = &d.grow;
        let grow = Grow {
            enabled: self.get("grow.enabled", &r.enabled, g.enabled, boolean)?,
            budget: self.get("grow.budget", &r.budget, g.budget, |v, raw| match v {
                Scalar::Str(s) => parse_budget(s),
                _ => Err(format!(
                    "expected a share of RAM such as \"2%\" or a size such as \"512MiB\", found {}",
                    describe(v, raw)
                )),
            })?,
            every: self.get("grow.every", &r.every, g.every, |v, _| {
                duration(v, EVERY_RANGE)
            })?,
            remember: self.get("grow.remember", &r.remember, g.remember, boolean)?,
        };
        let mut sysctl = Vec::new();
        for (key, v) in &raw.sysctl {
            let full = full_key("sysctl", key);
            let at = Some(v.span().start);
            let value = sysctl_value(key, v.get_ref(), self.raw(v.span()))
                .map_err(|m| self.error(&full, at, m))?;
            sysctl.push(Extra {
                key: key.clone(),
                value,
                line: at.map(|at| self.line_of(at)),
            });
        }
        let cfg = Config {
            conntrack,
            sysctl,
            watch,
            metrics,
            grow,
            source: None,
        };
        self.cross_check(&cfg, &raw)?;
        Ok(cfg)
    }

    /// Checks between keys. The error names `key`, at its line if the file
    /// sets it, else at the line of `other` (the key it conflicts with).
    fn cross_check(&self, cfg: &Config, raw: &Raw) -> Result<(), ConfigError> {
        let err = |key: &str, (a, b): (&Field, &Field), message: String| {
            let at = a.as_ref().or(b.as_ref()).map(|v| v.span().start);
            Err(self.error(key, at, message))
        };
        if let (Buckets::Set(b), Knob::Set(m)) = (cfg.conntrack.buckets, cfg.conntrack.max) {
            if b > m {
                let r = &raw.conntrack;
                return err(
                    "conntrack.buckets",
                    (&r.buckets, &r.max),
                    format!("buckets ({b}) must not exceed max ({m}); about max/4 is usual"),
                );
            }
        }
        let (w, r) = (&cfg.watch, &raw.watch);
        if w.warn_percent >= w.critical_percent {
            return err(
                "watch.warn_percent",
                (&r.warn_percent, &r.critical_percent),
                format!(
                    "warn_percent ({}) must be below critical_percent ({})",
                    w.warn_percent, w.critical_percent
                ),
            );
        }
        if w.hysteresis_percent >= w.warn_percent {
            return err(
                "watch.hysteresis_percent",
                (&r.hysteresis_percent, &r.warn_percent),
                format!(
                    "hysteresis_percent ({}) must be below warn_percent ({})",
                    w.hysteresis_percent, w.warn_percent
                ),
            );
        }
        Ok(())
    }
}

/// `section.key` as errors name it; sysctl keys are dotted, so quoted.
fn full_key(section: &str, key: &str) -> String {
    if section == "sysctl" {
        format!("sysctl.\"{key}\"")
    } else {
        format!("{section}.{key}")
    }
}

fn knob(v: &Scalar, raw: &str, min: u64, max: u64) -> Result<Knob, String> {
    match v {
        Scalar::Str(s) if s == "keep" => Ok(Knob::Keep),
        Scalar::Int(n) => int_in(*n, raw, (min, max)).map(Knob::Set),
        _ => Err(format!(
            "expected an integer or \"keep\", found {}",
            describe(v, raw)
        )),
    }
}

fn buckets(v: &Scalar, raw: &str) -> Result<Buckets, String> {
    match v {
        Scalar::Str(s) if s == "auto" => Ok(Buckets::Auto),
        _ => match knob(v, raw, 1, MAX_BUCKETS)
            .map_err(|m| m.replace("or \"keep\"", "\"auto\" or \"keep\""))?
        {
            Knob::Set(b) => Ok(Buckets::Set(b)),
            Knob::Keep => Ok(Buckets::Keep),
        },
    }
}

fn int_in(n: i128, raw: &str, (min, max): (u64, u64)) -> Result<u64, String> {
    match u64::try_from(n) {
        Err(_) if n < 0 => Err(format!("must be at least {min}, found {raw}")),
        Err(_) => Err(format!("{raw} is too large (at most {max})")),
        Ok(n) if n < min || n > max => Err(format!("must be between {min} and {max}, found {n}")),
        Ok(n) => Ok(n),
    }
}

fn boolean(v: &Scalar, raw: &str) -> Result<bool, String> {
    match v {
        Scalar::Bool(b) => Ok(*b),
        _ => Err(format!(
            "expected true or false, found {}",
            describe(v, raw)
        )),
    }
}

fn policy(v: &Scalar, raw: &str) -> Result<Policy, String> {
    match v {
        Scalar::Str(s) if s == "exact" => Ok(Policy::Exact),
        Scalar::Str(s) if s == "at-least" => Ok(Policy::AtLeast),
        _ => Err(format!(
            "expected \"exact\" or \"at-least\", found {}",
            describe(v, raw)
        )),
    }
}

fn number(v: &Scalar, raw: &str, (min, max): (f64, f64)) -> Result<f64, String> {
    let n = match v {
        Scalar::Int(n) => *n as f64,
        Scalar::Float(f) => *f,
        _ => return Err(format!("expected a number, found {}", describe(v, raw))),
    };
    if n.is_finite() && n >= min && n <= max {
        Ok(n)
    } else {
        Err(format!("must be between {min} and {max}, found {raw}"))
    }
}

fn percent(v: &Scalar, raw: &str) -> Result<f64, String> {
    match number(v, raw, PERCENT_RANGE)? {
        n if n <= 0.0 => Err("must be above 0".into()),
        n => Ok(n),
    }
}

fn duration(v: &Scalar, (min, max): (Duration, Duration)) -> Result<Duration, String> {
    let d = match v {
        Scalar::Str(s) => parse_duration(s),
        Scalar::Int(n) => parse_duration(&n.to_string()),
        Scalar::Float(f) => parse_duration(&f.to_string()),
        _ => Err(format!(
            "expected a duration such as \"5s\", found {}",
            describe(v, "")
        )),
    }?;
    if d < min || d > max {
        return Err(format!(
            "must be between {} and {}, found {}",
            fmt_duration(min),
            fmt_duration(max),
            fmt_duration(d)
        ));
    }
    Ok(d)
}

fn textfile(v: &Scalar, raw: &str) -> Result<Option<PathBuf>, String> {
    match v {
        Scalar::Str(s) if s.is_empty() => Ok(None),
        Scalar::Str(s) if !s.starts_with('/') || s.ends_with('/') || s.contains('\0') => {
            Err(format!("must be an absolute file path, found {s:?}"))
        }
        Scalar::Str(s) => Ok(Some(PathBuf::from(s))),
        _ => Err(format!(
            "expected a path string, found {}",
            describe(v, raw)
        )),
    }
}

fn sysctl_value(key: &str, v: &Scalar, raw: &str) -> Result<String, String> {
    valid_sysctl_key(key)?;
    if [
        KEY_MAX,
        KEY_BUCKETS,
        KEY_UDP_TIMEOUT,
        KEY_UDP_TIMEOUT_STREAM,
        KEY_COUNT,
    ]
    .contains(&key)
    {
        return Err("is managed by the [conntrack] section; set it there".into());
    }
    match v {
        Scalar::Int(n) => Ok(n.to_string()),
        Scalar::Str(s) if s.is_empty() || s.contains(['\n', '\r', '\0']) => {
            Err("value must be non-empty and on one line".into())
        }
        Scalar::Str(s) => Ok(s.clone()),
        Scalar::Bool(b) => Ok(u8::from(*b).to_string()),
        _ => Err(format!(
            "expected an integer or a string, found {}",
            describe(v, raw)
        )),
    }
}

/// "did you mean" for a near name, else the list of known names.
fn unknown(what: &str, word: &str, known: &[&str]) -> String {
    let near = known
        .iter()
        .map(|k| (edit_distance(word, k), k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 3) && *d < k.len())
        .min_by_key(|(d, _)| *d);
    match near {
        Some((_, s)) => format!("unknown {what} `{word}`; did you mean `{s}`?"),
        None => format!(
            "unknown {what} `{word}`; expected one of: {}",
            known.join(", ")
        ),
    }
}

fn describe(v: &Scalar, raw: &str) -> String {
    match v {
        Scalar::Str(s) => format!("the string {s:?}"),
        Scalar::Int(_) => format!("the integer {raw}"),
        Scalar::Float(_) => format!("the float {raw}"),
        Scalar::Bool(b) => format!("the boolean {b}"),
        Scalar::Other(what) => format!("a {what}"),
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

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a TOML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }
    // Beyond i128 it is too large for every key; the message quotes the text.
    fn visit_u128<E>(self, v: u128) -> Result<Scalar, E> {
        Ok(Scalar::Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Scalar, A::Error> {
        while a.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("array"))
    }
    // toml hands a datetime over as a map with one private key.
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Scalar, A::Error> {
        let mut what = "table";
        while let Some(k) = a.next_key::<String>()? {
            if k.contains("datetime") {
                what = "datetime";
            }
            a.next_value::<IgnoredAny>()?;
        }
        Ok(Scalar::Other(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
    fn grow_section() {
        assert_eq!(p("").unwrap().grow, Grow::default());
        let g =
            p("[grow]\nenabled = false\nbudget = \"512MiB\"\nevery = \"1m\"\nremember = false\n")
                .unwrap()
                .grow;
        assert_eq!(
            g,
            Grow {
                enabled: false,
                budget: Budget::Bytes(512 << 20),
                every: Duration::from_secs(60),
                remember: false,
            }
        );
        assert_eq!(
            p("[grow]\nbudget = \"0.5%\"").unwrap().grow.budget,
            Budget::Percent(0.5)
        );
        let e = p("[grow]\n\nevery = \"0s\"\n").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("grow.every")));
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
            (
                "[conntrack]\nmax = 5\nmax = 6",
                "duplicate key `max` in [conntrack]",
            ),
            ("[conntrack\nmax = 5", "TOML syntax"),
        ] {
            let e = p(src).expect_err(src);
            assert!(e.to_string().contains(needle), "{src:?}: {e}");
            assert!(e.line.is_some(), "{src:?}: no line in {e}");
        }
    }

    #[test]
    fn duplicate_key_is_named_with_its_section() {
        let e = p("[watch]\ninterval = 1\n[conntrack]\nmax = 1\n\"max\" = 2\n").unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        assert_eq!(e.key.as_deref(), Some("conntrack.max"));
        assert!(
            e.to_string()
                .ends_with(": TOML syntax: duplicate key `max` in [conntrack]"),
            "{e}"
        );
        let e = p("[conntrack]\nmax = 5\n[conntrack]\nudp_timeout = 5\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("duplicate section [conntrack]"), "{e}");
    }

    #[test]
    fn quoted_keys_keep_their_line() {
        let e = p("# c\n[conntrack]\n\"max\" = 0\n").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("conntrack.max")));
        // A check across two keys names the line of the quoted one too.
        let e = p("[conntrack]\n\"max\" = 100\n\n\"buckets\" = 200\n").unwrap_err();
        assert!(e.message.contains("must not exceed max"), "{e}");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(4), Some("conntrack.buckets"))
        );
        let e = p("[watch]\n'critical_percent' = 50\n").unwrap_err();
        assert!(e.message.contains("below critical_percent"), "{e}");
        assert_eq!(e.line, Some(2), "falls back to the conflicting key: {e}");
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

    }
}
