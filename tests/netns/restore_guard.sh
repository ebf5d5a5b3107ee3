#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Issue 18.4 on the real kernel: `[watch] restore = true` never lowers
# nf_conntrack_max below the entries in use plus 20% in any namespace the
# watchdog can see (the guard `apply` uses too).
#
#   full   a namespace of ours holding FLOWS UDP entries (its own
#          udp_timeout raised so they outlive the test)
#
# The global max is KERNEL_MAX; the configuration says max = CONFIGURED,
# below FLOWS, with restore = true and namespaces = "all". Before the fix
# the watchdog wrote CONFIGURED at once and then reported its own
# "count exceeds max" fault.
#   1. While full holds its entries, an outside reader samples
#      nf_conntrack_max every 20 ms: it must never read below
#      FLOWS + 20%. The watchdog logs restore_refused once and keeps
#      reporting the drift.
#   2. full is deleted: the next scan forgets it, and the restore goes
#      through (max reads CONFIGURED, one `restored` event).
#
# Changes nf_conntrack_max (global) for about 15 s; restored on exit, INT
# and TERM (lib.sh's trap). Takes the shared test lock. Traffic stays on
# lo inside the full namespace; no routes.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

NS_FULL="$CTG_TAG-full"
FLOWS=1500
KERNEL_MAX=4000
CONFIGURED=1000
GUARD=$((FLOWS + FLOWS / 5))

guard_teardown() {
    for pid in "${CTG_PIDS[@]}"; do ctg_stop_pid "$pid"; done
    CTG_PIDS=()
    if [[ -e /run/netns/$NS_FULL ]]; then
        for pid in $(ip netns pids "$NS_FULL" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
        ip netns del "$NS_FULL" 2>/dev/null || ctg_log "could not delete netns $NS_FULL"
    fi
}
finish() {
    guard_teardown
    if ! ctg_teardown; then not_ok "global sysctls restored"; fi
    echo "$PASS passed, $FAIL failed"
    [[ $FAIL == 0 ]]
    exit
}
# Our namespace goes too when the script is interrupted.
ctg_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    guard_teardown
    ctg_teardown || rc=1
    exit "$rc"
}

ctg_find_bin "$REPO" || { not_ok "conntrack-guard binary found (set CONNTRACK_GUARD_BIN or build target/release)"; finish; }

ctg_take_globals || { not_ok "took /run/conntrack-guard-tests.lock within 600 s"; finish; }
W=$(ctg_workdir)
MAXF=$CTG_SYSCTL_DIR/nf_conntrack_max
set_global_max "$KERNEL_MAX"

# --- full: FLOWS entries -----------------------------------------------------
ip netns add "$NS_FULL" || { not_ok "ip netns add $NS_FULL"; finish; }
ip -n "$NS_FULL" link set lo up
ip -n "$NS_FULL" addr add 198.18.3.1/32 dev lo
# A NAT rule makes conntrack track this namespace at all.
ip netns exec "$NS_FULL" nft -f - <<'EOF' || { not_ok "nft rules in full"; finish; }
table ip ctg_guard {
    chain out_nat {
        type nat hook output priority -100; policy accept;
        ip daddr 198.18.3.1 udp dport 7000 dnat to 198.18.3.1:7001
    }
}
EOF
# Per namespace: the entries must outlive the test (default 30 s).
ip netns exec "$NS_FULL" sh -c "echo 300 >$CTG_SYSCTL_DIR/nf_conntrack_udp_timeout"
# One datagram from each of FLOWS source ports: FLOWS entries. Bounded:
# FLOWS datagrams, 30 s at most. Sockets are closed at once; the entries stay.
timeout 30 ip netns exec "$NS_FULL" python3 - "$FLOWS" <<'EOF' || not_ok "UDP flows in full"
import socket, sys
for i in range(int(sys.argv[1])):
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.bind(("198.18.3.1", 20000 + i))
    c.sendto(b"x", ("198.18.3.1", 7000))
    c.close()
