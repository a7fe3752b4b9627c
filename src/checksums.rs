//! The digests Debian indices carry (MD5, SHA1, SHA256, SHA512), computed in one streaming pass.

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use std::io::{self, Read};

/// Size and hex digests of one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Digests {
    pub size: u64,
    pub md5: String,
    pub sha1: String,
    pub sha256: String,
    pub sha512: String,
}

/// Feeds bytes to all four hash functions at once.
#[derive(Clone, Default)]
pub struct Hasher {
    size: u64,
    md5: Md5,
    sha1: Sha1,
    sha256: Sha256,
    sha512: Sha512,
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.size += data.len() as u64;
        self.md5.update(data);
        self.sha1.update(data);
        self.sha256.update(data);
        self.sha512.update(data);
    }

    pub fn finish(self) -> Digests {
        Digests {
            size: self.size,
            md5: hex::encode(self.md5.finalize()),
            sha1: hex::encode(self.sha1.finalize()),
            sha256: hex::encode(self.sha256.finalize()),
            sha512: hex::encode(self.sha512.finalize()),
        }
    }
}

impl Digests {
    pub fn of(data: &[u8]) -> Digests {
        let mut h = Hasher::new();
        h.update(data);
        h.finish()
    }

    /// Hashes everything a reader yields.
    pub fn of_reader(mut r: impl Read) -> io::Result<Digests> {
        let mut h = Hasher::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(h.finish());
            }
            h.update(&buf[..n]);
        }
    }
}

/// The digests of many buffers, computed on all cores: each (buffer, algorithm) pair is a
/// separate task, so one large buffer does not leave the other cores idle.
pub fn digests_parallel(buffers: &[&[u8]]) -> Vec<Digests> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut tasks: Vec<(usize, usize)> = (0..buffers.len())
        .flat_map(|i| (0..4).map(move |a| (i, a)))
        .collect();
    tasks.sort_by_key(|&(i, a)| (std::cmp::Reverse(buffers[i].len()), a));
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(tasks.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Vec<(usize, usize, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    while let Some(&(i, a)) = tasks.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let data = buffers[i];
                        let hex = match a {
                            0 => hex::encode(Md5::digest(data)),
                            1 => hex::encode(Sha1::digest(data)),
                            2 => hex::encode(Sha256::digest(data)),
                            _ => hex::encode(Sha512::digest(data)),
                        };
                        out.push((i, a, hex));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("digest thread panicked"))
            .collect()
    });
    let mut out: Vec<Digests> = buffers
        .iter()
        .map(|b| Digests {
            size: b.len() as u64,
            md5: String::new(),
            sha1: String::new(),
            sha256: String::new(),
            sha512: String::new(),
        })
        .collect();
    for (i, a, hex) in results {
        let d = &mut out[i];
        match a {
            0 => d.md5 = hex,
            1 => d.sha1 = hex,
            2 => d.sha256 = hex,
            _ => d.sha512 = hex,
        }
    }
    out
}

/// A hash function of Debian's indices, for resumable hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

/// The internal state of one hash function after a prefix whose length is a multiple of
/// [`Midstate::UNIT`] bytes. Saved at the end of an index segment, it lets the next publish
/// hash only what follows the first changed segment instead of the whole file (the four
/// functions are Merkle–Damgård constructions: the state after a prefix is all they carry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Midstate {
    /// Bytes absorbed (a multiple of `UNIT`).
    pub len: u64,
    /// The chaining words; 32-bit functions use the low halves of the first 4, 5 or 8.
    pub words: [u64; 8],
}

impl Midstate {
    /// Every state is taken at a multiple of this (the largest block size, SHA-512's).
    pub const UNIT: usize = 128;

    pub fn initial(alg: Algorithm) -> Midstate {
        let mut words = [0u64; 8];
        match alg {
            Algorithm::Md5 => {
                for (w, v) in words.iter_mut().zip(MD5_INIT) {
                    *w = v.into();
                }
            }
            Algorithm::Sha1 => {
                for (w, v) in words.iter_mut().zip(SHA1_INIT) {
                    *w = v.into();
                }
            }
            Algorithm::Sha256 => {
                for (w, v) in words.iter_mut().zip(SHA256_INIT) {
                    *w = v.into();
                }
            }
            Algorithm::Sha512 => words = SHA512_INIT,
        }
        Midstate { len: 0, words }
    }

