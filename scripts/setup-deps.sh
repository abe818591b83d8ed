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
# end-to-end tests, iputils-ping for their pings (not in every base
# image), ethtool to turn off checksum offload on veths whose
# frames cross AF_XDP (a frame with a partial checksum would leave the
# switch unfinished), iperf3 as the TCP/UDP peer, curl to scrape the
# metrics endpoint, tshark to read back what `xvsctl capture` wrote (and
# as the independent dissector pipeline tests check frames with).
# The benchmark runner (xvs-bench) draws its plots with the DejaVu font.
PACKAGES=(
  build-essential pkg-config clang llvm libelf-dev zlib1g-dev libpcap-dev m4
  iproute2 iputils-ping ethtool iperf3 curl tshark fonts-dejavu-core
)
# Optional groups are named as arguments; without one (every Makefile
# target but `make perf`) the `cni` group is installed, since `make test`
# runs the CNI end-to-end tests.
GROUPS_WANTED=("${@:-cni}")
want() {
  local g
  for g in "${GROUPS_WANTED[@]}"; do [ "$g" = "$1" ] && return 0; done
  return 1
}
for g in "${GROUPS_WANTED[@]}"; do
  case "$g" in
    cni | perf) ;;
    *) echo "setup-deps: unknown group '$g' (groups: cni, perf)" >&2; exit 2 ;;
  esac
done
# `cni`: the real CNI runtimes xvs-cni is tested with (issue #7): the
# reference plugins in /usr/lib/cni (bridge, host-local, portmap,
# bandwidth...), podman 4.3 with runc, busybox-static for an image built
# offline, and Go with Debian's libcni to build cnitool (Debian does not
# package its main; see build_cnitool below). dpkg-dev is `apt-get source`'s.
if want cni; then
  PACKAGES+=(containernetworking-plugins podman runc busybox-static
    golang-go golang-github-appc-cni-dev dpkg-dev)
fi
# `perf` (make perf) adds the peers xvs-bench measures xvsd against:
# nftables (kube-proxy-style DNAT), DPDK testpmd with its AF_XDP driver,
# Open vSwitch built with DPDK, and perf for cycles per packet.
if want perf; then
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

# cnitool, built offline from Debian's source package
# golang-github-appc-cni against the libcni that golang-github-appc-cni-dev
# installs in /usr/share/gocode (GOPATH mode: no modules, no proxy). The
# source is fetched once into $CNITOOL_CACHE; the build (a few seconds) is
# skipped while the binary runs and was built from the installed version.
CNITOOL=/usr/local/bin/cnitool
CNITOOL_CACHE=/var/cache/xvs/cnitool-src
build_cnitool() {
  local version stamp="$CNITOOL_CACHE/built-version" src
  version=$(dpkg-query -W -f='${source:Version}' golang-github-appc-cni-dev)
  # Without arguments cnitool prints its usage and exits 1.
  if [ -x "$CNITOOL" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ] &&
    [[ "$("$CNITOOL" 2>&1)" == cnitool:* ]]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup-deps: $CNITOOL is missing or not built from libcni $version; run this script as root to build it" >&2
    exit 1
  fi
  echo "setup-deps: building cnitool $version from the Debian source package"
  if ! apt-cache showsrc golang-github-appc-cni >/dev/null 2>&1; then
    add_deb_src
  fi
  mkdir -p "$CNITOOL_CACHE"
  src=$(find "$CNITOOL_CACHE" -maxdepth 2 -path "*/golang-github-appc-cni-${version%-*}/cnitool" -type d | head -n1)
  if [ -z "$src" ]; then
    # The source of the installed libcni; any version if the mirror has
    # moved on (cnitool's few lines change little between releases).
    (cd "$CNITOOL_CACHE" && { apt-get source -qq -o APT::Sandbox::User=root "golang-github-appc-cni=$version" ||
      apt-get source -qq -o APT::Sandbox::User=root golang-github-appc-cni; } >/dev/null)
    src=$(find "$CNITOOL_CACHE" -maxdepth 2 -path '*/golang-github-appc-cni-*/cnitool' -type d | sort -V | tail -n1)
  fi
  (cd "$src/.." && GOPATH=/usr/share/gocode GO111MODULE=off GOPROXY=off GOFLAGS='' \
    GOCACHE="$CNITOOL_CACHE/go-build" go build -o "$CNITOOL" ./cnitool)
  echo "$version" >"$stamp"
}
# A deb-src entry for the Debian suite the machine installs from, in a
# file of its own (the machine's own sources stay untouched); only that
# entry's index is fetched.
add_deb_src() {
  local codename uri list=/etc/apt/sources.list.d/xvs-deb-src.sources
  # shellcheck disable=SC1091
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  # shellcheck disable=SC2016 # apt's own $(FIELD) syntax
  uri=$(apt-get indextargets --format '$(REPO_URI)' "Release: $codename" \
    'Created-By: Packages' 2>/dev/null | head -n1)
  {
    echo "# Added by xvs scripts/setup-deps.sh: Debian source packages, to build cnitool."
    echo "Types: deb-src"
    echo "URIs: ${uri:-http://deb.debian.org/debian/}"
    echo "Suites: $codename"
    echo "Components: main"
    if [ -e /usr/share/keyrings/debian-archive-keyring.gpg ]; then
      echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
    fi
  } >"$list"
  apt-get update -qq -o Dir::Etc::sourcelist="$list" -o Dir::Etc::sourceparts=- \
    -o APT::Get::List-Cleanup=0
}
if want cni; then
  build_cnitool
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup-deps: cargo not found. xvs needs a Rust toolchain >= 1.85 (rustup)." >&2
  exit 1
fi
