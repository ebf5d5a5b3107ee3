#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Issue 15, finding 1, on the real kernel: a max that is not a multiple of
# 2048 (so max/4 is not a whole page of bucket pointers) must apply, verify
# and stay verified, although the kernel rounds the bucket count up.
#
#   1. apply max = 1000000, buckets "auto" in the initial netns: exit 0,
#      the kernel holds 250368 buckets (250000 rounded up to 512 on 4 KiB
#      pages), and the table names the rounding.
#   2. apply again (the next boot): buckets "unchanged", exit 0.
#   3. status: no drift, exit 0; a short watch run logs no drift event.
#   4. an explicit buckets = 128 (below one page) applies as 512.
#
# Changes nf_conntrack_max and nf_conntrack_buckets globally for a few
# seconds; both are restored on exit, INT and TERM (lib.sh's trap). Takes
# the shared test lock.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

finish() {
    if ! ctg_teardown; then not_ok "global sysctls restored"; fi
    echo "$PASS passed, $FAIL failed"
    [[ $FAIL == 0 ]]
    exit
}

ctg_find_bin "$REPO" || { not_ok "conntrack-guard binary found (set CONNTRACK_GUARD_BIN or build target/release)"; finish; }

ctg_take_globals || { not_ok "took /run/conntrack-guard-tests.lock within 600 s"; finish; }
W=$(ctg_workdir)
page=$(getconf PAGESIZE)
gran=$((page / 8))
want=$(( (250000 + gran - 1) / gran * gran ))

cat >"$W/round.toml" <<'EOF2'
# Only the global keys: the UDP timeouts of this netns stay as they are.
[conntrack]
max = 1000000
buckets = "auto"
udp_timeout = "keep"
udp_timeout_stream = "keep"

[watch]
interval = 0.2
EOF2
chmod 600 "$W/round.toml"

out=$("${CG[@]}" apply --config "$W/round.toml" 2>&1); rc=$?
echo "$out" | sed 's/^/    /'
check "apply max=1000000 exits 0 (got $rc)" test "$rc" = 0
got=$(<"$CTG_SYSCTL_DIR/nf_conntrack_buckets")
check "kernel holds $want buckets (page $page: 250000 rounded up to $gran), got $got" test "$got" = "$want"
check "the table names the rounding" grep -q "250000 → $want, rounded up by the kernel" <<<"$out"
check "no FAILED row" bash -c '! grep -qE "  FAILED|apply FAILED" <<<"$1"' _ "$out"

out=$("${CG[@]}" apply --config "$W/round.toml" 2>&1); rc=$?
check "second apply (the next boot) exits 0 (got $rc)" test "$rc" = 0
check "second apply: buckets unchanged" grep -qE "nf_conntrack_buckets +[0-9]+ +$want +$want +unchanged" <<<"$out"

"${CG[@]}" status --config "$W/round.toml" --json --window 0 >"$W/status.json" 2>"$W/status.err"; rc=$?
check "status exits 0 (got $rc): no drift" test "$rc" = 0
check "status lists no drifted setting" python3 -c '
import json,sys; r=json.load(open(sys.argv[1]))
bad=[s for s in r["settings"] if not s["ok"]]
sys.exit(1 if bad else 0)' "$W/status.json"

timeout 10 "${CG[@]}" watch --config "$W/round.toml" 2>"$W/watch.err" &
wpid=$!
sleep 1.5
kill -TERM "$wpid" 2>/dev/null; wait "$wpid"
check "watch logged started" grep -q "EVENT=started" "$W/watch.err"
check "watch logged no drift" bash -c '! grep -q "EVENT=drift" "$1"' _ "$W/watch.err"

printf '[conntrack]\nmax = "keep"\nbuckets = 128\nudp_timeout = "keep"\nudp_timeout_stream = "keep"\n' >"$W/small.toml"
chmod 600 "$W/small.toml"
out=$("${CG[@]}" apply --config "$W/small.toml" 2>&1); rc=$?
check "buckets = 128 applies (exit $rc)" test "$rc" = 0
got=$(<"$CTG_SYSCTL_DIR/nf_conntrack_buckets")
check "kernel holds one page of buckets ($gran), got $got" test "$got" = "$gran"
finish