    /// Absorbs whole units; `data.len()` must be a multiple of [`Midstate::UNIT`].
    pub fn absorb(&mut self, alg: Algorithm, data: &[u8]) {
        assert_eq!(data.len() % Self::UNIT, 0, "midstates absorb whole units");
        self.len += data.len() as u64;
        match alg {
            Algorithm::Md5 => {
                let mut st = self.low::<4>();
                for_blocks([0u8; 64], data, |blocks| md5_asm::compress(&mut st, blocks));
                self.set_low(&st);
            }
            Algorithm::Sha1 => {
                let mut st = self.low::<5>();
                for_blocks(Block64::default(), data, |blocks| {
                    sha1::compress(&mut st, blocks)
                });
                self.set_low(&st);
            }
            Algorithm::Sha256 => {
                let mut st = self.low::<8>();
                for_blocks(Block64::default(), data, |blocks| {
                    sha2::compress256(&mut st, blocks)
                });
                self.set_low(&st);
            }
            Algorithm::Sha512 => {
                let words = &mut self.words;
                for_blocks(Block128::default(), data, |blocks| {
                    sha2::compress512(words, blocks)
                });
            }
        }
    }

    /// The digest of the absorbed prefix followed by `tail`.
    pub fn finish(mut self, alg: Algorithm, tail: &[u8]) -> Vec<u8> {
        let whole = tail.len() - tail.len() % Self::UNIT;
        self.absorb(alg, &tail[..whole]);
        let rest = &tail[whole..];
        let total_bits = (self.len + rest.len() as u64).wrapping_mul(8);
        // Padding: 0x80, zeros, then the length: 8 bytes (little-endian for MD5), or 16
        // big-endian bytes for SHA-512; the padded tail is one or two units long.
        let mut last = Vec::with_capacity(2 * Self::UNIT);
        last.extend_from_slice(rest);
        last.push(0x80);
        let (block, len_bytes) = if alg == Algorithm::Sha512 {
            (128, 16)
        } else {
            (64, 8)
        };
        while (last.len() + len_bytes) % block != 0 {
            last.push(0);
        }
        match alg {
            Algorithm::Md5 => last.extend_from_slice(&total_bits.to_le_bytes()),
            Algorithm::Sha512 => last.extend_from_slice(&u128::from(total_bits).to_be_bytes()),
            _ => last.extend_from_slice(&total_bits.to_be_bytes()),
        }
        // Absorb the padded blocks without the whole-unit rule (they end the message).
        match alg {
            Algorithm::Md5 => {
                let mut st = self.low::<4>();
                for_blocks([0u8; 64], &last, |blocks| {
                    md5_asm::compress(&mut st, blocks)
                });
                st.iter().flat_map(|w| w.to_le_bytes()).collect()
            }
            Algorithm::Sha1 => {
                let mut st = self.low::<5>();
                for_blocks(Block64::default(), &last, |blocks| {
                    sha1::compress(&mut st, blocks)
                });
                st.iter().flat_map(|w| w.to_be_bytes()).collect()
            }
            Algorithm::Sha256 => {
                let mut st = self.low::<8>();
                for_blocks(Block64::default(), &last, |blocks| {
                    sha2::compress256(&mut st, blocks)
                });
                st.iter().flat_map(|w| w.to_be_bytes()).collect()
            }
            Algorithm::Sha512 => {
                let mut st = self.words;
                for_blocks(Block128::default(), &last, |blocks| {
                    sha2::compress512(&mut st, blocks)
                });
                st.iter().flat_map(|w| w.to_be_bytes()).collect()
            }
        }
    }

    fn low<const N: usize>(&self) -> [u32; N] {
        std::array::from_fn(|i| self.words[i] as u32)
    }

    fn set_low(&mut self, st: &[u32]) {
        for (w, v) in self.words.iter_mut().zip(st) {
            *w = (*v).into();
        }
    }
}

const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::Md5,
    Algorithm::Sha1,
    Algorithm::Sha256,
    Algorithm::Sha512,
];

/// A saved point of a file's digests: the state of each function after the part `key`
/// ending at byte `end` (each state taken at `end` rounded down to a unit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// Identifies the part's content (its SHA-256).
    pub key: [u8; 32],
    pub end: u64,
    /// MD5, SHA1, SHA256, SHA512.
    pub states: [Midstate; 4],
}

impl Mark {
    /// Bytes of one encoded mark.
    pub const ENCODED_LEN: usize = 32 + 8 + 4 * (8 + 8 * 8);

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.end.to_le_bytes());
        for st in &self.states {
            out.extend_from_slice(&st.len.to_le_bytes());
            for w in st.words {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
    }

    /// Decodes one mark from the first [`Mark::ENCODED_LEN`] bytes; `None` if too short.
    pub fn decode(b: &[u8]) -> Option<Mark> {
        let b = b.get(..Self::ENCODED_LEN)?;
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let states = std::array::from_fn(|a| {
            let base = 40 + a * 72;
            Midstate {
                len: u64_at(base),
                words: std::array::from_fn(|w| u64_at(base + 8 + 8 * w)),
            }
        });
        Some(Mark {
            key: b[..32].try_into().expect("32 bytes"),
            end: u64_at(32),
            states,
        })
    }
}

