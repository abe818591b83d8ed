#!/usr/bin/env bash
# DPDK testpmd as a peer device-under-test for the packet-rate benchmark
# runner: L2 io forwarding between two AF_XDP ports, nothing rewritten.
#
#   usage: scripts/perf-dut-testpmd.sh NETNS IN_IF OUT_IF CORE
#   e.g.   scripts/perf-dut-testpmd.sh xb-dut gen0 sink0 1
#
# Runs in the foreground. Sets up, starts testpmd inside NETNS, prints the
# single line `READY` on stdout once it forwards, then waits. On SIGTERM or
# SIGINT it stops forwarding, prints one line `STATS {json}` on stdout,
# removes what it created and exits 0. Nothing else goes to stdout: progress
# and errors go to stderr, testpmd's own output to the log file below.
# Errors: a message on stderr and exit 1 (bad usage or setup: 2). Every wait
# is bounded (30 s for readiness, 20 s for the shutdown, then SIGKILL).
#
# What runs (Debian 12 packages dpdk + librte-net-af-xdp23, DPDK 22.11):
#   ip netns exec NETNS dpdk-testpmd --lcores 0@MAIN,1@CORE --main-lcore 0 \
#       --no-pci --in-memory --file-prefix perf-dut-testpmd-<pid> \
#       --vdev net_af_xdp0,iface=IN_IF --vdev net_af_xdp1,iface=OUT_IF \
#       -- -i --auto-start --forward-mode=io --nb-cores=1 --total-num-mbufs=32768 \
#       --record-core-cycles
# Port 0 is IN_IF, port 1 is OUT_IF; one forwarding lcore (lcore 1, pinned to
# CPU CORE) polls both ports: IN_IF -> OUT_IF and OUT_IF -> IN_IF, 32-packet
# bursts, frames untouched (testpmd's io mode).
#
# CPUs. The forwarding lcore is the only busy thread and is pinned to CORE.
# The main lcore (lcore 0) runs testpmd's command line and sleeps in read()
# on a fifo for the whole run; it is pinned to MAIN = the first other CPU this
# process may use (on the 2-CPU VM: the generator's CPU, where it costs
# nothing while it sleeps), or $PERF_DUT_MAIN_CORE, or CORE itself if there is
# no other CPU. DPDK pins its control threads (eal-intr-thread, telemetry) to
# the CPUs of the process's affinity that are not lcores, and to the main
# lcore's CPU if there are none (the 2-CPU case): they are idle too.
# Note that on a veth the receive side's XDP program and the AF_XDP copy into
# testpmd's buffers run in the softirq of whoever pushed the frame (the
# generator's CPU, unless the PMD's busy polling on CORE takes the NAPI
# over), and the transmit side's copy runs on CORE in testpmd's sendto().
#
# Why the odd options, on this machine:
#   --in-memory         no /var/run/dpdk files, no shared config, and no
#                       hugetlbfs mount needed (EAL gets its hugepages through
#                       memfd; this VM has none mounted): nothing to clean up
#                       if testpmd is killed. --file-prefix is unique anyway.
#   hugepages           2 MiB pages: if fewer than 128 are free the script
#                       raises vm nr_hugepages to 512 (or more) and leaves
#                       them reserved at exit.
#   --total-num-mbufs   testpmd would size its pool from the PMD's limits
#                       (155456 mbufs, ~340 MB); 32768 mbufs (~72 MB) are
#                       plenty for 2 ports x 2048-descriptor rings.
#   LIBXDP_SKIP_DISPATCHER=1  DPDK 22.11's af_xdp PMD links libxdp (1.3.1
#                       here), whose xsk code attaches its default redirect
#                       program (xsk_def_prog) through libxdp's multi-program
#                       dispatcher when a bpffs is mounted. This kernel
#                       refuses the dispatcher (loading xdp-dispatcher.o
#                       fails: "Operation not permitted"); libxdp then falls
#                       back to attaching the program directly, and without
#                       a bpffs (none here) it does so at once. The variable
#                       makes the direct attach (native XDP on a veth) the
#                       only path, wherever bpffs is. The PMD detaches the
#                       program when a port closes; the script checks and
#                       removes anything left over.
#   no devargs          veth has no zero-copy AF_XDP: the kernel picks copy
#                       mode by itself (force_copy=1 changes nothing). The
#                       PMD's default busy polling (busy_budget=64,
#                       SO_PREFER_BUSY_POLL) is kept. Extra devargs for both
#                       ports can be given in $PERF_DUT_DEVARGS (e.g.
#                       "busy_budget=0"), e.g. to compare.
#   --record-core-cycles  the forwarding lcore reads the TSC around each
#                       non-empty burst; `stop` then prints the busy cycles
#                       per packet (STATS busy_cycles_per_packet), the DUT's
#                       cost per frame whatever the generator's burstiness.
#   promiscuous mode    testpmd turns it on and leaves it on at exit; the
#                       script puts back each interface's previous setting.
#   stdbuf -oL         testpmd's messages reach the log line by line (they
#                       tell readiness and carry the statistics).
#   setsid, stdin fifo  testpmd runs interactively (-i) reading commands from
#                       a fifo, in its own session so a terminal's Ctrl-C
#                       reaches only this script, which then sends `stop`,
#                       `show port stats all` and `quit`. If this script is
#                       killed outright, testpmd gets SIGTERM (setpriv
#                       --pdeathsig) and the fifo's writer goes away: it
#                       quits, closing its ports. A stale xsk_def_prog (if
#                       testpmd itself was SIGKILLed) is removed by the next
#                       run.
#
# STATS: from testpmd's `show port stats all` (port counters since start)
# and the forward statistics printed by `stop`:
#   in_rx, in_rx_missed, in_rx_errors, in_rx_nombuf, in_tx   port 0 (IN_IF)
#   out_rx, out_tx, out_tx_errors                            port 1 (OUT_IF)
#   fwd_out_tx_dropped  frames the io engine read but port 1 would not take
#   drops               in_rx_missed + in_rx_errors + in_rx_nombuf
#                       + out_tx_errors + fwd_out_tx_dropped
#   busy_cycles_per_packet, tsc_mhz  from --record-core-cycles (testpmd's
#                       cycles in bursts that carried frames / frames
#                       forwarded, both directions; at tsc_mhz)
#   kernel              deltas from READY to stop of the kernel's counters:
#                       in_xdp_packets, in_xdp_redirect (to the AF_XDP
#                       socket), in_drops (redirects that failed: the
#                       socket's rx ring was full; the same frames as
#                       in_rx_missed, which the PMD reads from the socket) from
#                       `ethtool -S IN_IF`; out_tx_packets, out_tx_dropped
#                       from OUT_IF's sysfs statistics.
# Counters DPDK cannot read are left out (best effort).
#
# Signals: the trap is set first thing. From there until the stop the
# script runs no command substitution $(...): bash 5.2.15 (Debian 12) can
# drop a trap that fires while it expands one ("trap: line 2: unexpected EOF
# while looking for matching `)'"), and a lost SIGTERM would hang the run.
#
# Files: a private run directory /tmp/perf-dut-testpmd.PID.N (fifo),
# removed at exit; testpmd's log /tmp/perf-dut-testpmd-NETNS.log (kept,
# overwritten by the next run; $PERF_DUT_LOG to choose another). What this
# script shares with scripts/perf-dut-ovs.sh is in scripts/perf-dut-lib.sh.
set -u -o pipefail

