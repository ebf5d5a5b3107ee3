// SPDX-License-Identifier: MIT OR Apache-2.0
//! `conntrack-guard apply`: make sure the module is present, write every
//! configured key, read each one back and verify it.
//!
//! All checks that can fail on the configuration (keys that do not exist,
//! memory cost) run before the first write, so a bad config writes nothing.
//! After that, a failed key does not stop the others: the report is complete.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::assess::lower::check_lower_max;
use crate::config::{Config, ConfigError, Knob, Policy, KEY_BUCKETS, KEY_COUNT, KEY_MAX};
use crate::config::{KEY_UDP_TIMEOUT, KEY_UDP_TIMEOUT_STREAM};
use crate::exit;
use crate::host::Host;
use crate::kernel::hashsize::{self, kernel_buckets, KernelTarget};
use crate::kernel::module::{self, ModuleError, ModuleState};
use crate::kernel::sysctl::compact;
use crate::kernel::{kernel_u64, ram_bytes, read_current, same_value, slab};
use crate::report::events::{Event, Priority, Sink};
use crate::report::ids;
use crate::report::output;
use crate::report::table::human_bytes;
use crate::state::grown::{self, Remembered};
use crate::sysroot::{PathError, SysRoot, HASHSIZE_PARAM};

/// Which way a write moves a value (`Change`: not numbers, as a
/// multi-value sysctl). Lowering is always said, never a side effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Raise,
    Lower,
    Change,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Already at its target; not written.
    Unchanged,
    /// `at-least`: the kernel's value is larger and stays.
    KeptLarger,
    /// Written and verified.
    Changed(Direction),
    /// Dry run: would be written.
    WouldChange(Direction),
    /// Not written: lowering max below the entries in use would start
    /// dropping new flows at once.
    Refused { reason: String },
    /// Dry run: the module is absent, so the value is not known yet.
    WouldSet,
    /// Could not be set or verified (`errno`: of the failed write, if any).
    Failed { reason: String, errno: Option<i32> },
}

impl Outcome {
    fn label(&self) -> &str {
        match self {
            Outcome::Unchanged => "unchanged",
            Outcome::KeptLarger => "kept (larger)",
            Outcome::Changed(d) => ["raised", "lowered", "changed"][*d as usize],
            Outcome::WouldChange(d) => ["would raise", "would lower", "would change"][*d as usize],
            Outcome::WouldSet => "would set",
            Outcome::Refused { .. } => "REFUSED",
            Outcome::Failed { .. } => "FAILED",
        }
    }
}

/// One row of the report: the key's value before (if readable), its
/// target, the value read back after writing (none in a dry run), and why
/// the target differs from the configured value, if it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    key: String,
    before: Option<String>,
    target: String,
    after: Option<String>,
    outcome: Outcome,
    note: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Report {
    rows: Vec<Row>,
    module: ModuleState,
    dry_run: bool,
    /// Non-fatal warnings (memory above 10% of RAM, ...).
    warnings: Vec<String>,
    source: String,
    /// The grown max this run started from instead of the configured one.
    grown: Option<(Remembered, GrownFrom)>,
    /// What happened to the growth records (discarded, written), for the
    /// operator: not warnings.
    notes: Vec<String>,
}

/// Why apply stopped before writing: a bad configuration (78), or
/// conntrack cannot be had (69) or loading was refused (77).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Module(#[from] ModuleError),
}

