//! The incoming queue: what dput uploads waits in `<home>/var/incoming/` until its `.changes`
//! is decided, then is either queued for building (`<home>/var/queue/<source>_<version>/`) or
//! removed. Every decision is an [`Event`] kept in the store.
//!
//! Files arrive under a hidden temporary name and are linked into place only when complete,
//! so a crash never leaves a partial file under a real name; an existing file is never
//! overwritten with other content. Pending `.changes` are decided again at start, partial
//! files are removed then, and files that belong to no `.changes` after their age
//! ([`ORPHAN_AGE`] by default).
//!
//! Accepting is one rename: the upload's files are linked into a hidden queue directory that
//! is renamed into place, then the events are stored (one transaction), then the files leave
//! incoming, the `.changes` last. Whatever step a crash interrupts, the next pass either
//! decides the upload afresh or, finding its `.changes` linked in the queue, finishes it.
//!
//! The acceptance rules run in mini-buildd's order, and each rejection names the file and the
//! reason: parse; target distribution (meta-distributions resolved; rollback and
//! non-uploadable suites refused); signature by an uploader key (unless the repository allows
//! unauthenticated uploads); the suite's version rule; version not already in the repository
//! and not lower than the target's; every listed file present with matching size and hashes
//! (names checked as safe file names when the `.changes` is parsed); for a source upload,
//! every file its `.dsc` lists either in the upload or, with the same checksums, in the
//! repository's pool for that source (the pool copy is then linked into the queue for the
//! build, as a new Debian revision leaves the orig tarball out of its `.changes`).

use crate::changes::Changes;
use crate::checksums::Digests;
use crate::dsc::Dsc;
use crate::files::{FileEntry, Trust, safe_file_name};
use crate::openpgp::Keyring;
use crate::repo::{Engine, RepoError};
use crate::state::{Record, StateError, StateStore};
use crate::version::Version;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a file that belongs to no `.changes` may wait in incoming.
pub const ORPHAN_AGE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum IncomingError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{name}: {reason}")]
    Name { name: String, reason: String },
    #[error("{name}: a different file of that name is already waiting in incoming")]
    Conflict { name: String },
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    State(#[from] StateError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IncomingError + '_ {
    move |source| IncomingError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What happened to an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventKind {
    Rejected,
    Accepted,
    /// Accepted and waiting for its builds.
    Packaging,
    Installed,
    /// A build started (the reason names the upload and architecture).
    Building,
    /// A build succeeded.
    Built,
    /// A build, or the upload as a whole, failed (or was cancelled).
    Failed,
}

impl EventKind {
    pub fn parse(s: &str) -> Option<EventKind> {
        match s.to_ascii_uppercase().as_str() {
            "REJECTED" => Some(EventKind::Rejected),
            "ACCEPTED" => Some(EventKind::Accepted),
            "PACKAGING" => Some(EventKind::Packaging),
            "INSTALLED" => Some(EventKind::Installed),
            "BUILDING" => Some(EventKind::Building),
            "BUILT" => Some(EventKind::Built),
            "FAILED" => Some(EventKind::Failed),
            _ => None,
        }
    }
}

/// One decision, kept in the state store's `events` by id (ids sort by time).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    /// Seconds since the epoch.
    pub time: i64,
    pub kind: EventKind,
    pub file: String,
    pub source: String,
    pub version: String,
    pub distribution: String,
    /// Why, for a rejection; what happens next otherwise.
    pub reason: String,
}

impl Record for Event {
    const TABLE: &'static str = "events";
}

/// The incoming and queue directories of a home.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub dir: PathBuf,
    pub queue: PathBuf,
}

impl Incoming {
    pub fn new(home: &Path) -> Incoming {
        Incoming {
            dir: home.join("var/incoming"),
            queue: home.join("var/queue"),
        }
    }

    pub fn create_dirs(&self) -> Result<(), IncomingError> {
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        std::fs::create_dir_all(&self.queue).map_err(io(&self.queue))
    }

    /// Checks an uploaded file's name; the result is the path it will have.
    pub fn target(&self, name: &str) -> Result<PathBuf, IncomingError> {
        safe_file_name(name).map_err(|e| IncomingError::Name {
            name: name.escape_debug().to_string(),
            reason: e.to_string(),
        })?;
        if name.starts_with('.') {
            return Err(IncomingError::Name {
                name: name.to_string(),
                reason: "names starting with '.' are not accepted".to_string(),
            });
        }
        Ok(self.dir.join(name))
    }

    /// A fresh hidden name in incoming for a file being received.
    pub fn temporary(&self) -> PathBuf {
        self.dir
            .join(format!(".part-{}", crate::users::new_secret()))
    }

