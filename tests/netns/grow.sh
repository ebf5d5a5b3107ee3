#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Issue 20 on the real kernel: the watchdog grows the table itself.
# The incident of incident.sh (global max 1024, tracker-like UDP load at
# 1000 new flows/s through the DNAT of the "host" netns), with nobody
# curing it. The watchdog runs in the initial netns (the only one where
# nf_conntrack_max is writable) with namespaces = "all", and the
# configuration says max = 1024 with restore = true:
#
#   off     [grow] enabled = false: the loss during the load (30 000 flows
#           at 1000/s: the incident's load for 30 s instead of 5).
#   on      [grow] on: the loss during the load (<= 5%), `grown` within 2
#           samples of the first kernel drop, max never lowered, this
#           boot's record written with the kernel's max.
#   reload  after the growth, SIGHUP: nothing shrinks, no drift, no
#           restore of the configured (lower) max.
#   budget  a budget that allows one step (max 3072 at 384 B per entry):
#           max at the cap, exactly one grown and one grow_limited, and no
#           further growth while the load goes on.
#   child   a watchdog in the "host" netns (max is read-only there): one
#           fault saying it cannot grow, not one per [grow] every.
#
# Changes nf_conntrack_max (and may change buckets) globally for about two
# minutes (the whole script: about 95 s); both are restored on exit, INT and TERM (lib.sh's
# trap), as is this boot's growth record /run/conntrack-guard/grown
# (moved aside while the test runs). Takes the shared test lock. Every
# load is bounded; no default routes; addresses in 198.18.0.0/15.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

RECORD=/run/conntrack-guard/grown
REMEMBERED=/var/lib/conntrack-guard/grown
SAVED_RECORD=""
HAD_RECORD=0
HAD_REMEMBERED=0
# 30 s of load: the namespaces are read once a second ([watch]
# namespaces_every has a 1 s floor), so up to a second of drops comes
# before the first growth wherever the load starts; over 30 s that second
# is at most about 3%.
LOAD_COUNT=30000
LOAD_RATE=1000
INTERVAL=1

# The record this test's watchdogs write is not the host's: put the
# host's back as it was (absent when there was none).
grow_restore_record() {
    if [[ $HAD_RECORD == 1 ]]; then
        mkdir -p /run/conntrack-guard && printf '%s' "$SAVED_RECORD" >"$RECORD"
    else
        rm -f "$RECORD"
    fi
}
finish() {
    grow_restore_record
    if ! ctg_teardown; then not_ok "global sysctls restored"; fi
    echo "$PASS passed, $FAIL failed"
    [[ $FAIL == 0 ]]
    exit
}
ctg_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    grow_restore_record
    ctg_teardown || rc=1
    exit "$rc"
}
fcmp() { python3 -c 'import sys,operator as o; a,op,b=sys.argv[1:]; sys.exit(0 if getattr(o,op)(float(a),float(b)) else 1)' "$1" "$2" "$3"; }

ctg_find_bin "$REPO" || { not_ok "conntrack-guard binary found (set CONNTRACK_GUARD_BIN or build target/release)"; finish; }
echo "# binary: $BIN"
ctg_take_globals || { not_ok "took /run/conntrack-guard-tests.lock within 600 s"; finish; }
if [[ -f $RECORD ]]; then
    SAVED_RECORD=$(cat "$RECORD") && HAD_RECORD=1
fi
rm -f "$RECORD"
[[ -e $REMEMBERED ]] && HAD_REMEMBERED=1
W=$(ctg_workdir)
if ! topo_up 240; then
    not_ok "topology up"
    finish
fi
T_START=$SECONDS

# config ENABLED BUDGET RESTORE
config() {
    cat <<EOF
[conntrack]
max = 1024
buckets = "keep"
udp_timeout = "keep"
udp_timeout_stream = "keep"

[watch]
interval = "${INTERVAL}s"
warn_percent = 80
critical_percent = 95
namespaces = "all"
namespaces_every = "1s"
restore = $3
triage = false

[grow]
enabled = $1
budget = "$2"
every = "1s"
remember = false
EOF
}

