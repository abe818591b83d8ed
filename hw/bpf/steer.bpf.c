// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * xvs XDP steering program: one instance per port, attached directly to the
 * interface (this kernel refuses libxdp's dispatcher).
 *
 * It decides, per frame, whether the switch owns it:
 *   - on a pod port (STEER_ALL) every frame belongs to the switch;
 *   - on an uplink (STEER_OWNED) only these do: IPv4 frames to an owned
 *     prefix (the pod CIDR, Service addresses: the `owned_v4` LPM trie);
 *     VXLAN to our VTEP (UDP to vtep_ip:vxlan_port); and, to the node IP,
 *     TCP and UDP to a node port (`node_ports`) or to a port of the SNAT
 *     range (the answers to masqueraded connections), and ICMP echo
 *     replies whose identifier is in that range. Everything else (ARP,
 *     SSH, the node's own traffic, fragments after the first, IPv6) goes to
 *     the kernel with XDP_PASS.
 * Owned frames are redirected to the AF_XDP socket of the receive queue
 * (`xsks`). When no socket is bound (xvsd is down), a pod port drops
 * (the pod is disconnected; its frames must not leak into the host stack)
 * and an uplink passes, so the node keeps working.
 *
 * Counters (per CPU, summed by xvsd): redirected, passed, dropped.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define STEER_ALL 0
#define STEER_OWNED 1

struct steer_config {
	__u32 mode;       /* STEER_ALL or STEER_OWNED */
	__be32 vtep_ip;   /* 0: no VXLAN steering */
	__be16 vxlan_port;
	__u16 pad;
	__be32 node_ip;   /* 0: no node ports, no SNAT answers */
	__u16 snat_lo;    /* SNAT port range, host order; lo > hi: none */
	__u16 snat_hi;
};

/* The start of an ICMP echo header (linux/icmp.h pulls in libc). */
struct icmp_echo {
	__u8 type;
	__u8 code;
	__be16 checksum;
	__be16 id;
	__be16 sequence;
};
#define ICMP_ECHO_REPLY 0

struct node_port_key {
	__u8 proto;
	__u8 pad;
	__be16 port;
};

struct lpm_v4_key {
	__u32 prefixlen;
	__be32 addr;
};

enum steer_counter {
	CNT_REDIRECTED = 0,
	CNT_PASSED = 1,
	CNT_DROPPED = 2,
	CNT_MAX = 3,
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct steer_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4_key);
	__type(value, __u32);
} owned_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct node_port_key);
	__type(value, __u32);
} node_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &which);
	if (c)
		*c += 1;
}

static __always_inline int owned_by_switch(struct xdp_md *ctx, const struct steer_config *cfg)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return 0;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return 0;
	if (cfg->vtep_ip && ip->daddr == cfg->vtep_ip && ip->protocol == IPPROTO_UDP) {
		struct udphdr *udp = (void *)ip + ip->ihl * 4;
		if (ip->ihl >= 5 && (void *)(udp + 1) <= end && udp->dest == cfg->vxlan_port)
			return 1;
	}
	struct lpm_v4_key key = { .prefixlen = 32, .addr = ip->daddr };
	if (bpf_map_lookup_elem(&owned_v4, &key))
		return 1;
	if (!cfg->node_ip || ip->daddr != cfg->node_ip || ip->ihl < 5)
		return 0;
	/* Fragments after the first carry no ports. */
	if (ip->frag_off & bpf_htons(0x1fff))
		return 0;
	void *l4 = (void *)ip + ip->ihl * 4;
	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) {
		/* Both start with the source and destination ports. */
		struct udphdr *ports = l4;
		if ((void *)(ports + 1) > end)
			return 0;
		__u16 dport = bpf_ntohs(ports->dest);
		if (dport >= cfg->snat_lo && dport <= cfg->snat_hi)
			return 1;
		struct node_port_key np = { .proto = ip->protocol, .port = ports->dest };
		return bpf_map_lookup_elem(&node_ports, &np) != NULL;
	}
	if (ip->protocol == IPPROTO_ICMP) {
		struct icmp_echo *icmp = l4;
		if ((void *)(icmp + 1) > end || icmp->type != ICMP_ECHO_REPLY)
			return 0;
		__u16 id = bpf_ntohs(icmp->id);
		return id >= cfg->snat_lo && id <= cfg->snat_hi;
	}
	return 0;
}

SEC("xdp")
int xvs_steer(struct xdp_md *ctx)
{
	__u32 zero = 0;
	const struct steer_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return XDP_PASS;

	int all = cfg->mode == STEER_ALL;
	if (!all && !owned_by_switch(ctx, cfg)) {
		count(CNT_PASSED);
		return XDP_PASS;
	}
	int fallback = all ? XDP_DROP : XDP_PASS;
	int action = bpf_redirect_map(&xsks, ctx->rx_queue_index, fallback);
	if (action == XDP_REDIRECT)
		count(CNT_REDIRECTED);
	else
		count(all ? CNT_DROPPED : CNT_PASSED);
	return action;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
