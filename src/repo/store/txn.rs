//! The write transaction: configuration, moving groups of packages in and out of
//! distributions, pool reference counts (applied at commit), segments and publish state.

use super::read::read_group;
use super::schema::{
    BINARIES, BINARY_ORDER, CONFIG, CONTENTS, DIGEST_MARKS, NEXT_ARRIVAL, OUTLINES, POOL,
    POOL_FREED, PUBLISHED, SEGMENT_REFS, SEGMENTS, SOURCE_ORDER, SOURCES, decode, encode_binary,
    encode_marks, encode_source, split_arrival,
};
use super::{Group, PublishState, Store, StoreError};
use crate::repo::outline::Outline;
use crate::repo::publish::Marks;
use redb::{ReadableTable, WriteTransaction};
use serde::Serialize;

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}

/// A write transaction. Nothing is visible to readers until [`Txn::commit`].
pub struct Txn<'s> {
    tx: WriteTransaction,
    store: &'s Store,
    /// Reference count changes per (repository, pool path), applied at commit so that a file
    /// dropped by one group and kept by another in the same transaction is never freed.
    pending: std::collections::BTreeMap<(String, String), (i64, String)>,
}

impl Store {
    /// A write transaction; refused when the disk is (nearly) full, before anything is
    /// touched ([`crate::files::check_room`]).
    pub fn write(&self) -> Result<Txn<'_>, StoreError> {
        self.room()?;
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        Ok(Txn {
            tx,
            store: self,
            pending: Default::default(),
        })
    }
}

