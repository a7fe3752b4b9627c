//! The web UI: server-rendered HTML (minijinja templates compiled into the binary), plain
//! forms, no JavaScript. Every action is an API call: forms post to `/ui/api/<call>`, which
//! runs [`Context::invoke`] like `/api/<call>` does, with the session's user.
//!
//! Logging in creates an API token labelled "web session" and puts `user:secret` in an
//! HttpOnly, SameSite=Strict cookie (so other sites cannot post with it); logging out revokes
//! the token.

use super::AppState;
use crate::api::auth::{self, User};
use crate::api::{ApiError, Context, Level, Output, calls::CALLS};
use crate::repo::distribution::DistName;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use minijinja::value::Serde;
use minijinja::{Environment, Value, context};
use std::sync::{Arc, OnceLock};

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("home.html", include_str!("templates/home.html")),
    ("repository.html", include_str!("templates/repository.html")),
    ("dist.html", include_str!("templates/dist.html")),
    ("package.html", include_str!("templates/package.html")),
    ("api.html", include_str!("templates/api.html")),
    ("api_call.html", include_str!("templates/api_call.html")),
    ("login.html", include_str!("templates/login.html")),
    ("builds.html", include_str!("templates/builds.html")),
    ("setup.html", include_str!("templates/setup.html")),
    ("crontab.html", include_str!("templates/crontab.html")),
];

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Times as "2026-12-02 15:53 UTC, 3 min ago"; durations as "1 min 12 s".
        env.add_filter("when", |t: i64| match t {
            0 => "—".to_string(),
            t => crate::crontab::utc_relative(t, crate::repo::wall_clock()),
        });
        env.add_filter("duration", crate::crontab::duration);
        for (name, text) in TEMPLATES {
            env.add_template(name, text)
                .unwrap_or_else(|e| panic!("template {name}: {e}"));
        }
        env
    })
}

/// The web UI's Content-Security-Policy: nothing but the base template's one inline style
/// (allowed by its SHA-256), images from here, forms posting only here, scripts only from
/// here (`/static/live.js`, no inline script) and connections only here (its event stream),
/// no framing.
pub fn content_policy() -> axum::http::HeaderValue {
    static POLICY: OnceLock<axum::http::HeaderValue> = OnceLock::new();
    POLICY
        .get_or_init(|| {
            use sha2::Digest;
            let base = TEMPLATES[0].1;
            let style = base
                .split_once("<style>")
                .and_then(|(_, rest)| rest.split_once("</style>"))
                .map_or("", |(style, _)| style);
            let hash = base64::engine::general_purpose::STANDARD
                .encode(sha2::Sha256::digest(style.as_bytes()));
            let policy = format!(
                "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self'; script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
            );
            axum::http::HeaderValue::from_str(&policy).expect("a policy is ASCII")
        })
        .clone()
}

pub const SESSION_COOKIE: &str = "mbd_session";

/// The credentials of a request: its Authorization header, else the session cookie (as the
/// equivalent Basic credentials).
pub fn credentials(headers: &HeaderMap) -> Option<String> {
    if let Some(a) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return Some(a.to_string());
    }
    session(headers).map(|s| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    })
}

/// The session cookie's `user:secret`.
fn session(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == SESSION_COOKIE).then(|| v.to_string())
        })
}

/// Who is logged in; a stale or revoked session counts as nobody.
fn viewer(ctx: &Context, headers: &HeaderMap) -> Option<User> {
    auth::authenticate(ctx.state(), credentials(headers).as_deref())
        .ok()
        .flatten()
}

fn render(status: StatusCode, name: &str, ctx: Value) -> Response {
    match templates().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "rendering a page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "page rendering failed (see the daemon log)\n",
            )
                .into_response()
        }
    }
}

/// The values every page shows (identity, user). Pages reached by a redirect after a form
/// show its `?message=` (escaped like everything else).
fn base(ctx: &Context, user: Option<&User>) -> Value {
    context! {
        identity => ctx.engine().instance().identity.clone(),
        user => user.map(|u| context! { name => u.name.clone(), level => u.level.name() }),
    }
}

