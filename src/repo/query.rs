//! Queries: where a source is (`ls`, `show`) and its pool files.

use super::*;

/// Versions of one source, per distribution (shaped like mini-buildd's `ls`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LsEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    pub rollbacks: BTreeMap<String, LsRollback>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LsRollback {
    pub version: String,
    pub component: String,
    pub architecture: String,
}

/// repository → main distribution → entry
pub type Ls = BTreeMap<String, BTreeMap<String, LsEntry>>;

/// `ls` plus what the reference `show` adds: the `.dsc` path (relative to the repositories
/// directory) and the suite's migration state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShowEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    pub dsc_path: Option<String>,
    /// Upload `.changes` of this version (filled once uploads are recorded).
    pub changes_paths: Vec<String>,
    pub uploadable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrates_to: Option<String>,
    pub is_migrated: bool,
    pub rollbacks: BTreeMap<String, ShowRollback>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShowRollback {
    pub version: String,
    pub component: String,
    pub architecture: String,
    pub dsc_path: Option<String>,
}

/// repository → main distribution → entry
pub type Show = BTreeMap<String, BTreeMap<String, ShowEntry>>;

impl Engine {
    /// Where a source is: versions per distribution and rollback, per repository.
    pub fn ls(&self, source: &str) -> Result<Ls, RepoError> {
        Ok(self
            .show(source)?
            .into_iter()
            .map(|(repo, dists)| {
                let dists = dists
                    .into_iter()
                    .map(|(dist, e)| {
                        let rollbacks = e
                            .rollbacks
                            .into_iter()
                            .map(|(rb, r)| {
                                let entry = LsRollback {
                                    version: r.version,
                                    component: r.component,
                                    architecture: r.architecture,
                                };
                                (rb, entry)
                            })
                            .collect();
                        let entry = LsEntry {
                            version: e.version,
                            component: e.component,
                            architecture: e.architecture,
                            rollbacks,
                        };
                        (dist, entry)
                    })
                    .collect();
                (repo, dists)
            })
            .collect())
    }

    /// The version of `source` in a distribution (rollbacks too) and its pool files, the
    /// `.dsc` first; `version` picks one exactly.
    pub fn source_files(
        &self,
        dist: &str,
        source: &str,
        version: Option<&str>,
    ) -> Result<(String, Vec<PathBuf>), RepoError> {
        let r = self.resolve(dist)?;
        let name = r.name.to_string();
        let found = self
            .store
            .source_everywhere(&r.repository.identity, source)?
            .into_iter()
            .find(|(d, _)| d == &name)
            .and_then(|(_, g)| g.source)
            .filter(|s| version.is_none_or(|v| v == s.version));
        let s = found.ok_or_else(|| RepoError::NoSuchSource {
            source_name: source.to_string(),
            dist: name.clone(),
            version: version.map(str::to_string),
        })?;
        let dir = self.repo_dir(&r.repository.identity).join(&s.directory);
        Ok((
            s.version.clone(),
            s.files.iter().map(|f| dir.join(&f.name)).collect(),
        ))
    }

    /// A file of `source` that repository `repo`'s pool holds already (for any of its
    /// distributions or rollbacks): its path and what the store recorded of it.
    pub fn pool_source_file(
        &self,
        repo: &str,
        source: &str,
        name: &str,
    ) -> Result<Option<(PathBuf, store::PoolFile)>, RepoError> {
        for (_, group) in self.store.source_everywhere(repo, source)? {
            let Some(s) = group.source else { continue };
            if let Some(f) = s.files.iter().find(|f| f.name == name) {
                let path = self.repo_dir(repo).join(&s.directory).join(name);
                return Ok(Some((path, f.clone())));
            }
        }
        Ok(None)
    }

