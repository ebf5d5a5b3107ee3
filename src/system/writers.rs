// SPDX-License-Identifier: MIT OR Apache-2.0
//! Who else writes our keys: sysctl.d files, known processes (kube-proxy,
//! k3s, calico-node) and the module parameter behind the bucket count.
//!
//! The drift tracker and `status` call [`hint`] with the value they found
//! in the kernel; `doctor` uses the same readers for its checks. Everything
//! goes through [`SysRoot`]; the parsers take `&str` and never panic.

use std::path::{Path, PathBuf};

use crate::config::{KEY_BUCKETS, KEY_MAX, KEY_UDP_TIMEOUT, KEY_UDP_TIMEOUT_STREAM};
use crate::state::applied::ApplyRun;
use crate::sysroot::{PathError, SysRoot};

/// The directories systemd-sysctl reads, in precedence order: a file in an
/// earlier directory masks a file of the same name in a later one. `lib/`
/// only matters on split-/usr systems; on merged /usr it repeats `usr/lib`
/// and the masking drops the repeats.
pub const SYSCTL_DIRS: &[&str] = &[
    "etc/sysctl.d",
    "run/sysctl.d",
    "usr/local/lib/sysctl.d",
    "usr/lib/sysctl.d",
    "lib/sysctl.d",
];
/// `sysctl --system` (procps) reads this after the directories; Debian
/// links it into systemd-sysctl's view as `/etc/sysctl.d/99-sysctl.conf`.
pub const SYSCTL_CONF: &str = "etc/sysctl.conf";
/// The kernel's old alias of `nf_conntrack_max` in the initial namespace:
/// many guides still write this spelling.
pub const KEY_MAX_ALIAS: &str = "net.nf_conntrack_max";
/// Kernel defaults of the UDP timeouts (seconds), for the "reset to the
/// default" hint.
const DEFAULT_UDP: &str = "30";
const DEFAULT_UDP_STREAM: &str = "120";
/// kube-proxy's defaults (KubeProxyConntrackConfiguration).
pub const KUBE_PROXY_MAX_PER_CORE: i64 = 32_768;
/// See [`KUBE_PROXY_MAX_PER_CORE`].
pub const KUBE_PROXY_MIN: i64 = 131_072;
/// Symlink hops followed inside the root before giving up.
const MAX_LINKS: usize = 8;

// ---------------------------------------------------------------------
// Config directories (shared with doctor: sysctl.d, modprobe.d,
// modules-load.d, unit drop-ins all use the same masking rule).

/// One file of a `*.d` directory set, after masking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfFile {
    /// File name (the sort and masking key).
    pub name: String,
    /// Absolute path as the host sees it, e.g. `/etc/sysctl.d/90-k8s.conf`.
    pub path: String,
    /// A link to `/dev/null` (or an empty link target): masks later files
    /// of the same name and sets nothing.
    pub masked: bool,
}

/// The files ending in `suffix` across `dirs` (relative to the root), one
/// per name, the earliest directory winning, sorted by name: the order in
/// which systemd and kmod apply them.
pub fn conf_files(root: &SysRoot, dirs: &[&str], suffix: &str) -> Vec<ConfFile> {
    let mut out: Vec<ConfFile> = Vec::new();
    for dir in dirs {
        for name in list_dir(root, dir) {
            if !name.ends_with(suffix) || name.starts_with('.') {
                continue;
            }
            if out.iter().any(|f| f.name == name) {
                continue;
            }
            let rel = format!("{dir}/{name}");
            let masked = link_target(root, &rel).is_some_and(|t| t == Path::new("/dev/null"));
            out.push(ConfFile {
                path: format!("/{rel}"),
                name,
                masked,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Names in a directory under the root; empty when it is absent or
/// unreadable (a config directory that does not exist sets nothing).
pub fn list_dir(root: &SysRoot, rel: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.path(rel))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn link_target(root: &SysRoot, rel: &str) -> Option<PathBuf> {
    std::fs::read_link(root.path(rel)).ok()
}

/// Whether a path exists under the root as anything, a dangling symlink
/// included (an enablement link points at a path under the real `/`).
pub fn exists_nofollow(root: &SysRoot, rel: &str) -> bool {
    std::fs::symlink_metadata(root.path(rel)).is_ok()
}

/// Read a config file under the root, following symlinks *inside* the
/// root (an absolute link target is taken relative to the root, as the
/// host would see it). `Ok(None)` when absent or masked.
pub fn read_conf(root: &SysRoot, rel: &str) -> Result<Option<String>, PathError> {
    let mut rel = PathBuf::from(rel.trim_start_matches('/'));
    for _ in 0..MAX_LINKS {
        let full = root.path(&rel.to_string_lossy());
        match std::fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                let t = std::fs::read_link(&full).map_err(|source| PathError {
                    path: full.clone(),
                    source,
                })?;
                if t == Path::new("/dev/null") {
                    return Ok(None);
                }
                rel = if t.is_absolute() {
                    t.strip_prefix("/").unwrap_or(&t).to_path_buf()
                } else {
                    normalize(&rel.parent().unwrap_or(Path::new("")).join(t))
                };
            }
            Ok(_) => return crate::sysroot::read_opt_path(&full),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(PathError { path: full, source }),
        }
    }
    Err(PathError {
        path: root.path(&rel.to_string_lossy()),
        source: std::io::Error::other("too many levels of symbolic links"),
    })
}

/// Resolve `.` and `..` lexically, never above the root.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(s) => out.push(s),
            _ => {}
        }
    }
    out
}

// ---------------------------------------------------------------------
// sysctl.d

