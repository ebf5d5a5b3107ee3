#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# The packet stall of a run-time nf_conntrack_buckets resize (issue 20,
# "Buckets"), on the real kernel. The kernel allocates a new hash table and
# moves every entry into it under all of conntrack's locks with bottom
# halves off, so packets wait on every CPU for a time that grows with the
# table. This measures how long:
#
#   - lib.sh's DNAT topology (client -> host netns with NAT -> container);
#     the host netns's table is filled with NAT'ed UDP flows by
#     examples/ctfill (one flow per source address and port, unanswered,
#     dropped silently in the container), about 10k, 100k, 300k and 1M
#     entries, filled up step by step;
#   - a 1 kHz UDP ping-pong client -> host (DNAT) -> container echo, one
#     long-lived flow, records every reply (stall.py ping);
#   - at each size, --repeats times: a baseline window (1 s + 1 s of
#     ping-pong, no write) and a resize window (1 s, a write to
#     nf_conntrack_buckets from the initial netns, 1 s), the buckets
#     alternating between A and B (default: the saved value and twice it,
#     the step a doubling of max gives when buckets follow max);
#   - the pinger and the echo responder run SCHED_FIFO at --rt-prio
#     (0: ordinary scheduling), so compilers sharing the CPUs do not hide
#     the kernel's stall in scheduling noise;
#   - per window: the longest gap between replies, the largest round trip,
#     unanswered pings, and the time the write itself took.
#
#   tests/bench/stall.sh [--sizes "10000 100000 300000 1000000"] [--repeats 4]
#                        [--buckets "A B"] [--out tests/bench/stall.tsv]
#                        [--svg tests/bench/stall.svg] [--rt-prio 50|0]
#
# Prints min / median / max per size as a table; writes this run's windows
# to --out (kept in git: tests/bench/stall.tsv, a meta line first) and
# redraws --svg from it.
# Needs root, ip, nft, python3, cargo. nf_conntrack_max (raised to fit the
# largest size) and nf_conntrack_buckets are recorded first and restored by
# stall.py itself and again by lib.sh's EXIT/INT/TERM trap; the run holds
# /run/conntrack-guard-tests.lock. Traffic stays between namespaces this
# script creates (198.18.0.0/15, no default route); every loop is bounded
# in count and time. 1M entries cost about 350 MB of kernel memory while
# they exist. The figures are measurements, not pass/fail.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=../netns/lib.sh
. "$ROOT/tests/netns/lib.sh"
# shellcheck source=../netns/top_mix.sh
. "$ROOT/tests/netns/top_mix.sh"

SIZES="10000 100000 300000 1000000"
REPEATS=4
RT_PRIO=50
BUCKETS=""
OUT=$HERE/stall.tsv
SVG=$HERE/stall.svg
while (($#)); do
    case $1 in
    --sizes) SIZES=$2; shift ;;
    --repeats) REPEATS=$2; shift ;;
    --buckets) BUCKETS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --svg) SVG=$2; shift ;;
    --rt-prio) RT_PRIO=$2; shift ;;
    -h | --help) sed -n '3,41p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for t in ip nft python3 cargo flock; do
    command -v "$t" >/dev/null || { echo "stall.sh: missing $t" >&2; exit 1; }
done
[[ $(id -u) == 0 ]] || { echo "stall.sh: needs root" >&2; exit 1; }

FILL=$(ctfill_bin "$ROOT") || { echo "stall.sh: could not build examples/ctfill" >&2; exit 1; }

ctg_take_globals || { echo "stall.sh: could not take /run/conntrack-guard-tests.lock in 600 s" >&2; exit 1; }
W=$(ctg_workdir)
[[ -n $BUCKETS ]] || BUCKETS="$CTG_SAVED_BUCKETS $((CTG_SAVED_BUCKETS * 2))"

topo_up 1800 || exit 1
# topo_up's only process is the echo responder.
if ((RT_PRIO > 0)); then
    chrt -f -p "$RT_PRIO" "${CTG_PIDS[0]}" >/dev/null || exit 1
fi
# The 80 % part of top_mix.sh's topology: UDP to 198.18.0.1:6970 is
# DNATed to the container and dropped silently there (no ICMP error ends
# an entry); the host routes 198.18.2.0/23 back to the client.
mix_up || exit 1
# Entries must outlive the run: the host netns's own timeouts (per netns,
# gone with it).
for k in nf_conntrack_udp_timeout nf_conntrack_udp_timeout_stream; do
    in_host sh -c "echo 3600 > $CTG_SYSCTL_DIR/$k" || exit 1
done
# One source address gives 64512 flows (ports 1024-65535): 1M needs 16
# beyond what top_mix uses; 40 leave room for 2.5M.
srcs=()
for i in $(seq 10 49); do
    in_client ip addr add "198.18.2.$i/24" dev c0 || exit 1
    srcs+=("198.18.2.$i")
done

python3 "$HERE/bench.py" meta "$W/meta.json" \
    --commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --vm "$(systemd-detect-virt --vm 2>/dev/null || echo none)" \
    --container "$(systemd-detect-virt --container 2>/dev/null || echo none)" || exit 1
ctg_log "load before the run: $(cut -d' ' -f1-3 /proc/loadavg)"

# In the background with `wait`: bash runs its INT/TERM trap only after a
# foreground child ends, and the trap's teardown must reach stall.py (TERM:
# it restores max and buckets itself, then exits) without waiting for the
# whole run.
ctg_spawn python3 "$HERE/stall.py" measure --client-ns "$NS_CLIENT" --host-ns "$NS_HOST" \
    --fill "$FILL" --fill-src "$(IFS=,; echo "${srcs[*]}")" --fill-dst "$CTG_HOST_IP:6970" \
    --ping-target "$CTG_HOST_IP:$CTG_PORT" --ping-bind "$CTG_CLIENT_IP:5999" \
    --sizes "$SIZES" --buckets "$BUCKETS" --repeats "$REPEATS" \
    --workdir "$W" --meta "$W/meta.json" --out "$OUT" --rt-prio "$RT_PRIO" --max-seconds 1800
wait "${CTG_PIDS[-1]}"
rc=$?
((rc == 0)) || echo "stall.sh: stall.py measure exited $rc (its message is above); the table below has what it measured" >&2
ctg_teardown || rc=1
echo
python3 "$HERE/stall.py" report "$OUT" --svg "$SVG"
exit $rc
