//! Configuration objects that describe where packages come from: Archives (mirror URLs),
//! AptKeys (the keys that sign them), Sources (an origin's codename, checked against its real
//! Release file), with mini-buildd's status model ([`status`]), built-in knowledge of Debian
//! and Ubuntu ([`origin`]), and the `setup` command that creates a working instance from them
//! ([`setup`]). Network access goes through the small [`Fetch`] trait.

pub mod origin;
pub mod public;

use crate::control::Paragraph;
use crate::openpgp::{KeyInfo, Keyring};
use crate::repo::{Engine, RepoError};
use crate::state::{Record, StateError, StateStore, Token};
use crate::status::Status;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{kind} '{id}': {reason}")]
    Object {
        kind: &'static str,
        id: String,
        reason: String,
    },
    #[error("no {kind} '{id}'")]
    NotFound { kind: &'static str, id: String },
    #[error("setup: {0}")]
    Setup(String),
}

fn object_error(kind: &'static str, id: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Object {
        kind,
        id: id.to_string(),
        reason: reason.into(),
    }
}

/// The network, as the checks need it: a GET that answers with the HTTP status and body.
pub trait Fetch {
    /// `Err` means no answer at all (name, connection, timeout).
    fn get(&self, url: &str) -> Result<(u16, Vec<u8>), String>;

    /// Whether `url` answers at all, with any status: a redirect counts as an answer and is
    /// not followed (some mirrors redirect `dists` without a `Location`).
    fn reach(&self, url: &str) -> Result<u16, String> {
        self.get(url).map(|(status, _)| status)
    }
}

/// Plain HTTP with a timeout (mirrors are reached over http, as apt reaches them).
pub struct Http {
    agent: ureq::Agent,
}

impl Http {
    pub fn new(timeout: Duration) -> Http {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Http { agent }
    }
}

impl Http {
    /// Like [`Http::new`], reaching public hosts only (see [`public`]); no proxy, so that the
    /// host checked is the one asked.
    pub fn public_only(timeout: Duration) -> Http {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .proxy(None)
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::default(),
            public::PublicOnly::default(),
        );
        Http { agent }
    }
}

impl Default for Http {
    fn default() -> Self {
        Http::new(Duration::from_secs(15))
    }
}

impl Fetch for Http {
    fn get(&self, url: &str) -> Result<(u16, Vec<u8>), String> {
        let mut response = self.agent.get(url).call().map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| e.to_string())?;
        Ok((status, body))
    }

    fn reach(&self, url: &str) -> Result<u16, String> {
        let response = self
            .agent
            .get(url)
            .config()
            .max_redirects(0)
            .build()
            .call()
            .map_err(|e| e.to_string())?;
        Ok(response.status().as_u16())
    }
}

/// A mirror. Not a status model; its ping is refreshed by Source checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Archive {
    /// Ends in exactly one `/`.
    pub url: String,
    /// Milliseconds for `GET <url>dists` at the last check; -1 when unreachable.
    pub ping_ms: f64,
}

impl Record for Archive {
    const TABLE: &'static str = "archives";
}

impl Archive {
    /// An archive at `url`; a missing final `/` is added.
    pub fn new(url: &str) -> Result<Archive, ConfigError> {
        let with_slash = format!("{url}/");
        let url = if url.ends_with('/') { url } else { &with_slash };
        let valid = (url.starts_with("http://") || url.starts_with("https://"))
            && url.ends_with('/')
            && !url.ends_with("//")
            && !url.chars().any(char::is_whitespace);
        if !valid {
            return Err(object_error(
                "archive",
                url,
                "must be an http:// or https:// URL (ending in one '/', not more)",
            ));
        }
        Ok(Archive {
            url: url.to_string(),
            ping_ms: -1.0,
        })
    }

    /// Its id in the state store.
    pub fn key(url: &str) -> String {
        url.to_string()
    }

    /// Measures the ping (any HTTP answer counts as reachable).
    pub fn ping(&mut self, fetch: &dyn Fetch) -> Result<(), String> {
        let started = std::time::Instant::now();
        match fetch.reach(&format!("{}dists", self.url)) {
            Ok(_) => {
                self.ping_ms = started.elapsed().as_secs_f64() * 1000.0;
                Ok(())
            }
            Err(e) => {
                self.ping_ms = -1.0;
                Err(format!("unreachable: {e}"))
            }
        }
    }
}

