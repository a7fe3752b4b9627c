//! Distributions: one per codename asked for, made as its active base source says (its
//! origin's components, its active extra sources).

use super::sources::Planned;
use super::{Entry, Setup, entry};
use crate::config::origin;
use crate::config::{ConfigError, Source};
use crate::repo::distribution::{BuildOptions, Distribution, PrioritySource};

impl Setup<'_> {
    /// The distributions asked for (`codename:arch+arch`), or one for each planned base
    /// source on the host's native architectures (amd64+i386 on amd64).
    pub(super) fn wanted_distributions(
        &self,
        planned: &Planned,
    ) -> Result<Vec<(String, Vec<String>)>, ConfigError> {
        let req = &self.req;
        let mut wanted_dists: Vec<(String, Vec<String>)> = Vec::new();
        for spec in &req.distributions {
            let d = Distribution::parse_spec(spec).map_err(ConfigError::Setup)?;
            wanted_dists.push((d.codename, d.architectures));
        }
        if req.distributions_from_sources && req.distributions.is_empty() {
            let archs = self.env.native_architectures();
            for (c, _) in &planned.base {
                wanted_dists.push((c.clone(), archs.clone()));
            }
        }
        Ok(wanted_dists)
    }

    /// Distributions: an entry for each wanted one; returns those `update` creates or
    /// changes (written later, with the repositories).
    pub(super) fn distributions_step(
        &mut self,
        planned: &Planned,
        wanted_dists: &[(String, Vec<String>)],
    ) -> Result<Vec<Distribution>, ConfigError> {
        let mut new_dists = Vec::new();
        for (codename, archs) in wanted_dists {
            let e = self.distribution_entry(planned, codename, archs, &mut new_dists)?;
            self.report.push(e);
        }
        Ok(new_dists)
    }

    /// One distribution's entry: it waits for its source, exists as wanted, or differs;
    /// what `update` creates or changes goes into `new_dists`.
    fn distribution_entry(
        &self,
        planned: &Planned,
        codename: &str,
        archs: &[String],
        new_dists: &mut Vec<Distribution>,
    ) -> Result<Entry, ConfigError> {
        let mut e = entry("distribution", codename, "missing");
        let existing = self.engine.find_distribution(codename)?;
        let Some(source) = self.active_source(codename)? else {
            match &existing {
                Some(_) => e.status = "exists".to_string(),
                None => {
                    e.status = "waiting".to_string();
                    e.message = format!("source '{codename}' is not active");
                }
            }
            return Ok(e);
        };
        let want = self.wanted_distribution(planned, codename, archs, &source, existing.as_ref());
        match existing {
            Some(d) if d == want => e.status = "exists".to_string(),
            Some(d) => {
                e.status = "exists".to_string();
                e.diff = distribution_diff(&d, &want);
                if self.req.update {
                    new_dists.push(want);
                    e.actions.push("updated".to_string());
                }
            }
            None if self.req.update => {
                new_dists.push(want);
                e.status = "exists".to_string();
                e.actions.push("created".to_string());
            }
            None => {}
        }
        Ok(e)
    }

    /// The distribution setup makes for a codename from its active base source: the
    /// origin's components the source has (`main` always), the active extra sources, and
    /// what an existing distribution keeps (optional architectures, build options).
    fn wanted_distribution(
        &self,
        planned: &Planned,
        codename: &str,
        archs: &[String],
        source: &Source,
        existing: Option<&Distribution>,
    ) -> Distribution {
        let extra_sources: Vec<PrioritySource> = planned
            .sources
            .iter()
            .filter_map(|(spec, extra)| match extra {
                Some((base, priority)) if base == codename => Some((spec, *priority)),
                _ => None,
            })
            .filter(|(spec, _)| {
                self.active_source(&spec.codename)
                    .map(|s| s.is_some())
                    .unwrap_or(false)
            })
            .map(|(spec, priority)| PrioritySource {
                source: spec.codename.clone(),
                priority,
            })
            .collect();
        let origin_components = origin::find(&source.origin)
            .map(|o| o.components.to_vec())
            .unwrap_or_else(|| vec!["main"]);
        let mut components: Vec<String> = origin_components
            .iter()
            .filter(|c| source.components.iter().any(|s| s == *c))
            .map(|c| c.to_string())
            .collect();
        if !components.iter().any(|c| c == "main") {
            components.insert(0, "main".to_string());
        }
        Distribution {
            codename: codename.to_string(),
            codeversion: source.codeversion().to_string(),
            components,
            architectures: archs.to_vec(),
            optional_architectures: existing
                .map(|d| d.optional_architectures.clone())
                .unwrap_or_default(),
            base_source: codename.to_string(),
            extra_sources,
            build: existing.map_or_else(
                || BuildOptions {
                    // Ubuntu's debhelper makes .ddeb packages unless told not to.
                    deb_build_options: if source.origin == "Ubuntu" {
                        vec!["noddebs".to_string()]
                    } else {
                        Vec::new()
                    },
                    ..BuildOptions::default()
                },
                |d| d.build.clone(),
            ),
        }
    }
}

/// What differs between an existing distribution and the one setup would make, one line
/// per field.
fn distribution_diff(d: &Distribution, want: &Distribution) -> Vec<String> {
    let mut diff = Vec::new();
    for (name, a, b) in [
        (
            "codeversion",
            d.codeversion.clone(),
            want.codeversion.clone(),
        ),
        (
            "components",
            d.components.join(" "),
            want.components.join(" "),
        ),
        (
            "architectures",
            d.architectures.join(" "),
            want.architectures.join(" "),
        ),
        (
            "extra_sources",
            d.extra_sources
                .iter()
                .map(|p| format!("{}:{}", p.source, p.priority))
                .collect::<Vec<_>>()
                .join(" "),
            want.extra_sources
                .iter()
                .map(|p| format!("{}:{}", p.source, p.priority))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        (
            "base_source",
            d.base_source.clone(),
            want.base_source.clone(),
        ),
    ] {
        if a != b {
            diff.push(format!("{name}: {a} → {b}"));
        }
    }
    diff
}
