#!/usr/bin/env bash
# Open vSwitch's userspace datapath as a peer device-under-test for the
# packet-rate benchmark runner: two AF_XDP ports and one OpenFlow rule per
# direction, frames untouched.
#
#   usage: scripts/perf-dut-ovs.sh NETNS IN_IF OUT_IF CORE
#   e.g.   scripts/perf-dut-ovs.sh xb-dut gen0 sink0 1
#
# Runs in the foreground. Sets up a private OVS (its own ovsdb-server and
# ovs-vswitchd, database and sockets in a temp directory) inside NETNS,
# prints the single line `READY` on stdout once it forwards, then waits. On
# SIGTERM or SIGINT it reads the counters, prints one line `STATS {json}` on
# stdout, stops OVS, removes what it created and exits 0. Nothing else goes
# to stdout: progress and errors go to stderr, OVS's own logs to the log
# file below. Errors: a message on stderr and exit 1 (bad usage or setup: 2;
# OVS cannot run here at all: 3). Every wait is bounded (30 s for
# readiness, about 20 s for the shutdown, then SIGKILL).
#
# What runs (Debian 12 packages openvswitch-switch-dpdk, openvswitch-common:
# OVS 3.1.0, built with DPDK 22.11 and with OVS's own AF_XDP netdev):
#   ovsdb-server  RUN_DIR/conf.db --remote=punix:RUN_DIR/db.sock
#   ovs-vswitchd  /usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
#                 unix:RUN_DIR/db.sock (both via ip netns exec NETNS, as our
#                 own children: no --detach, no pidfiles, no system paths;
#                 OVS_RUNDIR/OVS_DBDIR/OVS_LOGDIR/OVS_SYSCONFDIR = RUN_DIR,
#                 so the system's openvswitch service, its /etc/openvswitch
#                 database and /var/run/openvswitch are never touched)
#   bridge        br0 (or $PERF_DUT_OVS_BRIDGE), datapath_type=netdev,
#                 fail-mode=secure (no NORMAL flow, no in-band rules)
#   ports         ofport 1 = IN_IF, ofport 2 = OUT_IF, each
#                   type=afxdp options:xdp-mode=native       (default)
#                 or, with PERF_DUT_OVS_PORTS=dpdk, DPDK's af_xdp PMD:
#                   type=dpdk options:dpdk-devargs=net_af_xdpN,iface=IF
#                 (auto: afxdp when `iface_types` lists it, which Debian's
#                 build does, else dpdk)
#   flows         in_port=1,actions=output:2 and in_port=2,actions=output:1
#                 (explicit port-to-port rules: OVS's io-forward; NORMAL
#                 would add MAC learning and flooding to the measurement)
#
# CPUs. other_config:pmd-cpu-mask = 1<<CORE: one PMD thread, pinned to CORE,
# polls both ports' receive queues and does all the forwarding. Everything
# else (the vswitchd main thread, handler, revalidator, urcu, ct_clean and
# ipf_clean threads; ovsdb-server) is started under `taskset -c MAIN`: MAIN
# = the first other CPU this process may use (on the 2-CPU VM: the
# generator's CPU; those threads sleep while flows are cached: the
# revalidator wakes every 500 ms), or $PERF_DUT_MAIN_CORE, or CORE itself if
# there is no other CPU. (The PMD thread sets its own affinity to CORE.)
# On a veth the receive side's XDP program and the AF_XDP copy into OVS's
# umem run in the softirq of whoever pushed the frame (the generator's CPU,
# or CORE when the PMD's wakeup syscall runs the NAPI); the transmit side's
# copy runs on CORE in the PMD's sendto().
#
# Why the odd options, on this machine:
#   xdp-mode=native     veth has no zero-copy AF_XDP; the default
#                       best-effort would try native-with-zerocopy first.
#                       Native (copy) XDP is what veth does best.
#   LIBXDP_SKIP_DISPATCHER=1  OVS's afxdp netdev (and DPDK's PMD) attach
#                       libxdp's default redirect program (xsk_def_prog);
#                       libxdp 1.3.1 would do it through its multi-program
#                       dispatcher when a bpffs is mounted, which this kernel
#                       refuses ("Operation not permitted"; libxdp then falls
#                       back). The variable makes the direct attach the only
#                       path. The program goes when the port is deleted; the
#                       script checks and removes anything left over.
#   memlock             vswitchd logs "setrlimit(RLIMIT_MEMLOCK) failed:
#                       Operation not permitted" (this sandbox cannot raise
#                       the hard limit): harmless, root may pin the umem
#                       (CAP_IPC_LOCK) and BPF memory is charged to memcg.
#   dpdk ports only     other_config:dpdk-init=true with dpdk-extra
#                       "--in-memory --no-pci --file-prefix ..." (hugepages
#                       through memfd, no hugetlbfs mount, no /var/run/dpdk
#                       files) and per-port-memory=true (small mempools);
#                       2 MiB hugepages are raised to 512 if fewer than 256
#                       are free, and left reserved. OVS gives DPDK `-l
#                       MAIN` (its own affinity), so EAL's threads sit on
#                       MAIN too. The afxdp ports need no hugepages.
#   promiscuous mode    OVS turns it on and leaves it on at exit; the script
#                       puts back each interface's previous setting.
#   taps                the netdev datapath creates tap devices `ovs-netdev`
#                       and BRIDGE in NETNS; `exit --cleanup` removes them
#                       (the script deletes any left, and taps of those names
#                       left by a SIGKILLed run before it starts).
#
# STATS (deltas from READY to the stop):
#   in_rx               frames OVS read from IN_IF (n_packets of the
#                       in_port=1 rule; every such frame matches it)
#   out_rx              frames OVS read from OUT_IF (the in_port=2 rule)
#   in_if_rx, in_if_rx_dropped, in_if_tx   IN_IF's counters in `ovs-appctl
#                       dpctl/show -s` (for afxdp, the kernel's: rx counts
#                       every frame that reached the interface, rx_dropped
#                       includes those the AF_XDP socket had no room for)
#   out_tx, out_tx_dropped, out_if_rx      OUT_IF's counters, same source
#   drops               in_if_rx_dropped + out_tx_dropped
#   pmd_rx_packets, pmd_processing_cycles_per_packet, pmd_idle_pct
#                       `ovs-appctl dpif-netdev/pmd-stats-show` of the PMD
#                       thread (cleared at READY); cycles per packet is the
#                       DUT's cost per frame whatever the generator's
#                       burstiness
#   kernel              `ethtool -S IN_IF` (in_xdp_packets, in_xdp_redirect,
#                       in_drops: failed redirects) and OUT_IF's sysfs
#                       statistics (out_tx_packets, out_tx_dropped)
# Counters OVS reports as "?" (errors of afxdp ports) are left out.
#
# Signals: the trap is set first thing. From there until the stop the
# script runs no command substitution $(...): bash 5.2.15 (Debian 12) can
# drop a trap that fires while it expands one ("trap: line 2: unexpected EOF
# while looking for matching `)'"), and a lost SIGTERM would hang the run.
#
# Files: a private run directory /tmp/perf-dut-ovs.PID.N (database,
# sockets), removed at exit; OVS's logs in /tmp/perf-dut-ovs-NETNS.log
# (ovs-vswitchd) and /tmp/perf-dut-ovs-NETNS.ovsdb.log (kept, overwritten
# by the next run; $PERF_DUT_LOG chooses the first). What this script
# shares with scripts/perf-dut-testpmd.sh is in scripts/perf-dut-lib.sh.
set -u -o pipefail

