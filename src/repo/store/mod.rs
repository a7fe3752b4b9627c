//! The store: one redb file holding the configuration, every distribution's packages (main
//! and rollback slots), pool reference counts, Contents file lists and what was published.
//!
//! Packages are kept as *groups*: a source package and the binaries built from it, in one
//! distribution. Rollbacks, migrations and removals move whole groups.

mod read;
mod records;
mod schema;
mod txn;

#[cfg(test)]
mod tests;

pub use records::{DistContents, DistRecords};
pub use schema::SCHEMA_VERSION;
pub use txn::Txn;

use crate::deb::PackageType;
use redb::{Database, ReadableDatabase};
use schema::{
    BINARIES, BINARY_ORDER, CONFIG, CONTENTS, DIGEST_MARKS, META, NEXT_ARRIVAL, OUTLINES, POOL,
    POOL_FREED, PUBLISHED, SEGMENT_REFS, SEGMENTS, SOURCE_ORDER, SOURCES, upgrade_from_1,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: store error: {reason}")]
    Db { path: PathBuf, reason: String },
    #[error(
        "{path}: store schema version {found}, this mbd needs {expected}; refusing to touch it"
    )]
    Schema {
        path: PathBuf,
        found: String,
        expected: &'static str,
    },
    #[error("{path}: corrupt record {key}: {reason}")]
    Record {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

/// One file of a source package, in the pool directory of its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    pub version: String,
    pub component: String,
    /// `pool/<component>/<prefix>/<source>`
    pub directory: String,
    /// The `.dsc` first, then the files it lists.
    pub files: Vec<PoolFile>,
    /// The rendered `Sources` stanza.
    pub stanza: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryRecord {
    pub version: String,
    pub source_version: String,
    pub component: String,
    pub package_type: PackageType,
    pub section: String,
    /// Pool path of the package file.
    pub filename: String,
    pub sha256: String,
    /// The rendered `Packages` stanza; stored raw after the JSON of the other fields (see
    /// [`encode_binary`](schema::encode_binary)) so publishing copies it without decoding.
    #[serde(skip)]
    pub stanza: String,
}

/// A binary of a group: package name, architecture, record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    pub package: String,
    pub architecture: String,
    pub record: BinaryRecord,
}

/// A source package and its binaries in one distribution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub source: Option<SourceRecord>,
    pub binaries: Vec<Binary>,
}

impl Group {
    pub fn is_empty(&self) -> bool {
        self.source.is_none() && self.binaries.is_empty()
    }

    /// The group's version: the source's, else the newest binary's source version.
    pub fn version(&self) -> Option<crate::version::Version> {
        if let Some(s) = &self.source {
            return crate::version::Version::parse(&s.version).ok();
        }
        self.binaries
            .iter()
            .filter_map(|b| crate::version::Version::parse(&b.record.source_version).ok())
            .max()
    }

    /// Every pool path the group refers to, with the sha256 of its content.
    pub fn pool_paths(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(s) = &self.source {
            for f in &s.files {
                out.push((format!("{}/{}", s.directory, f.name), f.sha256.clone()));
            }
        }
        for b in &self.binaries {
            out.push((b.record.filename.clone(), b.record.sha256.clone()));
        }
        out
    }
}

/// What was published for one distribution: by-hash files and when they were superseded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PublishState {
    /// by-hash path (relative to the repository) → unix time it stopped being current.
    pub by_hash: std::collections::BTreeMap<String, Option<i64>>,
    /// Set while a publish of this distribution is under way; a crash leaves it set and the
    /// next open publishes the distribution again.
    pub in_progress: bool,
    /// Keys of the compressed segments its indices are made of.
    #[serde(default)]
    pub segments: std::collections::BTreeSet<String>,
}

pub struct Store {
    db: Database,
    path: PathBuf,
    /// Commits of changes so far (for [`Store::changed_since`]).
    commits: std::sync::atomic::AtomicU64,
}

/// A state of the store to go back to ([`Store::restore`]); held in memory only, and free
/// once dropped (until then, pages it needs are not reused).
pub struct Savepoint {
    point: redb::Savepoint,
    /// [`Store::commits`] when it was taken.
    at: u64,
}

