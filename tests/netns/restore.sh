#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Issue 14, restore on drift against a foreign writer, on the real kernel:
# a stand-in "foreign writer" rewrites nf_conntrack_max every 0.5 s. The
# watchdog with `[watch] restore = true` and `restore_limit = 3` must
# restore it, stop after the limit with one drift_fight event, and never
# write more often than the limit allows. The writes back are counted from
# outside, by the foreign writer itself.
#
# Changes nf_conntrack_max (global) for about 10 s; restored on exit, INT
# and TERM (lib.sh's trap). Takes the shared test lock.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

finish() {
    for p in "${CTG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    if ! ctg_teardown; then not_ok "global sysctls restored"; fi
    echo "$PASS passed, $FAIL failed"
    [[ $FAIL == 0 ]]
    exit
}

ctg_find_bin "$REPO" || { not_ok "conntrack-guard binary found (set CONNTRACK_GUARD_BIN or build target/release)"; finish; }

ctg_take_globals || { not_ok "took /run/conntrack-guard-tests.lock within 600 s"; finish; }
W=$(ctg_workdir)
MAXF=$CTG_SYSCTL_DIR/nf_conntrack_max
WANT=$CTG_SAVED_MAX
FOREIGN=$((WANT - 8192))
cat >"$W/restore.toml" <<EOF2
[conntrack]
max = $WANT
buckets = "keep"
udp_timeout = "keep"
udp_timeout_stream = "keep"

[watch]
interval = 0.1
restore = true
restore_limit = 3
triage = false
EOF2
chmod 600 "$W/restore.toml"

"${CG[@]}" --config "$W/restore.toml" watch >"$W/watch.out" 2>"$W/watch.err" &
WATCH_PID=$!
CTG_PIDS+=($WATCH_PID)
for _ in $(seq 50); do grep -q 'EVENT=started' "$W/watch.err" && break; sleep 0.1; done
check "watch started" grep -q 'EVENT=started' "$W/watch.err"

# The foreign writer: 12 rewrites, 0.5 s apart (bounded). Before each one
# (and once at the end) it looks at the key: finding the configured value
# means someone wrote it back since its last write. That is the count of
# writes back, taken outside the watchdog (the watchdog can restore at
# most once between two foreign writes: only a drift triggers it).
OUTSIDE=0
for i in $(seq 12); do
    if ((i > 1)) && [[ $(<"$MAXF") == "$WANT" ]]; then OUTSIDE=$((OUTSIDE + 1)); fi
    echo "$FOREIGN" >"$MAXF"
    sleep 0.5
done
if [[ $(<"$MAXF") == "$WANT" ]]; then OUTSIDE=$((OUTSIDE + 1)); fi
sleep 0.3
kill -TERM "$WATCH_PID"; wait "$WATCH_PID" 2>/dev/null
python3 "$HERE/events.py" "$W/watch.err" >"$W/events.json"
COUNTS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"])' "$W/events.json")
RESTORED=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"].get("restored", 0))' "$W/events.json")
FIGHTS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"].get("drift_fight", 0))' "$W/events.json")
echo "# events: $COUNTS; writes back seen from outside: ${OUTSIDE:-none}"
check "the watchdog restored the key (restored events: $RESTORED)" test "$RESTORED" -ge 1
check "exactly restore_limit (3) restores, no more (restored events: $RESTORED)" test "$RESTORED" -eq 3
check "one drift_fight event after the limit (got $FIGHTS)" test "$FIGHTS" -eq 1
check "writes back counted from outside (${OUTSIDE:-?}) never exceed the limit" test "${OUTSIDE:-99}" -le 3
check "... and match the restored events" test "${OUTSIDE:-x}" = "$RESTORED"
check "the key is left with the foreign value after the fight ($(<"$MAXF"))" test "$(<"$MAXF")" = "$FOREIGN"
check "drift_fight says to stop one of the writers" grep -q "EVENT=drift_fight .*Stop one of us" "$W/watch.err"
finish
