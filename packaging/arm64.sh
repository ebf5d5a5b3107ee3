#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Build the arm64 .deb with Debian 13's own toolchain: rustc, cargo and
# libstd-rust-dev:arm64 (the aarch64 standard library; Multi-Arch: same),
# gcc-aarch64-linux-gnu as the linker, in a Debian 13 chroot made by
# mmdebstrap. rustup is not needed (and cannot fetch other targets here).
#
# Usage (as root, on Debian 12 or 13, from anywhere): packaging/arm64.sh
# Result: target/aarch64-unknown-linux-gnu/debian/conntrack-guard_<version>_arm64.deb
#         (its path is the last line printed on stdout)
# Crates come from Cargo.lock (--locked); the package from the same
# [package.metadata.deb] as the amd64 one (cargo-deb --target).
# Env:
#   CONNTRACK_GUARD_ARM64_CACHE  chroot cache (default /var/cache/conntrack-guard-arm64):
#                                <key>/root is the chroot, keyed on the recipe below;
#                                cargo-home/ keeps downloaded crates between runs.
# No mirror is named: mmdebstrap uses the host's apt sources.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache_root=${CONNTRACK_GUARD_ARM64_CACHE:-/var/cache/conntrack-guard-arm64}
triple=aarch64-unknown-linux-gnu
log() { echo "arm64.sh: $*" >&2; }

# ---- the recipe (its hash keys the cached chroot) --------------------------
suite=trixie
# Native: the compiler, cargo and a C toolchain for build scripts and for
# cargo-deb's own build (its xz2 links liblzma). Foreign: the target's std
# and the cross linker. dpkg-dev: dpkg-shlibdeps for "$auto" and strip
# tools; file and lintian check the result.
packages=rustc,cargo,gcc,libc6-dev,pkg-config,liblzma-dev,ca-certificates,dpkg-dev,file,lintian
packages+=,libstd-rust-dev:arm64,gcc-aarch64-linux-gnu,libc6-dev-arm64-cross,binutils-aarch64-linux-gnu
# cargo-deb 3.8.0 (what .ci/run installs for amd64) uses let chains, stable
# only since Rust 1.88, and Debian 13 has 1.85: 3.6.0 is the newest that
# builds with it. Both read the same [package.metadata.deb].
cargo_deb_version=3.6.0
# The host's local CAs (/usr/local/share/ca-certificates) are trusted in
# the chroot too, so cargo reaches crates.io wherever the host does.
recipe="$suite amd64,arm64 $packages cargo-deb $cargo_deb_version local-cas v2"
key=$(echo "$recipe" | sha256sum | cut -c1-16)
entry=$cache_root/$key
root=$entry/root

[ "$(id -u)" -eq 0 ] || { log "run as root (mmdebstrap, chroot)"; exit 3; }

# ---- host tools: only Debian packages ---------------------------------------
if ! command -v mmdebstrap >/dev/null; then
    log "installing mmdebstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
fi

mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock 9

# ---- the chroot ---------------------------------------------------------------
if [ ! -x "$root/usr/bin/cargo-deb" ]; then
    t0=$(date +%s)
    tmp=$(mktemp -d "$cache_root/.build.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    log "building the $suite chroot (amd64 + arm64 std) into $entry (log: $tmp/build.log)"
    # cargo-deb is installed with the chroot's own cargo (crates.io).
    if ! mmdebstrap --mode=root --variant=apt --format=directory \
        --architectures=amd64,arm64 --include="$packages" \
        --customize-hook='cp /etc/resolv.conf "$1/etc/resolv.conf"' \
        --customize-hook='cp -r /usr/local/share/ca-certificates/. "$1/usr/local/share/ca-certificates/" 2>/dev/null || true' \
        --customize-hook='chroot "$1" update-ca-certificates >/dev/null' \
        --customize-hook="chroot \"\$1\" env CARGO_HOME=/opt/cargo-deb cargo install --locked --root /usr cargo-deb --version $cargo_deb_version" \
        --customize-hook='rm -rf "$1/opt/cargo-deb"' \
        --customize-hook='chroot "$1" apt-get clean' \
        "$suite" "$tmp/root" >"$tmp/build.log" 2>&1; then
        cp "$tmp/build.log" "$cache_root/failed-build.log"
        tail -n 40 "$tmp/build.log" >&2
        log "mmdebstrap failed (full log: $cache_root/failed-build.log)"
        exit 1
    fi
    echo "$recipe" >"$tmp/recipe"
    chroot "$tmp/root" dpkg-query -W -f '${Package}:${Architecture} ${Version}\n' >"$tmp/packages.txt"
    rm -rf "$entry"
    mv "$tmp" "$entry"
    trap - EXIT
    # Keep the newest two chroots (~1.5 GiB each).
    ls -1dt "$cache_root"/[0-9a-f]*[0-9a-f] 2>/dev/null | tail -n +3 | while read -r old; do
        log "pruning old chroot $old"
        rm -rf "$old"
    done
    log "chroot built in $(( $(date +%s) - t0 )) s"
else
    touch "$entry"
    log "reusing cached chroot $entry"
fi
log "toolchain: $(chroot "$root" rustc --version), $(chroot "$root" cargo deb --version), $(chroot "$root" aarch64-linux-gnu-gcc --version | head -n1)"

# ---- the build ----------------------------------------------------------------
# The repository and a crate cache shared between runs are bind-mounted.
mkdir -p "$cache_root/cargo-home" "$root/src" "$root/cargo-home"
mounts=()
umount_all() {
    local i
    for (( i=${#mounts[@]}-1; i>=0; i-- )); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
}
trap umount_all EXIT
bind() { mount --bind "$1" "$2"; mounts+=("$2"); }
bind "$repo" "$root/src"
bind "$cache_root/cargo-home" "$root/cargo-home"
mount -t proc proc "$root/proc"; mounts+=("$root/proc")
bind /dev "$root/dev"
cp /etc/resolv.conf "$root/etc/resolv.conf"

# --locked: the same crates as the amd64 build. CARGO_TARGET_DIR stays the
# repository's target/, so the package lands in target/$triple/debian/.
chroot "$root" env -i PATH=/usr/bin:/bin HOME=/root LC_ALL=C.UTF-8 CARGO_HOME=/cargo-home \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    sh -c "cd /src && cargo deb --locked --target $triple --output target/$triple/debian/" >&2

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n1)
deb=$repo/target/$triple/debian/conntrack-guard_${version}-1_arm64.deb
[ -f "$deb" ] || deb=$(ls -t "$repo/target/$triple/debian/conntrack-guard_${version}"*_arm64.deb 2>/dev/null | head -n1)
[ -n "$deb" ] && [ -f "$deb" ] || { log "no arm64 .deb in target/$triple/debian/"; exit 1; }
# Debian 13's lintian on the result, as an unprivileged user; the output
# is kept beside the package (empty = clean) for tests/vm.
chroot "$root" setpriv --reuid=65534 --regid=65534 --clear-groups \
    env -i PATH=/usr/bin:/bin HOME=/tmp TMPDIR=/tmp lintian --pedantic "/src/${deb#"$repo"/}" \
    >"${deb%/*}/lintian-trixie.txt" 2>&1 || true
log "lintian --pedantic (Debian 13): $([ -s "${deb%/*}/lintian-trixie.txt" ] && cat "${deb%/*}/lintian-trixie.txt" || echo "nothing")"
# cargo-deb 3.6 also puts the package into target/debian/, where the amd64
# package is looked for (tests/run-all.sh takes the newest there).
rm -f "$repo"/target/debian/conntrack-guard_*_arm64.deb
log "built $deb"
echo "$deb"
