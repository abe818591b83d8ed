//! `hw`'s AF_XDP layer against the kernel: sockets on veths, traffic from
//! namespaces, rings refilled and the frame accounting balanced at every
//! step, and sockets outliving the interface of the one that registered
//! their UMEM.

mod common;

use std::time::{Duration, Instant};

use common::{root_or_skip, run, Topology};
use xvs_hw::steer::{Steering, SteeringProgram};
use xvs_hw::xsk::Xsk;

const RING: u32 = 256;

/// Receives on socket `id` until at least `n` packets came and the
/// sockets stayed quiet for 200 ms (or 5 s passed); frees them and returns
/// how many.
fn receive_and_free(xsk: &mut Xsk, id: usize, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while Instant::now() < deadline {
        let more = xsk.wait_rx(&[], 200).unwrap();
        xsk.receive(id, 64, |d| got.push(d.frame));
        if !more && got.len() >= n {
            break;
        }
    }
    for &f in &got {
        xsk.free(f);
    }
    got.len()
}

/// Frames taken off the fill ring are given back in part, not only once
/// the ring ran dry (libxdp's reserve is all or nothing), and the kernel
/// never finds the fill ring empty.
#[test]
fn fill_ring_is_topped_up_after_every_receive() {
    let Some(_serial) = root_or_skip("fill_ring_is_topped_up_after_every_receive") else {
        return;
    };
    let mut topo = Topology::default();
    topo.pod("xtx-pod", "xtx0", "10.244.9.2", "02:00:00:0e:00:01");
    // The pod sends straight to the gateway MAC: no ARP to wait for.
    run("ip -n xtx-pod neigh replace 169.254.1.1 lladdr 02:00:00:0e:00:ff dev eth0 nud permanent");

    let program = SteeringProgram::attach("xtx0", Steering::All).unwrap();
    let mut xsk = Xsk::new(2 * RING + 64, RING).unwrap();
    let id = xsk.add_socket("xtx0", 0, RING, true).unwrap();
    program.register_socket(0, xsk.fd(id)).unwrap();
    assert_eq!(xsk.refill(id, 0), RING as usize);
    assert!(xsk.accounting().balanced());

    let mut total = 0;
    for round in 1..=3 {
        run("ip netns exec xtx-pod ping -c 5 -i 0.01 -W 0.1 10.244.9.1 || true");
        // The pings, and whatever else the pod sent meanwhile (IPv6
        // neighbour discovery).
        let got = receive_and_free(&mut xsk, id, 5);
        assert!(got >= 5, "round {round}: received {got}");
        total += got;
        let a = xsk.accounting();
        assert!(a.balanced(), "round {round}: {a:?}");
        assert_eq!(a.fill as usize, RING as usize - got, "round {round}");
        assert_eq!(xsk.refill(id, 0), got, "round {round}: all go back");
        assert_eq!(xsk.accounting().fill, RING);
    }
    let stats = xsk.stats(id);
    assert_eq!(stats.rx_fill_ring_empty, 0, "{stats:?}");
    assert_eq!(stats.rx_dropped, 0, "{stats:?}");
    assert_eq!(program.counters().unwrap().redirected, total as u64);
}

/// Pings the gateway from netns `ns`, checks socket `id` receives the
/// pings and tops its fill ring up again, as a worker would.
fn pings_arrive(xsk: &mut Xsk, id: usize, ns: &str) {
    run(&format!(
        "ip netns exec {ns} ping -c 3 -i 0.01 -W 0.1 169.254.1.1 || true"
    ));
    let got = receive_and_free(xsk, id, 3);
    assert!(got >= 3, "{ns}: received {got}");
    assert_eq!(xsk.refill(id, 0), got, "{ns}");
}

/// Only C's (or D's) rings hold frames: what it received meanwhile is in
/// its rx ring, the rest in its fill ring; everything else is free.
fn only_one_socket_holds_frames(xsk: &Xsk, total: u32, step: &str) {
    let acc = xsk.accounting();
    assert!(acc.balanced(), "{step}: {acc:?}");
    assert_eq!(acc.fill + acc.rx, RING, "{step}: {acc:?}");
    assert_eq!(acc.free, total - RING, "{step}: {acc:?}");
}

