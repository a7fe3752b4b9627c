//! Handlers of the calls about the daemon itself: status, keys, client configuration (dput, apt sources), start and stop.

use crate::api::{ApiError, Context, Invocation, Output};
use crate::repo::distribution::DistName;
use crate::repo::{Engine, Repository};
use serde_json::json;
use std::sync::atomic::Ordering;

pub(crate) fn status(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let engine = ctx.engine();
    let running = ctx.is_running();
    let mut out = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "identity": engine.instance().identity,
        "url": ctx.url,
        "incoming_url": format!("{}/incoming/", ctx.url),
        "running": running,
        // Builds running or waiting for a slot (ours and remotes'), per slot; -1 while
        // stopped (as mini-buildd reports it).
        "load": load(ctx, running)?,
        "chroots": crate::build::chroot::all(ctx.state())?
            .iter()
            .map(|c| json!({"chroot": c.id(), "state": c.state}))
            .collect::<Vec<_>>(),
        // `codename:arch` of the chroots builds may use now (peers route by it).
        "build_chroots": crate::build::chroot::all(ctx.state())?
            .iter()
            .filter(|c| c.state == crate::build::chroot::ChrootState::Ready && !c.deactivated)
            .map(|c| crate::remote::chroot(&c.codename, &c.architecture))
            .collect::<Vec<_>>(),
        // The remotes we know (active or auto-reactivate): a peer's check looks for itself.
        "remotes": crate::remote::known(ctx.state())?,
        "uptime": ctx.started.elapsed().map_or(0, |d| d.as_secs()),
        // Bytes per part of the home (null until the first housekeeping round measured it).
        "disk": *ctx.disk.lock().unwrap_or_else(|e| e.into_inner()),
    });
    if inv.args.bool("with_repositories") {
        let mut repos = serde_json::Map::new();
        for r in engine.repositories()? {
            let layout = engine.layout(&r.layout)?;
            let mut dists = Vec::new();
            for codename in &r.codenames {
                for suite in &layout.suites {
                    dists.push(DistName::new(codename, &r.identity, &suite.name).to_string());
                }
            }
            repos.insert(
                r.identity.clone(),
                json!({
                    "layout": r.layout,
                    "codenames": r.codenames,
                    "allow_unauthenticated_uploads": r.allow_unauthenticated_uploads,
                    "distributions": dists,
                }),
            );
        }
        out["repositories"] = serde_json::Value::Object(repos);
    }
    Ok(Output::Json(out))
}

/// Our load: running builds per slot, plus the builds remotes asked of us still waiting.
fn load(ctx: &Context, running: bool) -> Result<f64, ApiError> {
    if !running {
        return Ok(-1.0);
    }
    let waiting = crate::remote::builds::waiting(ctx.state())?;
    let slots = ctx.builds.slots.load(Ordering::SeqCst).max(1);
    let load = ctx.builds.load(true) + waiting as f64 / slots as f64;
    Ok((load * 100.0).round() / 100.0)
}

pub(crate) fn pub_key(ctx: &Context, _: &Invocation) -> Result<Output, ApiError> {
    let key = ctx.engine().key().public_armored();
    Ok(Output::Text(String::from_utf8_lossy(&key).into_owned()))
}

/// `host:port` of a base URL.
pub fn authority(url: &str) -> &str {
    url.split_once("://")
        .map_or(url, |(_, rest)| rest)
        .trim_end_matches('/')
}

/// The dput.cf section for uploading over HTTP.
/// Where and how dput reaches the incoming.
pub struct Incoming<'a> {
    pub url: &'a str,
    /// `host:port`
    pub https: Option<&'a str>,
    /// `host:port`
    pub ftp: Option<&'a str>,
    /// The `login` dput uses (`anonymous` unless uploads need a login).
    pub login: &'a str,
}

