//! Index compression in independent segments, so that a change recompresses only the segments
//! it touched and the rest come from a cache.
//!
//! An index (Packages, Sources, Contents) is cut at record boundaries chosen by the record's
//! content (a hash of its package name or path), so inserting or removing one record changes
//! one segment only. Each segment is compressed on its own:
//! - gzip: one gzip member per segment; the file is the members back to back, which every
//!   gzip reader (zlib's `gzread`, used by apt) reads as one stream;
//! - xz: one *block* per segment inside a single xz stream (header, blocks, index, footer
//!   written here). apt decodes xz without `LZMA_CONCATENATED`, so concatenated streams would
//!   be cut short; blocks of one stream are read by every xz decoder.

use liblzma::stream::{Action, Filters, LzmaOptions, MatchFinder, Mode, Status, Stream};
use std::io::Write;

/// A compression format of index files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Gzip,
    Xz,
}

impl Kind {
    pub fn extension(self) -> &'static str {
        match self {
            Kind::Gzip => ".gz",
            Kind::Xz => ".xz",
        }
    }
}

/// Compression levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    pub gzip: u32,
    pub xz: u32,
}

impl Default for Levels {
    fn default() -> Self {
        Levels { gzip: 6, xz: 6 }
    }
}

impl Levels {
    pub fn of(self, kind: Kind) -> u32 {
        match kind {
            Kind::Gzip => self.gzip,
            Kind::Xz => self.xz,
        }
    }
}

/// Segment ends, as byte offsets into `text`: after each record whose `key_hash` falls on the
/// boundary (`key_hash % spacing == 0`), or when a segment would pass `max_len`. `records`
/// holds each record's end offset and key hash, in order.
pub fn split(
    text_len: usize,
    records: &[(usize, u64)],
    spacing: u64,
    max_len: usize,
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for &(end, hash) in records {
        if hash % spacing == 0 || end - start >= max_len {
            out.push((start, end));
            start = end;
        }
    }
    if start < text_len || out.is_empty() {
        out.push((start, text_len));
    }
    out
}

/// FNV-1a, a small stable hash for segment boundaries.
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Compresses one segment. The result is what [`assemble`] concatenates: a whole gzip member,
/// or an xz block prefixed by its 8-byte little-endian unpadded size.
pub fn compress_segment(kind: Kind, level: u32, data: &[u8]) -> Vec<u8> {
    match kind {
        Kind::Gzip => {
            let mut e = flate2::GzBuilder::new().mtime(0).write(
                Vec::with_capacity(data.len() / 4 + 64),
                flate2::Compression::new(level),
            );
            e.write_all(data).expect("writing to memory");
            e.finish().expect("writing to memory")
        }
        Kind::Xz => xz_block(level, data),
    }
}

/// Joins compressed segments into one file. `segments` pairs each compressed segment with
/// the length of its uncompressed data. Also returns where each segment ends in the file.
pub fn assemble(kind: Kind, segments: &[(&[u8], usize)]) -> (Vec<u8>, Vec<usize>) {
    assemble_after(kind, None, segments)
}

/// The first segments of a file assembled before, as they are in it: a new file made of
/// the same first segments starts with these bytes.
#[derive(Debug, Default)]
pub struct Prefix {
    data: Vec<u8>,
    /// xz: (unpadded size, uncompressed size) of each of its blocks.
    blocks: Vec<(u64, u64)>,
}

impl Prefix {
    /// Where the next segment starts.
    pub fn end(&self) -> usize {
        self.data.len()
    }