/// One assignment line of a sysctl.d file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlLine {
    /// 1-based line number.
    pub line: usize,
    /// The key in dotted form (a literal dot inside a name shows as `/`).
    pub key: String,
    /// The value, trimmed.
    pub value: String,
    /// A leading `-`: errors (absent key) are ignored.
    pub ignore_errors: bool,
}

/// Parse a sysctl.d file. Comments start with `#` or `;`; lines without
/// `=` (glob exclusions) set nothing and are skipped.
pub fn parse_sysctl_conf(text: &str) -> Vec<SysctlLine> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            continue;
        };
        let k = k.trim();
        let (ignore_errors, k) = match k.strip_prefix('-') {
            Some(rest) => (true, rest.trim()),
            None => (false, k),
        };
        if k.is_empty() {
            continue;
        }
        out.push(SysctlLine {
            line: i + 1,
            key: normalize_sysctl_key(k),
            value: v.trim().to_string(),
            ignore_errors,
        });
    }
    out
}

/// sysctl.d(5): if the first separator is a slash, the key is a path and
/// dots are part of names; otherwise dots separate. Returns dotted form.
pub fn normalize_sysctl_key(k: &str) -> String {
    match k.find(['.', '/']) {
        Some(i) if k.as_bytes()[i] == b'/' => k
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect(),
        _ => k.to_string(),
    }
}

/// Whether a sysctl.d key (maybe a glob) names `key`, including the
/// kernel's alias of nf_conntrack_max.
pub fn sysctl_key_matches(pattern: &str, key: &str) -> bool {
    let names: &[&str] = if key == KEY_MAX || key == KEY_MAX_ALIAS {
        &[KEY_MAX, KEY_MAX_ALIAS]
    } else {
        &[key]
    };
    names.iter().any(|k| glob_match(pattern, k))
}

/// fnmatch(3) with `*` and `?` (systemd-sysctl's globs), no classes.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A sysctl.d assignment of one of our keys, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlSetting {
    /// The file (host path).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The key as written (normalized to dots).
    pub written_key: String,
    /// The value.
    pub value: String,
    /// True for the assignment systemd-sysctl applies last (it wins).
    pub wins: bool,
}

impl SysctlSetting {
    /// `file:line`.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// The sysctl.d files in the order they are applied, with `/etc/sysctl.conf`
/// last unless a sysctl.d entry already links to it.
pub fn sysctl_files(root: &SysRoot) -> Vec<ConfFile> {
    let mut files = conf_files(root, SYSCTL_DIRS, ".conf");
    let linked = files.iter().any(|f| {
        link_target(root, &f.path)
            .is_some_and(|t| t == Path::new("/etc/sysctl.conf") || t == Path::new("../sysctl.conf"))
    });
    if !linked && exists_nofollow(root, SYSCTL_CONF) {
        files.push(ConfFile {
            name: "sysctl.conf".into(),
            path: format!("/{SYSCTL_CONF}"),
            masked: false,
        });
    }
    files
}

/// Every assignment of `key` across the sysctl configuration, in the order
/// applied. The last explicit one wins; a glob only wins when no explicit
/// line names the key (systemd-sysctl's rule). Unreadable files are
/// returned as errors beside the settings.
pub fn sysctl_settings(root: &SysRoot, key: &str) -> (Vec<SysctlSetting>, Vec<PathError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut winner: Option<(bool, usize)> = None;
    for f in sysctl_files(root).iter().filter(|f| !f.masked) {
        let text = match read_conf(root, &f.path) {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        for l in parse_sysctl_conf(&text) {
            if !sysctl_key_matches(&l.key, key) {
                continue;
            }
            let explicit = !l.key.contains(['*', '?']);
            if winner.map_or(true, |(we, _)| explicit || !we) {
                winner = Some((explicit, out.len()));
            }
            out.push(SysctlSetting {
                file: f.path.clone(),
                line: l.line,
                written_key: l.key,
                value: l.value,
                wins: false,
            });
        }
    }
    if let Some((_, i)) = winner {
        out[i].wins = true;
    }
    (out, errors)
}

// ---------------------------------------------------------------------
// modprobe.d (the hashsize option also sets the bucket count)

/// The directories kmod reads modprobe.d files from, in precedence order.
pub const MODPROBE_DIRS: &[&str] = &[
    "etc/modprobe.d",
    "run/modprobe.d",
    "usr/local/lib/modprobe.d",
    "usr/lib/modprobe.d",
    "lib/modprobe.d",
];

/// One `options`, `install`, `blacklist` or other command of a modprobe.d
/// file, with continuation lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModprobeLine {
    /// 1-based line where the command starts.
    pub line: usize,
    /// The command word (`options`, `install`, `blacklist`, ...).
    pub command: String,
    /// The module name, `-` folded to `_`.
    pub module: String,
    /// The rest, split on whitespace.
    pub args: Vec<String>,
}

/// Parse a modprobe.d file (comments `#`, trailing `\` continues a line).
pub fn parse_modprobe_conf(text: &str) -> Vec<ModprobeLine> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        if let Some(cont) = raw.strip_suffix('\\') {
            acc.push_str(cont);
            acc.push(' ');
            pending = Some((start, acc));
            continue;
        }
        acc.push_str(raw);
        push_modprobe(&mut out, start, &acc);
    }
    if let Some((start, acc)) = pending {
        push_modprobe(&mut out, start, &acc);
    }
    out
}