impl Store {
    /// Opens (or creates) the store. A store written by an incompatible mbd is refused.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let dberr = |e: &dyn std::fmt::Display| StoreError::Db {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| dberr(&e))?;
        }
        // redb's default page cache is 1 GiB; publishing streams through every record of a
        // distribution once, so a large cache only inflates the resident set.
        let db = Database::builder()
            .set_cache_size(16 << 20)
            .create(path)
            .map_err(|e| dberr(&e))?;
        let store = Store {
            db,
            path: path.to_path_buf(),
            commits: Default::default(),
        };
        // Check the schema before writing anything.
        {
            let rx = store.db.begin_read().map_err(|e| dberr(&e))?;
            let found = match rx.open_table(META) {
                Ok(meta) => meta
                    .get("schema")
                    .map_err(|e| dberr(&e))?
                    .map(|v| v.value().to_string()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(dberr(&e)),
            };
            if found.as_deref() == Some("1") {
                drop(rx);
                upgrade_from_1(&store.db).map_err(|e| dberr(&e))?;
                tracing::info!(path = %path.display(), "store upgraded to schema {SCHEMA_VERSION}");
            } else if let Some(found) = found
                && found != SCHEMA_VERSION
            {
                return Err(StoreError::Schema {
                    path: path.to_path_buf(),
                    found,
                    expected: SCHEMA_VERSION,
                });
            }
        }
        let tx = store.db.begin_write().map_err(|e| dberr(&e))?;
        {
            let mut meta = tx.open_table(META).map_err(|e| dberr(&e))?;
            meta.insert("schema", SCHEMA_VERSION)
                .map_err(|e| dberr(&e))?;
            tx.open_table(SOURCES).map_err(|e| dberr(&e))?;
            tx.open_table(CONFIG).map_err(|e| dberr(&e))?;
            tx.open_table(BINARIES).map_err(|e| dberr(&e))?;
            tx.open_table(POOL).map_err(|e| dberr(&e))?;
            tx.open_table(CONTENTS).map_err(|e| dberr(&e))?;
            tx.open_table(PUBLISHED).map_err(|e| dberr(&e))?;
            tx.open_table(SEGMENTS).map_err(|e| dberr(&e))?;
            tx.open_table(SEGMENT_REFS).map_err(|e| dberr(&e))?;
            tx.open_table(POOL_FREED).map_err(|e| dberr(&e))?;
            tx.open_table(DIGEST_MARKS).map_err(|e| dberr(&e))?;
            tx.open_table(SOURCE_ORDER).map_err(|e| dberr(&e))?;
            tx.open_table(BINARY_ORDER).map_err(|e| dberr(&e))?;
            tx.open_table(NEXT_ARRIVAL).map_err(|e| dberr(&e))?;
            tx.open_table(OUTLINES).map_err(|e| dberr(&e))?;
        }
        tx.commit().map_err(|e| dberr(&e))?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store as it is now, to go back to if what follows fails.
    pub fn savepoint(&self) -> Result<Savepoint, StoreError> {
        self.room()?;
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let point = tx.ephemeral_savepoint().map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Savepoint {
            point,
            at: self.commits.load(std::sync::atomic::Ordering::SeqCst),
        })
    }

    /// Refuses a write when the disk is (nearly) full (a restore is never refused: it is what
    /// makes room for the next change).
    fn room(&self) -> Result<(), StoreError> {
        // A store in memory has no disk to fill.
        match self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => crate::files::check_room(dir).map_err(|e| self.err(e)),
            None => Ok(()),
        }
    }

    /// Whether a change was committed since `sp`.
    pub fn changed_since(&self, sp: &Savepoint) -> bool {
        self.commits.load(std::sync::atomic::Ordering::SeqCst) != sp.at
    }

    /// Counts a commit of a change.
    fn committed(&self) {
        self.commits
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Undoes everything committed since `sp` (the caller holds the write token, so that is
    /// only its own work).
    pub fn restore(&self, sp: &Savepoint) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(|e| self.err(e))?;
        tx.restore_savepoint(&sp.point).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }
}
