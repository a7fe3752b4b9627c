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
use super::index;
use super::outline::{Entry, Outline, TextOutline};
use super::release::{self, Listed, ReleaseInfo};
use super::store::PublishState;
use crate::checksums::{Digests, Mark, Resumable, digests_resumed};
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
    /// The file of the previous publish, left as it is and not read: its `Release` entry
    /// (`data` and `parts` are empty).
    pub same: Option<Digests>,
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
    /// The outline of the texts, without their digests (see [`Outline::complete`]).
    pub outline: Outline,
    /// Whether the texts were rebuilt from the previous publish's.
    pub incremental: bool,
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
    /// Arrival number in the distribution (see [`Records`]).
    pub seq: u64,
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
    /// Arrival number in the distribution (see [`Records`]).
    pub seq: u64,
    pub name: &'a str,
    pub component: &'a str,
    /// The `Sources` stanza.
    pub stanza: &'a str,
}

/// The packages of one distribution. Each record has an arrival number: numbers grow in the
/// order records entered the distribution and are never reused, and a record is never changed
/// under its number. Indices list records in that order, so an upload adds to their ends.
pub trait Records {
    type Error;
    /// The arrival numbers of the binaries and of the sources, ascending.
    fn arrivals(&self) -> Result<(Vec<u64>, Vec<u64>), Self::Error>;
    /// The binaries whose arrival number is above `after`, in arrival order.
    fn binaries(&self, after: u64, f: &mut dyn FnMut(BinaryRow<'_>)) -> Result<(), Self::Error>;
    /// The sources whose arrival number is above `after`, in arrival order.
    fn sources(&self, after: u64, f: &mut dyn FnMut(SourceRow<'_>)) -> Result<(), Self::Error>;
}

/// An index before compression: its text and where its records end (with their key hashes).
struct Text {
    path: String,
    data: Vec<u8>,
    records: Vec<(usize, u64)>,
    kinds: &'static [Kind],
    spacing: u64,
    listed_only: bool,
    /// The stanzas of a `Packages` or `Sources` text, for its outline.
    entries: Vec<Entry>,
    /// Whether the next publish may rebuild this text from it (a `Contents` text whose
    /// lines cannot be read back unambiguously may not).
    outlined: bool,
    /// How many leading bytes are those of the previous publish's text.
    kept: usize,
    /// A text no record arrived in or left, whose files stay as published: not read back.
    unread: Option<Unread>,
}

/// What a text left as published keeps: its outline, and the `Release` entries of its files
/// (the text, then its compressed forms in the order of its kinds).
struct Unread {
    outline: TextOutline,
    files: Vec<Digests>,
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
            entries: Vec::new(),
            outlined: true,
            kept: 0,
            unread: None,
        }
    }

    /// Leaves the text as the previous publish did, with its files' `Release` entries.
    fn leave_as_published(&mut self, outline: TextOutline, files: Vec<Digests>) {
        self.unread = Some(Unread { outline, files });
    }

    /// The `Release` entries of this text's files in the previous publish, if every one of
    /// them is as `outline` and the previous outline's compressed files say, and in place.
    fn entries_kept(&self, outline: &TextOutline, previous: &Previous<'_>) -> Option<Vec<Digests>> {
        let mut wanted = vec![(self.path.clone(), outline.sha256, self.listed_only)];
        for kind in self.kinds {
            let path = format!("{}{}", self.path, kind.extension());
            let digest = *previous.outline.files.get(&path)?;
            wanted.push((path, digest, false));
        }
        wanted
            .into_iter()
            .map(|(path, sha256, listed_only)| {
                let d = previous.listed.get(&path)?;
                let fits = d.sha256 == hex::encode(sha256)
                    && (listed_only || (previous.present)(&path, d));
                fits.then(|| d.clone())
            })
            .collect()
    }

    /// Appends a stanza (separated from the previous one by a blank line).
    fn stanza(&mut self, entry: Entry, stanza: &[u8]) {
        if !self.data.is_empty() {
            self.data.push(b'\n');
        }
        self.data.extend_from_slice(stanza);
        self.records.push((self.data.len(), entry.key));
        self.entries.push(entry);
    }

    /// Rebuilds a `Packages` or `Sources` text from its previous bytes, keeping the stanzas
    /// whose arrival number is in `current`; returns the text and the stanzas left out, or
    /// `None` if the bytes do not fit the outline.
    fn rebuild(
        mut self,
        previous: Vec<u8>,
        outline: TextOutline,
        current: &[u64],
    ) -> Option<(Text, Vec<Entry>)> {
        let entries = outline.entries;
        let total =
            entries.iter().map(|e| e.len as usize).sum::<usize>() + entries.len().saturating_sub(1);
        if total != previous.len() {
            return None;
        }
        if entries
            .iter()
            .all(|e| current.binary_search(&e.seq).is_ok())
        {
            // Nothing left: the previous text is the start of the new one, as it is.
            let mut end = 0;
            for (i, e) in entries.iter().enumerate() {
                end += usize::from(i > 0) + e.len as usize;
                self.records.push((end, e.key));
            }
            self.kept = previous.len();
            self.data = previous;
            self.entries = entries;
            return Some((self, Vec::new()));
        }
        let mut gone = Vec::new();
        let mut start = 0;
        for e in entries {
            let end = start + e.len as usize;
            if current.binary_search(&e.seq).is_ok() {
                self.stanza(e, &previous[start..end]);
            } else {
                if gone.is_empty() {
                    self.kept = self.data.len();
                }
                gone.push(e);
            }
            start = end + 1;
        }
        Some((self, gone))
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

/// Reads back a file of the previous publish (a path in the distribution) by its SHA-256:
/// its bytes, with room to grow, or `None` if it is gone or does not have that digest.
pub type LoadFile<'a> = &'a (dyn Fn(&str, &[u8; 32]) -> Option<Vec<u8>> + Sync);

/// Whether a file of the previous publish (a path in the distribution) is in place with the
/// given size and digests (its by-hash copy, which the next `Release` names again).
pub type Present<'a> = &'a (dyn Fn(&str, &Digests) -> bool + Sync);

/// What the previous publish of a distribution left: the outline and digest marks of its
/// files, how to read them back, and the entries of its `Release` (by path), so that the
/// files no change touches need not be read at all.
pub struct Previous<'a> {
    pub outline: Outline,
    pub marks: &'a Marks,
    pub load: LoadFile<'a>,
    pub listed: BTreeMap<String, Digests>,
    pub present: Present<'a>,
}

/// Capacity for a text of `len` bytes read back, with room for what arrives, so that
/// appending does not move it.
pub fn room(len: usize) -> usize {
    len + len / 16 + (64 << 10)
}

/// Loads files (path, digest, expected size) on all cores, largest first.
fn load_all(load: LoadFile<'_>, wanted: &[(String, [u8; 32], u64)]) -> Vec<Option<Vec<u8>>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut order: Vec<usize> = (0..wanted.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(wanted[i].2));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicUsize::new(0);
    let mut out: Vec<Option<Vec<u8>>> = vec![None; wanted.len()];
    let results: Vec<(usize, Option<Vec<u8>>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.min(wanted.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let (path, digest, _) = &wanted[i];
                        done.push((i, load(path, digest)));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("loading thread panicked"))
            .collect()
    });
    for (i, bytes) in results {
        out[i] = bytes;
    }
    out
}

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

/// The index texts of a distribution, by kind.
struct Texts {
    /// Indexed ((component * architectures) + architecture) * 2 + (0 deb | 1 udeb).
    packages: Vec<Text>,
    /// Indexed (component * architectures) + architecture.
    contents: Vec<Text>,
    /// Indexed by component.
    sources: Vec<Text>,
    /// The previous publish's compressed files of the texts read back (by path), which the
    /// new ones continue.
    previous_files: BTreeMap<String, Vec<u8>>,
}

impl Texts {
    fn empty(info: &ReleaseInfo) -> Texts {
        let mut t = Texts {
            packages: Vec::new(),
            contents: Vec::new(),
            sources: Vec::new(),
            previous_files: BTreeMap::new(),
        };
        for component in &info.components {
            for arch in &info.architectures {
                t.packages.push(Text::new(
                    format!("{component}/binary-{arch}/Packages"),
                    BOTH,
                    STANZA_SPACING,
                ));
                t.packages.push(Text::new(
                    format!("{component}/debian-installer/binary-{arch}/Packages"),
                    GZIP,
                    STANZA_SPACING,
                ));
                let mut c = Text::new(format!("{component}/Contents-{arch}"), GZIP, LINE_SPACING);
                c.listed_only = true;
                t.contents.push(c);
            }
            t.sources.push(Text::new(
                format!("{component}/source/Sources"),
                BOTH,
                STANZA_SPACING,
            ));
        }
        t
    }
}

/// Renders a distribution: indices built from the previous publish's texts and the records
/// that arrived or left since (or from every record, if the previous texts cannot be used),
/// compressed from cached segments where possible. `cache` returns, for each key, the cached
/// segment if there is one.
pub fn render<R: Records>(
    spec: &DistSpec,
    records: &R,
    levels: Levels,
    cache: SegmentCache<'_>,
    previous: Option<Previous<'_>>,
) -> Result<Rendered, R::Error> {
    let info = &spec.info;
    let started = std::time::Instant::now();
    let (binaries, sources) = records.arrivals()?;
    let mut upto = (
        binaries.last().copied().unwrap_or(0),
        sources.last().copied().unwrap_or(0),
    );
    let level_pair = [levels.of(Kind::Gzip), levels.of(Kind::Xz)];
    let mut built = None;
    let mut previous = previous;
    if let Some(p) = &mut previous {
        upto = (
            upto.0.max(p.outline.binaries_upto),
            upto.1.max(p.outline.sources_upto),
        );
        let continues = p.outline.levels == level_pair;
        built = build(spec, records, (&binaries, &sources), Some((p, continues)))?;
        if built.is_none() {
            tracing::debug!(dir = %spec.dir, "previous texts unusable; rendering in full");
        }
    }
    let incremental = built.is_some();
    let mut texts = match built {
        Some(t) => t,
        None => build(spec, records, (&binaries, &sources), None)?
            .expect("a full render needs no previous text"),
    };
    let previous_files = std::mem::take(&mut texts.previous_files);
    let unread = [&texts.packages, &texts.sources, &texts.contents]
        .into_iter()
        .flatten()
        .filter(|t| t.unread.is_some())
        .count();
    tracing::debug!(dir = %spec.dir, incremental, unread, elapsed = ?started.elapsed(), "texts built");
    let mut ordered: Vec<Text> = Vec::new();
    let mut small: Vec<File> = Vec::new();
    let mut packages = texts.packages.into_iter();
    let mut contents = texts.contents.into_iter();
    let mut sources = texts.sources.into_iter();
    for component in &info.components {
        for arch in &info.architectures {
            ordered.push(packages.next().expect("a deb text per architecture"));
            ordered.push(packages.next().expect("a udeb text per architecture"));
            small.push(File {
                path: format!("{component}/binary-{arch}/Release"),
                data: release::render_component(info, component, arch).into_bytes(),
                ..File::default()
            });
            ordered.push(contents.next().expect("a contents text per architecture"));
        }
        ordered.push(sources.next().expect("a sources text per component"));
        small.push(File {
            path: format!("{component}/source/Release"),
            data: release::render_component(info, component, "source").into_bytes(),
            ..File::default()
        });
    }
    let mut outline = Outline {
        binaries_upto: upto.0,
        sources_upto: upto.1,
        texts: BTreeMap::new(),
        files: BTreeMap::new(),
        levels: level_pair,
    };
    // The previous compressed files, to continue after the segments they keep.
    let reuse = previous
        .filter(|p| incremental && p.outline.levels == level_pair)
        .map(|p| Reuse {
            marks: p.marks,
            files: previous_files,
        });
    for t in &mut ordered {
        for kind in t.kinds {
            outline
                .files
                .insert(format!("{}{}", t.path, kind.extension()), [0; 32]);
        }
        if let Some(u) = &mut t.unread {
            // Digests are filled in after the write, as for every text.
            let o = &mut u.outline;
            outline.texts.insert(
                t.path.clone(),
                TextOutline {
                    len: o.len,
                    sha256: [0; 32],
                    file: [0; 32],
                    gzip: o.gzip,
                    entries: std::mem::take(&mut o.entries),
                },
            );
        } else if t.outlined {
            outline.texts.insert(
                t.path.clone(),
                TextOutline {
                    len: t.data.len() as u64,
                    sha256: [0; 32],
                    file: [0; 32],
                    gzip: t.listed_only,
                    entries: std::mem::take(&mut t.entries),
                },
            );
        }
    }
    let mut rendered = compress_all(ordered, small, levels, cache, reuse);
    rendered.outline = outline;
    rendered.incremental = incremental;
    Ok(rendered)
}

/// Builds the texts of a distribution: from the previous ones and what changed since, or, with
/// no previous publish, from every record. `None` if the previous texts cannot be used.
fn build<R: Records>(
    spec: &DistSpec,
    records: &R,
    (binaries, sources): (&[u64], &[u64]),
    previous: Option<(&mut Previous<'_>, bool)>,
) -> Result<Option<Texts>, R::Error> {
    let info = &spec.info;
    let archs = info.architectures.len();
    let incremental = previous.is_some();
    let mut texts = Texts::empty(info);
    // Per deb text: the stanzas it no longer lists; and the previous `Contents` texts.
    let mut gone: Vec<Vec<Entry>> = vec![Vec::new(); texts.packages.len()];
    let mut old_contents: Vec<Vec<u8>> = vec![Vec::new(); texts.contents.len()];
    let mut after = (0, 0);
    // With `continues` (the same compression levels), texts no change touches are left as
    // published, and the compressed files of the texts read back are read with them; else
    // every file is made anew.
    if let Some((previous, continues)) = previous {
        after = (
            previous.outline.binaries_upto,
            previous.outline.sources_upto,
        );
        let mut outlines = Vec::new();
        let mut paths = Vec::new();
        let mut kinds = Vec::new();
        for t in texts
            .packages
            .iter()
            .chain(&texts.sources)
            .chain(&texts.contents)
        {
            let Some(o) = previous.outline.texts.remove(&t.path) else {
                return Ok(None);
            };
            outlines.push(o);
            paths.push(t.path.clone());
            kinds.push(t.kinds);
        }
        // A text changes when a record arrives in it or leaves it (`Contents` with its
        // `Packages`); the others stay as published and are not read back.
        let (n_packages, n_sources) = (texts.packages.len(), texts.sources.len());
        let mut changed = vec![false; outlines.len()];
        records.binaries(after.0, &mut |b| {
            if let Some((c, targets, udeb)) = slots(info, &b) {
                for a in targets {
                    changed[(c * archs + a) * 2 + udeb] = true;
                }
            }
        })?;
        records.sources(after.1, &mut |s| {
            if let Some(c) = info.components.iter().position(|x| x == s.component) {
                changed[n_packages + c] = true;
            }
        })?;
        let left = |o: &TextOutline, current: &[u64]| {
            o.entries
                .iter()
                .any(|e| current.binary_search(&e.seq).is_err())
        };
        for (k, o) in outlines.iter().enumerate() {
            if k < n_packages {
                changed[k] |= left(o, binaries);
            } else if k < n_packages + n_sources {
                changed[k] |= left(o, sources);
            } else {
                changed[k] = changed[(k - n_packages - n_sources) * 2];
            }
        }
        let all: Vec<&Text> = texts
            .packages
            .iter()
            .chain(&texts.sources)
            .chain(&texts.contents)
            .collect();
        let mut unread: Vec<Option<Vec<Digests>>> = outlines
            .iter()
            .zip(&all)
            .zip(&changed)
            .map(|((o, t), &changed)| match changed || !continues {
                true => None,
                false => t.entries_kept(o, previous),
            })
            .collect();
        drop(all);
        // Every other previous text, read back on all cores (`Contents` from its `.gz`), with
        // its compressed files.
        let mut wanted = Vec::new();
        let mut which = Vec::new();
        let mut compressed = Vec::new();
        for (k, o) in outlines.iter().enumerate() {
            if unread[k].is_some() {
                continue;
            }
            let path = match o.gzip {
                true => format!("{}.gz", paths[k]),
                false => paths[k].clone(),
            };
            wanted.push((path, o.file, o.len));
            which.push(k);
            for kind in kinds[k].iter().filter(|_| continues) {
                let path = format!("{}{}", paths[k], kind.extension());
                if let Some(digest) = previous.outline.files.get(&path)
                    && !(o.gzip && *kind == Kind::Gzip)
                {
                    let size = previous.listed.get(&path).map_or(o.len / 4, |d| d.size);
                    compressed.push((path, *digest, size));
                }
            }
        }
        let texts_wanted = wanted.len();
        wanted.extend(compressed);
        let mut all_loaded = load_all(previous.load, &wanted).into_iter();
        let mut loaded: Vec<Option<Vec<u8>>> = vec![None; outlines.len()];
        for (k, bytes) in which.into_iter().zip(all_loaded.by_ref()) {
            let o = &outlines[k];
            let bytes = match (bytes, o.gzip) {
                (Some(gz), true) => {
                    let text = compression::gunzip(&gz, room(o.len as usize));
                    if continues {
                        texts.previous_files.insert(format!("{}.gz", paths[k]), gz);
                    }
                    text
                }
                (bytes, _) => bytes,
            };
            match bytes.filter(|b| b.len() as u64 == o.len) {
                Some(b) => loaded[k] = Some(b),
                None => return Ok(None),
            }
        }
        for ((path, _, _), bytes) in wanted.into_iter().skip(texts_wanted).zip(all_loaded) {
            if let Some(bytes) = bytes {
                texts.previous_files.insert(path, bytes);
            }
        }
        let mut each = outlines.into_iter().zip(loaded).enumerate();
        // Each text in turn: left as published, or rebuilt from its bytes (`None` if they do
        // not fit its outline).
        let mut settle = |mut t: Text, current: &[u64]| {
            let (k, (o, bytes)) = each.next().expect("an outline per text");
            if let Some(files) = unread[k].take() {
                t.leave_as_published(o, files);
                return Some((t, Vec::new()));
            }
            t.rebuild(bytes.expect("read back"), o, current)
        };
        for (i, t) in std::mem::take(&mut texts.packages).into_iter().enumerate() {
            let Some((t, left)) = settle(t, binaries) else {
                return Ok(None);
            };
            texts.packages.push(t);
            gone[i] = left;
        }
        for t in std::mem::take(&mut texts.sources) {
            let Some((t, _)) = settle(t, sources) else {
                return Ok(None);
            };
            texts.sources.push(t);
        }
        for (i, old) in old_contents.iter_mut().enumerate() {
            let (k, (o, bytes)) = each.next().expect("an outline per text");
            if let Some(files) = unread[k].take() {
                texts.contents[i].leave_as_published(o, files);
                continue;
            }
            *old = bytes.expect("read back");
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
    records.binaries(after.0, &mut |b| {
        let Some((c, targets, udeb)) = slots(info, &b) else {
            return;
        };
        let owner = match b.package_type {
            PackageType::Deb => format!("{}/{}", b.section, b.package),
            PackageType::Udeb => String::new(),
        };
        let key = compression::key_hash(b.package.as_bytes());
        for a in targets.clone() {
            let entry = Entry {
                seq: b.seq,
                len: b.stanza.len() as u32,
                key,
                owner: owner.clone(),
            };
            texts.packages[(c * archs + a) * 2 + udeb].stanza(entry, b.stanza);
        }
        if let (PackageType::Deb, Some(list)) = (b.package_type, b.contents) {
            let l = &mut lists[c];
            let start = l.arena.len();
            l.arena.push_str(list);
            let index = l.owners.len();
            l.owners.push(owner);
            for a in targets {
                l.per_arch[a].push((start, l.arena.len(), index));
            }
        }
    })?;
    records.sources(after.1, &mut |s| {
        if let Some(c) = info.components.iter().position(|x| x == s.component) {
            let entry = Entry {
                seq: s.seq,
                len: s.stanza.len() as u32,
                key: compression::key_hash(s.name.as_bytes()),
                owner: String::new(),
            };
            texts.sources[c].stanza(entry, s.stanza.as_bytes());
        }
    })?;
    tracing::debug!(dir = %spec.dir, "records read");
    for (c, l) in lists.iter().enumerate() {
        for a in 0..archs {
            let i = c * archs + a;
            if texts.contents[i].unread.is_some() {
                continue;
            }
            let mut added = Vec::new();
            for &(start, end, owner) in &l.per_arch[a] {
                let owner = l.owners[owner].as_str();
                added.extend(l.arena[start..end].lines().map(|path| (path, owner)));
            }
            let removed: BTreeSet<&str> = gone[i * 2]
                .iter()
                .map(|e| e.owner.as_str())
                .filter(|o| !o.is_empty())
                .collect();
            let readable = added.iter().all(|(p, o)| index::contents_readable(p, o));
            let text = &mut texts.contents[i];
            if incremental {
                // An owner named by a stanza that stays and one that came or went: its lines
                // cannot tell which files are whose. Also refuse what cannot be read back.
                let changed: BTreeSet<&str> = removed
                    .iter()
                    .copied()
                    .chain(added.iter().map(|(_, o)| *o))
                    .collect();
                let shared = texts.packages[i * 2]
                    .entries
                    .iter()
                    .any(|e| e.seq <= after.0 && changed.contains(e.owner.as_str()));
                if shared || !readable {
                    return Ok(None);
                }
            }
            let Ok(old) = std::str::from_utf8(&old_contents[i]) else {
                return Ok(None);
            };
            text.data.reserve(old.len() + old.len() / 16);
            text.records.reserve(old.len() / 64);
            let mut changed = false;
            if index::edit_contents(old, &removed, added, |path, line, untouched| {
                if !untouched && !changed {
                    changed = true;
                    text.kept = text.data.len();
                }
                text.data.extend_from_slice(line.as_bytes());
                text.records
                    .push((text.data.len(), compression::key_hash(path.as_bytes())));
            })
            .is_none()
            {
                return Ok(None);
            }
            if !changed {
                text.kept = text.data.len();
            }
            text.outlined = readable;
            old_contents[i] = Vec::new();
        }
    }
    Ok(Some(texts))
}

/// Where a binary goes: its component's index, the architectures whose texts list it (all of
/// them for `Architecture: all`), and 0 for a deb or 1 for a udeb; `None` if the
/// distribution has neither its component nor its architecture.
fn slots(info: &ReleaseInfo, b: &BinaryRow<'_>) -> Option<(usize, std::ops::Range<usize>, usize)> {
    let c = info.components.iter().position(|x| x == b.component)?;
    let targets = if b.architecture == "all" {
        0..info.architectures.len()
    } else {
        let a = info
            .architectures
            .iter()
            .position(|x| x == b.architecture)?;
        a..a + 1
    };
    Some((c, targets, usize::from(b.package_type == PackageType::Udeb)))
}

/// The SHA-256 of each piece, on all cores.
fn parallel_sha256(pieces: &[&[u8]]) -> Vec<[u8; 32]> {
    in_chunks(pieces, |p| <sha2::Sha256 as sha2::Digest>::digest(p).into())
}

/// `f` of each item, in order, the items split into one run per core.
pub(super) fn in_chunks<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = items.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(per)
            .map(|chunk| scope.spawn(move || chunk.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker thread panicked"))
            .collect()
    })
}

/// What a rebuild takes over from the previous publish: the digest marks of its files, which
/// name their segments, and its compressed files by path.
struct Reuse<'a> {
    marks: &'a Marks,
    files: BTreeMap<String, Vec<u8>>,
}

/// The first segments of a compressed file, taken from its previous version.
struct Taken {
    prefix: compression::Prefix,
    /// (part key, end) of each taken segment.
    parts: Vec<([u8; 32], usize)>,
}

/// Compresses every text from cached or freshly compressed segments (on all cores). With
/// `reuse`, the segments a text keeps from its previous version are named by their saved
/// digests, and each compressed file continues its previous version after them.
fn compress_all(
    texts: Vec<Text>,
    small: Vec<File>,
    levels: Levels,
    cache: SegmentCache<'_>,
    mut reuse: Option<Reuse<'_>>,
) -> Rendered {
    // (text index, kind) → list of (key, segment range)
    let mut plan: Vec<Plan> = Vec::new();
    let mut taken: Vec<Option<Taken>> = Vec::new();
    let mut text_parts: Vec<Vec<([u8; 32], usize)>> = Vec::new();
    // Cache keys of the segments of the texts left as published (from their saved marks).
    let mut used_unread: BTreeSet<String> = BTreeSet::new();
    for (i, t) in texts.iter().enumerate() {
        if t.unread.is_some() {
            let saved = reuse.as_ref().and_then(|r| r.marks.get(&t.path));
            for &kind in t.kinds {
                let tag = compression::cache_tag(kind, levels.of(kind));
                for m in saved.into_iter().flatten() {
                    used_unread.insert(format!("{tag}-{}", hex::encode(m.key)));
                }
                plan.push((i, kind, Vec::new()));
                taken.push(None);
            }
            text_parts.push(Vec::new());
            continue;
        }
        let segments = compression::split(t.data.len(), &t.records, t.spacing, MAX_SEGMENT);
        // Segments within the text's unchanged start are those of the previous publish.
        let saved = reuse
            .as_ref()
            .and_then(|r| r.marks.get(&t.path))
            .map_or(&[][..], Vec::as_slice);
        let mut digests: Vec<[u8; 32]> = segments
            .iter()
            .zip(saved)
            .take_while(|((_, end), m)| *end <= t.kept && m.end == *end as u64)
            .map(|(_, m)| m.key)
            .collect();
        let kept = digests.len();
        let pieces: Vec<&[u8]> = segments[kept..]
            .iter()
            .map(|&(a, b)| &t.data[a..b])
            .collect();
        digests.extend(parallel_sha256(&pieces));
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
            let path = format!("{}{}", t.path, kind.extension());
            let take = reuse.as_mut().filter(|_| kept > 0).and_then(|r| {
                let file = r.files.remove(&path)?;
                let parts: Vec<([u8; 32], usize)> = r
                    .marks
                    .get(&path)?
                    .get(..kept)?
                    .iter()
                    .map(|m| (m.key, m.end as usize))
                    .collect();
                let end = parts.last()?.1;
                let prefix = compression::Prefix::cut(kind, file, kept, end)?;
                Some(Taken { prefix, parts })
            });
            plan.push((i, kind, keyed));
            taken.push(take);
        }
    }
    let skip: Vec<usize> = taken
        .iter()
        .map(|t| t.as_ref().map_or(0, |t| t.parts.len()))
        .collect();
    let mut keys: Vec<String> = plan
        .iter()
        .zip(&skip)
        .flat_map(|((_, _, k), &n)| k[n..].iter().map(|(key, _)| key.clone()))
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
    for ((i, kind, keyed), &n) in plan.iter().zip(&skip) {
        for (key, (a, b)) in &keyed[n..] {
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
    for ((_, _, keyed), &n) in plan.iter().zip(&skip) {
        for (key, _) in &keyed[n..] {
            *uses.entry(key.as_str()).or_default() += 1;
        }
    }
    let mut files = Vec::new();
    let mut new_segments = Vec::new();
    for ((i, kind, keyed), take) in plan.iter().zip(taken) {
        if let Some(u) = &texts[*i].unread {
            let k = texts[*i]
                .kinds
                .iter()
                .position(|x| x == kind)
                .expect("a kind of the text");
            files.push(File {
                path: format!("{}{}", texts[*i].path, kind.extension()),
                same: Some(u.files[1 + k].clone()),
                ..File::default()
            });
            continue;
        }
        let (prefix, mut parts) = match take {
            Some(t) => (Some(t.prefix), t.parts),
            None => (None, Vec::new()),
        };
        let keyed_new = &keyed[parts.len()..];
        let pieces: Vec<(&[u8], usize)> = keyed_new
            .iter()
            .map(|(key, (a, b))| (segments[key].as_slice(), b - a))
            .collect();
        let mut start = prefix
            .as_ref()
            .map_or(compression::header_len(*kind), compression::Prefix::end);
        let (data, ends) = compression::assemble_after(*kind, prefix, &pieces);
        for ((key, (a, b)), &end) in keyed_new.iter().zip(&ends) {
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
        parts.extend(
            keyed_new
                .iter()
                .zip(ends)
                .map(|((key, _), end)| (part_keys[key], end)),
        );
        files.push(File {
            path: format!("{}{}", texts[*i].path, kind.extension()),
            data,
            parts,
            listed_only: false,
            same: None,
        });
    }
    let mut used = used_unread;
    used.extend(
        plan.iter()
            .flat_map(|(_, _, k)| k.iter().map(|(key, _)| key.clone())),
    );
    for (t, parts) in texts.into_iter().zip(text_parts) {
        files.push(File {
            path: t.path,
            data: t.data,
            parts,
            listed_only: t.listed_only,
            same: t.unread.map(|mut u| u.files.swap_remove(0)),
        });
    }
    files.extend(small);
    Rendered {
        files,
        segments: used,
        new_segments,
        outline: Outline::default(),
        incremental: false,
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
    let mut problems = Vec::new();
    for (name, (d, _)) in &release::entries(&body) {
        let path = dir.join(name);
        let stale = vec![
            path.clone(),
            by_hash_path(&path, "SHA256", &d.sha256),
            by_hash_path(&path, "SHA512", &d.sha512),
        ];
        match fs::read(&path) {
            Ok(bytes) => {
                let reason = if bytes.len() as u64 != d.size {
                    Some(format!("{} bytes, InRelease says {}", bytes.len(), d.size))
                } else if hex::encode(sha2::Sha256::digest(&bytes)) != d.sha256 {
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
                architectures: vec!["amd64".into(), "i386".into()],
                components: vec!["main".into()],
                description: "d".into(),
                not_automatic: false,
                but_automatic_upgrades: false,
            },
        }
    }

    #[derive(Clone)]
    struct Bin {
        seq: u64,
        package: String,
        arch: &'static str,
        udeb: bool,
        section: &'static str,
        stanza: String,
        contents: Option<String>,
    }

    #[derive(Clone)]
    struct Src {
        seq: u64,
        name: String,
        stanza: String,
    }

    /// Records in memory, with arrival numbers.
    #[derive(Clone, Default)]
    struct Fake {
        bins: Vec<Bin>,
        srcs: Vec<Src>,
        next: u64,
    }

    impl Fake {
        /// A binary `p<i>` (and its source) with a stanza long enough for many segments.
        fn add(&mut self, i: usize, version: usize) {
            self.next += 1;
            let stanza = format!(
                "Package: p{i}\nVersion: {version}.{i}\nDescription: {}\n",
                "x".repeat((i * 7 + version) % 300)
            );
            self.bins.push(Bin {
                seq: self.next,
                package: format!("p{i}"),
                arch: if i % 5 == 0 { "all" } else { "amd64" },
                udeb: i % 11 == 3,
                section: if i % 3 == 0 { "net" } else { "misc" },
                stanza,
                contents: (i % 13 != 7).then(|| {
                    format!(
                        "usr/bin/p{i}\nusr/share/doc/p{i}/copyright\nusr/share/common/f{}",
                        i % 4
                    )
                }),
            });
            self.next += 1;
            self.srcs.push(Src {
                seq: self.next,
                name: format!("p{i}"),
                stanza: format!("Package: p{i}\nVersion: {version}.{i}\n"),
            });
        }

        fn many(n: usize) -> Fake {
            let mut f = Fake::default();
            for i in 0..n {
                f.add(i, 1);
            }
            f
        }

        fn remove(&mut self, i: usize) {
            let name = format!("p{i}");
            self.bins.retain(|b| b.package != name);
            self.srcs.retain(|s| s.name != name);
        }
    }

    impl Records for Fake {
        type Error = std::convert::Infallible;
        fn arrivals(&self) -> Result<(Vec<u64>, Vec<u64>), Self::Error> {
            Ok((
                self.bins.iter().map(|b| b.seq).collect(),
                self.srcs.iter().map(|s| s.seq).collect(),
            ))
        }
        fn binaries(
            &self,
            after: u64,
            f: &mut dyn FnMut(BinaryRow<'_>),
        ) -> Result<(), Self::Error> {
            for b in self.bins.iter().filter(|b| b.seq > after) {
                f(BinaryRow {
                    seq: b.seq,
                    package: &b.package,
                    architecture: b.arch,
                    component: "main",
                    package_type: if b.udeb {
                        PackageType::Udeb
                    } else {
                        PackageType::Deb
                    },
                    section: b.section,
                    stanza: b.stanza.as_bytes(),
                    contents: b.contents.as_deref(),
                });
            }
            Ok(())
        }
        fn sources(&self, after: u64, f: &mut dyn FnMut(SourceRow<'_>)) -> Result<(), Self::Error> {
            for s in self.srcs.iter().filter(|s| s.seq > after) {
                f(SourceRow {
                    seq: s.seq,
                    name: &s.name,
                    component: "main",
                    stanza: &s.stanza,
                });
            }
            Ok(())
        }
    }

    fn empty(keys: &[String]) -> Vec<Option<Vec<u8>>> {
        vec![None; keys.len()]
    }

    #[test]
    fn new_segments_taken_from_the_files_rebuild_the_same_files_from_the_cache() {
        let spec = spec();
        let Ok(cold) = render(&spec, &Fake::many(3000), Levels::default(), &empty, None);
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
        let Ok(warm) = render(&spec, &Fake::many(3000), Levels::default(), &lookup, None);
        assert!(warm.new_segments.is_empty());
        let got: Vec<(String, Vec<u8>)> =
            warm.files.into_iter().map(|f| (f.path, f.data)).collect();
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert!(g == e, "{} differs when built from the cache", e.0);
        }
    }

    /// What a publish leaves for the next: its outline, digest marks, `Release` entries
    /// and files (by SHA-256).
    #[derive(Default)]
    struct Publish {
        outline: Outline,
        marks: Marks,
        listed: BTreeMap<String, Digests>,
        files: BTreeMap<[u8; 32], Vec<u8>>,
    }

    /// Publishes a render after `before`: files left as published are taken from it.
    fn published(r: &Rendered, before: &Publish) -> Publish {
        let mut next = Publish {
            outline: r.outline.clone(),
            ..Publish::default()
        };
        for (f, (d, m)) in r.files.iter().zip(digests(&r.files, &before.marks)) {
            let digest: [u8; 32] = hex::decode(&d.sha256).unwrap().try_into().unwrap();
            let data = match &f.same {
                Some(_) => before.files[&digest].clone(),
                None => f.data.clone(),
            };
            next.files.insert(digest, data);
            if !m.is_empty() {
                next.marks.insert(f.path.clone(), m);
            }
            next.listed.insert(f.path.clone(), d);
        }
        next.outline.complete(|path| {
            let d = next.listed.get(path)?;
            hex::decode(&d.sha256).ok()?.try_into().ok()
        });
        next
    }

    /// A render of `fake` from what a previous publish left, read through `load`.
    fn rebuilt(fake: &Fake, p: &Publish, load: LoadFile<'_>) -> Rendered {
        let present = |_: &str, d: &Digests| {
            let digest: [u8; 32] = hex::decode(&d.sha256).unwrap().try_into().unwrap();
            p.files
                .get(&digest)
                .is_some_and(|b| b.len() as u64 == d.size)
        };
        let previous = Previous {
            outline: p.outline.clone(),
            marks: &p.marks,
            load,
            listed: p.listed.clone(),
            present: &present,
        };
        let Ok(r) = render(&spec(), fake, Levels::default(), &empty, Some(previous));
        r
    }

    #[test]
    fn texts_rebuilt_from_the_previous_publish_are_the_full_render() {
        let spec = spec();
        let mut fake = Fake::many(400);
        let Ok(first) = render(&spec, &fake, Levels::default(), &empty, None);
        let mut previous = published(&first, &Publish::default());
        let mut unread = 0;
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut rebuilds = 0;
        for step in 0..16 {
            match step % 4 {
                // New packages arrive.
                0 => (0..1 + next(3)).for_each(|_| fake.add(400 + next(60) as usize, step)),
                // New versions replace old ones (removed, then added again).
                1 => (0..1 + next(3)).for_each(|_| {
                    let i = next(460) as usize;
                    fake.remove(i);
                    fake.add(i, step);
                }),
                // Packages leave.
                2 => (0..1 + next(3)).for_each(|_| fake.remove(next(460) as usize)),
                // Nothing changes, or a second record of a package arrives under a name one
                // that stays has: its lines are shared, and only a full render can tell.
                _ if step == 7 => {
                    let i = (0..460)
                        .find(|i| {
                            i % 5 != 0 && fake.bins.iter().any(|b| b.package == format!("p{i}"))
                        })
                        .unwrap();
                    let mut twin = fake
                        .bins
                        .iter()
                        .find(|b| b.package == format!("p{i}"))
                        .unwrap()
                        .clone();
                    fake.next += 1;
                    twin.seq = fake.next;
                    twin.arch = "all";
                    fake.bins.push(twin);
                }
                _ => {}
            }
            let load = |_: &str, digest: &[u8; 32]| previous.files.get(digest).cloned();
            let incremental = rebuilt(&fake, &previous, &load);
            let Ok(full) = render(&spec, &fake, Levels::default(), &empty, None);
            assert_eq!(incremental.files.len(), full.files.len());
            for (i, f) in incremental.files.iter().zip(&full.files) {
                assert_eq!(i.path, f.path);
                // A file left as published is the previous one, unread.
                let data = match &i.same {
                    Some(d) => {
                        unread += 1;
                        assert!(i.data.is_empty());
                        let digest: [u8; 32] = hex::decode(&d.sha256).unwrap().try_into().unwrap();
                        &previous.files[&digest]
                    }
                    None => &i.data,
                };
                assert!(
                    *data == f.data,
                    "step {step}: {} differs from the full render",
                    f.path
                );
            }
            assert_eq!(incremental.outline, full.outline, "step {step}");
            if incremental.incremental {
                rebuilds += 1;
            }
            assert_eq!(incremental.incremental, step != 7, "step {step}");
            if step == 4 {
                // Compressed segments were taken over from the previous files: fewer were
                // compressed than a full render compresses.
                assert!(
                    incremental.new_segments.len() < full.new_segments.len(),
                    "{} of {}",
                    incremental.new_segments.len(),
                    full.new_segments.len()
                );
            }
            previous = published(&incremental, &previous);
        }
        assert!(rebuilds >= 14);
        // Texts of the other architecture, udebs and sources were left as published, and
        // not read, in many steps.
        assert!(unread >= 20, "{unread} files left as published");
        // A previous text that no longer matches its outline means a full render, not a
        // wrong one.
        fake.add(3, 99);
        let load = |_: &str, _: &[u8; 32]| Some(b"Package: x\n".to_vec());
        assert!(!rebuilt(&fake, &previous, &load).incremental);
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
            let (state, _, _) = write(
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