fn push_modprobe(out: &mut Vec<ModprobeLine>, line: usize, text: &str) {
    let t = text.trim();
    if t.is_empty() || t.starts_with('#') {
        return;
    }
    let mut words = t.split_whitespace();
    let (Some(cmd), Some(module)) = (words.next(), words.next()) else {
        return;
    };
    out.push(ModprobeLine {
        line,
        command: cmd.to_string(),
        module: module.replace('-', "_"),
        args: words.map(String::from).collect(),
    });
}

/// A modprobe.d line about nf_conntrack, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModprobeSetting {
    /// File (host path).
    pub file: String,
    /// The parsed line.
    pub line: ModprobeLine,
}

/// Every modprobe.d command naming `module`, in the order kmod reads them.
pub fn modprobe_lines(root: &SysRoot, module: &str) -> (Vec<ModprobeSetting>, Vec<PathError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for f in conf_files(root, MODPROBE_DIRS, ".conf")
        .iter()
        .filter(|f| !f.masked)
    {
        match read_conf(root, &f.path) {
            Ok(Some(t)) => out.extend(
                parse_modprobe_conf(&t)
                    .into_iter()
                    .filter(|l| l.module == module)
                    .map(|line| ModprobeSetting {
                        file: f.path.clone(),
                        line,
                    }),
            ),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    (out, errors)
}

// ---------------------------------------------------------------------
// Processes

/// A known foreign writer that can run on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriterKind {
    /// kube-proxy: sets nf_conntrack_max (and hashsize) at start unless
    /// `conntrack.maxPerCore: 0`; the UDP timeouts when configured.
    KubeProxy,
    /// k3s server or agent: runs kube-proxy inside its own process.
    K3s,
    /// calico-node: not known to write these keys; named so an operator
    /// knows it is there.
    CalicoNode,
}

impl WriterKind {
    /// The process name.
    pub fn name(self) -> &'static str {
        match self {
            WriterKind::KubeProxy => "kube-proxy",
            WriterKind::K3s => "k3s",
            WriterKind::CalicoNode => "calico-node",
        }
    }

    /// Recognize a process by its comm (max 15 bytes) or argv[0].
    pub fn from_process(comm: &str, argv0: &str) -> Option<Self> {
        let base = argv0.rsplit('/').next().unwrap_or("");
        let is = |n: &str| comm == n || base == n;
        if is("kube-proxy") {
            Some(WriterKind::KubeProxy)
        } else if comm == "k3s" || comm.starts_with("k3s-") || base == "k3s" {
            Some(WriterKind::K3s)
        } else if is("calico-node") {
            Some(WriterKind::CalicoNode)
        } else {
            None
        }
    }
}

/// What kube-proxy (or k3s's embedded one) will write, as far as can be
/// read from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct KubeProxyConntrack {
    /// `conntrack.maxPerCore` (or `--conntrack-max-per-core`), with where
    /// it was found; `None` means the default.
    pub max_per_core: Option<Found<i64>>,
    /// `conntrack.min`.
    pub min: Option<Found<i64>>,
    /// `conntrack.udpTimeout`, seconds.
    pub udp_timeout: Option<Found<u64>>,
    /// `conntrack.udpStreamTimeout`, seconds.
    pub udp_stream_timeout: Option<Found<u64>>,
}

/// A value and where it came from (`file:line` or `command line`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Found<T> {
    /// The value.
    pub value: T,
    /// Where it was set.
    pub at: String,
}

impl KubeProxyConntrack {
    /// The nf_conntrack_max it writes on `cpus` CPUs, or `None` when it
    /// leaves the key alone (maxPerCore 0): max(maxPerCore × CPUs, min).
    pub fn max_written(&self, cpus: u64) -> Option<u64> {
        let per = self
            .max_per_core
            .as_ref()
            .map_or(KUBE_PROXY_MAX_PER_CORE, |f| f.value);
        if per <= 0 {
            return None;
        }
        let min = self.min.as_ref().map_or(KUBE_PROXY_MIN, |f| f.value).max(0);
        Some((per as u64).saturating_mul(cpus.max(1)).max(min as u64))
    }

    /// The value it writes to `key`, if it writes that key.
    pub fn writes(&self, key: &str, cpus: u64) -> Option<u64> {
        match key {
            KEY_MAX | KEY_MAX_ALIAS => self.max_written(cpus),
            // SetMax also raises hashsize to max/4 when it is smaller.
            KEY_BUCKETS => self.max_written(cpus).map(|m| m / 4),
            KEY_UDP_TIMEOUT => self
                .udp_timeout
                .as_ref()
                .map(|f| f.value)
                .filter(|v| *v > 0),
            KEY_UDP_TIMEOUT_STREAM => self
                .udp_stream_timeout
                .as_ref()
                .map(|f| f.value)
                .filter(|v| *v > 0),
            _ => None,
        }
    }

    /// The setting that stops it from writing `key`.
    pub fn stop_setting(key: &str) -> Option<&'static str> {
        match key {
            KEY_MAX | KEY_MAX_ALIAS | KEY_BUCKETS => Some("conntrack.maxPerCore: 0"),
            KEY_UDP_TIMEOUT => Some("conntrack.udpTimeout: 0s"),
            KEY_UDP_TIMEOUT_STREAM => Some("conntrack.udpStreamTimeout: 0s"),
            _ => None,
        }
    }
}

