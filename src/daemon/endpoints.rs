//! The HTTP endpoints around the API: `/api/<call>`, the `/api` index, the event stream,
//! `/metrics`, problem answers (RFC 7807), the fallback 404 and the access log.

use super::{AppState, ui};
use crate::api::{self, ApiError, Output};
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::net::SocketAddr;

fn problem(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        e.problem().to_string(),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"mbd\""),
        );
    }
    r
}

pub(super) fn simple_problem(status: StatusCode, detail: String) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "status": status.as_u16(),
        "title": api::reason_phrase(status.as_u16()),
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

pub(super) async fn not_found(req: Request) -> Response {
    simple_problem(
        StatusCode::NOT_FOUND,
        format!(
            "Nothing at {} (try /api or /repositories/)",
            req.uri().path()
        ),
    )
}

pub(super) async fn access_log(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let uri = req.uri().to_string();
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map_or_else(|| "-".to_string(), |c| c.0.ip().to_string());
    let agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let len = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let access = Access {
        peer: &peer,
        method: method.as_str(),
        uri: &uri,
        agent: &agent,
    };
    access.record(&state, response.status().as_u16(), &len, started);
    response
}

/// Headers every response of the router gets: no type sniffing, no framing, no referrer
/// to other sites, and (unless the handler set its own) the web UI's content policy: only
/// its own inline style, no script, forms only to itself.
pub(super) async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, super::ui::content_policy());
    }
    response
}

/// A state change (anything but GET, HEAD, OPTIONS) that a browser's session cookie
/// authenticates must come from our own pages: its `Origin` names this host, or its
/// `Sec-Fetch-Site` says same-origin. Requests with an `Authorization` header (scripts,
/// `mbd api`) and without the cookie are not concerned: a browser never adds those on its
/// own. Otherwise: 403, before the handler runs.
pub(super) async fn same_origin_state_changes(req: Request, next: Next) -> Response {
    let h = req.headers();
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if safe || h.contains_key(header::AUTHORIZATION) || ui::credentials(h).is_none() {
        return next.run(req).await;
    }
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    let host = text("host");
    let from_origin = text("origin")
        .and_then(|o| o.split_once("://").map(|(_, rest)| rest))
        .is_some_and(|o| Some(o) == host);
    let same_site = text("sec-fetch-site") == Some("same-origin");
    if from_origin || same_site {
        return next.run(req).await;
    }
    simple_problem(
        StatusCode::FORBIDDEN,
        "cross-site request refused: a change made with the session cookie needs an Origin of this site (or Sec-Fetch-Site: same-origin)".to_string(),
    )
}

/// Logins from an address that failed too often wait ([`crate::users::Backoff`]): a request
/// with credentials (an Authorization header, the session cookie, the login form) gets 429
/// and `Retry-After` until then, without a password check. Its 401 counts as a failure; any
/// other answer clears the address's record.
pub(super) async fn login_backoff(req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let h = req.headers();
    let login_form = req.method() == Method::POST && req.uri().path() == "/ui/login";
    let credentials =
        h.contains_key(header::AUTHORIZATION) || ui::credentials(h).is_some() || login_form;
    let (Some(ip), true) = (peer, credentials) else {
        return next.run(req).await;
    };
    let backoff = crate::users::Backoff::global();
    if let Some(wait) = backoff.wait(&ip, std::time::Instant::now()) {
        let secs = wait.as_secs() + 1;
        let mut r = simple_problem(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed logins from {ip}; try again in {secs} s"),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return r;
    }
    let response = next.run(req).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        backoff.failed(ip, std::time::Instant::now());
    } else {
        backoff.succeeded(&ip);
    }
    response
}

/// Headers of everything under `/repositories` (both connection paths): no sniffing, and a
/// sandbox, so that even a listing or a file a browser shows runs nothing on our origin.
pub(super) fn archive_headers(h: &mut axum::http::HeaderMap) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
}

/// One request as the access log names it.
pub(super) struct Access<'a> {
    pub peer: &'a str,
    pub method: &'a str,
    pub uri: &'a str,
    pub agent: &'a str,
}

