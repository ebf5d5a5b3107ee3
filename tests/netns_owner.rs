// SPDX-License-Identifier: MIT OR Apache-2.0
//! Namespace discovery and owner naming over a fake root built from the
//! runtimes' own file shapes (tests/netns-fixtures): one namespace per
//! kind of owner, found through `/proc/<pid>/ns/net` links and bind mounts.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;
use std::process::Command;

use conntrack_guard::netns::{self, Runtime};
use conntrack_guard::sysroot::SysRoot;

const BIN: &str = env!("CARGO_BIN_EXE_conntrack-guard");
const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/netns-fixtures");
const DOCKER: &str = "9c1f6a0b3e2d4c5b8a7f6e5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a291";
const SANDBOX: &str = "4b1d0c9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c";
const CRIO: &str = "8e7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3";
const PODMAN: &str = "a17c3e5f7b9d1e3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f";

fn put(root: &Path, rel: &str, contents: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, contents).unwrap();
}

fn fixture(name: &str) -> Vec<u8> {
    fs::read(Path::new(FIX).join(name)).unwrap()
}

/// A process: its ns/net link, cgroup file and comm.
fn process(root: &Path, pid: u32, inode: u64, cgroup: &str, comm: &str) {
    let dir = root.join(format!("proc/{pid}"));
    fs::create_dir_all(dir.join("ns")).unwrap();
    symlink(format!("net:[{inode}]"), dir.join("ns/net")).unwrap();
    fs::write(dir.join("cgroup"), fixture(cgroup)).unwrap();
    fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
}

fn build() -> (tempfile::TempDir, u64) {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    put(
        r,
        &format!("var/lib/docker/containers/{DOCKER}/config.v2.json"),
        &fixture("docker-config.v2.json"),
    );
    put(
        r,
        &format!("run/containerd/io.containerd.runtime.v2.task/k8s.io/{SANDBOX}/config.json"),
        &fixture("containerd-sandbox-config.json"),
    );
    put(
        r,
        &format!("run/containers/storage/overlay-containers/{CRIO}/userdata/config.json"),
        &fixture("crio-config.json"),
    );
    put(
        r,
        "var/lib/containers/storage/overlay-containers/containers.json",
        &fixture("podman-containers.json"),
    );
    process(r, 1, 4026531840, "cgroup-session", "systemd");
    process(r, 4172, 4026532301, "cgroup-docker-hybrid", "opentracker");
    process(r, 4173, 4026532301, "cgroup-docker-hybrid", "opentracker");
    process(r, 5100, 4026532302, "cgroup-containerd-k8s", "pause");
    process(r, 5200, 4026532303, "cgroup-crio-k8s", "pause");
    process(r, 5300, 4026532304, "cgroup-podman", "turnserver");
    process(r, 900, 4026532306, "cgroup-session", "udp-echo");
    // An `ip netns add` namespace: the bind-mount file's inode is the
    // namespace's; a process links to it.
    put(r, "run/netns/blue", b"");
    let blue = fs::metadata(r.join("run/netns/blue")).unwrap().ino();
    process(r, 7000, blue, "cgroup-session", "sleep");
    // proc/self/ns/net as a plain file: its device is "nsfs" here, so a
    // bind-mounted namespace with no process is found too.
    put(r, "proc/self/ns/net", b"");
    put(r, "run/docker/netns/e3b0c44298fc", b"");
    // A kernel thread or an exited process: no ns link.
    fs::create_dir_all(r.join("proc/2")).unwrap();
    (dir, blue)
}

#[test]
fn scan_names_every_owner() {
    let (dir, blue) = build();
    let found = netns::scan(&SysRoot::at(dir.path()));
    let by = |inode: u64| {
        found
            .iter()
            .find(|n| n.inode == inode)
            .unwrap_or_else(|| panic!("netns {inode} not found in {found:#?}"))
    };
    assert!(found[0].host, "the initial namespace comes first");
    assert_eq!(found[0].inode, 4026531840);
    assert_eq!(found[0].owner.label(), "host");

    let d = by(4026532301);
    assert_eq!(d.owner.runtime, Runtime::Docker);
    assert_eq!(d.owner.id.as_deref(), Some(DOCKER));
    assert_eq!(d.owner.label(), "docker tracker-udp-tracker-1");
    assert_eq!((d.processes, d.pid), (2, Some(4172)));
    assert!(d.enter.ends_with("proc/4172/ns/net"));

    assert_eq!(
        by(4026532302).owner.label(),
        "containerd edge/dns-cache-7f9c8d6b5-x2k4q"
    );
    assert_eq!(
        by(4026532303).owner.label(),
        "crio prod/api-6d8f9c7b4-qv8zr"
    );
    assert_eq!(by(4026532304).owner.label(), "podman coturn");
    assert_eq!(by(4026532304).owner.id.as_deref(), Some(PODMAN));
    assert_eq!(by(4026532306).owner.label(), "process udp-echo");

    let b = by(blue);
    assert_eq!(b.owner.label(), "netns blue");
    assert_eq!(b.bind_name.as_deref(), Some("blue"));
    assert!(b.enter.ends_with("run/netns/blue"), "bind mount preferred");

    let sandbox = found
        .iter()
        .find(|n| n.bind_name.as_deref() == Some("e3b0c44298fc"))
        .expect("a Docker sandbox with no process");
    assert_eq!(sandbox.processes, 0);
    assert_eq!(sandbox.owner.label(), "netns e3b0c44298fc");
    assert_eq!(found.len(), 8, "{found:#?}");
}

#[test]
fn a_namespace_that_vanishes_is_left_out_and_missing_state_keeps_the_id() {
    let (dir, _) = build();
    let r = dir.path();
    // The process exited between readdir and readlink.
    fs::remove_file(r.join("proc/900/ns/net")).unwrap();
    // The runtime's state is gone (container removed mid-scan).
    fs::remove_file(r.join(format!("var/lib/docker/containers/{DOCKER}/config.v2.json"))).unwrap();
    let found = netns::scan(&SysRoot::at(r));
    assert!(found.iter().all(|n| n.inode != 4026532306));
    let d = found.iter().find(|n| n.inode == 4026532301).unwrap();
    assert_eq!(d.owner.label(), "docker 9c1f6a0b3e2d");
}

#[test]
fn status_all_netns_under_a_test_root_names_owners_and_is_unknown() {
    let (dir, _) = build();
    let out = Command::new(BIN)
        .env("CONNTRACK_GUARD_ROOT", dir.path())
        .args(["status", "--all-netns", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["status"], "UNKNOWN");
    let labels: Vec<&str> = j["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["label"].as_str().unwrap())
        .collect();
    for want in [
        "host",
        "docker tracker-udp-tracker-1",
        "containerd edge/dns-cache-7f9c8d6b5-x2k4q",
        "podman coturn",
    ] {
        assert!(labels.contains(&want), "{want} not in {labels:?}");
    }
    let out = Command::new(BIN)
        .env("CONNTRACK_GUARD_ROOT", dir.path())
        .args(["status", "--all-netns", "--frobnicate"])
        .output()
        .unwrap();
    // A usage error is UNKNOWN (3), as in plain `status`: 2 is CRITICAL.
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}