/// Parse the `conntrack:` block of a KubeProxyConfiguration (YAML or
/// JSON, block or one-line flow style). Only the four fields we need;
/// anything it does not understand is skipped. `file` names the source in
/// [`Found::at`].
pub fn parse_kube_proxy_config(text: &str, file: &str) -> KubeProxyConntrack {
    let mut out = KubeProxyConntrack::default();
    let mut block: Option<usize> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = strip_yaml_comment(raw);
        if line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let t = line.trim().trim_end_matches(',');
        if let Some(bi) = block {
            if indent <= bi && !t.starts_with('}') {
                block = None;
            } else {
                set_kp_field(&mut out, t, &format!("{file}:{}", i + 1));
                continue;
            }
        }
        let Some((k, rest)) = t.split_once(':') else {
            continue;
        };
        if unquote(k) != "conntrack" {
            continue;
        }
        let rest = rest.trim();
        if let Some(flow) = rest.strip_prefix('{') {
            let flow = flow.trim_end_matches(',').trim_end();
            let (inner, closed) = match flow.strip_suffix('}') {
                Some(inner) => (inner, true),
                None => (flow, false),
            };
            for item in inner.split(',') {
                set_kp_field(&mut out, item, &format!("{file}:{}", i + 1));
            }
            if !closed {
                block = Some(indent);
            }
        } else if rest.is_empty() {
            block = Some(indent);
        }
    }
    out
}

fn strip_yaml_comment(l: &str) -> &str {
    // A `#` starts a comment at line start or after whitespace (not inside
    // quotes, which these numeric fields never need).
    let b = l.as_bytes();
    for (i, c) in b.iter().enumerate() {
        if *c == b'#' && (i == 0 || b[i - 1].is_ascii_whitespace()) {
            return &l[..i];
        }
    }
    l
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
        .unwrap_or(s)
}

fn set_kp_field(out: &mut KubeProxyConntrack, item: &str, at: &str) {
    let Some((k, v)) = item.split_once(':') else {
        return;
    };
    let v = unquote(v.trim().trim_end_matches(',').trim_end_matches('}'));
    let found = |value| Found {
        value,
        at: at.to_string(),
    };
    match unquote(k) {
        "maxPerCore" => out.max_per_core = v.parse().ok().map(found),
        "min" => out.min = v.parse().ok().map(found),
        "udpTimeout" => {
            out.udp_timeout = parse_go_duration(v).map(|value| Found {
                value,
                at: at.to_string(),
            })
        }
        "udpStreamTimeout" => {
            out.udp_stream_timeout = parse_go_duration(v).map(|value| Found {
                value,
                at: at.to_string(),
            })
        }
        _ => {}
    }
}

/// A Go duration (`"1m30s"`, `"0s"`, `"250ms"`, `"0"`) in whole seconds
/// (sub-second parts are truncated, as the sysctl takes seconds).
pub fn parse_go_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    if s == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[u..];
        total += num * scale;
    }
    (0.0..1e12).contains(&total).then_some(total as u64)
}

/// kube-proxy command-line flags that override (or, without `--config`,
/// replace) the config file's conntrack fields, and the `--config` path.
pub fn parse_kube_proxy_args(args: &[String]) -> (Option<String>, KubeProxyConntrack) {
    let mut config = None;
    let mut out = KubeProxyConntrack::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].trim_start_matches('-');
        let (name, value) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (a, args.get(i + 1).cloned()),
        };
        let consumed = !a.contains('=');
        let at = || "command line".to_string();
        let mut used = true;
        match (name, value) {
            ("config", Some(v)) => config = Some(v),
            ("conntrack-max-per-core", Some(v)) => {
                out.max_per_core = v.parse().ok().map(|value| Found { value, at: at() })
            }
            ("conntrack-min", Some(v)) => {
                out.min = v.parse().ok().map(|value| Found { value, at: at() })
            }
            ("conntrack-udp-timeout", Some(v)) => {
                out.udp_timeout = parse_go_duration(&v).map(|value| Found { value, at: at() })
            }
            ("conntrack-udp-timeout-stream", Some(v)) => {
                out.udp_stream_timeout =
                    parse_go_duration(&v).map(|value| Found { value, at: at() })
            }
            _ => used = false,
        }
        i += if used && consumed { 2 } else { 1 };
    }
    (config, out)
}

/// k3s passes kube-proxy flags as `--kube-proxy-arg=NAME=VALUE`, on its
/// command line or as `kube-proxy-arg:` items in its config.yaml. Returns
/// the flags found in `text` (either form), in order.
pub fn k3s_kube_proxy_args(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for tok in text.split(|c: char| c.is_whitespace() || c == '\0' || c == ',' || c == '[') {
        let t = tok.trim_matches(|c| c == '"' || c == '\'' || c == ']');
        let t = t.strip_prefix("--kube-proxy-arg=").unwrap_or(t);
        for name in [
            "conntrack-max-per-core=",
            "conntrack-min=",
            "conntrack-udp-timeout=",
            "conntrack-udp-timeout-stream=",
        ] {
            if t.starts_with(name) {
                out.push(format!("--{t}"));
            }
        }
    }
    out
}

/// A running process that is a known writer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WriterProcess {
    /// Its pid.
    pub pid: u32,
    /// What it is.
    pub kind: WriterKind,
    /// The kube-proxy config file it was started with, if any (host path).
    pub config: Option<String>,
    /// That file was found and read (else its defaults are assumed).
    pub config_read: bool,
    /// What it writes, from its config and flags (kube-proxy, k3s).
    pub conntrack: KubeProxyConntrack,
    /// k3s started with `--disable-kube-proxy`.
    pub kube_proxy_disabled: bool,
    /// CPUs it may run on (kube-proxy scales max by this).
    pub cpus: u64,
}

/// The result of scanning the process list.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct ProcScan {
    /// Other processes are hidden from us (ProtectProc=invisible,
    /// hidepid=): absence of a writer proves nothing.
    pub hidden: bool,
    /// Known writers found.
    pub writers: Vec<WriterProcess>,
    /// Known writers' systemd units found in the file system, when the
    /// processes are hidden: (unit, path).
    pub units: Vec<(String, String)>,
}

