// SPDX-License-Identifier: MIT OR Apache-2.0
//! `conntrack-guard doctor`: a read-only check of the traps around the
//! conntrack keys. Each check reads through the [`SysRoot`] (and the
//! ruleset through a [`RulesetSource`]) and returns findings; nothing is
//! written. Exit codes are the monitoring-plugin ones: 0 OK, 1 WARNING,
//! 2 CRITICAL, 3 UNKNOWN (a usage error is UNKNOWN too).

use std::path::Path;

use serde::Serialize;

use crate::config::{self, Config, KEY_BUCKETS, KEY_MAX};
use crate::host::Host;
use crate::report::output;
use crate::sysroot::SysRoot;
use crate::system::ruleset::{self, CommandRuleset, FileRuleset, RulesetSource};
use crate::system::writers::{self, KubeProxyConntrack, WriterKind, UNIT_DIRS};

/// How bad a finding is: the monitoring-plugin verdict of `status`,
/// written in lower case in doctor's JSON.
pub use crate::assess::verdict::Verdict as Severity;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Which check: `sysctl.d`, `modules-load.d`, `modprobe.d`, `units`,
    /// `writers`, `ruleset`.
    pub check: &'static str,
    /// How bad.
    #[serde(serialize_with = "crate::assess::verdict::lowercase")]
    pub severity: Severity,
    /// Where (`file:line`, a unit, a rule), when it applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// What was found.
    pub what: String,
    /// The one-line remedy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
}

impl Finding {
    fn new(check: &'static str, severity: Severity, what: impl Into<String>) -> Self {
        Finding {
            check,
            severity,
            at: None,
            what: what.into(),
            remedy: None,
        }
    }
    fn at(mut self, at: impl Into<String>) -> Self {
        self.at = Some(at.into());
        self
    }
    fn fix(mut self, remedy: impl Into<String>) -> Self {
        self.remedy = Some(remedy.into());
        self
    }

    /// One line of text.
    pub fn line(&self) -> String {
        let mut s = format!("{} {}: ", self.severity.name(), self.check);
        if let Some(at) = &self.at {
            s.push_str(at);
            s.push_str(": ");
        }
        s.push_str(&self.what);
        if let Some(r) = &self.remedy {
            s.push_str(" -- fix: ");
            s.push_str(r);
        }
        s
    }
}

/// All findings of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Overall state.
    #[serde(serialize_with = "crate::assess::verdict::lowercase")]
    pub verdict: Severity,
    /// Findings, in check order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Build from findings.
    pub fn new(findings: Vec<Finding>) -> Self {
        let verdict = Severity::worst_of(findings.iter().map(|f| f.severity));
        Report { verdict, findings }
    }

    /// A summary line, then one line per finding.
    pub fn text(&self) -> String {
        let count = |s: Severity| self.findings.iter().filter(|f| f.severity == s).count();
        let mut out = format!(
            "DOCTOR {}: {} critical, {} warning, {} unknown, {} ok\n",
            self.verdict.name(),
            count(Severity::Critical),
            count(Severity::Warning),
            count(Severity::Unknown),
            count(Severity::Ok)
        );
        for f in &self.findings {
            out.push_str(&f.line());
            out.push('\n');
        }
        out
    }
}

/// Run every check.
pub fn check(root: &SysRoot, cfg: &Config, rules: &dyn RulesetSource) -> Report {
    let mut f = Vec::new();
    f.extend(check_sysctl_d(root, cfg));
    f.extend(check_modules_load(root));
    f.extend(check_modprobe(root));
    f.extend(check_units(root));
    f.extend(check_writers(root, cfg));
    f.extend(check_ruleset(rules));
    f.extend(check_grow(root, cfg));
    Report::new(f)
}

// ---------------------------------------------------------------------