# Polls every 20 ms from inside the host netns: the time of the first rise
# of the kernel's drop counter, of the first `grown` line in the watchdog's
# log, and every value of the global max seen (never lowered?).
cat >"$W/monitor.py" <<'EOF'
import json, sys, time
log, out, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
def stat(name):
    with open("/proc/net/stat/nf_conntrack") as f:
        hdr = f.readline().split()
        i = hdr.index(name)
        return sum(int(l.split()[i], 16) for l in f if l.strip())
def maxv():
    with open("/proc/sys/net/netfilter/nf_conntrack_max") as f:
        return int(f.read())
d0, t0 = stat("drop"), time.monotonic()
first_drop = first_grown = None
drops_at_grown = None
maxes = [maxv()]
while time.monotonic() - t0 < seconds:
    now = time.monotonic()
    if first_drop is None and stat("drop") > d0:
        first_drop = now - t0
    if first_grown is None:
        with open(log, errors="replace") as f:
            if any(": EVENT=grown " in l for l in f):
                first_grown = now - t0
                drops_at_grown = stat("drop") - d0
    m = maxv()
    if m != maxes[-1]:
        maxes.append(m)
    time.sleep(0.02)
json.dump({"first_drop": first_drop, "first_grown": first_grown,
           "drops_at_grown": drops_at_grown, "maxes": maxes}, open(out, "w"))
EOF

# start_watch NAME: the watchdog in the initial netns on $W/NAME.toml.
start_watch() {
    ctg_spawn "${CG[@]}" --config "$W/$1.toml" watch >"$W/$1.out" 2>"$W/$1.err"
    WATCH_PID=${CTG_PIDS[-1]}
    local i
    for ((i = 0; i < 100; i++)); do
        grep -q 'EVENT=started' "$W/$1.err" && break
        kill -0 "$WATCH_PID" 2>/dev/null || break
        sleep 0.1
    done
    # Let the first namespace scan in, so the load is news to it.
    sleep 2.5
    check "$1: watch started" grep -q 'EVENT=started' "$W/$1.err"
}

# fresh: an empty table in the host netns, the global max 1024, and no
# growth record (each case is a new boot as far as the watchdog knows).
fresh() {
    in_host conntrack -F >/dev/null 2>&1
    set_global_max 1024
    rm -f "$RECORD"
}

# count_events FILE NAME
count_events() { grep -c ": EVENT=$2\( \|$\)" "$1"; }
# field FILE EVENT KEY: KEY of the first EVENT line.
field() {
    grep -m1 ": EVENT=$2 " "$1" | grep -o " $3=[^ ]*" | head -n 1 | cut -d= -f2
}

# ---- off ---------------------------------------------------------------------
echo "# off: global max 1024, [grow] enabled = false, $LOAD_COUNT flows at $LOAD_RATE/s"
config false "2%" true >"$W/off.toml"
fresh
start_watch off
udpload "$LOAD_COUNT" "$LOAD_RATE" 10000 >"$W/off.json"
OFF_LOSS=$(json_get "$W/off.json" loss_percent)
echo "# off: $(cat "$W/off.json")"
check "off: the incident loses packets (loss ${OFF_LOSS}% >= 50%)" fcmp "${OFF_LOSS:-0}" ge 50
check "off: max still 1024 (got $(<"$CTG_SYSCTL_DIR/nf_conntrack_max"))" \
    test "$(<"$CTG_SYSCTL_DIR/nf_conntrack_max")" -eq 1024
check "off: no grown event" test "$(count_events "$W/off.err" grown)" -eq 0
ctg_stop_pid "$WATCH_PID"

