// SPDX-License-Identifier: MIT OR Apache-2.0
//! Taking one observation: the thin reader in front of [`crate::assess`].
//!
//! Every file is opened afresh through the host's [`SysRoot`], so a module
//! that goes away and comes back is seen. The cost is a handful of small
//! reads and one ctnetlink request whatever the table holds;
//! `/proc/net/nf_conntrack` (one line per entry) is never read.

use crate::assess::sizing::{self, BudgetView};
use crate::assess::{FillReading, Observation, Setting};
use crate::config::{Budget, Config};
use crate::host::Host;
use crate::kernel::ctstats::{read_ct_counters, CtReading, CtUnavailable};
use crate::kernel::hashsize::{self, KernelTarget};
use crate::kernel::snmp::read_udp;
use crate::kernel::softnet::read_softnet;
use crate::kernel::sysctl::{read_fill, SysctlError};
use crate::kernel::{ram_bytes, read_current};
use crate::state::grown::{self, Remembered};
use crate::sysroot::SysRoot;

/// Read count and max, classified for [`crate::assess::assess`].
pub fn fill(root: &SysRoot) -> FillReading {
    match read_fill(root) {
        Ok((count, max)) => FillReading::Read { count, max },
        Err(e @ SysctlError::Absent(_)) => FillReading::Gone(e),
        Err(e) => FillReading::Fault(e),
    }
}

/// This boot's growth as every reader takes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThisBoot {
    /// The watchdog's record of this boot, when there is one and it was
    /// read (trusted or not: see [`ThisBoot::trusted`]).
    pub record: Option<Remembered>,
    /// Whether the record's max is the one to expect (grown from the
    /// configured max, above it, within the budget).
    pub trusted: bool,
    /// Why a record there was not read or is not trusted, for a warning.
    pub ignored: Option<String>,
    /// The budget's cap the record was held to.
    pub cap: u64,
}

impl ThisBoot {
    /// The trusted record.
    pub fn grown(&self) -> Option<&Remembered> {
        self.record.as_ref().filter(|_| self.trusted)
    }
}

/// Read this boot's growth record ([`grown::THIS_BOOT`]) under `root` and
/// judge it against `cfg`: its configured max and its `[grow]` budget. A
/// record that cannot be read, or that is not trusted, leaves the
/// configured values expected and says why; never a panic.
pub fn this_boot(root: &SysRoot, cfg: &Config) -> ThisBoot {
    let record = match grown::read(root, grown::THIS_BOOT) {
        Ok(Some(r)) => r,
        Ok(None) => return ThisBoot::default(),
        Err(e) => {
            return ThisBoot {
                ignored: Some(format!("ignoring this boot's growth record: {e}")),
                ..ThisBoot::default()
            }
        }
    };
    let budget = budget_bytes(ram_bytes(root), cfg.grow.budget);
    let cap = grown::this_boot_cap(&record, budget, crate::kernel::slab::entry_bytes(root));
    let above_budget = |max: u64, cap: u64| {
        format!(
            "this boot's growth record says max {max}, above the {} budget \
             (at most {cap}): the configured max is expected",
            cfg.grow.budget
        )
    };
    let (trusted, ignored) = match cfg.conntrack.max.value() {
        // max = "keep" is not compared with anything: the record only says
        // what the watchdog did, within the budget or not.
        None if record.max <= cap => (true, None),
        None => (false, Some(above_budget(record.max, cap))),
        Some(c) => match grown::verdict(&record, c, cap) {
            grown::Verdict::Use(_) => (true, None),
            grown::Verdict::NotAbove => (false, None),
            grown::Verdict::ConfigChanged { then, now } => (
                false,
                Some(format!(
                    "this boot's growth record grew from max {then}, configured now {now}: \
                     the configured max is expected"
                )),
            ),
            grown::Verdict::AboveBudget { max, cap } => (false, Some(above_budget(max, cap))),
        },
    };
    ThisBoot {
        record: Some(record),
        trusted,
        ignored,
        cap,
    }
}

/// Every kernel value `cfg` sets as the kernel should have it now: the
/// configured targets, rounded as the kernel stores them, with what the
/// watchdog grew this boot in place of max (and buckets).
pub fn targets(host: &Host, cfg: &Config) -> (Vec<KernelTarget>, ThisBoot) {
    let boot = this_boot(&host.root, cfg);
    let targets = grown::expected_targets(
        hashsize::targets(cfg, host.page_size),
        boot.record.as_ref(),
        cfg.conntrack.max.value(),
        boot.cap,
    );
    (targets, boot)
}

