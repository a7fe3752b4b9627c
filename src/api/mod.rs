//! The daemon's API: one registry ([`calls::CALLS`]) declares every call once — its name, the
//! authorization level it needs, whether it changes anything, its typed arguments with defaults
//! and its documentation. The HTTP routes (`/api/<call>`), the `mbd api` command line and the
//! help texts are all generated from that table.
//!
//! A call's handler is plain synchronous code on a [`Context`]; the daemon runs it off the async
//! runtime. Arguments arrive as text (query string or form) and are checked against the
//! declaration before any handler runs: a wrong type or an unknown name is a 400 that names it.

pub use crate::users as auth;
pub use crate::users::Level;
pub mod bootstrap;
pub mod calls;
pub mod client;
pub mod follow;
pub mod handlers;

use crate::repo::{Engine, RepoError};
use crate::state::StateStore;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The type of an argument's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    Bool,
    /// Comma-separated on the wire; repeated values on the command line.
    List,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Int => "an integer",
            Kind::Bool => "true or false",
            Kind::List => "a comma-separated list",
        }
    }
}

/// One declared argument of a call.
#[derive(Debug)]
pub struct Arg {
    pub name: &'static str,
    pub kind: Kind,
    /// Required arguments are positional on the command line.
    pub required: bool,
    /// The value when not given (text, parsed like a given value).
    pub default: &'static str,
    pub doc: &'static str,
}

/// A parsed argument value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<String>),
}

/// A call's result: text (printed verbatim by `output=plain`) or a JSON document.
#[derive(Debug)]
pub enum Output {
    Text(String),
    Json(serde_json::Value),
}

impl Output {
    pub fn json<T: Serialize>(value: &T) -> Result<Output, ApiError> {
        serde_json::to_value(value)
            .map(Output::Json)
            .map_err(|e| ApiError::Internal(format!("serializing a result: {e}")))
    }
}

/// What a handler gets: the checked arguments and the caller.
pub struct Invocation {
    pub args: Args,
    pub user: Option<auth::User>,
}

pub type Handler = fn(&Context, &Invocation) -> Result<Output, ApiError>;

/// One API call, declared once.
pub struct Call {
    pub name: &'static str,
    pub level: Level,
    /// Changes state: only POST is accepted.
    pub changes: bool,
    /// Needs a started daemon (refused with 503 in maintenance).
    pub running: bool,
    pub doc: &'static str,
    pub args: &'static [Arg],
    pub run: Handler,
}