/// Where AptKeys are found by id when no key text is given.
pub const HOST_KEYRINGS: &str = "/usr/share/keyrings";

/// A key that signs archives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AptKey {
    /// The id it was asked for (at least 8 hex digits); the long id once prepared.
    pub key_id: String,
    /// The public key, ASCII armored (filled on prepare when only an id was given).
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub info: Option<KeyInfo>,
    pub status: Status,
}

impl Record for AptKey {
    const TABLE: &'static str = "apt_keys";
}

impl AptKey {
    pub fn new(key_id: &str) -> Result<AptKey, ConfigError> {
        let id = key_id.to_ascii_uppercase();
        if id.len() < 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(object_error(
                "aptkey",
                key_id,
                "a key id has at least 8 hexadecimal digits",
            ));
        }
        Ok(AptKey {
            key_id: id,
            key: String::new(),
            info: None,
            status: Status::default(),
        })
    }

    /// Its id in the state store.
    pub fn key(id: &str) -> String {
        id.to_ascii_uppercase()
    }

    /// Resolves the key: from its own text, else from the keyrings in `dirs`: the host's
    /// `*-archive-*.gpg` (what keyring packages install) and any `*.gpg` or `*.asc` in the
    /// home's `etc/keyrings` (for origins whose keyring package the host lacks).
    pub fn prepare(&mut self, dirs: &[&Path]) -> Result<(), String> {
        let ring = if self.key.is_empty() {
            let mut ring = Keyring::new();
            for dir in dirs {
                add_keyrings(&mut ring, dir);
            }
            ring
        } else {
            Keyring::from_bytes(self.key.as_bytes()).map_err(|e| e.to_string())?
        };
        let (info, armored) = ring.find(&self.key_id).ok_or_else(|| {
            if self.key.is_empty() {
                format!(
                    "key {} is in none of the keyrings in {} (install the origin's keyring package, put its keyring there, or give the key itself)",
                    self.key_id,
                    dirs.iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" and ")
                )
            } else {
                format!("the given key text has no key {}", self.key_id)
            }
        })?;
        self.key = String::from_utf8_lossy(&armored).into_owned();
        self.info = Some(info);
        Ok(())
    }

    /// Check: the key is there and has an id.
    pub fn check(&self) -> Result<(), String> {
        match &self.info {
            Some(i) if !self.key.is_empty() && !i.long_id.is_empty() => Ok(()),
            _ => Err("no key material: prepare it".to_string()),
        }
    }
}

/// Adds the certificates of a directory's keyrings: in the host's keyring directory only
/// the archive keyrings (`*-archive-*.gpg`), elsewhere every `*.gpg` and `*.asc`. A missing
/// directory adds nothing.
fn add_keyrings(ring: &mut Keyring, dir: &Path) {
    let host = dir == Path::new(HOST_KEYRINGS);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                if host {
                    n.contains("-archive-") && n.ends_with(".gpg")
                } else {
                    n.ends_with(".gpg") || n.ends_with(".asc")
                }
            })
        })
        .collect();
    names.sort();
    for p in names {
        if let Ok(data) = std::fs::read(&p) {
            let _ = ring.add_bytes(&data);
        }
    }
}

/// An origin's codename at some archives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub origin: String,
    /// The directory under `dists/`.
    pub codename: String,
    #[serde(default)]
    pub extra_identifiers: BTreeMap<String, String>,
    /// Ids of the AptKeys of which at least one must have signed the Release file.
    pub apt_keys: Vec<String>,
    #[serde(default)]
    pub codeversion_override: String,
    #[serde(default = "yes")]
    pub check_valid_until: bool,
    #[serde(default)]
    pub remove_from_component: String,
    // What the last good check found.
    #[serde(default)]
    pub codeversion_guessed: String,
    #[serde(default)]
    pub description: String,
    /// Archives that carry it, fastest first.
    #[serde(default)]
    pub archives: Vec<String>,
    #[serde(default)]
    pub components: Vec<String>,
    #[serde(default)]
    pub architectures: Vec<String>,
    pub status: Status,
}

fn yes() -> bool {
    true
}

