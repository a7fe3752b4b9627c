//! All or nothing: a change that fails after it committed to the store (publishing its
//! distributions found the disk full, say) is undone, so that a call that answers an error
//! has changed nothing.
//!
//! The change takes a [`Savepoint`] first (holding the write token, as every change does: so
//! what is undone is its own work only). On failure the store goes back to it, files the
//! change put into the pool that nothing refers to any more go, and the distributions it may
//! have published are published again from the restored store (incrementally: what did not
//! change is not rewritten). Should that publish fail too (the disk is still full), the
//! distributions stay marked unpublished and the next publish, or the next start, repairs them.

use super::*;
use crate::repo::store::Savepoint;

impl Engine {
    /// Undoes a failed change of repository `repo` (see the module). `placed` are the pool
    /// paths (`<repo>/<path>`, as the journal names them) the change added; `dists` the
    /// distribution directories to publish again (`None`: all of the repository's).
    pub(super) fn undo(
        &self,
        sp: Savepoint,
        repo: &str,
        placed: &[String],
        dists: Option<Vec<String>>,
        failure: RepoError,
    ) -> RepoError {
        if !self.store.changed_since(&sp) {
            // Refused before anything was committed: nothing to undo.
            return failure;
        }
        if let Err(e) = self.store.restore(&sp) {
            tracing::error!(error = %e, %failure, "undoing a failed change: the store could not go back");
            return failure;
        }
        drop(sp);
        // One look at the restored pool for all of them (a transaction never committed).
        let pool_now = self.store.write();
        for full in placed {
            let Some(rel) = full.strip_prefix(&format!("{repo}/")) else {
                continue;
            };
            let referenced = match &pool_now {
                Ok(tx) => tx.pool_sha256(repo, rel).map_or(true, |sha| sha.is_some()),
                Err(_) => true,
            };
            if !referenced {
                let dir = self.repo_dir(repo);
                let _ = pool::remove(&dir, rel);
            }
        }
        drop(pool_now);
        let dists = match dists {
            Some(d) => d,
            None => self.repository_dist_names(repo).unwrap_or_default(),
        };
        let now = wall_clock();
        for dist in dists {
            let republished = self
                .resolve(&dist)
                .and_then(|r| self.publish_one(&r, &dist, now));
            if let Err(e) = republished {
                tracing::warn!(%dist, error = %e, "publishing again after an undone change failed; it stays marked unpublished");
                if let Ok(mut tx) = self.store.write() {
                    if tx.mark_unpublished(repo, &dist).is_ok() {
                        let _ = tx.commit();
                    }
                }
            }
        }
        tracing::info!(%repo, %failure, "a failed change was undone");
        failure
    }
}
