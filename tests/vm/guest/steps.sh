# SPDX-License-Identifier: MIT OR Apache-2.0
# Guest side of tests/vm: sourced by the phase.sh that run.sh writes to the
# share for each boot. Each step only records facts into files under
# $OUT/<step>/; the host makes the assertions. Needs bash.
set -u

NF=/proc/sys/net/netfilter
CONFFILE=/etc/conntrack-guard/conntrack-guard.toml
TRAP_CONF=/etc/sysctl.d/99-x.conf
export DEBIAN_FRONTEND=noninteractive SYSTEMD_PAGER= SYSTEMD_COLORS=0 LC_ALL=C.UTF-8

# step NAME: run step_NAME with output in $OUT/NAME, record duration and rc.
step() {
    local name=$1 d=$OUT/$1 t0 t1 rc
    mkdir -p "$d"
    echo "=== step $name"
    t0=$(date +%s%N)
    ( cd "$d" && "step_$name" ) >"$d/step.log" 2>&1
    rc=$?
    t1=$(date +%s%N)
    echo "$rc" >"$d/step.rc"
    echo $(( (t1 - t0) / 1000000 )) >"$d/step.ms"
    cat "$d/step.log"
    echo "=== step $name: rc $rc, $(( (t1 - t0) / 1000000 )) ms"
}

wait_for_boot() {
    # Our runner unit is Type=exec, so this returns once the rest of the
    # boot transaction (docker included) has finished.
    timeout 180 systemctl is-system-running --wait >system-state 2>&1 || true
    uptime >uptime
}

sysctl_value() {  # key suffix after net.netfilter.
    cat "$NF/$1" 2>/dev/null || echo absent
}

record_keys() {
    local k
    for k in nf_conntrack_max nf_conntrack_buckets nf_conntrack_udp_timeout \
             nf_conntrack_udp_timeout_stream; do
        sysctl_value "$k" >"$k"
    done
    grep -E '^nf_conntrack ' /proc/modules >nf_conntrack-module || true
}

record_order() {
    local u
    for u in systemd-modules-load systemd-sysctl conntrack-guard-apply docker \
             conntrack-guard vmtest-phase; do
        printf '%s %s %s\n' "$u" \
            "$(systemctl show -P ExecMainStartTimestampMonotonic "$u.service")" \
            "$(systemctl show -P ExecMainExitTimestampMonotonic "$u.service")"
    done >start-order
}

record_common() {
    wait_for_boot
    uname -r >kernel
    record_keys
    record_order
    systemctl --failed --no-legend --plain >failed-units 2>&1 || true
    journalctl -b --no-pager -o short-monotonic >boot-journal 2>&1 || true
}

install_deb() {  # apt first; dpkg -i if apt will not do it offline
    local deb
    deb=$(ls "$SHARE"/deb/conntrack-guard_*.deb | head -n1)
    echo "deb: $deb"
    if apt-get install -y "$deb"; then
        echo apt >install-method
    else
        echo "apt-get failed; trying dpkg -i"
        dpkg -i "$deb" && echo dpkg >install-method
    fi
}

# Phase 1: the trap, before conntrack-guard is installed.
step_trap() {
    cat "$TRAP_CONF" >trap-conf 2>&1 || true
    record_common
    journalctl -b -u systemd-sysctl --no-pager -o short-monotonic >sysctl-journal 2>&1 || true
    # systemd-sysctl's own message about the key it could not set.
    grep -E "systemd-sysctl.*Couldn't write.*nf_conntrack_max" boot-journal >couldnt-write || true
}

# Phase 2, first half (same boot as phase 1): install and drop the trap file.
step_install() {
    install_deb
    echo $? >install-rc
    rm -f "$TRAP_CONF"
    dpkg-query -W -f '${Conffiles}\n' conntrack-guard >conffiles 2>&1 || true
    systemctl is-enabled conntrack-guard-apply.service conntrack-guard.service >enabled 2>&1 || true
}