    /// Like [`Engine::ls`], with `.dsc` paths and migration state per distribution.
    pub fn show(&self, source: &str) -> Result<Show, RepoError> {
        let mut out: Show = BTreeMap::new();
        for repo in self.repositories()? {
            let found = self.store.source_everywhere(&repo.identity, source)?;
            let versions: BTreeMap<String, Option<String>> = found
                .iter()
                .map(|(d, g)| (d.clone(), g.version().map(|v| v.to_string())))
                .collect();
            let mut per_dist: BTreeMap<String, ShowEntry> = BTreeMap::new();
            for (dist, group) in &found {
                let Ok(name) = DistName::parse(dist) else {
                    continue;
                };
                let version = group.version().map(|v| v.to_string()).unwrap_or_default();
                let component = group
                    .source
                    .as_ref()
                    .map(|s| s.component.clone())
                    .or_else(|| group.binaries.first().map(|b| b.record.component.clone()))
                    .unwrap_or_default();
                let architecture = if group.source.is_some() {
                    "source"
                } else {
                    "binary"
                }
                .to_string();
                let dsc_path = group.source.as_ref().and_then(|s| {
                    s.files
                        .first()
                        .map(|f| format!("{}/{}/{}", repo.identity, s.directory, f.name))
                });
                let main = name.main().to_string();
                let entry = match per_dist.get_mut(&main) {
                    Some(e) => e,
                    None => {
                        let r = self.resolve(&main)?;
                        let migrates_to = r
                            .suite
                            .migrates_to
                            .as_ref()
                            .map(|t| name.with_suite(t).to_string());
                        per_dist.entry(main.clone()).or_insert(ShowEntry {
                            uploadable: r.suite.uploadable,
                            migrates_to,
                            ..Default::default()
                        })
                    }
                };
                if name.rollback.is_some() {
                    let rb = ShowRollback {
                        version,
                        component,
                        architecture,
                        dsc_path,
                    };
                    entry.rollbacks.insert(dist.clone(), rb);
                } else {
                    entry.is_migrated = entry
                        .migrates_to
                        .as_ref()
                        .and_then(|t| versions.get(t))
                        .is_some_and(|v| v.as_deref() == Some(version.as_str()));
                    entry.version = Some(version);
                    entry.component = Some(component);
                    entry.architecture = Some(architecture);
                    entry.dsc_path = dsc_path;
                }
            }
            if !per_dist.is_empty() {
                out.insert(repo.identity.clone(), per_dist);
            }
        }
        Ok(out)
    }
}

impl Engine {
    /// The pool's `.dsc` of `source` at `version`, in any repository and distribution.
    pub fn pool_dsc(&self, source: &str, version: &str) -> Result<PathBuf, RepoError> {
        for repo in self.repositories()? {
            for (_, group) in self.store.source_everywhere(&repo.identity, source)? {
                let Some(s) = group.source else { continue };
                if s.version != version {
                    continue;
                }
                if let Some(f) = s.files.iter().find(|f| f.name.ends_with(".dsc")) {
                    return Ok(self
                        .repo_dir(&repo.identity)
                        .join(&s.directory)
                        .join(&f.name));
                }
            }
        }
        Err(RepoError::NoSuchSource {
            source_name: source.to_string(),
            dist: "any distribution".to_string(),
            version: Some(version.to_string()),
        })
    }

    /// What Debian's `debdiff` says between two versions of a source from the pool (its
    /// exit status 1 only means that they differ).
    pub fn debdiff(&self, source: &str, old: &str, new: &str) -> Result<String, RepoError> {
        let (a, b) = (self.pool_dsc(source, old)?, self.pool_dsc(source, new)?);
        let out = std::process::Command::new("debdiff")
            .arg(&a)
            .arg(&b)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| RepoError::Io {
                path: "debdiff".into(),
                source: e,
            })?;
        match out.status.code() {
            Some(0 | 1) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            _ => Err(RepoError::Io {
                path: "debdiff".into(),
                source: std::io::Error::other(format!(
                    "{} {}: {}",
                    a.display(),
                    b.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
            }),
        }
    }
}
