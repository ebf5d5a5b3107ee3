// SPDX-License-Identifier: MIT OR Apache-2.0
//! Config text into a [`Config`]. toml parses it into its spanned tree; the
//! tree's sections and keys are checked against the list in [`parse`], so
//! the keys are written once and unknown ones are refused with the known
//! names for "did you mean". Plain code checks each value where it stands
//! in the tree, so every error names the file, the line and the key with a
//! message of our own, and checks across two keys can name the line of
//! either.
//!
//! toml's own serde deserializer would do the shape check, but made the
//! stripped binary 66 KB larger for what this needs: tables and offsets.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeInteger, DeTable, DeValue};
use toml::Spanned;

use super::error::ConfigError;
use super::model::*;
use super::values::{fmt_duration, parse_budget, parse_duration, valid_sysctl_key};

/// The sections, in the order "expected one of" lists them.
const SECTIONS: [&str; 5] = ["conntrack", "sysctl", "watch", "metrics", "grow"];

/// Parse and validate config text. `file` is only used in errors.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let doc = DeTable::parse(text).map_err(|e| syntax_error(text, file, &e))?;
    let cx = Cx {
        text,
        file,
        doc: doc.get_ref(),
    };
    let mut c = Config::default();
    // The sections' keys (adding a key starts here), each line with the
    // model field it sets and its check. The shape is checked first.
    macro_rules! set {
        ($($sec:ident . $key:ident => $out:ident: $check:expr;)*) => {
            cx.check_shape(&[$((stringify!($sec), stringify!($key))),*])?;
            $(if let Some(v) = cx.get(stringify!($sec), stringify!($key)) {
                let key = concat!(stringify!($sec), ".", stringify!($key));
                let at = Some(v.span().start);
                c.$sec.$out = ($check)(v.get_ref()).map_err(|m| cx.error(key, at, m))?;
            })*
        };
    }
    set! {
        conntrack.max => max: |v| knob(v, 1, MAX_CONNTRACK_MAX);
        conntrack.buckets => buckets: buckets;
        conntrack.udp_timeout => udp_timeout: |v| knob(v, 1, MAX_TIMEOUT);
        conntrack.udp_timeout_stream => udp_timeout_stream: |v| knob(v, 1, MAX_TIMEOUT);
        conntrack.max_policy => max_policy: policy;
        conntrack.buckets_policy => buckets_policy: policy;
        watch.interval => interval: |v| duration(v, INTERVAL_RANGE);
        watch.warn_percent => warn_percent: percent;
        watch.critical_percent => critical_percent: percent;
        watch.hysteresis_percent => hysteresis_percent: |v| number(v, HYSTERESIS_RANGE);
        watch.reminder => reminder: |v| duration(v, EVERY_RANGE);
        watch.drops_every => drops_every: |v| duration(v, EVERY_RANGE);
        watch.restore => restore: boolean;
        watch.restore_limit => restore_limit: restore_limit;
        watch.triage => triage: boolean;
        watch.triage_every => triage_every: |v| duration(v, EVERY_RANGE);
        watch.namespaces => all_namespaces: |v| choice(v, ("host", false), ("all", true));
        watch.namespaces_every => namespaces_every: |v| duration(v, EVERY_RANGE);
        metrics.textfile => textfile: textfile;
        grow.enabled => enabled: boolean;
        grow.budget => budget: budget;
        grow.every => every: |v| duration(v, EVERY_RANGE);
        grow.remember => remember: boolean;
    }
    let sysctl = cx.doc.get("sysctl").and_then(|s| s.get_ref().as_table());
    for (key, v) in sysctl.into_iter().flatten() {
        let (key, at) = (key.get_ref().as_ref(), v.span().start);
        let value = sysctl_value(key, v.get_ref())
            .map_err(|m| cx.error(&format!("sysctl.\"{key}\""), Some(at), m))?;
        let (key, line) = (key.to_string(), Some(line_of(text, at)));
        c.sysctl.push(Extra { key, value, line });
    }
    cx.cross_check(&c)?;
    Ok(c)
}

