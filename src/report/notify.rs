// SPDX-License-Identifier: MIT OR Apache-2.0
//! sd_notify: READY, STATUS, WATCHDOG, RELOADING and STOPPING to systemd.
//!
//! The messages are formatted by the `sd-notify` crate; sending is done here
//! with one socket kept for the life of the watchdog, because the crate
//! opens a socket per call (a cost at 1 ms intervals) and does not handle
//! abstract-namespace addresses (`@name`). Outside systemd (`NOTIFY_SOCKET`
//! unset) everything is a no-op. If the socket is set but sending fails, the
//! first failure is returned as an event and later ones are quiet until a
//! send works again: the watchdog keeps running either way.

use std::ffi::OsString;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub use sd_notify::NotifyState;

use crate::report::events::{Event, Priority};

#[derive(Debug)]
pub struct Notifier {
    target: Option<(OsString, io::Result<SocketAddr>)>,
    sock: Option<UnixDatagram>,
    watchdog: Option<Duration>,
    failing: bool,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`.
    pub fn from_env() -> Self {
        let target = std::env::var_os("NOTIFY_SOCKET")
            .filter(|s| !s.is_empty())
            .map(|s| (s.clone(), address(&s)));
        Notifier {
            target,
            sock: None,
            watchdog: sd_notify::watchdog_enabled().filter(|d| !d.is_zero()),
            failing: false,
        }
    }

    /// How often to ping: half of `WATCHDOG_USEC`, when it is set.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog.map(|d| (d / 2).max(Duration::from_millis(1)))
    }

    /// Send one datagram with these states. `Ok` when sent, or when there
    /// is no service manager. On failure, the error carries an event the
    /// first time (and again after a success); a full socket queue is not
    /// reported: the socket is non-blocking so that a stalled manager can
    /// never stall the loop, and the next sample sends again.
    pub fn send(&mut self, states: &[NotifyState<'_>]) -> Result<(), Option<Event>> {
        let Some((name, addr)) = self.target.as_ref() else {
            return Ok(());
        };
        let msg: String = states.iter().map(|s| format!("{s}\n")).collect();
        let result = match addr {
            Ok(addr) => {
                if self.sock.is_none() {
                    self.sock = UnixDatagram::unbound()
                        .and_then(|s| s.set_nonblocking(true).map(|()| s))
                        .ok();
                }
                match &self.sock {
                    Some(sock) => sock.send_to_addr(msg.as_bytes(), addr).map(|_| ()),
                    None => Err(io::Error::other("cannot create a unix datagram socket")),
                }
            }
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        let Err(e) = result else {
            self.failing = false;
            return Ok(());
        };
        if e.kind() == io::ErrorKind::WouldBlock || std::mem::replace(&mut self.failing, true) {
            return Err(None);
        }
        let msg = format!(
            "cannot notify the service manager at NOTIFY_SOCKET={} ({e}); \
             still running, but systemd will not see READY, STATUS or watchdog pings",
            name.to_string_lossy()
        );
        Err(Some(Event::fault(Priority::Warning, msg)))
    }
}

/// `NOTIFY_SOCKET` is a path, or `@name` for the abstract namespace.
fn address(s: &OsString) -> io::Result<SocketAddr> {
    let b = s.as_bytes();
    match b.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&b[1..]),
        Some(b'/') => SocketAddr::from_pathname(std::path::Path::new(s)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an absolute path or @abstract name",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abstract_and_path_addresses() {
        assert!(address(&"@foo".into())
            .unwrap()
            .as_abstract_name()
            .is_some());
        assert!(address(&"/run/x".into()).unwrap().as_pathname().is_some());
        assert!(address(&"relative".into()).is_err());
    }

    #[test]
    fn sends_to_a_bound_socket_and_reports_failure_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut n = Notifier {
            target: Some((path.clone().into(), address(&path.clone().into()))),
            sock: None,
            watchdog: None,
            failing: false,
        };
        assert!(n
            .send(&[NotifyState::Ready, NotifyState::Status("x · y")])
            .is_ok());
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], "READY=1\nSTATUS=x · y\n".as_bytes());
        drop(rx);
        std::fs::remove_file(&path).unwrap();
        let ev = n
            .send(&[NotifyState::Watchdog])
            .unwrap_err()
            .expect("first failure");
        assert_eq!(ev.name, "fault");
        assert!(ev.message.contains("NOTIFY_SOCKET"));
        assert!(
            matches!(n.send(&[NotifyState::Watchdog]), Err(None)),
            "said once"
        );
    }
}