impl Report {
    pub(crate) fn changed(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Changed(_)))
            .count()
    }

    pub(crate) fn failed(&self) -> impl Iterator<Item = &Row> {
        self.rows
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed { .. } | Outcome::Refused { .. }))
    }

    /// 0 when every key verified, 77 when a failure was a permission
    /// problem (EACCES, EPERM, EROFS), else 1.
    pub(crate) fn exit_code(&self) -> i32 {
        use nix::libc::{EACCES, EPERM, EROFS};
        let code = |r: &Row| match r.outcome {
            Outcome::Failed {
                errno: Some(EACCES | EPERM | EROFS),
                ..
            } => exit::NOPERM,
            _ => exit::FAILURE,
        };
        // The worst wins: NOPERM (77) above FAILURE (1).
        self.failed().map(code).max().unwrap_or(exit::OK)
    }

    pub(crate) fn table(&self) -> String {
        let mut s = String::new();
        let w = self.rows.iter().map(|r| r.key.len()).fold(3, usize::max);
        let _ = writeln!(
            s,
            "{:w$}  {:>10}  {:>10}  {:>10}  RESULT",
            "KEY", "BEFORE", "TARGET", "AFTER"
        );
        for r in &self.rows {
            let _ = write!(
                s,
                "{:w$}  {:>10}  {:>10}  {:>10}  {}",
                r.key,
                r.before.as_deref().map_or("-".into(), compact),
                compact(&r.target),
                r.after.as_deref().map(compact).unwrap_or_default(),
                r.outcome.label()
            );
            if let Outcome::Failed { reason, .. } | Outcome::Refused { reason } = &r.outcome {
                let _ = write!(s, ": {reason}");
            }
            if let Some(note) = &r.note {
                let _ = write!(s, " ({note})");
            }
            s.push('\n');
        }
        s
    }

    pub(crate) fn summary(&self) -> String {
        let failed = self.failed().count();
        let would = |r: &&Row| matches!(r.outcome, Outcome::WouldChange(_) | Outcome::WouldSet);
        let done = format!("{} changed, {failed} failed", self.changed());
        let (verb, done) = match (self.dry_run, failed) {
            (true, _) => {
                let would = self.rows.iter().filter(would).count();
                ("dry run", format!("{would} would change, nothing written"))
            }
            (false, 0) => ("settings applied", done),
            (false, _) => ("apply FAILED", done),
        };
        let mut s = format!(
            "{verb}: {} key{} from {}, {done}; {}",
            self.rows.len(),
            if self.rows.len() == 1 { "" } else { "s" },
            self.source,
            self.module.describe()
        );
        for r in self.failed() {
            let _ = write!(s, "; {} failed", r.key);
        }
        if let Some((r, from)) = &self.grown {
            let _ = write!(s, "; max {} {} ({})", r.max, from.describe(), r.describe());
        }
        s
    }

    pub(crate) fn event(&self) -> Event {
        let failed = self.failed().count();
        let (prio, name, id) = if failed > 0 {
            (Priority::Err, "apply_failed", ids::APPLY_FAILED)
        } else {
            (Priority::Info, "applied", ids::APPLIED)
        };
        let mut ev = Event::new(prio, name, id, self.summary());
        for (field, key) in [
            ("CONNTRACK_MAX", KEY_MAX),
            ("CONNTRACK_BUCKETS", KEY_BUCKETS),
            ("CONNTRACK_UDP_TIMEOUT", KEY_UDP_TIMEOUT),
            ("CONNTRACK_UDP_TIMEOUT_STREAM", KEY_UDP_TIMEOUT_STREAM),
        ] {
            let row = self.rows.iter().find(|r| r.key == key);
            let value = row.map(|r| r.after.clone().or(r.before.clone()).unwrap_or_default());
            ev = ev.field_opt(field, value);
        }
        if let Some((r, _)) = &self.grown {
            ev = ev
                .field("CONNTRACK_GROWN_MAX", r.max)
                .field("CONNTRACK_CONFIGURED_MAX", r.configured)
                .field("CONNTRACK_GROWN_AT", grown::fmt_utc(r.at))
                .field("CONNTRACK_GROW_REASON", &r.reason);
        }
        let module = match self.module {
            ModuleState::Present => "present",
            ModuleState::Loaded(_) => "loaded",
            ModuleState::WouldLoad(_) => "absent",
        };
        ev.field("CONNTRACK_CHANGED", self.changed())
            .field("CONNTRACK_FAILED", failed)
            .field("CONNTRACK_MODULE", module)
    }
}

/// The verdict on memory: error above 50% of RAM, warning above 10%.
pub(crate) fn memory_verdict(cost: u64, ram: u64) -> Result<Option<String>, String> {
    let pct = cost as f64 * 100.0 / ram.max(1) as f64;
    let text = format!(
        "a full table would use {} of kernel memory ({pct:.1}% of {} RAM)",
        human_bytes(cost),
        human_bytes(ram)
    );
    if pct > 50.0 {
        Err(format!("{text}; more than 50% is refused, lower max"))
    } else if pct > 10.0 {
        Ok(Some(format!("{text}; more than 10% is a lot")))
    } else {
        Ok(None)
    }
}

fn config_error(cfg: &Config, line: Option<usize>, key: &str, message: String) -> ConfigError {
    ConfigError {
        file: cfg
            .source
            .clone()
            .unwrap_or_else(|| "built-in defaults".into()),
        line,
        key: Some(key.to_string()),
        message,
        source: None,
    }
}