    /// Moves a completely received file into place. The same content again is fine (dput
    /// retries); other content under an existing name is refused and the new file dropped.
    pub fn commit(&self, tmp: &Path, name: &str) -> Result<PathBuf, IncomingError> {
        let target = self.target(name)?;
        let file = std::fs::File::open(tmp).map_err(io(tmp))?;
        file.sync_all().map_err(io(tmp))?;
        if target.exists() {
            let same = std::fs::read(&target).map_err(io(&target))?
                == std::fs::read(tmp).map_err(io(tmp))?;
            let _ = std::fs::remove_file(tmp);
            return if same {
                Ok(target)
            } else {
                Err(IncomingError::Conflict {
                    name: name.to_string(),
                })
            };
        }
        // link() fails if the name appeared meanwhile: never overwrite.
        match std::fs::hard_link(tmp, &target) {
            Ok(()) => {
                let _ = std::fs::remove_file(tmp);
                Ok(target)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(tmp);
                Err(IncomingError::Conflict {
                    name: name.to_string(),
                })
            }
            Err(e) => Err(IncomingError::Io {
                path: target,
                source: e,
            }),
        }
    }

    /// A parser's message with the incoming directory taken out: the uploader knows the file
    /// by its name.
    fn unprefixed(&self, e: &dyn std::fmt::Display) -> String {
        e.to_string()
            .replace(&format!("{}/", self.dir.display()), "")
    }

