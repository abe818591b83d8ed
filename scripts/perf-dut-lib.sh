# shellcheck shell=bash
# What the peer device-under-test scripts of the packet-rate benchmark
# runner share (scripts/perf-dut-testpmd.sh, scripts/perf-dut-ovs.sh):
# messages, argument and environment checks, the choice of the CPU for the
# threads that are not forwarding, hugepages, the run directory, and putting
# back the interfaces as they were. Sourced, never run; the contract (usage,
# READY, STATS, exit codes) is in each script's header.
#
# A script sets, before it sources this file:
#   NAME             its name in messages and files (perf-dut-testpmd, ...)
#   stop_requested   empty; its TERM/INT trap sets it (the trap comes first)
# and defines cleanup(), which die() calls; cleanup() uses
# remove_leftover_xdp, restore_promisc and reap below.
#
# Signals: everything here may run between the trap and the stop, so no
# command substitution $(...) runs in this shell (see "Signals" in the
# scripts' headers: bash 5.2.15 can drop a trap that fires during one). One
# in a child shell (kernel_counters's sh -c) is fine.

# State that cleanup() undoes; the scripts fill it in as they go.
RUN_DIR=       # private run directory (fifo, database, sockets, counters)
CREATED_XDP=   # set once the DUT may have attached XDP programs
PROMISC_OFF=() # interfaces that were not promiscuous before us

HP=/sys/kernel/mm/hugepages/hugepages-2048kB

note() { echo "$NAME: $*" >&2; }
die() {
  local code=$1
  shift
  echo "$NAME: error: $*" >&2
  cleanup
  exit "$code"
}

# Sets NETNS IN_IF OUT_IF CORE from the script's arguments, or exits 2.
parse_args() {
  if [ $# -ne 4 ]; then
    echo "usage: $0 NETNS IN_IF OUT_IF CORE" >&2
    exit 2
  fi
  NETNS=$1 IN_IF=$2 OUT_IF=$3 CORE=$4
}

# The process $1 is running (not gone, not a zombie waiting for us to reap
# it). No $(...) here (see Signals above): `read` splits /proc/PID/stat,
# whose comm field has no spaces for the programs started here.
alive() {
  local _pid _comm state
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null &&
    read -r _pid _comm state _ <"/proc/$1/stat" 2>/dev/null && [ "$state" != Z ]
}

# Waits up to $2 tenths of a second for process $1 (named $3 in messages)
# to end, then SIGTERM and up to $4 tenths more (default 30), then SIGKILL;
# reaps it.
reap() {
  local pid=$1 n=$2 what=$3 n_term=${4:-30} i
  [ -n "$pid" ] || return 0
  for ((i = 0; i < n; i++)); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < n_term; i++)); do alive "$pid" || break; sleep 0.1; done
  fi
  if alive "$pid"; then
    note "$what (pid $pid) ignores SIGTERM: SIGKILL"
    kill -KILL "$pid" 2>/dev/null
  fi
  { wait "$pid"; } 2>/dev/null
}

# Detaches whatever XDP program is on NETNS:$1 (native or generic mode);
# fails if one is still there.
detach_xdp() {
  ip -n "$NETNS" link set dev "$1" xdp off 2>/dev/null
  ip -n "$NETNS" link set dev "$1" xdpgeneric off 2>/dev/null
  ! ip -n "$NETNS" link show dev "$1" 2>/dev/null | grep -q 'prog/xdp'
}

# For cleanup(): once CREATED_XDP is set, removes any XDP program still on
# IN_IF or OUT_IF (the interfaces had none before us: checked at start).
remove_leftover_xdp() {
  local ifc
  [ -n "$CREATED_XDP" ] || return 0
  for ifc in "$IN_IF" "$OUT_IF"; do
    if ip -n "$NETNS" link show dev "$ifc" 2>/dev/null | grep -q 'prog/xdp'; then
      note "removing the XDP program left on $NETNS:$ifc"
      detach_xdp "$ifc" || note "WARNING: could not detach XDP from $NETNS:$ifc"
    fi
  done
}

# Notes which of IN_IF and OUT_IF are not promiscuous now (the DUT turns it
# on and leaves it on); restore_promisc, in cleanup(), turns it off again.
record_promisc() {
  local ifc
  for ifc in "$IN_IF" "$OUT_IF"; do
    ip -n "$NETNS" link show dev "$ifc" | grep -q PROMISC || PROMISC_OFF+=("$ifc")
  done
}
restore_promisc() {
  local ifc
  for ifc in "${PROMISC_OFF[@]}"; do
    ip -n "$NETNS" link set dev "$ifc" promisc off 2>/dev/null
  done
  PROMISC_OFF=()
}

