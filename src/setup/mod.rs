//! `setup`: from a few options (explicit lists, or "from origins", "from sources", ...) to the
//! objects a working instance needs — archives, keys, sources, distributions, repositories,
//! chroots — and a report of each with its status and what differs. Without `update` it only
//! reports; `update` creates and updates objects, `pca` prepares, checks and activates them.
//!
//! Objects that depend on a source (its distribution, the repositories and chroots on that
//! codename) are only created once the source is active, so a failed check never leaves a
//! repository for an archive that does not exist.

mod archives;
mod chroots;
mod distributions;
mod preset;
mod remotes;
mod repositories;
mod sources;

pub use archives::apt_archives;

use crate::build::chroot::Chroot;
use crate::config::{ConfigError, Fetch};
use crate::repo::Engine;
use crate::state::StateStore;
use crate::status::Status;
use serde::Serialize;

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
    /// Peer instances (`[http://]host:port`).
    pub remotes: Vec<String>,
    pub update: bool,
    pub pca: bool,
}

/// What setup needs from the machine.
pub trait Env {
    fn fetch(&self) -> &dyn Fetch;
    /// Seconds since the epoch.
    fn now(&self) -> i64;
    /// The distro-info-data table of that name (`debian.csv`), if installed.
    fn distro_info(&self, file: &str) -> Option<String>;
    /// The mirrors the host's apt sources name.
    fn apt_archives(&self) -> Vec<String>;
    /// The host's architecture first, then the others it builds natively (its 32-bit
    /// companion).
    fn native_architectures(&self) -> Vec<String>;
    /// Starts preparing a chroot in the background.
    fn request_chroot(&mut self, state: &StateStore, chroot: Chroot) -> Result<(), String>;
    /// The FTP endpoints of the daemon's settings, and the one it serves now (`host:port`).
    fn ftp_endpoints(&self) -> (Vec<String>, Option<String>);
    /// Writes the FTP endpoints into the daemon's settings.
    fn set_ftp_endpoints(&mut self, endpoints: &[String]) -> Result<(), String>;
    /// Holds the daemon's write token while the returned value lives. Setup takes it only
    /// to change the engine (the configuration and its publish, a repository's check);
    /// fetching and checking archives, keys and sources run without it.
    fn write_token(&self) -> Box<dyn crate::state::Token + '_>;
    /// Runs a status action on a stored remote (it needs our URL and key, and the network).
    fn act_remote(&self, state: &StateStore, url: &str, action: &str) -> Result<(), String>;
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

/// Runs setup: builds the report and, when asked, applies it.
pub fn run(
    engine: &Engine,
    state: &StateStore,
    req: &Request,
    env: &mut dyn Env,
) -> Result<Report, ConfigError> {
    let mut req = req.clone();
    preset::apply_preset(engine, state, &mut req)?;
    let backend = chroots::parse_backend(&req.chroots_backend)?;
    let planned = sources::plan_sources(&req, env)?;
    let now = env.now();
    let mut setup = Setup {
        engine,
        state,
        env,
        req,
        report: Report::default(),
        now,
    };
    setup.instance_entry();
    setup.ftp_step()?;
    setup.archives_step()?;
    let key_entries = setup.keys_step(&planned)?;
    setup.sources_step(&planned)?;
    setup.key_status_step(key_entries)?;
    let wanted_dists = setup.wanted_distributions(&planned)?;
    let new_dists = setup.distributions_step(&planned, &wanted_dists)?;
    let (new_repos, repo_entries) = setup.repositories_step(&wanted_dists, &new_dists)?;
    setup.configure(&new_dists, &new_repos)?;
    setup.repositories_pca(repo_entries)?;
    setup.chroots_step(&wanted_dists, backend)?;
    setup.remotes_step()?;
    Ok(setup.finish())
}

/// One run of setup: what it works on, the request (its preset applied), and the report it
/// builds step by step.
struct Setup<'a> {
    engine: &'a Engine,
    state: &'a StateStore,
    env: &'a mut dyn Env,
    req: Request,
    report: Report,
    /// When the run started (seconds since the epoch).
    now: i64,
}

impl Setup<'_> {
    /// The instance: its identity, and the one asked for if it differs (it cannot change).
    fn instance_entry(&mut self) {
        let current = self.engine.instance().identity.clone();
        let mut e = entry("instance", &current, "active");
        if let Some(want) = self.req.identity.as_ref().filter(|w| **w != current) {
            e.diff.push(format!("identity: {current} → {want}"));
            e.message = "the identity is fixed once the archive key exists: give it to `mbd daemon --identity` on a new home".to_string();
        }
        self.report.push(e);
    }

    /// The daemon's FTP endpoints, when asked for: `update` writes them into its settings.
    fn ftp_step(&mut self) -> Result<(), ConfigError> {
        let Some(spec) = &self.req.ftp_endpoint else {
            return Ok(());
        };
        let want = ftp_endpoints_wanted(spec)?;
        let (configured, serving) = self.env.ftp_endpoints();
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
            if self.req.update {
                match self.env.set_ftp_endpoints(&want) {
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
        self.report.push(e);
        Ok(())
    }

    /// The report, its severity the highest of its entries'.
    fn finish(mut self) -> Report {
        self.report.severity = self
            .report
            .entries
            .iter()
            .map(Entry::severity)
            .max()
            .unwrap_or(0);
        self.report
    }
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
