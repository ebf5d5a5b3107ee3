#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Runs as PID 1 of a fresh PID namespace, inside fresh mount, cgroup, UTS
# and IPC namespaces (see lib.sh: sd_boot). Builds a throwaway root and
# execs real systemd in it:
#
#   $1 (WORK)  host directory; WORK/mnt is the mount point for a tmpfs
#              that holds the overlay's upper and work dirs and the root.
#   WORK/payload/   copied over the merged root before boot.
#   WORK/payload/ctg-setup.sh, if present, runs chrooted in the new root
#              (with /proc, /sys, /dev, /run, /tmp mounted) before boot,
#              e.g. to dpkg -i the package. A failure aborts the boot.
#   $2         the unit systemd starts (--unit=).
#
# The root is an overlay with lowerdir=/ (the host's root file system,
# read only as far as this is concerned) and the upper dir on the tmpfs,
# so nothing written by dpkg, systemd or the units reaches the host.
# Everything mounted here dies with the mount namespace.
set -eu
WORK=$1
UNIT=$2
M=$WORK/mnt
R=$M/root

say() { printf '[pid1] %s\n' "$*"; }

mount -t tmpfs -o mode=0755,size=512m ctg-sd "$M"
mkdir -p "$M/upper" "$M/work" "$R"
mount -t overlay overlay -o "lowerdir=/,upperdir=$M/upper,workdir=$M/work" "$R"

# Kernel file systems. /proc is rw: the conntrack-guard-apply unit writes
# the real (host network namespace) sysctls through it. /sys is read only,
# as in systemd-nspawn, so udev and friends skip themselves.
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"

# cgroups: hybrid layout, as on this host: a tmpfs with a named v1
# "systemd" hierarchy and the cgroup2 hierarchy at "unified". The cgroup
# namespace makes our host cgroup (created by lib.sh) the root of both.
mount -t tmpfs -o mode=0755,nosuid,nodev,noexec cgroup "$R/sys/fs/cgroup"
mkdir "$R/sys/fs/cgroup/systemd" "$R/sys/fs/cgroup/unified"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$R/sys/fs/cgroup/unified"
mount -t cgroup -o none,name=systemd,nosuid,nodev,noexec cgroup "$R/sys/fs/cgroup/systemd"
mount -o remount,ro,bind "$R/sys/fs/cgroup"

# /dev: a private tmpfs with bind mounts of a few host nodes, so what
# systemd creates in /dev (the /dev/log symlink, static nodes) stays in
# this namespace. No /dev/kmsg: nothing in here writes to the host's
# kernel log.
mount -t tmpfs -o mode=0755,nosuid,size=4m ctg-dev "$R/dev"
for n in null zero full random urandom tty; do
    touch "$R/dev/$n"
    mount --bind "/dev/$n" "$R/dev/$n"
done
mkdir -p "$R/dev/pts" "$R/dev/shm" "$R/dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,nosuid,noexec devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"
# systemd writes status to /dev/console: point it at our log (a pty
# slave would do too; the host console must not be touched).
touch "$R/dev/console"
mount --bind /proc/self/fd/1 "$R/dev/console" 2>/dev/null || mount --bind /dev/null "$R/dev/console"

mount -t tmpfs -o mode=0755,nosuid,nodev,size=128m run "$R/run"
mount -t tmpfs -o mode=1777,nosuid,nodev,size=128m tmp "$R/tmp"
mkdir -p "$R/var/log/journal"
mount -t tmpfs -o mode=2755,nosuid,nodev,size=128m journal "$R/var/log/journal"

if [[ -d $WORK/payload ]]; then
    cp -a "$WORK/payload/." "$R/"
fi
if [[ -x $R/ctg-setup.sh ]]; then
    say "running ctg-setup.sh"
    timeout 300 chroot "$R" /ctg-setup.sh
    say "ctg-setup.sh done"
fi

# pivot_root(".", "."): the old root ends up stacked under the new one and
# is lazily detached (see pivot_root(2), NOTES).
cd "$R"
pivot_root . .
umount -l .
cd /
say "exec systemd --unit=$UNIT"
exec env -i container=ctg-systemd-test TERM=dumb \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /lib/systemd/systemd --system --unit="$UNIT" --show-status=no --log-target=journal --log-level=info
