//! What the previous publish of a distribution left, and reading its files back.

use super::Marks;
use crate::checksums::Digests;
use crate::repo::outline::Outline;
use std::collections::BTreeMap;

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
pub(super) fn load_all(
    load: LoadFile<'_>,
    wanted: &[(String, [u8; 32], u64)],
) -> Vec<Option<Vec<u8>>> {
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
