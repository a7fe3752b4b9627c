//! The sources a request names (with their origins and extra sources), their keys, and the
//! sources' and keys' entries: created, updated and checked (pca) as asked.

use super::{Entry, Env, Request, Setup, entry, status_word};
use crate::config::origin::{self, Origin, SourceSpec};
use crate::config::{self, AptKey, ConfigError, Source};
use crate::repo::release::civil_date;
use std::collections::BTreeMap;

/// The base sources a request names, with their origin and extras.
pub(super) struct Planned {
    pub(super) base: Vec<(String, &'static Origin)>,
    pub(super) sources: Vec<(SourceSpec, Option<(String, i64)>)>,
}

pub(super) fn parse_origins(
    list: &[String],
) -> Result<Vec<(&'static Origin, String)>, ConfigError> {
    list.iter()
        .map(|o| {
            let (name, sel) = o.split_once(':').unwrap_or((o.as_str(), ""));
            let origin = origin::find(name).ok_or_else(|| {
                ConfigError::Setup(format!(
                    "unknown origin '{name}' (known: {})",
                    origin::names()
                ))
            })?;
            if !matches!(sel, "" | "lts" | "all") {
                return Err(ConfigError::Setup(format!(
                    "'{o}': the codename selector is ':lts' or ':all'"
                )));
            }
            Ok((origin, sel.to_string()))
        })
        .collect()
}

pub(super) fn plan_sources(req: &Request, env: &dyn Env) -> Result<Planned, ConfigError> {
    let origins = parse_origins(&req.from_origins)?;
    let today = civil_date(env.now());
    let tables: Vec<(&'static Origin, Vec<origin::Release>)> = origin::ORIGINS
        .iter()
        .map(|o| {
            (
                o,
                env.distro_info(o.distro_info)
                    .map(|t| origin::parse_distro_info(&t))
                    .unwrap_or_default(),
            )
        })
        .collect();
    let table_of = |o: &Origin| {
        tables
            .iter()
            .find(|(t, _)| t.name == o.name)
            .map(|(_, r)| r.as_slice())
            .unwrap_or(&[])
    };
    let mut base: Vec<(String, &'static Origin)> = Vec::new();
    if !req.sources.is_empty() {
        for c in &req.sources {
            if !crate::repo::distribution::valid_word(c) {
                return Err(ConfigError::Setup(format!(
                    "'{c}' is not a codename ([a-z0-9]+)"
                )));
            }
            // The origin whose table knows the codename; else the first origin asked for
            // (an unknown codename is set up in that origin's shape, and its check says
            // whether the archive has it).
            let known = origins
                .iter()
                .map(|(o, _)| *o)
                .chain(origin::ORIGINS.iter())
                .find(|o| table_of(o).iter().any(|r| &r.series == c));
            let o = known.or(origins.first().map(|(o, _)| *o)).ok_or_else(|| {
                ConfigError::Setup(format!(
                    "unknown codename '{c}': no origin's release table has it; say whose it is with --from-origins"
                ))
            })?;
            base.push((c.clone(), o));
        }
    } else if req.sources_from_origins {
        for (o, sel) in &origins {
            for c in
                origin::select_codenames(table_of(o), sel, &today).map_err(ConfigError::Setup)?
            {
                base.push((c, o));
            }
        }
    }
    let mut sources = Vec::new();
    for (c, o) in &base {
        let released = table_of(o)
            .iter()
            .find(|r| &r.series == c)
            .is_none_or(|r| !r.release.is_empty() && r.release <= today);
        let (spec, extras) = o.sources_for(c, released);
        sources.push((spec, None));
        for e in extras {
            sources.push((e.spec, Some((c.clone(), e.priority))));
        }
    }
    Ok(Planned { base, sources })
}

impl Setup<'_> {
    /// Keys: every key the planned sources name, created as asked; returns where each one's
    /// entry is in the report.
    pub(super) fn keys_step(
        &mut self,
        planned: &Planned,
    ) -> Result<BTreeMap<String, usize>, ConfigError> {
        let mut key_ids: Vec<String> = Vec::new();
        for (spec, _) in &planned.sources {
            for k in &spec.apt_keys {
                if !key_ids.contains(k) {
                    key_ids.push(k.clone());
                }
            }
        }
        let mut key_entries = BTreeMap::new();
        for id in &key_ids {
            let key = AptKey::key(id);
            let mut e = match self.state.get::<AptKey>(&key)? {
                Some(k) => entry("aptkey", id, status_word(&k.status)),
                None => {
                    let mut e = entry("aptkey", id, "missing");
                    if self.req.update {
                        self.state.put(&key, &AptKey::new(id)?)?;
                        e.status = "exists".to_string();
                        e.actions.push("created".to_string());
                    }
                    e
                }
            };
            if let Some(k) = self.state.get::<AptKey>(&key)? {
                if let Some(info) = &k.info {
                    e.message = info.name.clone();
                }
            }
            key_entries.insert(id.clone(), self.report.entries.len());
            self.report.push(e);
        }
        Ok(key_entries)
    }

    /// Sources: each planned source created or updated as asked, then with pca prepared,
    /// checked and activated (a source's check prepares, checks and activates its keys).
    pub(super) fn sources_step(&mut self, planned: &Planned) -> Result<(), ConfigError> {
        for (spec, _) in &planned.sources {
            let e = self.source_entry(spec)?;
            self.report.push(e);
        }
        Ok(())
    }

    /// One source's entry: compared with the stored source, created or updated as asked.
    fn source_entry(&self, spec: &SourceSpec) -> Result<Entry, ConfigError> {
        let req = &self.req;
        let key = Source::key(&spec.codename);
        let mut e = entry("source", &spec.codename, "missing");
        match self.state.get::<Source>(&key)? {
            Some(mut s) => {
                let mut diff = Vec::new();
                if s.origin != spec.origin {
                    diff.push(format!("origin: {} → {}", s.origin, spec.origin));
                }
                if s.apt_keys != spec.apt_keys {
                    diff.push(format!(
                        "apt_keys: {} → {}",
                        s.apt_keys.join(" "),
                        spec.apt_keys.join(" ")
                    ));
                }
                if s.extra_identifiers != spec.extra_identifiers {
                    diff.push(format!(
                        "extra_identifiers: {:?} → {:?}",
                        s.extra_identifiers, spec.extra_identifiers
                    ));
                }
                if !diff.is_empty() && req.update {
                    if s.origin != spec.origin {
                        e.message = "the origin of an existing source cannot change".into();
                    } else {
                        s.apt_keys = spec.apt_keys.clone();
                        s.extra_identifiers = spec.extra_identifiers.clone();
                        s.status.changed();
                        self.state.put(&key, &s)?;
                        e.actions.push("updated".to_string());
                    }
                }
                e.diff = diff;
                e.status = status_word(&s.status).to_string();
            }
            None if req.update => {
                self.state.put(&key, &Source::new(spec))?;
                e.status = "exists".to_string();
                e.actions.push("created".to_string());
            }
            None => {}
        }
        if req.pca && e.status != "missing" {
            self.source_pca(&mut e, spec, &key)?;
        }
        Ok(e)
    }

    /// Prepares, checks and activates one source (fetching without the write token), and
    /// puts its status after that into its entry.
    fn source_pca(&self, e: &mut Entry, spec: &SourceSpec, key: &str) -> Result<(), ConfigError> {
        match config::act_taking(
            self.engine,
            self.state,
            "source",
            &spec.codename,
            "pca",
            self.env.fetch(),
            self.now,
            &|| self.env.write_token(),
        ) {
            Ok(_) => e.actions.push("pca".to_string()),
            Err(err) => {
                e.actions.push("pca(failed)".to_string());
                e.message = err.to_string();
            }
        }
        let s: Source = config::load(self.state, "source", key)?;
        e.status = status_word(&s.status).to_string();
        if s.status.is_active() {
            e.message = format!(
                "{} (codeversion {}) at {}",
                s.description,
                s.codeversion(),
                s.archives.join(" ")
            );
        }
        Ok(())
    }

    /// The keys' status after the sources' checks, put into their entries.
    pub(super) fn key_status_step(
        &mut self,
        key_entries: BTreeMap<String, usize>,
    ) -> Result<(), ConfigError> {
        for (id, at) in key_entries {
            if let Some(k) = self.state.get::<AptKey>(&AptKey::key(&id))? {
                let e = &mut self.report.entries[at];
                e.status = status_word(&k.status).to_string();
                if !k.status.message.is_empty() {
                    e.message = k.status.message.clone();
                }
            }
        }
        Ok(())
    }

    /// The source of that codename, if it is active.
    pub(super) fn active_source(&self, codename: &str) -> Result<Option<Source>, ConfigError> {
        Ok(self
            .state
            .get::<Source>(&Source::key(codename))?
            .filter(|s| s.status.is_active()))
    }
}
