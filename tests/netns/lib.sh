# SPDX-License-Identifier: MIT OR Apache-2.0
# shellcheck shell=bash
#
# Shared helpers for the netns tests: a Docker-like topology built from
# network namespaces, saving/restoring the global conntrack sysctls, and
# a cleanup trap. Source it; do not execute it.
#
#   client netns  198.18.0.2/24 --veth-- host netns 198.18.0.1/24
#   host netns: bridge 198.18.1.1/24, ip_forward=1, nftables
#               prerouting DNAT udp dport 6969 -> 198.18.1.2:6969
#   container netns 198.18.1.2/24 (veth on the bridge), route to
#               198.18.0.0/24 via 198.18.1.1, UDP responder on :6969
#
# The client talks to 198.18.0.1:6969 (on-link, so it needs no route); the
# host DNATs to the container and un-NATs the reply. Only the host netns
# has a nat rule, so only it tracks connections. No netns has a default
# route, and all addresses are in 198.18.0.0/15.

CTG_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CTG_TAG="ctg-$$"
NS_CLIENT="$CTG_TAG-client"
NS_HOST="$CTG_TAG-host"
NS_CTR="$CTG_TAG-ctr"
CTG_CLIENT_IP=198.18.0.2
CTG_HOST_IP=198.18.0.1
CTG_BRIDGE_IP=198.18.1.1
CTG_CTR_IP=198.18.1.2
CTG_PORT=6969
CTG_WORKDIR="/run/$CTG_TAG.work"
CTG_PIDS=()           # every background process we started
CTG_TOPO_UP=0
CTG_GLOBALS_SAVED=0
CTG_GLOBALS_ARMED=0
CTG_SAVED_MAX=""
CTG_SAVED_BUCKETS=""
CTG_SAVED_UDP_TIMEOUT=""
CTG_SAVED_UDP_TIMEOUT_STREAM=""
CTG_SYSCTL_DIR=/proc/sys/net/netfilter
# What apply (run here on the host) leaves under /run/conntrack-guard: the
# mark that it ran and the bytes per entry it measured for the watchdog.
CTG_MARKS=(/run/conntrack-guard/applied /run/conntrack-guard/entry-bytes)
CTG_SAVED_MARKS=()

ctg_log() { printf '[netns %s] %s\n' "$(date +%T)" "$*" >&2; }

# Workdir for logs and configs; removed by teardown. Its name depends only
# on $$ (the sourcing script's PID, also inside subshells), so
# `W=$(ctg_workdir)` and later calls agree and teardown finds it. /run is
# root-only, so the predictable name cannot be pre-planted by another user.
ctg_workdir() {
    mkdir -p -m 700 "$CTG_WORKDIR" && printf '%s\n' "$CTG_WORKDIR"
}

# --- global sysctls -------------------------------------------------------
# nf_conntrack_max and nf_conntrack_buckets are global (writable only from
# the initial netns). The UDP timeouts are per netns; we save the initial
# netns's values too in case a tool under test writes them there.

save_globals() {
    CTG_SAVED_MAX=$(<"$CTG_SYSCTL_DIR/nf_conntrack_max")
    CTG_SAVED_BUCKETS=$(<"$CTG_SYSCTL_DIR/nf_conntrack_buckets")
    CTG_SAVED_UDP_TIMEOUT=$(<"$CTG_SYSCTL_DIR/nf_conntrack_udp_timeout")
    CTG_SAVED_UDP_TIMEOUT_STREAM=$(<"$CTG_SYSCTL_DIR/nf_conntrack_udp_timeout_stream")
    # A test run is not the host's boot step, so apply's files are put back
    # as they were (absent on a host where apply never ran). Each is kept
    # byte for byte ("x" guards trailing newlines); "-" stands for absent.
    local i v
    CTG_SAVED_MARKS=()
    for i in "${!CTG_MARKS[@]}"; do
        if v=$(cat "${CTG_MARKS[i]}" 2>/dev/null && echo x); then
            CTG_SAVED_MARKS[i]=+${v%x}
        else
            CTG_SAVED_MARKS[i]=-
        fi
    done
    CTG_GLOBALS_SAVED=1
    CTG_GLOBALS_ARMED=1
    ctg_log "saved globals: max=$CTG_SAVED_MAX buckets=$CTG_SAVED_BUCKETS" \
        "udp_timeout=$CTG_SAVED_UDP_TIMEOUT udp_timeout_stream=$CTG_SAVED_UDP_TIMEOUT_STREAM"
}

