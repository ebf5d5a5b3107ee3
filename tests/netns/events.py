#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Summarise conntrack-guard's stderr event lines as JSON.

CONTRACT.md: without journald, each event is one stderr line
  <priority>: EVENT=<name> KEY=value KEY=value ... MESSAGE="<text>"
with priority one of emerg alert crit err warning notice info debug.

  events.py FILE   prints {"events": [...names in order...],
                           "counts": {name: n}, "drop_delta_sum": n,
                           "delta_sums": {event: {FIELD_DELTA: n}},
                           "drops_lines": n, "other_lines": [...]}
"""
import json
import re
import shlex
import sys

LINE = re.compile(
    r"^(emerg|alert|crit|err|warning|notice|info|debug): EVENT=([a-z_]+)(?: (.*))?$")


def parse_fields(rest):
    # Values are bare words, or double-quoted (MESSAGE always is).
    fields = {}
    try:
        words = shlex.split(rest or "", posix=True)
    except ValueError:
        words = (rest or "").split()
    for w in words:
        k, sep, v = w.partition("=")
        if sep:
            fields[k] = v
    return fields


def main():
    events, counts, other = [], {}, []
    drop_sum = drops_lines = 0
    delta_sums = {}
    bad_delta = []
    with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.rstrip("\n")
            m = LINE.match(line)
            if not m:
                if line.strip():
                    other.append(line)
                continue
            prio, name, rest = m.groups()
            fields = parse_fields(rest)
            events.append({"priority": prio, "event": name, **fields})
            counts[name] = counts.get(name, 0) + 1
            for k, v in fields.items():
                if k.endswith("_DELTA") and v.isdigit():
                    per = delta_sums.setdefault(name, {})
                    per[k] = per.get(k, 0) + int(v)
            if name == "drops":
                drops_lines += 1
                v = fields.get("CONNTRACK_DROP_DELTA")
                if v is None or not v.isdigit():
                    bad_delta.append(line)
                else:
                    drop_sum += int(v)
    json.dump({
        "events": events,
        "names": [e["event"] for e in events],
        "counts": counts,
        "drop_delta_sum": drop_sum,
        "delta_sums": delta_sums,
        "drops_lines": drops_lines,
        "drops_lines_without_delta": bad_delta,
        "other_lines": other[:20],
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
