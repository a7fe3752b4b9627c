//! The HTTP side of the build farm: requests remotes send us
//! (`PUT /remote/requests/<id>`, and `GET` for where it stands), their cancellation
//! (`PUT /remote/cancel/<id>`), results of the builds we handed out
//! (`PUT /remote/results/<id>`), and the live log of a build we run for a remote
//! (`GET /remote/logs/<id>`). Trust comes from the signatures inside, checked by the domain
//! (`remote::builds`, `build::dispatch`); these handlers only stream and answer.

use super::AppState;
use super::endpoints::simple_problem;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::path::PathBuf;

/// Streams a request body to a hidden file under `dir` (at most `max` bytes).
async fn receive(body: axum::body::Body, dir: PathBuf, max: u64) -> Result<PathBuf, Response> {
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;
    let internal = |e: std::io::Error| {
        tracing::error!(error = %e, "receiving from a remote");
        simple_problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "No public details (see the daemon log)".to_string(),
        )
    };
    tokio::fs::create_dir_all(&dir).await.map_err(internal)?;
    let tmp = dir.join(format!(".part-{}", crate::remote::transport::nonce()));
    let mut file = tokio::fs::File::create(&tmp).await.map_err(internal)?;
    let mut body = body;
    let mut total = 0u64;
    let mut failure = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(data) = f.data_ref() {
                    total += data.len() as u64;
                    if total > max {
                        failure = Some(simple_problem(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("larger than {max} bytes"),
                        ));
                        break;
                    }
                    if let Err(e) = file.write_all(data).await {
                        failure = Some(internal(e));
                        break;
                    }
                }
            }
            Err(e) => {
                failure = Some(simple_problem(StatusCode::BAD_REQUEST, e.to_string()));
                break;
            }
        }
    }
    if failure.is_none()
        && let Err(e) = file.flush().await
    {
        failure = Some(internal(e));
    }
    match failure {
        Some(r) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(r)
        }
        None => Ok(tmp),
    }
}

fn spool(state: &AppState) -> PathBuf {
    state.ctx.home().join("var/remote")
}

/// Whether anything may be sent to us at all (checked before a body is read): a request
/// needs a remote that counts, a result a build handed to a remote; and room on the disk.
async fn expected(state: &AppState, what: &'static str) -> Option<Response> {
    let ctx = state.ctx.clone();
    let why = tokio::task::spawn_blocking(move || {
        if let Err(e) = crate::files::check_room(&ctx.home()) {
            return Some((StatusCode::INSUFFICIENT_STORAGE, e.to_string()));
        }
        let wanted = match what {
            "request" => crate::remote::known(ctx.state()).is_ok_and(|k| !k.is_empty()),
            _ => ctx
                .state()
                .all::<crate::build::queue::Build>()
                .is_ok_and(|all| {
                    all.iter().any(|(_, b)| {
                        !b.builder.is_empty() && b.state == crate::build::queue::State::Building
                    })
                }),
        };
        (!wanted).then(|| match what {
            "request" => (
                StatusCode::FORBIDDEN,
                "build request: this instance has no remotes".to_string(),
            ),
            _ => (
                StatusCode::CONFLICT,
                "build result: no build here waits for a remote".to_string(),
            ),
        })
    })
    .await
    .ok()
    .flatten();
    why.map(|(code, why)| simple_problem(code, why))
}

