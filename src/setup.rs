//! `setup`: from a few options (explicit lists, or "from origins", "from sources", ...) to the
//! objects a working instance needs — archives, keys, sources, distributions, repositories,
//! chroots — and a report of each with its status and what differs. Without `update` it only
//! reports; `update` creates and updates objects, `pca` prepares, checks and activates them.
//!
//! Objects that depend on a source (its distribution, the repositories and chroots on that
//! codename) are only created once the source is active, so a failed check never leaves a
//! repository for an archive that does not exist.

use crate::build::chroot::{Backend, Chroot, ChrootState};
use crate::config::origin::{self, Origin};
use crate::config::{self, AptKey, Archive, ConfigError, Fetch, Source};
use crate::repo::distribution::{BuildOptions, Distribution, PrioritySource};
use crate::repo::release::civil_date;
use crate::repo::{Engine, Repository};
use crate::state::StateStore;
use crate::status::Status;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What `setup` is asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The instance identity wanted; it is fixed once the archive key exists, so a different
    /// one is only reported.
    pub identity: Option<String>,
    /// `host:port` for FTP uploads (`none`: no FTP); kept in the daemon's settings, in
    /// effect from its next start.
    pub ftp_endpoint: Option<String>,
    /// `<Origin>[:lts|:all]`
    pub from_origins: Vec<String>,
    /// A bootstrap preset: `Debian` or `Ubuntu` (origins, everything from them, repository
    /// `test`, chroots, update and pca).
    pub preset: Option<String>,
    pub archives: Vec<String>,
    pub archives_from_origins: bool,
    pub archives_from_apt_sources: bool,
    /// Codenames.
    pub sources: Vec<String>,
    pub sources_from_origins: bool,
    /// `codename:arch+arch`
    pub distributions: Vec<String>,
    pub distributions_from_sources: bool,
    /// `id:layout:codename+codename`
    pub repositories: Vec<String>,
    /// `id[:layout]`: a repository for every distribution.
    pub repositories_from_distributions: Vec<String>,
    /// `codename:arch`
    pub chroots: Vec<String>,
    pub chroots_from_sources: bool,
    pub chroots_backend: String,
    pub update: bool,
    pub pca: bool,
}

/// Something kept only for what its `Drop` does (a lock guard).
pub trait Guard {}
impl<T> Guard for T {}

/// What setup needs from the machine.
pub trait Env {
    fn fetch(&self) -> &dyn Fetch;
    /// Seconds since the epoch.
    fn now(&self) -> i64;
    /// The distro-info-data table of that name (`debian.csv`), if installed.
    fn distro_info(&self, file: &str) -> Option<String>;
    /// The mirrors the host's apt sources name.
    fn apt_archives(&self) -> Vec<String>;
    fn host_arch(&self) -> String;
    /// Starts preparing a chroot in the background.
    fn request_chroot(&mut self, state: &StateStore, chroot: Chroot) -> Result<(), String>;
    /// The FTP endpoints of the daemon's settings, and the one it serves now (`host:port`).
    fn ftp_endpoints(&self) -> (Vec<String>, Option<String>);
    /// Writes the FTP endpoints into the daemon's settings.
    fn set_ftp_endpoints(&mut self, endpoints: &[String]) -> Result<(), String>;
    /// Holds the daemon's write token while the returned value lives. Setup takes it only
    /// to change the engine (the configuration and its publish, a repository's check);
    /// fetching and checking archives, keys and sources run without it.
    fn write_token(&self) -> Box<dyn crate::setup::Guard + '_>;
}

/// Checks an FTP endpoint: `host:port` (port 0 is for tests), or `none`.
fn ftp_endpoints_wanted(spec: &str) -> Result<Vec<String>, ConfigError> {
    if spec == "none" {
        return Ok(Vec::new());
    }
    let bad = || {
        ConfigError::Setup(format!(
            "FTP endpoint '{spec}' is not '<host>:<port>' or 'none'"
        ))
    };
    let (host, port) = spec.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(vec![spec.to_string()])
}

