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
use super::store::PublishState;
use crate::checksums::{Mark, Resumable, digests_resumed};
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

impl PublishError {
    /// Wraps an I/O error on `path`, for `map_err`.
    fn io(path: &Path) -> impl Fn(io::Error) -> PublishError + '_ {
        move |source| PublishError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What to publish for one distribution directory.
#[derive(Debug, Clone)]
pub struct DistSpec {
    /// Path of the distribution directory below `dists/` (e.g. `bookworm-test-unstable`).
    pub dir: String,
    pub info: ReleaseInfo,
}

/// One file of a published distribution.
#[derive(Debug, Default)]
pub struct File {
    /// Path relative to the distribution directory.
    pub path: String,
    pub data: Vec<u8>,
    /// The (content key, end offset) of the parts the file is made of, so its digests can
    /// resume after the parts it shares with its previous version; empty for small files.
    pub parts: Vec<([u8; 32], usize)>,
    /// Listed in `Release` but not written: uncompressed `Contents`, as reprepro does.
    pub listed_only: bool,
}

/// The rendered files of a distribution and the compressed segments used for them.
#[derive(Debug, Default)]
pub struct Rendered {
    /// In listing order.
    pub files: Vec<File>,
    /// Cache keys of every compressed segment the files are made of.
    pub segments: BTreeSet<String>,
    /// Segments compressed now (not found in the cache), as places in `files`: each
    /// compressed segment is held once, inside the file it was assembled into.
    pub new_segments: Vec<NewSegment>,
}

/// Where a newly compressed segment is: its bytes in the cache's form are `prefix` followed
/// by `files[file].data[range]`.
#[derive(Debug)]
pub struct NewSegment {
    pub key: String,
    file: usize,
    range: (usize, usize),
    /// What assembling leaves out of the cached form: an xz block's unpadded-size prefix.
    prefix: Vec<u8>,
}

/// The new segments in the cache's form, to be stored. Takes the files, so that those no
/// segment is in are freed first.
pub fn new_segment_bytes(mut files: Vec<File>, new: &[NewSegment]) -> Vec<(String, Vec<u8>)> {
    let holding: BTreeSet<usize> = new.iter().map(|n| n.file).collect();
    for (i, f) in files.iter_mut().enumerate() {
        if !holding.contains(&i) {
            f.data = Vec::new();
        }
    }
    new.iter()
        .map(|n| {
            let mut bytes = n.prefix.clone();
            bytes.extend_from_slice(&files[n.file].data[n.range.0..n.range.1]);
            (n.key.clone(), bytes)
        })
        .collect()
}

/// A binary package as publishing needs it, borrowed from the store.
pub struct BinaryRow<'a> {
    pub package: &'a str,
    pub architecture: &'a str,
    pub component: &'a str,
    pub package_type: PackageType,
    pub section: &'a str,
    /// The `Packages` stanza (UTF-8 checked when it was stored).
    pub stanza: &'a [u8],
    /// The package's files, one per line (for `Contents`), if known.
    pub contents: Option<&'a str>,
}

/// A source package as publishing needs it, borrowed from the store.
pub struct SourceRow<'a> {
    pub name: &'a str,
    pub component: &'a str,
    /// The `Sources` stanza.
    pub stanza: &'a str,
}

