// SPDX-License-Identifier: MIT OR Apache-2.0
//! Command-line parsing and dispatch; each command module owns its `run`.
//! The one parser of the program: every command's flags, `--config`
//! wherever it stands, `--` and `--help`, for all six commands. Hand-written:
//! the tokenizing is thirty lines, and a parser crate would still leave the
//! per-command checks (ranges, repeats, the exit code of a usage error) here
//! while adding to a boot-time binary.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::assess::verdict::Verdict;
use crate::cmd::{self, doctor, top};
use crate::config::{self, parse_duration};
use crate::exit;
use crate::host::Host;
use crate::report::events::default_sink;
use crate::report::output;
use crate::triage::{self, GROUP_CAP};

/// The `--help` text.
pub const HELP: &str = "\
conntrack-guard - keep nf_conntrack sized for busy UDP services behind NAT

USAGE:
    conntrack-guard [--config PATH] <COMMAND> [OPTIONS]

COMMANDS:
    apply [--dry-run]          Load nf_conntrack if needed, write the configured
                               sysctls, read each back and verify it (boot oneshot)
    watch [--interval DUR]     Watchdog: sample fill and drop counters, log events,
                               keep `systemctl status` live via sd_notify
    status [--json] [--window DUR]
                               One-shot health snapshot (monitoring-plugins exit codes)
    status --all-netns [--json]
                               Every network namespace: fill, drops, owner (root)
    plan --rate N [--timeout S] [--headroom F] [--json]
                               Size the table for N new UDP flows per second
    doctor [--json]            Read-only check of the traps around these keys
                               (sysctl.d, modprobe.d, units, kube-proxy, NOTRACK)
    top [--by KEY] [-n N] [--json] [--netns PATH]
                               Who fills the table: one ctnetlink read, grouped
                               (`conntrack-guard top --help`)

OPTIONS:
    --config PATH   Config file (default /etc/conntrack-guard/conntrack-guard.toml;
                    a missing default file means built-in defaults, a missing
                    PATH is an error in every command)
    -h, --help      Show this help
    -V, --version   Show the version

ENVIRONMENT:
    CONNTRACK_GUARD_ROOT   Testing hook: a directory that stands for `/` for every
                           /proc, /sys and /etc path. Under it no module is loaded.

A flag may be given once. `--` ends the options.

EXIT STATUS (apply, watch, plan):
    0   success: every key verified
    1   some key failed, or a runtime failure
    2   usage error
    69  conntrack unavailable (module absent and cannot be loaded)
    77  permission denied (not root, no CAP_NET_ADMIN/CAP_SYS_MODULE,
        or read-only /proc/sys inside a container)
    78  invalid configuration (nothing was written)

EXIT STATUS (status, doctor):
    0 OK, 1 WARNING (warning level or drift), 2 CRITICAL (critical level or
    drops rising now), 3 UNKNOWN (cannot read, invalid or unreadable
    configuration, or a usage error: never 2, which means CRITICAL)
";

const VERSION: &str = concat!("conntrack-guard ", env!("CARGO_PKG_VERSION"), "\n");

/// Parsed command line: each command with its options.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    Apply {
        dry_run: bool,
    },
    Watch {
        interval: Option<Duration>,
    },
    /// `status`, or `status --all-netns` (`window`: plain status only).
    Status {
        json: bool,
        window: Duration,
        all_netns: bool,
    },
    Plan {
        rate: f64,
        timeout: Option<u64>,
        headroom: f64,
        json: bool,
    },
    Doctor {
        json: bool,
    },
    Top(top::Options),
    /// `--help`: the text of the program, or of the command it follows;
    /// `--version`: the version line.
    Help(&'static str),
}

/// Command plus `--config` (before or after the command word).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Invocation {
    config: Option<PathBuf>,
    command: Command,
}

/// A command-line error: what is wrong, and the command when one was given.
/// `status` and `doctor` report it as UNKNOWN (3), as monitoring plugins
/// do, since 2 would read as CRITICAL; every other command uses 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct UsageError {
    command: Option<String>,
    message: String,
}

impl UsageError {
    fn exit_code(&self) -> i32 {
        match self.command.as_deref() {
            Some("status" | "doctor") => Verdict::Unknown.code(),
            _ => exit::USAGE,
        }
    }

