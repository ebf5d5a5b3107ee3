// SPDX-License-Identifier: MIT OR Apache-2.0
//! Who fills the conntrack table: one dump of a namespace's table
//! ([`crate::kernel::ctdump`]) streamed into the aggregation ([`agg`]).
//! `top` prints the whole aggregation; the watchdog's triage runs the same
//! read through [`Triage::start`] / [`Triage::poll`] on its own thread with
//! a deadline, so the sampling loop keeps its sd_notify ping, and logs a
//! one-line [`TriageSummary`].
//!
//! A room of its own rather than part of `kernel/`: the dump is kernel I/O,
//! but what this builds from it (labels, shares, advice naming `plan`) is a
//! reading for people, and two commands share it.

pub mod agg;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use agg::{advise, Aggregator, Dim, DimReport, Group, PortStats, GROUP_CAP};

use crate::config::{KEY_COUNT, KEY_MAX, KEY_UDP_TIMEOUT};
use crate::exit;
use crate::kernel::ctdump::{self, End, NetlinkError};
use crate::kernel::nsenter::{self, NetnsError};
use crate::kernel::sysctl::kernel_u64;
use crate::sysroot::SysRoot;

/// Why the table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Entering the namespace failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The dump could not start.
    #[error(transparent)]
    Dump(#[from] NetlinkError),
    /// Under CONNTRACK_GUARD_ROOT there is no kernel to ask.
    #[error("top reads the kernel over netlink, which a test root (CONNTRACK_GUARD_ROOT) cannot stand in for")]
    NotHost,
    /// The triage thread ended without an answer.
    #[error("the triage thread ended without a result")]
    Lost,
}

impl ReadError {
    /// The documented exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            ReadError::Netns(e) if e.missing_capability().is_some() => exit::NOPERM,
            ReadError::Netns(NetnsError::Setns { .. } | NetnsError::Thread(_)) => exit::FAILURE,
            ReadError::Netns(_) => exit::USAGE,
            ReadError::Dump(NetlinkError::NeedsCapNetAdmin(_)) => exit::NOPERM,
            ReadError::Dump(NetlinkError::NotLoaded(_)) | ReadError::NotHost => exit::UNAVAILABLE,
            ReadError::Dump(_) | ReadError::Lost => exit::FAILURE,
        }
    }
}

/// One read of a namespace's table.
pub struct Collected {
    /// The groups.
    pub agg: Aggregator,
    /// How the dump ended.
    pub outcome: ctdump::Outcome,
    /// nf_conntrack_count before.
    pub count_before: Option<u64>,
    /// nf_conntrack_count after.
    pub count_after: Option<u64>,
    /// nf_conntrack_max.
    pub max: Option<u64>,
    /// nf_conntrack_udp_timeout of that namespace.
    pub udp_timeout: Option<u64>,
    /// Wall time of the dump.
    pub elapsed: Duration,
}

/// Read and group the table of `netns` (or the caller's namespace), within
/// `timeout`. The sysctls are read on the same thread as the dump, so they
/// come from the same namespace. The real kernel only: callers ask
/// `Host::kernel_access` first.
pub fn collect(
    root: &SysRoot,
    netns: Option<&Path>,
    timeout: Duration,
    prefix4: u8,
    prefix6: u8,
) -> Result<Collected, ReadError> {
    let work = || -> Result<Collected, ReadError> {
        let mut agg = Aggregator::new(prefix4, prefix6, GROUP_CAP);
        let count_before = kernel_u64(root, KEY_COUNT);
        let max = kernel_u64(root, KEY_MAX);
        let udp_timeout = kernel_u64(root, KEY_UDP_TIMEOUT);
        let t0 = Instant::now();
        let outcome = ctdump::dump(timeout, &mut |e| agg.add(e))?;
        Ok(Collected {
            elapsed: t0.elapsed(),
            count_after: kernel_u64(root, KEY_COUNT),
            agg,
            outcome,
            count_before,
            max,
            udp_timeout,
        })
    };
    match netns {
        Some(p) => nsenter::run_in(p, work)?,
        None => work(),
    }
}

impl Collected {
    /// Why the read is partial; `None` only for a dump that reached its end
    /// uninterrupted.
    pub fn partial(&self) -> Option<String> {
        match &self.outcome.end {
            End::Done if self.outcome.progress.interrupted => Some(
                "the kernel flagged the dump as interrupted (NLM_F_DUMP_INTR): the table \
                 changed under the walk and entries may be missing or repeated"
                    .to_string(),
            ),
            End::Done => None,
            End::Timeout => Some(format!(
                "the time bound ran out after {:.1} s; only the entries read so far are counted",
                self.elapsed.as_secs_f64()
            )),
            End::Failed(e) => Some(format!("the read failed part way: {e}")),
        }
    }