/// Units of programs known to write the conntrack keys.
pub const WRITER_UNITS: &[&str] = &[
    "kube-proxy.service",
    "k3s.service",
    "k3s-agent.service",
    "calico-node.service",
];

/// Unit files of known writers, in the directories systemd loads units from.
pub fn writer_units(root: &SysRoot) -> Vec<(String, String)> {
    let dirs = [
        "etc/systemd/system",
        "run/systemd/system",
        "usr/local/lib/systemd/system",
        "usr/lib/systemd/system",
        "lib/systemd/system",
    ];
    let mut out: Vec<(String, String)> = Vec::new();
    for unit in WRITER_UNITS {
        if let Some(dir) = dirs.iter().find(|d| root.exists(&format!("{d}/{unit}"))) {
            out.push((unit.to_string(), format!("/{dir}/{unit}")));
        }
    }
    out
}

/// Scan `proc/*/comm` and `cmdline` for known writers.
pub fn scan_processes(root: &SysRoot) -> ProcScan {
    let pids: Vec<u32> = list_dir(root, "proc")
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    // PID 1 is always there on a host; not seeing it means we only see our
    // own processes.
    let hidden = !pids.contains(&1);
    let host_cpus = root
        .read_opt("sys/devices/system/cpu/online")
        .ok()
        .flatten()
        .and_then(|s| count_cpu_list(&s))
        .unwrap_or(1);
    let writers = pids
        .into_iter()
        .filter_map(|pid| read_writer(root, pid, host_cpus))
        .collect();
    let units = if hidden {
        writer_units(root)
    } else {
        Vec::new()
    };
    ProcScan {
        hidden,
        writers,
        units,
    }
}

/// Process `pid`, when it is a known writer: what it writes and where
/// that comes from. Its CPUs are those it may run on, else `host_cpus`.
fn read_writer(root: &SysRoot, pid: u32, host_cpus: u64) -> Option<WriterProcess> {
    let read = |what: &str| root.read_opt(&format!("proc/{pid}/{what}")).ok().flatten();
    let comm = read("comm").unwrap_or_default();
    let cmdline = read("cmdline").unwrap_or_default();
    let args: Vec<String> = cmdline
        .split('\0')
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    let argv0 = args.first().map(String::as_str).unwrap_or("");
    let kind = WriterKind::from_process(comm.trim(), argv0)?;
    let cpus = read("status")
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .and_then(count_cpu_list)
        })
        .unwrap_or(host_cpus);
    let mut w = WriterProcess {
        pid,
        kind,
        config: None,
        config_read: false,
        conntrack: KubeProxyConntrack::default(),
        kube_proxy_disabled: false,
        cpus,
    };
    match kind {
        WriterKind::KubeProxy => read_kube_proxy(root, &args, &mut w),
        WriterKind::K3s => read_k3s(root, &args, &mut w),
        WriterKind::CalicoNode => {}
    }
    Some(w)
}

/// kube-proxy's conntrack settings: its config file, then its flags.
fn read_kube_proxy(root: &SysRoot, args: &[String], w: &mut WriterProcess) {
    let (config, flags) = parse_kube_proxy_args(args.get(1..).unwrap_or(&[]));
    if let Some(path) = &config {
        // The path is in kube-proxy's mount namespace (often a
        // container): look through its root first.
        let text = read_conf(root, &format!("proc/{}/root/{}", w.pid, path))
            .ok()
            .flatten()
            .or_else(|| read_conf(root, path).ok().flatten());
        if let Some(t) = text {
            w.conntrack = parse_kube_proxy_config(&t, path);
            w.config_read = true;
        }
    }
    merge(&mut w.conntrack, flags);
    w.config = config;
}

/// k3s's embedded kube-proxy: disabled, or the kube-proxy-arg settings of
/// its command line and config file.
fn read_k3s(root: &SysRoot, args: &[String], w: &mut WriterProcess) {
    w.kube_proxy_disabled = args.iter().any(|a| a == "--disable-kube-proxy");
    let mut text = args.join(" ");
    for f in ["etc/rancher/k3s/config.yaml"] {
        if let Ok(Some(t)) = read_conf(root, f) {
            w.kube_proxy_disabled |= t.lines().any(|l| {
                let l = strip_yaml_comment(l).trim();
                l.starts_with("disable-kube-proxy:") && l.ends_with("true")
            });
            text.push('\n');
            text.push_str(&t);
            w.config = Some(format!("/{f}"));
            w.config_read = true;
        }
    }
    let (_, flags) = parse_kube_proxy_args(&k3s_kube_proxy_args(&text));
    w.conntrack = flags;
}

fn merge(into: &mut KubeProxyConntrack, flags: KubeProxyConntrack) {
    if flags.max_per_core.is_some() {
        into.max_per_core = flags.max_per_core;
    }
    if flags.min.is_some() {
        into.min = flags.min;
    }
    if flags.udp_timeout.is_some() {
        into.udp_timeout = flags.udp_timeout;
    }
    if flags.udp_stream_timeout.is_some() {
        into.udp_stream_timeout = flags.udp_stream_timeout;
    }
}

/// Count a CPU list such as `0-3,6,8-9`; `None` if malformed.
pub fn count_cpu_list(s: &str) -> Option<u64> {
    let mut n = 0u64;
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?),
            None => {
                let a = part.trim().parse::<u64>().ok()?;
                (a, a)
            }
        };
        n = n.checked_add(b.checked_sub(a)?.checked_add(1)?)?;
    }
    (n > 0).then_some(n)
}