/// Runs a page builder off the async runtime; errors become an error page with their status.
async fn page(
    state: AppState,
    headers: HeaderMap,
    build: impl FnOnce(&Context, Option<&User>) -> Result<(&'static str, Value), ApiError>
    + Send
    + 'static,
) -> Response {
    let ctx = state.ctx.clone();
    tokio::task::spawn_blocking(move || {
        let user = viewer(&ctx, &headers);
        let base = base(&ctx, user.as_ref());
        match build(&ctx, user.as_ref()) {
            Ok((name, values)) => render(StatusCode::OK, name, context! { ..values, ..base }),
            Err(e) => error_page(&e, base),
        }
    })
    .await
    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn error_page(e: &ApiError, base: Value) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    render(
        status,
        "base.html",
        context! { error => e.detail(), ..base },
    )
}

#[derive(serde::Deserialize, Default)]
pub struct MessageQuery {
    message: Option<String>,
    /// The page of upload decisions (0: the newest [`DECISIONS_PER_PAGE`]).
    #[serde(default)]
    page: usize,
}

/// How many upload decisions a page of the home page shows.
const DECISIONS_PER_PAGE: usize = 20;

/// The most decisions the home page pages back through (retention keeps 1000 by default).
const DECISIONS_PAGED: usize = 2000;

pub async fn home(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<MessageQuery>,
    headers: HeaderMap,
) -> Response {
    page(state, headers, move |ctx, _| {
        let engine = ctx.engine();
        let events: Vec<_> = ctx
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .rev()
            .cloned()
            .collect();
        let running = ctx.is_running();
        let page = q.page.min(DECISIONS_PAGED / DECISIONS_PER_PAGE);
        let newest = crate::incoming::latest_events(ctx.state(), (page + 1) * DECISIONS_PER_PAGE + 1)?;
        let older = newest.len() > (page + 1) * DECISIONS_PER_PAGE;
        let uploads: Vec<_> = newest
            .into_iter()
            .skip(page * DECISIONS_PER_PAGE)
            .take(DECISIONS_PER_PAGE)
            .collect();
        Ok((
            "home.html",
            context! {
                running => running,
                load => format!("{:.2}", ctx.builds.load(running)),
                uptime => ctx.started.elapsed().map_or(0, |d| d.as_secs()),
                version => env!("CARGO_PKG_VERSION"),
                disk => ctx.disk.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|d| {
                    d.parts()
                        .iter()
                        .map(|(part, bytes)| format!("{} {:.1} MB", part.replace('_', " "), *bytes as f64 / 1e6))
                        .collect::<Vec<_>>()
                        .join(" · ")
                }),
                repositories => Value::from(Serde(engine.repositories()?)),
                undelivered => Value::from(Serde(
                    crate::webhook::undelivered(ctx.state())
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|(_, d)| d.attempts > 0)
                        .map(|(_, d)| {
                            let next = d.next_try.map(crate::crontab::utc);
                            context! { ..Value::from(Serde(d)), ..context! { next } }
                        })
                        .collect::<Vec<_>>(),
                )),
                events => Value::from(Serde(&events)),
                uploads => Value::from(Serde(&uploads)),
                page => page,
                older => older,
                message => q.message,
            },
        ))
    })
    .await
}

/// How many uploads a page of the builds page shows.
const BUILDS_PER_PAGE: usize = 25;

/// `?page=N` of a paged list (0 is the newest).
#[derive(serde::Deserialize, Default)]
pub struct PageQuery {
    #[serde(default)]
    page: usize,
}

/// The builds page: chroots, then the uploads in the build queue with their builds, newest
/// first, [`BUILDS_PER_PAGE`] a page.
pub async fn builds(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    page(state, headers, move |ctx, _| {
        let chroots = crate::build::chroot::all(ctx.state())?;
        let mut uploads = Vec::new();
        let all = crate::build::queue::overview(ctx.state())?;
        let pages = all.len().div_ceil(BUILDS_PER_PAGE).max(1);
        let now = crate::repo::wall_clock();
        for (u, builds) in all
            .into_iter()
            .rev()
            .skip(q.page * BUILDS_PER_PAGE)
            .take(BUILDS_PER_PAGE)
        {
            let builds: Vec<Value> = builds
                .into_values()
                .map(|b| {
                    context! {
                        arch => b.architecture.clone(),
                        state => crate::build::queue::state_name(b.state),
                        status => b.status.clone(),
                        optional => b.optional,
                        log => format!("/logs/{}/{}", u.id, b.architecture),
                        builder => b.builder.clone(),
                        // The remote's live log while it builds (ours once it is back).
                        remote_log => (!b.builder.is_empty() && !b.request.is_empty() && !b.state.is_final())
                            .then(|| format!("{}/remote/logs/{}", b.builder, b.request)),
                        started => b.started,
                        took => match (b.started, b.finished) {
                            (0, _) => String::new(),
                            (s, 0) => format!("running for {}", crate::crontab::duration(now - s)),
                            (s, f) => format!("took {}", crate::crontab::duration(f - s)),
                        },
                    }
                })
                .collect();
            uploads.push(context! {
                id => u.id.clone(),
                source => u.source.clone(),
                version => u.version.clone(),
                distribution => u.distribution.clone(),
                state => Value::from(Serde(u.state)),
                reason => u.reason.clone(),
                created => u.created,
                builds => builds,
            });
        }
        Ok((
            "builds.html",
            context! {
                chroots => Value::from(Serde(&chroots)),
                uploads => uploads,
                load => format!("{:.2}", ctx.builds.load(ctx.is_running())),
                page => q.page,
                pages => pages,
            },
        ))
    })
    .await
}

