#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Helpers for tests/bench/run.sh. Standard library only.

  bench.py stamp OUT [--max-seconds S]
      Copy stdin lines to OUT, each prefixed with CLOCK_MONOTONIC in ns.
      Exits at EOF or after S seconds.

  bench.py poll-fill OUT --percent P [--every 0.05] [--max-seconds S]
                         [--stop-file F]
      Poll nf_conntrack_count and nf_conntrack_max of the current netns
      every ~50 ms; append "monotonic_ns count max" to OUT each time the
      fill goes from below P% to at or above P%. Bounded by S seconds.

  bench.py report RESULTS_DIR [--svg OUT]
      Print the table of figures from the files run.sh left in
      RESULTS_DIR, and draw the sample-cost-versus-table-size plot.

  bench.py top-report RESULTS_DIR [--svg OUT]
      Print the table of figures from the <size>.json files top.sh left
      in RESULTS_DIR, and draw the top-cost-versus-table-size plot.

  bench.py meta OUT [--commit C] [--vm V] [--container C]
      Write the date, kernel and machine line the plots carry to OUT.

  bench.py events FILE NAME
      Print the stamped lines of FILE whose event is NAME as JSON lines
      (monotonic_ns plus the KEY=value fields).

  bench.py paired OUT --a CMD --b CMD [--runs N] [--warmup W] [--env K=V]
      Start CMD A and CMD B in turn (A B A B ...), each as a whole
      process with its output thrown away, and time each from spawn to
      reap. Writes the medians and the median of the per-pair ratios
      A/B to OUT (JSON). Pairing keeps the ratio fair on a machine whose
      speed drifts (other builds on the same cores).

  bench.py smaps SMAPS [--bin NAME]
      Print the resident memory of one process by mapping from a copy of
      /proc/PID/smaps: file pages (the binary, libc, ld.so, others) and
      anonymous pages (heap, stacks, anonymous mappings, and the
      copy-on-write pages inside file mappings).

  bench.py symbols UNSTRIPPED_BINARY [--top N]
      Where the code bytes of an unstripped build go: text symbols
      (nm --size-sort -S -C) summed by crate, std's backtrace symbolizer
      (gimli, addr2line, rustc_demangle, miniz_oxide) as one group, the
      stable-sort instantiations, and the N largest functions.

  bench.py size-report RESULTS_DIR [--bin NAME]
      The short report of tests/bench/size.sh: binary size, apply vs
      sysctl -p, watch VmHWM with the breakdown by mapping.
