#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Stand-in for a container runtime's ExecStart in the real-systemd test
# (installed as /ctg/standin.sh in the throwaway root). Records the
# CLOCK_MONOTONIC time it started at and the conntrack values it sees, in
# /run/ctg-standin/NAME, then checks them against the values the test
# configured (CTG_EXPECT_* in the unit's environment): a runtime started
# before conntrack-guard-apply would see the old values and fail here.
set -u
name=$1
d=/proc/sys/net/netfilter
out=/run/ctg-standin/$name
mkdir -p /run/ctg-standin
if [ -x /usr/bin/python3 ]; then
    mono=$(/usr/bin/python3 -c 'import time; print(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)')
else
    mono=""
fi
max=$(cat $d/nf_conntrack_max)
buckets=$(cat $d/nf_conntrack_buckets)
udp=$(cat $d/nf_conntrack_udp_timeout)
stream=$(cat $d/nf_conntrack_udp_timeout_stream)
{
    echo "monotonic_usec=$mono"
    echo "nf_conntrack_max=$max"
    echo "nf_conntrack_buckets=$buckets"
    echo "nf_conntrack_udp_timeout=$udp"
    echo "nf_conntrack_udp_timeout_stream=$stream"
} >"$out.tmp"
mv "$out.tmp" "$out"
ok=1
check() {
    if [ "$2" != "$3" ]; then
        echo "$name stand-in: $1 is $2, expected $3" >&2
        ok=0
    fi
}
check nf_conntrack_max "$max" "${CTG_EXPECT_MAX:-$max}"
check nf_conntrack_buckets "$buckets" "${CTG_EXPECT_BUCKETS:-$buckets}"
check nf_conntrack_udp_timeout "$udp" "${CTG_EXPECT_UDP_TIMEOUT:-$udp}"
check nf_conntrack_udp_timeout_stream "$stream" "${CTG_EXPECT_UDP_TIMEOUT_STREAM:-$stream}"
if [ $ok = 1 ]; then
    echo "$name stand-in: saw max=$max buckets=$buckets udp_timeout=$udp udp_timeout_stream=$stream as configured"
    exit 0
fi
exit 1
