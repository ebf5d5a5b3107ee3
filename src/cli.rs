// SPDX-License-Identifier: MIT OR Apache-2.0
//! Command-line parsing and dispatch; each command module owns its `run`.
//! A small hand-written parser: four subcommands with a handful of flags do
//! not justify a parser crate in a boot-time binary.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{self, parse_duration};
use crate::exit;
use crate::host::Host;
use crate::report::events::default_sink;
use crate::report::output;
use crate::sysroot::SysRoot;

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

/// Parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `apply`.
    Apply {
        /// `--dry-run`.
        dry_run: bool,
    },
    /// `watch`.
    Watch {
        /// `--interval`.
        interval: Option<Duration>,
    },
    /// `status`.
    Status {
        /// `--json`.
        json: bool,
        /// `--window`.
        window: Duration,
    },
    /// `plan`.
    Plan {
        /// `--rate`.
        rate: f64,
        /// `--timeout`.
        timeout: Option<u64>,
        /// `--headroom`.
        headroom: f64,
        /// `--json`.
        json: bool,
    },
    /// `--help`.
    Help,
    /// `--version`.
    Version,
}

/// Command plus global options.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// The command.
    pub command: Command,
}

/// A command-line error. `status` reports it as UNKNOWN (3), as monitoring
/// plugins do, since 2 would read as CRITICAL; every other command uses 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UsageError {
    /// The command, when one was given.
    pub command: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl UsageError {
    /// The exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self.command.as_deref() {
            Some("status") => crate::cmd::status::Verdict::Unknown.code(),
            _ => exit::USAGE,
        }
    }
}

const TAKES_VALUE: &[&str] = &[
    "--config",
    "--interval",
    "--window",
    "--rate",
    "--timeout",
    "--headroom",
];

/// Parse arguments (without argv[0]). Paths stay `OsString` from argv to
/// open(), so a non-UTF-8 file name reaches the file system unchanged.
/// `--` ends the options. A flag given twice is an error that names it.
pub fn parse_args(args: &[OsString]) -> Result<Invocation, UsageError> {
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
        if !options_done && bytes == b"--" {
            options_done = true;
            continue;
        }
        if !options_done && (bytes == b"-h" || bytes == b"--help") {
            return Ok(Invocation {
                config,
                command: Command::Help,
            });
        }
        if !options_done && (bytes == b"-V" || bytes == b"--version") {
            return Ok(Invocation {
                config,
                command: Command::Version,
            });
        }
        if !options_done && bytes.starts_with(b"--") {
            let (name, value) = option(bytes, &mut it).map_err(|m| fail(&sub, m))?;
            let repeated = if name == "--config" {
                config.is_some()
            } else {
                flags.iter().any(|(n, _)| *n == name)
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
        return Err(fail(
            &None,
            "no command given (apply, watch, status or plan)".into(),
        ));
    };
    let command = command(&sub, flags).map_err(|m| fail(&Some(sub.clone()), m))?;
    Ok(Invocation { config, command })
}

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
    let name = String::from_utf8_lossy(name).into_owned();
    let value = if TAKES_VALUE.contains(&name.as_str()) {
        Some(match inline {
            Some(v) => v.to_os_string(),
            None => rest
                .next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))?,
        })
    } else if inline.is_some() {
        return Err(format!("{name} takes no value"));
    } else {
        None
    };
    Ok((name, value))
}

/// The flags of one command, each taken once as it is used.
struct Flags(Vec<(String, Option<OsString>)>);

impl Flags {
    /// The flag `name` with its value, removed; `None` if absent.
    fn take(&mut self, name: &str) -> Option<Option<OsString>> {
        let i = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(i).1)
    }
}

/// The command `sub` with its flags; every flag must be used.
fn command(sub: &str, flags: Vec<(String, Option<OsString>)>) -> Result<Command, String> {
    let mut flags = Flags(flags);
    let command = match sub {
        "apply" => Command::Apply {
            dry_run: flags.take("--dry-run").is_some(),
        },
        "watch" => Command::Watch {
            interval: flags.take("--interval").map(interval).transpose()?,
        },
        "status" => status_command(&mut flags)?,
        "plan" => plan_command(&mut flags)?,
        other => {
            return Err(format!(
                "unknown command {other:?} (apply, watch, status or plan)"
            ))
        }
    };
    if let Some((name, _)) = flags.0.first() {
        return Err(format!("unknown option {name} for {sub}"));
    }
    Ok(command)
}

// Values other than paths are numbers and durations: UTF-8 or wrong.
fn text(v: Option<OsString>, name: &str) -> Result<String, String> {
    let v = v.unwrap_or_default();
    v.into_string()
        .map_err(|v| format!("{name}: expected a number or duration, got {v:?}"))
}

fn dur(v: Option<OsString>, name: &str) -> Result<Duration, String> {
    parse_duration(&text(v, name)?).map_err(|e| format!("{name}: {e}"))
}

fn num(v: Option<OsString>, name: &str) -> Result<f64, String> {
    let v = text(v, name)?;
    match v.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n),
        _ => Err(format!("{name}: expected a non-negative number, got {v:?}")),
    }
}

/// `watch --interval`, within `config::INTERVAL_RANGE`.
fn interval(v: Option<OsString>) -> Result<Duration, String> {
    let d = dur(v, "--interval")?;
    let (min, max) = config::INTERVAL_RANGE;
    if d < min || d > max {
        return Err(format!(
            "--interval must be between {} and {}",
            config::fmt_duration(min),
            config::fmt_duration(max)
        ));
    }
    Ok(d)
}

