#!/usr/bin/env bash
# Runs DPDK's own rte_hash benchmarks (dpdk-test from Debian's dpdk-dev,
# DPDK 22.11) on this machine and prints their per-lookup cost as CSV on
# stdout, so `make bench-flowtable` can print our flow table next to DPDK's
# rte_hash measured in the same run. Everything else (progress, reasons for
# failure) goes to stderr; the full dpdk-test logs go to the directory $1
# (default /tmp/dpdk-hash-bench). Needs root. Idempotent. About 3 minutes
# on an idle 2-vCPU VM (hash_perf 100-120 s, hash_readwrite_lf_perf 70-75 s).
#
#   usage: scripts/dpdk-hash-bench.sh [outdir] > dpdk.csv
#
# Output lines are `dpdk,<test>,<what>,<value>,<unit>`. `cycles` are TSC
# ticks (the tests time with rte_rdtsc), so ns = cycles / tsc_hz * 1e9.
#
# dpdk,meta,...
#   dpdk_version     dpkg version of dpdk-dev.
#   tsc_hz           TSC rate DPDK itself uses (rte_get_tsc_hz()), from the
#                    EAL debug line "EAL: TSC frequency is ~<N> KHz" of a
#                    short probe run (`dump_physmem`, log-level lib.eal:debug).
#                    Without an Intel CPUID/MSR source (e.g. this AMD VM)
#                    DPDK measures it against CLOCK_MONOTONIC_RAW and rounds
#                    to 10 MHz (2.600 GHz here, the kernel says 2.596).
#                    Falls back to tsc_hz_kernel if the line is missing (the
#                    script says so on stderr).
#   tsc_hz_kernel    The kernel's TSC rate, as a cross-check: dmesg "tsc:
#                    Refined TSC clocksource calibration" or "tsc: Detected
#                    <X> MHz", else /proc/cpuinfo "cpu MHz" (only equal to the
#                    TSC on constant_tsc machines without frequency scaling).
#   hugepages_2m     2 MiB hugepages free for the run; 0 = ran with --no-huge.
#
# dpdk,hash_perf,...   (hash_perf_autotest, app/test/test_hash_perf.c)
#   Single thread (main lcore). One rte_hash per key size, 524288 entries
#   (MAX_ENTRIES = 1<<19), filled to 75% (393216 keys, ADD_PERCENT); each
#   measurement looks every stored key up 5 times in shuffled order
#   (1966080 lookups, all hits) and divides the elapsed ticks by the count.
#   Printed from the table under
#       "Without locks in the code"                   (extra_flag = 0)
#       "ELEMENTS IN PRIMARY OR SECONDARY LOCATION"   (cuckoo-displaced keys)
#       " Operations with 8-byte data"                (lookup returns a value)
#       "Without pre-computed hash values"            (jhash computed in lookup)
#   whose rows are "Keysize Add Lookup Lookup_bulk Delete":
#   lookup_key<K>B          column Lookup: rte_hash_lookup_data(), one key.
#   lookup_burst16_key<K>B  column Lookup_bulk: rte_hash_lookup_bulk_data()
#                           with 16 keys per call, cost per key.
#   K is each of $DPDK_BENCH_KEY_SIZES (default "16 32 48"); the test has
#   4 8 16 32 48 64 9 13 37 40 (13 = IPv4 5-tuple unpadded, 37/40 = IPv6
#   5-tuple unpadded/padded; 48 = the size of xvs's FlowKey, 6 x u64).
#   entries / keys_in_table  the table size and fill above (not printed by
#                           dpdk-test: the constants of the 22.11 source).
#
# dpdk,hash_readwrite_lf_perf,...   (hash_readwrite_lf_perf_autotest,
#   app/test/test_hash_readwrite_lf_perf.c) One rte_hash of 4194304 entries
#   (TOTAL_ENTRY), 4-byte keys, rte_hash_crc, flags RW_CONCURRENCY_LF
#   (lock-free readers) | MULTI_WRITER_ADD | EXT_TABLE. One reader on lcore 1
#   (second CPU) looks keys up with rte_hash_lookup() (or
#   rte_hash_lookup_bulk(), 32 keys per call: the "burst32" rows) in a loop
#   over its key set until the writer, the main lcore on the first CPU, is
#   done; "Cycles per lookup" = the reader's ticks / lookups (it finishes
#   its current pass after the writer stops, so part of a "with writer"
#   figure may be writer-free time). Only the
#   "Number of readers: 1" results of the lock-free section are printed:
#   lookup_hit_no_writer          "Test: Hash add - no key-shifts, read - hit":
#                                 the writer has added keys_no_shift keys
#                                 and stopped; then one pass over them. The
#                                 no-writer baseline.
#   lookup_miss_writer_adding     "... no key-shifts, Hash lookup - miss":
#                                 absent keys while the writer adds the
#                                 keys_no_shift keys (no cuckoo moves).
#   lookup_hit_writer_shifting    "... key shift, Hash lookup - hit
#                                 (non-shift-path)": table holds the
#                                 keys_no_shift keys; hits on keys that are
#                                 not moved while the writer adds
#                                 keys_shifting keys that displace others.
#   lookup_hit_moving_writer_shifting  "... hit (shift-path)": the same, but
#                                 looking up the keys being moved.
#   lookup_miss_writer_shifting   "... key shift, Hash lookup - miss".
#   lookup_hit_extbkt_writer_deleting  "... read - hit (ext_bkt)": hits on
#                                 the ~17K keys in extendable buckets while
#                                 the writer deletes keys, which moves them
#                                 back (a small, cache-resident key set).
#   lookup_burst32_*              the same with bulk lookups (the "** With
#                                 bulk-lookup **" sub-block of each test).
#   entries                       TOTAL_ENTRY of the 22.11 source.
#   keys_*                        the "Count of ..." lines dpdk-test prints
#                                 after "Generating keys...".
#   The test runs its bulk block only if it has 5 lcores (it needs 2 and 4
#   readers for the single-lookup rows first, else it stops the test there).
#   With 2 CPUs the script therefore gives EAL 5 lcores: 0 on CPU0, 1-4 on
#   CPU1 (--lcores '0@c0,1@c1,(2-4)@c1'); lcores 2-4 sleep in EAL's
#   read() until used, so the 1-reader rows run alone on CPU1 as with
#   `-l 0-1`. The 2- and 4-reader and multi-writer rows are then
#   time-shared on one CPU: meaningless, not printed. They make the test
#   take 70-85 s instead of ~12 s; DPDK_BENCH_LF_BULK=0 skips them (and the
#   burst32 rows).
#   runtime (both tests)          wall-clock seconds of the dpdk-test run.
#   other_load (both tests)       CPU time NOT used by dpdk-test during its
#                                 run (other processes + hypervisor steal,
#                                 from /proc/stat minus our children's
#                                 cutime/cstime), in % of all CPUs. Above 5
#                                 the script warns: the numbers are noisy.
#
# Environment: DPDK_BENCH_KEY_SIZES, DPDK_BENCH_LF_BULK (1), DPDK_BENCH_HUGEPAGES
# (512 pages wanted; the runs peak at ~31 and ~234 pages),
# DPDK_BENCH_MIN_HUGEPAGES (300), DPDK_BENCH_NOHUGE_MB (1024),
# DPDK_BENCH_TIMEOUT_PERF (300 s), DPDK_BENCH_TIMEOUT_LF (240 s).
#
# dpdk-test's interface (22.11): the test name is taken from the DPDK_TEST
# environment variable, or from the arguments after the EAL options
# (`dpdk-test <eal opts> -- hash_perf_autotest`), or typed at its RTE>>
# prompt on stdin. This script uses DPDK_TEST with stdin from /dev/null,
# the only form whose exit status is the test's (0 OK, 77 skipped, 255
# failed or unknown test); at the prompt it exits 0 whatever happened.
set -euo pipefail

