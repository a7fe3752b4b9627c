//! Deciding one uploaded `.changes`: the acceptance rules in mini-buildd's order, in two
//! halves. [`examine`] makes every check (the expensive ones included) reading only;
//! [`settle`], holding the write token, checks the rules again against the repository as it
//! is now and acts: queue (one directory rename), install, or reject and discard.

use super::{Event, EventKind, Incoming, IncomingError, io, record, sync_dir, uploaders};
use crate::changes::Changes;
use crate::checksums::Digests;
use crate::dsc::Dsc;
use crate::files::{FileEntry, Trust};
use crate::repo::Engine;
use crate::state::StateStore;
use crate::version::Version;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Why an upload was refused: the sentence that goes into its REJECTED event.
#[derive(Debug)]
struct Rejection(String);

/// What a `.changes` names, as far as it could be read (for the event).
#[derive(Default)]
struct Subject {
    source: String,
    version: String,
    distribution: String,
    /// Whether the `.changes` was parsed and, where the repository wants one, its signature
    /// verified: only then may a rejection remove the files it lists.
    owns_files: bool,
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
    if dsc.source != changes.source || dsc.version.to_string() != changes.version.to_string() {
        return Err(format!(
            "{} is {} {}, the .changes is for {} {}",
            entry.name, dsc.source, dsc.version, changes.source, changes.version
        ));
    }
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
    let mut changes = Changes::read(path, Trust::Unchecked).map_err(|e| named(&e))?;
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
    // 3. signature: from here on only the signed text counts.
    if !r.repository.allow_unauthenticated_uploads {
        let keyring =
            uploaders(engine, state, &r.repository.identity).map_err(|e| reject(e.to_string()))?;
        let signed = Changes::read(path, Trust::Keyring(&keyring)).map_err(|e| named(&e))?;
        if signed.distributions != changes.distributions
            || signed.source != changes.source
            || signed.version != changes.version
        {
            return Err(reject(
                "the signed text differs from the text around it (source, version or distribution)"
                    .to_string(),
            ));
        }
        changes = signed;
    }
    subject.owns_files = true;
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
    if !changes.has_source() {
        if let Some(dsc) = changes.dsc() {
            return Err(reject(format!(
                "lists {} but its Architecture has no 'source'; a binary-only upload cannot carry a source",
                dsc.name
            )));
        }
    }
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

/// The names a `.changes` lists, read leniently (it may not parse): the last word of each
/// line of `Files` and `Checksums-*`, by its base name.
/// Whether a waiting `.changes` lists `name` with exactly the size and SHA-256 of `file`:
/// such a file is part of an upload and is not replaced by other content.
pub(super) fn claimed(incoming: &Incoming, name: &str, file: &Path) -> std::io::Result<bool> {
    let size = std::fs::metadata(file)?.len();
    let mut wanted = Vec::new();
    for changes in incoming.pending().unwrap_or_default() {
        let text = crate::files::read_control_file(&changes).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let mut in_sha256 = false;
        for line in text.lines() {
            if !line.starts_with(' ') && !line.starts_with('\t') {
                in_sha256 = line
                    .split(':')
                    .next()
                    .is_some_and(|f| f.trim().eq_ignore_ascii_case("checksums-sha256"));
                continue;
            }
            let w: Vec<&str> = line.split_whitespace().collect();
            if in_sha256 && w.len() == 3 && w[2] == name && w[1].parse() == Ok(size) {
                wanted.push(w[0].to_ascii_lowercase());
            }
        }
    }
    if wanted.is_empty() {
        return Ok(false);
    }
    let have = crate::checksums::Digests::of_reader(std::fs::File::open(file)?)?.sha256;
    Ok(wanted.contains(&have))
}

pub(super) fn listed_names(changes_path: &Path) -> Vec<String> {
    let text = crate::files::read_control_file(changes_path).unwrap_or_default();
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
pub(super) fn discard(incoming: &Incoming, changes_path: &Path) {
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
            changed_by: String::new(),
            maintainer: String::new(),
        }
    }

    /// The files go (those of a `.changes` that [`Subject::owns_files`]; else only itself)
    /// before the event is recorded: once REJECTED is visible, an upload of the
    /// same names again cannot lose its files to this discard.
    fn reject(&self, subject: &Subject, reason: String) -> Result<Vec<Event>, IncomingError> {
        if subject.owns_files {
            discard(self.incoming, self.path);
        } else {
            // Unparseable or not signed by an uploader: it may name anyone's files.
            let _ = std::fs::remove_file(self.path);
        }
        Ok(record(
            self.state,
            vec![self.event(EventKind::Rejected, subject, reason)],
        )?)
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
