//! The built-in IP allocator: host-local's design and on-disk layout.
//!
//! One directory per network (`/var/lib/cni/networks/<name>` by default)
//! holds exactly what the reference host-local plugin keeps, so an operator
//! who knows host-local can read it, and both can even share a directory:
//!
//! ```text
//! 10.244.1.5          lease: "<container id>\r\n<ifname>" (host-local's bytes)
//! last_reserved_ip.0  the address handed out last (round-robin cursor)
//! lock                flock(2)ed exclusively around every operation
//! ```
//!
//! **Allocation** walks the range round-robin from the address after
//! `last_reserved_ip.0`, skipping leased and reserved addresses (the `ipam`
//! gateway; the network address and, for IPv4, the broadcast address are
//! never in the range). Round-robin rather than lowest-free keeps a released
//! address out of use as long as possible, so a late packet for a deleted pod
//! does not reach its successor. Allocation is idempotent: an attachment that
//! already holds a lease gets it back, so a retried ADD does not leak. Release
//! and GC remove files; releasing what is not held succeeds.
//!
//! **Requested addresses** ([`HostLocal::allocate_requested`]) are
//! host-local's `ips` capability (`runtimeConfig.ips`, `args.cni.ips`): exactly
//! that address, if the pool may hand it out and no other attachment holds
//! it, else an error naming the address and, for a taken one, its holder
//! (code 7: a configuration that cannot be served as asked, not a full pool).
//! Like host-local it moves the round-robin cursor to the address.
//!
//! **Concurrency contract.** Every operation (allocate, release, gc, find,
//! leases) runs entirely under an exclusive `flock` on `lock`, taken with a
//! bounded wait. flock belongs to the open file description, so threads of one
//! process exclude each other exactly as processes do; host-local takes the
//! same lock on the same file. Readers that do not lock (an operator's `ls`)
//! see a lease either absent or complete, never half-written. Waiting longer
//! than the lock timeout (10 s by default) is [`IpamError::Busy`], CNI code 11:
//! a transient condition worth a retry.
//!
//! **Crash safety.** A lease is written to `.tmp-<ip>.<pid>`, fsynced and
//! renamed into place; a crash before the rename leaves only a temporary file,
//! which is not a lease and is deleted by the next operation. A crash after
//! the rename, anywhere in the rest of ADD (veth, netns, xvsd), leaves a
//! lease owned by that attachment: the runtime's DEL for it (which follows a
//! failed ADD) releases it, a retried ADD gets the same address back, and if
//! the runtime forgets the container, GC frees every lease not in
//! `cni.dev/valid-attachments`. A lease file whose content cannot be read as
//! an owner still occupies its address and is removed by GC.
//!
//! **Exhaustion** is [`IpamError::Exhausted`], plugin code 101, not 11: a full
//! pool does not clear up by itself (only the runtime's own DELs drain it), so
//! telling the runtime to retry would hide a capacity problem an operator
//! must act on (delete pods, widen the range, or run GC for leaked leases).

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use rustix::fs::FlockOperation;
use rustix::io::Errno;

use crate::spec::Attachment;

/// host-local's default parent directory; the network name is appended.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// How long an operation waits for the directory lock before giving up.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// The lock file, host-local's name.
pub const LOCK_FILE: &str = "lock";

/// The round-robin cursor of our single range (host-local's range set 0).
pub const LAST_RESERVED_FILE: &str = "last_reserved_ip.0";

/// Temporary files of interrupted writes start with this.
const TMP_PREFIX: &str = ".tmp-";

/// A configured pool is wrong; `field` is the `ipam` key at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The subnet's address is not its network address.
    #[error("{subnet} has host bits set; the network is {network}")]
    HostBits {
        /// As configured.
        subnet: IpNet,
        /// What was probably meant.
        network: IpNet,
    },
    /// Fewer than two host addresses.
    #[error("{subnet} is too small to allocate from")]
    TooSmall {
        /// As configured.
        subnet: IpNet,
    },
    /// An address outside the subnet (or of the other family).
    #[error("{ip} is not in {subnet}")]
    OutsideSubnet {
        /// `rangeStart`, `rangeEnd` or `gateway`.
        field: &'static str,
        /// The address.
        ip: IpAddr,
        /// The subnet.
        subnet: IpNet,
    },
    /// The network or broadcast address as a range bound.
    #[error("{ip} is the {what} address of {subnet}")]
    NotAHost {
        /// `rangeStart` or `rangeEnd`.
        field: &'static str,
        /// The address.
        ip: IpAddr,
        /// "network" or "broadcast".
        what: &'static str,
        /// The subnet.
        subnet: IpNet,
    },
    /// `rangeStart` after `rangeEnd`.
    #[error("{start} is after rangeEnd {end}")]
    StartAfterEnd {
        /// rangeStart.
        start: IpAddr,
        /// rangeEnd.
        end: IpAddr,
    },
}

impl PoolError {
    /// The `ipam` key this error is about.
    pub fn field(&self) -> &'static str {
        match self {
            PoolError::HostBits { .. } | PoolError::TooSmall { .. } => "subnet",
            PoolError::OutsideSubnet { field, .. } | PoolError::NotAHost { field, .. } => field,
            PoolError::StartAfterEnd { .. } => "rangeStart",
        }
    }
}

