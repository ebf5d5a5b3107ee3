#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Issue 13 on the real kernel: `conntrack-guard top --netns` against a
# table filled with a known mix in the host netns of the DNAT topology.
#
#   80%  UDP to 198.18.0.1:6970, DNATed to the container, never answered
#        (the container drops them silently, so no ICMP error ends them),
#        from 198.18.2.2 and 198.18.3.2 (half each)
#   15%  UDP to 198.18.0.1:6969, DNATed to the echo responder, answered
#   5%   TCP SYN to 198.18.1.2:8080, routed (no NAT), dropped: SYN_SENT
#
# One flow per (source address, source port): ephemeral ports would merge
# flows. The host netns's UDP and SYN_SENT timeouts are raised to 600 s
# (per-netns keys, gone with the netns), so nothing expires during the test
# and the total must equal nf_conntrack_count exactly.
#
# The bridge adds one IGMP entry of its own (198.18.1.x, unreplied): the
# 1% tolerance covers it.
#
# Checks: each group within 1% of what was created; total == count before
# and after; count from /proc/sys read inside the netns (not the initial
# netns's); a 10 ms bound gives a partial result with exit 1; advice names
# udp/6970 and the NAT caveat.
#
# TOP_FLOWS (default 100000) sets the size. nf_conntrack_max is global:
# raised only if below 1.5 x TOP_FLOWS, recorded and restored by lib.sh's
# trap. Takes the shared test lock.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   - $*"; }
not_ok() { FAIL=$((FAIL + 1)); echo "FAIL - $*"; }
check() { local d=$1; shift; if "$@"; then ok "$d"; else not_ok "$d"; fi; }
finish() {
    if ! ctg_teardown; then not_ok "global sysctls restored"; fi
    echo "$PASS passed, $FAIL failed"
    [[ $FAIL == 0 ]]
    exit
}

N=${TOP_FLOWS:-100000}
if ! [[ $N =~ ^[0-9]+$ ]] || ((N < 1000 || N > 200000)); then
    echo "TOP_FLOWS must be 1000..200000"
    exit 2
fi
N_UNANS=$((N * 80 / 100))
N_ANS=$((N * 15 / 100))
N_TCP=$((N - N_UNANS - N_ANS))
HALF=$((N_UNANS / 2))

BIN=${CONNTRACK_GUARD_BIN:-}
if [[ -z $BIN ]]; then
    for b in "$REPO/target/release/conntrack-guard" "$REPO/target/debug/conntrack-guard"; do
        if [[ -x $b ]] && [[ -z $BIN || $b -nt $BIN ]]; then BIN=$b; fi
    done
fi
[[ -n $BIN && -x $BIN ]] || { not_ok "conntrack-guard binary found"; finish; }
FILL=${CTFILL_BIN:-}
if [[ -z $FILL ]]; then
    (cd "$REPO" && cargo build -q --release --example ctfill) || { not_ok "built examples/ctfill"; finish; }
    FILL="$REPO/target/release/examples/ctfill"
fi
CG=(env -u CONNTRACK_GUARD_ROOT -u JOURNAL_STREAM -u NOTIFY_SOCKET
    -u WATCHDOG_USEC -u WATCHDOG_PID "$BIN")

exec 9>/run/conntrack-guard-tests.lock
flock -w 600 9 || { not_ok "took /run/conntrack-guard-tests.lock within 600 s"; finish; }
install_traps
save_globals
W=$(ctg_workdir)

need=$((N * 3 / 2))
if ((CTG_SAVED_MAX < need)); then
    set_global_max "$need"
    ctg_log "raised nf_conntrack_max to $need (was $CTG_SAVED_MAX)"
fi

topo_up 300 || { not_ok "topology up"; finish; }

# Extra client sources in other /24s (routed back by the host netns only;
# their flows are never answered), a route to the container for the
# un-NATed TCP flows, a second DNAT, and silent drops in the container.
in_client ip addr add 198.18.2.2/24 dev c0 &&
    in_client ip addr add 198.18.3.2/24 dev c0 &&
    in_client ip route add 198.18.1.0/24 via "$CTG_HOST_IP" &&
    in_host ip route add 198.18.2.0/23 dev h0 &&
    in_host nft add rule ip ctg_nat prerouting udp dport 6970 dnat to "$CTG_CTR_IP:6970" &&
    in_ctr nft -f - <<'EOF' || { not_ok "extra topology"; finish; }
