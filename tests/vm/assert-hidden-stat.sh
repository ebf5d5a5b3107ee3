# SPDX-License-Identifier: MIT OR Apache-2.0
# tests/vm: assertions on boot 2's hidden-stat scenario (guest side:
# step_hidden_stat in guest/steps.sh): a drop-in gives the watchdog
# InaccessiblePaths=/proc/net/stat/nf_conntrack, as on kernels without
# CONFIG_NF_CONNTRACK_PROCFS. Sourced by suite.sh after boot 2.
#
# The assertions on the watchdog with the drop-in are behind
# CONNTRACK_GUARD_VM_HIDDEN_STAT=1: today the watchdog has no counters
# without the file ("drops n/a"), and systemd 257 cannot even set up the
# drop-in on a /proc/net path (226/NAMESPACE, see guest/steps.sh).

hs=$out/hidden_stat
step_ok hidden_stat "hidden stat: the scenario ran (see $hs/step.log)"
if grep -qx '/proc/net/stat/nf_conntrack' <(tr ' ' '\n' <"$hs/inaccessible-paths" 2>/dev/null); then
    pass "hidden stat: the drop-in is loaded (InaccessiblePaths=/proc/net/stat/nf_conntrack)"
else
    fail "hidden stat: InaccessiblePaths is '$(val hidden_stat/inaccessible-paths)'"
fi
line=$(grep -o 'Status: ".*' "$hs/status" 2>/dev/null | head -n1 || true)
echo "hidden stat: with the drop-in: $(val hidden_stat/is-active), exit status $(val hidden_stat/exec-main-status)${line:+, $line}"
[ ! -s "$hs/namespace-error" ] || echo "hidden stat: systemd says: $(cat "$hs/namespace-error")"
if [ "${CONNTRACK_GUARD_VM_HIDDEN_STAT:-0}" = 1 ]; then
    expect_eq "hidden stat: systemctl is-active conntrack-guard with the drop-in" active "$(val hidden_stat/is-active)"
    if [ -f "$hs/seen-by-service" ] && ! grep -q '^entries' "$hs/seen-by-service"; then
        pass "hidden stat: the service's mount namespace does not show the stat table"
    else
        fail "hidden stat: the service still sees the stat table: $(head -n1 "$hs/seen-by-service" 2>/dev/null || true)"
    fi
    if [[ $line =~ drops\ [0-9]+ ]] && [[ $line != *"drops n/a"* ]]; then
        pass "hidden stat: the watchdog reports drop numbers without the procfs file: $line"
    else
        fail "hidden stat: Status: shows no drop numbers with /proc/net/stat/nf_conntrack hidden: '${line:-no Status: line}'"
    fi
else
    echo "note: hidden stat: the assertions on the hidden file are off (CONNTRACK_GUARD_VM_HIDDEN_STAT=1 turns them on)"
fi
expect_eq "hidden stat: conntrack-guard is active again once the drop-in is removed" active "$(val hidden_stat/is-active-after-removal)"
cp "$hs/status" "$art/hidden-stat-status.txt" 2>/dev/null || true