/// Pods go in either order (veth first as CNI DEL does it, or the port
/// first), including the one whose socket registered the UMEM, after which
/// the kernel refuses to share that UMEM: new pods still get sockets, the
/// others keep working, and every frame of a gone socket comes back.
#[test]
fn sockets_outlive_the_interface_that_registered_the_umem() {
    let Some(_serial) = root_or_skip("sockets_outlive_the_interface_that_registered_the_umem")
    else {
        return;
    };
    let mut topo = Topology::default();
    let mut programs = Vec::new();
    let mut attach = |xsk: &mut Xsk, n: u8| {
        let (ns, host) = (format!("xro-{n}"), format!("xro{n}"));
        let ip = format!("10.244.9.{}", 10 + n);
        topo.pod(&ns, &host, &ip, &format!("02:00:00:0e:01:{n:02x}"));
        run(&format!(
            "ip -n {ns} neigh replace 169.254.1.1 lladdr 02:00:00:0e:01:ff dev eth0 nud permanent"
        ));
        // Only the pings, for exact counts: no IPv6 neighbour or router
        // discovery arriving at any time.
        run(&format!(
            "ip netns exec {ns} sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1"
        ));
        let program = SteeringProgram::attach(&host, Steering::All).unwrap();
        let id = xsk.add_socket(&host, 0, RING, true).unwrap();
        program.register_socket(0, xsk.fd(id)).unwrap();
        assert_eq!(xsk.refill(id, 0), RING as usize);
        programs.push(program);
        pings_arrive(xsk, id, &ns);
        id
    };
    let total = 3 * RING + 64;
    let mut xsk = Xsk::new(total, RING).unwrap();
    let a = attach(&mut xsk, 0);
    let b = attach(&mut xsk, 1);

    // A registered the UMEM and goes as CNI DEL does it: veth, then port.
    run("ip link del xro0");
    xsk.remove_socket(a);
    assert_eq!(xsk.sockets(), 1);
    only_one_socket_holds_frames(&xsk, total, "A gone");
    pings_arrive(&mut xsk, b, "xro-1");

    // C registers the UMEM again.
    let c = attach(&mut xsk, 2);
    pings_arrive(&mut xsk, b, "xro-1");
    xsk.remove_socket(b);
    only_one_socket_holds_frames(&xsk, total, "B gone");
    pings_arrive(&mut xsk, c, "xro-2");

    // C goes port first: its rings stay lent while its veth is there...
    xsk.remove_socket(c);
    assert_eq!(xsk.sockets(), 0);
    only_one_socket_holds_frames(&xsk, total, "C's port gone");
    // ...and come back once it is not, when D comes.
    run("ip link del xro2");
    let d = attach(&mut xsk, 3);
    only_one_socket_holds_frames(&xsk, total, "D came");
    pings_arrive(&mut xsk, d, "xro-3");
}

/// A socket with rings smaller than the UMEM's keeps only its own ring's
/// worth of frames in its fill ring (the fill ring is the UMEM's size).
#[test]
fn a_socket_with_smaller_rings_keeps_fewer_frames_lent() {
    let Some(_serial) = root_or_skip("a_socket_with_smaller_rings_keeps_fewer_frames_lent") else {
        return;
    };
    let mut topo = Topology::default();
    topo.pod("xsr-pod", "xsr0", "10.244.9.30", "02:00:00:0e:02:01");
    run("ip -n xsr-pod neigh replace 169.254.1.1 lladdr 02:00:00:0e:02:ff dev eth0 nud permanent");
    run("ip netns exec xsr-pod sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1");
    let program = SteeringProgram::attach("xsr0", Steering::All).unwrap();
    const SMALL: u32 = 64;
    let mut xsk = Xsk::new(4 * RING, RING).unwrap();
    let id = xsk.add_socket("xsr0", 0, SMALL, true).unwrap();
    program.register_socket(0, xsk.fd(id)).unwrap();
    assert_eq!(xsk.refill(id, 0), SMALL as usize);
    assert_eq!(xsk.refill(id, 0), 0, "already full");
    assert_eq!(xsk.accounting().fill, SMALL);
    pings_arrive(&mut xsk, id, "xsr-pod");
    let acc = xsk.accounting();
    assert!(acc.balanced(), "{acc:?}");
    assert_eq!(acc.fill, SMALL, "{acc:?}");
    assert_eq!(acc.free, 4 * RING - SMALL, "{acc:?}");
}
