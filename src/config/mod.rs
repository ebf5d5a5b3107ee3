// SPDX-License-Identifier: MIT OR Apache-2.0
//! The configuration file.
//!
//! - [`model`]: the types, their defaults and the range of every key;
//! - [`values`]: the value syntaxes (durations, budgets, sysctl names),
//!   shared with the command line;
//! - [`parse`]: checks toml's spanned tree against the list of sections
//!   and keys (unknown ones are refused) and each value in plain code, so
//!   every error names the file, the line and the key;
//! - [`load`]: opens the file once, checks ownership on that descriptor and
//!   reads it with a size limit.
//!
//! A typo must never leave the kernel untuned silently, so unknown keys are
//! errors, not warnings. The files import only downwards (model imports
//! nothing of the config; values imports model; parse imports both; load
//! imports parse); this file only re-exports.
//!
//! Adding a key: a field and its default in `model.rs`, its line with its
//! check in `parse.rs`, a commented line in
//! packaging/conntrack-guard.toml and in conntrack-guard.toml(5).

mod error;
mod load;
mod model;
mod parse;
mod values;

pub use error::ConfigError;
pub use load::{check_ownership, load};
pub use model::*;
pub use parse::parse;
pub use values::{fmt_duration, parse_budget, parse_duration, valid_sysctl_key};