NAME=perf-dut-testpmd
stop_requested=
trap 'stop_requested=1' TERM INT
# note, die, the checks, ...: found next to this script without $(dirname)
# (see Signals above).
case ${BASH_SOURCE[0]} in */*) LIB=${BASH_SOURCE[0]%/*}/perf-dut-lib.sh ;; *) LIB=./perf-dut-lib.sh ;; esac
# shellcheck source-path=SCRIPTDIR source=perf-dut-lib.sh
. "$LIB" || { echo "$NAME: error: cannot read $LIB" >&2; exit 2; }

parse_args "$@"
TESTPMD=${PERF_DUT_TESTPMD:-/usr/bin/dpdk-testpmd}
LOG=${PERF_DUT_LOG:-/tmp/$NAME-$NETNS.log}
READY_TIMEOUT=30
STOP_TIMEOUT=20
NEED_PAGES=128
WANT_PAGES=512

PID=

cleanup() {
  trap '' TERM INT # bounded from here on; do not die half-way
  exec 3>&- # end of input: testpmd quits by itself once at its prompt
  reap "$PID" 50 testpmd 50
  PID=
  # The PMD detaches its program when a port closes; one left by a killed
  # testpmd would block the next run (the interfaces had none before us).
  remove_leftover_xdp
  restore_promisc
  [ -n "$RUN_DIR" ] && rm -rf "$RUN_DIR"
  RUN_DIR=
}

# --- checks ------------------------------------------------------------------
[ "$EUID" = 0 ] || die 2 "must run as root (netns, hugepages, XDP)"
[ -x "$TESTPMD" ] || die 2 "$TESTPMD not found (apt-get install dpdk librte-net-af-xdp23)"
compgen -G '/usr/lib/*/dpdk/pmds-*/librte_net_af_xdp.so*' >/dev/null ||
  die 2 "DPDK's af_xdp PMD is missing (apt-get install librte-net-af-xdp23)"
