#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Find a journal entry in `journalctl -o json` output (stdin).

  journal-check.py MESSAGE_ID [FIELD[=VALUE] ...] [--max-priority N] [--min-priority N]

Exits 0 and prints the first entry (as KEY=value lines) that has the
MESSAGE_ID, every FIELD (with VALUE if given) and a PRIORITY in range;
otherwise exits 1 and says what the entries with that MESSAGE_ID lacked.
"""
import json
import sys


def main(argv):
    args = argv[1:]
    maxp, minp = 7, 0
    want = []
    i = 0
    while i < len(args):
        if args[i] == "--max-priority":
            maxp = int(args[i + 1])
            i += 2
        elif args[i] == "--min-priority":
            minp = int(args[i + 1])
            i += 2
        else:
            want.append(args[i])
            i += 1
    if not want:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    mid, fields = want[0], want[1:]
    seen = 0
    problems = []
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("MESSAGE_ID") != mid:
            continue
        seen += 1
        lacks = []
        for f in fields:
            k, _, v = f.partition("=")
            if k not in e:
                lacks.append(k)
            elif v and str(e[k]) != v:
                lacks.append(f"{k}={v} (is {e[k]})")
        try:
            p = int(e.get("PRIORITY", "6"))
        except ValueError:
            p = 6
        if not minp <= p <= maxp:
            lacks.append(f"PRIORITY in {minp}..{maxp} (is {p})")
        if lacks:
            problems.append(", ".join(lacks))
            continue
        for k in sorted(e):
            if k.startswith(("CONNTRACK_", "MESSAGE", "PRIORITY", "_SYSTEMD_UNIT", "SYSLOG_IDENTIFIER")):
                print(f"    {k}={e[k]}")
        return 0
    if not seen:
        print(f"    no entry with MESSAGE_ID={mid}")
    else:
        print(f"    {seen} entries with MESSAGE_ID={mid}, none matched; they lack: " + "; ".join(problems[:3]))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
