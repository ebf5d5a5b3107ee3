// SPDX-License-Identifier: MIT OR Apache-2.0
//! The grown size, written down: what the watchdog grew the table to, when,
//! why, and from which configured max.
//!
//! Two copies of one small `key=value` text:
//! - [`THIS_BOOT`] under /run: this boot's record, so `status`, `doctor`
//!   and `apply --dry-run` know the grown max is the watchdog's and not
//!   drift;
//! - [`REMEMBERED`] under /var/lib (the unit's `StateDirectory=`), with
//!   `[grow] remember = true`: the next boot's apply starts from it while
//!   the configured max is unchanged ([`verdict`]).
//!
//! The file decides a kernel limit at boot, so it is read as untrusted: the
//! last component is never followed (O_NOFOLLOW; the directory itself may
//! be a link, as `StateDirectory=` makes it under `DynamicUser=`), only a
//! regular file of at most [`MAX_STATE_BYTES`] is read, every key must be
//! there once and be in range, and a max above the budget is never used.
//! Any of that failing is a typed [`StateError`] for a warning, never a
//! panic. Writes are atomic ([`crate::sysroot::write_atomic`]).

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::assess::sizing::cap_max;
use crate::config::{KEY_BUCKETS, KEY_MAX, MAX_CONNTRACK_MAX};
use crate::kernel::hashsize::KernelTarget;
use crate::sysroot::{PathError, SysRoot};

/// Remembered across boots, relative to the root.
pub const REMEMBERED: &str = "var/lib/conntrack-guard/grown";
/// This boot's record, relative to the root.
pub const THIS_BOOT: &str = "run/conntrack-guard/grown";
/// A larger file is refused unread: ours is about 150 bytes.
pub const MAX_STATE_BYTES: u64 = 4096;

/// What the watchdog grew the table to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    /// The grown nf_conntrack_max.
    pub max: u64,
    /// Buckets then (0 when unknown).
    pub buckets: u64,
    /// The configured max it grew from: a different one now means the
    /// operator edited max, which discards this.
    pub configured: u64,
    /// When, in seconds since the Unix epoch.
    pub at: u64,
    /// Why, as in the `grown` event (one line).
    pub reason: String,
}

/// The keys, in the order they are written.
const KEYS: [&str; 5] = ["max", "buckets", "configured", "at", "reason"];

impl Remembered {
    /// The file's text.
    pub fn format(&self) -> String {
        format!(
            "# conntrack-guard: the table as the watchdog grew it; delete this file\n\
             # (or edit [conntrack] max) to forget it.\n\
             max={}\nbuckets={}\nconfigured={}\nat={}\nreason={}\n",
            self.max,
            self.buckets,
            self.configured,
            self.at,
            one_line(&self.reason)
        )
    }

    /// `grown on 2026-12-07 14:03 UTC after early_drop +1234; configured
    /// 262144`, for apply's table.
    pub fn describe(&self) -> String {
        let (on, why, configured) = (fmt_utc(self.at), &self.reason, self.configured);
        format!("grown on {on} after {why}; configured {configured}")
    }
}

/// Control characters (a newline would start a new key) become spaces.
fn one_line(s: &str) -> String {
    s.replace(|c: char| c.is_control(), " ").trim().to_string()
}

