//! The application's state store, `<home>/state.redb`: the typed records of the parts of mbd
//! above the repository engine (users, tokens, subscriptions, events, uploads, builds,
//! chroots, the configuration objects of sources, archives and keys).
//!
//! Every record type names its own table ([`Record::TABLE`]); a record is read and written
//! by its id within that table, so a key of one kind can never be read as another. Ids of
//! time-ordered records (events) sort by time, which makes "the newest N" and "since" cost
//! what they return, and lets retention drop the oldest without reading the rest.
//!
//! Invariants: every call is its own redb transaction (reads never wait for writers); a
//! record is JSON of its type; the engine's store (`mbd.redb`) holds none of these.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {reason}")]
    Db { path: PathBuf, reason: String },
    #[error("{path}: record {table}/{id}: {reason}")]
    Record {
        path: PathBuf,
        table: String,
        id: String,
        reason: String,
    },
}

/// A held write token, kept only for what its drop does (see `api::Context::writer`):
/// functions that wait on the network take one only around what they store.
pub trait Token {}
impl<T> Token for T {}

/// A type kept in the state store.
pub trait Record: Serialize + DeserializeOwned {
    /// The table its records live in.
    const TABLE: &'static str;
}

/// The state store of one home.
pub struct StateStore {
    db: Database,
    path: PathBuf,
}

type Table<'a> = TableDefinition<'a, &'static str, &'static [u8]>;

fn table(name: &str) -> Table<'_> {
    TableDefinition::new(name)
}

/// The store's file in a home.
pub fn state_path(home: &Path) -> PathBuf {
    home.join("state.redb")
}

