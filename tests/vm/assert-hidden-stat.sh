# SPDX-License-Identifier: MIT OR Apache-2.0
# tests/vm: assertions on boot 2's hidden-stat scenario (guest side:
# step_hidden_stat in guest/steps.sh): a drop-in gives the watchdog
# InaccessiblePaths=/proc/net/stat/nf_conntrack, as on kernels without
# CONFIG_NF_CONNTRACK_PROCFS. Sourced by suite.sh after boot 2.

hs=$out/hidden_stat
step_ok hidden_stat "hidden stat: the scenario ran (see $hs/step.log)"
if grep -qx '/proc/net/stat/nf_conntrack' <(tr ' ' '\n' <"$hs/inaccessible-paths" 2>/dev/null); then
    pass "hidden stat: the drop-in is loaded (InaccessiblePaths=/proc/net/stat/nf_conntrack)"
else
    fail "hidden stat: InaccessiblePaths is '$(val hidden_stat/inaccessible-paths)'"
fi
if [ -f "$hs/seen-by-service" ] && ! grep -q '^entries' "$hs/seen-by-service"; then
    pass "hidden stat: the service's mount namespace does not show the stat table"
else
    fail "hidden stat: the service still sees the stat table: $(head -c 200 "$hs/seen-by-service" 2>/dev/null)"
fi
expect_eq "hidden stat: systemctl is-active conntrack-guard" active "$(val hidden_stat/is-active)"
line=$(grep -o 'Status: ".*' "$hs/status" 2>/dev/null | head -n1)
if [ -n "$line" ]; then pass "hidden stat: $line"; else fail "hidden stat: no Status: line in systemctl status"; fi
if [ "${CONNTRACK_GUARD_VM_HIDDEN_STAT:-0}" = 1 ]; then
    if [[ $line =~ drops\ [0-9]+ ]] && [[ $line != *"drops n/a"* ]]; then
        pass "hidden stat: the watchdog reports drop numbers without the procfs file (ctnetlink)"
    else
        fail "hidden stat: Status: shows no drop numbers with /proc/net/stat/nf_conntrack hidden: $line"
    fi
else
    echo "note: hidden stat: the drop-number assertion is off (CONNTRACK_GUARD_VM_HIDDEN_STAT=1 turns it on)"
fi
cp "$hs/status" "$art/hidden-stat-status.txt" 2>/dev/null || true