check_args xsk_def_prog

# The main lcore's CPU: the first other CPU we may use, else CORE.
pick_main_cpu

# --- hugepages -----------------------------------------------------------------
ensure_hugepages "$NEED_PAGES" "$WANT_PAGES" 2
[ -z "$stop_requested" ] || die 1 "stopped by a signal during setup"

# --- start testpmd ---------------------------------------------------------------
make_run_dir
FIFO=$RUN_DIR/cmd
mkfifo "$FIFO" || die 1 "cannot create $FIFO"
: >"$LOG" || die 2 "cannot write the log $LOG"
note "log: $LOG; forwarding lcore on CPU $CORE, main lcore on CPU $MAIN"

EXTRA=${PERF_DUT_DEVARGS:+,$PERF_DUT_DEVARGS}
CMD=(ip netns exec "$NETNS" "$TESTPMD"
  --lcores "0@$MAIN,1@$CORE" --main-lcore 0
  --no-pci --in-memory --file-prefix "$NAME-$$"
  --log-level pmd.net.af_xdp:info
  --vdev "net_af_xdp0,iface=$IN_IF$EXTRA" --vdev "net_af_xdp1,iface=$OUT_IF$EXTRA"
  -- -i --auto-start --forward-mode=io --nb-cores=1 --total-num-mbufs=32768
  --record-core-cycles)
echo "# ${CMD[*]}" >>"$LOG"
record_promisc
CREATED_XDP=1
# setsid does not fork here (a background child of a script is no group
# leader), so $! is testpmd's pid (setpriv, stdbuf and ip netns exec exec
# it too). setpriv --pdeathsig TERM: should this script be SIGKILLed,
# testpmd gets SIGTERM (and end of input on the fifo) and shuts down.
# stdbuf -oL: testpmd's stdout is a file, which stdio would buffer by 4 KiB,
# and we read it for readiness and statistics.
LIBXDP_SKIP_DISPATCHER=1 setsid setpriv --pdeathsig TERM stdbuf -oL "${CMD[@]}" <"$FIFO" >>"$LOG" 2>&1 &
PID=$!
# Read-write so that the open never blocks; testpmd's stdin is read-only, so
# it sees end of input once this script's descriptor is gone.
exec 3<>"$FIFO" || die 1 "cannot open $FIFO"

deadline=$((SECONDS + READY_TIMEOUT))
ready=
while ((SECONDS < deadline)); do
  [ -z "$stop_requested" ] || die 1 "stopped by a signal before testpmd was ready"
  alive "$PID" || break
  grep -qE 'No probed ethernet devices|failed to initialize' "$LOG" && break
  if grep -q '^Start automatic packet forwarding' "$LOG" &&
    grep -q 'forwards packets on' "$LOG" &&
    ip -n "$NETNS" link show dev "$IN_IF" | grep -q 'prog/xdp' &&
    ip -n "$NETNS" link show dev "$OUT_IF" | grep -q 'prog/xdp'; then
    ready=1
    break
  fi
  sleep 0.2