/// A file to digest, made of parts; `previous` holds the marks of an earlier version of it.
pub struct Resumable<'a> {
    pub data: &'a [u8],
    /// (content key, end offset) of each part, in order, covering `data`.
    pub parts: &'a [([u8; 32], usize)],
    pub previous: &'a [Mark],
}

impl Resumable<'_> {
    /// How many leading parts are the same as in the previous version.
    pub fn kept_parts(&self) -> usize {
        self.parts
            .iter()
            .zip(self.previous)
            .take_while(|((key, end), m)| *key == m.key && *end as u64 == m.end)
            .count()
    }

    /// Whether the file is its previous version, part for part.
    pub fn unchanged(&self) -> bool {
        !self.parts.is_empty()
            && self.parts.len() == self.previous.len()
            && self.kept_parts() == self.parts.len()
    }
}

/// The digests of many files, on all cores, hashing each file only from the end of the
/// longest run of leading parts it shares with its previous version. Returns the digests and
/// the marks to keep for next time.
pub fn digests_resumed(files: &[Resumable<'_>]) -> Vec<(Digests, Vec<Mark>)> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // How many leading parts are unchanged, per file.
    let kept: Vec<usize> = files.iter().map(Resumable::kept_parts).collect();
    let start = |i: usize, a: usize| -> Midstate {
        match kept[i] {
            0 => Midstate::initial(ALGORITHMS[a]),
            k => files[i].previous[k - 1].states[a],
        }
    };
    let mut tasks: Vec<(usize, usize)> = (0..files.len())
        .flat_map(|i| (0..4).map(move |a| (i, a)))
        .collect();
    tasks.sort_by_key(|&(i, a)| {
        let todo = files[i].data.len() as u64 - start(i, a).len;
        (std::cmp::Reverse(todo), i, a)
    });
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(tasks.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Vec<(usize, usize, Vec<u8>, Vec<Midstate>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    while let Some(&(i, a)) = tasks.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let alg = ALGORITHMS[a];
                        let f = &files[i];
                        let mut st = start(i, a);
                        let mut states = Vec::with_capacity(f.parts.len() - kept[i]);
                        for &(_, end) in &f.parts[kept[i]..] {
                            let aligned = end - end % Midstate::UNIT;
                            if aligned as u64 > st.len {
                                st.absorb(alg, &f.data[st.len as usize..aligned]);
                            }
                            states.push(st);
                        }
                        let digest = st.finish(alg, &f.data[st.len as usize..]);
                        out.push((i, a, digest, states));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("digest thread panicked"))
            .collect()
    });
    let mut out: Vec<(Digests, Vec<Mark>)> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut marks = f.previous[..kept[i]].to_vec();
            marks.extend(f.parts[kept[i]..].iter().map(|&(key, end)| Mark {
                key,
                end: end as u64,
                states: [Midstate::initial(Algorithm::Md5); 4],
            }));
            let d = Digests {
                size: f.data.len() as u64,
                md5: String::new(),
                sha1: String::new(),
                sha256: String::new(),
                sha512: String::new(),
            };
            (d, marks)
        })
        .collect();
    for (i, a, digest, states) in results {
        let (d, marks) = &mut out[i];
        let hex = hex::encode(digest);
        match a {
            0 => d.md5 = hex,
            1 => d.sha1 = hex,
            2 => d.sha256 = hex,
            _ => d.sha512 = hex,
        }
        for (m, st) in marks[kept[i]..].iter_mut().zip(states) {
            m.states[a] = st;
        }
    }
    out
}

type Block64 = sha2::digest::generic_array::GenericArray<u8, sha2::digest::consts::U64>;
type Block128 = sha2::digest::generic_array::GenericArray<u8, sha2::digest::consts::U128>;

/// Calls `f` with runs of blocks (of `empty`'s type and size) copied from `data`, whose length
/// is a multiple of the block size: the compression functions take their crates' block types,
/// not byte slices.
fn for_blocks<B: Copy + AsMut<[u8]>>(empty: B, data: &[u8], mut f: impl FnMut(&[B])) {
    let mut buf = [empty; 32];
    let size = buf[0].as_mut().len();
    for chunk in data.chunks(size * buf.len()) {
        let n = chunk.len() / size;
        for (b, c) in buf.iter_mut().zip(chunk.chunks_exact(size)) {
            b.as_mut().copy_from_slice(c);
        }
        f(&buf[..n]);
    }
}

