// SPDX-License-Identifier: MIT OR Apache-2.0
//! The commands, one module each. Commands are leaves: none imports
//! another; what two of them share lives a floor below (`tests/layout.rs`).

pub mod apply;
pub mod doctor;
pub mod plan;
pub mod status;
pub mod top;
pub mod watch;
