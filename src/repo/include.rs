//! Includes: package files read, checked, hashed and staged ([`Engine::stage`], nothing
//! written to the store), then put in ([`Engine::include_staged`]: one store transaction,
//! pool placement journalled, the touched distributions published, unreferenced pool files
//! collected). A replaced version shifts the rollbacks.

use super::*;

impl Engine {
    /// Imports packages into a distribution (the admin import: no signature or version-rule
    /// checks, but every integrity check). `files` may be `.changes`, `.dsc`, `.deb`, `.udeb`,
    /// or directories (their package files are taken, sorted by name).
    /// Replacing a version shifts the rollbacks; an older or equal version is an error.
    pub fn include(&self, dist: &str, files: &[PathBuf]) -> Result<Vec<String>, RepoError> {
        let staged = self.stage(dist, files)?;
        self.include_staged(staged)
    }

    /// The reading half of [`Engine::include`]: every file parsed, checked, hashed and copied
    /// into the pool's staging area, with nothing written to the store. Needs no write
    /// token; several may run at once.
    pub fn stage(&self, dist: &str, files: &[PathBuf]) -> Result<Staged, RepoError> {
        let r = self.resolve(dist)?;
        if r.is_rollback() {
            return Err(RepoError::Refused {
                file: files.first().cloned().unwrap_or_default(),
                reason: format!("cannot include into rollback distribution {dist}"),
            });
        }
        let repo_dir = self.repo_dir(&r.repository.identity);
        let files = expand(files)?;
        let staging = pool::Staging::new(&repo_dir).map_err(RepoError::io(&repo_dir))?;
        let mut staged = StagedFiles::default();
        let started = std::time::Instant::now();
        let items = self.collect_all(&files, &r, &staging, &mut staged)?;
        tracing::debug!(files = files.len(), elapsed = ?started.elapsed(), "read");
        Ok(Staged {
            dist: dist.to_string(),
            first: files.first().cloned().unwrap_or_default(),
            resolved: r,
            items,
            files: staged,
            _staging: staging,
        })
    }

    /// The writing half of [`Engine::include`]: puts staged files in (holding the write
    /// token). The distribution must still be what it was when they were read.
    pub fn include_staged(&self, staged: Staged) -> Result<Vec<String>, RepoError> {
        let Staged {
            dist,
            first,
            resolved,
            items,
            files: staged,
            _staging,
        } = staged;
        let r = self.resolve(&dist)?;
        if r.name != resolved.name || r.repository.identity != resolved.repository.identity {
            return Err(RepoError::Refused {
                file: first,
                reason: format!("{dist} changed while the files were read; include them again"),
            });
        }
        let repo = r.repository.identity.clone();
        let sp = self.store.savepoint()?;
        let mut placed = Vec::new();
        let summary = self
            .include_groups(&r, items, staged, &mut placed)
            .map_err(|e| self.undo(sp, &repo, &placed, None, e))?;
        self.collect_garbage_later();
        Ok(summary)
    }

