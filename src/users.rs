//! Users, their levels, passwords and API tokens (the API authenticates with them; uploads
//! are checked against their keys).
//!
//! Passwords are stored as argon2id PHC strings. Tokens are random 32-byte secrets shown once;
//! the store keeps only their SHA-256, so a copy of the store does not give access. A request
//! authenticates with HTTP Basic (`user:password` or `user:token`) or `Bearer <token>`.

use crate::state::{Record, StateError, StateStore};
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::Digest;

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication failed: {0}")]
    BadCredentials(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Who may make a call: anyone, any logged-in user, staff, or administrators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    None,
    Login,
    Staff,
    Admin,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::None => "NONE",
            Level::Login => "LOGIN",
            Level::Staff => "STAFF",
            Level::Admin => "ADMIN",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "login" => Some(Level::Login),
            "staff" => Some(Level::Staff),
            "admin" => Some(Level::Admin),
            _ => None,
        }
    }
}

/// A user of the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub level: Level,
    /// argon2id PHC string.
    pub password: String,
    /// The OpenPGP key this user uploads with (armored), set by `set_user_key`.
    #[serde(default)]
    pub key: Option<String>,
    /// Its fingerprint.
    #[serde(default)]
    pub key_fingerprint: Option<String>,
    /// The user as an uploader (mini-buildd's status model): a new key leaves it Prepared
    /// until staff activates it; only active uploaders' keys sign uploads.
    #[serde(default)]
    pub uploader: crate::status::Status,
    /// Repositories the user may upload to once active (empty: all).
    #[serde(default)]
    pub may_upload_to: Vec<String>,
    /// Where the mail for the user's subscriptions goes (`set_user_email`; empty: none).
    #[serde(default)]
    pub email: String,
}

impl User {
    /// Whether this user's key is in the uploader keyring of `repository`.
    pub fn may_upload(&self, repository: &str) -> bool {
        self.key.is_some()
            && self.uploader.is_active()
            && (self.may_upload_to.is_empty() || self.may_upload_to.iter().any(|r| r == repository))
    }
}

/// An API token; stored under the SHA-256 of its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    pub id: String,
    pub user: String,
    pub label: String,
    pub created: i64,
}

impl Record for User {
    const TABLE: &'static str = "users";
}

impl Record for Token {
    const TABLE: &'static str = "tokens";
}

/// A token's id in the store: the SHA-256 of its secret.
fn token_key(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// User names: what a person types, nothing a URL or a log line could misread.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// A random secret: 32 bytes, hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the system's random source");
    hex::encode(bytes)
}

/// A random password a person can copy: 20 characters of base64url.
pub fn new_password() -> String {
    let mut bytes = [0u8; 15];
    getrandom::fill(&mut bytes).expect("the system's random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn hash_password(password: &str) -> String {
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2 with default parameters")
        .to_string()
}

/// Password checks that may run at once: each one holds argon2's 19 MiB for tens of
/// milliseconds, so a flood of wrong logins waits here instead of growing the daemon.
struct Gate {
    busy: std::sync::Mutex<usize>,
    free: std::sync::Condvar,
    max: usize,
}

impl Gate {
    fn get() -> &'static Gate {
        static GATE: std::sync::OnceLock<Gate> = std::sync::OnceLock::new();
        GATE.get_or_init(|| Gate {
            busy: std::sync::Mutex::new(0),
            free: std::sync::Condvar::new(),
            max: std::thread::available_parallelism().map_or(2, |n| n.get()),
        })
    }

    /// Runs `check` once fewer than `max` others do.
    fn run<T>(&self, check: impl FnOnce() -> T) -> T {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy >= self.max {
            busy = self.free.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy += 1;
        drop(busy);
        struct Leave<'a>(&'a Gate);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                *self.0.busy.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
                self.0.free.notify_one();
            }
        }
        let _leave = Leave(self);
        check()
    }
}

