// SPDX-License-Identifier: MIT OR Apache-2.0
//! `conntrack-guard doctor`: a read-only check of the traps around the
//! conntrack keys. Each check reads through the [`SysRoot`] (and the
//! ruleset through a [`RulesetSource`]) and returns findings; nothing is
//! written. Exit codes are the monitoring-plugin ones: 0 OK, 1 WARNING,
//! 2 CRITICAL, 3 UNKNOWN (a usage error is UNKNOWN too).

use std::path::Path;

use serde::Serialize;

use crate::config::{self, Config, KEY_BUCKETS, KEY_MAX, KEY_UDP_TIMEOUT, KEY_UDP_TIMEOUT_STREAM};
use crate::host::Host;
use crate::report::output;
use crate::sysroot::SysRoot;
use crate::system::ruleset::{self, RulesetSource};
use crate::system::writers::{self, config_dirs, exists_nofollow};
use crate::system::writers::{KubeProxyConntrack, WriterKind, WriterProcess};

/// How bad a finding is: the monitoring-plugin verdict of `status`,
/// written in lower case in doctor's JSON.
pub use crate::assess::verdict::Verdict as Severity;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Which check: `sysctl.d`, `modules-load.d`, `modprobe.d`, `units`,
    /// `writers`, `ruleset`, `grow`.
    pub check: &'static str,
    #[serde(serialize_with = "crate::assess::verdict::lowercase")]
    pub severity: Severity,
    /// Where (`file:line`, a unit, a rule), when it applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
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

    pub fn line(&self) -> String {
        let (sev, check, what, r) = (self.severity.name(), self.check, &self.what, &self.remedy);
        let at = self.at.as_ref().map_or(String::new(), |a| format!("{a}: "));
        let fix = r
            .as_ref()
            .map_or(String::new(), |r| format!(" -- fix: {r}"));
        format!("{sev} {check}: {at}{what}{fix}")
    }
}

/// A file that could not be read.
fn unreadable(check: &'static str, e: impl std::fmt::Display) -> Finding {
    Finding::new(check, Severity::Unknown, format!("cannot read: {e}"))
}

/// The findings of a check, or one OK finding saying `none` when there are none.
fn or_ok(mut out: Vec<Finding>, check: &'static str, none: &str) -> Vec<Finding> {
    if out.is_empty() {
        out.push(Finding::new(check, Severity::Ok, none));
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    #[serde(serialize_with = "crate::assess::verdict::lowercase")]
    pub verdict: Severity,
    /// Findings, in check order.
    pub findings: Vec<Finding>,
}

impl Report {
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
        out.extend(self.findings.iter().map(|f| f.line() + "\n"));
        out
    }
}

pub fn check(root: &SysRoot, cfg: &Config, rules: &RulesetSource) -> Report {
    let mut f = check_sysctl_d(root, cfg);
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
    // Read once: an unreadable file is one finding, not one per key.
    let (lines, errors) = writers::sysctl_conf(root);
    let mut out: Vec<Finding> = errors.iter().map(|e| unreadable(C, e)).collect();
    let mut any = false;
    for t in cfg.targets() {
        let settings = writers::sysctl_settings(&lines, &t.key);
        any |= !settings.is_empty();
        for s in settings.iter().filter(|s| s.value != t.value) {
            let wins = if s.wins {
                " and is applied last"
            } else {
                " (overridden by a later line)"
            };
            let what = format!(
                "sets {} = {}{wins}; configured {}; a `sysctl --system` or a boot without \
                 conntrack-guard-apply puts it back",
                s.written_key, s.value, t.value
            );
            let f = Finding::new(C, Severity::Warning, what).at(s.location());
            out.push(f.fix(format!("remove the line, or set {}", t.value)));
        }
        let files: std::collections::BTreeSet<&str> =
            settings.iter().map(|s| s.file.as_str()).collect();
        if files.len() > 1 {
            let winner = settings.iter().find(|s| s.wins);
            let winner =
                winner.map_or("none".into(), |w| format!("{} ({})", w.location(), w.value));
            let places: Vec<String> = settings.iter().map(|s| s.location()).collect();
            let (n, places) = (files.len(), places.join(", "));
            let what = format!("{} is set in {n} files ({places}); {winner} wins", t.key);
            let differ = settings.iter().any(|s| s.value != settings[0].value);
            let sev = if differ {
                Severity::Warning
            } else {
                Severity::Ok
            };
            out.push(Finding::new(C, sev, what).fix("keep one file per key"));
        }
    }
    let none = if any {
        "sysctl.d agrees with the configuration"
    } else {
        "no sysctl.d file sets the configured keys"
    };
    or_ok(out, C, none)
}