/// The packages of one distribution, visited in a stable order (the store's key order:
/// source, package, architecture). Publishing streams them into the indices without holding
/// them.
pub trait Records {
    type Error;
    fn binaries(&self, f: &mut dyn FnMut(BinaryRow<'_>)) -> Result<(), Self::Error>;
    fn sources(&self, f: &mut dyn FnMut(SourceRow<'_>)) -> Result<(), Self::Error>;
}

/// An index before compression: its text and where its records end (with their key hashes).
struct Text {
    path: String,
    data: Vec<u8>,
    records: Vec<(usize, u64)>,
    kinds: &'static [Kind],
    spacing: u64,
    listed_only: bool,
}

impl Text {
    fn new(path: String, kinds: &'static [Kind], spacing: u64) -> Text {
        Text {
            path,
            data: Vec::new(),
            records: Vec::new(),
            kinds,
            spacing,
            listed_only: false,
        }
    }

    /// Appends a stanza (separated from the previous one by a blank line).
    fn stanza(&mut self, key: &str, stanza: &[u8]) {
        if !self.data.is_empty() {
            self.data.push(b'\n');
        }
        self.data.extend_from_slice(stanza);
        self.records
            .push((self.data.len(), compression::key_hash(key.as_bytes())));
    }
}

/// The file lists of one component's binaries, gathered for its `Contents-<arch>` files.
#[derive(Default)]
struct ContentsLists {
    /// Every list, concatenated.
    arena: String,
    /// `<section>/<package>` of each list.
    owners: Vec<String>,
    /// Per architecture: (list start, list end, owner) of each list it includes.
    per_arch: Vec<Vec<(usize, usize, usize)>>,
}

/// Looks up compressed segments by key; `None` where the cache has none.
pub type SegmentCache<'a> = &'a dyn Fn(&[String]) -> Vec<Option<Vec<u8>>>;

/// How one compressed file is made: (text index, format, (segment key, byte range) list).
type Plan = (usize, Kind, Vec<(String, (usize, usize))>);

/// Segments end after one in this many stanzas (or `Contents` lines) on average, and at
/// `MAX_SEGMENT` bytes at most. A change recompresses the segment it falls in; segments
/// are small enough that this is one xz block of about 128 KiB (a random stanza lands in a
/// 256 KiB segment on average: longer segments are likelier to be hit), and large enough
/// that cutting costs about 3% in size against one whole stream.
const STANZA_SPACING: u64 = 128;
const LINE_SPACING: u64 = 2048;
const MAX_SEGMENT: usize = 512 << 10;

const BOTH: &[Kind] = &[Kind::Xz, Kind::Gzip];
const GZIP: &[Kind] = &[Kind::Gzip];

/// Renders a distribution: indices streamed from the stored stanzas, compressed from cached
/// segments where possible. `cache` returns, for each key, the cached segment if there is
/// one.
pub fn render<R: Records>(
    spec: &DistSpec,
    records: &R,
    levels: Levels,
    cache: SegmentCache<'_>,
) -> Result<Rendered, R::Error> {
    let info = &spec.info;
    let started = std::time::Instant::now();
    let archs = info.architectures.len();
    // Packages texts, indexed ((component * archs) + arch) * 2 + (0 deb | 1 udeb).
    let mut packages: Vec<Text> = Vec::new();
    for component in &info.components {
        for arch in &info.architectures {
            packages.push(Text::new(
                format!("{component}/binary-{arch}/Packages"),
                BOTH,
                STANZA_SPACING,
            ));
            packages.push(Text::new(
                format!("{component}/debian-installer/binary-{arch}/Packages"),
                GZIP,
                STANZA_SPACING,
            ));
        }
    }
    let mut lists: Vec<ContentsLists> = info
        .components
        .iter()
        .map(|_| ContentsLists {
            per_arch: vec![Vec::new(); archs],
            ..ContentsLists::default()
        })
        .collect();
    records.binaries(&mut |b| {
        let Some(c) = info.components.iter().position(|x| x == b.component) else {
            return;
        };
        let targets = if b.architecture == "all" {
            0..archs
        } else if let Some(a) = info.architectures.iter().position(|x| x == b.architecture) {
            a..a + 1
        } else {
            return;
        };
        let udeb = usize::from(b.package_type == PackageType::Udeb);
        for a in targets.clone() {
            packages[(c * archs + a) * 2 + udeb].stanza(b.package, b.stanza);
        }
        if let (PackageType::Deb, Some(list)) = (b.package_type, b.contents) {
            let l = &mut lists[c];
            let start = l.arena.len();
            l.arena.push_str(list);
            let owner = l.owners.len();
            l.owners.push(format!("{}/{}", b.section, b.package));
            for a in targets {
                l.per_arch[a].push((start, l.arena.len(), owner));
            }
        }
    })?;
    let mut sources: Vec<Text> = info
        .components
        .iter()
        .map(|c| Text::new(format!("{c}/source/Sources"), BOTH, STANZA_SPACING))
        .collect();
    records.sources(&mut |s| {
        if let Some(c) = info.components.iter().position(|x| x == s.component) {
            sources[c].stanza(s.name, s.stanza.as_bytes());
        }
    })?;

    tracing::debug!(dir = %spec.dir, elapsed = ?started.elapsed(), "records read");
    let mut texts: Vec<Text> = Vec::new();
    let mut small: Vec<File> = Vec::new();
    let mut packages = packages.into_iter();
    let mut sources = sources.into_iter();
    for (component, l) in info.components.iter().zip(&lists) {
        for (a, arch) in info.architectures.iter().enumerate() {
            texts.push(packages.next().expect("a deb text per architecture"));
            texts.push(packages.next().expect("a udeb text per architecture"));
            small.push(File {
                path: format!("{component}/binary-{arch}/Release"),
                data: release::render_component(info, component, arch).into_bytes(),
                ..File::default()
            });
            let mut entries = Vec::new();
            for &(start, end, owner) in &l.per_arch[a] {
                let owner = l.owners[owner].as_str();
                entries.extend(l.arena[start..end].lines().map(|path| (path, owner)));
            }
            let mut t = Text::new(format!("{component}/Contents-{arch}"), GZIP, LINE_SPACING);
            t.listed_only = true;
            super::index::contents(entries, |path, line| {
                t.data.extend_from_slice(line.as_bytes());
                t.records
                    .push((t.data.len(), compression::key_hash(path.as_bytes())));
            });
            texts.push(t);
        }
        texts.push(sources.next().expect("a sources text per component"));
        small.push(File {
            path: format!("{component}/source/Release"),
            data: release::render_component(info, component, "source").into_bytes(),
            ..File::default()
        });
    }
    drop(lists);
    tracing::debug!(dir = %spec.dir, elapsed = ?started.elapsed(), "contents sorted");
    Ok(compress_all(texts, small, levels, cache))
}

/// The SHA-256 of each piece, on all cores.
fn parallel_sha256(pieces: &[&[u8]]) -> Vec<[u8; 32]> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = pieces.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = pieces
            .chunks(per)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|p| <sha2::Sha256 as sha2::Digest>::digest(p).into())
                        .collect::<Vec<[u8; 32]>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("digest thread panicked"))
            .collect()
    })
}

