//! The builds we run for remotes (table `remote_builds`, by request id), as a builder sees
//! them: received (verified, queued), building, done (its result envelope written and due to
//! be sent), sent, or cancelled by the requester. Files live in `var/remote/<id>/`: the
//! request's members in `files/`, the build in `build/`, its log `build.log`, the result
//! envelope `result.tar`.
//!
//! A result is sent to the requester's `PUT /remote/results/<id>` until it is taken: a failed
//! send is retried with doubling waits (from 10 s, at most an hour apart) for as long as it
//! takes, across restarts of either side; the crontab's hourly `retry_results` makes every
//! waiting one due now. A requester that refuses a result for good (409: it no longer wants
//! it) ends the retries.

use super::transport::{self, BuildResult, Member, Request};
use super::{RemoteError, keyring};
use crate::openpgp::ArchiveKey;
use crate::state::{Record, StateStore};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a request may be as a builder sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Queued,
    Building,
    Done,
    Sent,
    Cancelled,
}

/// A build we run for a remote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteBuild {
    pub request: Request,
    pub state: State,
    /// Seconds since the epoch.
    pub received: i64,
    pub started: i64,
    pub finished: i64,
    /// How long the build ran here, in milliseconds (what a requester's overhead is
    /// measured against).
    #[serde(default)]
    pub took_ms: u64,
    /// When it started here (milliseconds since the epoch).
    #[serde(default)]
    pub started_ms: u64,
    /// How it went (`successful`, `failed`, `dep-wait`), sbuild's status, the failed stage.
    pub outcome: String,
    pub status: String,
    pub fail_stage: Option<String>,
    pub send_attempts: u32,
    /// When the next send is due.
    pub next_send: i64,
    /// Why the last send failed.
    pub send_error: String,
}

impl Record for RemoteBuild {
    const TABLE: &'static str = "remote_builds";
}

/// Milliseconds since the epoch.
fn millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The first wait after a failed send; it doubles up to [`MAX_WAIT`].
const FIRST_WAIT: i64 = 10;
const MAX_WAIT: i64 = 3600;

/// How long one send of a result may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(600);

/// The directories of one remote build.
pub struct Paths {
    pub root: PathBuf,
}

impl Paths {
    pub fn new(home: &Path, id: &str) -> Paths {
        Paths {
            root: home.join("var/remote").join(id),
        }
    }
    pub fn files(&self) -> PathBuf {
        self.root.join("files")
    }
    pub fn build(&self) -> PathBuf {
        self.root.join("build")
    }
    pub fn log(&self) -> PathBuf {
        self.root.join("build.log")
    }
    pub fn result(&self) -> PathBuf {
        self.root.join("result.tar")
    }
    /// The requester's key (for its repository as the build's extra source).
    pub fn requester_key(&self) -> PathBuf {
        self.root.join("requester-key.asc")
    }
}

/// What receiving a request did.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    Queued,
    /// The same id was received before (a retried send): nothing changed.
    Known,
}

/// Takes a request envelope (already on disk at `envelope`): extracts it, verifies it was
/// signed by the remote it names as requester, checks every member, and queues it.
pub fn receive(
    state: &StateStore,
    home: &Path,
    id: &str,
    envelope: &Path,
    max_bytes: u64,
    now: i64,
) -> Result<Received, RemoteError> {
    let refused = |why: String| RemoteError::Refused(format!("build request {id}: {why}"));
    crate::files::safe_file_name(id).map_err(|e| refused(e.to_string()))?;
    if state.get::<RemoteBuild>(id)?.is_some() {
        return Ok(Received::Known);
    }
    let paths = Paths::new(home, id);
    let outcome = (|| {
        let signed = transport::open_envelope(envelope, &paths.files(), max_bytes)
            .map_err(|e| refused(e.to_string()))?;
        let (fingerprint, request): (String, Request) =
            transport::verify(&signed, &keyring(state)?).map_err(|e| refused(e.to_string()))?;
        let signer = super::by_fingerprint(state, &fingerprint)?
            .ok_or_else(|| refused(format!("signed by {fingerprint}, which is no remote")))?;
        if signer.url != request.requester {
            return Err(refused(format!(
                "signed by the remote {}, but names {} as its requester",
                signer.url, request.requester
            )));
        }
        if request.id != id {
            return Err(refused(format!("its document names the id {}", request.id)));
        }
        transport::check_members(&paths.files(), &request.members)
            .map_err(|e| refused(e.to_string()))?;
        for name in [&request.changes, &request.dsc] {
            if !request.members.iter().any(|m| &m.name == name) {
                return Err(refused(format!("{name} is not among its members")));
            }
        }
        std::fs::write(paths.requester_key(), signer.key.as_bytes())
            .map_err(|e| refused(format!("{}: {e}", paths.requester_key().display())))?;
        Ok(request)
    })();
    let request = match outcome {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&paths.root);
            return Err(e);
        }
    };
    let record = RemoteBuild {
        request,
        state: State::Queued,
        received: now,
        started: 0,
        finished: 0,
        took_ms: 0,
        started_ms: 0,
        outcome: String::new(),
        status: String::new(),
        fail_stage: None,
        send_attempts: 0,
        next_send: 0,
        send_error: String::new(),
    };
    state.put(id, &record)?;
    Ok(Received::Queued)
}

