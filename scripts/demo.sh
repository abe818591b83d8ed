#!/usr/bin/env bash
# `make demo`: xvsd switching real traffic over AF_XDP.
#
# Builds this topology in network namespaces (all removed on exit):
#
#   demo-pod1 (10.244.1.11) ─veth─ xvs… ┐
#   demo-pod2 (10.244.1.12) ─veth─ xvs… ├─ xvsd (AF_XDP workers)   ─ xdemoup ─veth─ demo-node2
#   demo-pod3 (10.244.1.13) ─veth─ xvs… ┘      192.168.66.1          192.168.66.2, kernel VXLAN vx0
#                                                                    └─ demo-r2 (10.244.2.5)
#
# xvsd starts with the uplink and the overlay only; the pods are attached
# as a container runtime attaches them: cnitool (libcni) runs the xvs-cni
# plugin from a conflist, which allocates each pod's address, creates its
# veth and registers the port with xvsd. With two cores there are two
# workers on cores 0 and 1; each port's queue goes to the worker with the
# fewest, and the workers hand each other packets for the ports they do not
# serve. Then it pings through the 169.254.1.1 gateway and across the
# overlay, runs iperf3 TCP pod to pod and pod to remote pod, programs a
# Service whose three endpoints (pod2, pod3, the remote pod) run a small
# HTTP server, and curls it from pod1 (ClusterIP) and from node2 (NodePort
# on the node IP), curls a server on node2 from pod1 (masqueraded to the
# node IP), shows the flow cache and the tracked connections with their
# NAT, detaches the pods with cnitool (CNI DEL) and prints xvsd's counters.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo: needs root (network namespaces, XDP)" >&2; exit 1; }

cargo build --release -q -p xvs-vswitch --bin xvsd -p xvs-control --bin xvsctl -p xvs-cni --bin xvs-cni
XVSD=target/release/xvsd
LOG=$(mktemp)
NS=(demo-pod1 demo-pod2 demo-pod3 demo-node2 demo-r2)
CNI=$(mktemp -d)
SOCK=$CNI/xvsd.sock
XVSCTL="target/release/xvsctl --socket $SOCK"
# cnitool finds the network by name in NETCONFPATH and its plugins in
# CNI_PATH, as a runtime would in /etc/cni/net.d and /opt/cni/bin.
export NETCONFPATH=$CNI/net.d CNI_PATH=$CNI/bin
mkdir -p "$NETCONFPATH" "$CNI_PATH"
ln -s "$PWD/target/release/xvs-cni" "$CNI_PATH/xvs-cni"
cat > "$NETCONFPATH/10-xvs.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "xvs-demo",
  "plugins": [{
    "type": "xvs-cni",
    "socket": "$SOCK",
    "mtu": 1450,
    "ipam": {"subnet": "10.244.1.0/24", "rangeStart": "10.244.1.11", "dataDir": "$CNI/ipam"}
  }]
}
EOF

cleanup() {
  for i in 1 2 3; do
    [ -e /var/run/netns/demo-pod$i ] && cnitool del xvs-demo /var/run/netns/demo-pod$i 2>/dev/null
  done
  [ -n "${XVSD_PID:-}" ] && kill -TERM "$XVSD_PID" 2>/dev/null && wait "$XVSD_PID" 2>/dev/null
  for n in "${NS[@]}"; do
    ip netns pids "$n" 2>/dev/null | xargs -r kill -9
    ip netns del "$n" 2>/dev/null || true
  done
  ip link del xdemoup 2>/dev/null || true
  rm -f "$LOG"
}
trap 'cleanup; rm -rf "$CNI"' EXIT
cleanup 2>/dev/null || true
LOG=$(mktemp)

say() { printf '\n== %s\n' "$*"; }

if [ "$(nproc)" -ge 2 ]; then WORKERS=2; else WORKERS=1; fi
CORES=$(seq -s, 0 $((WORKERS - 1)))

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
  --cluster-cidr 10.244.0.0/16 \
  --control-socket "$SOCK" \
  --remote node2,10.244.2.0/24,192.168.66.2,02:00:00:de:02:01,02:00:00:de:02:00 2>"$LOG" &
XVSD_PID=$!
for _ in $(seq 50); do grep -q "ready:" "$LOG" && break; sleep 0.1; done
cat "$LOG"

say "attaching three pods with cnitool add (CNI ADD through xvs-cni)"
for i in 1 2 3; do
  ip netns add demo-pod$i
  ip -n demo-pod$i link set lo up
  cnitool add xvs-demo /var/run/netns/demo-pod$i | tr -d ' \n' | grep -o '"address":"[^"]*"' | sed "s/^/  demo-pod$i: /"
done
$XVSCTL port list

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

# A small HTTP server answering who it is and whom it sees (busybox httpd
# with a CGI script), on each endpoint and on node2.
serve() { # NETNS NAME PORT
  mkdir -p "$CNI/www-$2/cgi-bin"
  printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "%s answered $REMOTE_ADDR"\n' "$2" \
    > "$CNI/www-$2/cgi-bin/who"
  chmod +x "$CNI/www-$2/cgi-bin/who"
  ip netns exec "$1" busybox httpd -p "0.0.0.0:$3" -h "$CNI/www-$2"
}
serve demo-pod2 pod2 8080
serve demo-pod3 pod3 8080
serve demo-r2 remote-pod 8080
serve demo-node2 node2-server 80

say "a Service: default/web, ClusterIP 10.96.0.10 and NodePort 30080 -> pod2, pod3, the remote pod"
$XVSCTL service add web --type NodePort --cluster-ip 10.96.0.10 --port http=80:8080@30080 \
  --endpoint 10.244.1.12,10.244.1.13,10.244.2.5
$XVSCTL service list
echo "  nine requests from pod1 to http://10.96.0.10/, a new connection each:"
for _ in $(seq 9); do
  ip netns exec demo-pod1 curl -s --max-time 2 http://10.96.0.10/cgi-bin/who | sed 's/^/    /'
done
echo "  three requests from node2 (outside the cluster) to the NodePort http://192.168.66.1:30080/:"
$XVSCTL route add 192.168.66.0/24 --port xdemoup --next-hop-mac 02:00:00:de:02:00 >/dev/null
for _ in $(seq 3); do
  ip netns exec demo-node2 curl -s --max-time 2 http://192.168.66.1:30080/cgi-bin/who | sed 's/^/    /'
done
echo "  a Service without endpoints is refused at once:"
$XVSCTL service add empty --cluster-ip 10.96.0.11 --port 80 >/dev/null
ip netns exec demo-pod1 curl -sS --max-time 2 http://10.96.0.11/ 2>&1 | sed 's/^/    /' || true

say "masquerade: pod1 -> a server on node2, outside the cluster CIDR"
ip netns exec demo-pod1 curl -s --max-time 2 http://192.168.66.2/cgi-bin/who | sed 's/^/  /'

say "the flow cache and the tracked connections (NAT: the reply tuple names the endpoint)"
$XVSCTL dump-flows
$XVSCTL dump-conntrack

say "detaching the pods with cnitool del (CNI DEL)"
for i in 1 2 3; do cnitool del xvs-demo /var/run/netns/demo-pod$i; done
$XVSCTL port list

say "stopping xvsd (SIGTERM): counters"
kill -TERM $XVSD_PID; wait $XVSD_PID || true; XVSD_PID=
sed -n '/stopping/,$p' "$LOG"