/// The dput.cf sections: HTTP (`mbd-<identity>`), and HTTPS (`mbd-<identity>-https`) and FTP
/// (`mbd-<identity>-ftp`) if served.
pub fn dput_sections(identity: &str, to: &Incoming<'_>) -> String {
    let section = |suffix: &str, method: &str, fqdn: &str| {
        format!(
            "[mbd-{identity}{suffix}]\nmethod   = {method}\nfqdn     = {fqdn}\nincoming = /incoming\nlogin    = {}\n",
            to.login
        )
    };
    let mut text = section("", "http", authority(to.url));
    if let Some(https) = to.https {
        text.push('\n');
        text.push_str(&section("-https", "https", https));
    }
    if let Some(ftp) = to.ftp {
        text.push('\n');
        text.push_str(&section("-ftp", "ftp", ftp));
    }
    text
}

pub(crate) fn dput_conf(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let identity = ctx.engine().instance().identity.clone();
    Ok(Output::Text(dput_sections(
        &identity,
        &ctx.dput_incoming(inv.user.as_ref().map(|u| u.name.as_str())),
    )))
}

/// What `sources_list` lists: one entry per distribution (and type).
pub(crate) struct SourcesRequest<'a> {
    codenames: &'a [String],
    repositories: &'a [String],
    suites: &'a [String],
    rollbacks: i64,
    snapshot: Option<&'a str>,
}

pub(crate) struct SourcesEntry {
    repository: String,
    suite_path: String,
    components: Vec<String>,
    comment: String,
}

pub(crate) fn sources_entries(
    engine: &Engine,
    req: &SourcesRequest<'_>,
) -> Result<Vec<SourcesEntry>, ApiError> {
    let pick =
        |filter: &[String], value: &str| filter.is_empty() || filter.iter().any(|f| f == value);
    let repos: Vec<Repository> = engine.repositories()?;
    for want in req.repositories {
        if !repos.iter().any(|r| &r.identity == want) {
            return Err(ApiError::NotFound(format!("No such repository '{want}'")));
        }
    }
    let mut out = Vec::new();
    for repo in repos.iter().filter(|r| pick(req.repositories, &r.identity)) {
        let layout = engine.layout(&repo.layout)?;
        for want in req.suites {
            if layout.suite(want).is_none() {
                return Err(ApiError::NotFound(format!(
                    "No suite '{want}' in layout '{}' of repository '{}'",
                    layout.name, repo.identity
                )));
            }
        }
        for codename in repo.codenames.iter().filter(|c| pick(req.codenames, c)) {
            let dist = engine.distribution(codename)?;
            let mut components = dist.components.clone();
            components.sort();
            for suite in layout.suites.iter().filter(|s| pick(req.suites, &s.name)) {
                let main = DistName::new(codename, &repo.identity, &suite.name);
                let count = if req.rollbacks < 0 {
                    suite.rollback
                } else {
                    (req.rollbacks as u64).min(u64::from(suite.rollback)) as u32
                };
                let names = std::iter::once(main.clone()).chain((0..count).map(|n| DistName {
                    rollback: Some(n),
                    ..main.clone()
                }));
                for name in names {
                    let name = name.to_string();
                    let suite_path = match req.snapshot {
                        Some(s) => format!("{name}/snapshots/{s}"),
                        None => name.clone(),
                    };
                    out.push(SourcesEntry {
                        repository: repo.identity.clone(),
                        comment: format!(
                            "{} '{suite_path}' ({} layout)",
                            engine.instance().origin(),
                            layout.name
                        ),
                        suite_path,
                        components: components.clone(),
                    });
                }
            }
        }
    }
    Ok(out)
}

