#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Issue 18 soak on the real kernel: the watchdog with namespaces = "all"
# and a triage at every level change (triage_every 1s), for SOAK_SECONDS
# (600 unless set; CI runs the 600), while
#   - a load cycle fills its table past critical and empties it again
#     every LOAD_PERIOD seconds (lib.sh's Docker-like topology: client ->
#     DNAT host -> container; the watchdog runs in the host namespace, so
#     that table is its own; global max GLOBAL_MAX);
#   - namespaces are created and deleted all the time (half with a
#     process in them), so the scans see them come and go.
# Open fds, threads and RSS of the watchdog are sampled each minute (the
# first sample after one warm-up load cycle); fds and threads as the
# lowest of five reads 0.2 s apart, because the triage and the namespace
# scan run on short-lived threads. The end must be within 5% of the start
# (fds and threads: equal or within 5%). The figures are printed.
# Memory: RssAnon (heap, stacks, anonymous mappings: what the process
# owns) and VmRSS are printed each minute. The check is that RssAnon does
# not keep growing: over the second half of the soak it moves by at most 5%
# or 64 KiB, whichever is more (a leak of 13 KiB a minute fails it). The
# start-to-end figures are printed, not judged. On 2026-12-07 RssAnon rose
# by 90-240 KiB in the first minutes of every run, with the binary of that
# day and of the session before alike, and crept by 2-6 KiB a minute after
# that (second halves: +12, +20, +32 KiB; in one run the rise came late and
# the second half was +156 KiB, which fails this check). That is not
# explained yet (see issue 19's note of that day): this check fails until
# it is found. A check of VmRSS from the start failed 3 runs in 4, at +5.8
# to +8.1%.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

SOAK_SECONDS=${SOAK_SECONDS:-600}
LOAD_PERIOD=${LOAD_PERIOD:-40}
GLOBAL_MAX=2000
LOAD_FLOWS=1950
LOAD_RATE=1000
CHURN_PREFIX="$CTG_TAG-churn"

soak_teardown() {
    local ns pid
    touch "${W:-/nonexistent}/churn.stop" 2>/dev/null
    for pid in "${CTG_PIDS[@]}"; do ctg_stop_pid "$pid"; done
    CTG_PIDS=()
    for ns in $(ls /run/netns 2>/dev/null | grep "^$CHURN_PREFIX-"); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null || ctg_log "could not delete netns $ns"
    done
}
finish() {
    soak_teardown
    if ! ctg_teardown; then not_ok "global sysctls restored"; fi
    echo "$PASS passed, $FAIL failed"
    [[ $FAIL == 0 ]]
    exit
}
ctg_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    soak_teardown
    ctg_teardown || rc=1
    exit "$rc"
}

ctg_find_bin "$REPO" || { not_ok "conntrack-guard binary found (set CONNTRACK_GUARD_BIN or build target/release)"; finish; }
ctg_take_globals || { not_ok "took /run/conntrack-guard-tests.lock within 600 s"; finish; }
W=$(ctg_workdir)
topo_up $((SOAK_SECONDS + 240)) || { not_ok "topology up"; finish; }
# Entries of one burst expire within seconds (per-netns timeout), so the
# level falls back to ok between bursts.
in_host sysctl -q -w net.netfilter.nf_conntrack_udp_timeout=3
set_global_max "$GLOBAL_MAX"

cat >"$W/soak.toml" <<'EOF'
[conntrack]
max = "keep"
buckets = "keep"
udp_timeout = "keep"
udp_timeout_stream = "keep"
[watch]
namespaces = "all"
namespaces_every = "2s"
triage = true
triage_every = "1s"
drops_every = "10s"
# In the host namespace max is read-only: growth could only fail (one
# fault); the soak is about the watching.
[grow]
enabled = false
EOF
chmod 600 "$W/soak.toml"
ip netns exec "$NS_HOST" "${CG[@]}" --config "$W/soak.toml" watch --interval 0.2 \
    >"$W/watch.out" 2>"$W/watch.err" &
WATCH=$!
CTG_PIDS+=($WATCH)

# --- churn -------------------------------------------------------------------
# At most 20 000 namespaces, SOAK_SECONDS + 120 s, stopped by churn.stop.
churn() {
    local i ns end=$((SECONDS + SOAK_SECONDS + 120))
    for ((i = 0; i < 20000 && SECONDS < end; i++)); do
        [[ -e $W/churn.stop ]] && break
        ns="$CHURN_PREFIX-$((i % 8))"
        if [[ -e /run/netns/$ns ]]; then
            ip netns del "$ns" 2>/dev/null
        else
            ip netns add "$ns" 2>/dev/null || continue
            if ((i % 2)); then
                timeout 3 ip netns exec "$ns" sleep 2 2>/dev/null &
            fi
        fi
        sleep 0.25
    done
    wait 2>/dev/null
}
churn &
CHURN=$!
CTG_PIDS+=($CHURN)