    /// The triage summary of this read.
    pub fn summary(&self) -> TriageSummary {
        let top = |d: Dim| {
            let Group {
                key, count, share, ..
            } = self.agg.report(d, 1).groups.into_iter().next()?;
            Some(Top { key, count, share })
        };
        let (d, st, src) = (top(Dim::Dport), top(Dim::State), top(Dim::Source));
        let complete = self.partial().is_none();
        let partial = if complete { "" } else { " (partial)" };
        let mut m = format!("{} entries read{partial}", self.agg.total());
        for (what, t) in [("port", &d), ("state", &st), ("source", &src)] {
            if let Some(t) = t {
                let _ = write!(m, "; top {what} {} {:.0}%", t.key, t.share * 100.0);
            }
        }
        if let Some(a) = advise(&self.agg, self.udp_timeout).first() {
            let _ = write!(m, ". Suggests: {a}");
        }
        TriageSummary {
            total: self.agg.total(),
            complete,
            top_dport: d,
            top_state: st,
            top_source: src,
            message: m,
        }
    }
}

/// The largest group of one dimension.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Top {
    /// Its label.
    pub key: String,
    /// Entries.
    pub count: u64,
    /// Share of the entries read, 0 to 1.
    pub share: f64,
}

/// What the watchdog logs when the table fills: who fills it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TriageSummary {
    /// Entries read.
    pub total: u64,
    /// False when the dump was cut short or interrupted.
    pub complete: bool,
    /// Largest protocol/port group.
    pub top_dport: Option<Top>,
    /// Largest state group.
    pub top_state: Option<Top>,
    /// Largest source prefix.
    pub top_source: Option<Top>,
    /// One line for a person.
    pub message: String,
}

/// A triage running on its own thread, so the watchdog loop keeps
/// sampling and pinging sd_notify while the table is read.
pub struct Triage {
    /// `None` once the result was taken.
    rx: Option<mpsc::Receiver<Result<TriageSummary, ReadError>>>,
}

impl Triage {
    /// Start a triage of `netns` (or the watchdog's own namespace) bounded
    /// by `timeout`. The thread ends on its own when the dump does.
    pub fn start(host: &crate::host::Host, netns: Option<PathBuf>, timeout: Duration) -> Triage {
        let (root, kernel) = (host.root.clone(), host.kernel_access);
        let (tx, rx) = mpsc::channel();
        // A thread that cannot start drops `tx`, and poll reports Lost.
        let _ = std::thread::Builder::new()
            .name("ctg-triage".into())
            .spawn(move || {
                let r = if kernel {
                    collect(&root, netns.as_deref(), timeout, 24, 64)
                } else {
                    Err(ReadError::NotHost)
                };
                let _ = tx.send(r.map(|c| c.summary()));
            });
        Triage { rx: Some(rx) }
    }

    /// Non-blocking: `None` while it runs (and after the result was
    /// taken); `Some` exactly once with the result.
    pub fn poll(&mut self) -> Option<Result<TriageSummary, ReadError>> {
        let r = match self.rx.as_ref()?.try_recv() {
            Ok(r) => r,
            Err(mpsc::TryRecvError::Empty) => return None,
            Err(mpsc::TryRecvError::Disconnected) => Err(ReadError::Lost),
        };
        self.rx = None;
        Some(r)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn ctnetlink_unavailable_is_69_whatever_the_errno() {
        use nix::libc::*;
        let code = |errno| {
            ReadError::Dump(NetlinkError::from_io(std::io::Error::from_raw_os_error(
                errno,
            )))
            .exit_code()
        };
        for errno in [EINVAL, EOPNOTSUPP, ENOENT, EPROTONOSUPPORT, EAFNOSUPPORT] {
            assert_eq!(code(errno), exit::UNAVAILABLE, "errno {errno}");
        }
        assert_eq!(code(EPERM), exit::NOPERM);
        assert_eq!(code(EIO), exit::FAILURE);
    }

    /// A read of [`agg::tests::mix`] that ended as `end`.
    pub(crate) fn collected(end: End, interrupted: bool) -> Collected {
        Collected {
            agg: agg::tests::mix(),
            outcome: ctdump::Outcome {
                progress: ctdump::Progress {
                    entries: 1000,
                    malformed: 0,
                    interrupted,
                },
                end,
            },
            count_before: Some(1000),
            count_after: Some(1000),
            max: Some(4000),
            udp_timeout: Some(30),
            elapsed: Duration::from_secs(5),
        }
    }

    #[test]
    fn partial_is_never_complete() {
        let s = collected(End::Timeout, false).summary();
        assert!(
            !s.complete && s.message.contains("(partial)"),
            "{}",
            s.message
        );
        assert_eq!(s.top_dport.as_ref().unwrap().key, "udp/6970");
        assert_eq!(s.top_state.as_ref().unwrap().share, 0.8);
        assert!(collected(End::Done, true).partial().is_some());
        assert!(collected(End::Done, false).partial().is_none());
    }

    #[test]
    fn triage_under_a_test_root_reports_not_host() {
        let mut t = Triage::start(
            &crate::host::Host::at(SysRoot::at("/nonexistent")),
            None,
            Duration::from_secs(1),
        );
        let t0 = Instant::now();
        let r = loop {
            if let Some(r) = t.poll() {
                break r;
            }
            assert!(t0.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(matches!(r, Err(ReadError::NotHost)));
        assert!(t.poll().is_none(), "the result comes once");
    }
}
