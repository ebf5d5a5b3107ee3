// SPDX-License-Identifier: MIT OR Apache-2.0
//! Loading the file: open it once, check the descriptor, read from it.
//!
//! The ownership check and the read use the same open file, so the file
//! cannot be swapped between them (a stat by name followed by a read by name
//! could check one file and read another). Symlinks are followed as before.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::Path;

use super::error::ConfigError;
use super::model::{Config, MAX_CONFIG_BYTES};
use super::parse::{line_of, parse};
use crate::sysroot::{PathError, SysRoot, DEFAULT_CONFIG};

/// Load the configuration: `explicit` (from `--config`), else the rooted
/// default path. A missing default file means built-in defaults; a missing
/// explicit file is an error.
pub fn load(root: &SysRoot, explicit: Option<&Path>) -> Result<Config, ConfigError> {
    let (path, required) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => (root.path(DEFAULT_CONFIG), false),
    };
    let err = |message: String, source: Option<PathError>| ConfigError {
        file: path.clone(),
        line: None,
        key: None,
        message,
        source,
    };
    let io_err = |e: io::Error| {
        let message = format!("cannot read config: {e}");
        err(message, Some(PathError::on(&path)(e)))
    };
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !required => return Ok(Config::default()),
        Err(e) => return Err(io_err(e)),
    };
    let meta = file.metadata().map_err(io_err)?;
    if meta.is_dir() {
        return Err(err("is a directory, not a config file".into(), None));
    }
    check_ownership(&meta, root.privileged()).map_err(|m| err(m, None))?;
    let too_big = |size: String| {
        let msg = format!(
            "file is {size} bytes; a config larger than {MAX_CONFIG_BYTES} bytes is refused"
        );
        err(msg, None)
    };
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(too_big(meta.len().to_string()));
    }
    // The size can change after the fstat; the limit holds on the read too.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    let mut limited = Read::by_ref(&mut file).take(MAX_CONFIG_BYTES + 1);
    limited.read_to_end(&mut bytes).map_err(io_err)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_big(format!("more than {MAX_CONFIG_BYTES}")));
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = line_of(e.as_bytes(), e.utf8_error().valid_up_to());
            return Err(ConfigError {
                line: Some(line),
                ..err("invalid UTF-8".into(), None)
            });
        }
    };
    let mut cfg = parse(&text, &path)?;
    cfg.source = Some(path);
    Ok(cfg)
}

/// Refuse a config that someone other than root could have written, when we
/// run privileged (root, or the boot unit's dynamic user holding
/// CAP_NET_ADMIN): it decides what gets written into the kernel (sshd
/// refuses its keys on the same grounds).
pub fn check_ownership(meta: &Metadata, privileged: bool) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if !privileged {
        return Ok(());
    }
    if meta.uid() != 0 {
        return Err(format!(
            "owned by uid {}, not root; refusing a config others could change (chown root)",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "mode {:04o} is group- or world-writable; refusing it (chmod go-w)",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn non_utf8_path_is_kept_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9.toml");
        let path = dir.path().join(name);
        std::fs::write(&path, "[conntrack]\nmax = 5000\n").unwrap();
        let cfg = load(&SysRoot::at(dir.path()), Some(&path)).unwrap();
        assert_eq!(cfg.source.as_deref(), Some(path.as_path()));
    }

    #[test]
    fn missing_default_is_builtin_and_missing_explicit_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::at(dir.path());
        assert_eq!(load(&root, None).unwrap(), Config::default());
        let e = load(&root, Some(&dir.path().join("nope.toml"))).unwrap_err();
        assert!(e.message.contains("cannot read config"), "{e}");
        assert!(e.source.is_some(), "the io::Error is kept as the source");
    }
}