/// What a good check found in one archive's Release file.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub description: String,
    pub codeversion: String,
    pub components: Vec<String>,
    pub architectures: Vec<String>,
}

impl Record for Source {
    const TABLE: &'static str = "sources";
}

impl Source {
    pub fn new(spec: &origin::SourceSpec) -> Source {
        Source {
            origin: spec.origin.clone(),
            codename: spec.codename.clone(),
            extra_identifiers: spec.extra_identifiers.clone(),
            apt_keys: spec.apt_keys.clone(),
            codeversion_override: String::new(),
            check_valid_until: true,
            remove_from_component: spec.remove_from_component.clone(),
            codeversion_guessed: String::new(),
            description: String::new(),
            archives: Vec::new(),
            components: Vec::new(),
            architectures: Vec::new(),
            status: Status::default(),
        }
    }

    /// Its id in the state store.
    pub fn key(codename: &str) -> String {
        codename.to_string()
    }

    /// The codeversion version rules use: the override, else what the Release file said.
    pub fn codeversion(&self) -> &str {
        if self.codeversion_override.is_empty() {
            &self.codeversion_guessed
        } else {
            &self.codeversion_override
        }
    }

    /// Checks one archive: its `dists/<codename>/InRelease` (or `Release` and `Release.gpg`)
    /// must exist, identify this source, be valid now and be signed by one of `keys`.
    pub fn check_archive(
        &self,
        archive: &str,
        keys: &Keyring,
        fetch: &dyn Fetch,
        now: i64,
    ) -> Result<Found, String> {
        let base = format!("{archive}dists/{}/", self.codename);
        let (status, data) = fetch.get(&format!("{base}InRelease"))?;
        let (verified, issuers, body) = match status {
            200 => {
                let (verified, issuers) = keys.verify_cleartext_issuers(&data);
                let body = crate::openpgp::cleartext_body(&String::from_utf8_lossy(&data))
                    .map_err(|e| format!("InRelease: {e}"))?;
                (verified.map(|_| ()), issuers, body)
            }
            404 => {
                let (status, release) = fetch.get(&format!("{base}Release"))?;
                if status != 200 {
                    return Err(format!("no {base}InRelease or Release (HTTP {status})"));
                }
                let (status, sig) = fetch.get(&format!("{base}Release.gpg"))?;
                if status != 200 {
                    return Err(format!("{base}Release.gpg: HTTP {status}"));
                }
                let (verified, issuers) = keys.verify_detached_issuers(&release, &sig);
                (
                    verified.map(|_| ()),
                    issuers,
                    String::from_utf8_lossy(&release).into_owned(),
                )
            }
            other => return Err(format!("{base}InRelease: HTTP {other}")),
        };
        let release = Paragraph::parse(&body).map_err(|e| format!("{base}: Release: {e}"))?;
        let field = |name: &str| release.get(name).unwrap_or("").trim().to_string();
        let mut wanted: Vec<(String, String)> = vec![("Origin".into(), self.origin.clone())];
        if !self.extra_identifiers.contains_key("Codename") {
            wanted.push(("Codename".into(), self.codename.clone()));
        }
        wanted.extend(
            self.extra_identifiers
                .iter()
                .filter(|(k, _)| k.as_str() != "Origin")
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        for (name, value) in &wanted {
            let got = field(name);
            if &got != value {
                return Err(format!(
                    "{base}: the Release file says {name}: '{got}', not '{value}'"
                ));
            }
        }
        if self.check_valid_until {
            let until = field("Valid-Until");
            if !until.is_empty() {
                let t = httpdate::parse_http_date(&until.replace("UTC", "GMT"))
                    .map_err(|_| format!("{base}: Valid-Until '{until}' is not a date"))?;
                let t = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                if t < now {
                    return Err(format!("{base}: the Release file expired at {until}"));
                }
            }
        }
        if let Err(e) = verified {
            let mut ids = issuers;
            ids.dedup();
            return Err(format!(
                "{base}: no good signature by the source's keys ({}): {e}; it is signed by {}",
                self.apt_keys.join(", "),
                if ids.is_empty() {
                    "no key".to_string()
                } else {
                    ids.join(", ")
                }
            ));
        }
        let strip = |c: &str| {
            c.strip_prefix(self.remove_from_component.as_str())
                .unwrap_or(c)
                .to_string()
        };
        Ok(Found {
            description: field("Description"),
            codeversion: origin::codeversion(&self.origin, &self.codename, &field("Version")),
            components: field("Components").split_whitespace().map(strip).collect(),
            architectures: field("Architectures")
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        })
    }

    /// The whole check: every archive is pinged and tried; those that carry the source are
    /// kept (fastest first) and the Release data taken from the first. Fails, naming each
    /// archive's reason, when none does.
    pub fn check(
        &mut self,
        archives: &mut [Archive],
        keys: &Keyring,
        fetch: &dyn Fetch,
        now: i64,
    ) -> Result<(), String> {
        if archives.is_empty() {
            return Err("no archives are set up".to_string());
        }
        let mut good: Vec<(f64, String, Found)> = Vec::new();
        let mut errors = Vec::new();
        for a in archives.iter_mut() {
            if let Err(e) = a.ping(fetch) {
                errors.push(format!("{}: {e}", a.url));
                continue;
            }
            match self.check_archive(&a.url, keys, fetch, now) {
                Ok(found) => good.push((a.ping_ms, a.url.clone(), found)),
                Err(e) => errors.push(e),
            }
        }
        if good.is_empty() {
            return Err(format!(
                "no archive carries {} '{}': {}",
                self.origin,
                self.codename,
                errors.join("; ")
            ));
        }
        good.sort_by(|a, b| a.0.total_cmp(&b.0));
        let found = good[0].2.clone();
        self.archives = good.into_iter().map(|(_, url, _)| url).collect();
        self.description = found.description;
        self.codeversion_guessed = found.codeversion;
        self.components = found.components;
        self.architectures = found.architectures;
        Ok(())
    }
}

/// Reads a stored object of a kind.
pub fn load<T: Record>(state: &StateStore, kind: &'static str, id: &str) -> Result<T, ConfigError> {
    state.get::<T>(id)?.ok_or_else(|| ConfigError::NotFound {
        kind,
        id: id.to_string(),
    })
}

/// The keyring of a source's active keys.
pub fn source_keyring(state: &StateStore, source: &Source) -> Result<Keyring, ConfigError> {
    let mut ring = Keyring::new();
    for id in &source.apt_keys {
        let k: AptKey = load(state, "aptkey", &AptKey::key(id))?;
        if k.status.is_active() {
            ring.add_bytes(k.key.as_bytes())
                .map_err(|e| object_error("aptkey", id, e.to_string()))?;
        }
    }
    Ok(ring)
}

/// The kinds `objects` and `object_action` work on.
pub const KINDS: &[&str] = &["archive", "aptkey", "source", "repository"];

/// An action of the status model on a stored AptKey or Source; for a Source, its keys are
/// prepared, checked and activated first (its dependencies). Returns the new status; a failed
/// check is stored (Failed, with its reason) and also returned as the error.
pub fn act(
    engine: &Engine,
    state: &StateStore,
    kind: &str,
    id: &str,
    action: &str,
    fetch: &dyn Fetch,
    now: i64,
) -> Result<Status, ConfigError> {
    match kind {
        "aptkey" => act_key(state, engine.home(), id, action, now),
        "source" => act_source(state, engine.home(), id, action, fetch, now, &|| {
            Box::new(())
        }),
        "repository" => act_repository(engine, id, action, now),
        "archive" => Err(object_error(
            "archive",
            id,
            "archives have no status; a source check pings them",
        )),
        other => Err(ConfigError::Setup(format!(
            "unknown kind '{other}' (known: {})",
            KINDS.join(", ")
        ))),
    }
}

/// An apt source a build sees besides the chroot's own, with its pin priority (e.g.
/// backports at 1: used only for what nothing else provides, or when asked for).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PinnedSource {
    /// `deb <url> <codename> <components>`
    pub line: String,
    /// Its Release's Codename, for the pin.
    pub codename: String,
    pub priority: i64,
}