    /// Cleans up after a crash; only while no upload can arrive (at start). Partial files
    /// go at once, and so do queue directories that were being filled (their upload is still
    /// pending in incoming and is decided again).
    pub fn recover(&self) -> Result<usize, IncomingError> {
        let mut removed = 0;
        for (dir, prefix) in [(&self.dir, ".part-"), (&self.queue, ".new-")] {
            for e in std::fs::read_dir(dir).map_err(io(dir))? {
                let e = e.map_err(io(dir))?;
                if !e.file_name().to_string_lossy().starts_with(prefix) {
                    continue;
                }
                let p = e.path();
                if p.is_dir() {
                    std::fs::remove_dir_all(&p).map_err(io(&p))?;
                } else {
                    std::fs::remove_file(&p).map_err(io(&p))?;
                }
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The `.changes` waiting, oldest first.
    pub fn pending(&self) -> Result<Vec<PathBuf>, IncomingError> {
        let mut found = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let e = e.map_err(io(&self.dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".changes") && !name.starts_with('.') {
                let modified = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                found.push((modified, e.path()));
            }
        }
        found.sort();
        Ok(found.into_iter().map(|(_, p)| p).collect())
    }

    /// Removes partial files and files no waiting `.changes` lists, once older than `age`.
    pub fn remove_orphans(&self, age: Duration) -> Result<usize, IncomingError> {
        let mut listed = BTreeSet::new();
        for c in self.pending()? {
            listed.insert(c.file_name().unwrap_or_default().to_os_string());
            listed.extend(listed_names(&c).into_iter().map(Into::into));
        }
        let mut removed = 0;
        let now = std::time::SystemTime::now();
        for e in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let e = e.map_err(io(&self.dir))?;
            if listed.contains(&e.file_name()) {
                continue;
            }
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|d| d >= age);
            if old {
                std::fs::remove_file(e.path()).map_err(io(&e.path()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Why an upload was refused: the sentence that goes into its REJECTED event.
#[derive(Debug)]
struct Rejection(String);

/// What a `.changes` names, as far as it could be read (for the event).
#[derive(Default)]
struct Subject {
    source: String,
    version: String,
    distribution: String,
}

/// The keyring of a repository's uploader keys: the keys of active uploaders who may upload
/// there, and the archive's own key (ports and keyring packages are uploads it signs).
pub fn uploaders(
    engine: &Engine,
    state: &StateStore,
    repository: &str,
) -> Result<Keyring, StateError> {
    let mut keyring = engine.key().keyring();
    for (_, user) in state.all::<crate::users::User>()? {
        if !user.may_upload(repository) {
            continue;
        }
        if let Some(key) = user.key {
            // A stored key was checked when it was set; skip one that no longer parses.
            let _ = keyring.add_bytes(key.as_bytes());
        }
    }
    Ok(keyring)
}

/// Where an accepted upload waits for its builds.
fn queue_dir(incoming: &Incoming, changes: &Changes) -> PathBuf {
    incoming
        .queue
        .join(format!("{}_{}", changes.source, changes.version))
}

/// What happens to an upload that passed the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// A source upload: into the queue, to be built.
    Queue,
    /// Moved into the queue before a crash: only the bookkeeping is left to do.
    Queued,
    /// A binary-only upload to a repository that takes them: installed now.
    Install,
}

/// Whether two paths are links to one file.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// An upload that passed the rules.
struct Decided {
    changes: Changes,
    /// The target distribution (meta-distributions resolved).
    dist: String,
    verdict: Verdict,
    /// Pool copies of source files the upload left out, for the build.
    from_pool: Vec<PathBuf>,
}

/// Whether two listings of one file agree (size, and every checksum both give).
fn same_listing(a: &FileEntry, b: &FileEntry) -> bool {
    let agree = |x: &Option<String>, y: &Option<String>| match (x, y) {
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
        _ => true,
    };
    a.size == b.size
        && a.md5.eq_ignore_ascii_case(&b.md5)
        && agree(&a.sha1, &b.sha1)
        && agree(&a.sha256, &b.sha256)
}

/// Whether a pool file is the one a `.dsc` lists: by SHA256 where the `.dsc` gives it, else
/// by MD5 of the pool file.
fn pool_matches(want: &FileEntry, path: &Path, pooled: &crate::repo::store::PoolFile) -> bool {
    if want.size != pooled.size {
        return false;
    }
    match &want.sha256 {
        Some(sha256) => sha256.eq_ignore_ascii_case(&pooled.sha256),
        None => std::fs::File::open(path)
            .and_then(Digests::of_reader)
            .is_ok_and(|d| d.md5.eq_ignore_ascii_case(&want.md5)),
    }
}

/// Source completeness: every file the upload's `.dsc` lists is in the upload or, identical,
/// in repository `repo`'s pool for the source; an uploaded file whose name the pool holds
/// must be that file. Returns the pool copies the build needs.
fn complete_source(engine: &Engine, repo: &str, changes: &Changes) -> Result<Vec<PathBuf>, String> {
    let Some(entry) = changes.dsc() else {
        return Err("lists no .dsc although its Architecture names source".to_string());
    };
    let dsc =
        Dsc::read(&changes.dir().join(&entry.name), Trust::Unchecked).map_err(|e| e.to_string())?;
    let uploaded: BTreeMap<&str, &FileEntry> = changes
        .files
        .entries
        .iter()
        .map(|f| (f.name.as_str(), f))
        .collect();
    let sha256 = |f: &FileEntry| f.sha256.clone().unwrap_or_else(|| format!("md5 {}", f.md5));
    let (mut from_pool, mut missing, mut problems) = (Vec::new(), Vec::new(), Vec::new());
    for want in &dsc.files.entries {
        let pooled = engine
            .pool_source_file(repo, &dsc.source, &want.name)
            .map_err(|e| e.to_string())?;
        match (uploaded.get(want.name.as_str()), pooled) {
            (Some(up), _) if !same_listing(up, want) => problems.push(format!(
                "{}: {} lists it with SHA256 {}, the .changes with {}",
                want.name,
                entry.name,
                sha256(want),
                sha256(up)
            )),
            (Some(up), Some((_, p))) if up.sha256.as_ref().is_some_and(|s| !s.eq_ignore_ascii_case(&p.sha256)) => {
                problems.push(format!(
                    "{}: the pool of repository {repo} has a different file of that name (SHA256 {}, uploaded {}); a changed upstream tarball needs a new upstream version",
                    want.name,
                    p.sha256,
                    sha256(up)
                ))
            }
            (Some(_), _) => {}
            (None, Some((path, p))) if pool_matches(want, &path, &p) => from_pool.push(path),
            (None, Some((_, p))) => problems.push(format!(
                "{}: {} lists SHA256 {}, but the pool of repository {repo} has SHA256 {} under that name",
                want.name,
                entry.name,
                sha256(want),
                p.sha256
            )),
            (None, None) => missing.push(want.name.clone()),
        }
    }
    if !missing.is_empty() {
        problems.push(format!(
            "{} lists {} which neither the upload nor the pool of repository {repo} has; upload with the orig tarball (dpkg-buildpackage -sa)",
            entry.name,
            missing.join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(from_pool)
    } else {
        Err(problems.join("; "))
    }
}

/// Whether the sizes and checksums of an upload's files still need checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hashes {
    Unchecked,
    /// An earlier pass checked them (files in incoming never change once there).
    Verified,
}

fn decide(
    engine: &Engine,
    state: &StateStore,
    incoming: &Incoming,
    path: &Path,
    subject: &mut Subject,
    hashes: Hashes,
) -> Result<Decided, Rejection> {
    let name = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let reject = |reason: String| Rejection(format!("{name}: {reason}"));
    let named = |e: &dyn std::fmt::Display| Rejection(incoming.unprefixed(e));
    // 1. parse
    let changes = Changes::read(path, Trust::Unchecked).map_err(|e| named(&e))?;
    subject.source = changes.source.clone();
    subject.version = changes.version.to_string();
    // 2. target distribution
    let [wanted] = changes.distributions.as_slice() else {
        return Err(reject(format!(
            "names {} distributions; upload to exactly one",
            changes.distributions.len()
        )));
    };
    let meta = engine
        .meta_distributions()
        .map_err(|e| reject(e.to_string()))?;
    let dist = meta.get(wanted).cloned().unwrap_or_else(|| wanted.clone());
    subject.distribution = dist.clone();
    let r = engine.resolve(&dist).map_err(|e| reject(e.to_string()))?;
    if r.is_rollback() {
        return Err(reject(format!(
            "{dist} is a rollback distribution; upload to its suite"
        )));
    }
    if !r.repository.status.is_active() {
        return Err(reject(format!(
            "repository '{}' is not active ({}{}); staff activates it with config_action repository {} activate",
            r.repository.identity,
            r.repository.status.label(),
            if r.repository.status.message.is_empty() {
                String::new()
            } else {
                format!(": {}", r.repository.status.message)
            },
            r.repository.identity,
        )));
    }
    if !r.suite.uploadable {
        return Err(reject(format!(
            "suite '{}' of {dist} is not uploadable (it is fed by migration)",
            r.suite.name
        )));
    }
    // Accepted already? A link to this very file in the queue means a crash came after the
    // upload was put there; anything else is a second upload of that version.
    let queued = queue_dir(incoming, &changes);
    if queued.exists() {
        if same_file(&queued.join(&name), path) {
            return Ok(Decided {
                changes,
                dist,
                verdict: Verdict::Queued,
                from_pool: Vec::new(),
            });
        }
        return Err(reject(format!(
            "{} {} was already accepted and waits for its builds",
            changes.source, changes.version
        )));
    }
    // 3. signature
    if !r.repository.allow_unauthenticated_uploads {
        let keyring =
            uploaders(engine, state, &r.repository.identity).map_err(|e| reject(e.to_string()))?;
        Changes::read(path, Trust::Keyring(&keyring)).map_err(|e| named(&e))?;
    }
    // 4. the suite's version rule
    let rule = r.layout.mandatory_version_regex(
        &r.suite,
        &r.repository.identity,
        &r.distribution.codeversion,
    );
    let re = regex::Regex::new(&rule).map_err(|e| {
        reject(format!(
            "the layout's version rule '{rule}' is invalid: {e}"
        ))
    })?;
    let version = changes.version.to_string();
    if !re.is_match(&version) {
        return Err(reject(format!(
            "version {version} does not match the version rule of {dist} ('{rule}')"
        )));
    }
    // 5. not already in the repository, not lower than the target's
    let listing = engine
        .ls(&changes.source)
        .map_err(|e| reject(e.to_string()))?;
    if let Some(dists) = listing.get(&r.repository.identity) {
        for (d, e) in dists {
            let mut versions: Vec<(&str, &str)> = Vec::new();
            if let Some(v) = &e.version {
                versions.push((d, v));
            }
            versions.extend(
                e.rollbacks
                    .iter()
                    .map(|(n, rb)| (n.as_str(), rb.version.as_str())),
            );
            for (where_, v) in versions {
                if v == version {
                    return Err(reject(format!(
                        "{} {version} is already in repository {} ({where_})",
                        changes.source, r.repository.identity
                    )));
                }
            }
            if d == &dist {
                if let Some(current) = e.version.as_deref().and_then(|v| Version::parse(v).ok()) {
                    if changes.version < current {
                        return Err(reject(format!(
                            "version {version} is lower than {current} in {dist}"
                        )));
                    }
                }
            }
        }
    }
    // 6. every listed file present, sizes and hashes
    if hashes == Hashes::Unchecked {
        changes.verify_files().map_err(|e| named(&e))?;
    }
    // Source uploads are built (7. their source complete); binary-only uploads only where
    // the repository takes them.
    if changes.has_source() {
        let from_pool =
            complete_source(engine, &r.repository.identity, &changes).map_err(reject)?;
        Ok(Decided {
            changes,
            dist,
            verdict: Verdict::Queue,
            from_pool,
        })
    } else if r.repository.allow_binary_uploads {
        Ok(Decided {
            changes,
            dist,
            verdict: Verdict::Install,
            from_pool: Vec::new(),
        })
    } else {
        Err(reject(format!(
            "binary-only uploads are not enabled for repository {}; upload the source",
            r.repository.identity
        )))
    }
}

fn event_id(time_nanos: u128) -> String {
    format!("{time_nanos:024}")
}

/// Stores events in one transaction, giving each an id (ids sort by time and are unique
/// even within one clock tick).
pub(crate) fn record(state: &StateStore, mut events: Vec<Event>) -> Result<Vec<Event>, StateError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut nanos = now.as_nanos();
    for event in &mut events {
        while state.get::<Event>(&event_id(nanos))?.is_some() {
            nanos += 1;
        }
        event.id = event_id(nanos);
        event.time = now.as_secs() as i64;
        nanos += 1;
        tracing::info!(kind = ?event.kind, file = %event.file, reason = %event.reason, "upload decided");
    }
    let items: Vec<(String, &Event)> = events.iter().map(|e| (e.id.clone(), e)).collect();
    state.put_all::<Event, _>(&items)?;
    Ok(events)
}

/// The names a `.changes` lists, read leniently (it may not parse): the last word of each
/// line of `Files` and `Checksums-*`, by its base name.
fn listed_names(changes_path: &Path) -> Vec<String> {
    let text = std::fs::read(changes_path).unwrap_or_default();
    let mut names = Vec::new();
    let mut in_list = false;
    for line in String::from_utf8_lossy(&text).lines() {
        if !line.starts_with(' ') && !line.starts_with('\t') {
            let field = line.split(':').next().unwrap_or("").trim();
            in_list = matches!(
                field.to_ascii_lowercase().as_str(),
                "files" | "checksums-sha1" | "checksums-sha256" | "checksums-sha512"
            );
            continue;
        }
        if !in_list {
            continue;
        }
        let Some(word) = line.split_whitespace().last() else {
            continue;
        };
        let base = word.rsplit(['/', '\\']).next().unwrap_or(word);
        if !base.ends_with(".changes") {
            names.push(base.to_string());
        }
    }
    names
}

/// The files the other waiting `.changes` list.
fn listed_by_others(incoming: &Incoming, changes_path: &Path) -> BTreeSet<String> {
    incoming
        .pending()
        .unwrap_or_default()
        .iter()
        .filter(|p| p.as_path() != changes_path)
        .flat_map(|p| listed_names(p))
        .collect()
}

/// Removes a rejected `.changes` and the files it lists from incoming, except files that
/// another waiting `.changes` lists too (two uploads may share an `.orig.tar`).
fn discard(incoming: &Incoming, changes_path: &Path) {
    let others = listed_by_others(incoming, changes_path);
    for name in listed_names(changes_path) {
        if others.contains(&name) {
            continue;
        }
        if let Ok(p) = incoming.target(&name) {
            let _ = std::fs::remove_file(p);
        }
    }
    // The .changes last: while it is there, the upload is pending.
    let _ = std::fs::remove_file(changes_path);
}

fn sync_dir(dir: &Path) -> Result<(), IncomingError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Puts an accepted upload into its queue directory in one step: its files are linked into a
/// hidden directory that is then renamed. A crash before the rename leaves the upload pending
/// in incoming (decided again at start); after it, [`Verdict::Queued`] finishes the work.
/// The pool copies of source files the upload left out (see [`complete_source`]) are linked
/// (or copied, across file systems) in with them.
fn enqueue(
    incoming: &Incoming,
    changes: &Changes,
    path: &Path,
    from_pool: &[PathBuf],
) -> Result<(), IncomingError> {
    let dir = queue_dir(incoming, changes);
    let staging = incoming.queue.join(format!(
        ".new-{}",
        dir.file_name().unwrap_or_default().to_string_lossy()
    ));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    std::fs::create_dir(&staging).map_err(io(&staging))?;
    let file = path.file_name().unwrap_or_default();
    for f in &changes.files.entries {
        let from = incoming.target(&f.name)?;
        std::fs::hard_link(&from, staging.join(&f.name)).map_err(io(&from))?;
    }
    for from in from_pool {
        let to = staging.join(from.file_name().unwrap_or_default());
        std::fs::hard_link(from, &to)
            .or_else(|_| std::fs::copy(from, &to).map(drop))
            .map_err(io(from))?;
    }
    std::fs::hard_link(path, staging.join(file)).map_err(io(path))?;
    sync_dir(&staging)?;
    std::fs::rename(&staging, &dir).map_err(io(&dir))?;
    sync_dir(&incoming.queue)
}

/// Removes an upload's files from incoming (except those another waiting upload lists too),
/// the `.changes` last.
fn clear(incoming: &Incoming, changes: &Changes, path: &Path) -> Result<(), IncomingError> {
    let others = listed_by_others(incoming, path);
    for f in &changes.files.entries {
        if others.contains(&f.name) {
            continue;
        }
        let p = incoming.target(&f.name)?;
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&p)(e)),
            _ => {}
        }
    }
    std::fs::remove_file(path).map_err(io(path))
}

/// A waiting `.changes` examined without the write token: every check made, the expensive
/// ones (signature, sizes and checksums of files up to GiBs) included. [`settle`] makes the
/// decision under the token.
pub struct Examined {
    path: PathBuf,
    subject: Subject,
    /// A binary-only upload's packages, read and staged for the install.
    outcome: Result<Option<crate::repo::Staged>, Rejection>,
}

/// Examines one waiting `.changes` (see [`Examined`]); reads only.
pub fn examine(engine: &Engine, state: &StateStore, incoming: &Incoming, path: &Path) -> Examined {
    let mut subject = Subject::default();
    let outcome = decide(
        engine,
        state,
        incoming,
        path,
        &mut subject,
        Hashes::Unchecked,
    )
    .and_then(|d| match d.verdict {
        Verdict::Install => engine
            .stage(&d.dist, &[path.to_path_buf()])
            .map(Some)
            .map_err(|e| Rejection(incoming.unprefixed(&e))),
        Verdict::Queue | Verdict::Queued => Ok(None),
    });
    Examined {
        path: path.to_path_buf(),
        subject,
        outcome,
    }
}

/// Decides an examined `.changes`, holding the write token; returns the events it made. The
/// rules are checked again against the repository as it is now (cheap: the files' checksums
/// stand), so what another writer did since the examination counts.
pub fn settle(
    engine: &Engine,
    state: &StateStore,
    incoming: &Incoming,
    examined: Examined,
) -> Result<Vec<Event>, IncomingError> {
    let Examined {
        path,
        mut subject,
        outcome,
    } = examined;
    if !path.exists() {
        // Decided already (a retried upload, or the pass at start).
        return Ok(Vec::new());
    }
    let decision = Decision {
        state,
        incoming,
        path: &path,
        file: path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
    };
    let decided = outcome.and_then(|staged| {
        decide(
            engine,
            state,
            incoming,
            &path,
            &mut subject,
            Hashes::Verified,
        )
        .map(|d| (d, staged))
    });
    match decided {
        Err(Rejection(reason)) => decision.reject(&subject, reason),
        Ok((d, staged)) if d.verdict == Verdict::Install => {
            decision.install(engine, &subject, d, staged)
        }
        Ok((d, _)) => decision.queue(&subject, d),
    }
}

/// What deciding one `.changes` works with.
struct Decision<'a> {
    state: &'a StateStore,
    incoming: &'a Incoming,
    path: &'a Path,
    /// The `.changes`' name.
    file: String,
}

impl Decision<'_> {
    fn event(&self, kind: EventKind, subject: &Subject, reason: String) -> Event {
        Event {
            id: String::new(),
            time: 0,
            kind,
            file: self.file.clone(),
            source: subject.source.clone(),
            version: subject.version.clone(),
            distribution: subject.distribution.clone(),
            reason,
        }
    }

    fn reject(&self, subject: &Subject, reason: String) -> Result<Vec<Event>, IncomingError> {
        let e = record(
            self.state,
            vec![self.event(EventKind::Rejected, subject, reason)],
        )?;
        discard(self.incoming, self.path);
        Ok(e)
    }

    /// A source upload: into the queue (unless a crash came after that), ACCEPTED and
    /// PACKAGING recorded once.
    fn queue(&self, subject: &Subject, d: Decided) -> Result<Vec<Event>, IncomingError> {
        let (incoming, path) = (self.incoming, self.path);
        let Decided {
            changes,
            dist,
            verdict,
            from_pool,
        } = d;
        if verdict == Verdict::Queue {
            enqueue(incoming, &changes, path, &from_pool)?;
        }
        let dir = queue_dir(incoming, &changes);
        // After a crash the events may exist already.
        let recorded = verdict == Verdict::Queued
            && self.state.all::<Event>()?.iter().any(|(_, e)| {
                e.kind == EventKind::Packaging
                    && e.file == self.file
                    && e.source == changes.source
                    && e.version == subject.version
            });
        let events = if recorded {
            Vec::new()
        } else {
            let waiting = format!(
                "waiting for builds in {}",
                dir.strip_prefix(incoming.queue.parent().unwrap_or(&incoming.queue))
                    .unwrap_or(&dir)
                    .display()
            );
            let what = format!("{} {} for {dist}", changes.source, changes.version);
            record(
                self.state,
                vec![
                    self.event(EventKind::Accepted, subject, what),
                    self.event(EventKind::Packaging, subject, waiting),
                ],
            )?
        };
        clear(incoming, &changes, path)?;
        Ok(events)
    }

    /// A binary-only upload: installed (from what the examination staged) and published now.
    fn install(
        &self,
        engine: &Engine,
        subject: &Subject,
        d: Decided,
        staged: Option<crate::repo::Staged>,
    ) -> Result<Vec<Event>, IncomingError> {
        let Decided { changes, dist, .. } = d;
        let staged = match staged {
            Some(s) => Ok(s),
            None => engine.stage(&dist, &[self.path.to_path_buf()]),
        };
        let installed = staged
            .and_then(|s| engine.include_staged(s))
            .and_then(|summary| {
                let name = engine.resolve(&dist)?.name;
                engine.publish(&[name])?;
                Ok(summary)
            });
        match installed {
            Err(e) => self.reject(subject, self.incoming.unprefixed(&e)),
            Ok(summary) => {
                let what = format!("{} {} for {dist}", changes.source, changes.version);
                let e = record(
                    self.state,
                    vec![self.event(
                        EventKind::Installed,
                        subject,
                        format!("{what}: {}", summary.join(", ")),
                    )],
                )?;
                clear(self.incoming, &changes, self.path)?;
                Ok(e)
            }
        }
    }
}

/// Events at or after `since` (seconds since the epoch), oldest first, filtered. Reads
/// only the events from `since` on (ids sort by time).
pub fn events(
    state: &StateStore,
    kind: Option<EventKind>,
    source: Option<&str>,
    distribution: Option<&str>,
    since: i64,
) -> Result<Vec<Event>, StateError> {
    let first = event_id(u128::try_from(since).unwrap_or(0) * 1_000_000_000);
    Ok(state
        .from::<Event>(&first)?
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| kind.is_none_or(|k| e.kind == k))
        .filter(|e| source.is_none_or(|s| e.source == s))
        .filter(|e| distribution.is_none_or(|d| e.distribution == d))
        .filter(|e| e.time >= since)
        .collect())
}