/// sysctl.d lines that set our keys to other values, and keys set in
/// several places.
pub fn check_sysctl_d(root: &SysRoot, cfg: &Config) -> Vec<Finding> {
    const C: &str = "sysctl.d";
    let mut out = Vec::new();
    let mut any = false;
    for t in cfg.targets() {
        let (settings, errors) = writers::sysctl_settings(root, &t.key);
        for e in errors {
            out.push(Finding::new(
                C,
                Severity::Unknown,
                format!("cannot read: {e}"),
            ));
        }
        any |= !settings.is_empty();
        for s in settings.iter().filter(|s| s.value != t.value) {
            let wins = if s.wins {
                " and is applied last"
            } else {
                " (overridden by a later line)"
            };
            out.push(
                Finding::new(
                    C,
                    Severity::Warning,
                    format!(
                        "sets {} = {}{wins}; configured {}; a `sysctl --system` or a boot \
                         without conntrack-guard-apply puts it back",
                        s.written_key, s.value, t.value
                    ),
                )
                .at(s.location())
                .fix(format!("remove the line, or set {}", t.value)),
            );
        }
        let files: std::collections::BTreeSet<&str> =
            settings.iter().map(|s| s.file.as_str()).collect();
        if files.len() > 1 {
            let winner = settings.iter().find(|s| s.wins);
            let differ = settings.iter().any(|s| s.value != settings[0].value);
            let places: Vec<String> = settings.iter().map(|s| s.location()).collect();
            out.push(
                Finding::new(
                    C,
                    if differ {
                        Severity::Warning
                    } else {
                        Severity::Ok
                    },
                    format!(
                        "{} is set in {} files ({}); {} wins",
                        t.key,
                        files.len(),
                        places.join(", "),
                        winner.map_or("none".into(), |w| format!("{} ({})", w.location(), w.value))
                    ),
                )
                .fix("keep one file per key"),
            );
        }
    }
    if out.is_empty() {
        out.push(Finding::new(
            C,
            Severity::Ok,
            if any {
                "sysctl.d agrees with the configuration"
            } else {
                "no sysctl.d file sets the configured keys"
            },
        ));
    }
    out
}

/// Where systemd-modules-load reads module lists.
pub const MODULES_LOAD_DIRS: &[&str] = &[
    "etc/modules-load.d",
    "run/modules-load.d",
    "usr/local/lib/modules-load.d",
    "usr/lib/modules-load.d",
    "lib/modules-load.d",
];

/// Module names gone from the kernel, with the version that removed them
/// and what replaced them.
const REMOVED_MODULES: &[(&str, (u32, u32), &str)] = &[
    (
        "nf_conntrack_ipv4",
        (4, 19),
        "nf_conntrack covers IPv4 since 4.19",
    ),
    (
        "nf_conntrack_ipv6",
        (4, 19),
        "nf_conntrack covers IPv6 since 4.19",
    ),
];

/// The module names of a modules-load.d file, with line numbers.
pub fn parse_modules_load(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
                return None;
            }
            let name = l.split_whitespace().next()?;
            Some((i + 1, name.replace('-', "_")))
        })
        .collect()
}

/// Module names listed in `modules.dep` or `modules.builtin` text
/// (`kernel/net/netfilter/nf_conntrack.ko.zst: deps`).
pub fn parse_module_index(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let path = l.split(':').next()?.trim();
            let base = path.rsplit('/').next()?;
            let name = base.split(".ko").next()?;
            (!name.is_empty()).then(|| name.replace('-', "_"))
        })
        .collect()
}

/// modules-load.d entries naming a module this kernel does not have.
pub fn check_modules_load(root: &SysRoot) -> Vec<Finding> {
    let mut out = Vec::new();
    let release = root
        .read_opt("proc/sys/kernel/osrelease")
        .ok()
        .flatten()
        .map(|s| s.trim().to_string());
    let kernel = KernelModules {
        version: release
            .as_deref()
            .and_then(crate::kernel::facts::parse_version),
        known: release.as_deref().and_then(|r| known_modules(root, r)),
        release: release.as_deref().unwrap_or("(unknown)"),
    };
    for f in modules_load_files(root).iter().filter(|f| !f.masked) {
        let text = match writers::read_conf(root, &f.path) {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                out.push(Finding::new(
                    MODULES_LOAD,
                    Severity::Unknown,
                    format!("cannot read: {e}"),
                ));
                continue;
            }
        };
        for (line, name) in parse_modules_load(&text) {
            out.extend(kernel.missing(&name, format!("{}:{line}", f.path)));
        }
    }
    if out.is_empty() {
        out.push(Finding::new(
            MODULES_LOAD,
            Severity::Ok,
            "every module named in modules-load.d exists for this kernel",
        ));
    }
    out
}

const MODULES_LOAD: &str = "modules-load.d";

/// What the running kernel has, for judging a modules-load.d entry.
struct KernelModules<'a> {
    release: &'a str,
    version: Option<(u32, u32)>,
    /// Every module of this kernel; `None` when its index is not there.
    known: Option<Vec<String>>,
}

