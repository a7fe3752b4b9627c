//! The outline of a distribution's published indices: for each uncompressed index text, its
//! size and digest, where its bytes can be read back, and, for `Packages` and `Sources`, the
//! records it lists in order.
//!
//! A publish rebuilds each text from the previous one and the records that arrived or left
//! since (records are listed in arrival order, so an upload only appends), instead of
//! reading every record of the distribution. The outline is a cache: when it is missing, does
//! not fit the distribution, or a previous text cannot be read back with its digest, the
//! publish renders in full, which gives the same bytes.

use std::collections::BTreeMap;

/// One record of a `Packages` or `Sources` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Arrival number of the record in its distribution.
    pub seq: u64,
    /// Length of its stanza (without the blank line that separates it from the previous one).
    pub len: u32,
    /// Hash of its name, where segments may end (see `compression::split`).
    pub key: u64,
    /// `<section>/<package>` of a `.deb`, as its `Contents` lines name it; empty otherwise.
    pub owner: String,
}

/// One uncompressed index text as it was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextOutline {
    pub len: u64,
    pub sha256: [u8; 32],
    /// SHA-256 of the published file that holds the text (its by-hash name): the text itself,
    /// or for `Contents`, which is only published compressed, its `.gz`.
    pub file: [u8; 32],
    /// Whether `file` is gzip-compressed.
    pub gzip: bool,
    /// The records, in order (empty for `Contents`).
    pub entries: Vec<Entry>,
}

/// The outline of one published distribution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outline {
    /// The highest arrival numbers of binaries and sources the texts were rendered from:
    /// anything above arrived since.
    pub binaries_upto: u64,
    pub sources_upto: u64,
    /// By text path (e.g. `main/binary-amd64/Packages`).
    pub texts: BTreeMap<String, TextOutline>,
    /// The compressed files made from the texts (e.g. `main/binary-amd64/Packages.xz`),
    /// by path: their SHA-256. A publish continues each after the segments it keeps.
    pub files: BTreeMap<String, [u8; 32]>,
    /// The gzip and xz levels the files were compressed with: under other levels, nothing
    /// compressed is taken over.
    pub levels: [u32; 2],
}

impl Outline {
    /// Fills in the digests of the texts from those of the published files (by path), and
    /// leaves out any text whose digests are unknown.
    pub fn complete(&mut self, sha256_of: impl Fn(&str) -> Option<[u8; 32]>) {
        self.files
            .retain(|path, digest| sha256_of(path).map(|d| *digest = d).is_some());
        self.texts.retain(|path, t| {
            let Some(own) = sha256_of(path) else {
                return false;
            };
            let file = if t.gzip {
                sha256_of(&format!("{path}.gz"))
            } else {
                Some(own)
            };
            let Some(file) = file else {
                return false;
            };
            t.sha256 = own;
            t.file = file;
            true
        });
    }

