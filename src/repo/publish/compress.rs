//! Compressing the index texts: each text cut into segments, each segment compressed once
//! (or found in the segment cache, or kept from the previous compressed file), and the
//! compressed files assembled from them.

use super::text::{MAX_SEGMENT, Text};
use super::{File, Marks, Rendered};
use crate::repo::compression::{self, Kind, Levels};
use crate::repo::outline::Outline;
use std::collections::{BTreeMap, BTreeSet};

/// Looks up compressed segments by key; `None` where the cache has none.
pub type SegmentCache<'a> = &'a dyn Fn(&[String]) -> Vec<Option<Vec<u8>>>;

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

/// How one compressed file is made: (text index, format, (segment key, byte range) list).
type Plan = (usize, Kind, Vec<(String, (usize, usize))>);

/// The SHA-256 of each piece, on all cores.
fn parallel_sha256(pieces: &[&[u8]]) -> Vec<[u8; 32]> {
    in_chunks(pieces, |p| <sha2::Sha256 as sha2::Digest>::digest(p).into())
}

/// `f` of each item, in order, the items split into one run per core.
pub(in crate::repo) fn in_chunks<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
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
pub(super) struct Reuse<'a> {
    pub(super) marks: &'a Marks,
    pub(super) files: BTreeMap<String, Vec<u8>>,
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
pub(super) fn compress_all(
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