"""

import argparse
import json
import math
import os
import platform
import re
import shlex
import statistics
import sys
import time

SYSCTL = "/proc/sys/net/netfilter"


# --------------------------------------------------------------------------
# stamp / poll-fill


def cmd_stamp(args):
    end = time.monotonic() + min(args.max_seconds, 3600)
    with open(args.out, "a", buffering=1) as out:
        for line in sys.stdin:
            out.write(f"{time.monotonic_ns()} {line.rstrip()}\n")
            if time.monotonic() > end:
                break
    return 0


def read_int(path):
    with open(path) as f:
        return int(f.read().strip())


def cmd_poll_fill(args):
    end = time.monotonic() + min(args.max_seconds, 900)
    above = None
    polls = 0
    with open(args.out, "a", buffering=1) as out:
        while time.monotonic() < end:
            if args.stop_file and os.path.exists(args.stop_file):
                break
            t = time.monotonic_ns()
            count = read_int(f"{SYSCTL}/nf_conntrack_count")
            mx = read_int(f"{SYSCTL}/nf_conntrack_max")
            polls += 1
            now_above = count * 100 >= args.percent * mx
            if now_above and above is False:
                out.write(f"{t} {count} {mx}\n")
            above = now_above
            time.sleep(args.every)
    print(json.dumps({"polls": polls}), file=sys.stderr)
    return 0


# --------------------------------------------------------------------------
# events

FIELD = re.compile(r'([A-Z_]+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_event(line):
    """'<ns> <priority>: EVENT=name KEY=v ... MESSAGE="..."' -> dict."""
    ts, _, rest = line.partition(" ")
    prio, sep, fields = rest.partition(": ")
    if not sep or not fields.startswith("EVENT="):
        return None
    ev = {"t_ns": int(ts), "PRIORITY": prio}
    for k, v in FIELD.findall(fields):
        if v.startswith('"'):
            v = v[1:-1]
        ev[k] = v
    return ev


def load_events(path):
    evs = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                ev = parse_event(line.rstrip("\n"))
                if ev:
                    evs.append(ev)
    except FileNotFoundError:
        pass
    return evs


def cmd_events(args):
    for ev in load_events(args.file):
        if ev.get("EVENT") == args.name:
            print(json.dumps(ev))
    return 0


# --------------------------------------------------------------------------
# report


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def hf_medians(path):
    """hyperfine --export-json -> {command name: result dict}."""
    d = load(path)
    if not d:
        return {}
    return {r["command"]: r for r in d.get("results", [])}


def fmt_time(s):
    if s is None:
        return "n/a"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}×"


def fmt_mib(kib):
    return "n/a" if kib is None else f"{kib / 1024:.2f} MiB"


class Table:
    """Sections of rows (label, value, note), each aligned on its own."""

    def __init__(self):
        self.sections = []

    def section(self, title):
        self.sections.append((title, []))

    def add(self, what, value, note=""):
        self.sections[-1][1].append((what, value, note))

    def text(self, title, body):
        self.sections.append((title, body))

    def print(self):
        for title, rows in self.sections:
            print(f"\n== {title}")
            if isinstance(rows, str):
                print(rows)
                continue
            w0 = max((len(r[0]) for r in rows), default=10)
            w1 = max((len(r[1]) for r in rows), default=10)
            for r in rows:
                print(f"  {r[0]:<{w0}}  {r[1]:>{w1}}  {r[2]}".rstrip())


def columns(header, rows):
    """A plain text table, right-aligned."""
    cells = [header] + rows
    w = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  " + "  ".join(c.rjust(w[i]) for i, c in enumerate(r)) for r in cells)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def collect_sizes(res):
    """size-<N>-sampler.json, size-<N>-ct.json (hyperfine) and
    size-<N>-listed.txt -> rows sorted by the measured entry count."""
    rows = []
    for name in os.listdir(res):
        m = re.fullmatch(r"size-(\d+)-sampler\.json", name)
        if not m:
            continue
        n = m.group(1)
        s = load(os.path.join(res, name)) or {}
        hf = hf_medians(os.path.join(res, f"size-{n}-ct.json"))
        row = {
            "target": int(n),
            "count": s.get("count", int(n)),
            "sample_s": s["sample_median_ns"] * 1e-9 if "sample_median_ns" in s else None,
            "raw_s": s["raw_median_ns"] * 1e-9 if "raw_median_ns" in s else None,
            "ct_count_s": hf.get("conntrack -C", {}).get("median"),
            "status_s": hf.get("conntrack-guard status", {}).get("median"),
            "ct_list_s": hf.get("conntrack -L | wc -l", {}).get("median"),
        }
        try:
            with open(os.path.join(res, f"size-{n}-listed.txt")) as f:
                row["listed"] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
        rows.append(row)
    rows.sort(key=lambda r: r["target"])
    with open(os.path.join(res, "sizes.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return rows


def cmd_report(args):
    res = args.results
    t = Table()
    meta = load(os.path.join(res, "meta.json")) or {}
    print(f"conntrack-guard benchmarks, {meta.get('date', '?')}: {meta.get('machine', '')}")
    print(f"kernel {meta.get('kernel', '?')}, {meta.get('cpus', '?')} CPUs, "
          f"commit {meta.get('commit', '?')}; medians; ratios are taken within one run")

    # 1. apply
    a = hf_medians(os.path.join(res, "apply.json"))
    if a:
        t.section("1. apply, 4 keys at their current values (whole process, hyperfine)")
        cg = a.get("conntrack-guard apply", {}).get("median")
        pp = a.get("sysctl -p", {}).get("median")
        sd = a.get("systemd-sysctl", {}).get("median")
        for name, r in a.items():
            t.add(name, fmt_time(r["median"]), f"{len(r.get('times', []))} runs")
        t.add("apply / procps", fmt_ratio(ratio(cg, pp)), "target ≤ 1.00")
        t.add("apply / systemd-sysctl", fmt_ratio(ratio(cg, sd)))
        fl = a.get("conntrack-guard --version", {}).get("median")
        if fl is not None and cg is not None:
            t.add("apply minus --version (the work itself)", fmt_time(cg - fl))
        c0 = a.get("C hello", {}).get("median")
        c1 = a.get("C hello + libkmod", {}).get("median")
        if c0 is not None and c1 is not None:
            t.add("cost of linking libkmod (C probe)", fmt_time(c1 - c0),
                  "libkmod pulls libcrypto, liblzma, libzstd")
        sc = load(os.path.join(res, "apply-syscalls.json")) or {}
        if sc.get("syscalls"):
            t.add("system calls per run", " / ".join(str(v) for v in sc["syscalls"].values()),
                  " / ".join(sc["syscalls"]))
        if sc.get("shared libraries"):
            t.add("shared libraries loaded", " / ".join(str(v) for v in sc["shared libraries"].values()),
                  " / ".join(sc["shared libraries"]))

    # 2. sampler
    s = load(os.path.join(res, "sampler-host.json"))
    if s:
        t.section("2. one watch sample vs a raw read of the same files (in-process, initial netns)")
        src = s.get("source", "?")
        t.add(f"sample = count + max + counters ({src}) + snmp + softnet",
              fmt_time(s["sample_median_ns"] * 1e-9),
              f"p10 {fmt_time(s['sample_p10_ns'] * 1e-9)}, p90 {fmt_time(s['sample_p90_ns'] * 1e-9)}")
        reads = s.get("raw_reads")
        t.add(f"open+read {len(reads) if reads else 3} files" + (" + bare ctnetlink dump" if src == "Netlink" else ""),
              fmt_time(s["raw_median_ns"] * 1e-9),
              f"p10 {fmt_time(s['raw_p10_ns'] * 1e-9)}, p90 {fmt_time(s['raw_p90_ns'] * 1e-9)}")
        t.add("sample / raw", fmt_ratio(s["ratio"]), f"target ≤ 1.50; {s['iters']} interleaved iterations")
        if "observe_median_ns" in s:
            extra = s.get("observe_extra_files", 4)
            t.add(f"observe() = one watch tick (+{extra} settings)", fmt_time(s["observe_median_ns"] * 1e-9))
            raw_obs = s.get("raw_obs_median_ns", s.get("raw7_median_ns"))
            t.add(f"the same raw read + {extra} setting files", fmt_time(raw_obs * 1e-9))
            t.add("observe / raw", fmt_ratio(s["observe_ratio"]))

    # 2b. issue 10
    d = load(os.path.join(res, "sample10.json"))
    if d:
        md = {k: v[0] * 1e-9 for k, v in d["medians_ns"].items()}
        rows = d.get("rows", {})
        fakes = sorted((k for k in rows if k.startswith("fake")), key=lambda k: rows[k])
        t.section(f"2b. issue 10: full sample / the last release's (count + max + stat file), "
                  f"in-process, {d['iters']} interleaved iterations")
        t.add(f"real ({d.get('cpus_real', '?')} CPUs): last release's sample", fmt_time(md.get("real/release_sample")))
        t.add("real: full sample, counters over ctnetlink", fmt_time(md.get("real/full_sample")),
              f"{fmt_ratio(ratio(md.get('real/full_sample'), md.get('real/release_sample')))}; target ≤ 2.00")
        t.add("real: full sample, counters from procfs", fmt_time(md.get("real/full_sample_procfs")),
              fmt_ratio(ratio(md.get("real/full_sample_procfs"), md.get("real/release_sample"))))
        t.add("real: watch step = observe() + assess()", fmt_time(md.get("real/watch_step")),
              fmt_ratio(ratio(md.get("real/watch_step"), md.get("real/release_sample"))) + " of the last release's sample")
        for part, what in (("fill", "count + max"), ("ct_netlink", "counters over ctnetlink"),
                           ("ct_procfs", "counters from procfs"), ("snmp", "snmp + snmp6"),
                           ("softnet", "softnet_stat")):
            if f"real/{part}" in md:
                t.add(f"  real: {what}", fmt_time(md[f"real/{part}"]), "read and parse")
        raws = [k for k in md if k.startswith("real/raw:")]
        for k in raws:
            what = "bare ctnetlink dump" if k == "real/raw:ctnetlink" else f"bare read of {k[9:]}"
            t.add(f"  real: {what}", fmt_time(md[k]), "the kernel's side and the system calls")
        for f in fakes:
            n = rows[f]
            t.add(f"fake root, {n} CPU rows: last release's sample", fmt_time(md.get(f"{f}/release_sample")))
            t.add(f"fake root, {n} CPU rows: full sample (procfs counters)", fmt_time(md.get(f"{f}/full_sample_procfs")),
                  fmt_ratio(ratio(md.get(f"{f}/full_sample_procfs"), md.get(f"{f}/release_sample"))))
            t.add(f"fake root, {n} CPU rows: watch step", fmt_time(md.get(f"{f}/watch_step")),
                  fmt_ratio(ratio(md.get(f"{f}/watch_step"), md.get(f"{f}/release_sample"))))
        # The kernel's side at its measured 2-CPU cost, added to the fake
        # roots' user-space cost: a lower bound for a real machine.
        lo = next((f for f in fakes if rows[f] == d.get("cpus_real")), None)
        if lo:
            def kernel(case):
                a, b = md.get(f"real/{case}"), md.get(f"{lo}/{case}")
                return None if a is None or b is None else a - b
            for f in fakes:
                if f == lo:
                    continue
                rel = md[f"{f}/release_sample"] + kernel("release_sample")
                full = md[f"{f}/full_sample_procfs"] + kernel("full_sample_procfs")
                step = md[f"{f}/watch_step"] + kernel("watch_step")
                t.add(f"estimate at {rows[f]} CPUs, kernel side as at {d.get('cpus_real')}: full / last release",
                      fmt_ratio(full / rel), f"watch step / last release {fmt_ratio(step / rel)}; a lower bound")
        t.add("not simulated by a fake root", "-",
              "ctnetlink (one kernel message per possible CPU), the kernel's side of each procfs read")

    # 3. table size
    sizes = collect_sizes(res)
    if sizes:
        body = columns(
            ["entries", "sample", "raw read", "status (process)", "conntrack -C", "conntrack -L|wc -l", "-L listed"],
            [[str(r["count"]), fmt_time(r.get("sample_s")), fmt_time(r.get("raw_s")),
              fmt_time(r.get("status_s")), fmt_time(r.get("ct_count_s")),
              fmt_time(r.get("ct_list_s")), str(r.get("listed", "?"))]
             for r in sizes])
        body += ("\n  sample and raw read: in-process medians (tests/bench/sampler); the others: whole"
                 "\n  processes under hyperfine (`conntrack-guard status --window 0` takes one reading).")
        t.text("3. cost of one reading against table size (host netns of the DNAT topology)", body)
        t.section("3. ratios, largest / smallest table")
        lo, hi = sizes[0], sizes[-1]
        t.add(f"sample, {hi['count']} / {lo['count']} entries",
              fmt_ratio(ratio(hi.get("sample_s"), lo.get("sample_s"))), "target ≤ 1.10")
        t.add("conntrack-guard status --window 0",
              fmt_ratio(ratio(hi.get("status_s"), lo.get("status_s"))))
        t.add("raw read",
              fmt_ratio(ratio(hi.get("raw_s"), lo.get("raw_s"))))
        t.add("conntrack -C", fmt_ratio(ratio(hi.get("ct_count_s"), lo.get("ct_count_s"))))
        t.add("conntrack -L | wc -l", fmt_ratio(ratio(hi.get("ct_list_s"), lo.get("ct_list_s"))))
        if args.svg:
            plot_svg(sizes, args.svg, meta)
            t.add("plot", os.path.relpath(args.svg), "(regenerated by this run)")

    # 4. memory
    m = load(os.path.join(res, "memory.json"))
    if m:
        t.section("4. peak RSS (VmHWM)")
        t.add("conntrack-guard watch", fmt_mib(m.get("watch_kib")),
              f"after {m.get('watch_samples', '?')} samples at {m.get('watch_interval', '?')}; target ≤ 2 MiB")
        t.add("earlyoom", fmt_mib(m.get("earlyoom_kib")), m.get("earlyoom_note", ""))
        t.add("prometheus-node-exporter (conntrack only)", fmt_mib(m.get("node_exporter_kib")),
              m.get("node_exporter_note", ""))
        sm = os.path.join(res, "watch-smaps.txt")
        if os.path.exists(sm):
            parts = {}
            for line in open(sm):
                k, _, v = line.rpartition(" ")
                parts[k] = int(v)
            kmod = sum(v for k, v in parts.items()
                       if re.match(r"lib(crypto|lzma|zstd|kmod)\.", k))
            anon = None
            try:
                for line in open(os.path.join(res, "watch-status.txt")):
                    if line.startswith("RssAnon:"):
                        anon = int(line.split()[1])
            except OSError:
                pass
            t.add("  of which libkmod + libcrypto, liblzma, libzstd", fmt_mib(kmod), "resident file pages")
            t.add("  of which libc + ld.so", fmt_mib(sum(v for k, v in parts.items()
                                                        if re.match(r"(libc\.|ld-linux)", k))))
            t.add("  of which the conntrack-guard binary", fmt_mib(parts.get("conntrack-guard")))
            t.add("  of which anonymous (RssAnon: heap, stack, relocated pages)", fmt_mib(anon))
        for name, (pss, priv) in (m.get("pss_private_kib") or {}).items():
            if pss is not None:
                t.add(f"{name}: Pss / private", f"{fmt_mib(pss)} / {fmt_mib(priv)}",
                      "shared pages split among users / pages nobody shares")
        t.add("watch / earlyoom", fmt_ratio(ratio(m.get("watch_kib"), m.get("earlyoom_kib"))))
        t.add("watch / node-exporter", fmt_ratio(ratio(m.get("watch_kib"), m.get("node_exporter_kib"))))

    # 5. size
    b = load(os.path.join(res, "binary.json"))
    if b:
        t.section("5. release binary")
        t.add("target/release/conntrack-guard", f"{b['bytes'] / 1048576:.2f} MiB",
              f"{b['bytes']} bytes, {b.get('file', '')}; target ≤ 1.5 MiB")
        for v in b.get("variants", []):
            t.add(f"  profile: {v['name']}",
                  "n/a" if v.get("bytes") is None else f"{v['bytes'] / 1048576:.2f} MiB",
                  v.get("note", ""))

    # 6. detection
    d = load(os.path.join(res, "detection.json"))
    if d:
        t.section("6. detection in the netns reproduction (watch at the default interval)")
        for i, lat in enumerate(d.get("latencies_s", [])):
            t.add(f"80% crossing -> level_warning, cycle {i + 1}", fmt_time(lat))
        if d.get("latencies_s"):
            t.add("median latency", fmt_time(statistics.median(d["latencies_s"])),
                  f"interval {d.get('interval', '5s')}; expected uniform in [0, interval]")
        for k in ("drop", "early_drop", "insert_failed"):
            if k in d.get("kernel_delta", {}):
                t.add(f"{k}: kernel change / sum of event deltas",
                      f"{d['kernel_delta'][k]} / {d['event_sum'].get(k)}",
                      "equal" if d["kernel_delta"][k] == d["event_sum"].get(k) else "DIFFERENT")
        if "drops_events" in d:
            t.add("drops events", str(d["drops_events"]))
    t.print()
    return 0


# --------------------------------------------------------------------------
# the plot, as hand-written SVG (no matplotlib needed)


def plot_svg(rows, out, meta):
    series = [
        ("conntrack -L | wc -l (process)", "ct_list_s", "#d62728", "8,4"),
        ("conntrack -C (process)", "ct_count_s", "#ff7f0e", "3,3"),
        ("conntrack-guard status --window 0 (process)", "status_s", "#2ca02c", "10,3,2,3"),
        ("conntrack-guard sample (in-process)", "sample_s", "#1f77b4", ""),
        ("open+read of the same 3 files (in-process)", "raw_s", "#7f7f7f", "1,3"),
    ]
    pts = {k: [(r["count"], r[k]) for r in rows if r.get(k)] for _, k, _, _ in series}
    xs = [x for v in pts.values() for x, _ in v]
    ys = [y for v in pts.values() for _, y in v]
    if not xs or not ys:
        return
    W, H = 780, 500
    L, R, T, B = 80, 40, 56, 140
    x0, x1 = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
    if x1 == x0:
        x1 += 1
    y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    if y1 == y0:
        y1 += 1

    def px(x):
        return L + (math.log10(x) - x0) / (x1 - x0) * (W - L - R)

    def py(y):
        return T + (1 - (math.log10(y) - y0) / (y1 - y0)) * (H - T - B)

    def tlabel(e):
        s = 10.0 ** e
        if s >= 1:
            return f"{s:g} s"
        if s >= 1e-3:
            return f"{s * 1e3:g} ms"
        return f"{s * 1e6:g} µs"

    o = []
    o.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">')
    o.append(f'<rect width="{W}" height="{H}" fill="white"/>')
    o.append(f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">'
             'Cost of one reading against conntrack table size</text>')
    o.append(f'<text x="{W / 2}" y="38" text-anchor="middle" fill="#555" font-size="11">'
             f'median time per reading, log-log scales; {esc(meta.get("date", ""))}</text>')
    o.append(f'<text x="{W / 2}" y="52" text-anchor="middle" fill="#555" font-size="11">'
             f'{esc(meta.get("machine", ""))}, kernel {esc(meta.get("kernel", ""))}</text>')
    # grid and axes
    for e in range(x0, x1 + 1):
        X = px(10 ** e)
        o.append(f'<line x1="{X:.1f}" y1="{T}" x2="{X:.1f}" y2="{H - B}" stroke="#ddd"/>')
        o.append(f'<text x="{X:.1f}" y="{H - B + 16}" text-anchor="middle">{10 ** e:,}</text>')
    for e in range(y0, y1 + 1):
        Y = py(10 ** e)
        o.append(f'<line x1="{L}" y1="{Y:.1f}" x2="{W - R}" y2="{Y:.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{L - 6}" y="{Y + 4:.1f}" text-anchor="end">{tlabel(e)}</text>')
    o.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#333"/>')
    o.append(f'<text x="{(L + W - R) / 2}" y="{H - B + 34}" text-anchor="middle">'
             'entries in the netns conntrack table</text>')
    o.append(f'<text transform="translate(18,{(T + H - B) / 2}) rotate(-90)" text-anchor="middle">'
             'time per reading</text>')
    # series
    for i, (name, key, colour, dash) in enumerate(series):
        p = sorted(pts[key])
        if not p:
            continue
        d = " ".join(f"{'M' if j == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for j, (x, y) in enumerate(p))
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        o.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/>')
        for x, y in p:
            o.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{colour}">'
                     f'<title>{esc(name)}: {x} entries, {fmt_time(y)}</title></circle>')
        # legend
        lx = L + (i % 2) * 340
        ly = H - B + 58 + (i // 2) * 20
        o.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 30}" y2="{ly - 4}" stroke="{colour}" '
                 f'stroke-width="2"{dash_attr}/>')
        o.append(f'<text x="{lx + 38}" y="{ly}">{esc(name)}</text>')
    o.append(f'<text x="{W - R}" y="{H - 8}" text-anchor="end" fill="#777" font-size="10">'
             'generated by tests/bench/run.sh</text>')
    o.append("</svg>")
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(o) + "\n")
    os.replace(tmp, out)


# --------------------------------------------------------------------------
# meta (date, kernel, machine) for the reports and plots


def cmd_meta(args):
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1048576
    osr = {}
    with open("/etc/os-release") as f:
        for line in f:
            k, _, v = line.strip().partition("=")
            osr[k] = v.strip('"')
    kind = f"{args.vm.upper()} VM" if args.vm not in ("none", "") else "machine"
    if args.container not in ("none", ""):
        kind += f" (inside a {args.container} container)"
    with open(args.out, "w") as f:
        json.dump({
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "commit": args.commit,
            "machine": f"{os.cpu_count()}-core {kind}, {osr.get('PRETTY_NAME', '?')}, {mem:.0f} GiB RAM",
        }, f, indent=1)
    return 0


# --------------------------------------------------------------------------
# top-report: tests/bench/top.sh's figures and the top-cost plot

TOP_SERIES = [
    # (legend, key, colour, dash): the colours and dashes of sample-cost.svg
    # for the same roles (conntrack -L red, the product blue, the bare
    # kernel read grey).
    ("conntrack -L | awk | sort | uniq -c | sort -rn | head", "pipeline", "#d62728", "8,4"),
    ("conntrack-guard top --json", "top", "#1f77b4", ""),
    ("bare ctnetlink dump, received and discarded (ctdump_floor.c)", "floor", "#7f7f7f", "1,3"),
]
RSS_COLOUR = "#9467bd"


def collect_top(res):
    """<N>.json from top.sh -> rows sorted by the measured entry count."""
    rows = []
    for name in os.listdir(res):
        m = re.fullmatch(r"(\d+)\.json", name)
        if not m:
            continue
        d = load(os.path.join(res, name))
        if not d or "times" not in d:
            continue
        t = d["times"]
        row = {"target": int(m.group(1)), "count": int(d.get("count", m.group(1))),
               "runs": len(t.get("top", []))}
        for k in ("top", "floor", "pipeline"):
            row[k] = statistics.median(t[k]) if t.get(k) else None

        def per_round(a, b):
            pairs = [x / y for x, y in zip(t.get(a, []), t.get(b, [])) if y]
            return statistics.median(pairs) if pairs else None
        row["top/floor"] = per_round("top", "floor")
        row["top/pipeline"] = per_round("top", "pipeline")
        rss = sorted(d.get("rss_kib") or [])
        row["rss_kib"] = rss[len(rss) // 2] if rss else None
        row["rss_range"] = (rss[0], rss[-1]) if rss else None
        rows.append(row)
    rows.sort(key=lambda r: r["count"])
    return rows


def cmd_top_report(args):
    res = args.results
    meta = load(os.path.join(res, "meta.json")) or {}
    rows = collect_top(res)
    print(f"conntrack-guard top benchmark, {meta.get('date', '?')}: {meta.get('machine', '')}")
    print(f"kernel {meta.get('kernel', '?')}, commit {meta.get('commit', '?')}; "
          "medians of interleaved rounds; ratios are medians of per-round ratios")
    if not rows:
        print("no results in", res)
        return 1
    print(columns(
        ["entries", "top", "bare dump", "pipeline", "top/dump", "top/pipeline", "top peak RSS", "rounds"],
        [[str(r["count"]), fmt_time(r["top"]), fmt_time(r["floor"]), fmt_time(r["pipeline"]),
          fmt_ratio(r["top/floor"]), fmt_ratio(r["top/pipeline"]), fmt_mib(r["rss_kib"]),
          str(r["runs"])] for r in rows]))
    if args.svg:
        plot_top_svg(rows, args.svg, meta)
        print(f"  plot: {os.path.relpath(args.svg)} (regenerated by this run)")
    return 0


def nice_up(v):
    """The smallest 1, 2 or 5 times a power of ten that is >= v."""
    e = math.floor(math.log10(v))
    for m in (1, 2, 5):
        if m * 10 ** e >= v:
            return m * 10 ** e
    return 10 ** (e + 1)


def nice_down(v):
    """The largest 1, 2 or 5 times a power of ten that is <= v."""
    e = math.floor(math.log10(v))
    for m in (5, 2, 1):
        if m * 10 ** e <= v:
            return m * 10 ** e
    return 10 ** e


def steps125(lo, hi):
    """1, 2 and 5 times powers of ten from lo to hi (both such values)."""
    out = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9):
                out.append(v)
    return out


def plot_top_svg(rows, out, meta):
    """The look of plot_svg (size, fonts, grid, colours, legend), with a
    1-2-5 grid on both log axes (so 200,000 entries do not stretch the
    size axis to a million) and top's peak RSS on a linear right-hand
    axis."""
    pts = {k: [(r["count"], r[k]) for r in rows if r.get(k)] for _, k, _, _ in TOP_SERIES}
    rss = [(r["count"], r["rss_kib"] / 1024) for r in rows if r.get("rss_kib")]
    xs = [x for v in pts.values() for x, _ in v]
    ys = [y for v in pts.values() for _, y in v]
    if not xs or not ys:
        return
    W, H = 780, 500
    L, R, T, B = 80, 70, 56, 140
    # The measured count is the planned size plus an entry or two (the
    # bridge's IGMP entry): 200,001 still ends the axis at 200,000.
    xa, xb = nice_down(min(xs) * 1.01), nice_up(max(xs) / 1.01)
    ya, yb = nice_down(min(ys)), nice_up(max(ys))
    if xb <= xa:
        xb = nice_up(xa * 1.5)
    if yb <= ya:
        yb = nice_up(ya * 1.5)
    lx0, lx1 = math.log10(xa), math.log10(xb)
    y0, y1 = math.log10(ya), math.log10(yb)
    # right axis: MiB from 0 to a whole number above the largest RSS, at
    # least 4 (top's target is <= 4 MiB at the largest size)
    r1 = max(4, math.ceil(max((v for _, v in rss), default=0) + 0.5))

    def px(x):
        return L + (math.log10(x) - lx0) / (lx1 - lx0) * (W - L - R)

    def py(y):
        return T + (1 - (math.log10(y) - y0) / (y1 - y0)) * (H - T - B)

    def pr(mib):
        return T + (1 - mib / r1) * (H - T - B)

    def tlabel(s):
        if s >= 1:
            return f"{s:.3g} s"
        if s >= 1e-3:
            return f"{s * 1e3:.3g} ms"
        return f"{s * 1e6:.3g} µs"

    o = []
    o.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">')
    o.append(f'<rect width="{W}" height="{H}" fill="white"/>')
    o.append(f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">'
             'Cost of conntrack-guard top against conntrack table size</text>')
    o.append(f'<text x="{W / 2}" y="38" text-anchor="middle" fill="#555" font-size="11">'
             f'median wall clock per run (whole process), log-log scales; {esc(meta.get("date", ""))}</text>')
    o.append(f'<text x="{W / 2}" y="52" text-anchor="middle" fill="#555" font-size="11">'
             f'{esc(meta.get("machine", ""))}, kernel {esc(meta.get("kernel", ""))}</text>')
    # grid and axes: sizes at 1, 2 and 5 times a power of ten
    for v in steps125(xa, xb):
        X = px(v)
        o.append(f'<line x1="{X:.1f}" y1="{T}" x2="{X:.1f}" y2="{H - B}" stroke="#ddd"/>')
        o.append(f'<text x="{X:.1f}" y="{H - B + 16}" text-anchor="middle">{round(v):,}</text>')
    for v in steps125(ya, yb):
        Y = py(v)
        o.append(f'<line x1="{L}" y1="{Y:.1f}" x2="{W - R}" y2="{Y:.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{L - 6}" y="{Y + 4:.1f}" text-anchor="end">{tlabel(v)}</text>')
    if rss:
        for v in range(0, r1 + 1):
            Y = pr(v)
            o.append(f'<line x1="{W - R}" y1="{Y:.1f}" x2="{W - R + 5}" y2="{Y:.1f}" stroke="{RSS_COLOUR}"/>')
            o.append(f'<text x="{W - R + 8}" y="{Y + 4:.1f}" fill="{RSS_COLOUR}">{v} MiB</text>')
        o.append(f'<text transform="translate({W - 10},{(T + H - B) / 2}) rotate(90)" text-anchor="middle" '
                 f'fill="{RSS_COLOUR}">peak RSS of top</text>')
    o.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#333"/>')
    o.append(f'<text x="{(L + W - R) / 2}" y="{H - B + 34}" text-anchor="middle">'
             'entries in the netns conntrack table</text>')
    o.append(f'<text transform="translate(18,{(T + H - B) / 2}) rotate(-90)" text-anchor="middle">'
             'time per run</text>')
    # series
    legend = []
    for name, key, colour, dash in TOP_SERIES:
        p = sorted(pts[key])
        if not p:
            continue
        d = " ".join(f"{'M' if j == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for j, (x, y) in enumerate(p))
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        o.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/>')
        for x, y in p:
            o.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{colour}">'
                     f'<title>{esc(name)}: {x} entries, {fmt_time(y)}</title></circle>')
        if key == "top":
            # top / bare dump, the median of per-round ratios: the figure
            # the README quotes (the medians of the times can disagree with
            # it by a few % on a busy machine)
            for r in rows:
                if r.get("top") and r.get("top/floor"):
                    X = px(r["count"])
                    # clear of the frame at either end
                    anchor = "start" if X - L < 20 else "end" if W - R - X < 20 else "middle"
                    X += {"start": 4, "end": -4, "middle": 0}[anchor]
                    o.append(f'<text x="{X:.1f}" y="{py(r["top"]) - 9:.1f}" text-anchor="{anchor}" '
                             f'font-size="10" fill="{colour}">{fmt_ratio(r["top/floor"])}</text>')
            name += " (labels: top / bare dump, median of per-round ratios)"
        legend.append((name, colour, dash_attr, "circle"))
    if rss:
        p = sorted(rss)
        d = " ".join(f"{'M' if j == 0 else 'L'}{px(x):.1f},{pr(y):.1f}" for j, (x, y) in enumerate(p))
        dash_attr = ' stroke-dasharray="6,2,1,2"'
        o.append(f'<path d="{d}" fill="none" stroke="{RSS_COLOUR}" stroke-width="2"{dash_attr}/>')
        for x, y in p:
            o.append(f'<rect x="{px(x) - 3.5:.1f}" y="{pr(y) - 3.5:.1f}" width="7" height="7" fill="{RSS_COLOUR}">'
                     f'<title>peak RSS of top: {x} entries, {y:.2f} MiB</title></rect>')
        legend.append(("peak RSS of conntrack-guard top (right axis)", RSS_COLOUR, dash_attr, "square"))
    # legend: one entry a row, the full names are long
    for i, (name, colour, dash_attr, _) in enumerate(legend):
        lx = L
        ly = H - B + 58 + i * 18
        o.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 30}" y2="{ly - 4}" stroke="{colour}" '
                 f'stroke-width="2"{dash_attr}/>')
        o.append(f'<text x="{lx + 38}" y="{ly}">{esc(name)}</text>')
    o.append(f'<text x="{W - R}" y="{H - 8}" text-anchor="end" fill="#777" font-size="10">'
             'generated by tests/bench/top.sh</text>')
    o.append("</svg>")
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(o) + "\n")
    os.replace(tmp, out)


# --------------------------------------------------------------------------
# paired whole-process timing, smaps breakdown, size report (issue 19)


def spawn_wait_ns(argv, devnull, env=None):
    """Wall time of one whole process, spawn to reap, in ns, its exit
    code, and its CPU time (user + system, the kernel's accounting) in ns."""
    t0 = time.perf_counter_ns()
    pid = os.posix_spawnp(argv[0], argv, os.environ if env is None else env,
                          file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 0),
                                        (os.POSIX_SPAWN_DUP2, devnull, 1),
                                        (os.POSIX_SPAWN_DUP2, devnull, 2)])
    _, status, ru = os.wait4(pid, 0)
    t1 = time.perf_counter_ns()
    return t1 - t0, os.waitstatus_to_exitcode(status), int((ru.ru_utime + ru.ru_stime) * 1e9)


