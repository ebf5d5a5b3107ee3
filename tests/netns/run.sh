#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# netns suite: real-kernel tests on a Docker-like namespace topology.
#   repro.sh     the incident without conntrack-guard (kernel behaviour)
#   incident.sh  issue 5 part A: watch/status/apply against the incident
#   buckets.sh   the kernel rounds the bucket count up: apply and watch agree
#   sockets.sh   socket receive buffer drops: udp_drops events and status
#   top.sh       issue 13: top --netns on a known 100k-entry mix
#   restore.sh   issue 14: restore on drift against a foreign writer, with its limit
#   restore_guard.sh  issue 18.4: restore never lowers max below the entries in use + 20%
#   allns.sh     issue 12: status --all-netns over idle, busy and vanishing namespaces
#   watch_allns.sh  issue 18: namespaces = "all" without CAP_SYS_ADMIN; a namespace
#                deleted mid-incident gets its drops_ended
#   grow.sh      issue 20: the watchdog grows the table in the incident (loss with
#                grow off and on, grown within 2 samples), a one-step budget gives
#                one grow_limited, a reload after growth shrinks nothing
#   soak.sh      issue 18: 10 minutes of watch (all namespaces, triage) under
#                churn and load; fds, threads and RSS end within 5% of the start
# Needs root, iproute2, nftables, conntrack-tools, python3, util-linux, capsh.
# Without them: with CI=true the suite fails; otherwise it prints
# "SKIP: reason" and exits 0.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)

missing=""
[[ $(id -u) == 0 ]] || missing="not root"
if [[ -z $missing ]]; then
    for t in ip nft conntrack python3 flock timeout stat awk; do
        command -v "$t" >/dev/null 2>&1 || { missing="missing tool: $t"; break; }
    done
fi
if [[ -z $missing && ! -e /proc/sys/net/netfilter/nf_conntrack_max ]]; then
    missing="nf_conntrack not available (no /proc/sys/net/netfilter/nf_conntrack_max)"
fi
if [[ -z $missing ]] && ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 8))'; then
    missing="python3 >= 3.8 needed"
fi
if [[ -n $missing ]]; then
    if [[ ${CI:-} == true ]]; then
        echo "FAIL: netns suite cannot run: $missing"
        echo "0 passed, 1 failed"
        exit 1
    fi
    echo "SKIP: $missing"
    exit 0
fi

passed=0
failed=0
# The files conntrack-guard keeps on the host (/run, /var/lib), by name and
# content: every script puts back what its apply or watch left, so the
# suite ends with them as it found them.
host_state() {
    local f
    for f in /run/conntrack-guard/* /var/lib/conntrack-guard/*; do
        [[ -e $f ]] && printf '%s %s\n' "$f" "$(sha256sum <"$f" | cut -c1-16)"
    done
    [[ -d /run/conntrack-guard ]] && echo "/run/conntrack-guard/"
    [[ -d /var/lib/conntrack-guard ]] && echo "/var/lib/conntrack-guard/"
    return 0
}
state_before=$(host_state)
log=$(mktemp /tmp/ctg-netns-run.XXXXXX)
trap 'rm -f "$log"' EXIT
for t in repro.sh incident.sh buckets.sh sockets.sh restore.sh restore_guard.sh top.sh allns.sh watch_allns.sh grow.sh soak.sh; do
    echo "### $t"
    # tee ignores INT and TERM and a broken stdout: when the whole run is
    # killed (Ctrl-C, or a kill of its process group) it must outlive the
    # script, whose traps restore the kernel's values and delete the
    # namespaces. Killed with it, the next line the script wrote ("Terminated",
    # then its cleanup's log) ended it by SIGPIPE before anything was restored.
    "$HERE/$t" 2>&1 | (trap '' INT TERM; exec tee -p "$log")
    rc=${PIPESTATUS[0]}
    out=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    if [[ $out =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        passed=$((passed + BASH_REMATCH[1]))
        failed=$((failed + BASH_REMATCH[2]))
        # A script that died after its summary line still fails.
        if [[ $rc != 0 && ${BASH_REMATCH[2]} == 0 ]]; then failed=$((failed + 1)); fi
    else
        echo "FAIL - $t ended without a summary line (exit $rc)"
        failed=$((failed + 1))
    fi
done
state_after=$(host_state)
if [[ $state_after == "$state_before" ]]; then
    echo "ok - conntrack-guard's host files are as the suite found them (${state_before:-none})"
    passed=$((passed + 1))
else
    echo "FAIL - conntrack-guard's host files changed: before [${state_before:-none}], after [${state_after:-none}]"
    failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
