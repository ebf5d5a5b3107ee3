#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Build (or reuse) the cached Debian VM image for tests/vm.
#
# Usage: tests/vm/build-image.sh [SUITE]   -> prints the cache entry directory
#   SUITE  bookworm (Debian 12, amd64, the default), trixie (Debian 13, amd64)
#          or trixie-arm64 (Debian 13, arm64: built through qemu-user-static
#          and binfmt_misc; it holds the 4 KiB-page kernel linux-image-arm64
#          and, as vmlinuz-16k/initrd.img-16k, the 16 KiB-page one,
#          linux-image-arm64-16k)
#
# The entry lives in ${CONNTRACK_GUARD_VM_CACHE:-/var/cache/conntrack-guard-vm}/<suite>/<key>,
# where <key> hashes the suite, this script and the guest files baked into
# the image. Each suite keeps its own two most recent entries.
# It holds disk.raw (sparse ext4, 4 GiB), vmlinuz, initrd.img and build.log.
# No mirror is named: mmdebstrap uses the host's apt sources.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${CONNTRACK_GUARD_VM_CACHE:-/var/cache/conntrack-guard-vm}
suite=${1:-bookworm}
arch=amd64 release=$suite
packages=systemd-sysv,udev,kmod,dbus,procps,iproute2,docker.io
case $suite in
    bookworm) packages+=,linux-image-amd64 ;;
    # Debian 13 split the docker client out of docker.io (which only
    # recommends it, and --variant=apt installs no recommends).
    trixie) packages+=,linux-image-amd64,docker-cli ;;
    trixie-arm64) arch=arm64 release=trixie packages+=,linux-image-arm64,linux-image-arm64-16k,docker-cli ;;
    *) echo "build-image: unknown suite '$suite' (bookworm, trixie or trixie-arm64)" >&2; exit 2 ;;
esac
disk_size=4G

log() { echo "build-image: $*" >&2; }

recipe_files=(
    "$here/build-image.sh"
    "$here/guest/vmtest-phase"
    "$here/guest/vmtest-phase.service"
)
key=$(cd "$here" && { echo "$suite $arch $packages"; for f in "${recipe_files[@]}"; do
    printf '%s\n' "${f#"$here"/}"; cat "$f"; done; } | sha256sum | cut -c1-16)
# One subdirectory per suite: builds and pruning of one release never touch
# the other's entries.
cache_dir=$cache_root/$suite
entry=$cache_dir/$key

mkdir -p "$cache_dir"
exec 9>"$cache_dir/.lock"
flock 9

if [ -s "$entry/disk.raw" ] && [ -s "$entry/vmlinuz" ] && [ -s "$entry/initrd.img" ]; then
    touch "$entry"
    log "reusing cached image $entry"
    echo "$entry"
    exit 0
fi

for tool in mmdebstrap mkfs.ext4; do
    command -v "$tool" >/dev/null || { log "missing tool: $tool"; exit 3; }
done
[ "$(id -u)" -eq 0 ] || { log "building the image needs root"; exit 3; }
if [ "$arch" != amd64 ]; then
    # The foreign stage runs the arm64 maintainer scripts through qemu-user.
    [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    command -v update-binfmts >/dev/null && update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] \
        || { log "no binfmt_misc entry qemu-aarch64 (apt-get install qemu-user-static binfmt-support)"; exit 3; }
fi

tmp=$(mktemp -d "$cache_dir/.build.XXXXXX")
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT INT TERM

root=$tmp/root
mkdir -p "$tmp/entry"
t0=$(date +%s)
log "building $suite image into $entry (log: $entry/build.log)"

# The essential hook runs before the kernel is installed: a small initrd
# (MODULES=list, just what mounts /dev/vda) is then what the kernel's own
# postinst makes, once per kernel. Making the stock one first and then
# again cost the most time of the arm64 build, where every mkinitramfs
# runs under qemu-user. modules.d/ is read besides /etc/initramfs-tools/modules,
# which is a conffile of initramfs-tools and so not written before it.
# The customize hook: the phase runner unit, enabled; no apt caches.
if ! mmdebstrap --mode=root --variant=apt --format=directory \
    --architectures="$arch" --include="$packages" \
    --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"' \
    --essential-hook='echo "MODULES=list" >"$1/etc/initramfs-tools/conf.d/zz-vmtest"' \
    --essential-hook='printf "%s\n" virtio_pci virtio_mmio virtio_blk ext4 crc32c >"$1/usr/share/initramfs-tools/modules.d/vmtest"' \
    --customize-hook='echo vmtest >"$1/etc/hostname"' \
    --customize-hook="install -m 0755 '$here/guest/vmtest-phase' \"\$1/usr/local/sbin/vmtest-phase\"" \
    --customize-hook="install -m 0644 '$here/guest/vmtest-phase.service' \"\$1/etc/systemd/system/vmtest-phase.service\"" \
    --customize-hook='systemctl --root="$1" enable vmtest-phase.service' \
    --customize-hook='chroot "$1" apt-get clean' \
    "$release" "$root" >"$tmp/entry/build.log" 2>&1; then
    tail -n 40 "$tmp/entry/build.log" >&2
    log "mmdebstrap failed"
    exit 1
fi

# Each kernel flavour as vmlinuz<variant>/initrd.img<variant>: "" is the
# release's default kernel, "-16k" arm64's 16 KiB-page one.
for k in "$root"/boot/vmlinuz-*; do
    v=${k##*/vmlinuz-}
    case $v in *-16k) variant=-16k ;; *) variant= ;; esac
    cp "$k" "$tmp/entry/vmlinuz$variant"
    cp "$root/boot/initrd.img-$v" "$tmp/entry/initrd.img$variant"
    echo "$v" >"$tmp/entry/kernel-version$variant"
done
echo "$arch" >"$tmp/entry/arch"
chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' >"$tmp/entry/packages.txt"
du -sh "$root" >>"$tmp/entry/build.log"
mkfs.ext4 -q -F -L vmroot -d "$root" "$tmp/entry/disk.raw" "$disk_size" >>"$tmp/entry/build.log" 2>&1
rm -rf "$root"

rm -rf "$entry"
mv "$tmp/entry" "$entry"
# Keep the suite's two most recently used entries (this one included): each
# is ~1 GiB.
ls -1dt "$cache_dir"/[0-9a-f]*[0-9a-f] 2>/dev/null | tail -n +3 | while read -r old; do
    [ -s "$old/disk.raw" ] || continue
    log "pruning old cache entry $old"
    rm -rf "$old"
done
log "built in $(( $(date +%s) - t0 )) s: $(ls -sh "$entry/initrd.img" | cut -d' ' -f1) initrd, $(du -h "$entry/disk.raw" | cut -f1) disk"
echo "$entry"