/// Failed logins by client address (or by user name). After [`Backoff::FREE`] failures an
/// address waits before its next credentials are even looked at: 1 s after the next failure,
/// doubling with each one, at most 5 minutes. A good login clears its record; records are
/// forgotten 10 minutes after their last failure. Keeps a flood from one address from
/// queueing password checks ahead of everyone else's.
///
/// By user name ([`Backoff::users`]), the same after [`Backoff::FREE_PER_USER`] failures from
/// any addresses: guessing one user's password from many addresses is slowed too (that user's
/// password logins wait meanwhile; their tokens still work).
pub struct Backoff<K = std::net::IpAddr> {
    free: u32,
    strikes: std::sync::Mutex<std::collections::HashMap<K, (u32, std::time::Instant)>>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::with_free(Backoff::FREE)
    }
}

impl Backoff {
    /// Failures an address may have before it waits.
    pub const FREE: u32 = 10;
    /// Failures a user name may have (from any addresses) before its logins wait.
    pub const FREE_PER_USER: u32 = 50;

    /// The daemon's one record by address.
    pub fn global() -> &'static Backoff {
        static BACKOFF: std::sync::OnceLock<Backoff> = std::sync::OnceLock::new();
        BACKOFF.get_or_init(Backoff::default)
    }

    /// The daemon's one record by user name.
    pub fn users() -> &'static Backoff<String> {
        static BACKOFF: std::sync::OnceLock<Backoff<String>> = std::sync::OnceLock::new();
        BACKOFF.get_or_init(|| Backoff::with_free(Backoff::FREE_PER_USER))
    }
}

impl<K: std::hash::Hash + Eq> Backoff<K> {
    const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(300);
    const FORGET: std::time::Duration = std::time::Duration::from_secs(600);

    /// A record where `free` failures cost nothing.
    pub fn with_free(free: u32) -> Backoff<K> {
        Backoff {
            free,
            strikes: Default::default(),
        }
    }

    /// How much longer `key` must wait at `now`; `None` if it need not.
    pub fn wait(&self, key: &K, now: std::time::Instant) -> Option<std::time::Duration> {
        let strikes = self.strikes.lock().unwrap_or_else(|e| e.into_inner());
        let &(failures, last) = strikes.get(key)?;
        if failures <= self.free {
            return None;
        }
        let wait = std::time::Duration::from_secs(1 << (failures - self.free - 1).min(9))
            .min(Self::MAX_WAIT);
        (last + wait).checked_duration_since(now)
    }

    /// A failed login of `key` at `now`.
    pub fn failed(&self, ip: K, now: std::time::Instant) {
        let mut strikes = self.strikes.lock().unwrap_or_else(|e| e.into_inner());
        if strikes.len() > 100_000 {
            strikes.retain(|_, (_, last)| now.duration_since(*last) < Self::FORGET);
        }
        let entry = strikes.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= Self::FORGET {
            *entry = (0, now);
        }
        *entry = (entry.0 + 1, now);
    }

    /// A good login of `key`.
    pub fn succeeded(&self, key: &K) {
        self.strikes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// A hash no password matches, checked for unknown users so that they cost what a wrong
/// password costs (no telling which names exist by the time an answer takes).
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&new_password()))
}

fn verify_password(hash: &str, password: &str) -> bool {
    Gate::get().run(|| verify_password_now(hash, password))
}

