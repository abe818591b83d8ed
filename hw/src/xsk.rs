//! AF_XDP: one UMEM per worker and the sockets that share it.
//!
//! An [`Xsk`] is everything one worker needs to move frames through AF_XDP:
//! a UMEM (the frame memory, registered with the kernel) and one socket per
//! (interface, queue) the worker serves, all sharing that UMEM
//! (`XDP_SHARED_UMEM`), so forwarding between two ports of a worker moves a
//! descriptor and never copies. Each socket has its own fill and completion
//! rings, as sharing a UMEM across devices requires.
//!
//! # Registrations
//!
//! The kernel registers a UMEM on one socket (its *owner*, the first bound)
//! and binds every other socket to it through the owner's descriptor; it
//! refuses that bind (EBADF) once the owner is unbound, which happens when
//! the owner's interface goes away (a pod deleted). So the memory may be
//! registered more than once: when the newest registration's owner is
//! gone, the next socket registers the same memory again and owns the new
//! registration. Frame addresses are offsets into the one region, so a
//! descriptor received through one registration is sent through another
//! unchanged. An owner the kernel unbound gives its rings' frames back
//! at once; its registration is deleted once no open socket uses it.
//!
//! Built on `libxdp-sys` (libxdp's `xsk.h`, the layer xsk-rs wraps, with the
//! same pinned libbpf-sys 1.5.1). xsk-rs's own frame descriptors fix where a
//! packet starts in its frame and let it grow only into a fixed headroom,
//! but the pipeline moves a packet's start both ways in place (VXLAN encap
//! prepends 50 bytes, decap strips them), so descriptors here are plain
//! (frame, offset, length) triples, checked against the frame bounds.
//!
//! # Frame ownership
//!
//! Every frame is at any moment in exactly one place: free in the pool,
//! held by userspace (a batch or a queue of the pipeline), or lent to the
//! kernel (in a fill, rx, tx or completion ring, or being copied). The UMEM
//! keeps a bit per frame for "held by userspace" and hands out `&[u8]` /
//! `&mut [u8]` views only for such frames, so no reference ever aliases
//! memory the kernel may write. [`Xsk::accounting`] counts each place; when
//! traffic has stopped, free + user + fill + rx + tx + completion equals the
//! UMEM's frame count (tested in `tests/`).
//!
//! # Kernel wakeups
//!
//! Sockets are bound with `XDP_USE_NEED_WAKEUP`: the kernel says when it
//! needs a syscall to make progress (a `sendto` to transmit, a `recvfrom` to
//! look at a refilled fill ring), and only then do we make one. In copy mode
//! (veth, or a NIC without zero-copy) transmit happens inside `sendto`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::ptr::{self, NonNull};

use libxdp_sys as sys;

/// Bytes per frame. Aligned mode: the kernel masks every address to its
/// 2 KiB chunk, and a packet may not cross a chunk.
pub const FRAME_SIZE: u32 = 2048;
/// Where the kernel writes a received packet in its frame
/// (`XDP_PACKET_HEADROOM`; the UMEM's own headroom is 0).
pub const RX_HEADROOM: u32 = 256;

// Bind flags of `struct sockaddr_xdp` (uapi linux/if_xdp.h), as the u16
// the socket config takes.
const XDP_COPY: u16 = 1 << 1;
const XDP_ZEROCOPY: u16 = 1 << 2;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
const _: () = assert!(
    XDP_COPY as u32 == sys::XDP_COPY
        && XDP_ZEROCOPY as u32 == sys::XDP_ZEROCOPY
        && XDP_USE_NEED_WAKEUP as u32 == sys::XDP_USE_NEED_WAKEUP
);

/// How a socket was bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// The driver DMAs straight into the UMEM.
    ZeroCopy,
    /// The kernel copies between its buffers and the UMEM (veth, and NICs
    /// without AF_XDP zero-copy support).
    Copy,
}

impl BindMode {
    pub fn name(self) -> &'static str {
        match self {
            BindMode::ZeroCopy => "zero-copy",
            BindMode::Copy => "copy",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum XskError {
    #[error("UMEM of {frames} frames: {what}: {source}")]
    Umem {
        frames: u32,
        what: &'static str,
        source: io::Error,
    },
    #[error("no interface named {0:?}")]
    NoInterface(String),
    #[error("AF_XDP socket on {ifname} queue {queue}: {source}")]
    Socket {
        ifname: String,
        queue: u32,
        source: io::Error,
    },
    #[error("ring size {0} is not a power of two between 64 and 16384")]
    RingSize(u32),
}

/// A received packet: where it is in the UMEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxDesc {
    pub frame: u32,
    pub offset: u16,
    pub len: u16,
}

/// A packet to transmit; the same triple.
pub type TxDesc = RxDesc;

/// Where the UMEM's frames are, for the accounting invariant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accounting {
    pub total: u32,
    pub free: u32,
    pub user: u32,
    pub fill: u32,
    pub rx: u32,
    pub tx: u32,
    pub completion: u32,
    /// Lent to the kernel, as counted by the UMEM: equals
    /// fill + rx + tx + completion except while the kernel is between two
    /// rings (copying a received packet, or an skb of a sent one in flight).
    pub lent: u32,
}

impl Accounting {
    /// free + user + fill + rx + tx + completion = total.
    pub fn balanced(&self) -> bool {
        self.free + self.user + self.fill + self.rx + self.tx + self.completion == self.total
    }
}

