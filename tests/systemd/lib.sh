# SPDX-License-Identifier: MIT OR Apache-2.0
# shellcheck shell=bash
#
# Boot real systemd as PID 1 in private namespaces and talk to it.
# Source it; do not execute it.
#
#   sd_boot WORK UNIT   start systemd (pid1.sh) on an overlay of /, with
#                       WORK/payload copied in; sets SD_PID (host PID of
#                       the namespace's PID 1)
#   sd_exec CMD...      run CMD inside (nsenter into its namespaces + root)
#   sd_wait_active UNIT SECS   wait until UNIT is active
#   sd_kill             SIGKILL the namespace's PID 1 (kills everything
#                       inside), reap unshare, remove our cgroups
#
# The network namespace is the host's: sysctl writes inside are real.
# Save and restore them around a boot (run.sh does, with a trap).

SD_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SD_PID=""
SD_UNSHARE_PID=""
SD_CG="ctg-systemd-test-$$"
SD_CG_DIRS=()
SD_GUARD_PID=""

sd_log() { printf '[systemd %s] %s\n' "$(date +%T)" "$*" >&2; }

# Millisecond monotonic-ish wall clock for timings.
sd_now_ms() { date +%s%3N; }

# Our own cgroups on the host hierarchies: the cgroup namespace makes them
# the root seen inside, and everything systemd creates lands below them.
_sd_cgroup_setup() {
    local h d
    SD_CG_DIRS=()
    for h in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified; do
        [[ -d $h ]] || continue
        d=$h/$SD_CG
        mkdir -p "$d" || return 1
        SD_CG_DIRS+=("$d")
    done
    [[ ${#SD_CG_DIRS[@]} -gt 0 ]]
}

_sd_cgroup_cleanup() {
    local d i
    for d in "${SD_CG_DIRS[@]}"; do
        [[ -d $d ]] || continue
        # Children first; a cgroup goes away only once empty, which can
        # take a moment after the last process was killed.
        for i in $(seq 1 50); do
            find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
            [[ -d $d ]] || break
            sleep 0.1
        done
        [[ -d $d ]] && sd_log "WARNING: could not remove cgroup $d"
    done
    SD_CG_DIRS=()
}

# sd_boot WORK UNIT: log in WORK/boot.log. Returns once PID 1 is found
# (not once systemd is up: use sd_wait_active for that).
sd_boot() {
    local work=$1 unit=$2 i kids
    _sd_cgroup_setup || { sd_log "cannot create cgroups"; return 1; }
    mkdir -p "$work/mnt"
    # The shell moves itself into our cgroups, then becomes unshare, whose
    # child (PID 1 inside) runs pid1.sh, which execs systemd.
    # --kill-child: if unshare dies, the namespace's PID 1 gets SIGKILL.
    SD_CG_PROCS="${SD_CG_DIRS[*]}" setsid bash -c '
        for d in $SD_CG_PROCS; do echo $$ >"$d/cgroup.procs" || exit 1; done
        exec unshare --pid --fork --kill-child=SIGKILL --mount --cgroup --uts --ipc \
            --propagation private "$0" "$1" "$2"' \
        "$SD_LIB_DIR/pid1.sh" "$work" "$unit" </dev/null >"$work/boot.log" 2>&1 &
    SD_UNSHARE_PID=$!
    for i in $(seq 1 100); do
        kids=$(cat /proc/"$SD_UNSHARE_PID"/task/*/children 2>/dev/null)
        if [[ -n $kids ]]; then
            SD_PID=${kids%% *}
            return 0
        fi
        kill -0 "$SD_UNSHARE_PID" 2>/dev/null || break
        sleep 0.05
    done
    sd_log "PID 1 did not appear; boot log:"
    sed 's/^/  | /' "$work/boot.log" >&2
    return 1
}

# Is our PID 1 systemd already (pid1.sh has exec'ed it)?
sd_is_systemd() {
    [[ -n $SD_PID ]] && [[ $(readlink "/proc/$SD_PID/exe" 2>/dev/null) == */systemd ]]
}

sd_exec() {
    nsenter -t "$SD_PID" -m -p -u -i -C -r -w -- "$@"
}

# sd_wait_active UNIT SECS: poll until active; 1 on timeout, 2 on failed,
# 3 if PID 1 died.
sd_wait_active() {
    local unit=$1 secs=$2 deadline state
    deadline=$(( $(date +%s) + secs ))
    while (( $(date +%s) < deadline )); do
        kill -0 "$SD_PID" 2>/dev/null || return 3
        if sd_is_systemd; then
            state=$(timeout 5 nsenter -t "$SD_PID" -m -p -u -i -C -r -w -- \
                systemctl is-active "$unit" 2>/dev/null)
            case $state in
                active) return 0 ;;
                failed) return 2 ;;
            esac
        fi
        sleep 0.1
    done
    return 1
}

# sd_guard SNAPSHOT WORKDIR: a watcher that outlives a test killed with
# SIGKILL (no trap runs then): once the calling shell is gone it kills the
# namespace (through unshare --kill-child), restores the sysctl snapshot
# and removes our cgroups and WORKDIR. sd_kill stops it first.
sd_guard() {
    local snap=$1 work=$2
    setsid bash -c '
        owner=$1 unshare_pid=$2 snap=$3 work=$4 guard=$5
        shift 5
        while kill -0 "$owner" 2>/dev/null; do sleep 1; done
        if grep -q unshare "/proc/$unshare_pid/cmdline" 2>/dev/null; then
            kill -KILL "$unshare_pid"
            sleep 1
        fi
        python3 "$guard" restore "$snap"
        for d in "$@"; do find "$d" -depth -type d -exec rmdir {} + 2>/dev/null; done
        rmdir "$work/mnt" 2>/dev/null
        rm -rf "$work"' _ "$$" "$SD_UNSHARE_PID" "$snap" "$work" "$SD_LIB_DIR/sysctl-guard.py" \
        "${SD_CG_DIRS[@]}" </dev/null >/dev/null 2>&1 &
    SD_GUARD_PID=$!
}

sd_kill() {
    local i
    if [[ -n $SD_GUARD_PID ]]; then
        kill "$SD_GUARD_PID" 2>/dev/null
        wait "$SD_GUARD_PID" 2>/dev/null
        SD_GUARD_PID=""
    fi
    if [[ -n $SD_PID ]] && kill -0 "$SD_PID" 2>/dev/null; then
        kill -KILL "$SD_PID" 2>/dev/null
    fi
    if [[ -n $SD_UNSHARE_PID ]]; then
        for i in $(seq 1 100); do
            kill -0 "$SD_UNSHARE_PID" 2>/dev/null || break
            sleep 0.05
        done
        if kill -0 "$SD_UNSHARE_PID" 2>/dev/null; then
            kill -KILL "$SD_UNSHARE_PID" 2>/dev/null
        fi
        wait "$SD_UNSHARE_PID" 2>/dev/null
    fi
    SD_PID=""
    SD_UNSHARE_PID=""
    _sd_cgroup_cleanup
}
