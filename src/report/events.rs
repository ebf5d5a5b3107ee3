// SPDX-License-Identifier: MIT OR Apache-2.0
//! Structured events and where they go: the journal when we are connected to
//! it, otherwise one `key=value` line each on stderr.
//!
//! Events are sent with journald's native protocol rather than through the
//! `log` facade, because the facade has no "crit" level and the critical
//! level event must carry PRIORITY=2. systemd-journal-logger remains the
//! backend for ordinary log lines and tells us whether stderr is the journal.
//!
//! The journal socket is non-blocking: a stalled journald (stopped, or
//! slow under a log storm) must never stall the watchdog's loop, or systemd
//! would kill it for a missed keep-alive and the incident state would be
//! lost. Datagrams the socket does not take wait in a small queue; beyond
//! it, events are counted, and once the journal takes datagrams again one
//! event says how many could not be written.

use std::collections::VecDeque;
use std::fmt::Write as _;
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

    /// A `fault` event: something of conntrack-guard's own failed.
    pub fn fault(priority: Priority, message: String) -> Self {
        Event::new(priority, "fault", crate::report::ids::FAULT, message)
    }

    /// Add a field.
    pub fn field(mut self, key: &'static str, value: impl ToString) -> Self {
        self.fields.push((key, value.to_string()));
        self
    }

    /// Add a field when there is a value.
    pub fn field_opt(mut self, key: &'static str, value: Option<impl ToString>) -> Self {
        self.fields.extend(value.map(|v| (key, v.to_string())));
        self
    }

    /// The value of a field, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        let (_, v) = self.fields.iter().find(|(k, _)| *k == key)?;
        Some(v)
    }

    /// The stderr form: `<priority>: EVENT=<name> KEY=value ... MESSAGE="..."`.
    pub fn to_line(&self) -> String {
        let priority = ["crit", "err", "warning", "notice", "info"][self.priority as usize - 2];
        let (name, id) = (self.name, self.id);
        let mut s = format!("{priority}: EVENT={name} MESSAGE_ID={id}");
        for (k, v) in &self.fields {
            let _ = if v.is_empty() || v.contains([' ', '"', '=', '\n', '\t']) {
                write!(s, " {k}={v:?}")
            } else {
                write!(s, " {k}={v}")
            };
        }
        let _ = write!(s, " MESSAGE={:?}", self.message);
        s
    }

    /// The journald native-protocol datagram.
    pub fn to_journal(&self, identifier: &str) -> Vec<u8> {
        let mut b = Vec::with_capacity(512);
        let mut put = |k: &str, v: &str| {
            b.extend_from_slice(k.as_bytes());
            if v.contains('\n') {
                // Binary-safe form: name, newline, little-endian u64 length, data.
                b.push(b'\n');
                b.extend_from_slice(&(v.len() as u64).to_le_bytes());
            } else {
                b.push(b'=');
            }
            b.extend_from_slice(v.as_bytes());
            b.push(b'\n');
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

/// Where events go.
pub trait Sink {
    /// Emit one event. Must not fail: a sink that cannot deliver falls back.
    /// Must not block: the watchdog's loop calls it.
    fn emit(&mut self, ev: &Event);

    /// Try again to deliver what is held back (called on every turn of the
    /// loop). Sinks that hold nothing back do nothing.
    fn retry(&mut self) {}

    /// At exit: deliver what is held back, waiting at most `bound`.
    fn drain(&mut self, _bound: std::time::Duration) {}
}

/// Events to stderr, one line each.
pub struct StderrSink;

impl Sink for StderrSink {
    fn emit(&mut self, ev: &Event) {
        crate::report::output::err(&ev.to_line());
    }
}

/// The journald socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Datagrams held while the journal does not take them. Small: an event is
/// about 0.5 KiB, and the kernel's own socket queue holds more before this
/// one is used.
pub const JOURNAL_QUEUE: usize = 64;

/// Events to journald. A full socket (`EAGAIN`: journald is not reading)
/// queues the datagram, up to [`JOURNAL_QUEUE`], then counts it as lost;
/// any other send error sends the event to the fallback (stderr, which
/// systemd also captures).
pub struct JournalSink {
    sock: UnixDatagram,
    socket: PathBuf,
    identifier: String,
    warned: bool,
    fallback: Box<dyn Sink>,
    queue: VecDeque<Vec<u8>>,
    /// Events neither sent nor queued since the journal stalled.
    lost: u64,
}

impl JournalSink {
    /// Send to the socket at `socket`, falling back to `fallback` (tests use
    /// a socket of their own, never the real journal).
    pub fn at(socket: &Path, fallback: Box<dyn Sink>) -> io::Result<Self> {
        let sock = UnixDatagram::unbound()?;
        sock.set_nonblocking(true)?;
        Ok(JournalSink {
            sock,
            socket: socket.to_path_buf(),
            identifier: "conntrack-guard".into(),
            warned: false,
            fallback,
            queue: VecDeque::new(),
            lost: 0,
        })
    }

    /// One non-blocking send.
    fn send(&self, datagram: &[u8]) -> io::Result<()> {
        self.sock.send_to(datagram, &self.socket).map(|_| ())
    }

    /// Send the queue in order, then the count of lost events. True when
    /// nothing is held back any more.
    fn send_held(&mut self) -> bool {
        while let Some(d) = self.queue.front() {
            match self.send(d) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                // The socket went away while events waited: they are
                // counted, and the count goes to the fallback below.
                sent => self.lost += u64::from(sent.is_err()),
            }
            self.queue.pop_front();
        }
        if self.lost > 0 {
            let msg = format!(
                "{} events could not be written: the journal did not accept them \
                 (journald stalled or overloaded) and the queue of {JOURNAL_QUEUE} was full; \
                 the watchdog kept running",
                self.lost
            );
            let ev = Event::fault(Priority::Warning, msg).field("CONNTRACK_EVENTS_LOST", self.lost);
            match self.send(&ev.to_journal(&self.identifier)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => self.fallback.emit(&ev),
                Ok(()) => {}
            }
            self.lost = 0;
        }
        true
    }
}

impl Sink for JournalSink {
    fn emit(&mut self, ev: &Event) {
        let datagram = ev.to_journal(&self.identifier);
        // Keep the order: nothing overtakes what is already waiting.
        if self.send_held() {
            match self.send(&datagram) {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    if !std::mem::replace(&mut self.warned, true) {
                        let _ = writeln!(
                            io::stderr(),
                            "conntrack-guard: cannot send to {} ({e}); events go to stderr",
                            self.socket.display()
                        );
                    }
                    self.fallback.emit(ev);
                    return;
                }
            }
        }
        if self.queue.len() < JOURNAL_QUEUE {
            self.queue.push_back(datagram);
        } else {
            self.lost += 1;
        }
    }

    fn retry(&mut self) {
        self.send_held();
    }

    fn drain(&mut self, bound: std::time::Duration) {
        let end = std::time::Instant::now() + bound;
        while !self.send_held() && std::time::Instant::now() < end {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// The journal sink when stderr is connected to the journal, else stderr.
pub fn default_sink() -> Box<dyn Sink> {
    if systemd_journal_logger::connected_to_journal() {
        if let Ok(j) = JournalSink::at(Path::new(JOURNAL_SOCKET), Box::new(StderrSink)) {
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

    /// A journal that does not read: the socket's own queue fills (its
    /// length is net.unix.max_dgram_qlen), then ours, then events are
    /// counted; emit never blocks. Once it reads again, every queued event
    /// arrives in order, followed by one "N events could not be written".
    #[test]
    fn a_stalled_journal_never_blocks_and_the_loss_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let got = std::rc::Rc::default();
        let mut s = JournalSink::at(&path, Box::new(Collect(Rc::clone(&got)))).unwrap();
        let n = 2000u64;
        let t0 = std::time::Instant::now();
        for i in 0..n {
            s.emit(&Event::new(Priority::Info, "x", "id", format!("event {i}")));
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(2),
            "emit blocked"
        );
        assert_eq!(s.queue.len(), JOURNAL_QUEUE);
        let lost = s.lost;
        assert!(lost > 0, "the socket took all {n}");
        server.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut seen = Vec::new();
        let read_all = |seen: &mut Vec<String>, buf: &mut [u8]| {
            while let Ok(len) = server.recv(buf) {
                seen.push(String::from_utf8_lossy(&buf[..len]).into_owned());
            }
        };
        read_all(&mut seen, &mut buf);
        // Drained step by step, as the loop does with retry().
        for _ in 0..100 {
            s.retry();
            read_all(&mut seen, &mut buf);
            if s.queue.is_empty() && s.lost == 0 {
                break;
            }
        }
        assert_eq!(s.queue.len(), 0);
        assert_eq!(s.lost, 0);
        let delivered = seen.len() as u64 - 1;
        assert_eq!(delivered + lost, n, "every event is delivered or counted");
        let last = seen.last().unwrap();
        assert!(
            last.contains(&format!("MESSAGE={lost} events could not be written")),
            "{last}"
        );
        assert!(last.contains(&format!("CONNTRACK_EVENTS_LOST={lost}")));
        // In order, no gaps among the delivered ones but the counted.
        let first_numbers: Vec<u64> = seen[..seen.len() - 1]
            .iter()
            .map(|d| {
                let m = d.lines().find(|l| l.starts_with("MESSAGE=event ")).unwrap();
                m["MESSAGE=event ".len()..].parse().unwrap()
            })
            .collect();
        assert!(first_numbers.windows(2).all(|w| w[0] < w[1]));
        assert!(
            got.borrow().is_empty(),
            "a stall is not a reason for stderr"
        );
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
