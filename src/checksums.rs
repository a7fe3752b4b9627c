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
}