/// A state text that is not what we write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A line that is neither a comment nor `key=value`.
    #[error("line {line}: not key=value")]
    NotKeyValue {
        /// 1-based line.
        line: usize,
    },
    /// A key we do not write.
    #[error("line {line}: unknown key {key:?}")]
    UnknownKey {
        /// 1-based line.
        line: usize,
        /// The key (at most 32 characters of it).
        key: String,
    },
    /// A key given twice.
    #[error("line {line}: {key} given twice")]
    Duplicate {
        /// 1-based line.
        line: usize,
        /// The key.
        key: &'static str,
    },
    /// A number out of range or not a number.
    #[error("line {line}: {key} = {value:?} is not a number in {min}..={max}")]
    BadNumber {
        /// 1-based line.
        line: usize,
        /// The key.
        key: &'static str,
        /// The value (at most 32 characters of it).
        value: String,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A key that must be there is not.
    #[error("{0} is missing")]
    Missing(&'static str),
}

/// Parse a state text. Pure; every key once, numbers in range, comments
/// (`#`) and blank lines skipped.
pub fn parse(text: &str) -> Result<Remembered, ParseError> {
    let mut nums: [Option<u64>; 4] = [None; 4];
    let mut reason: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let (line, l) = (n + 1, raw.trim());
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (k, v) = l.split_once('=').ok_or(ParseError::NotKeyValue { line })?;
        let (k, v) = (k.trim(), v.trim());
        let Some(idx) = KEYS.iter().position(|key| *key == k) else {
            let key = k.chars().take(32).collect();
            return Err(ParseError::UnknownKey { line, key });
        };
        let key = KEYS[idx];
        if nums.get(idx).map_or(reason.is_some(), Option::is_some) {
            return Err(ParseError::Duplicate { line, key });
        }
        // max and configured are kernel maxima (1..=INT_MAX); buckets may be
        // 0 (unknown); at is any time.
        let (min, max) = match key {
            "reason" => {
                reason = Some(one_line(v));
                continue;
            }
            "max" | "configured" => (1, MAX_CONNTRACK_MAX),
            "buckets" => (0, MAX_CONNTRACK_MAX),
            _ => (0, u64::MAX),
        };
        let num = v
            .parse::<u64>()
            .ok()
            .filter(|x| (min..=max).contains(x))
            .ok_or_else(|| ParseError::BadNumber {
                line,
                key,
                value: v.chars().take(32).collect(),
                min,
                max,
            })?;
        nums[idx] = Some(num);
    }
    let get = |i: usize| nums[i].ok_or(ParseError::Missing(KEYS[i]));
    Ok(Remembered {
        max: get(0)?,
        buckets: get(1)?,
        configured: get(2)?,
        at: get(3)?,
        reason: reason.ok_or(ParseError::Missing("reason"))?,
    })
}

/// What a remembered max means for this boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Start from this max.
    Use(u64),
    /// Not above the configured max: nothing to start from.
    NotAbove,
    /// The configured max changed since: the operator decided again, and
    /// what was remembered is discarded.
    ConfigChanged {
        /// The configured max it grew from.
        then: u64,
        /// The configured max now.
        now: u64,
    },
    /// Above what the budget allows now: ignored, with a warning.
    AboveBudget {
        /// The remembered max.
        max: u64,
        /// The budget's cap on max.
        cap: u64,
    },
}

/// Judge a remembered max against the configured max and the budget's cap
/// (see [`crate::assess::sizing::boot_cap`]). Pure.
pub fn verdict(r: &Remembered, configured_max: u64, cap_max: u64) -> Verdict {
    if r.configured != configured_max {
        Verdict::ConfigChanged {
            then: r.configured,
            now: configured_max,
        }
    } else if r.max <= configured_max {
        Verdict::NotAbove
    } else if r.max > cap_max || r.max > MAX_CONNTRACK_MAX {
        Verdict::AboveBudget {
            max: r.max,
            cap: cap_max.min(MAX_CONNTRACK_MAX),
        }
    } else {
        Verdict::Use(r.max)
    }
}

/// The max to start from, if the remembered one is trusted: above the
/// configured max, grown from the same configured max, within the cap.
pub fn trusted(r: &Remembered, configured_max: u64, cap_max: u64) -> Option<u64> {
    match verdict(r, configured_max, cap_max) {
        Verdict::Use(m) => Some(m),
        _ => None,
    }
}

/// The budget's cap on a max grown this boot: the largest max whose worst
/// case fits with the buckets the record says the table has (the watchdog
/// grew max within that; buckets it did not resize stay as they were).
pub fn this_boot_cap(r: &Remembered, budget_bytes: u64, entry_bytes: u64) -> u64 {
    cap_max(budget_bytes, entry_bytes, |_| r.buckets)
}