/// Extra sources at this pin priority or above (security updates) are in the chroot itself;
/// builds get the others (backports) as pinned extra repositories.
pub const CHROOT_PRIORITY: i64 = 500;

/// A distribution's active extra sources as builds see them: the apt line (its first
/// archive, the distribution's components) and pin priority of each.
pub fn pinned_sources(
    state: &StateStore,
    d: &crate::repo::distribution::Distribution,
) -> Result<Vec<PinnedSource>, ConfigError> {
    let mut out = Vec::new();
    for extra in &d.extra_sources {
        let Some(s) = state
            .get::<Source>(&Source::key(&extra.source))?
            .filter(|s| s.status.is_active())
        else {
            continue;
        };
        if let Some(url) = s.archives.first() {
            out.push(PinnedSource {
                line: format!("deb {url} {} {}", s.codename, d.components.join(" ")),
                codename: s.codename.clone(),
                priority: extra.priority,
            });
        }
    }
    Ok(out)
}

/// An object with the status model: its own prepare and check work.
trait StatusObject {
    fn status(&mut self) -> &mut Status;
    fn prepare(&mut self) -> Result<(), String>;
    fn check(&mut self) -> Result<(), String>;
}

/// The steps of an action: `prepare`, `check`, `activate`, `deactivate`, `remove`, `pc`
/// (prepare and check) and `pca` (prepare, check, activate).
pub fn steps(action: &str) -> Option<&'static [&'static str]> {
    Some(match action {
        "prepare" => &["prepare"],
        "check" => &["check"],
        "activate" => &["activate"],
        "deactivate" => &["deactivate"],
        "remove" => &["remove"],
        "pc" => &["prepare", "check"],
        "pca" => &["prepare", "check", "activate"],
        _ => return None,
    })
}

