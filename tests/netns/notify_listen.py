#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""A stand-in NOTIFY_SOCKET: records every sd_notify datagram with its time.

  notify_listen.py SOCKET_PATH SECONDS OUT_JSON

Binds SOCKET_PATH, collects until the sender says STOPPING=1 (or for at
most SECONDS), then writes
{"messages": [[t, text], ...], "max_ping_gap": s} to OUT_JSON, where the
gap is the longest time between two WATCHDOG=1 keep-alives.
"""
import json
import os
import socket
import sys
import time

path, secs, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
try:
    os.unlink(path)
except FileNotFoundError:
    pass
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(0.2)
msgs = []
end = time.monotonic() + min(secs, 60)
while time.monotonic() < end:
    try:
        data = s.recv(4096)
    except socket.timeout:
        continue
    msgs.append([time.monotonic(), data.decode("utf-8", "replace")])
    # The watchdog's last word: the socket must outlive it, or its final
    # notify fails (and is logged as a fault).
    if "STOPPING=1" in msgs[-1][1].split("\n"):
        break
pings = [t for t, m in msgs if "WATCHDOG=1" in m.split("\n")]
gap = max((b - a for a, b in zip(pings, pings[1:])), default=None)
json.dump({"messages": msgs, "pings": len(pings), "max_ping_gap": gap}, open(out, "w"))
os.unlink(path)
