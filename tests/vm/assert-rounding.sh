# SPDX-License-Identifier: MIT OR Apache-2.0
# tests/vm: assertions on the bucket-rounding scenario (guest side:
# step_rounding in guest/steps.sh). Sourced by suite.sh after a boot that ran
# it; uses its $out, $art, pass, fail, val, expect_eq and is_num. $1 names
# the kernel in the messages.

rd=$out/rounding
rk=$1
step_ok rounding "$rk rounding: the scenario ran (see $rd/step.log)"
page=$(val rounding/page-size)
requested=$((396000 / 4))
if is_num "$page" && [ "$page" -ge 4096 ]; then
    g=$((page / 8))
    # What nf_ct_alloc_hashtable() stores: roundup(max/4, PAGE_SIZE/8).
    want=$(( (requested + g - 1) / g * g ))
    got=$(val rounding/nf_conntrack_buckets)
    expect_eq "$rk rounding: nf_conntrack_max (conffile max = 396000)" 396000 "$(val rounding/nf_conntrack_max)"
    if [ $((requested % g)) -ne 0 ] && [ "$got" = "$want" ]; then
        pass "$rk rounding: page size $page: max/4 = $requested is not a multiple of $g; the kernel stores $got buckets (rounded up)"
    else
        fail "$rk rounding: page size $page, max/4 = $requested: want the kernel to store $want buckets (multiple of $g), read back '$got'"
    fi
    expect_eq "$rk rounding: conntrack-guard-apply restart with max = 396000, exit code" 0 "$(val rounding/apply-rc)"
    if grep -qF "$requested → $want" "$rd/apply-journal" 2>/dev/null; then
        pass "$rk rounding: apply says so: $(grep -F "$requested → $want" "$rd/apply-journal" | head -n1 | sed 's/^ *//')"
    else
        fail "$rk rounding: apply's journal has no \"$requested → $want\" (see $rd/apply-journal)"
    fi
    expect_eq "$rk rounding: conntrack-guard status exit code" 0 "$(val rounding/status-rc)"
    row=$(python3 -c 'import json,sys
r = json.load(open(sys.argv[1]))
for s in r.get("settings", []):
    if s["key"].endswith("nf_conntrack_buckets"):
        print(s["expected"], s["actual"], s["ok"])' "$rd/status.json" 2>/dev/null || true)
    expect_eq "$rk rounding: status --json buckets row (expected actual ok)" "$want $want True" "${row:-<none>}"
    expect_eq "$rk rounding: the watchdog is active (after $(val rounding/watch-reloading-s) s of waiting for systemd's reload job, at most 60)" \
        active "$(val rounding/watch-active)"
    rw=$(val rounding/watch-reloading-s)
    if is_num "$rw" && [ "$rw" -gt 0 ]; then
        echo "NOTE: $rk rounding: systemd still said \"reloading\" for $rw s after the watchdog logged its reload ($(tr '\n' ' ' <"$rd/watch-show" 2>/dev/null))" \
            | tee -a "$art/reload-wait.txt"
    fi
    if grep -q '"MESSAGE":"configuration reloaded' "$rd/watch-journal.json" 2>/dev/null \
        && ! grep -q '"CONNTRACK_EVENT":"drift' "$rd/watch-journal.json"; then
        pass "$rk rounding: the watchdog reloaded the config and logged no drift at a 1 s interval (status: $(val rounding/watch-status))"
    else
        fail "$rk rounding: the watchdog did not reload, or logged drift: $(grep -o '"MESSAGE":"[^"]*' "$rd/watch-journal.json" 2>/dev/null | tail -n3 | tr '\n' ';')"
    fi
    {
        echo "bucket rounding, $rk (kernel $(val rounding/kernel), page size $page):"
        echo "  conffile max = 396000, buckets = \"auto\": max/4 = $requested, kernel stores $got (multiple of $g)"
        grep -F "$requested → $want" "$rd/apply-journal" 2>/dev/null | head -n1 | sed 's/^/  apply: /'
        echo "  status --json buckets row: $row"
        echo "  watchdog: $(val rounding/watch-status)"
    } | tee -a "$art/rounding.txt"
else
    fail "$rk rounding: no page size recorded (see $rd/step.log)"
fi
