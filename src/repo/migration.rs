//! Migrations and removals: a source (with its binaries) copied along the suites' migration
//! chain or restored from a rollback, or removed, shifting the rollbacks.

use super::*;

impl Engine {
    /// Copies a source (with its binaries) to the suite it migrates to; `full` follows the
    /// chain. From a rollback distribution, restores into the (empty) main distribution.
    /// Returns the distributions the source arrived in.
    pub fn migrate(
        &self,
        source: &str,
        dist: &str,
        full: bool,
        version: Option<&str>,
    ) -> Result<Vec<String>, RepoError> {
        let r = self.resolve(dist)?;
        let repo = r.repository.identity.clone();
        let sp = self.store.savepoint()?;
        let arrived = self
            .migrate_along(r, source, full, version)
            .map_err(|e| self.undo(sp, &repo, &[], None, e))?;
        self.collect_garbage_later();
        Ok(arrived)
    }

    /// The work of [`Engine::migrate`], from the resolved distribution `r` on.
    fn migrate_along(
        &self,
        mut r: Resolved,
        source: &str,
        full: bool,
        version: Option<&str>,
    ) -> Result<Vec<String>, RepoError> {
        let repo = r.repository.identity.clone();
        let mut tx = self.store.write()?;
        let mut touched = BTreeSet::new();
        let mut arrived = Vec::new();
        let mut version = version.map(str::to_string);
        loop {
            let from = r.name.to_string();
            let group = tx.group(&repo, &from, source)?;
            let gv = group.version().map(|v| v.to_string());
            if group.is_empty() || (version.is_some() && gv != version) {
                return Err(RepoError::NoSuchSource {
                    source_name: source.to_string(),
                    dist: from,
                    version,
                });
            }
            let target = if r.is_rollback() {
                let main = r.name.main().to_string();
                if !tx.group(&repo, &main, source)?.is_empty() {
                    return Err(RepoError::RestoreOccupied {
                        source_name: source.to_string(),
                        target: main,
                    });
                }
                self.resolve(&main)?
            } else {
                let to = r
                    .suite
                    .migrates_to
                    .clone()
                    .ok_or_else(|| RepoError::CannotMigrate(from.clone()))?;
                self.resolve(&r.name.with_suite(&to).to_string())?
            };
            let target_name = target.name.to_string();
            let existing = tx.group(&repo, &target_name, source)?;
            if existing.version().map(|v| v.to_string()) == gv {
                return Err(RepoError::AlreadyMigrated {
                    version: gv.unwrap_or_default(),
                    target: target_name,
                });
            }
            if !existing.is_empty() {
                self.shift_rollbacks(&mut tx, &target, source, &mut touched)?;
                let old = tx.take_group(&repo, &target_name, source)?;
                tx.reference(&repo, &old, -1);
            }
            tx.place_group(&repo, &target_name, source, &group)?;
            tx.reference(&repo, &group, 1);
            touched.insert(target_name.clone());
            arrived.push(target_name);
            if !full || target.suite.migrates_to.is_none() || r.is_rollback() {
                break;
            }
            version = gv;
            r = target;
        }
        for dist in &touched {
            tx.mark_unpublished(&repo, dist)?;
        }
        tx.commit()?;
        self.publish_touched(&touched)?;
        Ok(arrived)
    }

    /// Removes a source (with its binaries) from a distribution. From a main distribution the
    /// removed version goes to `-rollback0` unless `without_rollback`; from a rollback slot the
    /// older slots move down to close the gap.
    pub fn remove(
        &self,
        source: &str,
        dist: &str,
        without_rollback: bool,
        version: Option<&str>,
    ) -> Result<(), RepoError> {
        let r = self.resolve(dist)?;
        let repo = r.repository.identity.clone();
        let sp = self.store.savepoint()?;
        self.remove_from(&r, source, without_rollback, version)
            .map_err(|e| self.undo(sp, &repo, &[], None, e))?;
        self.collect_garbage_later();
        Ok(())
    }

    /// The work of [`Engine::remove`] in the resolved distribution `r`.
    fn remove_from(
        &self,
        r: &Resolved,
        source: &str,
        without_rollback: bool,
        version: Option<&str>,
    ) -> Result<(), RepoError> {
        let repo = r.repository.identity.clone();
        let name = r.name.to_string();
        let mut tx = self.store.write()?;
        let group = tx.group(&repo, &name, source)?;
        if group.is_empty()
            || (version.is_some() && group.version().map(|v| v.to_string()).as_deref() != version)
        {
            return Err(RepoError::NoSuchSource {
                source_name: source.to_string(),
                dist: name,
                version: version.map(str::to_string),
            });
        }
        let mut touched = BTreeSet::new();
        match r.name.rollback {
            None => {
                if !without_rollback {
                    self.shift_rollbacks(&mut tx, r, source, &mut touched)?;
                }
                let old = tx.take_group(&repo, &name, source)?;
                tx.reference(&repo, &old, -1);
            }
            Some(n) => {
                let old = tx.take_group(&repo, &name, source)?;
                tx.reference(&repo, &old, -1);
                let slots = r.main().rollback_names();
                for m in (n as usize + 1)..slots.len() {
                    let g = tx.take_group(&repo, &slots[m], source)?;
                    if !g.is_empty() {
                        tx.place_group(&repo, &slots[m - 1], source, &g)?;
                        touched.insert(slots[m].clone());
                    }
                }
            }
        }
        touched.insert(name);
        for dist in &touched {
            tx.mark_unpublished(&repo, dist)?;
        }
        tx.commit()?;
        self.publish_touched(&touched)
    }
}