OUT=${1:-/tmp/dpdk-hash-bench}
KEY_SIZES=${DPDK_BENCH_KEY_SIZES:-16 32 48}
LF_BULK=${DPDK_BENCH_LF_BULK:-1}
WANT_PAGES=${DPDK_BENCH_HUGEPAGES:-512}
MIN_PAGES=${DPDK_BENCH_MIN_HUGEPAGES:-300}
NOHUGE_MB=${DPDK_BENCH_NOHUGE_MB:-1024}
TIMEOUT_PERF=${DPDK_BENCH_TIMEOUT_PERF:-300}
TIMEOUT_LF=${DPDK_BENCH_TIMEOUT_LF:-240}
DPDK_TEST_BIN=/usr/bin/dpdk-test
HP=/sys/kernel/mm/hugepages/hugepages-2048kB
PREFIX="xvs-dhb-$$"

note() { echo "dpdk-hash-bench: $*" >&2; }
die() { echo "dpdk-hash-bench: ERROR: $*" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
  die "must run as root (it installs dpdk-dev if missing and reserves hugepages)"
fi
T0=$(date +%s)

# --- 1. dpdk-dev (provides /usr/bin/dpdk-test) ------------------------------
if ! dpkg-query -W -f='${Status}' dpdk-dev 2>/dev/null | grep -q 'ok installed'; then
  note "installing dpdk-dev"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends dpdk-dev >&2; then
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends dpdk-dev >&2 ||
      die "apt-get install dpdk-dev failed"
  fi
fi
[ -x "$DPDK_TEST_BIN" ] || die "$DPDK_TEST_BIN missing although dpdk-dev is installed"
DPDK_VERSION=$(dpkg-query -W -f='${Version}' dpdk-dev)
case $DPDK_VERSION in
  22.11.*) ;;
  *) note "WARNING: dpdk-dev $DPDK_VERSION, not 22.11: the table sizes printed are" \
       "those of the 22.11 sources and the output format may differ" ;;
