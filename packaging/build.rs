// SPDX-License-Identifier: MIT OR Apache-2.0
//! Link options for the shipped binary (Cargo.toml names this file as the
//! package's build script).

fn main() {
    // Pack the binary's relative relocations (DT_RELR): the table shrinks
    // from 24 bytes an entry to a bitmap, the binary by about 22 KB, and
    // ld.so applies it in fewer instructions at every start of `apply`.
    // glibc reads DT_RELR from 2.36 (Debian 12) on, and a binary that uses
    // it does not start on an older one; so it is asked for only when the
    // glibc this builds against is 2.36 or newer (a source build on an older
    // system links without it). The package depends on libc6 (>= 2.36) in
    // Cargo.toml, because the symbol map behind $auto does not see the
    // GLIBC_ABI_DT_RELR version this adds.
    let gnu = std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if gnu && glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    // Link libgcc's unwinder (libgcc_eh.a, part of gcc) into the binary
    // instead of loading libgcc_s.so.1 at every start: std needs it only to
    // print a backtrace (the release profile aborts on panic). That is one
    // shared object less to open, map and relocate before `main` (13 system
    // calls, its symbol lookups, 92 KiB of file pages in the watchdog), for
    // about 24 KB more binary. rustc passes this crate's libraries before
    // std's `-lgcc_s`, so the linker takes the unwinder from here and
    // `--as-needed` drops libgcc_s.
    if gnu {
        println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    }
    println!("cargo:rerun-if-changed=packaging/build.rs");
}

/// Whether the build system's glibc (`getconf GNU_LIBC_VERSION`, "glibc
/// 2.36") is at least `major.minor`; false when it cannot be told.
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
    else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut nums = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (have_major, have_minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    (have_major, have_minor) >= (major, minor)
}