/// The setup page (staff): every configuration object with its status and buttons for its
/// actions, and a short setup form whose report shows on the call's result page.
pub async fn setup(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<MessageQuery>,
    headers: HeaderMap,
) -> Response {
    let creds = credentials(&headers);
    page(state, headers, move |ctx, _| {
        let json = |call: &str| -> Result<serde_json::Value, ApiError> {
            match ctx.invoke(call, "GET", &[], creds.as_deref())? {
                Output::Json(v) => Ok(v),
                Output::Text(t) => Ok(serde_json::Value::String(t)),
            }
        };
        let objects = json("config_objects")?;
        let chroots = json("chroots")?;
        Ok((
            "setup.html",
            context! {
                objects => Value::from(Serde(&objects)),
                chroots => Value::from(Serde(&chroots)),
                message => q.message,
            },
        ))
    })
    .await
}

/// The crontab: every job with its schedule, next and last run and its result lines; an
/// administrator can run one now.
pub async fn crontab(State(state): State<AppState>, headers: HeaderMap) -> Response {
    page(state, headers, |ctx, user| {
        let now = ctx.clock.now();
        let at = |t: i64| crate::crontab::utc_relative(t, now);
        let jobs: Vec<Value> = ctx
            .crontab
            .listing(ctx.state(), now)?
            .into_iter()
            .map(|j| {
                let next_text = j.next.map_or("—".to_string(), at);
                let last_text = j.last_start.map_or("never".to_string(), |t| {
                    format!("{} ({:.1} s)", at(t), j.last_seconds)
                });
                context! { ..Value::from(Serde(&j)), ..context! { next_text, last_text } }
            })
            .collect();
        let inspection =
            std::fs::read_to_string(crate::crontab::inspection_report(&ctx.home())).ok();
        Ok((
            "crontab.html",
            context! {
                jobs => jobs,
                now => crate::crontab::utc(now),
                admin => user.is_some_and(|u| u.level >= Level::Admin),
                inspection => inspection,
            },
        ))
    })
    .await
}

pub async fn repository(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    page(state, headers, move |ctx, _| {
        let engine = ctx.engine();
        let repo = engine
            .repositories()?
            .into_iter()
            .find(|r| r.identity == id)
            .ok_or_else(|| ApiError::NotFound(format!("No such repository '{id}'")))?;
        let layout = engine.layout(&repo.layout)?;
        let mut grid = Vec::new();
        for codename in &repo.codenames {
            let mut cells = Vec::new();
            for suite in &layout.suites {
                let main = DistName::new(codename, &repo.identity, &suite.name);
                let count = |d: &DistName| engine.dist_sources(&d.to_string()).map(|s| s.len());
                let rollbacks = (0..suite.rollback)
                    .map(|n| {
                        let d = DistName {
                            rollback: Some(n),
                            ..main.clone()
                        };
                        Ok(context! { dist => d.to_string(), count => count(&d)? })
                    })
                    .collect::<Result<Vec<_>, ApiError>>()?;
                cells.push(context! {
                    dist => main.to_string(),
                    count => count(&main)?,
                    rollbacks => rollbacks,
                });
            }
            grid.push(context! { codename => codename, cells => cells });
        }
        Ok((
            "repository.html",
            context! {
                repository => Value::from(Serde(&repo)),
                suites => Value::from(Serde(&layout.suites)),
                grid => grid,
            },
        ))
    })
    .await
}

