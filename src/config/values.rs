// SPDX-License-Identifier: MIT OR Apache-2.0
//! Value syntaxes shared by the config file and the command line: durations
//! and sysctl key names.

use std::time::Duration;

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
    }
}
