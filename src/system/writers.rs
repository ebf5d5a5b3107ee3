// SPDX-License-Identifier: MIT OR Apache-2.0
//! Who else writes our keys: sysctl.d files, known processes (kube-proxy,
//! k3s, calico-node) and the module parameter behind the bucket count.
//!
//! The drift tracker and `status` call [`hint`] with the value they found
//! in the kernel; `doctor` uses the same readers for its checks. Everything
//! goes through [`SysRoot`]; the parsers take `&str` and never panic.

use std::path::{Component, Path, PathBuf};

use crate::config::{KEY_BUCKETS, KEY_MAX, KEY_UDP_TIMEOUT, KEY_UDP_TIMEOUT_STREAM};
use crate::state::applied::ApplyRun;
use crate::sysroot::{PathError, SysRoot};

/// The kernel's old alias of `nf_conntrack_max` in the initial namespace:
/// many guides still write this spelling.
const KEY_MAX_ALIAS: &str = "net.nf_conntrack_max";

// ---------------------------------------------------------------------
// Config directories (shared with doctor: sysctl.d, modprobe.d,
// modules-load.d, unit drop-ins all use the same masking rule).

/// The directories systemd-sysctl, kmod, systemd-modules-load and systemd
/// read `name` (`sysctl.d`, `systemd/system`, ...) from, in precedence
/// order: a file in an earlier directory masks a file of the same name in
/// a later one. `lib/` only matters on split-/usr systems; on merged /usr
/// it repeats `usr/lib` and the masking drops the repeats.
pub fn config_dirs(name: &str) -> [String; 5] {
    ["etc", "run", "usr/local/lib", "usr/lib", "lib"].map(|d| format!("{d}/{name}"))
}

/// One file of a `*.d` directory set, after masking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfFile {
    /// File name (the sort and masking key).
    pub name: String,
    /// Absolute path as the host sees it, e.g. `/etc/sysctl.d/90-k8s.conf`.
    pub path: String,
    /// A link to `/dev/null`: masks later files of the same name and sets
    /// nothing.
    pub masked: bool,
}

