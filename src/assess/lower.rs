// SPDX-License-Identifier: MIT OR Apache-2.0
//! The one guard for lowering nf_conntrack_max, used by `apply` and by the
//! watchdog's `[watch] restore`. The kernel takes any max, even one below
//! the entries already in the table; from then on every new flow is
//! dropped until enough entries expire. So max is never lowered below the
//! entries in use plus [`LOWER_HEADROOM_PERCENT`]. max is global and each
//! namespace's count is held against it: the count given here is the
//! largest of every namespace the caller can see. Pure.

use std::fmt;

/// Headroom a lowered max must leave above the entries in use, in percent:
/// less, and the first burst after the write finds the table full.
pub const LOWER_HEADROOM_PERCENT: u64 = 20;

/// The lowest max that may be written while `in_use` entries are held:
/// `in_use` plus [`LOWER_HEADROOM_PERCENT`].
pub fn lowest_safe_max(in_use: u64) -> u64 {
    in_use.saturating_add(in_use.saturating_mul(LOWER_HEADROOM_PERCENT) / 100)
}

/// A lowering of max that would leave too little room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowerRefused {
    /// The kernel's max now.
    pub now: u64,
    /// The max that would have been written.
    pub want: u64,
    /// Entries in use (the fullest namespace seen).
    pub in_use: u64,
    /// The lowest max allowed now.
    pub needed: u64,
}

impl fmt::Display for LowerRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lowering max from {} to {} refused: {} entries are in use, and a lower max must \
             leave {LOWER_HEADROOM_PERCENT}% headroom above them (at least {}), or new flows \
             are dropped at once",
            self.now, self.want, self.in_use, self.needed
        )
    }
}

/// May max go from `now` to `want` while `in_use` entries are held?
/// Raising, keeping, or lowering to at least [`lowest_safe_max`] may.
pub fn check_lower_max(now: u64, want: u64, in_use: u64) -> Result<(), LowerRefused> {
    let needed = lowest_safe_max(in_use);
    if want >= now || want >= needed {
        return Ok(());
    }
    Err(LowerRefused {
        now,
        want,
        in_use,
        needed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_case_is_refused() {
        // count 1500, kernel max 2000, configured 1000: writing 1000 made
        // the watchdog's own "count exceeds max" fault.
        let r = check_lower_max(2000, 1000, 1500).unwrap_err();
        assert_eq!(r.needed, 1800);
        let text = r.to_string();
        for w in [
            "from 2000 to 1000",
            "1500 entries are in use",
            "at least 1800",
        ] {
            assert!(text.contains(w), "{text}");
        }
    }

    #[test]
    fn headroom_boundary() {
        assert_eq!(lowest_safe_max(1000), 1200);
        assert_eq!(check_lower_max(2000, 1200, 1000), Ok(()));
        assert!(check_lower_max(2000, 1199, 1000).is_err());
        assert_eq!(lowest_safe_max(0), 0);
        assert_eq!(check_lower_max(2000, 1, 0), Ok(()));
        assert_eq!(lowest_safe_max(u64::MAX), u64::MAX, "saturates");
    }

    #[test]
    fn raising_or_keeping_is_never_refused() {
        // Even below the headroom: a raise only makes room.
        assert_eq!(check_lower_max(1000, 1100, 1500), Ok(()));
        assert_eq!(check_lower_max(1000, 1000, 1500), Ok(()));
    }

    proptest::proptest! {
        #[test]
        fn never_writes_below_the_guard_when_lowering(
            now in 0u64..1 << 40, want in 0u64..1 << 40, in_use in 0u64..1 << 40
        ) {
            if check_lower_max(now, want, in_use).is_ok() && want < now {
                proptest::prop_assert!(want >= in_use + in_use / 5);
            }
        }
    }
}
