// SPDX-License-Identifier: MIT OR Apache-2.0
//! The TOML walk: toml's spanned document tree (`DeTable`) into a
//! [`Config`], rather than derived structs, so every error can name the
//! file, the line and the key, and an unknown key can get a "did you mean"
//! hint. Each key's position is recorded as it is walked, so checks that
//! involve two keys can name the line of either.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::ConfigError;
use super::model::*;
use super::values::{fmt_duration, parse_duration, valid_sysctl_key};

/// How one key's value is read into its section.
type Setter<T> =
    fn(&Walker<'_>, &mut T, &Spanned<DeValue<'_>>, &Here<'_>) -> Result<(), ConfigError>;

/// One known key of a section: its name and its setter. The lists below are
/// the whole grammar of each section; "did you mean" draws on them too.
struct Key<T: 'static> {
    name: &'static str,
    set: Setter<T>,
}

/// Where a value sits: `section.key` and the key's offset in the text.
struct Here<'k> {
    key: &'k str,
    at: usize,
}

const SECTIONS: &[&str] = &["conntrack", "sysctl", "watch", "metrics"];

const CONNTRACK_KEYS: &[Key<Conntrack>] = &[
    Key {
        name: "max",
        set: |w, c, v, h| {
            c.max = w.knob(v, h, 1, MAX_CONNTRACK_MAX)?;
            Ok(())
        },
    },
    Key {
        name: "buckets",
        set: |w, c, v, h| {
            c.buckets = match v.get_ref().as_str() {
                Some("auto") => Buckets::Auto,
                _ => match w.knob(v, h, 1, MAX_BUCKETS).map_err(|mut e| {
                    e.message = e.message.replace("or \"keep\"", "\"auto\" or \"keep\"");
                    e
                })? {
                    Knob::Set(b) => Buckets::Set(b),
                    Knob::Keep => Buckets::Keep,
                },
            };
            Ok(())
        },
    },
    Key {
        name: "udp_timeout",
        set: |w, c, v, h| {
            c.udp_timeout = w.knob(v, h, 1, MAX_TIMEOUT)?;
            Ok(())
        },
    },
    Key {
        name: "udp_timeout_stream",
        set: |w, c, v, h| {
            c.udp_timeout_stream = w.knob(v, h, 1, MAX_TIMEOUT)?;
            Ok(())
        },
    },
    Key {
        name: "max_policy",
        set: |w, c, v, h| {
            c.max_policy = w.policy(v, h)?;
            Ok(())
        },
    },
    Key {
        name: "buckets_policy",
        set: |w, c, v, h| {
            c.buckets_policy = w.policy(v, h)?;
            Ok(())
        },
    },
];

const WATCH_KEYS: &[Key<Watch>] = &[
    Key {
        name: "interval",
        set: |w, s, v, h| {
            s.interval = w.duration(v, h, INTERVAL_RANGE)?;
            Ok(())
        },
    },
    Key {
        name: "warn_percent",
        set: |w, s, v, h| {
            s.warn_percent = w.percent(v, h)?;
            Ok(())
        },
    },
    Key {
        name: "critical_percent",
        set: |w, s, v, h| {
            s.critical_percent = w.percent(v, h)?;
            Ok(())
        },
    },
    Key {
        name: "hysteresis_percent",
        set: |w, s, v, h| {
            s.hysteresis_percent = w.number(v, h, HYSTERESIS_RANGE)?;
            Ok(())
        },
    },
    Key {
        name: "reminder",
        set: |w, s, v, h| {
            s.reminder = w.duration(v, h, REMINDER_RANGE)?;
            Ok(())
        },
    },
    Key {
        name: "drops_every",
        set: |w, s, v, h| {
            s.drops_every = w.duration(v, h, DROPS_EVERY_RANGE)?;
            Ok(())
        },
    },
    Key {
        name: "restore",
        set: |w, s, v, h| {
            s.restore = w.boolean(v, h)?;
            Ok(())
        },
    },
    Key {
        name: "triage",
        set: |w, s, v, h| {
            s.triage = w.boolean(v, h)?;
            Ok(())
        },
    },
    Key {
        name: "triage_every",
        set: |w, s, v, h| {
            s.triage_every = w.duration(v, h, EVERY_RANGE)?;
            Ok(())
        },
    },
    Key {
        name: "namespaces",
        set: |w, s, v, h| {
            s.all_namespaces = match v.get_ref().as_str() {
                Some("host") => false,
                Some("all") => true,
                _ => {
                    return Err(w.error(
                        h,
                        format!(
                            "expected \"host\" or \"all\", found {}",
                            describe(v.get_ref())
                        ),
                    ))
                }
            };
            Ok(())
        },
    },
    Key {
        name: "namespaces_every",
        set: |w, s, v, h| {
            s.namespaces_every = w.duration(v, h, EVERY_RANGE)?;
            Ok(())
        },
    },
    Key {
        name: "restore_limit",
        set: |w, s, v, h| {
            let (min, max) = RESTORE_LIMIT_RANGE;
            s.restore_limit = match v.get_ref() {
                DeValue::Integer(i) => w.int_in(i, h, min, max)?,
                other => {
                    return Err(
                        w.error(h, format!("expected an integer, found {}", describe(other)))
                    )
                }
            };
            Ok(())
        },
    },
];

