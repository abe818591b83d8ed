//! Hand-off between workers: how a worker sends out of a port it has no
//! queue of.
//!
//! Each worker owns its UMEM and the AF_XDP sockets bound to it, and an
//! AF_XDP socket can only transmit frames of its own UMEM. Workers split a
//! port's queues between them (each to the worker with the fewest sockets
//! when the port is added), so
//! a port with fewer queues than there are workers — a single-queue veth,
//! say — is served by some workers only, and the others hand their packets
//! for it to the first worker that has one. This is what OVS's PMD threads
//! do with `XPS` off and what VPP's handoff nodes do: the packet is copied,
//! because a frame of one UMEM cannot go out of another's socket.
//!
//! A [`Link`] joins one sending worker to one receiving worker. It holds a
//! fixed set of [`Parcel`]s — a batch worth of packet bytes for one port —
//! that circulate between two lock-free queues: `empty` (owned by the
//! sender side) and `full` (owned by the receiver side). Nothing is
//! allocated after start; when a sender finds no empty parcel (the receiver
//! is behind) it drops the batch and counts it, as a full tx ring does.
//!
//! A receiving worker that sleeps (idle back-off in `poll(2)`) would not see
//! a parcel arrive, so it publishes that it sleeps on its [`Doorbell`], and a
//! sender that pushes a parcel then rings it: one datagram on a socket pair
//! the sleeper polls together with its AF_XDP sockets. The sleeper sets the
//! flag, fences, and checks its inboxes once more before sleeping; the sender
//! pushes, fences, and reads the flag: one of the two always sees the other
//! (the Dekker pattern), so no parcel waits for the idle timeout.

use std::io::ErrorKind;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

use arrayvec::ArrayVec;
use crossbeam::queue::ArrayQueue;

use crate::packet::{FramePool, MAX_FRAME_LEN};
use crate::port::{Batch, PortId, BATCH_SIZE};

/// Parcels per link: how many batches may be in flight from one worker to
/// another. Under TCP load batches are often small, and a receiver's
/// `sendto()` can take a while on veth (it runs the receiving pod's stack);
/// eight parcels lost a few batches in the demo, 32 none (3.5 MiB per
/// link).
pub const PARCELS_PER_LINK: usize = 32;

/// The bytes of up to one batch of packets bound for one port.
pub struct Parcel {
    port: PortId,
    /// The snapshot generation `port` was numbered under: port ids change
    /// when ports come and go, so a parcel from before a reconfiguration
    /// is dropped rather than sent out of whatever port has its id now.
    generation: u64,
    lens: ArrayVec<u16, BATCH_SIZE>,
    bytes: Box<[u8]>,
}

impl Parcel {
    fn new() -> Self {
        Parcel {
            port: 0,
            generation: 0,
            lens: ArrayVec::new(),
            bytes: vec![0; BATCH_SIZE * MAX_FRAME_LEN].into_boxed_slice(),
        }
    }

    /// The packets' bytes, one slice each.
    fn packets(&self) -> impl Iterator<Item = &[u8]> {
        self.lens
            .iter()
            .enumerate()
            .map(|(i, &len)| &self.bytes[i * MAX_FRAME_LEN..][..usize::from(len)])
    }
}

/// Wakes a sleeping worker.
pub struct Doorbell {
    sleeping: AtomicBool,
    bell: UnixDatagram,
    ear: UnixDatagram,
}

impl Doorbell {
    /// # Errors
    /// If the socket pair cannot be made (out of descriptors).
    pub fn new() -> std::io::Result<Arc<Self>> {
        let (bell, ear) = UnixDatagram::pair()?;
        bell.set_nonblocking(true)?;
        ear.set_nonblocking(true)?;
        Ok(Arc::new(Doorbell {
            sleeping: AtomicBool::new(false),
            bell,
            ear,
        }))
    }

