//! Durable Scratch cloud variables: each project's variables kept in an
//! embedded database, so they outlive the room's clients and the process.
//!
//! **Why redb.** It is a maintained, pure-Rust embedded key-value store (no
//! C library to build or ship), one file, with ACID transactions on
//! copy-on-write B-trees: a commit is either wholly on disk or not at all, so
//! after a crash or `kill -9` the file opens again as of its last commit, with
//! no repair step for the operator. SQLite would do too but brings a C
//! build; an LSM store (fjall) is built for write volumes far beyond what
//! cloud variables need.
//!
//! **What is stored.** One record per project (room), a JSON object: its
//! variables in the order they were made, as an array of `[name, value]`
//! pairs, each value exactly as it was sent (a string stays a string, a
//! number a number), and its [change log](crate::history). A project with no
//! variables and no log has no record.
//!
//! **When.** Never one disk sync per `set`: the registry marks a room dirty
//! when its variables change, and every flush interval the server encodes the
//! dirty rooms (under the registry lock, a batch of rooms per hold so that it
//! stays brief) and commits them in one transaction off the async threads. So a `kill -9`
//! loses at most the changes of the last interval, and a graceful stop
//! flushes everything before it returns.
//!
//! **Between eviction and commit.** A room that left memory but whose
//! record is not committed yet would read as stale from the file; such
//! records wait in [`VariableStore::staged`] until their commit, and
//! [`VariableStore::load`] reads them there first.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use indexmap::IndexMap;
use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::history::LogEntry;

/// Project id → the encoded variables (see the module doc).
const ROOMS: TableDefinition<&str, &[u8]> = TableDefinition::new("scratch_rooms");

/// A record waiting for its commit: the encoded variables, or `None` when
/// the project's record is to be removed.
pub(crate) type Staged = Option<Arc<[u8]>>;

/// A project's id and the record it is owed.
pub(crate) type Record = (String, Staged);

/// The database of cloud variables; see the module doc.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let store = cloudlink::VariableStore::open(dir.path().join("cloud.redb"))?;
/// let server = cloudlink::CloudLink::builder().store(store).build();
/// assert!(server.is_durable());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct VariableStore {
    path: PathBuf,
    db: Database,
    staged: Mutex<HashMap<String, Staged>>,
    /// One commit at a time, so an older batch never lands after a newer one.
    committing: Mutex<()>,
}

impl std::fmt::Debug for VariableStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VariableStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Why the store could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[error("cloud-variable store {path}: {reason}")]
pub struct StoreError {
    path: PathBuf,
    reason: String,
}

impl VariableStore {
    /// Opens the store at `path`, creating the file if it does not exist.
    ///
    /// Fails if another process has it open, or the file is not a store.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        let failed = |reason: String| StoreError {
            path: path.clone(),
            reason,
        };
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => failed(
                "another process has it open (one server per store file; \
                 give this one its own --store path)"
                    .to_owned(),
            ),
            other => failed(other.to_string()),
        })?;
        // Make the table once, so that readers never meet a store without it.
        let txn = db.begin_write().map_err(|e| failed(e.to_string()))?;
        txn.open_table(ROOMS).map_err(|e| failed(e.to_string()))?;
        txn.commit().map_err(|e| failed(e.to_string()))?;
        Ok(Self {
            path,
            db,
            staged: Mutex::default(),
            committing: Mutex::default(),
        })
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, reason: impl ToString) -> StoreError {
        StoreError {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    fn staged(&self) -> MutexGuard<'_, HashMap<String, Staged>> {
        self.staged.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A project's stored variables and log (none if it has no record): a
    /// staged record first, then the file.
    pub(crate) fn load(&self, room: &str) -> Result<Stored, StoreError> {
        if let Some(staged) = self.staged().get(room) {
            return Ok(staged.as_deref().map(decode).unwrap_or_default());
        }
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(ROOMS).map_err(|e| self.error(e))?;
        let record = table.get(room).map_err(|e| self.error(e))?;
        Ok(record.map(|r| decode(r.value())).unwrap_or_default())
    }

    /// Queues records for the next [`commit`](Self::commit); a newer record
    /// for a project replaces an older one not committed yet.
    pub(crate) fn stage(&self, records: impl IntoIterator<Item = (String, Staged)>) {
        self.staged().extend(records);
    }

    /// Writes every staged record in one transaction and waits until it is
    /// on disk. Blocks: call it off the async threads. A record staged again
    /// meanwhile stays staged for the next commit; on failure all stay.
    pub(crate) fn commit(&self) -> Result<usize, StoreError> {
        let _one_at_a_time = self.committing.lock().unwrap_or_else(|e| e.into_inner());
        let batch: Vec<(String, Staged)> = self
            .staged()
            .iter()
            .map(|(room, record)| (room.clone(), record.clone()))
            .collect();
        if batch.is_empty() {
            return Ok(0);
        }
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        {
            let mut table = txn.open_table(ROOMS).map_err(|e| self.error(e))?;
            for (room, record) in &batch {
                match record {
                    Some(bytes) => table.insert(room.as_str(), &bytes[..]),
                    None => table.remove(room.as_str()).map(|_| None),
                }
                .map_err(|e| self.error(e))?;
            }
        }
        txn.commit().map_err(|e| self.error(e))?;
        let mut staged = self.staged();
        for (room, record) in &batch {
            let unchanged = staged.get(room).is_some_and(|now| same(now, record));
            if unchanged {
                staged.remove(room);
            }
        }
        Ok(batch.len())
    }

    /// How many bytes the store's file takes on disk.
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }
}

