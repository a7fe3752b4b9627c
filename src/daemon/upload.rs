//! `PUT /incoming/<file>`: uploads over HTTP, as dput's http method sends them.

use super::AppState;
use super::endpoints::simple_problem;
use crate::api;
use crate::incoming::Oversize;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::path::PathBuf;

/// How much of a refused upload is read before the 401 goes out.
const UNAUTHORIZED_DRAIN: usize = 64 << 20;

/// `PUT /incoming/<file>`, as dput's http method sends it: one file per request, the `.changes`
/// last. The file is streamed to a hidden name and renamed into place when complete; a
/// `.changes` then triggers its decision.
pub(super) async fn upload(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;
    let client = peer.map(|p| p.0.0.ip());
    if !state.ctx.incoming_login {
        let refusal = match client {
            Some(ip) => state.ctx.anonymous_upload_refusal(ip),
            None => Some("the client's address is unknown".to_string()),
        };
        if let Some(why) = refusal {
            return simple_problem(StatusCode::FORBIDDEN, format!("{name}: {why}"));
        }
    }
    if state.ctx.incoming_login {
        let ctx = state.ctx.clone();
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let who = tokio::task::spawn_blocking(move || {
            api::auth::authenticate(ctx.state(), given.as_deref())
        })
        .await;
        let detail = match who {
            Ok(Ok(Some(_))) => None,
            Ok(Ok(None)) => Some("uploads need a user's login".to_string()),
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(detail) = detail {
            // dput sends the whole file before it reads the answer: take it (up to a limit),
            // so that closing the connection does not reset it before the 401 arrives.
            let mut body = body;
            let mut taken = 0usize;
            while taken < UNAUTHORIZED_DRAIN {
                match body.frame().await {
                    Some(Ok(f)) => taken += f.data_ref().map_or(0, |d| d.len()),
                    _ => break,
                }
            }
            let mut r = simple_problem(StatusCode::UNAUTHORIZED, detail);
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"mbd incoming\""),
            );
            return r;
        }
    }
    let incoming = state.ctx.incoming.clone();
    if let Err(e) = incoming.target(&name) {
        return simple_problem(StatusCode::BAD_REQUEST, e.to_string());
    }
    let allowance = {
        let (incoming, name, limits) = (incoming.clone(), name.clone(), state.ctx.incoming_limits);
        tokio::task::spawn_blocking(move || incoming.allowance(&name, &limits, client)).await
    };
    let allowance = match allowance {
        Ok(Ok(allowance)) => allowance,
        Ok(Err(oversize)) => return refused(oversize),
        Err(e) => return simple_problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(Err(oversize)) = announced.map(|len| allowance.check(len)) {
        // Refused before anything is stored.
        return refused(oversize);
    }
    let tmp = incoming.temporary();
    let failed = |status: StatusCode, detail: String, tmp: PathBuf| async move {
        let _ = tokio::fs::remove_file(&tmp).await;
        simple_problem(status, detail)
    };
    let mut file = match tokio::fs::File::create(&tmp).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(path = %tmp.display(), error = %e, "receiving an upload");
            return simple_problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "No public details (see the daemon log)".to_string(),
            );
        }
    };
    let mut body = body;
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                return failed(StatusCode::BAD_REQUEST, format!("{name}: {e}"), tmp).await;
            }
        };
        if let Some(data) = frame.data_ref() {
            total += data.len() as u64;
            if let Err(oversize) = allowance.check(total) {
                let _ = tokio::fs::remove_file(&tmp).await;
                return refused(oversize);
            }
            if let Err(e) = file.write_all(data).await {
                tracing::error!(path = %tmp.display(), error = %e, "receiving an upload");
                if crate::api::is_no_space(&e) {
                    let why = format!("{name}: no space left on device while receiving it");
                    return failed(StatusCode::INSUFFICIENT_STORAGE, why, tmp).await;
                }
                return failed(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "No public details (see the daemon log)".to_string(),
                    tmp,
                )
                .await;
            }
        }
    }
    if let Err(e) = file.flush().await {
        return failed(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), tmp).await;
    }
    drop(file);
    let committed = {
        let (incoming, name) = (incoming.clone(), name.clone());
        tokio::task::spawn_blocking(move || incoming.commit(&tmp, &name, client)).await
    };
    match committed {
        Ok(Ok(path)) => {
            tracing::info!(file = %name, bytes = total, "upload received");
            if name.ends_with(".changes") {
                let ctx = state.ctx.clone();
                tokio::task::spawn_blocking(move || ctx.process_uploads(Some(&path)));
            }
            (StatusCode::CREATED, format!("{name} received\n")).into_response()
        }
        Ok(Err(e @ crate::incoming::IncomingError::Conflict { .. })) => {
            simple_problem(StatusCode::CONFLICT, e.to_string())
        }
        Ok(Err(e)) => simple_problem(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => simple_problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// 413 for a file over its kind's limit, 507 when incoming has no room for it.
fn refused(oversize: Oversize) -> Response {
    match oversize {
        Oversize::TooLarge(why) => simple_problem(StatusCode::PAYLOAD_TOO_LARGE, why),
        Oversize::NoRoom(why) => simple_problem(StatusCode::INSUFFICIENT_STORAGE, why),
    }
}
