//! Working inside another network namespace without leaving the caller there.
//!
//! A network namespace is a property of a thread (strictly, of a task), not
//! of a process: `setns(2)` moves only the calling thread. So every piece of
//! work that must happen inside the pod's namespace runs on a scoped thread
//! of its own that calls `setns` first and then ends with the work; the
//! caller's thread never changes namespace, whatever the work does or
//! however it fails. Everything that thread opens (the rtnetlink socket) or
//! spawns (the `ethtool` child, which inherits the spawning thread's
//! namespaces) belongs to the pod's namespace.
//!
//! The namespace is named by a path (`CNI_NETNS`: a bind mount of
//! `/proc/<pid>/ns/net` such as `/run/netns/<name>`, or that proc file
//! itself), opened once; the open file pins the namespace for as long as
//! the caller holds it, so it cannot vanish half-way through an ADD.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};

use super::PlumbError;

/// An opened network namespace.
pub(crate) struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    /// Opens the namespace file at `path`; a missing file is
    /// [`PlumbError::NetnsNotFound`].
    pub(crate) fn open(path: &Path) -> Result<Netns, PlumbError> {
        match File::open(path) {
            Ok(file) => Ok(Netns {
                file,
                path: path.to_path_buf(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(PlumbError::NetnsNotFound {
                netns: path.to_path_buf(),
            }),
            Err(source) => Err(PlumbError::NetnsOpen {
                netns: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The open namespace file, for `IFLA_NET_NS_FD`.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// The path it was opened from, for error messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` on a new thread inside this namespace and returns its
    /// result. A file that is not a network namespace (`setns` says EINVAL,
    /// e.g. a bind mount already unmounted) is [`PlumbError::NotANetns`].
    /// A panic in `work` is resumed on the caller's thread.
    pub(crate) fn run<T, F>(&self, work: F) -> Result<T, PlumbError>
    where
        T: Send,
        F: FnOnce() -> Result<T, PlumbError> + Send,
    {
        std::thread::scope(|scope| {
            let thread = std::thread::Builder::new()
                .name("xvs-netns".into())
                .spawn_scoped(scope, || {
                    setns(&self.file, CloneFlags::CLONE_NEWNET).map_err(|errno| {
                        if errno == Errno::EINVAL {
                            PlumbError::NotANetns {
                                netns: self.path.clone(),
                            }
                        } else {
                            PlumbError::Io {
                                op: format!("entering network namespace {}", self.path.display()),
                                source: io::Error::from(errno),
                            }
                        }
                    })?;
                    work()
                })
                .map_err(|source| PlumbError::Io {
                    op: "starting a thread for the pod's network namespace".into(),
                    source,
                })?;
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}
