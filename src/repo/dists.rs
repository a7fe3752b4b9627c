//! Publishing: distribution names per repository, publishes (one distribution directory at
//! a time, reusing the previous publish's files and cached segments), and a repository's
//! check and repair.

use super::*;

impl Engine {
    /// Every distribution name (main and rollback) of every repository, in layout order.
    pub fn all_dists(&self) -> Result<Vec<DistName>, RepoError> {
        let mut out = Vec::new();
        for repo in self.repositories()? {
            out.extend(repository_dists(&repo, &self.layout(&repo.layout)?));
        }
        Ok(out)
    }

    /// A repository's check: its layout and distributions exist, and every distribution it
    /// publishes verifies as apt would see it (signed by the archive key, every listed index
    /// of the listed size and SHA-256). Returns the problems found; none means it passed.
    pub fn check_repository(&self, id: &str) -> Result<Vec<publish::Problem>, RepoError> {
        let repo: Repository = self
            .store
            .config(&format!("repository/{id}"))?
            .ok_or_else(|| RepoError::NoSuchRepository(id.to_string()))?;
        let mut problems = Vec::new();
        let dists_root = self.repo_dir(id).join("dists");
        let config_problem = |reason: String| publish::Problem {
            path: dists_root.clone(),
            reason,
            stale: Vec::new(),
        };
        let layout = match self.layout(&repo.layout) {
            Ok(l) => l,
            Err(e) => return Ok(vec![config_problem(e.to_string())]),
        };
        for codename in &repo.codenames {
            if self
                .store
                .config::<Distribution>(&format!("distribution/{codename}"))?
                .is_none()
            {
                problems.push(config_problem(format!(
                    "no distribution for codename '{codename}'"
                )));
            }
        }
        let keyring = self.key.keyring();
        for name in repository_dists(&repo, &layout) {
            problems.extend(publish::verify(
                &dists_root.join(name.to_string()),
                &keyring,
            ));
        }
        Ok(problems)
    }

