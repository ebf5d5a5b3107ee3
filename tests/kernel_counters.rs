// SPDX-License-Identifier: MIT OR Apache-2.0
//! The kernel-reading layer against the real kernel (root, nf_conntrack):
//! ctnetlink's per-CPU table equals procfs's, and the snmp reader sees
//! exactly the receive-buffer drops the kernel counted in a private
//! network namespace.

use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::time::Duration;

use conntrack_guard::kernel::ctstats::{read_ct_counters, read_ct_stat, CtCounter, KernelNetlink};
use conntrack_guard::kernel::netlink::{netlink_available, stats_cpu_table};
use conntrack_guard::kernel::percpu::CounterSet;
use conntrack_guard::kernel::snmp::read_udp_in;
use conntrack_guard::kernel::softnet::{read_softnet, SoftnetCounter};
use conntrack_guard::kernel::stats::CounterSource;
use conntrack_guard::sysroot::SysRoot;

mod common;

#[test]
#[ignore = "needs root and nf_conntrack"]
fn netlink_table_equals_procfs_table() {
    let _lock = common::global_lock();
    let host = SysRoot::host();
    netlink_available().expect("ctnetlink answers as root");
    let r = read_ct_counters(&host, &KernelNetlink).unwrap();
    assert_eq!(r.source, CounterSource::Netlink, "netlink comes first");
    // procfs, netlink, procfs: when both procfs reads agree nothing moved,
    // and netlink must agree with them on every CPU and every counter.
    for _ in 0..50 {
        let before = read_ct_stat(&host).unwrap();
        let nl = stats_cpu_table().unwrap();
        let after = read_ct_stat(&host).unwrap();
        if before != after {
            continue;
        }
        assert_eq!(
            nl.rows().iter().map(|r| r.cpu).collect::<Vec<_>>(),
            before.rows().iter().map(|r| r.cpu).collect::<Vec<_>>(),
            "both list the possible CPUs"
        );
        let mut compared = Vec::new();
        for &k in CtCounter::ALL {
            if !(nl.has(k) && before.has(k)) {
                continue;
            }
            for row in before.rows() {
                assert_eq!(
                    nl.get(row.cpu, k),
                    row.get(k),
                    "{} on CPU {}",
                    k.name(),
                    row.cpu
                );
            }
            compared.push(k.name());
        }
        // 6.18 has every one of them in both sources, chaintoolong too.
        for k in CtCounter::LOSS.iter().chain(&[CtCounter::ChainTooLong]) {
            assert!(compared.contains(&k.name()), "{compared:?}");
        }
        eprintln!("compared: {compared:?}");
        return;
    }
    panic!("counters kept moving; could not compare");
}

#[test]
#[ignore = "needs root and nf_conntrack"]
fn softnet_reads_every_online_cpu() {
    use conntrack_guard::kernel::percpu::CpuIds;
    let t = read_softnet(&SysRoot::host()).unwrap();
    // "0-1,4" style list of online CPUs.
    let online: Vec<u32> = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .unwrap()
        .trim()
        .split(',')
        .flat_map(|r| {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            a.parse().unwrap()..=b.parse().unwrap()
        })
        .collect();
    assert_eq!(t.ids(), CpuIds::Kernel, "6.18 prints the CPU id");
    assert_eq!(t.rows().iter().map(|r| r.cpu).collect::<Vec<_>>(), online);
    assert!(t.has(SoftnetCounter::Dropped) && t.has(SoftnetCounter::TimeSqueeze));
}

/// The `drops` column of this socket's line in a /proc/net/udp file: the
/// kernel's own per-socket count (sk_drops), independent of the MIB.
fn socket_drops(udp_table: &str, port: u16) -> u64 {
    let want = format!(":{port:04X}");
    let line = udp_table
        .lines()
        .skip(1)
        .find(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|local| local.ends_with(&want))
        })
        .expect("socket listed");
    line.split_whitespace().last().unwrap().parse().unwrap()
}