    /// Puts the staged items into the distribution, pool and store, and publishes; the pool
    /// paths it adds go to `placed` as they are placed (for an undo).
    fn include_groups(
        &self,
        r: &Resolved,
        items: Vec<Item>,
        staged: StagedFiles,
        placed: &mut Vec<String>,
    ) -> Result<Vec<String>, RepoError> {
        let repo = r.repository.identity.clone();
        let repo_dir = self.repo_dir(&repo);
        let started = std::time::Instant::now();
        let mut groups: BTreeMap<String, Vec<Item>> = BTreeMap::new();
        for item in items {
            groups
                .entry(item.source_name().to_string())
                .or_default()
                .push(item);
        }
        let mut tx = self.store.write()?;
        // Pool placement: refuse conflicts before anything enters the pool.
        let mut to_place: Vec<(PathBuf, String, bool)> = Vec::new();
        for items in groups.values() {
            for item in items {
                for (from, rel, sha256, is_staged) in item.pool_files() {
                    match tx.pool_sha256(&repo, &rel)? {
                        Some(existing) if existing != sha256 => {
                            return Err(RepoError::PoolConflict {
                                file: item.path().to_path_buf(),
                                path: rel,
                            });
                        }
                        Some(_) => {}
                        None => to_place.push((from.clone(), rel, is_staged)),
                    }
                }
            }
        }
        // A pool path named twice in one import is placed once (the first file, as listed).
        to_place.sort_by(|a, b| a.1.cmp(&b.1));
        to_place.dedup_by(|later, first| later.1 == first.1);
        let mut touched = BTreeSet::new();
        let mut summary = Vec::new();
        // Each group's parsed packages are dropped once they are in the transaction: a large
        // import would otherwise hold every package until the commit, on top of what the
        // transaction adds.
        for (source, items) in groups {
            self.apply_include(&mut tx, r, &source, &items, &mut touched, &mut summary)?;
        }
        tracing::debug!(elapsed = ?started.elapsed(), "applied");
        let journal = self.journal();
        let rels: Vec<String> = to_place
            .iter()
            .map(|(_, rel, _)| format!("{repo}/{rel}"))
            .collect();
        for dist in &touched {
            tx.mark_unpublished(&repo, dist)?;
        }
        journal.begin(&rels).map_err(RepoError::io(&self.home))?;
        placed.extend(rels);
        place_all(&to_place, &repo_dir)?;
        tracing::debug!(elapsed = ?started.elapsed(), "placed");
        pool::sync(&repo_dir).map_err(RepoError::io(&repo_dir))?;
        tx.commit()?;
        tracing::debug!(elapsed = ?started.elapsed(), "committed");
        journal.end().map_err(RepoError::io(&self.home))?;
        drop(staged);
        drop(to_place);
        self.publish_touched(&touched)?;
        Ok(summary)
    }

    /// [`Engine::collect_garbage`] after a change that succeeded: a failure is logged, not
    /// returned (the change is done and published; the freed files stay recorded, and the
    /// next change or start deletes them).
    pub(super) fn collect_garbage_later(&self) {
        if let Err(e) = self.collect_garbage() {
            tracing::warn!(error = %e, "deleting unreferenced pool files; left for later");
        }
    }

    /// Deletes the pool files nothing refers to any more. Runs after the distributions that
    /// named them were published again, so no published index ever names a missing file; a
    /// crash in between leaves the record, and the next open finishes the job.
    pub(super) fn collect_garbage(&self) -> Result<(), RepoError> {
        let freed = self.store.freed()?;
        if freed.is_empty() {
            return Ok(());
        }
        let mut done = Vec::with_capacity(freed.len());
        for (repo, rel, referenced) in freed {
            if !referenced {
                let dir = self.repo_dir(&repo);
                pool::remove(&dir, &rel).map_err(RepoError::io(&dir.join(&rel)))?;
            }
            done.push((repo, rel));
        }
        self.store.forget_freed(&done)?;
        Ok(())
    }

    pub(super) fn publish_touched(&self, touched: &BTreeSet<String>) -> Result<(), RepoError> {
        let names: Vec<DistName> = touched
            .iter()
            .filter_map(|d| DistName::parse(d).ok())
            .collect();
        self.publish(&names)
    }