/// The kernel targets with the grown values in place of the configured
/// ones: max is the record's when it is [`trusted`], and buckets too when
/// it has more than configured (the watchdog resized them with max); a
/// record that is not trusted changes nothing. Pure; what every reader
/// (the watchdog's drift and restore, `status`, `doctor`, `apply`)
/// compares against, so a grown max is never drift. `configured_max` is
/// `None` for `max = "keep"`, which has no target to grow.
pub fn expected_targets(
    mut targets: Vec<KernelTarget>,
    r: Option<&Remembered>,
    configured_max: Option<u64>,
    cap_max: u64,
) -> Vec<KernelTarget> {
    let is_trusted =
        |r: &&Remembered| configured_max.is_some_and(|c| trusted(r, c, cap_max).is_some());
    let Some(r) = r.filter(is_trusted) else {
        return targets;
    };
    for t in &mut targets {
        let grown = match t.key.as_str() {
            KEY_MAX => Some(r.max),
            KEY_BUCKETS => {
                let more = t.value.parse::<u64>().is_ok_and(|b| r.buckets > b);
                more.then_some(r.buckets)
            }
            _ => None,
        };
        if let Some(v) = grown {
            t.value = v.to_string();
            t.requested = None;
        }
    }
    targets
}

/// Why a state file was not read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Could not be opened or read.
    #[error(transparent)]
    Io(#[from] PathError),
    /// A symbolic link: never followed.
    #[error("{}: is a symbolic link; not followed", .0.display())]
    Symlink(PathBuf),
    /// Not a regular file (a directory, a FIFO, a device).
    #[error("{}: not a regular file", .0.display())]
    NotRegular(PathBuf),
    /// Larger than [`MAX_STATE_BYTES`].
    #[error("{}: larger than {MAX_STATE_BYTES} bytes; not read", .0.display())]
    TooBig(PathBuf),
    /// Not UTF-8.
    #[error("{}: not UTF-8 text", .0.display())]
    NotText(PathBuf),
    /// Read but not understood.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The full path.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: ParseError,
    },
}

/// Read the state file `rel` (e.g. [`REMEMBERED`]) under `root`; `None`
/// when there is none.
pub fn read(root: &SysRoot, rel: &str) -> Result<Option<Remembered>, StateError> {
    let path = root.path(rel);
    let io_err = |source| StateError::Io(PathError::on(&path)(source));
    // O_NONBLOCK: a FIFO planted here must not hang the boot in open();
    // it is refused below as not a regular file.
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(StateError::Symlink(path))
        }
        Err(e) => return Err(io_err(e)),
    };
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(StateError::NotRegular(path));
    }
    if meta.len() > MAX_STATE_BYTES {
        return Err(StateError::TooBig(path));
    }
    // The file can grow after the fstat: the limit holds on the read too.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    let mut limited = Read::by_ref(&mut file).take(MAX_STATE_BYTES + 1);
    limited.read_to_end(&mut bytes).map_err(io_err)?;
    if bytes.len() as u64 > MAX_STATE_BYTES {
        return Err(StateError::TooBig(path));
    }
    let text = String::from_utf8(bytes).map_err(|_| StateError::NotText(path.clone()))?;
    parse(&text)
        .map(Some)
        .map_err(|source| StateError::Parse { path, source })
}

/// Write the state file `rel` under `root` atomically, creating its
/// directory when missing (apply runs before the watchdog's
/// `StateDirectory=` or `/run` directory may exist).
pub fn write(root: &SysRoot, rel: &str, r: &Remembered) -> Result<(), PathError> {
    root.write_file(rel, r.format().as_bytes())
}