# ---- on ----------------------------------------------------------------------
echo "# on: [grow] enabled, budget 2%"
config true "2%" true >"$W/on.toml"
fresh
BUCKETS0=$(<"$CTG_SYSCTL_DIR/nf_conntrack_buckets")
start_watch on
MON_SECONDS=$((LOAD_COUNT / LOAD_RATE + 3))
ip netns exec "$NS_HOST" python3 "$W/monitor.py" "$W/on.err" "$W/monitor.json" "$MON_SECONDS" &
MON=$!
CTG_PIDS+=("$MON")
udpload "$LOAD_COUNT" "$LOAD_RATE" 30000 >"$W/on.json"
wait "$MON"
ON_LOSS=$(json_get "$W/on.json" loss_percent)
echo "# on: $(cat "$W/on.json")"
echo "# on: monitor $(cat "$W/monitor.json")"
check "on: loss ${ON_LOSS}% <= 5%" fcmp "${ON_LOSS:-100}" le 5
GROWN_N=$(count_events "$W/on.err" grown)
check "on: the watchdog grew the table ($GROWN_N grown events)" test "$GROWN_N" -ge 1
SAMPLES=$(python3 -c '
import json, math, sys
m = json.load(open(sys.argv[1])); i = float(sys.argv[2])
g, d = m["first_grown"], m["first_drop"]
if g is None: print("never")
elif d is None: print(0)
else: print(max(0, math.ceil((g - d) / i)))' "$W/monitor.json" "$INTERVAL")
check "on: grown within 2 samples of the first drop (${SAMPLES})" \
    python3 -c 'import sys; s=sys.argv[1]; sys.exit(0 if s != "never" and int(s) <= 2 else 1)' "$SAMPLES"
check "on: max never lowered during the load" python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))["maxes"]
sys.exit(0 if all(a < b for a, b in zip(m, m[1:])) else 1)' "$W/monitor.json"
MAX_ON=$(<"$CTG_SYSCTL_DIR/nf_conntrack_max")
BUCKETS_ON=$(<"$CTG_SYSCTL_DIR/nf_conntrack_buckets")
LAST_AFTER=$(grep ": EVENT=grown " "$W/on.err" | tail -n 1 | grep -o " CONNTRACK_MAX_AFTER=[0-9]*" | cut -d= -f2)
check "on: the last grown event's CONNTRACK_MAX_AFTER ($LAST_AFTER) is the kernel's max ($MAX_ON)" \
    test "${LAST_AFTER:-0}" -eq "$MAX_ON"
check "on: the first grown event starts from 1024 ($(field "$W/on.err" grown CONNTRACK_MAX_BEFORE))" \
    test "$(field "$W/on.err" grown CONNTRACK_MAX_BEFORE)" = 1024
for f in CONNTRACK_BUCKETS_BEFORE CONNTRACK_BUCKETS_AFTER CONNTRACK_GROW_REASON CONNTRACK_MEMORY_WORST CONNTRACK_GROW_BUDGET; do
    check "on: grown carries $f" grep -q ": EVENT=grown .* $f=" "$W/on.err"
done
check "on: the grown event is a warning" grep -q '^warning: EVENT=grown ' "$W/on.err"
check "on: this boot's record says max=$MAX_ON" grep -qx "max=$MAX_ON" "$RECORD"
check "on: remember = false wrote nothing to /var/lib" \
    test "$HAD_REMEMBERED" = 1 -o ! -e "$REMEMBERED"
check "on: no drift and no restore of the configured max" \
    test "$(grep -cE ': EVENT=(drift|restored|drift_fight) ' "$W/on.err")" -eq 0

# ---- reload ------------------------------------------------------------------
echo "# reload: SIGHUP after the growth (max $MAX_ON, buckets $BUCKETS_ON)"
kill -HUP "$WATCH_PID"
for ((i = 0; i < 50; i++)); do
    grep -q ': EVENT=reload ' "$W/on.err" && break
    sleep 0.1
done
check "reload: the watchdog reloaded" grep -q '^info: EVENT=reload ' "$W/on.err"
sleep $((3 * INTERVAL + 1))
check "reload: max not lowered ($(<"$CTG_SYSCTL_DIR/nf_conntrack_max") >= $MAX_ON)" \
    test "$(<"$CTG_SYSCTL_DIR/nf_conntrack_max")" -ge "$MAX_ON"
check "reload: buckets not lowered ($(<"$CTG_SYSCTL_DIR/nf_conntrack_buckets") >= $BUCKETS_ON)" \
    test "$(<"$CTG_SYSCTL_DIR/nf_conntrack_buckets")" -ge "$BUCKETS_ON"
check "reload: no drift, restored or drift_fight event" \
    test "$(grep -cE ': EVENT=(drift|restored|drift_fight) ' "$W/on.err")" -eq 0
