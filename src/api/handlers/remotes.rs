//! Handlers of the calls about remotes (peer instances sharing build capacity): their status
//! actions, the handshake peers check us with, and wake.

use crate::api::{ApiError, Context, Invocation, Output};
use crate::remote::{Remote, RemoteError, Us};
use serde_json::json;
use std::time::Duration;

/// How long a peer's status, key or handshake may take (mini-buildd's 10 s).
pub(crate) const PEER_TIMEOUT: Duration = Duration::from_secs(10);

impl From<RemoteError> for ApiError {
    fn from(e: RemoteError) -> ApiError {
        match e {
            RemoteError::State(e) => e.into(),
            RemoteError::NotFound(_) => ApiError::NotFound(e.to_string()),
            RemoteError::Remote { .. } | RemoteError::Refused(_) => {
                ApiError::BadRequest(e.to_string())
            }
        }
    }
}

impl Context {
    /// Runs `f` with what a remote's check needs: the network, our URL, our key.
    pub(crate) fn as_peer<T>(&self, f: impl FnOnce(&Us<'_>) -> T) -> T {
        let http = crate::config::Http::new(PEER_TIMEOUT);
        let engine = self.engine();
        f(&Us {
            fetch: &http,
            url: &self.url,
            key: engine.key(),
        })
    }

    /// Checks every remote that counts and stores what each said (the housekeeping's poll).
    pub fn refresh_remotes(&self) -> Result<Vec<Remote>, RemoteError> {
        self.as_peer(|us| {
            crate::remote::refresh(self.state(), us, crate::repo::wall_clock(), &|| {
                Box::new(self.writer())
            })
        })
    }
}

pub(crate) fn remote_action(ctx: &Context, id: &str, action: &str) -> Result<Output, ApiError> {
    let status = ctx.as_peer(|us| {
        crate::remote::act(
            ctx.state(),
            id,
            action,
            us,
            crate::repo::wall_clock(),
            &|| Box::new(ctx.writer()),
        )
    })?;
    Output::json(&json!({"status": status, "label": status.label()}))
}

/// A remote as lists show it: without its key's text, with its label and its load (negative
/// while it does not answer).
pub(crate) fn remote_view(r: &Remote) -> serde_json::Value {
    let mut v = json!(r);
    v["key"] = json!(if r.key.is_empty() { "" } else { "(stored)" });
    v["label"] = json!(r.status.label());
    v["load"] = json!(r.peer.as_ref().map_or(-1.0, |p| p.load));
    v
}

pub(crate) fn remote_set(
    ctx: &Context,
    id: &str,
    field: &str,
    value: &[String],
) -> Result<Output, ApiError> {
    let url = crate::remote::normalize_url(id)?;
    if ctx.state().get::<Remote>(&url)?.is_none() {
        return Err(RemoteError::NotFound(id.to_string()).into());
    }
    let r = match (field, value) {
        ("wake_command", [] | [_]) => {
            let command = value.first().cloned().unwrap_or_default();
            crate::remote::add(ctx.state(), &url, &command)?
        }
        _ => {
            return Err(ApiError::BadRequest(format!(
                "remote {url}: '{field}' cannot be set (settable: wake_command, one value)"
            )));
        }
    };
    Output::json(&json!({"status": r.status, "label": r.status.label()}))
}

pub(crate) fn handshake(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let signed = inv.args.str("signed_message");
    let engine = ctx.engine();
    let answer = crate::remote::answer_handshake(ctx.state(), engine.key(), signed.as_bytes())?;
    Ok(Output::Text(String::from_utf8_lossy(&answer).into_owned()))
}

pub(crate) fn wake(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    let url = crate::remote::normalize_url(a.str("remote"))?;
    let r: Remote = ctx
        .state()
        .get(&url)?
        .ok_or_else(|| RemoteError::NotFound(url.clone()))?;
    let http = crate::config::Http::new(PEER_TIMEOUT);
    let sleep = Duration::from_secs(a.int("sleep").clamp(0, 600) as u64);
    let peer = crate::remote::wake(&r, &http, sleep, a.int("attempts").clamp(1, 100) as u32)?;
    Output::json(&peer)
}