impl KernelModules<'_> {
    /// A warning when `name` (listed at `at`) is not in this kernel.
    /// Without the module index, only the names known to be removed count.
    fn missing(&self, name: &str, at: String) -> Option<Finding> {
        let removed = REMOVED_MODULES
            .iter()
            .find(|(n, since, _)| *n == name && self.version.map_or(true, |v| v >= *since));
        let missing = match &self.known {
            Some(k) => !k.iter().any(|m| m == name),
            None => removed.is_some(),
        };
        if !missing {
            return None;
        }
        let why = removed.map_or(String::new(), |(_, _, w)| format!(" ({w})"));
        Some(
            Finding::new(
                MODULES_LOAD,
                Severity::Warning,
                format!(
                    "names module {name}, which kernel {} does not have{why}: \
                     systemd-modules-load.service fails at every boot",
                    self.release
                ),
            )
            .at(at)
            .fix(if removed.is_some() {
                "remove the line; load nf_conntrack instead".to_string()
            } else {
                format!("remove the line, or install {name} for this kernel")
            }),
        )
    }
}

/// The modules of kernel `release` from modules.dep and modules.builtin;
/// `None` when neither is there.
fn known_modules(root: &SysRoot, release: &str) -> Option<Vec<String>> {
    let mut names = Vec::new();
    let mut found = false;
    for f in ["modules.dep", "modules.builtin"] {
        if let Ok(Some(t)) = root.read_opt(&format!("lib/modules/{release}/{f}")) {
            found = true;
            names.extend(parse_module_index(&t));
        }
    }
    found.then_some(names)
}

/// The modules-load.d files, and /etc/modules where no link reads it.
fn modules_load_files(root: &SysRoot) -> Vec<writers::ConfFile> {
    let mut files = writers::conf_files(root, MODULES_LOAD_DIRS, ".conf");
    // Debian's /etc/modules is read through a modules-load.d link to it.
    if !files
        .iter()
        .any(|f| std::fs::read_link(root.path(&f.path)).is_ok_and(|t| t.ends_with("modules")))
        && writers::exists_nofollow(root, "etc/modules")
    {
        files.push(writers::ConfFile {
            name: "modules".into(),
            path: "/etc/modules".into(),
            masked: false,
        });
    }
    files
}

/// The nf_conntrack parameters of 6.x kernels, for when sysfs does not
/// list them (module not loaded).
const FALLBACK_PARAMS: &[&str] = &["acct", "expect_hashsize", "hashsize", "tstamp"];
const PARAM_DIR: &str = "sys/module/nf_conntrack/parameters";

/// kstrtobool: what a bool module parameter accepts.
fn is_bool(v: &str) -> bool {
    matches!(
        v.as_bytes().first(),
        Some(b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'1' | b'0')
    ) || matches!(v, "on" | "off" | "ON" | "OFF" | "On" | "Off")
}

/// One `name[=value]` of an `options nf_conntrack` line, judged against
/// the known parameters. `None` when fine.
pub fn judge_param(arg: &str, known: &[String]) -> Option<(Severity, String)> {
    let (name, value) = match arg.split_once('=') {
        Some((n, v)) => (n.replace('-', "_"), Some(v)),
        None => (arg.replace('-', "_"), None),
    };
    if !known.contains(&name) {
        return Some((
            Severity::Warning,
            format!("unknown parameter {name}: the kernel ignores it"),
        ));
    }
    let numeric = matches!(name.as_str(), "hashsize" | "expect_hashsize");
    let ok = match (numeric, value) {
        (true, Some(v)) => v.parse::<u32>().is_ok(),
        (true, None) => false,
        (false, Some(v)) => is_bool(v),
        (false, None) => true,
    };
    (!ok).then(|| {
        (
            Severity::Critical,
            format!(
                "bad value {arg:?}: the kernel refuses to load nf_conntrack with it \
                 ({} expected)",
                if numeric {
                    "an unsigned number"
                } else {
                    "y or n"
                }
            ),
        )
    })
}