def cmd_paired(args):
    a, b = shlex.split(args.a), shlex.split(args.b)
    env = dict(os.environ)
    for kv in args.env:
        k, _, v = kv.partition("=")
        env[k] = v
    devnull = os.open(os.devnull, os.O_RDWR)
    for _ in range(args.warmup):
        spawn_wait_ns(a, devnull, env)
        spawn_wait_ns(b, devnull, env)
    ta, tb, ca, cb, bad = [], [], [], [], 0
    for _ in range(args.runs):
        x, ra, cx = spawn_wait_ns(a, devnull, env)
        y, rb, cy = spawn_wait_ns(b, devnull, env)
        bad += (ra != 0) + (rb != 0)
        ta.append(x)
        tb.append(y)
        ca.append(cx)
        cb.append(cy)
    ratios = sorted(x / y for x, y in zip(ta, tb))
    q = lambda v, f: sorted(v)[int(f * (len(v) - 1))]
    out = {"a": args.a, "b": args.b, "env": args.env, "runs": args.runs, "nonzero_exits": bad,
           "a_median_ns": statistics.median(ta), "b_median_ns": statistics.median(tb),
           "a_min_ns": min(ta), "b_min_ns": min(tb),
           "ratio_median": statistics.median(ratios),
           "ratio_p25": q(ratios, 0.25), "ratio_p75": q(ratios, 0.75),
           # CPU time is less disturbed than wall time by other work on
           # the same cores (it misses time spent waiting for a core).
           "a_cpu_median_ns": statistics.median(ca), "b_cpu_median_ns": statistics.median(cb),
           "cpu_ratio": statistics.median(ca) / max(1, statistics.median(cb))}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    return 0 if bad == 0 else 1


