//! The store: one redb file holding the configuration, every distribution's packages (main
//! and rollback slots), pool reference counts, Contents file lists and what was published.
//!
//! Packages are kept as *groups*: a source package and the binaries built from it, in one
//! distribution. Rollbacks, migrations and removals move whole groups.

use super::outline::Outline;
use super::publish::{BinaryRow, Marks, Records, SourceRow};
use crate::checksums::Mark;
use crate::deb::PackageType;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// Bumped whenever the meaning of stored data changes incompatibly.
pub const SCHEMA_VERSION: &str = "2";

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const CONFIG: TableDefinition<&str, &[u8]> = TableDefinition::new("config");
/// (repository, distribution, source) → arrival number and SourceRecord (see
/// [`encode_source`])
const SOURCES: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("sources");
/// (repository, distribution, source, package, architecture) → arrival number and
/// BinaryRecord (see [`encode_binary`])
const BINARIES: TableDefinition<(&str, &str, &str, &str, &str), &[u8]> =
    TableDefinition::new("binaries");
/// (repository, distribution, arrival number) → source: the sources in the order they
/// entered the distribution, which is the order of `Sources`
const SOURCE_ORDER: TableDefinition<(&str, &str, u64), &str> = TableDefinition::new("source_order");
/// (repository, distribution, arrival number) → (source, package, architecture): the order
/// of `Packages`
const BINARY_ORDER: TableDefinition<(&str, &str, u64), (&str, &str, &str)> =
    TableDefinition::new("binary_order");
