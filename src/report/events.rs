// SPDX-License-Identifier: MIT OR Apache-2.0
//! Structured events and where they go: the journal when we are connected to
//! it, otherwise one `key=value` line each on stderr.
//!
//! Events are sent with journald's native protocol rather than through the
//! `log` facade, because the facade has no "crit" level and the critical
//! level event must carry PRIORITY=2. systemd-journal-logger remains the
//! backend for ordinary log lines and tells us whether stderr is the journal.

use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// syslog priorities, as journald uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// 2
    Crit = 2,
    /// 3
    Err = 3,
    /// 4
    Warning = 4,
    /// 5
    Notice = 5,
    /// 6
    Info = 6,
}

impl Priority {
    /// The syslog name.
    pub fn name(self) -> &'static str {
        match self {
            Priority::Crit => "crit",
            Priority::Err => "err",
            Priority::Warning => "warning",
            Priority::Notice => "notice",
            Priority::Info => "info",
        }
    }
}

/// One structured event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// syslog priority.
    pub priority: Priority,
    /// Short name, e.g. `level_warning` (the `CONNTRACK_EVENT` field).
    pub name: &'static str,
    /// Stable MESSAGE_ID from [`crate::report::ids`].
    pub id: &'static str,
    /// Human text.
    pub message: String,
    /// Extra fields, upper-case journal names.
    pub fields: Vec<(&'static str, String)>,
}

impl Event {
    /// A new event without fields.
    pub fn new(priority: Priority, name: &'static str, id: &'static str, message: String) -> Self {
        Event {
            priority,
            name,
            id,
            message,
            fields: Vec::new(),
        }
    }

    /// Add a field.
    pub fn field(mut self, key: &'static str, value: impl ToString) -> Self {
        self.fields.push((key, value.to_string()));
        self
    }

    /// The value of a field, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The stderr form: `<priority>: EVENT=<name> KEY=value ... MESSAGE="..."`.
    pub fn to_line(&self) -> String {
        let mut s = format!(
            "{}: EVENT={} MESSAGE_ID={}",
            self.priority.name(),
            self.name,
            self.id
        );
        for (k, v) in &self.fields {
            s.push(' ');
            s.push_str(k);
            s.push('=');
            s.push_str(&quote_if_needed(v));
        }
        s.push_str(" MESSAGE=");
        s.push_str(&format!("{:?}", self.message));
        s
    }

    /// The journald native-protocol datagram.
    pub fn to_journal(&self, identifier: &str) -> Vec<u8> {
        let mut b = Vec::with_capacity(512);
        let mut put = |k: &str, v: &str| {
            if v.contains('\n') {
                // Binary-safe form: name, newline, little-endian u64 length, data.
                b.extend_from_slice(k.as_bytes());
                b.push(b'\n');
                b.extend_from_slice(&(v.len() as u64).to_le_bytes());
                b.extend_from_slice(v.as_bytes());
                b.push(b'\n');
            } else {
                b.extend_from_slice(k.as_bytes());
                b.push(b'=');
                b.extend_from_slice(v.as_bytes());
                b.push(b'\n');
            }
        };
        put("PRIORITY", &(self.priority as u8).to_string());
        put("MESSAGE", &self.message);
        put("MESSAGE_ID", self.id);
        put("SYSLOG_IDENTIFIER", identifier);
        put("SYSLOG_PID", &std::process::id().to_string());
        put("CONNTRACK_EVENT", self.name);
        for (k, v) in &self.fields {
            put(k, v);
        }
        b
    }
}

fn quote_if_needed(v: &str) -> String {
    if v.is_empty() || v.contains([' ', '"', '=', '\n', '\t']) {
        format!("{v:?}")
    } else {
        v.to_string()
    }
}

/// Where events go.
pub trait Sink {
    /// Emit one event. Must not fail: a sink that cannot deliver falls back.
    fn emit(&mut self, ev: &Event);
}

/// Events to stderr, one line each.
pub struct StderrSink;

impl Sink for StderrSink {
    fn emit(&mut self, ev: &Event) {
        let _ = writeln!(io::stderr().lock(), "{}", ev.to_line());
    }
}

