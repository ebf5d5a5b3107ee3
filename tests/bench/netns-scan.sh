#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Issue 12 benchmark: the cost of `status --all-netns` as namespaces grow.
#
#   tests/bench/netns-scan.sh [--counts "1 50 200"] [--runs N]
#
# For each count N it creates N empty namespaces with `ip netns add` (on
# top of whatever the host already has), then measures with hyperfine:
#   discovery   the scan alone (names and owners, nothing entered): the
#               binary under CONNTRACK_GUARD_ROOT pointing at a symlink to
#               `/`, which the tool treats as a test root and so does not
#               enter namespaces or read /dev/kmsg;
#   full        `status --all-netns --json`: scan, enter every namespace
#               on its own thread, count + ctnetlink stats + snmp inside,
#               plus one pass over /dev/kmsg;
# and the peak RSS of a full run (GNU time). Target: 200 namespaces in
# under 100 ms.
#
# Creates only namespaces named ctg-bench-$$-*, and removes them on exit
# (trap). Changes no sysctl. Holds /run/conntrack-guard-tests.lock.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

COUNTS="1 50 200"
RUNS=20
while (($#)); do
    case $1 in
    --counts) COUNTS=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    -h | --help) sed -n '3,22p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
for c in $COUNTS; do
    [[ $c =~ ^[0-9]+$ ]] && ((c >= 1 && c <= 1000)) || { echo "counts must be 1..1000" >&2; exit 2; }
done
((RUNS >= 3 && RUNS <= 200)) || { echo "--runs must be 3..200" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "SKIP: needs root"; exit 0; }
for t in ip hyperfine python3; do
    command -v $t >/dev/null || { echo "SKIP: missing $t"; exit 0; }
done
[[ -x /usr/bin/time ]] || { echo "SKIP: missing /usr/bin/time (GNU time)"; exit 0; }

BIN=${CONNTRACK_GUARD_BIN:-$ROOT/target/release/conntrack-guard}
if [[ -z ${CONNTRACK_GUARD_BIN:-} ]]; then
    (cd "$ROOT" && cargo build --release -q) || { echo "build failed"; exit 1; }
fi
TAG="ctg-bench-$$"
WORK=$(mktemp -d /tmp/ctg-netns-bench.XXXXXX)
MADE=0
cleanup() {
    local i
    for ((i = 1; i <= MADE; i++)); do ip netns del "$TAG-$i" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

exec 9>/run/conntrack-guard-tests.lock
flock -w 600 9 || { echo "could not take the test lock"; exit 1; }
ln -s / "$WORK/slash"
CG=(env -u CONNTRACK_GUARD_ROOT "$BIN")
SCAN=(env CONNTRACK_GUARD_ROOT="$WORK/slash" "$BIN")

printf '%-6s %-6s %14s %14s %10s\n' "added" "total" "discovery ms" "full ms" "peak RSS"
worst=0
for c in $COUNTS; do
    while ((MADE < c)); do
        MADE=$((MADE + 1))
        ip netns add "$TAG-$MADE" || { echo "ip netns add failed"; exit 1; }
    done
    "${CG[@]}" status --all-netns --json >"$WORK/out.json"
    total=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["namespaces"]))' "$WORK/out.json")
    hyperfine -N -i -w 3 -r "$RUNS" --export-json "$WORK/scan.json" \
        "${SCAN[*]} status --all-netns --json" >/dev/null 2>&1
    hyperfine -N -i -w 3 -r "$RUNS" --export-json "$WORK/full.json" \
        "${CG[*]} status --all-netns --json" >/dev/null 2>&1
    ms() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.1f ± %.1f" % (r["median"]*1e3, r["stddev"]*1e3))' "$1"; }
    rss=0
    for _ in 1 2 3; do
        r=$(/usr/bin/time -f %M "${CG[@]}" status --all-netns --json 2>&1 >/dev/null | tail -n 1)
        ((r > rss)) && rss=$r
    done
    full_med=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["results"][0]["median"]*1e3))' "$WORK/full.json")
    ((c == 200)) && worst=$full_med
    printf '%-6s %-6s %14s %14s %7s KiB\n' "$c" "$total" "$(ms "$WORK/scan.json")" "$(ms "$WORK/full.json")" "$rss"
done
if [[ " $COUNTS " == *" 200 "* ]]; then
    if ((worst < 100)); then
        echo "ok   - 200 namespaces: full status in ${worst} ms (target < 100 ms)"
    else
        echo "MISS - 200 namespaces: full status in ${worst} ms (target < 100 ms)"
    fi
fi