/// modprobe.d lines about nf_conntrack: unknown parameters, bad values,
/// loading disabled, options that a built-in module never sees.
pub fn check_modprobe(root: &SysRoot) -> Vec<Finding> {
    let mut out = Vec::new();
    let (lines, errors) = writers::modprobe_lines(root, "nf_conntrack");
    for e in errors {
        out.push(Finding::new(
            MODPROBE,
            Severity::Unknown,
            format!("cannot read: {e}"),
        ));
    }
    let mut known = writers::list_dir(root, PARAM_DIR);
    if known.is_empty() {
        known = FALLBACK_PARAMS.iter().map(|s| s.to_string()).collect();
    }
    // A loadable module has `initstate`; a built-in one only its
    // parameters. modprobe.d options never reach a built-in module.
    let builtin = root.exists(PARAM_DIR) && !root.exists("sys/module/nf_conntrack/initstate");
    for s in &lines {
        let at = format!("{}:{}", s.file, s.line.line);
        match s.line.command.as_str() {
            "options" => options_findings(&mut out, &s.line.args, &known, builtin, &at),
            "install" if !builtin => out.extend(install_finding(&s.line.args, &at)),
            "blacklist" if !builtin => out.push(
                Finding::new(
                    MODPROBE,
                    Severity::Warning,
                    "nf_conntrack is blacklisted: only an explicit load brings it in",
                )
                .at(&at)
                .fix("remove the line"),
            ),
            _ => {}
        }
    }
    if out.is_empty() {
        out.push(Finding::new(
            MODPROBE,
            Severity::Ok,
            "no modprobe.d problem with nf_conntrack",
        ));
    }
    out
}

const MODPROBE: &str = "modprobe.d";

/// An `options nf_conntrack ARGS` line at `at`: a built-in module never
/// sees it, and each argument is judged against the `known` parameters.
fn options_findings(
    out: &mut Vec<Finding>,
    args: &[String],
    known: &[String],
    builtin: bool,
    at: &str,
) {
    if builtin {
        out.push(
            Finding::new(
                MODPROBE,
                Severity::Warning,
                "options for nf_conntrack, which is built into this kernel: \
                 modprobe.d options never apply to it",
            )
            .at(at)
            .fix("use the buckets key in conntrack-guard.toml, or nf_conntrack.hashsize= on the kernel command line"),
        );
    }
    for a in args {
        if let Some((sev, what)) = judge_param(a, known) {
            out.push(
                Finding::new(MODPROBE, sev, what)
                    .at(at)
                    .fix(format!("remove {a:?} from the line")),
            );
        }
    }
}

/// An `install nf_conntrack CMD` line at `at` whose command loads nothing.
fn install_finding(args: &[String], at: &str) -> Option<Finding> {
    let cmd = args.join(" ");
    let noop = [
        "/bin/true",
        "/bin/false",
        "/usr/bin/true",
        "/usr/bin/false",
        "true",
        "false",
    ];
    noop.contains(&cmd.trim()).then(|| {
        Finding::new(
            MODPROBE,
            Severity::Critical,
            format!("`install nf_conntrack {cmd}` stops the module from loading"),
        )
        .at(at)
        .fix("remove the line")
    })
}

// ---------------------------------------------------------------------

/// The boot unit.
pub const APPLY_UNIT: &str = "conntrack-guard-apply.service";
/// Container runtimes that must start after the apply step.
pub const RUNTIME_UNITS: &[&str] = &[
    "docker.service",
    "containerd.service",
    "podman.service",
    "kubelet.service",
    "k3s.service",
    "k3s-agent.service",
    "crio.service",
];

/// The ordering settings of a unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitDeps {
    /// `Before=` (accumulated; an empty assignment resets).
    pub before: Vec<String>,
    /// `After=`.
    pub after: Vec<String>,
    /// `DefaultDependencies=`, when set.
    pub default_deps: Option<bool>,
}

/// Apply one unit file or drop-in to `deps` ([Unit] section only).
pub fn parse_unit_deps(text: &str, deps: &mut UnitDeps) {
    let mut in_unit = false;
    let mut joined = String::new();
    for raw in text.lines() {
        if let Some(c) = raw.strip_suffix('\\') {
            joined.push_str(c);
            joined.push(' ');
            continue;
        }
        joined.push_str(raw);
        let l = std::mem::take(&mut joined);
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if l.starts_with('[') {
            in_unit = l == "[Unit]";
            continue;
        }
        if !in_unit {
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            continue;
        };
        let list = match k.trim() {
            "Before" => &mut deps.before,
            "After" => &mut deps.after,
            "DefaultDependencies" => {
                let v = v.trim();
                deps.default_deps = match v {
                    "yes" | "true" | "1" | "on" => Some(true),
                    "no" | "false" | "0" | "off" => Some(false),
                    _ => deps.default_deps,
                };
                continue;
            }
            _ => continue,
        };
        if v.trim().is_empty() {
            list.clear();
        } else {
            list.extend(v.split_whitespace().map(String::from));
        }
    }
}