def smaps_mappings(path):
    """[(pathname, {field: kB})] for each mapping of a smaps copy."""
    maps = []
    for line in open(path):
        f = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+$", f[0]) and len(f) >= 5:
            maps.append((" ".join(f[5:]), {}))
        elif maps and len(f) >= 2 and f[0].endswith(":") and f[1].isdigit():
            maps[-1][1][f[0][:-1]] = int(f[1])
    return maps


def smaps_breakdown(path, binname="conntrack-guard"):
    """{"file": {what: kB}, "anon": {what: kB}}: Rss split by mapping.

    A file mapping's Rss is its file pages plus its copy-on-write pages
    (the smaps field Anonymous: relocations, .data, .bss); those count as
    anonymous, under the file's name.
    """
    def who(name):
        base = os.path.basename(name.split(" (deleted)")[0])
        if base == binname:
            return "binary"
        if re.match(r"libc\.so", base):
            return "libc"
        if re.match(r"ld-linux.*\.so", base):
            return "ld.so"
        return base
    file, anon = {}, {}
    for name, v in smaps_mappings(path):
        rss, an = v.get("Rss", 0), v.get("Anonymous", 0)
        if name.startswith("["):
            kind = ("heap" if name == "[heap]" else
                    "stacks" if name.startswith("[stack") else
                    "vdso/vvar" if name in ("[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]") else name)
            if kind == "vdso/vvar":
                file[kind] = file.get(kind, 0) + rss
            else:
                anon[kind] = anon.get(kind, 0) + rss
        elif name == "":
            anon["anonymous mappings"] = anon.get("anonymous mappings", 0) + rss
        else:
            w = who(name)
            file[w] = file.get(w, 0) + rss - an
            if an:
                anon[f"copy-on-write in {w}"] = anon.get(f"copy-on-write in {w}", 0) + an
    return {"file": file, "anon": anon}


