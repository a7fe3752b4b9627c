//! The repository engine: repositories with layouts and distributions, packages kept per
//! distribution and rollback slot in the store, files in the pool, and signed indices
//! published for apt.
//!
//! Every operation runs in one store transaction; the distributions it touched are published
//! right after it commits. See `docs/ARCHITECTURE.md` for the invariants.

pub mod compression;
mod configuration;
pub mod distribution;
mod dists;
mod include;
pub mod index;
pub mod layout;
mod migration;
pub mod mirror;
pub mod outline;
pub mod pool;
pub mod publish;
mod query;
pub mod release;
mod retire;
mod snapshot;
pub mod store;
mod undo;

pub use include::Staged;
pub use query::{Ls, LsEntry, LsRollback, Show, ShowEntry, ShowRollback};

use crate::changes::Changes;
use crate::checksums::Digests;
use crate::deb::{self, BinaryPackage, DebError};
use crate::dsc::Dsc;
use crate::files::{ControlFileError, FileEntry, Trust};
use crate::openpgp::{ArchiveKey, KeyAlgorithm, OpenPgpError};
use crate::status::Status;
use crate::version::Version;
use compression::Levels;
use distribution::{DistName, Distribution};
use layout::{Layout, LayoutError, SuiteOptions};
use publish::{DistSpec, PublishError};
use release::ReleaseInfo;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use store::{Binary, BinaryRecord, Group, PoolFile, SourceRecord, Store, StoreError, Txn};

/// How long superseded by-hash files stay (seconds).
pub const BY_HASH_GRACE: i64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Key(#[from] OpenPgpError),
    #[error(transparent)]
    ControlFile(#[from] ControlFileError),
    #[error(transparent)]
    Deb(#[from] DebError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{home}: no mbd setup here (run 'mbd --home {home} setup ...' first)")]
    NotSetUp { home: PathBuf },
    #[error("invalid setup: {0}")]
    Setup(String),
    #[error("{0}")]
    Malformed(String),
    #[error("debmirror export to {path}: {reason}")]
    Export { path: PathBuf, reason: String },
    #[error("No such repository '{0}'")]
    NoSuchRepository(String),
    #[error("No distribution for codename '{codename}' in repository '{repository}'")]
    NoSuchCodename {
        repository: String,
        codename: String,
    },
    #[error("No distribution for suite '{suite}' in layout '{layout}'")]
    NoSuchSuite { suite: String, layout: String },
    #[error("No rollback distribution '{dist}': suite '{suite}' keeps {count} rollbacks")]
    NoSuchRollback {
        dist: String,
        suite: String,
        count: u32,
    },
    #[error("{file}: component '{component}' is not one of {dist}'s components ({components})")]
    Component {
        file: PathBuf,
        component: String,
        dist: String,
        components: String,
    },
    #[error("{file}: {package} {version} is not newer than {existing} in {dist}")]
    NotNewer {
        file: PathBuf,
        package: String,
        version: String,
        existing: String,
        dist: String,
    },
    #[error("{file}: {path} is already in the pool with different content")]
    PoolConflict { file: PathBuf, path: String },
    #[error("{file}: {reason}")]
    Refused { file: PathBuf, reason: String },
    #[error("No such source '{source_name}' in {dist}{}", version.as_ref().map(|v| format!(" (version {v})")).unwrap_or_default())]
    NoSuchSource {
        source_name: String,
        dist: String,
        version: Option<String>,
    },
    #[error("You can't migrate from '{0}': its suite migrates nowhere")]
    CannotMigrate(String),
    #[error("Version '{version}' already migrated to '{target}'")]
    AlreadyMigrated { version: String, target: String },
    #[error("Remove '{source_name}' from '{target}' first to restore it from rollback")]
    RestoreOccupied { source_name: String, target: String },
    #[error("Snapshot '{name}' of {dist} already exists")]
    SnapshotExists { dist: String, name: String },
    #[error("No snapshot '{name}' of {dist}")]
    NoSuchSnapshot { dist: String, name: String },
    #[error("Invalid snapshot name '{name}': {reason}")]
    SnapshotName { name: String, reason: &'static str },
    #[error("Ambiguous meta-distribution '{meta}': {first} and {second}")]
    AmbiguousMeta {
        meta: String,
        first: String,
        second: String,
    },
}

impl RepoError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RepoError + '_ {
        move |source| RepoError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The mbd instance: its identity names the archive (Origin) and its key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    pub identity: String,
}

impl Instance {
    pub fn origin(&self) -> String {
        format!("mbd archive {}", self.identity)
    }
}

/// A repository: an identity, a layout, the codenames it carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Repository {
    pub identity: String,
    pub layout: String,
    pub codenames: Vec<String>,
    pub allow_unauthenticated_uploads: bool,
    /// Binary-only uploads are installed directly (off by default: sources are built here).
    #[serde(default)]
    pub allow_binary_uploads: bool,
    /// Where it stands in the status model: uploads are accepted only while it is active.
    /// Repositories stored before the status model existed are active.
    #[serde(default = "Status::active")]
    pub status: Status,
}

impl Repository {
    /// Parses `<id>:<layout>:<codename>[+<codename>...]` (the `setup --repositories` syntax);
    /// repository `test` allows unauthenticated uploads, as in mini-buildd.
    pub fn parse_spec(spec: &str, layouts: &[Layout]) -> Result<Repository, String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (id, layout_name, codenames) = match parts.as_slice() {
            [id, layout, codenames] => (*id, *layout, *codenames),
            _ => {
                return Err(format!(
                    "'{spec}' is not '<id>:<layout>:<codename>[+<codename>...]'"
                ));
            }
        };
        if !distribution::valid_word(id) {
            return Err(format!("repository identity '{id}' must match [a-z0-9]+"));
        }
        if !layouts.iter().any(|l| l.name == layout_name) {
            let names: Vec<&str> = layouts.iter().map(|l| l.name.as_str()).collect();
            return Err(format!(
                "unknown layout '{layout_name}' (known: {})",
                names.join(", ")
            ));
        }
        let codenames: Vec<String> = codenames.split('+').map(str::to_string).collect();
        if let Some(bad) = codenames.iter().find(|c| !distribution::valid_word(c)) {
            return Err(format!("repository '{id}': '{bad}' is not a codename"));
        }
        Ok(Repository {
            identity: id.to_string(),
            layout: layout_name.to_string(),
            codenames,
            allow_unauthenticated_uploads: id == "test",
            allow_binary_uploads: false,
            status: Status::active(),
        })
    }
}

