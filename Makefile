# xvs — the two commands of the README's Quick start are `make demo` and
# `make test`. Every target that builds first runs scripts/setup-deps.sh,
# which apt-installs whatever system package is missing (idempotent).

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: deps build demo demo-pipeline test lint unit bench bench-flowtable bench-xvsd perf clean

deps:
	@bash scripts/setup-deps.sh

build: deps
	$(CARGO) build --release --workspace --all-targets

## The main job: xvsd switching real traffic over AF_XDP between pods in
## network namespaces and a kernel VXLAN node (root). `make demo-pipeline`
## traces packets through the pipeline on in-memory ports instead (no root).
demo: deps
	@bash scripts/demo.sh

demo-pipeline: deps
	$(CARGO) run --release -q -p xvs-vswitch --example pipeline_demo

## Every test: formatting, lints, unit/integration/property tests, doc
## tests, and each benchmark once in test mode (so they keep working).
test: deps lint unit

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: deps
	@bash scripts/cargo-test-summary.sh

## Criterion benchmarks of the pipeline, printed as a table of ns/packet;
## then (root) ADD/DEL latency of xvs-cni vs the reference bridge +
## host-local plugins over 100 pods each via cnitool, in the same run.
CNI_BENCH_OUT ?= target/bench-cni/cni-latency.json
bench: deps
	$(CARGO) bench -p xvs-vswitch --bench pipeline
	@$(CARGO) run --release -q -p xvs-perf --bin bench-table
	$(CARGO) build --release -q -p xvs-cni -p xvs-vswitch -p xvs-perf --bins
	target/release/cni-latency --pods 100 --out $(CNI_BENCH_OUT)

## The flow table against RwLock<HashMap> and DashMap at 1K-4M flows, and
## DPDK's own lock-free rte_hash benchmarks (dpdk-test) on this machine in
## the same run, printed side by side. Needs root (hugepages for DPDK).
BENCH_OUT ?= target/bench-flowtable
bench-flowtable: deps
	@mkdir -p $(BENCH_OUT)
	bash scripts/dpdk-hash-bench.sh $(BENCH_OUT)/dpdk > $(BENCH_OUT)/dpdk.csv
	XVS_DPDK_CSV=$(abspath $(BENCH_OUT))/dpdk.csv XVS_BENCH_JSON=$(abspath $(BENCH_OUT))/flowtable.json \
	  $(CARGO) bench -p xvs-flowtable --bench flowtable

## TCP between two pods through xvsd with one and two workers and through
## the Linux kernel on the same veths, median of 3 runs (root).
bench-xvsd: deps
	bash scripts/bench-xvsd-tcp.sh

## Packet rates of xvsd and its peers (Linux bridge, routing, nftables
## DNAT, DPDK testpmd, OVS) on one generator -> DUT -> sink topology:
## full-rate offered vs delivered, RFC 2544 no-drop rate, latency, at 1, 1K
## and 100K flows, 3 runs; xvsd-service (packets through a Service VIP)
## and nft-dnat (kube-proxy's nftables rules) each with 1 and 10K Services
## programmed (root, about 30 minutes). Writes JSON, a Markdown table and
## PNG plots to $(PERF_OUT). PERF_ARGS adds flags of xvs-bench, e.g.
## PERF_ARGS="--runs 1 --duts xvsd-l3,linux-routing".
PERF_OUT ?= target/perf
PERF_ARGS ?=
## Then Service update latency: service-add and endpoint-add on xvsd's
## control socket (answered once every worker runs the change and it is
## on disk) against kube-proxy-style `nft -f` changes, with 1K, 10K and
## 50K Services programmed, p50/p99 and ratios (about 8 minutes).
SERVICES_OUT ?= target/bench-services/service-latency.json
SERVICES_ARGS ?=
perf:
	@bash scripts/setup-deps.sh perf
	$(CARGO) build --release -q --workspace --bins
	target/release/xvs-bench --out $(PERF_OUT) --services 1,10000 $(PERF_ARGS)
	target/release/service-latency --services 1000,10000,50000 --ops 200 --out $(SERVICES_OUT) $(SERVICES_ARGS)

clean:
	$(CARGO) clean
