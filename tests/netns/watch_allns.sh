#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Issue 18 on the real kernel, the watchdog with `namespaces = "all"`:
#
#   nocap   run under `capsh --drop=cap_sys_admin` (root without
#           CAP_SYS_ADMIN: every setns fails with EPERM): exactly one
#           netns_unavailable event naming CAP_SYS_ADMIN and the allns
#           drop-in, the status line says "netns: no access", and the
#           keep-alives go on.
#   vanish  a namespace is deleted in the middle of a drop incident (drops
#           held back in its window, drops_every = 1h): the watchdog logs
#           those drops and the incident's drops_ended, carrying the
#           namespace's inode.
#
# Changes nf_conntrack_max globally for about half a minute; it is restored
# on exit, INT and TERM (lib.sh's trap). Takes the shared test lock.
# Traffic stays inside the busy namespace (198.18.2.1 on its lo). No
# default routes. Every load loop is bounded.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

NS_OTHER="$CTG_TAG-other"
NS_BUSY="$CTG_TAG-busy"
MINE=()
GLOBAL_MAX=1024
BUSY_FLOWS=1000
EXTRA_FLOWS=60

wa_teardown() {
    local ns pid
    for pid in "${CTG_PIDS[@]}"; do ctg_stop_pid "$pid"; done
    CTG_PIDS=()
    for ns in "${MINE[@]}"; do
        [[ -e /run/netns/$ns ]] || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null || ctg_log "could not delete netns $ns"
    done
    MINE=()
}
finish() {
    wa_teardown
    if ! ctg_teardown; then not_ok "global sysctls restored"; fi
    echo "$PASS passed, $FAIL failed"
    [[ $FAIL == 0 ]]
    exit
}
ctg_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    wa_teardown
    ctg_teardown || rc=1
    exit "$rc"
}

if ! command -v capsh >/dev/null; then
    if [[ ${CI:-} == true ]]; then
        not_ok "capsh is installed (libcap2-bin)"
        finish
    fi
    echo "SKIP: capsh is not installed (libcap2-bin)"
    echo "0 passed, 0 failed"
    exit 0
fi
ctg_find_bin "$REPO" || { not_ok "conntrack-guard binary found (set CONNTRACK_GUARD_BIN or build target/release)"; finish; }
ctg_take_globals || { not_ok "took /run/conntrack-guard-tests.lock within 600 s"; finish; }
W=$(ctg_workdir)

# --- nocap -------------------------------------------------------------------
ip netns add "$NS_OTHER" || { not_ok "ip netns add $NS_OTHER"; finish; }
MINE+=("$NS_OTHER")
printf '[conntrack]\nmax = "keep"\nbuckets = "keep"\nudp_timeout = "keep"\nudp_timeout_stream = "keep"\n[watch]\nnamespaces = "all"\nnamespaces_every = "1s"\ntriage = false\n' >"$W/nocap.toml"
chmod 600 "$W/nocap.toml"
python3 "$HERE/notify_listen.py" "$W/notify.sock" 20 "$W/notify.json" &
LISTEN=$!
for ((i = 0; i < 50; i++)); do [[ -S $W/notify.sock ]] && break; sleep 0.05; done
# capsh --drop takes CAP_SYS_ADMIN out of the bounding set, so the shell it
# starts (and the watchdog it execs) has it in no set, root or not.
capsh --drop=cap_sys_admin -- -c 'exec env -u CONNTRACK_GUARD_ROOT -u JOURNAL_STREAM NOTIFY_SOCKET="$1" WATCHDOG_USEC=1000000 "$2" --config "$3" watch --interval 0.2' \
    capsh "$W/notify.sock" "$BIN" "$W/nocap.toml" >"$W/nocap.out" 2>"$W/nocap.err" &
NOCAP=$!
CTG_PIDS+=($NOCAP)
sleep 1
capeff=$(awk '/^CapEff:/ {print $2}' "/proc/$NOCAP/status" 2>/dev/null)
check "the watchdog runs without CAP_SYS_ADMIN (CapEff ${capeff:-?} has no bit 21)" \
    python3 -c 'import sys; sys.exit(0 if sys.argv[1] and not int(sys.argv[1], 16) >> 21 & 1 else 1)' "${capeff:-}"
sleep 4.5   # four namespace scans at namespaces_every 1s
check "... and is still running after 4 scans" kill -0 "$NOCAP"
ctg_stop_pid "$NOCAP"
wait "$LISTEN" 2>/dev/null
python3 "$HERE/events.py" "$W/nocap.err" >"$W/nocap.json"
n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"].get("netns_unavailable", 0))' "$W/nocap.json")
check "exactly one netns_unavailable event in 4 scans (got $n)" test "$n" == 1
check "... naming the missing capability and the drop-in that grants it" \
    grep -q "EVENT=netns_unavailable .*CONNTRACK_MISSING_CAPABILITY=CAP_SYS_ADMIN .*CONNTRACK_DROPIN=/usr/share/conntrack-guard/conntrack-guard-allns.conf" "$W/nocap.err"
grep EVENT=netns_unavailable "$W/nocap.err" | sed 's/^/#   /' | cut -c1-240
check "the status line says netns: no access" \
    python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["messages"]; sys.exit(0 if any("netns: no access (needs CAP_SYS_ADMIN)" in t for _, t in m) else 1)' "$W/notify.json"
st=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["messages"]; s=[l for _, t in m for l in t.split("\n") if "no access" in l]; print(s[-1] if s else "")' "$W/notify.json")
echo "#   $st"
pings=$(json_get "$W/notify.json" pings)
check "READY=1 and keep-alives went out ($pings WATCHDOG=1 in ~5 s)" \
    bash -c 'grep -q "READY=1" "$1" && [ "$2" -ge 5 ]' _ "$W/notify.json" "${pings:-0}"