fn verify_password_now(hash: &str, password: &str) -> bool {
    argon2::password_hash::phc::PasswordHash::new(hash)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// The label of the tokens the web UI's logins create.
pub const SESSION_LABEL: &str = "web session";

/// How long a web session lasts (the cookie says so too; the server enforces it).
pub const SESSION_SECONDS: i64 = 7 * 24 * 3600;

/// Whether a token is a web session older than [`SESSION_SECONDS`] at `now`.
fn expired(token: &Token, now: i64) -> bool {
    token.label == SESSION_LABEL && now - token.created > SESSION_SECONDS
}

/// A token by its secret, unless it is an expired session (which is deleted).
fn live_token(state: &StateStore, secret: &str) -> Result<Option<Token>, UsersError> {
    let key = token_key(secret);
    match state.get::<Token>(&key)? {
        Some(t) if expired(&t, crate::repo::publish_time()) => {
            state.delete::<Token>(&key)?;
            Ok(None)
        }
        found => Ok(found),
    }
}

/// Revokes every token and web session of `user`; how many.
pub fn revoke_all(state: &StateStore, user: &str) -> Result<usize, UsersError> {
    let mut n = 0;
    for (key, t) in state.all::<Token>()? {
        if t.user == user && state.delete::<Token>(&key)? {
            n += 1;
        }
    }
    Ok(n)
}

/// Creates or replaces a user. Replacing one sets a new password: the user's tokens and web
/// sessions are revoked (whoever knew the old password may have made them).
pub fn put_user(
    state: &StateStore,
    name: &str,
    level: Level,
    password: &str,
) -> Result<User, UsersError> {
    if !valid_user_name(name) {
        return Err(UsersError::BadRequest(format!(
            "'{name}' is not a valid user name (letters, digits, '-', '_', '.'; at most 64)"
        )));
    }
    if level == Level::None {
        return Err(UsersError::BadRequest(
            "a user's level is login, staff or admin".to_string(),
        ));
    }
    let old: Option<User> = state.get::<User>(name)?;
    let replaced = old.is_some();
    let user = User {
        name: name.to_string(),
        level,
        password: hash_password(password),
        key: old.as_ref().and_then(|u| u.key.clone()),
        key_fingerprint: old.as_ref().and_then(|u| u.key_fingerprint.clone()),
        uploader: old.as_ref().map(|u| u.uploader.clone()).unwrap_or_default(),
        may_upload_to: old
            .as_ref()
            .map(|u| u.may_upload_to.clone())
            .unwrap_or_default(),
        email: old.map(|u| u.email).unwrap_or_default(),
    };
    state.put(name, &user)?;
    if replaced {
        revoke_all(state, name)?;
    }
    Ok(user)
}

/// The most API tokens (web sessions aside) one user may hold.
pub const MAX_TOKENS: usize = 100;
/// The most web sessions one user keeps: a new login ends the oldest beyond this.
pub const MAX_SESSIONS: usize = 20;

/// Issues a token for `user`; returns the secret (shown once) and the stored record. A user
/// holds at most [`MAX_TOKENS`] tokens (refused beyond) and [`MAX_SESSIONS`] web sessions
/// (the oldest ends); labels are at most 200 characters.
pub fn create_token(
    state: &StateStore,
    user: &str,
    label: &str,
) -> Result<(String, Token), UsersError> {
    if label.chars().count() > 200 || label.chars().any(char::is_control) {
        return Err(UsersError::BadRequest(
            "a token's label is at most 200 characters, without control characters".to_string(),
        ));
    }
    let mut held: Vec<(String, Token)> = state
        .all::<Token>()?
        .into_iter()
        .filter(|(_, t)| t.user == user && (t.label == SESSION_LABEL) == (label == SESSION_LABEL))
        .collect();
    if label == SESSION_LABEL {
        held.sort_by_key(|(_, t)| t.created);
        let beyond = (held.len() + 1).saturating_sub(MAX_SESSIONS);
        for (key, _) in held.iter().take(beyond) {
            state.delete::<Token>(key)?;
        }
    } else if held.len() >= MAX_TOKENS {
        return Err(UsersError::BadRequest(format!(
            "{user} holds {MAX_TOKENS} tokens already; revoke some first (token_revoke)"
        )));
    }
    let secret = new_secret();
    let token = Token {
        id: token_key(&secret)[..12].to_string(),
        user: user.to_string(),
        label: label.to_string(),
        created: crate::repo::publish_time(),
    };
    state.put(&token_key(&secret), &token)?;
    Ok((secret, token))
}

/// A user's wish to hear of uploads: a source (empty: any) in a distribution (empty: any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub source: String,
    pub distribution: String,
}

/// A user's subscriptions, by user name.
impl Record for Vec<Subscription> {
    const TABLE: &'static str = "subscriptions";
}

/// The most subscriptions one user keeps.
pub const MAX_SUBSCRIPTIONS: usize = 100;

impl Subscription {
    /// Source and distribution are names (at most 100 characters of `[a-z0-9.+~-]`) or empty.
    fn check(&self) -> Result<(), UsersError> {
        for (what, v) in [
            ("source", &self.source),
            ("distribution", &self.distribution),
        ] {
            let ok = v.len() <= 100
                && v.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".+~-".contains(&b));
            if !ok {
                return Err(UsersError::BadRequest(format!(
                    "subscribe: {what} '{}' is not a name (at most 100 of a-z 0-9 . + ~ -)",
                    v.chars().take(100).collect::<String>()
                )));
            }
        }
        Ok(())
    }
}