/// (repository, distribution) → the next arrival number. It only grows, so a number names
/// one record for good: a record is never changed in place, only taken out and placed anew.
const NEXT_ARRIVAL: TableDefinition<(&str, &str), u64> = TableDefinition::new("next_arrival");
/// (repository, distribution) → outline of its published indices (a cache, see
/// `publish::Outline`)
const OUTLINES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("outlines");
/// (repository, pool path) → (references, sha256)
const POOL: TableDefinition<(&str, &str), (u64, &str)> = TableDefinition::new("pool");
/// (repository, pool path of a binary) → its files, one per line
const CONTENTS: TableDefinition<(&str, &str), &str> = TableDefinition::new("contents");
/// (repository, distribution) → PublishState
const PUBLISHED: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("published");
/// (repository, pool path) → unix time its last reference went: deleted once the
/// distributions that named it are published again
const POOL_FREED: TableDefinition<(&str, &str), i64> = TableDefinition::new("pool_freed");
/// segment key → compressed segment (see `compression`)
const SEGMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("segments");
/// segment key → number of published distributions using it
const SEGMENT_REFS: TableDefinition<&str, u64> = TableDefinition::new("segment_refs");
/// (repository, distribution) → saved digest states of its published files (a cache: keyed
/// by content, so a missing or old entry only costs time)
const DIGEST_MARKS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("digest_marks");

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
    /// [`encode_binary`]) so publishing copies it without decoding.
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

    pub fn write(&self) -> Result<Txn<'_>, StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        Ok(Txn {
            tx,
            store: self,
            pending: Default::default(),
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// Reads a configuration object.
    pub fn config<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(CONFIG).map_err(|e| self.err(e))?;
        let v = t.get(key).map_err(|e| self.err(e))?;
        v.map(|v| decode(&self.path, key, v.value())).transpose()
    }

    /// Configuration objects whose key starts with `prefix`.
    pub fn configs<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(CONFIG).map_err(|e| self.err(e))?;
        let end = format!("{prefix}\u{10FFFF}");
        let mut out = Vec::new();
        for row in t.range(prefix..end.as_str()).map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            out.push((
                k.value().to_string(),
                decode(&self.path, k.value(), v.value())?,
            ));
        }
        Ok(out)
    }

    /// The names of distributions of a repository that hold anything.
    pub fn dist_names(&self, repo: &str) -> Result<Vec<String>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let mut names = std::collections::BTreeSet::new();
        let s = tx.open_table(SOURCES).map_err(|e| self.err(e))?;
        for row in s
            .range((repo, "", "")..(repo, "\u{10FFFF}", ""))
            .map_err(|e| self.err(e))?
        {
            names.insert(row.map_err(|e| self.err(e))?.0.value().1.to_string());
        }
        let b = tx.open_table(BINARIES).map_err(|e| self.err(e))?;
        for row in b
            .range((repo, "", "", "", "")..(repo, "\u{10FFFF}", "", "", ""))
            .map_err(|e| self.err(e))?
        {
            names.insert(row.map_err(|e| self.err(e))?.0.value().1.to_string());
        }
        Ok(names.into_iter().collect())
    }

    /// The sources of one distribution and their versions (for binaries without a source
    /// record, the version of their source as the binaries name it).
    pub fn dist_sources(
        &self,
        repo: &str,
        dist: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let mut out = std::collections::BTreeMap::new();
        let st = tx.open_table(SOURCES).map_err(|e| self.err(e))?;
        for row in st
            .range((repo, dist, "")..(repo, dist, "\u{10FFFF}"))
            .map_err(|e| self.err(e))?
        {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let name = k.value().2.to_string();
            let record = decode_source(&self.path, &name, v.value())?;
            out.insert(name, record.version);
        }
        let bt = tx.open_table(BINARIES).map_err(|e| self.err(e))?;
        for row in bt
            .range((repo, dist, "", "", "")..(repo, dist, "\u{10FFFF}", "", ""))
            .map_err(|e| self.err(e))?
        {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let name = k.value().2.to_string();
            if let std::collections::btree_map::Entry::Vacant(e) = out.entry(name) {
                let record = decode_binary(&self.path, e.key(), v.value())?;
                e.insert(record.source_version);
            }
        }
        Ok(out)
    }

    /// Every (distribution, group) of `source` in a repository, in distribution order.
    pub fn source_everywhere(
        &self,
        repo: &str,
        source: &str,
    ) -> Result<Vec<(String, Group)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let st = tx.open_table(SOURCES).map_err(|e| self.err(e))?;
        let bt = tx.open_table(BINARIES).map_err(|e| self.err(e))?;
        let mut dists = std::collections::BTreeSet::new();
        for row in st
            .range((repo, "", "")..(repo, "\u{10FFFF}", ""))
            .map_err(|e| self.err(e))?
        {
            let (k, _) = row.map_err(|e| self.err(e))?;
            let (_, dist, name) = k.value();
            if name == source {
                dists.insert(dist.to_string());
            }
        }
        for row in bt
            .range((repo, "", "", "", "")..(repo, "\u{10FFFF}", "", "", ""))
            .map_err(|e| self.err(e))?
        {
            let (k, _) = row.map_err(|e| self.err(e))?;
            let (_, dist, name, _, _) = k.value();
            if name == source {
                dists.insert(dist.to_string());
            }
        }
        dists
            .into_iter()
            .map(|d| read_group(self, &st, &bt, repo, &d, source).map(|g| (d, g)))
            .collect()
    }

    /// The packages of one distribution, for streaming into its indices (one consistent
    /// view: later writes are not seen).
    pub fn records<'a>(
        &'a self,
        repo: &'a str,
        dist: &'a str,
    ) -> Result<DistRecords<'a>, StoreError> {
        Ok(DistRecords {
            store: self,
            tx: self.db.begin_read().map_err(|e| self.err(e))?,
            repo,
            dist,
        })
    }

    /// The outline of a distribution's published indices, if one is saved and readable.
    pub fn outline(&self, repo: &str, dist: &str) -> Result<Option<Outline>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(OUTLINES).map_err(|e| self.err(e))?;
        let v = t.get((repo, dist)).map_err(|e| self.err(e))?;
        Ok(v.and_then(|v| {
            let o = Outline::decode(v.value());
            if o.is_none() {
                tracing::warn!(%dist, "saved index outline is unreadable; rendering in full");
            }
            o
        }))
    }

    /// The digest states saved by the last publish of a distribution (empty if none or
    /// unreadable: they are only a cache).
    pub fn digest_marks(&self, repo: &str, dist: &str) -> Result<Marks, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(DIGEST_MARKS).map_err(|e| self.err(e))?;
        let v = t.get((repo, dist)).map_err(|e| self.err(e))?;
        Ok(v.map(|v| decode_marks(v.value())).unwrap_or_default())
    }

    pub fn publish_state(&self, repo: &str, dist: &str) -> Result<PublishState, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(PUBLISHED).map_err(|e| self.err(e))?;
        let v = t.get((repo, dist)).map_err(|e| self.err(e))?;
        Ok(match v {
            Some(v) => decode(&self.path, dist, v.value())?,
            None => PublishState::default(),
        })
    }

    /// Cached compressed segments, in the order of `keys`.
    pub fn segments(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(SEGMENTS).map_err(|e| self.err(e))?;
        keys.iter()
            .map(|k| {
                Ok(t.get(k.as_str())
                    .map_err(|e| self.err(e))?
                    .map(|v| v.value().to_vec()))
            })
            .collect()
    }

    /// Pool paths whose last reference went, with whether something refers to them again.
    pub fn freed(&self) -> Result<Vec<(String, String, bool)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let freed = tx.open_table(POOL_FREED).map_err(|e| self.err(e))?;
        let pool = tx.open_table(POOL).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in freed.iter().map_err(|e| self.err(e))? {
            let (k, _) = row.map_err(|e| self.err(e))?;
            let (repo, path) = k.value();
            let referenced = pool.get((repo, path)).map_err(|e| self.err(e))?.is_some();
            out.push((repo.to_string(), path.to_string(), referenced));
        }
        Ok(out)
    }

    /// Forgets freed pool paths (their files are gone, or referenced again).
    pub fn forget_freed(&self, paths: &[(String, String)]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(POOL_FREED).map_err(|e| self.err(e))?;
            for (repo, path) in paths {
                t.remove((repo.as_str(), path.as_str()))
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Published distributions of a repository whose name starts with `prefix`.
    pub fn published_with_prefix(
        &self,
        repo: &str,
        prefix: &str,
    ) -> Result<Vec<String>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(PUBLISHED).map_err(|e| self.err(e))?;
        let end = format!("{prefix}\u{10FFFF}");
        let mut out = Vec::new();
        for row in t
            .range((repo, prefix)..(repo, end.as_str()))
            .map_err(|e| self.err(e))?
        {
            out.push(row.map_err(|e| self.err(e))?.0.value().1.to_string());
        }
        Ok(out)
    }

    /// Distributions whose last publish did not finish.
    pub fn unfinished_publishes(&self) -> Result<Vec<(String, String)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(PUBLISHED).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let (repo, dist) = k.value();
            let state: PublishState = decode(&self.path, dist, v.value())?;
            if state.in_progress {
                out.push((repo.to_string(), dist.to_string()));
            }
        }
        Ok(out)
    }

    /// Every pool path of a repository with its reference count.
    pub fn pool_refs(&self, repo: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(POOL).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in t
            .range((repo, "")..(repo, "\u{10FFFF}"))
            .map_err(|e| self.err(e))?
        {
            let (k, v) = row.map_err(|e| self.err(e))?;
            out.push((k.value().1.to_string(), v.value().0));
        }
        Ok(out)
    }
}