/// The addresses the allocator may hand out: `[start, end]` of one subnet,
/// minus reserved addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    subnet: IpNet,
    start: IpAddr,
    end: IpAddr,
    reserved: Vec<IpAddr>,
}

impl Pool {
    /// A pool over `subnet`; the range defaults to every host address (all
    /// but the network address, and for IPv4 the broadcast address).
    pub fn new(
        subnet: IpNet,
        range_start: Option<IpAddr>,
        range_end: Option<IpAddr>,
    ) -> Result<Pool, PoolError> {
        if subnet.addr() != subnet.network() {
            return Err(PoolError::HostBits {
                subnet,
                network: subnet.trunc(),
            });
        }
        if subnet.prefix_len() + 2 > subnet.max_prefix_len() {
            return Err(PoolError::TooSmall { subnet });
        }
        let v6 = subnet.addr().is_ipv6();
        let first_host = from_u128(to_u128(subnet.network()) + 1, v6);
        let last_host = match subnet {
            IpNet::V4(net) => from_u128(to_u128(net.broadcast().into()) - 1, false),
            IpNet::V6(net) => net.broadcast().into(),
        };
        let pool = Pool {
            subnet,
            start: range_start.unwrap_or(first_host),
            end: range_end.unwrap_or(last_host),
            reserved: Vec::new(),
        };
        pool.check_host("rangeStart", pool.start)?;
        pool.check_host("rangeEnd", pool.end)?;
        if to_u128(pool.start) > to_u128(pool.end) {
            return Err(PoolError::StartAfterEnd {
                start: pool.start,
                end: pool.end,
            });
        }
        Ok(pool)
    }

    /// Never hands out `ip` (the `ipam` gateway); `field` names it in errors.
    pub fn reserve(mut self, field: &'static str, ip: IpAddr) -> Result<Pool, PoolError> {
        if !self.subnet.contains(&ip) {
            return Err(PoolError::OutsideSubnet {
                field,
                ip,
                subnet: self.subnet,
            });
        }
        if !self.reserved.contains(&ip) {
            self.reserved.push(ip);
        }
        Ok(self)
    }

    fn check_host(&self, field: &'static str, ip: IpAddr) -> Result<(), PoolError> {
        let subnet = self.subnet;
        if !subnet.contains(&ip) {
            return Err(PoolError::OutsideSubnet { field, ip, subnet });
        }
        let what = if ip == subnet.network() {
            "network"
        } else if subnet.addr().is_ipv4() && ip == subnet.broadcast() {
            "broadcast"
        } else {
            return Ok(());
        };
        Err(PoolError::NotAHost {
            field,
            ip,
            what,
            subnet,
        })
    }

    /// The subnet; leases carry its prefix length.
    pub fn subnet(&self) -> IpNet {
        self.subnet
    }

    /// First address of the range.
    pub fn range_start(&self) -> IpAddr {
        self.start
    }

    /// Last address of the range.
    pub fn range_end(&self) -> IpAddr {
        self.end
    }

    /// Addresses never handed out.
    pub fn reserved(&self) -> &[IpAddr] {
        &self.reserved
    }

    /// Whether the allocator may hand out `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.in_range(ip) && !self.reserved.contains(&ip)
    }

    /// How many addresses the pool can hand out.
    pub fn capacity(&self) -> u128 {
        let reserved_in_range = self
            .reserved
            .iter()
            .filter(|&&ip| self.in_range(ip))
            .count();
        self.range_len() - reserved_in_range as u128
    }

    fn in_range(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.start.is_ipv4()
            && (to_u128(self.start)..=to_u128(self.end)).contains(&to_u128(ip))
    }

    fn range_len(&self) -> u128 {
        to_u128(self.end) - to_u128(self.start) + 1
    }

    /// The address after `ip` in the range, wrapping at its end.
    fn next(&self, ip: u128) -> u128 {
        if ip >= to_u128(self.end) {
            to_u128(self.start)
        } else {
            ip + 1
        }
    }

    fn describe(&self) -> String {
        format!("{}-{} of {}", self.start, self.end, self.subnet)
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => a.into(),
    }
}

/// Only called with values derived from a pool's own bounds, which are
/// addresses of the pool's family.
fn from_u128(v: u128, v6: bool) -> IpAddr {
    if v6 {
        Ipv6Addr::from(v).into()
    } else {
        Ipv4Addr::from(u32::try_from(v).unwrap_or(u32::MAX)).into()
    }
}

/// One lease file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The leased address.
    pub ip: IpAddr,
    /// The owner's container id (`""` if the file could not be read as one).
    pub container_id: String,
    /// The owner's interface; `None` in leases of host-local before 0.7,
    /// which match every interface of the container, as there.
    pub ifname: Option<String>,
}

impl Lease {
    /// Whether `attachment` owns this lease.
    pub fn is_held_by(&self, attachment: &Attachment) -> bool {
        self.container_id == attachment.container_id
            && self
                .ifname
                .as_deref()
                .is_none_or(|ifname| ifname == attachment.ifname)
    }

    /// The lease's address with the pool's prefix length.
    pub fn address(&self, pool: &Pool) -> IpNet {
        IpNet::new(self.ip, pool.subnet().prefix_len()).unwrap_or_else(|_| IpNet::from(self.ip))
    }

