#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Runs every test of conntrack-guard: lint, unit and integration tests, the
# .deb build, then the suites against the real kernel, real systemd and a
# real VM. Prints one closing line, `suites: N passed, N failed`.
#
# Suites that need root or tools fail (never skip) when CI=true.
set -uo pipefail
cd "$(dirname "$0")/.."

passed=0; failed=0; failed_names=()
step() {
  local name=$1; shift
  local t0=$SECONDS
  echo "=== $name: $*"
  if "$@"; then
    passed=$((passed + 1)); echo "=== $name: ok ($((SECONDS - t0)) s)"
  else
    failed=$((failed + 1)); failed_names+=("$name"); echo "=== $name: FAILED ($((SECONDS - t0)) s)"
  fi
}

step fmt cargo fmt --check
step clippy cargo clippy --all-targets --locked -- -D warnings
# Tests that need root, the real kernel or a long soak are #[ignore]d so a
# plain `cargo test` passes anywhere; here they all run. Those that touch
# global kernel state take /run/conntrack-guard-tests.lock.
step cargo-test cargo test --locked -- --include-ignored --test-threads=2
step release-build cargo build --release --locked
step deb cargo deb --no-build --locked
deb=$(ls -t target/debian/conntrack-guard_*.deb 2>/dev/null | head -n1)
export CONNTRACK_GUARD_DEB=${deb:-}
export CONNTRACK_GUARD_BIN=$PWD/target/release/conntrack-guard

for suite in packaging netns systemd vm; do
  if [ -x "tests/$suite/run.sh" ]; then
    step "$suite" "tests/$suite/run.sh"
  else
    failed=$((failed + 1)); failed_names+=("$suite (missing)")
  fi
done

[ ${#failed_names[@]} -eq 0 ] || echo "failed: ${failed_names[*]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
