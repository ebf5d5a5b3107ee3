// SPDX-License-Identifier: MIT OR Apache-2.0
//! The configuration file.
//!
//! - [`model`]: the types, their defaults and the range of every key;
//! - [`walk`]: the walk over toml's spanned document tree, which keeps each
//!   key's position so every error names the file, the line and the key;
//! - [`load`]: opens the file once, checks ownership on that descriptor and
//!   reads it with a size limit.
//!
//! A typo must never leave the kernel untuned silently, so unknown keys are
//! errors, not warnings. The files import only downwards (model and values
//! import nothing of the config; walk imports them; load imports walk);
//! this file only re-exports.
//!
//! Adding a key: a field and its default in `model.rs`, one entry in the
//! section's key table in `walk.rs`, and a line in conntrack-guard.toml(5).

mod error;
mod load;
mod model;
mod values;
mod walk;

pub use error::ConfigError;
pub use load::{check_ownership, load};
pub use model::*;
pub use values::{fmt_duration, parse_duration, valid_sysctl_key};
pub use walk::parse;
