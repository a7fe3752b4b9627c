//! Reading the store outside a transaction: configuration, the packages of a repository's
//! distributions, what was published, cached segments, and the pool's reference counts.

use super::schema::{
    BINARIES, CONFIG, DIGEST_MARKS, OUTLINES, POOL, POOL_FREED, PUBLISHED, SEGMENTS, SOURCES,
    decode, decode_binary, decode_marks, decode_source,
};
use super::{Binary, Group, PublishState, Store, StoreError};
use crate::repo::outline::Outline;
use crate::repo::publish::Marks;
use redb::{ReadableDatabase, ReadableTable};
use serde::de::DeserializeOwned;

impl Store {
    /// Reads a configuration object.
    pub fn config<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(CONFIG).map_err(|e| self.err(e))?;
        let v = t.get(key).map_err(|e| self.err(e))?;
        v.map(|v| decode(&self.path, key, v.value())).transpose()
    }

    /// Configuration objects whose key starts with `prefix`.
    pub fn configs<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(CONFIG).map_err(|e| self.err(e))?;
        let end = format!("{prefix}\u{10FFFF}");
        let mut out = Vec::new();
        for row in t.range(prefix..end.as_str()).map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            out.push((
                k.value().to_string(),
                decode(&self.path, k.value(), v.value())?,
            ));
        }
        Ok(out)
    }

    /// The names of distributions of a repository that hold anything.
    pub fn dist_names(&self, repo: &str) -> Result<Vec<String>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let mut names = std::collections::BTreeSet::new();
        let s = tx.open_table(SOURCES).map_err(|e| self.err(e))?;
        for row in s
            .range((repo, "", "")..(repo, "\u{10FFFF}", ""))
            .map_err(|e| self.err(e))?
        {
            names.insert(row.map_err(|e| self.err(e))?.0.value().1.to_string());
        }
        let b = tx.open_table(BINARIES).map_err(|e| self.err(e))?;
        for row in b
            .range((repo, "", "", "", "")..(repo, "\u{10FFFF}", "", "", ""))
            .map_err(|e| self.err(e))?
        {
            names.insert(row.map_err(|e| self.err(e))?.0.value().1.to_string());
        }
        Ok(names.into_iter().collect())
    }

    /// The sources of one distribution and their versions (for binaries without a source
    /// record, the version of their source as the binaries name it).
    pub fn dist_sources(
        &self,
        repo: &str,
        dist: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let mut out = std::collections::BTreeMap::new();
        let st = tx.open_table(SOURCES).map_err(|e| self.err(e))?;
        for row in st
            .range((repo, dist, "")..(repo, dist, "\u{10FFFF}"))
            .map_err(|e| self.err(e))?
        {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let name = k.value().2.to_string();
            let record = decode_source(&self.path, &name, v.value())?;
            out.insert(name, record.version);
        }
        let bt = tx.open_table(BINARIES).map_err(|e| self.err(e))?;
        for row in bt
            .range((repo, dist, "", "", "")..(repo, dist, "\u{10FFFF}", "", ""))
            .map_err(|e| self.err(e))?
        {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let name = k.value().2.to_string();
            if let std::collections::btree_map::Entry::Vacant(e) = out.entry(name) {
                let record = decode_binary(&self.path, e.key(), v.value())?;
                e.insert(record.source_version);
            }
        }
        Ok(out)
    }

    /// Every (distribution, group) of `source` in a repository, in distribution order.
    pub fn source_everywhere(
        &self,
        repo: &str,
        source: &str,
    ) -> Result<Vec<(String, Group)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let st = tx.open_table(SOURCES).map_err(|e| self.err(e))?;
        let bt = tx.open_table(BINARIES).map_err(|e| self.err(e))?;
        let mut dists = std::collections::BTreeSet::new();
        for row in st
            .range((repo, "", "")..(repo, "\u{10FFFF}", ""))
            .map_err(|e| self.err(e))?
        {
            let (k, _) = row.map_err(|e| self.err(e))?;
            let (_, dist, name) = k.value();
            if name == source {
                dists.insert(dist.to_string());
            }
        }
        for row in bt
            .range((repo, "", "", "", "")..(repo, "\u{10FFFF}", "", "", ""))
            .map_err(|e| self.err(e))?
        {
            let (k, _) = row.map_err(|e| self.err(e))?;
            let (_, dist, name, _, _) = k.value();
            if name == source {
                dists.insert(dist.to_string());
            }
        }
        dists
            .into_iter()
            .map(|d| read_group(self, &st, &bt, repo, &d, source).map(|g| (d, g)))
            .collect()
    }

    /// The outline of a distribution's published indices, if one is saved and readable.
    pub fn outline(&self, repo: &str, dist: &str) -> Result<Option<Outline>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(OUTLINES).map_err(|e| self.err(e))?;
        let v = t.get((repo, dist)).map_err(|e| self.err(e))?;
        Ok(v.and_then(|v| {
            let o = Outline::decode(v.value());
            if o.is_none() {
                tracing::warn!(%dist, "saved index outline is unreadable; rendering in full");
            }
            o
        }))
    }

    /// The digest states saved by the last publish of a distribution (empty if none or
    /// unreadable: they are only a cache).
    pub fn digest_marks(&self, repo: &str, dist: &str) -> Result<Marks, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(DIGEST_MARKS).map_err(|e| self.err(e))?;
        let v = t.get((repo, dist)).map_err(|e| self.err(e))?;
        Ok(v.map(|v| decode_marks(v.value())).unwrap_or_default())
    }

    pub fn publish_state(&self, repo: &str, dist: &str) -> Result<PublishState, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(PUBLISHED).map_err(|e| self.err(e))?;
        let v = t.get((repo, dist)).map_err(|e| self.err(e))?;
        Ok(match v {
            Some(v) => decode(&self.path, dist, v.value())?,
            None => PublishState::default(),
        })
    }

    /// Cached compressed segments, in the order of `keys`.
    pub fn segments(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(SEGMENTS).map_err(|e| self.err(e))?;
        keys.iter()
            .map(|k| {
                Ok(t.get(k.as_str())
                    .map_err(|e| self.err(e))?
                    .map(|v| v.value().to_vec()))
            })
            .collect()
    }

    /// Pool paths whose last reference went, with whether something refers to them again.
    pub fn freed(&self) -> Result<Vec<(String, String, bool)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let freed = tx.open_table(POOL_FREED).map_err(|e| self.err(e))?;
        let pool = tx.open_table(POOL).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in freed.iter().map_err(|e| self.err(e))? {
            let (k, _) = row.map_err(|e| self.err(e))?;
            let (repo, path) = k.value();
            let referenced = pool.get((repo, path)).map_err(|e| self.err(e))?.is_some();
            out.push((repo.to_string(), path.to_string(), referenced));
        }
        Ok(out)
    }

    /// Forgets freed pool paths (their files are gone, or referenced again).
    pub fn forget_freed(&self, paths: &[(String, String)]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(POOL_FREED).map_err(|e| self.err(e))?;
            for (repo, path) in paths {
                t.remove((repo.as_str(), path.as_str()))
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        self.committed();
        Ok(())
    }

    /// Published distributions of a repository whose name starts with `prefix`.
    pub fn published_with_prefix(
        &self,
        repo: &str,
        prefix: &str,
    ) -> Result<Vec<String>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(PUBLISHED).map_err(|e| self.err(e))?;
        let end = format!("{prefix}\u{10FFFF}");
        let mut out = Vec::new();
        for row in t
            .range((repo, prefix)..(repo, end.as_str()))
            .map_err(|e| self.err(e))?
        {
            out.push(row.map_err(|e| self.err(e))?.0.value().1.to_string());
        }
        Ok(out)
    }

    /// Distributions whose last publish did not finish.
    pub fn unfinished_publishes(&self) -> Result<Vec<(String, String)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(PUBLISHED).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let (repo, dist) = k.value();
            let state: PublishState = decode(&self.path, dist, v.value())?;
            if state.in_progress {
                out.push((repo.to_string(), dist.to_string()));
            }
        }
        Ok(out)
    }

    /// Every pool path of a repository with its reference count.
    pub fn pool_refs(&self, repo: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(POOL).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in t
            .range((repo, "")..(repo, "\u{10FFFF}"))
            .map_err(|e| self.err(e))?
        {
            let (k, v) = row.map_err(|e| self.err(e))?;
            out.push((k.value().1.to_string(), v.value().0));
        }
        Ok(out)
    }
}

/// Reads the group of `source` in `dist` from the sources and binaries tables of any
/// transaction.
pub(super) fn read_group(
    store: &Store,
    st: &impl ReadableTable<(&'static str, &'static str, &'static str), &'static [u8]>,
    bt: &impl ReadableTable<
        (
            &'static str,
            &'static str,
            &'static str,
            &'static str,
            &'static str,
        ),
        &'static [u8],
    >,
    repo: &str,
    dist: &str,
    source: &str,
) -> Result<Group, StoreError> {
    let path = &store.path;
    let source_rec = st
        .get((repo, dist, source))
        .map_err(|e| store.err(e))?
        .map(|v| decode_source(path, source, v.value()))
        .transpose()?;
    let mut binaries = Vec::new();
    for row in bt
        .range((repo, dist, source, "", "")..(repo, dist, source, "\u{10FFFF}", ""))
        .map_err(|e| store.err(e))?
    {
        let (k, v) = row.map_err(|e| store.err(e))?;
        let (_, _, _, package, arch) = k.value();
        binaries.push(Binary {
            package: package.to_string(),
            architecture: arch.to_string(),
            record: decode_binary(path, package, v.value())?,
        });
    }
    Ok(Group {
        source: source_rec,
        binaries,
    })
}