/// `PUT /remote/requests/<id>`: a build request from a remote.
pub(super) async fn put_request(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Body,
) -> Response {
    if let Some(refused) = expected(&state, "request").await {
        return refused;
    }
    // A request holds a source upload: incoming's limit for a whole upload bounds it.
    let max = state.ctx.incoming_limits.total;
    let tmp = match receive(body, spool(&state), max).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let ctx = state.ctx.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let home = ctx.home();
        let r = crate::remote::builds::receive(
            ctx.state(),
            &home,
            &id,
            &tmp,
            max,
            crate::repo::wall_clock(),
        );
        let _ = std::fs::remove_file(&tmp);
        if let Err(e) = &r {
            tracing::warn!(request = %id, reason = %e, "a build request was refused");
        } else {
            tracing::info!(request = %id, "build request received");
            ctx.builds.nudge();
        }
        r
    })
    .await;
    match outcome {
        Ok(Ok(crate::remote::builds::Received::Queued)) => {
            (StatusCode::CREATED, "queued\n").into_response()
        }
        Ok(Ok(crate::remote::builds::Received::Known)) => {
            (StatusCode::OK, "known already\n").into_response()
        }
        Ok(Err(crate::remote::RemoteError::Refused(why))) => {
            simple_problem(StatusCode::FORBIDDEN, why)
        }
        Ok(Err(e)) => simple_problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => simple_problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /remote/requests/<id>`: where a request stands here (404: unknown).
pub(super) async fn get_request(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let ctx = state.ctx.clone();
    let found = tokio::task::spawn_blocking(move || {
        ctx.state()
            .get::<crate::remote::builds::RemoteBuild>(&id)
            .ok()
            .flatten()
    })
    .await
    .ok()
    .flatten();
    match found {
        Some(b) => axum::Json(serde_json::json!({
            "state": b.state,
            "status": b.status,
            "started": b.started,
            "finished": b.finished,
            "took_ms": b.took_ms,
            "send_error": b.send_error,
            "requester": b.request.requester,
        }))
        .into_response(),
        None => simple_problem(StatusCode::NOT_FOUND, "no such request".to_string()),
    }
}

/// `PUT /remote/cancel/<id>`: the requester's signed cancellation.
pub(super) async fn cancel(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    if body.len() > 64 << 10 {
        return simple_problem(StatusCode::PAYLOAD_TOO_LARGE, "too large".to_string());
    }
    let ctx = state.ctx.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let r = crate::remote::builds::cancel(ctx.state(), &id, &body);
        if matches!(r, Ok(true)) {
            ctx.builds.cancel(&id);
        }
        r
    })
    .await;
    match outcome {
        Ok(Ok(true)) => (StatusCode::OK, "cancelled\n").into_response(),
        Ok(Ok(false)) => simple_problem(StatusCode::NOT_FOUND, "no such request".to_string()),
        Ok(Err(e)) => simple_problem(StatusCode::FORBIDDEN, e.to_string()),
        Err(e) => simple_problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `PUT /remote/results/<id>`: the result of a build we handed to a remote.
pub(super) async fn put_result(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Body,
) -> Response {
    use crate::build::dispatch::{self, Refusal};
    if let Some(refused) = expected(&state, "result").await {
        return refused;
    }
    let dir = state.ctx.home().join("var/builds/.results");
    let tmp = match receive(body, dir, dispatch::MAX_ENVELOPE).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let ctx = state.ctx.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let dirs = crate::build::queue::Dirs::new(&ctx.home());
        let r = dispatch::accept_result(ctx.state(), &dirs, &id, &tmp);
        let _ = std::fs::remove_file(&tmp);
        ctx.builds.results_in.raise();
        match &r {
            Ok(build) => tracing::info!(request = %id, %build, "build result received"),
            Err(e) => tracing::warn!(request = %id, reason = %e, "a build result was refused"),
        }
        r
    })
    .await;
    match outcome {
        Ok(Ok(build)) => (StatusCode::OK, format!("taken for {build}\n")).into_response(),
        Ok(Err(e @ Refusal::NotWanted(_))) => simple_problem(StatusCode::CONFLICT, e.to_string()),
        Ok(Err(e @ Refusal::Forged(_))) => simple_problem(StatusCode::FORBIDDEN, e.to_string()),
        Ok(Err(e @ Refusal::Bad(_))) => simple_problem(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => simple_problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /remote/logs/<id>`: the log of a build we run (or ran) for a remote, as it grows.
pub(super) async fn log(State(state): State<AppState>, UrlPath(id): UrlPath<String>) -> Response {
    if crate::files::safe_file_name(&id).is_err() {
        return simple_problem(StatusCode::NOT_FOUND, "no such request".to_string());
    }
    let path = crate::remote::builds::Paths::new(&state.ctx.home(), &id).log();
    match tokio::fs::read(&path).await {
        Ok(data) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], data).into_response(),
        Err(_) => simple_problem(StatusCode::NOT_FOUND, format!("no log for {id}")),
    }
}