/// Brings a store of schema 1 to schema 2: every record gets an arrival number (in key order,
/// per distribution; a source before its binaries) and is listed by it.
fn upgrade_from_1(db: &Database) -> Result<(), redb::Error> {
    let tx = db.begin_write()?;
    {
        let mut next: std::collections::BTreeMap<(String, String), u64> = Default::default();
        let mut st = tx.open_table(SOURCES)?;
        let mut so = tx.open_table(SOURCE_ORDER)?;
        let keys: Vec<(String, String, String)> = st
            .iter()?
            .map(|row| {
                let (k, _) = row?;
                let (repo, dist, name) = k.value();
                Ok((repo.to_string(), dist.to_string(), name.to_string()))
            })
            .collect::<Result<_, redb::StorageError>>()?;
        let mut bt = tx.open_table(BINARIES)?;
        let mut bo = tx.open_table(BINARY_ORDER)?;
        type BinaryKey = (String, String, String, String, String);
        let bkeys: Vec<BinaryKey> = bt
            .iter()?
            .map(|row| {
                let (k, _) = row?;
                let (r, d, s, p, a) = k.value();
                Ok((
                    r.to_string(),
                    d.to_string(),
                    s.to_string(),
                    p.to_string(),
                    a.to_string(),
                ))
            })
            .collect::<Result<_, redb::StorageError>>()?;
        // Sources and binaries, merged by (repository, distribution, source): a group's
        // source arrives before its binaries.
        let mut sources = keys.into_iter().peekable();
        let mut binaries = bkeys.into_iter().peekable();
        loop {
            let take_source = match (sources.peek(), binaries.peek()) {
                (Some(s), Some(b)) => (&s.0, &s.1, &s.2) <= (&b.0, &b.1, &b.2),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_source {
                let (repo, dist, name) = sources.next().expect("peeked");
                let n = next.entry((repo.clone(), dist.clone())).or_insert(1);
                let key = (repo.as_str(), dist.as_str(), name.as_str());
                let mut value = n.to_le_bytes().to_vec();
                value.extend_from_slice(st.get(key)?.expect("listed above").value());
                st.insert(key, value.as_slice())?;
                so.insert((repo.as_str(), dist.as_str(), *n), name.as_str())?;
                *n += 1;
            } else {
                let (repo, dist, source, package, arch) = binaries.next().expect("peeked");
                let n = next.entry((repo.clone(), dist.clone())).or_insert(1);
                let key = (
                    repo.as_str(),
                    dist.as_str(),
                    source.as_str(),
                    package.as_str(),
                    arch.as_str(),
                );
                let mut value = n.to_le_bytes().to_vec();
                value.extend_from_slice(bt.get(key)?.expect("listed above").value());
                bt.insert(key, value.as_slice())?;
                bo.insert(
                    (repo.as_str(), dist.as_str(), *n),
                    (source.as_str(), package.as_str(), arch.as_str()),
                )?;
                *n += 1;
            }
        }
        let mut na = tx.open_table(NEXT_ARRIVAL)?;
        for ((repo, dist), n) in &next {
            na.insert((repo.as_str(), dist.as_str()), *n)?;
        }
        tx.open_table(META)?.insert("schema", SCHEMA_VERSION)?;
    }
    tx.commit()?;
    Ok(())
}

/// Reads the group of `source` in `dist` from the sources and binaries tables of any
/// transaction.
fn read_group(
    store: &Store,
    st: &impl ReadableTable<(&'static str, &'static str, &'static str), &'static [u8]>,
    bt: &impl ReadableTable<
        (
            &'static str,
            &'static str,
            &'static str,
            &'static str,
            &'static str,
        ),
        &'static [u8],
    >,
    repo: &str,
    dist: &str,
    source: &str,
) -> Result<Group, StoreError> {
    let path = &store.path;
    let source_rec = st
        .get((repo, dist, source))
        .map_err(|e| store.err(e))?
        .map(|v| decode_source(path, source, v.value()))
        .transpose()?;
    let mut binaries = Vec::new();
    for row in bt
        .range((repo, dist, source, "", "")..(repo, dist, source, "\u{10FFFF}", ""))
        .map_err(|e| store.err(e))?
    {
        let (k, v) = row.map_err(|e| store.err(e))?;
        let (_, _, _, package, arch) = k.value();
        binaries.push(Binary {
            package: package.to_string(),
            architecture: arch.to_string(),
            record: decode_binary(path, package, v.value())?,
        });
    }
    Ok(Group {
        source: source_rec,
        binaries,
    })
}

fn decode<T: DeserializeOwned>(path: &Path, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Record {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// Splits a stored record into its arrival number and the rest.
fn split_arrival(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (seq, rest) = bytes.split_at_checked(8)?;
    Some((u64::from_le_bytes(seq.try_into().ok()?), rest))
}

/// A source record: its arrival number (8 bytes, little-endian), then its JSON.
fn encode_source(r: &SourceRecord, seq: u64) -> Vec<u8> {
    let mut out = seq.to_le_bytes().to_vec();
    serde_json::to_writer(&mut out, r).expect("records serialize");
    out
}

fn decode_source(path: &Path, key: &str, bytes: &[u8]) -> Result<SourceRecord, StoreError> {
    let (_, json) = split_arrival(bytes).ok_or_else(|| StoreError::Record {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason: "record too short".into(),
    })?;
    decode(path, key, json)
}

/// A binary record: its arrival number (8 bytes, little-endian), the 4-byte little-endian
/// length of the JSON of its fields, that JSON, then the stanza text as is.
fn encode_binary(r: &BinaryRecord, seq: u64) -> Vec<u8> {
    let json = serde_json::to_vec(r).expect("records serialize");
    let mut out = Vec::with_capacity(12 + json.len() + r.stanza.len());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(r.stanza.as_bytes());
    out
}

/// The arrival number, JSON and stanza of a stored binary record.
type BinaryParts<'a> = (u64, (&'a [u8], &'a [u8]));

fn split_binary(bytes: &[u8]) -> Option<BinaryParts<'_>> {
    let (seq, rest) = split_arrival(bytes)?;
    let (len, rest) = rest.split_at_checked(4)?;
    let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
    Some((seq, rest.split_at_checked(len)?))
}

fn decode_binary(path: &Path, key: &str, bytes: &[u8]) -> Result<BinaryRecord, StoreError> {
    let corrupt = |reason: &str| StoreError::Record {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason: reason.to_string(),
    };
    let (_, (json, stanza)) = split_binary(bytes).ok_or_else(|| corrupt("record too short"))?;
    let mut record: BinaryRecord = decode(path, key, json)?;
    record.stanza = std::str::from_utf8(stanza)
        .map_err(|_| corrupt("stanza is not UTF-8"))?
        .to_string();
    Ok(record)
}

/// Marks: per file, the path's length (u32 LE), the path, the number of marks (u32 LE), then
/// the marks.
fn encode_marks(marks: &Marks) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, list) in marks {
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for m in list {
            m.encode(&mut out);
        }
    }
    out
}

fn decode_marks(mut b: &[u8]) -> Marks {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = b.split_at_checked(n)?;
        *b = rest;
        Some(head)
    }
    fn u32_of(b: &mut &[u8]) -> Option<usize> {
        Some(u32::from_le_bytes(take(b, 4)?.try_into().ok()?) as usize)
    }
    let mut out = Marks::new();
    let mut one = |b: &mut &[u8]| -> Option<()> {
        let n = u32_of(b)?;
        let path = std::str::from_utf8(take(b, n)?).ok()?.to_string();
        let count = u32_of(b)?;
        let mut list = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            list.push(Mark::decode(take(b, Mark::ENCODED_LEN)?)?);
        }
        out.insert(path, list);
        Some(())
    };
    while !b.is_empty() {
        if one(&mut b).is_none() {
            tracing::warn!("saved digest states are unreadable; hashing anew");
            return Marks::new();
        }
    }
    out
}