const MODULES_LOAD: &str = "modules-load.d";

/// The module names of a modules-load.d file, with line numbers.
pub fn parse_modules_load(text: &str) -> Vec<(usize, String)> {
    let lines = text.lines().enumerate();
    let names = lines.filter(|(_, l)| !l.trim().starts_with(['#', ';']));
    let names = names.filter_map(|(i, l)| Some((i + 1, l.split_whitespace().next()?)));
    names.map(|(i, name)| (i, name.replace('-', "_"))).collect()
}

/// Module names listed in `modules.dep` or `modules.builtin` text
/// (`kernel/net/netfilter/nf_conntrack.ko.zst: deps`).
pub fn parse_module_index(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let path = l.split(':').next()?.trim();
            let name = path.rsplit('/').next()?.split(".ko").next()?;
            (!name.is_empty()).then(|| name.replace('-', "_"))
        })
        .collect()
}

/// modules-load.d entries naming a module this kernel does not have.
pub fn check_modules_load(root: &SysRoot) -> Vec<Finding> {
    let release = root.read_some("proc/sys/kernel/osrelease");
    let release = release.as_deref().map(str::trim);
    let version = release.and_then(crate::kernel::facts::parse_version);
    let known = release.and_then(|r| known_modules(root, r));
    let release = release.unwrap_or("(unknown)");
    // Debian's /etc/modules is read through a modules-load.d link to it.
    let links_to_it = |t: &Path| t.ends_with("modules");
    let files = writers::conf_files_and(root, MODULES_LOAD, "etc/modules", links_to_it);
    let mut out = Vec::new();
    for (file, text) in writers::read_confs(root, &files) {
        let Ok(text) = text.map_err(|e| out.push(unreadable(MODULES_LOAD, e))) else {
            continue;
        };
        for (line, name) in parse_modules_load(&text) {
            // Gone since 4.19, when nf_conntrack took over IPv4 and IPv6.
            let removed = [("nf_conntrack_ipv4", "IPv4"), ("nf_conntrack_ipv6", "IPv6")]
                .into_iter()
                .find(|(n, _)| *n == name && version.map_or(true, |v| v >= (4, 19)));
            // Without the module index, only the names known to be removed count.
            let missing = match &known {
                Some(k) => !k.contains(&name),
                None => removed.is_some(),
            };
            if !missing {
                continue;
            }
            let why = removed.map_or(String::new(), |(_, ip)| {
                format!(" (nf_conntrack covers {ip} since 4.19)")
            });
            let what = format!(
                "names module {name}, which kernel {release} does not have{why}: \
                 systemd-modules-load.service fails at every boot"
            );
            let fix = match removed {
                Some(_) => "remove the line; load nf_conntrack instead".to_string(),
                None => format!("remove the line, or install {name} for this kernel"),
            };
            let f = Finding::new(MODULES_LOAD, Severity::Warning, what);
            out.push(f.at(format!("{file}:{line}")).fix(fix));
        }
    }
    let none = "every module named in modules-load.d exists for this kernel";
    or_ok(out, MODULES_LOAD, none)
}

/// The modules of kernel `release` from modules.dep and modules.builtin;
/// `None` when neither is there.
fn known_modules(root: &SysRoot, release: &str) -> Option<Vec<String>> {
    let index = |f| root.read_some(&format!("lib/modules/{release}/{f}"));
    let texts: Vec<String> = ["modules.dep", "modules.builtin"]
        .iter()
        .filter_map(index)
        .collect();
    (!texts.is_empty()).then(|| texts.iter().flat_map(|t| parse_module_index(t)).collect())
}

/// The nf_conntrack parameters of 6.x kernels, for when sysfs does not
/// list them (module not loaded).
const FALLBACK_PARAMS: &[&str] = &["acct", "expect_hashsize", "hashsize", "tstamp"];
const PARAM_DIR: &str = "sys/module/nf_conntrack/parameters";