/// Per-socket counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SocketStats {
    /// Transmit wakeups (`sendto`) made.
    pub tx_wakeups: u64,
    /// Transmit wakeups that failed with something other than "busy".
    pub tx_wakeup_errors: u64,
    /// Fill-ring wakeups (`recvfrom`) made.
    pub fill_wakeups: u64,
    /// The kernel's counters of the socket (XDP_STATISTICS): packets it
    /// dropped because the rx ring was full, or found no fill-ring frame,
    /// or for other reasons, and descriptors it refused.
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty: u64,
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
}

impl SocketStats {
    /// Adds `other` (another socket's counters).
    pub fn add(&mut self, other: &SocketStats) {
        self.tx_wakeups += other.tx_wakeups;
        self.tx_wakeup_errors += other.tx_wakeup_errors;
        self.fill_wakeups += other.fill_wakeups;
        self.rx_ring_full += other.rx_ring_full;
        self.rx_fill_ring_empty += other.rx_fill_ring_empty;
        self.rx_dropped += other.rx_dropped;
        self.rx_invalid_descs += other.rx_invalid_descs;
        self.tx_invalid_descs += other.tx_invalid_descs;
    }
}

/// Anonymous memory, unmapped on drop.
struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

impl Region {
    fn new(len: usize) -> io::Result<Region> {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
        // Explicit huge pages when the machine has some reserved, else
        // ordinary pages (the kernel pins the UMEM either way).
        for extra in [libc::MAP_HUGETLB, 0] {
            // SAFETY: an anonymous private mapping at an address of the
            // kernel's choice touches no existing memory.
            let p = unsafe {
                libc::mmap(
                    ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    flags | extra,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                if let Some(ptr) = NonNull::new(p.cast::<u8>()) {
                    return Ok(Region { ptr, len });
                }
            }
        }
        Err(io::Error::last_os_error())
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `new`, and
        // nothing borrows it any more (every view borrows its `Xsk`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One AF_XDP socket and its four rings.
struct Socket {
    xsk: NonNull<sys::xsk_socket>,
    fd: RawFd,
    // Boxed: libxdp keeps pointers to the ring structs.
    rx: Box<sys::xsk_ring_cons>,
    tx: Box<sys::xsk_ring_prod>,
    fill: Box<sys::xsk_ring_prod>,
    comp: Box<sys::xsk_ring_cons>,
    mode: BindMode,
    stats: SocketStats,
    /// Where it is bound, to recognise a retired socket's binding.
    ifindex: i32,
    queue: u32,
    /// The registration (index into `Xsk::registrations`) it is bound to.
    registration: usize,
    state: SocketState,
}

/// Removed sockets that stay open: see [`Xsk::remove_socket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SocketState {
    /// In use.
    Open,
    /// A removed owner, still bound: idle, its fill and tx rings lent.
    Retired,
    /// A removed owner the kernel unbound: its rings were taken back, and
    /// it only carries the registration's descriptor.
    Unbound,
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: `xsk` came from xsk_socket__create_shared and is deleted
        // once, here; its rings are not used after this.
        unsafe { sys::xsk_socket__delete(self.xsk.as_ptr()) };
    }
}

// SAFETY: the socket is a file descriptor and rings in memory it owns; it
// is used by one thread at a time (the worker that owns its `Xsk`).
unsafe impl Send for Socket {}

/// Identifies a socket of an [`Xsk`].
pub type SocketId = usize;

/// One registration of the UMEM's memory with the kernel.
struct Registration {
    umem: NonNull<sys::xsk_umem>,
    /// The fill and completion rings made with it, until its first socket
    /// (the owner) takes them.
    first_rings: Option<(Box<sys::xsk_ring_prod>, Box<sys::xsk_ring_cons>)>,
}

impl Registration {
    /// Registers `region` (every frame of it) with rings of `ring` entries.
    fn new(region: &Region, ring: u32) -> io::Result<Registration> {
        let mut fill = Box::new(zeroed_prod());
        let mut comp = Box::new(zeroed_cons());
        let config = sys::xsk_umem_config {
            fill_size: ring,
            comp_size: ring,
            frame_size: FRAME_SIZE,
            frame_headroom: 0,
            flags: 0,
        };
        let mut umem = ptr::null_mut();
        // SAFETY: the region is `region.len` bytes of page-aligned memory
        // owned by the `Xsk`, which deletes every registration before
        // unmapping it (field order and Drop); the ring structs are boxed,
        // so the pointers libxdp keeps stay valid.
        let rc = unsafe {
            sys::xsk_umem__create(
                &mut umem,
                region.ptr.as_ptr().cast(),
                region.len as u64,
                &mut *fill,
                &mut *comp,
                &config,
            )
        };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(-rc));
        }
        let umem = NonNull::new(umem).ok_or_else(|| io::Error::other("a null UMEM"))?;
        Ok(Registration {
            umem,
            first_rings: Some((fill, comp)),
        })
    }

    /// The descriptor the memory is registered on (its owner's).
    fn fd(&self) -> RawFd {
        // SAFETY: the UMEM is live for as long as `self`.
        unsafe { sys::xsk_umem__fd(self.umem.as_ptr()) }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: the `Xsk` drops a registration only after every socket
        // bound to it was deleted; the UMEM is deleted once, here.
        unsafe { sys::xsk_umem__delete(self.umem.as_ptr()) };
    }
}

