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

use crate::files::safe_file_name;
use crate::openpgp::Keyring;
use crate::repo::{Engine, RepoError};
use crate::state::{Record, StateError, StateStore};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod decision;
mod hooks;
mod quota;

use decision::listed_names;
pub use decision::{Examined, examine, settle};
pub use hooks::{HOOK_TIMEOUT, Hooks};
pub use quota::{Allowance, Limits, MAX_FILE, Oversize, size_limit};

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
    /// A source migrated into the event's distribution (`migrate`).
    Migrated,
    /// A source was removed from the event's distribution (`remove`).
    Removed,
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
            "MIGRATED" => Some(EventKind::Migrated),
            "REMOVED" => Some(EventKind::Removed),
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
    /// `Changed-By` and `Maintainer` of an accepted upload's `.changes` (empty otherwise):
    /// the automatic recipients of mail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub changed_by: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub maintainer: String,
}

impl Record for Event {
    const TABLE: &'static str = "events";
}

/// Makes a directory's entries durable (after a link, rename or removal in it).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), IncomingError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Whether two files have the same content, compared a block at a time (never read whole).
fn same_content(a: &Path, b: &Path) -> std::io::Result<bool> {
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        if n != read_full(&mut fb, &mut bb)? || ba[..n] != bb[..n] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Fills `buf` as far as the file goes; the number of bytes read.
fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut filled = 0;
    while filled < buf.len() {
        match f.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The incoming and queue directories of a home.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub dir: PathBuf,
    pub queue: PathBuf,
    /// Who sent the files waiting here (see [`quota`]).
    owners: quota::Owners,
}

impl Incoming {
    pub fn new(home: &Path) -> Incoming {
        Incoming {
            dir: home.join("var/incoming"),
            queue: home.join("var/queue"),
            owners: Default::default(),
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

    /// Moves a completely received file into place, durably: the file's data and the
    /// directory entry are on disk before this returns (and the client hears 201). The same
    /// content again is fine (dput retries). Other content under an existing name replaces a
    /// file no waiting `.changes` claims (lists with its size and SHA-256: an interrupted
    /// transfer, retried); a claimed file, or a `.changes`, is kept and the new file refused.
    /// `client`, the sender's address, is remembered for its quota ([`Incoming::received`]).
    pub fn commit(
        &self,
        tmp: &Path,
        name: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<PathBuf, IncomingError> {
        let path = self.put_in_place(tmp, name)?;
        if let Some(ip) = client {
            self.received(name, ip);
        }
        Ok(path)
    }

    fn put_in_place(&self, tmp: &Path, name: &str) -> Result<PathBuf, IncomingError> {
        let target = self.target(name)?;
        let file = std::fs::File::open(tmp).map_err(io(tmp))?;
        file.sync_all().map_err(io(tmp))?;
        if target.exists() {
            let same = same_content(&target, tmp).map_err(io(&target))?;
            let replace = !same
                && !name.ends_with(".changes")
                && !decision::claimed(self, name, &target).map_err(io(&target))?;
            if replace {
                std::fs::rename(tmp, &target).map_err(io(&target))?;
                sync_dir(&self.dir)?;
                tracing::info!(file = %name, "an unclaimed file of the same name replaced");
                return Ok(target);
            }
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
                sync_dir(&self.dir)?;
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

/// Records what a repository operation did to a source in a distribution (MIGRATED,
/// REMOVED) as an event; returns it for announcing.
pub fn record_operation(
    state: &StateStore,
    kind: EventKind,
    source: &str,
    version: &str,
    distribution: &str,
    reason: String,
) -> Result<Event, StateError> {
    let e = Event {
        id: String::new(),
        time: 0,
        kind,
        file: String::new(),
        source: source.to_string(),
        version: version.to_string(),
        distribution: distribution.to_string(),
        reason,
        changed_by: String::new(),
        maintainer: String::new(),
    };
    Ok(record(state, vec![e])?.remove(0))
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

/// Retention: deletes the events from before `before` (seconds since the epoch), except the
/// newest `keep`, with their files in `<home>/var/events/`; returns how many went.
pub fn prune_events(
    state: &StateStore,
    home: &Path,
    before: i64,
    keep: usize,
) -> Result<usize, IncomingError> {
    let before = event_id(u128::try_from(before).unwrap_or(0) * 1_000_000_000);
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

#[cfg(test)]
mod tests {
    use super::decision::discard;
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
            changed_by: String::new(),
            maintainer: String::new(),
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
        let now = crate::repo::publish_time();
        // 30 days: the three old ones go, with their files.
        assert_eq!(
            prune_events(&state, dir.path(), now - 30 * 86_400, 1).unwrap(),
            3
        );
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
        assert_eq!(prune_events(&state, dir.path(), now, 1).unwrap(), 1);
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
            inc.commit(&tmp, "x_1.0.dsc", None)
        };
        put(b"on").unwrap();
        put(b"on").unwrap();
        // Claimed by nothing (an interrupted transfer): a retry replaces it.
        put(b"one").unwrap();
        assert_eq!(std::fs::read(inc.dir.join("x_1.0.dsc")).unwrap(), b"one");
        // Claimed by a waiting .changes with its size and SHA-256: kept.
        let sha = crate::checksums::Digests::of(b"one").sha256;
        std::fs::write(
            inc.dir.join("x_1.0_source.changes"),
            format!("Source: x\nChecksums-Sha256:\n {sha} 3 x_1.0.dsc\n"),
        )
        .unwrap();
        assert!(matches!(put(b"two"), Err(IncomingError::Conflict { .. })));
        assert!(matches!(put(b"one2"), Err(IncomingError::Conflict { .. })));
        assert_eq!(std::fs::read(inc.dir.join("x_1.0.dsc")).unwrap(), b"one");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&inc.dir).unwrap().count(), 2);
    }

    /// Files are compared a block at a time: equal ones over several blocks, and ones that
    /// differ only in the last byte.
    #[test]
    fn same_content_compares_every_block() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let data: Vec<u8> = (0..200_001u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&a, &data).unwrap();
        std::fs::write(&b, &data).unwrap();
        assert!(same_content(&a, &b).unwrap());
        let mut other = data.clone();
        *other.last_mut().unwrap() ^= 1;
        std::fs::write(&b, &other).unwrap();
        assert!(!same_content(&a, &b).unwrap());
        std::fs::write(&b, &data[..1000]).unwrap();
        assert!(!same_content(&a, &b).unwrap());
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