/// One `name[=value]` of an `options nf_conntrack` line, judged against
/// the known parameters. `None` when fine.
pub fn judge_param(arg: &str, known: &[String]) -> Option<(Severity, String)> {
    let (name, value) = arg
        .split_once('=')
        .map_or((arg, None), |(n, v)| (n, Some(v)));
    let name = name.replace('-', "_");
    if !known.contains(&name) {
        let what = format!("unknown parameter {name}: the kernel ignores it");
        return Some((Severity::Warning, what));
    }
    let numeric = matches!(name.as_str(), "hashsize" | "expect_hashsize");
    // kstrtobool: what a bool module parameter accepts.
    let is_bool = |v: &str| {
        matches!(
            v.as_bytes().first(),
            Some(b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'1' | b'0')
        ) || matches!(v, "on" | "off" | "ON" | "OFF" | "On" | "Off")
    };
    let unsigned = value.is_some_and(|v| v.parse::<u32>().is_ok());
    let (ok, expected) = match numeric {
        true => (unsigned, "an unsigned number"),
        false => (value.map_or(true, is_bool), "y or n"),
    };
    let what = format!(
        "bad value {arg:?}: the kernel refuses to load nf_conntrack with it ({expected} expected)"
    );
    (!ok).then_some((Severity::Critical, what))
}

/// modprobe.d lines about nf_conntrack: unknown parameters, bad values,
/// loading disabled, options that a built-in module never sees.
pub fn check_modprobe(root: &SysRoot) -> Vec<Finding> {
    const C: &str = "modprobe.d";
    let (lines, errors) = writers::modprobe_lines(root, "nf_conntrack");
    let mut out: Vec<Finding> = errors.iter().map(|e| unreadable(C, e)).collect();
    let mut known = writers::list_dir(root, PARAM_DIR);
    if known.is_empty() {
        known = FALLBACK_PARAMS.iter().map(|s| s.to_string()).collect();
    }
    // A loadable module has `initstate`; a built-in one only its
    // parameters. modprobe.d options never reach a built-in module.
    let builtin = root.exists(PARAM_DIR) && !root.exists("sys/module/nf_conntrack/initstate");
    // true or false, bare or in /bin or /usr/bin.
    let noop = |c: &str| {
        ["/bin/", "/usr/bin/", ""]
            .iter()
            .any(|d| matches!(c.strip_prefix(d), Some("true" | "false")))
    };
    for (file, l) in &lines {
        let at = format!("{file}:{}", l.line);
        let cmd = l.args.join(" ");
        let finding = |sev, what: &str| Finding::new(C, sev, what).at(&at);
        match l.command.as_str() {
            "options" => {
                if builtin {
                    let what = "options for nf_conntrack, which is built into this kernel: \
                                modprobe.d options never apply to it";
                    out.push(finding(Severity::Warning, what).fix(
                        "use the buckets key in conntrack-guard.toml, or \
                         nf_conntrack.hashsize= on the kernel command line",
                    ));
                }
                for a in &l.args {
                    if let Some((sev, what)) = judge_param(a, &known) {
                        out.push(finding(sev, &what).fix(format!("remove {a:?} from the line")));
                    }
                }
            }
            "install" if !builtin && noop(cmd.trim()) => {
                let what = format!("`install nf_conntrack {cmd}` stops the module from loading");
                out.push(finding(Severity::Critical, &what).fix("remove the line"));
            }
            "blacklist" if !builtin => {
                let what = "nf_conntrack is blacklisted: only an explicit load brings it in";
                out.push(finding(Severity::Warning, what).fix("remove the line"));
            }
            _ => {}
        }
    }
    or_ok(out, C, "no modprobe.d problem with nf_conntrack")
}

// ---------------------------------------------------------------------

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
    pub after: Vec<String>,
    /// `DefaultDependencies=`, when set.
    pub default_deps: Option<bool>,
}

