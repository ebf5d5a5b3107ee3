// SPDX-License-Identifier: MIT OR Apache-2.0
//! The commands, one module each. Commands are leaves: none imports
//! another; what two of them share lives a floor below (`tests/layout.rs`).

pub(crate) mod apply;
pub(crate) mod doctor;
pub(crate) mod plan;
pub(crate) mod status;
pub(crate) mod top;
pub(crate) mod watch;
