# SPDX-License-Identifier: MIT OR Apache-2.0
# tests/vm: assertions on the boot after the Docker scenario's growth (guest
# side: step_grownboot in guest/steps.sh). Sourced by suite.sh after that
# boot; uses its $out, $art, pass, fail, val, expect_eq, is_num, and
# $grown_max from assert-docker.sh (the max the watchdog grew to).

step_ok grownboot "grown boot: the step ran (see $out/grownboot/step.log)"
if grep -qE '^max[[:space:]]*=[[:space:]]*512$' "$out/grownboot/conffile" 2>/dev/null; then
    pass "grown boot: the conffile still says max = 512"
else
    fail "grown boot: the conffile's max changed: $(grep -E '^max' "$out/grownboot/conffile" 2>/dev/null)"
fi
expect_eq "grown boot: nf_conntrack_max after the reboot (the remembered grown max)" "${grown_max:-<none>}" "$(val grownboot/nf_conntrack_max)"
if grep -E 'nf_conntrack_max' "$out/grownboot/apply-journal" 2>/dev/null | grep -q 'grown on .*configured 512'; then
    pass "grown boot: apply says so: $(grep -E 'nf_conntrack_max' "$out/grownboot/apply-journal" | grep 'grown on' | head -n1 | sed 's/^[[:space:]]*//')"
elif grep -q 'grown on .*configured 512' "$out/grownboot/apply-journal" 2>/dev/null; then
    pass "grown boot: apply says so: $(grep 'grown on' "$out/grownboot/apply-journal" | head -n1 | sed 's/^[[:space:]]*//')"
else
    fail "grown boot: apply's journal does not say it started from the grown max (see $out/grownboot/apply-journal)"
fi
if grep '"MESSAGE_ID":"ba7a39ca12884f2a90d09a1b1fc069d6"' "$out/grownboot/apply-journal.json" 2>/dev/null \
    | grep -q "\"CONNTRACK_GROWN_MAX\":\"${grown_max:-x}\""; then
    pass "grown boot: the applied event carries CONNTRACK_GROWN_MAX=$grown_max"
else
    fail "grown boot: no applied event with CONNTRACK_GROWN_MAX=${grown_max:-?}"
fi
expect_eq "grown boot: conntrack-guard status exit code (the grown max is not drift)" 0 "$(val grownboot/status-cli-rc)"
cp "$out/grownboot/apply-journal" "$art/grownboot-apply-journal.txt" 2>/dev/null || true