EOF
full_count=$(ip netns exec "$NS_FULL" cat "$CTG_SYSCTL_DIR/nf_conntrack_count")
host_count=$(<"$CTG_SYSCTL_DIR/nf_conntrack_count")
ctg_log "full holds $full_count entries; the initial netns $host_count; max $(<"$MAXF")"
check "full holds at least $FLOWS entries ($full_count), more than the configured max $CONFIGURED" \
    test "$full_count" -ge "$FLOWS"

cat >"$W/guard.toml" <<EOF2
[conntrack]
max = $CONFIGURED
buckets = "keep"
udp_timeout = "keep"
udp_timeout_stream = "keep"

[watch]
interval = 0.2
restore = true
restore_limit = 3
namespaces = "all"
namespaces_every = "1s"
triage = false
EOF2
chmod 600 "$W/guard.toml"

# The outside reader: the lowest nf_conntrack_max seen, every 20 ms, for
# 5 s (bounded: 250 reads).
python3 - "$MAXF" >"$W/lowest" <<'EOF' &
import sys, time
lowest = None
for _ in range(250):
    v = int(open(sys.argv[1]).read())
    lowest = v if lowest is None else min(lowest, v)
    time.sleep(0.02)
print(lowest)
EOF
READER=$!
CTG_PIDS+=($READER)
"${CG[@]}" --config "$W/guard.toml" watch >"$W/watch.out" 2>"$W/watch.err" &
WATCH_PID=$!
CTG_PIDS+=($WATCH_PID)
wait "$READER"
lowest=$(<"$W/lowest")
max_then=$(<"$MAXF")
python3 "$HERE/events.py" "$W/watch.err" >"$W/phase1.json"
count_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"].get(sys.argv[2], 0))' "$1" "$2"; }
ctg_log "phase 1 events: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"])' "$W/phase1.json")"
check "watch started" grep -q 'EVENT=started' "$W/watch.err"
check "nf_conntrack_max never read below $GUARD ($FLOWS in use + 20%) while full held them (lowest $lowest)" \
    test "${lowest:-0}" -ge "$GUARD"
check "... and still reads $KERNEL_MAX ($max_then)" test "$max_then" == "$KERNEL_MAX"
check "the drift is reported" test "$(count_of "$W/phase1.json" drift)" -ge 1
check "restore_refused logged exactly once over about 25 samples (got $(count_of "$W/phase1.json" restore_refused))" \
    test "$(count_of "$W/phase1.json" restore_refused)" == 1
check "restore_refused names the $FLOWS entries in use and the $GUARD needed" \
    grep -q "EVENT=restore_refused .*CONNTRACK_IN_USE=$FLOWS[0-9]* .*MESSAGE=.*refused: [0-9]* entries are in use" "$W/watch.err"
check "no restored event and no fault while full held its entries" \
    test "$(count_of "$W/phase1.json" restored)$(count_of "$W/phase1.json" fault)" == 00
check "no level event: the guard made no outage of its own" \
    python3 -c 'import json,sys; sys.exit(1 if any(e["event"].startswith("level_") for e in json.load(open(sys.argv[1]))["events"]) else 0)' "$W/phase1.json"

# --- 2: the entries go, the restore goes through ---------------------------
ip netns del "$NS_FULL" || not_ok "ip netns del $NS_FULL"
for _ in $(seq 50); do [[ $(<"$MAXF") == "$CONFIGURED" ]] && break; sleep 0.1; done
max_after=$(<"$MAXF")
ctg_stop_pid "$WATCH_PID"
python3 "$HERE/events.py" "$W/watch.err" >"$W/events.json"
ctg_log "all events: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"])' "$W/events.json")"
check "with full gone the restore went through: max reads $CONFIGURED ($max_after)" \
    test "$max_after" == "$CONFIGURED"
check "one restored event (got $(count_of "$W/events.json" restored))" \
    test "$(count_of "$W/events.json" restored)" == 1
check "still one restore_refused in all" test "$(count_of "$W/events.json" restore_refused)" == 1

finish
