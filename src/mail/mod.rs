//! Mail notifications, as mini-buildd sends them: for REJECTED, FAILED, INSTALLED, MIGRATED
//! and REMOVED, one
//! mail per recipient, each address once, with a footer that says why it got the mail.
//!
//! Recipients, in this order (an address keeps its first reason): the daemon's `notify` list
//! (`[mail]` in `etc/mbd.toml`); the repository's (`[mail.repositories.<id>] notify`);
//! `Changed-By` of an accepted upload when the repository's `changed_by` is set, and its
//! `Maintainer` when `maintainer` is, each only if it matches one of `allow_emails_to`
//! (whole-address regexes); the users subscribed to the source and distribution who set an
//! address (`set_user_email`). Rejections carry no automatic addresses: what a refused upload
//! names is not trusted.
//!
//! Like webhooks, a mail is a record (table `mail_outbox`) before it is sent; the `mail`
//! thread sends what is due, retrying a failure [`MAX_ATTEMPTS`] times with doubling waits,
//! then keeps it as failed. Nothing here runs under the write token or blocks a decision.

pub mod smtp;

use crate::incoming::{Event, EventKind};
use crate::state::{Record, StateError, StateStore};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("[mail] {0}")]
    Settings(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Users(#[from] crate::users::UsersError),
}

/// How often one mail is tried before it is kept as failed.
pub const MAX_ATTEMPTS: u32 = 5;

/// `[mail]` of the settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MailSettings {
    /// `smtp://host:port`, or `ssmtp://host:port` for TLS; empty: no mail.
    pub smtp: String,
    /// User for SMTP AUTH (empty: none).
    pub user: String,
    /// File (relative to the home, or absolute) holding the password.
    pub password_file: String,
    /// CA certificates (PEM) for `ssmtp://` (default: the system's).
    pub ca_file: String,
    /// The sender (default `mbd@<hostname>`).
    pub from: String,
    /// Addresses that get every mail.
    pub notify: Vec<String>,
    /// Regular expressions an automatic address (Changed-By, Maintainer) must match whole.
    pub allow_emails_to: Vec<String>,
    /// Seconds before a failed mail is tried again, doubling after each try (0: 60).
    pub retry_seconds: u64,
    /// Per repository: `notify`, `changed_by`, `maintainer`.
    pub repositories: BTreeMap<String, RepositoryMail>,
}

/// `[mail.repositories.<id>]`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RepositoryMail {
    pub notify: Vec<String>,
    pub changed_by: bool,
    pub maintainer: bool,
}

/// One mail to one address.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mail {
    pub to: String,
    pub event: String,
    pub subject: String,
    /// Headers and body.
    pub message: String,
    pub attempts: u32,
    /// Seconds since the epoch of the next try (none: failed for good).
    pub next_try: Option<i64>,
    pub last_error: String,
}

impl Record for Mail {
    const TABLE: &'static str = "mail_outbox";
}

/// The daemon's mail: settings checked at start, and the wake-up of the mail thread.
pub struct Mailer {
    server: Option<smtp::Server>,
    settings: MailSettings,
    allow: Vec<regex::Regex>,
    /// The instance's identity and URL (subject, footer, log links).
    identity: String,
    url: String,
    helo: String,
    wake: (Mutex<bool>, Condvar),
}

impl Default for Mailer {
    fn default() -> Mailer {
        Mailer {
            server: None,
            settings: MailSettings::default(),
            allow: Vec::new(),
            identity: String::new(),
            url: String::new(),
            helo: "localhost".into(),
            wake: (Mutex::new(false), Condvar::new()),
        }
    }
}