// ---------------------------------------------------------------------
// The hint

/// One candidate for "who wrote this value".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Candidate {
    /// A sysctl.d line sets the key.
    SysctlFile {
        /// `file:line`.
        at: String,
        /// The value it sets.
        value: String,
        /// It is the line applied last.
        wins: bool,
    },
    /// A running process that writes the key.
    Process {
        /// kube-proxy, k3s, calico-node.
        name: String,
        /// Its pid.
        pid: u32,
        /// The value it writes, when known.
        value: Option<String>,
        /// The setting that stops it, with the file when known.
        stop: Option<String>,
    },
    /// The module option `hashsize=` (modprobe.d) or the module parameter.
    ModuleParam {
        /// Where.
        at: String,
        /// The value.
        value: String,
    },
    /// The value is the kernel's default. Why depends on whether the apply
    /// step ran in this boot ([`crate::state::applied`]): if it did, the module
    /// was (re)loaded after it, or a new namespace started with defaults;
    /// if not, nothing ever set the value.
    KernelDefault {
        /// The apply step ran in this boot; `None`: not known.
        apply_this_boot: Option<bool>,
    },
    /// Other processes are hidden; a running writer could not be seen.
    ProcessesHidden,
    /// A known writer is installed as a systemd unit (seen in the file
    /// system when the process list is hidden).
    Unit {
        /// `kube-proxy.service`.
        name: String,
        /// Where the unit file is.
        at: String,
    },
}

impl Candidate {
    /// One human-readable phrase.
    pub fn text(&self) -> String {
        match self {
            Candidate::SysctlFile { at, value, wins } => format!(
                "{at} sets {value}{}",
                if *wins { " (applied last at boot)" } else { "" }
            ),
            Candidate::Process {
                name,
                pid,
                value,
                stop,
            } => {
                let mut s = format!("{name} (pid {pid}) writes it");
                if let Some(v) = value {
                    s.push_str(&format!(" ({v})"));
                }
                if let Some(st) = stop {
                    s.push_str(&format!("; stop it with {st}"));
                }
                s
            }
            Candidate::ModuleParam { at, value } => format!("{at} sets hashsize={value}"),
            Candidate::KernelDefault {
                apply_this_boot: Some(true),
            } => "it is the kernel default: conntrack-guard-apply ran in this boot, so \
                 nf_conntrack was loaded or reloaded after it (or this namespace started \
                 with defaults)"
                .to_string(),
            Candidate::KernelDefault {
                apply_this_boot: Some(false),
            } => "it is the kernel default: conntrack-guard-apply has not run since boot \
                 (systemctl status conntrack-guard-apply)"
                .to_string(),
            Candidate::KernelDefault {
                apply_this_boot: None,
            } => "it is the kernel default (whether conntrack-guard-apply ran since boot \
                 cannot be read)"
                .to_string(),
            Candidate::Unit { name, at } => format!(
                "{name} is installed ({at}); kube-proxy and k3s write the conntrack maximum \
                 when they start (conntrack.maxPerCore: 0 stops that)"
            ),
            Candidate::ProcessesHidden => "other processes are hidden from this one \
                 (ProtectProc=invisible): run `conntrack-guard doctor` as root to look for \
                 kube-proxy"
                .to_string(),
        }
    }
}

/// Who probably wrote a foreign value into a key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hint {
    /// The key.
    pub key: String,
    /// The value found in the kernel.
    pub foreign_value: String,
    /// Candidates, most likely first.
    pub candidates: Vec<Candidate>,
}