/// Every remote build, oldest first.
pub fn all(state: &StateStore) -> Result<Vec<RemoteBuild>, RemoteError> {
    let mut all: Vec<RemoteBuild> = state
        .all::<RemoteBuild>()?
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    all.sort_by_key(|b| (b.received, b.request.id.clone()));
    Ok(all)
}

/// How many builds remotes asked of us wait for a slot (they count in our load; running
/// ones hold a slot already).
pub fn waiting(state: &StateStore) -> Result<usize, RemoteError> {
    Ok(all(state)?
        .iter()
        .filter(|b| b.state == State::Queued)
        .count())
}

/// The oldest queued request whose chroot `ready` says is ready; marked building.
pub fn start_next(
    state: &StateStore,
    ready: &dyn Fn(&str, &str) -> bool,
    now: i64,
) -> Result<Option<RemoteBuild>, RemoteError> {
    for mut b in all(state)? {
        if b.state == State::Queued && ready(&b.request.codename, &b.request.architecture) {
            b.state = State::Building;
            b.started = now;
            b.started_ms = millis();
            state.put(&b.request.id, &b)?;
            return Ok(Some(b));
        }
    }
    Ok(None)
}

/// At start: builds that were running are queued again (their results never went out).
pub fn recover(state: &StateStore) -> Result<usize, RemoteError> {
    let mut n = 0;
    for mut b in all(state)? {
        if b.state == State::Building {
            b.state = State::Queued;
            state.put(&b.request.id, &b)?;
            n += 1;
        }
    }
    Ok(n)
}

/// How a build we ran for a remote ended.
pub struct Ended {
    pub outcome: String,
    pub status: String,
    pub fail_stage: Option<String>,
    /// sbuild's `.changes` in the build directory, if it built.
    pub changes: Option<PathBuf>,
}

