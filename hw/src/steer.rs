//! The XDP steering program (`bpf/steer.bpf.c`, compiled by clang at build
//! time), loaded and attached with libbpf-rs, one instance per port.
//!
//! It redirects to the port's AF_XDP sockets only what the switch owns and
//! passes everything else to the kernel (see the C source for the rules).
//! It is attached directly to the interface, native (driver) mode first and
//! generic (SKB) mode if the driver has no XDP support; libxdp's dispatcher
//! is not used. Dropping a [`SteeringProgram`] detaches it, if it is still
//! the interface's program.
//!
//! A program left attached by a crashed xvsd is found by name on the next
//! start and replaced; a program of anyone else is never touched: attaching
//! then fails with [`SteerError::Foreign`].

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd};

use libbpf_rs::{MapCore, MapFlags, Object, ObjectBuilder, Xdp, XdpFlags};

/// The program's name in the kernel (at most 15 bytes).
pub const PROGRAM_NAME: &str = "xvs_steer";

static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/steer.bpf.o"));

/// What a port's program steers to the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steering {
    /// Everything: a pod port, wholly the switch's.
    All,
    /// IPv4 to owned prefixes, VXLAN (UDP to `vtep:port`) if set, and what
    /// `node` says of the node IP: an uplink shared with the node's own
    /// traffic.
    Owned {
        vxlan: Option<(Ipv4Addr, u16)>,
        node: Option<NodeSteering>,
    },
}

/// What of the traffic to the node's own address belongs to the switch:
/// TCP and UDP to a node port ([`SteeringProgram::add_node_port`]) or to a
/// port of `snat_ports`, and ICMP echo replies with an identifier in it
/// (the answers to masqueraded connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSteering {
    pub ip: Ipv4Addr,
    /// First and last SNAT port.
    pub snat_ports: (u16, u16),
}

/// How the program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    Native,
    Generic,
}

impl AttachMode {
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        }
    }

    fn flags(self) -> XdpFlags {
        match self {
            AttachMode::Native => XdpFlags::DRV_MODE,
            AttachMode::Generic => XdpFlags::SKB_MODE,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SteerError {
    #[error("no interface named {0:?}")]
    NoInterface(String),
    #[error("loading the XDP steering program: {0}")]
    Load(libbpf_rs::Error),
    #[error(
        "{ifname} already has XDP program {name:?} (id {id}) attached; \
         xvsd replaces only its own ({PROGRAM_NAME}). Detach it first: \
         ip link set dev {ifname} xdp off"
    )]
    Foreign {
        ifname: String,
        id: u32,
        name: String,
    },
    #[error("attaching XDP to {ifname}: {source}")]
    Attach {
        ifname: String,
        source: libbpf_rs::Error,
    },
    #[error("updating map {map} of the program on {ifname}: {source}")]
    Map {
        ifname: String,
        map: &'static str,
        source: libbpf_rs::Error,
    },
}

/// Frames the program handled, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SteerCounters {
    pub redirected: u64,
    pub passed: u64,
    pub dropped: u64,
}

pub struct SteeringProgram {
    object: Object,
    ifname: String,
    ifindex: i32,
    mode: AttachMode,
    prog_id: u32,
}

/// The interface index of `ifname`.
pub fn ifindex(ifname: &str) -> Option<i32> {
    let name = CString::new(ifname).ok()?;
    // SAFETY: `name` is a NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    i32::try_from(idx).ok().filter(|&i| i > 0)
}

/// The id and name of the XDP program attached to `ifindex`, if any.
pub fn attached_program(ifindex: i32, probe: BorrowedFd<'_>) -> Option<(u32, String)> {
    let xdp = Xdp::new(probe);
    let id = xdp
        .query_id(ifindex, XdpFlags::NONE)
        .ok()
        .filter(|&id| id != 0)?;
    let name = libbpf_rs::query::ProgInfoIter::default()
        .find(|p| p.id == id)
        .map(|p| p.name.to_string_lossy().into_owned())
        .unwrap_or_default();
    Some((id, name))
}