    /// The descriptor the sleeper polls.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.ear.as_fd()
    }

    /// Rings whether or not the worker sleeps (the control thread, after
    /// queueing work for it).
    pub fn ring(&self) {
        let _ = self.bell.send(&[1]);
    }

    /// Empties the doorbell after a wake-up.
    pub fn drain(&self) {
        let mut buf = [0u8; 16];
        loop {
            match self.ear.recv(&mut buf) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }

    fn ring_if_sleeping(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.swap(false, Ordering::Relaxed) {
            // A full socket buffer means a ring is already pending.
            let _ = self.bell.send(&[1]);
        }
    }
}

/// One direction between two workers.
pub struct Link {
    empty: ArrayQueue<Parcel>,
    full: ArrayQueue<Parcel>,
}

impl Link {
    fn new() -> Self {
        let empty = ArrayQueue::new(PARCELS_PER_LINK);
        for _ in 0..PARCELS_PER_LINK {
            let _ = empty.push(Parcel::new());
        }
        Link {
            empty,
            full: ArrayQueue::new(PARCELS_PER_LINK),
        }
    }
}

/// The sending end of a link: the way out of one port for a worker that
/// has no queue of it.
#[derive(Clone)]
pub struct Outbox {
    link: Arc<Link>,
    doorbell: Arc<Doorbell>,
}

impl Outbox {
    /// Copies `batch` into a parcel for `port` (of snapshot `generation`),
    /// sends it and frees the
    /// frames, leaving `batch` empty. Returns how many packets it sent; the
    /// rest were dropped: all of them when the receiver is behind (no empty
    /// parcel), and any longer than a frame's data window.
    pub fn send<P: FramePool>(
        &self,
        pool: &mut P,
        port: PortId,
        generation: u64,
        batch: &mut Batch,
    ) -> usize {
        let mut sent = 0;
        if let Some(mut parcel) = self.link.empty.pop() {
            parcel.port = port;
            parcel.generation = generation;
            parcel.lens.clear();
            for pkt in batch.iter() {
                let data = pkt.data(pool);
                if data.len() <= MAX_FRAME_LEN {
                    parcel.bytes[parcel.lens.len() * MAX_FRAME_LEN..][..data.len()]
                        .copy_from_slice(data);
                    parcel.lens.push(pkt.len);
                }
            }
            sent = parcel.lens.len();
            // Cannot fail: there are as many parcels as slots.
            let _ = self.link.full.push(parcel);
            self.doorbell.ring_if_sleeping();
        }
        for p in batch.drain(..) {
            pool.free(p.frame);
        }
        sent
    }
}

/// The receiving ends of a worker's links, and its doorbell.
pub struct Inbox {
    links: Vec<Arc<Link>>,
    doorbell: Arc<Doorbell>,
}

/// What [`Inbox::deliver`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Packets copied into frames and given to a port.
    pub packets: usize,
    /// Packets dropped because the pool had no free frame.
    pub no_frame: usize,
    /// Packets dropped because they were numbered under another snapshot.
    pub stale: usize,
}

impl Inbox {
    /// Takes every waiting parcel: copies its packets into frames of
    /// `pool` (after the headroom, as received packets are) and gives them
    /// to `transmit` with the parcel's port, one batch per parcel. Parcels
    /// of another snapshot `generation` are dropped.
    pub fn deliver<P: FramePool>(
        &self,
        pool: &mut P,
        batch: &mut Batch,
        generation: u64,
        mut transmit: impl FnMut(&mut P, PortId, &mut Batch),
    ) -> Delivered {
        let mut done = Delivered::default();
        for link in &self.links {
            while let Some(parcel) = link.full.pop() {
                if parcel.generation != generation {
                    done.stale += parcel.lens.len();
                    let _ = link.empty.push(parcel);
                    continue;
                }
                for bytes in parcel.packets() {
                    match pool.alloc_with(bytes) {
                        Some(pkt) => batch.push(pkt),
                        None => done.no_frame += 1,
                    }
                }
                done.packets += batch.len();
                let port = parcel.port;
                // Cannot fail: there are as many parcels as slots.
                let _ = link.empty.push(parcel);
                if !batch.is_empty() {
                    transmit(pool, port, batch);
                }
            }
        }
        done
    }

