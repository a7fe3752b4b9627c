//! The repository engine: repositories with layouts and distributions, packages kept per
//! distribution and rollback slot in the store, files in the pool, and signed indices
//! published for apt.
//!
//! Every operation runs in one store transaction; the distributions it touched are published
//! right after it commits. See `docs/ARCHITECTURE.md` for the invariants.

pub mod compression;
pub mod distribution;
mod include;
pub mod index;
pub mod layout;
pub mod outline;
pub mod pool;
pub mod publish;
pub mod release;
pub mod store;

pub use include::Staged;

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
}

/// Versions of one source, per distribution (shaped like mini-buildd's `ls`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LsEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    pub rollbacks: BTreeMap<String, LsRollback>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LsRollback {
    pub version: String,
    pub component: String,
    pub architecture: String,
}

/// repository → main distribution → entry
pub type Ls = BTreeMap<String, BTreeMap<String, LsEntry>>;

/// `ls` plus what the reference `show` adds: the `.dsc` path (relative to the repositories
/// directory) and the suite's migration state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShowEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    pub dsc_path: Option<String>,
    /// Upload `.changes` of this version (filled once uploads are recorded).
    pub changes_paths: Vec<String>,
    pub uploadable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrates_to: Option<String>,
    pub is_migrated: bool,
    pub rollbacks: BTreeMap<String, ShowRollback>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShowRollback {
    pub version: String,
    pub component: String,
    pub architecture: String,
    pub dsc_path: Option<String>,
}

/// repository → main distribution → entry
pub type Show = BTreeMap<String, BTreeMap<String, ShowEntry>>;

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

/// Reads back a file of the previous publish of the distribution in `dist_dir` from its
/// by-hash copy, with room to grow: `None` if it is gone or does not have the digest (the
/// publish then does without it).
fn load_file(dist_dir: &Path, path: &str, digest: &[u8; 32]) -> Option<Vec<u8>> {
    use sha2::Digest;
    let by_hash = publish::by_hash_path(&dist_dir.join(path), "SHA256", &hex::encode(digest));
    let mut file = std::fs::File::open(&by_hash).ok()?;
    let len = file.metadata().ok()?.len() as usize;
    let mut bytes = Vec::with_capacity(publish::room(len));
    std::io::Read::read_to_end(&mut file, &mut bytes).ok()?;
    let fits = sha2::Sha256::digest(&bytes)[..] == digest[..];
    if !fits {
        tracing::warn!(path = %by_hash.display(), "previous index differs from its digest");
    }
    fits.then_some(bytes)
}

/// Whether the previous publish's file `path` is in place: its by-hash copy has the size
/// `digests` say (its content is checked against the store's outline by the caller).
fn present(dist_dir: &Path, path: &str, digests: &Digests) -> bool {
    std::fs::metadata(publish::by_hash_path(
        &dist_dir.join(path),
        "SHA256",
        &digests.sha256,
    ))
    .is_ok_and(|m| m.is_file() && m.len() == digests.size)
}

/// The wall clock (seconds since the epoch): how long superseded by-hash files have been kept.
fn wall_clock() -> i64 {
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

fn short_hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .and_then(|h| h.split('.').next().map(|s| s.trim().to_string()))
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .unwrap_or_else(|| "mbd".to_string())
}