/// The files ending in `suffix` across [`config_dirs`]`(name)`, one per
/// name, the earliest directory winning, sorted by name: the order in which
/// systemd and kmod apply them.
pub fn conf_files(root: &SysRoot, name: &str, suffix: &str) -> Vec<ConfFile> {
    let mut out: Vec<ConfFile> = Vec::new();
    for dir in config_dirs(name) {
        for name in list_dir(root, &dir) {
            let seen = out.iter().any(|f| f.name == name);
            if !seen && name.ends_with(suffix) && !name.starts_with('.') {
                let path = format!("/{dir}/{name}");
                let masked = is_null_link(root, &path);
                out.push(ConfFile { name, path, masked });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// [`conf_files`] ending in `.conf`, then the older single file `legacy`
/// (`etc/sysctl.conf`, Debian's `etc/modules`), which is read after them
/// unless one of them is a link that `links_to_it`.
pub fn conf_files_and(
    root: &SysRoot,
    name: &str,
    legacy: &str,
    links_to_it: fn(&Path) -> bool,
) -> Vec<ConfFile> {
    let mut files = conf_files(root, name, ".conf");
    let linked = files
        .iter()
        .any(|f| read_link(root, &f.path).is_some_and(|t| links_to_it(&t)));
    if !linked && exists_nofollow(root, legacy) {
        let name = legacy.rsplit('/').next().unwrap_or(legacy).into();
        let (path, masked) = (format!("/{legacy}"), false);
        files.push(ConfFile { name, path, masked });
    }
    files
}

/// The text of each file that is not masked, in order, or the error that
/// reading it gave; absent files are left out.
pub fn read_confs<'a>(
    root: &'a SysRoot,
    files: &'a [ConfFile],
) -> impl Iterator<Item = (&'a str, Result<String, PathError>)> + 'a {
    files
        .iter()
        .filter(|f| !f.masked)
        .filter_map(|f| Some((f.path.as_str(), read_conf(root, &f.path).transpose()?)))
}

/// Names in a directory under the root; empty when it is absent or
/// unreadable (a config directory that does not exist sets nothing).
pub fn list_dir(root: &SysRoot, rel: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.path(rel))
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn read_link(root: &SysRoot, rel: &str) -> Option<PathBuf> {
    std::fs::read_link(root.path(rel)).ok()
}

/// Whether `rel` is a link to `/dev/null` (a masked file or unit).
pub fn is_null_link(root: &SysRoot, rel: &str) -> bool {
    read_link(root, rel).is_some_and(|t| t == Path::new("/dev/null"))
}

/// Whether a path exists under the root as anything, a dangling symlink
/// included (an enablement link points at a path under the real `/`).
pub fn exists_nofollow(root: &SysRoot, rel: &str) -> bool {
    std::fs::symlink_metadata(root.path(rel)).is_ok()
}

/// Read a config file under the root, following symlinks *inside* the
/// root (an absolute link target is taken relative to the root, as the
/// host would see it). `Ok(None)` when absent or masked. Bytes that are not
/// UTF-8 (a Latin-1 comment) read as U+FFFD: systemd and kmod read bytes,
/// so such a file still sets its keys.
pub fn read_conf(root: &SysRoot, rel: &str) -> Result<Option<String>, PathError> {
    let mut rel = PathBuf::from(rel.trim_start_matches('/'));
    // Symlink hops followed inside the root before giving up.
    for _ in 0..8 {
        let full = root.path(&rel.to_string_lossy());
        match std::fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                let t = std::fs::read_link(&full).map_err(PathError::on(&full))?;
                if t == Path::new("/dev/null") {
                    return Ok(None);
                }
                rel = if t.is_absolute() {
                    t.strip_prefix("/").unwrap_or(&t).to_path_buf()
                } else {
                    normalize(&rel.parent().unwrap_or(Path::new("")).join(t))
                };
            }
            Ok(_) => {
                return match std::fs::read(&full) {
                    Ok(text) => Ok(Some(String::from_utf8_lossy(&text).into_owned())),
                    // Removed since the look above: absent, as then.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(PathError { path: full, source }),
                };
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(PathError { path: full, source }),
        }
    }
    let loops = std::io::Error::other("too many levels of symbolic links");
    Err(PathError::on(&root.path(&rel.to_string_lossy()))(loops))
}

/// Resolve `.` and `..` lexically, never above the root.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => drop(out.pop()),
            Component::Normal(s) => out.push(s),
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
fn parse_sysctl_conf(text: &str) -> Vec<SysctlLine> {
    let lines = text.lines().enumerate();
    lines
        .filter_map(|(i, raw)| {
            let l = raw.trim();
            let (k, v) = l.split_once('=').filter(|_| !l.starts_with(['#', ';']))?;
            let k = k.trim();
            let (ignore_errors, k) = k.strip_prefix('-').map_or((false, k), |k| (true, k.trim()));
            (!k.is_empty()).then(|| SysctlLine {
                line: i + 1,
                key: normalize_sysctl_key(k),
                value: v.trim().to_string(),
                ignore_errors,
            })
        })
        .collect()
}

/// sysctl.d(5): if the first separator is a slash, the key is a path and
/// dots are part of names; otherwise dots separate. Returns dotted form.
fn normalize_sysctl_key(k: &str) -> String {
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
fn sysctl_key_matches(pattern: &str, key: &str) -> bool {
    let max = [KEY_MAX, KEY_MAX_ALIAS];
    let names: &[&str] = if max.contains(&key) { &max } else { &[key] };
    names.iter().any(|k| glob_match(pattern, k))
}

/// fnmatch(3) with `*` and `?` (systemd-sysctl's globs), no classes.
fn glob_match(pattern: &str, s: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    // ends[j]: the pattern read so far matches the first j characters.
    let mut ends: Vec<bool> = (0..=s.len()).map(|j| j == 0).collect();
    for p in pattern.chars() {
        let prev = ends.clone();
        for j in 0..=s.len() {
            ends[j] = match p {
                '*' => prev[j] || j > 0 && ends[j - 1],
                _ => j > 0 && prev[j - 1] && (p == '?' || p == s[j - 1]),
            };
        }
    }
    ends[s.len()]
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
    pub value: String,
    /// True for the assignment systemd-sysctl applies last (it wins).
    pub wins: bool,
}

impl SysctlSetting {
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// Every line of the sysctl configuration, with its file (host path), in
/// the order applied; unreadable files as errors beside them.
pub fn sysctl_conf(root: &SysRoot) -> (Vec<(String, SysctlLine)>, Vec<PathError>) {
    // `sysctl --system` (procps) reads /etc/sysctl.conf after the
    // directories; Debian links it into systemd-sysctl's view as
    // /etc/sysctl.d/99-sysctl.conf.
    let to_conf = |t: &Path| t == Path::new("/etc/sysctl.conf") || t == Path::new("../sysctl.conf");
    let files = conf_files_and(root, "sysctl.d", "etc/sysctl.conf", to_conf);
    parse_confs(root, &files, parse_sysctl_conf)
}

/// Every assignment of `key` in `lines` ([`sysctl_conf`]), in the order
/// applied. The last explicit one wins; a glob only wins when no explicit
/// line names the key (systemd-sysctl's rule).
pub fn sysctl_settings(lines: &[(String, SysctlLine)], key: &str) -> Vec<SysctlSetting> {
    let mut out: Vec<SysctlSetting> = lines
        .iter()
        .filter(|(_, l)| sysctl_key_matches(&l.key, key))
        .map(|(file, l)| SysctlSetting {
            file: file.clone(),
            line: l.line,
            written_key: l.key.clone(),
            value: l.value.clone(),
            wins: false,
        })
        .collect();
    let explicit = |s: &SysctlSetting| !s.written_key.contains(['*', '?']);
    if let Some(i) = out.iter().rposition(explicit).or(out.len().checked_sub(1)) {
        out[i].wins = true;
    }
    out
}

/// The lines `parse` finds in each file that is read, with the file (host
/// path), in order; the errors of those that cannot be read beside them.
fn parse_confs<T>(
    root: &SysRoot,
    files: &[ConfFile],
    parse: fn(&str) -> Vec<T>,
) -> (Vec<(String, T)>, Vec<PathError>) {
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    for (file, text) in read_confs(root, files) {
        match text {
            Ok(text) => out.extend(parse(&text).into_iter().map(|l| (file.to_string(), l))),
            Err(e) => errors.push(e),
        }
    }
    (out, errors)
}

// ---------------------------------------------------------------------
// modprobe.d (the hashsize option also sets the bucket count)

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
fn parse_modprobe_conf(text: &str) -> Vec<ModprobeLine> {
    super::logical_lines(text)
        .filter_map(|(line, text)| modprobe_line(line, &text))
        .collect()
}

fn modprobe_line(line: usize, text: &str) -> Option<ModprobeLine> {
    let mut words = text.split_whitespace();
    let command = words.next().filter(|c| !c.starts_with('#'))?.to_string();
    let module = words.next()?.replace('-', "_");
    let args = words.map(String::from).collect();
    Some(ModprobeLine {
        line,
        command,
        module,
        args,
    })
}

/// Every modprobe.d command naming `module`, in the order kmod reads them,
/// with its file (host path).
pub fn modprobe_lines(
    root: &SysRoot,
    module: &str,
) -> (Vec<(String, ModprobeLine)>, Vec<PathError>) {
    let files = conf_files(root, "modprobe.d", ".conf");
    let (mut lines, errors) = parse_confs(root, &files, parse_modprobe_conf);
    lines.retain(|(_, l)| l.module == module);
    (lines, errors)
}

// ---------------------------------------------------------------------
// Processes

/// A known foreign writer that can run on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    pub fn name(self) -> &'static str {
        match self {
            WriterKind::KubeProxy => "kube-proxy",
            WriterKind::K3s => "k3s",
            WriterKind::CalicoNode => "calico-node",
        }
    }

    /// Recognize a process by its comm (max 15 bytes) or argv[0].
    fn from_process(comm: &str, argv0: &str) -> Option<Self> {
        let base = argv0.rsplit('/').next().unwrap_or("");
        let is = |n: &str| comm == n || base == n;
        if is("kube-proxy") {
            Some(WriterKind::KubeProxy)
        } else if is("k3s") || comm.starts_with("k3s-") {
            Some(WriterKind::K3s)
        } else {
            is("calico-node").then_some(WriterKind::CalicoNode)
        }
    }
}

/// What kube-proxy (or k3s's embedded one) will write, as far as can be
/// read from its configuration. `None` means the default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KubeProxyConntrack {
    /// `conntrack.maxPerCore` (or `--conntrack-max-per-core`).
    pub max_per_core: Option<Found<i64>>,
    /// `conntrack.min`.
    pub min: Option<Found<i64>>,
    /// `conntrack.udpTimeout`, seconds.
    pub udp_timeout: Option<Found<u64>>,
    /// `conntrack.udpStreamTimeout`, seconds.
    pub udp_stream_timeout: Option<Found<u64>>,
}

/// A value and where it came from (`file:line` or `command line`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<T> {
    pub value: T,
    pub at: String,
}

fn val<T: Copy>(f: &Option<Found<T>>) -> Option<T> {
    f.as_ref().map(|f| f.value)
}

/// The conntrack fields of a KubeProxyConfiguration, as (config key,
/// command-line flag), in the order of [`KubeProxyConntrack::set`].
const KP_FIELDS: [(&str, &str); 4] = [
    ("maxPerCore", "conntrack-max-per-core"),
    ("min", "conntrack-min"),
    ("udpTimeout", "conntrack-udp-timeout"),
    ("udpStreamTimeout", "conntrack-udp-timeout-stream"),
];

impl KubeProxyConntrack {
    /// Set field `i` of [`KP_FIELDS`] from its text, found `at`; a value
    /// that does not parse leaves it unset.
    fn set(&mut self, i: usize, v: &str, at: &str) {
        let at = at.to_string();
        match i {
            0 => self.max_per_core = v.parse().ok().map(|value| Found { value, at }),
            1 => self.min = v.parse().ok().map(|value| Found { value, at }),
            2 => self.udp_timeout = parse_go_duration(v).map(|value| Found { value, at }),
            _ => self.udp_stream_timeout = parse_go_duration(v).map(|value| Found { value, at }),
        }
    }

    /// maxPerCore and min, kube-proxy's defaults
    /// (KubeProxyConntrackConfiguration) where unset.
    pub fn per_core_and_min(&self) -> (i64, i64) {
        let per = val(&self.max_per_core).unwrap_or(32_768);
        (per, val(&self.min).unwrap_or(131_072))
    }

    /// The nf_conntrack_max it writes on `cpus` CPUs, or `None` when it
    /// leaves the key alone (maxPerCore 0): max(maxPerCore × CPUs, min).
    pub fn max_written(&self, cpus: u64) -> Option<u64> {
        let (per, min) = self.per_core_and_min();
        let max = (per as u64).saturating_mul(cpus.max(1));
        (per > 0).then_some(max.max(min.max(0) as u64))
    }

    /// The value it writes to `key`, if it writes that key.
    pub fn writes(&self, key: &str, cpus: u64) -> Option<u64> {
        match key {
            KEY_MAX | KEY_MAX_ALIAS => self.max_written(cpus),
            // SetMax also raises hashsize to max/4 when it is smaller.
            KEY_BUCKETS => self.max_written(cpus).map(|m| m / 4),
            KEY_UDP_TIMEOUT => val(&self.udp_timeout).filter(|v| *v > 0),
            KEY_UDP_TIMEOUT_STREAM => val(&self.udp_stream_timeout).filter(|v| *v > 0),
            _ => None,
        }
    }

    /// The setting that stops it from writing `key` (one it writes): the
    /// config field, and the command-line flag.
    pub fn stop_setting(key: &str) -> (String, String) {
        let (i, zero) = match key {
            KEY_UDP_TIMEOUT => (2, "0s"),
            KEY_UDP_TIMEOUT_STREAM => (3, "0s"),
            _ => (0, "0"),
        };
        let (field, flag) = KP_FIELDS[i];
        (
            format!("conntrack.{field}: {zero}"),
            format!("{flag}={zero}"),
        )
    }
}

/// Parse the `conntrack:` block of a KubeProxyConfiguration (YAML or
/// JSON, block or one-line flow style). Only the four fields we need;
/// anything it does not understand is skipped. `file` names the source in
/// [`Found::at`].
fn parse_kube_proxy_config(text: &str, file: &str) -> KubeProxyConntrack {
    let mut out = KubeProxyConntrack::default();
    let mut block: Option<usize> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = strip_yaml_comment(raw);
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{file}:{}", i + 1);
        let indent = line.len() - line.trim_start().len();
        let t = line.trim().trim_end_matches(',');
        if let Some(bi) = block {
            if indent > bi || t.starts_with('}') {
                set_kp_field(&mut out, t, &at);
                continue;
            }
            block = None;
        }
        let Some((_, rest)) = t.split_once(':').filter(|(k, _)| unquote(k) == "conntrack") else {
            continue;
        };
        let rest = rest.trim();
        if let Some(flow) = rest.strip_prefix('{') {
            let flow = flow.trim_end_matches(',').trim_end();
            let inner = flow.strip_suffix('}');
            for item in inner.unwrap_or(flow).split(',') {
                set_kp_field(&mut out, item, &at);
            }
            block = inner.is_none().then_some(indent);
        } else if rest.is_empty() {
            block = Some(indent);
        }
    }
    out
}