/// Where a unit is installed (host path), and whether it is masked.
fn find_unit(root: &SysRoot, unit: &str) -> Option<(String, bool)> {
    UNIT_DIRS.iter().find_map(|d| {
        let rel = format!("{d}/{unit}");
        writers::exists_nofollow(root, &rel).then(|| {
            let masked =
                std::fs::read_link(root.path(&rel)).is_ok_and(|t| t == Path::new("/dev/null"));
            (format!("/{rel}"), masked)
        })
    })
}

/// A unit's ordering, from its installed file and drop-ins.
fn unit_deps(root: &SysRoot, unit: &str, file: &str) -> UnitDeps {
    let mut deps = UnitDeps::default();
    if let Ok(Some(t)) = writers::read_conf(root, file) {
        parse_unit_deps(&t, &mut deps);
    }
    let dirs: Vec<String> = UNIT_DIRS.iter().map(|d| format!("{d}/{unit}.d")).collect();
    let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
    for f in writers::conf_files(root, &dirs, ".conf")
        .iter()
        .filter(|f| !f.masked)
    {
        if let Ok(Some(t)) = writers::read_conf(root, &f.path) {
            parse_unit_deps(&t, &mut deps);
        }
    }
    deps
}

/// The apply unit is installed, enabled, and ordered before every
/// container runtime installed here.
pub fn check_units(root: &SysRoot) -> Vec<Finding> {
    const C: &str = "units";
    let mut out = Vec::new();
    let Some((file, masked)) = find_unit(root, APPLY_UNIT) else {
        return vec![Finding::new(
            C,
            Severity::Warning,
            format!("{APPLY_UNIT} is not installed: nothing sizes the table at boot"),
        )
        .fix("install the conntrack-guard package")];
    };
    if masked {
        return vec![Finding::new(
            C,
            Severity::Critical,
            format!("{APPLY_UNIT} is masked: nothing sizes the table at boot"),
        )
        .at(file)
        .fix(format!("systemctl unmask {APPLY_UNIT}"))];
    }
    let enabled = UNIT_DIRS
        .iter()
        .any(|d| writers::exists_nofollow(root, &format!("{d}/sysinit.target.wants/{APPLY_UNIT}")));
    out.push(if enabled {
        Finding::new(C, Severity::Ok, format!("{APPLY_UNIT} is enabled")).at(&file)
    } else {
        Finding::new(
            C,
            Severity::Warning,
            format!("{APPLY_UNIT} is not enabled: the table is back at the kernel default after the next reboot"),
        )
        .at(&file)
        .fix(format!("systemctl enable {APPLY_UNIT}"))
    });
    let apply = unit_deps(root, APPLY_UNIT, &file);
    for rt in RUNTIME_UNITS {
        let Some((rt_file, rt_masked)) = find_unit(root, rt) else {
            continue;
        };
        if rt_masked {
            continue;
        }
        let deps = unit_deps(root, rt, &rt_file);
        // A service with default dependencies is ordered after
        // sysinit.target, which the apply unit is ordered before.
        let how = if apply.before.iter().any(|u| u == rt) {
            Some(format!("Before={rt} in {APPLY_UNIT}"))
        } else if deps.after.iter().any(|u| u == APPLY_UNIT) {
            Some(format!("After={APPLY_UNIT} in {rt}"))
        } else if apply.before.iter().any(|u| u == "sysinit.target")
            && deps.default_deps != Some(false)
        {
            Some("via sysinit.target".to_string())
        } else {
            None
        };
        out.push(match how {
            Some(how) => Finding::new(
                C,
                Severity::Ok,
                format!("{rt} starts after {APPLY_UNIT} ({how})"),
            )
            .at(&rt_file),
            None => Finding::new(
                C,
                Severity::Warning,
                format!("{rt} is not ordered after {APPLY_UNIT}: it can start with the kernel's default table"),
            )
            .at(&rt_file)
            .fix(format!(
                "add Before={rt} to a drop-in /etc/systemd/system/{APPLY_UNIT}.d/order.conf"
            )),
        });
    }
    out
}

// ---------------------------------------------------------------------