    /// Reads every file into items, on all cores; results keep the order of `files`.
    pub(super) fn collect_all(
        &self,
        files: &[PathBuf],
        r: &Resolved,
        staging: &pool::Staging,
        staged: &mut StagedFiles,
    ) -> Result<Vec<Item>, RepoError> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(files.len().max(1));
        let next = AtomicUsize::new(0);
        let mut results: Vec<(usize, Result<Vec<Item>, RepoError>)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(f) = files.get(i) else { break };
                            let mut items = Vec::new();
                            let result = self.collect(f, r, staging, &mut items).map(|()| items);
                            if result.is_err() {
                                next.store(files.len(), Ordering::Relaxed);
                            }
                            done.push((i, result));
                        }
                        done
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("reader thread panicked"))
                .collect()
        });
        results.sort_by_key(|(i, _)| *i);
        let mut items = Vec::new();
        let mut first_error = None;
        for (_, result) in results {
            match result {
                Ok(found) => {
                    for item in &found {
                        if let Item::Binary {
                            staged: Some(p), ..
                        } = item
                        {
                            staged.0.push(p.clone());
                        }
                    }
                    items.extend(found);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(items),
        }
    }

    /// Reads one file given to `include` into items.
    pub(super) fn collect(
        &self,
        path: &Path,
        r: &Resolved,
        staging: &pool::Staging,
        items: &mut Vec<Item>,
    ) -> Result<(), RepoError> {
        let name = path.to_string_lossy();
        if name.ends_with(".changes") {
            let c = Changes::read(path, Trust::Unchecked)?;
            let dir = c.dir().to_path_buf();
            let first = items.len();
            // Every listed file is read once: binaries while they are parsed and staged, the
            // others here; the source item reuses these digests.
            let mut verified: BTreeMap<String, Digests> = BTreeMap::new();
            let mut dsc_entry = None;
            for entry in &c.files.entries {
                let file = dir.join(&entry.name);
                if entry.name.ends_with(".deb") || entry.name.ends_with(".udeb") {
                    let (item, digests) = binary_item(&file, r, staging, entry.section.clone())?;
                    entry_matches(entry, &digests, &file)?;
                    if let Item::Binary { pkg, .. } = &item {
                        if pkg.source != c.source {
                            return Err(RepoError::Refused {
                                file,
                                reason: format!(
                                    "belongs to source '{}', not '{}'",
                                    pkg.source, c.source
                                ),
                            });
                        }
                    }
                    items.push(item);
                    continue;
                }
                let d = entry
                    .verify_in(&dir)
                    .map_err(|e| ControlFileError::new(path, e))?;
                verified.insert(entry.name.clone(), d);
                if entry.name.ends_with(".dsc") {
                    dsc_entry = Some(entry);
                }
            }
            if let Some(entry) = dsc_entry {
                let section = entry.section.clone().unwrap_or_else(|| "misc".into());
                let priority = entry.priority.clone().unwrap_or_else(|| "optional".into());
                let file = dir.join(&entry.name);
                let item = self.source_item(&file, r, Some((section, priority)), &verified)?;
                items.insert(first, item);
            }
            Ok(())
        } else if name.ends_with(".dsc") {
            items.push(self.source_item(path, r, None, &BTreeMap::new())?);
            Ok(())
        } else if name.ends_with(".deb") || name.ends_with(".udeb") {
            items.push(binary_item(path, r, staging, None)?.0);
            Ok(())
        } else {
            Err(RepoError::Refused {
                file: path.to_path_buf(),
                reason: "unknown file type (expected .changes, .dsc, .deb or .udeb)".into(),
            })
        }
    }

    /// A source item: the `.dsc` and its files, each from the `.dsc`'s directory or, when
    /// absent there, from the pool (an upload built with `-sd` carries no orig tarball).
    pub(super) fn source_item(
        &self,
        path: &Path,
        r: &Resolved,
        section: Option<(String, String)>,
        verified: &BTreeMap<String, Digests>,
    ) -> Result<Item, RepoError> {
        let bytes = std::fs::read(path).map_err(RepoError::io(path))?;
        let dsc = Dsc::parse(&bytes, path, Trust::Unchecked)?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let (section, priority) = section.unwrap_or_else(|| package_list_section(&dsc));
        let component = index::component_of_section(&section).to_string();
        check_component(&component, r, path)?;
        let directory = pool::directory(&component, &dsc.source);
        let mut files = vec![(path.to_path_buf(), dsc.file_name(), Digests::of(&bytes))];
        for entry in &dsc.files.entries {
            let local = dir.join(&entry.name);
            let (from, d) = match verified.get(&entry.name) {
                // Already read for the .changes: compare, do not read again.
                Some(d) => {
                    entry.check(d).map_err(|e| ControlFileError::new(path, e))?;
                    (local, d.clone())
                }
                None => {
                    let from = if local.exists() {
                        local
                    } else {
                        self.repo_dir(&r.repository.identity)
                            .join(&directory)
                            .join(&entry.name)
                    };
                    let d = entry
                        .verify_in(from.parent().unwrap())
                        .map_err(|e| ControlFileError::new(path, e))?;
                    (from, d)
                }
            };
            files.push((from, entry.name.clone(), d));
        }
        Ok(Item::Source {
            dsc: Box::new(dsc),
            path: path.to_path_buf(),
            files,
            component,
            directory,
            section,
            priority,
        })
    }

    /// Applies one source group of an include inside the transaction.
    pub(super) fn apply_include(
        &self,
        tx: &mut Txn<'_>,
        r: &Resolved,
        source: &str,
        items: &[Item],
        touched: &mut BTreeSet<String>,
        summary: &mut Vec<String>,
    ) -> Result<(), RepoError> {
        let repo = r.repository.identity.as_str();
        let dist = r.name.to_string();
        let existing = tx.group(repo, &dist, source)?;
        let mut new_group = Group::default();
        let source_item = items.iter().find(|i| matches!(i, Item::Source { .. }));
        match source_item {
            Some(Item::Source { dsc, path, .. }) => {
                if let Some(ev) = existing.version()
                    && ev >= dsc.version
                {
                    return Err(RepoError::NotNewer {
                        file: path.clone(),
                        package: source.to_string(),
                        version: dsc.version.to_string(),
                        existing: ev.to_string(),
                        dist,
                    });
                }
            }
            _ => new_group = existing.clone(),
        }
        for item in items {
            match item {
                Item::Source {
                    dsc,
                    files,
                    component,
                    directory,
                    section,
                    priority,
                    ..
                } => {
                    let listed: Vec<index::SourceFile<'_>> = files
                        .iter()
                        .map(|(_, name, d)| index::SourceFile { name, digests: d })
                        .collect();
                    new_group.source = Some(SourceRecord {
                        version: dsc.version.to_string(),
                        component: component.clone(),
                        directory: directory.clone(),
                        files: files
                            .iter()
                            .map(|(_, name, d)| PoolFile {
                                name: name.clone(),
                                size: d.size,
                                sha256: d.sha256.clone(),
                            })
                            .collect(),
                        stanza: index::sources_stanza(dsc, &listed, directory, section, priority),
                    });
                    summary.push(format!("{source} {} (source) → {dist}", dsc.version));
                }
                Item::Binary {
                    pkg, path, record, ..
                } => {
                    if let Some(old) = new_group
                        .binaries
                        .iter()
                        .find(|b| b.package == pkg.name && b.architecture == pkg.architecture)
                        && source_item.is_none()
                        && Version::parse(&old.record.version).is_ok_and(|v| v >= pkg.version)
                    {
                        return Err(RepoError::NotNewer {
                            file: path.clone(),
                            package: pkg.name.clone(),
                            version: pkg.version.to_string(),
                            existing: old.record.version.clone(),
                            dist,
                        });
                    }
                    new_group
                        .binaries
                        .retain(|b| !(b.package == pkg.name && b.architecture == pkg.architecture));
                    new_group.binaries.push(Binary {
                        package: pkg.name.clone(),
                        architecture: pkg.architecture.clone(),
                        record: (**record).clone(),
                    });
                    if let Some(files) = &pkg.contents {
                        tx.put_contents(repo, &record.filename, files)?;
                    }
                    summary.push(format!(
                        "{} {} ({}) → {dist}",
                        pkg.name, pkg.version, pkg.architecture
                    ));
                }
            }
        }
        if !existing.is_empty() {
            self.shift_rollbacks(tx, r, source, touched)?;
            let old = tx.take_group(repo, &dist, source)?;
            tx.reference(repo, &old, -1);
        }
        new_group
            .binaries
            .sort_by(|a, b| (&a.package, &a.architecture).cmp(&(&b.package, &b.architecture)));
        tx.place_group(repo, &dist, source, &new_group)?;
        tx.reference(repo, &new_group, 1);
        touched.insert(dist);
        Ok(())
    }

    /// Before the group of `source` in a main distribution is replaced or removed, keeps a copy
    /// in `-rollback0` and moves older rollbacks one slot up (the oldest is dropped). Nothing
    /// happens if that version is already in a rollback slot.
    pub(super) fn shift_rollbacks(
        &self,
        tx: &mut Txn<'_>,
        r: &Resolved,
        source: &str,
        touched: &mut BTreeSet<String>,
    ) -> Result<(), RepoError> {
        let count = r.suite.rollback;
        let repo = r.repository.identity.as_str();
        let dist = r.name.main().to_string();
        let current = tx.group(repo, &dist, source)?;
        if count == 0 || current.is_empty() {
            return Ok(());
        }
        let slots = r.rollback_names();
        let version = current.version();
        for slot in &slots {
            if tx.group(repo, slot, source)?.version() == version {
                return Ok(());
            }
        }
        let dropped = tx.take_group(repo, &slots[count as usize - 1], source)?;
        tx.reference(repo, &dropped, -1);
        if !dropped.is_empty() {
            touched.insert(slots[count as usize - 1].clone());
        }
        for n in (1..count as usize).rev() {
            let g = tx.take_group(repo, &slots[n - 1], source)?;
            if !g.is_empty() {
                tx.place_group(repo, &slots[n], source, &g)?;
                touched.insert(slots[n - 1].clone());
                touched.insert(slots[n].clone());
            }
        }
        tx.place_group(repo, &slots[0], source, &current)?;
        tx.reference(repo, &current, 1);
        touched.insert(slots[0].clone());
        Ok(())
    }
}