struct Cx<'a> {
    text: &'a str,
    file: &'a Path,
    doc: &'a DeTable<'a>,
}

impl Cx<'_> {
    fn error(&self, key: &str, at: Option<usize>, message: String) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: at.map(|at| line_of(self.text, at)),
            key: Some(key.to_string()),
            message,
            source: None,
        }
    }

    /// The value of `key` in the section `sec`.
    fn get(&self, sec: &str, key: &str) -> Option<&Spanned<DeValue<'_>>> {
        self.doc.get(sec)?.get_ref().as_table()?.get(key)
    }

    /// Refuse the first section (in toml's order: sorted by name) that is
    /// unknown or not a table, or that holds a key not in `keys` (`[sysctl]`
    /// takes any).
    fn check_shape(&self, keys: &[(&str, &str)]) -> Result<(), ConfigError> {
        for (k, v) in self.doc.iter() {
            let (name, found) = (k.get_ref().as_ref(), v.get_ref().type_str());
            let known = SECTIONS.contains(&name);
            let err = |key: &str, at: usize, message| Err(self.error(key, Some(at), message));
            let Some(table) = v.get_ref().as_table() else {
                // A name at the top that is neither a section nor a table
                // is a key above every [section].
                let why = format!("expected a [section], found a {found}");
                return match known {
                    true => err(name, v.span().start, why),
                    false => {
                        let why = format!("{why} (is `{name}` missing its [section] header?)");
                        err(name, k.span().start, why)
                    }
                };
            };
            if !known {
                return err(name, k.span().start, unknown("section", name, &SECTIONS));
            }
            let keys: Vec<&str> = keys
                .iter()
                .filter_map(|&(s, k)| (s == name).then_some(k))
                .collect();
            let mut names = table.keys().map(|k| (k.get_ref().as_ref(), k.span().start));
            if let Some((key, at)) = names.find(|(k, _)| name != "sysctl" && !keys.contains(k)) {
                return err(&format!("{name}.{key}"), at, unknown("key", key, &keys));
            }
        }
        Ok(())
    }

    /// Checks between keys. The error names `key`, at its line if the file
    /// sets it, else at the line of `other` (the key it conflicts with).
    fn cross_check(&self, cfg: &Config) -> Result<(), ConfigError> {
        let err = |sec: &str, key: &str, other: &str, message: String| {
            let at = |key| self.get(sec, key).map(|v| v.span().start);
            let at = at(key).or(at(other));
            Err(self.error(&format!("{sec}.{key}"), at, message))
        };
        if let (Buckets::Set(b), Knob::Set(m)) = (cfg.conntrack.buckets, cfg.conntrack.max) {
            if b > m {
                let why = format!("buckets ({b}) must not exceed max ({m}); about max/4 is usual");
                return err("conntrack", "buckets", "max", why);
            }
        }
        let w = &cfg.watch;
        let (warn, crit, hyst) = (w.warn_percent, w.critical_percent, w.hysteresis_percent);
        if warn >= crit {
            let why = format!("warn_percent ({warn}) must be below critical_percent ({crit})");
            return err("watch", "warn_percent", "critical_percent", why);
        }
        if hyst >= warn {
            let why = format!("hysteresis_percent ({hyst}) must be below warn_percent ({warn})");
            return err("watch", "hysteresis_percent", "warn_percent", why);
        }
        Ok(())
    }
}

pub(super) fn line_of(text: impl AsRef<[u8]>, offset: usize) -> usize {
    let before = &text.as_ref()[..offset.min(text.as_ref().len())];
    before.iter().filter(|b| **b == b'\n').count() + 1
}

/// A TOML syntax error. toml reports a repeated key as just "duplicate key"
/// at the repeat; the document as far as it parses names the key and its
/// section.
fn syntax_error(text: &str, file: &Path, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim();
    let duplicate = e.span().filter(|_| message == "duplicate key");
    let named = duplicate.and_then(|span| name_duplicate(text, span));
    let (key, message) = named.map_or((None, message.to_string()), |(k, m)| (Some(k), m));
    ConfigError {
        file: file.to_path_buf(),
        line: e.span().map(|s| line_of(text, s.start)),
        key,
        message: format!("TOML syntax: {message}"),
        source: None,
    }
}