pub async fn dist(
    State(state): State<AppState>,
    UrlPath(dist): UrlPath<String>,
    axum::extract::Query(q): axum::extract::Query<MessageQuery>,
    headers: HeaderMap,
) -> Response {
    page(state, headers, move |ctx, user| {
        let engine = ctx.engine();
        let r = engine.resolve(&dist)?;
        let snapshots = engine.snapshot_ls(&dist)?;
        let can_snapshot = user.is_some_and(|u| u.level >= Level::Admin);
        let sources: Vec<Value> = engine
            .dist_sources(&dist)?
            .into_iter()
            .map(|(name, version)| context! { name => name, version => version })
            .collect();
        Ok((
            "dist.html",
            context! {
                dist => dist,
                repository => r.repository.identity,
                sources => sources,
                snapshots => snapshots,
                can_snapshot => can_snapshot,
                message => q.message,
            },
        ))
    })
    .await
}

pub async fn package(
    State(state): State<AppState>,
    UrlPath(source): UrlPath<String>,
    axum::extract::Query(q): axum::extract::Query<MessageQuery>,
    headers: HeaderMap,
) -> Response {
    page(state, headers, move |ctx, user| {
        let engine = ctx.engine();
        let show = engine.show(&source)?;
        // Every suite of every codename, in layout order, so the page shows where the source
        // is not (yet) as well as where it is.
        let mut repositories: Vec<Value> = Vec::new();
        for repo in engine.repositories()? {
            let Some(found) = show.get(&repo.identity) else {
                continue;
            };
            let layout = engine.layout(&repo.layout)?;
            let mut dists: Vec<Value> = Vec::new();
            for codename in &repo.codenames {
                for suite in &layout.suites {
                    let name = DistName::new(codename, &repo.identity, &suite.name).to_string();
                    let e = found.get(&name).cloned().unwrap_or_default();
                    let rollbacks: Vec<Value> = e
                        .rollbacks
                        .iter()
                        .map(|(n, r)| context! { name => n, version => r.version.clone() })
                        .collect();
                    let migrates_to = suite
                        .migrates_to
                        .as_ref()
                        .map(|t| DistName::new(codename, &repo.identity, t).to_string());
                    dists.push(context! {
                        name => name,
                        version => e.version,
                        migrates_to => migrates_to,
                        is_migrated => e.is_migrated,
                        rollbacks => rollbacks,
                    });
                }
            }
            repositories.push(context! { name => repo.identity, dists => dists });
        }
        let level = user.map_or(Level::None, |u| u.level);
        Ok((
            "package.html",
            context! {
                source => source,
                repositories => repositories,
                can_migrate => level >= Level::Staff,
                can_remove => level >= Level::Admin,
                message => q.message,
            },
        ))
    })
    .await
}

fn call_value(c: &crate::api::Call) -> Value {
    let args: Vec<Value> = c
        .args
        .iter()
        .map(|a| {
            context! {
                name => a.name,
                kind => match a.kind {
                    crate::api::Kind::Bool => "bool",
                    crate::api::Kind::Int => "int",
                    crate::api::Kind::List => "list",
                    crate::api::Kind::Str => "str",
                },
                required => a.required,
                default => a.default,
                doc => a.doc,
            }
        })
        .collect();
    context! {
        name => c.name,
        level => c.level.name(),
        method => c.method(),
        doc => c.doc,
        args => args,
    }
}

pub async fn api_list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    page(state, headers, |_, _| {
        let calls: Vec<Value> = CALLS.iter().map(call_value).collect();
        Ok(("api.html", context! { calls => calls }))
    })
    .await
}

fn find_call(name: &str) -> Result<&'static crate::api::Call, ApiError> {
    crate::api::calls::find(name).ok_or_else(|| ApiError::NotFound(format!("No API call '{name}'")))
}

pub async fn api_form(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    page(state, headers, move |_, _| {
        let call = find_call(&name)?;
        Ok(("api_call.html", context! { call => call_value(call) }))
    })
    .await
}