/// What the watchdog grew this boot ([`crate::observe::this_boot`], the
/// one judgement the watchdog, `status` and `apply` make too): a trusted
/// record is expected, not drift; one that is not trusted is said. Nothing
/// when there is no record.
pub fn check_grow(root: &SysRoot, cfg: &Config) -> Vec<Finding> {
    const C: &str = "grow";
    let boot = crate::observe::this_boot(root, cfg);
    let at = format!("/{}", crate::state::grown::THIS_BOOT);
    let mut out = Vec::new();
    if let Some(r) = boot.grown() {
        out.push(
            Finding::new(
                C,
                Severity::Ok,
                format!(
                    "the watchdog grew max to {} this boot ({}): expected, not drift",
                    r.max,
                    r.describe()
                ),
            )
            .at(&at),
        );
    }
    if let Some(why) = boot.ignored {
        out.push(
            Finding::new(C, Severity::Warning, why)
                .at(&at)
                .fix("systemctl restart conntrack-guard-apply (applies the configured max and discards the record)"),
        );
    }
    out.extend(check_budget(root, cfg));
    out
}

/// The configured max against `[grow] budget`: above it, the max is kept
/// as configured (the operator said so) but the watchdog never grows it,
/// which the operator may not expect. Nothing with growth off, or when the
/// budget is a share of RAM that cannot be read.
fn check_budget(root: &SysRoot, cfg: &Config) -> Option<Finding> {
    const C: &str = "grow";
    let max = cfg.conntrack.max.value().filter(|_| cfg.grow.enabled)?;
    if matches!(cfg.grow.budget, config::Budget::Percent(_))
        && crate::kernel::ram_bytes(root).is_none()
    {
        return None;
    }
    let page = crate::kernel::hashsize::page_size();
    let buckets = cfg
        .conntrack
        .buckets_value()
        .map(|b| crate::kernel::hashsize::kernel_buckets(b, page))
        .or_else(|| crate::kernel::kernel_u64(root, KEY_BUCKETS))
        .unwrap_or(0);
    let v = crate::assess::sizing::budget_view(
        &cfg.grow.budget.to_string(),
        crate::state::grown::budget_bytes(root, cfg.grow.budget),
        crate::kernel::slab::entry_bytes(root),
        page,
        max,
        buckets,
    );
    let at = cfg.source_name();
    Some(if v.fits {
        Finding::new(
            C,
            Severity::Ok,
            format!(
                "the configured max fits the {} ({}); the watchdog may grow it up to {}",
                v.budget_text(),
                v.worst_text(),
                v.max_allowed
            ),
        )
        .at(at)
    } else {
        Finding::new(
            C,
            Severity::Warning,
            format!(
                "the configured max already exceeds the {}: {}; it is kept as configured, \
                 and the watchdog never grows it",
                v.budget_text(),
                v.worst_text()
            ),
        )
        .at(at)
        .fix(format!(
            "raise [grow] budget to at least {}, or lower [conntrack] max",
            crate::report::table::human_bytes(v.worst_case_bytes)
        ))
    })
}

/// Known processes that write our keys.
pub fn check_writers(root: &SysRoot, cfg: &Config) -> Vec<Finding> {
    let scan = writers::scan_processes(root);
    let targets = cfg.targets();
    let mut out: Vec<Finding> = scan
        .writers
        .iter()
        .flat_map(|w| writer_findings(w, &targets))
        .collect();
    if scan.hidden {
        out.push(
            Finding::new(
                WRITERS,
                Severity::Unknown,
                "other processes are hidden from this one (ProtectProc=invisible or hidepid=): \
                 cannot look for kube-proxy, k3s or calico-node",
            )
            .fix("run `conntrack-guard doctor` as root outside the service sandbox"),
        );
    } else if scan.writers.is_empty() {
        out.push(Finding::new(
            WRITERS,
            Severity::Ok,
            "no kube-proxy, k3s or calico-node is running",
        ));
    }
    out
}

const WRITERS: &str = "writers";

/// What one running writer does to the configured keys.
fn writer_findings(w: &writers::WriterProcess, targets: &[config::Target]) -> Vec<Finding> {
    let who = format!("{} (pid {})", w.kind.name(), w.pid);
    match w.kind {
        WriterKind::CalicoNode => {
            return vec![Finding::new(
                WRITERS,
                Severity::Ok,
                format!("{who} is running; it is not known to write the conntrack keys"),
            )];
        }
        WriterKind::K3s if w.kube_proxy_disabled => {
            return vec![Finding::new(
                WRITERS,
                Severity::Ok,
                format!("{who} runs with its kube-proxy disabled"),
            )];
        }
        _ => {}
    }
    let mut out = Vec::new();
    let mut wrote = false;
    for t in targets {
        let Some(v) = w.conntrack.writes(&t.key, w.cpus) else {
            continue;
        };
        wrote = true;
        out.extend(write_finding(w, &who, t, v));
    }
    if !wrote {
        out.push(Finding::new(
            WRITERS,
            Severity::Ok,
            format!("{who} leaves the configured keys alone"),
        ));
    }
    out
}