    /// The first `segments` segments of `file` (a file [`assemble`] made), which end at byte
    /// `end`; `None` if the file is not laid out so.
    pub fn cut(kind: Kind, mut file: Vec<u8>, segments: usize, end: usize) -> Option<Prefix> {
        let blocks = match kind {
            Kind::Gzip => Vec::new(),
            Kind::Xz => {
                let mut blocks = xz_index(&file)?;
                blocks.truncate(segments);
                // Each block takes its unpadded size rounded up to four bytes.
                let ends_at = header_len(kind) as u64
                    + blocks.iter().map(|b| b.0.div_ceil(4) * 4).sum::<u64>();
                if blocks.len() != segments || ends_at != end as u64 {
                    return None;
                }
                blocks
            }
        };
        if end > file.len() {
            return None;
        }
        file.truncate(end);
        Some(Prefix { data: file, blocks })
    }
}

/// Like [`assemble`], after the segments of `prefix`; the ends are those of `segments`.
pub fn assemble_after(
    kind: Kind,
    prefix: Option<Prefix>,
    segments: &[(&[u8], usize)],
) -> (Vec<u8>, Vec<usize>) {
    let mut out = prefix.unwrap_or_default();
    out.data
        .reserve(segments.iter().map(|(s, _)| s.len()).sum::<usize>() + 64);
    match kind {
        Kind::Gzip => {
            let mut ends = Vec::with_capacity(segments.len());
            for (s, _) in segments {
                out.data.extend_from_slice(s);
                ends.push(out.data.len());
            }
            (out.data, ends)
        }
        Kind::Xz => xz_stream(out, segments),
    }
}

/// The (unpadded size, uncompressed size) of each block of an xz file, from its index.
fn xz_index(file: &[u8]) -> Option<Vec<(u64, u64)>> {
    let footer = file.get(file.len().checked_sub(12)?..)?;
    if &footer[10..] != b"YZ" {
        return None;
    }
    let backward = u32::from_le_bytes(footer[4..8].try_into().ok()?) as usize;
    let index_start = file.len().checked_sub(12 + (backward + 1) * 4)?;
    let mut index = &file[index_start..file.len() - 12];
    if index.first() != Some(&0) {
        return None;
    }
    index = &index[1..];
    let mut read = || -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..63).step_by(7) {
            let (&b, rest) = index.split_first()?;
            index = rest;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    };
    let count = read()?;
    let mut blocks = Vec::with_capacity(count.min(1 << 20) as usize);
    for _ in 0..count {
        blocks.push((read()?, read()?));
    }
    Some(blocks)
}

/// Inflates a (multi-member) gzip file, with room for `capacity` bytes.
pub fn gunzip(data: &[u8], capacity: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(capacity);
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(data), &mut out).ok()?;
    Some(out)
}

/// Bytes before the first segment in an assembled file: none for gzip, the stream header
/// for xz.
pub fn header_len(kind: Kind) -> usize {
    match kind {
        Kind::Gzip => 0,
        Kind::Xz => XZ_MAGIC.len() + XZ_FLAGS.len() + 4,
    }
}

const XZ_MAGIC: [u8; 6] = [0xFD, b'7', b'z', b'X', b'Z', 0x00];
/// Stream flags: check type CRC32.
const XZ_FLAGS: [u8; 2] = [0x00, 0x01];

/// LZMA2 dictionary size property: the smallest encodable size ≥ `want`.
fn dict_property(want: u32) -> (u8, u32) {
    for p in 0u8..40 {
        let size = (2 | u32::from(p & 1)) << (p / 2 + 11);
        if size >= want {
            return (p, size);
        }
    }
    (40, u32::MAX)
}

/// The LZMA2 options of an xz level: the preset, except that the normal-mode presets (4–9)
/// use a hash-chain match finder of depth 4 and a nice length of 32 instead of the binary
/// tree. On index text this compresses about twice as fast as `xz -6`, with output 1–4%
/// larger (measured in docs/PERFORMANCE.md).
fn xz_options(level: u32) -> LzmaOptions {
    let mut opts = LzmaOptions::new_preset(level).expect("valid xz preset");
    if level >= 4 {
        opts.mode(Mode::Normal)
            .match_finder(MatchFinder::HashChain4)
            .nice_len(32)
            .depth(4);
    }
    opts
}

