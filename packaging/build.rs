// SPDX-License-Identifier: MIT OR Apache-2.0
//! Link options for the shipped binary (Cargo.toml names this file as the
//! package's build script).

fn main() {
    // Pack the binary's relative relocations (DT_RELR): the table shrinks
    // from 24 bytes an entry to a bitmap, the binary by about 22 KB, and
    // ld.so applies it in fewer instructions at every start of `apply`.
    // glibc reads DT_RELR from 2.36 (Debian 12) on; the package depends on
    // it in Cargo.toml, because the symbol map behind $auto does not see the
    // GLIBC_ABI_DT_RELR version this adds.
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=packaging/build.rs");
}