    /// The message for stderr, pointing at the help that fits.
    fn text(&self) -> String {
        let help = match self.command.as_deref() {
            Some(c @ ("top" | "doctor")) => format!("conntrack-guard {c} --help"),
            _ => "conntrack-guard --help".into(),
        };
        format!("conntrack-guard: {self}\nTry `{help}`.")
    }
}

/// Options that take a value: inline (`--name=V`) or the next argument.
const TAKES_VALUE: &str =
    "--config --interval --window --rate --timeout --headroom --by -n --netns --prefix";

/// Parse arguments (without argv[0]). Paths stay `OsString` from argv to
/// open(), so a non-UTF-8 file name reaches the file system unchanged.
/// `--` ends the options. A flag given twice is an error that names it
/// (except `top --by`, which adds up).
pub(crate) fn parse_args(args: &[OsString]) -> Result<Invocation, UsageError> {
    let mut config: Option<PathBuf> = None;
    let mut sub: Option<String> = None;
    let mut flags: Vec<(String, Option<OsString>)> = Vec::new();
    let mut options_done = false;
    let mut it = args.iter();
    // The command for the exit code of an error: the one seen, else the
    // first later word that is not an option.
    let fail = |sub: &Option<String>, message: String| UsageError {
        command: sub.clone().or_else(|| {
            args.iter()
                .map(|a| a.to_string_lossy())
                .find(|a| !a.starts_with('-'))
                .map(|a| a.into_owned())
        }),
        message,
    };
    while let Some(arg) = it.next() {
        let bytes = arg.as_bytes();
        let is_option = !options_done && bytes.len() > 1 && bytes[0] == b'-';
        if is_option && bytes == b"--" {
            options_done = true;
        } else if is_option && matches!(bytes, b"-h" | b"--help" | b"-V" | b"--version") {
            let command = match (bytes, sub.as_deref()) {
                (b"-V" | b"--version", _) => Command::Help(VERSION),
                (_, Some("top")) => Command::Help(top::HELP),
                (_, Some("doctor")) => Command::Help(doctor::HELP),
                _ => Command::Help(HELP),
            };
            return Ok(Invocation { config, command });
        } else if is_option {
            let (name, value) = option(bytes, &mut it).map_err(|m| fail(&sub, m))?;
            let repeated = if name == "--config" {
                config.is_some()
            } else {
                name != "--by" && flags.iter().any(|(n, _)| *n == name)
            };
            if repeated {
                return Err(fail(&sub, format!("{name} given more than once")));
            }
            match (name.as_str(), value) {
                ("--config", Some(v)) => config = Some(PathBuf::from(v)),
                (_, value) => flags.push((name, value)),
            }
        } else if sub.is_none() {
            sub = Some(arg.to_string_lossy().into_owned());
        } else {
            return Err(fail(&sub, format!("unexpected argument {arg:?}")));
        }
    }
    let Some(sub) = sub else {
        return Err(fail(&None, format!("no command given ({COMMANDS})")));
    };
    let command = command(&sub, flags).map_err(|m| fail(&Some(sub.clone()), m))?;
    Ok(Invocation { config, command })
}

const COMMANDS: &str = "apply, watch, status, plan, doctor or top";

/// The option `bytes` (`--name` or `--name=value`) with its value: inline,
/// else the next argument for an option in `TAKES_VALUE`.
fn option(
    bytes: &[u8],
    rest: &mut std::slice::Iter<'_, OsString>,
) -> Result<(String, Option<OsString>), String> {
    let (name, inline) = match bytes.iter().position(|b| *b == b'=') {
        Some(i) => (&bytes[..i], Some(OsStr::from_bytes(&bytes[i + 1..]))),
        None => (bytes, None),
    };
    // Option names are ASCII; lossy only matters for the message.
    let name = match String::from_utf8_lossy(name).as_ref() {
        "--top" => "-n".to_string(),
        n => n.to_string(),
    };
    let value = match (TAKES_VALUE.split(' ').any(|o| o == name), inline) {
        (true, Some(v)) => Some(v.to_os_string()),
        (true, None) => Some(
            rest.next()
                .cloned()
                .ok_or(format!("{name} needs a value"))?,
        ),
        (false, Some(_)) => return Err(format!("{name} takes no value")),
        (false, None) => None,
    };
    Ok((name, value))
}

/// The flags of one command, each taken once as it is used.
type Flags = Vec<(String, Option<OsString>)>;

