#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Helpers for tests/bench/stall.sh (issue 20, "Buckets"): the packet stall
a run-time write to nf_conntrack_buckets causes. Standard library only.

  stall.py ping --target IP:PORT --bind IP:PORT --out FILE --ready FILE
                [--rate 1000] [--max-seconds 30]
      In the client netns: send one sequence-numbered datagram every
      1/rate s from one bound socket (one long-lived flow) and record every
      reply. Stops on SIGTERM or after --max-seconds; then writes
      "seq send_ns recv_ns" (CLOCK_MONOTONIC) per reply to FILE.

  stall.py measure --client-ns NS --host-ns NS --fill BIN --fill-src A,B,..
                   --fill-dst IP:PORT --sizes "10000 100000 1000000"
                   --buckets "A B" --repeats N --out TSV [--max-seconds S]
      In the initial netns: record nf_conntrack_max and nf_conntrack_buckets,
      raise max to fit the largest size, then for each size fill the host
      netns's table to about that many entries (examples/ctfill, one flow
      per source address and port) and alternate, N times, a baseline
      window (ping-pong, no write) with a resize window (ping-pong, buckets
      written from this netns, alternating A -> B -> A ...). Appends one TSV
      row per window. Restores max and buckets before it returns, whatever
      happens (stall.sh's trap restores them again if this process dies).

  stall.py report TSV [--svg OUT]
      Print min/median/max per size and draw the plot.

The clocks: CLOCK_MONOTONIC is shared by all network namespaces, so the
pinger's reply times and this process's write times compare directly.
"""

import argparse
import json
import math
import os
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ beside the sources in git
import bench  # noqa: E402  (one plot style: nice_up/steps125/esc/meta live there)

SYSCTL = "/proc/sys/net/netfilter"
HARD_MAX_RATE = 2000
HARD_MAX_PING_SECONDS = 60.0
HARD_MAX_SIZE = 2_000_000
HARD_MAX_MEASURE_SECONDS = 3600.0
# Replies are looked for from PRE_S before the write to POST_S after it:
# long enough to see the ordinary jitter of a shared machine either side.
PRE_S = 1.0
POST_S = 1.0
PING = struct.Struct(">QQ")  # seq, send_ns

TSV_COLUMNS = [
    "size", "entries", "kind", "rep", "buckets_from", "buckets_to", "write_ms",
    "longest_gap_ms", "max_rtt_ms", "sent", "lost", "search_restart", "drop",
    "insert_failed", "loadavg1",
]


# --------------------------------------------------------------------------
# ping


def cmd_ping(args):
    rate = args.rate
    if not 0 < rate <= HARD_MAX_RATE:
        sys.exit(f"--rate must be >0 and <= {HARD_MAX_RATE}")
    max_s = min(args.max_seconds, HARD_MAX_PING_SECONDS)
    host, _, port = args.target.rpartition(":")
    bhost, _, bport = args.bind.rpartition(":")
    stop = [False]

    def on_term(_sig, _frm):
        stop[0] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((bhost, int(bport)))
    s.connect((host, int(port)))
    s.setblocking(False)
    interval_ns = int(1e9 / rate)
    start = time.monotonic_ns()
    end = start + int(max_s * 1e9)
    next_send = start
    seq = 0
    replies = []
    ready = False
    max_sends = int(max_s * rate) + 1
    while not stop[0] and seq < max_sends:
        now = time.monotonic_ns()
        if now >= end:
            break
        if now >= next_send:
            try:
                s.send(PING.pack(seq, now))
            except OSError:
                pass  # ICMP errors land here; the missing reply shows it
            seq += 1
            # A late pinger does not burst to catch up: one send per tick
            # it actually got, so a scheduling gap shows as a gap.
            next_send = max(next_send + interval_ns, now)
        while True:
            try:
                data = s.recv(64)
            except BlockingIOError:
                break
            except OSError:
                continue
            t = time.monotonic_ns()
            if len(data) == PING.size:
                rseq, sent = PING.unpack(data)
                replies.append((rseq, sent, t))
                if not ready:
                    ready = True
                    with open(args.ready, "w") as f:
                        f.write(f"{t}\n")
        wait = (next_send - time.monotonic_ns()) / 1e9
        if wait > 0:
            try:
                select.select([s], [], [], min(wait, 0.01))
            except InterruptedError:
                pass
    with open(args.out + ".tmp", "w") as f:
        f.write(f"# sent {seq} start_ns {start}\n")
        for r in replies:
            f.write(f"{r[0]} {r[1]} {r[2]}\n")
    os.replace(args.out + ".tmp", args.out)
    return 0


def load_ping(path):
    sent = 0
    rows = []
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                sent = int(line.split()[2])
                continue
            a, b, c = line.split()
            rows.append((int(a), int(b), int(c)))
    return sent, rows


def window_figures(rows, ws, we):
    """Longest gap between consecutive replies around [ws, we] (the last
    reply before ws and the first after we included, so an edge gap
    counts), the largest round trip and the unanswered sends in it."""
    rows = sorted(rows, key=lambda r: r[2])
    times = [r[2] for r in rows]
    before = [t for t in times if t < ws]
    after = [t for t in times if t > we]
    inside = [t for t in times if ws <= t <= we]
    pts = ([before[-1]] if before else [ws]) + inside + ([after[0]] if after else [we])
    gap = max(b - a for a, b in zip(pts, pts[1:]))
    rtt = max((r[2] - r[1] for r in rows if ws <= r[2] <= we), default=0)
    # sends in the window that never got an answer (the pinger ran on
    # well past we, so a reply delayed by the stall still arrives)
    answered = {r[0] for r in rows}
    sends = [r for r in rows if ws <= r[1] <= we]
    lost = 0
    if sends:
        lo, hi = min(r[0] for r in sends), max(r[0] for r in sends)
        lost = sum(1 for q in range(lo, hi + 1) if q not in answered)
        total = hi - lo + 1
    else:
        total = 0
    return gap / 1e6, rtt / 1e6, total, lost


# --------------------------------------------------------------------------
# measure


def read_int(path):
    with open(path) as f:
        return int(f.read().split()[0])


def write_sysctl(key, value):
    """Write one global key; return the time the write took in ns (the
    kernel resizes the hash table inside this write)."""
    fd = os.open(f"{SYSCTL}/{key}", os.O_WRONLY)
    try:
        t0 = time.monotonic_ns()
        os.write(fd, f"{value}\n".encode())
        t1 = time.monotonic_ns()
    finally:
        os.close(fd)
    return t0, t1


def in_ns(ns, cmd, **kw):
    return subprocess.run(["ip", "netns", "exec", ns] + cmd, check=True,
                          capture_output=True, text=True, **kw)


def ns_count(ns):
    return int(in_ns(ns, ["cat", f"{SYSCTL}/nf_conntrack_count"]).stdout.split()[0])


def ns_stats(ns, names):
    """Sums of the named counters over the CPU lines of the netns's
    /proc/net/stat/nf_conntrack, by header name (the column order changes
    between kernels); missing columns read as None."""
    lines = in_ns(ns, ["cat", "/proc/net/stat/nf_conntrack"]).stdout.splitlines()
    hdr = lines[0].split()
    out = {}
    for n in names:
        if n not in hdr:
            out[n] = None
            continue
        i = hdr.index(n)
        out[n] = sum(int(v.split()[i], 16) for v in lines[1:] if len(v.split()) > i)
    return out


def chaintoolong(ns):
    """Inserts refused for a too long hash chain: a ctnetlink-only counter
    (not in the stat file), read with `conntrack -S` when it is there."""
    try:
        out = in_ns(ns, ["conntrack", "-S"]).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no conntrack -S)"
    vals = [int(w.split("=")[1]) for w in out.split() if w.startswith("chaintoolong=")]
    return sum(vals) if vals else "unknown"


def slab_objects():
    """Allocated nf_conntrack objects of every netns together: the rehash
    moves all of them, whichever netns they belong to (the hash table is
    global). SLUB's sysfs file; absent on other allocators."""
    try:
        with open("/sys/kernel/slab/nf_conntrack/objects") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return "unknown"


def delta(a, b):
    if a is None or b is None:
        return ""
    return str((b - a) & 0xFFFFFFFF)  # u32 per CPU: the sum of deltas fits


def wait_steady(ns, deadline):
    prev, cur = -1, ns_count(ns)
    for _ in range(50):
        if cur == prev or time.monotonic() > deadline:
            break
        time.sleep(0.3)
        prev, cur = cur, ns_count(ns)
    return cur


class Filler:
    """Hands each ctfill run source addresses nobody used yet, so no two
    flows share a (source address, source port): reused ports would merge
    flows instead of adding entries."""

    FIRST_PORT = 1024
    PER_ADDR = 65536 - FIRST_PORT
    PER_RUN = 300_000  # ctfill's own bound

    def __init__(self, binary, ns, srcs, dst):
        self.binary, self.ns, self.srcs, self.dst = binary, ns, list(srcs), dst

    def add(self, n, deadline):
        made = 0
        while n - made > 0 and time.monotonic() < deadline:
            chunk = min(n - made, self.PER_RUN)
            k = -(-chunk // self.PER_ADDR)
            if k > len(self.srcs):
                raise SystemExit(f"stall.py: {chunk} more flows need {k} unused source addresses, "
                                 f"{len(self.srcs)} left")
            use, self.srcs = self.srcs[:k], self.srcs[k:]
            left = max(1, int(deadline - time.monotonic()))
            r = in_ns(self.ns, [self.binary, "udp", "--src", ",".join(use), "--dst", self.dst,
                                "--count", str(chunk), "--first-port", str(self.FIRST_PORT),
                                "--max-seconds", str(min(300, left))])
            got = int(r.stdout.split()[0])
            made += got
            if got < chunk:
                break  # the time bound or an error: the count check reports it
        return made


def one_window(a, rep, kind, size, entries, wdir, bucket_to, tsv):
    out = os.path.join(wdir, f"ping-{size}-{kind}-{rep}.txt")
    ready = out + ".ready"
    for p in (out, ready):
        if os.path.exists(p):
            os.unlink(p)
    stats0 = ns_stats(a.host_ns, ["search_restart", "drop", "insert_failed"])
    # SCHED_FIFO (--rt-prio): on a machine shared with compilers an
    # ordinary pinger misses its ticks by tens of ms, which would hide the
    # kernel's stall in scheduling noise; the kernel still throttles
    # real-time tasks to 95% of a CPU.
    rt = ["chrt", "-f", str(a.rt_prio)] if a.rt_prio else []
    p = subprocess.Popen(["ip", "netns", "exec", a.client_ns] + rt + [sys.executable, os.path.abspath(__file__),
                          "ping", "--target", a.ping_target, "--bind", a.ping_bind, "--out", out,
                          "--ready", ready, "--max-seconds", "30"])
    try:
        t_end = time.monotonic() + 10
        while not os.path.exists(ready) and time.monotonic() < t_end and p.poll() is None:
            time.sleep(0.02)
        if not os.path.exists(ready):
            raise SystemExit("stall.py: the ping-pong got no reply within 10 s")
        time.sleep(PRE_S)
        b_from = read_int(f"{SYSCTL}/nf_conntrack_buckets")
        if bucket_to is None:
            t0 = t1 = time.monotonic_ns()
            b_to = b_from
        else:
            t0, t1 = write_sysctl("nf_conntrack_buckets", bucket_to)
            b_to = read_int(f"{SYSCTL}/nf_conntrack_buckets")
        time.sleep(POST_S)
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    stats1 = ns_stats(a.host_ns, ["search_restart", "drop", "insert_failed"])
    _, rows = load_ping(out)
    ws, we = t0 - int(PRE_S * 1e9), t1 + int(POST_S * 1e9)
    gap, rtt, total, lost = window_figures(rows, ws, we)
    with open("/proc/loadavg") as f:
        load1 = f.read().split()[0]
    row = [size, entries, kind, rep, b_from, b_to,
           f"{(t1 - t0) / 1e6:.3f}" if bucket_to is not None else "",
           f"{gap:.3f}", f"{rtt:.3f}", total, lost,
           delta(stats0["search_restart"], stats1["search_restart"]),
           delta(stats0["drop"], stats1["drop"]),
           delta(stats0["insert_failed"], stats1["insert_failed"]), load1]
    tsv.write("\t".join(str(x) for x in row) + "\n")
    tsv.flush()
    print(f"  {size:>8} entries {entries:>8} {kind:<8} #{rep} buckets {b_from}->{b_to} "
          f"write {row[6] or '-':>8} ms, longest gap {gap:8.3f} ms, max rtt {rtt:8.3f} ms, "
          f"lost {lost}/{total}, load {load1}", flush=True)


def cmd_measure(args):
    sizes = [int(s) for s in args.sizes.split()]
    buckets = [int(b) for b in args.buckets.split()]
    if not sizes or any(not 0 <= s <= HARD_MAX_SIZE for s in sizes) or sizes != sorted(sizes):
        sys.exit(f"--sizes: ascending, each 0..{HARD_MAX_SIZE}")
    if len(buckets) != 2 or any(b < 1024 for b in buckets):
        sys.exit("--buckets: two values, each >= 1024")
    if not 1 <= args.repeats <= 10:
        sys.exit("--repeats must be 1..10")
    deadline = time.monotonic() + min(args.max_seconds, HARD_MAX_MEASURE_SECONDS)
    saved_max = read_int(f"{SYSCTL}/nf_conntrack_max")
    saved_buckets = read_int(f"{SYSCTL}/nf_conntrack_buckets")
    print(f"saved: nf_conntrack_max {saved_max}, nf_conntrack_buckets {saved_buckets}", flush=True)
    # SIGTERM must run the finally below, like SIGINT does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # One run per file: the meta line first (date, kernel, machine), then
    # the windows as they are measured, so a broken run keeps what it got.
    meta = {}
    if args.meta:
        with open(args.meta) as f:
            meta = json.load(f)
    meta.update({"max_saved": saved_max, "buckets_saved": saved_buckets,
                 "buckets": buckets, "repeats": args.repeats, "rt_prio": args.rt_prio})
    with open("/proc/loadavg") as f:
        meta["loadavg_start"] = " ".join(f.read().split()[:3])
    tsv = open(args.out, "w")
    tsv.write("# meta " + json.dumps(meta) + "\n")
    tsv.write("\t".join(TSV_COLUMNS) + "\n")
    filler = Filler(args.fill, args.client_ns, args.fill_src.split(","), args.fill_dst)
    try:
        # Room for the largest size, the ping flow and a margin; entries
        # are NAT'ed UDP, about 320 B each (kernel-facts.md).
        want_max = max(saved_max, sizes[-1] + sizes[-1] // 8 + 1000)
        if want_max != saved_max:
            write_sysctl("nf_conntrack_max", want_max)
        print(f"nf_conntrack_max {want_max} for the run; buckets alternate {buckets[0]} <-> {buckets[1]}",
              flush=True)
        if read_int(f"{SYSCTL}/nf_conntrack_buckets") != buckets[0]:
            write_sysctl("nf_conntrack_buckets", buckets[0])
        for size in sizes:
            have = ns_count(args.host_ns)
            if size > have:
                t = time.monotonic()
                made = filler.add(size - have, deadline)
                entries = wait_steady(args.host_ns, deadline)
                ctl = chaintoolong(args.host_ns)
                print(f"filled {made} flows in {time.monotonic() - t:.1f} s: {entries} entries "
                      f"(chaintoolong so far: {ctl}; nf_conntrack slab objects, all netns: "
                      f"{slab_objects()})", flush=True)
            else:
                entries = have
            if abs(entries - size) > size // 50 + 20:
                raise SystemExit(f"stall.py: the table holds {entries} entries, not about {size}; stopping")
            for rep in range(1, args.repeats + 1):
                if time.monotonic() > deadline:
                    raise SystemExit("stall.py: --max-seconds reached")
                one_window(args, rep, "baseline", size, ns_count(args.host_ns), args.workdir, None, tsv)
                cur = read_int(f"{SYSCTL}/nf_conntrack_buckets")
                to = buckets[1] if cur == buckets[0] else buckets[0]
                one_window(args, rep, "resize", size, ns_count(args.host_ns), args.workdir, to, tsv)
    finally:
        tsv.close()
        # Buckets first: max only bounds new entries, lowering it frees nothing.
        for key, want in (("nf_conntrack_buckets", saved_buckets), ("nf_conntrack_max", saved_max)):
            if read_int(f"{SYSCTL}/{key}") != want:
                write_sysctl(key, want)
                print(f"restored {key} {want}", flush=True)
    return 0


# --------------------------------------------------------------------------
# report


def load_tsv(path):
    rows, meta = [], {}
    with open(path) as f:
        hdr = None
        for line in f:
            if line.startswith("# meta "):
                meta = json.loads(line[len("# meta "):])
                continue
            if line.startswith("#") or not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if hdr is None:
                hdr = parts
                continue
            rows.append(dict(zip(hdr, parts)))
    return rows, meta


def mmm(vals):
    if not vals:
        return None
    return min(vals), statistics.median(vals), max(vals)


def summarize(rows):
    out = []
    for size in sorted({int(r["size"]) for r in rows}):
        rs = [r for r in rows if int(r["size"]) == size]
        base = [float(r["longest_gap_ms"]) for r in rs if r["kind"] == "baseline"]
        res = [float(r["longest_gap_ms"]) for r in rs if r["kind"] == "resize"]
        wr = [float(r["write_ms"]) for r in rs if r["kind"] == "resize" and r["write_ms"]]
        lost = sum(int(r["lost"]) for r in rs if r["kind"] == "resize")
        sent = sum(int(r["sent"]) for r in rs if r["kind"] == "resize")
        ents = statistics.median(int(r["entries"]) for r in rs)
        load = [float(r["loadavg1"]) for r in rs]
        out.append({"size": size, "entries": int(ents), "baseline": mmm(base), "resize": mmm(res),
                    "write": mmm(wr), "lost": lost, "sent": sent, "n": len(res),
                    "load": mmm(load)})
    return out


def load_range(s):
    loads = [v for r in s if r["load"] for v in r["load"]]
    return f"{min(loads):.1f}-{max(loads):.1f}" if loads else "?"


def fmt3(t):
    return "-" if t is None else f"{t[0]:.1f} / {t[1]:.1f} / {t[2]:.1f}"


def cmd_report(args):
    rows, meta = load_tsv(args.tsv)
    s = summarize(rows)
    print(f"== bucket resize stall ({meta.get('machine', '?')}, kernel {meta.get('kernel', '?')}, "
          f"{meta.get('date', '?')})")
    print("   longest gap in a 1 kHz UDP ping-pong through the NAT netns, ms: min / median / max")
    print(f"{'entries':>9}  {'baseline gap':>22}  {'resize gap':>24}  {'write to buckets':>24}  "
          f"{'lost':>9}  {'load1':>15}")
    for r in s:
        print(f"{r['entries']:>9}  {fmt3(r['baseline']):>22}  {fmt3(r['resize']):>24}  "
              f"{fmt3(r['write']):>24}  {r['lost']:>4}/{r['sent']:<4}  {fmt3(r['load']):>15}")
    if args.svg:
        plot(s, args.svg, meta, args.limit_ms)
        print(f"  plot: {os.path.relpath(args.svg)}")
    return 0


def plot(s, out, meta, limit_ms=None):
    """Longest gap against entries, log-log, the look of bench.py's plots:
    baseline and resize as min-max bars with the median joined, and the
    time of the write itself."""
    series = [
        ("longest gap while buckets are resized", "resize", "#d62728", ""),
        ("time of the write to nf_conntrack_buckets", "write", "#ff7f0e", "3,3"),
        ("longest gap, no resize (baseline)", "baseline", "#1f77b4", "8,4"),
    ]
    xs = [r["entries"] for r in s if r["entries"] > 0]
    ys = [v for r in s for _, k, _, _ in series if r[k] for v in r[k] if v > 0]
    if not xs or not ys:
        return
    W, H = 780, 500
    L, R, T, B = 80, 40, 76, 120
    xa, xb = bench.nice_down(min(xs) / 1.5), bench.nice_up(max(xs) * 1.5)
    ya, yb = bench.nice_down(min(ys)), bench.nice_up(max(ys))
    if yb <= ya:
        yb = bench.nice_up(ya * 1.5)
    lx0, lx1 = math.log10(xa), math.log10(xb)
    ly0, ly1 = math.log10(ya), math.log10(yb)

    def px(x):
        return L + (math.log10(x) - lx0) / (lx1 - lx0) * (W - L - R)

    def py(y):
        return T + (1 - (math.log10(y) - ly0) / (ly1 - ly0)) * (H - T - B)

    esc = bench.esc
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
         f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">'
         'Packet stall when nf_conntrack_buckets is resized at run time</text>',
         f'<text x="{W / 2}" y="38" text-anchor="middle" fill="#555" font-size="11">'
         f'longest reply gap of a 1 kHz UDP ping-pong through a NAT netns; median, bars min-max; '
         f'log-log; {esc(meta.get("date", ""))}</text>',
         f'<text x="{W / 2}" y="52" text-anchor="middle" fill="#555" font-size="11">'
         f'{esc(meta.get("machine", ""))}, kernel {esc(meta.get("kernel", ""))}</text>',
         f'<text x="{W / 2}" y="66" text-anchor="middle" fill="#555" font-size="11">'
         f'buckets {esc(" <-> ".join(str(b) for b in meta.get("buckets", [])))}; load average '
         f'{esc(load_range(s))} during the run (other jobs on the same CPUs); pinger and echo '
         f'{"SCHED_FIFO " + str(meta["rt_prio"]) if meta.get("rt_prio") else "normal priority"}</text>']
    for v in bench.steps125(xa, xb):
        X = px(v)
        o.append(f'<line x1="{X:.1f}" y1="{T}" x2="{X:.1f}" y2="{H - B}" stroke="#ddd"/>')
        o.append(f'<text x="{X:.1f}" y="{H - B + 16}" text-anchor="middle">{round(v):,}</text>')
    for v in bench.steps125(ya, yb):
        Y = py(v)
        o.append(f'<line x1="{L}" y1="{Y:.1f}" x2="{W - R}" y2="{Y:.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{L - 6}" y="{Y + 4:.1f}" text-anchor="end">{v:g} ms</text>')
    o.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#333"/>')
    o.append(f'<text x="{(L + W - R) / 2}" y="{H - B + 34}" text-anchor="middle">'
             'entries in the conntrack table</text>')
    o.append(f'<text transform="translate(18,{(T + H - B) / 2}) rotate(-90)" text-anchor="middle">'
             'milliseconds</text>')
    if limit_ms and ya < limit_ms < yb:
        Y = py(limit_ms)
        o.append(f'<line x1="{L}" y1="{Y:.1f}" x2="{W - R}" y2="{Y:.1f}" stroke="#2ca02c" '
                 f'stroke-width="1.5" stroke-dasharray="2,3"/>')
        o.append(f'<text x="{L + 6}" y="{Y - 5:.1f}" fill="#2ca02c" font-size="11">'
                 f'{limit_ms:g} ms: the README\'s limit for a live resize</text>')
    for i, (name, key, colour, dash) in enumerate(series):
        p = [(r["entries"], r[key]) for r in s if r[key] and r["entries"] > 0 and r[key][0] > 0]
        if not p:
            continue
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        off = (i - 1) * 6  # side by side, so the bars do not hide each other
        d = " ".join(f"{'M' if j == 0 else 'L'}{px(x) + off:.1f},{py(m[1]):.1f}" for j, (x, m) in enumerate(p))
        o.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/>')
        for x, m in p:
            X = px(x) + off
            o.append(f'<line x1="{X:.1f}" y1="{py(m[0]):.1f}" x2="{X:.1f}" y2="{py(m[2]):.1f}" '
                     f'stroke="{colour}" stroke-width="1.5"/>')
            o.append(f'<circle cx="{X:.1f}" cy="{py(m[1]):.1f}" r="3.5" fill="{colour}">'
                     f'<title>{esc(name)}: {x} entries, min {m[0]:.1f} / median {m[1]:.1f} / '
                     f'max {m[2]:.1f} ms</title></circle>')
        ly = H - B + 58 + i * 18
        o.append(f'<line x1="{L}" y1="{ly - 4}" x2="{L + 30}" y2="{ly - 4}" stroke="{colour}" '
                 f'stroke-width="2"{dash_attr}/>')
        o.append(f'<text x="{L + 38}" y="{ly}">{esc(name)}</text>')
    o.append(f'<text x="{W - R}" y="{H - 8}" text-anchor="end" fill="#777" font-size="10">'
             'generated by tests/bench/stall.sh</text>')
    o.append("</svg>")
    with open(out + ".tmp", "w") as f:
        f.write("\n".join(o) + "\n")
    os.replace(out + ".tmp", out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ping")
    p.add_argument("--target", required=True)
    p.add_argument("--bind", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--rate", type=float, default=1000)
    p.add_argument("--max-seconds", type=float, default=30)
    p = sub.add_parser("measure")
    p.add_argument("--client-ns", required=True)
    p.add_argument("--host-ns", required=True)
    p.add_argument("--fill", required=True)
    p.add_argument("--fill-src", required=True)
    p.add_argument("--fill-dst", required=True)
    p.add_argument("--ping-target", required=True)
    p.add_argument("--ping-bind", required=True)
    p.add_argument("--sizes", required=True)
    p.add_argument("--buckets", required=True)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--meta")
    p.add_argument("--rt-prio", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=1800)
    p = sub.add_parser("report")
    p.add_argument("tsv")
    p.add_argument("--svg")
    p.add_argument("--limit-ms", type=float, default=50,
                   help="draw the README's live-resize limit (0: none)")
    args = ap.parse_args()
    return {"ping": cmd_ping, "measure": cmd_measure, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
