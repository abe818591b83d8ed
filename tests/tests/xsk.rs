//! `hw`'s AF_XDP layer against the kernel: one socket on a veth, traffic
//! from a namespace, rings refilled and the frame accounting balanced at
//! every step.

mod common;

use std::time::{Duration, Instant};

use common::{root_or_skip, run, Topology};
use xvs_hw::steer::{Steering, SteeringProgram};
use xvs_hw::xsk::Xsk;

const RING: u32 = 256;

/// Receives until at least `n` packets came and the socket stayed quiet
/// for 200 ms (or 5 s passed); frees them and returns how many.
fn receive_and_free(xsk: &mut Xsk, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while Instant::now() < deadline {
        let more = xsk.wait_rx(&[], 200).unwrap();
        xsk.receive(0, 64, |d| got.push(d.frame));
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
        let got = receive_and_free(&mut xsk, 5);
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