/// Moves staged files (or copies others) into the pool, on all cores: files of different
/// pool directories do not wait for each other's directory locks.
pub(super) fn place_all(
    to_place: &[(PathBuf, String, bool)],
    repo_dir: &Path,
) -> Result<(), RepoError> {
    let placed = publish::in_chunks(to_place, |(from, rel, is_staged)| {
        if *is_staged {
            pool::place_staged(from, repo_dir, rel)
        } else {
            pool::place(from, repo_dir, rel)
        }
        .map_err(RepoError::io(from))
    });
    placed.into_iter().collect()
}

/// One package file given to `include`, checked and ready for the pool.
pub(super) enum Item {
    Source {
        dsc: Box<Dsc>,
        path: PathBuf,
        /// (where it is now, file name, digests): the `.dsc` first.
        files: Vec<(PathBuf, String, Digests)>,
        component: String,
        directory: String,
        section: String,
        priority: String,
    },
    Binary {
        pkg: Box<Kept>,
        path: PathBuf,
        /// The copy made while reading, to be moved into the pool.
        staged: Option<PathBuf>,
        record: Box<BinaryRecord>,
    },
}

impl Item {
    fn source_name(&self) -> &str {
        match self {
            Item::Source { dsc, .. } => &dsc.source,
            Item::Binary { pkg, .. } => &pkg.source,
        }
    }

