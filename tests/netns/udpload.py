#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Bounded UDP load for the netns incident test.

Two modes:

  udpload.py client --target IP:PORT --count N --rate R [--timeout-ms T]
                    [--first-port P] [--max-seconds S]
      Sends N tracker-like 16-byte connect requests at R per second. Every
      exchange uses a new socket bound to its own source port, so every
      exchange is a new conntrack entry on the NAT host (the tracker
      pattern). Replies are collected asynchronously for up to T ms each.
      Prints one JSON object: sent, answered, loss_percent, duration_s, ...

  udpload.py server --listen IP:PORT [--max-seconds S]
      Answers connect requests with a connect response, echoes anything
      else. Exits after S seconds whatever happens.

Both modes are bounded in count and in time; the caps below cannot be
raised from the command line.
"""

import argparse
import errno
import json
import os
import random
import resource
import selectors
import socket
import struct
import sys
import time

HARD_MAX_COUNT = 200_000
HARD_MAX_SECONDS = 120.0
HARD_MAX_RATE = 20_000
SERVER_HARD_MAX_SECONDS = 900.0

# BitTorrent UDP tracker (BEP 15) connect request: protocol id, action 0,
# transaction id. The responder answers with action 0, the same
# transaction id and an 8-byte connection id.
PROTOCOL_ID = 0x41727101980
CONNECT_REQ = struct.Struct(">QII")
CONNECT_RESP = struct.Struct(">IIQ")

# Source ports are assigned sequentially from this range (wrapping), so no
# two exchanges of one run share a 5-tuple unless the run exceeds the range.
PORT_LO = 1024
PORT_HI = 65535


def addr(text):
    host, _, port = text.rpartition(":")
    if not host or not port:
        raise argparse.ArgumentTypeError(f"expected IP:PORT, got {text!r}")
    return host, int(port)


def raise_nofile(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


def run_client(args):
    count = args.count
    if count < 1 or count > HARD_MAX_COUNT:
        sys.exit(f"--count must be 1..{HARD_MAX_COUNT}")
    if args.rate <= 0 or args.rate > HARD_MAX_RATE:
        sys.exit(f"--rate must be >0 and <= {HARD_MAX_RATE}")
    max_seconds = min(args.max_seconds, HARD_MAX_SECONDS)
    timeout = args.timeout_ms / 1000.0
    if timeout <= 0 or timeout > 10:
        sys.exit("--timeout-ms must be 1..10000")

    # Outstanding sockets are bounded by rate * timeout; keep a margin for
    # stdio and the selector.
    want_fds = int(args.rate * timeout * 1.5) + 64
    have_fds = raise_nofile(want_fds)
    max_outstanding = max(16, have_fds - 32)

    sel = selectors.DefaultSelector()
    pending = {}  # fd -> (sock, txid, deadline)
    expiry = []  # (deadline, fd) in send order == deadline order
    sent = answered = late_or_bad = send_errors = bind_errors = 0
    skipped_fd_limit = 0
    port = args.first_port
    aborted = None

    def close(fd):
        sock, _, _ = pending.pop(fd)
        sel.unregister(sock)
        sock.close()

    start = time.monotonic()
    hard_deadline = start + max_seconds
    interval = 1.0 / args.rate
    i = 0
    exp_head = 0
    while True:
        now = time.monotonic()
        if now >= hard_deadline:
            aborted = f"time cap {max_seconds}s reached"
            break
        # Send everything that is due.
        while i < count and start + i * interval <= now:
            i += 1
            if len(pending) >= max_outstanding:
                skipped_fd_limit += 1
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            p = port
            port = port + 1 if port < PORT_HI else PORT_LO
            try:
                sock.bind((args.bind, p))
            except OSError as e:
                sock.close()
                bind_errors += 1
                if e.errno != errno.EADDRINUSE:
                    raise
                continue
            txid = random.getrandbits(32)
            try:
                sock.connect(args.target)
                sock.send(CONNECT_REQ.pack(PROTOCOL_ID, 0, txid))
            except OSError:
                sock.close()
                send_errors += 1
                sent += 1
                continue
            sent += 1
            deadline = now + timeout
            pending[sock.fileno()] = (sock, txid, deadline)
            expiry.append((deadline, sock.fileno(), txid))
            sel.register(sock, selectors.EVENT_READ)
        # Expire exchanges whose reply window passed.
        while exp_head < len(expiry) and expiry[exp_head][0] <= now:
            _, fd, txid = expiry[exp_head]
            exp_head += 1
            ent = pending.get(fd)
            if ent is not None and ent[1] == txid:
                close(fd)
        if exp_head > 4096:
            del expiry[:exp_head]
            exp_head = 0
        if i >= count and not pending:
            break
        # Wait for replies until the next send or the next expiry.
        nxt = hard_deadline
        if i < count:
            nxt = min(nxt, start + i * interval)
        if exp_head < len(expiry):
            nxt = min(nxt, expiry[exp_head][0])
        wait = max(0.0, nxt - time.monotonic())
        for key, _ in sel.select(wait):
            sock = key.fileobj
            fd = sock.fileno()
            ent = pending.get(fd)
            if ent is None:
                continue
            try:
                data = sock.recv(2048)
            except OSError:
                # ICMP errors (port unreachable) surface here; that is a
                # lost exchange, not a reply.
                close(fd)
                continue
            if len(data) >= 16:
                action, rtx, _ = CONNECT_RESP.unpack_from(data)
                if action == 0 and rtx == ent[1]:
                    answered += 1
                else:
                    late_or_bad += 1
            else:
                late_or_bad += 1
            close(fd)
    for fd in list(pending):
        close(fd)
    duration = time.monotonic() - start
    loss = 100.0 * (sent - answered) / sent if sent else 100.0
    out = {
        "sent": sent,
        "answered": answered,
        "loss_percent": round(loss, 2),
        "duration_s": round(duration, 3),
        "requested": count,
        "rate": args.rate,
        "timeout_ms": args.timeout_ms,
        "first_port": args.first_port,
        "send_errors": send_errors,
        "bind_errors": bind_errors,
        "bad_replies": late_or_bad,
        "skipped_fd_limit": skipped_fd_limit,
    }
    if aborted:
        out["aborted"] = aborted
    print(json.dumps(out), flush=True)
    return 0 if not aborted else 1


def run_server(args):
    max_seconds = min(args.max_seconds, SERVER_HARD_MAX_SECONDS)
    end = time.monotonic() + max_seconds
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind(args.listen)
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write(f"{os.getpid()}\n")
    conn_id = random.getrandbits(64)
    served = 0
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(min(left, 0.5))
        try:
            data, peer = sock.recvfrom(2048)
        except socket.timeout:
            continue
        if len(data) >= 16:
            proto, action, txid = CONNECT_REQ.unpack_from(data)
            if proto == PROTOCOL_ID and action == 0:
                data = CONNECT_RESP.pack(0, txid, conn_id)
        try:
            sock.sendto(data, peer)
            served += 1
        except OSError:
            pass
    print(json.dumps({"served": served, "lifetime_s": max_seconds}),
          file=sys.stderr, flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("client")
    c.add_argument("--target", type=addr, required=True)
    c.add_argument("--bind", default="0.0.0.0")
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--rate", type=float, required=True)
    c.add_argument("--timeout-ms", type=float, default=500)
    c.add_argument("--first-port", type=int, default=20000)
    c.add_argument("--max-seconds", type=float, default=HARD_MAX_SECONDS)
    s = sub.add_parser("server")
    s.add_argument("--listen", type=addr, required=True)
    s.add_argument("--max-seconds", type=float, default=300)
    s.add_argument("--ready-file")
    args = ap.parse_args()
    if args.mode == "client":
        if not PORT_LO <= args.first_port <= PORT_HI:
            sys.exit(f"--first-port must be {PORT_LO}..{PORT_HI}")
        return run_client(args)
    return run_server(args)


if __name__ == "__main__":
    sys.exit(main())
