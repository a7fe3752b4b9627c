//! Retiring a codename from a repository (the seed's "Archiving old distributions", after a
//! `debmirror` export): its distributions, their rollbacks and snapshots leave the store and
//! the published tree, the pool files only they used are freed, and every other
//! distribution is left as it was (not even published again). Uploads for the codename are
//! then refused like those for any codename the repository does not have.

use super::{Engine, RepoError};

impl Engine {
    /// Removes `codename` from repository `id`; returns the distributions (and snapshots)
    /// removed.
    pub fn retire_codename(&self, id: &str, codename: &str) -> Result<Vec<String>, RepoError> {
        let mut repo = self
            .find_repository(id)?
            .ok_or_else(|| RepoError::NoSuchRepository(id.to_string()))?;
        if !repo.codenames.iter().any(|c| c == codename) {
            return Err(RepoError::Setup(format!(
                "repository '{id}' has no codename '{codename}' (it has {})",
                repo.codenames.join(", ")
            )));
        }
        if repo.codenames.len() == 1 {
            return Err(RepoError::Setup(format!(
                "'{codename}' is the only codename of repository '{id}'; a repository keeps one"
            )));
        }
        let layout = self.layout(&repo.layout)?;
        let dists: Vec<String> = super::dists::repository_dists(&repo, &layout)
            .into_iter()
            .filter(|d| d.codename == codename)
            .map(|d| d.to_string())
            .collect();
        let mut keys = Vec::new();
        for d in &dists {
            keys.push(d.clone());
            for snapshot in self.snapshot_ls(d)? {
                keys.push(format!("{d}/snapshots/{snapshot}"));
            }
        }
        repo.codenames.retain(|c| c != codename);
        let sp = self.store.savepoint()?;
        self.retire_drop(&repo, &dists, &keys)
            .map_err(|e| self.undo(sp, id, &[], Some(dists.clone()), e))?;
        self.collect_garbage_later();
        Ok(keys)
    }

    /// One transaction: the distributions' packages and publish state go, the repository
    /// loses the codename; their directories are removed before it commits, as a snapshot's
    /// deletion does (once they are gone no index names their pool files).
    fn retire_drop(
        &self,
        repo: &super::Repository,
        dists: &[String],
        keys: &[String],
    ) -> Result<(), RepoError> {
        let id = repo.identity.as_str();
        let mut tx = self.store.write()?;
        for key in keys {
            let state = self.store.publish_state(id, key)?;
            for source in tx.source_names(id, key)? {
                let group = tx.take_group(id, key, &source)?;
                tx.reference(id, &group, -1);
            }
            tx.use_segments(&state.segments, &Default::default(), &[])?;
            tx.remove_publish_state(id, key)?;
        }
        tx.put_config(&format!("repository/{id}"), repo)?;
        for d in dists {
            self.unpublish_dir(id, d)?;
        }
        tx.commit()?;
        Ok(())
    }
}