/// The newest `n` events, newest first (reads only those).
pub fn latest_events(state: &StateStore, n: usize) -> Result<Vec<Event>, StateError> {
    Ok(state
        .latest::<Event>(n)?
        .into_iter()
        .map(|(_, e)| e)
        .collect())
}

/// Retention: deletes the events older than `max_age` seconds, except the newest `keep`,
/// with their files in `<home>/var/events/`; returns how many went.
pub fn prune_events(
    state: &StateStore,
    home: &Path,
    max_age: u64,
    keep: usize,
) -> Result<usize, IncomingError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let before = event_id(now.saturating_sub(u128::from(max_age) * 1_000_000_000));
    let gone = state.prune_before::<Event>(&before, keep)?;
    for (id, _) in &gone {
        let _ = std::fs::remove_file(home.join("var/events").join(format!("{id}.json")));
    }
    Ok(gone.len())
}

/// Writes an event as `<home>/var/events/<id>.json` (atomically); returns its path.
pub fn write_event_file(home: &Path, event: &Event) -> Result<PathBuf, IncomingError> {
    let dir = home.join("var/events");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let path = dir.join(format!("{}.json", event.id));
    let tmp = dir.join(format!(".{}.json.tmp", event.id));
    let mut text = serde_json::to_string_pretty(event).unwrap_or_default();
    text.push('\n');
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(path)
}