# --- load --------------------------------------------------------------------
# One burst every LOAD_PERIOD s: LOAD_FLOWS new flows at LOAD_RATE/s, each
# from its own source port (one entry each on the DNAT host): ok ->
# warning -> critical; held HOLD s, then the table is flushed (expired
# entries leave only when the kernel's GC worker gets to them, which can
# take most of a minute: the flush makes "back to ok" deterministic).
HOLD=5
bursts=0
burst() {
    udpload "$LOAD_FLOWS" "$LOAD_RATE" 20000 --max-seconds 30 >>"$W/load.json" 2>>"$W/load.err"
    bursts=$((bursts + 1))
    local peak
    peak=$(host_count)
    sleep "$HOLD"
    in_host conntrack -F >/dev/null 2>&1
    echo "$(date +%T) burst $bursts: count $peak after it, $(host_count) after the flush" >>"$W/bursts.log"
}

# figures PID: "fds threads vmrss_kib anon_kib" (fds and threads: lowest
# of 5 reads).
figures() {
    local pid=$1 k fd th rss anon minfd=999999 minth=999999
    for ((k = 0; k < 5; k++)); do
        fd=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
        th=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
        ((fd < minfd)) && minfd=$fd
        ((${th:-999999} < minth)) && minth=$th
        sleep 0.2
    done
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
    anon=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
    echo "$minfd $minth ${rss:-0} ${anon:-0}"
}

T0=$SECONDS
burst            # warm-up: the first triage, the first scans
sleep 10
START_AT=$SECONDS
read -r fd0 th0 rss0 anon0 < <(figures "$WATCH")
printf '# minute  fds  threads  rss_kib  anon_kib  (bursts so far)\n'
printf '# %6d  %3d  %7d  %7d  %8d  (%d)\n' 0 "$fd0" "$th0" "$rss0" "$anon0" "$bursts"
next_burst=$((SECONDS + LOAD_PERIOD))
minute=0
alive=1
while ((SECONDS - START_AT < SOAK_SECONDS)); do
    if ! kill -0 "$WATCH" 2>/dev/null; then alive=0; break; fi
    # No burst in the last 20 s: the last one must drain before the end.
    if ((SECONDS >= next_burst && SECONDS - START_AT < SOAK_SECONDS - 20)); then
        burst
        next_burst=$((SECONDS + LOAD_PERIOD))
    fi
    if (((SECONDS - START_AT) / 60 > minute)); then
        minute=$(((SECONDS - START_AT) / 60))
        read -r fd th rss anon < <(figures "$WATCH")
        printf '# %6d  %3d  %7d  %7d  %8d  (%d)\n' "$minute" "$fd" "$th" "$rss" "$anon" "$bursts"
        # The second half starts at the first minute past the middle.
        ((minute * 60 >= SOAK_SECONDS / 2 && ${anon_mid:-0} == 0)) && anon_mid=$anon
    fi
    sleep 1
done
check "the watchdog ran the whole soak ($((SECONDS - T0)) s)" test "$alive" == 1
sleep 3    # the last flush is seen: back to ok
read -r fd1 th1 rss1 anon1 < <(figures "$WATCH")
printf '# %6s  %3d  %7d  %7d  %8d  (%d)\n' end "$fd1" "$th1" "$rss1" "$anon1" "$bursts"
touch "$W/churn.stop"
ctg_stop_pid "$CHURN"
ctg_stop_pid "$WATCH"
check "the watchdog exited 0 on SIGTERM (rc $CTG_STOP_RC)" test "$CTG_STOP_RC" == 0

within() { # START END PERCENT [AT_LEAST]
    python3 -c 'import sys; a, b, p, m = map(float, (sys.argv[1:] + ["0"])[:4]); sys.exit(0 if abs(b - a) <= max(a * p / 100, m) else 1)' "$@"
}
check "open fds end within 5% of the start ($fd0 -> $fd1)" within "$fd0" "$fd1" 5
check "threads end within 5% of the start ($th0 -> $th1)" within "$th0" "$th1" 5
printf '# memory from the start: RssAnon %d -> %d KiB, VmRSS %d -> %d KiB\n' "$anon0" "$anon1" "$rss0" "$rss1"
check "RssAnon was read (start $anon0 KiB, middle ${anon_mid:-none})" test "$anon0" -gt 0 -a "${anon_mid:-0}" -gt 0
check "anonymous memory (RssAnon) does not keep growing: the second half moves it by at most 5% or 64 KiB (${anon_mid:-?} -> $anon1 KiB)" \
    within "${anon_mid:-0}" "$anon1" 5 64

python3 "$HERE/events.py" "$W/watch.err" >"$W/events.json"
counts=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"])' "$W/events.json")
ctg_log "events: $counts"
echo "# events over the soak: $counts"
host_rises=$(grep -E '^[a-z]+: EVENT=level_(warning|critical) ' "$W/watch.err" | grep -vc CONNTRACK_NETNS=)
triages=$(grep -cE '^[a-z]+: EVENT=triage ' "$W/watch.err")
okays=$(grep -E '^[a-z]+: EVENT=level_ok ' "$W/watch.err" | grep -vc CONNTRACK_NETNS=)
echo "# $bursts bursts; the watchdog's own table: $host_rises rises, $okays returns to ok; $triages triages"
check "every burst raised the level and it came back to ok ($bursts bursts, $host_rises rises, $okays ok)" \
    test "$host_rises" -ge "$bursts" -a "$okays" -ge "$bursts"
check "a triage for every burst ($triages triages for $bursts bursts)" test "$triages" -ge "$bursts"
check "no fault, no netns_unavailable" \
    python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["counts"]; sys.exit(1 if c.get("fault") or c.get("netns_unavailable") else 0)' "$W/events.json"
finish
