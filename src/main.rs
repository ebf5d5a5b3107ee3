// SPDX-License-Identifier: MIT OR Apache-2.0
//! The `conntrack-guard` binary: parses the command line and hands over to
//! the library.
#![forbid(unsafe_code)]

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(conntrack_guard::cli::run(&args));
}
