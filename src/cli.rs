// SPDX-License-Identifier: MIT OR Apache-2.0
//! Command-line parsing and dispatch. A small hand-written parser: four
//! subcommands with a handful of flags do not justify a parser crate in a
//! boot-time binary.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{self, parse_duration};
use crate::events::{default_sink, Sink};
use crate::exit;
use crate::module::{KmodLoader, ModuleError, ModuleLoader, NoLoader};
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

OPTIONS:
    --config PATH   Config file (default /etc/conntrack-guard/conntrack-guard.toml;
                    a missing default file means built-in defaults)
    -h, --help      Show this help
    -V, --version   Show the version

ENVIRONMENT:
    CONNTRACK_GUARD_ROOT   Testing hook: a directory that stands for `/` for every
                           /proc, /sys and /etc path. Under it no module is loaded.

EXIT STATUS (apply, watch, plan):
    0   success: every key verified
    1   some key failed, or a runtime failure
    2   usage error
    69  conntrack unavailable (module absent and cannot be loaded)
    77  permission denied (not root, no CAP_NET_ADMIN/CAP_SYS_MODULE,
        or read-only /proc/sys inside a container)
    78  invalid configuration (nothing was written)

EXIT STATUS (status):
    0 OK, 1 WARNING (warning level or drift), 2 CRITICAL (critical level or
    drops rising now), 3 UNKNOWN (cannot read)
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

/// Parse arguments (without argv[0]).
pub fn parse_args(args: &[OsString]) -> Result<Invocation, String> {
    let mut config = None;
    let mut sub: Option<String> = None;
    let mut flags: Vec<(String, Option<String>)> = Vec::new();
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    let takes_value = [
        "--config",
        "--interval",
        "--window",
        "--rate",
        "--timeout",
        "--headroom",
    ];
    while let Some(a) = it.next() {
        if a == "-h" || a == "--help" {
            return Ok(Invocation {
                config,
                command: Command::Help,
            });
        }
        if a == "-V" || a == "--version" {
            return Ok(Invocation {
                config,
                command: Command::Version,
            });
        }
        if let Some(stripped) = a.strip_prefix("--") {
            let (name, inline) = match stripped.split_once('=') {
                Some((n, v)) => (format!("--{n}"), Some(v.to_string())),
                None => (a.clone(), None),
            };
            let value = if takes_value.contains(&name.as_str()) {
                Some(match inline {
                    Some(v) => v,
                    None => it.next().ok_or_else(|| format!("{name} needs a value"))?,
                })
            } else if inline.is_some() {
                return Err(format!("{name} takes no value"));
            } else {
                None
            };
            if name == "--config" {
                config = value.map(PathBuf::from);
            } else {
                flags.push((name, value));
            }
        } else if sub.is_none() {
            sub = Some(a);
        } else {
            return Err(format!("unexpected argument {a:?}"));
        }
    }
    let sub = sub.ok_or("no command given (apply, watch, status or plan)")?;
    let mut take = |name: &str| -> Option<Option<String>> {
        let i = flags.iter().position(|(n, _)| n == name)?;
        Some(flags.remove(i).1)
    };
    let dur = |v: Option<String>, name: &str| -> Result<Duration, String> {
        parse_duration(v.as_deref().unwrap_or("")).map_err(|e| format!("{name}: {e}"))
    };
    let command = match sub.as_str() {
        "apply" => Command::Apply {
            dry_run: take("--dry-run").is_some(),
        },
        "watch" => Command::Watch {
            interval: match take("--interval") {
                Some(v) => {
                    let d = dur(v, "--interval")?;
                    if d < Duration::from_millis(1) || d > Duration::from_secs(3600) {
                        return Err("--interval must be between 1ms and 1h".into());
                    }
                    Some(d)
                }
                None => None,
            },
        },
        "status" => Command::Status {
            json: take("--json").is_some(),
            window: match take("--window") {
                Some(v) => {
                    let d = dur(v, "--window")?;
                    if d > Duration::from_secs(60) {
                        return Err("--window must be at most 60s".into());
                    }
                    d
                }
                None => Duration::from_secs(1),
            },
        },
        "plan" => {
            let num = |v: Option<String>, name: &str| -> Result<f64, String> {
                let v = v.unwrap_or_default();
                match v.parse::<f64>() {
                    Ok(n) if n.is_finite() && n >= 0.0 => Ok(n),
                    _ => Err(format!("{name}: expected a non-negative number, got {v:?}")),
                }
            };
            let rate = num(
                take("--rate").ok_or("plan needs --rate N (new UDP flows per second)")?,
                "--rate",
            )?;
            let timeout = match take("--timeout") {
                Some(v) => {
                    let t = num(v, "--timeout")?;
                    if !(1.0..=86_400.0).contains(&t) {
                        return Err("--timeout must be between 1 and 86400 seconds".into());
                    }
                    Some(t as u64)
                }
                None => None,
            };
            let headroom = match take("--headroom") {
                Some(v) => {
                    let h = num(v, "--headroom")?;
                    if !(1.0..=100.0).contains(&h) {
                        return Err("--headroom must be between 1 and 100".into());
                    }
                    h
                }
                None => 2.0,
            };
            Command::Plan {
                rate,
                timeout,
                headroom,
                json: take("--json").is_some(),
            }
        }
        other => {
            return Err(format!(
                "unknown command {other:?} (apply, watch, status or plan)"
            ))
        }
    };
    if let Some((name, _)) = flags.first() {
        return Err(format!("unknown option {name} for {sub}"));
    }
    Ok(Invocation { config, command })
}

