//! The static settings of a home, `<home>/etc/mbd.toml` (endpoints, build and retention
//! knobs; runtime objects live in the store), and the host's Debian codename and
//! architecture. Read by the daemon at start and changed by `setup`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SettingsError + '_ {
    move |source| SettingsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The static settings, `<home>/etc/mbd.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Host name put in URLs given to clients (default: the address bound, or this host's name
    /// when bound to all addresses).
    #[serde(default)]
    pub hostname: String,
    /// Addresses to serve HTTP on; the first one makes the URL.
    pub http_endpoints: Vec<String>,
    /// Addresses to serve HTTPS on (needs `tls_certificate` and `tls_key`).
    #[serde(default)]
    pub https_endpoints: Vec<String>,
    /// Addresses for FTP uploads (empty: none); FTPS (AUTH TLS) too when a certificate is set.
    #[serde(default = "default_ftp")]
    pub ftp_endpoints: Vec<String>,
    /// PEM file with the server's certificate chain, for HTTPS and FTPS.
    #[serde(default)]
    pub tls_certificate: String,
    /// PEM file with the certificate's private key.
    #[serde(default)]
    pub tls_key: String,
    /// Uploads need a user's login (HTTP Basic for PUT; USER/PASS for FTP) instead of being
    /// anonymous. Signatures are checked either way.
    #[serde(default)]
    pub incoming_login: bool,
    /// Networks (CIDR) whose hosts may upload without a login when `incoming_login` is off.
    /// Loopback only by default: anonymous uploads to a repository that builds unsigned ones
    /// run code in a build chroot, so opening them to the network is a decision.
    #[serde(default = "default_anonymous_from")]
    pub anonymous_uploads_from: Vec<String>,
    /// `tracing` filter: error, warn, info, debug, trace (or a full directive).
    pub log_level: String,
    /// How many builds run at once.
    pub build_slots: u32,
    /// Parallel jobs within one build (`--jobs`, `DEB_BUILD_OPTIONS=parallel=N`).
    #[serde(default = "default_build_jobs")]
    pub build_jobs: u32,
    /// Seconds one build may take before it is stopped (and fails).
    #[serde(default = "default_build_timeout")]
    pub build_timeout: u64,
    /// Seconds a remote building for us may not answer before its build goes to another
    /// builder (or fails).
    #[serde(default = "default_remote_timeout")]
    pub remote_timeout: u64,
    /// Lintian on build results (on the host): disabled, ignore (run only), errfail,
    /// warnfail. An upload's `lintian-mode` option overrides it.
    #[serde(default = "default_lintian")]
    pub lintian_mode: String,
    /// autopkgtest after a successful build (in a session of the build's chroot): disabled,
    /// ignore, errfail, warnfail. A distribution's `autopkgtest_mode` and an upload's
    /// `autopkgtest-mode` option override it.
    #[serde(default = "default_lintian")]
    pub autopkgtest_mode: String,
    /// On a new home, prepare the chroot for the host's codename and architecture.
    #[serde(default = "default_true")]
    pub prepare_default_chroot: bool,
    /// The most bytes incoming may hold at once (files waiting for their `.changes` and
    /// files being received); an upload that would pass it is refused (HTTP 507).
    #[serde(default = "default_incoming_max_bytes")]
    pub incoming_max_bytes: u64,
    /// The most bytes the files from one client address may take in incoming at once.
    #[serde(default = "default_incoming_client_max_bytes")]
    pub incoming_client_max_bytes: u64,
    /// The largest file an upload may carry (`.changes`, `.dsc` and `.buildinfo` files are
    /// capped at 1 MiB besides).
    #[serde(default = "default_incoming_file_max_bytes")]
    pub incoming_file_max_bytes: u64,
    /// Let `port_ext` fetch from loopback, private and link-local addresses (off: a caller's
    /// URL never reaches the services only this host can reach).
    #[serde(default)]
    pub fetch_from_private_networks: bool,
    /// Seconds a file that belongs to no `.changes` may wait in incoming.
    #[serde(default = "default_orphan_age")]
    pub incoming_orphan_age: u64,
    /// How long history and automatic snapshots are kept (applied by the crontab's jobs).
    #[serde(default)]
    pub retention: Retention,
    /// Schedules of the internal crontab's jobs (job id = five crontab(5) fields in UTC, or
    /// "" to disable it); jobs not named keep their default schedule (see `mbd api crontab`).
    #[serde(default)]
    pub crontab: std::collections::BTreeMap<String, String>,
    /// Seconds before a failed webhook delivery is tried again (doubling after each try).
    #[serde(default = "default_webhook_retry")]
    pub webhook_retry_seconds: u64,
    /// Where events are POSTed (`[[webhooks]]`: url, secret_file, kinds, repositories,
    /// sources).
    /// Mail notifications (`[mail]`: smtp, user, password_file, from, notify,
    /// allow_emails_to, `[mail.repositories.<id>]`).
    #[serde(default)]
    pub mail: crate::mail::MailSettings,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<crate::webhook::Target>,
}

fn default_webhook_retry() -> u64 {
    10
}

/// Retention of history: a record goes when it is older than its age limit and is not among
/// the newest `*_keep` of its kind. Uploads that are still building always stay.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Days an upload decision (event) is kept.
    pub events_days: u64,
    /// The newest events kept whatever their age.
    pub events_keep: usize,
    /// Days an ended upload is kept, with its build records, build logs and queued files.
    pub uploads_days: u64,
    /// The newest ended uploads kept whatever their age.
    pub uploads_keep: usize,
    /// Weeks a `WEEKLY_` snapshot is kept.
    pub snapshots_weekly_weeks: u64,
    /// Weeks a `MONTHLY_` snapshot is kept.
    pub snapshots_monthly_weeks: u64,
    /// Weeks a `YEARLY_` snapshot is kept.
    pub snapshots_yearly_weeks: u64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            events_days: 365,
            events_keep: 1000,
            uploads_days: 365,
            uploads_keep: 200,
            snapshots_weekly_weeks: 8,
            snapshots_monthly_weeks: 48,
            snapshots_yearly_weeks: 192,
        }
    }
}

fn default_build_jobs() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

fn default_remote_timeout() -> u64 {
    300
}

fn default_build_timeout() -> u64 {
    4 * 3600
}

fn default_lintian() -> String {
    "disabled".to_string()
}

fn default_true() -> bool {
    true
}

fn default_orphan_age() -> u64 {
    crate::incoming::ORPHAN_AGE.as_secs()
}

fn default_incoming_client_max_bytes() -> u64 {
    crate::incoming::Limits::default().per_client
}

fn default_incoming_file_max_bytes() -> u64 {
    crate::incoming::Limits::default().per_file
}

fn default_incoming_max_bytes() -> u64 {
    20 << 30
}

fn default_anonymous_from() -> Vec<String> {
    vec!["127.0.0.0/8".to_string(), "::1/128".to_string()]
}

/// A network in CIDR notation (`192.168.1.0/24`, `::1/128`; a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: std::net::IpAddr,
    prefix: u32,
}

impl Network {
    pub fn parse(text: &str) -> Option<Network> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a.parse().ok()?, Some(p.parse().ok()?)),
            None => (text.trim().parse().ok()?, None),
        };
        let bits = if matches!(addr, std::net::IpAddr::V4(_)) {
            32
        } else {
            128
        };
        let prefix = prefix.unwrap_or(bits);
        (prefix <= bits).then_some(Network { addr, prefix })
    }

    /// Whether `ip` is in the network (an IPv4 address mapped into IPv6 counts as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let masked = |bits: u128, width: u32| {
            let keep = if self.prefix == 0 {
                0
            } else {
                u128::MAX << (width - self.prefix)
            };
            bits & keep
        };
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                masked(u32::from(n).into(), 32) == masked(u32::from(a).into(), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                masked(u128::from(n), 128) == masked(u128::from(a), 128)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Settings {
    /// The upload limits.
    pub fn incoming_limits(&self) -> crate::incoming::Limits {
        crate::incoming::Limits {
            total: self.incoming_max_bytes,
            per_client: self.incoming_client_max_bytes,
            per_file: self.incoming_file_max_bytes,
        }
    }

    /// `anonymous_uploads_from`, parsed.
    pub fn anonymous_networks(&self) -> Result<Vec<Network>, String> {
        self.anonymous_uploads_from
            .iter()
            .map(|n| {
                Network::parse(n).ok_or_else(|| {
                    format!("anonymous_uploads_from: '{n}' is not a network (e.g. 192.168.1.0/24)")
                })
            })
            .collect()
    }
}

fn default_ftp() -> Vec<String> {
    vec!["0.0.0.0:8067".to_string()]
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            hostname: String::new(),
            http_endpoints: vec!["0.0.0.0:8066".to_string()],
            https_endpoints: Vec::new(),
            ftp_endpoints: default_ftp(),
            tls_certificate: String::new(),
            tls_key: String::new(),
            incoming_login: false,
            anonymous_uploads_from: default_anonymous_from(),
            log_level: "info".to_string(),
            build_slots: 1,
            build_jobs: default_build_jobs(),
            build_timeout: default_build_timeout(),
            remote_timeout: default_remote_timeout(),
            lintian_mode: default_lintian(),
            autopkgtest_mode: default_lintian(),
            prepare_default_chroot: true,
            incoming_orphan_age: default_orphan_age(),
            incoming_max_bytes: default_incoming_max_bytes(),
            incoming_client_max_bytes: default_incoming_client_max_bytes(),
            incoming_file_max_bytes: default_incoming_file_max_bytes(),
            fetch_from_private_networks: false,
            retention: Retention::default(),
            crontab: std::collections::BTreeMap::new(),
            webhook_retry_seconds: default_webhook_retry(),
            mail: Default::default(),
            webhooks: Vec::new(),
        }
    }
}

pub fn settings_path(home: &Path) -> PathBuf {
    home.join("etc/mbd.toml")
}

impl Settings {
    /// Reads the settings; writes the defaults first if there are none.
    pub fn load_or_create(home: &Path) -> Result<Settings, SettingsError> {
        let path = settings_path(home);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let s: Settings = toml::from_str(&text).map_err(|e| SettingsError::Invalid {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                s.anonymous_networks()
                    .map_err(|reason| SettingsError::Invalid { path, reason })?;
                Ok(s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let s = Settings::default();
                s.save(home)?;
                Ok(s)
            }
            Err(e) => Err(SettingsError::Io { path, source: e }),
        }
    }
}

impl Settings {
    /// Changes the settings file (what `setup --ftp-endpoint` does); the running daemon reads
    /// it at its next start.
    pub fn update(home: &Path, change: impl FnOnce(&mut Settings)) -> Result<(), SettingsError> {
        let mut s = Settings::load_or_create(home)?;
        change(&mut s);
        s.save(home)
    }

    fn save(&self, home: &Path) -> Result<(), SettingsError> {
        let path = settings_path(home);
        let text = format!(
            "# mbd daemon settings. Runtime objects (repositories, users) live in the store.\n{}",
            toml::to_string(self).map_err(|e| SettingsError::Invalid {
                path: path.clone(),
                reason: e.to_string(),
            })?
        );
        write_atomic(&path, text.as_bytes(), 0o640)
    }
}

pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), SettingsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The host's Debian codename (from /etc/os-release) and native architecture.
pub fn host_distribution() -> (String, String) {
    let codename = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("VERSION_CODENAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "bookworm".to_string());
    let arch = std::process::Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| {
            match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                "x86" => "i386",
                "arm" => "armhf",
                "powerpc64" => "ppc64el",
                other => other,
            }
            .to_string()
        });
    (codename, arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_what_their_prefix_says() {
        let n = |t: &str| Network::parse(t).unwrap();
        let ip = |t: &str| t.parse::<std::net::IpAddr>().unwrap();
        assert!(n("127.0.0.0/8").contains(ip("127.0.0.2")));
        assert!(!n("127.0.0.1/32").contains(ip("127.0.0.2")));
        assert!(n("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(n("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(n("::1/128").contains(ip("::1")));
        assert!(!n("::1/128").contains(ip("127.0.0.1")));
        assert!(
            n("127.0.0.0/8").contains(ip("::ffff:127.0.0.5")),
            "mapped IPv4"
        );
        assert!(n("192.168.1.0/24").contains(ip("192.168.1.200")));
        assert!(!n("192.168.1.0/24").contains(ip("192.168.2.1")));
        for bad in ["x", "10.0.0.0/33", "::/129", "10.0.0.0/"] {
            assert!(Network::parse(bad).is_none(), "{bad}");
        }
    }
}
