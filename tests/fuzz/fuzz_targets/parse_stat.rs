// SPDX-License-Identifier: MIT OR Apache-2.0
#![no_main]

use libfuzzer_sys::fuzz_target;

// The three kernel text formats the watchdog parses every sample.
fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = conntrack_guard::kernel::ctstats::parse_ct_stat(text);
        let _ = conntrack_guard::kernel::snmp::parse_snmp(text);
        let _ = conntrack_guard::kernel::snmp::parse_snmp6(text);
        let _ = conntrack_guard::kernel::softnet::parse_softnet(text);
    }
});