/// What `setup` is asked to create.
#[derive(Debug, Clone, Default)]
pub struct SetupOptions {
    pub identity: Option<String>,
    /// `codename:arch+arch`
    pub distributions: Vec<String>,
    /// `id:layout:codename+codename`
    pub repositories: Vec<String>,
    pub key_algorithm: KeyAlgorithm,
}

/// A distribution name resolved against the configuration.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: DistName,
    pub repository: Repository,
    pub layout: Layout,
    pub suite: SuiteOptions,
    pub distribution: Distribution,
}

impl Resolved {
    pub fn is_rollback(&self) -> bool {
        self.name.rollback.is_some()
    }

    fn rollback_names(&self) -> Vec<String> {
        (0..self.suite.rollback)
            .map(|n| self.name.with_rollback(Some(n)).to_string())
            .collect()
    }

    fn main(&self) -> Resolved {
        Resolved {
            name: self.name.main(),
            ..self.clone()
        }
    }
}

/// The repository engine on one home directory.
pub struct Engine {
    home: PathBuf,
    store: Store,
    key: ArchiveKey,
    instance: Instance,
    compression: Levels,
    /// Ignore cached compressed segments (a cold publish).
    cold: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Engine({})", self.home.display())
    }
}

pub fn store_path(home: &Path) -> PathBuf {
    home.join("mbd.redb")
}

pub fn key_path(home: &Path) -> PathBuf {
    home.join("keys/archive.key")
}

/// The wall clock (seconds since the epoch): how long superseded by-hash files have been kept.
pub fn wall_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The publish Date: `SOURCE_DATE_EPOCH` when set (reproducible builds' convention), else now.
pub fn publish_time() -> i64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        })
}

impl Engine {
    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    pub fn key(&self) -> &ArchiveKey {
        &self.key
    }

    /// Makes publishes recompress everything instead of reusing cached segments.
    pub fn set_cold(&self, cold: bool) {
        self.cold.store(cold, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn set_compression(&mut self, c: Levels) {
        self.compression = c;
    }

    fn journal(&self) -> pool::Journal {
        pool::Journal::new(self.home.join("var/pool-journal"))
    }

    pub fn repo_dir(&self, id: &str) -> PathBuf {
        self.home.join("repositories").join(id)
    }
}