/// Apply one unit file or drop-in to `deps` ([Unit] section only).
pub fn parse_unit_deps(text: &str, deps: &mut UnitDeps) {
    let mut in_unit = false;
    for (_, l) in crate::system::logical_lines(text) {
        let l = l.trim();
        if l.starts_with('[') {
            in_unit = l == "[Unit]";
        }
        let Some((k, v)) = l
            .split_once('=')
            .filter(|_| in_unit && !l.starts_with(['#', ';']))
        else {
            continue;
        };
        let list = match k.trim() {
            "Before" => &mut deps.before,
            "After" => &mut deps.after,
            "DefaultDependencies" => {
                deps.default_deps = match v.trim() {
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
        }
        list.extend(v.split_whitespace().map(String::from));
    }
}

/// A unit's ordering, from its installed file and drop-ins.
fn unit_deps(root: &SysRoot, unit: &str, file: &str) -> UnitDeps {
    let mut deps = UnitDeps::default();
    let dropins = writers::conf_files(root, &format!("systemd/system/{unit}.d"), ".conf");
    let dropins = writers::read_confs(root, &dropins).filter_map(|(_, t)| t.ok());
    let main = writers::read_conf(root, file).ok().flatten();
    for t in main.into_iter().chain(dropins) {
        parse_unit_deps(&t, &mut deps);
    }
    deps
}

/// The apply unit is installed, enabled, and ordered before every
/// container runtime installed here.
pub fn check_units(root: &SysRoot) -> Vec<Finding> {
    const C: &str = "units";
    let Some((file, masked)) = writers::find_unit(root, APPLY_UNIT) else {
        let what = format!("{APPLY_UNIT} is not installed: nothing sizes the table at boot");
        let f = Finding::new(C, Severity::Warning, what);
        return vec![f.fix("install the conntrack-guard package")];
    };
    if masked {
        let what = format!("{APPLY_UNIT} is masked: nothing sizes the table at boot");
        let fix = format!("systemctl unmask {APPLY_UNIT}");
        return vec![Finding::new(C, Severity::Critical, what).at(file).fix(fix)];
    }
    let wants = format!("systemd/system/sysinit.target.wants/{APPLY_UNIT}");
    let enabled = config_dirs(&wants).iter().any(|p| exists_nofollow(root, p));
    let mut out = vec![if enabled {
        Finding::new(C, Severity::Ok, format!("{APPLY_UNIT} is enabled")).at(&file)
    } else {
        let what = format!(
            "{APPLY_UNIT} is not enabled: the table is back at the kernel default after the \
             next reboot"
        );
        let fix = format!("systemctl enable {APPLY_UNIT}");
        Finding::new(C, Severity::Warning, what).at(&file).fix(fix)
    }];
    let apply = unit_deps(root, APPLY_UNIT, &file);
    let before = |u: &str| apply.before.iter().any(|b| b == u);
    for rt in RUNTIME_UNITS {
        let Some((rt_file, false)) = writers::find_unit(root, rt) else {
            continue;
        };
        let deps = unit_deps(root, rt, &rt_file);
        // A service with default dependencies is ordered after
        // sysinit.target, which the apply unit is ordered before.
        let how = if before(rt) {
            format!("Before={rt} in {APPLY_UNIT}")
        } else if deps.after.iter().any(|u| u == APPLY_UNIT) {
            format!("After={APPLY_UNIT} in {rt}")
        } else if before("sysinit.target") && deps.default_deps != Some(false) {
            "via sysinit.target".to_string()
        } else {
            let what = format!(
                "{rt} is not ordered after {APPLY_UNIT}: it can start with the kernel's default \
                 table"
            );
            let fix = format!(
                "add Before={rt} to a drop-in /etc/systemd/system/{APPLY_UNIT}.d/order.conf"
            );
            let f = Finding::new(C, Severity::Warning, what);
            out.push(f.at(&rt_file).fix(fix));
            continue;
        };
        let what = format!("{rt} starts after {APPLY_UNIT} ({how})");
        out.push(Finding::new(C, Severity::Ok, what).at(&rt_file));
    }
    out
}

// ---------------------------------------------------------------------

/// What the watchdog grew this boot ([`crate::observe::this_boot`], the
/// one judgement the watchdog, `status` and `apply` make too): a trusted
/// record is expected, not drift; one that is not trusted is said. Nothing
/// when there is no record. Then the configured max against the budget.
pub fn check_grow(root: &SysRoot, cfg: &Config) -> Vec<Finding> {
    const C: &str = "grow";
    let boot = crate::observe::this_boot(root, cfg);
    let at = format!("/{}", crate::state::grown::THIS_BOOT);
    let mut out = Vec::new();
    if let Some(r) = boot.grown() {
        let (max, how) = (r.max, r.describe());
        let what = format!("the watchdog grew max to {max} this boot ({how}): expected, not drift");
        out.push(Finding::new(C, Severity::Ok, what).at(&at));
    }
    if let Some(why) = boot.ignored {
        let fix = "systemctl restart conntrack-guard-apply (applies the configured max and \
                   discards the record)";
        out.push(Finding::new(C, Severity::Warning, why).at(&at).fix(fix));
    }
    out.extend(check_budget(root, cfg));
    out
}

/// The configured max against `[grow] budget`: above it, the max is kept
/// as configured (the operator said so) but the watchdog never grows it,
/// which the operator may not expect. Nothing with growth off, or when the
/// budget is a share of RAM that cannot be read.
fn check_budget(root: &SysRoot, cfg: &Config) -> Option<Finding> {
    let max = cfg.conntrack.max.value().filter(|_| cfg.grow.enabled)?;
    let page = crate::kernel::hashsize::page_size();
    let buckets = cfg
        .conntrack
        .buckets_value()
        .map(|b| crate::kernel::hashsize::kernel_buckets(b, page))
        .or_else(|| crate::kernel::kernel_u64(root, KEY_BUCKETS))
        .unwrap_or(0);
    let entry = crate::kernel::slab::entry_bytes(root);
    let v = crate::observe::budget_view(root, cfg.grow.budget, entry, page, max, buckets)?;
    let (budget, worst) = (v.budget_text(), v.worst_text());
    let f = if v.fits {
        let what = format!(
            "the configured max fits the {budget} ({worst}); the watchdog may grow it up to {}",
            v.max_allowed
        );
        Finding::new("grow", Severity::Ok, what)
    } else {
        let what = format!(
            "the configured max already exceeds the {budget}: {worst}; it is kept as \
             configured, and the watchdog never grows it"
        );
        let need = crate::report::table::human_bytes(v.worst_case_bytes);
        let fix = format!("raise [grow] budget to at least {need}, or lower [conntrack] max");
        Finding::new("grow", Severity::Warning, what).fix(fix)
    };
    Some(f.at(cfg.source_name()))
}

const WRITERS: &str = "writers";

/// Known processes that write our keys.
pub fn check_writers(root: &SysRoot, cfg: &Config) -> Vec<Finding> {
    let scan = writers::scan_processes(root);
    let targets = cfg.targets();
    let found = scan
        .writers
        .iter()
        .flat_map(|w| writer_findings(w, &targets));
    let mut out: Vec<Finding> = found.collect();
    if scan.hidden {
        let what = "other processes are hidden from this one (ProtectProc=invisible or \
                    hidepid=): cannot look for kube-proxy, k3s or calico-node";
        let fix = "run `conntrack-guard doctor` as root outside the service sandbox";
        out.push(Finding::new(WRITERS, Severity::Unknown, what).fix(fix));
    } else if scan.writers.is_empty() {
        let what = "no kube-proxy, k3s or calico-node is running";
        out.push(Finding::new(WRITERS, Severity::Ok, what));
    }
    out
}

/// What one running writer does to the configured keys.
fn writer_findings(w: &WriterProcess, targets: &[config::Target]) -> Vec<Finding> {
    let who = format!("{} (pid {})", w.kind.name(), w.pid);
    let written: Vec<_> = targets
        .iter()
        .filter_map(|t| Some((t, w.writes(&t.key)?)))
        .collect();
    let only = match w.kind {
        WriterKind::CalicoNode => "is running; it is not known to write the conntrack keys",
        WriterKind::K3s if w.kube_proxy_disabled => "runs with its kube-proxy disabled",
        _ if written.is_empty() => "leaves the configured keys alone",
        _ => {
            let found = written
                .into_iter()
                .filter_map(|(t, v)| write_finding(w, &who, t, v));
            return found.collect();
        }
    };
    vec![Finding::new(WRITERS, Severity::Ok, format!("{who} {only}"))]
}

/// `w` (named `who`) writes `v` to the target's key when it starts: fine
/// when it is the configured value, else where it comes from and how to
/// stop it.
fn write_finding(w: &WriterProcess, who: &str, t: &config::Target, v: u64) -> Option<Finding> {
    let configured: Option<u64> = t.value.parse().ok();
    // kube-proxy only ever raises hashsize (to max/4), never lowers it.
    if t.key == KEY_BUCKETS && configured.is_some_and(|c| c >= v) {
        return None;
    }
    if configured == Some(v) {
        let what = format!("{who} writes {} = {v}, the configured value", t.key);
        return Some(Finding::new(WRITERS, Severity::Ok, what));
    }
    let lowers = configured.is_some_and(|c| v < c);
    let sev = if lowers && t.key == KEY_MAX {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let lowering = if lowers { ", lowering it" } else { "" };
    let mut what = format!(
        "{who} writes {} = {v} when it starts (configured {}){lowering}",
        t.key, t.value
    );
    if t.key == KEY_MAX || t.key == KEY_BUCKETS {
        let (per, min) = w.conntrack.per_core_and_min();
        what += &format!("; from maxPerCore {per} x {} CPUs, min {min}", w.cpus);
    }
    if w.config.is_some() && !w.config_read {
        what += "; its config file was not readable, defaults assumed";
    }
    // Where it gets the value: the config field, else its config file,
    // else its command line.
    let c = &w.conntrack;
    let field = match t.key.as_str() {
        KEY_MAX | KEY_BUCKETS => c.max_per_core.as_ref().map(|f| &f.at),
        KEY_UDP_TIMEOUT => c.udp_timeout.as_ref().map(|f| &f.at),
        KEY_UDP_TIMEOUT_STREAM => c.udp_stream_timeout.as_ref().map(|f| &f.at),
        _ => None,
    };
    let at = field
        .or(w.config.as_ref())
        .map_or("command line", String::as_str);
    // How to make it leave the key alone.
    let (setting, flag) = KubeProxyConntrack::stop_setting(&t.key);
    let fix = match (w.kind, &w.config) {
        (WriterKind::K3s, _) => {
            format!("add kube-proxy-arg: [\"{flag}\"] to /etc/rancher/k3s/config.yaml")
        }
        (_, Some(p)) => format!("set {setting} in {p}"),
        (_, None) => format!("start it with --{flag}"),
    };
    Some(Finding::new(WRITERS, sev, what).at(at).fix(fix))
}

// ---------------------------------------------------------------------

/// NOTRACK rules that cover a DNATed port.
pub fn check_ruleset(src: &RulesetSource) -> Vec<Finding> {
    const C: &str = "ruleset";
    let mut out = Vec::new();
    let mut rules = ruleset::Rules::default();
    let [nft, ipt] = src.outputs();
    let nft = nft.map(|r| r.and_then(|t| ruleset::parse_nft_json(&t)));
    let ipt = ipt.map(|r| r.map(|t| ruleset::parse_iptables_save(&t)));
    let mut read_any = false;
    for r in [nft, ipt].into_iter().flatten() {
        match r {
            Ok(r) => {
                read_any = true;
                rules.notrack.extend(r.notrack);
                rules.dnat.extend(r.dnat);
            }
            Err(e) => out.push(Finding::new(C, Severity::Unknown, e)),
        }
    }
    for c in ruleset::conflicts(&rules) {
        let what = format!(
            "NOTRACK covers {} port {}, which {} DNATs: NAT needs conntrack, so that traffic \
             never reaches the service",
            c.protocol.as_deref().unwrap_or("any"),
            ruleset::fmt_ports(&c.ports),
            c.dnat.at
        );
        let f = Finding::new(C, Severity::Critical, what).at(&c.notrack.at);
        out.push(f.fix("exclude the DNATed ports from the NOTRACK rule"));
    }
    let none = if read_any {
        "no NOTRACK rule covers a DNATed port"
    } else {
        "neither nft nor iptables-save is available; ruleset not checked"
    };
    or_ok(out, C, none)
}

// ---------------------------------------------------------------------

pub const HELP: &str = "usage: conntrack-guard [--config PATH] doctor [--json] [--config PATH]\n";

/// `conntrack-guard doctor`: check and print; returns the exit code
/// (UNKNOWN for a configuration that cannot be read).
pub fn run(host: &Host, config_path: Option<&Path>, json: bool) -> i32 {
    let root = &host.root;
    let Some(cfg) = output::config(root, config_path, "conntrack-guard") else {
        return Severity::Unknown.code();
    };
    let rules = match host.kernel_access {
        true => RulesetSource::Commands,
        false => RulesetSource::Files(root.clone()),
    };
    let report = check(root, &cfg, &rules);
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
        // A continuation at the end of the file counts, as systemd reads it.
        parse_unit_deps("[Unit]\nAfter=d.service \\", &mut d);
        assert_eq!(d.after, ["x", "d.service"]);
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