/// `w` (named `who`) writes `v` to the target's key when it starts: fine
/// when it is the configured value, else where it comes from and how to
/// stop it.
fn write_finding(
    w: &writers::WriterProcess,
    who: &str,
    t: &config::Target,
    v: u64,
) -> Option<Finding> {
    let configured: Option<u64> = t.value.parse().ok();
    // kube-proxy only ever raises hashsize (to max/4), never lowers it.
    if t.key == KEY_BUCKETS && configured.is_some_and(|c| c >= v) {
        return None;
    }
    if configured == Some(v) {
        return Some(Finding::new(
            WRITERS,
            Severity::Ok,
            format!("{who} writes {} = {v}, the configured value", t.key),
        ));
    }
    let lowers = configured.is_some_and(|c| v < c);
    let sev = if lowers && t.key == KEY_MAX {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let mut what = format!(
        "{who} writes {} = {v} when it starts (configured {}){}",
        t.key,
        t.value,
        if lowers { ", lowering it" } else { "" }
    );
    if t.key == KEY_MAX || t.key == KEY_BUCKETS {
        what.push_str(&format!(
            "; from maxPerCore {} x {} CPUs, min {}",
            w.conntrack
                .max_per_core
                .as_ref()
                .map_or(writers::KUBE_PROXY_MAX_PER_CORE, |f| f.value),
            w.cpus,
            w.conntrack
                .min
                .as_ref()
                .map_or(writers::KUBE_PROXY_MIN, |f| f.value)
        ));
    }
    if w.config.is_some() && !w.config_read {
        what.push_str("; its config file was not readable, defaults assumed");
    }
    Some(
        Finding::new(WRITERS, sev, what)
            .at(write_source(w, &t.key))
            .fix(write_remedy(w, &t.key)),
    )
}

/// Where `w` gets the value it writes to `key`: the config field, else
/// its config file, else its command line.
fn write_source(w: &writers::WriterProcess, key: &str) -> String {
    let field = match key {
        KEY_MAX | KEY_BUCKETS => w.conntrack.max_per_core.as_ref().map(|f| &f.at),
        crate::config::KEY_UDP_TIMEOUT => w.conntrack.udp_timeout.as_ref().map(|f| &f.at),
        crate::config::KEY_UDP_TIMEOUT_STREAM => {
            w.conntrack.udp_stream_timeout.as_ref().map(|f| &f.at)
        }
        _ => None,
    };
    field
        .cloned()
        .or_else(|| w.config.clone())
        .unwrap_or_else(|| "command line".into())
}

/// How to make `w` leave `key` alone.
fn write_remedy(w: &writers::WriterProcess, key: &str) -> String {
    let stop = KubeProxyConntrack::stop_setting(key).unwrap_or("?");
    match (w.kind, &w.config) {
        (WriterKind::K3s, _) => format!(
            "add kube-proxy-arg: [\"{}\"] to /etc/rancher/k3s/config.yaml",
            stop_flag(key)
        ),
        (_, Some(p)) => format!("set {stop} in {p}"),
        (_, None) => format!("start it with --{}", stop_flag(key)),
    }
}

fn stop_flag(key: &str) -> &'static str {
    match key {
        crate::config::KEY_UDP_TIMEOUT => "conntrack-udp-timeout=0s",
        crate::config::KEY_UDP_TIMEOUT_STREAM => "conntrack-udp-timeout-stream=0s",
        _ => "conntrack-max-per-core=0",
    }
}

// ---------------------------------------------------------------------

/// NOTRACK rules that cover a DNATed port.
pub fn check_ruleset(src: &dyn RulesetSource) -> Vec<Finding> {
    const C: &str = "ruleset";
    let mut out = Vec::new();
    let mut rules = ruleset::Rules::default();
    let mut read_any = false;
    match src.nft_json() {
        Some(Ok(t)) => match ruleset::parse_nft_json(&t) {
            Ok(r) => {
                read_any = true;
                rules.extend(r);
            }
            Err(e) => out.push(Finding::new(C, Severity::Unknown, e)),
        },
        Some(Err(e)) => out.push(Finding::new(C, Severity::Unknown, e)),
        None => {}
    }
    match src.iptables_save() {
        Some(Ok(t)) => {
            read_any = true;
            rules.extend(ruleset::parse_iptables_save(&t));
        }
        Some(Err(e)) => out.push(Finding::new(C, Severity::Unknown, e)),
        None => {}
    }
    for c in ruleset::conflicts(&rules) {
        out.push(
            Finding::new(
                C,
                Severity::Critical,
                format!(
                    "NOTRACK covers {} port {}, which {} DNATs: NAT needs conntrack, so \
                     that traffic never reaches the service",
                    c.protocol.as_deref().unwrap_or("any"),
                    ruleset::fmt_ports(&c.ports),
                    c.dnat.at
                ),
            )
            .at(&c.notrack.at)
            .fix("exclude the DNATed ports from the NOTRACK rule"),
        );
    }
    if out.is_empty() {
        out.push(Finding::new(
            C,
            Severity::Ok,
            if read_any {
                "no NOTRACK rule covers a DNATed port"
            } else {
                "neither nft nor iptables-save is available; ruleset not checked"
            },
        ));
    }
    out
}