/// A `#` starts a comment at line start or after whitespace (not inside
/// quotes, which these numeric fields never need).
fn strip_yaml_comment(l: &str) -> &str {
    let b = l.as_bytes();
    let mut hashes = l.match_indices('#');
    let at = hashes.find(|(i, _)| *i == 0 || b[i - 1].is_ascii_whitespace());
    &l[..at.map_or(l.len(), |(i, _)| i)]
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
    if let Some(i) = KP_FIELDS.iter().position(|(name, _)| *name == unquote(k)) {
        out.set(i, v, at);
    }
}

/// A Go duration (`"1m30s"`, `"0s"`, `"250ms"`, `"0"`) in whole seconds
/// (sub-second parts are truncated, as the sysctl takes seconds).
fn parse_go_duration(s: &str) -> Option<u64> {
    let mut rest = s.trim();
    match rest {
        "0" => return Some(0),
        "" => return None,
        _ => {}
    }
    let mut total = 0f64;
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
fn parse_kube_proxy_args(args: &[String]) -> (Option<String>, KubeProxyConntrack) {
    let (mut config, mut out) = (None, KubeProxyConntrack::default());
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let a = arg.trim_start_matches('-');
        let (name, inline) = a.split_once('=').map_or((a, None), |(n, v)| (n, Some(v)));
        let field = KP_FIELDS.iter().position(|(_, flag)| *flag == name);
        if name != "config" && field.is_none() {
            continue;
        }
        // `--flag value`: the value is the next argument.
        let Some(v) = inline.or_else(|| args.next().map(String::as_str)) else {
            continue;
        };
        match field {
            Some(f) => out.set(f, v, "command line"),
            None => config = Some(v.to_string()),
        }
    }
    (config, out)
}