#[test]
#[ignore = "needs root and nf_conntrack"]
fn snmp_rcvbuf_errors_in_a_private_netns() {
    const N: u64 = 3000;
    // The namespace belongs to one thread and dies with it (and with its
    // sockets); nothing global changes.
    let t = std::thread::spawn(|| {
        #[allow(unsafe_code)]
        // SAFETY: unshare only changes this thread's namespace.
        let rc = unsafe { nix::libc::unshare(nix::libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        // A child forked from this thread inherits its namespace.
        let ok = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(ok.success());
        let host = SysRoot::host();
        // /proc/self is the thread-group leader: use thread-self.
        let net = "proc/thread-self/net";
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        nix::sys::socket::setsockopt(&rx.as_fd(), nix::sys::socket::sockopt::RcvBuf, &1).unwrap();
        let port = rx.local_addr().unwrap().port();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = read_udp_in(&host, net).unwrap();
        for _ in 0..N {
            tx.send_to(&[0u8; 64], ("127.0.0.1", port)).unwrap();
        }
        let after_send = read_udp_in(&host, net).unwrap();
        let drops = socket_drops(&host.read(&format!("{net}/udp")).unwrap(), port);
        rx.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut received = 0u64;
        let mut buf = [0u8; 128];
        while rx.recv(&mut buf).is_ok() {
            received += 1;
        }
        let after_read = read_udp_in(&host, net).unwrap();
        (before, after_send, after_read, drops, received)
    });
    let (before, after_send, after_read, drops, received) = t.join().unwrap();
    let d = after_send.delta_since(&before);
    let rcvbuf = d.udp.rcvbuf_errors.unwrap();
    eprintln!("sent {N}, received {received}, sk_drops {drops}, RcvbufErrors +{rcvbuf}");
    assert_eq!(rcvbuf, drops, "MIB delta equals the socket's own count");
    assert_eq!(
        rcvbuf + received,
        N,
        "every datagram either queued or dropped"
    );
    assert!(rcvbuf > N * 9 / 10, "a tiny buffer drops nearly all");
    // InErrors includes RcvbufErrors: equal here, not a sum.
    assert_eq!(d.udp.in_errors, Some(rcvbuf));
    // InDatagrams counts at recvmsg time.
    let r = after_read.delta_since(&after_send);
    assert_eq!(r.udp.in_datagrams, Some(received));
    assert_eq!(r.udp.rcvbuf_errors, Some(0));
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drop CAP_NET_ADMIN from this thread's effective set only (capabilities
/// are per thread; the rest of the test process keeps them).
fn drop_net_admin_in_this_thread() {
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_ADMIN: u32 = 12;
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    #[allow(unsafe_code)]
    // SAFETY: capget/capset with a v3 header and two data words, as the ABI says.
    unsafe {
        assert_eq!(
            nix::libc::syscall(nix::libc::SYS_capget, &mut hdr, data.as_mut_ptr()),
            0
        );
        data[0].effective &= !(1 << CAP_NET_ADMIN);
        assert_eq!(
            nix::libc::syscall(nix::libc::SYS_capset, &hdr, data.as_ptr()),
            0
        );
    }
}

#[test]
#[ignore = "needs root and nf_conntrack"]
fn without_cap_net_admin_netlink_says_so_and_procfs_answers() {
    let r = std::thread::spawn(|| {
        drop_net_admin_in_this_thread();
        let nl = stats_cpu_table().map(|_| ());
        let reading = read_ct_counters(&SysRoot::host(), &KernelNetlink).unwrap();
        (nl, reading.source, reading.netlink_error)
    })
    .join()
    .unwrap();
    let (nl, source, why) = r;
    let e = nl.unwrap_err();
    assert!(
        matches!(
            e,
            conntrack_guard::kernel::netlink::NetlinkError::NeedsCapNetAdmin(_)
        ),
        "{e:?}"
    );
    assert_eq!(source, CounterSource::Procfs);
    assert!(why.unwrap().to_string().contains("CAP_NET_ADMIN"));
}