impl Call {
    pub fn method(&self) -> &'static str {
        if self.changes { "POST" } else { "GET" }
    }

    /// Checks raw `name=value` pairs against the declaration; fills in defaults.
    pub fn parse_args(&self, raw: &[(String, String)]) -> Result<Args, ApiError> {
        let mut values = BTreeMap::new();
        for (name, text) in raw {
            if name == "output" || name == "confirm" {
                continue;
            }
            let Some(arg) = self.args.iter().find(|a| a.name == name) else {
                let known: Vec<&str> = self.args.iter().map(|a| a.name).collect();
                return Err(ApiError::BadRequest(format!(
                    "{}: unknown argument '{name}' (arguments: {})",
                    self.name,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            if values.contains_key(arg.name) {
                return Err(ApiError::BadRequest(format!(
                    "{}: argument '{name}' given twice",
                    self.name
                )));
            }
            values.insert(arg.name, parse_value(self.name, arg, text)?);
        }
        for arg in self.args {
            if !values.contains_key(arg.name) {
                if arg.required {
                    return Err(ApiError::BadRequest(format!(
                        "{}: missing argument '{}' ({})",
                        self.name, arg.name, arg.doc
                    )));
                }
                values.insert(arg.name, parse_value(self.name, arg, arg.default)?);
            }
        }
        Ok(Args { values })
    }
}

fn parse_value(call: &str, arg: &Arg, text: &str) -> Result<Value, ApiError> {
    let wrong = || {
        ApiError::BadRequest(format!(
            "{call}: argument '{}' must be {}, not '{text}'",
            arg.name,
            arg.kind.name()
        ))
    };
    if text.len() > MAX_ARG_LEN {
        return Err(ApiError::BadRequest(format!(
            "{call}: argument '{}' is longer than {MAX_ARG_LEN} bytes",
            arg.name
        )));
    }
    Ok(match arg.kind {
        Kind::Str => Value::Str(text.to_string()),
        Kind::Int => Value::Int(text.trim().parse().map_err(|_| wrong())?),
        Kind::Bool => Value::Bool(match text.trim().to_ascii_lowercase().as_str() {
            "" | "false" | "0" | "no" | "off" => false,
            "true" | "1" | "yes" | "on" => true,
            _ => return Err(wrong()),
        }),
        Kind::List => Value::List(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        ),
    })
}

/// The longest accepted argument value (an armored key fits easily).
pub const MAX_ARG_LEN: usize = 32 * 1024;

/// Checked argument values of one invocation.
#[derive(Debug, Default)]
pub struct Args {
    values: BTreeMap<&'static str, Value>,
}

impl Args {
    /// A string argument; declared arguments always have a value.
    pub fn str(&self, name: &str) -> &str {
        match self.values.get(name) {
            Some(Value::Str(s)) => s,
            _ => "",
        }
    }

    pub fn opt(&self, name: &str) -> Option<&str> {
        Some(self.str(name)).filter(|s| !s.is_empty())
    }

    pub fn int(&self, name: &str) -> i64 {
        match self.values.get(name) {
            Some(Value::Int(i)) => *i,
            _ => 0,
        }
    }

    pub fn bool(&self, name: &str) -> bool {
        matches!(self.values.get(name), Some(Value::Bool(true)))
    }

    /// `name=value` of the given arguments, secrets left out (for the event list).
    pub fn summary(&self) -> String {
        self.values
            .iter()
            .filter(|(k, _)| !matches!(**k, "password" | "key"))
            .filter_map(|(k, v)| {
                let text = match v {
                    Value::Str(s) if !s.is_empty() => s.clone(),
                    Value::Int(i) => i.to_string(),
                    Value::Bool(true) => "true".to_string(),
                    Value::List(l) if !l.is_empty() => l.join(","),
                    _ => return None,
                };
                Some(format!("{k}={text}"))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn list(&self, name: &str) -> &[String] {
        match self.values.get(name) {
            Some(Value::List(l)) => l,
            _ => &[],
        }
    }
}

/// An API failure, shown to the caller as an RFC 7807 problem with a sentence a person
/// understands.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{call} needs authorization: {}", level.name())]
    Unauthorized { call: String, level: Level },
    #[error("authentication failed: {0}")]
    BadCredentials(String),
    #[error("{call} needs authorization: {} (user '{user}' has {})", level.name(), has.name())]
    Forbidden {
        call: String,
        level: Level,
        user: String,
        has: Level,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{call} changes state: use {expected}, not {method}")]
    Method {
        call: String,
        method: String,
        expected: &'static str,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// Details go to the log, not to the caller.
    #[error("{0}")]
    Internal(String),
}

impl From<crate::state::StateError> for ApiError {
    fn from(e: crate::state::StateError) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

impl From<crate::users::UsersError> for ApiError {
    fn from(e: crate::users::UsersError) -> ApiError {
        use crate::users::UsersError;
        match e {
            UsersError::BadRequest(why) => ApiError::BadRequest(why),
            UsersError::BadCredentials(why) => ApiError::BadCredentials(why),
            UsersError::State(e) => e.into(),
        }
    }
}

/// Whether an error comes from a full disk (or quota): an `io::Error` saying so anywhere in
/// its chain, or its message (stores keep only the text of their errors).
pub fn is_no_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
                || io.kind() == std::io::ErrorKind::StorageFull
            {
                return true;
            }
        }
        let text = e.to_string();
        if text.contains("No space left on device") || text.contains("Disk quota exceeded") {
            return true;
        }
        next = e.source();
    }
    false
}

impl ApiError {
    pub fn status(&self) -> u16 {
        if is_no_space(self) {
            return 507;
        }
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized { .. } | ApiError::BadCredentials(_) => 401,
            ApiError::Forbidden { .. } => 403,
            ApiError::NotFound(_) => 404,
            ApiError::Method { .. } => 405,
            ApiError::Conflict(_) => 409,
            ApiError::Unavailable(_) => 503,
            ApiError::Internal(_) => 500,
            ApiError::Repo(e) => match e {
                RepoError::Malformed(_)
                | RepoError::NoSuchRollback { .. }
                | RepoError::SnapshotName { .. }
                | RepoError::Setup(_)
                | RepoError::Component { .. }
                | RepoError::CannotMigrate(_) => 400,
                RepoError::NoSuchRepository(_)
                | RepoError::NoSuchCodename { .. }
                | RepoError::NoSuchSuite { .. }
                | RepoError::NoSuchSource { .. }
                | RepoError::NoSuchSnapshot { .. } => 404,
                RepoError::NotNewer { .. }
                | RepoError::PoolConflict { .. }
                | RepoError::Refused { .. }
                | RepoError::AlreadyMigrated { .. }
                | RepoError::RestoreOccupied { .. }
                | RepoError::SnapshotExists { .. }
                | RepoError::AmbiguousMeta { .. } => 409,
                _ => 500,
            },
        }
    }

    /// What the caller reads: internal failures keep their details in the log.
    pub fn detail(&self) -> String {
        if self.status() == 507 {
            // The cause, and where: what an admin needs to act (no secret is in a path).
            format!("no space left on device: {self}")
        } else if self.status() >= 500 && self.status() != 503 {
            "No public details (see the daemon log)".to_string()
        } else {
            self.to_string()
        }
    }

    /// The RFC 7807 body.
    pub fn problem(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "about:blank",
            "status": self.status(),
            "title": reason_phrase(self.status()),
            "detail": self.detail(),
        })
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        416 => "Range Not Satisfiable",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Internal Server Error",
    }
}

/// Everything a handler can see: the engine and the daemon's runtime state.
pub struct Context {
    /// The engine. Readers use it directly: every read is its own redb read transaction
    /// (MVCC), so a read never waits for a writer.
    engine: Engine,
    /// The application's records (users, events, uploads, builds, ...): like the engine, each
    /// read is its own transaction.
    state: StateStore,
    /// The write token: whatever changes the store or the published tree in more than one
    /// transaction (an include and its publish, a migration, a decision) holds it, so those
    /// never interleave. See [`Context::writer`].
    writer: std::sync::Mutex<()>,
    /// Bumped each time a writer gives the token back: the published trees may have changed
    /// (what caches of published files check).
    generation: AtomicU64,
    /// How much longer every writer holds the token: zero, except in the test that shows
    /// readers never wait for a writer (`MBD_TEST_HOLD_WRITES` seconds, see [`Context::new`]).
    hold_writes: std::time::Duration,
    /// Started (uploads and builds run) or stopped (maintenance; HTTP stays up).
    pub running: AtomicBool,
    /// The base URL clients use (`http://host:port`).
    pub url: String,
    pub started: std::time::SystemTime,
    pub metrics: Metrics,
    /// Where uploads wait for their decision.
    pub incoming: crate::incoming::Incoming,
    /// `host:port` of the FTP incoming, if FTP is served.
    pub ftp: Option<String>,
    /// `host:port` of HTTPS, if it is served.
    pub https: Option<String>,
    /// Uploads (HTTP PUT, FTP) need a user's login; otherwise they are anonymous.
    pub incoming_login: bool,
    /// The upload limits (`incoming_max_bytes`, `incoming_client_max_bytes`,
    /// `incoming_file_max_bytes`).
    pub incoming_limits: crate::incoming::Limits,
    /// `port_ext` may fetch from loopback and private networks (`fetch_from_private_networks`).
    pub fetch_from_private_networks: bool,
    /// Where anonymous uploads are taken from (when `incoming_login` is off).
    pub anonymous_uploads_from: Vec<crate::settings::Network>,
    /// Decisions as they happen, for `/api/events/stream`.
    pub live: tokio::sync::broadcast::Sender<crate::incoming::Event>,
    /// The runner of `etc/event-hooks/`.
    pub hooks: crate::incoming::Hooks,
    /// What the home's parts take on disk, as the housekeeping rounds last measured it.
    pub disk: std::sync::Mutex<Option<crate::files::DiskUsage>>,
    /// The build worker's wake-ups and cancellations.
    pub builds: std::sync::Arc<crate::build::worker::Control>,
    /// The latest changes made through the API, newest last.
    pub events: std::sync::Mutex<std::collections::VecDeque<Event>>,
    /// The internal crontab (its schedules from the settings).
    pub crontab: crate::crontab::Crontab,
    /// The webhooks and their deliveries' wake-up.
    pub webhooks: crate::webhook::Outbox,
    /// Mail notifications.
    pub mail: crate::mail::Mailer,
    /// Where the crontab's time comes from (a file's in tests, see `MBD_TEST_CLOCK`).
    pub clock: std::sync::Arc<dyn crate::crontab::Clock>,
}

/// The engine with the write token held (see [`Context::writer`]).
pub struct Writer<'a> {
    engine: &'a Engine,
    generation: &'a AtomicU64,
    hold: std::time::Duration,
    _token: std::sync::MutexGuard<'a, ()>,
}

impl Context {
    /// Why an upload without a login from `peer` is refused, if it is: only hosts in
    /// `anonymous_uploads_from` may make one (the transports ask this only while
    /// `incoming_login` is off).
    pub fn anonymous_upload_refusal(&self, peer: std::net::IpAddr) -> Option<String> {
        if self.anonymous_uploads_from.iter().any(|n| n.contains(peer)) {
            return None;
        }
        let from: Vec<String> = self
            .anonymous_uploads_from
            .iter()
            .map(ToString::to_string)
            .collect();
        Some(format!(
            "uploads without a login are taken from {} only, not from {peer}: widen anonymous_uploads_from in etc/mbd.toml, or set incoming_login and upload with a login",
            if from.is_empty() {
                "nowhere".to_string()
            } else {
                from.join(", ")
            }
        ))
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        if !self.hold.is_zero() {
            std::thread::sleep(self.hold);
        }
        // Still holding the token: every change of this writer is on disk.
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

impl std::ops::Deref for Writer<'_> {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        self.engine
    }
}

/// The test hook `MBD_TEST_HOLD_WRITES=<seconds>`: every writer holds the token that much
/// longer, so a test can read while a write is in progress.
fn hold_writes() -> std::time::Duration {
    let hold = std::env::var("MBD_TEST_HOLD_WRITES")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(std::time::Duration::ZERO, std::time::Duration::from_secs);
    if !hold.is_zero() {
        tracing::warn!(
            ?hold,
            "test hook MBD_TEST_HOLD_WRITES: every write holds the token longer"
        );
    }
    hold
}

/// A change made through the API, for the web UI's "recent events".
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// RFC 7231 date.
    pub time: String,
    pub user: String,
    pub call: &'static str,
    pub summary: String,
}

