// SPDX-License-Identifier: MIT OR Apache-2.0
//! The import rules of the source tree, checked on every `cargo test`, in
//! the spirit of kube-proxy's `.import-restrictions`:
//! - a command (`src/cmd/X.rs`) imports no other command;
//! - `src/assess/` imports no command and does no I/O of its own: it
//!   decides over values that `kernel/` and `observe` read;
//! - `src/kernel/` imports neither `assess/`, `triage/` nor `cmd/`:
//!   readers know nothing of decisions, readings for people or commands;
//! - nothing but `cli.rs` and the commands themselves names `cmd/`: what
//!   two commands share lives a floor below them.
//!
//! The checker reads the code as text: comments and `#[cfg(test)]` items
//! are dropped (tests may use what they like), `use` trees are expanded
//! (`use std::{fs, io}` names `std::fs`), and qualified paths are matched
//! as they stand. Because a text checker can go blind, the test also runs
//! it on a small tree with deliberate bad imports and asserts that each
//! one is caught and nothing else is.

use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, as code: comments and `#[cfg(test)]`
/// items dropped, expanded `use` paths appended one a line.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = fs::read_to_string(&p).unwrap_or_default();
                let code = without_tests(&code_only(&text));
                let mut uses = Vec::new();
                for stmt in use_statements(&code) {
                    expand_use("", &stmt, &mut uses);
                }
                out.push((p, format!("{code}\n{}", uses.join("\n"))));
            }
        }
    }
    out.sort();
    out
}

/// The code of a file without its comments, so a doc comment that names
/// another module is not an import.
fn code_only(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where the item starting at the top of `s` ends: after its first `;`
/// or its matching `}`, whichever closes it. String and char literals are
/// skipped so a `'{'` does not count.
fn item_end(s: &str) -> usize {
    let b = s.as_bytes();
    let (mut i, mut depth) = (0, 0i32);
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            // A char literal ('x', '\n'), not a lifetime ('a).
            b'\'' if b.get(i + 2) == Some(&b'\'') => i += 2,
            b'\'' if b.get(i + 1) == Some(&b'\\') => {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
            }
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth <= 0 {
                    return i + 1;
                }
            }
            b';' if depth == 0 => return i + 1,
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// `code` without its `#[cfg(test)]` items (a `mod tests`, a test-only
/// `use` or fn), wherever in the file they sit.
fn without_tests(code: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let (mut out, mut rest) = (String::new(), code);
    while let Some(i) = rest.find(MARK) {
        out.push_str(&rest[..i]);
        let after = &rest[i + MARK.len()..];
        rest = &after[item_end(after)..];
    }
    out.push_str(rest);
    out
}

/// The text of each `use` declaration (`pub use` too), without `use` and
/// `;`, whitespace collapsed.
fn use_statements(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let line_start = rest[..i].rfind('\n').map_or(0, |n| n + 1);
        let lead = rest[line_start..i].trim();
        let at_start = lead.is_empty() || lead == "pub" || lead.starts_with("pub(");
        rest = &rest[i + 4..];
        if at_start {
            let end = rest.find(';').unwrap_or(rest.len());
            out.push(rest[..end].split_whitespace().collect::<Vec<_>>().join(" "));
            rest = &rest[end..];
        }
    }
    out
}

/// Expand a use tree into full paths: `crate::{cmd::{a, b}, x as y}`
/// gives `crate::cmd::a`, `crate::cmd::b`, `crate::x`.
fn expand_use(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let leaf = tree.split(" as ").next().unwrap_or("").trim();
        if !leaf.is_empty() {
            out.push(format!("{prefix}{leaf}").replace(' ', ""));
        }
        return;
    };
    let head = format!("{prefix}{}", &tree[..open]).replace(' ', "");
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut depth, mut from) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand_use(&head, &inner[from..i], out);
                from = i + 1;
            }
            _ => {}
        }
    }
    expand_use(&head, &inner[from..], out);
}

/// The command a path under `src/cmd/` belongs to (`cmd/top.rs` and
/// `cmd/top/agg.rs` are both `top`).
fn command_of(rel: &Path) -> Option<String> {
    let mut parts = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    if parts.next()? != "cmd" {
        return None;
    }
    let first = parts.next()?;
    let name = first.trim_end_matches(".rs").to_string();
    (name != "mod").then_some(name)
}

