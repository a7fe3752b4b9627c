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

use super::release::{self, Listed, ReleaseInfo};
use super::store::{DistContents, PublishState};
use crate::checksums::Digests;
use crate::deb::PackageType;
use crate::openpgp::{ArchiveKey, OpenPgpError};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
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

/// Compression settings for the indices.
#[derive(Debug, Clone, Copy)]
pub struct Compression {
    pub gzip_level: u32,
    pub xz_preset: u32,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            gzip_level: 6,
            xz_preset: 6,
        }
    }
}

/// The rendered files of a distribution, by path relative to its directory, in listing order.
pub fn render(
    spec: &DistSpec,
    contents: &DistContents,
    compression: Compression,
) -> Vec<(String, Vec<u8>)> {
    let info = &spec.info;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let with_compressed =
        |files: &mut Vec<(String, Vec<u8>)>, path: String, data: Vec<u8>, xz: bool| {
            files.push((format!("{path}.gz"), gzip(&data, compression.gzip_level)));
            if xz {
                files.push((
                    format!("{path}.xz"),
                    xz_compress(&data, compression.xz_preset),
                ));
            }
            files.push((path, data));
        };
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
                stanzas.sort();
                let text = join_stanzas(stanzas.iter().map(|s| s.2));
                with_compressed(
                    &mut files,
                    format!("{dir}/Packages"),
                    text.into_bytes(),
                    kind == PackageType::Deb,
                );
                if kind == PackageType::Deb {
                    files.push((
                        format!("{dir}/Release"),
                        release::render_component(info, component, arch).into_bytes(),
                    ));
                }
            }
            let mut entries = Vec::new();
            for (b, list) in &contents.binaries {
                if b.record.package_type != PackageType::Deb
                    || &b.record.component != component
                    || !(&b.architecture == arch || b.architecture == "all")
                {
                    continue;
                }
                for path in list.iter().flat_map(|l| l.lines()) {
                    entries.push((
                        path.to_string(),
                        format!("{}/{}", b.record.section, b.package),
                    ));
                }
            }
            let text = super::index::contents(entries);
            files.push((
                format!("{component}/Contents-{arch}.gz"),
                gzip(text.as_bytes(), compression.gzip_level),
            ));
        }
        let mut sources: Vec<(&str, &str)> = contents
            .sources
            .iter()
            .filter(|(_, s)| &s.component == component)
            .map(|(n, s)| (n.as_str(), s.stanza.as_str()))
            .collect();
        sources.sort();
        let text = join_stanzas(sources.iter().map(|s| s.1));
        with_compressed(
            &mut files,
            format!("{component}/source/Sources"),
            text.into_bytes(),
            true,
        );
        files.push((
            format!("{component}/source/Release"),
            release::render_component(info, component, "source").into_bytes(),
        ));
    }
    files
}

fn join_stanzas<'a>(stanzas: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for s in stanzas {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(s);
    }
    out
}

pub fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::GzBuilder::new().mtime(0).write(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::new(level),
    );
    e.write_all(data).expect("writing to memory");
    e.finish().expect("writing to memory")
}

pub fn xz_compress(data: &[u8], preset: u32) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::with_capacity(data.len() / 5 + 64), preset);
    e.write_all(data).expect("writing to memory");
    e.finish().expect("writing to memory")
}

/// Writes a distribution. `dists_root` is the repository's `dists` directory. Returns the new
/// by-hash bookkeeping.
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
    // 1. by-hash copies
    for (rel, data) in files {
        let d = Digests::of(data);
        let parent = Path::new(rel)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let by256 = parent.join("by-hash/SHA256").join(&d.sha256);
        let by512 = parent.join("by-hash/SHA512").join(&d.sha512);
        for by in [&by256, &by512] {
            let full = dist_dir.join(by);
            if !full.exists() {
                write_atomic(&full, data)?;
            }
            current.insert(format!("{}/{}", spec.dir, by.display()));
        }
        listed.push(Listed {
            path: rel.clone(),
            digests: d,
        });
    }
    // 2. plain names
    for (rel, data) in files {
        write_atomic(&dist_dir.join(rel), data)?;
    }
    // 3. Release files, InRelease last
    let text = release::render(&spec.info, &listed);
    let sign_err = |source| PublishError::Sign {
        dist: spec.dir.clone(),
        source,
    };
    let detached = key.detached_sign(text.as_bytes()).map_err(sign_err)?;
    let inline = key.clearsign(text.as_bytes()).map_err(sign_err)?;
    write_atomic(&dist_dir.join("Release"), text.as_bytes())?;
    write_atomic(&dist_dir.join("Release.gpg"), &detached)?;
    write_atomic(&dist_dir.join("InRelease"), &inline)?;

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
    })
}

/// Writes a file through a temporary name and a rename, with its data synced first, so the
/// name never shows partial content.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), PublishError> {
    let io_err = |source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().expect("published files live in a directory");
    fs::create_dir_all(dir).map_err(io_err)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    {
        let mut f = fs::File::create(&tmp).map_err(io_err)?;
        f.write_all(data).map_err(io_err)?;
        f.sync_data().map_err(io_err)?;
    }
    fs::rename(&tmp, path).map_err(io_err)
}