/// Checks that need the kernel, run before any write: every `[sysctl]` key
/// exists, and the table fits in memory (`ram`: MemTotal, if readable).
/// Returns warnings.
pub(crate) fn preflight(
    root: &SysRoot,
    cfg: &Config,
    module: &ModuleState,
    ram: Option<u64>,
    entry_bytes: u64,
) -> Result<Vec<String>, ConfigError> {
    let module_absent = matches!(module, ModuleState::WouldLoad(_));
    for e in &cfg.sysctl {
        // In a dry run without the module, netfilter keys cannot be checked yet.
        if module_absent && e.key.starts_with("net.netfilter.") {
            continue;
        }
        let why = match root
            .check_sysctl(&e.key)
            .and_then(|()| root.read_sysctl(&e.key))
        {
            Ok(Some(_)) => continue,
            Ok(None) => format!(
                "no such kernel setting ({} does not exist)",
                root.sysctl_path(&e.key).display()
            ),
            Err(err) => err.to_string(),
        };
        let key = format!("sysctl.\"{}\"", e.key);
        return Err(config_error(cfg, e.line, &key, why));
    }
    let c = &cfg.conntrack;
    let max = c.max.value().or_else(|| kernel_u64(root, KEY_MAX));
    let buckets = c
        .buckets_value()
        .or_else(|| kernel_u64(root, KEY_BUCKETS))
        .unwrap_or(0);
    let (Some(max), Some(ram)) = (max, ram) else {
        return Ok(Vec::new());
    };
    match memory_verdict(slab::worst_case_bytes(max, buckets, entry_bytes), ram) {
        Err(e) if matches!(c.max, Knob::Set(_)) => Err(config_error(cfg, None, "conntrack.max", e)),
        Ok(w) => Ok(w.into_iter().collect()),
        Err(w) => Ok(vec![w]),
    }
}

/// Run apply on `host`. `wait` bounds the wait for the keys after loading
/// the module; the bucket count is rounded to the host's page size.
pub(crate) fn apply(
    host: &Host,
    cfg: &Config,
    dry_run: bool,
    wait: Duration,
) -> Result<Report, ApplyError> {
    let root = &host.root;
    // Each of these is read once per run: RAM serves the growth budget and
    // the memory check; the slab the same and the handoff, but it exists
    // only once the module is loaded, so a run that loads it reads it again.
    let ram = ram_bytes(root);
    let slab_before = slab::measured_entry_bytes(root);
    let entry_before = slab::entry_bytes_from(root, slab_before);
    let start = start(root, cfg, host.page_size, ram, entry_before);
    let buckets_at_load = match &start.grown {
        Some((r, _)) if r.buckets > 0 => Some(r.buckets),
        _ => cfg.conntrack.buckets_value(),
    };
    let module = module::ensure(root, host.loader.as_ref(), buckets_at_load, dry_run, wait)?;
    let (measured, entry_bytes) = match module {
        ModuleState::Loaded(_) => {
            let measured = slab::measured_entry_bytes(root);
            (measured, slab::entry_bytes_from(root, measured))
        }
        _ => (slab_before, entry_before),
    };
    let mut warnings = preflight(root, cfg, &module, ram, entry_bytes)?;
    warnings.extend(start.warnings.iter().cloned());
    if !dry_run {
        warnings.extend(ensure_ctnetlink(host));
    }
    // A max the watchdog grew (this boot, or remembered from an earlier
    // one) is the target, not the configured one: a restart of this step
    // (a config reload) never shrinks it, and a boot starts from it.
    let grown_record = start.grown.as_ref().map(|(r, _)| r);
    let targets = grown::expected_targets(
        hashsize::targets(cfg, host.page_size),
        grown_record,
        cfg.conntrack.max.value(),
        u64::MAX,
    );
    let grown_note = grown_record.map(Remembered::describe);
    let befores: Vec<Option<String>> = targets
        .iter()
        .map(|t| read_current(root, &t.key).ok().flatten())
        .collect();
    let lowering_max = targets.iter().zip(&befores).any(|(t, before)| {
        t.key == KEY_MAX
            && matches!(
                (before.as_deref().map(str::parse::<u64>), t.value.parse::<u64>()),
                (Some(Ok(now)), Ok(want)) if want < now
            )
    });
    let in_use = lowering_max.then(|| entries_in_use(host)).flatten();
    let would_load = matches!(module, ModuleState::WouldLoad(_));
    // Buckets above the configured ones come with the grown max.
    let configured_buckets = cfg
        .conntrack
        .buckets_value()
        .map(|b| kernel_buckets(b, host.page_size).to_string());
    let mut rows = Vec::with_capacity(targets.len());
    for (t, before) in targets.iter().zip(befores) {
        let note = match t.key.as_str() {
            KEY_MAX => t.rounding_note().or(grown_note.clone()),
            KEY_BUCKETS
                if t.requested.is_none()
                    && grown_record.is_some()
                    && configured_buckets.as_deref() != Some(t.value.as_str()) =>
            {
                Some("with the grown max".into())
            }
            _ => t.rounding_note(),
        };
        let (outcome, after) = match decide(t, before.as_deref(), in_use) {
            // A dry run leaves the "after" column empty: nothing was done.
            Step::Keep(outcome) => (outcome, before.clone().filter(|_| !dry_run)),
            Step::Write(_) if dry_run && would_load => (Outcome::WouldSet, None),
            Step::Write(d) if dry_run => (Outcome::WouldChange(d), None),
            Step::Write(d) => write_and_verify(root, host.root_user, t, d),
        };
        rows.push(Row {
            key: t.key.clone(),
            before,
            target: t.value.clone(),
            after,
            outcome,
            note,
        });
    }
    // A dry run says what it would forget instead of acting.
    let notes = if dry_run {
        let would = |(rel, why): &(_, String)| format!("{why} (would remove /{rel})");
        start.forget.iter().map(would).collect()
    } else {
        let notes = start.record(root, &rows, &mut warnings);
        handoff_entry_bytes(root, measured, &mut warnings);
        notes
    };
    Ok(Report {
        rows,
        module,
        dry_run,
        warnings,
        source: cfg.source_name(),
        grown: start.grown,
        notes,
    })
}

