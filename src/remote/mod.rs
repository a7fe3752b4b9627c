//! Remotes: peer instances that share build capacity (mini-buildd's "Remote"). Repositories
//! are never shared; a remote only builds what we ask it to, and we build for it.
//!
//! A [`Remote`] is a configuration object with the status model: prepare fetches the peer's
//! archive key (`pub_key`), check polls its `status` and shakes hands with it (we send a
//! message signed by our archive key; it answers only if it knows our key, signed by its
//! own, which must be the key we stored). A check fails with "is down" when the peer does
//! not answer or is stopped, and with "does not know us" when our URL is not among the
//! remotes it lists or it refuses the handshake. A failed check of an active remote marks it
//! auto-reactivate (`A`); a later good check makes it active again (the daemon's
//! housekeeping checks every remote each minute, and routing checks the chosen one).
//!
//! Trust: nothing on the HTTP side is signed except what carries a build (requests, results,
//! cancellations, handshakes): those are clear-signed and verified against [`keyring`], the
//! keys of the active and auto-reactivate remotes.

pub mod builds;
pub mod transport;

use crate::config::Fetch;
use crate::openpgp::{ArchiveKey, Keyring};
use crate::state::{Record, StateError, StateStore, Token};
use crate::status::{Check, Status};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("remote {url}: {reason}")]
    Remote { url: String, reason: String },
    #[error("no remote '{0}' (add it with `setup --remotes URL --update`)")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    State(#[from] StateError),
}

fn remote_error(url: &str, reason: impl Into<String>) -> RemoteError {
    RemoteError::Remote {
        url: url.to_string(),
        reason: reason.into(),
    }
}

/// A peer instance (table `remotes`, by its URL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Remote {
    /// `http://host:port` (or https), without a path.
    pub url: String,
    /// A shell command that powers the peer on (run when it answers as down, and by `wake`).
    #[serde(default)]
    pub wake_command: String,
    /// Its archive key, armored (from prepare).
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub fingerprint: String,
    pub status: Status,
    /// What its `status` said at the last poll.
    #[serde(default)]
    pub peer: Option<Peer>,
    /// When it was last polled (seconds since the epoch); 0: never.
    #[serde(default)]
    pub polled: i64,
}

impl Record for Remote {
    const TABLE: &'static str = "remotes";
}

/// The part of a peer's `status` answer routing needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Peer {
    #[serde(default)]
    pub identity: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub running: bool,
    /// Running builds per slot; negative while stopped or not powered on.
    #[serde(default)]
    pub load: f64,
    /// `codename:arch` of the chroots it builds in.
    #[serde(default)]
    pub build_chroots: Vec<String>,
    /// The remotes it knows (active or auto-reactivate).
    #[serde(default)]
    pub remotes: Vec<String>,
}

impl Peer {
    /// Whether it takes a build for `codename`/`arch` now.
    pub fn builds(&self, codename: &str, arch: &str) -> bool {
        self.running && self.load >= 0.0 && self.build_chroots.contains(&chroot(codename, arch))
    }
}

/// `codename:arch`, as statuses list chroots.
pub fn chroot(codename: &str, arch: &str) -> String {
    format!("{codename}:{arch}")
}

/// A remote's URL as stored: `http://host:port` (a bare `host:port` is http, the default
/// port is 8066 as mini-buildd's), no path, no trailing slash.
pub fn normalize_url(spec: &str) -> Result<String, RemoteError> {
    let bad = |why: &str| remote_error(spec, why);
    let (scheme, rest) = match spec.split_once("://") {
        Some((s @ ("http" | "https"), rest)) => (s, rest),
        Some(_) => return Err(bad("only http:// and https:// remotes")),
        None => ("http", spec),
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty()
        || authority.contains('/')
        || !authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    {
        return Err(bad("not a <host>[:<port>] (no path)"));
    }
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && !h.ends_with(':') && p.parse::<u16>().is_ok());
    Ok(if has_port {
        format!("{scheme}://{authority}")
    } else {
        format!("{scheme}://{authority}:8066")
    })
}