def smaps_rows(bd):
    """Rows (label, KiB) for printing, file pages then anonymous."""
    rows = []
    order = ["binary", "libc", "ld.so"]
    f = bd["file"]
    rows.append(("file-backed, total", sum(f.values())))
    for k in order + sorted((k for k in f if k not in order), key=lambda k: -f[k]):
        if k in f and f[k]:
            rows.append((f"  {k}", f[k]))
    a = bd["anon"]
    rows.append(("anonymous, total", sum(a.values())))
    for k in sorted(a, key=lambda k: -a[k]):
        if a[k]:
            rows.append((f"  {k}", a[k]))
    return rows


def cmd_smaps(args):
    for label, kib in smaps_rows(smaps_breakdown(args.smaps, args.bin)):
        print(f"{label:<40} {kib:>6} KiB")
    return 0


BACKTRACE = ("gimli", "addr2line", "rustc_demangle", "miniz_oxide", "backtrace_rs")


def symbol_crate(name):
    """The crate a demangled symbol belongs to, by its first path segment.

    `<T as Trait>::f` counts for T's crate. Generic code of core/alloc
    instantiated for another crate's types still counts as core/alloc,
    except that anything mentioning the backtrace symbolizer counts there.
    """
    if "short_backtrace" not in name and any(k in name for k in BACKTRACE):
        return "(std backtrace symbolizer)"
    m = re.match(r"^<+(?:&mut |&|\*const |\*mut |dyn |\[)*([A-Za-z_][A-Za-z0-9_]*)", name) \
        or re.match(r"^([A-Za-z_][A-Za-z0-9_]*)::", name)
    if not m:
        return "(C, compiler-builtins, other)"
    c = m.group(1)
    if c in ("u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128",
             "isize", "f32", "f64", "str", "char", "bool", "T", "F", "mut"):
        return "core (impls on primitives)"
    return c