/// Names of the commands `code` names: `cmd::X` (as in `crate::cmd::X`,
/// or after `use crate::cmd`), and `super::X` with as many `super::` as
/// lead from the file's module up to `cmd` (`depth`: 1 in `cmd/top.rs`
/// and `cmd/status/mod.rs`, 2 in `cmd/status/allns.rs`).
fn commands_named(code: &str, depth: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut scan = |prefix: &str| {
        for (i, _) in code.match_indices(prefix) {
            // A path segment of its own: not the end of `xcmd::`, nor the
            // tail of a longer `super::super::` chain.
            let glued = code[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !code[..i].ends_with("crate::");
            let name: String = code[i + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !glued && !name.is_empty() && name != "self" && name != "super" {
                out.push(name);
            }
        }
    };
    scan("cmd::");
    if depth > 0 {
        scan(&"super::".repeat(depth));
    }
    out.sort();
    out.dedup();
    out
}

/// What assess/ must not name: the filesystem, processes, sockets,
/// threads, the root or the host (they all do I/O), and the commands.
const ASSESS_FORBIDDEN: &[&str] = &[
    "std::fs",
    "std::net",
    "std::os::unix::net",
    "std::process",
    "std::thread",
    "std::io::Read",
    "std::io::Write",
    "File::",
    "nix::",
    "crate::sysroot",
    "crate::host",
    "crate::observe",
    "crate::triage",
];

/// What kernel/ must not name.
const KERNEL_FORBIDDEN: &[&str] = &["crate::assess", "crate::triage"];

/// Every broken rule in the tree at `src`, one line each.
fn violations(src: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    for (path, code) in sources(src) {
        let rel = path.strip_prefix(src).unwrap_or(&path).to_path_buf();
        let shown = rel.display();
        if let Some(me) = command_of(&rel) {
            // How many `super::` lead from this module up to `cmd`.
            let depth = rel.components().count() - 1 - usize::from(rel.ends_with("mod.rs"));
            for other in commands_named(&code, depth) {
                if other != me {
                    bad.push(format!(
                        "src/{shown}: command `{me}` imports command `{other}`"
                    ));
                }
            }
        }
        let in_cmd = rel.starts_with("cmd");
        if !in_cmd
            && rel != Path::new("cli.rs")
            && rel != Path::new("main.rs")
            && code.contains("crate::cmd")
        {
            bad.push(format!(
                "src/{shown}: only cli.rs and the commands may use `crate::cmd`"
            ));
        }
        let top = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        let forbidden = match top.as_deref() {
            Some("assess") => ASSESS_FORBIDDEN,
            Some("kernel") => KERNEL_FORBIDDEN,
            _ => &[],
        };
        for f in forbidden {
            if code.contains(f) {
                bad.push(format!(
                    "src/{shown}: {} must not use `{f}`",
                    top.as_deref().unwrap_or("")
                ));
            }
        }
    }
    bad
}

#[test]
fn the_source_tree_keeps_its_import_rules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for room in [
        "cmd", "kernel", "assess", "report", "config", "netns", "triage",
    ] {
        assert!(src.join(room).is_dir(), "src/{room}/ is missing");
    }
    for cmd in ["apply", "watch", "status", "plan", "top", "doctor"] {
        assert!(
            src.join("cmd").join(format!("{cmd}.rs")).is_file()
                || src.join("cmd").join(cmd).join("mod.rs").is_file(),
            "src/cmd/{cmd} is missing"
        );
    }
    let bad = violations(&src);
    assert!(bad.is_empty(), "import rules broken:\n{}", bad.join("\n"));
}

#[test]
fn the_checker_catches_each_kind_of_bad_import() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let put = |rel: &str, text: &str| {
        let p = src.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    };
    put(
        "cmd/watch.rs",
        "use crate::cmd::top::Triage;\nuse super::status;\n",
    );
    put(
        "cmd/top.rs",
        "use crate::kernel::ctdump;\n// crate::cmd::watch in a comment is fine\n",
    );
    put("cmd/status.rs", "use crate::cmd::{plan, status};\n");
    put(
        "assess/level.rs",
        "use std::fs;\nfn f() { crate::cmd::apply::run(); }\n",
    );
    put("assess/ok.rs", "use crate::kernel::percpu::PerCpu;\n");
    put("kernel/sysctl.rs", "use crate::assess::Level;\n");
    put(
        "kernel/nfnl.rs",
        "#[cfg(test)]\nmod tests { use crate::assess::x; }\n",
    );
    put("netns/sample.rs", "use crate::cmd::status::Verdict;\n");
    put("cli.rs", "use crate::cmd::status;\n");
    // The escapes a plain text search misses: a use tree, a `use
    // crate::cmd` then a short path, and code after a test-only item
    // (whose char literal '{' must not swallow the rest of the file).
    put(
        "assess/grouped.rs",
        "use std::{collections::HashMap, fs};\n",
    );
    put("netns/owner.rs", "use crate::{cmd, sysroot::SysRoot};\n");
    put(
        "cmd/plan.rs",
        "use crate::cmd;\nfn f() { cmd::apply::run(); }\n",
    );
    put(
        "kernel/ctdump.rs",
        "#[cfg(test)]\nfn t() { let c = '{'; }\nuse crate::triage::Aggregator;\n",
    );
    // Not alarms: a command naming itself, a module whose name ends in
    // `cmd`, and `super` from inside a command's own folder.
    put(
        "cmd/apply.rs",
        "use crate::cmd::apply::decide;\nuse crate::xcmd::apply;\n",
    );
    put(
        "cmd/status/allns.rs",
        "use super::Verdict;\nuse crate::cmd::status::run;\nuse super::super::watch;\n",
    );
    put("cmd/status/mod.rs", "pub mod allns;\nuse super::apply;\n");
    let bad = violations(src);
    let expect = [
        "src/cmd/watch.rs: command `watch` imports command `top`",
        "src/cmd/watch.rs: command `watch` imports command `status`",
        "src/cmd/status.rs: command `status` imports command `plan`",
        "src/assess/level.rs: assess must not use `std::fs`",
        "src/assess/level.rs: only cli.rs and the commands may use `crate::cmd`",
        "src/kernel/sysctl.rs: kernel must not use `crate::assess`",
        "src/netns/sample.rs: only cli.rs and the commands may use `crate::cmd`",
        "src/assess/grouped.rs: assess must not use `std::fs`",
        "src/netns/owner.rs: only cli.rs and the commands may use `crate::cmd`",
        "src/cmd/plan.rs: command `plan` imports command `apply`",
        "src/kernel/ctdump.rs: kernel must not use `crate::triage`",
        "src/cmd/status/allns.rs: command `status` imports command `watch`",
        "src/cmd/status/mod.rs: command `status` imports command `apply`",
    ];
    for e in expect {
        assert!(bad.iter().any(|b| b == e), "not caught: {e}\ngot: {bad:#?}");
    }
    assert_eq!(bad.len(), expect.len(), "false alarms: {bad:#?}");
}