/// Run the command line; returns the exit code.
pub fn run(args: &[OsString]) -> i32 {
    if let Some(code) = crate::allns::dispatch(args) {
        return code;
    }
    let inv = match parse_args(args) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("conntrack-guard: {e}\nTry `conntrack-guard --help`.");
            return exit::USAGE;
        }
    };
    let root = SysRoot::from_env();
    match inv.command {
        Command::Help => {
            print!("{HELP}");
            exit::OK
        }
        Command::Version => {
            println!("conntrack-guard {}", env!("CARGO_PKG_VERSION"));
            exit::OK
        }
        Command::Apply { dry_run } => {
            let loader: Box<dyn ModuleLoader> = if root.is_host() {
                Box::new(KmodLoader)
            } else {
                Box::new(NoLoader)
            };
            run_apply(
                &root,
                inv.config.as_deref(),
                loader.as_ref(),
                dry_run,
                &mut *default_sink(),
            )
        }
        Command::Plan {
            rate,
            timeout,
            headroom,
            json,
        } => run_plan(&root, inv.config.as_deref(), rate, timeout, headroom, json),
        Command::Watch { interval } => crate::watch::run(&root, inv.config.as_deref(), interval),
        Command::Status { json, window } => {
            crate::status::run(&root, inv.config.as_deref(), json, window)
        }
    }
}

/// `apply`, with the loader and sink chosen by the caller.
pub fn run_apply(
    root: &SysRoot,
    config_path: Option<&std::path::Path>,
    loader: &dyn ModuleLoader,
    dry_run: bool,
    sink: &mut dyn Sink,
) -> i32 {
    let cfg = match config::load(root, config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("conntrack-guard: invalid configuration: {e}\nNothing was written.");
            return exit::CONFIG;
        }
    };
    let page = crate::hashsize::page_size();
    let report =
        match crate::apply::apply(root, &cfg, loader, dry_run, Duration::from_secs(5), page) {
            Ok(r) => r,
            Err(crate::apply::ApplyError::Config(e)) => {
                eprintln!("conntrack-guard: invalid configuration: {e}\nNothing was written.");
                return exit::CONFIG;
            }
            Err(crate::apply::ApplyError::Module(e)) => {
                eprintln!("conntrack-guard: {e}\nNothing was written.");
                return match e {
                    ModuleError::Unavailable(_) => exit::UNAVAILABLE,
                    ModuleError::Permission(_) => exit::NOPERM,
                };
            }
        };
    for w in &report.warnings {
        eprintln!("conntrack-guard: warning: {w}");
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(report.table().as_bytes());
    // Under systemd, stdout is the journal too and the summary goes there as
    // a structured entry below; print it only where people read stdout.
    if dry_run || !systemd_journal_logger::connected_to_journal() {
        let _ = writeln!(out, "{}", report.summary());
    }
    drop(out);
    if !dry_run {
        sink.emit(&report.event());
    }
    report.exit_code()
}

fn run_plan(
    root: &SysRoot,
    config_path: Option<&std::path::Path>,
    rate: f64,
    timeout: Option<u64>,
    headroom: f64,
    json: bool,
) -> i32 {
    let cfg = match config::load(root, config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("conntrack-guard: invalid configuration: {e}");
            return exit::CONFIG;
        }
    };
    let facts = crate::plan::KernelFacts::read(root);
    let p = crate::plan::plan(
        &crate::plan::Request {
            rate,
            timeout,
            headroom,
        },
        &cfg,
        &facts,
    );
    if json {
        println!("{}", serde_json::to_string_pretty(&p).unwrap_or_default());
    } else {
        print!("{}", p.text());
    }
    exit::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Invocation, String> {
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
}
