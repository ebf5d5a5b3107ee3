// SPDX-License-Identifier: MIT OR Apache-2.0
//! The monitoring-plugin (Nagios) verdict and its first line, written once
//! for `status` and `status --all-netns`. Pure: values in, text out.
//!
//! The exit codes are the plugin convention (0 OK, 1 WARNING, 2 CRITICAL,
//! 3 UNKNOWN), but the ranking is not the code order: CRITICAL beats
//! UNKNOWN beats WARNING, because a table known to be full is the most
//! urgent news even when something else could not be read.

use serde::Serialize;

use super::Level;

/// Monitoring-plugins states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// 0.
    Ok,
    /// 1.
    Warning,
    /// 2.
    Critical,
    /// 3.
    Unknown,
}

impl Verdict {
    /// The exit code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The more urgent of two: CRITICAL > UNKNOWN > WARNING > OK.
    pub fn worst(self, other: Verdict) -> Verdict {
        // The rank of each exit code: OK 0, WARNING 1, CRITICAL 3, UNKNOWN 2.
        std::cmp::max_by_key(self, other, |v| [0, 1, 3, 2][v.code() as usize])
    }

    /// The most urgent of all; OK when there is none.
    pub fn worst_of(all: impl IntoIterator<Item = Verdict>) -> Verdict {
        all.into_iter().fold(Verdict::Ok, Verdict::worst)
    }

    /// `OK`, `WARNING`, `CRITICAL` or `UNKNOWN`.
    pub fn name(self) -> &'static str {
        ["OK", "WARNING", "CRITICAL", "UNKNOWN"][self as usize]
    }
}

/// A verdict as `ok`, `warning`, `critical` or `unknown` (doctor's JSON),
/// for `#[serde(serialize_with)]`.
pub fn lowercase<S: serde::Serializer>(v: &Verdict, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.name().to_ascii_lowercase())
}

impl From<Level> for Verdict {
    fn from(l: Level) -> Self {
        [Verdict::Ok, Verdict::Warning, Verdict::Critical][l as usize]
    }
}

/// One performance-data item: `label=value;warn;crit;min;max`.
#[derive(Debug, Clone, PartialEq)]
pub struct Perf(String);

impl Perf {
    /// A fill ratio in percent with its thresholds (0 when unknown),
    /// between 0 and 100.
    pub fn percent(label: &'static str, ratio: f64, warn: Option<f64>, crit: Option<f64>) -> Perf {
        let (warn, crit) = (warn.unwrap_or(0.0), crit.unwrap_or(0.0));
        Perf(format!("{label}={:.2}%;{warn};{crit};0;100", ratio * 100.0))
    }

    /// A count, with its maximum when it has one.
    pub fn count(label: &'static str, n: u64, max: Option<u64>) -> Perf {
        Perf(match max {
            Some(m) => format!("{label}={n};;;0;{m}"),
            None => format!("{label}={n}"),
        })
    }
}

/// `CONNTRACK STATUS - summary | perfdata`, with its newline: the one line
/// a monitoring system shows.
pub fn plugin_line(status: Verdict, summary: &str, perf: &[Perf]) -> String {
    let perf: Vec<&str> = perf.iter().map(|p| p.0.as_str()).collect();
    let sep = if perf.is_empty() { "" } else { " | " };
    format!(
        "CONNTRACK {} - {summary}{sep}{}\n",
        status.name(),
        perf.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critical_beats_unknown_beats_warning() {
        use Verdict::*;
        assert_eq!(Verdict::worst_of([]), Ok);
        assert_eq!(Verdict::worst_of([Warning, Unknown]), Unknown);
        assert_eq!(Verdict::worst_of([Critical, Unknown, Warning]), Critical);
        assert_eq!(
            [Ok, Warning, Critical, Unknown].map(Verdict::code),
            [0, 1, 2, 3]
        );
        assert_eq!(Verdict::from(Level::Warning), Warning);
    }

    #[test]
    fn line_with_perfdata() {
        assert_eq!(
            plugin_line(
                Verdict::Warning,
                "80.0% full",
                &[
                    Perf::percent("fill", 0.8, Some(80.0), None),
                    Perf::count("entries", 800, Some(1000)),
                    Perf::count("namespaces", 3, None),
                ]
            ),
            "CONNTRACK WARNING - 80.0% full | fill=80.00%;80;0;0;100 \
             entries=800;;;0;1000 namespaces=3\n"
        );
        assert_eq!(plugin_line(Verdict::Ok, "x", &[]), "CONNTRACK OK - x\n");
    }
}
