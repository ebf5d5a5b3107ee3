// SPDX-License-Identifier: MIT OR Apache-2.0
//! Value syntaxes shared by the config file and the command line: durations,
//! memory budgets and sysctl key names.

use std::time::Duration;

use super::model::{Budget, BUDGET_MAX_BYTES};

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
    let bad = |why: &str| Err(format!("{key:?} is not a dotted sysctl name{why}"));
    let odd = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-.".contains(*c)));
    if key.contains('/') {
        bad(": `/` is not allowed (write e.g. net.core.rmem_max)")
    } else if key.split('.').any(str::is_empty) {
        bad(": empty part (leading, trailing or double dot)")
    } else if let Some(c) = odd {
        bad(&format!(": character {c:?} is not allowed"))
    } else if !key.contains('.') {
        bad(" such as net.core.rmem_max")
    } else {
        Ok(())
    }
}

/// `s` trimmed and split where its leading number ends.
fn split_number(s: &str) -> (&str, &str) {
    let t = s.trim();
    let end = t.find(|c: char| !(c.is_ascii_digit() || c == '.'));
    t.split_at(end.unwrap_or(t.len()))
}

/// Parse a duration: "500ms", "5s", "1.5s", "5m", "1h", "1d", or plain
/// seconds ("5", "0.5").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = split_number(s);
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

/// Parse a memory budget: a share of RAM ("2%", "0.5%", above 0 and at
/// most 100) or a size with a binary unit ("512MiB", "2GiB", "1.5G"; B,
/// K/KiB, M/MiB, G/GiB, T/TiB, all powers of 1024 as in systemd's
/// MemoryMax=). A bare number is refused: bytes or percent would be a guess.
pub fn parse_budget(s: &str) -> Result<Budget, String> {
    let (num, unit) = split_number(s);
    let bad = |why: &str| format!("bad budget {s:?}: {why}");
    let n: f64 = num
        .parse()
        .map_err(|_| bad("expected a share of RAM such as \"2%\" or a size such as \"512MiB\""))?;
    if n <= 0.0 {
        return Err(bad("must be above 0"));
    }
    let shift = match unit.trim() {
        "%" if n <= 100.0 => return Ok(Budget::Percent(n)),
        "%" => return Err(bad("a share of RAM is at most 100%")),
        "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        "" => return Err(bad("needs a unit: % of RAM, or B, KiB, MiB, GiB or TiB")),
        other => {
            return Err(bad(&format!(
                "unknown unit {other:?} (use %, B, KiB, MiB, GiB or TiB)"
            )))
        }
    };
    let bytes = n * (1u64 << shift) as f64;
    if bytes < 1.0 {
        return Err(bad("must be at least 1 byte"));
    }
    if bytes >= BUDGET_MAX_BYTES as f64 {
        return Err(bad("must be below 1 PiB"));
    }
    Ok(Budget::Bytes(bytes as u64))
}

/// Print a duration the way the config accepts it.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return format!("{}us", d.as_micros());
    }
    let units = [(3_600_000, "h"), (60_000, "m"), (1000, "s"), (1, "ms")];
    let (n, unit) = units
        .into_iter()
        .find(|(n, _)| ms % n == 0)
        .unwrap_or((1, "ms"));
    format!("{}{unit}", ms / n)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn budgets() {
        let ok = |s: &str| parse_budget(s).unwrap();
        assert_eq!(ok("2%"), Budget::Percent(2.0));
        assert_eq!(ok("0.5%"), Budget::Percent(0.5));
        assert_eq!(ok("100%"), Budget::Percent(100.0));
        assert_eq!(ok("512MiB"), Budget::Bytes(512 << 20));
        assert_eq!(ok("2GiB"), Budget::Bytes(2 << 30));
        assert_eq!(ok("1G"), Budget::Bytes(1 << 30));
        assert_eq!(ok("1.5K"), Budget::Bytes(1536));
        assert_eq!(ok("4096B"), Budget::Bytes(4096));
        for (bad, why) in [
            ("0", "above 0"),
            ("0%", "above 0"),
            ("0MiB", "above 0"),
            ("200%", "at most 100%"),
            ("-1MiB", "expected a share of RAM"),
            ("512", "needs a unit"),
            ("2MB", "unknown unit"),
            ("lots", "expected a share of RAM"),
            ("", "expected a share of RAM"),
            ("0.1B", "at least 1 byte"),
            ("2048TiB", "below 1 PiB"),
            ("1e3MiB", "unknown unit"),
        ] {
            let e = parse_budget(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn budget_resolves_against_ram_and_prints_as_written() {
        let ram = 24 << 30;
        assert_eq!(Budget::Percent(2.0).bytes(ram), 515_396_075);
        assert_eq!(Budget::Percent(100.0).bytes(ram), ram);
        assert_eq!(Budget::Bytes(512 << 20).bytes(ram), 512 << 20);
        for s in ["2%", "0.5%", "512MiB", "2GiB", "1536B", "3KiB", "1TiB"] {
            assert_eq!(parse_budget(s).unwrap().to_string(), s);
        }
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
        fn duration_never_panics(s in "\\PC{0,30}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn budget_never_panics_and_stays_in_range(s in "[0-9.]{0,25}(%|B|K|KiB|M|MiB|G|GiB|T|TiB|\\PC{0,3})") {
            match parse_budget(&s) {
                Ok(Budget::Percent(p)) => assert!(p > 0.0 && p <= 100.0, "{s:?}"),
                Ok(Budget::Bytes(b)) => assert!((1..BUDGET_MAX_BYTES).contains(&b), "{s:?}"),
                Err(_) => {}
            }
        }
    }
}