/// Hand the bytes per entry measured here (root reads the slab) to the
/// watchdog, which cannot: its growth budget then counts the same figure
/// as `plan`, `status` and this step.
fn handoff_entry_bytes(root: &SysRoot, measured: Option<u64>, warnings: &mut Vec<String>) {
    // Rewritten only when the figure changed (a rerun of apply).
    let Some(n) = measured.filter(|n| slab::read_handoff(root) != Some(*n)) else {
        return;
    };
    if let Err(e) = slab::write_handoff(root, n) {
        warnings.push(format!(
            "cannot hand the measured {n} B per entry to the watchdog: {e} \
             (it counts {} B per entry)",
            slab::DEFAULT_ENTRY_BYTES
        ));
    }
}

/// Where a run's max comes from when it is not the configured one: the
/// watchdog grew it earlier this boot ([`grown::THIS_BOOT`]), or it is
/// remembered from an earlier boot ([`grown::REMEMBERED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrownFrom {
    ThisBoot,
    Remembered,
}

impl GrownFrom {
    fn describe(self) -> &'static str {
        match self {
            GrownFrom::ThisBoot => "as grown by the watchdog this boot",
            GrownFrom::Remembered => "remembered from an earlier boot",
        }
    }
}

/// What apply starts from: the configured max, or a grown one, and what to
/// do with the growth records. Decided before anything is written.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Start {
    /// The grown max (and the buckets to set with it) to apply, and where it
    /// comes from.
    grown: Option<(Remembered, GrownFrom)>,
    /// Records that are not used, said as warnings.
    warnings: Vec<String>,
    /// Records to remove on a real run, each with why.
    forget: Vec<(&'static str, String)>,
}

/// The inputs of [`decide_start`], read by [`start`].
#[derive(Debug, Clone)]
pub(crate) struct StartInputs {
    /// The configured max; `None` for `max = "keep"`.
    configured_max: Option<u64>,
    /// The configured buckets as the kernel stores them; `None` for keep.
    configured_buckets: Option<u64>,
    /// `[grow] remember` (and `enabled`).
    remember: bool,
    /// The budget in bytes on this machine, and as configured (for
    /// messages).
    budget_bytes: u64,
    budget: String,
    entry_bytes: u64,
    /// The page size the kernel rounds buckets to.
    page_size: u64,
}

/// Read the growth records and decide [`Start`] (`ram`: MemTotal, if
/// readable; `entry_bytes`: [`slab::entry_bytes`]).
pub(crate) fn start(
    root: &SysRoot,
    cfg: &Config,
    page_size: u64,
    ram: Option<u64>,
    entry_bytes: u64,
) -> Start {
    let inputs = StartInputs {
        configured_max: cfg.conntrack.max.value(),
        configured_buckets: cfg
            .conntrack
            .buckets_value()
            .map(|b| kernel_buckets(b, page_size)),
        // Growth turned off: a boot does not start from an old growth
        // either (that would be a change the operator just switched off).
        remember: cfg.grow.remember && cfg.grow.enabled,
        budget_bytes: crate::observe::budget_bytes(ram, cfg.grow.budget),
        budget: cfg.grow.budget.to_string(),
        entry_bytes,
        page_size,
    };
    let this_boot = crate::observe::this_boot(root, cfg);
    // The remembered file is read only when it can matter.
    let remembered = || grown::read(root, grown::REMEMBERED).map_err(|e| e.to_string());
    decide_start(&inputs, &this_boot, remembered)
}