impl SteeringProgram {
    /// Loads a fresh instance of the program, configures it for
    /// `steering`, replaces a stale xvs program on `ifname` if there is
    /// one, and attaches it.
    pub fn attach(ifname: &str, steering: Steering) -> Result<Self, SteerError> {
        let ifindex = ifindex(ifname).ok_or_else(|| SteerError::NoInterface(ifname.into()))?;
        let object = ObjectBuilder::default()
            .open_memory(OBJECT)
            .and_then(|o| o.load())
            .map_err(SteerError::Load)?;
        let mut program = SteeringProgram {
            object,
            ifname: ifname.to_string(),
            ifindex,
            mode: AttachMode::Native,
            prog_id: 0,
        };
        program.configure(steering)?;

        let (mode, prog_id) = {
            let prog = program.prog();
            if let Some((id, name)) = attached_program(ifindex, prog.as_fd()) {
                if name != PROGRAM_NAME {
                    return Err(SteerError::Foreign {
                        ifname: ifname.into(),
                        id,
                        name,
                    });
                }
                tracing::warn!(
                    ifname,
                    id,
                    "replacing a stale {PROGRAM_NAME} left by an earlier xvsd"
                );
                let xdp = Xdp::new(prog.as_fd());
                for mode in [AttachMode::Native, AttachMode::Generic] {
                    let _ = xdp.detach(ifindex, mode.flags());
                }
            }
            let xdp = Xdp::new(prog.as_fd());
            let mut result = Err(None);
            for mode in [AttachMode::Native, AttachMode::Generic] {
                match xdp.attach(ifindex, mode.flags() | XdpFlags::UPDATE_IF_NOEXIST) {
                    Ok(()) => {
                        result = Ok(mode);
                        break;
                    }
                    Err(e) => result = Err(Some(e)),
                }
            }
            let mode = result.map_err(|source| SteerError::Attach {
                ifname: ifname.into(),
                source: source
                    .unwrap_or_else(|| libbpf_rs::Error::from(io::Error::other("no mode tried"))),
            })?;
            (mode, xdp.query_id(ifindex, XdpFlags::NONE).unwrap_or(0))
        };
        program.mode = mode;
        program.prog_id = prog_id;
        Ok(program)
    }