/// Forget: remove the state file `rel` under `root`. `Ok(false)` when there
/// was none. A symlink is removed, never followed.
pub fn remove(root: &SysRoot, rel: &str) -> Result<bool, PathError> {
    let path = root.path(rel);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(PathError { path, source }),
    }
}

/// `2026-12-07 14:03 UTC` from seconds since the Unix epoch.
pub fn fmt_utc(at: u64) -> String {
    let days = at / 86_400;
    let secs = at % 86_400;
    // Days to a proleptic Gregorian date in eras of 400 years (146097
    // days), counted from 0000-03-01 so the leap day ends a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let (hour, minute) = (secs / 3600, secs % 3600 / 60);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn sample() -> Remembered {
        Remembered {
            max: 524_288,
            buckets: 131_072,
            configured: 262_144,
            at: 1_796_652_180,
            reason: "fill 96% in netns 4026532246 (container tracker), early_drop +1234".into(),
        }
    }

    #[test]
    fn round_trip() {
        let r = sample();
        let text = r.format();
        assert!(text.contains("\nmax=524288\n"), "{text}");
        assert_eq!(parse(&text), Ok(r));
    }

    #[test]
    fn describe_for_apply() {
        assert_eq!(
            Remembered {
                reason: "early_drop +1234".into(),
                ..sample()
            }
            .describe(),
            "grown on 2026-12-07 14:03 UTC after early_drop +1234; configured 262144"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(fmt_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(fmt_utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(fmt_utc(1_796_652_180), "2026-12-07 14:03 UTC");
        assert_eq!(fmt_utc(4_107_542_399), "2100-02-28 23:59 UTC");
        // No panic at the end of time.
        assert!(fmt_utc(u64::MAX).ends_with(" UTC"));
    }

    #[test]
    fn newlines_in_the_reason_cannot_add_keys() {
        let r = Remembered {
            reason: "x\nmax=2147483647\r\u{1b}[2J".into(),
            ..sample()
        };
        let back = parse(&r.format()).unwrap();
        assert_eq!(back.max, 524_288);
        assert_eq!(back.reason, "x max=2147483647  [2J");
    }

    #[test]
    fn garbage_is_a_typed_error() {
        use ParseError::*;
        assert_eq!(parse(""), Err(Missing("max")));
        assert_eq!(parse("hello\n"), Err(NotKeyValue { line: 1 }));
        let mut t = sample().format();
        t.push_str("max=1\n");
        assert!(matches!(parse(&t), Err(Duplicate { key: "max", .. })));
        let t = sample().format().replace("max=524288", "max=-1");
        assert!(matches!(parse(&t), Err(BadNumber { key: "max", .. })));
        let t = sample().format().replace("max=524288", "max=0");
        assert!(matches!(parse(&t), Err(BadNumber { key: "max", .. })));
        let t = sample().format().replace("max=524288", "max=2147483648");
        assert!(matches!(parse(&t), Err(BadNumber { key: "max", .. })));
        let t = sample().format().replace("at=", "when=");
        assert!(matches!(parse(&t), Err(UnknownKey { .. })));
        let t = sample().format().replace("reason=", "# reason=");
        assert_eq!(parse(&t), Err(Missing("reason")));
        let msg = parse("max=zz\n").unwrap_err().to_string();
        assert_eq!(
            msg,
            "line 1: max = \"zz\" is not a number in 1..=2147483647"
        );
    }

    #[test]
    fn verdicts() {
        let r = sample();
        assert_eq!(verdict(&r, 262_144, 1 << 30), Verdict::Use(524_288));
        assert_eq!(trusted(&r, 262_144, 524_288), Some(524_288));
        assert_eq!(
            verdict(&r, 300_000, 1 << 30),
            Verdict::ConfigChanged {
                then: 262_144,
                now: 300_000
            }
        );
        assert_eq!(
            verdict(&r, 262_144, 400_000),
            Verdict::AboveBudget {
                max: 524_288,
                cap: 400_000
            }
        );
        let low = Remembered {
            max: 262_144,
            ..sample()
        };
        assert_eq!(verdict(&low, 262_144, 1 << 30), Verdict::NotAbove);
        assert_eq!(trusted(&low, 262_144, 1 << 30), None);
    }

    fn target(key: &str, value: u64) -> KernelTarget {
        KernelTarget {
            key: key.into(),
            value: value.to_string(),
            requested: None,
            policy: crate::config::Policy::Exact,
        }
    }

    /// The max to expect: the record's when it is trusted, else the
    /// configured one.
    fn expected_max(r: Option<&Remembered>, configured_max: u64, cap_max: u64) -> u64 {
        r.and_then(|r| trusted(r, configured_max, cap_max))
            .unwrap_or(configured_max)
    }

    #[test]
    fn the_grown_max_is_expected_only_when_trusted() {
        let r = sample();
        assert_eq!(expected_max(Some(&r), 262_144, 1 << 30), 524_288);
        assert_eq!(expected_max(None, 262_144, 1 << 30), 262_144);
        // Above the cap, grown from another max, or not above: configured.
        assert_eq!(expected_max(Some(&r), 262_144, 524_287), 262_144);
        assert_eq!(expected_max(Some(&r), 300_000, 1 << 30), 300_000);
        assert_eq!(expected_max(Some(&r), 600_000, 1 << 30), 600_000);
        // The cap of this boot counts the record's buckets.
        let cap = this_boot_cap(&r, 524_288 * 384 + 131_072 * 8, 384);
        assert_eq!(cap, 524_288);
        assert_eq!(expected_max(Some(&r), 262_144, cap), 524_288);
        let cap = this_boot_cap(&r, 524_288 * 384 + 131_072 * 8 - 1, 384);
        assert_eq!(expected_max(Some(&r), 262_144, cap), 262_144);
    }

    #[test]
    fn expected_targets_take_max_and_larger_buckets() {
        let configured = || {
            vec![
                target(KEY_BUCKETS, 65_536),
                target(KEY_MAX, 262_144),
                target("net.netfilter.nf_conntrack_udp_timeout", 10),
            ]
        };
        let r = sample();
        let t = expected_targets(configured(), Some(&r), Some(262_144), 1 << 30);
        assert_eq!(t[0].value, "131072");
        assert_eq!(t[1].value, "524288");
        assert_eq!(t[2].value, "10");
        // Buckets the watchdog left alone: the configured ones stay.
        let same = Remembered {
            buckets: 65_536,
            ..sample()
        };
        let t = expected_targets(configured(), Some(&same), Some(262_144), 1 << 30);
        assert_eq!(
            (t[0].value.as_str(), t[1].value.as_str()),
            ("65536", "524288")
        );
        // Not trusted, no record, or max = "keep": the configuration as is.
        for (rec, conf, cap) in [
            (Some(&r), Some(262_144), 1),
            (Some(&r), Some(100), 1 << 30),
            (None, Some(262_144), 1 << 30),
            (Some(&r), None, 1 << 30),
        ] {
            assert_eq!(expected_targets(configured(), rec, conf, cap), configured());
        }
    }

    #[test]
    fn reads_what_it_wrote_and_creates_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::at(dir.path());
        assert!(read(&root, REMEMBERED).unwrap().is_none());
        write(&root, REMEMBERED, &sample()).unwrap();
        write(&root, THIS_BOOT, &sample()).unwrap();
        assert_eq!(read(&root, REMEMBERED).unwrap(), Some(sample()));
        assert_eq!(read(&root, THIS_BOOT).unwrap(), Some(sample()));
        assert!(remove(&root, REMEMBERED).unwrap());
        assert!(!remove(&root, REMEMBERED).unwrap());
        assert!(read(&root, REMEMBERED).unwrap().is_none());
    }

    #[test]
    fn hostile_files_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::at(dir.path());
        let path = root.path(REMEMBERED);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // A symlink to a valid file is still not followed.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, sample().format()).unwrap();
        symlink(&elsewhere, &path).unwrap();
        let e = read(&root, REMEMBERED).unwrap_err();
        assert!(matches!(e, StateError::Symlink(_)), "{e}");
        assert!(
            e.to_string().contains("var/lib/conntrack-guard/grown"),
            "{e}"
        );
        // Removing it removes the link, not the target.
        assert!(remove(&root, REMEMBERED).unwrap());
        assert!(elsewhere.exists());
        // A FIFO: refused without blocking.
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(matches!(
            read(&root, REMEMBERED),
            Err(StateError::NotRegular(_))
        ));
        std::fs::remove_file(&path).unwrap();
        // A directory.
        std::fs::create_dir(&path).unwrap();
        assert!(matches!(
            read(&root, REMEMBERED),
            Err(StateError::NotRegular(_))
        ));
        std::fs::remove_dir(&path).unwrap();
        // Huge.
        let mut big = sample().format();
        big.push_str(&"#".repeat(5000));
        std::fs::write(&path, big).unwrap();
        assert!(matches!(
            read(&root, REMEMBERED),
            Err(StateError::TooBig(_))
        ));
        // Garbage, not UTF-8, and a parse error naming the path.
        std::fs::write(&path, b"max=\xff\n").unwrap();
        assert!(matches!(
            read(&root, REMEMBERED),
            Err(StateError::NotText(_))
        ));
        std::fs::write(&path, "max=1\nmax=2\n").unwrap();
        let e = read(&root, REMEMBERED).unwrap_err();
        assert!(matches!(e, StateError::Parse { .. }));
        assert!(
            e.to_string().ends_with("grown: line 2: max given twice"),
            "{e}"
        );
        // A symlink planted at the target is replaced by the write, and its
        // target is left alone.
        std::fs::remove_file(&path).unwrap();
        symlink(&elsewhere, &path).unwrap();
        std::fs::write(&elsewhere, "precious").unwrap();
        write(&root, REMEMBERED, &sample()).unwrap();
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "precious");
        assert_eq!(read(&root, REMEMBERED).unwrap(), Some(sample()));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,400}") {
            let _ = parse(&s);
        }

        #[test]
        fn parse_never_panics_on_near_misses(
            lines in proptest::collection::vec(
                ("(max|buckets|configured|at|reason|x)", "[ =]{0,2}", "[-0-9a-z\\n]{0,24}"), 0..8)
        ) {
            let text: String = lines.iter().map(|(k, e, v)| format!("{k}{e}{v}\n")).collect();
            if let Ok(r) = parse(&text) {
                proptest::prop_assert!(r.max >= 1 && r.max <= MAX_CONNTRACK_MAX);
            }
        }

        #[test]
        fn trusted_never_above_the_cap(
            max in 1u64..=MAX_CONNTRACK_MAX,
            configured in 1u64..=MAX_CONNTRACK_MAX,
            now_configured in 1u64..=MAX_CONNTRACK_MAX,
            cap in 0u64..u64::MAX,
            same in proptest::bool::ANY,
        ) {
            let r = Remembered { max, buckets: 0, configured, at: 0, reason: String::new() };
            let now = if same { configured } else { now_configured };
            if let Some(m) = trusted(&r, now, cap) {
                proptest::prop_assert!(m <= cap);
                proptest::prop_assert!(m > now);
                proptest::prop_assert_eq!(r.configured, now);
            }
        }

        #[test]
        fn format_then_parse_is_identity(
            max in 1u64..=MAX_CONNTRACK_MAX,
            buckets in 0u64..=MAX_CONNTRACK_MAX,
            configured in 1u64..=MAX_CONNTRACK_MAX,
            at in proptest::num::u64::ANY,
            reason in "[a-z0-9 %+(),.]{0,80}",
        ) {
            let r = Remembered { max, buckets, configured, at, reason: reason.trim().to_string() };
            proptest::prop_assert_eq!(parse(&r.format()), Ok(r));
        }
    }
}