pub const ACTIONS: &str = "prepare, check, activate, deactivate, remove, pc, pca";

/// Runs an action on an object; a failing prepare or check leaves the object Failed with the
/// reason (and is returned as the error).
fn drive(obj: &mut dyn StatusObject, action: &str, now: i64) -> Result<(), String> {
    let steps =
        steps(action).ok_or_else(|| format!("unknown action '{action}' (known: {ACTIONS})"))?;
    for step in steps {
        match *step {
            "prepare" => {
                if obj.status().needs_prepare() {
                    match obj.prepare() {
                        Ok(()) => obj.status().prepared(),
                        Err(e) => {
                            obj.status().failed(e.clone());
                            return Err(e);
                        }
                    }
                }
            }
            "check" => {
                obj.status().may_check().map_err(|r| r.to_string())?;
                match obj.check() {
                    Ok(()) => obj.status().checked(now),
                    Err(e) => {
                        obj.status().failed(e.clone());
                        return Err(e);
                    }
                }
            }
            "activate" => obj.status().activate().map_err(|r| r.to_string())?,
            "deactivate" => obj.status().deactivate(),
            _ => obj.status().remove(),
        }
    }
    Ok(())
}

/// An apt key with the home whose `etc/keyrings` its prepare also searches.
struct KeyPrepare<'a> {
    key: &'a mut AptKey,
    home: &'a Path,
}

impl StatusObject for KeyPrepare<'_> {
    fn status(&mut self) -> &mut Status {
        &mut self.key.status
    }
    fn prepare(&mut self) -> Result<(), String> {
        let own = home_keyrings(self.home);
        self.key.prepare(&[Path::new(HOST_KEYRINGS), &own])
    }
    fn check(&mut self) -> Result<(), String> {
        self.key.check()
    }
}

/// Where administrators put keyrings the host's packages do not install.
pub fn home_keyrings(home: &Path) -> std::path::PathBuf {
    home.join("etc/keyrings")
}

/// A source with what its check needs.
struct SourceCheck<'a> {
    source: &'a mut Source,
    archives: &'a mut [Archive],
    keys: Keyring,
    fetch: &'a dyn Fetch,
    now: i64,
}

impl StatusObject for SourceCheck<'_> {
    fn status(&mut self) -> &mut Status {
        &mut self.source.status
    }
    fn prepare(&mut self) -> Result<(), String> {
        if self.source.apt_keys.is_empty() {
            return Err("no apt keys: a source needs at least one".to_string());
        }
        Ok(())
    }
    fn check(&mut self) -> Result<(), String> {
        if self.keys.is_empty() {
            return Err(format!(
                "none of its keys ({}) is active",
                self.source.apt_keys.join(", ")
            ));
        }
        self.source
            .check(self.archives, &self.keys, self.fetch, self.now)
    }
}