/// The value of the flag `name`, removed; `None` if absent.
fn take(f: &mut Flags, name: &str) -> Option<OsString> {
    let i = f.iter().position(|(n, _)| n == name)?;
    Some(f.remove(i).1.unwrap_or_default())
}

/// The command `sub` with its flags; every flag must be used.
fn command(sub: &str, mut f: Flags) -> Result<Command, String> {
    let mut label = sub.to_string();
    let command = match sub {
        "apply" => Command::Apply {
            dry_run: take(&mut f, "--dry-run").is_some(),
        },
        "watch" => Command::Watch {
            interval: dur_in(&mut f, "--interval", config::INTERVAL_RANGE, None)?,
        },
        "status" => {
            let all_netns = take(&mut f, "--all-netns").is_some();
            let json = take(&mut f, "--json").is_some();
            let window = if all_netns {
                label.push_str(" --all-netns");
                Duration::ZERO
            } else {
                let range = (Duration::ZERO, Duration::from_secs(60));
                let window = dur_in(&mut f, "--window", range, Some("at most 60s"))?;
                window.unwrap_or(Duration::from_secs(1))
            };
            Command::Status {
                json,
                window,
                all_netns,
            }
        }
        "plan" => plan_command(&mut f)?,
        "doctor" => Command::Doctor {
            json: take(&mut f, "--json").is_some(),
        },
        "top" => Command::Top(top_command(&mut f)?),
        other => return Err(format!("unknown command {other:?} ({COMMANDS})")),
    };
    if let Some((name, _)) = f.first() {
        return Err(format!("unknown argument {name} for {label}"));
    }
    Ok(command)
}

// Values other than paths are numbers, durations and names: UTF-8 or wrong.
fn text(v: OsString, name: &str) -> Result<String, String> {
    v.into_string()
        .map_err(|v| format!("{name}: expected a number or duration, got {v:?}"))
}

/// The flag `name` as a non-negative number, taken; `None` if absent.
fn num(f: &mut Flags, name: &str) -> Result<Option<f64>, String> {
    let Some(v) = take(f, name) else {
        return Ok(None);
    };
    let v = text(v, name)?;
    match v.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(Some(n)),
        _ => Err(format!("{name}: expected a non-negative number, got {v:?}")),
    }
}

/// The duration flag `name`, taken; `None` if absent. Outside `min..=max`
/// the error says it must be `within`, by default "between min and max".
fn dur_in(
    f: &mut Flags,
    name: &str,
    (min, max): (Duration, Duration),
    within: Option<&str>,
) -> Result<Option<Duration>, String> {
    let Some(v) = take(f, name) else {
        return Ok(None);
    };
    let d = parse_duration(&text(v, name)?).map_err(|e| format!("{name}: {e}"))?;
    if d < min || d > max {
        let [min, max] = [min, max].map(config::fmt_duration);
        let within = within.map_or(format!("between {min} and {max}"), str::to_string);
        return Err(format!("{name} must be {within}"));
    }
    Ok(Some(d))
}

fn plan_command(f: &mut Flags) -> Result<Command, String> {
    let rate = num(f, "--rate")?.ok_or("plan needs --rate N (new UDP flows per second)")?;
    let timeout = num(f, "--timeout")?;
    if timeout.is_some_and(|t| !(1.0..=86_400.0).contains(&t)) {
        return Err("--timeout must be between 1 and 86400 seconds".into());
    }
    let headroom = num(f, "--headroom")?;
    if headroom.is_some_and(|h| !(1.0..=100.0).contains(&h)) {
        return Err("--headroom must be between 1 and 100".into());
    }
    Ok(Command::Plan {
        rate,
        timeout: timeout.map(|t| t as u64),
        headroom: headroom.unwrap_or(2.0),
        json: take(f, "--json").is_some(),
    })
}

/// A length between 0 and `max` bits.
fn prefix(v: &str, family: &str, max: u8) -> Result<u8, String> {
    match v.trim().parse::<u8>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!("--prefix: bad {family} length {v:?} (0 to {max})")),
    }
}