    fn parse(ip: IpAddr, bytes: &[u8]) -> Lease {
        let text = String::from_utf8_lossy(bytes);
        let (id, ifname) = match text.split_once('\n') {
            Some((id, ifname)) => (id.trim(), Some(ifname.trim())),
            None => (text.trim(), None),
        };
        Lease {
            ip,
            container_id: id.to_owned(),
            ifname: ifname.filter(|i| !i.is_empty()).map(str::to_owned),
        }
    }
}

/// What can go wrong in the lease directory.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// No free address (plugin code 101).
    #[error("no free IP address in {range} ({held} leases in {})", .dir.display())]
    Exhausted {
        /// The range, for the message.
        range: String,
        /// The lease directory.
        dir: PathBuf,
        /// Leases held in it.
        held: usize,
    },
    /// The directory lock was not obtained in time (code 11).
    #[error("the IPAM lease directory {} stayed locked for {waited:?}", .dir.display())]
    Busy {
        /// The lease directory.
        dir: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// A requested address the pool may not hand out (code 7).
    #[error("requested IP address {ip} is not in the IPAM range {range} (or is reserved)")]
    RequestedOutOfRange {
        /// The address asked for.
        ip: IpAddr,
        /// The range, for the message.
        range: String,
    },
    /// A requested address another attachment holds (code 7).
    #[error("requested IP address {ip} is in use by {holder} (lease {})", .dir.join(ip.to_string()).display())]
    RequestedInUse {
        /// The address asked for.
        ip: IpAddr,
        /// Its holder, `<container id>/<ifname>`.
        holder: String,
        /// The lease directory.
        dir: PathBuf,
    },
    /// The attachment already holds another address than the one requested
    /// (an ADD repeated with another request, without DEL; code 7).
    #[error("requested IP address {ip}, but this attachment already holds {held}")]
    RequestedWhileHolding {
        /// The address asked for.
        ip: IpAddr,
        /// The address the attachment holds.
        held: IpAddr,
    },
    /// A file operation failed (code 5).
    #[error("{context} {}: {source}", .path.display())]
    Io {
        /// What we were doing.
        context: &'static str,
        /// On which file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl IpamError {
    /// What an operator can do about it.
    pub fn hint(&self) -> String {
        match self {
            IpamError::Exhausted { dir, .. } => format!(
                "delete pods, widen the pod CIDR or ipam range, or let the runtime run CNI GC \
                 to free leases of containers that no longer exist; each file in {} names the \
                 container holding that address",
                dir.display()
            ),
            IpamError::Busy { .. } => {
                "another xvs-cni or host-local holds the lease lock; retry".to_owned()
            }
            IpamError::Io { .. } => {
                "check that the directory exists, is writable by root and its disk is not full"
                    .to_owned()
            }
            IpamError::RequestedOutOfRange { .. } => {
                "ask for an address inside the IPAM range (runtimeConfig.ips / args.cni.ips), \
                 or none to get the next free one"
                    .to_owned()
            }
            IpamError::RequestedInUse { .. } => {
                "ask for another address, or DEL the attachment holding this one first".to_owned()
            }
            IpamError::RequestedWhileHolding { .. } => {
                "run DEL for this attachment first; a second ADD without DEL is not allowed"
                    .to_owned()
            }
        }
    }
}

fn io_err(context: &'static str, path: &Path) -> impl FnOnce(io::Error) -> IpamError {
    let path = path.to_owned();
    move |source| IpamError::Io {
        context,
        path,
        source,
    }
}

/// The allocator over one lease directory.
#[derive(Clone, Debug)]
pub struct HostLocal {
    dir: PathBuf,
    pool: Pool,
    lock_timeout: Duration,
}

/// Held while an operation runs; closing the file drops the flock.
struct DirLock {
    _file: File,
}

impl HostLocal {
    /// An allocator for `pool` keeping its leases in `dir` (created on use).
    pub fn new(dir: impl Into<PathBuf>, pool: Pool) -> HostLocal {
        HostLocal {
            dir: dir.into(),
            pool,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }

    /// Changes how long operations wait for the lock.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> HostLocal {
        self.lock_timeout = timeout;
        self
    }

    /// The lease directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Leases an address to `attachment`, or returns the one it holds.
    pub fn allocate(&self, attachment: &Attachment) -> Result<Lease, IpamError> {
        let _lock = self.lock()?;
        let leases = self.scan()?;
        if let Some(held) = leases
            .iter()
            .find(|l| l.is_held_by(attachment) && self.pool.contains(l.ip))
        {
            return Ok(held.clone());
        }

        let pool = &self.pool;
        let taken: BTreeSet<u128> = leases
            .iter()
            .map(|l| l.ip)
            .chain(pool.reserved.iter().copied())
            .filter(|&ip| pool.in_range(ip))
            .map(to_u128)
            .collect();
        if taken.len() as u128 >= pool.range_len() {
            return Err(IpamError::Exhausted {
                range: pool.describe(),
                dir: self.dir.clone(),
                held: leases.len(),
            });
        }
        let mut candidate = match self.last_reserved() {
            Some(last) if pool.in_range(last) => pool.next(to_u128(last)),
            _ => to_u128(pool.start),
        };
        // Terminates: fewer than range_len addresses are taken.
        while taken.contains(&candidate) {
            candidate = pool.next(candidate);
        }
        self.write_lease(attachment, from_u128(candidate, pool.start.is_ipv6()))
    }

    /// Leases exactly `ip` to `attachment` (the `ips` capability): succeeds
    /// if the pool may hand it out and it is free or already this
    /// attachment's; see the module doc for the errors.
    pub fn allocate_requested(
        &self,
        attachment: &Attachment,
        ip: IpAddr,
    ) -> Result<Lease, IpamError> {
        if !self.pool.contains(ip) {
            return Err(IpamError::RequestedOutOfRange {
                ip,
                range: self.pool.describe(),
            });
        }
        let _lock = self.lock()?;
        let leases = self.scan()?;
        if let Some(lease) = leases.iter().find(|l| l.ip == ip) {
            if lease.is_held_by(attachment) {
                return Ok(lease.clone());
            }
            return Err(IpamError::RequestedInUse {
                ip,
                holder: match &lease.ifname {
                    Some(ifname) => format!("{}/{ifname}", lease.container_id),
                    None => lease.container_id.clone(),
                },
                dir: self.dir.clone(),
            });
        }
        if let Some(held) = leases
            .iter()
            .find(|l| l.is_held_by(attachment) && self.pool.contains(l.ip))
        {
            return Err(IpamError::RequestedWhileHolding { ip, held: held.ip });
        }
        self.write_lease(attachment, ip)
    }

    /// Writes the lease of `ip` and moves the cursor to it. Lock held.
    fn write_lease(&self, attachment: &Attachment, ip: IpAddr) -> Result<Lease, IpamError> {
        let name = ip.to_string();
        let owner = format!("{}\r\n{}", attachment.container_id, attachment.ifname);
        write_atomic(&self.dir, &name, owner.as_bytes())
            .map_err(io_err("writing the lease", &self.dir.join(&name)))?;
        // The cursor only spreads allocations; the lease is what counts, so a
        // failure here must not fail the ADD.
        let _ = write_atomic(&self.dir, LAST_RESERVED_FILE, name.as_bytes());
        Ok(Lease {
            ip,
            container_id: attachment.container_id.clone(),
            ifname: Some(attachment.ifname.clone()),
        })
    }

    /// Frees every lease `attachment` holds; holding none is success.
    pub fn release(&self, attachment: &Attachment) -> Result<Vec<IpAddr>, IpamError> {
        let _lock = self.lock()?;
        let mut freed = Vec::new();
        for lease in self.scan()? {
            if lease.is_held_by(attachment) {
                self.remove(&lease)?;
                freed.push(lease.ip);
            }
        }
        Ok(freed)
    }

    /// Frees every lease not held by one of `valid`; returns what it freed.
    pub fn gc(&self, valid: &[Attachment]) -> Result<Vec<IpAddr>, IpamError> {
        let _lock = self.lock()?;
        let mut freed = Vec::new();
        for lease in self.scan()? {
            if !valid.iter().any(|a| lease.is_held_by(a)) {
                self.remove(&lease)?;
                freed.push(lease.ip);
            }
        }
        Ok(freed)
    }

    /// The lease `attachment` holds, if any (for CHECK).
    pub fn find(&self, attachment: &Attachment) -> Result<Option<Lease>, IpamError> {
        let _lock = self.lock()?;
        Ok(self.scan()?.into_iter().find(|l| l.is_held_by(attachment)))
    }

    /// All leases, by address.
    pub fn leases(&self) -> Result<Vec<Lease>, IpamError> {
        let _lock = self.lock()?;
        let mut leases = self.scan()?;
        leases.sort_by_key(|l| (l.ip.is_ipv6(), to_u128(l.ip)));
        Ok(leases)
    }

    fn lock(&self) -> Result<DirLock, IpamError> {
        fs::create_dir_all(&self.dir).map_err(io_err("creating the lease directory", &self.dir))?;
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(io_err("opening the lock file", &path))?;
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(DirLock { _file: file }),
                Err(Errno::WOULDBLOCK) | Err(Errno::INTR) => {}
                Err(e) => return Err(io_err("locking", &path)(e.into())),
            }
            let waited = started.elapsed();
            if waited >= self.lock_timeout {
                return Err(IpamError::Busy {
                    dir: self.dir.clone(),
                    waited,
                });
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Every lease file; deletes leftovers of interrupted writes. Lock held.
    fn scan(&self) -> Result<Vec<Lease>, IpamError> {
        let entries =
            fs::read_dir(&self.dir).map_err(io_err("reading the lease directory", &self.dir))?;
        let mut leases = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("reading the lease directory", &self.dir))?;
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TMP_PREFIX) {
                remove_if_present(&path).map_err(io_err("removing", &path))?;
                continue;
            }
            let Ok(ip) = name.parse::<IpAddr>() else {
                continue;
            };
            match fs::read(&path) {
                Ok(bytes) => leases.push(Lease::parse(ip, &bytes)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if e.kind() == io::ErrorKind::IsADirectory => {}
                Err(e) => return Err(io_err("reading the lease", &path)(e)),
            }
        }
        Ok(leases)
    }

    fn remove(&self, lease: &Lease) -> Result<(), IpamError> {
        let path = self.dir.join(lease.ip.to_string());
        remove_if_present(&path).map_err(io_err("removing the lease", &path))
    }

    fn last_reserved(&self) -> Option<IpAddr> {
        fs::read_to_string(self.dir.join(LAST_RESERVED_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Writes `dir/name` so that it is either absent or complete: temporary
/// file, fsync, rename. Caller holds the directory lock, so the pid makes the
/// temporary name unique.
fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{TMP_PREFIX}{name}.{}", std::process::id()));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_data()?;
        fs::rename(&tmp, dir.join(name))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::sync::Arc;

    use proptest::prelude::*;
    use tempfile::TempDir;

    use super::*;
    use crate::error::CniError;

    fn pool(subnet: &str) -> Pool {
        Pool::new(subnet.parse().unwrap(), None, None).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn att(id: &str) -> Attachment {
        Attachment::new(id, "eth0")
    }

    fn alloc(dir: &TempDir, pool: Pool) -> HostLocal {
        HostLocal::new(dir.path().join("net"), pool)
    }

    #[test]
    fn pool_defaults_exclude_network_and_broadcast() {
        let p = pool("10.0.0.0/24");
        assert_eq!(
            (p.range_start(), p.range_end()),
            (ip("10.0.0.1"), ip("10.0.0.254"))
        );
        assert_eq!(p.capacity(), 254);
        let p = pool("fd00::/120");
        assert_eq!(
            (p.range_start(), p.range_end()),
            (ip("fd00::1"), ip("fd00::ff"))
        );
        let p = pool("10.0.0.0/30")
            .reserve("gateway", ip("10.0.0.1"))
            .unwrap();
        assert_eq!(p.capacity(), 1);
        assert!(!p.contains(ip("10.0.0.1")) && p.contains(ip("10.0.0.2")));
    }

    #[test]
    fn pool_validation() {
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        let err = |s: &str, a: Option<&str>, b: Option<&str>| {
            Pool::new(net(s), a.map(ip), b.map(ip)).unwrap_err()
        };
        assert_eq!(err("10.0.0.1/24", None, None).field(), "subnet");
        assert_eq!(err("10.0.0.0/31", None, None).field(), "subnet");
        assert_eq!(err("fd00::/127", None, None).field(), "subnet");
        assert_eq!(
            err("10.0.0.0/24", Some("10.0.0.0"), None).field(),
            "rangeStart"
        );
        assert_eq!(
            err("10.0.0.0/24", None, Some("10.0.0.255")).field(),
            "rangeEnd"
        );
        assert_eq!(
            err("10.0.0.0/24", Some("10.0.1.1"), None).field(),
            "rangeStart"
        );
        assert_eq!(
            err("10.0.0.0/24", Some("fd00::1"), None).field(),
            "rangeStart"
        );
        assert_eq!(
            err("10.0.0.0/24", Some("10.0.0.9"), Some("10.0.0.8")).to_string(),
            "10.0.0.9 is after rangeEnd 10.0.0.8"
        );
        let e = pool("10.0.0.0/24")
            .reserve("gateway", ip("10.9.0.1"))
            .unwrap_err();
        assert_eq!(
            (e.field(), e.to_string().as_str()),
            ("gateway", "10.9.0.1 is not in 10.0.0.0/24")
        );
        Pool::new(net("10.0.0.0/30"), None, None).unwrap();
    }

    #[test]
    fn round_robin_from_the_last_reserved_address() {
        let dir = TempDir::new().unwrap();
        let a = alloc(&dir, pool("10.0.0.0/29")); // .1 - .6
        let got: Vec<IpAddr> = ["a", "b", "c"]
            .iter()
            .map(|id| a.allocate(&att(id)).unwrap().ip)
            .collect();
        assert_eq!(got, [ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")]);
        a.release(&att("a")).unwrap();
        // .1 is free, but the cursor moves on.
        assert_eq!(a.allocate(&att("d")).unwrap().ip, ip("10.0.0.4"));
        assert_eq!(a.allocate(&att("e")).unwrap().ip, ip("10.0.0.5"));
        assert_eq!(a.allocate(&att("f")).unwrap().ip, ip("10.0.0.6"));
        // Wraps around to the one free address.
        assert_eq!(a.allocate(&att("g")).unwrap().ip, ip("10.0.0.1"));
    }

    #[test]
    fn files_are_host_locals() {
        let dir = TempDir::new().unwrap();
        let a = alloc(&dir, pool("10.0.0.0/24"));
        a.allocate(&Attachment::new("c0ffee", "net1")).unwrap();
        let read = |n: &str| fs::read_to_string(a.dir().join(n)).unwrap();
        assert_eq!(read("10.0.0.1"), "c0ffee\r\nnet1");
        assert_eq!(read(LAST_RESERVED_FILE), "10.0.0.1");
        assert!(a.dir().join(LOCK_FILE).exists());
        let names: HashSet<String> = fs::read_dir(a.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            names,
            HashSet::from(["10.0.0.1", LAST_RESERVED_FILE, LOCK_FILE].map(String::from))
        );
    }

    #[test]
    fn gateway_network_and_broadcast_are_never_handed_out() {
        let dir = TempDir::new().unwrap();
        let p = pool("10.0.0.0/29")
            .reserve("gateway", ip("10.0.0.1"))
            .unwrap();
        let a = alloc(&dir, p);
        let mut got: Vec<IpAddr> = (0..5)
            .map(|i| a.allocate(&att(&format!("c{i}"))).unwrap().ip)
            .collect();
        got.sort();
        let want: Vec<IpAddr> = (2..=6).map(|i| ip(&format!("10.0.0.{i}"))).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn exhaustion_is_a_clear_error_with_code_101() {
        let dir = TempDir::new().unwrap();
        let a = alloc(&dir, pool("10.0.0.0/30"));
        a.allocate(&att("a")).unwrap();
        a.allocate(&att("b")).unwrap();
        let err = a.allocate(&att("c")).unwrap_err();
        assert!(
            matches!(err, IpamError::Exhausted { held: 2, .. }),
            "{err:?}"
        );
        let err = CniError::from(err);
        assert_eq!(err.code(), 101);
        assert!(
            err.to_string()
                .starts_with("no free IP address in 10.0.0.1-10.0.0.2 of 10.0.0.0/30"),
            "{err}"
        );
        assert!(err.details().contains("GC"), "{}", err.details());
        // The holder still gets its address back.
        assert_eq!(a.allocate(&att("a")).unwrap().ip, ip("10.0.0.1"));
    }

    #[test]
    fn allocate_is_idempotent_per_attachment() {
        let dir = TempDir::new().unwrap();
        let a = alloc(&dir, pool("10.0.0.0/24"));
        let first = a.allocate(&att("a")).unwrap();
        assert_eq!(a.allocate(&att("a")).unwrap(), first);
        // Another interface of the same container is another attachment.
        let other = a.allocate(&Attachment::new("a", "net1")).unwrap();
        assert_ne!(other.ip, first.ip);
        assert_eq!(a.leases().unwrap().len(), 2);
        assert_eq!(first.address(a.pool()).to_string(), "10.0.0.1/24");
    }

    #[test]
    fn release_twice_and_release_of_nothing_succeed() {
        let dir = TempDir::new().unwrap();
        let a = alloc(&dir, pool("10.0.0.0/24"));
        let lease = a.allocate(&att("a")).unwrap();
        assert_eq!(a.release(&att("a")).unwrap(), vec![lease.ip]);
        assert_eq!(a.release(&att("a")).unwrap(), Vec::<IpAddr>::new());
        assert_eq!(
            a.release(&att("never-added")).unwrap(),
            Vec::<IpAddr>::new()
        );
        // Even before the directory exists.
        let fresh = HostLocal::new(dir.path().join("new"), pool("10.0.0.0/24"));
        assert_eq!(fresh.release(&att("x")).unwrap(), Vec::<IpAddr>::new());
    }

    #[test]
    fn gc_keeps_exactly_the_valid_attachments() {
        let dir = TempDir::new().unwrap();
        let a = alloc(&dir, pool("10.0.0.0/24"));
        let all: Vec<Attachment> = (0..6)
            .map(|i| Attachment::new(format!("c{}", i / 2), format!("eth{}", i % 2)))
            .collect();
        let leases: HashMap<Attachment, IpAddr> = all
            .iter()
            .map(|x| (x.clone(), a.allocate(x).unwrap().ip))
            .collect();
        // An unreadable lease (an old writer's crash) is owned by nobody.
        fs::write(a.dir().join("10.0.0.200"), b"").unwrap();
        let valid = vec![
            all[0].clone(),
            all[3].clone(),
            Attachment::new("gone", "eth0"),
        ];
        let mut freed = a.gc(&valid).unwrap();
        freed.sort();
        let mut want: Vec<IpAddr> = all
            .iter()
            .filter(|x| !valid.contains(x))
            .map(|x| leases[x])
            .chain([ip("10.0.0.200")])
            .collect();
        want.sort();
        assert_eq!(freed, want);
        let kept: HashSet<IpAddr> = a.leases().unwrap().iter().map(|l| l.ip).collect();
        assert_eq!(kept, HashSet::from([leases[&all[0]], leases[&all[3]]]));
        assert_eq!(a.gc(&valid).unwrap(), Vec::<IpAddr>::new());
    }

    #[test]
    fn a_lease_survives_a_crash_and_the_next_del_frees_it() {
        let dir = TempDir::new().unwrap();
        let lease = {
            let a = alloc(&dir, pool("10.0.0.0/24"));
            a.allocate(&att("crashed")).unwrap()
            // ... and the process dies before the rest of ADD.
        };
        let next = alloc(&dir, pool("10.0.0.0/24"));
        assert_eq!(next.find(&att("crashed")).unwrap(), Some(lease.clone()));
        // A retried ADD gets the same address; DEL frees it.
        assert_eq!(next.allocate(&att("crashed")).unwrap(), lease);
        assert_eq!(next.release(&att("crashed")).unwrap(), vec![lease.ip]);
        assert_eq!(next.find(&att("crashed")).unwrap(), None);
    }

    #[test]
    fn an_interrupted_write_is_not_a_lease() {
        let dir = TempDir::new().unwrap();
        let a = alloc(&dir, pool("10.0.0.0/30"));
        fs::create_dir_all(a.dir()).unwrap();
        let tmp = a.dir().join(".tmp-10.0.0.1.4242");
        fs::write(&tmp, b"half").unwrap();
        assert_eq!(a.allocate(&att("a")).unwrap().ip, ip("10.0.0.1"));
        assert!(!tmp.exists());
        assert_eq!(a.leases().unwrap().len(), 1);
    }

    #[test]
    fn legacy_leases_match_any_interface_of_their_container() {
        let dir = TempDir::new().unwrap();
        let a = alloc(&dir, pool("10.0.0.0/24"));
        fs::create_dir_all(a.dir()).unwrap();
        fs::write(a.dir().join("10.0.0.7"), b"oldcontainer").unwrap();
        // Also written with "\n" by hand: still read.
        fs::write(a.dir().join("10.0.0.8"), b"hand\neth0\n").unwrap();
        assert_eq!(a.find(&att("hand")).unwrap().unwrap().ip, ip("10.0.0.8"));
        assert_eq!(
            a.release(&Attachment::new("oldcontainer", "net3")).unwrap(),
            vec![ip("10.0.0.7")]
        );
    }

    #[test]
    fn a_held_lock_is_busy_code_11() {
        let dir = TempDir::new().unwrap();
        let a = alloc(&dir, pool("10.0.0.0/24")).with_lock_timeout(Duration::from_millis(50));
        fs::create_dir_all(a.dir()).unwrap();
        let holder = File::create(a.dir().join(LOCK_FILE)).unwrap();
        rustix::fs::flock(&holder, FlockOperation::LockExclusive).unwrap();
        let err = a.allocate(&att("a")).unwrap_err();
        assert!(matches!(err, IpamError::Busy { .. }), "{err:?}");
        assert_eq!(CniError::from(err).code(), 11);
        drop(holder);
        a.allocate(&att("a")).unwrap();
    }

    #[test]
    fn twenty_threads_get_twenty_distinct_addresses() {
        let dir = TempDir::new().unwrap();
        let a = Arc::new(alloc(&dir, pool("10.0.0.0/24")));
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let a = Arc::clone(&a);
                thread::spawn(move || a.allocate(&att(&format!("pod{i}"))).unwrap().ip)
            })
            .collect();
        let ips: HashSet<IpAddr> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(ips.len(), 20);
        assert_eq!(a.leases().unwrap().len(), 20);
    }

    #[test]
    fn a_requested_address_is_leased_exactly() {
        let dir = TempDir::new().unwrap();
        let a = alloc(&dir, pool("10.0.0.0/24"));
        let lease = a.allocate_requested(&att("a"), ip("10.0.0.77")).unwrap();
        assert_eq!(lease.ip, ip("10.0.0.77"));
        let read = |n: &str| fs::read_to_string(a.dir().join(n)).unwrap();
        assert_eq!(read("10.0.0.77"), "a\r\neth0");
        // host-local moves its cursor too: the next free one follows.
        assert_eq!(read(LAST_RESERVED_FILE), "10.0.0.77");
        assert_eq!(a.allocate(&att("b")).unwrap().ip, ip("10.0.0.78"));
        // Asking again for what one holds is idempotent.
        assert_eq!(
            a.allocate_requested(&att("a"), ip("10.0.0.77")).unwrap(),
            lease
        );
        assert_eq!(a.allocate(&att("a")).unwrap(), lease);
        // A released address can be asked for again, by someone else.
        a.release(&att("a")).unwrap();
        assert_eq!(
            a.allocate_requested(&att("c"), ip("10.0.0.77")).unwrap().ip,
            ip("10.0.0.77")
        );
    }

    #[test]
    fn requested_addresses_taken_or_outside_the_pool_are_code_7() {
        let dir = TempDir::new().unwrap();
        let p = Pool::new(
            "10.0.0.0/24".parse().unwrap(),
            Some(ip("10.0.0.10")),
            Some(ip("10.0.0.100")),
        )
        .unwrap()
        .reserve("gateway", ip("10.0.0.50"))
        .unwrap();
        let a = alloc(&dir, p);
        a.allocate_requested(&Attachment::new("holder", "net1"), ip("10.0.0.77"))
            .unwrap();

        let err = a
            .allocate_requested(&att("b"), ip("10.0.0.77"))
            .unwrap_err();
        assert!(matches!(err, IpamError::RequestedInUse { .. }), "{err:?}");
        let err = CniError::from(err);
        assert_eq!(err.code(), 7);
        let msg = err.to_string();
        assert!(
            msg.starts_with("requested IP address 10.0.0.77 is in use by holder/net1"),
            "{msg}"
        );
        // Another interface of the holder's container is another attachment.
        assert!(a
            .allocate_requested(&Attachment::new("holder", "eth0"), ip("10.0.0.77"))
            .is_err());

        for outside in [
            "10.0.0.9",
            "10.0.0.101",
            "10.0.0.50",
            "10.0.0.255",
            "10.0.1.20",
            "fd00::5",
        ] {
            let err = a.allocate_requested(&att("b"), ip(outside)).unwrap_err();
            assert!(
                matches!(err, IpamError::RequestedOutOfRange { .. }),
                "{outside}: {err:?}"
            );
            let err = CniError::from(err);
            assert_eq!(err.code(), 7, "{outside}");
            assert!(err.to_string().contains(outside), "{err}");
            assert!(err.to_string().contains("10.0.0.10-10.0.0.100"), "{err}");
        }

        // Holding one address and asking for another: DEL first.
        let err = a
            .allocate_requested(&Attachment::new("holder", "net1"), ip("10.0.0.78"))
            .unwrap_err();
        assert!(
            matches!(err, IpamError::RequestedWhileHolding { .. }),
            "{err:?}"
        );
        assert_eq!(CniError::from(err).code(), 7);
        // Nothing was written by the failures.
        let held: Vec<IpAddr> = a.leases().unwrap().iter().map(|l| l.ip).collect();
        assert_eq!(held, [ip("10.0.0.77")]);
    }

    #[test]
    fn a_requested_address_waits_for_the_lock_and_is_busy_code_11() {
        let dir = TempDir::new().unwrap();
        let a = alloc(&dir, pool("10.0.0.0/24")).with_lock_timeout(Duration::from_millis(50));
        fs::create_dir_all(a.dir()).unwrap();
        let holder = File::create(a.dir().join(LOCK_FILE)).unwrap();
        rustix::fs::flock(&holder, FlockOperation::LockExclusive).unwrap();
        let err = a.allocate_requested(&att("a"), ip("10.0.0.7")).unwrap_err();
        assert!(matches!(err, IpamError::Busy { .. }), "{err:?}");
        assert_eq!(CniError::from(err).code(), 11);
        assert!(!a.dir().join("10.0.0.7").exists());
        drop(holder);
        a.allocate_requested(&att("a"), ip("10.0.0.7")).unwrap();
    }

    #[test]
    fn twenty_threads_asking_for_one_address_one_gets_it() {
        let dir = TempDir::new().unwrap();
        let a = Arc::new(alloc(&dir, pool("10.0.0.0/24")));
        // Half ask for .5, half take the next free one: .5 is held once,
        // and never handed out by `allocate` to someone else.
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let a = Arc::clone(&a);
                thread::spawn(move || {
                    let who = att(&format!("pod{i}"));
                    if i % 2 == 0 {
                        a.allocate_requested(&who, ip("10.0.0.5")).map(|l| l.ip)
                    } else {
                        a.allocate(&who).map(|l| l.ip)
                    }
                })
            })
            .collect();
        let results: Vec<Result<IpAddr, IpamError>> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        let ok: Vec<IpAddr> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        let unique: HashSet<IpAddr> = ok.iter().copied().collect();
        assert_eq!(
            unique.len(),
            ok.len(),
            "an address handed out twice: {ok:?}"
        );
        let fives = ok.iter().filter(|&&x| x == ip("10.0.0.5")).count();
        assert_eq!(fives, 1, "{results:?}");
        for r in &results {
            if let Err(e) = r {
                assert!(matches!(e, IpamError::RequestedInUse { .. }), "{e:?}");
            }
        }
        assert_eq!(a.leases().unwrap().len(), ok.len());
    }

    #[test]
    fn ipv6_pools_work() {
        let dir = TempDir::new().unwrap();
        let a = alloc(&dir, pool("fd00:10:244:1::/64"));
        assert_eq!(a.allocate(&att("a")).unwrap().ip, ip("fd00:10:244:1::1"));
        assert_eq!(a.allocate(&att("b")).unwrap().ip, ip("fd00:10:244:1::2"));
        assert!(a.dir().join("fd00:10:244:1::2").exists());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Allocate(u8, u8),
        Release(u8, u8),
        Gc(Vec<(u8, u8)>),
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        let who = (0u8..8, 0u8..2);
        prop_oneof![
            4 => who.clone().prop_map(|(c, i)| Op::Allocate(c, i)),
            2 => who.clone().prop_map(|(c, i)| Op::Release(c, i)),
            1 => proptest::collection::vec(who, 0..6).prop_map(Op::Gc),
            1 => Just(Op::Reopen),
        ]
    }

    fn who(c: u8, i: u8) -> Attachment {
        Attachment::new(format!("c{c}"), format!("eth{i}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Against a map model: no address is ever held twice, holders keep
        /// theirs, and exhaustion happens exactly when the model is full.
        #[test]
        fn never_hands_out_an_address_twice(ops in proptest::collection::vec(op(), 1..40)) {
            let dir = TempDir::new().unwrap();
            // Six addresses, one reserved: five for up to sixteen attachments.
            let p = Pool::new("10.0.0.0/29".parse().unwrap(), None, None).unwrap()
                .reserve("gateway", ip("10.0.0.3")).unwrap();
            let mut a = alloc(&dir, p.clone());
            let mut model: HashMap<Attachment, IpAddr> = HashMap::new();
            for op in ops {
                match op {
                    Op::Allocate(c, i) => {
                        let x = who(c, i);
                        match a.allocate(&x) {
                            Ok(lease) => {
                                prop_assert!(p.contains(lease.ip));
                                if let Some(&held) = model.get(&x) {
                                    prop_assert_eq!(held, lease.ip);
                                }
                                prop_assert!(model.iter().all(|(o, &v)| o == &x || v != lease.ip));
                                model.insert(x, lease.ip);
                            }
                            Err(IpamError::Exhausted { .. }) => {
                                prop_assert!(!model.contains_key(&x));
                                prop_assert_eq!(model.len() as u128, p.capacity());
                            }
                            Err(e) => prop_assert!(false, "{e}"),
                        }
                    }
                    Op::Release(c, i) => {
                        let x = who(c, i);
                        let freed = a.release(&x).unwrap();
                        prop_assert_eq!(freed, model.remove(&x).into_iter().collect::<Vec<_>>());
                    }
                    Op::Gc(valid) => {
                        let valid: Vec<Attachment> = valid.into_iter().map(|(c, i)| who(c, i)).collect();
                        a.gc(&valid).unwrap();
                        model.retain(|x, _| valid.contains(x));
                    }
                    Op::Reopen => a = alloc(&dir, p.clone()),
                }
                let on_disk: HashMap<Attachment, IpAddr> = a.leases().unwrap().into_iter()
                    .map(|l| (Attachment::new(l.container_id, l.ifname.unwrap()), l.ip))
                    .collect();
                prop_assert_eq!(&on_disk, &model);
            }
        }
    }
}
