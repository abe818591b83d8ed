//! The desired state on disk, in xvsd's state directory (`/var/lib/xvs`
//! unless configured): a snapshot, `state.json`, written atomically
//! (temporary file, fsync, rename), and a journal, `journal.jsonl`, of the
//! changes made since, one JSON line each, appended and `fdatasync`ed
//! before the change is answered. A restarted xvsd loads the snapshot and
//! replays the journal: pods stay attached and Services programmed without
//! any CNI command or controller re-running.
//!
//! Why a journal: a change must be on disk before it is acknowledged, and
//! with 50,000 Services the whole state is megabytes of JSON, tens of
//! milliseconds to write. A Service change journals the one Service
//! (`service_put`, `service_del`); any other change journals everything
//! but the Services (`base`, small: ports, routes, rules). When the
//! journal has grown past the snapshot's size (and at least
//! [`COMPACT_MIN_BYTES`]) it is folded into a new snapshot and emptied, so
//! a change costs a small append, plus rarely one full write.
//!
//! Crash safety: the snapshot is replaced atomically and the journal
//! removed only after it; a crash between the two leaves a journal whose
//! changes are already in the snapshot, and replaying them again gives the
//! same state (every entry sets, none adds). A crash in the middle of an
//! append leaves a last line without its newline: it was never
//! acknowledged and is dropped at load, with a warning. Any other line that
//! does not parse is an error that names it.
//!
//! At start the stored state meets xvsd's command line and config file,
//! which describe the node as the operator boots it: their node facts win,
//! their ports and remote nodes are added or replaced by name, and
//! everything else (ports, routes, VTEPs, Services added over the socket)
//! comes from the store.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use xvs_control::service::ServiceSpec;
use xvs_control::state::DesiredState;

use super::write_atomically;

/// The journal is folded into the snapshot once it is larger than the
/// snapshot and at least this large.
pub const COMPACT_MIN_BYTES: u64 = 4 << 20;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum JournalEntry {
    /// This Service (by its name) is now so.
    ServicePut(ServiceSpec),
    /// The Service of this name is gone.
    ServiceDel(String),
    /// Everything but the Services is now so (its `services` is empty).
    Base(DesiredState),
}

impl JournalEntry {
    fn apply(self, state: &mut DesiredState) {
        match self {
            JournalEntry::ServicePut(spec) => {
                state.services.insert(spec);
            }
            JournalEntry::ServiceDel(name) => {
                state.services.remove(&name);
            }
            JournalEntry::Base(mut base) => {
                base.services = std::mem::take(&mut state.services);
                *state = base;
            }
        }
    }
}

/// The state files of one xvsd.
#[derive(Debug)]
pub struct StateStore {
    path: PathBuf,
    journal_path: PathBuf,
    journal: Mutex<Journal>,
}

#[derive(Debug, Default)]
struct Journal {
    /// Open for appending once something was journaled.
    file: Option<File>,
    bytes: u64,
    /// The size of the snapshot last written or read.
    snapshot_bytes: u64,
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
    #[error("{path} line {line} is not a valid journal entry ({source}); fix or remove the line")]
    Journal {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{path} has changes but there is no state file {state} to apply them to; remove it")]
    JournalWithoutState { path: PathBuf, state: PathBuf },
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
            journal_path: dir.join("journal.jsonl"),
            journal: Mutex::new(Journal::default()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stored state, if there is one: the snapshot with the journal
    /// replayed.
    pub fn load(&self) -> Result<Option<DesiredState>, StoreError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(StoreError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let journal = match std::fs::read_to_string(&self.journal_path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(StoreError::Read {
                    path: self.journal_path.clone(),
                    source,
                })
            }
        };
        let Some(text) = text else {
            if journal.trim().is_empty() {
                return Ok(None);
            }
            return Err(StoreError::JournalWithoutState {
                path: self.journal_path.clone(),
                state: self.path.clone(),
            });
        };
        self.journal().snapshot_bytes = text.len() as u64;
        let mut state: DesiredState =
            serde_json::from_str(&text).map_err(|source| StoreError::Parse {
                path: self.path.clone(),
                source,
            })?;
        for (n, entry) in parse_journal(&journal, &self.journal_path)? {
            tracing::debug!(line = n, "replaying journal");
            entry.apply(&mut state);
        }
        Ok(Some(state))
    }

    /// Writes `state` as the new snapshot and empties the journal.
    pub fn save(&self, state: &DesiredState) -> Result<(), StoreError> {
        let mut journal = self.journal();
        let mut json = serde_json::to_vec(state).unwrap_or_default();
        json.push(b'\n');
        write_atomically(&self.path, &json).map_err(|source| StoreError::Write {
            path: self.path.clone(),
            source,
        })?;
        journal.snapshot_bytes = json.len() as u64;
        journal.file = None;
        journal.bytes = 0;
        match std::fs::remove_file(&self.journal_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Write {
                path: self.journal_path.clone(),
                source,
            }),
        }
    }