    /// Announces that the worker is about to sleep. Returns `false` if a
    /// parcel is already waiting (do not sleep); otherwise the next parcel
    /// pushed rings [`Inbox::doorbell_fd`].
    pub fn prepare_sleep(&self) -> bool {
        self.doorbell.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.links.iter().any(|l| !l.full.is_empty()) {
            self.doorbell.sleeping.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// After waking: stops announcing sleep and empties the doorbell.
    pub fn woke(&self) {
        self.doorbell.sleeping.store(false, Ordering::Relaxed);
        self.doorbell.drain();
    }

    /// The descriptor to poll while sleeping.
    pub fn doorbell_fd(&self) -> BorrowedFd<'_> {
        self.doorbell.fd()
    }
}

/// Links every ordered pair of `workers` workers: returns each worker's
/// inbox, and its outboxes indexed by receiving worker (`None` for itself).
///
/// # Errors
/// If a doorbell cannot be made.
pub fn mesh(workers: usize) -> std::io::Result<Vec<(Inbox, Vec<Option<Outbox>>)>> {
    let doorbells = (0..workers)
        .map(|_| Doorbell::new())
        .collect::<Result<Vec<_>, _>>()?;
    // links[from][to]
    let links: Vec<Vec<Option<Arc<Link>>>> = (0..workers)
        .map(|from| {
            (0..workers)
                .map(|to| (from != to).then(|| Arc::new(Link::new())))
                .collect()
        })
        .collect();
    Ok((0..workers)
        .map(|me| {
            let inbox = Inbox {
                links: links.iter().filter_map(|to| to[me].clone()).collect(),
                doorbell: doorbells[me].clone(),
            };
            let outboxes = links[me]
                .iter()
                .zip(&doorbells)
                .map(|(link, doorbell)| {
                    link.as_ref().map(|link| Outbox {
                        link: link.clone(),
                        doorbell: doorbell.clone(),
                    })
                })
                .collect();
            (inbox, outboxes)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::HeapFramePool;

    fn rang(inbox: &Inbox) -> bool {
        inbox.doorbell.ear.recv(&mut [0u8; 4]).is_ok()
    }

    fn send_one(outbox: &Outbox, pool: &mut HeapFramePool) {
        let mut batch = Batch::new();
        batch.push(pool.alloc_with(&[1, 2, 3]).unwrap());
        assert_eq!(outbox.send(pool, 0, 1, &mut batch), 1);
    }

    #[test]
    fn the_doorbell_rings_only_for_a_sleeper() {
        let mut mesh = mesh(2).unwrap();
        let (inbox1, _) = mesh.pop().unwrap();
        let (_, out0) = mesh.pop().unwrap();
        let outbox = out0[1].clone().unwrap();
        let mut pool = HeapFramePool::new(4);

        // Awake: the parcel waits, no ring.
        send_one(&outbox, &mut pool);
        assert!(!rang(&inbox1));
        // A parcel is waiting: do not sleep.
        assert!(!inbox1.prepare_sleep());
        let mut batch = Batch::new();
        let done = inbox1.deliver(&mut pool, &mut batch, 1, |pool, _, b| {
            b.drain(..).for_each(|p| pool.free(p.frame));
        });
        assert_eq!(done.packets, 1);

        // Asleep: a parcel rings, and waking empties the bell.
        assert!(inbox1.prepare_sleep());
        send_one(&outbox, &mut pool);
        inbox1.woke();
        assert!(!rang(&inbox1), "woke() empties the doorbell");
        assert!(!inbox1.doorbell.sleeping.load(Ordering::Relaxed));
    }

    #[test]
    fn a_sleeper_is_rung_exactly_once() {
        let mut mesh = mesh(2).unwrap();
        let (inbox1, _) = mesh.pop().unwrap();
        let (_, out0) = mesh.pop().unwrap();
        let outbox = out0[1].clone().unwrap();
        let mut pool = HeapFramePool::new(4);
        assert!(inbox1.prepare_sleep());
        send_one(&outbox, &mut pool);
        send_one(&outbox, &mut pool);
        assert!(rang(&inbox1));
        assert!(!rang(&inbox1), "the second parcel found the sleeper woken");
    }
}