impl Engine {
    /// Creates (or extends) the setup on `home`: the archive key if missing, layouts,
    /// distributions and repositories; then publishes every distribution.
    pub fn setup(home: &Path, opts: &SetupOptions) -> Result<Engine, RepoError> {
        std::fs::create_dir_all(home).map_err(RepoError::io(home))?;
        let store = Store::open(&store_path(home))?;
        let instance = match (store.config::<Instance>("instance")?, &opts.identity) {
            (_, Some(id)) => Instance {
                identity: id.clone(),
            },
            (Some(existing), None) => existing,
            (None, None) => Instance {
                identity: short_hostname(),
            },
        };
        if instance.identity.is_empty()
            || !instance
                .identity
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(RepoError::Setup(format!(
                "identity '{}' must match [a-zA-Z0-9-]+",
                instance.identity
            )));
        }
        let user_id = format!(
            "mbd archive {} <mbd@{}>",
            instance.identity, instance.identity
        );
        let (key, _) = ArchiveKey::load_or_generate(&key_path(home), &user_id, opts.key_algorithm)?;
        let mut distributions = Vec::new();
        for spec in &opts.distributions {
            distributions.push(Distribution::parse_spec(spec).map_err(RepoError::Setup)?);
        }
        let layouts = layout::builtin();
        let mut repositories = Vec::new();
        for spec in &opts.repositories {
            repositories.push(Repository::parse_spec(spec, &layouts).map_err(RepoError::Setup)?);
        }
        {
            let mut tx = store.write()?;
            tx.put_config("instance", &instance)?;
            tx.commit()?;
        }
        let engine = Engine {
            home: home.to_path_buf(),
            store,
            key,
            instance,
            compression: Levels::default(),
            cold: std::sync::atomic::AtomicBool::new(false),
        };
        engine.configure(&distributions, &repositories)?;
        Ok(engine)
    }

    /// Adds or replaces distributions and repositories (and writes the built-in layouts);
    /// every repository's codenames must have a distribution. Checks the meta-distribution
    /// map and publishes. Nothing is written when a check fails.
    pub fn configure(
        &self,
        distributions: &[Distribution],
        repositories: &[Repository],
    ) -> Result<(), RepoError> {
        let layouts = layout::builtin();
        let known_codenames: BTreeSet<String> = distributions
            .iter()
            .map(|d| d.codename.clone())
            .chain(
                self.store
                    .configs::<Distribution>("distribution/")?
                    .into_iter()
                    .map(|(_, d)| d.codename),
            )
            .collect();
        for r in repositories {
            for c in &r.codenames {
                if !known_codenames.contains(c) {
                    return Err(RepoError::Setup(format!(
                        "repository '{}': no distribution for codename '{c}' (add --distributions {c}:<arch>)",
                        r.identity
                    )));
                }
            }
        }
        let before_meta = self.meta_distributions();
        let mut tx = self.store.write()?;
        for l in &layouts {
            tx.put_config(&format!("layout/{}", l.name), l)?;
        }
        for d in distributions {
            tx.put_config(&format!("distribution/{}", d.codename), d)?;
        }
        for r in repositories {
            tx.put_config(&format!("repository/{}", r.identity), r)?;
        }
        if before_meta.is_ok() {
            // A new repository must not make the meta-distribution map ambiguous: look at
            // the map this transaction would make before committing it.
            let mut repos = self.repositories()?;
            repos.retain(|r| !repositories.iter().any(|n| n.identity == r.identity));
            repos.extend(repositories.iter().cloned());
            meta_map(&repos, |name| {
                match layouts.iter().find(|l| l.name == name) {
                    Some(l) => Ok(l.clone()),
                    None => self.layout(name),
                }
            })?;
        }
        tx.commit()?;
        self.check_meta_distributions()?;
        self.publish_all()
    }

    /// Opens an existing setup. Finishes what a crash interrupted: removes pool files placed
    /// by an uncommitted operation and republishes distributions whose publish did not end.
    pub fn open(home: &Path) -> Result<Engine, RepoError> {
        if !store_path(home).exists() || !key_path(home).exists() {
            return Err(RepoError::NotSetUp {
                home: home.to_path_buf(),
            });
        }
        let store = Store::open(&store_path(home))?;
        let key = ArchiveKey::load(&key_path(home))?;
        let instance =
            store
                .config::<Instance>("instance")?
                .ok_or_else(|| RepoError::NotSetUp {
                    home: home.to_path_buf(),
                })?;
        let engine = Engine {
            home: home.to_path_buf(),
            store,
            key,
            instance,
            compression: Levels::default(),
            cold: std::sync::atomic::AtomicBool::new(false),
        };
        engine.recover()?;
        Ok(engine)
    }

    fn recover(&self) -> Result<(), RepoError> {
        let journal = self.journal();
        let leftovers = journal.leftovers().map_err(RepoError::io(&self.home))?;
        if !leftovers.is_empty() {
            for repo in self.repositories()? {
                let referenced: BTreeSet<String> = self
                    .store
                    .pool_refs(&repo.identity)?
                    .into_iter()
                    .map(|(p, _)| p)
                    .collect();
                for line in &leftovers {
                    if let Some(rel) = line.strip_prefix(&format!("{}/", repo.identity))
                        && !referenced.contains(rel)
                    {
                        pool::remove(&self.repo_dir(&repo.identity), rel)
                            .map_err(RepoError::io(&self.home))?;
                    }
                }
            }
        }
        journal.end().map_err(RepoError::io(&self.home))?;
        for repo in self.repositories()? {
            let dir = self.repo_dir(&repo.identity);
            pool::Staging::clear(&dir).map_err(RepoError::io(&dir))?;
        }
        let now = wall_clock();
        for (_, dist) in self.store.unfinished_publishes()? {
            let base = dist
                .split_once("/snapshots/")
                .map_or(dist.as_str(), |(b, _)| b);
            let r = self.resolve(base)?;
            self.publish_one(&r, &dist, now)?;
        }
        self.collect_garbage()
    }

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

    pub fn repositories(&self) -> Result<Vec<Repository>, RepoError> {
        Ok(self
            .store
            .configs::<Repository>("repository/")?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// A configuration object of the engine (`repository/`, `distribution/`, `layout/`).
    fn put_config<T: Serialize>(&self, key: &str, value: &T) -> Result<(), RepoError> {
        let mut tx = self.store.write()?;
        tx.put_config(key, value)?;
        tx.commit()?;
        Ok(())
    }

    /// Every base distribution's configuration.
    pub fn distributions(&self) -> Result<Vec<Distribution>, RepoError> {
        Ok(self
            .store
            .configs::<Distribution>("distribution/")?
            .into_iter()
            .map(|(_, d)| d)
            .collect())
    }

    /// The distribution's configuration, if there is one.
    pub fn find_distribution(&self, codename: &str) -> Result<Option<Distribution>, RepoError> {
        Ok(self.store.config(&format!("distribution/{codename}"))?)
    }

    /// Saves a distribution's configuration (one transaction).
    pub fn put_distribution(&self, d: &Distribution) -> Result<(), RepoError> {
        self.put_config(&format!("distribution/{}", d.codename), d)
    }

    /// The repository's configuration, if there is one.
    pub fn find_repository(&self, id: &str) -> Result<Option<Repository>, RepoError> {
        Ok(self.store.config(&format!("repository/{id}"))?)
    }

    /// Saves a repository's configuration (one transaction).
    pub fn put_repository(&self, r: &Repository) -> Result<(), RepoError> {
        self.put_config(&format!("repository/{}", r.identity), r)
    }

    /// Objects an earlier mbd kept in the engine's store under `prefix` (raw JSON, by key
    /// without the prefix), to move them to the application's state store.
    pub fn legacy_objects(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, RepoError> {
        Ok(self
            .store
            .configs::<serde_json::Value>(prefix)?
            .into_iter()
            .map(|(k, v)| {
                let id = k[prefix.len()..].to_string();
                (id, serde_json::to_vec(&v).expect("JSON serializes"))
            })
            .collect())
    }

    /// Writes an object as an earlier mbd did (for tests of the move).
    #[cfg(test)]
    pub(crate) fn put_legacy(&self, key: &str, value: &serde_json::Value) -> Result<(), RepoError> {
        self.put_config(key, value)
    }

    /// Deletes legacy objects (full keys) once they are moved.
    pub fn forget_legacy(&self, keys: &[String]) -> Result<(), RepoError> {
        let mut tx = self.store.write()?;
        for k in keys {
            tx.delete_config(k)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The sources of a distribution (main or rollback) with their versions.
    pub fn dist_sources(&self, dist: &str) -> Result<BTreeMap<String, String>, RepoError> {
        let r = self.resolve(dist)?;
        Ok(self
            .store
            .dist_sources(&r.repository.identity, &r.name.to_string())?)
    }

    /// A repository's upload policy: whether it takes uploads that are not signed by an
    /// uploader key, and binary-only uploads.
    pub fn set_upload_policy(
        &self,
        id: &str,
        allow_unauthenticated: bool,
        allow_binary: bool,
    ) -> Result<Repository, RepoError> {
        let key = format!("repository/{id}");
        let mut repo: Repository = self
            .store
            .config(&key)?
            .ok_or_else(|| RepoError::NoSuchRepository(id.to_string()))?;
        repo.allow_unauthenticated_uploads = allow_unauthenticated;
        repo.allow_binary_uploads = allow_binary;
        self.put_config(&key, &repo)?;
        Ok(repo)
    }

    /// The distribution (base codename) configuration.
    pub fn distribution(&self, codename: &str) -> Result<Distribution, RepoError> {
        self.store
            .config(&format!("distribution/{codename}"))?
            .ok_or_else(|| RepoError::Malformed(format!("No distribution '{codename}'")))
    }

    pub fn layout(&self, name: &str) -> Result<Layout, RepoError> {
        self.store
            .config::<Layout>(&format!("layout/{name}"))?
            .ok_or_else(|| RepoError::Setup(format!("layout '{name}' is missing from the store")))
    }

    /// Every layout: the built-in ones and those added with [`Engine::set_layout`].
    pub fn layouts(&self) -> Result<Vec<Layout>, RepoError> {
        let mut all = layout::builtin();
        for (_, l) in self.store.configs::<Layout>("layout/")? {
            if !all.iter().any(|b| b.name == l.name) {
                all.push(l);
            }
        }
        Ok(all)
    }

    /// Adds or replaces a custom layout. Built-in layouts cannot be replaced, and a layout a
    /// repository uses cannot change (its distributions are published already).
    pub fn set_layout(&self, new: &Layout) -> Result<(), RepoError> {
        let valid_name = !new.name.is_empty()
            && new.name.len() <= 64
            && new
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b" ()_-.".contains(&b));
        if !valid_name {
            return Err(RepoError::Setup(format!(
                "layout name '{}' must be 1 to 64 of [A-Za-z0-9 ()_.-]",
                new.name
            )));
        }
        if layout::builtin().iter().any(|b| b.name == new.name) {
            return Err(RepoError::Setup(format!(
                "layout '{}' is built in; give a custom layout another name",
                new.name
            )));
        }
        if new.suites.is_empty() {
            return Err(RepoError::Setup(format!(
                "layout '{}' has no suites",
                new.name
            )));
        }
        new.validate()
            .map_err(|e| RepoError::Setup(e.to_string()))?;
        for rule in [
            &new.mandatory_version_regex,
            &new.experimental_mandatory_version_regex,
        ] {
            regex::Regex::new(rule).map_err(|e| {
                RepoError::Setup(format!(
                    "layout '{}': version rule '{rule}' is not a regular expression: {e}",
                    new.name
                ))
            })?;
        }
        let users: Vec<String> = self
            .repositories()?
            .into_iter()
            .filter(|r| r.layout == new.name)
            .map(|r| r.identity)
            .collect();
        if !users.is_empty() {
            return Err(RepoError::Setup(format!(
                "layout '{}' is used by repositories {}; add a new layout instead",
                new.name,
                users.join(", ")
            )));
        }
        let mut tx = self.store.write()?;
        tx.put_config(&format!("layout/{}", new.name), new)?;
        tx.commit()?;
        Ok(())
    }

    /// Resolves `<codename>-<repo>-<suite>[-rollback<N>]` against the configuration.
    pub fn resolve(&self, name: &str) -> Result<Resolved, RepoError> {
        let name = DistName::parse(name).map_err(RepoError::Malformed)?;
        let repository: Repository = self
            .store
            .config(&format!("repository/{}", name.repository))?
            .ok_or_else(|| RepoError::NoSuchRepository(name.repository.clone()))?;
        if !repository.codenames.contains(&name.codename) {
            return Err(RepoError::NoSuchCodename {
                repository: repository.identity,
                codename: name.codename,
            });
        }
        let distribution: Distribution = self
            .store
            .config(&format!("distribution/{}", name.codename))?
            .ok_or_else(|| RepoError::NoSuchCodename {
                repository: repository.identity.clone(),
                codename: name.codename.clone(),
            })?;
        let layout = self.layout(&repository.layout)?;
        let suite = layout
            .suite(&name.suite)
            .cloned()
            .ok_or_else(|| RepoError::NoSuchSuite {
                suite: name.suite.clone(),
                layout: layout.name.clone(),
            })?;
        if let Some(n) = name.rollback
            && n >= suite.rollback
        {
            return Err(RepoError::NoSuchRollback {
                dist: name.to_string(),
                suite: suite.name,
                count: suite.rollback,
            });
        }
        Ok(Resolved {
            name,
            repository,
            layout,
            suite,
            distribution,
        })
    }

    /// Every distribution name (main and rollback) of every repository, in layout order.
    pub fn all_dists(&self) -> Result<Vec<DistName>, RepoError> {
        let mut out = Vec::new();
        for repo in self.repositories()? {
            out.extend(repository_dists(&repo, &self.layout(&repo.layout)?));
        }
        Ok(out)
    }

    /// A repository's check: its layout and distributions exist, and every distribution it
    /// publishes verifies as apt would see it (signed by the archive key, every listed index
    /// of the listed size and SHA-256). Returns the problems found; none means it passed.
    pub fn check_repository(&self, id: &str) -> Result<Vec<publish::Problem>, RepoError> {
        let repo: Repository = self
            .store
            .config(&format!("repository/{id}"))?
            .ok_or_else(|| RepoError::NoSuchRepository(id.to_string()))?;
        let mut problems = Vec::new();
        let dists_root = self.repo_dir(id).join("dists");
        let config_problem = |reason: String| publish::Problem {
            path: dists_root.clone(),
            reason,
            stale: Vec::new(),
        };
        let layout = match self.layout(&repo.layout) {
            Ok(l) => l,
            Err(e) => return Ok(vec![config_problem(e.to_string())]),
        };
        for codename in &repo.codenames {
            if self
                .store
                .config::<Distribution>(&format!("distribution/{codename}"))?
                .is_none()
            {
                problems.push(config_problem(format!(
                    "no distribution for codename '{codename}'"
                )));
            }
        }
        let keyring = self.key.keyring();
        for name in repository_dists(&repo, &layout) {
            problems.extend(publish::verify(
                &dists_root.join(name.to_string()),
                &keyring,
            ));
        }
        Ok(problems)
    }

    /// Publishes a repository's distributions and repairs what [`Engine::check_repository`]
    /// finds: damaged index files (and their by-hash copies) are deleted and published anew.
    /// Returns the problems that remain.
    pub fn repair_repository(&self, id: &str) -> Result<Vec<publish::Problem>, RepoError> {
        let repo: Repository = self
            .store
            .config(&format!("repository/{id}"))?
            .ok_or_else(|| RepoError::NoSuchRepository(id.to_string()))?;
        let dists = repository_dists(&repo, &self.layout(&repo.layout)?);
        self.publish(&dists)?;
        let problems = self.check_repository(id)?;
        if problems.is_empty() {
            return Ok(problems);
        }
        for p in &problems {
            for f in &p.stale {
                match std::fs::remove_file(f) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(RepoError::Io {
                            path: f.clone(),
                            source: e,
                        });
                    }
                    _ => {}
                }
            }
        }
        self.publish(&dists)?;
        self.check_repository(id)
    }

    /// The global map meta-distribution → distribution; a meta claimed twice is an error.
    pub fn meta_distributions(&self) -> Result<BTreeMap<String, String>, RepoError> {
        meta_map(&self.repositories()?, |name| self.layout(name))
    }

    fn check_meta_distributions(&self) -> Result<(), RepoError> {
        self.meta_distributions().map(|_| ())
    }

    /// The Release fields of a distribution; `name` is its directory below `dists/` (the
    /// distribution name, or `<dist>/snapshots/<name>` for a snapshot).
    fn release_info(&self, r: &Resolved, name: &str) -> ReleaseInfo {
        let rollback = r.is_rollback();
        ReleaseInfo {
            origin: self.instance.origin(),
            label: name.to_string(),
            suite: name.to_string(),
            codename: name.to_string(),
            date: publish_time(),
            valid_until: None,
            architectures: r.distribution.architectures.clone(),
            components: r.distribution.components.clone(),
            description: name.to_string(),
            not_automatic: rollback || r.suite.not_automatic,
            but_automatic_upgrades: !rollback && r.suite.but_automatic_upgrades,
        }
    }

    /// Publishes every distribution of every repository.
    pub fn publish_all(&self) -> Result<(), RepoError> {
        let all = self.all_dists()?;
        self.publish(&all)
    }

    /// Publishes the given distributions.
    pub fn publish(&self, dists: &[DistName]) -> Result<(), RepoError> {
        let now = wall_clock();
        for name in dists {
            let r = self.resolve(&name.to_string())?;
            self.publish_one(&r, &name.to_string(), now)?;
        }
        Ok(())
    }

    /// Publishes one distribution directory: `dist` is both its store name and its path
    /// below `dists/` (a distribution, or a snapshot of one).
    /// `now` is the wall clock, for the by-hash grace period (the Release Date is separate).
    fn publish_one(&self, r: &Resolved, dist: &str, now: i64) -> Result<(), RepoError> {
        let repo = &r.repository.identity;
        let mut state = self.store.publish_state(repo, dist)?;
        state.in_progress = true;
        let mut tx = self.store.write()?;
        tx.set_publish_state(repo, dist, &state)?;
        tx.commit()?;
        let started = std::time::Instant::now();
        let spec = DistSpec {
            dir: dist.to_string(),
            info: self.release_info(r, dist),
        };
        let cold = self.cold.load(std::sync::atomic::Ordering::SeqCst);
        let cache = |keys: &[String]| {
            if cold {
                return vec![None; keys.len()];
            }
            self.store.segments(keys).unwrap_or_else(|e| {
                tracing::warn!("segment cache unreadable, compressing anew: {e}");
                vec![None; keys.len()]
            })
        };
        let records = self.store.records(repo, dist)?;
        let dists_root = self.repo_dir(repo).join("dists");
        let dist_dir = dists_root.join(dist);
        let load = |path: &str, digest: &[u8; 32]| load_file(&dist_dir, path, digest);
        let in_place = |path: &str, d: &Digests| present(&dist_dir, path, d);
        let marks = if cold {
            publish::Marks::new()
        } else {
            self.store.digest_marks(repo, dist)?
        };
        let previous = if cold {
            None
        } else {
            self.store
                .outline(repo, dist)?
                .map(|outline| publish::Previous {
                    outline,
                    marks: &marks,
                    load: &load,
                    // The entries of files left as they are; each is checked against the
                    // outline before it is used again.
                    listed: std::fs::read_to_string(dist_dir.join("Release"))
                        .map(|text| release::listed(&text))
                        .unwrap_or_default(),
                    present: &in_place,
                })
        };
        let publish::Rendered {
            files,
            segments,
            new_segments,
            mut outline,
            incremental,
        } = publish::render(&spec, &records, self.compression, &cache, previous)?;
        drop(records);
        tracing::debug!(%dist, incremental, new_segments = new_segments.len(), elapsed = ?started.elapsed(), "rendered");
        let (mut new_state, new_marks, listed) = publish::write(
            &dists_root,
            &spec,
            &files,
            &marks,
            &self.key,
            &state,
            now,
            BY_HASH_GRACE,
        )?;
        outline.complete(|path| {
            let l = listed.iter().find(|l| l.path == path)?;
            hex::decode(&l.digests.sha256).ok()?.try_into().ok()
        });
        new_state.segments = segments;
        tracing::debug!(%dist, elapsed = ?started.elapsed(), "written");
        // The files are on disk; only the new segments, which are inside them, go on into
        // the store.
        let new_segments = publish::new_segment_bytes(files, &new_segments);
        let mut tx = self.store.write()?;
        tx.use_segments(&state.segments, &new_state.segments, &new_segments)?;
        tx.set_publish_state(repo, dist, &new_state)?;
        tx.set_digest_marks(repo, dist, &new_marks)?;
        tx.set_outline(repo, dist, &outline)?;
        tx.commit()?;
        tracing::debug!(%dist, elapsed = ?started.elapsed(), "committed");
        Ok(())
    }

    /// Freezes the current content of a distribution as `dists/<dist>/snapshots/<name>/`.
    pub fn snapshot_create(&self, dist: &str, name: &str) -> Result<(), RepoError> {
        let r = self.resolve(dist)?;
        check_snapshot_name(name)?;
        let repo = r.repository.identity.clone();
        let dist = r.name.to_string();
        let key = format!("{dist}/snapshots/{name}");
        if self
            .store
            .published_with_prefix(&repo, &key)?
            .contains(&key)
        {
            return Err(RepoError::SnapshotExists {
                dist,
                name: name.to_string(),
            });
        }
        let mut tx = self.store.write()?;
        for source in tx.source_names(&repo, &dist)? {
            let group = tx.group(&repo, &dist, &source)?;
            tx.place_group(&repo, &key, &source, &group)?;
            tx.reference(&repo, &group, 1);
        }
        tx.mark_unpublished(&repo, &key)?;
        tx.commit()?;
        self.publish_one(&r, &key, wall_clock())
    }

    /// The snapshots of a distribution, by name.
    pub fn snapshot_ls(&self, dist: &str) -> Result<Vec<String>, RepoError> {
        let r = self.resolve(dist)?;
        let prefix = format!("{}/snapshots/", r.name);
        Ok(self
            .store
            .published_with_prefix(&r.repository.identity, &prefix)?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .collect())
    }

    /// Deletes a snapshot: its published directory and its references to pool files.
    pub fn snapshot_delete(&self, dist: &str, name: &str) -> Result<(), RepoError> {
        let r = self.resolve(dist)?;
        let repo = r.repository.identity.clone();
        if !self.snapshot_ls(dist)?.iter().any(|n| n == name) {
            return Err(RepoError::NoSuchSnapshot {
                dist: r.name.to_string(),
                name: name.to_string(),
            });
        }
        let key = format!("{}/snapshots/{name}", r.name);
        let state = self.store.publish_state(&repo, &key)?;
        let mut tx = self.store.write()?;
        for source in tx.source_names(&repo, &key)? {
            let group = tx.take_group(&repo, &key, &source)?;
            tx.reference(&repo, &group, -1);
        }
        tx.use_segments(&state.segments, &Default::default(), &[])?;
        tx.remove_publish_state(&repo, &key)?;
        // Unpublish first: once the directory is gone no index names the snapshot's files.
        let dir = self.repo_dir(&repo).join("dists").join(&key);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(RepoError::Io {
                    path: dir,
                    source: e,
                });
            }
            _ => {}
        }
        tx.commit()?;
        self.collect_garbage()
    }

    /// Copies a source (with its binaries) to the suite it migrates to; `full` follows the
    /// chain. From a rollback distribution, restores into the (empty) main distribution.
    /// Returns the distributions the source arrived in.
    pub fn migrate(
        &self,
        source: &str,
        dist: &str,
        full: bool,
        version: Option<&str>,
    ) -> Result<Vec<String>, RepoError> {
        let mut r = self.resolve(dist)?;
        let repo = r.repository.identity.clone();
        let mut tx = self.store.write()?;
        let mut touched = BTreeSet::new();
        let mut arrived = Vec::new();
        let mut version = version.map(str::to_string);
        loop {
            let from = r.name.to_string();
            let group = tx.group(&repo, &from, source)?;
            let gv = group.version().map(|v| v.to_string());
            if group.is_empty() || (version.is_some() && gv != version) {
                return Err(RepoError::NoSuchSource {
                    source_name: source.to_string(),
                    dist: from,
                    version,
                });
            }
            let target = if r.is_rollback() {
                let main = r.name.main().to_string();
                if !tx.group(&repo, &main, source)?.is_empty() {
                    return Err(RepoError::RestoreOccupied {
                        source_name: source.to_string(),
                        target: main,
                    });
                }
                self.resolve(&main)?
            } else {
                let to = r
                    .suite
                    .migrates_to
                    .clone()
                    .ok_or_else(|| RepoError::CannotMigrate(from.clone()))?;
                self.resolve(&r.name.with_suite(&to).to_string())?
            };
            let target_name = target.name.to_string();
            let existing = tx.group(&repo, &target_name, source)?;
            if existing.version().map(|v| v.to_string()) == gv {
                return Err(RepoError::AlreadyMigrated {
                    version: gv.unwrap_or_default(),
                    target: target_name,
                });
            }
            if !existing.is_empty() {
                self.shift_rollbacks(&mut tx, &target, source, &mut touched)?;
                let old = tx.take_group(&repo, &target_name, source)?;
                tx.reference(&repo, &old, -1);
            }
            tx.place_group(&repo, &target_name, source, &group)?;
            tx.reference(&repo, &group, 1);
            touched.insert(target_name.clone());
            arrived.push(target_name);
            if !full || target.suite.migrates_to.is_none() || r.is_rollback() {
                break;
            }
            version = gv;
            r = target;
        }
        for dist in &touched {
            tx.mark_unpublished(&repo, dist)?;
        }
        tx.commit()?;
        self.publish_touched(&touched)?;
        self.collect_garbage()?;
        Ok(arrived)
    }

    /// Removes a source (with its binaries) from a distribution. From a main distribution the
    /// removed version goes to `-rollback0` unless `without_rollback`; from a rollback slot the
    /// older slots move down to close the gap.
    pub fn remove(
        &self,
        source: &str,
        dist: &str,
        without_rollback: bool,
        version: Option<&str>,
    ) -> Result<(), RepoError> {
        let r = self.resolve(dist)?;
        let repo = r.repository.identity.clone();
        let name = r.name.to_string();
        let mut tx = self.store.write()?;
        let group = tx.group(&repo, &name, source)?;
        if group.is_empty()
            || (version.is_some() && group.version().map(|v| v.to_string()).as_deref() != version)
        {
            return Err(RepoError::NoSuchSource {
                source_name: source.to_string(),
                dist: name,
                version: version.map(str::to_string),
            });
        }
        let mut touched = BTreeSet::new();
        match r.name.rollback {
            None => {
                if !without_rollback {
                    self.shift_rollbacks(&mut tx, &r, source, &mut touched)?;
                }
                let old = tx.take_group(&repo, &name, source)?;
                tx.reference(&repo, &old, -1);
            }
            Some(n) => {
                let old = tx.take_group(&repo, &name, source)?;
                tx.reference(&repo, &old, -1);
                let slots = r.main().rollback_names();
                for m in (n as usize + 1)..slots.len() {
                    let g = tx.take_group(&repo, &slots[m], source)?;
                    if !g.is_empty() {
                        tx.place_group(&repo, &slots[m - 1], source, &g)?;
                        touched.insert(slots[m].clone());
                    }
                }
            }
        }
        touched.insert(name);
        for dist in &touched {
            tx.mark_unpublished(&repo, dist)?;
        }
        tx.commit()?;
        self.publish_touched(&touched)?;
        self.collect_garbage()
    }

    /// Where a source is: versions per distribution and rollback, per repository.
    pub fn ls(&self, source: &str) -> Result<Ls, RepoError> {
        Ok(self
            .show(source)?
            .into_iter()
            .map(|(repo, dists)| {
                let dists = dists
                    .into_iter()
                    .map(|(dist, e)| {
                        let rollbacks = e
                            .rollbacks
                            .into_iter()
                            .map(|(rb, r)| {
                                let entry = LsRollback {
                                    version: r.version,
                                    component: r.component,
                                    architecture: r.architecture,
                                };
                                (rb, entry)
                            })
                            .collect();
                        let entry = LsEntry {
                            version: e.version,
                            component: e.component,
                            architecture: e.architecture,
                            rollbacks,
                        };
                        (dist, entry)
                    })
                    .collect();
                (repo, dists)
            })
            .collect())
    }

    /// The version of `source` in a distribution (rollbacks too) and its pool files, the
    /// `.dsc` first; `version` picks one exactly.
    pub fn source_files(
        &self,
        dist: &str,
        source: &str,
        version: Option<&str>,
    ) -> Result<(String, Vec<PathBuf>), RepoError> {
        let r = self.resolve(dist)?;
        let name = r.name.to_string();
        let found = self
            .store
            .source_everywhere(&r.repository.identity, source)?
            .into_iter()
            .find(|(d, _)| d == &name)
            .and_then(|(_, g)| g.source)
            .filter(|s| version.is_none_or(|v| v == s.version));
        let s = found.ok_or_else(|| RepoError::NoSuchSource {
            source_name: source.to_string(),
            dist: name.clone(),
            version: version.map(str::to_string),
        })?;
        let dir = self.repo_dir(&r.repository.identity).join(&s.directory);
        Ok((
            s.version.clone(),
            s.files.iter().map(|f| dir.join(&f.name)).collect(),
        ))
    }

    /// A file of `source` that repository `repo`'s pool holds already (for any of its
    /// distributions or rollbacks): its path and what the store recorded of it.
    pub fn pool_source_file(
        &self,
        repo: &str,
        source: &str,
        name: &str,
    ) -> Result<Option<(PathBuf, store::PoolFile)>, RepoError> {
        for (_, group) in self.store.source_everywhere(repo, source)? {
            let Some(s) = group.source else { continue };
            if let Some(f) = s.files.iter().find(|f| f.name == name) {
                let path = self.repo_dir(repo).join(&s.directory).join(name);
                return Ok(Some((path, f.clone())));
            }
        }
        Ok(None)
    }

    /// Like [`Engine::ls`], with `.dsc` paths and migration state per distribution.
    pub fn show(&self, source: &str) -> Result<Show, RepoError> {
        let mut out: Show = BTreeMap::new();
        for repo in self.repositories()? {
            let found = self.store.source_everywhere(&repo.identity, source)?;
            let versions: BTreeMap<String, Option<String>> = found
                .iter()
                .map(|(d, g)| (d.clone(), g.version().map(|v| v.to_string())))
                .collect();
            let mut per_dist: BTreeMap<String, ShowEntry> = BTreeMap::new();
            for (dist, group) in &found {
                let Ok(name) = DistName::parse(dist) else {
                    continue;
                };
                let version = group.version().map(|v| v.to_string()).unwrap_or_default();
                let component = group
                    .source
                    .as_ref()
                    .map(|s| s.component.clone())
                    .or_else(|| group.binaries.first().map(|b| b.record.component.clone()))
                    .unwrap_or_default();
                let architecture = if group.source.is_some() {
                    "source"
                } else {
                    "binary"
                }
                .to_string();
                let dsc_path = group.source.as_ref().and_then(|s| {
                    s.files
                        .first()
                        .map(|f| format!("{}/{}/{}", repo.identity, s.directory, f.name))
                });
                let main = name.main().to_string();
                let entry = match per_dist.get_mut(&main) {
                    Some(e) => e,
                    None => {
                        let r = self.resolve(&main)?;
                        let migrates_to = r
                            .suite
                            .migrates_to
                            .as_ref()
                            .map(|t| name.with_suite(t).to_string());
                        per_dist.entry(main.clone()).or_insert(ShowEntry {
                            uploadable: r.suite.uploadable,
                            migrates_to,
                            ..Default::default()
                        })
                    }
                };
                if name.rollback.is_some() {
                    let rb = ShowRollback {
                        version,
                        component,
                        architecture,
                        dsc_path,
                    };
                    entry.rollbacks.insert(dist.clone(), rb);
                } else {
                    entry.is_migrated = entry
                        .migrates_to
                        .as_ref()
                        .and_then(|t| versions.get(t))
                        .is_some_and(|v| v.as_deref() == Some(version.as_str()));
                    entry.version = Some(version);
                    entry.component = Some(component);
                    entry.architecture = Some(architecture);
                    entry.dsc_path = dsc_path;
                }
            }
            if !per_dist.is_empty() {
                out.insert(repo.identity.clone(), per_dist);
            }
        }
        Ok(out)
    }
}

