#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Reproduce the incident without conntrack-guard: baseline, max=1024
# (symptom), max=20000 (cure). Prints the measurements and checks the
# kernel-facts figures loosely. Needs root; changes nf_conntrack_max
# (restored on exit).
set -u
. "$(dirname "$0")/lib.sh"
PASS=0 FAIL=0
check() { # check DESC CONDITION...
    local d=$1; shift
    if "$@"; then PASS=$((PASS + 1)); echo "ok   - $d"; else FAIL=$((FAIL + 1)); echo "FAIL - $d"; fi
}
lt() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)' "$1" "$2"; }
ge() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)' "$1" "$2"; }

exec 9>/run/conntrack-guard-tests.lock
flock -w 600 9 || { echo "could not take the test lock"; echo "0 passed, 1 failed"; exit 1; }
install_traps
save_globals
W=$(ctg_workdir)
if ! topo_up 120; then
    ctg_teardown
    echo "FAIL - topology up"
    echo "0 passed, 1 failed"
    exit 1
fi

udpload 2000 1000 10000 >"$W/base.json"
echo "baseline: $(cat "$W/base.json")"
check "baseline loss < 2%" lt "$(json_get "$W/base.json" loss_percent)" 2

# Start the symptom from an empty table, as in the incident: flush only
# our host netns's table (the baseline entries would otherwise still hold
# 2000 of the 1024 slots for 30 s).
in_host conntrack -F 2>/dev/null
echo "host count after flush: $(host_count)"
set_global_max 1024
d0=$(host_stat drop); e0=$(host_stat early_drop); k0=$(python3 "$CTG_LIB_DIR/kmsg.py" mark)
udpload 5000 1000 20000 >"$W/sym.json"
d1=$(host_stat drop); e1=$(host_stat early_drop); c1=$(host_count)
m1=$(<"$CTG_SYSCTL_DIR/nf_conntrack_max")
check "global max still 1024 after the load (got $m1; another writer ignored the lock?)" test "$m1" -eq 1024
echo "symptom: $(cat "$W/sym.json")"
echo "symptom: count=$c1 drop+$((d1 - d0)) early_drop+$((e1 - e0))"
check "symptom loss >= 50%" ge "$(json_get "$W/sym.json" loss_percent)" 50
check "drop counter rose" test $((d1 - d0)) -gt 0
ino=$(host_netns_inode)
python3 "$CTG_LIB_DIR/kmsg.py" since "$k0" | grep 'table full' | sort | uniq -c | head -3
check "kmsg names netns $ino" bash -c "python3 '$CTG_LIB_DIR/kmsg.py' since $k0 | grep -q 'table full in netns $ino'"

set_global_max 20000
udpload 5000 1000 30000 >"$W/cure.json"
echo "cure: $(cat "$W/cure.json") count=$(host_count)"
check "cure loss < 2%" lt "$(json_get "$W/cure.json" loss_percent)" 2
ctg_teardown || { FAIL=$((FAIL + 1)); echo "FAIL - global sysctls restored"; }
echo "$PASS passed, $FAIL failed"
[[ $FAIL == 0 ]]