    /// Little-endian: the two arrival numbers, the two levels, the files (u32 count; per
    /// file its path, u32 length first, and digest), the number of texts, then per text its path
    /// (u32 length first), size, digest, file digest, gzip flag, and entries (u32 count; per
    /// entry seq, len, key, u16 owner length, owner).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.binaries_upto.to_le_bytes());
        out.extend_from_slice(&self.sources_upto.to_le_bytes());
        for level in self.levels {
            out.extend_from_slice(&level.to_le_bytes());
        }
        out.extend_from_slice(&(self.files.len() as u32).to_le_bytes());
        for (path, digest) in &self.files {
            out.extend_from_slice(&(path.len() as u32).to_le_bytes());
            out.extend_from_slice(path.as_bytes());
            out.extend_from_slice(digest);
        }
        out.extend_from_slice(&(self.texts.len() as u32).to_le_bytes());
        for (path, t) in &self.texts {
            out.extend_from_slice(&(path.len() as u32).to_le_bytes());
            out.extend_from_slice(path.as_bytes());
            out.extend_from_slice(&t.len.to_le_bytes());
            out.extend_from_slice(&t.sha256);
            out.extend_from_slice(&t.file);
            out.push(u8::from(t.gzip));
            out.extend_from_slice(&(t.entries.len() as u32).to_le_bytes());
            for e in &t.entries {
                out.extend_from_slice(&e.seq.to_le_bytes());
                out.extend_from_slice(&e.len.to_le_bytes());
                out.extend_from_slice(&e.key.to_le_bytes());
                out.extend_from_slice(&(e.owner.len() as u16).to_le_bytes());
                out.extend_from_slice(e.owner.as_bytes());
            }
        }
        out
    }

    /// `None` if the bytes are not an encoded outline.
    pub fn decode(mut b: &[u8]) -> Option<Outline> {
        let mut o = Outline {
            binaries_upto: u64::from_le_bytes(take(&mut b)?),
            sources_upto: u64::from_le_bytes(take(&mut b)?),
            levels: [
                u32::from_le_bytes(take(&mut b)?),
                u32::from_le_bytes(take(&mut b)?),
            ],
            texts: BTreeMap::new(),
            files: BTreeMap::new(),
        };
        let files = u32::from_le_bytes(take(&mut b)?);
        for _ in 0..files {
            let n = u32::from_le_bytes(take(&mut b)?) as usize;
            let path = std::str::from_utf8(take_n(&mut b, n)?).ok()?.to_string();
            o.files.insert(path, take(&mut b)?);
        }
        let texts = u32::from_le_bytes(take(&mut b)?);
        for _ in 0..texts {
            let n = u32::from_le_bytes(take(&mut b)?) as usize;
            let path = std::str::from_utf8(take_n(&mut b, n)?).ok()?.to_string();
            let len = u64::from_le_bytes(take(&mut b)?);
            let sha256 = take(&mut b)?;
            let file = take(&mut b)?;
            let gzip = match take::<1>(&mut b)? {
                [0] => false,
                [1] => true,
                _ => return None,
            };
            let count = u32::from_le_bytes(take(&mut b)?) as usize;
            // Each entry takes at least 22 bytes: a count beyond that is not ours.
            if count > b.len() / 22 {
                return None;
            }
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let seq = u64::from_le_bytes(take(&mut b)?);
                let len = u32::from_le_bytes(take(&mut b)?);
                let key = u64::from_le_bytes(take(&mut b)?);
                let n = u16::from_le_bytes(take(&mut b)?) as usize;
                let owner = std::str::from_utf8(take_n(&mut b, n)?).ok()?.to_string();
                entries.push(Entry {
                    seq,
                    len,
                    key,
                    owner,
                });
            }
            o.texts.insert(
                path,
                TextOutline {
                    len,
                    sha256,
                    file,
                    gzip,
                    entries,
                },
            );
        }
        b.is_empty().then_some(o)
    }
}

fn take_n<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = b.split_at_checked(n)?;
    *b = rest;
    Some(head)
}

fn take<const N: usize>(b: &mut &[u8]) -> Option<[u8; N]> {
    take_n(b, N)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outlines_round_trip_and_garbage_is_refused() {
        let mut o = Outline {
            binaries_upto: 7,
            sources_upto: 3,
            texts: BTreeMap::new(),
            files: BTreeMap::new(),
            levels: [6, 6],
        };
        o.files
            .insert("main/binary-amd64/Packages.xz".into(), [4; 32]);
        o.texts.insert(
            "main/binary-amd64/Packages".into(),
            TextOutline {
                len: 10,
                sha256: [1; 32],
                file: [1; 32],
                gzip: false,
                entries: vec![Entry {
                    seq: 5,
                    len: 9,
                    key: 42,
                    owner: "misc/hello".into(),
                }],
            },
        );
        o.texts.insert(
            "main/Contents-amd64".into(),
            TextOutline {
                len: 0,
                sha256: [2; 32],
                file: [3; 32],
                gzip: true,
                entries: Vec::new(),
            },
        );
        let bytes = o.encode();
        assert_eq!(Outline::decode(&bytes), Some(o));
        assert_eq!(Outline::decode(&bytes[..bytes.len() - 1]), None);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Outline::decode(&longer), None);
        assert_eq!(Outline::decode(b"short"), None);
    }
}
