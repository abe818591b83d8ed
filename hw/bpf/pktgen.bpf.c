// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * xvs-pktgen's two XDP programs.
 *
 * xvs_gen: run by BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES on the
 * generator's interface. Every run is one packet: the kernel hands it a
 * page-pool frame that may be recycled from an earlier run (and may have
 * been rewritten in place by whoever received it), so the program rewrites
 * every header from the template, sets the frame length, the flow's fields,
 * the lengths and checksums and the stamp (sequence number and send time),
 * and returns XDP_TX, which transmits it out of the interface (into the
 * peer's XDP on a veth).
 *
 * xvs_sink: attached to the sink's interface. Finds the stamp (inside VXLAN
 * too), counts the packet for its flow (the sequence number modulo the
 * number of flows), notes reordering (a sequence number below the flow's
 * last), adds the one-way latency to a log-linear histogram, and drops the
 * frame. Generator and sink read the same clock (bpf_ktime_get_ns): they
 * run on one machine.
 *
 * Frame layout (the stamp is 12 bytes right after the innermost UDP
 * header; for TCP SYN the sequence number is the TCP sequence number and
 * the low 32 bits of the send time are the acknowledgment number, so a
 * 60-byte SYN carries it too).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define KIND_UDP 0
#define KIND_TCP_SYN 1
#define KIND_VXLAN 2

#define VARY_SRC_IP 0
#define VARY_DST_PORT 1

#define UDP_HDRS 42   /* eth + ipv4 + udp */
#define TCP_HDRS 54   /* eth + ipv4 + tcp */
#define VXLAN_HDRS 92 /* outer eth + ipv4 + udp + vxlan, inner eth + ipv4 + udp */
#define TEMPLATE_LEN 96
#define STAMP_LEN 12
#define MAX_SIZES 16
#define MAX_FLOWS 131072
#define HIST_BUCKETS 512 /* 64 powers of two, 8 steps each */

struct gen_config {
	__u32 kind;
	__u32 flows;
	__u32 nsizes;
	__u32 vary; /* VARY_*: what flow / 16384 adds to */
	__u16 sizes[MAX_SIZES]; /* frame lengths (no FCS), taken in turn */
	__u8 template[TEMPLATE_LEN];
};

struct sink_config {
	__u32 flows;
	__u16 vxlan_port; /* network order; 0: no decapsulation */
	__u16 pad;
};

struct flow_stats {
	__u64 packets;
	__u64 bytes;
	__u32 last_seq;
	__u32 reordered;
};

struct sink_totals {
	__u64 packets;
	__u64 bytes;
	__u64 unstamped; /* frames that were not ours */
	__u64 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_config);
} gen_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gen_seq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sink_config);
} sink_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_FLOWS);
	__type(key, __u32);
	__type(value, struct flow_stats);
} sink_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HIST_BUCKETS);
	__type(key, __u32);
	__type(value, __u64);
} sink_latency SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sink_totals);
} sink_totals SEC(".maps");

static __always_inline __u16 fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

static __always_inline void ip_finish(struct iphdr *ip, __u16 tot_len)
{
	ip->tot_len = bpf_htons(tot_len);
	ip->check = 0;
	__u16 *w = (__u16 *)ip;
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	ip->check = fold(sum);
}

/* The innermost headers of flow `flow`: flow % 16384 adds to the source
 * port, flow / 16384 to the source address (VARY_SRC_IP) or to the
 * destination port (VARY_DST_PORT, which keeps the source address a
 * switch's anti-spoofing check expects). Ports wrap. */
static __always_inline void set_flow(struct iphdr *ip, __be16 *sport, __be16 *dport, __u32 flow,
				     __u32 vary)
{
	*sport = bpf_htons(bpf_ntohs(*sport) + (flow & 0x3fff));
	if (vary == VARY_DST_PORT)
		*dport = bpf_htons(bpf_ntohs(*dport) + (flow >> 14));
	else
		ip->saddr = bpf_htonl(bpf_ntohl(ip->saddr) + (flow >> 14));
}