/// Adds a remote (Removed until prepared); an existing one keeps its status, with a new
/// wake command it is marked changed.
pub fn add(state: &StateStore, spec: &str, wake_command: &str) -> Result<Remote, RemoteError> {
    let url = normalize_url(spec)?;
    if let Some(mut r) = state.get::<Remote>(&url)? {
        if r.wake_command != wake_command {
            r.wake_command = wake_command.to_string();
            r.status.changed();
            state.put(&url, &r)?;
        }
        return Ok(r);
    }
    let r = Remote {
        url: url.clone(),
        wake_command: wake_command.to_string(),
        key: String::new(),
        fingerprint: String::new(),
        status: Status::default(),
        peer: None,
        polled: 0,
    };
    state.put(&url, &r)?;
    Ok(r)
}

/// Every stored remote.
pub fn all(state: &StateStore) -> Result<Vec<Remote>, RemoteError> {
    Ok(state.all::<Remote>()?.into_iter().map(|(_, r)| r).collect())
}

/// Whether a remote counts: active, or waiting to be re-activated by a good check.
pub fn counts(r: &Remote) -> bool {
    r.status.is_active() || r.status.check == Check::FailedReactivate
}

/// The URLs of the remotes we know (our `status` lists them; a peer's check looks for
/// itself there).
pub fn known(state: &StateStore) -> Result<Vec<String>, RemoteError> {
    Ok(all(state)?
        .into_iter()
        .filter(counts)
        .map(|r| r.url)
        .collect())
}

/// The keys requests, results and handshakes are verified against: the active and
/// auto-reactivate remotes'.
pub fn keyring(state: &StateStore) -> Result<Keyring, RemoteError> {
    let mut ring = Keyring::new();
    for r in all(state)?.into_iter().filter(counts) {
        if let Err(e) = ring.add_bytes(r.key.as_bytes()) {
            tracing::warn!(remote = %r.url, error = %e, "a remote's stored key does not read");
        }
    }
    Ok(ring)
}

/// The remote whose key made a verified signature.
pub fn by_fingerprint(
    state: &StateStore,
    fingerprint: &str,
) -> Result<Option<Remote>, RemoteError> {
    Ok(all(state)?
        .into_iter()
        .find(|r| counts(r) && r.fingerprint.eq_ignore_ascii_case(fingerprint)))
}

/// What a check needs besides the remote: the network, our URL and our key.
pub struct Us<'a> {
    pub fetch: &'a dyn Fetch,
    /// Our base URL as peers reach us (what they list).
    pub url: &'a str,
    pub key: &'a ArchiveKey,
}