const MD5_INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
const SHA1_INIT: [u32; 5] = [
    0x6745_2301,
    0xefcd_ab89,
    0x98ba_dcfe,
    0x1032_5476,
    0xc3d2_e1f0,
];
const SHA256_INIT: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];
const SHA512_INIT: [u64; 8] = [
    0x6a09_e667_f3bc_c908,
    0xbb67_ae85_84ca_a73b,
    0x3c6e_f372_fe94_f82b,
    0xa54f_f53a_5f1d_36f1,
    0x510e_527f_ade6_82d1,
    0x9b05_688c_2b3e_6c1f,
    0x1f83_d9ab_fb41_bd6b,
    0x5be0_cd19_137e_2179,
];

/// A reader that hashes what passes through it, so a file can be parsed and hashed in the
/// same single read.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// Reads the rest of the stream and returns the digests of everything read.
    pub fn finish(mut self) -> io::Result<Digests> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.hasher.finish())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests_of_empty_input() {
        let d = Digests::of(b"");
        assert_eq!(d.size, 0);
        assert_eq!(d.md5, "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(d.sha1, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            d.sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(d.sha512.starts_with("cf83e1357eefb8bd"));
    }

    #[test]
    fn parallel_digests_agree_with_serial_ones() {
        let a: Vec<u8> = (0..100_000u32).map(|i| (i % 13) as u8).collect();
        let b = b"small".to_vec();
        let got = digests_parallel(&[&a, &b, b""]);
        assert_eq!(
            got,
            vec![Digests::of(&a), Digests::of(&b), Digests::of(b"")]
        );
    }

    #[test]
    fn reader_and_slice_agree() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let r = HashingReader::new(&data[..]);
        assert_eq!(r.finish().unwrap(), Digests::of(&data));
    }

    #[test]
    fn midstates_resume_to_the_same_digests() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for len in [
            0, 1, 55, 56, 63, 64, 111, 112, 127, 128, 129, 255, 256, 1000, 5000,
        ] {
            let data = &data[..len];
            let want = Digests::of(data);
            for cut in [0, 128, 256, 384, 1024, 4992] {
                if cut > len {
                    continue;
                }
                let got: Vec<String> = [
                    Algorithm::Md5,
                    Algorithm::Sha1,
                    Algorithm::Sha256,
                    Algorithm::Sha512,
                ]
                .into_iter()
                .map(|alg| {
                    let mut st = Midstate::initial(alg);
                    st.absorb(alg, &data[..cut]);
                    hex::encode(st.finish(alg, &data[cut..]))
                })
                .collect();
                assert_eq!(
                    got,
                    [
                        want.md5.clone(),
                        want.sha1.clone(),
                        want.sha256.clone(),
                        want.sha512.clone()
                    ],
                    "length {len}, state taken at {cut}"
                );
            }
        }
    }

    #[test]
    fn resumed_digests_match_fresh_ones_after_any_change() {
        let mut data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let parts_of = |d: &[u8]| -> Vec<([u8; 32], usize)> {
            let ends = [1000, 1000, 3333, 8192, 15000, d.len()];
            let mut start = 0;
            ends.iter()
                .map(|&e| {
                    let key = Sha256::digest(&d[start..e]).into();
                    start = e;
                    (key, e)
                })
                .collect()
        };
        let parts = parts_of(&data);
        let first = digests_resumed(&[Resumable {
            data: &data,
            parts: &parts,
            previous: &[],
        }]);
        assert_eq!(first[0].0, Digests::of(&data));
        let marks = first[0].1.clone();
        assert_eq!(marks.len(), parts.len());
        // Unchanged, changed in the middle, changed in the first part, shortened.
        for change in [None, Some(9000), Some(10), Some(19_990)] {
            if let Some(at) = change {
                data[at] ^= 0xff;
            }
            let parts = parts_of(&data);
            let got = digests_resumed(&[Resumable {
                data: &data,
                parts: &parts,
                previous: &marks,
            }]);
            assert_eq!(got[0].0, Digests::of(&data), "change at {change:?}");
            let fresh = digests_resumed(&[Resumable {
                data: &data,
                parts: &parts,
                previous: &[],
            }]);
            assert_eq!(got[0].1, fresh[0].1, "marks after a change at {change:?}");
            let m = &got[0].1[2];
            let mut buf = Vec::new();
            m.encode(&mut buf);
            assert_eq!(buf.len(), Mark::ENCODED_LEN);
            assert_eq!(Mark::decode(&buf).as_ref(), Some(m));
        }
    }
}
