#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Snapshot every writable sysctl and put back whatever changed.

systemd as PID 1 shares the host's network namespace and /proc/sys in the
real-systemd test, and changes global values at start (fs.file-max,
fs.nr_open, net.unix.max_dgram_qlen) and through systemd-sysctl; the
conntrack-guard units write net.netfilter.*. This keeps the host as it was.

  sysctl-guard.py snapshot FILE      save every readable, writable key
  sysctl-guard.py restore FILE       write back every key that differs
  sysctl-guard.py diff FILE          list keys that differ, change nothing

Keys that change by themselves are ignored. Restore prints one line per
key it wrote (and per key it could not write) and exits 1 if any write
failed.
"""
import json
import os
import stat
import sys

ROOT = "/proc/sys"
# Values the kernel changes on its own, or that writing back would harm.
IGNORE = {
    "kernel/ns_last_pid",
    "kernel/random/write_wakeup_threshold",
    "kernel/random/urandom_min_reseed_secs",
    "fs/dentry-state",
    "fs/inode-nr",
    "fs/inode-state",
    "fs/file-nr",
}
# Written first, in this order (buckets before max is the order the
# kernel accepts for any combination of a shrink and a grow).
FIRST = [
    "net/netfilter/nf_conntrack_buckets",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_udp_timeout",
    "net/netfilter/nf_conntrack_udp_timeout_stream",
    "fs/nr_open",
    "fs/file-max",
]


def walk():
    for dirpath, dirnames, filenames in os.walk(ROOT):
        for name in filenames:
            path = os.path.join(dirpath, name)
            key = os.path.relpath(path, ROOT)
            if key in IGNORE:
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            if not (st.st_mode & stat.S_IWUSR and st.st_mode & stat.S_IRUSR):
                continue
            yield key, path


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


def snapshot(out):
    data = {}
    for key, path in walk():
        v = read(path)
        if v is not None:
            data[key] = v
    with open(out, "w") as f:
        json.dump(data, f)
    return 0


def changed(saved):
    keys = [k for k in FIRST if k in saved] + sorted(k for k in saved if k not in FIRST)
    for key in keys:
        cur = read(os.path.join(ROOT, key))
        if cur is None:
            continue
        if cur.split() != saved[key].split():
            yield key, cur, saved[key]


def show(v):
    return " ".join(v.split())


def restore(snap, write):
    with open(snap) as f:
        saved = json.load(f)
    bad = 0
    for key, cur, want in changed(saved):
        name = key.replace("/", ".")
        if not write:
            print(f"{name}: {show(want)} -> {show(cur)}")
            continue
        try:
            with open(os.path.join(ROOT, key), "w") as f:
                f.write(show(want) + "\n")
            print(f"restored {name}: {show(cur)} -> {show(want)}")
        except OSError as e:
            bad = 1
            print(f"ERROR: could not restore {name} to {show(want)} (now {show(cur)}): {e}")
    return bad


def main(argv):
    if len(argv) != 3 or argv[1] not in ("snapshot", "restore", "diff"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    if argv[1] == "snapshot":
        return snapshot(argv[2])
    return restore(argv[2], write=argv[1] == "restore")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