# Write only when the value differs: rewriting buckets rehashes the table.
_ctg_restore_one() {
    local key=$1 want=$2 cur
    [[ -n $want ]] || return 0
    cur=$(<"$CTG_SYSCTL_DIR/$key") || return 1
    if [[ $cur != "$want" ]]; then
        if echo "$want" >"$CTG_SYSCTL_DIR/$key"; then
            ctg_log "restored $key: $cur -> $want"
        else
            ctg_log "ERROR: could not restore $key to $want (now $cur)"
            return 1
        fi
    fi
}

# Restore the saved values. After a successful restore the globals are
# "disarmed": the EXIT trap will not write them again. This matters for a
# script that restores, then releases the test lock, then does more work:
# a second restore at exit would overwrite whatever the next lock holder
# set (seen here: it reset another test's max mid-run). set_global_max and
# ctg_arm_globals arm them again.
restore_globals() {
    [[ $CTG_GLOBALS_SAVED == 1 && $CTG_GLOBALS_ARMED == 1 ]] || return 0
    local rc=0
    _ctg_restore_one nf_conntrack_buckets "$CTG_SAVED_BUCKETS" || rc=1
    _ctg_restore_one nf_conntrack_max "$CTG_SAVED_MAX" || rc=1
    _ctg_restore_one nf_conntrack_udp_timeout "$CTG_SAVED_UDP_TIMEOUT" || rc=1
    _ctg_restore_one nf_conntrack_udp_timeout_stream "$CTG_SAVED_UDP_TIMEOUT_STREAM" || rc=1
    local i
    for i in "${!CTG_SAVED_MARKS[@]}"; do
        case ${CTG_SAVED_MARKS[i]} in
        +*) printf '%s' "${CTG_SAVED_MARKS[i]#+}" >"${CTG_MARKS[i]}" || rc=1 ;;
        *) rm -f "${CTG_MARKS[i]}" ;;
        esac
    done
    # Only when empty: it may hold the host's other files.
    rmdir /run/conntrack-guard 2>/dev/null
    ((rc == 0)) && CTG_GLOBALS_ARMED=0
    return $rc
}

# Call before anything (e.g. the tool under test) may change the globals
# again after an explicit restore_globals.
ctg_arm_globals() {
    [[ $CTG_GLOBALS_SAVED == 1 ]] && CTG_GLOBALS_ARMED=1
    return 0
}

# Set the global max from the initial netns (we are in it).
set_global_max() {
    ctg_arm_globals
    echo "$1" >"$CTG_SYSCTL_DIR/nf_conntrack_max"
}

# --- processes ------------------------------------------------------------

# Start a command in the background and remember its PID. `ip netns exec`
# execs the command, so $! is the command itself.
ctg_spawn() {
    "$@" &
    CTG_PIDS+=("$!")
}

# Stop one of our PIDs: TERM, wait up to ~3 s, then KILL. Its exit status
# (as `wait` reports it) is left in CTG_STOP_RC.
CTG_STOP_RC=""
ctg_stop_pid() {
    local pid=$1 i
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < 30; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    CTG_STOP_RC=$?
    return 0
}

# --- topology -------------------------------------------------------------

# Run a command inside one of our namespaces.
in_client() { ip netns exec "$NS_CLIENT" "$@"; }
in_host() { ip netns exec "$NS_HOST" "$@"; }
in_ctr() { ip netns exec "$NS_CTR" "$@"; }

