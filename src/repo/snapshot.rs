//! Snapshots: a distribution's content frozen as `dists/<dist>/snapshots/<name>/`, holding
//! references to its pool files until deleted.

use super::*;

impl Engine {
    /// Freezes the current content of a distribution as `dists/<dist>/snapshots/<name>/`.
    pub fn snapshot_create(&self, dist: &str, name: &str) -> Result<(), RepoError> {
        let r = self.resolve(dist)?;
        check_snapshot_name(name)?;
        let repo = r.repository.identity.clone();
        let dist = r.name.to_string();
        let key = format!("{dist}/snapshots/{name}");
        if self
            .store
            .published_with_prefix(&repo, &key)?
            .contains(&key)
        {
            return Err(RepoError::SnapshotExists {
                dist,
                name: name.to_string(),
            });
        }
        let sp = self.store.savepoint()?;
        let made = (|| {
            let mut tx = self.store.write()?;
            for source in tx.source_names(&repo, &dist)? {
                let group = tx.group(&repo, &dist, &source)?;
                tx.place_group(&repo, &key, &source, &group)?;
                tx.reference(&repo, &group, 1);
            }
            tx.mark_unpublished(&repo, &key)?;
            tx.commit()?;
            self.publish_one(&r, &key, wall_clock())
        })();
        made.map_err(|e| {
            // What was written of the snapshot's directory goes with it.
            let _ = std::fs::remove_dir_all(self.repo_dir(&repo).join("dists").join(&key));
            self.undo(sp, &repo, &[], Some(Vec::new()), e)
        })
    }

    /// The snapshots of a distribution, by name.
    pub fn snapshot_ls(&self, dist: &str) -> Result<Vec<String>, RepoError> {
        let r = self.resolve(dist)?;
        let prefix = format!("{}/snapshots/", r.name);
        Ok(self
            .store
            .published_with_prefix(&r.repository.identity, &prefix)?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .collect())
    }

    /// Deletes a snapshot: its published directory and its references to pool files.
    pub fn snapshot_delete(&self, dist: &str, name: &str) -> Result<(), RepoError> {
        let r = self.resolve(dist)?;
        let repo = r.repository.identity.clone();
        if !self.snapshot_ls(dist)?.iter().any(|n| n == name) {
            return Err(RepoError::NoSuchSnapshot {
                dist: r.name.to_string(),
                name: name.to_string(),
            });
        }
        let key = format!("{}/snapshots/{name}", r.name);
        let sp = self.store.savepoint()?;
        self.snapshot_drop(&r, &key)
            .map_err(|e| self.undo(sp, &repo, &[], Some(vec![key.clone()]), e))?;
        self.collect_garbage_later();
        Ok(())
    }

    fn snapshot_drop(&self, r: &Resolved, key: &str) -> Result<(), RepoError> {
        let repo = r.repository.identity.clone();
        let state = self.store.publish_state(&repo, key)?;
        let mut tx = self.store.write()?;
        for source in tx.source_names(&repo, key)? {
            let group = tx.take_group(&repo, key, &source)?;
            tx.reference(&repo, &group, -1);
        }
        tx.use_segments(&state.segments, &Default::default(), &[])?;
        tx.remove_publish_state(&repo, key)?;
        // Unpublish first: once the directory is gone no index names the snapshot's files.
        self.unpublish_dir(&repo, key)?;
        tx.commit()?;
        Ok(())
    }
}

impl Engine {
    /// Removes a published distribution's (or snapshot's) directory; gone already is fine.
    pub(super) fn unpublish_dir(&self, repo: &str, key: &str) -> Result<(), RepoError> {
        let dir = self.repo_dir(repo).join("dists").join(key);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RepoError::Io {
                path: dir,
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

/// Snapshot names: letters, digits and `_.:+~-`, starting with a letter or digit (so they are
/// safe as one path component and in URLs).
fn check_snapshot_name(name: &str) -> Result<(), RepoError> {
    let bad = |reason| RepoError::SnapshotName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > 100 {
        return Err(bad("longer than 100 characters"));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(bad("must start with a letter or digit"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.:+~-".contains(&b))
    {
        return Err(bad("only letters, digits and _.:+~- are allowed"));
    }
    Ok(())
}
