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

mod compress;
mod previous;
mod render;
mod text;
mod tree;
mod verify;

#[cfg(test)]
mod tests;

pub(super) use compress::in_chunks;
pub use compress::{NewSegment, SegmentCache, new_segment_bytes};
pub use previous::{LoadFile, Present, Previous, room};
pub use render::render;
pub use tree::{Marks, by_hash_path, digests, resumable, write};
pub use verify::{Problem, verify};

use super::outline::Outline;
use super::release::ReleaseInfo;
use crate::checksums::Digests;
use crate::deb::PackageType;
use crate::openpgp::OpenPgpError;
use std::collections::BTreeSet;
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
