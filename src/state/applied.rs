// SPDX-License-Identifier: MIT OR Apache-2.0
//! The mark `apply` leaves under /run: that it ran, in which boot, and how
//! long after boot. /run is a tmpfs, so the mark never outlives the boot,
//! and the boot id makes that sure even where /run is kept (a container's
//! bind mount). Writer hints read it so they say only what they know: with
//! no mark for this boot, a kernel default means "apply has not run since
//! boot", not "the module was reloaded after apply ran".
//!
//! The file is written atomically, mode 0644: the watchdog and `status`
//! run as other users. Under the apply unit the directory is its
//! `RuntimeDirectory=` (kept after the oneshot ends).

use crate::sysroot::{PathError, SysRoot};

/// The mark, relative to the root.
pub const MARK: &str = "run/conntrack-guard/applied";
/// This boot's id (random, made by the kernel at boot).
pub const BOOT_ID: &str = "proc/sys/kernel/random/boot_id";
/// Seconds since boot (the first field).
pub const UPTIME: &str = "proc/uptime";

/// Whether `apply` ran in this boot, as far as can be known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyRun {
    /// It did, this many seconds after boot (when known).
    ThisBoot {
        /// `uptime` at the end of the run, as written.
        uptime: Option<String>,
    },
    /// No mark, or a mark from another boot.
    NotThisBoot,
    /// This boot's id or the mark cannot be read.
    Unknown,
}

/// The mark's text for a run in boot `boot_id` at `uptime` seconds after
/// boot; a value that could not be read is left out.
pub fn mark_text(boot_id: Option<&str>, uptime: Option<&str>) -> String {
    let mut s = String::from("# conntrack-guard apply ran in this boot (conntrack-guard(8))\n");
    for (k, v) in [("boot_id", boot_id), ("uptime", uptime)] {
        if let Some(v) = v {
            s.push_str(&format!("{k}={v}\n"));
        }
    }
    s
}

/// The value of `key` in a mark's text.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let mut pairs = text.lines().filter_map(|l| l.split_once('='));
    let (_, v) = pairs.find(|(k, _)| k.trim() == key)?;
    Some(v.trim()).filter(|v| !v.is_empty())
}

/// Judge a mark (`None`: there is none) against this boot's id
/// (`None`: unreadable). Pure.
pub fn judge(mark: Option<&str>, boot_id: Option<&str>) -> ApplyRun {
    let Some(boot) = boot_id.map(str::trim).filter(|b| !b.is_empty()) else {
        return ApplyRun::Unknown;
    };
    match mark {
        Some(m) if field(m, "boot_id") == Some(boot) => ApplyRun::ThisBoot {
            uptime: field(m, "uptime").map(str::to_string),
        },
        _ => ApplyRun::NotThisBoot,
    }
}

/// Read the mark and this boot's id under `root`.
pub fn read(root: &SysRoot) -> ApplyRun {
    let (Ok(mark), Ok(boot)) = (root.read_opt(MARK), root.read_opt(BOOT_ID)) else {
        return ApplyRun::Unknown;
    };
    judge(mark.as_deref(), boot.as_deref())
}

/// Leave the mark: this boot's id and the seconds since boot.
pub fn write(root: &SysRoot) -> Result<(), PathError> {
    let (boot, uptime) = (root.read_some(BOOT_ID), root.read_some(UPTIME));
    let uptime = uptime.as_deref().and_then(|u| u.split_whitespace().next());
    let text = mark_text(boot.as_deref().map(str::trim), uptime);
    root.write_file(MARK, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOT: &str = "130e20ba-a81c-45ae-bcfd-c114c2a8d056";

    #[test]
    fn a_mark_of_this_boot_says_so() {
        let m = mark_text(Some(BOOT), Some("4.21"));
        assert_eq!(
            judge(Some(&m), Some(&format!("{BOOT}\n"))),
            ApplyRun::ThisBoot {
                uptime: Some("4.21".into())
            }
        );
        let m = mark_text(Some(BOOT), None);
        assert_eq!(
            judge(Some(&m), Some(BOOT)),
            ApplyRun::ThisBoot { uptime: None }
        );
    }

    #[test]
    fn no_mark_or_another_boot_is_not_this_boot() {
        assert_eq!(judge(None, Some(BOOT)), ApplyRun::NotThisBoot);
        let other = mark_text(Some("0d4b9c57-7a5e-4f0e-9d59-0c1b2f3a4e5d"), Some("3"));
        assert_eq!(judge(Some(&other), Some(BOOT)), ApplyRun::NotThisBoot);
        // A mark written where the boot id could not be read proves nothing.
        assert_eq!(
            judge(Some(&mark_text(None, None)), Some(BOOT)),
            ApplyRun::NotThisBoot
        );
        assert_eq!(judge(Some("garbage"), Some(BOOT)), ApplyRun::NotThisBoot);
    }

    #[test]
    fn unreadable_boot_id_is_unknown() {
        let m = mark_text(Some(BOOT), None);
        assert_eq!(judge(Some(&m), None), ApplyRun::Unknown);
        assert_eq!(judge(Some(&m), Some(" \n")), ApplyRun::Unknown);
    }

    #[test]
    fn write_then_read_under_a_root() {
        let t = tempfile::tempdir().unwrap();
        let root = SysRoot::at(t.path());
        assert_eq!(read(&root), ApplyRun::Unknown, "no boot id");
        std::fs::create_dir_all(t.path().join("proc/sys/kernel/random")).unwrap();
        std::fs::write(t.path().join(BOOT_ID), format!("{BOOT}\n")).unwrap();
        std::fs::write(t.path().join(UPTIME), "12.50 40.00\n").unwrap();
        assert_eq!(read(&root), ApplyRun::NotThisBoot);
        write(&root).unwrap();
        assert_eq!(
            read(&root),
            ApplyRun::ThisBoot {
                uptime: Some("12.50".into())
            }
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(t.path().join(MARK))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "readable by the watchdog's user");
    }
}
