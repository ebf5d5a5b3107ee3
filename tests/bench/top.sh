#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Benchmark of `conntrack-guard top` (issue 13), at 10k, 30k, 100k and 150k
# entries of the mix in tests/netns/top_mix.sh, in the host netns of the
# DNAT topology:
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
# At the end tests/bench/bench.py top-report prints the table and draws
# tests/bench/top-cost.svg (wall clock of the three and top's peak RSS
# against table size; the look of sample-cost.svg). Raw figures, one
# <size>.json per size, and meta.json stay in target/bench-results/top.
#
#   tests/bench/top.sh [--sizes "10000 30000 100000 150000"] [--runs N]
#                      [--svg FILE]
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=../netns/lib.sh
. "$ROOT/tests/netns/lib.sh"
# shellcheck source=../netns/top_mix.sh
. "$ROOT/tests/netns/top_mix.sh"

SIZES="10000 30000 100000 150000"
RUNS=15
SVG=$HERE/top-cost.svg
while (($#)); do
    case $1 in
        --sizes) SIZES=$2; shift ;;
        --runs) RUNS=$2; shift ;;
        --svg) SVG=$2; shift ;;
        *) echo "usage: $0 [--sizes \"10000 30000 100000 150000\"] [--runs N] [--svg FILE]" >&2; exit 2 ;;
    esac
    shift
done
# The mix's unanswered 80 % are one flow per (source address, source port)
# from two addresses, half each, from port 65536 - half up: at most about
# 2 * 65535 / 0.8 entries (163 000 leaves room). The count check below
# catches any other short fill.
for n in $SIZES; do
    [[ $n =~ ^[0-9]+$ ]] && ((n >= 100 && n <= 163000)) ||
        { echo "size $n: the mix of tests/netns/top_mix.sh takes 100 to 163000 entries" >&2; exit 2; }
done
for t in cc conntrack nft ip python3 nsenter cargo; do
    command -v "$t" >/dev/null || { echo "SKIP: missing $t"; exit 0; }
done
[[ -x /usr/bin/time ]] || { echo "SKIP: missing GNU time (/usr/bin/time)"; exit 0; }
[[ $(id -u) == 0 ]] || { echo "SKIP: not root"; exit 0; }

OUT="$ROOT/target/bench-results/top"
mkdir -p "$OUT"
# The plot shows this run's sizes only.
rm -f "$OUT"/[0-9]*.json "$OUT/meta.json"
(cd "$ROOT" && cargo build -q --release && cargo build -q --release --example ctfill) || exit 1
BIN="$ROOT/target/release/conntrack-guard"
FILL="$ROOT/target/release/examples/ctfill"
FLOOR="$OUT/ctdump_floor"
cc -O2 -o "$FLOOR" "$HERE/ctdump_floor.c" || exit 1

exec 9>/run/conntrack-guard-tests.lock
flock -w 600 9 || { echo "could not take the test lock"; exit 1; }
install_traps
save_globals

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] && commit="$commit+dirty"
python3 "$HERE/bench.py" meta "$OUT/meta.json" --commit "$commit" \
    --vm "$(systemd-detect-virt --vm 2>/dev/null || echo none)" \
    --container "$(systemd-detect-virt --container 2>/dev/null || echo none)" || exit 1

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
    # A short fill would put a wrong point on the plot: stop instead.
    ((count >= n && count <= n + n / 100 + 10)) ||
        { ctg_log "size $n: the table holds $count entries, not about $n; stopping"; exit 1; }
    # The machine is shared: run the three in turn (A B C A B C ...) and
    # take the median of the per-round ratios, so drift hits all alike.
    line=$(python3 - "$n" "$count" "$RUNS" "$OUT/$n.json" "$BIN" "$FLOOR" "/run/netns/$NS_HOST" "$floor_n" <<'EOF'
import json, statistics, subprocess, sys, time
n, count, runs, out, binary, floor, ns, floor_n = sys.argv[1:]
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
json.dump({"size": int(n), "count": int(count), "floor_read": int(floor_n),
           "times": times, "rss_kib": rss}, open(out, "w"))
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
echo
python3 "$HERE/bench.py" top-report "$OUT" --svg "$SVG"
