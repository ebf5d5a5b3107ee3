// SPDX-License-Identifier: MIT OR Apache-2.0
//! The rest of the machine as it bears on the settings: who else writes a
//! key (sysctl.d, kube-proxy, k3s, the module parameter) and the firewall
//! ruleset `doctor` reads.

pub(crate) mod ruleset;
pub(crate) mod writers;

/// The logical lines of a systemd unit or a modprobe.d file, each with the
/// number of its first line (1-based): a line ending in `\` goes on in the
/// next, the backslash read as a space, as systemd and kmod read them. A
/// continuation at the end of the file is a line too (systemd 252 reads it).
pub(crate) fn logical_lines(text: &str) -> impl Iterator<Item = (usize, String)> + '_ {
    let mut lines = text.lines().enumerate();
    std::iter::from_fn(move || {
        let (first, mut raw) = lines.next()?;
        let mut line = String::new();
        while let Some(cont) = raw.strip_suffix('\\') {
            line.extend([cont, " "]);
            match lines.next() {
                Some((_, next)) => raw = next,
                None => return Some((first + 1, line)),
            }
        }
        line.push_str(raw);
        Some((first + 1, line))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn logical_lines_join_continuations_to_the_end() {
        let t = "a \\\n  b\n\nc\\\nd \\";
        let l: Vec<_> = super::logical_lines(t).collect();
        let want = [(1, "a    b"), (3, ""), (4, "c d  ")];
        assert_eq!(l, want.map(|(n, s)| (n, s.to_string())));
    }
}
