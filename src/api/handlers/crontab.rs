//! Handlers of the crontab calls (`crontab`, `cronjob`) and of `webhooks`, and what the
//! crontab's jobs get from the running daemon.

use super::config::DaemonEnv;
use crate::api::{ApiError, Context, Invocation, Output};
use crate::crontab::{CrontabError, Host};
use crate::repo::Engine;
use crate::state::StateStore;

impl Host for Context {
    fn engine(&self) -> &Engine {
        Context::engine(self)
    }
    fn state(&self) -> &StateStore {
        Context::state(self)
    }
    fn home(&self) -> std::path::PathBuf {
        Context::home(self)
    }
    fn write_token(&self) -> Box<dyn crate::state::Token + '_> {
        Box::new(self.writer())
    }
    fn inspect_setup(&self) -> Result<crate::setup::Report, String> {
        let mut env = DaemonEnv::new(self);
        // What exists, without update or pca: the report only.
        let req = crate::setup::Request {
            preset: Some("Current".to_string()),
            ..Default::default()
        };
        crate::setup::run(Context::engine(self), Context::state(self), &req, &mut env)
            .map_err(|e| e.to_string())
    }
    fn wake_result_sender(&self) {
        self.builds.results_out.raise();
    }
}

impl From<CrontabError> for ApiError {
    fn from(e: CrontabError) -> ApiError {
        match e {
            CrontabError::NoSuchJob { .. } => ApiError::NotFound(e.to_string()),
            CrontabError::Schedule { .. } => ApiError::BadRequest(e.to_string()),
            CrontabError::State(e) => e.into(),
        }
    }
}

pub(crate) fn crontab(ctx: &Context, _: &Invocation) -> Result<Output, ApiError> {
    Output::json(&ctx.crontab.listing(Context::state(ctx), ctx.clock.now())?)
}

/// Runs a job now; answers `{"job", "successful", "line"}` (the result line it recorded).
pub(crate) fn cronjob(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let id = inv.args.str("id");
    let successful = ctx.crontab.run(id, ctx, ctx.clock.as_ref())?;
    let line = ctx
        .crontab
        .listing(Context::state(ctx), ctx.clock.now())?
        .into_iter()
        .find(|j| j.id == id)
        .and_then(|j| j.lines.last().cloned())
        .unwrap_or_default();
    Output::json(&serde_json::json!({"job": id, "successful": successful, "line": line}))
}

/// The deliveries not made yet (without their bodies).
pub(crate) fn webhooks(ctx: &Context, _: &Invocation) -> Result<Output, ApiError> {
    let rows: Vec<serde_json::Value> = crate::webhook::undelivered(Context::state(ctx))
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .into_iter()
        .map(|(id, d)| {
            serde_json::json!({
                "id": id, "url": d.url, "event": d.event, "kind": d.kind,
                "attempts": d.attempts, "next_try": d.next_try, "last_error": d.last_error,
            })
        })
        .collect();
    Output::json(&rows)
}