impl Hint {
    /// One line, for `CONNTRACK_WRITER_HINT=` and `status`.
    pub fn text(&self) -> String {
        self.candidates
            .iter()
            .map(Candidate::text)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

/// Name the probable writer of `foreign_value` in `key`, from the sysctl.d
/// files, the process list and the module parameter. `None` when nothing
/// points anywhere. Reads files only; cheap enough for a drift event, not
/// for every sample.
pub fn hint(root: &SysRoot, key: &str, foreign_value: &str) -> Option<Hint> {
    hint_from(
        key,
        foreign_value,
        &sysctl_settings(root, key).0,
        &scan_processes(root),
        &module_param_sources(root, key),
        &crate::state::applied::read(root),
    )
}

/// The hashsize sources, for the bucket key only.
fn module_param_sources(root: &SysRoot, key: &str) -> Vec<(String, String)> {
    if key != KEY_BUCKETS {
        return Vec::new();
    }
    let mut out: Vec<(String, String)> = modprobe_lines(root, "nf_conntrack")
        .0
        .into_iter()
        .filter(|s| s.line.command == "options")
        .flat_map(|s| {
            let at = format!("{}:{}", s.file, s.line.line);
            s.line
                .args
                .into_iter()
                .filter_map(|a| a.strip_prefix("hashsize=").map(String::from))
                .map(move |v| (at.clone(), v))
        })
        .collect();
    if let Ok(Some(v)) = root.read_opt(crate::sysroot::HASHSIZE_PARAM) {
        out.push((
            format!("/{}", crate::sysroot::HASHSIZE_PARAM),
            v.trim().into(),
        ));
    }
    out
}

/// The pure part of [`hint`].
pub fn hint_from(
    key: &str,
    foreign: &str,
    sysctl: &[SysctlSetting],
    procs: &ProcScan,
    module: &[(String, String)],
    apply: &ApplyRun,
) -> Option<Hint> {
    let mut exact = Vec::new();
    let mut other = Vec::new();
    for s in sysctl {
        let c = Candidate::SysctlFile {
            at: s.location(),
            value: s.value.clone(),
            wins: s.wins,
        };
        if s.value == foreign {
            exact.push(c);
        } else {
            other.push(c);
        }
    }
    for w in &procs.writers {
        let Some((value, stop)) = process_write(w, key) else {
            continue;
        };
        let matches = value == foreign;
        let c = Candidate::Process {
            name: w.kind.name().into(),
            pid: w.pid,
            value: Some(value),
            stop,
        };
        if matches {
            exact.insert(0, c);
        } else {
            other.push(c);
        }
    }
    for (at, v) in module {
        if v == foreign {
            exact.push(Candidate::ModuleParam {
                at: at.clone(),
                value: v.clone(),
            });
        }
    }
    let default = match key {
        KEY_UDP_TIMEOUT => foreign == DEFAULT_UDP,
        KEY_UDP_TIMEOUT_STREAM => foreign == DEFAULT_UDP_STREAM,
        _ => false,
    };
    if default {
        exact.push(Candidate::KernelDefault {
            apply_this_boot: match apply {
                ApplyRun::ThisBoot { .. } => Some(true),
                ApplyRun::NotThisBoot => Some(false),
                ApplyRun::Unknown => None,
            },
        });
    }
    exact.extend(other);
    if procs.hidden {
        exact.extend(procs.units.iter().map(|(name, at)| Candidate::Unit {
            name: name.clone(),
            at: at.clone(),
        }));
        exact.push(Candidate::ProcessesHidden);
    }
    (!exact.is_empty()).then(|| Hint {
        key: key.to_string(),
        foreign_value: foreign.to_string(),
        candidates: exact,
    })
}

/// What the kube-proxy in `w` (its own or k3s's) writes to `key` when it
/// starts, and the setting that stops it; `None` when it leaves `key` alone.
fn process_write(w: &WriterProcess, key: &str) -> Option<(String, Option<String>)> {
    match w.kind {
        WriterKind::KubeProxy | WriterKind::K3s if !w.kube_proxy_disabled => {}
        _ => return None,
    }
    let v = w.conntrack.writes(key, w.cpus)?;
    let stop = KubeProxyConntrack::stop_setting(key).map(|s| match w.kind {
        WriterKind::K3s => format!(
            "kube-proxy-arg: [\"{}\"] in /etc/rancher/k3s/config.yaml",
            k3s_stop_arg(key)
        ),
        _ => match &w.config {
            Some(p) => format!("{s} in {p}"),
            None => format!("--{}", k3s_stop_arg(key)),
        },
    });
    Some((v.to_string(), stop))
}

fn k3s_stop_arg(key: &str) -> &'static str {
    match key {
        KEY_UDP_TIMEOUT => "conntrack-udp-timeout=0s",
        KEY_UDP_TIMEOUT_STREAM => "conntrack-udp-timeout-stream=0s",
        _ => "conntrack-max-per-core=0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sysctl_lines() {
        let t = "# c\n; c\n net.netfilter.nf_conntrack_max = 131072 \n-net/netfilter/nf_conntrack_udp_timeout=30\nnoequals\n=5\nnet.ipv4.conf.eth0/100.rp_filter=1\n";
        let l = parse_sysctl_conf(t);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].key, "net.netfilter.nf_conntrack_max");
        assert_eq!((l[0].line, l[0].value.as_str()), (3, "131072"));
        assert_eq!(l[1].key, "net.netfilter.nf_conntrack_udp_timeout");
        assert!(l[1].ignore_errors);
        assert_eq!(l[2].key, "net.ipv4.conf.eth0/100.rp_filter");
        assert_eq!(
            normalize_sysctl_key("net/ipv4/conf/eth0.100/rp_filter"),
            "net.ipv4.conf.eth0/100.rp_filter"
        );
    }

    #[test]
    fn globs_and_alias() {
        assert!(sysctl_key_matches("net.nf_conntrack_max", KEY_MAX));
        assert!(sysctl_key_matches("net.netfilter.nf_conntrack_*", KEY_MAX));
        assert!(sysctl_key_matches(
            "net.netfilter.nf_conntrack_udp_timeout?stream",
            KEY_UDP_TIMEOUT_STREAM
        ));
        assert!(!sysctl_key_matches(
            "net.netfilter.nf_conntrack_udp_timeout",
            KEY_UDP_TIMEOUT_STREAM
        ));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*b", "acbd"));
    }

    #[test]
    fn modprobe() {
        let t = "# x\noptions nf-conntrack hashsize=65536 \\\n  acct=1\nblacklist nf_conntrack_ipv4\ninstall nf_conntrack /bin/true\noptions\n";
        let l = parse_modprobe_conf(t);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].module, "nf_conntrack");
        assert_eq!(l[0].args, ["hashsize=65536", "acct=1"]);
        assert_eq!(l[0].line, 2);
        assert_eq!((l[2].command.as_str(), l[2].line), ("install", 5));
    }

    #[test]
    fn kube_proxy_yaml() {
        let t = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nconntrack:\n  # keep\n  maxPerCore: 32768 # per core\n  min: \"131072\"\n  udpTimeout: 1m0s\n  udpStreamTimeout: 0s\nmode: iptables\nmin: 5\n";
        let c = parse_kube_proxy_config(t, "/k.yaml");
        assert_eq!(c.max_per_core.as_ref().unwrap().value, 32768);
        assert_eq!(c.max_per_core.as_ref().unwrap().at, "/k.yaml:5");
        assert_eq!(c.min.as_ref().unwrap().value, 131072);
        assert_eq!(c.udp_timeout.as_ref().unwrap().value, 60);
        assert_eq!(c.udp_stream_timeout.as_ref().unwrap().value, 0);
        assert_eq!(c.max_written(2), Some(131072));
        assert_eq!(c.max_written(8), Some(262144));
        assert_eq!(c.writes(KEY_UDP_TIMEOUT_STREAM, 2), None);
        let flow = parse_kube_proxy_config("conntrack: {maxPerCore: 0, min: 1}\n", "f");
        assert_eq!(flow.max_written(4), None);
        let json = "{\n  \"kind\": \"KubeProxyConfiguration\",\n  \"conntrack\": {\n    \"maxPerCore\": 0,\n    \"udpTimeout\": \"10s\"\n  },\n  \"mode\": \"nftables\"\n}\n";
        let j = parse_kube_proxy_config(json, "j");
        assert_eq!(j.max_per_core.unwrap().value, 0);
        assert_eq!(j.udp_timeout.unwrap().value, 10);
        // Defaults when the block is absent.
        assert_eq!(KubeProxyConntrack::default().max_written(16), Some(524288));
    }

    #[test]
    fn kube_proxy_flags_and_k3s() {
        let a: Vec<String> = [
            "--config=/var/lib/kube-proxy/config.conf",
            "--conntrack-max-per-core",
            "0",
            "--v=2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (cfg, c) = parse_kube_proxy_args(&a);
        assert_eq!(cfg.as_deref(), Some("/var/lib/kube-proxy/config.conf"));
        assert_eq!(c.max_per_core.unwrap().value, 0);
        let k = k3s_kube_proxy_args("kube-proxy-arg:\n  - \"conntrack-max-per-core=0\"\n");
        assert_eq!(k, ["--conntrack-max-per-core=0"]);
        let k = k3s_kube_proxy_args("k3s\0server\0--kube-proxy-arg=conntrack-udp-timeout=5s\0");
        assert_eq!(k, ["--conntrack-udp-timeout=5s"]);
    }

    #[test]
    fn durations_and_cpus() {
        assert_eq!(parse_go_duration("1h2m3s"), Some(3723));
        assert_eq!(parse_go_duration("250ms"), Some(0));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("5x"), None);
        assert_eq!(count_cpu_list("0-3,6\n"), Some(5));
        assert_eq!(count_cpu_list("3-1"), None);
    }

    #[test]
    fn hint_ranks_exact_first() {
        let sysctl = vec![
            SysctlSetting {
                file: "/etc/sysctl.d/10-a.conf".into(),
                line: 1,
                written_key: KEY_MAX.into(),
                value: "65536".into(),
                wins: false,
            },
            SysctlSetting {
                file: "/etc/sysctl.d/90-k8s.conf".into(),
                line: 3,
                written_key: KEY_MAX_ALIAS.into(),
                value: "131072".into(),
                wins: true,
            },
        ];
        let h = hint_from(
            KEY_MAX,
            "131072",
            &sysctl,
            &ProcScan::default(),
            &[],
            &ApplyRun::Unknown,
        )
        .unwrap();
        assert_eq!(
            h.text(),
            "/etc/sysctl.d/90-k8s.conf:3 sets 131072 (applied last at boot); /etc/sysctl.d/10-a.conf:1 sets 65536"
        );
        let procs = ProcScan {
            hidden: true,
            writers: vec![],
            units: vec![(
                "kube-proxy.service".into(),
                "/etc/systemd/system/kube-proxy.service".into(),
            )],
        };
        let h = hint_from(
            KEY_UDP_TIMEOUT,
            "30",
            &[],
            &procs,
            &[],
            &ApplyRun::NotThisBoot,
        )
        .unwrap();
        assert!(matches!(h.candidates[0], Candidate::KernelDefault { .. }));
        // Only what is known: apply never ran, so nothing was "reloaded
        // after" it.
        assert!(h.text().contains("has not run since boot"), "{}", h.text());
        assert!(!h.text().contains("reloaded"), "{}", h.text());
        let ran = ApplyRun::ThisBoot { uptime: None };
        let h = hint_from(KEY_UDP_TIMEOUT, "30", &[], &procs, &[], &ran).unwrap();
        assert!(
            h.text().contains("loaded or reloaded after it"),
            "{}",
            h.text()
        );
        let h = hint_from(KEY_UDP_TIMEOUT, "30", &[], &procs, &[], &ApplyRun::Unknown).unwrap();
        assert!(h.text().contains("cannot be read"), "{}", h.text());
        assert!(
            h.text().contains("kube-proxy.service is installed"),
            "{}",
            h.text()
        );
        assert!(matches!(h.candidates[1], Candidate::Unit { .. }));
        assert!(matches!(h.candidates[2], Candidate::ProcessesHidden));
        assert!(hint_from(KEY_MAX, "5", &[], &ProcScan::default(), &[], &ran).is_none());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let _ = parse_sysctl_conf(&s);
            let _ = parse_modprobe_conf(&s);
            let _ = parse_kube_proxy_config(&s, "f");
            let _ = parse_go_duration(&s);
            let _ = count_cpu_list(&s);
            let _ = k3s_kube_proxy_args(&s);
            let _ = normalize_sysctl_key(&s);
            let _ = glob_match(&s, "net.netfilter.nf_conntrack_max");
            let args: Vec<String> = s.split(' ').map(String::from).collect();
            let _ = parse_kube_proxy_args(&args);
        }

        #[test]
        fn yaml_like_never_panics(lines in proptest::collection::vec("[ a-zA-Z:{}\",#0-9]{0,30}", 0..12)) {
            let _ = parse_kube_proxy_config(&lines.join("\n"), "f");
        }
    }
}
