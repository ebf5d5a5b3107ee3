#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Benchmark of `conntrack-guard top` (issue 13), at 10k and 100k entries of
# the mix in tests/netns/top_mix.sh, in the host netns of the DNAT topology:
#
#   1. wall clock of `top --json` against the floor: one CT dump received
#      and discarded (tests/bench/ctdump_floor.c); target <= 1.15x;
#   2. wall clock against the usual pipeline:
#      conntrack -L | awk '{print $1, $5}' | sort | uniq -c | sort -rn | head
#   3. peak RSS of `top` (GNU time's maximum resident set size); target
#      <= 4 MiB at the largest size, and no growth with the table.
#
# All three run under `nsenter --net=/run/netns/HOST`, so each pays the same
# namespace entry. They run in turn, A B C A B C ... (2 warm-up rounds, then
# --runs rounds, default 15), and each ratio is the median of the per-round
# ratios, so a shared machine's drift hits all three alike (timing each
# command's runs back to back gave 1.22x and 0.80x for the same build).
# Needs root, cc, conntrack, nft, ip, python3,
# nsenter, GNU time, cargo. Global state is recorded and restored by
# lib.sh's trap; traffic stays in namespaces this script creates. Holds
# /run/conntrack-guard-tests.lock. Figures are measurements, not pass/fail.
#
#   tests/bench/top.sh [--sizes "10000 100000"] [--runs N]
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=../netns/lib.sh
. "$ROOT/tests/netns/lib.sh"
# shellcheck source=../netns/top_mix.sh
. "$ROOT/tests/netns/top_mix.sh"

SIZES="10000 100000"
RUNS=15
while (($#)); do
    case $1 in
        --sizes) SIZES=$2; shift ;;
        --runs) RUNS=$2; shift ;;
        *) echo "usage: $0 [--sizes \"10000 100000\"] [--runs N]" >&2; exit 2 ;;
    esac
    shift
done
for t in cc conntrack nft ip python3 nsenter cargo; do
    command -v "$t" >/dev/null || { echo "SKIP: missing $t"; exit 0; }
done
[[ -x /usr/bin/time ]] || { echo "SKIP: missing GNU time (/usr/bin/time)"; exit 0; }
[[ $(id -u) == 0 ]] || { echo "SKIP: not root"; exit 0; }

OUT="$ROOT/target/bench-results/top"
mkdir -p "$OUT"
(cd "$ROOT" && cargo build -q --release && cargo build -q --release --example ctfill) || exit 1
BIN="$ROOT/target/release/conntrack-guard"
FILL="$ROOT/target/release/examples/ctfill"
FLOOR="$OUT/ctdump_floor"
cc -O2 -o "$FLOOR" "$HERE/ctdump_floor.c" || exit 1

exec 9>/run/conntrack-guard-tests.lock
flock -w 600 9 || { echo "could not take the test lock"; exit 1; }
install_traps
save_globals

largest=0
for n in $SIZES; do ((n > largest)) && largest=$n; done
need=$((largest * 3 / 2))
((CTG_SAVED_MAX < need)) && set_global_max "$need"

summary=()
for n in $SIZES; do
    topo_up 600 || exit 1
    mix_up || exit 1
    mix_fill "$FILL" "$n"
    count=$(host_count)
    NS="nsenter --net=/run/netns/$NS_HOST"
    floor_n=$($NS "$FLOOR")
    ctg_log "size $n: count $count, floor read $floor_n entries"
    # The machine is shared: run the three in turn (A B C A B C ...) and
    # take the median of the per-round ratios, so drift hits all alike.
    line=$(python3 - "$n" "$count" "$RUNS" "$OUT/$n.json" "$BIN" "$FLOOR" "/run/netns/$NS_HOST" <<'EOF'
import json, statistics, subprocess, sys, time
n, count, runs, out, binary, floor, ns = sys.argv[1:]
enter = ["nsenter", "--net=" + ns]
cmds = {
    "top": enter + [binary, "top", "--json"],
    "floor": enter + [floor],
    "pipeline": enter + ["sh", "-c", "conntrack -L 2>/dev/null | awk '{print $1, $5}' | sort | uniq -c | sort -rn | head"],
}
times = {k: [] for k in cmds}
for r in range(int(runs) + 2):
    for k, c in cmds.items():
        t0 = time.perf_counter()
        subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        if r >= 2:
            times[k].append(time.perf_counter() - t0)
rss = []
for _ in range(5):
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmds["top"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, check=True)
    rss.append(int(p.stderr.strip().splitlines()[-1]))
rss.sort()
med = {k: statistics.median(v) for k, v in times.items()}
ratio = lambda a, b: statistics.median(x / y for x, y in zip(times[a], times[b]))
json.dump({"times": times, "rss_kib": rss}, open(out, "w"))
print(f"{n:>7} entries (count {count}): top {med['top']*1000:.1f} ms, floor {med['floor']*1000:.1f} ms, "
      f"pipeline {med['pipeline']*1000:.1f} ms; top/floor {ratio('top', 'floor'):.3f}x, "
      f"top/pipeline {ratio('top', 'pipeline'):.3f}x; peak RSS of top "
      f"{rss[len(rss)//2]/1024:.2f} MiB (min {rss[0]/1024:.2f}, max {rss[-1]/1024:.2f})")
EOF
) || exit 1
    echo "$line"
    summary+=("$line")
    topo_down
done
echo
echo "== top benchmark (medians of $RUNS rounds; raw: $OUT)"
printf '%s\n' "${summary[@]}"