/// Decide [`Start`] from this boot's record as every reader judges it
/// ([`crate::observe::this_boot`]) and, with `remember`, the remembered
/// one, read through `remembered` only when needed. Pure but for that
/// read:
/// - this boot's trusted record wins: the watchdog grew it after this
///   boot's apply, so a rerun keeps it;
/// - a record of either kind grown from another configured max is
///   discarded: editing max in the conffile is the operator deciding again;
/// - a remembered max above the configured one, within the budget as
///   apply sizes it at boot ([`crate::assess::sizing::boot_cap`]), is
///   started from, buckets with it (towards max / 4, never fewer than
///   configured);
/// - anything unreadable, hostile or above the budget is ignored with a
///   warning (the remembered file is left for a person to look at).
pub(crate) fn decide_start(
    i: &StartInputs,
    this_boot: &crate::observe::ThisBoot,
    remembered: impl FnOnce() -> Result<Option<Remembered>, String>,
) -> Start {
    let mut st = Start::default();
    let Some(configured) = i.configured_max else {
        return st;
    };
    if let Some(r) = this_boot.grown() {
        st.grown = Some((r.clone(), GrownFrom::ThisBoot));
        return st;
    }
    if let Some(r) = &this_boot.record {
        if r.configured != configured {
            let why = format!(
                "max is configured {configured} now, not {}: the max {} grown from it is forgotten",
                r.configured, r.max
            );
            st.forget.push((grown::THIS_BOOT, why.clone()));
            st.forget.push((grown::REMEMBERED, why));
            return st;
        }
    }
    if let Some(why) = &this_boot.ignored {
        st.warnings.push(format!("{why}; the record is replaced"));
        st.forget
            .push((grown::THIS_BOOT, "this boot's record was not usable".into()));
    }
    if !i.remember {
        return st;
    }
    let r = match remembered() {
        Ok(Some(r)) => r,
        Ok(None) => return st,
        Err(e) => {
            st.warnings.push(format!(
                "ignoring the remembered growth: {e}; the configured max {configured} \
                 applies (remove the file to silence this)"
            ));
            return st;
        }
    };
    let cap = crate::assess::sizing::boot_cap(
        i.budget_bytes,
        i.entry_bytes,
        i.configured_buckets.unwrap_or(0),
        i.page_size,
    );
    match grown::verdict(&r, configured, cap) {
        grown::Verdict::Use(max) => {
            let buckets = i
                .configured_buckets
                .map_or(0, |b| kernel_buckets(max / 4, i.page_size).max(b));
            st.grown = Some((
                Remembered {
                    max,
                    buckets,
                    configured,
                    ..r
                },
                GrownFrom::Remembered,
            ));
        }
        grown::Verdict::ConfigChanged { then, now } => st.forget.push((
            grown::REMEMBERED,
            format!(
                "max is configured {now} now, not {then}: the remembered max {} ({}) \
                 is forgotten",
                r.max,
                r.describe()
            ),
        )),
        grown::Verdict::AboveBudget { max, cap } => st.warnings.push(format!(
            "ignoring the remembered max {max} ({}): above the {} budget, which allows \
             at most {cap} here; the configured max {configured} applies",
            r.describe(),
            i.budget
        )),
        grown::Verdict::NotAbove => st.warnings.push(format!(
            "ignoring the remembered max {}: not above the configured {configured}",
            r.max
        )),
    }
    st
}

impl Start {
    /// After the writes of a real run: forget what is to be forgotten, and
    /// write this boot's record when a remembered max was applied (its max
    /// row verified), so the watchdog, `status` and `doctor` expect it.
    /// Returns notes; failures become warnings.
    fn record(&self, root: &SysRoot, rows: &[Row], warnings: &mut Vec<String>) -> Vec<String> {
        let mut notes = Vec::new();
        for (rel, why) in &self.forget {
            match grown::remove(root, rel) {
                Ok(true) => notes.push(format!("{why} (removed /{rel})")),
                Ok(false) => {}
                Err(e) => warnings.push(format!("cannot forget the growth: {e}")),
            }
        }
        let verified = rows.iter().any(|r| {
            r.key == KEY_MAX
                && matches!(
                    r.outcome,
                    Outcome::Changed(_) | Outcome::Unchanged | Outcome::KeptLarger
                )
        });
        if let (Some((r, GrownFrom::Remembered)), true) = (&self.grown, verified) {
            if let Err(e) = grown::write(root, grown::THIS_BOOT, r) {
                warnings.push(format!(
                    "cannot record the remembered max for this boot: {e}; the watchdog \
                     and status may take {} for drift",
                    r.max
                ));
            }
        }
        notes
    }
}

/// The watchdog reads the conntrack counters over ctnetlink first, which
/// lives in the module nf_conntrack_netlink. This step holds CAP_SYS_MODULE
/// and the watchdog does not, so load it here when the kernel says it is
/// missing. Never fatal: without it the watchdog falls back to procfs.
fn ensure_ctnetlink(host: &Host) -> Option<String> {
    // Without module support there is nothing to load, and a loaded module
    // has its /sys/module directory: ctnetlink itself is asked only when
    // neither tells (not loaded, or built in).
    let root = &host.root;
    if !root.exists("proc/modules") || root.exists(&format!("sys/module/{CTNETLINK_MODULE}")) {
        return None;
    }
    if !matches!(host.netlink.stats_cpu(), Err(e) if e.is_not_loaded()) {
        return None;
    }
    let e = host.loader.load(CTNETLINK_MODULE, "").err()?;
    Some(format!(
        "could not load {CTNETLINK_MODULE} ({e}); the watchdog reads the \
         counters from /proc/net/stat/nf_conntrack where that exists"
    ))
}