/// A worker's UMEM and its sockets.
pub struct Xsk {
    // Declared in drop order: sockets before the registrations they are
    // bound to, registrations before the region they register.
    // A removed socket leaves `None`, so ids stay stable; the slot is
    // reused by the next socket added.
    sockets: Vec<Option<Socket>>,
    /// Oldest first; only the last one takes new sockets. A deleted one
    /// leaves `None`, so the sockets' indices stay valid.
    registrations: Vec<Option<Registration>>,
    region: Region,
    frames: u32,
    /// Ring size of the registrations' fill and completion rings.
    ring: u32,
    free: Vec<u32>,
    /// A bit per frame: held by userspace.
    user: Vec<u64>,
    lent: u32,
}

// SAFETY: a registration is a descriptor and ring structs it owns, used
// only through the `Xsk` that holds it.
unsafe impl Send for Registration {}

// SAFETY: all of it (the registrations, the region, the sockets) is owned
// by this value and used through `&mut self`, by one thread at a time.
unsafe impl Send for Xsk {}

/// `size` if it can be a ring size: a power of two from 64 to 16384.
pub fn check_ring(size: u32) -> Result<u32, XskError> {
    if size.is_power_of_two() && (64..=16384).contains(&size) {
        Ok(size)
    } else {
        Err(XskError::RingSize(size))
    }
}

impl Xsk {
    /// A UMEM of `frames` frames of [`FRAME_SIZE`] bytes, all free; the
    /// rings of its sockets hold `ring` descriptors each.
    pub fn new(frames: u32, ring: u32) -> Result<Xsk, XskError> {
        let ring = check_ring(ring)?;
        let err = |what, source| XskError::Umem {
            frames,
            what,
            source,
        };
        let len = frames as usize * FRAME_SIZE as usize;
        let region = Region::new(len).map_err(|e| err("mmap", e))?;
        let first = Registration::new(&region, ring).map_err(|e| err("xsk_umem__create", e))?;
        Ok(Xsk {
            sockets: Vec::new(),
            registrations: vec![Some(first)],
            region,
            frames,
            ring,
            free: (0..frames).rev().collect(),
            user: vec![0; (frames as usize).div_ceil(64)],
            lent: 0,
        })
    }

    /// Binds a socket to `ifname` queue `queue`, zero-copy if the driver
    /// can (unless `force_copy`), else copy mode. The caller must then put
    /// its fd into the XSKMAP of the interface's steering program.
    pub fn add_socket(
        &mut self,
        ifname: &str,
        queue: u32,
        ring: u32,
        force_copy: bool,
    ) -> Result<SocketId, XskError> {
        let ring = check_ring(ring)?;
        let name = CString::new(ifname).map_err(|_| XskError::NoInterface(ifname.to_string()))?;
        let ifindex = crate::steer::ifindex(ifname)
            .ok_or_else(|| XskError::NoInterface(ifname.to_string()))?;
        // A retired owner still holds this binding: take it back (a second
        // socket on the same queue would share its rings).
        let revived = self.sockets.iter_mut().enumerate().find_map(|(id, s)| {
            let s = s.as_mut().filter(|s| s.state == SocketState::Retired)?;
            (s.ifindex == ifindex && s.queue == queue).then(|| {
                s.state = SocketState::Open;
                id
            })
        });
        if let Some(id) = revived {
            return Ok(id);
        }
        // Zero-copy first (unless refused by the caller, or the driver
        // says it has none: a refused zero-copy bind costs ~30 ms on a
        // veth), then copy. Only a registration's owner chooses: libxdp
        // binds later sockets with XDP_SHARED_UMEM, which inherits the
        // owner's mode, so the mode reported is read back from the
        // kernel, not assumed.
        let attempts: &[u16] = if force_copy || !may_zero_copy(ifindex) {
            &[XDP_COPY]
        } else {
            &[XDP_ZEROCOPY, XDP_COPY]
        };
        let socket_err = |source| XskError::Socket {
            ifname: ifname.to_string(),
            queue,
            source,
        };
        let mut last = io::Error::other("not attempted");
        for &bind in attempts {
            let mut result = self.bind(&name, ifindex, queue, ring, bind);
            if result
                .as_ref()
                .is_err_and(|e| e.raw_os_error() == Some(libc::EBADF))
            {
                // The newest registration's owner lost its interface.
                let fresh = Registration::new(&self.region, self.ring).map_err(socket_err)?;
                self.registrations.push(Some(fresh));
                result = self.bind(&name, ifindex, queue, ring, bind);
            }
            match result {
                Ok(socket) => {
                    let id = match self.sockets.iter().position(Option::is_none) {
                        Some(id) => {
                            self.sockets[id] = Some(socket);
                            id
                        }
                        None => {
                            self.sockets.push(Some(socket));
                            self.sockets.len() - 1
                        }
                    };
                    // A registration this bind replaced may be done with.
                    self.collect_registrations();
                    return Ok(id);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                    return Err(XskError::NoInterface(ifname.to_string()));
                }
                Err(e) => last = e,
            }
        }
        Err(socket_err(last))
    }

