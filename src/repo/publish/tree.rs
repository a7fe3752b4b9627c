//! Writing a rendered distribution to disk: digests (resumed from saved marks), by-hash
//! copies, plain names, then the signed `Release` files, each through a temporary name and a
//! rename; superseded by-hash files removed after the grace period.

use super::{DistSpec, File, PublishError};
use crate::checksums::{Digests, Mark, Resumable, digests_resumed};
use crate::openpgp::ArchiveKey;
use crate::repo::release::{self, Listed};
use crate::repo::store::PublishState;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Saved digest states of a distribution's files (by path), for the next publish.
pub type Marks = BTreeMap<String, Vec<Mark>>;

/// The files as [`digests_resumed`] takes them, each with its marks from `marks`.
pub fn resumable<'a>(files: &'a [File], marks: &'a Marks) -> Vec<Resumable<'a>> {
    files
        .iter()
        .map(|f| Resumable {
            data: &f.data,
            parts: &f.parts,
            previous: match f.same {
                Some(_) => &[],
                None => marks.get(&f.path).map_or(&[], Vec::as_slice),
            },
        })
        .collect()
}

/// The `Release` entry of each file and the digest marks to save for it: computed (resuming
/// after the parts a file shares with its previous version), or, for a file left as
/// published, as they were.
pub fn digests(files: &[File], marks: &Marks) -> Vec<(Digests, Vec<Mark>)> {
    let computed = digests_resumed(&resumable(files, marks));
    files
        .iter()
        .zip(computed)
        .map(|(f, (d, m))| match &f.same {
            Some(same) => (
                same.clone(),
                marks.get(&f.path).cloned().unwrap_or_default(),
            ),
            None => (d, m),
        })
        .collect()
}

/// Writes a distribution. `dists_root` is the repository's `dists` directory; `marks` are the
/// digest states saved by the previous publish. Returns the new by-hash bookkeeping (segments
/// are left to the caller) and the digest states to save.
#[allow(clippy::too_many_arguments)]
pub fn write(
    dists_root: &Path,
    spec: &DistSpec,
    files: &[File],
    marks: &Marks,
    key: &ArchiveKey,
    previous: &PublishState,
    now: i64,
    grace_seconds: i64,
) -> Result<(PublishState, Marks, Vec<Listed>), PublishError> {
    let dist_dir = dists_root.join(&spec.dir);
    let mut listed = Vec::with_capacity(files.len());
    let mut current = BTreeSet::new();
    let resumable = resumable(files, marks);
    let mut new_marks = Marks::new();
    // Files that changed are written to a temporary name while the digests are computed
    // (the kernel's copy and the hashing then share the cores); a file whose parts all match
    // the previous publish is the previous file, and its by-hash copy is already there.
    let (digests, staged) = std::thread::scope(|scope| {
        // One writer per changed file: filling fresh page cache is most of a write's cost,
        // and the files fill in parallel.
        let writers: Vec<_> = files
            .iter()
            .zip(&resumable)
            .map(|(f, r)| {
                let path = dist_dir.join(&f.path);
                // Also skipped when the published file has this size (most likely the same
                // bytes, as in a cold publish of an unchanged distribution): if its by-hash
                // copy turns out to be missing, it is written below.
                let same_size =
                    || fs::metadata(&path).is_ok_and(|m| m.len() == f.data.len() as u64);
                if f.listed_only || f.same.is_some() || r.unchanged() || same_size() {
                    return None;
                }
                Some(scope.spawn(move || {
                    let by_hash = path.parent().expect("in a directory").join("by-hash");
                    let staged = tmp_name(&by_hash.join(path.file_name().expect("a file name")));
                    write_file(&staged, &f.data).map(|()| staged)
                }))
            })
            .collect();
        let digests = digests(files, marks);
        let staged = writers
            .into_iter()
            .map(|w| {
                w.map(|w| w.join().expect("index writer panicked"))
                    .transpose()
            })
            .collect::<Result<Vec<Option<PathBuf>>, PublishError>>();
        (digests, staged)
    });
    let staged = staged?;
    tracing::debug!(dir = %spec.dir, "digests computed");
    // 1. by-hash copies: SHA256 written, SHA512 a hard link to it.
    let mut by_hash_paths = Vec::with_capacity(files.len());
    for ((f, (d, m)), staged) in files.iter().zip(digests).zip(staged) {
        if !m.is_empty() {
            new_marks.insert(f.path.clone(), m);
        }
        listed.push(Listed {
            path: f.path.clone(),
            digests: d,
        });
        if f.listed_only {
            continue;
        }
        let d = &listed.last().expect("just pushed").digests;
        let plain = dist_dir.join(&f.path);
        let by256 = by_hash_path(&plain, "SHA256", &d.sha256);
        let by512 = by_hash_path(&plain, "SHA512", &d.sha512);
        match staged {
            Some(staged) if by256.exists() => remove_file(&staged)?,
            Some(staged) => rename(&staged, &by256)?,
            None if f.same.is_some() && !by256.exists() => {
                let gone = io::Error::new(io::ErrorKind::NotFound, "left as published, now gone");
                return Err(PublishError::io(&by256)(gone));
            }
            None if !by256.exists() => write_new(&by256, &f.data)?,
            None => {}
        }
        if !by512.exists() {
            link_new(&by256, &by512)?;
        }
        for by in [&by256, &by512] {
            let rel_to_root = by
                .strip_prefix(dists_root)
                .expect("inside dists")
                .to_string_lossy()
                .into_owned();
            current.insert(rel_to_root);
        }
        by_hash_paths.push((f.path.as_str(), by256));
    }
    // 2. plain names: hard links to the by-hash files, swapped in by rename.
    for (rel, by256) in &by_hash_paths {
        link_new(by256, &dist_dir.join(rel))?;
    }
    tracing::debug!(dir = %spec.dir, "indices written");
    // Everything the Release will name is on disk before the Release is.
    sync(&dist_dir)?;
    tracing::debug!(dir = %spec.dir, "indices synced");
    // 3. Release files, InRelease last.
    let text = release::render(&spec.info, &listed);
    let sign_err = |source| PublishError::Sign {
        dist: spec.dir.clone(),
        source,
    };
    let detached = key.detached_sign(text.as_bytes()).map_err(sign_err)?;
    let inline = key.clearsign(text.as_bytes()).map_err(sign_err)?;
    write_new(&dist_dir.join("Release"), text.as_bytes())?;
    write_new(&dist_dir.join("Release.gpg"), &detached)?;
    write_new(&dist_dir.join("InRelease"), &inline)?;
    sync(&dist_dir)?;

    // Keep superseded by-hash files for the grace period, then remove them.
    let mut by_hash: BTreeMap<String, Option<i64>> =
        current.iter().map(|p| (p.clone(), None)).collect();
    for (path, superseded) in &previous.by_hash {
        if current.contains(path) {
            continue;
        }
        let since = superseded.unwrap_or(now);
        if now - since >= grace_seconds {
            let full = dists_root.join(path);
            if let Err(e) = fs::remove_file(&full)
                && e.kind() != io::ErrorKind::NotFound
            {
                return Err(PublishError::io(&full)(e));
            }
        } else {
            by_hash.insert(path.clone(), Some(since));
        }
    }
    Ok((
        PublishState {
            by_hash,
            in_progress: false,
            segments: previous.segments.clone(),
        },
        new_marks,
        listed,
    ))
}