/// The `section.key` and a message for the repeated key at `span`.
fn name_duplicate(text: &str, span: std::ops::Range<usize>) -> Option<(String, String)> {
    let raw = text.get(span.clone())?.trim();
    let name = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
        .unwrap_or(raw);
    let (doc, _) = DeTable::parse_recoverable(text);
    // The first definition: the last section before the repeat that holds
    // the name.
    let section = doc
        .get_ref()
        .iter()
        .filter_map(|(s, v)| Some((s, v.get_ref().as_table()?)))
        .filter_map(|(s, t)| {
            let (k, _) = t.iter().find(|(k, _)| k.get_ref().as_ref() == name)?;
            (k.span().start < span.start).then_some((s.get_ref().as_ref(), k.span().start))
        })
        .max_by_key(|(_, at)| *at);
    if let Some((s, _)) = section {
        return Some((
            format!("{s}.{name}"),
            format!("duplicate key `{name}` in [{s}]"),
        ));
    }
    let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let what = match text[line_start..span.start].trim_start().starts_with('[') {
        true => format!("duplicate section [{name}]"),
        false => format!("duplicate key `{name}`"),
    };
    Some((name.to_string(), what))
}

fn knob(v: &DeValue<'_>, min: u64, max: u64) -> Result<Knob, String> {
    match v {
        DeValue::String(s) if s.as_ref() == "keep" => Ok(Knob::Keep),
        DeValue::Integer(i) => int_in(i, min, max).map(Knob::Set),
        other => expected("an integer or \"keep\"", other),
    }
}

fn buckets(v: &DeValue<'_>) -> Result<Buckets, String> {
    if v.as_str() == Some("auto") {
        return Ok(Buckets::Auto);
    }
    match knob(v, 1, MAX_BUCKETS).map_err(|m| m.replace("or \"keep\"", "\"auto\" or \"keep\""))? {
        Knob::Set(b) => Ok(Buckets::Set(b)),
        Knob::Keep => Ok(Buckets::Keep),
    }
}

fn int_in(i: &DeInteger<'_>, min: u64, max: u64) -> Result<u64, String> {
    let raw = i.as_str();
    if raw.starts_with('-') {
        return Err(format!("must be at least {min}, found {raw}"));
    }
    let n = u64::from_str_radix(raw.trim_start_matches('+'), i.radix())
        .map_err(|_| format!("{raw} is too large (at most {max})"))?;
    if n < min || n > max {
        return Err(format!("must be between {min} and {max}, found {n}"));
    }
    Ok(n)
}

fn restore_limit(v: &DeValue<'_>) -> Result<u64, String> {
    let (min, max) = RESTORE_LIMIT_RANGE;
    match v {
        DeValue::Integer(i) => int_in(i, min, max),
        other => expected("an integer", other),
    }
}

fn boolean(v: &DeValue<'_>) -> Result<bool, String> {
    match v {
        DeValue::Boolean(b) => Ok(*b),
        other => expected("true or false", other),
    }
}

/// One of two words, as in `max_policy` and `namespaces`, and what each
/// stands for.
fn choice<T>(v: &DeValue<'_>, (a, x): (&str, T), (b, y): (&str, T)) -> Result<T, String> {
    match v.as_str() {
        Some(s) if s == a => Ok(x),
        Some(s) if s == b => Ok(y),
        _ => expected(&format!("{a:?} or {b:?}"), v),
    }
}

fn policy(v: &DeValue<'_>) -> Result<Policy, String> {
    choice(v, ("exact", Policy::Exact), ("at-least", Policy::AtLeast))
}

