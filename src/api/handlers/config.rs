//! Handlers of the setup and configuration calls: setup, configuration objects and their status actions, layouts, distributions.

use super::builds::chroot_action;
use crate::api::{ApiError, Context, Invocation, Output};
use crate::state::StateStore;
use serde_json::json;

/// What setup needs from the running daemon: the network, the host, the build queue.
pub(crate) struct DaemonEnv<'a> {
    ctx: &'a Context,
    http: crate::config::Http,
    /// The daemon's home (its settings file).
    home: std::path::PathBuf,
}

impl<'a> DaemonEnv<'a> {
    pub(crate) fn new(ctx: &'a Context) -> DaemonEnv<'a> {
        DaemonEnv {
            ctx,
            http: crate::config::Http::default(),
            home: ctx.home(),
        }
    }
}

pub(crate) fn setup(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    let list = |n: &str| a.list(n).to_vec();
    let req = crate::setup::Request {
        identity: a
            .opt("identity")
            .filter(|i| !i.is_empty())
            .map(str::to_string),
        ftp_endpoint: a
            .opt("ftp_endpoint")
            .filter(|i| !i.is_empty())
            .map(str::to_string),
        from_origins: list("from_origins"),
        preset: a
            .opt("preset")
            .filter(|p| !p.is_empty())
            .map(str::to_string),
        archives: list("archives"),
        archives_from_origins: a.bool("archives_from_origins"),
        archives_from_apt_sources: a.bool("archives_from_apt_sources"),
        sources: list("sources"),
        sources_from_origins: a.bool("sources_from_origins"),
        distributions: list("distributions"),
        distributions_from_sources: a.bool("distributions_from_sources"),
        repositories: list("repositories"),
        repositories_from_distributions: list("repositories_from_distributions"),
        chroots: list("chroots"),
        chroots_from_sources: a.bool("chroots_from_sources"),
        chroots_backend: a.str("chroots_backend").to_string(),
        remotes: list("remotes"),
        update: a.bool("update"),
        pca: a.bool("pca"),
    };
    let format = a.str("format");
    if !matches!(format, "text" | "json") {
        return Err(ApiError::BadRequest(format!(
            "setup: format '{format}' is not text or json"
        )));
    }
    // No write token here: setup fetches and checks first and takes the token only for
    // what changes the engine (see `Env::write_token`).
    let mut env = DaemonEnv::new(ctx);
    let report = crate::setup::run(ctx.engine(), ctx.state(), &req, &mut env)?;
    match format {
        "json" => Output::json(&report),
        _ => Ok(Output::Text(report.text())),
    }
}

pub(crate) fn config_objects(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    use crate::config::{AptKey, Archive, KINDS, Source};
    let kind = inv.args.str("kind");
    if !kind.is_empty() && !KINDS.contains(&kind) && kind != "remote" {
        return Err(ApiError::BadRequest(format!(
            "config_objects: kind '{kind}' is not one of {}, remote",
            KINDS.join(", ")
        )));
    }
    let engine = ctx.engine();
    let with_label = |status: &crate::status::Status, v: serde_json::Value| {
        let mut v = v;
        v["label"] = json!(status.label());
        v
    };
    let mut out = serde_json::Map::new();
    if kind.is_empty() || kind == "archive" {
        let all: Vec<Archive> = ctx
            .state()
            .all::<Archive>()?
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        out.insert("archive".into(), json!(all));
    }
    if kind.is_empty() || kind == "aptkey" {
        let all: Vec<serde_json::Value> = ctx
            .state()
            .all::<AptKey>()?
            .into_iter()
            .map(|(_, k)| {
                let mut k = k;
                k.key.clear();
                with_label(&k.status, json!(k))
            })
            .collect();
        out.insert("aptkey".into(), json!(all));
    }
    if kind.is_empty() || kind == "source" {
        let all: Vec<serde_json::Value> = ctx
            .state()
            .all::<Source>()?
            .into_iter()
            .map(|(_, s)| {
                let mut v = with_label(&s.status, json!(s));
                v["codeversion"] = json!(s.codeversion());
                v
            })
            .collect();
        out.insert("source".into(), json!(all));
    }
    if kind.is_empty() || kind == "repository" {
        let all: Vec<serde_json::Value> = engine
            .repositories()?
            .into_iter()
            .map(|r| with_label(&r.status, json!(r)))
            .collect();
        out.insert("repository".into(), json!(all));
    }
    if kind.is_empty() || kind == "remote" {
        let all: Vec<serde_json::Value> = crate::remote::all(ctx.state())?
            .iter()
            .map(super::remotes::remote_view)
            .collect();
        out.insert("remote".into(), json!(all));
    }
    Ok(Output::Json(serde_json::Value::Object(out)))
}

pub(crate) fn config_action(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    if a.str("kind") == "chroot" {
        return chroot_action(ctx, a.str("id"), a.str("action"));
    }
    if a.str("kind") == "remote" {
        return super::remotes::remote_action(ctx, a.str("id"), a.str("action"));
    }
    let status = crate::config::act_taking(
        ctx.engine(),
        ctx.state(),
        a.str("kind"),
        a.str("id"),
        a.str("action"),
        &crate::config::Http::default(),
        crate::repo::publish_time(),
        &|| Box::new(ctx.writer()),
    )?;
    Output::json(&json!({"status": status, "label": status.label()}))
}

pub(crate) fn config_set(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    if a.str("kind") == "remote" {
        return super::remotes::remote_set(ctx, a.str("id"), a.str("field"), a.list("value"));
    }
    let status = crate::config::set(
        ctx.state(),
        a.str("kind"),
        a.str("id"),
        a.str("field"),
        a.list("value"),
    )?;
    Output::json(&json!({"status": status, "label": status.label()}))
}

pub(crate) fn layouts(ctx: &Context, _: &Invocation) -> Result<Output, ApiError> {
    Output::json(&ctx.engine().layouts()?)
}

pub(crate) fn layout_set(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let layout: crate::repo::layout::Layout = serde_json::from_str(inv.args.str("layout"))
        .map_err(|e| ApiError::BadRequest(format!("layout_set: not a layout: {e}")))?;
    ctx.writer().set_layout(&layout)?;
    Ok(Output::Text(format!("layout '{}' set", layout.name)))
}

pub(crate) fn distributions(ctx: &Context, _: &Invocation) -> Result<Output, ApiError> {
    let all = ctx.engine().distributions()?;
    Output::json(&all)
}

pub(crate) fn distribution_set(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    let engine = ctx.writer();
    let codename = a.str("codename");
    let mut d = engine
        .find_distribution(codename)?
        .ok_or_else(|| ApiError::NotFound(format!("No distribution '{codename}'")))?;
    let value = a.list("value");
    let field = a.str("field");
    let bad = |why: String| ApiError::BadRequest(format!("distribution_set: {why}"));
    let text = || match value {
        [] => Ok(String::new()),
        [t] => Ok(t.replace("\r\n", "\n")),
        _ => Err(bad(format!("{field} takes one text (or none to clear it)"))),
    };
    let words = || {
        let word = |w: &&String| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"=._+-:,".contains(&b))
        };
        match value.iter().find(|w| !word(w)) {
            Some(w) => Err(bad(format!("'{w}' is not a word of [A-Za-z0-9=._+-:,]"))),
            None => Ok(value.to_vec()),
        }
    };
    match field {
        "optional_architectures" => d.set_optional_architectures(words()?).map_err(bad)?,
        "deb_build_options" => d.build.deb_build_options = words()?,
        "deb_build_profiles" => d.build.deb_build_profiles = words()?,
        "lintian_mode" => d.build.lintian_mode = qa_mode(field, value)?,
        "autopkgtest_mode" => d.build.autopkgtest_mode = qa_mode(field, value)?,
        "build_dep_resolver" => {
            d.build.build_dep_resolver = match value {
                [] => String::new(),
                [r] if r == "apt" || r == "aptitude" => r.clone(),
                _ => {
                    return Err(bad(format!(
                        "build_dep_resolver '{}' is not apt or aptitude",
                        value.join(" ")
                    )));
                }
            }
        }
        "add_depends" => {
            if let Some(v) = value
                .iter()
                .find(|v| v.trim().is_empty() || v.contains(',') || v.chars().any(char::is_control))
            {
                return Err(bad(format!(
                    "add_depends '{v}' is not one dependency (give one value per dependency)"
                )));
            }
            d.build.add_depends = value.iter().map(|v| v.trim().to_string()).collect();
        }
        "chroot_setup_script" => {
            let script = text()?;
            if !script.is_empty() && !script.starts_with("#!") {
                return Err(bad(
                    "chroot_setup_script must start with a '#!' line".to_string()
                ));
            }
            d.build.chroot_setup_script = script;
        }
        "sbuildrc_snippet" => d.build.sbuildrc_snippet = text()?,
        other => {
            return Err(bad(format!(
                "'{other}' cannot be set (settable: optional_architectures, deb_build_options, deb_build_profiles, lintian_mode, autopkgtest_mode, build_dep_resolver, add_depends, chroot_setup_script, sbuildrc_snippet; setup sets the rest)"
            )));
        }
    }
    engine.put_distribution(&d)?;
    Output::json(&d)
}