ctg_stop_pid "$WATCH_PID"
GROWN_STEPS=$(grep ": EVENT=grown " "$W/on.err" | grep -o "CONNTRACK_MAX_AFTER=[0-9]*" | cut -d= -f2 | paste -sd, -)

# ---- budget ------------------------------------------------------------------
# Worst case = max x bytes per entry + buckets x 8. Buckets stay (the
# present ones are more than a grown max / 4 wants); at 384 B per entry
# (slab object 256 + extension area 128, as root reads them here) this
# budget allows max 3072: one step from 1024, short of what the load needs.
fresh
BUCKETS_B=$(<"$CTG_SYSCTL_DIR/nf_conntrack_buckets")
BUDGET=$((BUCKETS_B * 8 + 3072 * 384))
echo "# budget: ${BUDGET} B (buckets $BUCKETS_B)"
config true "${BUDGET}B" false >"$W/budget.toml"
start_watch budget
udpload 6000 "$LOAD_RATE" 50000 >"$W/budget.json"
sleep $((2 * INTERVAL))
MAX_B=$(<"$CTG_SYSCTL_DIR/nf_conntrack_max")
echo "# budget: $(cat "$W/budget.json") max=$MAX_B"
check "budget: max at the cap, 3072 (got $MAX_B)" test "$MAX_B" -eq 3072
check "budget: exactly one grown ($(count_events "$W/budget.err" grown))" \
    test "$(count_events "$W/budget.err" grown)" -eq 1
check "budget: exactly one grow_limited ($(count_events "$W/budget.err" grow_limited))" \
    test "$(count_events "$W/budget.err" grow_limited)" -eq 1
check "budget: grow_limited is a warning naming the budget" \
    grep -q "^warning: EVENT=grow_limited .*budget" "$W/budget.err"
WORST=$(field "$W/budget.err" grown CONNTRACK_MEMORY_WORST)
check "budget: worst case ${WORST:-?} B within the budget $BUDGET B" test "${WORST:-999999999999}" -le "$BUDGET"
# The load still fills the table at the cap: nothing more is written.
udpload 2000 "$LOAD_RATE" 60000 >/dev/null
sleep $((2 * INTERVAL))
check "budget: no further growth under more load (max $(<"$CTG_SYSCTL_DIR/nf_conntrack_max"))" \
    test "$(<"$CTG_SYSCTL_DIR/nf_conntrack_max")" -eq 3072
check "budget: still one grown and one grow_limited" \
    test "$(count_events "$W/budget.err" grown)/$(count_events "$W/budget.err" grow_limited)" = 1/1
ctg_stop_pid "$WATCH_PID"

# ---- child ------------------------------------------------------------------
# A watchdog in a network namespace other than the initial one cannot
# write max (0444 there): it says so once, not every [grow] every.
fresh
config true "2%" false | sed '/^namespaces/d' >"$W/child.toml"
ctg_spawn ip netns exec "$NS_HOST" "${CG[@]}" --config "$W/child.toml" watch --interval 0.5 >"$W/child.out" 2>"$W/child.err"
WATCH_PID=${CTG_PIDS[-1]}
sleep 1
udpload 4000 "$LOAD_RATE" 20000 >/dev/null
sleep 2.5
CHILD_FAULTS=$(grep -c ': EVENT=fault .*cannot grow nf_conntrack_max' "$W/child.err")
check "child: the watchdog in the host netns said once that it cannot grow max ($CHILD_FAULTS)" \
    test "$CHILD_FAULTS" -eq 1
check "child: max still 1024 (got $(<"$CTG_SYSCTL_DIR/nf_conntrack_max"))" \
    test "$(<"$CTG_SYSCTL_DIR/nf_conntrack_max")" -eq 1024
ctg_stop_pid "$WATCH_PID"

echo "# figures: loss_off=${OFF_LOSS}% loss_on=${ON_LOSS}% samples_to_grow=${SAMPLES}" \
    "interval=${INTERVAL}s grown_to=${GROWN_STEPS} drops_at_grown=$(json_get "$W/monitor.json" drops_at_grown)" \
    "budget_cap=${MAX_B} total=$((SECONDS - T_START))s"
finish
