#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Stand-in for kube-proxy in the foreign-writer tests: a process whose comm
# is "kube-proxy" (comm comes from the executable's file name, so this runs
# a copy of /bin/sh named kube-proxy) that writes nf_conntrack_max once, as
# kube-proxy does at start, then stays alive until killed.
#
#   kube-proxy-standin.sh VALUE [CONFIG]
#
# CONFIG, if given, appears as --config=CONFIG in its command line, so
# `conntrack-guard doctor` and writers::hint read that file. The caller
# records and restores the global nf_conntrack_max and kills the pid this
# prints (the first line of stdout); it exits within a second of SIGTERM.
set -eu
value=$1
config=${2:-}
dir=$(mktemp -d "${TMPDIR:-/tmp}/ctg-kube-proxy.XXXXXX")
cp /bin/sh "$dir/kube-proxy"
# The copy stays open while the shell runs; the directory can go now.
"$dir/kube-proxy" -c '
    echo "$1" > /proc/sys/net/netfilter/nf_conntrack_max
    trap "exit 0" TERM INT
    while :; do sleep 1; done
' "$dir/kube-proxy" "$value" ${config:+"--config=$config"} </dev/null >/dev/null 2>&1 &
pid=$!
echo "$pid"
# Wait until the write happened (or the process died) before returning.
i=0
while [ "$i" -lt 50 ] && kill -0 "$pid" 2>/dev/null; do
    [ "$(cat /proc/sys/net/netfilter/nf_conntrack_max)" = "$value" ] && break
    sleep 0.1; i=$((i + 1))
done
rm -rf "$dir"
