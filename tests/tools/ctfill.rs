// SPDX-License-Identifier: MIT OR Apache-2.0
//! Test helper for tests/netns/top.sh and tests/bench/top.sh: creates a
//! known number of conntrack entries, one flow per (source address, source
//! port), so flows never merge the way reused ephemeral ports do.
//!
//!   ctfill udp     --src A[,B..] --dst IP:PORT --count N [--first-port P]
//!   ctfill udp-rr  ...same...   (waits for each reply: a replied entry)
//!   ctfill tcp-syn ...same...   (one SYN per flow, socket closed: SYN_SENT)
//!
//! Bounded: at most 300,000 flows and --max-seconds (default 60). Prints
//! the number of flows created (sent without error, and for udp-rr
//! answered) on stdout. Not part of the tool.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};

const MAX_FLOWS: u64 = 300_000;

struct Args {
    mode: String,
    src: Vec<Ipv4Addr>,
    dst: SocketAddrV4,
    count: u64,
    first_port: u16,
    max_seconds: u64,
}

fn parse() -> Result<Args, String> {
    let mut a = std::env::args().skip(1);
    let mode = a.next().ok_or("mode: udp, udp-rr or tcp-syn")?;
    let (mut src, mut dst, mut count, mut first_port, mut max_seconds) =
        (Vec::new(), None, None, 1024u16, 60u64);
    while let Some(k) = a.next() {
        let v = a.next().ok_or(format!("{k} needs a value"))?;
        match k.as_str() {
            "--src" => {
                for s in v.split(',') {
                    src.push(s.parse().map_err(|e| format!("--src {s}: {e}"))?);
                }
            }
            "--dst" => dst = Some(v.parse().map_err(|e| format!("--dst: {e}"))?),
            "--count" => count = Some(v.parse().map_err(|e| format!("--count: {e}"))?),
            "--first-port" => first_port = v.parse().map_err(|e| format!("--first-port: {e}"))?,
            "--max-seconds" => {
                max_seconds = v.parse().map_err(|e| format!("--max-seconds: {e}"))?
            }
            _ => return Err(format!("unknown option {k}")),
        }
    }
    let count: u64 = count.ok_or("--count N")?;
    if src.is_empty() || count > MAX_FLOWS || first_port == 0 {
        return Err(format!(
            "need --src, --count <= {MAX_FLOWS}, --first-port > 0"
        ));
    }
    let per = u64::from(u16::MAX - first_port) + 1;
    if count > per * src.len() as u64 {
        return Err(format!(
            "{count} flows need more than {} source addresses",
            src.len()
        ));
    }
    Ok(Args {
        mode,
        src,
        dst: dst.ok_or("--dst IP:PORT")?,
        count,
        first_port,
        max_seconds,
    })
}

fn udp(src: SocketAddrV4, dst: SocketAddrV4, wait_reply: bool) -> bool {
    let Ok(s) = UdpSocket::bind(src) else {
        return false;
    };
    if !wait_reply {
        return s.send_to(b"x", dst).is_ok();
    }
    let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        if s.send_to(b"x", dst).is_err() {
            return false;
        }
        if s.recv_from(&mut buf).is_ok() {
            return true;
        }
    }
    false
}

fn tcp_syn(src: SocketAddrV4, dst: SocketAddrV4) -> bool {
    let Ok(fd) = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return false;
    };
    use std::os::fd::AsRawFd;
    if bind(fd.as_raw_fd(), &SockaddrIn::from(src)).is_err() {
        return false;
    }
    // The SYN leaves inside connect(); closing a SYN_SENT socket sends
    // nothing more, so the entry stays in SYN_SENT.
    matches!(
        connect(fd.as_raw_fd(), &SockaddrIn::from(dst)),
        Err(nix::errno::Errno::EINPROGRESS) | Ok(())
    )
}

fn main() -> ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ctfill: {e}");
            return ExitCode::from(2);
        }
    };
    let deadline = Instant::now() + Duration::from_secs(a.max_seconds);
    let per = u64::from(u16::MAX - a.first_port) + 1;
    let mut ok = 0u64;
    for i in 0..a.count {
        if Instant::now() > deadline {
            eprintln!("ctfill: time bound reached after {i} flows");
            break;
        }
        let ip = a.src[(i / per) as usize];
        let port = a.first_port + (i % per) as u16;
        let src = SocketAddrV4::new(ip, port);
        let done = match a.mode.as_str() {
            "udp" => udp(src, a.dst, false),
            "udp-rr" => udp(src, a.dst, true),
            "tcp-syn" => tcp_syn(src, a.dst),
            m => {
                eprintln!("ctfill: unknown mode {m}");
                return ExitCode::from(2);
            }
        };
        ok += u64::from(done);
    }
    println!("{ok}");
    ExitCode::SUCCESS
}