impl Mailer {
    /// Checks the settings (SMTP URL, password file, regexes, addresses); `hostname` makes
    /// the default sender and the EHLO name.
    pub fn load(
        home: &Path,
        s: &MailSettings,
        identity: &str,
        url: &str,
        hostname: &str,
    ) -> Result<Mailer, MailError> {
        let bad = |why: String| MailError::Settings(why);
        let mut mailer = Mailer {
            identity: identity.to_string(),
            url: url.to_string(),
            helo: hostname.to_string(),
            settings: s.clone(),
            ..Mailer::default()
        };
        if s.smtp.is_empty() {
            return Ok(mailer);
        }
        let mut server = smtp::Server::parse(&s.smtp).map_err(|e| bad(format!("smtp: {e}")))?;
        if !s.user.is_empty() {
            let path = home.join(&s.password_file);
            let password = std::fs::read_to_string(&path)
                .map_err(|e| bad(format!("password_file {}: {e}", path.display())))?;
            server.login = Some((s.user.clone(), password.trim().to_string()));
        }
        if !s.ca_file.is_empty() {
            server.ca_file = home.join(&s.ca_file).display().to_string();
        }
        mailer.allow = s
            .allow_emails_to
            .iter()
            .map(|r| {
                regex::Regex::new(&format!("^(?:{r})$"))
                    .map_err(|e| bad(format!("allow_emails_to '{r}': {e}")))
            })
            .collect::<Result<_, _>>()?;
        if mailer.settings.from.is_empty() {
            mailer.settings.from = format!("mbd@{hostname}");
        }
        let lists = std::iter::once(&s.notify).chain(s.repositories.values().map(|r| &r.notify));
        for a in lists
            .flatten()
            .chain(std::iter::once(&mailer.settings.from))
        {
            if !crate::users::valid_email(a) {
                return Err(bad(format!(
                    "'{a}' is not an address like name@example.org"
                )));
            }
        }
        mailer.server = Some(server);
        Ok(mailer)
    }

    /// Whether an SMTP server is set (else no mail is queued).
    pub fn is_enabled(&self) -> bool {
        self.server.is_some()
    }