# topo_up [responder-max-seconds]
topo_up() {
    local life=${1:-300} ns i
    CTG_TOPO_UP=1
    for ns in "$NS_CLIENT" "$NS_HOST" "$NS_CTR"; do
        ip netns add "$ns" || return 1
        ip -n "$ns" link set lo up || return 1
    done
    # Create the veth pairs directly inside the namespaces, so nothing
    # appears in the initial netns even briefly.
    ip -n "$NS_CLIENT" link add c0 type veth peer name h0 netns "$NS_HOST" || return 1
    ip -n "$NS_HOST" link add hk0 type veth peer name k0 netns "$NS_CTR" || return 1
    ip -n "$NS_HOST" link add br0 type bridge || return 1
    ip -n "$NS_HOST" link set hk0 master br0 || return 1

    ip -n "$NS_CLIENT" addr add "$CTG_CLIENT_IP/24" dev c0 || return 1
    ip -n "$NS_HOST" addr add "$CTG_HOST_IP/24" dev h0 || return 1
    ip -n "$NS_HOST" addr add "$CTG_BRIDGE_IP/24" dev br0 || return 1
    ip -n "$NS_CTR" addr add "$CTG_CTR_IP/24" dev k0 || return 1
    ip -n "$NS_CLIENT" link set c0 up || return 1
    ip -n "$NS_HOST" link set h0 up || return 1
    ip -n "$NS_HOST" link set hk0 up || return 1
    ip -n "$NS_HOST" link set br0 up || return 1
    ip -n "$NS_CTR" link set k0 up || return 1
    ip -n "$NS_CTR" route add 198.18.0.0/24 via "$CTG_BRIDGE_IP" || return 1

    # ip_forward is per netns.
    in_host sysctl -q -w net.ipv4.ip_forward=1 || return 1
    in_host nft -f - <<EOF || return 1
table ip ctg_nat {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        udp dport $CTG_PORT dnat to $CTG_CTR_IP:$CTG_PORT
    }
}
EOF

    local ready
    ready="$(ctg_workdir)/responder.ready"
    rm -f "$ready"
    ctg_spawn ip netns exec "$NS_CTR" python3 "$CTG_LIB_DIR/udpload.py" server \
        --listen "$CTG_CTR_IP:$CTG_PORT" --max-seconds "$life" --ready-file "$ready"
    for ((i = 0; i < 50; i++)); do
        [[ -s $ready ]] && break
        sleep 0.1
    done
    if [[ ! -s $ready ]]; then
        ctg_log "responder did not start"
        return 1
    fi
    # Sanity: no default route anywhere.
    for ns in "$NS_CLIENT" "$NS_HOST" "$NS_CTR"; do
        if ip -n "$ns" route show default | grep -q .; then
            ctg_log "unexpected default route in $ns"
            return 1
        fi
    done
    ctg_log "topology up: $NS_CLIENT $NS_HOST $NS_CTR"
}

topo_down() {
    local ns pid
    [[ $CTG_TOPO_UP == 1 ]] || return 0
    for ns in "$NS_CLIENT" "$NS_HOST" "$NS_CTR"; do
        [[ -e /run/netns/$ns ]] || continue
        # Anything still running in a namespace we created is ours.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null
        done
        ip netns del "$ns" 2>/dev/null || ctg_log "could not delete netns $ns"
    done
    CTG_TOPO_UP=0
}

# --- readings inside the host netns ---------------------------------------

host_count() { in_host cat "$CTG_SYSCTL_DIR/nf_conntrack_count"; }