/// Where a form may send the browser afterwards: only our own pages.
fn safe_next(next: &str) -> Option<&str> {
    (next == "/" || next.starts_with("/ui/"))
        .then_some(next)
        .filter(|n| !n.contains("//") && !n.contains('\\'))
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

/// Runs a call from a form; on success with `next`, back there with a message.
pub async fn api_run(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut raw: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let next = raw
        .iter()
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.clone());
    raw.retain(|(k, v)| k != "next" && !v.is_empty());
    let ctx = state.ctx.clone();
    let creds = credentials(&headers);
    let outcome = {
        let (ctx, name, raw) = (ctx.clone(), name.clone(), raw.clone());
        tokio::task::spawn_blocking(move || ctx.invoke(&name, "POST", &raw, creds.as_deref()))
            .await
            .unwrap_or_else(|e| Err(ApiError::Internal(e.to_string())))
    };
    let result_text = match &outcome {
        Ok(Output::Text(t)) => t.clone(),
        Ok(Output::Json(v)) => serde_json::to_string_pretty(v).unwrap_or_default(),
        Err(_) => String::new(),
    };
    if let (Ok(_), Some(next)) = (&outcome, next.as_deref().and_then(safe_next)) {
        let summary = raw
            .iter()
            .filter(|(k, _)| k != "password" && k != "key")
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let message = format!("{name} {summary}: done");
        let sep = if next.contains('?') { '&' } else { '?' };
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("message", &message)
            .finish();
        return redirect(&format!("{next}{sep}{query}"));
    }
    page(state, headers, move |_, _| {
        let call = find_call(&name)?;
        match outcome {
            Ok(_) => Ok((
                "api_call.html",
                context! { call => call_value(call), result => result_text },
            )),
            Err(e) => Err(e),
        }
    })
    .await
}

pub async fn login_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    page(state, headers, |_, _| Ok(("login.html", context! {}))).await
}

/// The session cookie; `Secure` when the request came over HTTPS.
fn session_cookie(value: &str, max_age: i64, tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    )
}

/// Marks requests that came over HTTPS (an extension the HTTPS endpoints add).
#[derive(Clone, Copy)]
pub struct Tls;

pub async fn login(
    State(state): State<AppState>,
    tls: Option<axum::Extension<Tls>>,
    body: axum::body::Bytes,
) -> Response {
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map_or(String::new(), |(_, v)| v.clone())
    };
    let (name, password) = (get("user"), get("password"));
    let ctx = state.ctx.clone();
    let result = tokio::task::spawn_blocking(move || {
        let state = ctx.state();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}"))
        );
        let user = auth::authenticate(state, Some(&basic))?
            .ok_or_else(|| ApiError::BadCredentials("no user".to_string()))?;
        let (secret, _) = auth::create_token(state, &user.name, auth::SESSION_LABEL)?;
        Ok::<_, ApiError>(format!("{}:{secret}", user.name))
    })
    .await
    .unwrap_or_else(|e| Err(ApiError::Internal(e.to_string())));
    match result {
        Ok(value) => {
            let mut r = redirect("/");
            let cookie = session_cookie(&value, auth::SESSION_SECONDS, tls.is_some());
            if let Ok(v) = cookie.parse() {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => {
            let ctx = state.ctx.clone();
            let base = tokio::task::spawn_blocking(move || base(&ctx, None))
                .await
                .unwrap_or_default();
            render(
                StatusCode::UNAUTHORIZED,
                "login.html",
                context! { error => e.detail(), ..base },
            )
        }
    }
}

pub async fn logout(
    State(state): State<AppState>,
    tls: Option<axum::Extension<Tls>>,
    headers: HeaderMap,
) -> Response {
    if let Some(value) = session(&headers) {
        let ctx: Arc<Context> = state.ctx.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some((_, secret)) = value.split_once(':') {
                let _ = auth::revoke_secret(ctx.state(), secret);
            }
        })
        .await;
    }
    let mut r = redirect("/");
    if let Ok(v) = session_cookie("", 0, tls.is_some()).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `/static/live.js`: the live update of the parts of a page marked `data-live`.
pub async fn live_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("static/live.js"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        for (name, _) in TEMPLATES {
            templates().get_template(name).unwrap();
        }
    }

    #[test]
    fn next_stays_on_our_pages() {
        assert_eq!(safe_next("/ui/package/x"), Some("/ui/package/x"));
        assert_eq!(safe_next("/"), Some("/"));
        assert_eq!(safe_next("https://evil.example/"), None);
        assert_eq!(safe_next("//evil.example/"), None);
        assert_eq!(safe_next("/ui//evil"), None);
    }

    #[test]
    fn session_cookie_becomes_basic_credentials() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=b; mbd_session=dev:s3cret".parse().unwrap(),
        );
        let basic = credentials(&h).unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(decoded, b"dev:s3cret");
    }
}