/// The part of a compressed segment's cache key that names how it was compressed: the same
/// text under another name is compressed again, never taken from an older encoder setting.
pub fn cache_tag(kind: Kind, level: u32) -> String {
    match kind {
        Kind::Gzip => format!("gz{level}"),
        Kind::Xz => format!("xz{level}hc4"),
    }
}

fn xz_block(level: u32, data: &[u8]) -> Vec<u8> {
    let mut opts = xz_options(level);
    // A dictionary larger than the segment only costs memory.
    let preset_dict = dict_property(1 << 23).1.min(match level {
        0 => 256 << 10,
        1 => 1 << 20,
        2..=4 => 4 << 20,
        _ => 8 << 20,
    });
    let (prop, dict) = dict_property((data.len() as u32).clamp(4096, preset_dict));
    opts.dict_size(dict);
    let mut filters = Filters::new();
    filters.lzma2(&opts);
    let mut stream = Stream::new_raw_encoder(&filters).expect("raw LZMA2 encoder");
    let mut compressed = Vec::with_capacity(data.len() / 4 + 64);
    let mut input = data;
    loop {
        let before = stream.total_in();
        if compressed.len() == compressed.capacity() {
            compressed.reserve(64 * 1024);
        }
        let status = stream
            .process_vec(input, &mut compressed, Action::Finish)
            .expect("LZMA2 encoding in memory");
        input = &input[(stream.total_in() - before) as usize..];
        if status == Status::StreamEnd {
            break;
        }
    }
    // Block header: size, flags (one filter, no optional sizes), LZMA2 filter flags, padding.
    let mut header = vec![0x02, 0x00, 0x21, 0x01, prop, 0, 0, 0];
    let crc = crc32(&header);
    header.extend_from_slice(&crc.to_le_bytes());
    let unpadded = header.len() + compressed.len() + 4;
    let mut block = Vec::with_capacity(8 + unpadded + 3);
    block.extend_from_slice(&(unpadded as u64).to_le_bytes());
    block.extend_from_slice(&header);
    block.extend_from_slice(&compressed);
    while (block.len() - 8) % 4 != 0 {
        block.push(0);
    }
    block.extend_from_slice(&crc32(data).to_le_bytes());
    block
}