    /// The recipients of an event with their reasons, each address once.
    pub fn recipients(
        &self,
        state: &StateStore,
        e: &Event,
    ) -> Result<Vec<(String, String)>, MailError> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut add = |address: &str, why: String| {
            if crate::users::valid_email(address) && !out.iter().any(|(a, _)| a == address) {
                out.push((address.to_string(), why));
            }
        };
        for a in &self.settings.notify {
            add(a, "you are on the daemon's notify list".into());
        }
        let repo_id = e.distribution.split('-').nth(1).unwrap_or("");
        let repo = self.settings.repositories.get(repo_id);
        for a in repo.map(|r| r.notify.as_slice()).unwrap_or_default() {
            add(a, format!("you are on repository {repo_id}'s notify list"));
        }
        let automatic = [
            (
                repo.is_some_and(|r| r.changed_by),
                &e.changed_by,
                "Changed-By",
            ),
            (
                repo.is_some_and(|r| r.maintainer),
                &e.maintainer,
                "Maintainer",
            ),
        ];
        for (wanted, field, name) in automatic {
            let address = bare_address(field);
            if wanted
                && e.kind != EventKind::Rejected
                && self.allow.iter().any(|r| r.is_match(address))
            {
                add(address, format!("you are the upload's {name}"));
            }
        }
        for a in crate::users::subscribers(state, &e.source, &e.distribution)? {
            add(
                &a,
                format!("you subscribed to {} in {}", e.source, e.distribution),
            );
        }
        Ok(out)
    }

    /// Queues the mails for an event (REJECTED, FAILED, INSTALLED, MIGRATED, REMOVED; when SMTP
    /// is set) and
    /// wakes the mail thread; the build logs are listed as `(architecture, log path)`.
    pub fn enqueue(
        &self,
        state: &StateStore,
        e: &Event,
        logs: &[(String, String)],
        now: i64,
    ) -> Result<(), MailError> {
        let kinds = [
            EventKind::Rejected,
            EventKind::Failed,
            EventKind::Installed,
            EventKind::Migrated,
            EventKind::Removed,
        ];
        if self.server.is_none() || !kinds.contains(&e.kind) {
            return Ok(());
        }
        let rows: Vec<(String, Mail)> = self
            .recipients(state, e)?
            .into_iter()
            .map(|(to, why)| {
                let (subject, message) = self.compose(e, logs, &to, &why, now);
                let mail = Mail {
                    to: to.clone(),
                    event: e.id.clone(),
                    subject,
                    message,
                    attempts: 0,
                    next_try: Some(now),
                    last_error: String::new(),
                };
                (format!("{}-{to}", e.id), mail)
            })
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        state.put_all::<Mail, _>(&rows)?;
        *self.wake.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.1.notify_all();
        Ok(())
    }

    /// Subject and message (headers and body) of one mail.
    fn compose(
        &self,
        e: &Event,
        logs: &[(String, String)],
        to: &str,
        why: &str,
        now: i64,
    ) -> (String, String) {
        let kind = serde_json::to_value(e.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let status = format!("{kind} ({}): {} {}", e.distribution, e.source, e.version);
        let subject = one_line(
            &format!("[mbd-{}] {status}: {}", self.identity, e.reason),
            200,
        );
        let mut body = format!(
            "{status}\n{}\n\n{}\n",
            "=".repeat(status.chars().count()),
            e.reason
        );
        if !logs.is_empty() {
            body.push_str("\nBuild logs:\n");
            for (arch, path) in logs {
                body.push_str(&format!("  {arch}: {}{path}\n", self.url));
            }
        }
        body.push_str(&format!(
            "\nEvent: {}/api/events?output=plain&source={}\n\n-- \nmbd archive {} at {}\nYou get this mail because {why}.\n",
            self.url, e.source, self.identity, self.url
        ));
        let headers = format!(
            "From: {}\nTo: {to}\nSubject: {subject}\nDate: {}\nMessage-ID: <{}.{}@{}>\nAuto-Submitted: auto-generated\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n",
            self.settings.from,
            crate::repo::release::rfc2822(now).replace("UTC", "+0000"),
            e.id,
            hex::encode(&to.as_bytes()[..to.len().min(16)]),
            self.helo,
        );
        (subject, headers + &body)
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

    /// Sends every mail due at `now`; returns the seconds until the next is due.
    pub fn deliver_due(&self, state: &StateStore, now: i64) -> Result<Option<i64>, MailError> {
        let mut next: Option<i64> = None;
        for (id, mut m) in state.all::<Mail>()? {
            let Some(at) = m.next_try else { continue };
            if at <= now {
                m.attempts += 1;
                let sent = match &self.server {
                    Some(server) => server.send(
                        &self.helo,
                        &self.settings.from,
                        std::slice::from_ref(&m.to),
                        &m.message,
                    ),
                    None => Err("no SMTP server is set ([mail] smtp)".to_string()),
                };
                if sent.is_ok() {
                    state.delete::<Mail>(&id)?;
                    tracing::info!(to = %m.to, event = %m.event, "mail sent");
                    continue;
                }
                m.last_error = sent.err().unwrap_or_default();
                let base = match self.settings.retry_seconds {
                    0 => 60,
                    n => i64::try_from(n).unwrap_or(3600),
                };
                let wait = base.saturating_mul(1 << (m.attempts - 1).min(16));
                m.next_try = (m.attempts < MAX_ATTEMPTS).then(|| now + wait.min(3600));
                tracing::warn!(to = %m.to, event = %m.event, attempts = m.attempts, error = %m.last_error, "mail not sent");
                state.put(&id, &m)?;
            }
            if let Some(at) = m.next_try {
                next = Some(next.map_or(at - now, |n: i64| n.min(at - now)));
            }
        }
        Ok(next)
    }
}

/// The address of `Name <address>` (or the field itself).
fn bare_address(field: &str) -> &str {
    match (field.rfind('<'), field.rfind('>')) {
        (Some(a), Some(b)) if a < b => &field[a + 1..b],
        _ => field.trim(),
    }
}

/// A header value: control characters become spaces, at most `max` characters.
fn one_line(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect()
}

/// Mails not sent yet: waiting or failed for good.
pub fn unsent(state: &StateStore) -> Result<Vec<(String, Mail)>, MailError> {
    Ok(state.all::<Mail>()?)
}

#[cfg(test)]
mod tests;
