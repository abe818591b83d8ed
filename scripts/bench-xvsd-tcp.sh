#!/usr/bin/env bash
# TCP between two pods (iperf3, 4 streams) through xvsd with one worker,
# with two workers (a veth queue per worker), with two workers where the
# receiving pod has one queue (half the traffic crosses the hand-off), and
# through the Linux kernel routing the same veths (proxy ARP for the
# gateway, as Calico does). Runs each RUNS times and prints the median and
# the spread in Gbit/s, and the ratio of each to the kernel. Root.
#
# Both pods turn transmit checksum offload off on eth0 in every case: an
# AF_XDP switch on veth needs it (nothing finishes a partial checksum), so
# the kernel runs without TSO here too.
set -euo pipefail
RUNS=${RUNS:-3}
SECS=${SECS:-5}
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-xvsd-tcp: needs root" >&2; exit 1; }
cargo build --release -q --bin xvsd
XVSD=target/release/xvsd
LOG=$(mktemp)

cleanup() {
    pkill -TERM -x xvsd 2>/dev/null || true
    sleep 0.3
    for i in 1 2; do
        ip link del xbth$i 2>/dev/null || true
        ip netns del xbt-pod$i 2>/dev/null || true
    done
    [ -n "${FWD:-}" ] && sysctl -qw net.ipv4.ip_forward="$FWD"
    rm -f "$LOG"
}
trap cleanup EXIT

# pods Q1 Q2: two pods whose veths have Q1 and Q2 queues.
pods() {
    for i in 1 2; do
        local q=$1; shift
        ip link del xbth$i 2>/dev/null || true
        ip netns del xbt-pod$i 2>/dev/null || true
        ip netns add xbt-pod$i
        local qs="numtxqueues $q numrxqueues $q"
        ip link add xbth$i $qs type veth peer name eth0 netns xbt-pod$i $qs
        ip -n xbt-pod$i link set lo up
        ip -n xbt-pod$i link set eth0 address 02:00:00:1b:00:0$i
        ip -n xbt-pod$i addr add 10.244.1.5$i/32 dev eth0
        ip -n xbt-pod$i link set eth0 up
        ip -n xbt-pod$i route add 169.254.1.1 dev eth0 scope link
        ip -n xbt-pod$i route add default via 169.254.1.1 dev eth0
        ip netns exec xbt-pod$i ethtool -K eth0 tx off >/dev/null
        ip link set xbth$i up
    done
}

gbits() {
    ip netns exec xbt-pod2 iperf3 -s -1 -D -B 10.244.1.52
    sleep 0.3
    ip netns exec xbt-pod1 timeout $((SECS + 10)) iperf3 -J -c 10.244.1.52 -t "$SECS" -P 4 |
        python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}

xvsd_case() { # CORES Q1 Q2
    pods "$2" "$3"
    $XVSD --state-dir none --node-ip 192.168.77.1 --pod-cidr 10.244.1.0/24 --cores "$1" \
        --pod xbth1,10.244.1.51,02:00:00:1b:00:01 --pod xbth2,10.244.1.52,02:00:00:1b:00:02 2>"$LOG" &
    for _ in $(seq 100); do grep -q "ready:" "$LOG" && break; sleep 0.1; done
    ip netns exec xbt-pod1 ping -c 1 -W 2 10.244.1.52 >/dev/null
    gbits
    kill -TERM %1; wait %1 || true
}

kernel_case() {
    pods 1 1
    FWD=$(sysctl -n net.ipv4.ip_forward)
    sysctl -qw net.ipv4.ip_forward=1
    for i in 1 2; do
        sysctl -qw net.ipv4.conf.xbth$i.proxy_arp=1
        ip route add 10.244.1.5$i/32 dev xbth$i
    done
    gbits
}

median_spread() { # values...
    python3 -c 'import statistics,sys; v=sorted(map(float,sys.argv[1:])); print("%.2f %.2f %.2f" % (statistics.median(v), v[0], v[-1]))' "$@"
}

declare -A RESULT
for name in kernel "xvsd-1w" "xvsd-2w" "xvsd-2w-handoff"; do
    vals=()
    for _ in $(seq "$RUNS"); do
        case $name in
            kernel) vals+=("$(kernel_case)") ;;
            xvsd-1w) vals+=("$(xvsd_case 1 1 1)") ;;
            xvsd-2w) vals+=("$(xvsd_case 0,1 2 2)") ;;
            xvsd-2w-handoff) vals+=("$(xvsd_case 0,1 2 1)") ;;
        esac
    done
    RESULT[$name]="$(median_spread "${vals[@]}")"
    echo "$name: ${vals[*]}" >&2
done

base=$(cut -d' ' -f1 <<<"${RESULT[kernel]}")
printf "%-18s %8s %8s %8s %10s\n" case median min max "vs kernel"
for name in kernel "xvsd-1w" "xvsd-2w" "xvsd-2w-handoff"; do
    read -r med lo hi <<<"${RESULT[$name]}"
    printf "%-18s %8s %8s %8s %10s\n" "$name" "$med" "$lo" "$hi" \
        "$(python3 -c "print('%.2f' % ($med / $base))")"
done
echo "(Gbit/s, iperf3 -P 4 -t $SECS, median of $RUNS runs)"