/// k3s passes kube-proxy flags as `--kube-proxy-arg=NAME=VALUE`, on its
/// command line or as `kube-proxy-arg:` items in its config.yaml. Returns
/// the flags found in `text` (either form), in order.
fn k3s_kube_proxy_args(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for tok in text.split(|c: char| c.is_whitespace() || c == '\0' || c == ',' || c == '[') {
        let t = tok.trim_matches(|c| c == '"' || c == '\'' || c == ']');
        let t = t.strip_prefix("--kube-proxy-arg=").unwrap_or(t);
        if KP_FIELDS
            .iter()
            .any(|(_, flag)| t.strip_prefix(flag).is_some_and(|r| r.starts_with('=')))
        {
            out.push(format!("--{t}"));
        }
    }
    out
}

impl WriterProcess {
    /// The value its kube-proxy (its own or k3s's) writes to `key` when it
    /// starts; `None` when it leaves `key` alone.
    pub fn writes(&self, key: &str) -> Option<u64> {
        let runs = self.kind != WriterKind::CalicoNode && !self.kube_proxy_disabled;
        self.conntrack.writes(key, self.cpus).filter(|_| runs)
    }
}

/// A running process that is a known writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterProcess {
    pub pid: u32,
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

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcScan {
    /// Other processes are hidden from us (ProtectProc=invisible,
    /// hidepid=): absence of a writer proves nothing.
    pub hidden: bool,
    pub writers: Vec<WriterProcess>,
    /// Known writers' systemd units found in the file system, when the
    /// processes are hidden: (unit, path).
    pub units: Vec<(String, String)>,
}

