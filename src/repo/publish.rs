//! Publishing one distribution: render its indices from the stored stanzas, compress them,
//! and write them so that apt always sees a consistent tree.
//!
//! Order of writes, each file via a temporary name and a rename:
//! 1. every index under `by-hash/SHA256/<digest>` and `by-hash/SHA512/<digest>` (content
//!    addressed: never changes once written);
//! 2. the indices under their plain names;
//! 3. `Release`, `Release.gpg`, and `InRelease` last.
//!
//! The Release says `Acquire-By-Hash: yes`, so apt fetches indices by digest: whatever
//! `InRelease` it read, the files it names exist with exactly those digests, also while a
//! publish is running or after one was killed. Superseded by-hash files stay for a grace
//! period, so a client holding an older `InRelease` still finds its files.

use super::compression::{self, Kind, Levels};
use super::release::{self, Listed, ReleaseInfo};
use super::store::{DistContents, PublishState};
use crate::checksums::Digests;
use crate::deb::PackageType;
use crate::openpgp::{ArchiveKey, OpenPgpError};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{path}: cannot write: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{dist}: cannot sign Release: {source}")]
    Sign { dist: String, source: OpenPgpError },
}

/// What to publish for one distribution directory.
#[derive(Debug, Clone)]
pub struct DistSpec {
    /// Path of the distribution directory below `dists/` (e.g. `bookworm-test-unstable`).
    pub dir: String,
    pub info: ReleaseInfo,
}

/// The rendered files of a distribution and the compressed segments used for them.
#[derive(Debug, Default)]
pub struct Rendered {
    /// Path relative to the distribution directory → content, in listing order.
    pub files: Vec<(String, Vec<u8>)>,
    /// Cache keys of every compressed segment the files are made of.
    pub segments: BTreeSet<String>,
    /// Segments compressed now (not found in the cache).
    pub new_segments: Vec<(String, Vec<u8>)>,
}

/// An index before compression: its text and where its records end (with their key hashes).
struct Text {
    path: String,
    data: Vec<u8>,
    records: Vec<(usize, u64)>,
    kinds: &'static [Kind],
    spacing: u64,
}

impl Text {
    fn new(path: String, kinds: &'static [Kind], spacing: u64) -> Text {
        Text {
            path,
            data: Vec::new(),
            records: Vec::new(),
            kinds,
            spacing,
        }
    }

    /// Appends a stanza (separated from the previous one by a blank line).
    fn stanza(&mut self, key: &str, stanza: &str) {
        if !self.data.is_empty() {
            self.data.push(b'\n');
        }
        self.data.extend_from_slice(stanza.as_bytes());
        self.records
            .push((self.data.len(), compression::key_hash(key.as_bytes())));
    }
}

/// Looks up compressed segments by key; `None` where the cache has none.
pub type SegmentCache<'a> = &'a dyn Fn(&[String]) -> Vec<Option<Vec<u8>>>;

/// How one compressed file is made: (text index, format, (segment key, byte range) list).
type Plan = (usize, Kind, Vec<(String, (usize, usize))>);

const BOTH: &[Kind] = &[Kind::Xz, Kind::Gzip];
const GZIP: &[Kind] = &[Kind::Gzip];

/// Renders a distribution: indices from the stored stanzas, compressed from cached segments
/// where possible. `cache` returns, for each key, the cached segment if there is one.
pub fn render(
    spec: &DistSpec,
    contents: &DistContents,
    levels: Levels,
    cache: SegmentCache<'_>,
) -> Rendered {
    let info = &spec.info;
    let mut texts: Vec<Text> = Vec::new();
    let mut small: Vec<(String, Vec<u8>)> = Vec::new();
    for component in &info.components {
        for arch in &info.architectures {
            for (kind, dir) in [
                (PackageType::Deb, format!("{component}/binary-{arch}")),
                (
                    PackageType::Udeb,
                    format!("{component}/debian-installer/binary-{arch}"),
                ),
            ] {
                let mut stanzas: Vec<(&str, &str, &str)> = contents
                    .binaries
                    .iter()
                    .map(|(b, _)| b)
                    .filter(|b| {
                        b.record.package_type == kind
                            && &b.record.component == component
                            && (&b.architecture == arch || b.architecture == "all")
                    })
                    .map(|b| {
                        (
                            b.package.as_str(),
                            b.architecture.as_str(),
                            b.record.stanza.as_str(),
                        )
                    })
                    .collect();
                stanzas.sort_unstable();
                let mut t = Text::new(
                    format!("{dir}/Packages"),
                    if kind == PackageType::Deb { BOTH } else { GZIP },
                    256,
                );
                for (package, _, stanza) in stanzas {
                    t.stanza(package, stanza);
                }
                texts.push(t);
                if kind == PackageType::Deb {
                    small.push((
                        format!("{dir}/Release"),
                        release::render_component(info, component, arch).into_bytes(),
                    ));
                }
            }
            let mut owners: Vec<String> = Vec::new();
            let mut lists: Vec<&str> = Vec::new();
            for (b, list) in &contents.binaries {
                if b.record.package_type != PackageType::Deb
                    || &b.record.component != component
                    || !(&b.architecture == arch || b.architecture == "all")
                {
                    continue;
                }
                if let Some(list) = list {
                    owners.push(format!("{}/{}", b.record.section, b.package));
                    lists.push(list);
                }
            }
            let mut entries = Vec::new();
            for (owner, list) in owners.iter().zip(&lists) {
                entries.extend(list.lines().map(|path| (path, owner.as_str())));
            }
            let mut t = Text::new(format!("{component}/Contents-{arch}"), GZIP, 2048);
            super::index::contents(entries, |path, line| {
                t.data.extend_from_slice(line.as_bytes());
                t.records
                    .push((t.data.len(), compression::key_hash(path.as_bytes())));
            });
            texts.push(t);
        }
        let mut sources: Vec<(&str, &str)> = contents
            .sources
            .iter()
            .filter(|(_, s)| &s.component == component)
            .map(|(n, s)| (n.as_str(), s.stanza.as_str()))
            .collect();
        sources.sort_unstable();
        let mut t = Text::new(format!("{component}/source/Sources"), BOTH, 256);
        for (name, stanza) in sources {
            t.stanza(name, stanza);
        }
        texts.push(t);
        small.push((
            format!("{component}/source/Release"),
            release::render_component(info, component, "source").into_bytes(),
        ));
    }
    compress_all(texts, small, levels, cache)
}