impl StateStore {
    /// Opens (or creates) `<home>/state.redb`.
    pub fn open(home: &Path) -> Result<StateStore, StateError> {
        let path = state_path(home);
        let db = Database::create(&path).map_err(|e| StateError::Db {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(StateStore { db, path })
    }

    /// A store in memory, for unit tests.
    pub fn in_memory() -> StateStore {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .expect("an in-memory database opens");
        StateStore {
            db,
            path: PathBuf::from("(memory)"),
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> StateError {
        StateError::Db {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    fn decode<T: Record>(&self, id: &str, bytes: &[u8]) -> Result<T, StateError> {
        serde_json::from_slice(bytes).map_err(|e| StateError::Record {
            path: self.path.clone(),
            table: T::TABLE.to_string(),
            id: id.to_string(),
            reason: e.to_string(),
        })
    }

    /// Runs `read` on the table of `T` in one read transaction; a table never written is
    /// empty.
    fn read<T: Record, R: Default>(
        &self,
        read: impl FnOnce(&redb::ReadOnlyTable<&'static str, &'static [u8]>) -> Result<R, StateError>,
    ) -> Result<R, StateError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        match tx.open_table(table(T::TABLE)) {
            Ok(t) => read(&t),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(R::default()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Collects rows of an iterator over the table into decoded records.
    fn collect<'a, T: Record>(
        &self,
        rows: impl Iterator<
            Item = Result<
                (
                    redb::AccessGuard<'a, &'static str>,
                    redb::AccessGuard<'a, &'static [u8]>,
                ),
                redb::StorageError,
            >,
        >,
        limit: usize,
    ) -> Result<Vec<(String, T)>, StateError> {
        let mut out = Vec::new();
        for row in rows.take(limit) {
            let (k, v) = row.map_err(|e| self.err(e))?;
            out.push((k.value().to_string(), self.decode(k.value(), v.value())?));
        }
        Ok(out)
    }

    /// The record `id` of type `T`.
    pub fn get<T: Record>(&self, id: &str) -> Result<Option<T>, StateError> {
        self.read::<T, _>(|t| {
            let v = t.get(id).map_err(|e| self.err(e))?;
            v.map(|v| self.decode(id, v.value())).transpose()
        })
    }

    /// Every record of type `T`, by id.
    pub fn all<T: Record>(&self) -> Result<Vec<(String, T)>, StateError> {
        self.read::<T, _>(|t| self.collect(t.iter().map_err(|e| self.err(e))?, usize::MAX))
    }

    /// The records whose id starts with `prefix`, by id.
    pub fn under<T: Record>(&self, prefix: &str) -> Result<Vec<(String, T)>, StateError> {
        let end = format!("{prefix}\u{10FFFF}");
        self.read::<T, _>(|t| {
            let rows = t.range(prefix..end.as_str()).map_err(|e| self.err(e))?;
            self.collect(rows, usize::MAX)
        })
    }

    /// The records with an id at or after `first`, in id order.
    pub fn from<T: Record>(&self, first: &str) -> Result<Vec<(String, T)>, StateError> {
        self.read::<T, _>(|t| {
            let rows = t.range(first..).map_err(|e| self.err(e))?;
            self.collect(rows, usize::MAX)
        })
    }

    /// The `n` records with the greatest ids, greatest first.
    pub fn latest<T: Record>(&self, n: usize) -> Result<Vec<(String, T)>, StateError> {
        self.read::<T, _>(|t| self.collect(t.iter().map_err(|e| self.err(e))?.rev(), n))
    }

    /// How many records of type `T` there are.
    pub fn count<T: Record>(&self) -> Result<u64, StateError> {
        use redb::ReadableTableMetadata;
        self.read::<T, _>(|t| t.len().map_err(|e| self.err(e)))
    }

    /// Saves a record.
    pub fn put<T: Record>(&self, id: &str, value: &T) -> Result<(), StateError> {
        self.put_all::<T, &T>(&[(id.to_string(), value)])
    }

    /// Saves several records in one transaction.
    pub fn put_all<T: Record, V: std::borrow::Borrow<T>>(
        &self,
        items: &[(String, V)],
    ) -> Result<(), StateError> {
        self.write::<T, _>(|t| {
            for (id, value) in items {
                let bytes = serde_json::to_vec(value.borrow()).expect("records serialize");
                t.insert(id.as_str(), bytes.as_slice())
                    .map_err(|e| self.err(e))?;
            }
            Ok(())
        })
    }

    /// Deletes a record; false if there was none.
    pub fn delete<T: Record>(&self, id: &str) -> Result<bool, StateError> {
        self.write::<T, _>(|t| Ok(t.remove(id).map_err(|e| self.err(e))?.is_some()))
    }

    /// Deletes several records in one transaction.
    pub fn delete_all<T: Record>(&self, ids: &[String]) -> Result<(), StateError> {
        self.write::<T, _>(|t| {
            for id in ids {
                t.remove(id.as_str()).map_err(|e| self.err(e))?;
            }
            Ok(())
        })
    }

    /// Retention of time-ordered records: deletes those with an id before `before`, except
    /// the `keep` greatest ids of the table; returns the deleted ones. Reads only what it
    /// deletes (and the `keep` newest).
    pub fn prune_before<T: Record>(
        &self,
        before: &str,
        keep: usize,
    ) -> Result<Vec<(String, T)>, StateError> {
        let mut gone = Vec::new();
        self.write::<T, _>(|t| {
            // Nothing at or above the keep-th newest id goes.
            let floor = t
                .iter()
                .map_err(|e| self.err(e))?
                .rev()
                .nth(keep.saturating_sub(1))
                .transpose()
                .map_err(|e| self.err(e))?
                .map(|(k, _)| k.value().to_string());
            let limit = match (&floor, keep) {
                (_, 0) => before.to_string(),
                (Some(f), _) if f.as_str() < before => f.clone(),
                (Some(_), _) => before.to_string(),
                (None, _) => return Ok(()),
            };
            for row in t.range(..limit.as_str()).map_err(|e| self.err(e))? {
                let (k, v) = row.map_err(|e| self.err(e))?;
                gone.push((k.value().to_string(), self.decode(k.value(), v.value())?));
            }
            for (id, _) in &gone {
                t.remove(id.as_str()).map_err(|e| self.err(e))?;
            }
            Ok(())
        })?;
        Ok(gone)
    }

    /// Stores raw records (JSON as written by an earlier version) into `table_name`, in one
    /// transaction: moving objects out of the engine's store.
    pub fn import(&self, table_name: &str, rows: &[(String, Vec<u8>)]) -> Result<(), StateError> {
        self.room()?;
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(table(table_name)).map_err(|e| self.err(e))?;
            for (id, bytes) in rows {
                t.insert(id.as_str(), bytes.as_slice())
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Refuses a write when the disk is (nearly) full, before the store is touched.
    fn room(&self) -> Result<(), StateError> {
        // A store in memory has no disk to fill.
        match self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => crate::files::check_room(dir).map_err(|e| self.err(e)),
            None => Ok(()),
        }
    }

    fn write<T: Record, R>(
        &self,
        change: impl FnOnce(&mut redb::Table<&'static str, &'static [u8]>) -> Result<R, StateError>,
    ) -> Result<R, StateError> {
        self.room()?;
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let result = {
            let mut t = tx.open_table(table(T::TABLE)).map_err(|e| self.err(e))?;
            change(&mut t)?
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Note(u32);
    impl Record for Note {
        const TABLE: &'static str = "notes";
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Other(String);
    impl Record for Other {
        const TABLE: &'static str = "others";
    }

    fn filled() -> StateStore {
        let s = StateStore::in_memory();
        let items: Vec<(String, Note)> = (0..10).map(|i| (format!("{i:03}"), Note(i))).collect();
        s.put_all(&items).unwrap();
        s
    }

    #[test]
    fn records_of_one_type_are_not_seen_as_another() {
        let s = filled();
        s.put("001", &Other("x".into())).unwrap();
        assert_eq!(s.get::<Note>("001").unwrap(), Some(Note(1)));
        assert_eq!(s.get::<Other>("001").unwrap(), Some(Other("x".into())));
        assert_eq!(s.all::<Other>().unwrap().len(), 1);
        assert_eq!(s.get::<Other>("002").unwrap(), None);
    }

    #[test]
    fn a_table_never_written_reads_as_empty() {
        let s = StateStore::in_memory();
        assert!(s.all::<Note>().unwrap().is_empty());
        assert_eq!(s.get::<Note>("a").unwrap(), None);
        assert_eq!(s.count::<Note>().unwrap(), 0);
        assert!(!s.delete::<Note>("a").unwrap());
    }

    #[test]
    fn latest_and_from_return_only_what_they_ask_for() {
        let s = filled();
        let ids = |v: Vec<(String, Note)>| v.into_iter().map(|(_, n)| n.0).collect::<Vec<_>>();
        assert_eq!(ids(s.latest(3).unwrap()), vec![9, 8, 7]);
        assert_eq!(ids(s.from("007").unwrap()), vec![7, 8, 9]);
        assert_eq!(ids(s.under("00").unwrap()).len(), 10);
    }

    #[test]
    fn pruning_drops_the_old_but_keeps_the_newest_n() {
        let s = filled();
        // Everything before 005 is old; 3 newest are kept anyway (they are newer).
        let gone = s.prune_before::<Note>("005", 3).unwrap();
        assert_eq!(gone.len(), 5);
        assert_eq!(s.count::<Note>().unwrap(), 5);
        // Now everything is old, but the 3 newest stay.
        let gone = s.prune_before::<Note>("999", 3).unwrap();
        assert_eq!(gone.len(), 2);
        let left: Vec<u32> = s
            .all::<Note>()
            .unwrap()
            .into_iter()
            .map(|(_, n)| n.0)
            .collect();
        assert_eq!(left, vec![7, 8, 9]);
        // keep 0: age alone decides.
        s.prune_before::<Note>("999", 0).unwrap();
        assert_eq!(s.count::<Note>().unwrap(), 0);
    }
}
