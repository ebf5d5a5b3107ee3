#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Issue 19, "smaller and lighter": the figures in one command.
#
#   tests/bench/size.sh [--bin PATH] [--runs N] [--samples N] [--results DIR]
#   tests/bench/size.sh --attribute
#
# Builds the release binary (or takes --bin PATH) and prints:
#   - the stripped binary's size (target <= 0.8 MiB);
#   - apply vs `sysctl -p FILE` (procps) for the same 4 keys at their
#     current values, as whole processes, taken in turn (A B A B ...) so
#     the ratio holds on cores shared with builds (target <= 1.00x);
#     hyperfine's medians beside it;
#   - watch --interval 1ms against the real kernel (no metrics) after N
#     samples: VmHWM, and its resident memory by mapping, file pages
#     (binary, libc, ld.so, others) and anonymous pages (heap, stacks,
#     anonymous mappings, copy-on-write pages of the files); target for
#     the anonymous total <= 256 KiB.
#
# The measuring is tests/bench/run.sh's (--only apply,size,memory), so the
# two never disagree on how; this script builds, runs it and prints the
# short report (bench.py size-report). Needs what run.sh needs for those
# parts: root, nf_conntrack, hyperfine, python3, strace. Sysctls are only
# rewritten with the values they already have and restored by run.sh's trap.
# Results go to target/size-results (or --results DIR).
#
# --attribute builds an unstripped copy of the release binary (same
# profile, strip = false, into target/size-unstripped) and prints where its
# code bytes go, by crate, by module of conntrack-guard, and the largest
# functions (bench.py symbols). No root needed; nothing else is measured.

set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

BIN="" RUNS=300 SAMPLES=10000 RES=$ROOT/target/size-results ATTRIBUTE=0
while (($#)); do
    case $1 in
    --bin) BIN=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --samples) SAMPLES=$2; shift ;;
    --results) RES=$2; shift ;;
    --attribute) ATTRIBUTE=1 ;;
    -h | --help) sed -n '3,31p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
[[ $RUNS =~ ^[0-9]+$ ]] && ((RUNS >= 10 && RUNS <= 2000)) || { echo "--runs must be 10..2000" >&2; exit 2; }

if ((ATTRIBUTE)); then
    echo "[size] building an unstripped release binary into target/size-unstripped" >&2
    (cd "$ROOT" && CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --locked --quiet \
        --target-dir "$ROOT/target/size-unstripped") || { echo "cargo build failed" >&2; exit 1; }
    exec python3 "$HERE/bench.py" symbols "$ROOT/target/size-unstripped/release/conntrack-guard" --top 20
fi

if [[ -z $BIN ]]; then
    echo "[size] building the release binary" >&2
    (cd "$ROOT" && cargo build --release --locked --quiet) || { echo "cargo build --release failed" >&2; exit 1; }
    BIN=$ROOT/target/release/conntrack-guard
fi
[[ -x $BIN ]] || { echo "not an executable: $BIN" >&2; exit 2; }
BIN=$(realpath "$BIN")

mkdir -p "$RES"
rm -f "$RES"/*.json "$RES"/*.txt
CONNTRACK_GUARD_BIN=$BIN BENCH_RESULTS=$RES "$HERE/run.sh" --no-build --no-profiles \
    --only apply,size,memory --apply-runs "$RUNS" --samples "$SAMPLES" >"$RES/run.log" 2>&1
rc=$?
grep -E '^(ok|FAIL|SKIP)' "$RES/run.log" | grep -v '^ok' >&2
echo "binary: $BIN"
python3 "$HERE/bench.py" size-report "$RES" --bin "$(basename "$BIN")"
tail -1 "$RES/run.log"
echo "raw results: $RES (run.sh's log: $RES/run.log)"
exit $rc
