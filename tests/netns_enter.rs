// SPDX-License-Identifier: MIT OR Apache-2.0
//! Entering real namespaces (root and nf_conntrack): a sample taken on the
//! setns thread sees that namespace's count, counters and snmp, never the
//! caller's, and the caller's threads stay where they were.

mod common;

use std::process::Command;

use conntrack_guard::netns;
use conntrack_guard::netns::sample as allns;
use conntrack_guard::sysroot::SysRoot;

struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Ns {
        let name = format!("ctg-enter-{tag}-{}", std::process::id());
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        Ns(name)
    }
    fn exec(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn own_netns() -> String {
    std::fs::read_link("/proc/thread-self/ns/net")
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
#[ignore = "needs root and nf_conntrack"]
fn sample_reads_the_entered_namespace() {
    let _lock = common::global_lock();
    let ns = Ns::new("busy");
    let idle = Ns::new("idle");
    // Conntrack on (a ct rule), 7 flows from distinct ports to an address
    // of its own on lo; an input drop keeps ICMP errors from removing them.
    assert!(ns
        .exec(&["ip", "addr", "add", "198.18.3.1/32", "dev", "lo"])
        .status
        .success());
    assert!(ns.exec(&["ip", "link", "set", "lo", "up"]).status.success());
    let rules = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        rules.path(),
        "table ip ctg_enter {\n chain out { type filter hook output priority 0; ct state new counter; }\n \
         chain in { type filter hook input priority 0; udp dport 9 drop; }\n}\n",
    )
    .unwrap();
    let out = ns.exec(&["nft", "-f", &rules.path().to_string_lossy()]);
    assert!(out.status.success(), "{out:?}");
    let send = "import socket\nfor i in range(7):\n    s=socket.socket(2,2)\n    s.bind(('198.18.3.1',30000+i))\n    s.sendto(b'x',('198.18.3.1',9))\n    s.close()\n";
    let out = ns.exec(&["python3", "-c", send]);
    assert!(out.status.success(), "{out:?}");
    let snmp_want = String::from_utf8(ns.exec(&["cat", "/proc/net/snmp"]).stdout).unwrap();

    let before = own_netns();
    let found = netns::scan(&SysRoot::host());
    let busy = found
        .iter()
        .find(|n| n.bind_name.as_deref() == Some(&ns.0))
        .expect("busy found");
    let quiet = found
        .iter()
        .find(|n| n.bind_name.as_deref() == Some(&idle.0))
        .expect("idle found");
    let s = allns::sample(busy).unwrap();
    // The sysctl file follows the opening thread's netns, not the process's.
    assert_eq!(s.count, 7, "{s:?}");
    assert!(!s.inactive());
    let want = allns::parse_snmp_udp(&snmp_want).unwrap();
    assert_eq!(s.udp, Some(want));
    let q = allns::sample(quiet).unwrap();
    assert_eq!(q.count, 0);
    assert!(q.inactive(), "{q:?}");
    assert_eq!(q.max, s.max, "max is global");
    // The calling thread never moved.
    assert_eq!(own_netns(), before);
    assert_eq!(
        own_netns(),
        std::fs::read_link("/proc/self/ns/net")
            .unwrap()
            .to_string_lossy()
    );
}

#[test]
#[ignore = "needs root and nf_conntrack"]
fn a_deleted_namespace_is_vanished_not_an_error() {
    let _lock = common::global_lock();
    let ns = Ns::new("gone");
    let found = netns::scan(&SysRoot::host());
    let gone = found
        .into_iter()
        .find(|n| n.bind_name.as_deref() == Some(&ns.0))
        .unwrap();
    drop(ns);
    let e = allns::sample(&gone).unwrap_err();
    assert!(e.vanished(), "{e}");
}
