//! The packages of a distribution as publishing reads them ([`Records`]): streamed from the
//! store in arrival order, or held in memory.

use super::schema::{
    BINARIES, BINARY_ORDER, CONTENTS, SOURCE_ORDER, SOURCES, decode_source, split_binary,
};
use super::{Binary, SourceRecord, Store, StoreError};
use crate::deb::PackageType;
use crate::repo::publish::{BinaryRow, Records, SourceRow};
use redb::{ReadableDatabase, TableDefinition};
use serde::Deserialize;
use std::borrow::Cow;

/// The fields of a stored binary record that publishing needs, borrowed where possible.
#[derive(Deserialize)]
struct BinaryHeader<'a> {
    #[serde(borrow)]
    component: Cow<'a, str>,
    package_type: PackageType,
    #[serde(borrow)]
    section: Cow<'a, str>,
    #[serde(borrow)]
    filename: Cow<'a, str>,
}

/// The packages of one distribution (see [`Store::records`]).
pub struct DistRecords<'a> {
    store: &'a Store,
    tx: redb::ReadTransaction,
    repo: &'a str,
    dist: &'a str,
}

impl Store {
    /// The packages of one distribution, for streaming into its indices (one consistent
    /// view: later writes are not seen).
    pub fn records<'a>(
        &'a self,
        repo: &'a str,
        dist: &'a str,
    ) -> Result<DistRecords<'a>, StoreError> {
        Ok(DistRecords {
            store: self,
            tx: self.db.begin_read().map_err(|e| self.err(e))?,
            repo,
            dist,
        })
    }
}

impl DistRecords<'_> {
    fn numbers_in<V: redb::Value + 'static>(
        &self,
        table: TableDefinition<(&'static str, &'static str, u64), V>,
    ) -> Result<Vec<u64>, StoreError> {
        let s = self.store;
        let t = self.tx.open_table(table).map_err(|e| s.err(e))?;
        let mut out = Vec::new();
        for row in t
            .range((self.repo, self.dist, 0)..=(self.repo, self.dist, u64::MAX))
            .map_err(|e| s.err(e))?
        {
            out.push(row.map_err(|e| s.err(e))?.0.value().2);
        }
        Ok(out)
    }
}

impl Records for DistRecords<'_> {
    type Error = StoreError;

    fn arrivals(&self) -> Result<(Vec<u64>, Vec<u64>), StoreError> {
        Ok((
            self.numbers_in(BINARY_ORDER)?,
            self.numbers_in(SOURCE_ORDER)?,
        ))
    }

    fn binaries(&self, after: u64, f: &mut dyn FnMut(BinaryRow<'_>)) -> Result<(), StoreError> {
        let s = self.store;
        let (repo, dist) = (self.repo, self.dist);
        let order_t = self.tx.open_table(BINARY_ORDER).map_err(|e| s.err(e))?;
        let binaries_t = self.tx.open_table(BINARIES).map_err(|e| s.err(e))?;
        let contents_t = self.tx.open_table(CONTENTS).map_err(|e| s.err(e))?;
        for row in order_t
            .range((repo, dist, after.saturating_add(1))..=(repo, dist, u64::MAX))
            .map_err(|e| s.err(e))?
        {
            let (k, v) = row.map_err(|e| s.err(e))?;
            let seq = k.value().2;
            let (source, package, architecture) = v.value();
            let corrupt = |reason: String| StoreError::Record {
                path: s.path.clone(),
                key: package.to_string(),
                reason,
            };
            let value = binaries_t
                .get((repo, dist, source, package, architecture))
                .map_err(|e| s.err(e))?
                .ok_or_else(|| corrupt(format!("arrival {seq} names a missing record")))?;
            let (json, stanza) = split_binary(value.value())
                .ok_or_else(|| corrupt("record too short".into()))?
                .1;
            let header: BinaryHeader<'_> =
                serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))?;
            let list = match header.package_type {
                PackageType::Deb => contents_t
                    .get((repo, header.filename.as_ref()))
                    .map_err(|e| s.err(e))?,
                PackageType::Udeb => None,
            };
            f(BinaryRow {
                seq,
                package,
                architecture,
                component: &header.component,
                package_type: header.package_type,
                section: &header.section,
                stanza,
                contents: list.as_ref().map(|l| l.value()),
            });
        }
        Ok(())
    }

    fn sources(&self, after: u64, f: &mut dyn FnMut(SourceRow<'_>)) -> Result<(), StoreError> {
        let s = self.store;
        let (repo, dist) = (self.repo, self.dist);
        let order_t = self.tx.open_table(SOURCE_ORDER).map_err(|e| s.err(e))?;
        let sources_t = self.tx.open_table(SOURCES).map_err(|e| s.err(e))?;
        for row in order_t
            .range((repo, dist, after.saturating_add(1))..=(repo, dist, u64::MAX))
            .map_err(|e| s.err(e))?
        {
            let (k, v) = row.map_err(|e| s.err(e))?;
            let seq = k.value().2;
            let name = v.value();
            let value = sources_t
                .get((repo, dist, name))
                .map_err(|e| s.err(e))?
                .ok_or_else(|| StoreError::Record {
                    path: s.path.clone(),
                    key: name.to_string(),
                    reason: format!("arrival {seq} names a missing record"),
                })?;
            let record = decode_source(&s.path, name, value.value())?;
            f(SourceRow {
                seq,
                name,
                component: &record.component,
                stanza: &record.stanza,
            });
        }
        Ok(())
    }
}

/// What a distribution holds: sources and binaries (with Contents file lists), in arrival
/// order (a record's arrival number is its place in its list, from 1).
#[derive(Debug, Default)]
pub struct DistContents {
    pub sources: Vec<(String, SourceRecord)>,
    pub binaries: Vec<(Binary, Option<String>)>,
}

/// Records held in memory (benchmarks and tests render from these without a store).
impl Records for DistContents {
    type Error = std::convert::Infallible;

    fn arrivals(&self) -> Result<(Vec<u64>, Vec<u64>), Self::Error> {
        let numbers = |n: usize| (1..=n as u64).collect();
        Ok((numbers(self.binaries.len()), numbers(self.sources.len())))
    }

    fn binaries(&self, after: u64, f: &mut dyn FnMut(BinaryRow<'_>)) -> Result<(), Self::Error> {
        for (seq, (b, list)) in (1..).zip(&self.binaries).skip(after as usize) {
            f(BinaryRow {
                seq,
                package: &b.package,
                architecture: &b.architecture,
                component: &b.record.component,
                package_type: b.record.package_type,
                section: &b.record.section,
                stanza: b.record.stanza.as_bytes(),
                contents: list.as_deref(),
            });
        }
        Ok(())
    }

    fn sources(&self, after: u64, f: &mut dyn FnMut(SourceRow<'_>)) -> Result<(), Self::Error> {
        for (seq, (name, s)) in (1..).zip(&self.sources).skip(after as usize) {
            f(SourceRow {
                seq,
                name,
                component: &s.component,
                stanza: &s.stanza,
            });
        }
        Ok(())
    }
}
