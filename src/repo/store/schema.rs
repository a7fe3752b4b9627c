//! How the store is laid out: the redb tables (keys and what their values hold), how records
//! are encoded in them, and the upgrade of a schema 1 store.

use super::{BinaryRecord, SourceRecord, StoreError};
use crate::checksums::Mark;
use crate::repo::publish::Marks;
use redb::{Database, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Bumped whenever the meaning of stored data changes incompatibly.
pub const SCHEMA_VERSION: &str = "2";

pub(super) const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
pub(super) const CONFIG: TableDefinition<&str, &[u8]> = TableDefinition::new("config");
/// (repository, distribution, source) → arrival number and SourceRecord (see
/// [`encode_source`])
pub(super) const SOURCES: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("sources");
/// (repository, distribution, source, package, architecture) → arrival number and
/// BinaryRecord (see [`encode_binary`])
pub(super) const BINARIES: TableDefinition<(&str, &str, &str, &str, &str), &[u8]> =
    TableDefinition::new("binaries");
/// (repository, distribution, arrival number) → source: the sources in the order they
/// entered the distribution, which is the order of `Sources`
pub(super) const SOURCE_ORDER: TableDefinition<(&str, &str, u64), &str> =
    TableDefinition::new("source_order");
/// (repository, distribution, arrival number) → (source, package, architecture): the order
/// of `Packages`
pub(super) const BINARY_ORDER: TableDefinition<(&str, &str, u64), (&str, &str, &str)> =
    TableDefinition::new("binary_order");
/// (repository, distribution) → the next arrival number. It only grows, so a number names
/// one record for good: a record is never changed in place, only taken out and placed anew.
pub(super) const NEXT_ARRIVAL: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("next_arrival");
/// (repository, distribution) → outline of its published indices (a cache, see
/// `publish::Outline`)
pub(super) const OUTLINES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("outlines");
/// (repository, pool path) → (references, sha256)
pub(super) const POOL: TableDefinition<(&str, &str), (u64, &str)> = TableDefinition::new("pool");
/// (repository, pool path of a binary) → its files, one per line
pub(super) const CONTENTS: TableDefinition<(&str, &str), &str> = TableDefinition::new("contents");
/// (repository, distribution) → PublishState
pub(super) const PUBLISHED: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("published");
/// (repository, pool path) → unix time its last reference went: deleted once the
/// distributions that named it are published again
pub(super) const POOL_FREED: TableDefinition<(&str, &str), i64> =
    TableDefinition::new("pool_freed");
/// segment key → compressed segment (see `compression`)
pub(super) const SEGMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("segments");
/// segment key → number of published distributions using it
pub(super) const SEGMENT_REFS: TableDefinition<&str, u64> = TableDefinition::new("segment_refs");
/// (repository, distribution) → saved digest states of its published files (a cache: keyed
/// by content, so a missing or old entry only costs time)
pub(super) const DIGEST_MARKS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("digest_marks");

/// Brings a store of schema 1 to schema 2: every record gets an arrival number (in key order,
/// per distribution; a source before its binaries) and is listed by it.
pub(super) fn upgrade_from_1(db: &Database) -> Result<(), redb::Error> {
    let tx = db.begin_write()?;
    {
        let mut next: std::collections::BTreeMap<(String, String), u64> = Default::default();
        let mut st = tx.open_table(SOURCES)?;
        let mut so = tx.open_table(SOURCE_ORDER)?;
        let keys: Vec<(String, String, String)> = st
            .iter()?
            .map(|row| {
                let (k, _) = row?;
                let (repo, dist, name) = k.value();
                Ok((repo.to_string(), dist.to_string(), name.to_string()))
            })
            .collect::<Result<_, redb::StorageError>>()?;
        let mut bt = tx.open_table(BINARIES)?;
        let mut bo = tx.open_table(BINARY_ORDER)?;
        type BinaryKey = (String, String, String, String, String);
        let bkeys: Vec<BinaryKey> = bt
            .iter()?
            .map(|row| {
                let (k, _) = row?;
                let (r, d, s, p, a) = k.value();
                Ok((
                    r.to_string(),
                    d.to_string(),
                    s.to_string(),
                    p.to_string(),
                    a.to_string(),
                ))
            })
            .collect::<Result<_, redb::StorageError>>()?;
        // Sources and binaries, merged by (repository, distribution, source): a group's
        // source arrives before its binaries.
        let mut sources = keys.into_iter().peekable();
        let mut binaries = bkeys.into_iter().peekable();
        loop {
            let take_source = match (sources.peek(), binaries.peek()) {
                (Some(s), Some(b)) => (&s.0, &s.1, &s.2) <= (&b.0, &b.1, &b.2),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_source {
                let (repo, dist, name) = sources.next().expect("peeked");
                let n = next.entry((repo.clone(), dist.clone())).or_insert(1);
                let key = (repo.as_str(), dist.as_str(), name.as_str());
                let mut value = n.to_le_bytes().to_vec();
                value.extend_from_slice(st.get(key)?.expect("listed above").value());
                st.insert(key, value.as_slice())?;
                so.insert((repo.as_str(), dist.as_str(), *n), name.as_str())?;
                *n += 1;
            } else {
                let (repo, dist, source, package, arch) = binaries.next().expect("peeked");
                let n = next.entry((repo.clone(), dist.clone())).or_insert(1);
                let key = (
                    repo.as_str(),
                    dist.as_str(),
                    source.as_str(),
                    package.as_str(),
                    arch.as_str(),
                );
                let mut value = n.to_le_bytes().to_vec();
                value.extend_from_slice(bt.get(key)?.expect("listed above").value());
                bt.insert(key, value.as_slice())?;
                bo.insert(
                    (repo.as_str(), dist.as_str(), *n),
                    (source.as_str(), package.as_str(), arch.as_str()),
                )?;
                *n += 1;
            }
        }
        let mut na = tx.open_table(NEXT_ARRIVAL)?;
        for ((repo, dist), n) in &next {
            na.insert((repo.as_str(), dist.as_str()), *n)?;
        }
        tx.open_table(META)?.insert("schema", SCHEMA_VERSION)?;
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn decode<T: DeserializeOwned>(
    path: &Path,
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Record {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// Splits a stored record into its arrival number and the rest.
pub(super) fn split_arrival(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (seq, rest) = bytes.split_at_checked(8)?;
    Some((u64::from_le_bytes(seq.try_into().ok()?), rest))
}

/// A source record: its arrival number (8 bytes, little-endian), then its JSON.
pub(super) fn encode_source(r: &SourceRecord, seq: u64) -> Vec<u8> {
    let mut out = seq.to_le_bytes().to_vec();
    serde_json::to_writer(&mut out, r).expect("records serialize");
    out
}

pub(super) fn decode_source(
    path: &Path,
    key: &str,
    bytes: &[u8],
) -> Result<SourceRecord, StoreError> {
    let (_, json) = split_arrival(bytes).ok_or_else(|| StoreError::Record {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason: "record too short".into(),
    })?;
    decode(path, key, json)
}

/// A binary record: its arrival number (8 bytes, little-endian), the 4-byte little-endian
/// length of the JSON of its fields, that JSON, then the stanza text as is.
pub(super) fn encode_binary(r: &BinaryRecord, seq: u64) -> Vec<u8> {
    let json = serde_json::to_vec(r).expect("records serialize");
    let mut out = Vec::with_capacity(12 + json.len() + r.stanza.len());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(r.stanza.as_bytes());
    out
}

/// The arrival number, JSON and stanza of a stored binary record.
type BinaryParts<'a> = (u64, (&'a [u8], &'a [u8]));

pub(super) fn split_binary(bytes: &[u8]) -> Option<BinaryParts<'_>> {
    let (seq, rest) = split_arrival(bytes)?;
    let (len, rest) = rest.split_at_checked(4)?;
    let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
    Some((seq, rest.split_at_checked(len)?))
}

pub(super) fn decode_binary(
    path: &Path,
    key: &str,
    bytes: &[u8],
) -> Result<BinaryRecord, StoreError> {
    let corrupt = |reason: &str| StoreError::Record {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason: reason.to_string(),
    };
    let (_, (json, stanza)) = split_binary(bytes).ok_or_else(|| corrupt("record too short"))?;
    let mut record: BinaryRecord = decode(path, key, json)?;
    record.stanza = std::str::from_utf8(stanza)
        .map_err(|_| corrupt("stanza is not UTF-8"))?
        .to_string();
    Ok(record)
}

/// Marks: per file, the path's length (u32 LE), the path, the number of marks (u32 LE), then
/// the marks.
pub(super) fn encode_marks(marks: &Marks) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, list) in marks {
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for m in list {
            m.encode(&mut out);
        }
    }
    out
}

pub(super) fn decode_marks(mut b: &[u8]) -> Marks {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = b.split_at_checked(n)?;
        *b = rest;
        Some(head)
    }
    fn u32_of(b: &mut &[u8]) -> Option<usize> {
        Some(u32::from_le_bytes(take(b, 4)?.try_into().ok()?) as usize)
    }
    let mut out = Marks::new();
    let mut one = |b: &mut &[u8]| -> Option<()> {
        let n = u32_of(b)?;
        let path = std::str::from_utf8(take(b, n)?).ok()?.to_string();
        let count = u32_of(b)?;
        let mut list = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            list.push(Mark::decode(take(b, Mark::ENCODED_LEN)?)?);
        }
        out.insert(path, list);
        Some(())
    };
    while !b.is_empty() {
        if one(&mut b).is_none() {
            tracing::warn!("saved digest states are unreadable; hashing anew");
            return Marks::new();
        }
    }
    out
}