/// Unit files of programs known to write the conntrack keys, in the
/// directories systemd loads units from.
fn writer_units(root: &SysRoot) -> Vec<(String, String)> {
    let units = [
        "kube-proxy.service",
        "k3s.service",
        "k3s-agent.service",
        "calico-node.service",
    ];
    let find = |u: &&str| match find_unit(root, u)? {
        (path, false) => Some((u.to_string(), path)),
        (_, true) => None, // masked: it does not run
    };
    units.iter().filter_map(find).collect()
}

/// Where a unit is installed (host path), and whether it is masked: the
/// first directory systemd loads units from that holds the name wins, a
/// link to `/dev/null` there masks the unit whatever the later ones hold.
pub fn find_unit(root: &SysRoot, unit: &str) -> Option<(String, bool)> {
    let mut paths = config_dirs("systemd/system")
        .into_iter()
        .map(|d| format!("/{d}/{unit}"));
    let path = paths.find(|p| exists_nofollow(root, p))?;
    let masked = is_null_link(root, &path);
    Some((path, masked))
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
        .read_some("sys/devices/system/cpu/online")
        .and_then(|s| count_cpu_list(&s))
        .unwrap_or(1);
    let writers = pids
        .into_iter()
        .filter_map(|pid| read_writer(root, pid, host_cpus));
    let units = if hidden {
        writer_units(root)
    } else {
        Vec::new()
    };
    ProcScan {
        hidden,
        writers: writers.collect(),
        units,
    }
}

