#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Issue 20 measurement: the kernel memory one conntrack entry takes, the
# figure behind src/kernel/slab.rs (DEFAULT_ENTRY_BYTES, EXTENSION_BYTES).
#
#   tests/bench/entry-bytes.sh [--flows N]
#
# For each of two rule sets in a private namespace, it creates N UDP flows
# (distinct source ports, so N entries) and compares /proc/slabinfo before
# and after:
#   plain   a `ct state new counter` rule only: entries without extensions;
#   nat     DNAT + masquerade, as Docker's published ports: the NAT
#           extension makes the kernel allocate the extension area too.
# It prints, per mode, the new objects per entry of the nf_conntrack cache
# and of the kmalloc caches (the extension area is a kmalloc object of at
# least NF_CT_EXT_PREALLOC = 128 bytes).
#
# Measured here (6.18, 30000 flows): plain 1.00 nf_conntrack (256 B) and
# no kmalloc-128; nat 1.00 nf_conntrack + 1.00 kmalloc-128, i.e. 384 B.
#
# Needs root, nft and python3. Creates only the namespace ctg-entry-$$ and
# removes it on exit (trap). Changes no sysctl; the entries expire with the
# namespace. Holds /run/conntrack-guard-tests.lock so no other suite runs
# alongside and adds its own allocations to the counts.
set -euo pipefail

FLOWS=30000
while (($#)); do
    case $1 in
    --flows) FLOWS=$2; shift ;;
    *) echo "usage: $0 [--flows N]" >&2; exit 2 ;;
    esac
    shift
done
for tool in nft python3 ip flock; do
    command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "FAIL: needs root (/proc/slabinfo is 0400)" >&2; exit 1; }

exec 9>/run/conntrack-guard-tests.lock
flock -w 600 9

NS=ctg-entry-$$
cleanup() { ip netns del "$NS" 2>/dev/null || true; }
trap cleanup EXIT

rules_plain='table ip ctg {
  chain out {
    type filter hook output priority 0;
    ct state new counter
  }
}'
rules_nat='table ip ctg {
  chain out {
    type nat hook output priority -100;
    udp dport 7000 dnat to 198.18.200.1:7001
  }
  chain post {
    type nat hook postrouting priority 100;
    oifname "lo" masquerade
  }
}'

snap() {
    awk '$1 ~ /^(nf_conntrack|kmalloc-(cg-)?(64|96|128|192|256))$/ {printf "%s=%s ", $1, $2}' /proc/slabinfo
}

ct_objects() { awk '$1 == "nf_conntrack" {print $2}' /proc/slabinfo; }
# A deleted namespace's entries are freed later, by the netns cleanup
# work: wait (at most 20 s) until the cache is back near where it started,
# so one mode's frees do not hide the next one's allocations.
settle() {
    local i
    for i in $(seq 40); do
        [ "$(ct_objects)" -le $((base + FLOWS / 20)) ] && return 0
        sleep 0.5
    done
    echo "note: the nf_conntrack cache did not settle; figures may be low" >&2
}
base=$(ct_objects)

printf '%-6s %8s  %s\n' mode entries "new slab objects per entry"
for mode in plain nat; do
    cleanup
    settle
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    ip -n "$NS" addr add 198.18.200.1/32 dev lo
    if [ "$mode" = nat ]; then rules=$rules_nat; else rules=$rules_plain; fi
    printf '%s\n' "$rules" | ip netns exec "$NS" nft -f -
    before=$(snap)
    # Bounded: N sends, 60 s at most. The server socket is bound and never
    # read, so no ICMP error removes an entry.
    ip netns exec "$NS" timeout 60 python3 - "$FLOWS" <<'PY'
import socket, sys
n = int(sys.argv[1])
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
srv.bind(("198.18.200.1", 7001))
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("198.18.200.1", 10000 + i % 50000))
    s.sendto(b"x", ("198.18.200.1", 7000))
    s.close()
PY
    after=$(snap)
    count=$(ip netns exec "$NS" cat /proc/sys/net/netfilter/nf_conntrack_count)
    python3 - "$mode" "$count" "$before" "$after" <<'PY'
import sys
mode, count = sys.argv[1], int(sys.argv[2])
b = dict(kv.split("=") for kv in sys.argv[3].split())
a = dict(kv.split("=") for kv in sys.argv[4].split())
per = []
for k in sorted(a):
    d = (int(a[k]) - int(b.get(k, 0))) / max(count, 1)
    if abs(d) >= 0.05:
        per.append(f"{k} {d:.2f}")
print(f"{mode:<6} {count:>8}  {', '.join(per) or 'none'}")
PY
done
