#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Read /dev/kmsg records newer than a mark.

  kmsg.py mark          print the sequence number of the newest record
  kmsg.py since SEQ     print the text of every record with seq > SEQ

/dev/kmsg yields one record per read(): "prio,seq,usec,flags;text".
Opened non-blocking, a read past the newest record fails with EAGAIN.
Reading it needs privilege when kernel.dmesg_restrict=1.
"""
import errno
import os
import sys

MAX_RECORDS = 1_000_000  # the ring buffer is far smaller; a safety bound


def records():
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        for _ in range(MAX_RECORDS):
            try:
                buf = os.read(fd, 8192)
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    return
                if e.errno == errno.EPIPE:  # record overwritten; skip on
                    continue
                raise
            head, _, text = buf.decode("utf-8", "replace").partition(";")
            fields = head.split(",")
            yield int(fields[1]), text.split("\n", 1)[0]
    finally:
        os.close(fd)


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "mark":
        last = -1
        for seq, _ in records():
            last = seq
        print(last)
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "since":
        mark = int(sys.argv[2])
        for seq, text in records():
            if seq > mark:
                print(text)
        return 0
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