fn top_command(f: &mut Flags) -> Result<top::Options, String> {
    let mut o = top::Options {
        json: take(f, "--json").is_some(),
        ..top::Options::default()
    };
    while let Some(v) = take(f, "--by") {
        for k in v.to_string_lossy().split(',') {
            let d = triage::Dim::parse(k.trim()).ok_or_else(|| {
                format!("--by: unknown key {k:?} (dport, state, source, nat, zone, mark)")
            })?;
            if !o.by.contains(&d) {
                o.by.push(d);
            }
        }
    }
    if let Some(v) = take(f, "-n") {
        let v = v.to_string_lossy();
        o.n = match v.parse::<usize>() {
            Ok(n) if (1..=GROUP_CAP).contains(&n) => n,
            _ => return Err(format!("-n: expected 1 to {GROUP_CAP}, got {v:?}")),
        };
    }
    if let Some(v) = take(f, "--netns") {
        if v.is_empty() {
            return Err("--netns needs a path".into());
        }
        o.netns = Some(PathBuf::from(v));
    }
    let range = (Duration::from_millis(10), Duration::from_secs(600));
    if let Some(d) = dur_in(f, "--timeout", range, None)? {
        o.timeout = d;
    }
    if let Some(v) = take(f, "--prefix") {
        let v = v.to_string_lossy();
        let mut lengths = v.splitn(2, ',');
        o.prefix4 = prefix(lengths.next().unwrap_or_default(), "IPv4", 32)?;
        if let Some(v6) = lengths.next() {
            o.prefix6 = prefix(v6, "IPv6", 128)?;
        }
    }
    Ok(o)
}