impl Access<'_> {
    /// Counts the answer in the metrics and appends the access log's line for it. The query
    /// of anything but GET and HEAD is left out: a call's arguments (a password given
    /// there) never reach the log.
    pub fn record(&self, state: &AppState, status: u16, len: &str, started: std::time::Instant) {
        state.ctx.metrics.record_status(status);
        let uri = match self.uri.split_once('?') {
            Some((path, _)) if !matches!(self.method, "GET" | "HEAD") => format!("{path}?…"),
            _ => self.uri.to_string(),
        };
        let line = format!(
            "{} - - [{}] \"{} {} HTTP/1.1\" {status} {len} \"-\" \"{}\" {:.3}\n",
            self.peer,
            httpdate::fmt_http_date(std::time::SystemTime::now()),
            self.method,
            uri,
            self.agent.replace('"', "'"),
            started.elapsed().as_secs_f64()
        );
        state.access.append(line.as_bytes());
    }
}

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.ctx.metrics.render(state.ctx.is_running());
    let panics = state
        .ctx
        .builds
        .panics
        .load(std::sync::atomic::Ordering::SeqCst)
        + state.ctx.hooks.panics();
    text.push_str("# HELP mbd_task_panics_total Panics background tasks survived (build worker, builds, chroot preparations, housekeeping rounds, event hooks).\n# TYPE mbd_task_panics_total counter\n");
    text.push_str(&format!("mbd_task_panics_total {panics}\n"));
    text.push_str("# HELP mbd_access_log_dropped_total Access log records dropped because the disk fell behind.\n# TYPE mbd_access_log_dropped_total counter\n");
    text.push_str(&format!(
        "mbd_access_log_dropped_total {}\n",
        state.access.dropped()
    ));
    let disk = state
        .ctx
        .disk
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let farm = state.ctx.builds.farm.snapshot();
    if !farm.is_empty() {
        text.push_str("# HELP mbd_remote_builds_total Builds per remote: handed to it (dispatched), built by it (built), taken from it and handed on or failed (failed_over).\n# TYPE mbd_remote_builds_total counter\n");
        for (remote, counts) in farm {
            for (what, n) in ["dispatched", "built", "failed_over"].iter().zip(counts) {
                text.push_str(&format!(
                    "mbd_remote_builds_total{{remote=\"{remote}\",outcome=\"{what}\"}} {n}\n"
                ));
            }
        }
    }
    if let Some(disk) = disk {
        text.push_str("# HELP mbd_disk_bytes What the home's parts take on disk (measured hourly).\n# TYPE mbd_disk_bytes gauge\n");
        for (part, bytes) in disk.parts() {
            text.push_str(&format!("mbd_disk_bytes{{part=\"{part}\"}} {bytes}\n"));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[derive(Deserialize, Default)]
pub(super) struct StreamQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    source: Option<String>,
    distribution: Option<String>,
    /// Replay stored events from this time (seconds since the epoch) before the live ones.
    since: Option<i64>,
}

/// `GET /api/events/stream`: upload decisions as server-sent events (`event:` the kind,
/// `id:` the event id, `data:` its JSON), so a client can wait for an upload's outcome.
pub(super) async fn events_stream(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<StreamQuery>,
) -> Response {
    use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
    use tokio_stream::StreamExt;
    let kind = match q.kind.as_deref().map(crate::incoming::EventKind::parse) {
        Some(None) => {
            return problem(&ApiError::BadRequest(format!(
                "events/stream: type '{}' is not REJECTED, ACCEPTED, PACKAGING or INSTALLED",
                q.kind.unwrap_or_default()
            )));
        }
        Some(Some(k)) => Some(k),
        None => None,
    };
    // Subscribe first, then read the past: nothing falls in between (a duplicate can, and
    // is dropped by id below).
    let live = tokio_stream::wrappers::BroadcastStream::new(state.ctx.live.subscribe());
    let past = match q.since {
        None => Vec::new(),
        Some(since) => {
            let ctx = state.ctx.clone();
            tokio::task::spawn_blocking(move || {
                crate::incoming::events(ctx.state(), None, None, None, since)
            })
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
        }
    };
    let last_past = past.last().map(|e| e.id.clone()).unwrap_or_default();
    let wanted = move |e: &crate::incoming::Event| {
        kind.is_none_or(|k| e.kind == k)
            && q.source.as_deref().is_none_or(|s| e.source == s)
            && q.distribution
                .as_deref()
                .is_none_or(|d| e.distribution == d)
    };
    let wanted_live = wanted.clone();
    let stream = tokio_stream::iter(past)
        .filter(move |e| wanted(e))
        .chain(
            live.filter_map(Result::ok)
                .filter(move |e| e.id > last_past && wanted_live(e)),
        )
        .map(|e| {
            let kind = serde_json::to_value(e.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            Ok::<_, std::convert::Infallible>(
                SseEvent::default()
                    .event(kind)
                    .id(e.id.clone())
                    .data(serde_json::to_string(&e).unwrap_or_default()),
            )
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

pub(super) async fn api_index() -> Response {
    let calls: Vec<serde_json::Value> = api::calls::CALLS
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name,
                "method": c.method(),
                "auth": c.level.name(),
                "doc": c.doc,
                "args": c.args.iter().map(|a| serde_json::json!({
                    "name": a.name,
                    "type": a.kind.name(),
                    "required": a.required,
                    "default": a.default,
                    "doc": a.doc,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    axum::Json(calls).into_response()
}

fn form_pairs(data: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(data).into_owned().collect()
}

pub(super) async fn api_call(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return simple_problem(e.status(), format!("request body: {}", e.body_text())),
    };
    let mut raw = form_pairs(query.unwrap_or_default().as_bytes());
    if method == Method::POST && !body.is_empty() {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.starts_with("application/x-www-form-urlencoded") {
            return problem(&ApiError::BadRequest(format!(
                "{name}: send arguments as application/x-www-form-urlencoded, not '{ct}'"
            )));
        }
        raw.extend(form_pairs(&body));
    }
    let output = raw
        .iter()
        .find(|(k, _)| k == "output")
        .map_or("json".to_string(), |(_, v)| v.clone());
    if output != "json" && output != "plain" {
        return problem(&ApiError::BadRequest(format!(
            "output '{output}' is neither json nor plain"
        )));
    }
    let auth = ui::credentials(&headers);
    let ctx = state.ctx.clone();
    let method_name = method.as_str().to_string();
    let result =
        tokio::task::spawn_blocking(move || ctx.invoke(&name, &method_name, &raw, auth.as_deref()))
            .await
            .unwrap_or_else(|e| Err(ApiError::Internal(format!("API call panicked: {e}"))));
    match result {
        Err(e) => problem(&e),
        Ok(out) => match (out, output.as_str()) {
            (Output::Text(t), "plain") => {
                ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], t).into_response()
            }
            (Output::Json(v), "plain") => (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                serde_json::to_string_pretty(&v).unwrap_or_default() + "\n",
            )
                .into_response(),
            (Output::Text(t), _) => axum::Json(serde_json::Value::String(t)).into_response(),
            (Output::Json(v), _) => axum::Json(v).into_response(),
        },
    }
}