/// The kernel's value of every configured setting, against the value the
/// kernel should have ([`targets`]: a max grown this boot is expected, not
/// drift).
pub fn settings(host: &Host, cfg: &Config) -> Vec<Setting> {
    targets(host, cfg)
        .0
        .into_iter()
        .map(|t| Setting {
            actual: read_current(&host.root, &t.key).ok().flatten(),
            at_least: t.policy == crate::config::Policy::AtLeast,
            key: t.key,
            expected: t.value,
        })
        .collect()
}

/// The conntrack statistics: the host's ctnetlink where it answers, else
/// procfs under its root.
pub fn conntrack_counters(host: &Host) -> Result<CtReading, CtUnavailable> {
    read_ct_counters(&host.root, host.netlink.as_ref())
}

/// One full observation. The conntrack counters and settings are only read
/// when the fill was: without the module they do not exist either.
pub fn observe(host: &Host, cfg: &Config) -> Observation {
    let fill = fill(&host.root);
    let read = matches!(fill, FillReading::Read { .. });
    Observation {
        fill,
        counters: read.then(|| conntrack_counters(host)),
        udp: read_udp(&host.root),
        softnet: read_softnet(&host.root),
        settings: if read {
            settings(host, cfg)
        } else {
            Vec::new()
        },
    }
}

/// The budget in bytes on a machine with `ram` (MemTotal, [`ram_bytes`]):
/// `[grow] budget` of it. 0 (nothing fits, nothing trusted) when the budget
/// is a share of RAM and RAM cannot be read, as the watchdog counts it.
pub fn budget_bytes(ram: Option<u64>, budget: Budget) -> u64 {
    budget.bytes(ram.unwrap_or(0))
}

