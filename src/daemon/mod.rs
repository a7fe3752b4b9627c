//! `mbd daemon`: one process owns a home — its store, its published trees — and serves them:
//! the repositories to apt, the API to `mbd api` and scripts.
//!
//! Start-up: take the home's lock (a second daemon is refused), read `<home>/etc/mbd.toml`
//! (written with defaults on first start), open the engine — or, on an empty home, create the
//! embedded default setup — make sure an administrator exists, bind the endpoints, write the
//! URL to `<home>/var/run/http.url`, and serve until SIGTERM or SIGINT.

pub mod archive;
pub mod file_cache;
pub mod ftp;
pub mod housekeeping;
pub mod legacy;
pub mod log;
pub mod tls;
pub mod ui;

mod connection;
mod endpoints;
mod listen;
mod logs;
mod remote;
mod start;
mod upload;

pub use start::{HomeLock, Options, init_logging, lock_path, run};

use crate::api::{ApiError, Context};
use crate::repo::RepoError;
pub use crate::settings::{Settings, SettingsError, host_distribution, settings_path};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware;
use axum::response::Response;
use axum::routing::{any, get};
use endpoints::{
    access_log, api_call, api_index, events_stream, login_backoff, metrics, not_found,
    same_origin_state_changes, security_headers, simple_problem,
};
use logs::{build_log, chroot_log};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use upload::upload;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{home}: another mbd daemon runs on this home{}", pid.as_ref().map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked { home: PathBuf, pid: Option<String> },
    #[error("{path}: {reason}")]
    Settings { path: PathBuf, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    SettingsFile(#[from] SettingsError),
    #[error(transparent)]
    Users(#[from] crate::users::UsersError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError + '_ {
    move |source| DaemonError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What every HTTP handler gets (one `Arc`: cloned for every request).
pub type AppState = Arc<Served>;

/// The daemon as its HTTP handlers see it.
pub struct Served {
    ctx: Arc<Context>,
    repositories: Arc<Path>,
    access: log::RotatingFile,
    /// Small published files served lately.
    files: Arc<archive::Cache>,
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(ui::home))
        .route("/ui/builds", get(ui::builds))
        .route("/ui/setup", get(ui::setup))
        .route("/ui/crontab", get(ui::crontab))
        .route("/static/live.js", get(ui::live_js))
        .route("/ui/repository/{id}", get(ui::repository))
        .route("/ui/dist/{dist}", get(ui::dist))
        .route("/ui/package/{source}", get(ui::package))
        .route("/ui/api", get(ui::api_list))
        .route("/ui/api/{call}", get(ui::api_form).post(ui::api_run))
        .route("/ui/login", get(ui::login_form).post(ui::login))
        .route("/ui/logout", axum::routing::post(ui::logout))
        .route("/health", get(|| async { "ok\n" }))
        .route("/logs/{upload}/{arch}", get(build_log))
        .route("/chroot-logs/{chroot}", get(chroot_log))
        .route("/metrics", get(metrics))
        .route("/api", get(api_index))
        .route("/api/", get(api_index))
        .route("/api/events/stream", get(events_stream))
        .route("/api/{call}", any(api_call))
        .route("/incoming/{name}", axum::routing::put(upload))
        .route(
            "/remote/requests/{id}",
            get(remote::get_request).put(remote::put_request),
        )
        .route(
            "/remote/results/{id}",
            axum::routing::put(remote::put_result),
        )
        .route("/remote/cancel/{id}", axum::routing::put(remote::cancel))
        .route("/remote/logs/{id}", get(remote::log))
        .route("/repositories", get(repositories_root))
        .route("/repositories/", get(repositories_root))
        .route("/repositories/{*path}", get(repositories))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(login_backoff))
        .layer(middleware::from_fn(same_origin_state_changes))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn_with_state(state.clone(), access_log))
        .with_state(state)
}

/// The largest request body accepted (API forms; uploads have their own route).
pub const MAX_BODY: usize = 256 * 1024;

async fn repositories_root(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    serve_archive(state, String::new(), method, headers).await
}

async fn repositories(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    req: Request,
) -> Response {
    // The raw (still percent-encoded) path: segments are decoded and checked one by one.
    let raw = req
        .uri()
        .path()
        .strip_prefix("/repositories/")
        .unwrap_or("")
        .to_string();
    serve_archive(state, raw, method, headers).await
}

async fn serve_archive(
    state: AppState,
    raw: String,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let served = archive::serve(
        state.files.clone(),
        state.ctx.generation(),
        state.repositories.clone(),
        raw.clone(),
        method,
        headers,
    );
    let mut response = match served.await {
        Ok(r) => r,
        Err(archive::Refusal::Invalid(why)) => simple_problem(StatusCode::BAD_REQUEST, why),
        Err(archive::Refusal::NotFound) => simple_problem(
            StatusCode::NOT_FOUND,
            format!("No published file /repositories/{raw}"),
        ),
    };
    endpoints::archive_headers(response.headers_mut());
    response
}
