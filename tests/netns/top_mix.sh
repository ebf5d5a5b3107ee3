# SPDX-License-Identifier: MIT OR Apache-2.0
# shellcheck shell=bash
#
# The known table mix of issue 13, on lib.sh's topology; sourced by
# tests/netns/top.sh and tests/bench/top.sh after lib.sh and topo_up.
#
#   80%  UDP to 198.18.0.1:6970, DNATed to the container, never answered
#        (dropped silently there, so no ICMP error ends them), from
#        198.18.2.2 and 198.18.3.2, half each
#   15%  UDP to 198.18.0.1:6969, DNATed to the echo responder, answered
#   5%   TCP SYN to 198.18.1.2:8080, routed (no NAT), dropped: SYN_SENT
#
# One flow per (source address, source port): ephemeral ports would merge
# flows. The host netns's UDP and SYN_SENT timeouts go to 600 s (per-netns
# keys, gone with the netns), so nothing expires while it is measured.

# mix_up: the extra addresses, routes, DNAT and drops.
mix_up() {
    in_client ip addr add 198.18.2.2/24 dev c0 &&
        in_client ip addr add 198.18.3.2/24 dev c0 &&
        in_client ip route add 198.18.1.0/24 via "$CTG_HOST_IP" &&
        in_host ip route add 198.18.2.0/23 dev h0 &&
        in_host nft add rule ip ctg_nat prerouting udp dport 6970 dnat to "$CTG_CTR_IP:6970" ||
        return 1
    in_ctr nft -f - <<'EOF' || return 1
table inet ctg_quiet {
    chain input {
        type filter hook input priority 0; policy accept;
        udp dport 6970 drop
        tcp dport 8080 drop
    }
}
EOF
    # A late duplicate reply to a closed client socket must not produce an
    # ICMP error that could end an entry.
    in_client nft -f - <<'EOF' || return 1
table inet ctg_quiet {
    chain output {
        type filter hook output priority 0; policy accept;
        icmp type destination-unreachable drop
    }
}
EOF
    local k
    for k in nf_conntrack_udp_timeout nf_conntrack_udp_timeout_stream nf_conntrack_tcp_timeout_syn_sent; do
        in_host sh -c "echo 600 > $CTG_SYSCTL_DIR/$k" || return 1
    done
}

# mix_fill FILL_BIN N: create the mix; sets MIX_UNANS MIX_ANS MIX_TCP
# MIX_HALF (planned) and MIX_GOT_UNANS MIX_GOT_ANS MIX_GOT_TCP (created).
mix_fill() {
    local fill=$1 n=$2 t0 t1
    MIX_UNANS=$((n * 80 / 100))
    MIX_ANS=$((n * 15 / 100))
    MIX_TCP=$((n - MIX_UNANS - MIX_ANS))
    MIX_HALF=$((MIX_UNANS / 2))
    t0=$(date +%s.%N)
    MIX_GOT_UNANS=$(in_client "$fill" udp --src 198.18.2.2,198.18.3.2 --dst "$CTG_HOST_IP:6970" \
        --count "$MIX_UNANS" --first-port $((65536 - MIX_HALF)) --max-seconds 120)
    MIX_GOT_ANS=$(in_client "$fill" udp-rr --src "$CTG_CLIENT_IP" --dst "$CTG_HOST_IP:$CTG_PORT" \
        --count "$MIX_ANS" --first-port 20000 --max-seconds 120)
    MIX_GOT_TCP=$(in_client "$fill" tcp-syn --src "$CTG_CLIENT_IP" --dst "$CTG_CTR_IP:8080" \
        --count "$MIX_TCP" --first-port 40000 --max-seconds 60)
    t1=$(date +%s.%N)
    ctg_log "created $MIX_GOT_UNANS unanswered, $MIX_GOT_ANS answered, $MIX_GOT_TCP tcp" \
        "in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s"
    # Let the last packets land: wait (bounded) until the count is steady.
    local prev=-1 cur i
    for ((i = 0; i < 30; i++)); do
        cur=$(host_count)
        [[ $cur == "$prev" ]] && break
        prev=$cur
        sleep 0.2
    done
}

# ctfill_bin REPO: the load generator (tests/tools/ctfill.rs, a cargo example), built if needed.
ctfill_bin() {
    if [[ -n ${CTFILL_BIN:-} ]]; then
        printf '%s\n' "$CTFILL_BIN"
        return
    fi
    (cd "$1" && cargo build -q --release --example ctfill) || return 1
    printf '%s\n' "$1/target/release/examples/ctfill"
}