    /// Binds a socket through the newest registration (as its owner, if it
    /// has none yet), registering the memory first if nothing is.
    fn bind(
        &mut self,
        name: &CString,
        ifindex: i32,
        queue: u32,
        ring: u32,
        bind: u16,
    ) -> io::Result<Socket> {
        if self.registrations.is_empty() {
            let fresh = Registration::new(&self.region, self.ring)?;
            self.registrations.push(Some(fresh));
        }
        let registration = self.registrations.len() - 1;
        // Never `None`: `collect_registrations` pops trailing deleted ones.
        let Some(reg) = self.registrations[registration].as_mut() else {
            return Err(io::Error::other("no UMEM registration"));
        };
        let owner = reg.first_rings.is_some();
        let (mut fill, mut comp) = reg
            .first_rings
            .take()
            .unwrap_or_else(|| (Box::new(zeroed_prod()), Box::new(zeroed_cons())));
        let mut rx = Box::new(zeroed_cons());
        let mut tx = Box::new(zeroed_prod());
        let mut config = zeroed_socket_config();
        config.rx_size = ring;
        config.tx_size = ring;
        config.__bindgen_anon_1.libxdp_flags = sys::XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;
        config.bind_flags = bind | XDP_USE_NEED_WAKEUP;
        let mut xsk = ptr::null_mut();
        // SAFETY: `name` is a NUL-terminated string; the registration
        // outlives this socket (the `Xsk` deletes sockets first); the four
        // ring structs are boxed and kept with the socket, so the pointers
        // libxdp stores stay valid.
        let rc = unsafe {
            sys::xsk_socket__create_shared(
                &mut xsk,
                name.as_ptr(),
                queue,
                reg.umem.as_ptr(),
                &mut *rx,
                &mut *tx,
                &mut *fill,
                &mut *comp,
                &config,
            )
        };
        let Some(xsk) = NonNull::new(xsk).filter(|_| rc == 0) else {
            if owner {
                // Not consumed: the registration's own rings stay for the
                // next try.
                reg.first_rings = Some((fill, comp));
            }
            return Err(io::Error::from_raw_os_error(-rc));
        };
        // SAFETY: `xsk` is a live socket just created.
        let fd = unsafe { sys::xsk_socket__fd(xsk.as_ptr()) };
        Ok(Socket {
            xsk,
            fd,
            rx,
            tx,
            fill,
            comp,
            mode: bind_mode(fd),
            stats: SocketStats::default(),
            ifindex,
            queue,
            registration,
            state: SocketState::Open,
        })
    }

