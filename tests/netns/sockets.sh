#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Issue 10, the socket receive buffer drop point on the real kernel: in a
# private network namespace, a UDP receiver with the smallest SO_RCVBUF
# that reads slowly is flooded with a bounded burst. The watchdog, in that
# namespace, must log udp_drops events whose RcvbufErrors deltas add up to
# exactly the kernel's change there; `status` must name "socket receive
# buffer" as the drop point while the conntrack counters stay flat.
#
# Touches no global value. Traffic stays inside one namespace this script
# creates (198.18.9.1 on its loopback, no other route).
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

NS="ctg-$$-sock"
finish() {
    for p in "${CTG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    ip netns del "$NS" 2>/dev/null
    rm -rf "$CTG_WORKDIR"
    echo "$PASS passed, $FAIL failed"
    [[ $FAIL == 0 ]]
    exit
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ctg_find_bin "$REPO" || { not_ok "conntrack-guard binary found (set CONNTRACK_GUARD_BIN or build target/release)"; exit 1; }
W=$(ctg_workdir)
ADDR=198.18.9.1
PORT=7000

ip netns add "$NS" || { not_ok "ip netns add"; exit 1; }
ip -n "$NS" link set lo up
ip -n "$NS" addr add "$ADDR/32" dev lo
in_ns() { ip netns exec "$NS" "$@"; }
rcvbuf() { in_ns awk '/^Udp: / && ++n == 2 { print $6 }' /proc/net/snmp; }
# Nothing tracks in this namespace: no rule uses conntrack.
cat >"$W/watch.toml" <<'EOF2'
[conntrack]
max = "keep"
buckets = "keep"
udp_timeout = "keep"
udp_timeout_stream = "keep"
EOF2
chmod 600 "$W/watch.toml"

# Not through in_ns: a shell function in the background is a subshell, and
# $! would be its PID, not the program's.
ip netns exec "$NS" python3 "$HERE/slowrecv.py" "$ADDR" "$PORT" 20 0.05 >"$W/recv.json" 2>"$W/recv.err" &
CTG_PIDS+=($!)
for _ in $(seq 50); do grep -q ready "$W/recv.err" 2>/dev/null && break; sleep 0.1; done
check "receiver bound" grep -q ready "$W/recv.err"

ip netns exec "$NS" "${CG[@]}" --config "$W/watch.toml" watch --interval 0.2 >"$W/watch.out" 2>"$W/watch.err" &
WATCH_PID=$!
CTG_PIDS+=($WATCH_PID)
for _ in $(seq 50); do grep -q 'EVENT=started' "$W/watch.err" && break; sleep 0.1; done
check "watch started in the namespace" grep -q 'EVENT=started' "$W/watch.err"
sleep 0.5
R0=$(rcvbuf)
CT0=$(in_ns "${CG[@]}" --config "$W/watch.toml" status --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"]["drop"])')

send() { # COUNT
    in_ns python3 -c '
import socket, sys, time
n, addr, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + 10
for i in range(n):
    if time.monotonic() > end:
        break
    s.sendto(b"x" * 200, (addr, port))
' "$1" "$ADDR" "$PORT"
}
send 3000
# status over a window that includes a second burst.
( sleep 0.3; send 1000 ) &
in_ns "${CG[@]}" --config "$W/watch.toml" status --json --window 1 >"$W/status.json" 2>"$W/status.err"
STATUS_RC=$?
wait $!
sleep 0.6
kill -TERM "$WATCH_PID"; wait "$WATCH_PID" 2>/dev/null
R1=$(rcvbuf)
python3 "$HERE/events.py" "$W/watch.err" >"$W/events.json"
SUM=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["delta_sums"].get("udp_drops", {}).get("CONNTRACK_UDP_RCVBUF_ERRORS_DELTA", 0))' "$W/events.json")
echo "# RcvbufErrors $R0 -> $R1 (+$((R1 - R0))), udp_drops deltas sum $SUM; events $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"])' "$W/events.json")"
check "the kernel counted receive buffer drops (+$((R1 - R0)) of 4000 sent)" test $((R1 - R0)) -gt 1000
check "udp_drops event deltas ($SUM) == the kernel's RcvbufErrors change ($((R1 - R0)))" test "$SUM" -eq $((R1 - R0))
grep -o "^[a-z]*: EVENT=[a-z_]* .*DELTA=[0-9]*" "$W/watch.err" | sed "s/^/#   /" | cut -c1-200
check "no conntrack drops event" bash -c '! grep -q "EVENT=drops " "$1"' _ "$W/watch.err"
echo "# status rc=$STATUS_RC: $(head -c 400 "$W/status.json")"
check "status names the socket receive buffer as the drop point, and only it" \
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["rising"]; sys.exit(0 if r["drop_points"]==["socket receive buffer"] and r["socket"]["rcvbuf_errors"]>0 else 1)' "$W/status.json"
check "the conntrack counters stayed flat (drop +0 in the window)" \
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["rising"]; sys.exit(0 if r["drop"]==0 and r["early_drop"]==0 else 1)' "$W/status.json"
CT1=$(in_ns "${CG[@]}" --config "$W/watch.toml" status --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"]["drop"])')
check "conntrack drop in this namespace unchanged ($CT0 -> $CT1)" test "$CT0" = "$CT1"
check "status exits 1 (WARNING: socket drops) (got $STATUS_RC)" test "$STATUS_RC" -eq 1