/// One object in the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    pub kind: &'static str,
    pub id: String,
    /// missing, exists, active, deactivated, changed, failed, waiting, preparing
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub entries: Vec<Entry>,
    /// 0 nothing to say, 1 notable, 2 warnings (missing, changed, waiting), 3 errors (failed)
    pub severity: u8,
}

impl Entry {
    /// How much this entry asks for attention (see [`Report::severity`]).
    fn severity(&self) -> u8 {
        match self.status.as_str() {
            "failed" => 3,
            "missing" | "changed" | "waiting" => 2,
            _ if !self.diff.is_empty() => 2,
            // A key or source that exists but is not active is worth a look.
            "exists" if matches!(self.kind, "aptkey" | "source") => 1,
            "preparing" | "deactivated" => 1,
            _ => 0,
        }
    }
}

impl Report {
    fn push(&mut self, e: Entry) {
        self.entries.push(e);
    }

    /// A plain table: kind, id, status, then diff, actions and message.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            out.push_str(&format!("{:<12} {:<40} {}", e.kind, e.id, e.status));
            if !e.actions.is_empty() {
                out.push_str(&format!(" [{}]", e.actions.join(", ")));
            }
            out.push('\n');
            for d in &e.diff {
                out.push_str(&format!("{:13}diff: {d}\n", ""));
            }
            if !e.message.is_empty() {
                out.push_str(&format!("{:13}{}\n", "", e.message));
            }
        }
        out.push_str(&format!(
            "severity {} ({})\n",
            self.severity,
            ["ok", "notable", "warnings", "errors"][self.severity as usize]
        ));
        out
    }
}

fn entry(kind: &'static str, id: &str, status: &str) -> Entry {
    Entry {
        kind,
        id: id.to_string(),
        status: status.to_string(),
        message: String::new(),
        diff: Vec::new(),
        actions: Vec::new(),
    }
}

fn status_word(s: &Status) -> &'static str {
    use crate::status::Check;
    match (s.is_active(), s.check) {
        (true, _) => "active",
        (false, Check::Changed) => "changed",
        (false, Check::Failed | Check::FailedReactivate) => "failed",
        // Checked once, then deactivated.
        (false, Check::Checked(_)) => "deactivated",
        _ => "exists",
    }
}