/// The fields of a stored binary record that publishing needs, borrowed where possible.
#[derive(Deserialize)]
struct BinaryHeader<'a> {
    #[serde(borrow)]
    component: Cow<'a, str>,
    package_type: PackageType,
    #[serde(borrow)]
    section: Cow<'a, str>,
    #[serde(borrow)]
    filename: Cow<'a, str>,
}

/// The packages of one distribution (see [`Store::records`]).
pub struct DistRecords<'a> {
    store: &'a Store,
    tx: redb::ReadTransaction,
    repo: &'a str,
    dist: &'a str,
}

impl DistRecords<'_> {
    fn numbers_in<V: redb::Value + 'static>(
        &self,
        table: TableDefinition<(&'static str, &'static str, u64), V>,
    ) -> Result<Vec<u64>, StoreError> {
        let s = self.store;
        let t = self.tx.open_table(table).map_err(|e| s.err(e))?;
        let mut out = Vec::new();
        for row in t
            .range((self.repo, self.dist, 0)..=(self.repo, self.dist, u64::MAX))
            .map_err(|e| s.err(e))?
        {
            out.push(row.map_err(|e| s.err(e))?.0.value().2);
        }
        Ok(out)
    }
}

impl Records for DistRecords<'_> {
    type Error = StoreError;

    fn arrivals(&self) -> Result<(Vec<u64>, Vec<u64>), StoreError> {
        Ok((
            self.numbers_in(BINARY_ORDER)?,
            self.numbers_in(SOURCE_ORDER)?,
        ))
    }

    fn binaries(&self, after: u64, f: &mut dyn FnMut(BinaryRow<'_>)) -> Result<(), StoreError> {
        let s = self.store;
        let (repo, dist) = (self.repo, self.dist);
        let order_t = self.tx.open_table(BINARY_ORDER).map_err(|e| s.err(e))?;
        let binaries_t = self.tx.open_table(BINARIES).map_err(|e| s.err(e))?;
        let contents_t = self.tx.open_table(CONTENTS).map_err(|e| s.err(e))?;
        for row in order_t
            .range((repo, dist, after.saturating_add(1))..=(repo, dist, u64::MAX))
            .map_err(|e| s.err(e))?
        {
            let (k, v) = row.map_err(|e| s.err(e))?;
            let seq = k.value().2;
            let (source, package, architecture) = v.value();
            let corrupt = |reason: String| StoreError::Record {
                path: s.path.clone(),
                key: package.to_string(),
                reason,
            };
            let value = binaries_t
                .get((repo, dist, source, package, architecture))
                .map_err(|e| s.err(e))?
                .ok_or_else(|| corrupt(format!("arrival {seq} names a missing record")))?;
            let (json, stanza) = split_binary(value.value())
                .ok_or_else(|| corrupt("record too short".into()))?
                .1;
            let header: BinaryHeader<'_> =
                serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))?;
            let list = match header.package_type {
                PackageType::Deb => contents_t
                    .get((repo, header.filename.as_ref()))
                    .map_err(|e| s.err(e))?,
                PackageType::Udeb => None,
            };
            f(BinaryRow {
                seq,
                package,
                architecture,
                component: &header.component,
                package_type: header.package_type,
                section: &header.section,
                stanza,
                contents: list.as_ref().map(|l| l.value()),
            });
        }
        Ok(())
    }

    fn sources(&self, after: u64, f: &mut dyn FnMut(SourceRow<'_>)) -> Result<(), StoreError> {
        let s = self.store;
        let (repo, dist) = (self.repo, self.dist);
        let order_t = self.tx.open_table(SOURCE_ORDER).map_err(|e| s.err(e))?;
        let sources_t = self.tx.open_table(SOURCES).map_err(|e| s.err(e))?;
        for row in order_t
            .range((repo, dist, after.saturating_add(1))..=(repo, dist, u64::MAX))
            .map_err(|e| s.err(e))?
        {
            let (k, v) = row.map_err(|e| s.err(e))?;
            let seq = k.value().2;
            let name = v.value();
            let value = sources_t
                .get((repo, dist, name))
                .map_err(|e| s.err(e))?
                .ok_or_else(|| StoreError::Record {
                    path: s.path.clone(),
                    key: name.to_string(),
                    reason: format!("arrival {seq} names a missing record"),
                })?;
            let record = decode_source(&s.path, name, value.value())?;
            f(SourceRow {
                seq,
                name,
                component: &record.component,
                stanza: &record.stanza,
            });
        }
        Ok(())
    }
}

