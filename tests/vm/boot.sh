#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Boot the tests/vm image once, until the guest powers off (or the timeout).
#
# Usage: tests/vm/boot.sh IMAGE_DIR DISK SHARE_DIR CONSOLE_LOG [TIMEOUT_S [VARIANT]]
#   IMAGE_DIR  cache entry from build-image.sh (vmlinuz, initrd.img, arch)
#   DISK       the raw disk to boot (a per-run copy, never the cached one)
#   SHARE_DIR  host directory exported over 9p as mount tag host0
#   VARIANT    kernel flavour: "" (default) or -16k (arm64's 16 KiB pages):
#              boots IMAGE_DIR/vmlinuz<VARIANT> and initrd.img<VARIANT>
# amd64 images boot in qemu-system-x86_64 -M q35, arm64 ones in
# qemu-system-aarch64 -M virt (no firmware: the kernel is loaded directly).
# Env: CONNTRACK_GUARD_VM_ACCEL=tcg (default) or kvm.
# Exit status: QEMU's, or 124 if the timeout killed it.
set -euo pipefail

[ $# -ge 4 ] || { echo "usage: $0 IMAGE_DIR DISK SHARE_DIR CONSOLE_LOG [TIMEOUT_S]" >&2; exit 2; }
image=$1 disk=$2 share=$3 console=$4 limit=${5:-300} variant=${6:-}
arch=$(cat "$image/arch" 2>/dev/null || echo amd64)
[ -s "$image/vmlinuz$variant" ] || { echo "boot.sh: no kernel $image/vmlinuz$variant" >&2; exit 2; }

case $arch in
    amd64) qemu=(qemu-system-x86_64 -M q35) console_dev=ttyS0 cpu=max ;;
    # pauth-impdef: QEMU's own pointer-authentication hash instead of the
    # architected QARMA, which is slow to emulate; the guest cannot tell.
    arm64) qemu=(qemu-system-aarch64 -M virt) console_dev=ttyAMA0 cpu=max,pauth-impdef=on ;;
    *) echo "boot.sh: unknown image arch '$arch'" >&2; exit 2 ;;
esac
case ${CONNTRACK_GUARD_VM_ACCEL:-tcg} in
    # Software emulation: the only thing that works on nested-KVM CI hosts
    # (and the only way to run an arm64 guest on an amd64 host).
    tcg) accel=(-accel tcg,thread=multi -cpu "$cpu") ;;
    kvm) accel=(-accel kvm -cpu host) ;;
    *) echo "boot.sh: CONNTRACK_GUARD_VM_ACCEL must be tcg or kvm" >&2; exit 2 ;;
esac

# Memory is fixed: the kernel's default nf_conntrack_max depends on it
# (65536 at 2 GiB).
exec timeout --kill-after=10 "$limit" \
    "${qemu[@]}" "${accel[@]}" -m 2048 -smp 2 -no-reboot -nic none \
    -display none -monitor none -serial "file:$console" \
    -kernel "$image/vmlinuz$variant" -initrd "$image/initrd.img$variant" \
    -append "root=/dev/vda rw console=$console_dev panic=-1 systemd.getty_auto=0" \
    -drive "file=$disk,format=raw,if=virtio,cache=unsafe" \
    -virtfs "local,path=$share,mount_tag=host0,security_model=none"