/// A repository with the engine that publishes and checks it. Prepare publishes its
/// distributions and repairs damaged index files; check verifies what is published as apt
/// would (signature, sizes, digests).
/// Remove only takes its status back to Removed: packages and the published tree stay, and a
/// removed repository takes no uploads until it is prepared and activated again.
struct RepositoryCheck<'a> {
    engine: &'a Engine,
    repository: &'a mut crate::repo::Repository,
}

impl StatusObject for RepositoryCheck<'_> {
    fn status(&mut self) -> &mut Status {
        &mut self.repository.status
    }
    fn prepare(&mut self) -> Result<(), String> {
        let problems = self
            .engine
            .repair_repository(&self.repository.identity)
            .map_err(|e| e.to_string())?;
        report_problems(&problems)
    }
    fn check(&mut self) -> Result<(), String> {
        let problems = self
            .engine
            .check_repository(&self.repository.identity)
            .map_err(|e| e.to_string())?;
        report_problems(&problems)
    }
}

/// The first five problems of a repository check, and how many more there are.
fn report_problems(problems: &[crate::repo::publish::Problem]) -> Result<(), String> {
    let shown: Vec<String> = problems.iter().take(5).map(|p| p.to_string()).collect();
    match problems.len() {
        0 => Ok(()),
        n if n <= 5 => Err(shown.join("; ")),
        n => Err(format!("{}; and {} more", shown.join("; "), n - 5)),
    }
}

/// [`act`] for a caller that holds no write token: `token` takes it. A Source's check
/// fetches without it and takes it only to store what it found; everything else runs
/// holding it.
#[allow(clippy::too_many_arguments)]
pub fn act_taking<'t>(
    engine: &Engine,
    state: &StateStore,
    kind: &str,
    id: &str,
    action: &str,
    fetch: &dyn Fetch,
    now: i64,
    token: &dyn Fn() -> Box<dyn Token + 't>,
) -> Result<Status, ConfigError> {
    if kind == "source" {
        return act_source(state, engine.home(), id, action, fetch, now, token);
    }
    let _token = token();
    act(engine, state, kind, id, action, fetch, now)
}

fn act_repository(
    engine: &Engine,
    id: &str,
    action: &str,
    now: i64,
) -> Result<Status, ConfigError> {
    let mut repository = engine
        .find_repository(id)?
        .ok_or_else(|| ConfigError::NotFound {
            kind: "repository",
            id: id.to_string(),
        })?;
    let result = drive(
        &mut RepositoryCheck {
            engine,
            repository: &mut repository,
        },
        action,
        now,
    );
    engine.put_repository(&repository)?;
    result
        .map(|()| repository.status.clone())
        .map_err(|e| object_error("repository", id, e))
}

fn act_key(
    state: &StateStore,
    home: &Path,
    id: &str,
    action: &str,
    now: i64,
) -> Result<Status, ConfigError> {
    let key = AptKey::key(id);
    let mut k: AptKey = load(state, "aptkey", &key)?;
    let result = drive(&mut KeyPrepare { key: &mut k, home }, action, now);
    state.put(&key, &k)?;
    result
        .map(|()| k.status.clone())
        .map_err(|e| object_error("aptkey", id, e))
}

fn act_source<'t>(
    state: &StateStore,
    home: &Path,
    id: &str,
    action: &str,
    fetch: &dyn Fetch,
    now: i64,
    token: &dyn Fn() -> Box<dyn Token + 't>,
) -> Result<Status, ConfigError> {
    let key = Source::key(id);
    let loaded: Source = load(state, "source", &key)?;
    // Its keys first, with the same action (deactivate and remove stay with the source).
    let mut key_errors = Vec::new();
    if !matches!(action, "deactivate" | "remove") {
        let _token = token();
        for k in &loaded.apt_keys {
            if let Err(e) = act_key(state, home, k, action, now) {
                key_errors.push(e.to_string());
            }
        }
    }
    let mut source = loaded.clone();
    let before: Vec<Archive> = state
        .all::<Archive>()?
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    let mut archives = before.clone();
    let keys = source_keyring(state, &source)?;
    let result = {
        let mut sc = SourceCheck {
            source: &mut source,
            archives: &mut archives,
            keys,
            fetch,
            now,
        };
        drive(&mut sc, action, now)
    };
    let result = result.map_err(|e| {
        if key_errors.is_empty() {
            e
        } else {
            format!("{e} ({})", key_errors.join("; "))
        }
    });
    if let Err(e) = &result {
        source.status.message = e.clone();
    }
    let _token = token();
    if load::<Source>(state, "source", &key)? != loaded {
        return Err(object_error(
            "source",
            id,
            "it was changed while it was checked; run the action again",
        ));
    }
    // Only the archives this check pinged: another writer's meanwhile stay.
    let checked: Vec<(String, &Archive)> = archives
        .iter()
        .filter(|a| !before.contains(a))
        .map(|a| (Archive::key(&a.url), a))
        .collect();
    state.put_all::<Archive, _>(&checked)?;
    state.put(&key, &source)?;
    result
        .map(|()| source.status.clone())
        .map_err(|e| object_error("source", id, e))
}