/// What a distribution holds: sources and binaries (with Contents file lists), in arrival
/// order (a record's arrival number is its place in its list, from 1).
#[derive(Debug, Default)]
pub struct DistContents {
    pub sources: Vec<(String, SourceRecord)>,
    pub binaries: Vec<(Binary, Option<String>)>,
}

/// Records held in memory (benchmarks and tests render from these without a store).
impl Records for DistContents {
    type Error = std::convert::Infallible;

    fn arrivals(&self) -> Result<(Vec<u64>, Vec<u64>), Self::Error> {
        let numbers = |n: usize| (1..=n as u64).collect();
        Ok((numbers(self.binaries.len()), numbers(self.sources.len())))
    }

    fn binaries(&self, after: u64, f: &mut dyn FnMut(BinaryRow<'_>)) -> Result<(), Self::Error> {
        for (seq, (b, list)) in (1..).zip(&self.binaries).skip(after as usize) {
            f(BinaryRow {
                seq,
                package: &b.package,
                architecture: &b.architecture,
                component: &b.record.component,
                package_type: b.record.package_type,
                section: &b.record.section,
                stanza: b.record.stanza.as_bytes(),
                contents: list.as_deref(),
            });
        }
        Ok(())
    }

    fn sources(&self, after: u64, f: &mut dyn FnMut(SourceRow<'_>)) -> Result<(), Self::Error> {
        for (seq, (name, s)) in (1..).zip(&self.sources).skip(after as usize) {
            f(SourceRow {
                seq,
                name,
                component: &s.component,
                stanza: &s.stanza,
            });
        }
        Ok(())
    }
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}

/// A write transaction. Nothing is visible to readers until [`Txn::commit`].
pub struct Txn<'s> {
    tx: WriteTransaction,
    store: &'s Store,
    /// Reference count changes per (repository, pool path), applied at commit so that a file
    /// dropped by one group and kept by another in the same transaction is never freed.
    pending: std::collections::BTreeMap<(String, String), (i64, String)>,
}

impl Txn<'_> {
    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        self.store.err(e)
    }

    /// Applies the pending reference changes and commits. Pool paths nothing refers to any
    /// more are recorded as freed (see [`Store::freed`]); their files must stay until the
    /// distributions that named them are published again.
    pub fn commit(self) -> Result<Vec<(String, String)>, StoreError> {
        let s = self.store;
        let mut freed = Vec::new();
        {
            let mut pool = self.tx.open_table(POOL).map_err(|e| s.err(e))?;
            let mut contents = self.tx.open_table(CONTENTS).map_err(|e| s.err(e))?;
            let mut freed_t = self.tx.open_table(POOL_FREED).map_err(|e| s.err(e))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            for ((repo, path), (delta, sha256)) in &self.pending {
                if *delta == 0 {
                    continue;
                }
                let key = (repo.as_str(), path.as_str());
                let current = pool
                    .get(key)
                    .map_err(|e| s.err(e))?
                    .map(|v| v.value().0)
                    .unwrap_or(0);
                let next = current as i64 + delta;
                if next <= 0 {
                    pool.remove(key).map_err(|e| s.err(e))?;
                    contents.remove(key).map_err(|e| s.err(e))?;
                    freed_t.insert(key, now).map_err(|e| s.err(e))?;
                    freed.push((repo.clone(), path.clone()));
                } else {
                    pool.insert(key, (next as u64, sha256.as_str()))
                        .map_err(|e| s.err(e))?;
                }
            }
        }
        self.tx.commit().map_err(|e| s.err(e))?;
        Ok(freed)
    }

    pub fn put_config<T: Serialize>(&mut self, key: &str, value: &T) -> Result<(), StoreError> {
        let mut t = self.tx.open_table(CONFIG).map_err(|e| self.store.err(e))?;
        t.insert(key, encode(value).as_slice())
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }

    /// Deletes a configuration object; false if there was none.
    pub fn delete_config(&mut self, key: &str) -> Result<bool, StoreError> {
        let mut t = self.tx.open_table(CONFIG).map_err(|e| self.store.err(e))?;
        let old = t.remove(key).map_err(|e| self.store.err(e))?;
        Ok(old.is_some())
    }

    /// The group of `source` in `dist`.
    pub fn group(&self, repo: &str, dist: &str, source: &str) -> Result<Group, StoreError> {
        let st = self.tx.open_table(SOURCES).map_err(|e| self.err(e))?;
        let bt = self.tx.open_table(BINARIES).map_err(|e| self.err(e))?;
        read_group(self.store, &st, &bt, repo, dist, source)
    }

    /// Removes a group from a distribution without touching pool references (a move).
    pub fn take_group(
        &mut self,
        repo: &str,
        dist: &str,
        source: &str,
    ) -> Result<Group, StoreError> {
        let group = self.group(repo, dist, source)?;
        let s = self.store;
        let mut st = self.tx.open_table(SOURCES).map_err(|e| s.err(e))?;
        let mut so = self.tx.open_table(SOURCE_ORDER).map_err(|e| s.err(e))?;
        if let Some(old) = st.remove((repo, dist, source)).map_err(|e| s.err(e))?
            && let Some((seq, _)) = split_arrival(old.value())
        {
            so.remove((repo, dist, seq)).map_err(|e| s.err(e))?;
        }
        let mut bt = self.tx.open_table(BINARIES).map_err(|e| s.err(e))?;
        let mut bo = self.tx.open_table(BINARY_ORDER).map_err(|e| s.err(e))?;
        for b in &group.binaries {
            let key = (
                repo,
                dist,
                source,
                b.package.as_str(),
                b.architecture.as_str(),
            );
            if let Some(old) = bt.remove(key).map_err(|e| s.err(e))?
                && let Some((seq, _)) = split_arrival(old.value())
            {
                bo.remove((repo, dist, seq)).map_err(|e| s.err(e))?;
            }
        }
        Ok(group)
    }

    /// Puts a group into a distribution without touching pool references (a move). Its
    /// records arrive now: they get the distribution's next arrival numbers, and so go to
    /// the end of its indices.
    pub fn place_group(
        &mut self,
        repo: &str,
        dist: &str,
        source: &str,
        group: &Group,
    ) -> Result<(), StoreError> {
        let s = self.store;
        let mut next_t = self.tx.open_table(NEXT_ARRIVAL).map_err(|e| s.err(e))?;
        let mut seq = next_t
            .get((repo, dist))
            .map_err(|e| s.err(e))?
            .map_or(1, |v| v.value());
        let mut st = self.tx.open_table(SOURCES).map_err(|e| s.err(e))?;
        let mut so = self.tx.open_table(SOURCE_ORDER).map_err(|e| s.err(e))?;
        if let Some(r) = &group.source {
            if let Some(old) = st
                .insert((repo, dist, source), encode_source(r, seq).as_slice())
                .map_err(|e| s.err(e))?
                && let Some((old_seq, _)) = split_arrival(old.value())
            {
                so.remove((repo, dist, old_seq)).map_err(|e| s.err(e))?;
            }
            so.insert((repo, dist, seq), source).map_err(|e| s.err(e))?;
            seq += 1;
        }
        let mut bt = self.tx.open_table(BINARIES).map_err(|e| s.err(e))?;
        let mut bo = self.tx.open_table(BINARY_ORDER).map_err(|e| s.err(e))?;
        for b in &group.binaries {
            let (package, arch) = (b.package.as_str(), b.architecture.as_str());
            if let Some(old) = bt
                .insert(
                    (repo, dist, source, package, arch),
                    encode_binary(&b.record, seq).as_slice(),
                )
                .map_err(|e| s.err(e))?
                && let Some((old_seq, _)) = split_arrival(old.value())
            {
                bo.remove((repo, dist, old_seq)).map_err(|e| s.err(e))?;
            }
            bo.insert((repo, dist, seq), (source, package, arch))
                .map_err(|e| s.err(e))?;
            seq += 1;
        }
        next_t.insert((repo, dist), seq).map_err(|e| s.err(e))?;
        Ok(())
    }

    /// Adds `delta` (+1 or -1) to the reference count of every pool file of a group; applied
    /// at commit.
    pub fn reference(&mut self, repo: &str, group: &Group, delta: i64) {
        for (path, sha256) in group.pool_paths() {
            let e = self
                .pending
                .entry((repo.to_string(), path))
                .or_insert((0, sha256.clone()));
            e.0 += delta;
            e.1 = sha256;
        }
    }

    /// The sha256 recorded for a pool path, if anything refers to it.
    pub fn pool_sha256(&self, repo: &str, path: &str) -> Result<Option<String>, StoreError> {
        let t = self.tx.open_table(POOL).map_err(|e| self.err(e))?;
        Ok(t.get((repo, path))
            .map_err(|e| self.err(e))?
            .map(|v| v.value().1.to_string()))
    }

    pub fn put_contents(
        &mut self,
        repo: &str,
        pool_path: &str,
        files: &str,
    ) -> Result<(), StoreError> {
        let mut t = self
            .tx
            .open_table(CONTENTS)
            .map_err(|e| self.store.err(e))?;
        t.insert((repo, pool_path), files)
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }

    /// Records the segments a distribution now uses: stores the new ones, counts references,
    /// and drops segments no distribution uses any more.
    pub fn use_segments(
        &mut self,
        previous: &std::collections::BTreeSet<String>,
        now: &std::collections::BTreeSet<String>,
        new: &[(String, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let s = self.store;
        let mut segments = self.tx.open_table(SEGMENTS).map_err(|e| s.err(e))?;
        let mut refs = self.tx.open_table(SEGMENT_REFS).map_err(|e| s.err(e))?;
        for (key, bytes) in new {
            segments
                .insert(key.as_str(), bytes.as_slice())
                .map_err(|e| s.err(e))?;
        }
        for key in now.difference(previous) {
            let n = refs
                .get(key.as_str())
                .map_err(|e| s.err(e))?
                .map(|v| v.value())
                .unwrap_or(0);
            refs.insert(key.as_str(), n + 1).map_err(|e| s.err(e))?;
        }
        for key in previous.difference(now) {
            let n = refs
                .get(key.as_str())
                .map_err(|e| s.err(e))?
                .map(|v| v.value())
                .unwrap_or(0);
            if n <= 1 {
                refs.remove(key.as_str()).map_err(|e| s.err(e))?;
                segments.remove(key.as_str()).map_err(|e| s.err(e))?;
            } else {
                refs.insert(key.as_str(), n - 1).map_err(|e| s.err(e))?;
            }
        }
        // Segments compressed now but used by no distribution are not kept.
        for (key, _) in new {
            if !now.contains(key) && refs.get(key.as_str()).map_err(|e| s.err(e))?.is_none() {
                segments.remove(key.as_str()).map_err(|e| s.err(e))?;
            }
        }
        Ok(())
    }

    /// Names of the sources that have anything in `dist`.
    pub fn source_names(
        &self,
        repo: &str,
        dist: &str,
    ) -> Result<std::collections::BTreeSet<String>, StoreError> {
        let mut names = std::collections::BTreeSet::new();
        let st = self.tx.open_table(SOURCES).map_err(|e| self.err(e))?;
        for row in st
            .range((repo, dist, "")..(repo, dist, "\u{10FFFF}"))
            .map_err(|e| self.err(e))?
        {
            names.insert(row.map_err(|e| self.err(e))?.0.value().2.to_string());
        }
        let bt = self.tx.open_table(BINARIES).map_err(|e| self.err(e))?;
        for row in bt
            .range((repo, dist, "", "", "")..(repo, dist, "\u{10FFFF}", "", ""))
            .map_err(|e| self.err(e))?
        {
            names.insert(row.map_err(|e| self.err(e))?.0.value().2.to_string());
        }
        Ok(names)
    }

    /// Marks a distribution as needing a publish, in the same transaction as the change that
    /// needs it: if the process dies before publishing, the next open publishes it.
    pub fn mark_unpublished(&mut self, repo: &str, dist: &str) -> Result<(), StoreError> {
        let s = self.store;
        let mut t = self.tx.open_table(PUBLISHED).map_err(|e| s.err(e))?;
        let mut state: PublishState = match t.get((repo, dist)).map_err(|e| s.err(e))? {
            Some(v) => decode(&s.path, dist, v.value())?,
            None => PublishState::default(),
        };
        state.in_progress = true;
        t.insert((repo, dist), encode(&state).as_slice())
            .map_err(|e| s.err(e))?;
        Ok(())
    }

    pub fn remove_publish_state(&mut self, repo: &str, dist: &str) -> Result<(), StoreError> {
        let s = self.store;
        let mut t = self.tx.open_table(PUBLISHED).map_err(|e| s.err(e))?;
        t.remove((repo, dist)).map_err(|e| s.err(e))?;
        let mut t = self.tx.open_table(DIGEST_MARKS).map_err(|e| s.err(e))?;
        t.remove((repo, dist)).map_err(|e| s.err(e))?;
        let mut t = self.tx.open_table(OUTLINES).map_err(|e| s.err(e))?;
        t.remove((repo, dist)).map_err(|e| s.err(e))?;
        Ok(())
    }

    /// Saves the outline of a distribution's published indices.
    pub fn set_outline(
        &mut self,
        repo: &str,
        dist: &str,
        outline: &Outline,
    ) -> Result<(), StoreError> {
        let s = self.store;
        let mut t = self.tx.open_table(OUTLINES).map_err(|e| s.err(e))?;
        t.insert((repo, dist), outline.encode().as_slice())
            .map_err(|e| s.err(e))?;
        Ok(())
    }

    pub fn set_digest_marks(
        &mut self,
        repo: &str,
        dist: &str,
        marks: &Marks,
    ) -> Result<(), StoreError> {
        let s = self.store;
        let mut t = self.tx.open_table(DIGEST_MARKS).map_err(|e| s.err(e))?;
        t.insert((repo, dist), encode_marks(marks).as_slice())
            .map_err(|e| s.err(e))?;
        Ok(())
    }

    pub fn set_publish_state(
        &mut self,
        repo: &str,
        dist: &str,
        state: &PublishState,
    ) -> Result<(), StoreError> {
        let mut t = self
            .tx
            .open_table(PUBLISHED)
            .map_err(|e| self.store.err(e))?;
        t.insert((repo, dist), encode(state).as_slice())
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_of_another_schema_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mbd.redb");
        drop(Store::open(&path).unwrap());
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META)
                .unwrap()
                .insert("schema", "999")
                .unwrap();
            tx.commit().unwrap();
        }
        match Store::open(&path) {
            Err(e @ StoreError::Schema { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("store schema version 999, this mbd needs 2"),
                    "{msg}"
                );
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("opened a store of another schema"),
        }
        // Nothing of ours was written: the schema mark is still the foreign one.
        let db = Database::create(&path).unwrap();
        let rx = db.begin_read().unwrap();
        assert_eq!(
            rx.open_table(META)
                .unwrap()
                .get("schema")
                .unwrap()
                .unwrap()
                .value(),
            "999"
        );
    }

    #[test]
    fn a_store_of_schema_1_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mbd.redb");
        let binary = |package: &str| BinaryRecord {
            version: "1.0".into(),
            source_version: "1.0".into(),
            component: "main".into(),
            package_type: PackageType::Deb,
            section: "misc".into(),
            filename: format!("pool/main/x/x/{package}_1.0_all.deb"),
            sha256: "00".into(),
            stanza: format!("Package: {package}\n"),
        };
        let source = SourceRecord {
            version: "1.0".into(),
            component: "main".into(),
            directory: "pool/main/x/x".into(),
            files: Vec::new(),
            stanza: "Package: x\n".into(),
        };
        // Schema 1: JSON sources, binaries as JSON length, JSON, stanza.
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META).unwrap().insert("schema", "1").unwrap();
            let mut st = tx.open_table(SOURCES).unwrap();
            st.insert(
                ("r", "d", "x"),
                serde_json::to_vec(&source).unwrap().as_slice(),
            )
            .unwrap();
            let mut bt = tx.open_table(BINARIES).unwrap();
            for (src, package) in [("x", "x-b"), ("x", "x-a"), ("y", "y")] {
                let encoded = encode_binary(&binary(package), 0);
                bt.insert(("r", "d", src, package, "all"), &encoded[8..])
                    .unwrap();
            }
            drop((st, bt));
            tx.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        let records = store.records("r", "d").unwrap();
        // In key order, the source before its binaries.
        assert_eq!(records.arrivals().unwrap(), (vec![2, 3, 4], vec![1]));
        let mut seen = Vec::new();
        records
            .binaries(0, &mut |b| seen.push((b.seq, b.package.to_string())))
            .unwrap();
        assert_eq!(
            seen,
            [
                (2, "x-a".to_string()),
                (3, "x-b".to_string()),
                (4, "y".to_string())
            ]
        );
        drop(records);
        let mut tx = store.write().unwrap();
        let group = tx.group("r", "d", "x").unwrap();
        assert_eq!(group.source, Some(source));
        assert_eq!(group.binaries[0].record, binary("x-a"));
        // The next arrival follows the upgraded ones.
        tx.place_group("r", "d", "z", &Group::default()).unwrap();
        let y = tx.take_group("r", "d", "y").unwrap();
        tx.place_group("r", "d", "y", &y).unwrap();
        tx.commit().unwrap();
        let records = store.records("r", "d").unwrap();
        assert_eq!(records.arrivals().unwrap().0, [2, 3, 5]);
    }

    #[test]
    fn an_arrival_whose_record_is_gone_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mbd.redb");
        let store = Store::open(&path).unwrap();
        let group = Group {
            source: None,
            binaries: vec![Binary {
                package: "x-bin".into(),
                architecture: "amd64".into(),
                record: BinaryRecord {
                    version: "1.0".into(),
                    source_version: "1.0".into(),
                    component: "main".into(),
                    package_type: PackageType::Deb,
                    section: "misc".into(),
                    filename: "pool/main/x/x/x-bin_1.0_amd64.deb".into(),
                    sha256: "00".into(),
                    stanza: "Package: x-bin\n".into(),
                },
            }],
        };
        let mut tx = store.write().unwrap();
        tx.place_group("r", "d", "x", &group).unwrap();
        tx.commit().unwrap();
        // Damage: the record goes, its arrival number stays.
        let tx = store.db.begin_write().unwrap();
        tx.open_table(BINARIES)
            .unwrap()
            .remove(("r", "d", "x", "x-bin", "amd64"))
            .unwrap();
        tx.commit().unwrap();
        let records = store.records("r", "d").unwrap();
        assert_eq!(records.arrivals().unwrap().0, [1]);
        match records.binaries(0, &mut |_| panic!("no row to give")) {
            Err(e @ StoreError::Record { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("mbd.redb"), "{msg}");
                assert!(
                    msg.contains("corrupt record x-bin: arrival 1 names a missing record"),
                    "{msg}"
                );
            }
            other => panic!("not refused: {:?}", other.map(|()| "ok")),
        }
    }

    #[test]
    fn binary_records_keep_their_stanza_raw() {
        let r = BinaryRecord {
            version: "1.0".into(),
            source_version: "1.0".into(),
            component: "main".into(),
            package_type: PackageType::Deb,
            section: "misc".into(),
            filename: "pool/main/x/x/x_1.0_all.deb".into(),
            sha256: "00".into(),
            stanza: "Package: x\nDescription: a \"quoted\" line\n".into(),
        };
        let bytes = encode_binary(&r, 7);
        assert!(bytes.ends_with(r.stanza.as_bytes()));
        assert_eq!(split_binary(&bytes).unwrap().0, 7);
        assert_eq!(decode_binary(Path::new("db"), "x", &bytes).unwrap(), r);
        assert!(decode_binary(Path::new("db"), "x", &bytes[..3]).is_err());
    }
}