/// The journald socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Events to journald; on any send error, the event goes to stderr instead
/// (which systemd also captures), so none is lost.
pub struct JournalSink {
    sock: UnixDatagram,
    socket: PathBuf,
    identifier: String,
    warned: bool,
    fallback: Box<dyn Sink>,
}

impl JournalSink {
    /// Open an unbound datagram socket for the journal.
    pub fn new() -> io::Result<Self> {
        Self::at(Path::new(JOURNAL_SOCKET), Box::new(StderrSink))
    }

    /// Send to the socket at `socket`, falling back to `fallback` (tests use
    /// a socket of their own, never the real journal).
    pub fn at(socket: &Path, fallback: Box<dyn Sink>) -> io::Result<Self> {
        Ok(JournalSink {
            sock: UnixDatagram::unbound()?,
            socket: socket.to_path_buf(),
            identifier: "conntrack-guard".into(),
            warned: false,
            fallback,
        })
    }
}

impl Sink for JournalSink {
    fn emit(&mut self, ev: &Event) {
        if let Err(e) = self
            .sock
            .send_to(&ev.to_journal(&self.identifier), &self.socket)
        {
            if !self.warned {
                self.warned = true;
                let _ = writeln!(
                    io::stderr(),
                    "conntrack-guard: cannot send to {} ({e}); events go to stderr",
                    self.socket.display()
                );
            }
            self.fallback.emit(ev);
        }
    }
}

/// The journal sink when stderr is connected to the journal, else stderr.
pub fn default_sink() -> Box<dyn Sink> {
    if systemd_journal_logger::connected_to_journal() {
        if let Ok(j) = JournalSink::new() {
            return Box::new(j);
        }
    }
    Box::new(StderrSink)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn line_format() {
        let ev = Event::new(Priority::Warning, "level_warning", "abc", "fill 85%".into())
            .field("CONNTRACK_COUNT", 850)
            .field("CONNTRACK_LEVEL", "warning");
        assert_eq!(
            ev.to_line(),
            "warning: EVENT=level_warning MESSAGE_ID=abc CONNTRACK_COUNT=850 CONNTRACK_LEVEL=warning MESSAGE=\"fill 85%\""
        );
    }

    #[test]
    fn journal_datagram_escapes_newlines() {
        let ev = Event::new(Priority::Crit, "x", "id", "a\nb".into());
        let d = ev.to_journal("t");
        assert!(d.starts_with(b"PRIORITY=2\nMESSAGE\n\x03\0\0\0\0\0\0\0a\nb\n"));
    }

    /// Collects what reaches it.
    struct Collect(std::rc::Rc<std::cell::RefCell<Vec<Event>>>);

    impl Sink for Collect {
        fn emit(&mut self, ev: &Event) {
            self.0.borrow_mut().push(ev.clone());
        }
    }

    #[test]
    fn journal_send_failure_falls_back() {
        // A socket path nobody listens on: every event reaches the fallback.
        let dir = tempfile::tempdir().unwrap();
        let got = std::rc::Rc::default();
        let mut s =
            JournalSink::at(&dir.path().join("none"), Box::new(Collect(Rc::clone(&got)))).unwrap();
        let a = Event::new(Priority::Info, "x", "id", "m".into());
        let b = Event::new(Priority::Crit, "y", "id", "n".into());
        s.emit(&a);
        s.emit(&b);
        assert!(s.warned);
        assert_eq!(*got.borrow(), vec![a, b]);
    }

    #[test]
    fn journal_gets_the_native_datagram() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let got = std::rc::Rc::default();
        let mut s = JournalSink::at(&path, Box::new(Collect(Rc::clone(&got)))).unwrap();
        s.identifier = "t".into();
        let ev = Event::new(Priority::Warning, "x", "id", "m".into()).field("CONNTRACK_COUNT", 5);
        s.emit(&ev);
        let mut buf = [0u8; 4096];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], ev.to_journal("t").as_slice());
        assert!(got.borrow().is_empty(), "nothing fell back");
    }
}