NAME=perf-dut-ovs
stop_requested=
trap 'stop_requested=1' TERM INT
# note, die, the checks, ...: found next to this script without $(dirname)
# (see Signals above).
case ${BASH_SOURCE[0]} in */*) LIB=${BASH_SOURCE[0]%/*}/perf-dut-lib.sh ;; *) LIB=./perf-dut-lib.sh ;; esac
# shellcheck source-path=SCRIPTDIR source=perf-dut-lib.sh
. "$LIB" || { echo "$NAME: error: cannot read $LIB" >&2; exit 2; }

parse_args "$@"
VSWITCHD=${PERF_DUT_VSWITCHD:-/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk}
SCHEMA=/usr/share/openvswitch/vswitch.ovsschema
BR=${PERF_DUT_OVS_BRIDGE:-br0}
PORTS=${PERF_DUT_OVS_PORTS:-auto}
LOG=${PERF_DUT_LOG:-/tmp/$NAME-$NETNS.log}
DBLOG=${LOG%.log}.ovsdb.log
READY_TIMEOUT=30
NEED_PAGES=256
WANT_PAGES=512

DB_PID=
VS_PID=
CREATED_TAPS=()

cleanup() {
  trap '' TERM INT # bounded from here on; do not die half-way
  if alive "$VS_PID"; then
    # Deleting the bridge closes the AF_XDP sockets and detaches the XDP
    # programs; exit --cleanup removes the datapath and its taps.
    ovs-vsctl --db="unix:$RUN_DIR/db.sock" --timeout=10 -- --if-exists del-br "$BR" >>"$LOG" 2>&1
    ovs-appctl -t "$RUN_DIR/ovs-vswitchd.ctl" --timeout=10 exit --cleanup >>"$LOG" 2>&1
  fi
  reap "$VS_PID" 100 ovs-vswitchd
  VS_PID=
  if alive "$DB_PID"; then
    ovs-appctl -t "$RUN_DIR/ovsdb-server.ctl" --timeout=5 exit >>"$LOG" 2>&1
  fi
  reap "$DB_PID" 50 ovsdb-server
  DB_PID=
  remove_leftover_xdp
  local ifc
  for ifc in "${CREATED_TAPS[@]}"; do
    if ip -n "$NETNS" link show dev "$ifc" >/dev/null 2>&1; then
      note "deleting the tap $NETNS:$ifc left by ovs-vswitchd"
      ip -n "$NETNS" link del dev "$ifc" 2>/dev/null || note "WARNING: could not delete $NETNS:$ifc"
    fi
  done
  CREATED_TAPS=()
  restore_promisc
  if [ -n "$RUN_DIR" ]; then
    cat "$RUN_DIR/ovsdb-server.log" >"$DBLOG" 2>/dev/null
    rm -rf "$RUN_DIR"
  fi
  RUN_DIR=
}

# OVS's counters, as "key value" lines: the port counters of dpctl/show -s
# for ofports 1 and 2 (by datapath port name) and the rules' n_packets.
ovs_counters() {
  ovs-appctl -t "$RUN_DIR/ovs-vswitchd.ctl" --timeout=5 dpctl/show -s 2>/dev/null |
    awk -v a="$PORT_IN" -v b="$PORT_OUT" '
      /^ *port [0-9]+: / { p = ""; if ($3 == a) p = "in_if_"; if ($3 == b) p = "out_if_"; next }
      p != "" && /RX packets:/ { for (i = 2; i <= NF; i++) { split($i, kv, ":"); if (kv[2] ~ /^[0-9]+$/) print p "rx_" kv[1], kv[2] } }
      p != "" && /TX packets:/ { for (i = 2; i <= NF; i++) { split($i, kv, ":"); if (kv[2] ~ /^[0-9]+$/) print p "tx_" kv[1], kv[2] } }'
  # "RX packets:5" splits as ("RX", "packets:5"): field 2 on is key:value.
  ovs-ofctl --timeout=5 --no-names dump-flows "unix:$RUN_DIR/$BR.mgmt" 2>/dev/null |
    awk '/in_port=1 / || /in_port=1,/ { if (match($0, /n_packets=[0-9]+/)) print "flow_in_packets", substr($0, RSTART + 10, RLENGTH - 10) }
         /in_port=2 / || /in_port=2,/ { if (match($0, /n_packets=[0-9]+/)) print "flow_out_packets", substr($0, RSTART + 10, RLENGTH - 10) }'
}

# --- checks ------------------------------------------------------------------
[ "$EUID" = 0 ] || die 2 "must run as root (netns, XDP, hugepages)"
for b in "$VSWITCHD" /usr/sbin/ovsdb-server /usr/bin/ovsdb-tool /usr/bin/ovs-vsctl /usr/bin/ovs-appctl /usr/bin/ovs-ofctl; do
  [ -x "$b" ] || die 3 "$b is missing: install openvswitch-switch-dpdk (and openvswitch-common)"
done
[ -r "$SCHEMA" ] || die 3 "$SCHEMA is missing (openvswitch-common)"
# A CORE that is no number is check_args's to report; this one too large.
[[ $CORE =~ ^[0-9]+$ ]] && ! ((CORE < 63)) && die 2 "CORE $CORE: this script builds a 64-bit pmd-cpu-mask"
check_args xsk_def_prog
for ifc in ovs-netdev "$BR"; do
  ip -n "$NETNS" link show dev "$ifc" >/dev/null 2>&1 || continue
  # A SIGKILLed run leaves these taps behind (vswitchd made them persistent).
  ip -n "$NETNS" -d link show dev "$ifc" | grep -q 'tun type tap' ||
    die 2 "$NETNS already has an interface $ifc, which OVS's netdev datapath wants to create"
  note "deleting the tap $NETNS:$ifc left by an earlier run"
  ip -n "$NETNS" link del dev "$ifc" || die 2 "cannot delete $NETNS:$ifc"
done
case $PORTS in auto | afxdp | dpdk) ;; *) die 2 "PERF_DUT_OVS_PORTS must be auto, afxdp or dpdk, not '$PORTS'" ;; esac

# The CPU for everything but the PMD thread: the first other CPU we may use.
pick_main_cpu
printf -v PMD_MASK '0x%x' $((1 << CORE))

# --- ovsdb-server ------------------------------------------------------------------
[ -z "$stop_requested" ] || die 1 "stopped by a signal during setup"
make_run_dir
export OVS_RUNDIR=$RUN_DIR OVS_DBDIR=$RUN_DIR OVS_LOGDIR=$RUN_DIR OVS_SYSCONFDIR=$RUN_DIR
export LIBXDP_SKIP_DISPATCHER=1
: >"$LOG" || die 2 "cannot write the log $LOG"
note "log: $LOG; PMD thread on CPU $CORE, other OVS threads on CPU $MAIN"
ovsdb-tool create "$RUN_DIR/conf.db" "$SCHEMA" >>"$LOG" 2>&1 || die 3 "ovsdb-tool create failed (see $LOG)"
VSCTL=(ovs-vsctl --db="unix:$RUN_DIR/db.sock" --timeout=20)
APPCTL=(ovs-appctl -t "$RUN_DIR/ovs-vswitchd.ctl" --timeout=10)

record_promisc
CREATED_TAPS=(ovs-netdev "$BR")
CREATED_XDP=1

# setsid (no fork: a background child of a script is no group leader) keeps
# a terminal's Ctrl-C away from OVS; taskset, setpriv and ip netns exec exec
# too, so $! is the daemon's pid. setpriv --pdeathsig TERM: should this
# script be SIGKILLed, the daemons get SIGTERM and exit (a stale
# xsk_def_prog is then removed by the next run).
taskset -c "$MAIN" setsid setpriv --pdeathsig TERM ip netns exec "$NETNS" ovsdb-server "$RUN_DIR/conf.db" \
  --remote="punix:$RUN_DIR/db.sock" --unixctl="$RUN_DIR/ovsdb-server.ctl" \
  --no-chdir -vconsole:off -vsyslog:off --log-file="$RUN_DIR/ovsdb-server.log" \
  </dev/null >>"$LOG" 2>&1 &
DB_PID=$!
deadline=$((SECONDS + READY_TIMEOUT))
until "${VSCTL[@]}" --no-wait init >/dev/null 2>&1; do
  [ -z "$stop_requested" ] || die 1 "stopped by a signal during setup"
  alive "$DB_PID" || die 3 "ovsdb-server exited at start (see $RUN_DIR/ovsdb-server.log, copied to $DBLOG)"
  ((SECONDS < deadline)) || die 1 "ovsdb-server not answering after ${READY_TIMEOUT} s"
  sleep 0.2
done
"${VSCTL[@]}" --no-wait set Open_vSwitch . other_config:pmd-cpu-mask="$PMD_MASK" >>"$LOG" 2>&1 ||
  die 1 "cannot configure the database (see $LOG)"

# --- ovs-vswitchd -------------------------------------------------------------------
start_vswitchd() {
  taskset -c "$MAIN" setsid setpriv --pdeathsig TERM ip netns exec "$NETNS" "$VSWITCHD" "unix:$RUN_DIR/db.sock" \
    --unixctl="$RUN_DIR/ovs-vswitchd.ctl" --no-chdir -vconsole:off -vsyslog:off \
    --log-file="$LOG" </dev/null >>"$LOG" 2>&1 &
  VS_PID=$!
  until "${APPCTL[@]}" version >/dev/null 2>&1; do
    [ -z "$stop_requested" ] || die 1 "stopped by a signal during setup"
    alive "$VS_PID" || die 3 "ovs-vswitchd exited at start: $(tail -n 5 "$LOG")"
    ((SECONDS < deadline)) || die 1 "ovs-vswitchd not answering after ${READY_TIMEOUT} s (see $LOG)"
    sleep 0.2
  done
}

# DPDK is read once, when vswitchd starts: configure it before.
configure_dpdk() {
  ensure_hugepages "$NEED_PAGES" "$WANT_PAGES" 3
  "${VSCTL[@]}" --no-wait set Open_vSwitch . other_config:dpdk-init=true \
    other_config:per-port-memory=true \
    other_config:dpdk-extra="--in-memory --no-pci --file-prefix $NAME-$$" >>"$LOG" 2>&1 ||
    die 1 "cannot configure the database (see $LOG)"
}

[ "$PORTS" = dpdk ] && configure_dpdk
start_vswitchd
if [ "$PORTS" = auto ]; then
  "${VSCTL[@]}" get Open_vSwitch . iface_types >"$RUN_DIR/types" 2>>"$LOG"
  if grep -qE '[[ ]afxdp[],]' "$RUN_DIR/types"; then
    PORTS=afxdp
  else
    cat "$RUN_DIR/types" >>"$LOG"
    note "this ovs-vswitchd has no afxdp netdev (iface_types in $LOG): restarting it with DPDK, for DPDK's af_xdp PMD"
    PORTS=dpdk
    "${APPCTL[@]}" exit >>"$LOG" 2>&1
    reap "$VS_PID" 100 ovs-vswitchd
    VS_PID=
    configure_dpdk
    start_vswitchd
  fi
fi
if [ "$PORTS" = dpdk ]; then
  "${VSCTL[@]}" get Open_vSwitch . dpdk_initialized >"$RUN_DIR/dpdk" 2>>"$LOG"
  grep -qx true "$RUN_DIR/dpdk" ||
    die 3 "OVS could not initialise DPDK (ovs-vswitchd-dpdk, OVS 3.1.0, DPDK 22.11): $(grep -iE 'dpdk|EAL' "$LOG" | tail -n 5)"
fi

# --- bridge, ports, flows ---------------------------------------------------------------
if [ "$PORTS" = afxdp ]; then
  PORT_IN=$IN_IF PORT_OUT=$OUT_IF
  IF_IN=(type=afxdp options:xdp-mode=native)
  IF_OUT=(type=afxdp options:xdp-mode=native)
else
  PORT_IN=dpdk-in PORT_OUT=dpdk-out
  IF_IN=(type=dpdk "options:dpdk-devargs=net_af_xdp0,iface=$IN_IF")
  IF_OUT=(type=dpdk "options:dpdk-devargs=net_af_xdp1,iface=$OUT_IF")
fi
"${VSCTL[@]}" -- add-br "$BR" -- set bridge "$BR" datapath_type=netdev fail-mode=secure \
  -- add-port "$BR" "$PORT_IN" -- set interface "$PORT_IN" "${IF_IN[@]}" ofport_request=1 \
  -- add-port "$BR" "$PORT_OUT" -- set interface "$PORT_OUT" "${IF_OUT[@]}" ofport_request=2 \
  >>"$LOG" 2>&1 || die 1 "cannot create bridge $BR (see $LOG)"
for p in "$PORT_IN" "$PORT_OUT"; do
  "${VSCTL[@]}" get interface "$p" ofport >"$RUN_DIR/ofport" 2>>"$LOG"
  grep -qx '[12]' "$RUN_DIR/ofport" ||
    die 1 "OVS could not open port $p: ofport $(cat "$RUN_DIR/ofport"), error $("${VSCTL[@]}" get interface "$p" error 2>&1) (see $LOG)"
done
MGMT=unix:$RUN_DIR/$BR.mgmt
ovs-ofctl --timeout=10 del-flows "$MGMT" >>"$LOG" 2>&1 &&
  ovs-ofctl --timeout=10 add-flow "$MGMT" "in_port=1,actions=output:2" >>"$LOG" 2>&1 &&
  ovs-ofctl --timeout=10 add-flow "$MGMT" "in_port=2,actions=output:1" >>"$LOG" 2>&1 ||
  die 1 "cannot install the flows (see $LOG)"

# --- readiness -----------------------------------------------------------------------
ready=
while ((SECONDS < deadline)); do
  [ -z "$stop_requested" ] || die 1 "stopped by a signal before OVS was ready"
  alive "$VS_PID" || die 1 "ovs-vswitchd exited (see $LOG)"
  if "${APPCTL[@]}" dpif-netdev/pmd-rxq-show >"$RUN_DIR/rxq" 2>/dev/null &&
    grep -q "core_id $CORE:" "$RUN_DIR/rxq" &&
    grep -q "port: $PORT_IN " "$RUN_DIR/rxq" && grep -q "port: $PORT_OUT " "$RUN_DIR/rxq" &&
    ip -n "$NETNS" link show dev "$IN_IF" | grep -q 'prog/xdp' &&
    ip -n "$NETNS" link show dev "$OUT_IF" | grep -q 'prog/xdp' &&
    ovs-ofctl --timeout=5 --no-names dump-flows "$MGMT" >"$RUN_DIR/flows" 2>/dev/null &&
    grep -q 'in_port=1 actions=output:2' "$RUN_DIR/flows" &&
    grep -q 'in_port=2 actions=output:1' "$RUN_DIR/flows"; then
    ready=1
    break
  fi
  sleep 0.2
done
[ -n "$ready" ] || die 1 "OVS not forwarding after ${READY_TIMEOUT} s: $(cat "$RUN_DIR/rxq" 2>/dev/null | tr '\n' ' ') (see $LOG)"
log_threads "$VS_PID"
grep -q "^# thread pmd.* on CPUs $CORE\$" "$LOG" ||
  note "WARNING: no PMD thread pinned to CPU $CORE (see the # thread lines in $LOG)"
"${APPCTL[@]}" dpif-netdev/pmd-stats-clear >>"$LOG" 2>&1
{
  kernel_counters
  ovs_counters
} >"$RUN_DIR/k0"
echo READY

# --- wait ------------------------------------------------------------------------
while [ -z "$stop_requested" ]; do
  if ! alive "$VS_PID" || ! alive "$DB_PID"; then
    tail -n 15 "$LOG" | sed 's/^/  | /' >&2
    die 1 "ovs-vswitchd or ovsdb-server exited on its own (log above, full log in $LOG)"
  fi
  wait "$VS_PID" 2>/dev/null # returns early when a trapped signal arrives
done

# --- stop, collect, clean up ---------------------------------------------------------
trap '' TERM INT
{
  kernel_counters
  ovs_counters
} >"$RUN_DIR/k1"
"${APPCTL[@]}" dpif-netdev/pmd-stats-show >"$RUN_DIR/pmd" 2>>"$LOG"
cat "$RUN_DIR/pmd" >>"$LOG"

STATS=$(awk -v core="$CORE" -v ports="$PORTS" '
  FILENAME == ARGV[1] { before[$1] = $2; next }
  FILENAME == ARGV[2] { after[$1] = $2; next }
  /^pmd thread/ { mine = ($0 ~ ("core_id " core ":")) ; next }
  /^main thread/ { mine = 0; next }
  mine && /packets received:/ { pmd_rx = $3 }
  mine && /idle cycles:/ { gsub(/[()%]/, "", $4); idle = $4 }
  mine && /avg processing cycles per packet:/ { cpp = $6 }
  function d(k) { return (k in after && k in before) ? after[k] - before[k] : -1 }
  function put(name, v) { if (v >= 0) { out = out sprintf(",\"%s\":%d", name, v) } }
  END {
    out = sprintf("{\"dut\":\"ovs\",\"ports\":\"%s\"", ports)
    put("in_rx", d("flow_in_packets")); put("out_rx", d("flow_out_packets"))
    put("in_if_rx", d("in_if_rx_packets")); put("in_if_rx_dropped", d("in_if_rx_dropped"))
    put("in_if_tx", d("in_if_tx_packets"))
    put("out_tx", d("out_if_tx_packets")); put("out_tx_dropped", d("out_if_tx_dropped"))
    put("out_if_rx", d("out_if_rx_packets"))
    drops = 0
    if (d("in_if_rx_dropped") > 0) drops += d("in_if_rx_dropped")
    if (d("out_if_tx_dropped") > 0) drops += d("out_if_tx_dropped")
    if (d("out_if_tx_errors") > 0) drops += d("out_if_tx_errors")
    out = out sprintf(",\"drops\":%d", drops)
    if (pmd_rx != "") out = out sprintf(",\"pmd_rx_packets\":%d", pmd_rx)
    if (cpp != "") out = out sprintf(",\"pmd_processing_cycles_per_packet\":%.1f", cpp)
    if (idle != "") out = out sprintf(",\"pmd_idle_pct\":%.1f", idle)
    sep = ""; ks = ""
    split("in_xdp_packets in_xdp_redirect in_drops out_tx_packets out_tx_dropped", kk, " ")
    for (i = 1; i <= 5; i++) if (d(kk[i]) >= 0) { ks = ks sep sprintf("\"%s\":%d", kk[i], d(kk[i])); sep = "," }
    printf "%s,\"kernel\":{%s}}\n", out, ks
  }' "$RUN_DIR/k0" "$RUN_DIR/k1" "$RUN_DIR/pmd")
[ -n "$STATS" ] || STATS='{"dut":"ovs","error":"no statistics"}'
echo "STATS $STATS"
cleanup
exit 0