impl Resolved {
    fn main(&self) -> Resolved {
        Resolved {
            name: self.name.main(),
            ..self.clone()
        }
    }
}

/// Snapshot names: letters, digits and `_.:+~-`, starting with a letter or digit (so they are
/// safe as one path component and in URLs).
fn check_snapshot_name(name: &str) -> Result<(), RepoError> {
    let bad = |reason| RepoError::SnapshotName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > 100 {
        return Err(bad("longer than 100 characters"));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(bad("must start with a letter or digit"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.:+~-".contains(&b))
    {
        return Err(bad("only letters, digits and _.:+~- are allowed"));
    }
    Ok(())
}

/// Section and priority of a source from its first `Package-List` line, else misc/optional.
fn package_list_section(dsc: &Dsc) -> (String, String) {
    dsc.paragraph
        .field("Package-List")
        .and_then(|f| {
            f.continuation_lines()
                .find(|l| !l.is_empty())
                .map(str::to_string)
        })
        .and_then(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 4).then(|| (w[2].to_string(), w[3].to_string()))
        })
        .unwrap_or_else(|| ("misc".into(), "optional".into()))
}

/// A repository's distribution names (main and rollback) under its layout, in layout order.
fn repository_dists(repo: &Repository, layout: &Layout) -> Vec<DistName> {
    let mut out = Vec::new();
    for codename in &repo.codenames {
        for suite in &layout.suites {
            let main = DistName::new(codename, &repo.identity, &suite.name);
            out.push(main.clone());
            for n in 0..suite.rollback {
                out.push(main.with_rollback(Some(n)));
            }
        }
    }
    out
}

/// The meta-distribution map of a set of repositories; a meta claimed twice is an error.
fn meta_map(
    repos: &[Repository],
    layout_of: impl Fn(&str) -> Result<Layout, RepoError>,
) -> Result<BTreeMap<String, String>, RepoError> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for repo in repos {
        let layout = layout_of(&repo.layout)?;
        for (meta, target) in &layout.meta_distributions {
            let Some((codename, suite)) = target.split_once('-') else {
                continue;
            };
            if !repo.codenames.iter().any(|c| c == codename) {
                continue;
            }
            let full = format!("{codename}-{}-{suite}", repo.identity);
            if let Some(first) = map.get(meta) {
                return Err(RepoError::AmbiguousMeta {
                    meta: meta.clone(),
                    first: first.clone(),
                    second: full,
                });
            }
            map.insert(meta.clone(), full);
        }
    }
    Ok(map)
}