/// Process `pid`, when it is a known writer: what it writes and where
/// that comes from. Its CPUs are those it may run on, else `host_cpus`.
fn read_writer(root: &SysRoot, pid: u32, host_cpus: u64) -> Option<WriterProcess> {
    let read = |what: &str| {
        root.read_some(&format!("proc/{pid}/{what}"))
            .unwrap_or_default()
    };
    let cmdline = read("cmdline");
    let args: Vec<String> = cmdline
        .split('\0')
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    let kind =
        WriterKind::from_process(read("comm").trim(), args.first().map_or("", String::as_str))?;
    let cpus = read("status")
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(count_cpu_list)
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

/// kube-proxy's conntrack settings: its config file, then its flags (a
/// flag overrides the config file's field).
fn read_kube_proxy(root: &SysRoot, args: &[String], w: &mut WriterProcess) {
    let (config, flags) = parse_kube_proxy_args(args.get(1..).unwrap_or(&[]));
    if let Some(path) = &config {
        // The path is in kube-proxy's mount namespace (often a
        // container): look through its root first.
        let read = |p: &str| read_conf(root, p).ok().flatten();
        if let Some(t) = read(&format!("proc/{}/root/{path}", w.pid)).or_else(|| read(path)) {
            w.conntrack = parse_kube_proxy_config(&t, path);
            w.config_read = true;
        }
    }
    let c = &mut w.conntrack;
    c.max_per_core = flags.max_per_core.or(c.max_per_core.take());
    c.min = flags.min.or(c.min.take());
    c.udp_timeout = flags.udp_timeout.or(c.udp_timeout.take());
    c.udp_stream_timeout = flags.udp_stream_timeout.or(c.udp_stream_timeout.take());
    w.config = config;
}

/// k3s's embedded kube-proxy: disabled, or the kube-proxy-arg settings of
/// its command line and config file.
fn read_k3s(root: &SysRoot, args: &[String], w: &mut WriterProcess) {
    const CONFIG: &str = "etc/rancher/k3s/config.yaml";
    w.kube_proxy_disabled = args.iter().any(|a| a == "--disable-kube-proxy");
    let mut text = args.join(" ");
    if let Ok(Some(t)) = read_conf(root, CONFIG) {
        w.kube_proxy_disabled |= t.lines().any(|l| {
            let l = strip_yaml_comment(l).trim();
            l.starts_with("disable-kube-proxy:") && l.ends_with("true")
        });
        text = format!("{text}\n{t}");
        w.config = Some(format!("/{CONFIG}"));
        w.config_read = true;
    }
    w.conntrack = parse_kube_proxy_args(&k3s_kube_proxy_args(&text)).1;
}

/// Count a CPU list such as `0-3,6,8-9`; `None` if malformed.
fn count_cpu_list(s: &str) -> Option<u64> {
    let mut n = 0u64;
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        n = n.checked_add(b.checked_sub(a)?.checked_add(1)?)?;
    }
    (n > 0).then_some(n)
}