# Phase 2, second half: the first boot with conntrack-guard installed.
step_installed() {
    record_common
    local i
    for i in $(seq 1 30); do  # the watchdog's first STATUS= may lag READY=1
        case $(systemctl show -P StatusText conntrack-guard.service) in conntrack\ *) break ;; esac
        sleep 1
    done
    systemctl is-active conntrack-guard.service >is-active 2>&1 || true
    systemctl status conntrack-guard.service --no-pager -l >status 2>&1 || true
    systemctl status conntrack-guard-apply.service --no-pager -l >status-apply 2>&1 || true
    journalctl -b -u conntrack-guard-apply --no-pager >apply-journal 2>&1 || true
    journalctl -b -u conntrack-guard-apply -o json --no-pager >apply-journal.json 2>&1 || true
    journalctl -b -u conntrack-guard --no-pager >watch-journal 2>&1 || true
    journalctl -b -u conntrack-guard -o json --no-pager >watch-journal.json 2>&1 || true
    journalctl -b -u conntrack-guard-apply -u conntrack-guard --no-pager >journal 2>&1 || true
    # Diagnostics: the two entries wherever they landed, unit or not (a
    # process that exits right after logging can lose its _SYSTEMD_UNIT).
    journalctl -b MESSAGE_ID=ba7a39ca12884f2a90d09a1b1fc069d6 -o json --no-pager >summary-any.json 2>&1 || true
    journalctl -b MESSAGE_ID=ae526c3a34f744e499ba6f5654837c9f -o json --no-pager >started-any.json 2>&1 || true
}

# Phase 3, first half: edit the conffile and reinstall the same package.
step_upgrade() {
    if [ -f "$CONFFILE" ]; then
        cp "$CONFFILE" conffile-before
        if grep -qE '^[#[:space:]]*max[[:space:]]*=' "$CONFFILE"; then
            sed -i -E 's/^[#[:space:]]*max[[:space:]]*=.*/max = 524288/' "$CONFFILE"
        elif grep -q '^\[conntrack\]' "$CONFFILE"; then
            sed -i -E 's/^\[conntrack\]$/[conntrack]\nmax = 524288/' "$CONFFILE"
        else
            printf '\n[conntrack]\nmax = 524288\n' >>"$CONFFILE"
        fi
    else
        echo "no $CONFFILE"
        mkdir -p "${CONFFILE%/*}"
        printf '[conntrack]\nmax = 524288\n' >"$CONFFILE"
    fi
    cp "$CONFFILE" conffile-edited
    dpkg -i --force-confold "$(ls "$SHARE"/deb/conntrack-guard_*.deb | head -n1)"
    echo $? >reinstall-rc
    cp "$CONFFILE" conffile-after-reinstall 2>/dev/null || true
}

# Phase 3, second half: the boot after the reinstall.
step_upgraded() {
    record_common
    cp "$CONFFILE" conffile 2>/dev/null || echo missing >conffile
    journalctl -b -u conntrack-guard-apply --no-pager >apply-journal 2>&1 || true
}

# One line per unit that still has a file or a unit body:
# "<unit> <what>". Empty output = gone.
units_left() {
    local u d
    for u in conntrack-guard.service conntrack-guard-apply.service; do
        for d in /lib/systemd/system /usr/lib/systemd/system; do
            [ -e "$d/$u" ] && echo "$u file $d/$u"
        done
        systemctl cat "$u" 2>/dev/null | grep -q '^ExecStart=' && echo "$u systemctl-cat shows a unit body"
        find /etc/systemd/system -name "$u" 2>/dev/null | sed "s|^|$u link |"
    done
    return 0
}

# Phase 4: remove, then purge (same boot as phase 3).
step_remove() {
    apt-get remove -y conntrack-guard
    echo $? >remove-rc
    systemctl daemon-reload
    # dh_installsystemd's postrm masks the units on remove (unmasks on
    # purge), so `systemctl cat` may say "masked" and still exit 0.
    units_left >units-after-remove
    record_keys
    if [ -e "$CONFFILE" ]; then echo present; else echo absent; fi >conffile-after-remove
    dpkg -P conntrack-guard
    echo $? >purge-rc
    systemctl daemon-reload
    units_left >units-after-purge
    if [ -e "$CONFFILE" ]; then echo present; else echo absent; fi >conffile-after-purge
    dpkg-query -W -f '${db:Status-Abbrev}\n' conntrack-guard >dpkg-status 2>&1 || true
}