pub(crate) fn sources_list(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    let engine = ctx.engine();
    let identity = engine.instance().identity.clone();
    let types = a.list("types");
    for t in types {
        if t != "deb" && t != "deb-src" {
            return Err(ApiError::BadRequest(format!(
                "sources_list: type '{t}' is neither deb nor deb-src"
            )));
        }
    }
    let deb822 = match a.str("format") {
        "list" => false,
        "sources" => true,
        other => {
            return Err(ApiError::BadRequest(format!(
                "sources_list: format '{other}' is neither list nor sources"
            )));
        }
    };
    if let Some(s) = a.opt("snapshot") {
        if s.contains('/') || s.starts_with('.') {
            return Err(ApiError::BadRequest(format!(
                "sources_list: '{s}' is not a snapshot name"
            )));
        }
    }
    let entries = sources_entries(
        engine,
        &SourcesRequest {
            codenames: a.list("codenames"),
            repositories: a.list("repositories"),
            suites: a.list("suites"),
            rollbacks: a.int("rollbacks"),
            snapshot: a.opt("snapshot"),
        },
    )?;
    let base = match a.opt("mirror") {
        Some(m) => m.trim_end_matches('/').to_string(),
        None => format!("{}/repositories", ctx.url),
    };
    let key_path = format!("/etc/apt/keyrings/mbd-{identity}.asc");
    let signed_by = a.opt("signed_by").unwrap_or(&key_path);
    if signed_by == "inline" && !deb822 {
        return Err(ApiError::BadRequest(
            "sources_list: signed_by=inline needs format=sources".to_string(),
        ));
    }
    let mut text = String::new();
    for e in &entries {
        let uri = format!("{base}/{}", e.repository);
        if a.bool("with_comment") {
            text.push_str(&format!("# {}\n", e.comment));
        }
        if deb822 {
            text.push_str(&format!(
                "Types: {}\nURIs: {uri}\nSuites: {}\nComponents: {}\n",
                types.join(" "),
                e.suite_path,
                e.components.join(" ")
            ));
            if signed_by == "inline" {
                let key = String::from_utf8_lossy(&engine.key().public_armored()).into_owned();
                text.push_str("Signed-By:\n");
                for line in key.lines() {
                    if line.is_empty() {
                        text.push_str(" .\n");
                    } else {
                        text.push_str(&format!(" {line}\n"));
                    }
                }
            } else {
                text.push_str(&format!("Signed-By: {signed_by}\n"));
            }
            for opt in a.str("options").split_whitespace() {
                if let Some((k, v)) = opt.split_once('=') {
                    text.push_str(&format!("{}: {v}\n", deb822_option(k)));
                }
            }
            text.push('\n');
        } else {
            let mut options = format!("signed-by={signed_by}");
            if let Some(extra) = a.opt("options") {
                options.push(' ');
                options.push_str(extra);
            }
            for t in types {
                text.push_str(&format!(
                    "{t} [{options}] {uri} {} {}\n",
                    e.suite_path,
                    e.components.join(" ")
                ));
            }
        }
    }
    Ok(Output::Text(text))
}

/// One-line option names as deb822 field names (`arch` → `Architectures`, ...).
pub(crate) fn deb822_option(key: &str) -> String {
    match key {
        "arch" => "Architectures".to_string(),
        "lang" => "Languages".to_string(),
        "target" => "Targets".to_string(),
        "pdiffs" => "PDiffs".to_string(),
        "by-hash" => "By-Hash".to_string(),
        other => other
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("-"),
    }
}

pub(crate) fn start(ctx: &Context, _: &Invocation) -> Result<Output, ApiError> {
    let was = ctx.running.swap(true, Ordering::SeqCst);
    tracing::info!("started by API");
    // Uploads that arrived during maintenance are decided now.
    ctx.process_uploads(None);
    Ok(Output::Text(
        if was { "already started" } else { "started" }.to_string(),
    ))
}

pub(crate) fn stop(ctx: &Context, _: &Invocation) -> Result<Output, ApiError> {
    let was = ctx.running.swap(false, Ordering::SeqCst);
    tracing::info!("stopped for maintenance by API");
    Ok(Output::Text(
        if was { "stopped" } else { "already stopped" }.to_string(),
    ))
}