# host_stat NAME: sum of counter NAME over the CPU lines of the host
# netns's /proc/net/stat/nf_conntrack, located by header name (column
# order changes between kernels). "entries" repeats the netns total on
# every line, so it is returned once, not summed.
host_stat() {
    local want=$1
    in_host cat /proc/net/stat/nf_conntrack | {
        local -a hdr vals
        local idx=-1 i sum=0 line
        read -r -a hdr || return 1
        for i in "${!hdr[@]}"; do
            [[ ${hdr[$i]} == "$want" ]] && idx=$i
        done
        ((idx >= 0)) || { echo "no column $want" >&2; return 1; }
        while read -r -a vals; do
            ((${#vals[@]} > idx)) || continue
            if [[ $want == entries ]]; then
                sum=$((16#${vals[$idx]}))
                break
            fi
            sum=$((sum + 16#${vals[$idx]}))
        done
        echo "$sum"
    }
}

# Inode of the host netns, as printed in the kernel's "table full" line.
host_netns_inode() { stat -L -c %i "/run/netns/$NS_HOST"; }

# Run the load client in the client netns against the DNATed address.
# udpload COUNT RATE FIRST_PORT [extra args]
udpload() {
    local count=$1 rate=$2 port=$3
    shift 3
    in_client python3 "$CTG_LIB_DIR/udpload.py" client \
        --target "$CTG_HOST_IP:$CTG_PORT" --count "$count" --rate "$rate" \
        --first-port "$port" --timeout-ms 500 "$@"
}

# json_get FILE KEY: one top-level field of a JSON object.
json_get() {
    python3 -c 'import json,sys; v=json.load(open(sys.argv[1])).get(sys.argv[2]); print("" if v is None else v)' "$1" "$2"
}

# --- cleanup --------------------------------------------------------------

# Undo everything: our processes, namespaces, globals, workdir. Safe to
# call more than once. Returns non-zero if a global could not be restored.
ctg_teardown() {
    local rc=0 pid
    for pid in "${CTG_PIDS[@]}"; do
        ctg_stop_pid "$pid"
    done
    CTG_PIDS=()
    topo_down
    restore_globals || rc=1
    if [[ -d $CTG_WORKDIR ]]; then
        if [[ -n ${CTG_KEEP_WORKDIR:-} ]]; then
            ctg_log "kept workdir $CTG_WORKDIR"
        else
            rm -rf "$CTG_WORKDIR"
        fi
    fi
    return $rc
}

ctg_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    ctg_teardown || rc=1
    exit "$rc"
}

# Install the cleanup trap. Call before touching anything global.
install_traps() {
    trap ctg_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# --- the scripts' shared frame ------------------------------------------------
# Counters and checks: each script ends with "N passed, N failed".
PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   - $*"; }
not_ok() { FAIL=$((FAIL + 1)); echo "FAIL - $*"; }
check() { # check DESCRIPTION COMMAND...
    local d=$1
    shift
    if "$@"; then ok "$d"; else not_ok "$d"; fi
}

# The binary: $CONNTRACK_GUARD_BIN, else the newer of target/release and
# target/debug (a stale release build must not shadow the one just built).
# Sets BIN and CG (the binary with a clean environment: the real /proc of
# whichever netns it runs in, events on stderr, no service manager).
# Returns non-zero when there is none.
ctg_find_bin() {
    local repo=$1 b
    BIN=${CONNTRACK_GUARD_BIN:-}
    if [[ -z $BIN ]]; then
        for b in "$repo/target/release/conntrack-guard" "$repo/target/debug/conntrack-guard"; do
            if [[ -x $b ]] && [[ -z $BIN || $b -nt $BIN ]]; then BIN=$b; fi
        done
    fi
    CG=(env -u CONNTRACK_GUARD_ROOT -u JOURNAL_STREAM -u NOTIFY_SOCKET
        -u WATCHDOG_USEC -u WATCHDOG_PID "$BIN")
    [[ -n $BIN && -x $BIN ]]
}

# Before touching a global value: take the shared test lock (waiting up to
# 600 s for another suite), install the cleanup trap, and record the
# globals. Returns non-zero when the lock could not be had.
ctg_take_globals() {
    exec 9>/run/conntrack-guard-tests.lock
    flock -w 600 9 || return 1
    install_traps
    save_globals
}