    /// Records `entries`, which brought the stored state to `state`: one
    /// synced append, or a new snapshot when the journal has grown large.
    pub fn record(&self, entries: &[JournalEntry], state: &DesiredState) -> Result<(), StoreError> {
        let mut lines = Vec::new();
        for e in entries {
            serde_json::to_writer(&mut lines, e).unwrap_or_default();
            lines.push(b'\n');
        }
        let compact = {
            let j = self.journal();
            let bytes = j.bytes + lines.len() as u64;
            bytes >= COMPACT_MIN_BYTES && bytes > j.snapshot_bytes
        };
        if compact {
            return self.save(state);
        }
        let mut j = self.journal();
        let write_err = |source| StoreError::Write {
            path: self.journal_path.clone(),
            source,
        };
        if j.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.journal_path)
                .map_err(write_err)?;
            j.bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
            j.file = Some(file);
        }
        let file = j.file.as_mut().expect("opened above");
        file.write_all(&lines)
            .and_then(|()| file.sync_data())
            .map_err(write_err)?;
        j.bytes += lines.len() as u64;
        Ok(())
    }
}

/// The entries of journal `text`, with their line numbers. A last line
/// without its newline is a torn append: dropped with a warning.
fn parse_journal(text: &str, path: &Path) -> Result<Vec<(usize, JournalEntry)>, StoreError> {
    let mut out = Vec::new();
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(e) => out.push((i + 1, e)),
            Err(_) if i + 1 == lines.len() && !complete => {
                tracing::warn!(
                    path = %path.display(),
                    line = i + 1,
                    "dropping a journal line cut short by a crash (it was never acknowledged)"
                );
            }
            Err(source) => {
                return Err(StoreError::Journal {
                    path: path.to_path_buf(),
                    line: i + 1,
                    source,
                })
            }
        }
    }
    Ok(out)
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
    use xvs_control::service::ServiceSpec;
    use xvs_control::state::{MacAddr, NodeSpec, PortKind, PortSpec};

    fn state(node_ip: &str, ports: &[(&str, u16)]) -> DesiredState {
        DesiredState {
            node: NodeSpec {
                node_ip: node_ip.parse().unwrap(),
                pod_cidr: "10.244.1.0/24".parse().unwrap(),
                gateway_ip: xvs_control::state::DEFAULT_POD_GATEWAY,
                gateway_mac: xvs_control::state::DEFAULT_GATEWAY_MAC,
                vxlan: None,
                cluster_cidr: None,
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
            services: Default::default(),
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

    fn service(name: &str, port: u16) -> ServiceSpec {
        serde_json::from_value(serde_json::json!({
            "name": name, "cluster_ip": "10.96.0.10", "ports": [{"port": port}],
        }))
        .unwrap()
    }

    #[test]
    fn the_journal_replays_over_the_snapshot_and_compaction_folds_it_in() {
        let dir = std::env::temp_dir().join(format!("xvs-journal-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = StateStore::open(&dir).unwrap();
        let mut s = state("192.168.0.1", &[("a", 1)]);
        store.save(&s).unwrap();
        // A service added, changed, another added and deleted, a port added.
        let steps = [
            JournalEntry::ServicePut(service("ns/one", 80)),
            JournalEntry::ServicePut(service("ns/one", 81)),
            JournalEntry::ServicePut(service("ns/two", 80)),
            JournalEntry::ServiceDel("ns/two".into()),
        ];
        for e in steps {
            e.clone().apply(&mut s);
            store.record(&[e], &s).unwrap();
        }
        let mut base = state("192.168.0.1", &[("a", 1), ("b", 2)]);
        base.services = Default::default();
        JournalEntry::Base(base.clone()).apply(&mut s);
        store.record(&[JournalEntry::Base(base)], &s).unwrap();
        assert_eq!(s.ports.len(), 2);
        assert_eq!(s.services.len(), 1, "a base entry keeps the Services");
        assert_eq!(
            StateStore::open(&dir).unwrap().load().unwrap(),
            Some(s.clone())
        );

        // A torn last line is dropped; a bad line before it is an error.
        let journal = dir.join("journal.jsonl");
        let mut text = std::fs::read_to_string(&journal).unwrap();
        text.push_str("{\"service_del\": \"ns/o");
        std::fs::write(&journal, &text).unwrap();
        assert_eq!(
            StateStore::open(&dir).unwrap().load().unwrap(),
            Some(s.clone())
        );
        std::fs::write(&journal, format!("garbage\n{text}")).unwrap();
        let e = StateStore::open(&dir)
            .unwrap()
            .load()
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1"), "{e}");

        // Saving folds the journal in and removes it.
        store.save(&s).unwrap();
        assert!(!journal.exists());
        assert_eq!(StateStore::open(&dir).unwrap().load().unwrap(), Some(s));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