// ---------------------------------------------------------------------
// The hint

/// Name the probable writer of `foreign_value` in `key`, from the sysctl.d
/// files, the process list and the module parameter, as one line (for
/// `CONNTRACK_WRITER_HINT=` and `status`). `None` when nothing points
/// anywhere. Reads files only; cheap enough for a drift event, not for
/// every sample.
pub fn hint(root: &SysRoot, key: &str, foreign_value: &str) -> Option<String> {
    let mut module = Vec::new();
    // The hashsize sources, for the bucket key only.
    if key == KEY_BUCKETS {
        let lines = modprobe_lines(root, "nf_conntrack").0;
        for (file, l) in lines.iter().filter(|(_, l)| l.command == "options") {
            let at = format!("{file}:{}", l.line);
            let sizes = l.args.iter().filter_map(|a| a.strip_prefix("hashsize="));
            module.extend(sizes.map(|v| (at.clone(), v.to_string())));
        }
        let param = crate::sysroot::HASHSIZE_PARAM;
        if let Some(v) = root.read_some(param) {
            module.push((format!("/{param}"), v.trim().into()));
        }
    }
    let (sysctl, procs) = (
        sysctl_settings(&sysctl_conf(root).0, key),
        scan_processes(root),
    );
    let apply = crate::state::applied::read(root);
    hint_from(key, foreign_value, &sysctl, &procs, &module, &apply).map(|h| h.join("; "))
}

/// The pure part of [`hint`]: who probably wrote a foreign value into a
/// key, the candidates most likely first.
fn hint_from(
    key: &str,
    foreign: &str,
    sysctl: &[SysctlSetting],
    procs: &ProcScan,
    module: &[(String, String)],
    apply: &ApplyRun,
) -> Option<Vec<String>> {
    let file = |s: &SysctlSetting| match s.wins {
        true => format!("{} sets {} (applied last at boot)", s.location(), s.value),
        false => format!("{} sets {}", s.location(), s.value),
    };
    let (exact, other): (Vec<_>, Vec<_>) = sysctl.iter().partition(|s| s.value == foreign);
    let mut exact: Vec<String> = exact.into_iter().map(file).collect();
    let mut other: Vec<String> = other.into_iter().map(file).collect();
    for (value, c) in procs.writers.iter().filter_map(|w| process_write(w, key)) {
        if value == foreign {
            exact.insert(0, c);
        } else {
            other.push(c);
        }
    }
    for (at, value) in module.iter().filter(|(_, v)| v == foreign) {
        exact.push(format!("{at} sets hashsize={value}"));
    }
    // The kernel's defaults of the UDP timeouts (seconds).
    let default = match key {
        KEY_UDP_TIMEOUT => Some("30"),
        KEY_UDP_TIMEOUT_STREAM => Some("120"),
        _ => None,
    };
    // The kernel's default: why depends on whether the apply step ran in
    // this boot ([`crate::state::applied`]): if it did, the module was
    // (re)loaded after it, or a new namespace started with defaults; if
    // not, nothing ever set the value.
    if default == Some(foreign) {
        let why = match apply {
            ApplyRun::ThisBoot { .. } => {
                ": conntrack-guard-apply ran in this boot, so nf_conntrack was loaded or \
                 reloaded after it (or this namespace started with defaults)"
            }
            ApplyRun::NotThisBoot => {
                ": conntrack-guard-apply has not run since boot (systemctl status \
                 conntrack-guard-apply)"
            }
            ApplyRun::Unknown => " (whether conntrack-guard-apply ran since boot cannot be read)",
        };
        exact.push(format!("it is the kernel default{why}"));
    }
    exact.extend(other);
    // Other processes are hidden: a running writer could not be seen, but
    // a known writer installed as a systemd unit can.
    if procs.hidden {
        exact.extend(procs.units.iter().map(|(name, at)| {
            format!(
                "{name} is installed ({at}); kube-proxy and k3s write the conntrack maximum \
                 when they start (conntrack.maxPerCore: 0 stops that)"
            )
        }));
        let hidden = "other processes are hidden from this one (ProtectProc=invisible): run \
                      `conntrack-guard doctor` as root to look for kube-proxy";
        exact.push(hidden.to_string());
    }
    (!exact.is_empty()).then_some(exact)
}