SEC("xdp")
int xvs_gen(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct gen_config *cfg = bpf_map_lookup_elem(&gen_config, &zero);
	__u64 *seqp = bpf_map_lookup_elem(&gen_seq, &zero);
	if (!cfg || !seqp)
		return XDP_ABORTED;
	__u64 seq64 = __sync_fetch_and_add(seqp, 1);
	__u32 seq = (__u32)seq64;
	__u32 flows = cfg->flows ? cfg->flows : 1;
	__u32 flow = seq % flows;
	__u32 nsizes = cfg->nsizes;
	if (nsizes == 0 || nsizes > MAX_SIZES)
		return XDP_ABORTED;
	/* si < nsizes <= MAX_SIZES: the check is for the verifier, which
	 * cannot see the bound through the modulo (and the barrier keeps the
	 * compiler from dropping the check it can prove). */
	__u32 si = seq % nsizes;
	barrier_var(si);
	if (si >= MAX_SIZES)
		return XDP_ABORTED;
	int size = cfg->sizes[si];

	int len = (long)ctx->data_end - (long)ctx->data;
	if (size != len && bpf_xdp_adjust_tail(ctx, size - len))
		return XDP_ABORTED;

	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 now = bpf_ktime_get_ns();

	if (cfg->kind == KIND_TCP_SYN) {
		if (data + TCP_HDRS > end)
			return XDP_ABORTED;
		__builtin_memcpy(data, cfg->template, TCP_HDRS);
		struct iphdr *ip = data + 14;
		struct tcphdr *tcp = data + 34;
		set_flow(ip, &tcp->source, &tcp->dest, flow, cfg->vary);
		tcp->seq = bpf_htonl(seq);
		tcp->ack_seq = bpf_htonl((__u32)now);
		ip_finish(ip, size - 14);
		/* TCP checksum: pseudo header + the 20-byte header (the
		 * template has no options) + the payload, which is zeroes. */
		__u16 tcp_len = size - 34;
		__u32 sum = (ip->saddr & 0xffff) + (ip->saddr >> 16) + (ip->daddr & 0xffff) +
			    (ip->daddr >> 16) + bpf_htons(IPPROTO_TCP) + bpf_htons(tcp_len);
		tcp->check = 0;
		__u16 *w = (__u16 *)tcp;
#pragma unroll
		for (int i = 0; i < 10; i++)
			sum += w[i];
		/* Zero the payload: a recycled frame may carry anything. */
		__u8 *p = data + TCP_HDRS;
		for (int i = 0; i < 1518 - TCP_HDRS; i++) {
			if ((void *)(p + i + 1) > end)
				break;
			p[i] = 0;
		}
		tcp->check = fold(sum);
		return XDP_TX;
	}

	struct iphdr *ip;
	struct udphdr *udp;
	if (cfg->kind == KIND_VXLAN) {
		if (data + VXLAN_HDRS + STAMP_LEN > end)
			return XDP_ABORTED;
		__builtin_memcpy(data, cfg->template, VXLAN_HDRS);
		struct iphdr *outer = data + 14;
		struct udphdr *outer_udp = data + 34;
		/* Outer source port: entropy for the receiver's RSS, per flow. */
		outer_udp->source = bpf_htons(49152 + (flow & 0x3fff));
		outer_udp->len = bpf_htons(size - 34);
		outer_udp->check = 0;
		ip_finish(outer, size - 14);
		ip = data + 64;
		udp = data + 84;
	} else {
		if (data + UDP_HDRS + STAMP_LEN > end)
			return XDP_ABORTED;
		__builtin_memcpy(data, cfg->template, UDP_HDRS);
		ip = data + 14;
		udp = data + 34;
	}
	if ((void *)(udp + 1) > end || (void *)(ip + 1) > end)
		return XDP_ABORTED;
	set_flow(ip, &udp->source, &udp->dest, flow, cfg->vary);
	int l3 = (long)ip - (long)data;
	ip_finish(ip, size - l3);
	udp->len = bpf_htons(size - l3 - 20);
	udp->check = 0;
	__u8 *stamp = (void *)(udp + 1);
	if ((void *)(stamp + STAMP_LEN) > end)
		return XDP_ABORTED;
	__builtin_memcpy(stamp, &seq, 4);
	__builtin_memcpy(stamp + 4, &now, 8);
	return XDP_TX;
}

