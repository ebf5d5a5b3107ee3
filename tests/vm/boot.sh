#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Boot the tests/vm image once, until the guest powers off (or the timeout).
#
# Usage: tests/vm/boot.sh IMAGE_DIR DISK SHARE_DIR CONSOLE_LOG [TIMEOUT_S]
#   IMAGE_DIR  cache entry from build-image.sh (vmlinuz, initrd.img)
#   DISK       the raw disk to boot (a per-run copy, never the cached one)
#   SHARE_DIR  host directory exported over 9p as mount tag host0
# Env: CONNTRACK_GUARD_VM_ACCEL=tcg (default) or kvm.
# Exit status: QEMU's, or 124 if the timeout killed it.
set -euo pipefail

[ $# -ge 4 ] || { echo "usage: $0 IMAGE_DIR DISK SHARE_DIR CONSOLE_LOG [TIMEOUT_S]" >&2; exit 2; }
image=$1 disk=$2 share=$3 console=$4 limit=${5:-300}

case ${CONNTRACK_GUARD_VM_ACCEL:-tcg} in
    # Software emulation: the only thing that works on nested-KVM CI hosts.
    tcg) accel=(-accel tcg,thread=multi -cpu max) ;;
    kvm) accel=(-accel kvm -cpu host) ;;
    *) echo "boot.sh: CONNTRACK_GUARD_VM_ACCEL must be tcg or kvm" >&2; exit 2 ;;
esac

# Memory is fixed: the kernel's default nf_conntrack_max depends on it
# (65536 at 2 GiB).
exec timeout --kill-after=10 "$limit" \
    qemu-system-x86_64 "${accel[@]}" -M q35 -m 2048 -smp 2 -no-reboot -nic none \
    -display none -monitor none -serial "file:$console" \
    -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 panic=-1 systemd.getty_auto=0" \
    -drive "file=$disk,format=raw,if=virtio,cache=unsafe" \
    -virtfs "local,path=$share,mount_tag=host0,security_model=none"
