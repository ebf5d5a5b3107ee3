// SPDX-License-Identifier: MIT OR Apache-2.0
#![no_main]

use conntrack_guard::kernel::ctstats::CtTable;
use conntrack_guard::kernel::percpu::CpuIds;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut table = CtTable::new(CpuIds::Kernel);
    let _ = conntrack_guard::kernel::netlink::parse_stats_cpu(data, 1, &mut table);
});
