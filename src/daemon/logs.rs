//! The build and chroot preparation logs, served over HTTP from the stored records (the
//! daemon's own log files are `log.rs`).

use super::AppState;
use super::endpoints::simple_problem;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::path::PathBuf;

/// `GET /chroot-logs/<codename>-<arch>`: a chroot's preparation log (also while it runs).
pub(super) async fn chroot_log(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let ctx = state.ctx.clone();
    let found = blocking(move || {
        let c = crate::build::chroot::find(ctx.state(), &id).map_err(|e| e.to_string())?;
        Ok((
            c.log_path(ctx.engine().home()),
            format!("chroot {id} has no preparation log"),
        ))
    })
    .await;
    match found {
        Ok((path, missing)) => text_file(path, missing).await,
        Err(why) => simple_problem(StatusCode::NOT_FOUND, why),
    }
}

/// `GET /logs/<source>_<version>/<arch>`: a build's log (also while it runs). Only builds the
/// queue knows are served; the path is made from the stored record, not from the URL.
pub(super) async fn build_log(
    State(state): State<AppState>,
    UrlPath((upload, arch)): UrlPath<(String, String)>,
) -> Response {
    let ctx = state.ctx.clone();
    let found = blocking(move || {
        let known = crate::build::queue::builds_of(ctx.state(), &upload)
            .unwrap_or_default()
            .into_iter()
            .find(|b| b.architecture == arch);
        let Some(build) = known else {
            return Err(format!("no build of {upload} on {arch}"));
        };
        let dirs = crate::build::queue::Dirs::new(ctx.engine().home());
        Ok((
            dirs.log(&build.upload, &build.architecture),
            format!("no build log for {upload} on {arch} yet"),
        ))
    })
    .await;
    match found {
        Ok((path, missing)) => text_file(path, missing).await,
        Err(why) => simple_problem(StatusCode::NOT_FOUND, why),
    }
}

/// Runs a store read (or other blocking work) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(format!("the task ended: {e}")))
}

/// A log file as `text/plain`, or 404 with `missing`.
async fn text_file(path: PathBuf, missing: String) -> Response {
    match tokio::fs::read(&path).await {
        Ok(data) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], data).into_response(),
        Err(_) => simple_problem(StatusCode::NOT_FOUND, missing),
    }
}