fn number(v: &DeValue<'_>, (min, max): (f64, f64)) -> Result<f64, String> {
    let n = match v {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .ok()
            .map(|n| n as f64),
        DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
        other => return expected("a number", other),
    };
    match n {
        Some(n) if n.is_finite() && n >= min && n <= max => Ok(n),
        _ => Err(format!(
            "must be between {min} and {max}, found {}",
            raw_of(v)
        )),
    }
}

fn percent(v: &DeValue<'_>) -> Result<f64, String> {
    match number(v, PERCENT_RANGE)? {
        n if n <= 0.0 => Err("must be above 0".into()),
        n => Ok(n),
    }
}

fn duration(v: &DeValue<'_>, (min, max): (Duration, Duration)) -> Result<Duration, String> {
    let d = match v {
        DeValue::String(s) => parse_duration(s.as_ref()),
        DeValue::Integer(_) | DeValue::Float(_) => parse_duration(&raw_of(v)),
        other => expected("a duration such as \"5s\"", other),
    }?;
    if d < min || d > max {
        let [min, max, d] = [min, max, d].map(fmt_duration);
        return Err(format!("must be between {min} and {max}, found {d}"));
    }
    Ok(d)
}

fn textfile(v: &DeValue<'_>) -> Result<Option<PathBuf>, String> {
    match v.as_str() {
        Some("") => Ok(None),
        Some(s) if !s.starts_with('/') || s.ends_with('/') || s.contains('\0') => {
            Err(format!("must be an absolute file path, found {s:?}"))
        }
        Some(s) => Ok(Some(PathBuf::from(s))),
        None => expected("a path string", v),
    }
}

fn budget(v: &DeValue<'_>) -> Result<Budget, String> {
    match v.as_str() {
        Some(s) => parse_budget(s),
        None => expected(
            "a share of RAM such as \"2%\" or a size such as \"512MiB\"",
            v,
        ),
    }
}

fn sysctl_value(key: &str, v: &DeValue<'_>) -> Result<String, String> {
    valid_sysctl_key(key)?;
    let managed = [
        KEY_MAX,
        KEY_BUCKETS,
        KEY_UDP_TIMEOUT,
        KEY_UDP_TIMEOUT_STREAM,
        KEY_COUNT,
    ];
    if managed.contains(&key) {
        return Err("is managed by the [conntrack] section; set it there".into());
    }
    match v {
        DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix())
            .map(|n| n.to_string())
            .map_err(|_| format!("{} is out of range", i.as_str())),
        DeValue::String(s) if s.is_empty() || s.contains(['\n', '\r', '\0']) => {
            Err("value must be non-empty and on one line".into())
        }
        DeValue::String(s) => Ok(s.to_string()),
        DeValue::Boolean(b) => Ok(u8::from(*b).to_string()),
        other => expected("an integer or a string", other),
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

/// `expected <what>, found <the value>`: a value of the wrong type.
fn expected<T>(what: &str, v: &DeValue<'_>) -> Result<T, String> {
    Err(format!("expected {what}, found {}", describe(v)))
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
        fn grow_errors_name_the_key_and_line(budget in "[ -!#-\\[\\]-~]{0,12}", every in "[0-9a-z.]{0,6}") {
            let text = format!("[grow]\nbudget = {budget:?}\nevery = {every:?}\n");
            match p(&text) {
                Ok(c) => proptest::prop_assert!(c.grow.every >= Duration::from_secs(1)),
                Err(e) => {
                    let want = match e.key.as_deref() {
                        Some("grow.budget") => Some(2),
                        Some("grow.every") => Some(3),
                        _ => None,
                    };
                    proptest::prop_assert!(want.is_some() && e.line == want, "{e}");
                }
            }
        }

        #[test]
        fn parse_never_panics_tomlish(s in "(\\[(conntrack|watch|sysctl|metrics|grow)\\]\n)?([a-z_\"\\.]{1,20} = (-?[0-9]{1,25}|\"[a-z0-9 .]{0,8}\"|[0-9]\\.[0-9]|true)\n){0,5}") {
            let _ = p(&s);
        }

    }
}