// ---------------------------------------------------------------------

/// `conntrack-guard doctor --help`.
pub const HELP: &str = "usage: conntrack-guard [--config PATH] doctor [--json] [--config PATH]\n";

/// `conntrack-guard doctor`: check and print; returns the exit code
/// (UNKNOWN for a configuration that cannot be read).
pub fn run(host: &Host, config_path: Option<&Path>, json: bool) -> i32 {
    let root = &host.root;
    let cfg = match config::load(root, config_path) {
        Ok(c) => c,
        Err(e) => {
            output::err(&format!("conntrack-guard: invalid configuration: {e}"));
            return Severity::Unknown.code();
        }
    };
    let rules: Box<dyn RulesetSource> = if host.kernel_access {
        Box::new(CommandRuleset)
    } else {
        Box::new(FileRuleset(root.clone()))
    };
    let report = check(root, &cfg, rules.as_ref());
    let unknown = Severity::Unknown.code();
    output::report(&report, json, Report::text, report.verdict.code(), unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unit_deps() {
        let mut d = UnitDeps::default();
        parse_unit_deps(
            "[Unit]\nBefore=a.service \\\n  b.service\nAfter=x\n[Service]\nBefore=ignored\n[Unit]\nDefaultDependencies=no\n",
            &mut d,
        );
        assert_eq!(d.before, ["a.service", "b.service"]);
        assert_eq!(d.default_deps, Some(false));
        parse_unit_deps("[Unit]\nBefore=\nBefore=c.service\n", &mut d);
        assert_eq!(d.before, ["c.service"]);
    }

    #[test]
    fn params() {
        let known: Vec<String> = FALLBACK_PARAMS.iter().map(|s| s.to_string()).collect();
        assert!(judge_param("hashsize=65536", &known).is_none());
        assert!(judge_param("acct=1", &known).is_none());
        assert!(judge_param("tstamp", &known).is_none());
        assert_eq!(
            judge_param("hashsize=64k", &known).unwrap().0,
            Severity::Critical
        );
        assert_eq!(
            judge_param("hashsize", &known).unwrap().0,
            Severity::Critical
        );
        assert_eq!(
            judge_param("acct=maybe", &known).unwrap().0,
            Severity::Critical
        );
        assert_eq!(
            judge_param("nf_conntrack_max=1", &known).unwrap().0,
            Severity::Warning
        );
    }

    #[test]
    fn module_lists() {
        assert_eq!(
            parse_modules_load("# c\n\nnf-conntrack\n br_netfilter \n"),
            [
                (3, "nf_conntrack".to_string()),
                (4, "br_netfilter".to_string())
            ]
        );
        assert_eq!(
            parse_module_index("kernel/net/netfilter/nf_conntrack.ko.zst: kernel/lib/libcrc32c.ko\nkernel/net/bridge/br_netfilter.ko\n"),
            ["nf_conntrack", "br_netfilter"]
        );
    }

    #[test]
    fn verdict_ranking() {
        let f = |s| Finding::new("x", s, "y");
        assert_eq!(Report::new(vec![]).verdict, Severity::Ok);
        assert_eq!(
            Report::new(vec![f(Severity::Warning), f(Severity::Unknown)]).verdict,
            Severity::Unknown
        );
        assert_eq!(
            Report::new(vec![f(Severity::Critical), f(Severity::Unknown)]).verdict,
            Severity::Critical
        );
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let mut d = UnitDeps::default();
            parse_unit_deps(&s, &mut d);
            let _ = parse_modules_load(&s);
            let _ = parse_module_index(&s);
            let _ = judge_param(&s, &["hashsize".to_string()]);
        }
    }
}