/// Compresses every text from cached or freshly compressed segments (on all cores).
fn compress_all(
    texts: Vec<Text>,
    small: Vec<(String, Vec<u8>)>,
    levels: Levels,
    cache: SegmentCache<'_>,
) -> Rendered {
    // (text index, kind) → list of (key, segment range)
    let mut plan: Vec<Plan> = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let segments = compression::split(t.data.len(), &t.records, t.spacing, 4 << 20);
        let digests: Vec<String> = segments
            .iter()
            .map(|&(a, b)| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&t.data[a..b])))
            .collect();
        for &kind in t.kinds {
            let level = levels.of(kind);
            let tag = match kind {
                Kind::Gzip => "gz",
                Kind::Xz => "xz",
            };
            let keyed = segments
                .iter()
                .zip(&digests)
                .map(|(&range, d)| (format!("{tag}{level}-{d}"), range))
                .collect();
            plan.push((i, kind, keyed));
        }
    }
    let mut keys: Vec<String> = plan
        .iter()
        .flat_map(|(_, _, k)| k.iter().map(|(key, _)| key.clone()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let found = cache(&keys);
    let mut segments: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (key, value) in keys.iter().zip(found) {
        if let Some(v) = value {
            segments.insert(key.clone(), v);
        }
    }
    // Compress what the cache lacks, largest first, on all cores.
    let mut missing: Vec<(String, Kind, &[u8])> = Vec::new();
    let mut queued = BTreeSet::new();
    for (i, kind, keyed) in &plan {
        for (key, (a, b)) in keyed {
            if !segments.contains_key(key) && queued.insert(key.clone()) {
                missing.push((key.clone(), *kind, &texts[*i].data[*a..*b]));
            }
        }
    }
    missing.sort_by_key(|(_, _, d)| std::cmp::Reverse(d.len()));
    let fresh = parallel_compress(&missing, levels);
    let fresh_keys: Vec<String> = fresh.iter().map(|(k, _)| k.clone()).collect();
    segments.extend(fresh);
    let mut files = Vec::new();
    for (i, kind, keyed) in &plan {
        let parts: Vec<(&[u8], usize)> = keyed
            .iter()
            .map(|(key, (a, b))| (segments[key].as_slice(), b - a))
            .collect();
        files.push((
            format!("{}{}", texts[*i].path, kind.extension()),
            compression::assemble(*kind, &parts),
        ));
    }
    let used = plan
        .iter()
        .flat_map(|(_, _, k)| k.iter().map(|(key, _)| key.clone()))
        .collect();
    for t in texts {
        files.push((t.path, t.data));
    }
    files.extend(small);
    let new_segments = fresh_keys
        .into_iter()
        .filter_map(|k| segments.remove_entry(&k))
        .collect();
    Rendered {
        files,
        segments: used,
        new_segments,
    }
}

fn parallel_compress(work: &[(String, Kind, &[u8])], levels: Levels) -> Vec<(String, Vec<u8>)> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(work.len().max(1));
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    while let Some((key, kind, data)) =
                        work.get(next.fetch_add(1, Ordering::Relaxed))
                    {
                        out.push((
                            key.clone(),
                            compression::compress_segment(*kind, levels.of(*kind), data),
                        ));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("compression thread panicked"))
            .collect()
    })
}

