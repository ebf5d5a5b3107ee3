#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# Run every fuzz target for $FUZZ_SECONDS (default 60) each, one at a time.
#
# Needs cargo-fuzz (cargo install --locked cargo-fuzz). Works on stable
# Rust: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags (sanitizer,
# coverage instrumentation).
#   FUZZ_SECONDS=120        time per target
#   FUZZ_TARGETS="a b"      subset of targets
#   FUZZ_SANITIZER=none     skip AddressSanitizer (default: address)
#   FUZZ_CARGO_FLAGS=-O     extra cargo-fuzz flags; -O drops the overflow
#                           checks, like the shipped release profile
#   FUZZ_LIBFUZZER_FLAGS="-fork=1 -ignore_crashes=1"  keep going past crashes
# A crashing target does not stop the others; the script exits 1 at the end.
# Reproducers land in tests/fuzz/artifacts/<target>/ (ignored by git);
# copy the ones worth keeping to tests/fuzz/artifacts-found/<target>/.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${FUZZ_SECONDS:-60}
san=${FUZZ_SANITIZER:-address}
cflags=${FUZZ_CARGO_FLAGS:-}
lflags=${FUZZ_LIBFUZZER_FLAGS:-}
targets=${FUZZ_TARGETS:-"config_parse parse_duration parse_stat netlink_parse ct_dump_parse"}
logs="$here/target/logs"
command -v cargo-fuzz >/dev/null || {
    echo "cargo-fuzz missing: cargo install --locked cargo-fuzz" >&2
    exit 2
}
mkdir -p "$logs"
cd "$root"
export RUSTC_BOOTSTRAP=1
# shellcheck disable=SC2086 # flag lists are meant to split
cargo fuzz build --fuzz-dir tests/fuzz -s "$san" $cflags
failed=""
for t in $targets; do
    mkdir -p "$here/corpus/$t"
    # Seeds are read-only corpus dirs after the first (writable) one. The
    # config target seeds from the bad-config corpus and the shipped conffile
    # where they live, rather than from copies.
    case $t in
        config_parse) seeds="$root/tests/bad-configs $root/packaging" ;;
        *) seeds="$here/seeds/$t" ;;
    esac
    echo "== $t: ${secs}s (sanitizer: $san; flags: ${cflags:-none}; libFuzzer: ${lflags:-none})"
    # shellcheck disable=SC2086
    if cargo fuzz run --fuzz-dir tests/fuzz -s "$san" $cflags "$t" \
        "$here/corpus/$t" $seeds \
        -- -max_total_time="$secs" -print_final_stats=1 $lflags \
        >"$logs/$t.log" 2>&1; then
        grep -E '^Done [0-9]+ runs|stat::number_of_executed_units' "$logs/$t.log" || true
    else
        grep -E 'panicked at|^attempt|ERROR: (libFuzzer|AddressSanitizer)|^Done [0-9]+ runs|stat::number_of_executed_units|Failing input' -A1 "$logs/$t.log" | head -n 20
        echo "== $t: CRASH (full log: $logs/$t.log)" >&2
        failed="$failed $t"
    fi
done
if [ -n "$failed" ]; then
    echo "== crashed:$failed" >&2
    exit 1
fi
echo "== all targets ran clean for ${secs}s each"