/// The email addresses of the users subscribed to a source in a distribution (a
/// subscription's empty source or distribution stands for all), each once.
pub fn subscribers(
    state: &StateStore,
    source: &str,
    distribution: &str,
) -> Result<Vec<String>, UsersError> {
    let mut out: Vec<String> = Vec::new();
    for (name, list) in state.all::<Vec<Subscription>>()? {
        let matches = list.iter().any(|s| {
            (s.source.is_empty() || s.source == source)
                && (s.distribution.is_empty() || s.distribution == distribution)
        });
        if !matches {
            continue;
        }
        if let Some(u) = state.get::<User>(&name)? {
            if !u.email.is_empty() && !out.contains(&u.email) {
                out.push(u.email);
            }
        }
    }
    Ok(out)
}

/// Whether an email address is plain enough to hand to SMTP: `local@domain`, no spaces,
/// no angle brackets, no control characters, at most 254 bytes.
pub fn valid_email(a: &str) -> bool {
    let Some((local, domain)) = a.split_once('@') else {
        return false;
    };
    a.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && a.bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>()[]\\,;:\"".contains(&b))
        && !domain.contains('@')
}

/// `user`'s subscriptions.
pub fn subscriptions(state: &StateStore, user: &str) -> Result<Vec<Subscription>, UsersError> {
    Ok(state.get(user)?.unwrap_or_default())
}

/// Adds a subscription (checked, at most [`MAX_SUBSCRIPTIONS`]); whether it is new.
pub fn subscribe(
    state: &StateStore,
    user: &str,
    wanted: &Subscription,
) -> Result<bool, UsersError> {
    wanted.check()?;
    let mut list = subscriptions(state, user)?;
    if list.contains(wanted) {
        return Ok(false);
    }
    if list.len() >= MAX_SUBSCRIPTIONS {
        return Err(UsersError::BadRequest(format!(
            "{user} has {MAX_SUBSCRIPTIONS} subscriptions already; unsubscribe some first"
        )));
    }
    list.push(wanted.clone());
    state.put(user, &list)?;
    Ok(true)
}

/// Removes a subscription; whether there was one.
pub fn unsubscribe(
    state: &StateStore,
    user: &str,
    gone: &Subscription,
) -> Result<bool, UsersError> {
    let mut list = subscriptions(state, user)?;
    let before = list.len();
    list.retain(|s| s != gone);
    if list.len() == before {
        return Ok(false);
    }
    state.put(user, &list)?;
    Ok(true)
}

/// Revokes the token with this secret; false if there was none.
pub fn revoke_secret(state: &StateStore, secret: &str) -> Result<bool, UsersError> {
    Ok(state.delete::<Token>(&token_key(secret))?)
}

/// Every token record with its store key.
pub fn tokens(state: &StateStore) -> Result<Vec<(String, Token)>, UsersError> {
    Ok(state.all::<Token>()?)
}