static __always_inline __u32 latency_bucket(__u64 v)
{
	if (v < 8)
		return v;
	__u32 msb = 0;
	__u64 x = v;
	if (x >> 32) { x >>= 32; msb += 32; }
	if (x >> 16) { x >>= 16; msb += 16; }
	if (x >> 8) { x >>= 8; msb += 8; }
	if (x >> 4) { x >>= 4; msb += 4; }
	if (x >> 2) { x >>= 2; msb += 2; }
	if (x >> 1) { msb += 1; }
	/* msb >= 3: 8 steps between 2^msb and 2^(msb+1). */
	return msb * 8 + ((v >> (msb - 3)) & 7) - 16;
}

SEC("xdp")
int xvs_sink(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct sink_config *cfg = bpf_map_lookup_elem(&sink_config, &zero);
	struct sink_totals *t = bpf_map_lookup_elem(&sink_totals, &zero);
	if (!cfg || !t)
		return XDP_DROP;
	__u64 now = bpf_ktime_get_ns();
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 len = end - data;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		goto other;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->ihl != 5)
		goto other;
	__u32 seq;
	__u64 sent;
	if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *udp = (void *)(ip + 1);
		if ((void *)(udp + 1) > end)
			goto other;
		if (cfg->vxlan_port && udp->dest == cfg->vxlan_port) {
			/* vxlan (8) + inner ethernet: the inner IPv4 follows. */
			struct iphdr *inner = (void *)(udp + 1) + 8 + 14;
			if ((void *)(inner + 1) > end || inner->ihl != 5 ||
			    inner->protocol != IPPROTO_UDP)
				goto other;
			udp = (void *)(inner + 1);
			if ((void *)(udp + 1) > end)
				goto other;
		}
		__u8 *stamp = (void *)(udp + 1);
		if ((void *)(stamp + STAMP_LEN) > end)
			goto other;
		__builtin_memcpy(&seq, stamp, 4);
		__builtin_memcpy(&sent, stamp + 4, 8);
	} else if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = (void *)(ip + 1);
		if ((void *)(tcp + 1) > end)
			goto other;
		seq = bpf_ntohl(tcp->seq);
		/* The low 32 bits of the send time: the latency is below 4 s. */
		__u32 lo = bpf_ntohl(tcp->ack_seq);
		sent = now - (__u32)((__u32)now - lo);
	} else {
		goto other;
	}

	t->packets++;
	t->bytes += len;
	__u32 flows = cfg->flows ? cfg->flows : 1;
	__u32 flow = seq % flows;
	struct flow_stats *f = bpf_map_lookup_elem(&sink_flows, &flow);
	if (f) {
		__sync_fetch_and_add(&f->packets, 1);
		__sync_fetch_and_add(&f->bytes, len);
		if (seq < f->last_seq)
			__sync_fetch_and_add(&f->reordered, 1);
		else
			f->last_seq = seq;
	}
	__u64 lat = now > sent ? now - sent : 0;
	__u32 b = latency_bucket(lat);
	if (b >= HIST_BUCKETS)
		b = HIST_BUCKETS - 1;
	__u64 *h = bpf_map_lookup_elem(&sink_latency, &b);
	if (h)
		*h += 1;
	return XDP_DROP;
other:
	t->unstamped++;
	return XDP_DROP;
}

/* For the far end of a generator's veth when the device under test is the
 * kernel: XDP_TX into a veth only delivers when its peer has a program. */
SEC("xdp")
int xvs_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