impl From<crate::config::ConfigError> for ApiError {
    fn from(e: crate::config::ConfigError) -> ApiError {
        use crate::config::ConfigError as C;
        match e {
            C::Repo(r) => ApiError::Repo(r),
            C::State(e) => e.into(),
            C::NotFound { .. } => ApiError::NotFound(e.to_string()),
            C::Object { .. } | C::Setup(_) => ApiError::BadRequest(e.to_string()),
        }
    }
}

impl crate::setup::Env for DaemonEnv<'_> {
    fn fetch(&self) -> &dyn crate::config::Fetch {
        &self.http
    }
    fn now(&self) -> i64 {
        crate::repo::publish_time()
    }
    fn distro_info(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(std::path::Path::new("/usr/share/distro-info").join(file)).ok()
    }
    fn apt_archives(&self) -> Vec<String> {
        crate::setup::apt_archives(std::path::Path::new("/etc/apt"))
    }
    fn native_architectures(&self) -> Vec<String> {
        crate::build::chroot::native_architectures(&crate::settings::host_distribution().1)
    }
    fn request_chroot(
        &mut self,
        state: &StateStore,
        chroot: crate::build::chroot::Chroot,
    ) -> Result<(), String> {
        self.ctx
            .builds
            .request(state, chroot)
            .map_err(|e| e.to_string())
    }
    fn ftp_endpoints(&self) -> (Vec<String>, Option<String>) {
        let configured = crate::settings::Settings::load_or_create(&self.home)
            .map(|s| s.ftp_endpoints)
            .unwrap_or_default();
        (configured, self.ctx.ftp.clone())
    }
    fn set_ftp_endpoints(&mut self, endpoints: &[String]) -> Result<(), String> {
        crate::settings::Settings::update(&self.home, |s| s.ftp_endpoints = endpoints.to_vec())
            .map_err(|e| e.to_string())
    }
    fn write_token(&self) -> Box<dyn crate::state::Token + '_> {
        Box::new(self.ctx.writer())
    }
    fn act_remote(&self, state: &StateStore, url: &str, action: &str) -> Result<(), String> {
        self.ctx
            .as_peer(|us| {
                crate::remote::act(state, url, action, us, crate::repo::wall_clock(), &|| {
                    Box::new(self.ctx.writer())
                })
            })
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// A QA tool's mode for `distribution_set`: one of mini-buildd's mode names, or none to use
/// the daemon's.
fn qa_mode(field: &str, value: &[String]) -> Result<String, ApiError> {
    match value {
        [] => Ok(String::new()),
        [m] if crate::changelog::QaMode::parse(m).is_some() => Ok(m.to_ascii_lowercase()),
        _ => Err(ApiError::BadRequest(format!(
            "distribution_set: {field} '{}' is not disabled, ignore, errfail or warnfail",
            value.join(" ")
        ))),
    }
}