/// Where the by-hash copy of the published file at `path` is, under `algo` (`SHA256`,
/// `SHA512`) and its hex `digest`.
pub fn by_hash_path(path: &Path, algo: &str, digest: &str) -> PathBuf {
    path.with_file_name("by-hash").join(algo).join(digest)
}

fn tmp_name(path: &Path) -> PathBuf {
    let dir = path.parent().expect("published files live in a directory");
    dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ))
}

/// Writes a file through a temporary name and a rename, so the name never shows partial
/// content. Not synced: the caller syncs before publishing a Release that names it.
fn write_new(path: &Path, data: &[u8]) -> Result<(), PublishError> {
    let tmp = tmp_name(path);
    write_file(&tmp, data)?;
    rename(&tmp, path)
}

/// Writes `data` to `path` (creating its directory), replacing what was there.
fn write_file(path: &Path, data: &[u8]) -> Result<(), PublishError> {
    let io_err = PublishError::io(path);
    fs::create_dir_all(path.parent().expect("published files live in a directory"))
        .map_err(&io_err)?;
    fs::write(path, data).map_err(io_err)
}

fn rename(from: &Path, to: &Path) -> Result<(), PublishError> {
    fs::create_dir_all(to.parent().expect("published files live in a directory"))
        .and_then(|()| fs::rename(from, to))
        .map_err(PublishError::io(to))
}

fn remove_file(path: &Path) -> Result<(), PublishError> {
    fs::remove_file(path).map_err(PublishError::io(path))
}

/// Makes `path` another name of `existing`, atomically replacing whatever `path` was.
fn link_new(existing: &Path, path: &Path) -> Result<(), PublishError> {
    let io_err = PublishError::io(path);
    fs::create_dir_all(path.parent().expect("published files live in a directory"))
        .map_err(&io_err)?;
    // rename() between two names of one file does nothing (and would leave the temporary
    // name behind): a name that already is this file is done.
    if let (Ok(a), Ok(b)) = (fs::metadata(existing), fs::metadata(path)) {
        use std::os::unix::fs::MetadataExt;
        if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
            return Ok(());
        }
    }
    let tmp = tmp_name(path);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(e)),
        _ => {}
    }
    fs::hard_link(existing, &tmp).map_err(&io_err)?;
    fs::rename(&tmp, path).map_err(io_err)
}

fn sync(path: &Path) -> Result<(), PublishError> {
    crate::repo::pool::sync(path).map_err(PublishError::io(path))
}
