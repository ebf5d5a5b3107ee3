# SPDX-License-Identifier: MIT OR Apache-2.0
# tests/vm: the arm64 package itself, before it boots (issue 21). Sourced by
# suite.sh for trixie-arm64 with $deb set; uses pass, fail, expect_eq and $art.

pk=$art/arm64-deb
rm -rf "$pk" && mkdir -p "$pk"
dpkg-deb -I "$deb" >"$pk/info" 2>&1 || true
expect_eq "arm64 .deb: dpkg-deb -I Architecture" arm64 "$(sed -n 's/^ Architecture: //p' "$pk/info")"
depends=$(sed -n 's/^ Depends: //p' "$pk/info")
# libkmod is dlopen'ed, so the dependency is declared by hand; it must name
# the library package unqualified (apt then takes the package's own arch,
# libkmod2:arm64), and "$auto" must have found the arm64 libc.
if [[ ", $depends," == *", libkmod2,"* ]] && [[ $depends == *libc6* ]] && [[ $depends != *:* ]]; then
    pass "arm64 .deb: Depends: $depends"
else
    fail "arm64 .deb: Depends '$depends' (want libkmod2 and libc6, no arch qualifier)"
fi
mkdir -p "$pk/root"
dpkg-deb -x "$deb" "$pk/root"
desc=$(file -b "$pk/root/usr/bin/conntrack-guard" 2>&1)
if [[ $desc == ELF\ 64-bit\ LSB\ *,\ ARM\ aarch64,* ]]; then
    pass "arm64 .deb: file usr/bin/conntrack-guard: ${desc%%, BuildID*}"
else
    fail "arm64 .deb: usr/bin/conntrack-guard is not an ARM aarch64 ELF: $desc"
fi
interp=$(sed -n 's/.*interpreter \([^,]*\),.*/\1/p' <<<"$desc")
expect_eq "arm64 .deb: ELF interpreter" /lib/ld-linux-aarch64.so.1 "$interp"
if grep -aq 'libkmod\.so\.2' "$pk/root/usr/bin/conntrack-guard"; then
    pass "arm64 .deb: the binary dlopens libkmod.so.2 by its soname (the VM shows it resolving to /usr/lib/aarch64-linux-gnu)"
else
    fail "arm64 .deb: no libkmod.so.2 string in the binary (src/kernel/module.rs dlopens it)"
fi
# lintian as an unprivileged user (as tests/packaging does): Debian 12's on
# this host, and Debian 13's that packaging/arm64.sh ran in its chroot.
if command -v lintian >/dev/null; then
    mkdir -p "$pk/lintian-home" && chmod 1777 "$pk" "$pk/lintian-home"
    HOME=$pk/lintian-home TMPDIR=$pk/lintian-home \
        setpriv --reuid=65534 --regid=65534 --clear-groups lintian --pedantic "$deb" >"$pk/lintian-host.txt" 2>&1 || true
    if [ ! -s "$pk/lintian-host.txt" ]; then
        pass "arm64 .deb: lintian --pedantic ($(lintian --version)) prints nothing"
    else
        fail "arm64 .deb: lintian --pedantic ($(lintian --version)): $(head -n5 "$pk/lintian-host.txt" | tr '\n' ';')"
    fi
else
    fail "arm64 .deb: lintian is not installed on the host"
fi
trixie_lintian=${deb%/*}/lintian-trixie.txt
if [ -f "$trixie_lintian" ]; then
    if [ ! -s "$trixie_lintian" ]; then
        pass "arm64 .deb: Debian 13's lintian --pedantic (packaging/arm64.sh) printed nothing"
    else
        fail "arm64 .deb: Debian 13's lintian --pedantic: $(head -n5 "$trixie_lintian" | tr '\n' ';')"
    fi
fi