pub(crate) const CTNETLINK_MODULE: &str = "nf_conntrack_netlink";

/// The most entries any network namespace holds: max is global and each
/// namespace's count is held against it. This namespace's count always;
/// every other namespace's too when this process may enter them (root on
/// the real machine: a hand-run `apply`). The boot step, a dynamic user,
/// sees its own namespace, which at boot is nearly empty anyway.
fn entries_in_use(host: &Host) -> Option<u64> {
    let own = kernel_u64(&host.root, KEY_COUNT);
    if !(host.kernel_access && host.root_user) {
        return own;
    }
    let found = crate::netns::scan(&host.root);
    crate::netns::sample::sample_all(&found)
        .into_iter()
        .filter_map(|s| s.ok().map(|s| s.count))
        .chain(own)
        .max()
}

/// What apply does with one key: leave it, with this outcome, or write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Keep(Outcome),
    Write(Direction),
}

/// Decide one key from its target, the kernel's value and the entries in
/// use in this namespace. Pure.
pub(crate) fn decide(t: &KernelTarget, before: Option<&str>, in_use: Option<u64>) -> Step {
    let Some(before) = before else {
        return Step::Write(Direction::Change);
    };
    if same_value(before, &t.value) {
        return Step::Keep(Outcome::Unchanged);
    }
    let (Ok(now), Ok(want)) = (before.trim().parse::<u64>(), t.value.parse::<u64>()) else {
        return Step::Write(Direction::Change);
    };
    if want > now {
        return Step::Write(Direction::Raise);
    }
    if t.policy == Policy::AtLeast {
        return Step::Keep(Outcome::KeptLarger);
    }
    if let Some(count) = in_use.filter(|_| t.key == KEY_MAX) {
        if let Err(r) = check_lower_max(now, want, count) {
            return Step::Keep(Outcome::Refused {
                reason: format!("{r}; wait for the table to drain, or set a larger max"),
            });
        }
    }
    Step::Write(Direction::Lower)
}

/// Write `t` (moving it `d`), read it back and verify it: the outcome and
/// the value read back.
fn write_and_verify(
    root: &SysRoot,
    root_user: bool,
    t: &KernelTarget,
    d: Direction,
) -> (Outcome, Option<String>) {
    let mut written = root.write_sysctl(&t.key, &t.value);
    // The bucket sysctl is writable only from the initial netns and only
    // since 4.x; the module parameter resizes the same table.
    let fallback = t.key == KEY_BUCKETS && written.is_err() && root.exists(HASHSIZE_PARAM);
    if fallback && root.write(HASHSIZE_PARAM, &t.value).is_ok() {
        written = Ok(());
    }
    if let Err(e) = written {
        let (reason, errno) = (write_reason(&e, root_user), e.errno());
        let after = read_current(root, &t.key).ok().flatten();
        return (Outcome::Failed { reason, errno }, after);
    }
    let (reason, errno, after) = match read_current(root, &t.key) {
        Err(e) => (format!("read-back failed: {e}"), e.errno(), None),
        Ok(None) => {
            let path = root.sysctl_path(&t.key);
            let reason = format!("{} vanished after the write", path.display());
            (reason, None, None)
        }
        Ok(Some(v)) if same_value(&v, &t.value) => return (Outcome::Changed(d), Some(v)),
        Ok(Some(v)) => {
            let reason = format!(
                "wrote {} but the kernel reads back {}",
                t.value,
                compact(&v)
            );
            (reason, None, Some(v))
        }
    };
    (Outcome::Failed { reason, errno }, after)
}

fn write_reason(e: &PathError, root_user: bool) -> String {
    match e.errno() {
        Some(nix::libc::EROFS) => format!(
            "{e}: /proc/sys is read-only here; inside a container? run `conntrack-guard apply` on the host"
        ),
        Some(nix::libc::EACCES) | Some(nix::libc::EPERM) => {
            let who = if root_user {
                "as root: in a child network namespace this key is read-only, or CAP_NET_ADMIN is missing"
            } else {
                "not running as root: needs root with CAP_NET_ADMIN"
            };
            format!("{e} ({who})")
        }
        Some(nix::libc::EINVAL) => format!("{e}: the kernel rejected the value"),
        Some(nix::libc::ENOENT) => format!("{e}: no such key"),
        _ => e.to_string(),
    }
}

