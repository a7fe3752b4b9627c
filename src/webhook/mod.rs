//! Webhooks: every event (an upload's decision, a build's start and end) POSTed as its JSON
//! to the URLs configured under `[[webhooks]]` in `etc/mbd.toml`, filtered by kind,
//! repository and source, and signed with HMAC-SHA256 over the timestamp and the body.
//!
//! Deliveries are records in the state store (table `webhook_deliveries`) before anything is
//! sent, so they survive restarts; a failed one is tried again with doubling waits (from
//! `retry_seconds`, at most an hour apart) up to [`MAX_ATTEMPTS`] times, then kept as failed
//! for the `webhooks` call and the home page. A delivered one is deleted. The daemon runs
//! [`Outbox::deliver_due`] on a thread of its own; an event only writes a record and wakes it.
//!
//! A receiver checks `X-Mbd-Signature: sha256=<hex>` = HMAC-SHA256(secret,
//! `<X-Mbd-Timestamp>.<body>`) and that the timestamp is recent.

mod hmac;

pub use hmac::hmac_sha256;

use crate::incoming::Event;
use crate::state::{Record, StateError, StateStore};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("[[webhooks]] {url}: {reason}")]
    Target { url: String, reason: String },
    #[error(transparent)]
    State(#[from] StateError),
}

/// How often one delivery is tried before it is kept as failed.
pub const MAX_ATTEMPTS: u32 = 12;

/// The longest wait between two tries.
const MAX_WAIT: i64 = 3600;

/// How long one POST may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// One `[[webhooks]]` entry of the settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `http://` or `https://` URL the events are POSTed to.
    pub url: String,
    /// A file (relative to the home, or absolute) whose content, trimmed, is the HMAC key.
    pub secret_file: String,
    /// Event kinds sent (`INSTALLED`, `FAILED`, ...); empty: all.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Repositories whose events are sent (by the event's distribution); empty: all.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Source packages whose events are sent; empty: all.
    #[serde(default)]
    pub sources: Vec<String>,
}

impl Target {
    fn wants(&self, e: &Event) -> bool {
        let kind = serde_json::to_value(e.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        // `<codename>-<repository>-<suite>`
        let repository = e.distribution.split('-').nth(1).unwrap_or("");
        let any_or = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        any_or(&self.kinds, &kind)
            && any_or(&self.repositories, repository)
            && any_or(&self.sources, &e.source)
    }
}

/// One event on its way to one URL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delivery {
    pub url: String,
    pub event: String,
    pub kind: String,
    /// The event's JSON, as sent.
    pub body: String,
    pub attempts: u32,
    /// Seconds since the epoch of the next try (none: failed for good).
    pub next_try: Option<i64>,
    pub last_error: String,
}

impl Record for Delivery {
    const TABLE: &'static str = "webhook_deliveries";
}

/// A target with its key.
struct Armed {
    target: Target,
    secret: Vec<u8>,
}

/// The webhooks of a daemon: the targets and their keys, and the wake-up of the delivery
/// thread.
pub struct Outbox {
    targets: Vec<Armed>,
    retry_seconds: i64,
    agent: ureq::Agent,
    /// Set when a delivery was queued; the delivery thread waits on it.
    wake: (Mutex<bool>, Condvar),
}

impl Default for Outbox {
    fn default() -> Outbox {
        Outbox::new(Vec::new(), 10)
    }
}

