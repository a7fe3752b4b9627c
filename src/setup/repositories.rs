//! Repositories: those asked for, on the distributions that exist (or are about to), then the
//! engine's configuration and, with pca, each repository's check; the write token is held
//! only around those engine changes.

use super::{Entry, Setup, entry, status_word};
use crate::config::{self, ConfigError};
use crate::repo::Repository;
use crate::repo::distribution::Distribution;
use crate::status::Status;

impl Setup<'_> {
    /// The repositories asked for (`id:layout:codename+codename`), and for each
    /// `repositories_from_distributions` one over every wanted distribution.
    pub(super) fn wanted_repositories(
        &self,
        wanted_dists: &[(String, Vec<String>)],
    ) -> Result<Vec<Repository>, ConfigError> {
        let req = &self.req;
        let layouts = self.engine.layouts()?;
        let mut wanted_repos: Vec<Repository> = Vec::new();
        for spec in &req.repositories {
            wanted_repos.push(Repository::parse_spec(spec, &layouts).map_err(ConfigError::Setup)?);
        }
        for spec in &req.repositories_from_distributions {
            let (id, layout_name) = match spec.split_once(':') {
                Some((id, l)) => (id.to_string(), l.to_string()),
                None if spec == "debdev" => (spec.clone(), "Debian Developer".to_string()),
                None => (spec.clone(), "Default".to_string()),
            };
            let codenames: Vec<String> = wanted_dists.iter().map(|(c, _)| c.clone()).collect();
            if codenames.is_empty() {
                continue;
            }
            wanted_repos.push(
                Repository::parse_spec(
                    &format!("{id}:{layout_name}:{}", codenames.join("+")),
                    &layouts,
                )
                .map_err(ConfigError::Setup)?,
            );
        }
        Ok(wanted_repos)
    }

    /// Repositories: an entry for each wanted one (reported after their pca); returns those
    /// `update` creates or changes, and the entries.
    pub(super) fn repositories_step(
        &self,
        wanted_dists: &[(String, Vec<String>)],
        new_dists: &[Distribution],
    ) -> Result<(Vec<Repository>, Vec<Entry>), ConfigError> {
        let wanted_repos = self.wanted_repositories(wanted_dists)?;
        let mut new_repos = Vec::new();
        let mut repo_entries = Vec::new();
        for r in &wanted_repos {
            repo_entries.push(self.repository_entry(r, new_dists, &mut new_repos)?);
        }
        Ok((new_repos, repo_entries))
    }

    /// Whether a distribution of that codename exists, or is about to be created.
    fn dist_exists(&self, codename: &str, new: &[Distribution]) -> Result<bool, ConfigError> {
        Ok(new.iter().any(|d| d.codename == codename)
            || self.engine.find_distribution(codename)?.is_some())
    }

    /// One repository's entry: its status, the codenames it waits for, what differs; what
    /// `update` creates or changes goes into `new_repos`.
    fn repository_entry(
        &self,
        r: &Repository,
        new_dists: &[Distribution],
        new_repos: &mut Vec<Repository>,
    ) -> Result<Entry, ConfigError> {
        let mut e = entry("repository", &r.identity, "missing");
        let existing = self.engine.find_repository(&r.identity)?;
        let mut ready = Vec::new();
        let mut waiting = Vec::new();
        for c in &r.codenames {
            if self.dist_exists(c, new_dists)? {
                ready.push(c.clone());
            } else {
                waiting.push(c.clone());
            }
        }
        if !waiting.is_empty() {
            e.message = format!("waits for distribution(s) {}", waiting.join(", "));
        }
        let mut want = r.clone();
        match &existing {
            Some(old) => {
                e.status = status_word(&old.status).to_string();
                if !old.status.message.is_empty() {
                    e.message = old.status.message.clone();
                }
                want = old.clone();
                for c in &ready {
                    if !want.codenames.contains(c) {
                        want.codenames.push(c.clone());
                    }
                }
                if old.layout != r.layout {
                    e.diff.push(format!(
                        "layout: {} → {} (not changed by setup)",
                        old.layout, r.layout
                    ));
                }
                if want.codenames != old.codenames {
                    e.diff.push(format!(
                        "codenames: {} → {}",
                        old.codenames.join(" "),
                        want.codenames.join(" ")
                    ));
                    if self.req.update {
                        new_repos.push(want);
                        e.actions.push("updated".to_string());
                    }
                }
            }
            None => {
                want.codenames = ready;
                if want.codenames.is_empty() {
                    e.status = "waiting".to_string();
                } else if self.req.update {
                    // Published at once, active only when asked (pca).
                    want.status = Status::default();
                    want.status.prepared();
                    new_repos.push(want);
                    e.status = "exists".to_string();
                    e.actions.push("created".to_string());
                }
            }
        }
        Ok(e)
    }

    /// Writes the new and changed distributions and repositories into the engine (which
    /// publishes them), holding the write token for just that.
    pub(super) fn configure(
        &self,
        new_dists: &[Distribution],
        new_repos: &[Repository],
    ) -> Result<(), ConfigError> {
        if !new_dists.is_empty() || !new_repos.is_empty() {
            let _token = self.env.write_token();
            self.engine.configure(new_dists, new_repos)?;
        }
        Ok(())
    }

    /// With pca, prepares, checks and activates each repository that is not active (holding
    /// the write token for each one's check), then reports the repositories.
    pub(super) fn repositories_pca(&mut self, repo_entries: Vec<Entry>) -> Result<(), ConfigError> {
        for mut e in repo_entries {
            let status = self.engine.find_repository(&e.id)?.map(|r| r.status);
            if let Some(status) = status
                && self.req.pca
                && !status.is_active()
            {
                let acted = {
                    let _token = self.env.write_token();
                    config::act(
                        self.engine,
                        self.state,
                        "repository",
                        &e.id,
                        "pca",
                        self.env.fetch(),
                        self.now,
                    )
                };
                match acted {
                    Ok(s) => {
                        e.status = status_word(&s).to_string();
                        e.actions.push("pca".to_string());
                    }
                    Err(err) => {
                        e.status = "failed".to_string();
                        e.message = err.to_string();
                        e.actions.push("pca(failed)".to_string());
                    }
                }
            }
            self.report.push(e);
        }
        Ok(())
    }
}
