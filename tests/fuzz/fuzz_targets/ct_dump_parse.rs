// SPDX-License-Identifier: MIT OR Apache-2.0
#![no_main]

use conntrack_guard::kernel::ctdump::{parse_datagram, parse_entry, Progress};
use conntrack_guard::cmd::top::{advise, Aggregator, Dim};
use libfuzzer_sys::fuzz_target;

// A CT dump datagram through the parser and into the aggregation, then
// every report: labels for whatever addresses, ports and states came out.
fuzz_target!(|data: &[u8]| {
    let mut agg = Aggregator::new(24, 64, 64);
    let mut p = Progress::default();
    let _ = parse_datagram(data, 1, &mut p, &mut |e| agg.add(e));
    if let Some(e) = parse_entry(data) {
        agg.add(&e);
    }
    for d in [Dim::Dport, Dim::State, Dim::Source, Dim::Nat, Dim::Zone, Dim::Mark] {
        let _ = agg.report(d, 3);
    }
    let _ = advise(&agg, Some(30));
});