    fn prog(&self) -> libbpf_rs::Program<'_> {
        self.object
            .progs()
            .find(|p| p.name() == PROGRAM_NAME)
            .expect("the object has the steering program")
    }

    fn map(&self, name: &'static str) -> libbpf_rs::Map<'_> {
        self.object
            .maps()
            .find(|m| m.name() == name)
            .expect("the object has all its maps")
    }

    fn update(&self, map: &'static str, key: &[u8], value: &[u8]) -> Result<(), SteerError> {
        self.map(map)
            .update(key, value, MapFlags::ANY)
            .map_err(|source| SteerError::Map {
                ifname: self.ifname.clone(),
                map,
                source,
            })
    }

    fn configure(&self, steering: Steering) -> Result<(), SteerError> {
        let none = (Ipv4Addr::UNSPECIFIED, 0u16);
        // An empty SNAT range: first above last.
        let no_node = NodeSteering {
            ip: Ipv4Addr::UNSPECIFIED,
            snat_ports: (1, 0),
        };
        let (mode, (ip, port), node) = match steering {
            Steering::All => (0u32, none, no_node),
            Steering::Owned { vxlan, node } => (1, vxlan.unwrap_or(none), node.unwrap_or(no_node)),
        };
        // struct steer_config of the C source: mode, vtep_ip and
        // vxlan_port in network order, padding, node_ip in network order,
        // the SNAT range in host order.
        let mut value = [0u8; 20];
        value[..4].copy_from_slice(&mode.to_ne_bytes());
        value[4..8].copy_from_slice(&ip.octets());
        value[8..10].copy_from_slice(&port.to_be_bytes());
        value[12..16].copy_from_slice(&node.ip.octets());
        value[16..18].copy_from_slice(&node.snat_ports.0.to_ne_bytes());
        value[18..20].copy_from_slice(&node.snat_ports.1.to_ne_bytes());
        self.update("config", &0u32.to_ne_bytes(), &value)
    }

    /// Steers TCP (`proto` 6) or UDP (17) to `port` of the node IP (on an
    /// [`Steering::Owned`] port with a [`NodeSteering`]).
    pub fn add_node_port(&self, proto: u8, port: u16) -> Result<(), SteerError> {
        self.update(
            "node_ports",
            &node_port_key(proto, port),
            &1u32.to_ne_bytes(),
        )
    }

    /// Stops steering a node port given to [`SteeringProgram::add_node_port`].
    pub fn del_node_port(&self, proto: u8, port: u16) -> Result<(), SteerError> {
        self.map("node_ports")
            .delete(&node_port_key(proto, port))
            .map_err(|source| SteerError::Map {
                ifname: self.ifname.clone(),
                map: "node_ports",
                source,
            })
    }

    /// Steers IPv4 packets to `prefix` (on an [`Steering::Owned`] port).
    pub fn own_prefix(&self, addr: Ipv4Addr, len: u8) -> Result<(), SteerError> {
        self.update("owned_v4", &lpm_key(addr, len), &1u32.to_ne_bytes())
    }

    /// Stops steering a prefix given to [`SteeringProgram::own_prefix`].
    pub fn disown_prefix(&self, addr: Ipv4Addr, len: u8) -> Result<(), SteerError> {
        self.map("owned_v4")
            .delete(&lpm_key(addr, len))
            .map_err(|source| SteerError::Map {
                ifname: self.ifname.clone(),
                map: "owned_v4",
                source,
            })
    }

    /// Sends what queue `queue` receives to the AF_XDP socket `fd`.
    pub fn register_socket(&self, queue: u32, fd: BorrowedFd<'_>) -> Result<(), SteerError> {
        use std::os::fd::AsRawFd;
        self.update("xsks", &queue.to_ne_bytes(), &fd.as_raw_fd().to_ne_bytes())
    }

    /// As [`SteeringProgram::register_socket`], for a descriptor another
    /// thread owns (a worker's socket, registered by the control thread
    /// while the worker keeps it open). A number that is not an AF_XDP
    /// socket is refused by the kernel.
    pub fn register_socket_fd(&self, queue: u32, fd: std::os::fd::RawFd) -> Result<(), SteerError> {
        self.update("xsks", &queue.to_ne_bytes(), &fd.to_ne_bytes())
    }

    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The kernel's id of this program instance.
    pub fn id(&self) -> u32 {
        self.prog_id
    }

    pub fn counters(&self) -> io::Result<SteerCounters> {
        let map = self.map("counters");
        let mut sums = [0u64; 3];
        for (i, sum) in sums.iter_mut().enumerate() {
            let key = u32::try_from(i).unwrap_or_default().to_ne_bytes();
            let per_cpu = map
                .lookup_percpu(&key, MapFlags::ANY)
                .map_err(io::Error::other)?
                .unwrap_or_default();
            *sum = per_cpu
                .iter()
                .filter_map(|v| v.get(..8).and_then(|b| b.try_into().ok()))
                .map(u64::from_ne_bytes)
                .sum();
        }
        Ok(SteerCounters {
            redirected: sums[0],
            passed: sums[1],
            dropped: sums[2],
        })
    }
}

impl Drop for SteeringProgram {
    fn drop(&mut self) {
        let prog = self.prog();
        let xdp = Xdp::new(prog.as_fd());
        // Only if the interface still runs this instance: never detach a
        // program someone attached after us.
        if xdp.query_id(self.ifindex, XdpFlags::NONE).ok() == Some(self.prog_id) {
            let _ = xdp.detach(self.ifindex, self.mode.flags());
        }
    }
}

/// struct node_port_key of the C source.
fn node_port_key(proto: u8, port: u16) -> [u8; 4] {
    let [hi, lo] = port.to_be_bytes();
    [proto, 0, hi, lo]
}

fn lpm_key(addr: Ipv4Addr, len: u8) -> [u8; 8] {
    let mut key = [0u8; 8];
    key[..4].copy_from_slice(&u32::from(len.min(32)).to_ne_bytes());
    key[4..].copy_from_slice(&addr.octets());
    key
}