table inet ctg_quiet {
    chain input {
        type filter hook input priority 0; policy accept;
        udp dport 6970 drop
        tcp dport 8080 drop
    }
}
EOF
# A late duplicate reply to a closed client socket must not produce an
# ICMP error that could end an entry.
in_client nft -f - <<'EOF' || { not_ok "client icmp filter"; finish; }
table inet ctg_quiet {
    chain output {
        type filter hook output priority 0; policy accept;
        icmp type destination-unreachable drop
    }
}
EOF
for k in nf_conntrack_udp_timeout nf_conntrack_udp_timeout_stream nf_conntrack_tcp_timeout_syn_sent; do
    in_host sh -c "echo 600 > $CTG_SYSCTL_DIR/$k" || { not_ok "host netns $k = 600"; finish; }
done

t0=$(date +%s.%N)
got_a=$(in_client "$FILL" udp --src 198.18.2.2,198.18.3.2 --dst "$CTG_HOST_IP:6970" \
    --count "$N_UNANS" --first-port $((65536 - HALF)) --max-seconds 120)
got_b=$(in_client "$FILL" udp-rr --src "$CTG_CLIENT_IP" --dst "$CTG_HOST_IP:$CTG_PORT" \
    --count "$N_ANS" --first-port 20000 --max-seconds 120)
got_c=$(in_client "$FILL" tcp-syn --src "$CTG_CLIENT_IP" --dst "$CTG_CTR_IP:8080" \
    --count "$N_TCP" --first-port 40000 --max-seconds 60)
t1=$(date +%s.%N)
ctg_log "created $got_a unanswered, $got_b answered, $got_c tcp in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s"
check "sent all $N_UNANS unanswered UDP flows" [ "${got_a:-0}" = "$N_UNANS" ]
check "all $N_ANS answered UDP flows got a reply" [ "${got_b:-0}" = "$N_ANS" ]
check "sent all $N_TCP TCP SYNs" [ "${got_c:-0}" = "$N_TCP" ]

# Let the last packets land.
prev=-1
for ((i = 0; i < 30; i++)); do
    cur=$(host_count)
    [[ $cur == "$prev" ]] && break
    prev=$cur
    sleep 0.2
done
count=$(host_count)
init_count=$(<"$CTG_SYSCTL_DIR/nf_conntrack_count")
ctg_log "host netns count $count (initial netns $init_count)"

NSPATH=/run/netns/$NS_HOST
"${CG[@]}" top --netns "$NSPATH" --json -n 20 >"$W/top.json" 2>"$W/top.err"
rc=$?
check "top --netns exits 0 (complete)" [ "$rc" = 0 ]
"${CG[@]}" top --netns "$NSPATH" >"$W/top.txt" 2>&1
sed 's/^/    /' "$W/top.txt"

python3 - "$W/top.json" "$count" "$N_UNANS" "$N_ANS" "$N_TCP" "$HALF" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
count, ua, an, tc, half = map(int, sys.argv[2:])
ok = True
def line(good, text):
    global ok
    ok &= good
    print(("ok   - " if good else "FAIL - ") + text)
line(r["complete"] is True and "partial" not in r, "report says complete")
line(r["total"] == count, f"total {r['total']} == nf_conntrack_count {count} (timeouts 600 s: no churn)")
line(r["count_before"] == count and r["count_after"] == count,
     f"count read inside the netns: before {r['count_before']}, after {r['count_after']}")
want = {
    "dport": {"udp/6970": ua, "udp/6969": an, "tcp/8080": tc},
    "state": {"unreplied": ua, "replied": an, "tcp:SYN_SENT": tc},
    "source": {"198.18.2.0/24": half, "198.18.3.0/24": ua - half, "198.18.0.0/24": an + tc},
    "nat": {"dnat to 198.18.1.2:6970": ua, "dnat to 198.18.1.2:6969": an, "none": tc},
}
groups = {d["by"]: {g["key"]: g["count"] for g in d["groups"]} for d in r["groups"]}
for dim, exp in want.items():
    for key, n in exp.items():
        got = groups.get(dim, {}).get(key, 0)
        err = abs(got - n) / n
        line(err <= 0.01, f"{dim} {key}: {got} of {n} created ({err * 100:.3f}% off)")
adv = " ".join(r["advice"])
line("udp/6970" in adv and "NAT needs conntrack" in adv, "advice names udp/6970 and the NAT caveat")
sys.exit(0 if ok else 1)
EOF
py=$?
if [[ $py == 0 ]]; then ok "top --json matches the created mix"; else not_ok "top --json matches the created mix"; fi
check "initial netns count is not the host netns count" [ "$init_count" != "$count" ]

"${CG[@]}" top --netns "$NSPATH" --json --timeout 10ms >"$W/partial.json" 2>"$W/partial.err"
rc=$?
check "a 10 ms bound exits 1" [ "$rc" = 1 ]
check "a 10 ms bound is reported partial" \
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if r["complete"] is False and "time bound" in r["partial"] else 1)' "$W/partial.json"
check "partial says so on stderr" grep -q "partial" "$W/partial.err"

finish