/// Runs the executables in `<home>/etc/event-hooks/`, in name order, each with the event
/// file's path, on a background thread. Results are logged; a hook that fails or hangs never
/// holds up the daemon (each gets [`HOOK_TIMEOUT`]).
pub fn run_hooks(home: &Path, event_file: PathBuf) {
    let dir = home.join("etc/event-hooks");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut hooks: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            use std::os::unix::fs::PermissionsExt;
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            !name.starts_with('.')
                && std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .collect();
    hooks.sort();
    if hooks.is_empty() {
        return;
    }
    std::thread::spawn(move || {
        for hook in hooks {
            let started = std::time::Instant::now();
            let child = std::process::Command::new(&hook)
                .arg(&event_file)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn();
            let mut child = match child {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(hook = %hook.display(), error = %e, "event hook did not start");
                    continue;
                }
            };
            let status = loop {
                match child.try_wait() {
                    Ok(Some(s)) => break Some(s),
                    Ok(None) if started.elapsed() > HOOK_TIMEOUT => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break None;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    Err(_) => break None,
                }
            };
            match status {
                Some(s) if s.success() => {
                    tracing::info!(hook = %hook.display(), event = %event_file.display(), "event hook ran")
                }
                Some(s) => {
                    tracing::warn!(hook = %hook.display(), event = %event_file.display(), status = %s, "event hook failed")
                }
                None => {
                    tracing::warn!(hook = %hook.display(), "event hook timed out and was killed")
                }
            }
        }
    });
}