/// Polls a peer's `status`.
pub fn poll(fetch: &dyn Fetch, url: &str) -> Result<Peer, String> {
    let (code, body) = fetch
        .get(&format!("{url}/api/status"))
        .map_err(|e| format!("is down: {e}"))?;
    if code != 200 {
        return Err(format!("is down: its status answered HTTP {code}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("is down: its status does not read: {e}"))
}

/// The text of our handshake message.
fn handshake_text(from: &str, to: &str) -> String {
    format!("mbd handshake\nFrom: {from}\nTo: {to}\n")
}

/// Checks a remote: it answers, runs, lists us, and answers our signed handshake with a
/// message its stored key signed. Returns what its status said.
pub fn check(remote: &Remote, us: &Us<'_>) -> Result<Peer, String> {
    let peer = poll(us.fetch, &remote.url)?;
    if !peer.running {
        return Err("is down: it is stopped".to_string());
    }
    let ours = us.url.trim_end_matches('/');
    if !peer.remotes.iter().any(|u| u.trim_end_matches('/') == ours) {
        return Err(format!(
            "does not know us: {ours} is not among its remotes ({})",
            if peer.remotes.is_empty() {
                "none".to_string()
            } else {
                peer.remotes.join(", ")
            }
        ));
    }
    let signed = us
        .key
        .clearsign(handshake_text(ours, &remote.url).as_bytes())
        .map_err(|e| format!("signing our handshake: {e}"))?;
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("signed_message", &String::from_utf8_lossy(&signed))
        .finish();
    let (code, body) = us
        .fetch
        .get(&format!(
            "{}/api/handshake?output=plain&{query}",
            remote.url
        ))
        .map_err(|e| format!("is down: {e}"))?;
    if code != 200 {
        return Err(format!(
            "does not know us: our handshake was refused (HTTP {code}: {})",
            String::from_utf8_lossy(&body[..body.len().min(300)]).trim()
        ));
    }
    let theirs = Keyring::from_bytes(remote.key.as_bytes())
        .map_err(|e| format!("its stored key does not read: {e}"))?;
    theirs
        .verify_cleartext(&body)
        .map_err(|e| format!("its handshake answer is not signed by its key: {e}"))?;
    Ok(peer)
}

/// Answers a peer's handshake: the message must verify against a remote's key; the answer is
/// our clear-signed acknowledgement.
pub fn answer_handshake(
    state: &StateStore,
    key: &ArchiveKey,
    signed: &[u8],
) -> Result<Vec<u8>, RemoteError> {
    let ring = keyring(state)?;
    let verified = ring.verify_cleartext(signed).map_err(|e| {
        RemoteError::Refused(format!(
            "handshake: not signed by a remote we know (add and activate it first): {e}"
        ))
    })?;
    let text = format!(
        "mbd handshake answer\nFrom: {}\nTo: {}\n",
        key.fingerprint(),
        verified.fingerprint
    );
    key.clearsign(text.as_bytes())
        .map_err(|e| RemoteError::Refused(format!("handshake: signing the answer: {e}")))
}

/// Fetches a peer's archive key (`pub_key`) into the remote.
fn prepare(remote: &mut Remote, fetch: &dyn Fetch) -> Result<(), String> {
    let (code, body) = fetch
        .get(&format!("{}/api/pub_key?output=plain", remote.url))
        .map_err(|e| format!("is down: {e}"))?;
    if code != 200 {
        return Err(format!("is down: pub_key answered HTTP {code}"));
    }
    let ring = Keyring::from_bytes(&body).map_err(|e| format!("its pub_key is not a key: {e}"))?;
    let fingerprints = ring.fingerprints();
    let [fingerprint] = fingerprints.as_slice() else {
        return Err(format!(
            "its pub_key holds {} keys, not one",
            fingerprints.len()
        ));
    };
    remote.key = String::from_utf8_lossy(&body).into_owned();
    remote.fingerprint = fingerprint.clone();
    Ok(())
}

/// Runs a status action on a remote. The network work (prepare, check) runs without the
/// write token; `token` is taken to store the outcome. Activation checks first: a remote
/// that fails it is marked auto-reactivate (mini-buildd's peering: the first side's
/// activation fails until the other side knows it) and the failure is returned.
pub fn act<'t>(
    state: &StateStore,
    id: &str,
    action: &str,
    us: &Us<'_>,
    now: i64,
    token: &dyn Fn() -> Box<dyn Token + 't>,
) -> Result<Status, RemoteError> {
    let url = normalize_url(id)?;
    let mut r: Remote = state
        .get(&url)?
        .ok_or_else(|| RemoteError::NotFound(id.to_string()))?;
    let steps = crate::config::steps(action).ok_or_else(|| {
        remote_error(
            &url,
            format!(
                "unknown action '{action}' (known: {})",
                crate::config::ACTIONS
            ),
        )
    })?;
    let mut result = Ok(());
    for step in steps {
        result = step_once(&mut r, step, us, now);
        if result.is_err() {
            break;
        }
    }
    if let Err(e) = &result {
        if steps.contains(&"activate") && r.status.is_prepared() {
            // Activation after a failed check: auto-reactivate.
            let _ = r.status.activate();
            r.status.message = e.clone();
        }
    }
    let _token = token();
    state.put(&url, &r)?;
    result
        .map(|()| r.status.clone())
        .map_err(|e| remote_error(&url, e))
}

fn step_once(r: &mut Remote, step: &str, us: &Us<'_>, now: i64) -> Result<(), String> {
    match step {
        "prepare" => {
            if r.status.needs_prepare() {
                prepare(r, us.fetch).inspect_err(|e| r.status.failed(e.clone()))?;
                r.status.prepared();
            }
            Ok(())
        }
        "check" => check_now(r, us, now),
        "activate" => {
            // mini-buildd checks a remote whenever it is activated.
            check_now(r, us, now)?;
            r.status.activate().map_err(|e| e.to_string())
        }
        "deactivate" => {
            r.status.deactivate();
            Ok(())
        }
        _ => {
            r.status.remove();
            r.peer = None;
            Ok(())
        }
    }
}

/// Checks a remote now and records the outcome on it (status and the peer's answer).
fn check_now(r: &mut Remote, us: &Us<'_>, now: i64) -> Result<(), String> {
    r.status.may_check().map_err(|e| e.to_string())?;
    r.polled = now;
    match check(r, us) {
        Ok(peer) => {
            r.peer = Some(peer);
            r.status.checked(now);
            Ok(())
        }
        Err(e) => {
            if e.starts_with("is down") {
                // Keep what it builds (routing waits for it, or wakes it), but not as a candidate.
                if let Some(p) = r.peer.as_mut() {
                    p.running = false;
                    p.load = -1.0;
                }
            }
            r.status.failed(e.clone());
            Err(e)
        }
    }
}

/// Checks every remote that counts (active or auto-reactivate) and stores what each said:
/// the housekeeping's poll, and routing's before it chooses. Returns the remotes after it.
pub fn refresh<'t>(
    state: &StateStore,
    us: &Us<'_>,
    now: i64,
    token: &dyn Fn() -> Box<dyn Token + 't>,
) -> Result<Vec<Remote>, RemoteError> {
    let mut checked = Vec::new();
    for before in all(state)?.into_iter().filter(counts) {
        let mut r = before.clone();
        if let Err(e) = check_now(&mut r, us, now) {
            tracing::info!(remote = %r.url, reason = %e, "a remote's check failed");
        }
        checked.push((before, r));
    }
    let _token = token();
    let mut out = Vec::new();
    for (before, r) in checked {
        // Only if nobody acted on it meanwhile.
        if state.get::<Remote>(&r.url)?.as_ref() == Some(&before) {
            state.put(&r.url, &r)?;
        }
        out.push(r);
    }
    Ok(out)
}

/// Runs a remote's wake command up to `attempts` times, `sleep` seconds apart, until its
/// status answers as running. Returns the last poll's answer or why it is still down.
pub fn wake(
    remote: &Remote,
    fetch: &dyn Fetch,
    sleep: std::time::Duration,
    attempts: u32,
) -> Result<Peer, RemoteError> {
    let up = || {
        poll(fetch, &remote.url)
            .ok()
            .filter(|p| p.running && p.load >= 0.0)
    };
    let mut last = String::new();
    for attempt in 1..=attempts.max(1) {
        if let Some(peer) = up() {
            return Ok(peer);
        }
        if remote.wake_command.trim().is_empty() {
            return Err(remote_error(&remote.url, "is down and has no wake_command"));
        }
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&remote.wake_command)
            .stdin(std::process::Stdio::null())
            .output();
        last = match out {
            Ok(o) if o.status.success() => format!("attempt {attempt}: woken, not answering yet"),
            Ok(o) => format!(
                "attempt {attempt}: wake_command {}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("attempt {attempt}: wake_command did not run: {e}"),
        };
        std::thread::sleep(sleep);
    }
    up().ok_or_else(|| {
        remote_error(
            &remote.url,
            format!("still down after {attempts} wake attempts ({last})"),
        )
    })
}

#[cfg(test)]
mod tests;