fn status_command(flags: &mut Flags) -> Result<Command, String> {
    let json = flags.take("--json").is_some();
    let window = match flags.take("--window") {
        Some(v) => {
            let d = dur(v, "--window")?;
            if d > Duration::from_secs(60) {
                return Err("--window must be at most 60s".into());
            }
            d
        }
        None => Duration::from_secs(1),
    };
    Ok(Command::Status { json, window })
}

fn plan_command(flags: &mut Flags) -> Result<Command, String> {
    let rate = num(
        flags
            .take("--rate")
            .ok_or("plan needs --rate N (new UDP flows per second)")?,
        "--rate",
    )?;
    let timeout = match flags.take("--timeout") {
        Some(v) => {
            let t = num(v, "--timeout")?;
            if !(1.0..=86_400.0).contains(&t) {
                return Err("--timeout must be between 1 and 86400 seconds".into());
            }
            Some(t as u64)
        }
        None => None,
    };
    let headroom = match flags.take("--headroom") {
        Some(v) => {
            let h = num(v, "--headroom")?;
            if !(1.0..=100.0).contains(&h) {
                return Err("--headroom must be between 1 and 100".into());
            }
            h
        }
        None => 2.0,
    };
    Ok(Command::Plan {
        rate,
        timeout,
        headroom,
        json: flags.take("--json").is_some(),
    })
}

/// The global options before the command word (`--config PATH` or
/// `--config=PATH`, at most once), the word, and the arguments after it.
/// `None` when the part before the word holds anything else, or no word
/// follows: [`parse_args`] then reports it. doctor and top parse their own
/// flags after the word; this is where they get the global `--config`, so
/// it means the same for every command.
pub fn split_global(args: &[OsString]) -> Option<(Option<PathBuf>, &OsStr, &[OsString])> {
    let mut config: Option<PathBuf> = None;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        let bytes = a.as_bytes();
        let value = if bytes == b"--config" {
            i += 1;
            args.get(i)?.clone()
        } else if let Some(v) = bytes.strip_prefix(b"--config=") {
            OsStr::from_bytes(v).to_os_string()
        } else if bytes.starts_with(b"-") {
            return None;
        } else {
            return Some((config, a.as_os_str(), &args[i + 1..]));
        };
        if config.replace(PathBuf::from(value)).is_some() {
            return None;
        }
        i += 1;
    }
    None
}

/// Run the command line; returns the exit code.
pub fn run(args: &[OsString]) -> i32 {
    // doctor and top parse their own options (src/cmd/doctor.rs, src/cmd/top.rs).
    if let Some((config, word, rest)) = split_global(args) {
        match word.as_bytes() {
            b"doctor" => return crate::cmd::doctor::main(&SysRoot::from_env(), config, rest),
            b"top" => return crate::cmd::top::run(&SysRoot::from_env(), config.as_deref(), rest),
            _ => {}
        }
    }
    if let Some(code) = crate::cmd::status::allns::dispatch(args) {
        return code;
    }
    let inv = match parse_args(args) {
        Ok(i) => i,
        Err(e) => {
            output::err(&format!(
                "conntrack-guard: {e}\nTry `conntrack-guard --help`."
            ));
            return e.exit_code();
        }
    };
    let host = Host::from_env();
    let root = &host.root;
    match inv.command {
        Command::Help => output::out_or(HELP, exit::OK, exit::FAILURE),
        Command::Version => output::out_or(
            &format!("conntrack-guard {}\n", env!("CARGO_PKG_VERSION")),
            exit::OK,
            exit::FAILURE,
        ),
        Command::Apply { dry_run } => {
            crate::cmd::apply::run(&host, inv.config.as_deref(), dry_run, &mut *default_sink())
        }
        Command::Plan {
            rate,
            timeout,
            headroom,
            json,
        } => crate::cmd::plan::run(root, inv.config.as_deref(), rate, timeout, headroom, json),
        Command::Watch { interval } => {
            crate::cmd::watch::run(&host, inv.config.as_deref(), interval)
        }
        Command::Status { json, window } => {
            crate::cmd::status::run(&host, inv.config.as_deref(), json, window)
        }
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
                window: Duration::from_secs(1)
            }
        );
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
    fn splits_the_global_part() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let a = os(&["--config", "/c.toml", "doctor", "--json"]);
        let (c, w, rest) = split_global(&a).unwrap();
        assert_eq!(
            (c, w, rest),
            (
                Some(PathBuf::from("/c.toml")),
                OsStr::new("doctor"),
                &a[3..]
            )
        );
        let a = os(&["--config=/x", "top"]);
        let (c, w, rest) = split_global(&a).unwrap();
        assert_eq!(
            (c, w, rest.len()),
            (Some(PathBuf::from("/x")), OsStr::new("top"), 0)
        );
        let a = os(&["--config=top", "plan"]);
        assert_eq!(split_global(&a).unwrap().1, OsStr::new("plan"));
        assert_eq!(split_global(&os(&["top"])).unwrap().0, None);
        for bad in [
            &["--config"][..],
            &["--config", "/x"],
            &["--config", "/a", "--config=/b", "top"],
            &["--json", "top"],
            &[],
        ] {
            assert!(split_global(&os(bad)).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn status_usage_errors_are_unknown() {
        for bad in [
            &["status", "--bogus"][..],
            &["status", "--window"],
            &["--config", "/x", "status", "extra"],
            &["--frob", "status"],
        ] {
            assert_eq!(p(bad).unwrap_err().exit_code(), 3, "{bad:?}");
        }
        assert_eq!(p(&["plan"]).unwrap_err().exit_code(), 2);
        assert_eq!(p(&[]).unwrap_err().exit_code(), 2);
    }
}