done
if [ -z "$ready" ]; then
  if ! alive "$PID"; then
    why="testpmd exited"
  elif grep -qE 'No probed ethernet devices|failed to initialize' "$LOG"; then
    why="testpmd could not set up the AF_XDP ports"
  else
    why="not forwarding after ${READY_TIMEOUT} s"
  fi
  tail -n 25 "$LOG" | sed 's/^/  | /' >&2
  die 1 "$why (log above, full log in $LOG)"
fi
grep -qx dpdk-testpmd "/proc/$PID/comm" 2>/dev/null ||
  note "WARNING: pid $PID is not dpdk-testpmd (setsid forked?): stopping may leave it running"
log_threads "$PID"
kernel_counters >"$RUN_DIR/k0"
echo READY

# --- wait ------------------------------------------------------------------------
while [ -z "$stop_requested" ]; do
  if ! alive "$PID"; then
    tail -n 25 "$LOG" | sed 's/^/  | /' >&2
    die 1 "testpmd exited on its own (log above, full log in $LOG)"
  fi
  wait "$PID" 2>/dev/null # returns early when a trapped signal arrives
done

# --- stop, collect, clean up ---------------------------------------------------------
trap '' TERM INT
kernel_counters >"$RUN_DIR/k1"
# stop first (forward statistics, and the port counters are then final).
printf 'stop\nshow port stats all\nquit\n' >&3 2>/dev/null
exec 3>&-
for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
  alive "$PID" || break
  sleep 0.1
done
alive "$PID" && note "testpmd did not quit within ${STOP_TIMEOUT} s"

STATS=$(awk '
  function num(s) { return s + 0 }
  FILENAME != ARGV[3] { if (FILENAME == ARGV[1]) before[$1] = $2; else after[$1] = $2; next }
  /Forward statistics for port/ { fport = $(NF - 1); nic = -1; next }
  /NIC statistics for port/ { nic = $(NF - 1); fport = -1; next }
  /^ *[-+#]{20,} *$/ { fport = -1; nic = -1 }
  nic >= 0 && /RX-packets:/ { rx[nic] = num($2); missed[nic] = num($4); got[nic] = 1 }
  nic >= 0 && /RX-errors:/ { rxerr[nic] = num($2) }
  nic >= 0 && /RX-nombuf:/ { nombuf[nic] = num($2) }
  nic >= 0 && /TX-packets:/ { tx[nic] = num($2); txerr[nic] = num($4) }
  fport >= 0 && /TX-packets:/ { fdrop[fport] = num($4) }
  /CPU cycles\/packet=/ { split($2, c, "="); cpp = c[2]; mhz = $(NF - 2) }
  END {
    if (!got[0] || !got[1]) exit 1
    drops = missed[0] + rxerr[0] + nombuf[0] + txerr[1] + fdrop[1]
    printf "{\"dut\":\"testpmd\",\"in_rx\":%d,\"in_rx_missed\":%d,\"in_rx_errors\":%d,\"in_rx_nombuf\":%d,\"in_tx\":%d,", rx[0], missed[0], rxerr[0], nombuf[0], tx[0]
    printf "\"out_rx\":%d,\"out_tx\":%d,\"out_tx_errors\":%d,\"fwd_out_tx_dropped\":%d,\"drops\":%d", rx[1], tx[1], txerr[1], fdrop[1], drops
    sep = ""; ks = ""
    for (k in after) if (k in before) { ks = ks sep sprintf("\"%s\":%d", k, after[k] - before[k]); sep = "," }
    if (cpp != "") printf ",\"busy_cycles_per_packet\":%.1f,\"tsc_mhz\":%d", cpp, mhz
    printf ",\"kernel\":{%s}}\n", ks
  }' "$RUN_DIR/k0" "$RUN_DIR/k1" "$LOG")
if [ -z "$STATS" ]; then
  note "testpmd printed no port statistics (see $LOG)"
  STATS='{"dut":"testpmd","error":"no statistics"}'
fi
echo "STATS $STATS"
cleanup
exit 0