    /// Publishes a repository's distributions and repairs what [`Engine::check_repository`]
    /// finds: damaged index files (and their by-hash copies) are deleted and published anew.
    /// Returns the problems that remain.
    pub fn repair_repository(&self, id: &str) -> Result<Vec<publish::Problem>, RepoError> {
        let repo: Repository = self
            .store
            .config(&format!("repository/{id}"))?
            .ok_or_else(|| RepoError::NoSuchRepository(id.to_string()))?;
        let dists = repository_dists(&repo, &self.layout(&repo.layout)?);
        self.publish(&dists)?;
        let problems = self.check_repository(id)?;
        if problems.is_empty() {
            return Ok(problems);
        }
        for p in &problems {
            for f in &p.stale {
                match std::fs::remove_file(f) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(RepoError::Io {
                            path: f.clone(),
                            source: e,
                        });
                    }
                    _ => {}
                }
            }
        }
        self.publish(&dists)?;
        self.check_repository(id)
    }

    /// The Release fields of a distribution; `name` is its directory below `dists/` (the
    /// distribution name, or `<dist>/snapshots/<name>` for a snapshot).
    fn release_info(&self, r: &Resolved, name: &str) -> ReleaseInfo {
        let rollback = r.is_rollback();
        ReleaseInfo {
            origin: self.instance.origin(),
            label: name.to_string(),
            suite: name.to_string(),
            codename: name.to_string(),
            date: publish_time(),
            valid_until: None,
            architectures: r.distribution.architectures.clone(),
            components: r.distribution.components.clone(),
            description: name.to_string(),
            not_automatic: rollback || r.suite.not_automatic,
            but_automatic_upgrades: !rollback && r.suite.but_automatic_upgrades,
        }
    }

    /// The distribution directories of a repository (its snapshots not included).
    pub(super) fn repository_dist_names(&self, id: &str) -> Result<Vec<String>, RepoError> {
        let repo: Repository = self
            .store
            .config(&format!("repository/{id}"))?
            .ok_or_else(|| RepoError::NoSuchRepository(id.to_string()))?;
        let layout = self.layout(&repo.layout)?;
        Ok(repository_dists(&repo, &layout)
            .iter()
            .map(ToString::to_string)
            .collect())
    }

    /// Publishes every distribution of every repository.
    pub fn publish_all(&self) -> Result<(), RepoError> {
        let all = self.all_dists()?;
        self.publish(&all)
    }

    /// Publishes the given distributions.
    pub fn publish(&self, dists: &[DistName]) -> Result<(), RepoError> {
        let now = wall_clock();
        for name in dists {
            let r = self.resolve(&name.to_string())?;
            self.publish_one(&r, &name.to_string(), now)?;
        }
        Ok(())
    }

    /// Publishes one distribution directory: `dist` is both its store name and its path
    /// below `dists/` (a distribution, or a snapshot of one).
    /// `now` is the wall clock, for the by-hash grace period (the Release Date is separate).
    pub(super) fn publish_one(&self, r: &Resolved, dist: &str, now: i64) -> Result<(), RepoError> {
        let repo = &r.repository.identity;
        let mut state = self.store.publish_state(repo, dist)?;
        state.in_progress = true;
        let mut tx = self.store.write()?;
        tx.set_publish_state(repo, dist, &state)?;
        tx.commit()?;
        let started = std::time::Instant::now();
        let spec = DistSpec {
            dir: dist.to_string(),
            info: self.release_info(r, dist),
        };
        let cold = self.cold.load(std::sync::atomic::Ordering::SeqCst);
        let cache = |keys: &[String]| {
            if cold {
                return vec![None; keys.len()];
            }
            self.store.segments(keys).unwrap_or_else(|e| {
                tracing::warn!("segment cache unreadable, compressing anew: {e}");
                vec![None; keys.len()]
            })
        };
        let records = self.store.records(repo, dist)?;
        let dists_root = self.repo_dir(repo).join("dists");
        let dist_dir = dists_root.join(dist);
        let load = |path: &str, digest: &[u8; 32]| load_file(&dist_dir, path, digest);
        let in_place = |path: &str, d: &Digests| present(&dist_dir, path, d);
        let marks = if cold {
            publish::Marks::new()
        } else {
            self.store.digest_marks(repo, dist)?
        };
        let previous = if cold {
            None
        } else {
            self.store
                .outline(repo, dist)?
                .map(|outline| publish::Previous {
                    outline,
                    marks: &marks,
                    load: &load,
                    // The entries of files left as they are; each is checked against the
                    // outline before it is used again.
                    listed: std::fs::read_to_string(dist_dir.join("Release"))
                        .map(|text| release::listed(&text))
                        .unwrap_or_default(),
                    present: &in_place,
                })
        };
        let publish::Rendered {
            files,
            segments,
            new_segments,
            mut outline,
            incremental,
        } = publish::render(&spec, &records, self.compression, &cache, previous)?;
        drop(records);
        tracing::debug!(%dist, incremental, new_segments = new_segments.len(), elapsed = ?started.elapsed(), "rendered");
        let (mut new_state, new_marks, listed) = publish::write(
            &dists_root,
            &spec,
            &files,
            &marks,
            &self.key,
            &state,
            now,
            BY_HASH_GRACE,
        )?;
        outline.complete(|path| {
            let l = listed.iter().find(|l| l.path == path)?;
            hex::decode(&l.digests.sha256).ok()?.try_into().ok()
        });
        new_state.segments = segments;
        tracing::debug!(%dist, elapsed = ?started.elapsed(), "written");
        // The files are on disk; only the new segments, which are inside them, go on into
        // the store.
        let new_segments = publish::new_segment_bytes(files, &new_segments);
        let mut tx = self.store.write()?;
        tx.use_segments(&state.segments, &new_state.segments, &new_segments)?;
        tx.set_publish_state(repo, dist, &new_state)?;
        tx.set_digest_marks(repo, dist, &new_marks)?;
        tx.set_outline(repo, dist, &outline)?;
        tx.commit()?;
        tracing::debug!(%dist, elapsed = ?started.elapsed(), "committed");
        Ok(())
    }
}

/// Reads back a file of the previous publish of the distribution in `dist_dir` from its
/// by-hash copy, with room to grow: `None` if it is gone or does not have the digest (the
/// publish then does without it).
fn load_file(dist_dir: &Path, path: &str, digest: &[u8; 32]) -> Option<Vec<u8>> {
    use sha2::Digest;
    let by_hash = publish::by_hash_path(&dist_dir.join(path), "SHA256", &hex::encode(digest));
    let mut file = std::fs::File::open(&by_hash).ok()?;
    let len = file.metadata().ok()?.len() as usize;
    let mut bytes = Vec::with_capacity(publish::room(len));
    std::io::Read::read_to_end(&mut file, &mut bytes).ok()?;
    let fits = sha2::Sha256::digest(&bytes)[..] == digest[..];
    if !fits {
        tracing::warn!(path = %by_hash.display(), "previous index differs from its digest");
    }
    fits.then_some(bytes)
}

/// Whether the previous publish's file `path` is in place: its by-hash copy has the size
/// `digests` say (its content is checked against the store's outline by the caller).
fn present(dist_dir: &Path, path: &str, digests: &Digests) -> bool {
    std::fs::metadata(publish::by_hash_path(
        &dist_dir.join(path),
        "SHA256",
        &digests.sha256,
    ))
    .is_ok_and(|m| m.is_file() && m.len() == digests.size)
}

/// A repository's distribution names (main and rollback) under its layout, in layout order.
pub(super) fn repository_dists(repo: &Repository, layout: &Layout) -> Vec<DistName> {
    let mut out = Vec::new();
    for codename in &repo.codenames {
        for suite in &layout.suites {
            let main = DistName::new(codename, &repo.identity, &suite.name);
            out.push(main.clone());
            for n in 0..suite.rollback {
                out.push(main.with_rollback(Some(n)));
            }
        }
    }
    out
}