/// How many events are kept.
pub const EVENTS_KEPT: usize = 50;

impl Context {
    pub fn new(engine: Engine, state: StateStore, url: String) -> Context {
        Context {
            incoming: crate::incoming::Incoming::new(engine.home()),
            hooks: crate::incoming::Hooks::start(engine.home()),
            disk: Default::default(),
            live: tokio::sync::broadcast::channel(256).0,
            ftp: None,
            https: None,
            incoming_login: false,
            incoming_limits: crate::settings::Settings::default().incoming_limits(),
            fetch_from_private_networks: false,
            anonymous_uploads_from: crate::settings::Settings::default()
                .anonymous_networks()
                .unwrap_or_default(),
            builds: Default::default(),
            engine,
            state,
            writer: std::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            hold_writes: hold_writes(),
            running: AtomicBool::new(true),
            url,
            started: std::time::SystemTime::now(),
            metrics: Metrics::default(),
            events: Default::default(),
            crontab: crate::crontab::Crontab::with_defaults(),
            webhooks: Default::default(),
            mail: Default::default(),
            clock: std::sync::Arc::new(crate::crontab::SystemClock),
        }
    }

    /// What dput needs to reach the incoming; `user` is who asks (their name becomes the
    /// `login` when uploads need one).
    pub fn dput_incoming<'a>(&'a self, user: Option<&'a str>) -> calls::Incoming<'a> {
        calls::Incoming {
            url: &self.url,
            https: self.https.as_deref(),
            ftp: self.ftp.as_deref(),
            login: match (self.incoming_login, user) {
                (false, _) => "anonymous",
                (true, Some(u)) => u,
                (true, None) => "YOUR-USER",
            },
        }
    }