/// Writes the signed result envelope of a finished build (log, sbuild's `.changes` and every
/// file it lists) and marks it due to be sent.
pub fn finish(
    state: &StateStore,
    home: &Path,
    key: &ArchiveKey,
    builder_url: &str,
    id: &str,
    ended: Ended,
    now: i64,
) -> Result<(), RemoteError> {
    let Some(mut b) = state.get::<RemoteBuild>(id)? else {
        return Ok(());
    };
    if b.state == State::Cancelled {
        return Ok(());
    }
    let paths = Paths::new(home, id);
    let log_name = format!("{}.buildlog", b.request.architecture);
    let log = paths.build().join(&log_name);
    let _ = std::fs::create_dir_all(paths.build());
    if std::fs::copy(paths.log(), &log).is_err() {
        let _ = std::fs::write(&log, format!("Build request failed: {}\n", ended.status));
    }
    let mut files = vec![log];
    let mut changes = None;
    if let Some(c) = ended.changes.as_ref().filter(|c| c.is_file()) {
        match crate::changes::Changes::read(c, crate::files::Trust::Unchecked) {
            Ok(parsed) => {
                files.push(c.clone());
                changes = c.file_name().map(|n| n.to_string_lossy().into_owned());
                for f in &parsed.files.entries {
                    files.push(paths.build().join(&f.name));
                }
            }
            Err(e) => tracing::warn!(request = id, error = %e, "reading sbuild's .changes"),
        }
    }
    let members = files
        .iter()
        .map(|f| Member::of(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RemoteError::Refused(format!("result of {id}: {e}")))?;
    let result = BuildResult {
        id: id.to_string(),
        builder: builder_url.to_string(),
        upload: b.request.upload.clone(),
        architecture: b.request.architecture.clone(),
        outcome: ended.outcome.clone(),
        status: ended.status.clone(),
        fail_stage: ended.fail_stage.clone(),
        log: log_name,
        changes,
        members,
    };
    transport::write_envelope(&paths.result(), key, &result, &files)
        .map_err(|e| RemoteError::Refused(format!("result of {id}: {e}")))?;
    b.state = State::Done;
    b.finished = now;
    b.took_ms = millis().saturating_sub(b.started_ms);
    b.outcome = ended.outcome;
    b.status = ended.status;
    b.fail_stage = ended.fail_stage;
    b.next_send = now;
    state.put(id, &b)?;
    Ok(())
}

/// The requester cancels: a clear-signed `mbd cancel <id>` by the remote that asked.
pub fn cancel(state: &StateStore, id: &str, signed: &[u8]) -> Result<bool, RemoteError> {
    let refused = |why: String| RemoteError::Refused(format!("cancel {id}: {why}"));
    let verified = keyring(state)?
        .verify_cleartext(signed)
        .map_err(|e| refused(format!("not signed by a remote we know: {e}")))?;
    if String::from_utf8_lossy(&verified.body).trim() != format!("mbd cancel {id}") {
        return Err(refused(
            "the signed text is not this cancellation".to_string(),
        ));
    }
    let Some(mut b) = state.get::<RemoteBuild>(id)? else {
        return Ok(false);
    };
    let signer = super::by_fingerprint(state, &verified.fingerprint)?;
    if signer.is_none_or(|s| s.url != b.request.requester) {
        return Err(refused(
            "signed by a remote that did not ask for it".to_string(),
        ));
    }
    if matches!(b.state, State::Queued | State::Building) {
        b.state = State::Cancelled;
        state.put(id, &b)?;
    }
    Ok(true)
}

/// The text a requester signs to cancel a request.
pub fn cancel_text(id: &str) -> String {
    format!("mbd cancel {id}\n")
}

/// Sends every result that is due; returns how many went out. Each send runs without any
/// lock; only the records are written.
pub fn send_due(state: &StateStore, home: &Path, now: i64) -> Result<usize, RemoteError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(SEND_TIMEOUT))
        .build()
        .into();
    let mut sent = 0;
    for b in all(state)? {
        if b.state != State::Done || b.next_send > now {
            continue;
        }
        let id = b.request.id.clone();
        let paths = Paths::new(home, &id);
        let url = format!("{}/remote/results/{id}", b.request.requester);
        let outcome = std::fs::File::open(paths.result())
            .map_err(|e| format!("{}: {e}", paths.result().display()))
            .and_then(|f| agent.put(&url).send(f).map_err(|e| e.to_string()))
            .map(|mut r| {
                let body = r.body_mut().read_to_string().unwrap_or_default();
                (r.status().as_u16(), body)
            });
        let Some(mut b) = state.get::<RemoteBuild>(&id)? else {
            continue;
        };
        match outcome {
            Ok((200..=299, _)) => {
                b.state = State::Sent;
                b.send_error.clear();
                sent += 1;
                let _ = std::fs::remove_dir_all(&paths.root);
            }
            Ok((409, why)) => {
                // Not wanted any more (cancelled, or built elsewhere meanwhile).
                tracing::info!(request = %id, reason = %why.trim(), "a remote refused our result for good");
                b.state = State::Sent;
                b.send_error = format!("refused: {}", why.trim());
                let _ = std::fs::remove_dir_all(&paths.root);
            }
            Ok((code, why)) => retry_later(&mut b, format!("HTTP {code}: {}", why.trim()), now),
            Err(e) => retry_later(&mut b, e, now),
        }
        state.put(&id, &b)?;
    }
    Ok(sent)
}

fn retry_later(b: &mut RemoteBuild, why: String, now: i64) {
    tracing::warn!(request = %b.request.id, to = %b.request.requester, reason = %why, "sending a build result failed; trying again later");
    b.send_attempts += 1;
    let wait = FIRST_WAIT
        .saturating_mul(1 << b.send_attempts.min(12).saturating_sub(1))
        .min(MAX_WAIT);
    b.next_send = now + wait;
    b.send_error = why;
}

/// Makes every result still waiting to be sent due now (the crontab's `retry_results`).
pub fn retry_all(state: &StateStore, now: i64) -> Result<usize, RemoteError> {
    let mut n = 0;
    for mut b in all(state)? {
        if b.state == State::Done && b.next_send > now {
            b.next_send = now;
            state.put(&b.request.id, &b)?;
            n += 1;
        }
    }
    Ok(n)
}

/// When the next send is due, if any result waits.
pub fn next_send(state: &StateStore) -> Result<Option<i64>, RemoteError> {
    Ok(all(state)?
        .iter()
        .filter(|b| b.state == State::Done)
        .map(|b| b.next_send)
        .min())
}