# Kernel counters of the two interfaces, as "key value" lines.
kernel_counters() {
  # shellcheck disable=SC2016 # $1, $2 and $(cat) are the child shell's
  ip netns exec "$NETNS" sh -c '
    ethtool -S "$1" 2>/dev/null | awk -F: "
      /rx_queue_[0-9]+_xdp_packets:/ {p += \$2}
      /rx_queue_[0-9]+_xdp_redirect:/ {r += \$2}
      /rx_queue_[0-9]+_drops:/ {d += \$2}
      END {if (NR > 1) printf \"in_xdp_packets %d\nin_xdp_redirect %d\nin_drops %d\n\", p, r, d}"
    for f in tx_packets tx_dropped; do
      v=$(cat "/sys/class/net/$2/statistics/$f" 2>/dev/null) && echo "out_$f $v"
    done' sh "$IN_IF" "$OUT_IF" 2>/dev/null
}

# Checks CORE, NETNS, IN_IF and OUT_IF (exit 2 on error). An XDP program
# named $1 on either interface is the DUT's own AF_XDP redirect program
# (libxdp's xsk_def_prog) left by a run that was SIGKILLed: it is removed.
# Any other XDP program is someone else's: the script refuses to start.
check_args() {
  local stale_prog=$1 ifc
  [[ $CORE =~ ^[0-9]+$ ]] || die 2 "CORE must be a CPU number, not '$CORE'"
  taskset -c "$CORE" true 2>/dev/null || die 2 "CPU $CORE is not usable (offline or outside this process's affinity)"
  ip netns exec "$NETNS" true 2>/dev/null || die 2 "network namespace $NETNS does not exist"
  [ "$IN_IF" != "$OUT_IF" ] || die 2 "IN_IF and OUT_IF must differ"
  for ifc in "$IN_IF" "$OUT_IF"; do
    ip -n "$NETNS" link show dev "$ifc" >/dev/null 2>&1 || die 2 "no interface $ifc in $NETNS"
    if ip -n "$NETNS" link show dev "$ifc" | grep -q "prog/xdp.* name $stale_prog "; then
      note "removing the stale $stale_prog left on $NETNS:$ifc by an earlier run"
      detach_xdp "$ifc" || die 2 "cannot detach the XDP program on $NETNS:$ifc"
    elif ip -n "$NETNS" link show dev "$ifc" | grep -q 'prog/xdp'; then
      die 2 "$NETNS:$ifc already has an XDP program attached (not ours); detach it with: ip -n $NETNS link set dev $ifc xdp off"
    fi
  done
}

# Sets MAIN, the CPU for the DUT's threads that do not forward: the first
# CPU other than CORE in this process's affinity (Cpus_allowed_list), else
# CORE; $PERF_DUT_MAIN_CORE overrides (exit 2 if it is no CPU number).
pick_main_cpu() {
  local key value allowed='' r lo hi c
  local -a ranges
  MAIN=${PERF_DUT_MAIN_CORE:-}
  if [ -z "$MAIN" ]; then
    MAIN=$CORE
    while read -r key value; do
      [ "$key" = Cpus_allowed_list: ] && allowed=$value
    done </proc/self/status
    IFS=, read -r -a ranges <<<"$allowed"
    for r in "${ranges[@]}"; do
      lo=${r%-*} hi=${r#*-}
      for ((c = lo; c <= hi; c++)); do
        if [ "$c" != "$CORE" ]; then MAIN=$c; break 2; fi
      done
    done
  fi
  [[ $MAIN =~ ^[0-9]+$ ]] || die 2 "PERF_DUT_MAIN_CORE must be a CPU number, not '$MAIN'"
}

# Makes sure at least $1 2 MiB hugepages are free: if fewer are, raises
# vm nr_hugepages by the difference, to $2 at least, and leaves them
# reserved at exit. Without 2 MiB hugepages in the kernel: exit $3; when
# they cannot be had: exit 2.
ensure_hugepages() {
  local need=$1 want=$2 missing_code=$3 free_pages total target
  [ -d "$HP" ] || die "$missing_code" "the kernel has no 2 MiB hugepages ($HP missing)"
  read -r free_pages <"$HP/free_hugepages"
  if ((free_pages < need)); then
    read -r total <"$HP/nr_hugepages"
    target=$((total + need - free_pages))
    ((target < want)) && target=$want
    note "only $free_pages free 2 MiB hugepages: raising nr_hugepages from $total to $target (left reserved)"
    echo "$target" >"$HP/nr_hugepages" 2>/dev/null || die 2 "cannot write $HP/nr_hugepages"
    read -r free_pages <"$HP/free_hugepages"
    ((free_pages >= need)) ||
      die 2 "only $free_pages free 2 MiB hugepages after asking for $target (need $need)"
  fi
}

# Creates RUN_DIR = /tmp/NAME.PID.N (mode 700; exit 1 if it cannot), after
# removing those of earlier runs that were SIGKILLed (their pid is gone).
make_run_dir() {
  local d pid
  for d in /tmp/"$NAME".*.*; do
    [ -d "$d" ] || continue
    pid=${d#/tmp/"$NAME".}
    pid=${pid%%.*}
    [[ $pid =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null && rm -rf "$d"
  done
  RUN_DIR=/tmp/$NAME.$$.$RANDOM
  mkdir -m 700 "$RUN_DIR" || { RUN_DIR= && die 1 "cannot create a run directory under /tmp"; }
}

# Appends to LOG one line "# thread NAME on CPUs LIST" for each thread of
# process $1.
log_threads() {
  awk '/^Name:/ {n = $2} /^Cpus_allowed_list:/ {print "# thread " n " on CPUs " $2}' \
    /proc/"$1"/task/*/status >>"$LOG" 2>/dev/null
}