/// Compresses every text from cached or freshly compressed segments (on all cores).
fn compress_all(
    texts: Vec<Text>,
    small: Vec<File>,
    levels: Levels,
    cache: SegmentCache<'_>,
) -> Rendered {
    // (text index, kind) → list of (key, segment range)
    let mut plan: Vec<Plan> = Vec::new();
    let mut text_parts: Vec<Vec<([u8; 32], usize)>> = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let segments = compression::split(t.data.len(), &t.records, t.spacing, MAX_SEGMENT);
        let pieces: Vec<&[u8]> = segments.iter().map(|&(a, b)| &t.data[a..b]).collect();
        let digests = parallel_sha256(&pieces);
        text_parts.push(
            digests
                .iter()
                .zip(&segments)
                .map(|(d, &(_, end))| (*d, end))
                .collect(),
        );
        for &kind in t.kinds {
            let tag = compression::cache_tag(kind, levels.of(kind));
            let keyed = segments
                .iter()
                .zip(&digests)
                .map(|(&range, d)| (format!("{tag}-{}", hex::encode(d)), range))
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
    let mut fresh_keys: BTreeSet<String> = fresh.iter().map(|(k, _)| k.clone()).collect();
    segments.extend(fresh);
    // A compressed part's key is the digest of its own bytes, never the cache key: the
    // saved digest states must follow the bytes even if a compressor's output changes.
    let compressed: Vec<&[u8]> = segments.values().map(Vec::as_slice).collect();
    let part_keys: BTreeMap<String, [u8; 32]> = segments
        .keys()
        .cloned()
        .zip(parallel_sha256(&compressed))
        .collect();
    // Each segment is dropped once the last file using it is assembled; a new one is then
    // found in the first file it went into.
    let mut uses: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, _, keyed) in &plan {
        for (key, _) in keyed {
            *uses.entry(key.as_str()).or_default() += 1;
        }
    }
    let mut files = Vec::new();
    let mut new_segments = Vec::new();
    for (i, kind, keyed) in &plan {
        let pieces: Vec<(&[u8], usize)> = keyed
            .iter()
            .map(|(key, (a, b))| (segments[key].as_slice(), b - a))
            .collect();
        let (data, ends) = compression::assemble(*kind, &pieces);
        let mut start = compression::header_len(*kind);
        for ((key, (a, b)), &end) in keyed.iter().zip(&ends) {
            if fresh_keys.remove(key) {
                let prefix = match kind {
                    Kind::Xz if b > a => segments[key][..8].to_vec(),
                    Kind::Xz => segments[key].clone(),
                    Kind::Gzip => Vec::new(),
                };
                new_segments.push(NewSegment {
                    key: key.clone(),
                    file: files.len(),
                    range: (start, end),
                    prefix,
                });
            }
            start = end;
            let left = uses.get_mut(key.as_str()).expect("counted above");
            *left -= 1;
            if *left == 0 {
                segments.remove(key);
            }
        }
        let parts = keyed
            .iter()
            .zip(ends)
            .map(|((key, _), end)| (part_keys[key], end))
            .collect();
        files.push(File {
            path: format!("{}{}", texts[*i].path, kind.extension()),
            data,
            parts,
            listed_only: false,
        });
    }
    let used = plan
        .iter()
        .flat_map(|(_, _, k)| k.iter().map(|(key, _)| key.clone()))
        .collect();
    for (t, parts) in texts.into_iter().zip(text_parts) {
        files.push(File {
            path: t.path,
            data: t.data,
            parts,
            listed_only: t.listed_only,
        });
    }
    files.extend(small);
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

/// Saved digest states of a distribution's files (by path), for the next publish.
pub type Marks = BTreeMap<String, Vec<Mark>>;

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
) -> Result<(PublishState, Marks), PublishError> {
    let dist_dir = dists_root.join(&spec.dir);
    let mut listed = Vec::with_capacity(files.len());
    let mut current = BTreeSet::new();
    let resumable: Vec<Resumable<'_>> = files
        .iter()
        .map(|f| Resumable {
            data: &f.data,
            parts: &f.parts,
            previous: marks.get(&f.path).map_or(&[], Vec::as_slice),
        })
        .collect();
    let mut new_marks = Marks::new();
    // Files that changed are written to a temporary name while the digests are computed
    // (the kernel's copy and the hashing then share the cores); a file whose parts all match
    // the previous publish is the previous file, and its by-hash copy is already there.
    let (digests, staged) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            files
                .iter()
                .zip(&resumable)
                .map(|(f, r)| {
                    let path = dist_dir.join(&f.path);
                    // Also skipped when the published file has this size (most likely the
                    // same bytes, as in a cold publish of an unchanged distribution): if its
                    // by-hash copy turns out to be missing, it is written below.
                    let same_size =
                        || fs::metadata(&path).is_ok_and(|m| m.len() == f.data.len() as u64);
                    if f.listed_only || r.unchanged() || same_size() {
                        return Ok(None);
                    }
                    let by_hash = path.parent().expect("in a directory").join("by-hash");
                    let staged = tmp_name(&by_hash.join(path.file_name().expect("a file name")));
                    write_file(&staged, &f.data).map(|()| Some(staged))
                })
                .collect::<Result<Vec<Option<PathBuf>>, PublishError>>()
        });
        let digests = digests_resumed(&resumable);
        (digests, writer.join().expect("index writer panicked"))
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
        let parent = Path::new(&f.path)
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
        match staged {
            Some(staged) if by256.exists() => remove_file(&staged)?,
            Some(staged) => rename(&staged, &by256)?,
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
    ))
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
    super::pool::sync(path).map_err(PublishError::io(path))
}