fn xz_stream(prefix: Prefix, blocks: &[(&[u8], usize)]) -> (Vec<u8>, Vec<usize>) {
    let Prefix {
        data: mut out,
        blocks: mut records,
    } = prefix;
    let mut ends = Vec::with_capacity(blocks.len());
    if out.is_empty() {
        out.extend_from_slice(&XZ_MAGIC);
        out.extend_from_slice(&XZ_FLAGS);
        out.extend_from_slice(&crc32(&XZ_FLAGS).to_le_bytes());
    }
    for (block, len) in blocks {
        if *len == 0 {
            ends.push(out.len());
            continue; // an empty segment has no block
        }
        let unpadded = u64::from_le_bytes(block[..8].try_into().expect("8-byte prefix"));
        out.extend_from_slice(&block[8..]);
        ends.push(out.len());
        records.push((unpadded, *len as u64));
    }
    let mut index = vec![0x00];
    varint(&mut index, records.len() as u64);
    for (unpadded, len) in records {
        varint(&mut index, unpadded);
        varint(&mut index, len);
    }
    while index.len() % 4 != 0 {
        index.push(0);
    }
    let crc = crc32(&index);
    index.extend_from_slice(&crc.to_le_bytes());
    let backward = (index.len() / 4 - 1) as u32;
    out.extend_from_slice(&index);
    let mut footer = Vec::with_capacity(12);
    footer.extend_from_slice(&backward.to_le_bytes());
    footer.extend_from_slice(&XZ_FLAGS);
    let crc = crc32(&footer);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&footer);
    out.extend_from_slice(b"YZ");
    (out, ends)
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn crc32(data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(data);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn text(n: usize) -> (String, Vec<(usize, u64)>) {
        let mut s = String::new();
        let mut records = Vec::new();
        for i in 0..n {
            s.push_str(&format!(
                "Package: pkg-{i:05}\nVersion: 1.0-{}\nDescription: test {i}\n\n",
                i % 7
            ));
            records.push((s.len(), key_hash(format!("pkg-{i:05}").as_bytes())));
        }
        (s, records)
    }

    fn whole(kind: Kind, text: &str, records: &[(usize, u64)]) -> Vec<u8> {
        let segs = split(text.len(), records, 16, 1 << 20);
        let compressed: Vec<(Vec<u8>, usize)> = segs
            .iter()
            .map(|&(a, b)| (compress_segment(kind, 6, &text.as_bytes()[a..b]), b - a))
            .collect();
        let refs: Vec<(&[u8], usize)> =
            compressed.iter().map(|(c, l)| (c.as_slice(), *l)).collect();
        assemble(kind, &refs).0
    }

    #[test]
    fn segments_cover_the_text_and_are_stable_under_insertion() {
        let (t, r) = text(1000);
        let segs = split(t.len(), &r, 16, 1 << 20);
        assert_eq!(segs.first().unwrap().0, 0);
        assert_eq!(segs.last().unwrap().1, t.len());
        assert!(segs.windows(2).all(|w| w[0].1 == w[1].0));
        assert!(segs.len() > 20 && segs.len() < 200, "{}", segs.len());
        assert_eq!(split(0, &[], 16, 10), [(0, 0)]);
    }

    #[test]
    fn multi_block_xz_decodes_with_a_single_stream_decoder() {
        let (t, r) = text(3000);
        let xz = whole(Kind::Xz, &t, &r);
        // Like apt: one stream, no LZMA_CONCATENATED.
        let mut out = String::new();
        liblzma::read::XzDecoder::new(&xz[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, t);
        let empty = assemble(Kind::Xz, &[(&compress_segment(Kind::Xz, 6, b"")[..], 0)]).0;
        let mut out = Vec::new();
        liblzma::read::XzDecoder::new(&empty[..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn files_continued_after_a_prefix_are_the_files_assembled_whole() {
        let (t, r) = text(3000);
        let segs = split(t.len(), &r, 16, 4096);
        for kind in [Kind::Xz, Kind::Gzip] {
            let parts: Vec<Vec<u8>> = segs
                .iter()
                .map(|&(a, b)| compress_segment(kind, 6, &t.as_bytes()[a..b]))
                .collect();
            let pieces: Vec<(&[u8], usize)> = parts
                .iter()
                .zip(&segs)
                .map(|(p, &(a, b))| (&p[..], b - a))
                .collect();
            let (whole, ends) = assemble(kind, &pieces);
            for k in [0, 1, segs.len() / 2, segs.len()] {
                let start = if k == 0 {
                    header_len(kind)
                } else {
                    ends[k - 1]
                };
                let prefix = (k > 0).then(|| Prefix::cut(kind, whole.clone(), k, start).unwrap());
                let (again, new_ends) = assemble_after(kind, prefix, &pieces[k..]);
                assert!(again == whole, "{kind:?} after {k} segments");
                assert_eq!(new_ends, ends[k..]);
            }
            // A cut that does not fall where the file's blocks end is refused.
            if kind == Kind::Xz {
                assert!(Prefix::cut(kind, whole.clone(), 2, ends[1] + 4).is_none());
                assert!(Prefix::cut(kind, b"not xz".to_vec(), 1, 3).is_none());
            }
        }
    }

    #[test]
    fn multi_member_gzip_decodes_whole() {
        let (t, r) = text(3000);
        let gz = whole(Kind::Gzip, &t, &r);
        let mut out = String::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, t);
    }

    #[test]
    fn dictionary_properties() {
        assert_eq!(dict_property(4096), (0, 4096));
        assert_eq!(dict_property(4097), (1, 6144));
        assert_eq!(dict_property(8 << 20), (22, 8 << 20));
    }
}
