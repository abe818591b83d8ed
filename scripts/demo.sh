#!/usr/bin/env bash
# `make demo`: xvsd switching real traffic over AF_XDP.
#
# Builds this topology in network namespaces (all removed on exit):
#
#   demo-pod1 (10.244.1.11) ─veth─ xdemo1 ┐
#   demo-pod2 (10.244.1.12) ─veth─ xdemo2 ├─ xvsd (AF_XDP workers)   ─ xdemoup ─veth─ demo-node2
#   demo-pod3 (10.244.1.13) ─veth─ xdemo3 ┘      192.168.66.1          192.168.66.2, kernel VXLAN vx0
#                                                                      └─ demo-r2 (10.244.2.5)
#
# with two workers on cores 0 and 1 when there are two cores: the pod veths
# get a queue per worker, so both workers serve every pod, and the
# single-queue uplink is served by one of them (the other hands it its VXLAN
# traffic). Then it pings through the 169.254.1.1 gateway and across the
# overlay, runs iperf3 TCP pod to pod and pod to remote pod, and prints
# xvsd's counters.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo: needs root (network namespaces, XDP)" >&2; exit 1; }

cargo build --release -q -p xvs-vswitch --bin xvsd
XVSD=target/release/xvsd
LOG=$(mktemp)
NS=(demo-pod1 demo-pod2 demo-pod3 demo-node2 demo-r2)

cleanup() {
  [ -n "${XVSD_PID:-}" ] && kill -TERM "$XVSD_PID" 2>/dev/null && wait "$XVSD_PID" 2>/dev/null
  for n in "${NS[@]}"; do
    ip netns pids "$n" 2>/dev/null | xargs -r kill -9
    ip netns del "$n" 2>/dev/null || true
  done
  for l in xdemo1 xdemo2 xdemo3 xdemoup; do ip link del "$l" 2>/dev/null || true; done
  rm -f "$LOG"
}
trap cleanup EXIT
cleanup 2>/dev/null || true
LOG=$(mktemp)

say() { printf '\n== %s\n' "$*"; }

if [ "$(nproc)" -ge 2 ]; then WORKERS=2; else WORKERS=1; fi
CORES=$(seq -s, 0 $((WORKERS - 1)))
QUEUES="numtxqueues $WORKERS numrxqueues $WORKERS"

for i in 1 2 3; do
  ns=demo-pod$i
  ip netns add $ns
  ip link add xdemo$i $QUEUES type veth peer name eth0 netns $ns $QUEUES
  ip -n $ns link set lo up
  ip -n $ns link set eth0 address 02:00:00:de:00:0$i
  ip -n $ns addr add 10.244.1.1$i/32 dev eth0
  ip -n $ns link set eth0 up
  ip -n $ns route add 169.254.1.1 dev eth0 scope link
  ip -n $ns route add default via 169.254.1.1 dev eth0
  ip netns exec $ns ethtool -K eth0 tx off >/dev/null
  ip link set xdemo$i up
done

ip netns add demo-node2
ip netns add demo-r2
ip link add xdemoup type veth peer name eth0 netns demo-node2
ip link set xdemoup address 02:00:00:de:01:00
ip addr add 192.168.66.1/24 dev xdemoup
ip link set xdemoup up
N="ip -n demo-node2"
$N link set lo up
$N link set eth0 address 02:00:00:de:02:00
$N addr add 192.168.66.2/24 dev eth0
$N link set eth0 up
$N link add vx0 type vxlan id 1 local 192.168.66.2 dstport 4789 dev eth0 nolearning
$N link set vx0 address 02:00:00:de:02:01
$N addr add 10.244.2.0/32 dev vx0
$N link set vx0 up
$N route add 10.244.1.0/24 via 10.244.1.0 dev vx0 onlink
$N neigh add 10.244.1.0 lladdr 02:00:00:de:01:00 dev vx0 nud permanent
bridge -n demo-node2 fdb append 02:00:00:de:01:00 dev vx0 dst 192.168.66.1
$N link add n2p type veth peer name eth0 netns demo-r2
$N addr add 10.244.2.1/24 dev n2p
$N link set n2p up
ip netns exec demo-node2 sysctl -qw net.ipv4.ip_forward=1
for d in eth0 vx0 n2p; do ip netns exec demo-node2 ethtool -K $d tx off >/dev/null; done
ip -n demo-r2 link set lo up
ip -n demo-r2 addr add 10.244.2.5/24 dev eth0
ip -n demo-r2 link set eth0 up
ip -n demo-r2 route add default via 10.244.2.1
ip netns exec demo-r2 ethtool -K eth0 tx off >/dev/null

say "starting xvsd ($WORKERS workers, cores $CORES)"
$XVSD --state-dir none --cores "$CORES" --uplink xdemoup --node-ip 192.168.66.1 --pod-cidr 10.244.1.0/24 --vni 1 \
  --remote node2,10.244.2.0/24,192.168.66.2,02:00:00:de:02:01,02:00:00:de:02:00 \
  --pod xdemo1,10.244.1.11,02:00:00:de:00:01 \
  --pod xdemo2,10.244.1.12,02:00:00:de:00:02 \
  --pod xdemo3,10.244.1.13,02:00:00:de:00:03 2>"$LOG" &
XVSD_PID=$!
for _ in $(seq 50); do grep -q "ready:" "$LOG" && break; sleep 0.1; done
cat "$LOG"

say "pod1 -> gateway 169.254.1.1, pod2, pod3, and the remote pod over VXLAN"
for dst in 169.254.1.1 10.244.1.12 10.244.1.13 10.244.2.5; do
  ip netns exec demo-pod1 ping -c 3 -i 0.2 -W 2 $dst | tail -2 | head -1 | sed "s/^/  $dst: /"
done

say "iperf3 TCP pod1 -> pod2 (3 s)"
ip netns exec demo-pod2 iperf3 -s -1 -D -p 5201
sleep 0.3
ip netns exec demo-pod1 iperf3 -c 10.244.1.12 -p 5201 -t 3 | grep -E "sender|receiver"

say "iperf3 TCP pod3 -> remote pod over VXLAN (3 s)"
ip netns exec demo-r2 iperf3 -s -1 -D -p 5202
sleep 0.3
ip netns exec demo-pod3 iperf3 -c 10.244.2.5 -p 5202 -t 3 | grep -E "sender|receiver"

say "stopping xvsd (SIGTERM): counters"
kill -TERM $XVSD_PID; wait $XVSD_PID || true; XVSD_PID=
sed -n '/stopping/,$p' "$LOG"
