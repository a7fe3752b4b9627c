//! The index texts of a distribution before compression (`Packages`, `Sources`, `Contents`),
//! and how they are rebuilt from the previous publish's texts.

use super::Previous;
use crate::checksums::Digests;
use crate::repo::compression::Kind;
use crate::repo::outline::{Entry, TextOutline};
use crate::repo::release::ReleaseInfo;
use std::collections::BTreeMap;

/// An index before compression: its text and where its records end (with their key hashes).
pub(super) struct Text {
    pub(super) path: String,
    pub(super) data: Vec<u8>,
    pub(super) records: Vec<(usize, u64)>,
    pub(super) kinds: &'static [Kind],
    pub(super) spacing: u64,
    pub(super) listed_only: bool,
    /// The stanzas of a `Packages` or `Sources` text, for its outline.
    pub(super) entries: Vec<Entry>,
    /// Whether the next publish may rebuild this text from it (a `Contents` text whose
    /// lines cannot be read back unambiguously may not).
    pub(super) outlined: bool,
    /// How many leading bytes are those of the previous publish's text.
    pub(super) kept: usize,
    /// A text no record arrived in or left, whose files stay as published: not read back.
    pub(super) unread: Option<Unread>,
}

/// What a text left as published keeps: its outline, and the `Release` entries of its files
/// (the text, then its compressed forms in the order of its kinds).
pub(super) struct Unread {
    pub(super) outline: TextOutline,
    pub(super) files: Vec<Digests>,
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
    pub(super) fn leave_as_published(&mut self, outline: TextOutline, files: Vec<Digests>) {
        self.unread = Some(Unread { outline, files });
    }

    /// The `Release` entries of this text's files in the previous publish, if every one of
    /// them is as `outline` and the previous outline's compressed files say, and in place.
    pub(super) fn entries_kept(
        &self,
        outline: &TextOutline,
        previous: &Previous<'_>,
    ) -> Option<Vec<Digests>> {
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
    pub(super) fn stanza(&mut self, entry: Entry, stanza: &[u8]) {
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
    pub(super) fn rebuild(
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

/// Segments end after one in this many stanzas (or `Contents` lines) on average, and at
/// `MAX_SEGMENT` bytes at most. A change recompresses the segment it falls in; segments
/// are small enough that this is one xz block of about 128 KiB (a random stanza lands in a
/// 256 KiB segment on average: longer segments are likelier to be hit), and large enough
/// that cutting costs about 3% in size against one whole stream.
const STANZA_SPACING: u64 = 128;
const LINE_SPACING: u64 = 2048;
pub(super) const MAX_SEGMENT: usize = 512 << 10;

const BOTH: &[Kind] = &[Kind::Xz, Kind::Gzip];
const GZIP: &[Kind] = &[Kind::Gzip];

/// The index texts of a distribution, by kind.
pub(super) struct Texts {
    /// Indexed ((component * architectures) + architecture) * 2 + (0 deb | 1 udeb).
    pub(super) packages: Vec<Text>,
    /// Indexed (component * architectures) + architecture.
    pub(super) contents: Vec<Text>,
    /// Indexed by component.
    pub(super) sources: Vec<Text>,
    /// The previous publish's compressed files of the texts read back (by path), which the
    /// new ones continue.
    pub(super) previous_files: BTreeMap<String, Vec<u8>>,
}

impl Texts {
    pub(super) fn empty(info: &ReleaseInfo) -> Texts {
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
