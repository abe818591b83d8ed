#!/usr/bin/env bash
# Installs the system packages xvs needs to build and test, and nothing else.
# Idempotent: it asks dpkg which packages are missing and apt-installs only
# those, so a second run on a ready machine does no network work at all.
# Called by every Makefile target that builds or runs anything.
set -euo pipefail

# Build: a C toolchain for -sys crates; clang/llvm compile the XDP
# programs, libelf/zlib are libbpf's, libpcap/m4/pkg-config are what xsk-rs
# and libbpf-sys build against (the AF_XDP datapath, issue #4).
# Test: iproute2 for the network namespaces and veth pairs of the
# end-to-end tests, ethtool to turn off checksum offload on veths whose
# frames cross AF_XDP (a frame with a partial checksum would leave the
# switch unfinished), iperf3 as the TCP/UDP peer, curl to scrape the
# metrics endpoint, tshark to read back what `xvsctl capture` wrote (and
# as the independent dissector pipeline tests check frames with).
# The benchmark runner (xvs-bench) draws its plots with the DejaVu font.
PACKAGES=(
  build-essential pkg-config clang llvm libelf-dev zlib1g-dev libpcap-dev m4
  iproute2 ethtool iperf3 curl tshark fonts-dejavu-core
)
# `setup-deps.sh perf` (make perf) adds the peers xvs-bench measures xvsd
# against: nftables (kube-proxy-style DNAT), DPDK testpmd with its AF_XDP
# driver, Open vSwitch built with DPDK, and perf for cycles per packet.
if [ "${1:-}" = perf ]; then
  PACKAGES+=(nftables dpdk librte-net-af-xdp23 openvswitch-switch-dpdk linux-perf)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup-deps: missing packages: ${missing[*]}" >&2
    echo "setup-deps: run as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "setup-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # wireshark-common (pulled in by tshark) would ask whether non-root
  # users may capture; the answer is no, and it must not ask.
  echo "wireshark-common wireshark-common/install-setuid boolean false" |
    debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup-deps: cargo not found. xvs needs a Rust toolchain >= 1.85 (rustup)." >&2
  exit 1
fi
