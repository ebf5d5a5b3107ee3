// SPDX-License-Identifier: MIT OR Apache-2.0
//! What goes out: events and their sinks, MESSAGE_IDs, sd_notify, the
//! metrics textfile, and the small text helpers of tables and output.

pub mod events;
pub mod ids;
pub mod metrics;
pub(crate) mod notify;
pub(crate) mod output;
pub mod table;