impl Outbox {
    fn new(targets: Vec<Armed>, retry_seconds: u64) -> Outbox {
        Outbox {
            targets,
            retry_seconds: i64::try_from(retry_seconds.max(1)).unwrap_or(MAX_WAIT),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(TIMEOUT))
                .max_redirects(0)
                .build()
                .into(),
            wake: (Mutex::new(false), Condvar::new()),
        }
    }

    /// The targets of the settings, their keys read from their files; an unreadable key,
    /// an empty one or a URL that is not http(s) is an error naming the URL.
    pub fn load(
        home: &Path,
        targets: &[Target],
        retry_seconds: u64,
    ) -> Result<Outbox, WebhookError> {
        let armed = targets
            .iter()
            .map(|t| {
                let bad = |reason: String| WebhookError::Target {
                    url: t.url.clone(),
                    reason,
                };
                if !(t.url.starts_with("http://") || t.url.starts_with("https://")) {
                    return Err(bad("the URL is not http:// or https://".into()));
                }
                let path = home.join(&t.secret_file);
                let secret = std::fs::read_to_string(&path)
                    .map_err(|e| bad(format!("secret_file {}: {e}", path.display())))?
                    .trim()
                    .as_bytes()
                    .to_vec();
                if secret.is_empty() {
                    return Err(bad(format!("secret_file {} is empty", path.display())));
                }
                Ok(Armed {
                    target: t.clone(),
                    secret,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Outbox::new(armed, retry_seconds))
    }

    /// Queues the event for every target that wants it (records first), and wakes the
    /// delivery thread.
    pub fn enqueue(&self, state: &StateStore, event: &Event, now: i64) -> Result<(), WebhookError> {
        let wanted: Vec<&Armed> = self
            .targets
            .iter()
            .filter(|a| a.target.wants(event))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_string(event).unwrap_or_default();
        let kind = serde_json::to_value(event.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let rows: Vec<(String, Delivery)> = wanted
            .iter()
            .map(|a| {
                let d = Delivery {
                    url: a.target.url.clone(),
                    event: event.id.clone(),
                    kind: kind.clone(),
                    body: body.clone(),
                    attempts: 0,
                    next_try: Some(now),
                    last_error: String::new(),
                };
                (delivery_id(&event.id, &a.target.url), d)
            })
            .collect();
        state.put_all::<Delivery, _>(&rows)?;
        self.wake();
        Ok(())
    }

    fn wake(&self) {
        *self.wake.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.1.notify_all();
    }

    /// Waits until woken or `at_most` passed.
    pub fn wait(&self, at_most: Duration) {
        let mut woken = self.wake.0.lock().unwrap_or_else(|e| e.into_inner());
        if !*woken {
            woken = self
                .wake
                .1
                .wait_timeout(woken, at_most)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        *woken = false;
    }

    /// Tries every delivery that is due at `now` (one after another, outside any lock);
    /// returns the seconds until the next one is due (none: nothing waits).
    pub fn deliver_due(&self, state: &StateStore, now: i64) -> Result<Option<i64>, WebhookError> {
        let mut next: Option<i64> = None;
        for (id, mut d) in state.all::<Delivery>()? {
            let Some(at) = d.next_try else { continue };
            if at > now {
                next = Some(next.map_or(at - now, |n| n.min(at - now)));
                continue;
            }
            let Some(armed) = self.targets.iter().find(|a| a.target.url == d.url) else {
                d.next_try = None;
                d.last_error = "no longer configured".to_string();
                state.put(&id, &d)?;
                continue;
            };
            d.attempts += 1;
            match self.post(armed, &id, &d, now) {
                Ok(()) => {
                    state.delete::<Delivery>(&id)?;
                    tracing::info!(event = %d.event, url = %d.url, attempts = d.attempts, "webhook delivered");
                    continue;
                }
                Err(why) => {
                    d.last_error = why;
                    d.next_try =
                        (d.attempts < MAX_ATTEMPTS).then(|| now + self.wait_after(d.attempts));
                    tracing::warn!(event = %d.event, url = %d.url, attempts = d.attempts, error = %d.last_error, "webhook not delivered");
                }
            }
            if let Some(at) = d.next_try {
                next = Some(next.map_or(at - now, |n| n.min(at - now)));
            }
            state.put(&id, &d)?;
        }
        Ok(next)
    }

    /// The wait after the `attempts`-th failed try: doubling from `retry_seconds`.
    fn wait_after(&self, attempts: u32) -> i64 {
        let doubled = self
            .retry_seconds
            .saturating_mul(1 << attempts.saturating_sub(1).min(20));
        doubled.min(MAX_WAIT)
    }

    fn post(&self, armed: &Armed, id: &str, d: &Delivery, now: i64) -> Result<(), String> {
        let signed = format!("{now}.{}", d.body);
        let signature = hex::encode(hmac_sha256(&armed.secret, signed.as_bytes()));
        let response = self
            .agent
            .post(&d.url)
            .header("Content-Type", "application/json")
            .header("User-Agent", concat!("mbd/", env!("CARGO_PKG_VERSION")))
            .header("X-Mbd-Event", &d.kind)
            .header("X-Mbd-Delivery", id)
            .header("X-Mbd-Timestamp", now.to_string())
            .header("X-Mbd-Signature", format!("sha256={signature}"))
            .send(d.body.as_bytes())
            .map_err(|e| e.to_string())?;
        let status = response.status();
        match status.is_success() {
            true => Ok(()),
            false => Err(format!("HTTP {}", status.as_u16())),
        }
    }

    /// Whether any target is configured.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

/// `<event id>-<8 hex digits of the URL's SHA-256>`: one delivery per event and URL.
fn delivery_id(event: &str, url: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(url.as_bytes());
    format!("{event}-{}", &hex::encode(h)[..8])
}

/// Deliveries still waiting or failed for good, for the `webhooks` call and the home page.
pub fn undelivered(state: &StateStore) -> Result<Vec<(String, Delivery)>, WebhookError> {
    Ok(state.all::<Delivery>()?)
}

#[cfg(test)]
mod tests;
