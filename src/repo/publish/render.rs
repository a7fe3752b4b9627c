//! Rendering a distribution: its index texts built from the records (anew, or from the
//! previous publish's texts and what arrived or left since), then compressed.

use super::compress::{Reuse, compress_all};
use super::previous::load_all;
use super::text::{Text, Texts};
use super::{BinaryRow, DistSpec, File, Previous, Records, Rendered, SegmentCache, room};
use crate::checksums::Digests;
use crate::deb::PackageType;
use crate::repo::compression::{self, Kind, Levels};
use crate::repo::index;
use crate::repo::outline::{Entry, Outline, TextOutline};
use crate::repo::release::{self, ReleaseInfo};
use std::collections::{BTreeMap, BTreeSet};

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