/// One thing wrong with a published distribution, as [`verify`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub reason: String,
    /// Files to delete so that the next publish writes them anew (the plain name and its
    /// by-hash copies, which are hard links to the same bytes).
    pub stale: Vec<PathBuf>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// Checks a published distribution directory as apt would: `InRelease` is signed by one of
/// `keyring`'s keys, and every file its SHA256 section lists has that size and digest, also
/// under `by-hash/SHA256/` (a listed uncompressed file that is not there is fine when its
/// `.gz` is: apt then fetches the `.gz`).
pub fn verify(dir: &Path, keyring: &crate::openpgp::Keyring) -> Vec<Problem> {
    use sha2::Digest;
    let in_release = dir.join("InRelease");
    let problem = |path: &Path, reason: String, stale: Vec<PathBuf>| Problem {
        path: path.to_path_buf(),
        reason,
        stale,
    };
    let body = match fs::read(&in_release).map(|data| keyring.verify_cleartext(&data)) {
        Ok(Ok(v)) => String::from_utf8_lossy(&v.body).into_owned(),
        Ok(Err(e)) => return vec![problem(&in_release, e.to_string(), Vec::new())],
        Err(e) => return vec![problem(&in_release, e.to_string(), Vec::new())],
    };
    // name → (size, SHA256, SHA512)
    let mut listed: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    let mut section = "";
    for line in body.lines() {
        if !line.starts_with(' ') {
            section = line.split(':').next().unwrap_or("");
            continue;
        }
        if let [digest, size, name] = line.split_whitespace().collect::<Vec<_>>().as_slice() {
            let e = listed.entry(name.to_string()).or_default();
            e.0 = size.to_string();
            match section {
                "SHA256" => e.1 = digest.to_string(),
                "SHA512" => e.2 = digest.to_string(),
                _ => {}
            }
        }
    }
    let mut problems = Vec::new();
    for (name, (size, sha256, sha512)) in &listed {
        let path = dir.join(name);
        let by_hash =
            |algo: &str, digest: &str| path.with_file_name("by-hash").join(algo).join(digest);
        let stale = vec![
            path.clone(),
            by_hash("SHA256", sha256),
            by_hash("SHA512", sha512),
        ];
        match fs::read(&path) {
            Ok(bytes) => {
                let reason = if bytes.len().to_string() != *size {
                    Some(format!("{} bytes, InRelease says {size}", bytes.len()))
                } else if hex::encode(sha2::Sha256::digest(&bytes)) != *sha256 {
                    Some("SHA256 differs from InRelease".to_string())
                } else if fs::metadata(&stale[1]).map(|m| m.len()).ok() != Some(bytes.len() as u64)
                {
                    Some("its by-hash copy is missing or of the wrong size".to_string())
                } else {
                    None
                };
                if let Some(reason) = reason {
                    problems.push(problem(&path, reason, stale));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !dir.join(format!("{name}.gz")).exists() {
                    problems.push(problem(
                        &path,
                        "listed in InRelease but missing".into(),
                        stale,
                    ));
                }
            }
            Err(e) => problems.push(problem(&path, e.to_string(), stale)),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksums::Digests;
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

    /// `n` binaries and sources with stanzas long enough for many segments.
    struct Many(usize);

    impl Records for Many {
        type Error = std::convert::Infallible;
        fn binaries(&self, f: &mut dyn FnMut(BinaryRow<'_>)) -> Result<(), Self::Error> {
            for i in 0..self.0 {
                let stanza = format!(
                    "Package: p{i}\nVersion: 1.{i}\nDescription: {}\n",
                    "x".repeat(i % 300)
                );
                let contents = format!("usr/bin/p{i}\nusr/share/doc/p{i}/copyright");
                f(BinaryRow {
                    package: &format!("p{i}"),
                    architecture: if i % 5 == 0 { "all" } else { "amd64" },
                    component: "main",
                    package_type: PackageType::Deb,
                    section: "misc",
                    stanza: stanza.as_bytes(),
                    contents: Some(&contents),
                });
            }
            Ok(())
        }
        fn sources(&self, f: &mut dyn FnMut(SourceRow<'_>)) -> Result<(), Self::Error> {
            for i in 0..self.0 {
                f(SourceRow {
                    name: &format!("p{i}"),
                    component: "main",
                    stanza: &format!("Package: p{i}\nVersion: 1.{i}\n"),
                });
            }
            Ok(())
        }
    }

    #[test]
    fn new_segments_taken_from_the_files_rebuild_the_same_files_from_the_cache() {
        let spec = spec();
        let empty = |keys: &[String]| vec![None; keys.len()];
        let Ok(cold) = render(&spec, &Many(3000), Levels::default(), &empty);
        assert!(cold.new_segments.len() > 20, "{}", cold.new_segments.len());
        let expected: Vec<(String, Vec<u8>)> = cold
            .files
            .iter()
            .map(|f| (f.path.clone(), f.data.clone()))
            .collect();
        let cache: BTreeMap<String, Vec<u8>> = new_segment_bytes(cold.files, &cold.new_segments)
            .into_iter()
            .collect();
        assert_eq!(cache.len(), cold.segments.len());
        let lookup = |keys: &[String]| keys.iter().map(|k| cache.get(k).cloned()).collect();
        let Ok(warm) = render(&spec, &Many(3000), Levels::default(), &lookup);
        assert!(warm.new_segments.is_empty());
        let got: Vec<(String, Vec<u8>)> =
            warm.files.into_iter().map(|f| (f.path, f.data)).collect();
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert!(g == e, "{} differs when built from the cache", e.0);
        }
    }

    #[test]
    fn superseded_by_hash_files_stay_for_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let key = ArchiveKey::generate("t <t@mbd.invalid>", KeyAlgorithm::Ed25519).unwrap();
        let files = |text: &str| {
            vec![File {
                path: "main/binary-amd64/Packages".to_string(),
                data: text.as_bytes().to_vec(),
                ..File::default()
            }]
        };
        let by_hash = |text: &str| {
            dir.path()
                .join("d/main/binary-amd64/by-hash/SHA256")
                .join(Digests::of(text.as_bytes()).sha256)
        };
        let publish = |text: &str, previous: &PublishState, now: i64| {
            let (state, _) = write(
                dir.path(),
                &spec(),
                &files(text),
                &Marks::new(),
                &key,
                previous,
                now,
                60,
            )
            .unwrap();
            state
        };
        let s1 = publish("one\n", &PublishState::default(), 1000);
        let s2 = publish("two\n", &s1, 1010);
        assert!(by_hash("one\n").exists(), "kept within the grace period");
        let s3 = publish("two\n", &s2, 1069);
        assert!(by_hash("one\n").exists(), "59 s after it was superseded");
        publish("two\n", &s3, 1070);
        assert!(
            !by_hash("one\n").exists(),
            "removed once the grace period is over"
        );
        assert!(by_hash("two\n").exists());
        let plain = std::fs::read(dir.path().join("d/main/binary-amd64/Packages")).unwrap();
        assert_eq!(plain, b"two\n");
    }
}