/// `max` with `buckets` against `budget` on the machine under `root`;
/// `None` when the budget is a share of RAM that cannot be read.
pub fn budget_view(
    root: &SysRoot,
    budget: Budget,
    entry_bytes: u64,
    page_size: u64,
    max: u64,
    buckets: u64,
) -> Option<BudgetView> {
    let ram = ram_bytes(root);
    if matches!(budget, Budget::Percent(_)) && ram.is_none() {
        return None;
    }
    let (bytes, text) = (budget.bytes(ram.unwrap_or(0)), budget.to_string());
    let view = sizing::budget_view(&text, bytes, entry_bytes, page_size, max, buckets);
    Some(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, KEY_BUCKETS, KEY_MAX};
    use std::path::Path;

    /// A fake root: 24 GiB of RAM (a 2% budget is 491 MiB), the kernel at `max` and `buckets`.
    fn root(max: u64, buckets: u64) -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::at(dir.path());
        std::fs::create_dir_all(dir.path().join("proc/sys/net/netfilter")).unwrap();
        std::fs::write(dir.path().join("proc/meminfo"), "MemTotal: 25165824 kB\n").unwrap();
        std::fs::write(root.sysctl_path(KEY_MAX), format!("{max}\n")).unwrap();
        std::fs::write(root.sysctl_path(KEY_BUCKETS), format!("{buckets}\n")).unwrap();
        let mut host = Host::at(root);
        host.page_size = 4096;
        (dir, host)
    }

    fn cfg(text: &str) -> Config {
        parse(
            &format!("[conntrack]\nmax = 262144\n{text}"),
            Path::new("t.toml"),
        )
        .unwrap()
    }

    fn record(max: u64, buckets: u64, configured: u64) -> Remembered {
        Remembered {
            max,
            buckets,
            configured,
            at: 1_796_652_180,
            reason: "early_drop +1234".into(),
        }
    }

    fn drift(host: &Host, cfg: &Config) -> Vec<(String, String, String)> {
        settings(host, cfg)
            .into_iter()
            .filter(|s| !s.ok())
            .map(|s| (s.key.clone(), s.expected.clone(), s.actual_text()))
            .filter(|(k, _, _)| k == KEY_MAX || k == KEY_BUCKETS)
            .collect()
    }

    #[test]
    fn a_grown_max_recorded_this_boot_is_not_drift() {
        let (_d, host) = root(524_288, 131_072);
        let c = cfg("");
        // Without the record: max and buckets drift.
        assert_eq!(drift(&host, &c).len(), 2);
        grown::write(
            &host.root,
            grown::THIS_BOOT,
            &record(524_288, 131_072, 262_144),
        )
        .unwrap();
        assert_eq!(drift(&host, &c), vec![]);
        let boot = this_boot(&host.root, &c);
        assert!(boot.trusted && boot.ignored.is_none(), "{boot:?}");
        // Something lowering it afterwards is drift against the grown max.
        host.root.write_sysctl(KEY_MAX, "262144").unwrap();
        assert_eq!(
            drift(&host, &c),
            vec![(KEY_MAX.into(), "524288".into(), "262144".into())]
        );
    }

    #[test]
    fn buckets_the_watchdog_left_alone_stay_configured() {
        let (_d, host) = root(524_288, 65_536);
        let c = cfg("");
        grown::write(
            &host.root,
            grown::THIS_BOOT,
            &record(524_288, 65_536, 262_144),
        )
        .unwrap();
        assert_eq!(drift(&host, &c), vec![]);
        let t = targets(&host, &c).0;
        let b = t.iter().find(|t| t.key == KEY_BUCKETS).unwrap();
        assert_eq!(b.value, "65536");
    }

    #[test]
    fn an_untrusted_record_leaves_the_configured_max_expected() {
        let (_d, host) = root(524_288, 131_072);
        // Grown from another configured max: the operator edited max.
        grown::write(
            &host.root,
            grown::THIS_BOOT,
            &record(524_288, 131_072, 100_000),
        )
        .unwrap();
        let c = cfg("");
        let boot = this_boot(&host.root, &c);
        assert!(!boot.trusted);
        assert!(boot.ignored.unwrap().contains("grew from max 100000"));
        assert_eq!(drift(&host, &c).len(), 2);
        // Above the budget (100 MiB is 272k entries at 384 B).
        grown::write(
            &host.root,
            grown::THIS_BOOT,
            &record(524_288, 131_072, 262_144),
        )
        .unwrap();
        let c = cfg("[grow]\nbudget = \"100MiB\"\n");
        let boot = this_boot(&host.root, &c);
        assert!(!boot.trusted);
        assert!(boot.ignored.unwrap().contains("above the 100MiB budget"));
        assert_eq!(drift(&host, &c).len(), 2);
        // Garbage, a symlink: said, never a panic, configured expected.
        std::fs::write(host.root.path(grown::THIS_BOOT), "max=zz\n").unwrap();
        let boot = this_boot(&host.root, &cfg(""));
        assert!(boot.record.is_none());
        assert!(boot.ignored.unwrap().contains("line 1: max"));
        assert_eq!(drift(&host, &cfg("")).len(), 2);
        let p = host.root.path(grown::THIS_BOOT);
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &p).unwrap();
        let boot = this_boot(&host.root, &cfg(""));
        assert!(boot.ignored.unwrap().contains("symbolic link"));
        // max = "keep": nothing is compared; the record says what happened
        // (within the budget), and no target changes.
        grown::write(
            &host.root,
            grown::THIS_BOOT,
            &record(524_288, 131_072, 262_144),
        )
        .unwrap();
        let keep = parse("[conntrack]\nmax = \"keep\"\n", Path::new("t.toml")).unwrap();
        let boot = this_boot(&host.root, &keep);
        assert!(boot.trusted && boot.ignored.is_none(), "{boot:?}");
        let t = targets(&host, &keep).0;
        assert!(t.iter().all(|t| t.key != KEY_MAX && t.key != KEY_BUCKETS));
    }

    #[test]
    fn budget_of_this_machine() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::at(dir.path());
        // RAM unknown: a share of it is nothing; a size is a size.
        assert_eq!(budget_bytes(ram_bytes(&root), Budget::Percent(2.0)), 0);
        assert_eq!(
            budget_bytes(ram_bytes(&root), Budget::Bytes(1 << 20)),
            1 << 20
        );
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::write(dir.path().join("proc/meminfo"), "MemTotal: 1048576 kB\n").unwrap();
        assert_eq!(
            budget_bytes(ram_bytes(&root), Budget::Percent(50.0)),
            1 << 29
        );
    }

    #[test]
    fn budget_view_only_without_a_share_of_unknown_ram() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::at(dir.path());
        let view = |b| budget_view(&root, b, 300, 4096, 1000, 512);
        assert_eq!(view(Budget::Percent(2.0)), None);
        let v = view(Budget::Bytes(1 << 20)).unwrap();
        assert_eq!(
            (v.budget.as_str(), v.budget_bytes, v.max),
            ("1MiB", 1 << 20, 1000)
        );
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::write(dir.path().join("proc/meminfo"), "MemTotal: 1048576 kB\n").unwrap();
        let v = view(Budget::Percent(50.0)).unwrap();
        assert_eq!((v.budget.as_str(), v.budget_bytes), ("50%", 1 << 29));
    }
}