check "no namespace events and no fault" \
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(1 if any(e in r["counts"] for e in ("fault","level_warning","level_critical","drops")) else 0)' "$W/nocap.json"

# --- vanish ------------------------------------------------------------------
ip netns add "$NS_BUSY" || { not_ok "ip netns add $NS_BUSY"; finish; }
MINE+=("$NS_BUSY")
ip -n "$NS_BUSY" link set lo up
ip -n "$NS_BUSY" addr add 198.18.2.1/32 dev lo
ip netns exec "$NS_BUSY" nft -f - <<'EOF' || { not_ok "nft rules in busy"; finish; }
table ip ctg_watch_allns {
    chain out_nat {
        type nat hook output priority -100; policy accept;
        ip daddr 198.18.2.1 udp dport 7000 dnat to 198.18.2.1:7001
    }
}
EOF
ino_busy=$(stat -L -c %i "/run/netns/$NS_BUSY")
set_global_max "$GLOBAL_MAX"
printf '[conntrack]\nmax = "keep"\nbuckets = "keep"\nudp_timeout = "keep"\nudp_timeout_stream = "keep"\n[watch]\nnamespaces = "all"\nnamespaces_every = "1s"\ndrops_every = "1h"\ntriage = false\n[grow]\nenabled = false\n' >"$W/vanish.toml"
chmod 600 "$W/vanish.toml"
"${CG[@]}" --config "$W/vanish.toml" watch --interval 0.2 >"$W/vanish.out" 2>"$W/vanish.err" &
VANISH=$!
CTG_PIDS+=($VANISH)
sleep 1.5
# BUSY_FLOWS ASSURED flows (see allns.sh: the kernel's early GC spares
# them), then two rounds of EXTRA_FLOWS new flows that the full table
# drops, 3 s apart: the first round opens the incident (logged at once),
# the second stays in its window (drops_every 1h). Bounded: about 2200
# datagrams, 40 s at most.
timeout 40 ip netns exec "$NS_BUSY" python3 - "$BUSY_FLOWS" "$EXTRA_FLOWS" "$W/round1" <<'EOF' || not_ok "UDP flows in busy"
import errno, os, socket, sys, time
n, extra, mark = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
srv.bind(("198.18.2.1", 7001))
srv.settimeout(0.5)
def echo():
    data, peer = srv.recvfrom(64)
    srv.sendto(data, peer)
clients = []
for i in range(n):
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.bind(("198.18.2.1", 20000 + i))
    c.sendto(b"1", ("198.18.2.1", 7000))
    echo()
    clients.append(c)
time.sleep(2.5)
for c in clients:
    c.sendto(b"2", ("198.18.2.1", 7000))
    echo()
def overflow(base):
    refused = 0
    for i in range(extra):
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.bind(("198.18.2.1", base + i))
        try:
            c.sendto(b"x", ("198.18.2.1", 7000))
            echo()
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EAGAIN) and not isinstance(e, socket.timeout):
                raise
            refused += 1
        c.close()
    return refused
r1 = overflow(40000)
open(mark, "w").write(str(r1))
time.sleep(3)
r2 = overflow(41000)
print(f"{n} assured flows; refused {r1} then {r2}", file=sys.stderr)
EOF
drop_before_del=$(ip netns exec "$NS_BUSY" python3 -c '
import sys
rows = open("/proc/net/stat/nf_conntrack").read().split("\n")
col = rows[0].split().index("drop")
print(sum(int(r.split()[col], 16) for r in rows[1:] if r.strip()))')
# Two namespace scans (namespaces_every 1s) after the second round: the
# watchdog has then read every drop this namespace will ever count, so
# what the delete must flush is known (0.5 s lost the race once in CI).
sleep 2.5
python3 "$HERE/events.py" "$W/vanish.err" >"$W/vanish-before.json"
before=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sum(1 for e in r["events"] if e["event"]=="drops_ended"))' "$W/vanish-before.json")
check "the incident was open before the delete (drops logged, no drops_ended yet: $before)" \
    bash -c 'grep -q "EVENT=drops .*CONNTRACK_NETNS='"$ino_busy"'" "$1" && [ "$2" == 0 ]' _ "$W/vanish.err" "$before"
for pid in $(ip netns pids "$NS_BUSY" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
ip netns del "$NS_BUSY" && MINE=("$NS_OTHER")
sleep 3   # the namespace goes; the next scans see it gone
ctg_stop_pid "$VANISH"
python3 "$HERE/events.py" "$W/vanish.err" >"$W/vanish.json"
grep -E "EVENT=(drops|drops_ended) " "$W/vanish.err" | sed 's/^/#   /' | cut -c1-260
check "drops_ended for the deleted namespace ($ino_busy)" \
    grep -q "EVENT=drops_ended .*CONNTRACK_NETNS=$ino_busy .*MESSAGE=\"netns $ino_busy (netns $NS_BUSY): " "$W/vanish.err"
sum=$(python3 - "$W/vanish.err" "$ino_busy" <<'EOF'
import re, sys
s = 0
for line in open(sys.argv[1]):
    if re.match(r"^\w+: EVENT=drops ", line) and f"CONNTRACK_NETNS={sys.argv[2]} " in line:
        m = re.search(r"CONNTRACK_DROP_DELTA=(\d+)", line)
        s += int(m.group(1)) if m else 0
print(s)
EOF
)
check "the drops held back in the window were logged: the drops events add up to the kernel's drop counter ($sum of $drop_before_del)" \
    test "$sum" == "$drop_before_del" -a "$sum" -gt 0
n=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sum(1 for e in r["events"] if e["event"]=="drops_ended"))' "$W/vanish.json")
check "exactly one drops_ended (got $n)" test "$n" == 1

finish