/// What the kube-proxy in `w` (its own or k3s's) writes to `key` when it
/// starts, and the candidate's text; `None` when it leaves `key` alone.
fn process_write(w: &WriterProcess, key: &str) -> Option<(String, String)> {
    let v = w.writes(key)?;
    let (setting, flag) = KubeProxyConntrack::stop_setting(key);
    let stop = match (w.kind, &w.config) {
        (WriterKind::K3s, _) => {
            format!("kube-proxy-arg: [\"{flag}\"] in /etc/rancher/k3s/config.yaml")
        }
        (_, Some(p)) => format!("{setting} in {p}"),
        (_, None) => format!("--{flag}"),
    };
    let (name, pid) = (w.kind.name(), w.pid);
    let text = format!("{name} (pid {pid}) writes it ({v}); stop it with {stop}");
    Some((v.to_string(), text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hidden_processes_name_the_installed_writer_units_but_not_masked_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let root = SysRoot::at(tmp.path());
        let unit_dir = |d: &str| {
            let p = tmp.path().join(d).join("systemd/system");
            std::fs::create_dir_all(&p).unwrap();
            p
        };
        // No proc/1: other processes are hidden, so the units are looked for.
        std::fs::create_dir_all(tmp.path().join("proc/900")).unwrap();
        // kube-proxy: masked in /etc, which wins over the file in /usr/lib.
        std::os::unix::fs::symlink("/dev/null", unit_dir("etc").join("kube-proxy.service"))
            .unwrap();
        std::fs::write(unit_dir("usr/lib").join("kube-proxy.service"), "").unwrap();
        std::fs::write(unit_dir("usr/lib").join("k3s.service"), "").unwrap();
        let scan = scan_processes(&root);
        assert!(scan.hidden);
        let k3s = (
            "k3s.service".to_string(),
            "/usr/lib/systemd/system/k3s.service".to_string(),
        );
        assert_eq!(scan.units, vec![k3s]);
        assert_eq!(
            find_unit(&root, "kube-proxy.service"),
            Some(("/etc/systemd/system/kube-proxy.service".to_string(), true))
        );
    }

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
            h.join("; "),
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
        assert!(h[0].starts_with("it is the kernel default"));
        // Only what is known: apply never ran, so nothing was "reloaded
        // after" it.
        assert!(
            h.join("; ").contains("has not run since boot"),
            "{}",
            h.join("; ")
        );
        assert!(!h.join("; ").contains("reloaded"), "{}", h.join("; "));
        let ran = ApplyRun::ThisBoot { uptime: None };
        let h = hint_from(KEY_UDP_TIMEOUT, "30", &[], &procs, &[], &ran).unwrap();
        assert!(
            h.join("; ").contains("loaded or reloaded after it"),
            "{}",
            h.join("; ")
        );
        let h = hint_from(KEY_UDP_TIMEOUT, "30", &[], &procs, &[], &ApplyRun::Unknown).unwrap();
        assert!(h.join("; ").contains("cannot be read"), "{}", h.join("; "));
        assert!(
            h.join("; ").contains("kube-proxy.service is installed"),
            "{}",
            h.join("; ")
        );
        assert!(h[1].starts_with("kube-proxy.service is installed ("));
        assert!(h[2].starts_with("other processes are hidden"));
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