    /// The socket's file descriptor (for the XSKMAP and for `poll`).
    pub fn fd(&self, id: SocketId) -> BorrowedFd<'_> {
        // SAFETY: the fd belongs to a socket this value owns and stays open
        // as long as the returned borrow of `self`.
        unsafe { BorrowedFd::borrow_raw(self.socket(id).fd) }
    }

    pub fn mode(&self, id: SocketId) -> BindMode {
        self.socket(id).mode
    }

    /// Counters of socket `id`: ours, and the kernel's read now.
    pub fn stats(&self, id: SocketId) -> SocketStats {
        let mut stats = self.socket(id).stats;
        let mut k = libc::xdp_statistics {
            rx_dropped: 0,
            rx_invalid_descs: 0,
            tx_invalid_descs: 0,
            rx_ring_full: 0,
            rx_fill_ring_empty_descs: 0,
            tx_ring_empty_descs: 0,
        };
        let mut len = libc::socklen_t::try_from(std::mem::size_of_val(&k)).unwrap_or(0);
        // SAFETY: `k` and `len` are valid for the kernel to write; `len`
        // says how much of `k` it may (older kernels write less).
        let rc = unsafe {
            libc::getsockopt(
                self.socket(id).fd,
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&raw mut k).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            stats.rx_ring_full = k.rx_ring_full;
            stats.rx_fill_ring_empty = k.rx_fill_ring_empty_descs;
            stats.rx_dropped = k.rx_dropped;
            stats.rx_invalid_descs = k.rx_invalid_descs;
            stats.tx_invalid_descs = k.tx_invalid_descs;
        }
        stats
    }

    /// Sockets open for traffic (removed ones that stay open not counted).
    pub fn sockets(&self) -> usize {
        self.live_sockets().count()
    }

    fn live_sockets(&self) -> impl Iterator<Item = &Socket> {
        self.sockets
            .iter()
            .flatten()
            .filter(|s| s.state == SocketState::Open)
    }

    /// # Panics
    /// If `id` was removed: a bug in the caller's bookkeeping.
    fn socket(&self, id: SocketId) -> &Socket {
        match self.sockets.get(id) {
            Some(Some(s)) => s,
            _ => panic!("socket {id} does not exist"),
        }
    }

    /// Closes socket `id` and takes back every frame lent to it: what it
    /// received is freed, what it sent and the kernel completed is reaped,
    /// and the descriptors still waiting in its fill and tx rings are read
    /// back out of the rings. Returns how many frames came back. Remove
    /// the socket from its XSKMAP (or detach the program) first, so the
    /// kernel stops filling it.
    ///
    /// A registration's owner cannot be closed while the registration
    /// lives (libxdp registered the memory on its descriptor). If its
    /// interface is still there, it is retired: left bound and idle, never
    /// polled; what it received and completed comes back, but its fill
    /// and tx rings keep their frames, as the kernel may still hold cached
    /// indices into them, and a later socket on the same interface and
    /// queue revives it. Once the kernel has unbound it (its interface
    /// went), its rings give back their frames like any socket's, and it
    /// stays open, unused, until no socket uses its registration.
    ///
    /// A zero-copy driver may still consume tx descriptors between the
    /// read-back and the close; such a frame could be reused while the
    /// NIC sends it, garbling that one packet (never memory safety: the
    /// kernel only reads it). Copy mode transmits only inside `sendto`.
    ///
    /// # Panics
    /// If `id` was already removed.
    pub fn remove_socket(&mut self, id: SocketId) -> usize {
        let before = self.lent;
        let s = self.socket(id);
        let owner = self.registrations[s.registration]
            .as_ref()
            .is_some_and(|r| r.fd() == s.fd);
        if owner {
            self.drain(id);
            socket_mut(&mut self.sockets, id).state = SocketState::Retired;
        } else {
            self.drain(id);
            let waiting = waiting_frames(socket_mut(&mut self.sockets, id));
            // Closing the socket (libxdp unmaps its rings) before the
            // frames go back: the kernel forgets them first.
            self.sockets[id] = None;
            self.take_back(waiting);
        }
        self.collect_registrations();
        (before - self.lent) as usize
    }

    /// Frees what socket `id` received and reaps what it completed.
    fn drain(&mut self, id: SocketId) {
        let mut rx = Vec::new();
        self.receive(id, usize::MAX, |d| rx.push(d.frame));
        for f in rx {
            self.free(f);
        }
        self.reap(id);
    }

    /// Returns frames read back out of a fill or tx ring to the pool.
    fn take_back(&mut self, addrs: Vec<u64>) {
        for addr in addrs {
            if let Ok(f) = u32::try_from(addr / u64::from(FRAME_SIZE)) {
                if f < self.frames && !self.is_user(f) {
                    self.free.push(f);
                    self.lent -= 1;
                }
            }
        }
    }

    /// Takes back the rings of retired owners the kernel has unbound, and
    /// deletes each registration no open socket uses that can take no new
    /// one: its owner is unbound, or it never had one and a newer
    /// registration took its place.
    fn collect_registrations(&mut self) {
        for id in 0..self.sockets.len() {
            let Some(s) = &self.sockets[id] else { continue };
            if s.state == SocketState::Retired && !is_bound(s.fd) {
                // Unbound, the kernel reads and writes none of its rings.
                self.drain(id);
                let waiting = waiting_frames(socket_mut(&mut self.sockets, id));
                self.take_back(waiting);
                socket_mut(&mut self.sockets, id).state = SocketState::Unbound;
            }
        }
        let newest = self.registrations.len().saturating_sub(1);
        for r in 0..self.registrations.len() {
            let Some(reg) = &self.registrations[r] else {
                continue;
            };
            let mut owner = None;
            let mut in_use = false;
            for (id, s) in self.sockets.iter().enumerate() {
                let Some(s) = s.as_ref().filter(|s| s.registration == r) else {
                    continue;
                };
                if s.fd == reg.fd() {
                    owner = Some((id, s.state));
                }
                in_use |= s.state == SocketState::Open;
            }
            let delete = match owner {
                _ if in_use => false,
                Some((_, state)) => state == SocketState::Unbound,
                None => r != newest,
            };
            if delete {
                if let Some((id, _)) = owner {
                    // Its rings were taken back when it was found unbound;
                    // its descriptor closes with the registration.
                    self.sockets[id] = None;
                }
                self.registrations[r] = None;
            }
        }
        while matches!(self.registrations.last(), Some(None)) {
            self.registrations.pop();
        }
    }

    // ---- frames held by userspace ----

    fn is_user(&self, frame: u32) -> bool {
        let f = frame as usize;
        self.user
            .get(f / 64)
            .is_some_and(|w| w >> (f % 64) & 1 == 1)
    }

    fn set_user(&mut self, frame: u32, held: bool) {
        let f = frame as usize;
        let bit = 1u64 << (f % 64);
        if held {
            self.user[f / 64] |= bit;
        } else {
            self.user[f / 64] &= !bit;
        }
    }

    /// The whole frame (`FRAME_SIZE` bytes).
    ///
    /// # Panics
    /// If userspace does not hold `frame` (it is free or lent to the
    /// kernel): a bug in the caller's frame accounting.
    #[inline]
    pub fn frame(&self, frame: u32) -> &[u8] {
        assert!(
            self.is_user(frame),
            "frame {frame} is not held by userspace"
        );
        // SAFETY: `frame` < `frames` (is_user checked the bitmap, which has
        // no bit beyond it), so the frame lies inside the region; userspace
        // holds it, so the kernel does not write it, and a `&mut` view of it
        // would need `&mut self`. The view covers this frame only, never
        // memory lent to the kernel.
        unsafe { std::slice::from_raw_parts(self.frame_ptr(frame), FRAME_SIZE as usize) }
    }

    /// Where frame `frame` starts (computing it is safe; using it is not).
    fn frame_ptr(&self, frame: u32) -> *mut u8 {
        self.region
            .ptr
            .as_ptr()
            .wrapping_add(frame as usize * FRAME_SIZE as usize)
    }

    /// The whole frame, writable. Panics as [`Xsk::frame`] does.
    #[inline]
    pub fn frame_mut(&mut self, frame: u32) -> &mut [u8] {
        assert!(
            self.is_user(frame),
            "frame {frame} is not held by userspace"
        );
        // SAFETY: as in `frame`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.frame_ptr(frame), FRAME_SIZE as usize) }
    }

    /// Copies `len` bytes at `offset` of frame `from` to the same place in
    /// frame `to` (both held by userspace).
    ///
    /// # Panics
    /// As [`Xsk::frame`], or if the range leaves the frame.
    pub fn copy_packet(&mut self, from: u32, to: u32, offset: usize, len: usize) {
        assert!(
            offset + len <= FRAME_SIZE as usize,
            "copy past the end of a frame"
        );
        assert!(
            self.is_user(from) && self.is_user(to),
            "copy between frames not held by userspace"
        );
        if from == to {
            return;
        }
        let src = self.frame_ptr(from).wrapping_add(offset);
        let dst = self.frame_ptr(to).wrapping_add(offset);
        // SAFETY: both ranges lie inside distinct frames (checked above)
        // that userspace holds, so they do not overlap and nothing else
        // reads or writes them meanwhile (`&mut self`).
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
    }

    /// Takes a free frame for userspace.
    pub fn alloc(&mut self) -> Option<u32> {
        let f = self.free.pop()?;
        self.set_user(f, true);
        Some(f)
    }

    /// Gives a frame held by userspace back to the pool.
    ///
    /// # Panics
    /// If userspace does not hold it (a double free).
    pub fn free(&mut self, frame: u32) {
        assert!(
            self.is_user(frame),
            "free of frame {frame} not held by userspace"
        );
        self.set_user(frame, false);
        self.free.push(frame);
    }

    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    pub fn capacity(&self) -> usize {
        self.frames as usize
    }

    // ---- rings ----

    /// Lends free frames to the socket's fill ring until it holds as many
    /// as the socket's rx ring does (the fill ring, sized by the UMEM, may
    /// be larger), and at most `keep_free` fewer than are free, so
    /// transmit-side copies and replies still find frames. Returns how
    /// many.
    pub fn refill(&mut self, id: SocketId, keep_free: usize) -> usize {
        let available = self.free.len().saturating_sub(keep_free);
        let s = socket_mut(&mut self.sockets, id);
        let room =
            s.rx.size
                .saturating_sub(ring_entries(&s.fill.producer, &s.fill.consumer));
        let want = u32::try_from(available).unwrap_or(u32::MAX).min(room);
        if want == 0 {
            return 0;
        }
        let mut idx = 0;
        let n = reserve_up_to(&mut s.fill, want, &mut idx);
        for i in 0..n {
            let f = self.free.pop().unwrap_or_default();
            // SAFETY: `idx + i` was reserved above; the function masks it
            // into the ring and returns a pointer to that slot.
            let slot = unsafe { sys::xsk_ring_prod__fill_addr(&mut *s.fill, idx.wrapping_add(i)) };
            // SAFETY: a reserved slot of the live fill ring, ours until submit.
            unsafe { *slot = u64::from(f) * u64::from(FRAME_SIZE) };
        }
        // SAFETY: submits exactly the `n` slots reserved and written above.
        unsafe { sys::xsk_ring_prod__submit(&mut *s.fill, n) };
        self.lent += n;
        // SAFETY: reads the ring's flag word.
        if n > 0 && unsafe { sys::xsk_ring_prod__needs_wakeup(&*s.fill) } != 0 {
            s.stats.fill_wakeups += 1;
            // Errors are the kernel's to count (rx_fill_ring_empty).
            let _ = wake_rx(s.fd);
        }
        n as usize
    }

    /// Takes up to `max` received packets off the socket's rx ring; they
    /// become held by userspace.
    pub fn receive(&mut self, id: SocketId, max: usize, mut each: impl FnMut(RxDesc)) -> usize {
        let s = socket_mut(&mut self.sockets, id);
        let mut idx = 0;
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        // SAFETY: the rx ring is live.
        let n = unsafe { sys::xsk_ring_cons__peek(&mut *s.rx, max, &mut idx) };
        let mut got = 0;
        for i in 0..n {
            // SAFETY: `idx + i` is among the `n` entries peeked above.
            let slot = unsafe { sys::xsk_ring_cons__rx_desc(&*s.rx, idx.wrapping_add(i)) };
            // SAFETY: a peeked, not yet released, slot of the live rx ring.
            let d = unsafe { *slot };
            let frame = d.addr / u64::from(FRAME_SIZE);
            let offset = d.addr % u64::from(FRAME_SIZE);
            // The kernel never crosses a frame; a descriptor that did, or
            // named a frame we did not lend, would be dropped here.
            let (Ok(frame), Ok(offset), Ok(len)) = (
                u32::try_from(frame),
                u16::try_from(offset),
                u16::try_from(d.len),
            ) else {
                continue;
            };
            if frame >= self.frames || u32::from(offset) + u32::from(len) > FRAME_SIZE {
                continue;
            }
            let f = frame as usize;
            self.user[f / 64] |= 1 << (f % 64);
            got += 1;
            each(RxDesc { frame, offset, len });
        }
        // SAFETY: releases the `n` entries peeked above.
        unsafe { sys::xsk_ring_cons__release(&mut *s.rx, n) };
        self.lent -= got;
        got as usize
    }

    /// Puts packets held by userspace on the socket's tx ring, as many as
    /// fit, and wakes the kernel if it asks. Returns how many were taken;
    /// the rest stay with the caller.
    ///
    /// # Panics
    /// If a descriptor names a frame userspace does not hold, or does not
    /// fit in its frame.
    pub fn transmit(&mut self, id: SocketId, descs: &[TxDesc]) -> usize {
        for d in descs {
            assert!(
                self.is_user(d.frame) && u32::from(d.offset) + u32::from(d.len) <= FRAME_SIZE,
                "transmit of {d:?}, not a packet held by userspace"
            );
        }
        let s = socket_mut(&mut self.sockets, id);
        let mut idx = 0;
        let want = u32::try_from(descs.len()).unwrap_or(u32::MAX);
        let n = reserve_up_to(&mut s.tx, want, &mut idx);
        for (i, d) in (0..n).zip(descs) {
            // SAFETY: `idx + i` was reserved above.
            let slot = unsafe { sys::xsk_ring_prod__tx_desc(&mut *s.tx, idx.wrapping_add(i)) };
            // SAFETY: a reserved slot of the live tx ring, ours until submit.
            let slot = unsafe { &mut *slot };
            slot.addr = u64::from(d.frame) * u64::from(FRAME_SIZE) + u64::from(d.offset);
            slot.len = u32::from(d.len);
            slot.options = 0;
        }
        // SAFETY: submits exactly the `n` slots reserved and written above.
        unsafe { sys::xsk_ring_prod__submit(&mut *s.tx, n) };
        for d in &descs[..n as usize] {
            let f = d.frame as usize;
            self.user[f / 64] &= !(1 << (f % 64));
        }
        self.lent += n;
        // Copy mode transmits at most 32 frames per sendto (the kernel's
        // TX_BATCH_SIZE), so one kick per burst let bursts of more than 32
        // pile up in the ring until it was full and frames were dropped.
        // Kick until the kernel has taken everything or is busy.
        for _ in 0..s.tx.size / 32 + 1 {
            // SAFETY: reads the ring's flag word.
            if unsafe { sys::xsk_ring_prod__needs_wakeup(&*s.tx) } == 0 || tx_pending(s) == 0 {
                break;
            }
            s.stats.tx_wakeups += 1;
            // SAFETY: a zero-length non-blocking sendto on our own socket,
            // the AF_XDP transmit wakeup.
            let rc =
                unsafe { libc::sendto(s.fd, ptr::null(), 0, libc::MSG_DONTWAIT, ptr::null(), 0) };
            if rc < 0 {
                let e = io::Error::last_os_error().raw_os_error();
                // Busy, no buffers, try again: the ring is retried on the
                // next wakeup.
                if !matches!(e, Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS)) {
                    s.stats.tx_wakeup_errors += 1;
                }
                break;
            }
        }
        n as usize
    }

    /// Takes the frames the kernel finished sending off the completion ring
    /// and frees them. Returns how many.
    pub fn reap(&mut self, id: SocketId) -> usize {
        let s = socket_mut(&mut self.sockets, id);
        let mut idx = 0;
        // SAFETY: the completion ring is live.
        let n = unsafe { sys::xsk_ring_cons__peek(&mut *s.comp, s.comp.size, &mut idx) };
        for i in 0..n {
            // SAFETY: `idx + i` is among the `n` entries peeked above.
            let slot = unsafe { sys::xsk_ring_cons__comp_addr(&*s.comp, idx.wrapping_add(i)) };
            // SAFETY: a peeked, not yet released, slot of the live ring.
            let addr = unsafe { *slot };
            if let Ok(f) = u32::try_from(addr / u64::from(FRAME_SIZE)) {
                if f < self.frames {
                    self.free.push(f);
                }
            }
        }
        // SAFETY: releases the `n` entries peeked above.
        unsafe { sys::xsk_ring_cons__release(&mut *s.comp, n) };
        self.lent -= n;
        n as usize
    }

    /// Blocks until a socket has packets to receive, one of `also` is
    /// readable (another worker's doorbell), or `timeout_ms` passes (the
    /// idle back-off of a worker). Returns whether anything is ready.
    pub fn wait_rx(&self, also: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<bool> {
        let mut fds: Vec<libc::pollfd> = self
            .live_sockets()
            .map(|s| s.fd)
            .chain(also.iter().map(AsRawFd::as_raw_fd))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let nfds = libc::nfds_t::try_from(fds.len()).unwrap_or(libc::nfds_t::MAX);
        // SAFETY: `fds` is a valid array of `nfds` pollfd structs naming
        // sockets this value owns and descriptors `also` borrows.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), nfds, timeout_ms) };
        match rc {
            n if n > 0 => Ok(true),
            0 => Ok(false),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Where every frame is (see the module documentation).
    pub fn accounting(&self) -> Accounting {
        let mut a = Accounting {
            total: self.frames,
            free: u32::try_from(self.free.len()).unwrap_or(u32::MAX),
            user: self.user.iter().map(|w| w.count_ones()).sum(),
            lent: self.lent,
            ..Accounting::default()
        };
        // Retired sockets too: their rings still hold frames (an unbound
        // one's were taken back).
        for s in self.sockets.iter().flatten() {
            if s.state == SocketState::Unbound {
                continue;
            }
            a.fill += ring_entries(&s.fill.producer, &s.fill.consumer);
            a.rx += ring_entries(&s.rx.producer, &s.rx.consumer);
            a.tx += ring_entries(&s.tx.producer, &s.tx.consumer);
            a.completion += ring_entries(&s.comp.producer, &s.comp.consumer);
        }
        a
    }
}

/// Socket `id` of `sockets` (a function, not a method, so the caller can
/// borrow the `Xsk`'s other fields meanwhile).
///
/// # Panics
/// If `id` was removed: a bug in the caller's bookkeeping.
fn socket_mut(sockets: &mut [Option<Socket>], id: SocketId) -> &mut Socket {
    match sockets.get_mut(id) {
        Some(Some(s)) => s,
        _ => panic!("socket {id} does not exist"),
    }
}

/// The frames waiting in `s`'s fill ring and tx ring (the kernel has not
/// taken them), read back out of the rings, which stay as they are.
fn waiting_frames(s: &mut Socket) -> Vec<u64> {
    let mut waiting = Vec::new();
    // SAFETY: `consumer` points at the live fill ring's consumer index,
    // advanced by the kernel: read atomically, as libxdp does.
    let consumer = unsafe { std::sync::atomic::AtomicU32::from_ptr(s.fill.consumer) }
        .load(std::sync::atomic::Ordering::Acquire);
    // SAFETY: `producer` is ours; the kernel only reads it.
    let producer = unsafe { *s.fill.producer };
    for i in 0..producer.wrapping_sub(consumer) {
        let idx = consumer.wrapping_add(i);
        // SAFETY: an index of the live fill ring (the function masks it
        // and returns a pointer into the ring).
        let slot = unsafe { sys::xsk_ring_prod__fill_addr(&mut *s.fill, idx) };
        // SAFETY: entries between consumer and producer are ours to read.
        waiting.push(unsafe { *slot });
    }
    let pending = tx_pending(s);
    // SAFETY: `producer` is ours.
    let producer = unsafe { *s.tx.producer };
    for i in 0..pending {
        let idx = producer.wrapping_sub(pending).wrapping_add(i);
        // SAFETY: as above, for the tx ring.
        let slot = unsafe { sys::xsk_ring_prod__tx_desc(&mut *s.tx, idx) };
        // SAFETY: a submitted entry the kernel has not consumed.
        waiting.push(unsafe { (*slot).addr });
    }
    waiting
}

/// Descriptors of `s`'s tx ring the kernel has not taken yet.
fn tx_pending(s: &Socket) -> u32 {
    // SAFETY: `consumer` points at the live ring's consumer index, which
    // the kernel advances: read atomically, as libxdp does.
    let consumer = unsafe { std::sync::atomic::AtomicU32::from_ptr(s.tx.consumer) }
        .load(std::sync::atomic::Ordering::Acquire);
    // SAFETY: `producer` is ours; the kernel only reads it.
    let producer = unsafe { *s.tx.producer };
    producer.wrapping_sub(consumer)
}

/// Reserves as many of `want` slots of a producer ring as are free and
/// returns how many (libxdp's reserve is all or nothing: asking a ring with
/// one slot short for a full ring's worth gets none).
fn reserve_up_to(ring: &mut Box<sys::xsk_ring_prod>, want: u32, idx: &mut u32) -> u32 {
    // SAFETY: `ring` is a live producer ring owned by a socket.
    let free = unsafe { sys::xsk_prod_nb_free(&mut **ring, want) };
    let n = want.min(free);
    if n == 0 {
        return 0;
    }
    // SAFETY: as above; `n` slots are free, so this reserves all of them.
    unsafe { sys::xsk_ring_prod__reserve(&mut **ring, n, idx) }
}

/// The mode the kernel bound socket `fd` in (XDP_OPTIONS).
fn bind_mode(fd: RawFd) -> BindMode {
    let mut flags: u32 = 0;
    let mut len: libc::socklen_t = 4;
    // SAFETY: struct xdp_options is one u32; `flags` and `len` are valid
    // for the kernel to write.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_OPTIONS,
            (&raw mut flags).cast(),
            &mut len,
        )
    };
    if rc == 0 && flags & libc::XDP_OPTIONS_ZEROCOPY != 0 {
        BindMode::ZeroCopy
    } else {
        BindMode::Copy
    }
}