esac

# --- CPUs: the first two this process may run on ------------------------------
cpus=()
IFS=, read -ra ranges <<<"$(awk '/^Cpus_allowed_list:/ {print $2}' /proc/self/status)"
for r in "${ranges[@]}"; do
  if [[ $r == *-* ]]; then
    for ((c = ${r%-*}; c <= ${r#*-}; c++)); do cpus+=("$c"); done
  else
    cpus+=("$r")
  fi
done
if ((${#cpus[@]} < 2)); then
  die "needs 2 CPUs (hash_readwrite_lf_perf_autotest needs a reader and a writer" \
    "lcore); this process may use only: ${cpus[*]:-none}"
fi
C0=${cpus[0]} C1=${cpus[1]}

mkdir -p "$OUT"
rm -f "$OUT"/*.log "$OUT"/*.cmd

# --- cleanup: stop our dpdk-test, give back hugepages and the mount ---------
CHILD=
PREV_PAGES=
MOUNTED=
RUNDIR_EXISTED=0
[ -d /run/dpdk ] && RUNDIR_EXISTED=1
cleanup() {
  if [ -n "$CHILD" ]; then
    kill "$CHILD" 2>/dev/null || true
    wait "$CHILD" 2>/dev/null || true
  fi
  if [ -n "$PREV_PAGES" ]; then
    echo "$PREV_PAGES" >"$HP/nr_hugepages" 2>/dev/null ||
      note "WARNING: could not restore $HP/nr_hugepages to $PREV_PAGES"
  fi
  if [ -n "$MOUNTED" ]; then
    umount "$MOUNTED" 2>/dev/null || note "WARNING: could not unmount $MOUNTED"
  fi
  rm -rf "/run/dpdk/$PREFIX"
  if [ "$RUNDIR_EXISTED" = 0 ]; then rmdir /run/dpdk 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 2. hugepages --------------------------------------------------------------
free_pages() { cat "$HP/free_hugepages" 2>/dev/null || echo 0; }
HUGE_WHY=
if [ ! -d "$HP" ]; then
  HUGE_WHY="the kernel has no 2 MiB hugepages ($HP missing)"
else
  if (($(free_pages) < WANT_PAGES)); then
    prev=$(cat "$HP/nr_hugepages")
    target=$((prev + WANT_PAGES - $(free_pages)))
    if echo "$target" >"$HP/nr_hugepages" 2>/dev/null; then
      PREV_PAGES=$prev # the EXIT trap puts it back
    else
      HUGE_WHY="cannot write $HP/nr_hugepages (read-only sysfs? not privileged?)"
    fi
  fi
  if ! awk '$3 == "hugetlbfs" {f = 1} END {exit !f}' /proc/mounts; then
    mkdir -p /dev/hugepages
    if mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages 2>/dev/null; then
      MOUNTED=/dev/hugepages
    else
      note "could not mount hugetlbfs on /dev/hugepages (--in-memory does not need it)"
    fi
  fi
  if [ -z "$HUGE_WHY" ] && (($(free_pages) < MIN_PAGES)); then
    HUGE_WHY="only $(free_pages) free 2 MiB hugepages after asking for $WANT_PAGES (need $MIN_PAGES; memory too fragmented or limited?)"
  fi
fi

EAL_BASE=(--no-pci --no-telemetry "--file-prefix=$PREFIX")
if [ -z "$HUGE_WHY" ]; then
  MEM_OPTS=(--in-memory)
  PAGES=$(free_pages)
else
  MEM_OPTS=(--no-huge --no-shconf -m "$NOHUGE_MB")
  PAGES=0
fi

# --- probe: EAL starts, which memory it got, DPDK's TSC rate ----------------------
probe() {
  DPDK_TEST=dump_physmem timeout 60 "$DPDK_TEST_BIN" "${EAL_BASE[@]}" "${MEM_OPTS[@]}" \
    "--lcores=0@$C0,1@$C1" --log-level=lib.eal:debug </dev/null >"$OUT/probe.log" 2>&1
}
if ! probe; then
  if [ -z "$HUGE_WHY" ]; then
    HUGE_WHY="EAL failed to start with hugepages: $(grep -m1 -E 'EAL: (FATAL|Cannot|Error)' "$OUT/probe.log" || tail -n1 "$OUT/probe.log")"
    MEM_OPTS=(--no-huge --no-shconf -m "$NOHUGE_MB")
    PAGES=0
    probe || die "dpdk-test does not start even with --no-huge; see $OUT/probe.log:
$(tail -n 15 "$OUT/probe.log")"
  else
    die "dpdk-test does not start (--no-huge); see $OUT/probe.log:
$(tail -n 15 "$OUT/probe.log")"
  fi
fi
if [ -n "$HUGE_WHY" ]; then
  note "NO HUGEPAGES: $HUGE_WHY; running with EAL ${MEM_OPTS[*]} (4 KiB pages:" \
    "more TLB misses, numbers not comparable to a hugepage run)"
else
  note "using $PAGES free 2 MiB hugepages (EAL --in-memory)"
fi

TSC_HZ=$(awk '/TSC frequency is ~[0-9]+ KHz/ {
  for (i = 1; i <= NF; i++) if ($i ~ /^~[0-9]+$/) { sub(/~/, "", $i); printf "%.0f\n", $i * 1000 } }' \
  "$OUT/probe.log" | tail -n1)
KTSC_HZ=$(dmesg 2>/dev/null | awk '
  /tsc: Refined TSC clocksource calibration:/ { for (i = 1; i < NF; i++) if ($(i+1) == "MHz") r = $i }
  /tsc: Detected [0-9.]+ MHz/ { for (i = 1; i < NF; i++) if ($(i+1) == "MHz") d = $i }
  END { v = (r != "") ? r : d; if (v != "") printf "%.0f\n", v * 1e6 }' || true)
KTSC_SRC="dmesg"
if [ -z "$KTSC_HZ" ]; then
  KTSC_HZ=$(awk -F: '/^cpu MHz/ { printf "%.0f\n", $2 * 1e6; exit }' /proc/cpuinfo)
  KTSC_SRC="/proc/cpuinfo cpu MHz"
fi
if [ -n "$TSC_HZ" ]; then
  note "tsc_hz from DPDK's EAL ($TSC_HZ Hz); tsc_hz_kernel from $KTSC_SRC ($KTSC_HZ Hz)"
else
  [ -n "$KTSC_HZ" ] || die "no TSC rate: neither the EAL log nor dmesg/cpuinfo give one"
  TSC_HZ=$KTSC_HZ
  note "EAL did not log its TSC rate; tsc_hz taken from $KTSC_SRC ($TSC_HZ Hz)"
fi

# --- 3. the tests ------------------------------------------------------------------
# CPU time used on the machine (all CPUs, incl. steal) and by this shell's
# waited-for children, in clock ticks: their difference over a test is what
# other processes (or the hypervisor) took while DPDK was being measured.
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
child_ticks() { awk '{sub(/.*\) /, ""); print $14 + $15}' "/proc/$$/stat"; }
# run_test <name> <time limit s> <EAL lcore option>; sets RUNTIME, returns
# non-zero (after saying why) if the test did not end with "Test OK".
run_test() {
  local name=$1 limit=$2 lcores=$3 log="$OUT/$1.log" rc=0 start
  local cmd=("$DPDK_TEST_BIN" "${EAL_BASE[@]}" "${MEM_OPTS[@]}" "$lcores" --log-level=lib.eal:error)
  echo "DPDK_TEST=$name timeout -k 10 $limit ${cmd[*]} </dev/null" >"$OUT/$name.cmd"
  note "running $name (time limit ${limit}s), log $log"
  start=$(date +%s)
  local b0 c0 b1 c1
  b0=$(busy_ticks) c0=$(child_ticks)
  DPDK_TEST=$name timeout -k 10 "$limit" "${cmd[@]}" </dev/null >"$log" 2>&1 &
  CHILD=$!
  # Poll rather than block in `wait`: a TERM/INT trap then runs within
  # 0.5 s (a blocking wait can miss it until dpdk-test ends).
  while kill -0 "$CHILD" 2>/dev/null; do sleep 0.5; done
  wait "$CHILD" || rc=$?
  CHILD=
  RUNTIME=$(($(date +%s) - start))
  b1=$(busy_ticks) c1=$(child_ticks)
  # percent of all CPUs over the run; steal counts as other load
  OTHER_LOAD=$(awk -v b=$((b1 - b0)) -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" \
    -v n="$(nproc --all)" -v t="$RUNTIME" \
    'BEGIN { v = (t > 0) ? 100 * (b - c) / hz / t / n : 0; if (v < 0) v = 0; printf "%.1f\n", v }')
  note "$name: exit $rc after ${RUNTIME}s; other load on the machine meanwhile: ${OTHER_LOAD}% of all CPUs"
  if awk -v v="$OTHER_LOAD" 'BEGIN { exit !(v > 5) }'; then
    note "WARNING: other processes used ${OTHER_LOAD}% of the CPUs during $name: its numbers are noisy; rerun on an idle machine"
  fi
  case $rc in
    0)
      grep -q '^Test OK' "$log" && return 0
      note "FAILED $name: exit 0 but no 'Test OK' in $log" ;;
    124 | 137)
      note "FAILED $name: still running after the ${limit}s limit, killed;" \
        "raise DPDK_BENCH_TIMEOUT_* (partial output in $log)" ;;
    77)
      note "SKIPPED by dpdk-test $name: $(grep -m1 -iE 'not enough|skip|support' "$log" || echo 'no reason printed')" ;;
    *)
      note "FAILED $name (exit $rc); last lines of $log:"
      tail -n 15 "$log" >&2 ;;
  esac
  return 1
}

status=0
LINES=()
LINES+=("dpdk,meta,dpdk_version,$DPDK_VERSION,version")
LINES+=("dpdk,meta,tsc_hz,$TSC_HZ,Hz")
[ -n "$KTSC_HZ" ] && LINES+=("dpdk,meta,tsc_hz_kernel,$KTSC_HZ,Hz")
LINES+=("dpdk,meta,hugepages_2m,$PAGES,count")

# 3a. hash_perf_autotest: single-threaded; the second lcore is idle.
if run_test hash_perf_autotest "$TIMEOUT_PERF" "--lcores=0@$C0,1@$C1"; then
  if parsed=$(awk -v keys="$KEY_SIZES" '
    BEGIN { n = split(keys, k, " "); for (i = 1; i <= n; i++) want[k[i]] = 1 }
    /^Without locks in the code/                 { lock = "none" }
    /^With locks in the code/                    { lock = "rw" }
    /^ALL ELEMENTS IN PRIMARY LOCATION/          { loc = "primary" }
    /^ELEMENTS IN PRIMARY OR SECONDARY LOCATION/ { loc = "cuckoo" }
    /EXTENDABLE BUCKETS PERFORMANCE/             { lock = "none"; loc = "ext" }
    /Operations without data/                    { data = 0 }
    /Operations with 8-byte data/                { data = 1 }
    /^Without pre-computed hash values/          { pre = 0 }
    /^With pre-computed hash values/             { pre = 1 }
    /^Keysize/ { if ($3 != "Lookup" || $4 != "Lookup_bulk") bad = 1 }
    NF == 5 && $1 ~ /^[0-9]+$/ && lock == "none" && loc == "cuckoo" && data == 1 && pre == 0 &&
      ($1 in want) { lk[$1] = $3; bk[$1] = $4 }
    END {
      if (bad) { print "unexpected table header (not Keysize Add Lookup Lookup_bulk Delete)"; exit 1 }
      for (i = 1; i <= n; i++) if (!(k[i] in lk)) {
        print "no row for key size " k[i] " in the no-lock / primary-or-secondary / 8-byte-data / no-precomputed-hash table"; exit 1 }
      for (i = 1; i <= n; i++) {
        printf "dpdk,hash_perf,lookup_key%sB,%s,cycles\n", k[i], lk[k[i]]
        printf "dpdk,hash_perf,lookup_burst16_key%sB,%s,cycles\n", k[i], bk[k[i]]
      }
    }' "$OUT/hash_perf_autotest.log"); then
    LINES+=("dpdk,hash_perf,entries,524288,count" "dpdk,hash_perf,keys_in_table,393216,count")
    mapfile -t -O "${#LINES[@]}" LINES <<<"$parsed"
    LINES+=("dpdk,hash_perf,runtime,$RUNTIME,s" "dpdk,hash_perf,other_load,$OTHER_LOAD,percent")
  else
    note "FAILED to parse $OUT/hash_perf_autotest.log: $parsed"
    status=1
  fi
else
  status=1
fi

# 3b. hash_readwrite_lf_perf_autotest: writer = main lcore on C0, reader(s)
# on C1 (see the header for why 5 lcores when the bulk rows are wanted).
if [ "$LF_BULK" = 1 ]; then
  LF_LCORES="--lcores=0@$C0,1@$C1,(2-4)@$C1"
else
  LF_LCORES="--lcores=0@$C0,1@$C1"
fi
if run_test hash_readwrite_lf_perf_autotest "$TIMEOUT_LF" "$LF_LCORES"; then
  if parsed=$(awk -v bulk_wanted="$LF_BULK" '
    BEGIN {
      name["Hash add - no key-shifts, read - hit"]                      = "hit_no_writer"
      name["Hash add - no key-shifts, Hash lookup - miss"]              = "miss_writer_adding"
      name["Hash add - key shift, Hash lookup - hit (non-shift-path)"]  = "hit_writer_shifting"
      name["Hash add - key shift, Hash lookup - hit (shift-path)"]      = "hit_moving_writer_shifting"
      name["Hash add - key shift, Hash lookup - miss"]                  = "miss_writer_shifting"
      name["Hash add - key-shifts, read - hit (ext_bkt)"]               = "hit_extbkt_writer_deleting"
      order = "hit_no_writer miss_writer_adding hit_writer_shifting hit_moving_writer_shifting miss_writer_shifting hit_extbkt_writer_deleting"
      cnt["Count of keys NOT causing shifting of existing keys to alternate location"] = "keys_no_shift"
      cnt["Count of keys causing shifting of existing keys to alternate locations"]    = "keys_shifting"
      cnt["Count of absent keys that will never be added to the hash table"]          = "keys_absent"
      cnt["Count of keys likely to be on the shift path"]                             = "keys_shift_path"
      cnt["Count of keys not likely to be on the shift path"]                         = "keys_non_shift_path"
      cnt["Count of keys in extended buckets"]                                        = "keys_ext_bkt"
    }
    /^Count of / { split($0, kv, ": "); if (kv[1] in cnt) c[cnt[kv[1]]] = kv[2] + 0 }
    /^Test lookup with read-write concurrency lock free support enabled/  { lf = 1 }
    /^Test lookup with read-write concurrency lock free support disabled/ { lf = 0 }
    /^Test: / { t = substr($0, 7); test = (t in name) ? name[t] : ""; bulk = 0; readers = 0 }
    /^\*\* With bulk-lookup \*\*/ { bulk = 1 }
    /^Number of readers: / { readers = $4 + 0 }
    /^Cycles per lookup: / && lf && test != "" && readers == 1 {
      v[(bulk ? "lookup_burst32_" : "lookup_") test] = $4 + 0 }
    END {
      n = split(order, o, " ")
      printf "dpdk,hash_readwrite_lf_perf,entries,4194304,count\n"
      split("keys_no_shift keys_shifting keys_absent keys_shift_path keys_non_shift_path keys_ext_bkt", ck, " ")
      for (i = 1; i <= 6; i++) if (ck[i] in c) printf "dpdk,hash_readwrite_lf_perf,%s,%d,count\n", ck[i], c[ck[i]]
      for (b = 0; b <= (bulk_wanted == 1); b++)
        for (i = 1; i <= n; i++) {
          key = (b ? "lookup_burst32_" : "lookup_") o[i]
          if (!(key in v)) { missing = missing " " key; continue }
          printf "dpdk,hash_readwrite_lf_perf,%s,%d,cycles\n", key, v[key]
        }
      if (missing != "") { print "no 1-reader lock-free result for:" missing > "/dev/stderr"; exit 1 }
    }' "$OUT/hash_readwrite_lf_perf_autotest.log"); then
    mapfile -t -O "${#LINES[@]}" LINES <<<"$parsed"
    LINES+=("dpdk,hash_readwrite_lf_perf,runtime,$RUNTIME,s" "dpdk,hash_readwrite_lf_perf,other_load,$OTHER_LOAD,percent")
  else
    note "FAILED to parse $OUT/hash_readwrite_lf_perf_autotest.log"
    status=1
  fi
else
  status=1
fi

# --- 4. results -----------------------------------------------------------------------
printf '%s\n' "${LINES[@]}"
if [ "$status" = 0 ]; then
  note "done in $(($(date +%s) - T0))s; logs in $OUT"
else
  note "FAILED (see above) after $(($(date +%s) - T0))s; logs in $OUT; printed only what ran"
fi
exit "$status"