/// Edits one field of a stored AptKey or Source; the object is marked changed (prepare it
/// again) unless it was removed.
pub fn set(
    state: &StateStore,
    kind: &str,
    id: &str,
    field: &str,
    value: &[String],
) -> Result<Status, ConfigError> {
    let kind_name: &'static str = if kind == "aptkey" { "aptkey" } else { "source" };
    let one = || -> Result<String, ConfigError> {
        match value {
            [v] => Ok(v.clone()),
            _ => Err(object_error(
                kind_name,
                id,
                format!("{field} takes exactly one value"),
            )),
        }
    };
    match kind {
        "aptkey" => {
            let key = AptKey::key(id);
            let mut k: AptKey = load(state, "aptkey", &key)?;
            match field {
                "key" => {
                    let text = one()?;
                    Keyring::from_bytes(text.as_bytes())
                        .map_err(|e| object_error("aptkey", id, e.to_string()))?;
                    k.key = text;
                    k.info = None;
                }
                other => {
                    return Err(object_error(
                        "aptkey",
                        id,
                        format!("'{other}' cannot be set (settable: key)"),
                    ));
                }
            }
            k.status.changed();
            state.put(&key, &k)?;
            Ok(k.status)
        }
        "source" => {
            let key = Source::key(id);
            let mut s: Source = load(state, "source", &key)?;
            match field {
                "apt_keys" => {
                    let mut keys = Vec::new();
                    for v in value {
                        let k = AptKey::new(v)?;
                        if state.get::<AptKey>(&AptKey::key(&k.key_id))?.is_none() {
                            state.put(&AptKey::key(&k.key_id), &k)?;
                        }
                        keys.push(k.key_id);
                    }
                    s.apt_keys = keys;
                }
                "codeversion_override" => s.codeversion_override = one()?,
                "remove_from_component" => s.remove_from_component = one()?,
                "check_valid_until" => {
                    s.check_valid_until = match one()?.as_str() {
                        "true" | "yes" | "1" => true,
                        "false" | "no" | "0" => false,
                        other => {
                            return Err(object_error(
                                "source",
                                id,
                                format!("check_valid_until: '{other}' is not true or false"),
                            ));
                        }
                    }
                }
                "extra_identifiers" => {
                    let mut ids = BTreeMap::new();
                    for v in value {
                        let (k, v) = v.split_once('=').ok_or_else(|| {
                            object_error("source", id, format!("'{v}' is not <Field>=<value>"))
                        })?;
                        if k == "Origin" {
                            return Err(object_error(
                                "source",
                                id,
                                "Origin is the source's origin, not an extra identifier",
                            ));
                        }
                        ids.insert(k.to_string(), v.to_string());
                    }
                    s.extra_identifiers = ids;
                }
                other => {
                    return Err(object_error(
                        "source",
                        id,
                        format!(
                            "'{other}' cannot be set (settable: apt_keys, codeversion_override, check_valid_until, extra_identifiers, remove_from_component; origin and codename are fixed)"
                        ),
                    ));
                }
            }
            s.status.changed();
            state.put(&key, &s)?;
            Ok(s.status)
        }
        other => Err(ConfigError::Setup(format!(
            "kind '{other}' cannot be edited (editable: aptkey, source)"
        ))),
    }
}

#[cfg(test)]
mod tests;