/// Who is calling: `None` for an anonymous request. A credential that is given but wrong is
/// an error (401), never silently anonymous.
pub fn authenticate(state: &StateStore, header: Option<&str>) -> Result<Option<User>, UsersError> {
    let Some(header) = header else {
        return Ok(None);
    };
    let refused = |why: &str| UsersError::BadCredentials(why.to_string());
    let (scheme, value) = header
        .split_once(' ')
        .ok_or_else(|| refused("malformed Authorization header"))?;
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        let token: Token = live_token(state, value)?
            .ok_or_else(|| refused("unknown, revoked or expired token"))?;
        let user: User = state
            .get(&token.user)?
            .ok_or_else(|| refused("the token's user no longer exists"))?;
        return Ok(Some(user));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(refused("use Basic or Bearer authorization"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| refused("malformed Basic credentials"))?;
    let (name, secret) = decoded
        .split_once(':')
        .ok_or_else(|| refused("malformed Basic credentials"))?;
    login(state, name, secret).map(Some)
}

/// A user name with a password or one of the user's tokens (HTTP Basic, FTP `USER`/`PASS`).
pub fn login(state: &StateStore, name: &str, secret: &str) -> Result<User, UsersError> {
    let refused = |why: &str| UsersError::BadCredentials(why.to_string());
    let user: Option<User> = if valid_user_name(name) {
        state.get::<User>(name)?
    } else {
        None
    };
    if let Some(user) = &user {
        if let Some(token) = live_token(state, secret)? {
            if token.user == user.name {
                return Ok(user.clone());
            }
        }
    }
    // Names that do not exist wait like those that do: the answer tells nothing.
    let backoff = Backoff::users();
    let key = name.chars().take(64).collect::<String>();
    let now = std::time::Instant::now();
    if let Some(wait) = backoff.wait(&key, now) {
        return Err(UsersError::BadCredentials(format!(
            "too many failed logins for this user name; password logins wait {} s",
            wait.as_secs() + 1
        )));
    }
    let Some(user) = user else {
        verify_password(decoy_hash(), secret);
        backoff.failed(key, now);
        return Err(refused("wrong user name or password"));
    };
    if verify_password(&user.password, secret) {
        backoff.succeeded(&key);
        Ok(user)
    } else {
        backoff.failed(key, now);
        Err(refused("wrong user name or password"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An address waits only after its free failures, longer with each further one, never
    /// over the cap; a good login clears it, and so does time.
    #[test]
    fn backoff_grows_with_failures_and_a_good_login_clears_it() {
        use std::time::{Duration, Instant};
        let b = Backoff::default();
        let (ip, other): (std::net::IpAddr, std::net::IpAddr) =
            ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let t = Instant::now();
        for _ in 0..Backoff::FREE {
            b.failed(ip, t);
        }
        assert_eq!(b.wait(&ip, t), None);
        b.failed(ip, t);
        assert_eq!(b.wait(&ip, t), Some(Duration::from_secs(1)));
        b.failed(ip, t);
        assert_eq!(b.wait(&ip, t), Some(Duration::from_secs(2)));
        assert_eq!(b.wait(&ip, t + Duration::from_secs(3)), None);
        assert_eq!(b.wait(&other, t), None);
        for _ in 0..40 {
            b.failed(ip, t);
        }
        assert_eq!(b.wait(&ip, t), Some(Duration::from_secs(300)));
        b.succeeded(&ip);
        assert_eq!(b.wait(&ip, t), None);
        for _ in 0..=Backoff::FREE {
            b.failed(ip, t);
        }
        b.failed(ip, t + Duration::from_secs(601));
        assert_eq!(
            b.wait(&ip, t + Duration::from_secs(601)),
            None,
            "forgotten after 10 min"
        );
    }

    /// Web sessions end after their lifetime on the server too; other tokens do not.
    #[test]
    fn sessions_expire_and_other_tokens_do_not() {
        let t = |label: &str, created| Token {
            id: String::new(),
            user: "u".into(),
            label: label.into(),
            created,
        };
        assert!(!expired(&t(SESSION_LABEL, 0), SESSION_SECONDS));
        assert!(expired(&t(SESSION_LABEL, 0), SESSION_SECONDS + 1));
        assert!(!expired(&t("ci", 0), 100 * SESSION_SECONDS));
    }

    /// No more than `max` checks run at once, however many callers wait.
    #[test]
    fn the_gate_lets_max_checks_run_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let gate = Gate {
            busy: std::sync::Mutex::new(0),
            free: std::sync::Condvar::new(),
            max: 2,
        };
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..12 {
                s.spawn(|| {
                    gate.run(|| {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(10));
                        now.fetch_sub(1, Ordering::SeqCst);
                    })
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(*gate.busy.lock().unwrap(), 0);
    }

    #[test]
    fn passwords_verify_only_themselves() {
        let h = hash_password("correct horse");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "correct hors"));
        assert!(!verify_password("not a hash", "correct horse"));
    }

    #[test]
    fn secrets_are_random() {
        assert_ne!(new_secret(), new_secret());
        assert_eq!(new_secret().len(), 64);
        assert_eq!(new_password().len(), 20);
    }

    #[test]
    fn user_names() {
        assert!(valid_user_name("admin"));
        assert!(valid_user_name("jane.doe-2"));
        assert!(!valid_user_name(""));
        assert!(!valid_user_name("a/b"));
        assert!(!valid_user_name("a:b"));
        assert!(!valid_user_name(&"x".repeat(65)));
    }
}