def cmd_symbols(args):
    import subprocess
    out = subprocess.run(["nm", "--size-sort", "-S", "-C", args.binary],
                         capture_output=True, text=True, check=True).stdout
    crates, fns, sort = {}, [], 0
    for line in out.splitlines():
        p = line.split(" ", 3)
        if len(p) < 4 or p[2] not in "Tt":
            continue
        size, name = int(p[1], 16), p[3]
        c = symbol_crate(name)
        crates[c] = crates.get(c, 0) + size
        fns.append((size, name))
        if "core::slice::sort::" in name and c != "(std backtrace symbolizer)":
            sort += size
    total = sum(crates.values())
    print(f"text symbols: {total} bytes")
    for c, v in sorted(crates.items(), key=lambda kv: -kv[1]):
        if v >= 1024:
            print(f"  {v:8d}  {100 * v / total:5.1f}%  {c}")
    print(f"  stable-sort instantiations outside the symbolizer: {sort} bytes")
    mods = {}
    for size, name in fns:
        m = re.match(r"^<?conntrack_guard::([a-z_0-9]+)", name)
        if m:
            mods[m.group(1)] = mods.get(m.group(1), 0) + size
    print("conntrack_guard by module:")
    for k, v in sorted(mods.items(), key=lambda kv: -kv[1]):
        if v >= 1024:
            print(f"  {v:8d}  {k}")
    print(f"largest {args.top} functions:")
    for size, name in sorted(fns, reverse=True)[:args.top]:
        print(f"  {size:8d}  {name[:110]}")
    return 0