    fn path(&self) -> &Path {
        match self {
            Item::Source { path, .. } | Item::Binary { path, .. } => path,
        }
    }

    /// (from, pool path, sha256, staged) of every file this item puts in the pool.
    fn pool_files(&self) -> Vec<(&PathBuf, String, String, bool)> {
        match self {
            Item::Source {
                files, directory, ..
            } => files
                .iter()
                .map(|(from, name, d)| {
                    (from, format!("{directory}/{name}"), d.sha256.clone(), false)
                })
                .collect(),
            Item::Binary {
                path,
                staged,
                record,
                ..
            } => match staged {
                Some(s) => vec![(s, record.filename.clone(), record.sha256.clone(), true)],
                None => vec![(path, record.filename.clone(), record.sha256.clone(), false)],
            },
        }
    }
}

/// What an include keeps of a binary package until its transaction: the control fields are
/// in the record's stanza by then, and a large import holds one of these per package.
pub(super) struct Kept {
    name: String,
    architecture: String,
    source: String,
    version: Version,
    /// The data member's paths, one per line.
    contents: Option<Box<str>>,
}

/// Staged copies, deleted when dropped unless they were moved into the pool.
#[derive(Default)]
pub(super) struct StagedFiles(Vec<PathBuf>);

/// Files read for an include and waiting to be put in (see [`Engine::stage`]); dropping it
/// removes the staged copies.
pub struct Staged {
    dist: String,
    /// The first file given, for messages.
    first: PathBuf,
    resolved: Resolved,
    items: Vec<Item>,
    files: StagedFiles,
    _staging: pool::Staging,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("dist", &self.dist)
            .field("items", &self.items.len())
            .finish()
    }
}

impl Drop for StagedFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Directories given to `include` stand for the package files in them.
pub(super) fn expand(files: &[PathBuf]) -> Result<Vec<PathBuf>, RepoError> {
    let mut out = Vec::new();
    for f in files {
        if f.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(f)
                .map_err(RepoError::io(f))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let n = p.to_string_lossy();
                    [".deb", ".udeb", ".dsc", ".changes"]
                        .iter()
                        .any(|x| n.ends_with(x))
                })
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(f.clone());
        }
    }
    Ok(out)
}