    /// The engine, for reading (and for single-transaction writes of runtime objects,
    /// which redb serialises itself).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The application's state store. Single records are written directly (redb serialises
    /// its transactions); a read-modify-write that must not interleave holds [`Context::writer`].
    pub fn state(&self) -> &StateStore {
        &self.state
    }

    /// The engine with the write token: changes made through it never interleave with
    /// another writer's. Readers do not wait for it. Fetch, verify and run subprocesses
    /// before taking it, not while holding it.
    pub fn writer(&self) -> Writer<'_> {
        Writer {
            engine: &self.engine,
            generation: &self.generation,
            hold: self.hold_writes,
            _token: self.writer.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// The generation of the published trees: it changes after every writer.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Decides waiting uploads (only while started: maintenance leaves them waiting).
    pub fn process_uploads(&self, changes: Option<&std::path::Path>) {
        if !self.is_running() {
            return;
        }
        let result = match changes {
            Some(p) => Ok(vec![p.to_path_buf()]),
            None => self.incoming.pending(),
        }
        .and_then(|pending| {
            let mut events = Vec::new();
            for p in &pending {
                // Signature and checksums on the reader; the decision with the token.
                let examined =
                    crate::incoming::examine(self.engine(), &self.state, &self.incoming, p);
                let engine = self.writer();
                events.extend(crate::incoming::settle(
                    &engine,
                    &self.state,
                    &self.incoming,
                    examined,
                )?);
            }
            Ok(events)
        });
        match result {
            Err(e) => tracing::error!(error = %e, "deciding uploads"),
            Ok(events) => {
                if events
                    .iter()
                    .any(|e| e.kind == crate::incoming::EventKind::Packaging)
                {
                    self.builds.nudge();
                }
                for e in events {
                    self.announce(e);
                }
            }
        }
    }

    /// What an installed upload asked for next (see [`crate::port::AfterInstall`]): migrate
    /// it on (`--full`), port it to further distributions. Failures are logged.
    pub fn after_install(&self, source: &str, version: &str, dist: &str) {
        let engine = self.writer();
        let todo = match crate::port::AfterInstall::take(&self.state, source, version) {
            Ok(Some(t)) => t,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, %source, %version, "reading what to do after installing");
                return;
            }
        };
        if todo.migrate_full {
            match engine.migrate(source, dist, true, Some(version)) {
                Ok(to) => tracing::info!(%source, %version, ?to, "migrated after installation"),
                Err(e) => {
                    tracing::error!(error = %e, %source, %version, "migrating after installation")
                }
            }
        }
        // Ports only read the engine (dpkg-source runs, the result goes to incoming).
        drop(engine);
        let mut ported = Vec::new();
        for to in &todo.ports {
            let options = ["lintian-mode=ignore".to_string()];
            let req = crate::port::Request {
                source,
                from: dist,
                to,
                version: Some(version),
                options: &options,
            };
            let now = crate::repo::publish_time();
            match crate::port::port(self.engine(), &self.incoming, &req, now) {
                Ok(p) => ported.push(p.changes),
                Err(e) => tracing::error!(error = %e, %source, %version, %to, "auto-port"),
            }
        }
        for changes in ported {
            self.process_uploads(Some(&changes));
        }
    }

    /// The home directory.
    pub fn home(&self) -> std::path::PathBuf {
        self.engine().home().to_path_buf()
    }

    /// Tells the world about a decision: the JSON file in `var/events/`, the hooks in
    /// `etc/event-hooks/` (in the background; a failing hook is logged, never waited for),
    /// the webhooks (queued; delivered by their own thread) and the live stream.
    pub fn announce(&self, event: crate::incoming::Event) {
        let home = self.incoming.dir.parent().and_then(|p| p.parent());
        if let Some(home) = home {
            match crate::incoming::write_event_file(home, &event) {
                Ok(file) => self.hooks.run(file),
                Err(e) => tracing::error!(error = %e, "writing an event file"),
            }
        }
        if let Err(e) = self
            .webhooks
            .enqueue(self.state(), &event, crate::repo::wall_clock())
        {
            tracing::error!(error = %e, event = %event.id, "queueing webhooks");
        }
        // The build logs are looked up only when there is mail to send.
        if self.mail.is_enabled() {
            let upload = format!("{}_{}", event.source, event.version);
            let logs: Vec<(String, String)> = crate::build::queue::builds_of(self.state(), &upload)
                .unwrap_or_default()
                .into_iter()
                .filter(|b| b.started > 0)
                .map(|b| {
                    (
                        b.architecture.clone(),
                        format!("/logs/{upload}/{}", b.architecture),
                    )
                })
                .collect();
            if let Err(e) =
                self.mail
                    .enqueue(self.state(), &event, &logs, crate::repo::wall_clock())
            {
                tracing::error!(error = %e, event = %event.id, "queueing mail");
            }
        }
        // Nobody listening is fine.
        let _ = self.live.send(event);
    }

    /// Looks up the call, checks method, arguments, authorization and maintenance, and runs
    /// it. `credentials` is the raw `Authorization` header.
    pub fn invoke(
        &self,
        name: &str,
        method: &str,
        raw: &[(String, String)],
        credentials: Option<&str>,
    ) -> Result<Output, ApiError> {
        let call = calls::find(name).ok_or_else(|| {
            ApiError::NotFound(format!("No API call '{name}' (GET /api lists the calls)"))
        })?;
        if call.changes && method != "POST" {
            return Err(ApiError::Method {
                call: call.name.to_string(),
                method: method.to_string(),
                expected: "POST",
            });
        }
        let args = call.parse_args(raw)?;
        let user = auth::authenticate(&self.state, credentials)?;
        let has = user.as_ref().map_or(Level::None, |u| u.level);
        if has < call.level {
            return Err(match user {
                None => ApiError::Unauthorized {
                    call: call.name.to_string(),
                    level: call.level,
                },
                Some(u) => ApiError::Forbidden {
                    call: call.name.to_string(),
                    level: call.level,
                    user: u.name,
                    has,
                },
            });
        }
        if call.running && !self.is_running() {
            return Err(ApiError::Unavailable(format!(
                "{} needs a started daemon; it is stopped for maintenance (an administrator runs 'start')",
                call.name
            )));
        }
        self.metrics.call(call.name);
        let summary = call.changes.then(|| args.summary());
        let who = user.as_ref().map_or("-".to_string(), |u| u.name.clone());
        let result = (call.run)(self, &Invocation { args, user });
        if let (Ok(_), Some(summary)) = (&result, summary) {
            let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
            if events.len() == EVENTS_KEPT {
                events.pop_front();
            }
            events.push_back(Event {
                time: httpdate::fmt_http_date(std::time::SystemTime::now()),
                user: who,
                call: call.name,
                summary,
            });
        }
        if let Err(e) = &result {
            if e.status() >= 500 {
                tracing::error!(call = call.name, error = %e, "API call failed");
            } else {
                tracing::info!(call = call.name, error = %e, "API call refused");
            }
        }
        result
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub errors_4xx: AtomicU64,
    pub errors_5xx: AtomicU64,
    calls: std::sync::Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    fn call(&self, name: &'static str) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        *calls.entry(name).or_default() += 1;
    }

    pub fn record_status(&self, status: u16) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match status {
            400..=499 => self.errors_4xx.fetch_add(1, Ordering::Relaxed),
            500..=599 => self.errors_5xx.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    /// The Prometheus text exposition.
    pub fn render(&self, running: bool) -> String {
        let mut out = String::new();
        out.push_str("# HELP mbd_up Whether the daemon is started (1) or stopped for maintenance (0).\n# TYPE mbd_up gauge\n");
        out.push_str(&format!("mbd_up {}\n", u8::from(running)));
        out.push_str("# HELP mbd_http_requests_total HTTP requests served.\n# TYPE mbd_http_requests_total counter\n");
        out.push_str(&format!(
            "mbd_http_requests_total {}\n",
            self.requests.load(Ordering::Relaxed)
        ));
        out.push_str("# HELP mbd_http_errors_total HTTP responses with an error status, by class.\n# TYPE mbd_http_errors_total counter\n");
        out.push_str(&format!(
            "mbd_http_errors_total{{class=\"4xx\"}} {}\nmbd_http_errors_total{{class=\"5xx\"}} {}\n",
            self.errors_4xx.load(Ordering::Relaxed),
            self.errors_5xx.load(Ordering::Relaxed)
        ));
        out.push_str("# HELP mbd_api_calls_total API calls run, by call.\n# TYPE mbd_api_calls_total counter\n");
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        for (name, n) in calls.iter() {
            out.push_str(&format!("mbd_api_calls_total{{call=\"{name}\"}} {n}\n"));
        }
        out
    }
}

impl From<crate::build::BuildError> for ApiError {
    fn from(e: crate::build::BuildError) -> ApiError {
        use crate::build::BuildError as B;
        match e {
            B::Repo(r) => ApiError::Repo(r),
            B::State(e) => e.into(),
            B::NoSuchUpload(_) | B::NoSuchChroot(_) => ApiError::NotFound(e.to_string()),
            B::Refused(_) | B::ChrootConf(_) => ApiError::Conflict(e.to_string()),
            B::Remote(_) => ApiError::Unavailable(e.to_string()),
            B::NoArchitecture { .. } | B::NoArchAll { .. } => ApiError::BadRequest(e.to_string()),
            B::Io { .. } | B::Command { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

impl crate::build::worker::Host for Context {
    fn with_stores(&self, f: &mut dyn FnMut(&Engine, &StateStore)) {
        f(&self.writer(), &self.state)
    }

    fn with_engine(&self, f: &mut dyn FnMut(&Engine)) {
        f(self.engine())
    }

    fn announce(&self, events: Vec<crate::incoming::Event>) {
        for e in events {
            let installed = (e.kind == crate::incoming::EventKind::Installed)
                .then(|| (e.source.clone(), e.version.clone(), e.distribution.clone()));
            Context::announce(self, e);
            if let Some((source, version, dist)) = installed {
                self.after_install(&source, &version, &dist);
            }
        }
    }

    fn running(&self) -> bool {
        self.is_running()
    }

    fn with_peer(&self, f: &mut dyn FnMut(&crate::openpgp::ArchiveKey, &StateStore, &str)) {
        let engine = self.engine();
        f(engine.key(), &self.state, &self.url)
    }
}