def cmd_size_report(args):
    res = args.results
    t = Table()
    meta = load(os.path.join(res, "meta.json")) or {}
    print(f"conntrack-guard size and weight (issue 19), {meta.get('date', '?')}: "
          f"{meta.get('machine', '')}; commit {meta.get('commit', '?')}")
    b = load(os.path.join(res, "binary.json"))
    if b:
        t.section("binary")
        t.add("stripped release binary", f"{b['bytes']} bytes",
              f"{b['bytes'] / 1048576:.3f} MiB, {b.get('file', '')}; target ≤ 0.8 MiB (838861 bytes)")
    a = hf_medians(os.path.join(res, "apply.json"))
    names = ("apply-paired-c-tmpfs.json", "apply-paired-c.json", "apply-paired.json")
    pairs = [(f, load(os.path.join(res, f))) for f in names]
    run_fs = (load(os.path.join(res, "apply-runfs.json")) or {}).get("run_fs", "?")
    if a or any(p for _, p in pairs):
        t.section("apply vs sysctl -p FILE, the same 4 keys at their current values (whole process)")
    for f, p in pairs:
        if not p:
            continue
        where = {"apply-paired-c-tmpfs.json":
                 "LC_ALL=C, /run/conntrack-guard on a tmpfs (as on a systemd host)",
                 "apply-paired-c.json":
                 f"LC_ALL=C (procps loads no locale files), /run on {run_fs}"}.get(
                     f, f"the caller's locale (LANG={os.environ.get('LANG', '')}), /run on {run_fs}")
        t.add(f"A B A B, {where}", "", "")
        t.add("  apply", fmt_time(p["a_median_ns"] * 1e-9), f"median of {p['runs']} runs")
        t.add("  sysctl -p", fmt_time(p["b_median_ns"] * 1e-9))
        t.add("  apply / sysctl -p (median of pair ratios)", fmt_ratio(p["ratio_median"]),
              f"IQR {p['ratio_p25']:.2f}-{p['ratio_p75']:.2f}; target ≤ 1.00")
        if "cpu_ratio" in p:
            t.add("  the same in CPU time (user + system)", fmt_ratio(p["cpu_ratio"]),
                  f"{fmt_time(p['a_cpu_median_ns'] * 1e-9)} / {fmt_time(p['b_cpu_median_ns'] * 1e-9)}")
    if a:
        cg = a.get("conntrack-guard apply", {}).get("median")
        pp = a.get("sysctl -p", {}).get("median")
        fl = a.get("conntrack-guard --version", {}).get("median")
        t.add("apply / sysctl -p (hyperfine medians)", fmt_ratio(ratio(cg, pp)),
              f"{fmt_time(cg)} / {fmt_time(pp)}; --version {fmt_time(fl)}; "
              "one command after the other, so it drifts with the machine: quote the pairs")
    m = load(os.path.join(res, "memory.json"))
    sm = os.path.join(res, "watch-smaps-raw.txt")
    if m:
        t.section(f"watch --interval 1ms after {m.get('watch_samples', '?')} samples (real kernel)")
        t.add("VmHWM", f"{m.get('watch_kib')} KiB", fmt_mib(m.get("watch_kib")))
        try:
            for line in open(os.path.join(res, "watch-status.txt")):
                k, v = line.split(":", 1)
                if k != "VmHWM":
                    t.add(k, v.strip())
        except OSError:
            pass
    if os.path.exists(sm):
        bd = smaps_breakdown(sm, args.bin)
        t.section("resident memory by mapping at the end (Rss, KiB)")
        for label, kib in smaps_rows(bd):
            note = "target ≤ 256 KiB" if label == "anonymous, total" else ""
            t.add(label, str(kib), note)
    t.print()
    return 0


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("stamp")
    p.add_argument("out")
    p.add_argument("--max-seconds", type=float, default=900)
    p = sub.add_parser("poll-fill")
    p.add_argument("out")
    p.add_argument("--percent", type=float, required=True)
    p.add_argument("--every", type=float, default=0.05)
    p.add_argument("--max-seconds", type=float, default=300)
    p.add_argument("--stop-file")
    p = sub.add_parser("report")
    p.add_argument("results")
    p.add_argument("--svg")
    p = sub.add_parser("top-report")
    p.add_argument("results")
    p.add_argument("--svg")
    p = sub.add_parser("meta")
    p.add_argument("out")
    p.add_argument("--commit", default="unknown")
    p.add_argument("--vm", default="none")
    p.add_argument("--container", default="none")
    p = sub.add_parser("events")
    p.add_argument("file")
    p.add_argument("name")
    p = sub.add_parser("paired")
    p.add_argument("out")
    p.add_argument("--a", required=True)
    p.add_argument("--b", required=True)
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--env", action="append", default=[], metavar="K=V",
                   help="set K=V for both commands (repeatable)")
    p = sub.add_parser("smaps")
    p.add_argument("smaps")
    p.add_argument("--bin", default="conntrack-guard")
    p = sub.add_parser("symbols")
    p.add_argument("binary")
    p.add_argument("--top", type=int, default=15)
    p = sub.add_parser("size-report")
    p.add_argument("results")
    p.add_argument("--bin", default="conntrack-guard", help="the binary's file name, for smaps")
    args = ap.parse_args()
    return {"stamp": cmd_stamp, "poll-fill": cmd_poll_fill,
            "report": cmd_report, "top-report": cmd_top_report, "meta": cmd_meta,
            "events": cmd_events, "paired": cmd_paired, "smaps": cmd_smaps, "symbols": cmd_symbols,
            "size-report": cmd_size_report}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