/// The base sources a request names, with their origin and extras.
struct Planned {
    base: Vec<(String, &'static Origin)>,
    sources: Vec<(origin::SourceSpec, Option<(String, i64)>)>,
}

fn parse_origins(list: &[String]) -> Result<Vec<(&'static Origin, String)>, ConfigError> {
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

fn plan_sources(req: &Request, env: &dyn Env) -> Result<Planned, ConfigError> {
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

/// The `Current` and `Extend` presets: the request that names what exists (archives, the
/// distributions' base sources and their origins, distributions, repositories, chroots), added
/// to what the request names itself. Its report shows every object's status and what differs
/// from what setup would make now; `Extend` also applies it (update, pca), which brings
/// changed or failed objects back and adds what the objects imply but lacks (an extra source
/// that became available, a repository's new codename).
fn current(engine: &Engine, state: &StateStore, req: &mut Request) -> Result<(), ConfigError> {
    let push = |list: &mut Vec<String>, item: String| {
        if !list.contains(&item) {
            list.push(item);
        }
    };
    for (_, a) in state.all::<Archive>()? {
        push(&mut req.archives, a.url);
    }
    for d in engine.distributions()? {
        let base = if d.base_source.is_empty() {
            d.codename.clone()
        } else {
            d.base_source.clone()
        };
        if let Some(s) = state.get::<Source>(&Source::key(&base))? {
            push(&mut req.from_origins, s.origin.clone());
            push(&mut req.sources, base);
        }
        push(
            &mut req.distributions,
            format!("{}:{}", d.codename, d.architectures.join("+")),
        );
    }
    for r in engine.repositories()? {
        push(
            &mut req.repositories,
            format!("{}:{}:{}", r.identity, r.layout, r.codenames.join("+")),
        );
    }
    for c in crate::build::chroot::all(state)? {
        push(
            &mut req.chroots,
            format!("{}:{}", c.codename, c.architecture),
        );
    }
    Ok(())
}

/// Runs setup: builds the report and, when asked, applies it.
pub fn run(
    engine: &Engine,
    state: &StateStore,
    req: &Request,
    env: &mut dyn Env,
) -> Result<Report, ConfigError> {
    let mut req = req.clone();
    if let Some(p) = req
        .preset
        .clone()
        .filter(|p| p == "Current" || p == "Extend")
    {
        current(engine, state, &mut req)?;
        if p == "Extend" {
            req.update = true;
            req.pca = true;
        }
    } else if let Some(p) = req.preset.clone() {
        let o = origin::find(&p).ok_or_else(|| {
            ConfigError::Setup(format!(
                "unknown preset '{p}' (known: {}, Current, Extend)",
                origin::names()
            ))
        })?;
        if req.from_origins.is_empty() {
            req.from_origins = vec![o.name.to_string()];
        }
        req.archives_from_origins |= req.archives.is_empty() && !req.archives_from_apt_sources;
        req.sources_from_origins |= req.sources.is_empty();
        req.distributions_from_sources |= req.distributions.is_empty();
        if req.repositories.is_empty() && req.repositories_from_distributions.is_empty() {
            req.repositories_from_distributions = vec!["test".to_string()];
        }
        req.chroots_from_sources |= req.chroots.is_empty();
        req.update = true;
        req.pca = true;
    }
    let backend = match req.chroots_backend.as_str() {
        "" | "directory" | "Dir" => Backend::Directory,
        "file" | "File" => Backend::File,
        other => {
            return Err(ConfigError::Setup(format!(
                "chroot backend '{other}' is not directory or file"
            )));
        }
    };
    let planned = plan_sources(&req, env)?;
    let now = env.now();
    let mut report = Report::default();

    let current = engine.instance().identity.clone();
    let mut e = entry("instance", &current, "active");
    if let Some(want) = req.identity.as_ref().filter(|w| **w != current) {
        e.diff.push(format!("identity: {current} → {want}"));
        e.message = "the identity is fixed once the archive key exists: give it to `mbd daemon --identity` on a new home".to_string();
    }
    report.push(e);
    if let Some(spec) = &req.ftp_endpoint {
        let want = ftp_endpoints_wanted(spec)?;
        let (configured, serving) = env.ftp_endpoints();
        let mut e = entry("daemon", "ftp_endpoints", "active");
        e.message = match &serving {
            Some(s) => format!("serving FTP on {s}"),
            None => "no FTP".to_string(),
        };
        if want != configured {
            e.diff.push(format!(
                "ftp_endpoints: [{}] → [{}]",
                configured.join(", "),
                want.join(", ")
            ));
            if req.update {
                match env.set_ftp_endpoints(&want) {
                    Ok(()) => {
                        e.status = "changed".to_string();
                        e.actions.push("updated".to_string());
                        e.message =
                            "written to etc/mbd.toml; in effect from the daemon's next start"
                                .to_string();
                    }
                    Err(err) => {
                        e.status = "failed".to_string();
                        e.message = err;
                    }
                }
            }
        }
        report.push(e);
    }

    // Archives.
    let mut archive_urls: Vec<String> = req.archives.clone();
    if req.archives_from_origins {
        for (o, _) in parse_origins(&req.from_origins)? {
            archive_urls.extend(o.archives.iter().map(|a| a.to_string()));
        }
    }
    if req.archives_from_apt_sources {
        archive_urls.extend(env.apt_archives());
    }
    let mut archives = Vec::new();
    for u in &archive_urls {
        archives.push(Archive::new(u)?);
    }
    let mut seen = BTreeSet::new();
    archives.retain(|a| seen.insert(a.url.clone()));
    let mut new_archives = Vec::new();
    for a in archives {
        let url = &a.url.clone();
        match state.get::<Archive>(&Archive::key(url))? {
            Some(existing) => {
                let mut e = entry("archive", url, "exists");
                if existing.ping_ms >= 0.0 {
                    e.message = format!("ping {:.0} ms", existing.ping_ms);
                }
                report.push(e);
            }
            None => {
                let mut e = entry("archive", url, "missing");
                if req.update {
                    new_archives.push((Archive::key(url), a));
                    e.status = "exists".to_string();
                    e.actions.push("created".to_string());
                }
                report.push(e);
            }
        }
    }
    state.put_all::<Archive, _>(&new_archives)?;

    // Keys, then sources (a source's check prepares, checks and activates its keys).
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
        let mut e = match state.get::<AptKey>(&key)? {
            Some(k) => entry("aptkey", id, status_word(&k.status)),
            None => {
                let mut e = entry("aptkey", id, "missing");
                if req.update {
                    state.put(&key, &AptKey::new(id)?)?;
                    e.status = "exists".to_string();
                    e.actions.push("created".to_string());
                }
                e
            }
        };
        if let Some(k) = state.get::<AptKey>(&key)? {
            if let Some(info) = &k.info {
                e.message = info.name.clone();
            }
        }
        key_entries.insert(id.clone(), report.entries.len());
        report.push(e);
    }
    for (spec, _) in &planned.sources {
        let key = Source::key(&spec.codename);
        let mut e = entry("source", &spec.codename, "missing");
        match state.get::<Source>(&key)? {
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
                        state.put(&key, &s)?;
                        e.actions.push("updated".to_string());
                    }
                }
                e.diff = diff;
                e.status = status_word(&s.status).to_string();
            }
            None if req.update => {
                state.put(&key, &Source::new(spec))?;
                e.status = "exists".to_string();
                e.actions.push("created".to_string());
            }
            None => {}
        }
        if req.pca && e.status != "missing" {
            match config::act(
                engine,
                state,
                "source",
                &spec.codename,
                "pca",
                env.fetch(),
                now,
            ) {
                Ok(_) => e.actions.push("pca".to_string()),
                Err(err) => {
                    e.actions.push("pca(failed)".to_string());
                    e.message = err.to_string();
                }
            }
            let s: Source = config::load(state, "source", &key)?;
            e.status = status_word(&s.status).to_string();
            if s.status.is_active() {
                e.message = format!(
                    "{} (codeversion {}) at {}",
                    s.description,
                    s.codeversion(),
                    s.archives.join(" ")
                );
            }
        }
        report.push(e);
    }
    // The keys' status after the sources' checks.
    for (id, at) in key_entries {
        if let Some(k) = state.get::<AptKey>(&AptKey::key(&id))? {
            let e = &mut report.entries[at];
            e.status = status_word(&k.status).to_string();
            if !k.status.message.is_empty() {
                e.message = k.status.message.clone();
            }
        }
    }

    // Distributions.
    let active_source = |codename: &str| -> Result<Option<Source>, ConfigError> {
        Ok(state
            .get::<Source>(&Source::key(codename))?
            .filter(|s| s.status.is_active()))
    };
    let mut wanted_dists: Vec<(String, Vec<String>)> = Vec::new();
    for spec in &req.distributions {
        let d = Distribution::parse_spec(spec).map_err(ConfigError::Setup)?;
        wanted_dists.push((d.codename, d.architectures));
    }
    if req.distributions_from_sources && req.distributions.is_empty() {
        let host_arch = env.host_arch();
        for (c, _) in &planned.base {
            wanted_dists.push((c.clone(), vec![host_arch.clone()]));
        }
    }
    let mut new_dists = Vec::new();
    for (codename, archs) in &wanted_dists {
        let mut e = entry("distribution", codename, "missing");
        let existing = engine.find_distribution(codename)?;
        let Some(source) = active_source(codename)? else {
            match &existing {
                Some(_) => e.status = "exists".to_string(),
                None => {
                    e.status = "waiting".to_string();
                    e.message = format!("source '{codename}' is not active");
                }
            }
            report.push(e);
            continue;
        };
        let extra_sources: Vec<PrioritySource> = planned
            .sources
            .iter()
            .filter_map(|(spec, extra)| match extra {
                Some((base, priority)) if base == codename => Some((spec, *priority)),
                _ => None,
            })
            .filter(|(spec, _)| {
                active_source(&spec.codename)
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
        let want = Distribution {
            codename: codename.clone(),
            codeversion: source.codeversion().to_string(),
            components,
            architectures: archs.clone(),
            optional_architectures: existing
                .as_ref()
                .map(|d| d.optional_architectures.clone())
                .unwrap_or_default(),
            base_source: codename.clone(),
            extra_sources,
            build: existing.as_ref().map_or_else(
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
        };
        match existing {
            Some(d) if d == want => e.status = "exists".to_string(),
            Some(d) => {
                e.status = "exists".to_string();
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
                        e.diff.push(format!("{name}: {a} → {b}"));
                    }
                }
                if req.update {
                    new_dists.push(want);
                    e.actions.push("updated".to_string());
                }
            }
            None if req.update => {
                new_dists.push(want);
                e.status = "exists".to_string();
                e.actions.push("created".to_string());
            }
            None => {}
        }
        report.push(e);
    }
    let dist_exists = |codename: &str, new: &[Distribution]| -> Result<bool, ConfigError> {
        Ok(new.iter().any(|d| d.codename == codename)
            || engine.find_distribution(codename)?.is_some())
    };

    // Repositories.
    let layouts = engine.layouts()?;
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
    let mut new_repos = Vec::new();
    let mut repo_entries = Vec::new();
    for r in &wanted_repos {
        let mut e = entry("repository", &r.identity, "missing");
        let existing = engine.find_repository(&r.identity)?;
        let mut ready = Vec::new();
        let mut waiting = Vec::new();
        for c in &r.codenames {
            if dist_exists(c, &new_dists)? {
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
                    if req.update {
                        new_repos.push(want);
                        e.actions.push("updated".to_string());
                    }
                }
            }
            None => {
                want.codenames = ready;
                if want.codenames.is_empty() {
                    e.status = "waiting".to_string();
                } else if req.update {
                    // Published at once, active only when asked (pca).
                    want.status = Status::default();
                    want.status.prepared();
                    new_repos.push(want);
                    e.status = "exists".to_string();
                    e.actions.push("created".to_string());
                }
            }
        }
        repo_entries.push(e);
    }
    if !new_dists.is_empty() || !new_repos.is_empty() {
        let _token = env.write_token();
        engine.configure(&new_dists, &new_repos)?;
    }
    for mut e in repo_entries {
        let status = engine.find_repository(&e.id)?.map(|r| r.status);
        if let Some(status) = status
            && req.pca
            && !status.is_active()
        {
            let acted = {
                let _token = env.write_token();
                config::act(engine, state, "repository", &e.id, "pca", env.fetch(), now)
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
        report.push(e);
    }

    // Chroots.
    let mut wanted_chroots: Vec<(String, String)> = Vec::new();
    for spec in &req.chroots {
        let (c, a) = spec.split_once(':').ok_or_else(|| {
            ConfigError::Setup(format!("'{spec}' is not '<codename>:<architecture>'"))
        })?;
        wanted_chroots.push((c.to_string(), a.to_string()));
    }
    if req.chroots_from_sources && req.chroots.is_empty() {
        for (c, archs) in &wanted_dists {
            for a in archs {
                wanted_chroots.push((c.clone(), a.clone()));
            }
        }
    }
    let chroots = crate::build::chroot::all(state)?;
    for (codename, arch) in &wanted_chroots {
        let id = format!("{codename}-{arch}");
        let mut e = entry("chroot", &id, "missing");
        let existing = chroots.iter().find(|c| c.id() == id);
        if let Some(c) = existing {
            e.status = match c.state {
                ChrootState::Ready => "active",
                ChrootState::Preparing => "preparing",
                ChrootState::Failed => "failed",
            }
            .to_string();
            e.message = c.message.clone();
        }
        let source = active_source(codename)?;
        let needs = existing.is_none_or(|c| c.state == ChrootState::Failed);
        match source {
            None if needs => {
                e.status = if existing.is_some() {
                    "failed"
                } else {
                    "waiting"
                }
                .to_string();
                e.message = format!("source '{codename}' is not active");
            }
            Some(s) if needs && req.pca => {
                let mirror = s.archives.first().cloned().unwrap_or_default();
                let mut chroot = Chroot::new(codename, arch, &mirror, backend);
                chroot.extra_sources = security_lines(state, engine, codename)?;
                match env.request_chroot(state, chroot) {
                    Ok(()) => {
                        e.status = "preparing".to_string();
                        e.message = format!("from {mirror}");
                        e.actions.push("pca".to_string());
                    }
                    Err(err) => {
                        e.status = "failed".to_string();
                        e.message = err;
                        e.actions.push("pca(failed)".to_string());
                    }
                }
            }
            _ => {}
        }
        report.push(e);
    }
    report.severity = report
        .entries
        .iter()
        .map(Entry::severity)
        .max()
        .unwrap_or(0);
    Ok(report)
}

/// The apt lines of a distribution's active extra sources that its chroots carry (from
/// [`config::CHROOT_PRIORITY`] up: security updates).
fn security_lines(
    state: &StateStore,
    engine: &Engine,
    codename: &str,
) -> Result<Vec<String>, ConfigError> {
    let Some(d) = engine.find_distribution(codename)? else {
        return Ok(Vec::new());
    };
    Ok(config::pinned_sources(state, &d)?
        .into_iter()
        .filter(|p| p.priority >= config::CHROOT_PRIORITY)
        .map(|p| p.line)
        .collect())
}

/// The mirrors named in apt's sources (one-line and deb822 formats), each ending in one `/`.
pub fn apt_archives(etc_apt: &std::path::Path) -> Vec<String> {
    let mut files = vec![etc_apt.join("sources.list")];
    if let Ok(dir) = std::fs::read_dir(etc_apt.join("sources.list.d")) {
        let mut more: Vec<_> = dir.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    let mut out: Vec<String> = Vec::new();
    let mut add = |u: &str| {
        if u.starts_with("http://") || u.starts_with("https://") {
            let url = format!("{}/", u.trim_end_matches('/'));
            if !out.contains(&url) {
                out.push(url);
            }
        }
    };
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let deb822 = f.extension().is_some_and(|e| e == "sources");
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') {
                continue;
            }
            if deb822 {
                if let Some(v) = line.strip_prefix("URIs:") {
                    v.split_whitespace().for_each(&mut add);
                }
            } else if let Some(rest) = line.strip_prefix("deb ") {
                let rest = rest.trim_start();
                let rest = match rest.strip_prefix('[') {
                    Some(r) => r.split_once(']').map_or("", |(_, r)| r),
                    None => rest,
                };
                if let Some(u) = rest.split_whitespace().next() {
                    add(u);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_from_apt_sources_in_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sources.list.d")).unwrap();
        std::fs::write(
            dir.path().join("sources.list"),
            "# comment\ndeb [arch=amd64 signed-by=/x.gpg] http://mirror.example/debian bookworm main\ndeb-src http://src.example/debian bookworm main\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("sources.list.d/debian.sources"),
            "Types: deb\nURIs: http://deb.debian.org/debian/\nSuites: bookworm\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n",
        )
        .unwrap();
        assert_eq!(
            apt_archives(dir.path()),
            [
                "http://mirror.example/debian/",
                "http://deb.debian.org/debian/",
                "http://deb.debian.org/debian-security/"
            ]
        );
    }
}
