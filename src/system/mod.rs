// SPDX-License-Identifier: MIT OR Apache-2.0
//! The rest of the machine as it bears on the settings: who else writes a
//! key (sysctl.d, kube-proxy, k3s, the module parameter) and the firewall
//! ruleset `doctor` reads.

pub(crate) mod ruleset;
pub(crate) mod writers;
