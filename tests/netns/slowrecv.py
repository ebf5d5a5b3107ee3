#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""A UDP receiver that reads too slowly, with the smallest receive buffer.

  slowrecv.py ADDR PORT SECONDS READ_EVERY_S

Binds ADDR:PORT with SO_RCVBUF at its minimum, reads one datagram every
READ_EVERY_S seconds for SECONDS (bounded), then prints
{"received": n}. Prints "ready" on stderr once bound.
"""
import json
import socket
import sys
import time


def main():
    addr, port, seconds, every = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
    s.bind((addr, port))
    s.settimeout(every)
    print("ready", file=sys.stderr, flush=True)
    end = time.monotonic() + min(seconds, 60.0)
    got = 0
    while time.monotonic() < end:
        try:
            s.recv(2048)
            got += 1
        except socket.timeout:
            pass
        time.sleep(every)
    print(json.dumps({"received": got}))


if __name__ == "__main__":
    main()
