// SPDX-License-Identifier: MIT OR Apache-2.0
//! conntrack-guard's own files: the boot step's mark under /run, and the
//! grown table size (this boot's record under /run, the remembered one under
//! /var/lib). Each is small, parsed from `&str`, and written atomically.

pub mod applied;
pub mod grown;