/// `apply` on `host`, reporting to `sink`; returns the exit code.
pub fn run(host: &Host, config_path: Option<&Path>, dry_run: bool, sink: &mut dyn Sink) -> i32 {
    let report = crate::config::load(&host.root, config_path)
        .map_err(ApplyError::from)
        .and_then(|cfg| apply(host, &cfg, dry_run, Duration::from_secs(5)));
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            let (what, code) = match &e {
                ApplyError::Config(_) => ("invalid configuration: ", exit::CONFIG),
                ApplyError::Module(m) if m.is_permission() => ("", exit::NOPERM),
                ApplyError::Module(_) => ("", exit::UNAVAILABLE),
            };
            output::err(&format!("conntrack-guard: {what}{e}\nNothing was written."));
            return code;
        }
    };
    // The mark that this boot's apply ran, for the writer hints: left
    // whenever the kernel was written, whatever the verdict.
    if !dry_run {
        if let Err(e) = crate::state::applied::write(&host.root) {
            output::err(&format!(
                "conntrack-guard: warning: cannot leave the mark that apply ran: {e} \
                 (writer hints will say it has not run since boot)"
            ));
        }
    }
    for w in &report.warnings {
        output::err(&format!("conntrack-guard: warning: {w}"));
    }
    for n in &report.notes {
        output::err(&format!("conntrack-guard: {n}"));
    }
    let mut text = report.table();
    // Under systemd, stdout is the journal too and the summary goes there as
    // a structured entry below; print it only where people read stdout.
    if dry_run || !systemd_journal_logger::connected_to_journal() {
        text.push_str(&report.summary());
        text.push('\n');
    }
    // The kernel is already written: a failed stdout must not hide that
    // from the journal, and does not change the verdict.
    let _ = output::out(&text)
        .map_err(|e| output::err(&format!("conntrack-guard: cannot write to stdout: {e}")));
    if !dry_run {
        sink.emit(&report.event());
    }
    report.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::parse_memtotal;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// ctnetlink as not loaded, and a loader that refuses; both write down
    /// that they were asked.
    struct Asked(Rc<RefCell<Vec<&'static str>>>);
    impl crate::kernel::ctstats::CtNetlink for Asked {
        fn stats_cpu(
            &self,
        ) -> Result<crate::kernel::ctstats::CtTable, crate::kernel::nfnl::NetlinkError> {
            self.0.borrow_mut().push("netlink");
            let e = std::io::Error::from_raw_os_error(nix::libc::EOPNOTSUPP);
            Err(crate::kernel::nfnl::NetlinkError::NotLoaded(e))
        }
    }
    impl module::ModuleLoader for Asked {
        fn load(&self, name: &str, _options: &str) -> Result<(), module::LoadError> {
            self.0.borrow_mut().push("load");
            Err(module::LoadError::Permission(name.into()))
        }
    }

    #[test]
    fn ctnetlink_is_asked_only_when_sysfs_cannot_tell() {
        let dir = tempfile::tempdir().unwrap();
        let asked = Rc::new(RefCell::new(Vec::new()));
        let mut host =
            Host::at(SysRoot::at(dir.path())).with_netlink(Box::new(Asked(asked.clone())));
        host.loader = Box::new(Asked(asked.clone()));
        // No module support: nothing to load, nothing asked.
        assert_eq!(ensure_ctnetlink(&host), None);
        assert!(asked.borrow().is_empty());
        // Modules, ctnetlink not among the loaded ones: asked, then loaded;
        // the refusal is a warning.
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::write(dir.path().join("proc/modules"), "").unwrap();
        let w = ensure_ctnetlink(&host).expect("a warning");
        assert!(w.starts_with("could not load nf_conntrack_netlink"), "{w}");
        assert_eq!(*asked.borrow(), ["netlink", "load"]);
        // Loaded as a module: /sys/module says so, nothing else is asked.
        asked.borrow_mut().clear();
        std::fs::create_dir_all(dir.path().join("sys/module/nf_conntrack_netlink")).unwrap();
        assert_eq!(ensure_ctnetlink(&host), None);
        assert!(asked.borrow().is_empty());
    }

    #[test]
    fn memory_thresholds() {
        let gib = 1u64 << 30;
        assert_eq!(memory_verdict(gib / 20, gib).unwrap(), None);
        assert!(memory_verdict(gib / 5, gib).unwrap().is_some());
        assert!(memory_verdict(gib * 3 / 5, gib).is_err());
        assert_eq!(
            slab::worst_case_bytes(1_048_576, 262_144, 384),
            1_048_576 * 384 + 262_144 * 8
        );
    }

    #[test]
    fn value_comparison_ignores_tabs() {
        assert!(same_value("4096\t87380\t6291456", "4096 87380 6291456"));
        assert!(!same_value("10", "15"));
    }

    fn inputs() -> StartInputs {
        StartInputs {
            configured_max: Some(262_144),
            configured_buckets: Some(65_536),
            remember: true,
            budget_bytes: 512 << 20,
            budget: "512MiB".into(),
            entry_bytes: 384,
            page_size: 4096,
        }
    }

    fn rec(max: u64, configured: u64) -> Remembered {
        Remembered {
            max,
            buckets: 65_536,
            configured,
            at: 1_796_652_180,
            reason: "early_drop +1234".into(),
        }
    }

    fn boot(
        r: Option<Remembered>,
        trusted: bool,
        ignored: Option<&str>,
    ) -> crate::observe::ThisBoot {
        crate::observe::ThisBoot {
            record: r,
            trusted,
            ignored: ignored.map(String::from),
            cap: u64::MAX,
        }
    }

    #[test]
    fn a_boot_starts_from_the_remembered_max_with_buckets_for_it() {
        let st = decide_start(&inputs(), &boot(None, false, None), || {
            Ok(Some(rec(524_288, 262_144)))
        });
        let (r, from) = st.grown.unwrap();
        assert_eq!(from, GrownFrom::Remembered);
        assert_eq!(
            (r.max, r.buckets, r.configured),
            (524_288, 131_072, 262_144)
        );
        assert_eq!(r.reason, "early_drop +1234");
        assert!(st.warnings.is_empty() && st.forget.is_empty());
    }

    #[test]
    fn this_boots_record_wins_and_the_remembered_file_is_not_read() {
        let st = decide_start(
            &inputs(),
            &boot(Some(rec(1_048_576, 262_144)), true, None),
            || panic!("not read"),
        );
        assert_eq!(
            st.grown.unwrap(),
            (rec(1_048_576, 262_144), GrownFrom::ThisBoot)
        );
    }

    #[test]
    fn editing_max_forgets_both_records() {
        let mut i = inputs();
        i.configured_max = Some(300_000);
        let st = decide_start(
            &i,
            &boot(Some(rec(524_288, 262_144)), false, Some("x")),
            || panic!("not read"),
        );
        assert!(st.grown.is_none());
        let rels: Vec<_> = st.forget.iter().map(|(r, _)| *r).collect();
        assert_eq!(rels, [grown::THIS_BOOT, grown::REMEMBERED]);
        assert!(st.forget[0].1.contains("configured 300000 now, not 262144"));
        // At boot (no record under /run): the remembered one alone.
        let st = decide_start(&i, &boot(None, false, None), || {
            Ok(Some(rec(524_288, 262_144)))
        });
        assert!(st.grown.is_none());
        assert_eq!(st.forget.len(), 1);
        assert_eq!(st.forget[0].0, grown::REMEMBERED);
        assert!(st.forget[0]
            .1
            .contains("remembered max 524288 (grown on 2026-12-07 14:03 UTC"));
    }

    #[test]
    fn hostile_or_over_budget_is_ignored_with_a_warning() {
        let st = decide_start(&inputs(), &boot(None, false, None), || {
            Err("/var/lib/conntrack-guard/grown: is a symbolic link; not followed".into())
        });
        assert!(st.grown.is_none() && st.forget.is_empty());
        assert!(
            st.warnings[0].contains("symbolic link"),
            "{:?}",
            st.warnings
        );
        // 512 MiB holds about 1.38M entries at 384 B plus buckets.
        let st = decide_start(&inputs(), &boot(None, false, None), || {
            Ok(Some(rec(2_097_152, 262_144)))
        });
        assert!(st.grown.is_none());
        assert!(
            st.warnings[0].contains("above the 512MiB budget, which allows at most 13"),
            "{:?}",
            st.warnings
        );
        // RAM unknown with a share of it: nothing is trusted.
        let mut i = inputs();
        i.budget_bytes = 0;
        let st = decide_start(&i, &boot(None, false, None), || {
            Ok(Some(rec(524_288, 262_144)))
        });
        assert!(st.grown.is_none());
        // Not above the configured max.
        let st = decide_start(&inputs(), &boot(None, false, None), || {
            Ok(Some(rec(100, 262_144)))
        });
        assert!(st.grown.is_none() && st.warnings[0].contains("not above"));
    }

    #[test]
    fn remember_false_or_max_keep_ignores_the_remembered_file() {
        let mut i = inputs();
        i.remember = false;
        let st = decide_start(&i, &boot(None, false, None), || panic!("not read"));
        assert_eq!(st, Start::default());
        let mut i = inputs();
        i.configured_max = None;
        let st = decide_start(&i, &boot(Some(rec(524_288, 262_144)), false, None), || {
            panic!("not read")
        });
        assert_eq!(st, Start::default());
    }

    #[test]
    fn an_unusable_record_of_this_boot_is_replaced() {
        let st = decide_start(
            &inputs(),
            &boot(
                None,
                false,
                Some("ignoring this boot's growth record: garbage"),
            ),
            || Ok(None),
        );
        assert_eq!(st.forget[0].0, grown::THIS_BOOT);
        assert!(st.warnings[0].contains("garbage; the record is replaced"));
    }

    #[test]
    fn meminfo() {
        assert_eq!(
            parse_memtotal("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24_576_000 * 1024)
        );
        assert_eq!(parse_memtotal("garbage"), None);
    }
}