impl Txn<'_> {
    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        self.store.err(e)
    }

    /// Applies the pending reference changes and commits. Pool paths nothing refers to any
    /// more are recorded as freed (see [`Store::freed`]); their files must stay until the
    /// distributions that named them are published again.
    pub fn commit(self) -> Result<Vec<(String, String)>, StoreError> {
        let s = self.store;
        let mut freed = Vec::new();
        {
            let mut pool = self.tx.open_table(POOL).map_err(|e| s.err(e))?;
            let mut contents = self.tx.open_table(CONTENTS).map_err(|e| s.err(e))?;
            let mut freed_t = self.tx.open_table(POOL_FREED).map_err(|e| s.err(e))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            for ((repo, path), (delta, sha256)) in &self.pending {
                if *delta == 0 {
                    continue;
                }
                let key = (repo.as_str(), path.as_str());
                let current = pool
                    .get(key)
                    .map_err(|e| s.err(e))?
                    .map(|v| v.value().0)
                    .unwrap_or(0);
                let next = current as i64 + delta;
                if next <= 0 {
                    pool.remove(key).map_err(|e| s.err(e))?;
                    contents.remove(key).map_err(|e| s.err(e))?;
                    freed_t.insert(key, now).map_err(|e| s.err(e))?;
                    freed.push((repo.clone(), path.clone()));
                } else {
                    pool.insert(key, (next as u64, sha256.as_str()))
                        .map_err(|e| s.err(e))?;
                }
            }
        }
        self.tx.commit().map_err(|e| s.err(e))?;
        s.committed();
        Ok(freed)
    }

    pub fn put_config<T: Serialize>(&mut self, key: &str, value: &T) -> Result<(), StoreError> {
        let mut t = self.tx.open_table(CONFIG).map_err(|e| self.store.err(e))?;
        t.insert(key, encode(value).as_slice())
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }

    /// Deletes a configuration object; false if there was none.
    pub fn delete_config(&mut self, key: &str) -> Result<bool, StoreError> {
        let mut t = self.tx.open_table(CONFIG).map_err(|e| self.store.err(e))?;
        let old = t.remove(key).map_err(|e| self.store.err(e))?;
        Ok(old.is_some())
    }

    /// The group of `source` in `dist`.
    pub fn group(&self, repo: &str, dist: &str, source: &str) -> Result<Group, StoreError> {
        let st = self.tx.open_table(SOURCES).map_err(|e| self.err(e))?;
        let bt = self.tx.open_table(BINARIES).map_err(|e| self.err(e))?;
        read_group(self.store, &st, &bt, repo, dist, source)
    }

    /// Removes a group from a distribution without touching pool references (a move).
    pub fn take_group(
        &mut self,
        repo: &str,
        dist: &str,
        source: &str,
    ) -> Result<Group, StoreError> {
        let group = self.group(repo, dist, source)?;
        let s = self.store;
        let mut st = self.tx.open_table(SOURCES).map_err(|e| s.err(e))?;
        let mut so = self.tx.open_table(SOURCE_ORDER).map_err(|e| s.err(e))?;
        if let Some(old) = st.remove((repo, dist, source)).map_err(|e| s.err(e))?
            && let Some((seq, _)) = split_arrival(old.value())
        {
            so.remove((repo, dist, seq)).map_err(|e| s.err(e))?;
        }
        let mut bt = self.tx.open_table(BINARIES).map_err(|e| s.err(e))?;
        let mut bo = self.tx.open_table(BINARY_ORDER).map_err(|e| s.err(e))?;
        for b in &group.binaries {
            let key = (
                repo,
                dist,
                source,
                b.package.as_str(),
                b.architecture.as_str(),
            );
            if let Some(old) = bt.remove(key).map_err(|e| s.err(e))?
                && let Some((seq, _)) = split_arrival(old.value())
            {
                bo.remove((repo, dist, seq)).map_err(|e| s.err(e))?;
            }
        }
        Ok(group)
    }

    /// Puts a group into a distribution without touching pool references (a move). Its
    /// records arrive now: they get the distribution's next arrival numbers, and so go to
    /// the end of its indices.
    pub fn place_group(
        &mut self,
        repo: &str,
        dist: &str,
        source: &str,
        group: &Group,
    ) -> Result<(), StoreError> {
        let s = self.store;
        let mut next_t = self.tx.open_table(NEXT_ARRIVAL).map_err(|e| s.err(e))?;
        let mut seq = next_t
            .get((repo, dist))
            .map_err(|e| s.err(e))?
            .map_or(1, |v| v.value());
        let mut st = self.tx.open_table(SOURCES).map_err(|e| s.err(e))?;
        let mut so = self.tx.open_table(SOURCE_ORDER).map_err(|e| s.err(e))?;
        if let Some(r) = &group.source {
            if let Some(old) = st
                .insert((repo, dist, source), encode_source(r, seq).as_slice())
                .map_err(|e| s.err(e))?
                && let Some((old_seq, _)) = split_arrival(old.value())
            {
                so.remove((repo, dist, old_seq)).map_err(|e| s.err(e))?;
            }
            so.insert((repo, dist, seq), source).map_err(|e| s.err(e))?;
            seq += 1;
        }
        let mut bt = self.tx.open_table(BINARIES).map_err(|e| s.err(e))?;
        let mut bo = self.tx.open_table(BINARY_ORDER).map_err(|e| s.err(e))?;
        for b in &group.binaries {
            let (package, arch) = (b.package.as_str(), b.architecture.as_str());
            if let Some(old) = bt
                .insert(
                    (repo, dist, source, package, arch),
                    encode_binary(&b.record, seq).as_slice(),
                )
                .map_err(|e| s.err(e))?
                && let Some((old_seq, _)) = split_arrival(old.value())
            {
                bo.remove((repo, dist, old_seq)).map_err(|e| s.err(e))?;
            }
            bo.insert((repo, dist, seq), (source, package, arch))
                .map_err(|e| s.err(e))?;
            seq += 1;
        }
        next_t.insert((repo, dist), seq).map_err(|e| s.err(e))?;
        Ok(())
    }

    /// Adds `delta` (+1 or -1) to the reference count of every pool file of a group; applied
    /// at commit.
    pub fn reference(&mut self, repo: &str, group: &Group, delta: i64) {
        for (path, sha256) in group.pool_paths() {
            let e = self
                .pending
                .entry((repo.to_string(), path))
                .or_insert((0, sha256.clone()));
            e.0 += delta;
            e.1 = sha256;
        }
    }

    /// The sha256 recorded for a pool path, if anything refers to it.
    pub fn pool_sha256(&self, repo: &str, path: &str) -> Result<Option<String>, StoreError> {
        let t = self.tx.open_table(POOL).map_err(|e| self.err(e))?;
        Ok(t.get((repo, path))
            .map_err(|e| self.err(e))?
            .map(|v| v.value().1.to_string()))
    }

    pub fn put_contents(
        &mut self,
        repo: &str,
        pool_path: &str,
        files: &str,
    ) -> Result<(), StoreError> {
        let mut t = self
            .tx
            .open_table(CONTENTS)
            .map_err(|e| self.store.err(e))?;
        t.insert((repo, pool_path), files)
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }

    /// Records the segments a distribution now uses: stores the new ones, counts references,
    /// and drops segments no distribution uses any more.
    pub fn use_segments(
        &mut self,
        previous: &std::collections::BTreeSet<String>,
        now: &std::collections::BTreeSet<String>,
        new: &[(String, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let s = self.store;
        let mut segments = self.tx.open_table(SEGMENTS).map_err(|e| s.err(e))?;
        let mut refs = self.tx.open_table(SEGMENT_REFS).map_err(|e| s.err(e))?;
        for (key, bytes) in new {
            segments
                .insert(key.as_str(), bytes.as_slice())
                .map_err(|e| s.err(e))?;
        }
        for key in now.difference(previous) {
            let n = refs
                .get(key.as_str())
                .map_err(|e| s.err(e))?
                .map(|v| v.value())
                .unwrap_or(0);
            refs.insert(key.as_str(), n + 1).map_err(|e| s.err(e))?;
        }
        for key in previous.difference(now) {
            let n = refs
                .get(key.as_str())
                .map_err(|e| s.err(e))?
                .map(|v| v.value())
                .unwrap_or(0);
            if n <= 1 {
                refs.remove(key.as_str()).map_err(|e| s.err(e))?;
                segments.remove(key.as_str()).map_err(|e| s.err(e))?;
            } else {
                refs.insert(key.as_str(), n - 1).map_err(|e| s.err(e))?;
            }
        }
        // Segments compressed now but used by no distribution are not kept.
        for (key, _) in new {
            if !now.contains(key) && refs.get(key.as_str()).map_err(|e| s.err(e))?.is_none() {
                segments.remove(key.as_str()).map_err(|e| s.err(e))?;
            }
        }
        Ok(())
    }

    /// Names of the sources that have anything in `dist`.
    pub fn source_names(
        &self,
        repo: &str,
        dist: &str,
    ) -> Result<std::collections::BTreeSet<String>, StoreError> {
        let mut names = std::collections::BTreeSet::new();
        let st = self.tx.open_table(SOURCES).map_err(|e| self.err(e))?;
        for row in st
            .range((repo, dist, "")..(repo, dist, "\u{10FFFF}"))
            .map_err(|e| self.err(e))?
        {
            names.insert(row.map_err(|e| self.err(e))?.0.value().2.to_string());
        }
        let bt = self.tx.open_table(BINARIES).map_err(|e| self.err(e))?;
        for row in bt
            .range((repo, dist, "", "", "")..(repo, dist, "\u{10FFFF}", "", ""))
            .map_err(|e| self.err(e))?
        {
            names.insert(row.map_err(|e| self.err(e))?.0.value().2.to_string());
        }
        Ok(names)
    }

    /// Marks a distribution as needing a publish, in the same transaction as the change that
    /// needs it: if the process dies before publishing, the next open publishes it.
    pub fn mark_unpublished(&mut self, repo: &str, dist: &str) -> Result<(), StoreError> {
        let s = self.store;
        let mut t = self.tx.open_table(PUBLISHED).map_err(|e| s.err(e))?;
        let mut state: PublishState = match t.get((repo, dist)).map_err(|e| s.err(e))? {
            Some(v) => decode(&s.path, dist, v.value())?,
            None => PublishState::default(),
        };
        state.in_progress = true;
        t.insert((repo, dist), encode(&state).as_slice())
            .map_err(|e| s.err(e))?;
        Ok(())
    }

    pub fn remove_publish_state(&mut self, repo: &str, dist: &str) -> Result<(), StoreError> {
        let s = self.store;
        let mut t = self.tx.open_table(PUBLISHED).map_err(|e| s.err(e))?;
        t.remove((repo, dist)).map_err(|e| s.err(e))?;
        let mut t = self.tx.open_table(DIGEST_MARKS).map_err(|e| s.err(e))?;
        t.remove((repo, dist)).map_err(|e| s.err(e))?;
        let mut t = self.tx.open_table(OUTLINES).map_err(|e| s.err(e))?;
        t.remove((repo, dist)).map_err(|e| s.err(e))?;
        Ok(())
    }

    /// Saves the outline of a distribution's published indices.
    pub fn set_outline(
        &mut self,
        repo: &str,
        dist: &str,
        outline: &Outline,
    ) -> Result<(), StoreError> {
        let s = self.store;
        let mut t = self.tx.open_table(OUTLINES).map_err(|e| s.err(e))?;
        t.insert((repo, dist), outline.encode().as_slice())
            .map_err(|e| s.err(e))?;
        Ok(())
    }

    pub fn set_digest_marks(
        &mut self,
        repo: &str,
        dist: &str,
        marks: &Marks,
    ) -> Result<(), StoreError> {
        let s = self.store;
        let mut t = self.tx.open_table(DIGEST_MARKS).map_err(|e| s.err(e))?;
        t.insert((repo, dist), encode_marks(marks).as_slice())
            .map_err(|e| s.err(e))?;
        Ok(())
    }

    pub fn set_publish_state(
        &mut self,
        repo: &str,
        dist: &str,
        state: &PublishState,
    ) -> Result<(), StoreError> {
        let mut t = self
            .tx
            .open_table(PUBLISHED)
            .map_err(|e| self.store.err(e))?;
        t.insert((repo, dist), encode(state).as_slice())
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }
}
