# SPDX-License-Identifier: MIT OR Apache-2.0
# tests/vm: assertions on boot 2's ctnetlink scenario (guest side:
# step_netlink in guest/steps.sh). Sourced by suite.sh after boot 2.

nl=$out/netlink
step_ok netlink "netlink: the scenario ran (see $nl/step.log)"
expect_eq "netlink: nf_conntrack_netlink is loaded after the boot step (grep /proc/modules rc)" 0 "$(val netlink/ctnetlink-loaded-rc)"
line=$(grep -o 'Status: ".*' "$nl/status" 2>/dev/null | head -n1 || true)
if [[ $line =~ drops\ [0-9]+ ]] && [[ $line != *"drops n/a"* ]]; then
    pass "netlink: the watchdog's status line has drop numbers: $line"
else
    fail "netlink: no drop numbers in the watchdog's status line: '${line:-no Status: line}'"
fi
src() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("counters_source"))' "$1" 2>/dev/null || echo "<unreadable>"; }
expect_eq "netlink: status --json in the watchdog's sandbox (dynamic user, CAP_NET_ADMIN) reads" netlink "$(src "$nl/status-CAP_NET_ADMIN.json")"
expect_eq "netlink: ... and without CAP_NET_ADMIN from" procfs "$(src "$nl/status-nocap.json")"
cp "$nl/status" "$art/netlink-watchdog-status.txt" 2>/dev/null || true
