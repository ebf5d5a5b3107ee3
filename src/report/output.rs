// SPDX-License-Identifier: MIT OR Apache-2.0
//! stdout and stderr for a CLI used in scripts: never panic on output.
//!
//! `print!` panics when the write fails, and with `panic = "abort"` that is
//! a SIGABRT (exit 134) for `conntrack-guard status | head -1`. A closed
//! pipe (EPIPE; Rust ignores SIGPIPE, so it arrives as an error) means the
//! reader has seen enough: it is a normal end, not a failure.

use std::io::{self, Write};

/// Write `text` to stdout and flush. A closed pipe counts as written; any
/// other error is returned.
pub fn out(text: &str) -> io::Result<()> {
    let mut o = io::stdout().lock();
    match o.write_all(text.as_bytes()).and_then(|()| o.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Write one line to stderr, best effort: if stderr is gone there is
/// nowhere left to report to.
pub fn err(line: &str) {
    let mut e = io::stderr().lock();
    let _ = e.write_all(line.as_bytes());
    let _ = e.write_all(b"\n");
}

/// [`out`], and on a real write error (not a closed pipe) say so on
/// stderr and return `failed` instead of `code`.
pub fn out_or(text: &str, code: i32, failed: i32) -> i32 {
    match out(text) {
        Ok(()) => code,
        Err(e) => {
            err(&format!("conntrack-guard: cannot write to stdout: {e}"));
            failed
        }
    }
}