/// How long one event hook may run.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    fn stored_event(state: &StateStore, home: &Path, days_ago: u64, n: u128) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let id = event_id(now - u128::from(days_ago) * 86_400 * 1_000_000_000 + n);
        let e = Event {
            id: id.clone(),
            time: 0,
            kind: EventKind::Rejected,
            file: format!("x{n}.changes"),
            source: "x".into(),
            version: "1".into(),
            distribution: "d".into(),
            reason: "r".into(),
        };
        state.put(&id, &e).unwrap();
        write_event_file(home, &e).unwrap();
        id
    }

    #[test]
    fn retention_drops_old_events_and_their_files_but_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateStore::in_memory();
        let old: Vec<String> = (0..3)
            .map(|n| stored_event(&state, dir.path(), 40, n))
            .collect();
        let recent: Vec<String> = (0..2)
            .map(|n| stored_event(&state, dir.path(), 1, n))
            .collect();
        // 30 days: the three old ones go, with their files.
        assert_eq!(prune_events(&state, dir.path(), 30 * 86_400, 1).unwrap(), 3);
        let left: Vec<String> = latest_events(&state, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(left, recent.iter().rev().cloned().collect::<Vec<_>>());
        for id in &old {
            assert!(!dir.path().join(format!("var/events/{id}.json")).exists());
        }
        // Everything is old at age 0, but the newest `keep` stay.
        assert_eq!(prune_events(&state, dir.path(), 0, 1).unwrap(), 1);
        assert_eq!(latest_events(&state, 10).unwrap()[0].id, recent[1]);
        assert!(
            dir.path()
                .join(format!("var/events/{}.json", recent[1]))
                .exists()
        );
        // since= reads from the index: only what is at or after it.
        assert_eq!(events(&state, None, None, None, 0).unwrap().len(), 1);
    }

    #[test]
    fn commit_never_overwrites_other_content() {
        let dir = tempfile::tempdir().unwrap();
        let inc = Incoming::new(dir.path());
        inc.create_dirs().unwrap();
        let put = |data: &[u8]| {
            let tmp = inc.temporary();
            std::fs::write(&tmp, data).unwrap();
            inc.commit(&tmp, "x_1.0.dsc")
        };
        put(b"one").unwrap();
        put(b"one").unwrap();
        assert!(matches!(put(b"two"), Err(IncomingError::Conflict { .. })));
        assert_eq!(std::fs::read(inc.dir.join("x_1.0.dsc")).unwrap(), b"one");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&inc.dir).unwrap().count(), 1);
    }

    #[test]
    fn names_are_checked() {
        let inc = Incoming::new(Path::new("/h"));
        assert!(inc.target("x_1.0_amd64.deb").is_ok());
        for bad in ["../x", "a/b", ".hidden", ""] {
            assert!(inc.target(bad).is_err(), "{bad}");
        }
    }

    /// The names in a directory, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn recovery_removes_partial_files_and_unfinished_queue_directories() {
        let dir = tempfile::tempdir().unwrap();
        let inc = Incoming::new(dir.path());
        inc.create_dirs().unwrap();
        std::fs::write(inc.dir.join(".part-1"), b"x").unwrap();
        std::fs::write(inc.dir.join("x_1.0.dsc"), b"x").unwrap();
        std::fs::create_dir(inc.queue.join(".new-x_1.0")).unwrap();
        std::fs::write(inc.queue.join(".new-x_1.0/x_1.0.dsc"), b"x").unwrap();
        std::fs::create_dir(inc.queue.join("y_1.0")).unwrap();
        assert_eq!(inc.recover().unwrap(), 2);
        assert_eq!(names(&inc.dir), ["x_1.0.dsc"]);
        assert_eq!(names(&inc.queue), ["y_1.0"]);
    }

    #[test]
    fn a_rejected_upload_leaves_files_another_upload_lists() {
        let dir = tempfile::tempdir().unwrap();
        let inc = Incoming::new(dir.path());
        inc.create_dirs().unwrap();
        let changes = |files: &[&str]| {
            let mut text = "Format: 1.8\nFiles:\n".to_string();
            for f in files {
                text.push_str(&format!(" 0123 1 misc optional {f}\n"));
            }
            text
        };
        for f in ["x_1.0.orig.tar.gz", "x_1.0-1.dsc", "x_1.0-2.dsc"] {
            std::fs::write(inc.dir.join(f), b"x").unwrap();
        }
        let one = inc.dir.join("x_1.0-1_source.changes");
        std::fs::write(&one, changes(&["x_1.0.orig.tar.gz", "x_1.0-1.dsc"])).unwrap();
        std::fs::write(
            inc.dir.join("x_1.0-2_source.changes"),
            changes(&["x_1.0.orig.tar.gz", "../x_1.0-2.dsc"]),
        )
        .unwrap();
        discard(&inc, &one);
        assert_eq!(
            names(&inc.dir),
            ["x_1.0-2.dsc", "x_1.0-2_source.changes", "x_1.0.orig.tar.gz"]
        );
    }

    #[test]
    fn orphans_go_after_their_age() {
        let dir = tempfile::tempdir().unwrap();
        let inc = Incoming::new(dir.path());
        inc.create_dirs().unwrap();
        std::fs::write(inc.dir.join("lonely.deb"), b"x").unwrap();
        std::fs::write(inc.dir.join(".part-1"), b"x").unwrap();
        assert_eq!(inc.remove_orphans(Duration::from_secs(3600)).unwrap(), 0);
        assert_eq!(inc.remove_orphans(Duration::ZERO).unwrap(), 2);
    }
}