/// Writes a distribution. `dists_root` is the repository's `dists` directory. Returns the new
/// by-hash bookkeeping (segments are left to the caller).
pub fn write(
    dists_root: &Path,
    spec: &DistSpec,
    files: &[(String, Vec<u8>)],
    key: &ArchiveKey,
    previous: &PublishState,
    now: i64,
    grace_seconds: i64,
) -> Result<PublishState, PublishError> {
    let dist_dir = dists_root.join(&spec.dir);
    let mut listed = Vec::with_capacity(files.len());
    let mut current = BTreeSet::new();
    // 1. by-hash copies: SHA256 written, SHA512 a hard link to it.
    let mut by_hash_paths = Vec::with_capacity(files.len());
    for ((rel, data), d) in files.iter().zip(parallel_digests(files)) {
        let parent = Path::new(rel)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let by256 = dist_dir
            .join(&parent)
            .join("by-hash/SHA256")
            .join(&d.sha256);
        let by512 = dist_dir
            .join(&parent)
            .join("by-hash/SHA512")
            .join(&d.sha512);
        if !by256.exists() {
            write_new(&by256, data)?;
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
        by_hash_paths.push(by256);
        listed.push(Listed {
            path: rel.clone(),
            digests: d,
        });
    }
    // 2. plain names: hard links to the by-hash files, swapped in by rename.
    for ((rel, _), by256) in files.iter().zip(&by_hash_paths) {
        link_new(by256, &dist_dir.join(rel))?;
    }
    // Everything the Release will name is on disk before the Release is.
    sync(&dist_dir)?;
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
                return Err(PublishError::Io {
                    path: full,
                    source: e,
                });
            }
        } else {
            by_hash.insert(path.clone(), Some(since));
        }
    }
    Ok(PublishState {
        by_hash,
        in_progress: false,
        segments: previous.segments.clone(),
    })
}

/// The digests of every file, computed on all cores.
fn parallel_digests(files: &[(String, Vec<u8>)]) -> Vec<Digests> {
    let buffers: Vec<&[u8]> = files.iter().map(|(_, d)| d.as_slice()).collect();
    crate::checksums::digests_parallel(&buffers)
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
    let io_err = |source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    };
    fs::create_dir_all(path.parent().expect("published files live in a directory"))
        .map_err(io_err)?;
    let tmp = tmp_name(path);
    fs::write(&tmp, data).map_err(io_err)?;
    fs::rename(&tmp, path).map_err(io_err)
}

/// Makes `path` another name of `existing`, atomically replacing whatever `path` was.
fn link_new(existing: &Path, path: &Path) -> Result<(), PublishError> {
    let io_err = |source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    };
    fs::create_dir_all(path.parent().expect("published files live in a directory"))
        .map_err(io_err)?;
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
    fs::hard_link(existing, &tmp).map_err(io_err)?;
    fs::rename(&tmp, path).map_err(io_err)
}

fn sync(path: &Path) -> Result<(), PublishError> {
    super::pool::sync(path).map_err(|source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openpgp::KeyAlgorithm;

    fn spec() -> DistSpec {
        DistSpec {
            dir: "d".into(),
            info: ReleaseInfo {
                origin: "o".into(),
                label: "d".into(),
                suite: "d".into(),
                codename: "d".into(),
                date: 0,
                valid_until: None,
                architectures: vec!["amd64".into()],
                components: vec!["main".into()],
                description: "d".into(),
                not_automatic: false,
                but_automatic_upgrades: false,
            },
        }
    }

    #[test]
    fn superseded_by_hash_files_stay_for_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let key = ArchiveKey::generate("t <t@mbd.invalid>", KeyAlgorithm::Ed25519).unwrap();
        let files = |text: &str| {
            vec![(
                "main/binary-amd64/Packages".to_string(),
                text.as_bytes().to_vec(),
            )]
        };
        let by_hash = |text: &str| {
            dir.path()
                .join("d/main/binary-amd64/by-hash/SHA256")
                .join(Digests::of(text.as_bytes()).sha256)
        };
        let s1 = write(
            dir.path(),
            &spec(),
            &files("one\n"),
            &key,
            &PublishState::default(),
            1000,
            60,
        )
        .unwrap();
        let s2 = write(dir.path(), &spec(), &files("two\n"), &key, &s1, 1010, 60).unwrap();
        assert!(by_hash("one\n").exists(), "kept within the grace period");
        let s3 = write(dir.path(), &spec(), &files("two\n"), &key, &s2, 1069, 60).unwrap();
        assert!(by_hash("one\n").exists(), "59 s after it was superseded");
        write(dir.path(), &spec(), &files("two\n"), &key, &s3, 1070, 60).unwrap();
        assert!(
            !by_hash("one\n").exists(),
            "removed once the grace period is over"
        );
        assert!(by_hash("two\n").exists());
        let plain = std::fs::read(dir.path().join("d/main/binary-amd64/Packages")).unwrap();
        assert_eq!(plain, b"two\n");
    }
}
