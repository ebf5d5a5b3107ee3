// SPDX-License-Identifier: MIT OR Apache-2.0
#![no_main]

use conntrack_guard::stats::Counters;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut sum = Counters::default();
    let _ = conntrack_guard::netlink::parse_messages(data, 1, &mut sum);
});