const METRICS_KEYS: &[Key<Metrics>] = &[Key {
    name: "textfile",
    set: |w, m, v, h| {
        let Some(s) = v.get_ref().as_str() else {
            return Err(w.error(
                h,
                format!("expected a path string, found {}", describe(v.get_ref())),
            ));
        };
        m.textfile = if s.is_empty() {
            None
        } else if !s.starts_with('/') || s.ends_with('/') || s.contains('\0') {
            return Err(w.error(h, format!("must be an absolute file path, found {s:?}")));
        } else {
            Some(PathBuf::from(s))
        };
        Ok(())
    },
}];

/// Parse and validate config text. `file` is only used in errors.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let mut w = Walker {
        text,
        file,
        seen: Vec::new(),
    };
    let doc = DeTable::parse(text).map_err(|e| w.syntax_error(&e))?;
    let mut cfg = Config::default();
    for (name, value) in doc.get_ref() {
        let section = name.get_ref().as_ref();
        let here = Here {
            key: section,
            at: name.span().start,
        };
        let Some(table) = value.get_ref().as_table() else {
            let all = CONNTRACK_KEYS
                .iter()
                .map(|k| k.name)
                .chain(WATCH_KEYS.iter().map(|k| k.name));
            return Err(w.error(
                &here,
                format!(
                    "expected a [section], found a {}{}",
                    value.get_ref().type_str(),
                    suggest(section, all)
                        .map(|s| format!(" (is `{s}` missing its [section] header?)"))
                        .unwrap_or_default()
                ),
            ));
        };
        match section {
            "conntrack" => w.section(section, table, CONNTRACK_KEYS, &mut cfg.conntrack)?,
            "sysctl" => cfg.sysctl = w.sysctl(table)?,
            "watch" => w.section(section, table, WATCH_KEYS, &mut cfg.watch)?,
            "metrics" => w.section(section, table, METRICS_KEYS, &mut cfg.metrics)?,
            other => {
                return Err(w.error(&here, unknown("section", other, SECTIONS.iter().copied())))
            }
        }
    }
    w.cross_check(&cfg)?;
    Ok(cfg)
}

struct Walker<'a> {
    text: &'a str,
    file: &'a Path,
    /// `section.key` and offset of every key walked so far.
    seen: Vec<(String, usize)>,
}

