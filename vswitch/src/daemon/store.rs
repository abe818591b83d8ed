//! The desired state on disk: one JSON file, `state.json`, in xvsd's state
//! directory (`/var/lib/xvs` unless configured), written atomically
//! (temporary file, fsync, rename) after every change the control socket
//! makes, so a crash leaves the old state or the new one, never half of
//! either. A restarted xvsd loads it: pods stay attached and forward again
//! without any CNI command being re-run.
//!
//! At start the file meets xvsd's command line and config file, which
//! describe the node as the operator boots it: their node facts win, their
//! ports and remote nodes are added or replaced by name, and everything
//! else (ports, routes, VTEPs added over the socket) comes from the file.

use std::io;
use std::path::{Path, PathBuf};

use xvs_control::state::DesiredState;

use super::write_atomically;

/// The state file of one xvsd.
#[derive(Debug, Clone)]
pub struct StateStore {
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state directory {dir}: {source}")]
    Dir { dir: PathBuf, source: io::Error },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not a valid state file ({source}); fix or remove it")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

impl StateStore {
    /// The store in `dir`, created (mode 0700) if it does not exist.
    pub fn open(dir: &Path) -> Result<StateStore, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StoreError::Dir {
                dir: dir.to_path_buf(),
                source,
            })?;
        Ok(StateStore {
            path: dir.join("state.json"),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored state, if there is one.
    pub fn load(&self) -> Result<Option<DesiredState>, StoreError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| StoreError::Parse {
                path: self.path.clone(),
                source,
            })
    }

    pub fn save(&self, state: &DesiredState) -> Result<(), StoreError> {
        let mut json = serde_json::to_vec_pretty(state).unwrap_or_default();
        json.push(b'\n');
        write_atomically(&self.path, &json).map_err(|source| StoreError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// The state xvsd starts with: `stored` (from the file) with `boot` (from
/// the command line and config file) laid over it.
pub fn merge(stored: Option<DesiredState>, boot: Option<DesiredState>) -> Option<DesiredState> {
    let (mut state, boot) = match (stored, boot) {
        (None, boot) => return boot,
        (stored, None) => return stored,
        (Some(stored), Some(boot)) => (stored, boot),
    };
    state.node = boot.node;
    for port in boot.ports {
        match state.ports.iter_mut().find(|p| p.name == port.name) {
            Some(p) => *p = port,
            None => state.ports.push(port),
        }
    }
    for node in boot.remote_nodes {
        match state.remote_nodes.iter_mut().find(|n| n.name == node.name) {
            Some(n) => *n = node,
            None => state.remote_nodes.push(node),
        }
    }
    Some(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xvs_control::state::{MacAddr, NodeSpec, PortKind, PortSpec};

    fn state(node_ip: &str, ports: &[(&str, u16)]) -> DesiredState {
        DesiredState {
            node: NodeSpec {
                node_ip: node_ip.parse().unwrap(),
                pod_cidr: "10.244.1.0/24".parse().unwrap(),
                gateway_ip: xvs_control::state::DEFAULT_POD_GATEWAY,
                gateway_mac: xvs_control::state::DEFAULT_GATEWAY_MAC,
                vxlan: None,
            },
            ports: ports
                .iter()
                .map(|&(name, domain)| PortSpec {
                    attachment: None,
                    name: name.into(),
                    kind: PortKind::Bridged { domain },
                    mtu: 1500,
                })
                .collect(),
            routes: Vec::new(),
            remote_nodes: Vec::new(),
            proxy_arp: vec!["10.0.0.1".parse().unwrap()],
            rules: Vec::new(),
        }
    }

    #[test]
    fn the_command_line_is_laid_over_the_stored_state() {
        let stored = state("192.168.0.1", &[("a", 1), ("b", 1)]);
        let mut boot = state("192.168.0.2", &[("b", 2), ("c", 1)]);
        boot.proxy_arp.clear();
        let merged = merge(Some(stored.clone()), Some(boot.clone())).unwrap();
        assert_eq!(merged.node, boot.node, "the command line's node facts win");
        let ports: Vec<_> = merged
            .ports
            .iter()
            .map(|p| (p.name.as_str(), p.kind.clone()))
            .collect();
        assert_eq!(
            ports,
            [
                ("a", PortKind::Bridged { domain: 1 }),
                ("b", PortKind::Bridged { domain: 2 }),
                ("c", PortKind::Bridged { domain: 1 }),
            ]
        );
        assert_eq!(merged.proxy_arp, stored.proxy_arp, "the rest is stored");
        assert_eq!(merge(Some(stored.clone()), None), Some(stored.clone()));
        assert_eq!(merge(None, Some(boot.clone())), Some(boot));
        assert_eq!(merge(None, None), None);
    }

    #[test]
    fn saved_state_loads_back_and_a_corrupt_file_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("xvs-store-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = StateStore::open(&dir.join("nested")).unwrap();
        assert!(store.load().unwrap().is_none(), "no file yet");
        let mut s = state("192.168.0.1", &[("a", 1)]);
        s.ports[0].kind = PortKind::Uplink {
            mac: MacAddr([2, 0, 0, 0, 0, 9]),
        };
        store.save(&s).unwrap();
        assert_eq!(store.load().unwrap(), Some(s));
        std::fs::write(store.path(), "{\"node\": 1").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("not a valid state file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
