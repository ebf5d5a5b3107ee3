#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# tests/vm: the reboot trap and its cure in real QEMU VMs, once per Debian
# release and architecture (tests/vm/suite.sh does one), one after the
# other: the CI machine has few cores and TCG boots are CPU-bound.
# trixie-arm64 builds the arm64 package with packaging/arm64.sh first.
#
# Usage: tests/vm/run.sh [PATH/TO/conntrack-guard_*.deb]
# Env:
#   CONNTRACK_GUARD_VM_SUITES  releases to run (default "bookworm trixie trixie-arm64")
#   CONNTRACK_GUARD_ARM64_DEB  an arm64 package to test instead of building one
#   and everything suite.sh takes (cache, artefacts, accel, timeouts).
# Prints a per-release summary and one closing "N passed, N failed" line;
# exits non-zero if any release failed.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
suites=${CONNTRACK_GUARD_VM_SUITES:-bookworm trixie trixie-arm64}
total_p=0 total_f=0 rc_all=0 summary=() late=0 refused=0
for s in $suites; do
    echo "===== tests/vm: $s"
    log=$(mktemp)
    t0=$(date +%s)
    # As in tests/netns/run.sh: tee outlives a kill of the run, so the
    # suite's trap can stop its VMs.
    "$here/suite.sh" "$s" "$@" 2>&1 | (trap '' INT TERM; exec tee -p "$log")
    rc=${PIPESTATUS[0]}
    t=$(( $(date +%s) - t0 ))
    # Count the assertions themselves: right even if suite.sh ended early.
    p=$(grep -c '^PASS: ' "$log") f=$(grep -c '^FAIL: ' "$log")
    late=$((late + $(grep -c '^NOTE: 9p: .*mounted after' "$log"))) refused=$((refused + $(grep -c '^NOTE: 9p: .*mount failed' "$log")))
    rm -f "$log"
    [ "$rc" -eq 0 ] || { rc_all=1; [ "$f" -gt 0 ] || f=1; }
    total_p=$((total_p + p)) total_f=$((total_f + f))
    summary+=("$(printf '%-12s %3d passed, %3d failed, %4d s%s' "$s" "$p" "$f" "$t" "$([ "$rc" -eq 0 ] || echo "  (exit $rc)")")")
done
echo "===== tests/vm summary"
printf '%s\n' "${summary[@]}"
# The 9p share race (issue 18 item 10): how often the guest had to retry
# the mount, and how often it gave up and the boot was repeated.
echo "9p share: $late boot(s) mounted it late (guest retried), $refused boot(s) could not mount it (booted again)"
echo "$total_p passed, $total_f failed"
exit "$rc_all"