impl Walker<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn error(&self, h: &Here<'_>, message: String) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: Some(self.line_of(h.at)),
            key: Some(h.key.to_string()),
            message,
            source: None,
        }
    }

    /// A TOML syntax error. toml reports a repeated key as just "duplicate
    /// key" at the repeat; the walk of what it could parse names the key and
    /// its section.
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
    fn name_duplicate(&self, span: std::ops::Range<usize>) -> Option<(String, String)> {
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
        match section {
            Some(s) => Some((
                format!("{s}.{name}"),
                format!("duplicate key `{name}` in [{s}]"),
            )),
            None => {
                let line_start = self.text[..span.start].rfind('\n').map_or(0, |i| i + 1);
                let header = self.text[line_start..span.start]
                    .trim_start()
                    .starts_with('[');
                let what = if header {
                    format!("duplicate section [{name}]")
                } else {
                    format!("duplicate key `{name}`")
                };
                Some((name.to_string(), what))
            }
        }
    }

    /// Walk one section against its key table.
    fn section<T>(
        &mut self,
        section: &str,
        table: &DeTable<'_>,
        keys: &[Key<T>],
        out: &mut T,
    ) -> Result<(), ConfigError> {
        for (k, v) in table.iter() {
            let name = k.get_ref().as_ref();
            let full = format!("{section}.{name}");
            let here = Here {
                key: &full,
                at: k.span().start,
            };
            let Some(key) = keys.iter().find(|key| key.name == name) else {
                return Err(
                    self.error(&here, unknown("key", name, keys.iter().map(|key| key.name)))
                );
            };
            (key.set)(self, out, v, &here)?;
            self.seen.push((full.clone(), here.at));
        }
        Ok(())
    }

    fn knob(
        &self,
        v: &Spanned<DeValue<'_>>,
        h: &Here<'_>,
        min: u64,
        max: u64,
    ) -> Result<Knob, ConfigError> {
        match v.get_ref() {
            DeValue::String(s) if s.as_ref() == "keep" => Ok(Knob::Keep),
            DeValue::Integer(i) => self.int_in(i, h, min, max).map(Knob::Set),
            other => Err(self.error(
                h,
                format!("expected an integer or \"keep\", found {}", describe(other)),
            )),
        }
    }

    fn boolean(&self, v: &Spanned<DeValue<'_>>, h: &Here<'_>) -> Result<bool, ConfigError> {
        match v.get_ref() {
            DeValue::Boolean(b) => Ok(*b),
            other => Err(self.error(
                h,
                format!("expected true or false, found {}", describe(other)),
            )),
        }
    }

    fn policy(&self, v: &Spanned<DeValue<'_>>, h: &Here<'_>) -> Result<Policy, ConfigError> {
        match v.get_ref().as_str() {
            Some("exact") => Ok(Policy::Exact),
            Some("at-least") => Ok(Policy::AtLeast),
            _ => Err(self.error(
                h,
                format!(
                    "expected \"exact\" or \"at-least\", found {}",
                    describe(v.get_ref())
                ),
            )),
        }
    }

    fn int_in(
        &self,
        i: &toml::de::DeInteger<'_>,
        h: &Here<'_>,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let raw = i.as_str();
        if raw.starts_with('-') {
            return Err(self.error(h, format!("must be at least {min}, found {raw}")));
        }
        let n = u64::from_str_radix(raw.trim_start_matches('+'), i.radix())
            .map_err(|_| self.error(h, format!("{raw} is too large (at most {max})")))?;
        if n < min || n > max {
            return Err(self.error(h, format!("must be between {min} and {max}, found {n}")));
        }
        Ok(n)
    }

    fn sysctl(&mut self, table: &DeTable<'_>) -> Result<Vec<Extra>, ConfigError> {
        let mut out = Vec::new();
        for (k, v) in table.iter() {
            let key = k.get_ref().as_ref();
            let full = format!("sysctl.\"{key}\"");
            let h = Here {
                key: &full,
                at: k.span().start,
            };
            if let Err(why) = valid_sysctl_key(key) {
                return Err(self.error(&h, why));
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
                    &h,
                    "is managed by the [conntrack] section; set it there".into(),
                ));
            }
            let value = match v.get_ref() {
                DeValue::Integer(i) => {
                    let raw = i.as_str();
                    i128::from_str_radix(raw, i.radix())
                        .map_err(|_| self.error(&h, format!("{raw} is out of range")))?
                        .to_string()
                }
                DeValue::String(s) => {
                    let s = s.as_ref();
                    if s.is_empty() || s.contains(['\n', '\r', '\0']) {
                        return Err(
                            self.error(&h, "value must be non-empty and on one line".into())
                        );
                    }
                    s.to_string()
                }
                DeValue::Boolean(b) => u8::from(*b).to_string(),
                other => {
                    return Err(self.error(
                        &h,
                        format!("expected an integer or a string, found {}", describe(other)),
                    ))
                }
            };
            out.push(Extra {
                key: key.to_string(),
                value,
                line: Some(self.line_of(h.at)),
            });
            self.seen.push((full.clone(), h.at));
        }
        Ok(out)
    }

    fn number(
        &self,
        v: &Spanned<DeValue<'_>>,
        h: &Here<'_>,
        (min, max): (f64, f64),
    ) -> Result<f64, ConfigError> {
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            other => {
                return Err(self.error(h, format!("expected a number, found {}", describe(other))))
            }
        };
        match n {
            Some(n) if n.is_finite() && n >= min && n <= max => Ok(n),
            _ => Err(self.error(
                h,
                format!(
                    "must be between {min} and {max}, found {}",
                    raw_of(v.get_ref())
                ),
            )),
        }
    }

    fn percent(&self, v: &Spanned<DeValue<'_>>, h: &Here<'_>) -> Result<f64, ConfigError> {
        let n = self.number(v, h, PERCENT_RANGE)?;
        if n <= 0.0 {
            return Err(self.error(h, "must be above 0".into()));
        }
        Ok(n)
    }

    fn duration(
        &self,
        v: &Spanned<DeValue<'_>>,
        h: &Here<'_>,
        (min, max): (Duration, Duration),
    ) -> Result<Duration, ConfigError> {
        let parsed = match v.get_ref() {
            DeValue::String(s) => parse_duration(s.as_ref()),
            DeValue::Integer(_) | DeValue::Float(_) => parse_duration(&raw_of(v.get_ref())),
            other => Err(format!(
                "expected a duration such as \"5s\", found {}",
                describe(other)
            )),
        }
        .map_err(|m| self.error(h, m))?;
        if parsed < min || parsed > max {
            return Err(self.error(
                h,
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

    /// Checks between keys. The error names `key`, at its line if the file
    /// sets it, else at the line of `other` (the key it conflicts with).
    fn cross_check(&self, cfg: &Config) -> Result<(), ConfigError> {
        let err = |key: &str, other: &str, message: String| ConfigError {
            file: self.file.to_path_buf(),
            line: [key, other].iter().find_map(|want| {
                self.seen
                    .iter()
                    .find(|(k, _)| k == want)
                    .map(|(_, at)| self.line_of(*at))
            }),
            key: Some(key.to_string()),
            message,
            source: None,
        };
        if let (Buckets::Set(b), Knob::Set(m)) = (cfg.conntrack.buckets, cfg.conntrack.max) {
            if b > m {
                return Err(err(
                    "conntrack.buckets",
                    "conntrack.max",
                    format!("buckets ({b}) must not exceed max ({m}); about max/4 is usual"),
                ));
            }
        }
        let w = &cfg.watch;
        if w.warn_percent >= w.critical_percent {
            return Err(err(
                "watch.warn_percent",
                "watch.critical_percent",
                format!(
                    "warn_percent ({}) must be below critical_percent ({})",
                    w.warn_percent, w.critical_percent
                ),
            ));
        }
        if w.hysteresis_percent >= w.warn_percent {
            return Err(err(
                "watch.hysteresis_percent",
                "watch.warn_percent",
                format!(
                    "hysteresis_percent ({}) must be below warn_percent ({})",
                    w.hysteresis_percent, w.warn_percent
                ),
            ));
        }
        Ok(())
    }
}

fn suggest<'k>(word: &str, known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    known
        .map(|k| (edit_distance(word, k), k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 3) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn unknown<'k>(what: &str, word: &str, known: impl Iterator<Item = &'k str> + Clone) -> String {
    let list: Vec<&str> = known.clone().collect();
    match suggest(word, known) {
        Some(s) => format!("unknown {what} `{word}`; did you mean `{s}`?"),
        None => format!(
            "unknown {what} `{word}`; expected one of: {}",
            list.join(", ")
        ),
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