/// Entries between a ring's consumer and producer, read from the words the
/// kernel shares with us.
fn ring_entries(producer: &*mut u32, consumer: &*mut u32) -> u32 {
    if producer.is_null() || consumer.is_null() {
        return 0;
    }
    // SAFETY: both point into the ring's mapping, live as long as the
    // socket; volatile because the kernel updates them concurrently.
    let p = unsafe { ptr::read_volatile(*producer) };
    // SAFETY: as above.
    let c = unsafe { ptr::read_volatile(*consumer) };
    p.wrapping_sub(c)
}

fn zeroed_prod() -> sys::xsk_ring_prod {
    // SAFETY: a ring struct is integers and raw pointers; all-zero is the
    // "not yet set up" state libxdp fills in.
    unsafe { std::mem::zeroed() }
}

fn zeroed_cons() -> sys::xsk_ring_cons {
    // SAFETY: as for `zeroed_prod`.
    unsafe { std::mem::zeroed() }
}

fn zeroed_socket_config() -> sys::xsk_socket_config {
    // SAFETY: plain integers and a union of integers.
    unsafe { std::mem::zeroed() }
}

/// Whether the driver of `ifindex` may bind AF_XDP zero-copy: false only
/// when the kernel lists the device's XDP features (netdev netlink, Linux
/// 6.3+) and zero-copy is not among them; a kernel that lists none (all
/// zero) is given the benefit of the doubt.
fn may_zero_copy(ifindex: i32) -> bool {
    /// `NETDEV_XDP_ACT_XSK_ZEROCOPY` (uapi linux/netdev.h).
    const XSK_ZEROCOPY: u64 = 1 << 3;
    // SAFETY: plain integers; all-zero with `sz` set is an empty query.
    let mut opts: libbpf_sys::bpf_xdp_query_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_xdp_query_opts>() as libbpf_sys::size_t;
    // SAFETY: `opts` is a valid, correctly sized options struct that the
    // call only writes into.
    let rc = unsafe { libbpf_sys::bpf_xdp_query(ifindex, 0, &mut opts) };
    rc != 0 || opts.feature_flags == 0 || opts.feature_flags & XSK_ZEROCOPY != 0
}

/// Whether AF_XDP socket `fd` is still bound: the kernel answers a receive
/// wakeup on an unbound socket (its interface went away) with ENXIO.
fn is_bound(fd: RawFd) -> bool {
    wake_rx(fd).map_or_else(|e| e.raw_os_error() != Some(libc::ENXIO), |()| true)
}

/// The receive wakeup: the kernel looks at the fill ring again.
fn wake_rx(fd: RawFd) -> io::Result<()> {
    // SAFETY: a zero-length non-blocking recvfrom with null buffers, the
    // AF_XDP wakeup convention; it reads and writes no memory of ours.
    let rc = unsafe {
        libc::recvfrom(
            fd,
            ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