/// Run the command line; returns the exit code.
pub fn run(args: &[OsString]) -> i32 {
    let inv = match parse_args(args) {
        Ok(i) => i,
        Err(e) => {
            output::err(&e.text());
            return e.exit_code();
        }
    };
    let config = inv.config.as_deref();
    let host = || Host::from_env();
    match inv.command {
        Command::Help(text) => output::out_or(text, exit::OK, exit::FAILURE),
        Command::Apply { dry_run } => {
            cmd::apply::run(&host(), config, dry_run, &mut *default_sink())
        }
        Command::Watch { interval } => cmd::watch::run(&host(), config, interval),
        Command::Status {
            json,
            window,
            all_netns,
        } => cmd::status::run(&host(), config, json, window, all_netns),
        Command::Plan {
            rate,
            timeout,
            headroom,
            json,
        } => cmd::plan::run(&host(), config, rate, timeout, headroom, json),
        Command::Doctor { json } => doctor::run(&host(), config, json),
        Command::Top(o) => top::run(&host(), config, &o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Invocation, UsageError> {
        parse_args(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn parses() {
        assert_eq!(
            p(&["apply", "--dry-run"]).unwrap().command,
            Command::Apply { dry_run: true }
        );
        let i = p(&["--config", "/x.toml", "watch", "--interval=0.1"]).unwrap();
        assert_eq!(i.config, Some(PathBuf::from("/x.toml")));
        assert_eq!(
            i.command,
            Command::Watch {
                interval: Some(Duration::from_millis(100))
            }
        );
        assert_eq!(
            p(&["plan", "--rate", "750"]).unwrap().command,
            Command::Plan {
                rate: 750.0,
                timeout: None,
                headroom: 2.0,
                json: false
            }
        );
        assert_eq!(
            p(&["status", "--json"]).unwrap().command,
            Command::Status {
                json: true,
                window: Duration::from_secs(1),
                all_netns: false
            }
        );
        // --config after the word is the same global option.
        let i = p(&["status", "--all-netns", "--config=/c.toml"]).unwrap();
        assert_eq!(i.config, Some(PathBuf::from("/c.toml")));
        assert!(matches!(
            i.command,
            Command::Status {
                all_netns: true,
                json: false,
                ..
            }
        ));
        assert_eq!(
            p(&["doctor", "--json"]).unwrap().command,
            Command::Doctor { json: true }
        );
        assert_eq!(
            p(&["top"]).unwrap().command,
            Command::Top(top::Options::default())
        );
        for (args, text) in [
            (&["--help"][..], HELP),
            (&["--help", "top"], HELP),
            (&["status", "--all-netns", "--help"], HELP),
            (&["top", "-h"], top::HELP),
            (&["--config", "/x", "doctor", "--help"], doctor::HELP),
        ] {
            assert_eq!(p(args).unwrap().command, Command::Help(text), "{args:?}");
        }
    }

    #[test]
    fn parses_top_options() {
        let Command::Top(o) = p(&[
            "top",
            "--by",
            "dport,state",
            "--by=nat",
            "-n",
            "3",
            "--json",
            "--netns",
            "/run/netns/x",
            "--timeout",
            "2s",
            "--prefix",
            "16,48",
        ])
        .unwrap()
        .command
        else {
            panic!("not top");
        };
        use crate::triage::Dim;
        assert_eq!(o.by, vec![Dim::Dport, Dim::State, Dim::Nat]);
        assert_eq!((o.n, o.json, o.prefix4, o.prefix6), (3, true, 16, 48));
        assert_eq!(o.netns, Some(PathBuf::from("/run/netns/x")));
        assert_eq!(o.timeout, Duration::from_secs(2));
        let Command::Top(o) = p(&["top", "--top=7"]).unwrap().command else {
            panic!("not top");
        };
        assert_eq!(o.n, 7);
        for bad in [
            &["top", "--by", "colour"][..],
            &["top", "-n", "0"],
            &["top", "-n"],
            &["top", "--prefix", "33"],
            &["top", "--prefix", "24,129"],
            &["top", "--timeout", "1h"],
            &["top", "--netns", ""],
            &["top", "extra"],
            &["top", "--window", "1s"],
        ] {
            let e = p(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
            assert!(e.text().contains("top --help"), "{bad:?}: {}", e.text());
        }
    }

    #[test]
    fn rejects() {
        for bad in [
            &[][..],
            &["frobnicate"],
            &["apply", "--bogus"],
            &["plan"],
            &["plan", "--rate", "-1"],
            &["watch", "--interval", "2h"],
            &["apply", "extra"],
            &["status", "--window"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn non_utf8_config_path_is_kept() {
        use std::os::unix::ffi::OsStringExt;
        let path = OsString::from_vec(b"/etc/caf\xe9.toml".to_vec());
        let args = [
            OsString::from("--config"),
            path.clone(),
            "plan".into(),
            "--rate=1".into(),
        ];
        assert_eq!(
            parse_args(&args).unwrap().config,
            Some(PathBuf::from(&path))
        );
        let mut inline = OsString::from("--config=");
        inline.push(&path);
        let args = [inline, "status".into()];
        assert_eq!(parse_args(&args).unwrap().config, Some(PathBuf::from(path)));
    }

    #[test]
    fn double_dash_ends_options() {
        let i = p(&["--config", "--odd.toml", "--", "status"]).unwrap();
        assert_eq!(i.config, Some(PathBuf::from("--odd.toml")));
        assert!(matches!(i.command, Command::Status { .. }));
        let e = p(&["status", "--", "--json"]).unwrap_err();
        assert!(e.message.contains("unexpected argument"), "{e}");
    }

    #[test]
    fn repeated_flag_is_named() {
        for (args, flag) in [
            (&["status", "--json", "--json"][..], "--json"),
            (&["plan", "--rate", "1", "--rate=2"], "--rate"),
            (&["--config", "/a", "--config=/b", "apply"], "--config"),
        ] {
            let e = p(args).unwrap_err();
            assert_eq!(
                e.message,
                format!("{flag} given more than once"),
                "{args:?}"
            );
        }
    }

    #[test]
    fn status_usage_errors_are_unknown() {
        for bad in [
            &["status", "--bogus"][..],
            &["status", "--window"],
            &["--config", "/x", "status", "extra"],
            &["--frob", "status"],
            // The --all-netns mode: the same codes.
            &["status", "--all-netns", "--bogus"],
            &["status", "--all-netns", "--window", "5s"],
            &["--frob", "status", "--all-netns"],
            &["--config", "/x", "status", "--all-netns", "extra"],
            &["status", "--all-netns", "--config"],
            // doctor is a monitoring check too.
            &["doctor", "--bogus"],
            &["doctor", "--config"],
        ] {
            assert_eq!(p(bad).unwrap_err().exit_code(), 3, "{bad:?}");
        }
        let e = p(&["status", "--all-netns", "--window=1s"]).unwrap_err();
        assert_eq!(
            e.message,
            "unknown argument --window for status --all-netns"
        );
        let e = p(&["doctor", "--bogus"]).unwrap_err();
        assert!(e.message.contains("unknown argument"), "{e}");
        for bad in [
            &["plan"][..],
            &[],
            &["--all-netns"],
            &["apply", "--all-netns"],
        ] {
            assert_eq!(p(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC*") {
            let args: Vec<OsString> = s.split(' ').map(OsString::from).collect();
            let _ = parse_args(&args);
        }
    }
}
