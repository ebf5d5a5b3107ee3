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
    // One write: stderr is unbuffered, and a line written in two parts can
    // be split by another writer's (or a journal stream's) line.
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    let _ = io::stderr().lock().write_all(&buf);
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

/// Print a command's report: pretty JSON (with its newline) when `json`,
/// else `text(report)`; then [`out_or`]. The one JSON writer of the
/// commands. Serializing plain report structs does not fail; if it ever
/// did, the error is printed as a JSON object and `failed` returned.
pub fn report<R: serde::Serialize + ?Sized>(
    report: &R,
    json: bool,
    text: impl FnOnce(&R) -> String,
    code: i32,
    failed: i32,
) -> i32 {
    let (out, code) = match json.then(|| serde_json::to_string_pretty(report)) {
        None => (text(report), code),
        Some(Ok(j)) => (j + "\n", code),
        Some(Err(e)) => {
            let j = format!("{{\"exit_code\":{failed},\"error\":{:?}}}\n", e.to_string());
            (j, failed)
        }
    };
    out_or(&out, code, failed)
}

/// The configuration, or `None` after saying on stderr why it cannot be
/// had (`who`: the program, or `conntrack-guard top`).
pub fn config(
    root: &crate::sysroot::SysRoot,
    path: Option<&std::path::Path>,
    who: &str,
) -> Option<crate::config::Config> {
    crate::config::load(root, path)
        .map_err(|e| err(&format!("{who}: invalid configuration: {e}")))
        .ok()
}
