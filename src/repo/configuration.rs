//! Configuration: setup, configure and open (with crash recovery), repositories,
//! distributions and layouts in the store, upload policies, legacy objects, distribution
//! names resolved against the configuration, and the meta-distribution map (a meta claimed
//! twice is an error, checked before a configuration is committed).

use super::*;

impl Engine {
    /// Creates (or extends) the setup on `home`: the archive key if missing, layouts,
    /// distributions and repositories; then publishes every distribution.
    pub fn setup(home: &Path, opts: &SetupOptions) -> Result<Engine, RepoError> {
        std::fs::create_dir_all(home).map_err(RepoError::io(home))?;
        let store = Store::open(&store_path(home))?;
        let instance = match (store.config::<Instance>("instance")?, &opts.identity) {
            (_, Some(id)) => Instance {
                identity: id.clone(),
            },
            (Some(existing), None) => existing,
            (None, None) => Instance {
                identity: short_hostname(),
            },
        };
        if instance.identity.is_empty()
            || !instance
                .identity
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(RepoError::Setup(format!(
                "identity '{}' must match [a-zA-Z0-9-]+",
                instance.identity
            )));
        }
        let user_id = format!(
            "mbd archive {} <mbd@{}>",
            instance.identity, instance.identity
        );
        let (key, _) = ArchiveKey::load_or_generate(&key_path(home), &user_id, opts.key_algorithm)?;
        let mut distributions = Vec::new();
        for spec in &opts.distributions {
            distributions.push(Distribution::parse_spec(spec).map_err(RepoError::Setup)?);
        }
        let layouts = layout::builtin();
        let mut repositories = Vec::new();
        for spec in &opts.repositories {
            repositories.push(Repository::parse_spec(spec, &layouts).map_err(RepoError::Setup)?);
        }
        {
            let mut tx = store.write()?;
            tx.put_config("instance", &instance)?;
            tx.commit()?;
        }
        let engine = Engine {
            home: home.to_path_buf(),
            store,
            key,
            instance,
            compression: Levels::default(),
            cold: std::sync::atomic::AtomicBool::new(false),
        };
        engine.configure(&distributions, &repositories)?;
        Ok(engine)
    }

    /// Adds or replaces distributions and repositories (and writes the built-in layouts);
    /// every repository's codenames must have a distribution. Checks the meta-distribution
    /// map and publishes. Nothing is written when a check fails.
    pub fn configure(
        &self,
        distributions: &[Distribution],
        repositories: &[Repository],
    ) -> Result<(), RepoError> {
        let layouts = layout::builtin();
        let known_codenames: BTreeSet<String> = distributions
            .iter()
            .map(|d| d.codename.clone())
            .chain(
                self.store
                    .configs::<Distribution>("distribution/")?
                    .into_iter()
                    .map(|(_, d)| d.codename),
            )
            .collect();
        for r in repositories {
            for c in &r.codenames {
                if !known_codenames.contains(c) {
                    return Err(RepoError::Setup(format!(
                        "repository '{}': no distribution for codename '{c}' (add --distributions {c}:<arch>)",
                        r.identity
                    )));
                }
            }
        }
        let before_meta = self.meta_distributions();
        let mut tx = self.store.write()?;
        for l in &layouts {
            tx.put_config(&format!("layout/{}", l.name), l)?;
        }
        for d in distributions {
            tx.put_config(&format!("distribution/{}", d.codename), d)?;
        }
        for r in repositories {
            tx.put_config(&format!("repository/{}", r.identity), r)?;
        }
        if before_meta.is_ok() {
            // A new repository must not make the meta-distribution map ambiguous: look at
            // the map this transaction would make before committing it.
            let mut repos = self.repositories()?;
            repos.retain(|r| !repositories.iter().any(|n| n.identity == r.identity));
            repos.extend(repositories.iter().cloned());
            meta_map(&repos, |name| {
                match layouts.iter().find(|l| l.name == name) {
                    Some(l) => Ok(l.clone()),
                    None => self.layout(name),
                }
            })?;
        }
        tx.commit()?;
        self.check_meta_distributions()?;
        self.publish_all()
    }

    /// Opens an existing setup. Finishes what a crash interrupted: removes pool files placed
    /// by an uncommitted operation and republishes distributions whose publish did not end.
    pub fn open(home: &Path) -> Result<Engine, RepoError> {
        if !store_path(home).exists() || !key_path(home).exists() {
            return Err(RepoError::NotSetUp {
                home: home.to_path_buf(),
            });
        }
        let store = Store::open(&store_path(home))?;
        let key = ArchiveKey::load(&key_path(home))?;
        let instance =
            store
                .config::<Instance>("instance")?
                .ok_or_else(|| RepoError::NotSetUp {
                    home: home.to_path_buf(),
                })?;
        let engine = Engine {
            home: home.to_path_buf(),
            store,
            key,
            instance,
            compression: Levels::default(),
            cold: std::sync::atomic::AtomicBool::new(false),
        };
        engine.recover()?;
        Ok(engine)
    }

    fn recover(&self) -> Result<(), RepoError> {
        let journal = self.journal();
        let leftovers = journal.leftovers().map_err(RepoError::io(&self.home))?;
        if !leftovers.is_empty() {
            for repo in self.repositories()? {
                let referenced: BTreeSet<String> = self
                    .store
                    .pool_refs(&repo.identity)?
                    .into_iter()
                    .map(|(p, _)| p)
                    .collect();
                for line in &leftovers {
                    if let Some(rel) = line.strip_prefix(&format!("{}/", repo.identity))
                        && !referenced.contains(rel)
                    {
                        pool::remove(&self.repo_dir(&repo.identity), rel)
                            .map_err(RepoError::io(&self.home))?;
                    }
                }
            }
        }
        journal.end().map_err(RepoError::io(&self.home))?;
        for repo in self.repositories()? {
            let dir = self.repo_dir(&repo.identity);
            pool::Staging::clear(&dir).map_err(RepoError::io(&dir))?;
        }
        let now = wall_clock();
        for (_, dist) in self.store.unfinished_publishes()? {
            let base = dist
                .split_once("/snapshots/")
                .map_or(dist.as_str(), |(b, _)| b);
            let r = self.resolve(base)?;
            self.publish_one(&r, &dist, now)?;
        }
        self.collect_garbage()
    }

    pub fn repositories(&self) -> Result<Vec<Repository>, RepoError> {
        Ok(self
            .store
            .configs::<Repository>("repository/")?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// A configuration object of the engine (`repository/`, `distribution/`, `layout/`).
    fn put_config<T: Serialize>(&self, key: &str, value: &T) -> Result<(), RepoError> {
        let mut tx = self.store.write()?;
        tx.put_config(key, value)?;
        tx.commit()?;
        Ok(())
    }

    /// Every base distribution's configuration.
    pub fn distributions(&self) -> Result<Vec<Distribution>, RepoError> {
        Ok(self
            .store
            .configs::<Distribution>("distribution/")?
            .into_iter()
            .map(|(_, d)| d)
            .collect())
    }

    /// The distribution's configuration, if there is one.
    pub fn find_distribution(&self, codename: &str) -> Result<Option<Distribution>, RepoError> {
        Ok(self.store.config(&format!("distribution/{codename}"))?)
    }

    /// Saves a distribution's configuration (one transaction).
    pub fn put_distribution(&self, d: &Distribution) -> Result<(), RepoError> {
        self.put_config(&format!("distribution/{}", d.codename), d)
    }

    /// The repository's configuration, if there is one.
    pub fn find_repository(&self, id: &str) -> Result<Option<Repository>, RepoError> {
        Ok(self.store.config(&format!("repository/{id}"))?)
    }

    /// Saves a repository's configuration (one transaction).
    pub fn put_repository(&self, r: &Repository) -> Result<(), RepoError> {
        self.put_config(&format!("repository/{}", r.identity), r)
    }

    /// Objects an earlier mbd kept in the engine's store under `prefix` (raw JSON, by key
    /// without the prefix), to move them to the application's state store.
    pub fn legacy_objects(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, RepoError> {
        Ok(self
            .store
            .configs::<serde_json::Value>(prefix)?
            .into_iter()
            .map(|(k, v)| {
                let id = k[prefix.len()..].to_string();
                (id, serde_json::to_vec(&v).expect("JSON serializes"))
            })
            .collect())
    }

    /// Writes an object as an earlier mbd did (for tests of the move).
    #[cfg(test)]
    pub(crate) fn put_legacy(&self, key: &str, value: &serde_json::Value) -> Result<(), RepoError> {
        self.put_config(key, value)
    }

    /// Deletes legacy objects (full keys) once they are moved.
    pub fn forget_legacy(&self, keys: &[String]) -> Result<(), RepoError> {
        let mut tx = self.store.write()?;
        for k in keys {
            tx.delete_config(k)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The sources of a distribution (main or rollback) with their versions.
    pub fn dist_sources(&self, dist: &str) -> Result<BTreeMap<String, String>, RepoError> {
        let r = self.resolve(dist)?;
        Ok(self
            .store
            .dist_sources(&r.repository.identity, &r.name.to_string())?)
    }

    /// A repository's upload policy: whether it takes uploads that are not signed by an
    /// uploader key, and binary-only uploads.
    pub fn set_upload_policy(
        &self,
        id: &str,
        allow_unauthenticated: bool,
        allow_binary: bool,
    ) -> Result<Repository, RepoError> {
        let key = format!("repository/{id}");
        let mut repo: Repository = self
            .store
            .config(&key)?
            .ok_or_else(|| RepoError::NoSuchRepository(id.to_string()))?;
        repo.allow_unauthenticated_uploads = allow_unauthenticated;
        repo.allow_binary_uploads = allow_binary;
        self.put_config(&key, &repo)?;
        Ok(repo)
    }

    /// The distribution (base codename) configuration.
    pub fn distribution(&self, codename: &str) -> Result<Distribution, RepoError> {
        self.store
            .config(&format!("distribution/{codename}"))?
            .ok_or_else(|| RepoError::Malformed(format!("No distribution '{codename}'")))
    }

    pub fn layout(&self, name: &str) -> Result<Layout, RepoError> {
        self.store
            .config::<Layout>(&format!("layout/{name}"))?
            .ok_or_else(|| RepoError::Setup(format!("layout '{name}' is missing from the store")))
    }

    /// Every layout: the built-in ones and those added with [`Engine::set_layout`].
    pub fn layouts(&self) -> Result<Vec<Layout>, RepoError> {
        let mut all = layout::builtin();
        for (_, l) in self.store.configs::<Layout>("layout/")? {
            if !all.iter().any(|b| b.name == l.name) {
                all.push(l);
            }
        }
        Ok(all)
    }

    /// Adds or replaces a custom layout. Built-in layouts cannot be replaced, and a layout a
    /// repository uses cannot change (its distributions are published already).
    pub fn set_layout(&self, new: &Layout) -> Result<(), RepoError> {
        let valid_name = !new.name.is_empty()
            && new.name.len() <= 64
            && new
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b" ()_-.".contains(&b));
        if !valid_name {
            return Err(RepoError::Setup(format!(
                "layout name '{}' must be 1 to 64 of [A-Za-z0-9 ()_.-]",
                new.name
            )));
        }
        if layout::builtin().iter().any(|b| b.name == new.name) {
            return Err(RepoError::Setup(format!(
                "layout '{}' is built in; give a custom layout another name",
                new.name
            )));
        }
        if new.suites.is_empty() {
            return Err(RepoError::Setup(format!(
                "layout '{}' has no suites",
                new.name
            )));
        }
        new.validate()
            .map_err(|e| RepoError::Setup(e.to_string()))?;
        for rule in [
            &new.mandatory_version_regex,
            &new.experimental_mandatory_version_regex,
        ] {
            regex::Regex::new(rule).map_err(|e| {
                RepoError::Setup(format!(
                    "layout '{}': version rule '{rule}' is not a regular expression: {e}",
                    new.name
                ))
            })?;
        }
        let users: Vec<String> = self
            .repositories()?
            .into_iter()
            .filter(|r| r.layout == new.name)
            .map(|r| r.identity)
            .collect();
        if !users.is_empty() {
            return Err(RepoError::Setup(format!(
                "layout '{}' is used by repositories {}; add a new layout instead",
                new.name,
                users.join(", ")
            )));
        }
        let mut tx = self.store.write()?;
        tx.put_config(&format!("layout/{}", new.name), new)?;
        tx.commit()?;
        Ok(())
    }

    /// Resolves `<codename>-<repo>-<suite>[-rollback<N>]` against the configuration.
    pub fn resolve(&self, name: &str) -> Result<Resolved, RepoError> {
        let name = DistName::parse(name).map_err(RepoError::Malformed)?;
        let repository: Repository = self
            .store
            .config(&format!("repository/{}", name.repository))?
            .ok_or_else(|| RepoError::NoSuchRepository(name.repository.clone()))?;
        if !repository.codenames.contains(&name.codename) {
            return Err(RepoError::NoSuchCodename {
                repository: repository.identity,
                codename: name.codename,
            });
        }
        let distribution: Distribution = self
            .store
            .config(&format!("distribution/{}", name.codename))?
            .ok_or_else(|| RepoError::NoSuchCodename {
                repository: repository.identity.clone(),
                codename: name.codename.clone(),
            })?;
        let layout = self.layout(&repository.layout)?;
        let suite = layout
            .suite(&name.suite)
            .cloned()
            .ok_or_else(|| RepoError::NoSuchSuite {
                suite: name.suite.clone(),
                layout: layout.name.clone(),
            })?;
        if let Some(n) = name.rollback
            && n >= suite.rollback
        {
            return Err(RepoError::NoSuchRollback {
                dist: name.to_string(),
                suite: suite.name,
                count: suite.rollback,
            });
        }
        Ok(Resolved {
            name,
            repository,
            layout,
            suite,
            distribution,
        })
    }

    /// The global map meta-distribution → distribution; a meta claimed twice is an error.
    pub fn meta_distributions(&self) -> Result<BTreeMap<String, String>, RepoError> {
        meta_map(&self.repositories()?, |name| self.layout(name))
    }

    fn check_meta_distributions(&self) -> Result<(), RepoError> {
        self.meta_distributions().map(|_| ())
    }
}

fn short_hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .and_then(|h| h.split('.').next().map(|s| s.trim().to_string()))
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .unwrap_or_else(|| "mbd".to_string())
}

/// The meta-distribution map of a set of repositories; a meta claimed twice is an error.
fn meta_map(
    repos: &[Repository],
    layout_of: impl Fn(&str) -> Result<Layout, RepoError>,
) -> Result<BTreeMap<String, String>, RepoError> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for repo in repos {
        let layout = layout_of(&repo.layout)?;
        for (meta, target) in &layout.meta_distributions {
            let Some((codename, suite)) = target.split_once('-') else {
                continue;
            };
            if !repo.codenames.iter().any(|c| c == codename) {
                continue;
            }
            let full = format!("{codename}-{}-{suite}", repo.identity);
            if let Some(first) = map.get(meta) {
                return Err(RepoError::AmbiguousMeta {
                    meta: meta.clone(),
                    first: first.clone(),
                    second: full,
                });
            }
            map.insert(meta.clone(), full);
        }
    }
    Ok(map)
}