/// Reads a binary package once: hashing, parsing and copying into the staging area together.
pub(super) fn read_staged(
    path: &Path,
    staging: &pool::Staging,
) -> Result<(BinaryPackage, PathBuf), RepoError> {
    use std::io::Write;
    let src = std::fs::File::open(path).map_err(RepoError::io(path))?;
    let (tmp, out) = staging.create().map_err(RepoError::io(path))?;
    let len = deb::buffer_len(&src);
    let mut reader = std::io::BufReader::with_capacity(
        len,
        pool::Tee {
            reader: src,
            writer: std::io::BufWriter::with_capacity(len, out),
        },
    );
    let udeb = path.extension().is_some_and(|e| e == "udeb");
    let result = deb::read_from(&mut reader, path, udeb, true)
        .map_err(RepoError::from)
        .and_then(|pkg| {
            reader
                .into_inner()
                .writer
                .flush()
                .map(|()| pkg)
                .map_err(RepoError::io(&tmp))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|pkg| (pkg, tmp))
}

/// A binary package read and staged, with the digests of its file.
pub(super) fn binary_item(
    path: &Path,
    r: &Resolved,
    staging: &pool::Staging,
    section: Option<String>,
) -> Result<(Item, Digests), RepoError> {
    let (pkg, staged) = read_staged(path, staging)?;
    let digests = pkg.digests.clone();
    let item = binary_item_from(pkg, path.to_path_buf(), r, section, staged.clone());
    if item.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    item.map(|item| (item, digests))
}

pub(super) fn binary_item_from(
    pkg: BinaryPackage,
    path: PathBuf,
    r: &Resolved,
    section: Option<String>,
    staged: PathBuf,
) -> Result<Item, RepoError> {
    let section = section
        .filter(|s| !s.is_empty() && s != "-")
        .or_else(|| pkg.control.get("Section").map(str::to_string))
        .unwrap_or_else(|| "misc".into());
    let component = index::component_of_section(&section).to_string();
    check_component(&component, r, &path)?;
    let arch_ok =
        pkg.architecture == "all" || r.distribution.architectures.contains(&pkg.architecture);
    if !arch_ok {
        return Err(RepoError::Refused {
            file: path,
            reason: format!(
                "architecture '{}' is not one of {}'s ({})",
                pkg.architecture,
                r.name,
                r.distribution.architectures.join(" ")
            ),
        });
    }
    let filename = format!(
        "{}/{}_{}_{}.{}",
        pool::directory(&component, &pkg.source),
        pkg.name,
        pkg.version.without_epoch(),
        pkg.architecture,
        pkg.package_type.extension()
    );
    let mut record = BinaryRecord {
        version: pkg.version.to_string(),
        source_version: pkg.source_version.to_string(),
        component,
        package_type: pkg.package_type,
        section,
        filename: filename.clone(),
        sha256: pkg.digests.sha256.clone(),
        stanza: index::packages_stanza(&pkg, &filename),
    };
    record.stanza.shrink_to_fit();
    let pkg = Kept {
        contents: pkg.contents.map(|files| files.join("\n").into_boxed_str()),
        name: pkg.name,
        architecture: pkg.architecture,
        source: pkg.source,
        version: pkg.version,
    };
    Ok(Item::Binary {
        pkg: Box::new(pkg),
        path,
        staged: Some(staged),
        record: Box::new(record),
    })
}

pub(super) fn check_component(component: &str, r: &Resolved, file: &Path) -> Result<(), RepoError> {
    if r.distribution.components.iter().any(|c| c == component) {
        Ok(())
    } else {
        Err(RepoError::Component {
            file: file.to_path_buf(),
            component: component.to_string(),
            dist: r.name.to_string(),
            components: r.distribution.components.join(" "),
        })
    }
}

/// A `.changes` entry and the package file it names must agree.
pub(super) fn entry_matches(entry: &FileEntry, d: &Digests, file: &Path) -> Result<(), RepoError> {
    entry.check(d).map_err(|e| RepoError::Refused {
        file: file.to_path_buf(),
        reason: e.to_string(),
    })
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