fn same(a: &Staged, b: &Staged) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// What the store keeps of one project.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Stored {
    pub variables: IndexMap<String, Value>,
    pub log: VecDeque<LogEntry>,
}

impl Stored {
    /// Whether there is nothing stored.
    pub fn is_empty(&self) -> bool {
        self.variables.is_empty() && self.log.is_empty()
    }
}

#[derive(Serialize)]
struct RecordOut<'a> {
    variables: Vec<(&'a String, &'a Value)>,
    log: &'a VecDeque<LogEntry>,
}

#[derive(Deserialize)]
struct RecordIn {
    variables: Vec<(String, Value)>,
    #[serde(default)]
    log: VecDeque<LogEntry>,
}

/// A room's record: `None` (remove it) when it has neither variables nor log.
pub(crate) fn encode(variables: &IndexMap<String, Value>, log: &VecDeque<LogEntry>) -> Staged {
    if variables.is_empty() && log.is_empty() {
        return None;
    }
    let record = RecordOut {
        variables: variables.iter().collect(),
        log,
    };
    let bytes = serde_json::to_vec(&record).expect("JSON values always encode");
    Some(Arc::from(bytes))
}

/// A record's variables and log; a record that does not decode (written by
/// a future version, say) reads as empty rather than stopping the room.
fn decode(bytes: &[u8]) -> Stored {
    serde_json::from_slice::<RecordIn>(bytes)
        .map(|record| Stored {
            variables: record.variables.into_iter().collect(),
            log: record.log,
        })
        .unwrap_or_else(|error| {
            tracing::warn!(%error, "a stored project record does not decode; it is read as empty");
            Stored::default()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variables(pairs: &[(&str, Value)]) -> IndexMap<String, Value> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn records_keep_order_and_value_types_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let vars = variables(&[
            ("☁ b", Value::String("1".into())),
            ("☁ a", serde_json::json!(1.5)),
            ("☁ c", serde_json::json!(7)),
        ]);
        let log = VecDeque::from([LogEntry {
            user: "p".into(),
            method: "set".into(),
            variable: "☁ c".into(),
            value: Some(7.into()),
            value_omitted: false,
            new_name: None,
            time: 1,
        }]);
        {
            let store = VariableStore::open(&path).unwrap();
            store.stage([("42".to_owned(), encode(&vars, &log))]);
            assert_eq!(
                store.load("42").unwrap().variables,
                vars,
                "staged is read first"
            );
            assert_eq!(store.commit().unwrap(), 1);
            assert!(store.staged().is_empty());
        }
        let store = VariableStore::open(&path).unwrap();
        let Stored {
            variables: loaded,
            log: loaded_log,
        } = store.load("42").unwrap();
        assert_eq!(loaded_log, log, "the log is kept too");
        assert_eq!(loaded, vars);
        assert_eq!(
            loaded.keys().collect::<Vec<_>>(),
            ["☁ b", "☁ a", "☁ c"],
            "order kept"
        );
        assert_eq!(store.load("43").unwrap(), Stored::default());
        store.stage([("42".to_owned(), None)]);
        store.commit().unwrap();
        assert_eq!(store.load("42").unwrap(), Stored::default(), "removed");
    }

    #[test]
    fn a_second_server_on_the_same_file_is_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let _first = VariableStore::open(&path).unwrap();
        let second = VariableStore::open(&path).unwrap_err().to_string();
        assert!(second.contains("another process has it open"), "{second}");
    }

    #[test]
    fn a_newer_record_replaces_the_committed_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = VariableStore::open(dir.path().join("s.redb")).unwrap();
        let old = encode(&variables(&[("v", 1.into())]), &VecDeque::new());
        store.stage([("r".to_owned(), old.clone())]);
        store.commit().unwrap();
        let new = encode(&variables(&[("v", 2.into())]), &VecDeque::new());
        store.stage([("r".to_owned(), new.clone())]);
        assert_eq!(store.commit().unwrap(), 1);
        assert!(store.staged().is_empty());
        assert_eq!(store.load("r").unwrap().variables["v"], 2);
    }
}
