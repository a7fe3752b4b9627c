//! `mbd api`: the command-line client, generated from the call registry.
//!
//! Credentials come from the environment (`MBD_USER` with `MBD_PASSWORD` or `MBD_TOKEN`), from
//! `--password-file`, or — on the daemon's own machine — from the admin token the daemon keeps
//! in `<home>/etc/api-token` (readable by the daemon's user only). Never from the URL.

use super::calls::CALLS;
use super::{Call, Kind};
use base64::Engine as _;
use clap::{Arg as ClapArg, ArgAction, ArgMatches, Command};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Usage(String),
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{path}: {reason}")]
    Credentials { path: PathBuf, reason: String },
    /// The daemon refused or failed: its problem detail and the HTTP status.
    #[error("{detail} (HTTP {status})")]
    Refused { status: u16, detail: String },
}

/// Where the daemon writes the URL it serves, for clients on the same home.
pub fn url_file(home: &Path) -> PathBuf {
    home.join("var/run/http.url")
}

/// The local admin credential the daemon creates at first start.
pub fn token_file(home: &Path) -> PathBuf {
    home.join("etc/api-token")
}

fn flag_name(name: &str) -> String {
    name.replace('_', "-")
}

/// The `api` subcommand with one subcommand per call.
pub fn command() -> Command {
    let mut cmd = Command::new("api")
        .about("Call the daemon's API (one subcommand per call)")
        .subcommand_required(true)
        .arg(
            ClapArg::new("url")
                .long("url")
                .env("MBD_URL")
                .global(true)
                .help("Daemon URL (default: the daemon running on --home, else http://localhost:8066)"),
        )
        .arg(
            ClapArg::new("user")
                .long("user")
                .env("MBD_USER")
                .global(true)
                .help("User name; the secret comes from MBD_PASSWORD, MBD_TOKEN or --password-file"),
        )
        .arg(
            ClapArg::new("password-file")
                .long("password-file")
                .value_parser(clap::value_parser!(PathBuf))
                .global(true)
                .help("File whose first line is the password or token"),
        )
        .arg(
            ClapArg::new("json")
                .long("json")
                .action(ArgAction::SetTrue)
                .global(true)
                .help("Print the result as JSON, also when it is text"),
        );
    for call in CALLS {
        cmd = cmd.subcommand(call_command(call));
    }
    cmd
}

fn call_command(call: &Call) -> Command {
    let mut sub = Command::new(call.name).about(call.doc).after_help(format!(
        "Authorization: {}. HTTP: {} /api/{}",
        call.level.name(),
        call.method(),
        call.name
    ));
    for a in call.args {
        let mut arg = ClapArg::new(a.name).help(a.doc);
        if a.required {
            // Values such as an armored key start with '-'.
            arg = arg.required(true).allow_hyphen_values(true);
            if a.kind == Kind::List {
                arg = arg
                    .num_args(1..)
                    .action(ArgAction::Append)
                    .value_delimiter(',');
            }
        } else {
            arg = arg.long(flag_name(a.name));
            arg = match a.kind {
                Kind::Bool => arg.action(ArgAction::SetTrue),
                Kind::List => arg
                    .num_args(1..)
                    .action(ArgAction::Append)
                    .value_delimiter(','),
                Kind::Int => arg.allow_negative_numbers(true),
                Kind::Str => arg,
            };
            if !a.default.is_empty() && a.kind != Kind::Bool {
                arg = arg.help(format!("{} [default: {}]", a.doc, a.default));
            }
        }
        sub = sub.arg(arg);
    }
    sub
}

/// The wire arguments of a parsed call.
fn wire_args(call: &Call, m: &ArgMatches) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for a in call.args {
        let value = match a.kind {
            Kind::Bool if !a.required => m.get_flag(a.name).then(|| "true".to_string()),
            Kind::List => m
                .get_many::<String>(a.name)
                .map(|v| v.cloned().collect::<Vec<_>>().join(",")),
            _ => m.get_one::<String>(a.name).cloned(),
        };
        if let Some(v) = value {
            out.push((a.name.to_string(), v));
        }
    }
    out
}

enum Auth {
    None,
    Basic(String, String),
    Bearer(String),
}

impl Auth {
    fn header(&self) -> Option<String> {
        match self {
            Auth::None => None,
            Auth::Basic(u, s) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{s}"))
            )),
            Auth::Bearer(t) => Some(format!("Bearer {t}")),
        }
    }
}

fn first_line(path: &Path) -> Result<String, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|e| ClientError::Credentials {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

fn credentials(m: &ArgMatches, home: &Path, local: bool) -> Result<Auth, ClientError> {
    let user = m.get_one::<String>("user").cloned();
    let secret = match m.get_one::<PathBuf>("password-file") {
        Some(p) => Some(first_line(p)?),
        None => std::env::var("MBD_PASSWORD").ok(),
    };
    match (user, secret, std::env::var("MBD_TOKEN").ok()) {
        (Some(u), Some(s), _) => Ok(Auth::Basic(u, s)),
        (Some(u), None, Some(t)) => Ok(Auth::Basic(u, t)),
        (None, _, Some(t)) => Ok(Auth::Bearer(t)),
        (Some(u), None, None) => Err(ClientError::Usage(format!(
            "no secret for user '{u}': set MBD_PASSWORD or MBD_TOKEN, or use --password-file"
        ))),
        (None, Some(_), None) => Err(ClientError::Usage(
            "a password needs a user: set MBD_USER or use --user".to_string(),
        )),
        (None, None, None) => {
            // On the daemon's machine, its local admin token (if we may read it).
            let file = token_file(home);
            match (local, std::fs::read_to_string(&file)) {
                (true, Ok(text)) => match text.trim().split_once(':') {
                    Some((u, t)) => Ok(Auth::Basic(u.to_string(), t.to_string())),
                    None => Err(ClientError::Credentials {
                        path: file,
                        reason: "not '<user>:<token>'".to_string(),
                    }),
                },
                _ => Ok(Auth::None),
            }
        }
    }
}

/// Runs `mbd api ...`; returns whether the call succeeded.
pub fn run(m: &ArgMatches, home: &Path) -> Result<(), ClientError> {
    let (name, sub) = m
        .subcommand()
        .ok_or_else(|| ClientError::Usage("which call? (mbd api --help)".to_string()))?;
    let call = super::calls::find(name)
        .ok_or_else(|| ClientError::Usage(format!("no API call '{name}'")))?;
    // Global options are read where clap puts them for sure: on the call's own matches.
    let (url, local) = match sub.get_one::<String>("url") {
        Some(u) => (u.trim_end_matches('/').to_string(), false),
        None => match std::fs::read_to_string(url_file(home)) {
            Ok(u) => (u.trim().trim_end_matches('/').to_string(), true),
            Err(_) => ("http://localhost:8066".to_string(), false),
        },
    };
    let authority = url.split_once("://").map_or("", |(_, r)| r);
    if authority.split('/').next().unwrap_or("").contains('@') {
        return Err(ClientError::Usage(format!(
            "{url}: credentials do not go in the URL; use --user with MBD_PASSWORD, MBD_TOKEN or --password-file"
        )));
    }
    let auth = credentials(sub, home, local)?;
    let args = wire_args(call, sub);
    let endpoint = format!("{url}/api/{}", call.name);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let transport = |e: ureq::Error| ClientError::Transport {
        url: endpoint.clone(),
        reason: e.to_string(),
    };
    let mut pairs = args.clone();
    pairs.push(("output".to_string(), "json".to_string()));
    let mut response = if call.changes {
        let mut req = agent.post(&endpoint);
        if let Some(h) = auth.header() {
            req = req.header("Authorization", h);
        }
        req.send_form(pairs).map_err(transport)?
    } else {
        let mut req = agent.get(&endpoint).query_pairs(pairs);
        if let Some(h) = auth.header() {
            req = req.header("Authorization", h);
        }
        req.call().map_err(transport)?
    };
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().map_err(transport)?;
    let value: Option<serde_json::Value> = serde_json::from_str(&body).ok();
    if !(200..300).contains(&status) {
        let detail = value
            .as_ref()
            .and_then(|v| v.get("detail"))
            .and_then(|d| d.as_str())
            .map_or_else(|| body.trim().to_string(), str::to_string);
        return Err(ClientError::Refused { status, detail });
    }
    let json = sub.get_flag("json");
    match value {
        Some(serde_json::Value::String(s)) if !json => {
            print!("{s}");
            if !s.ends_with('\n') {
                println!();
            }
        }
        Some(v) => println!(
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_else(|_| body.clone())
        ),
        None => {
            return Err(ClientError::Transport {
                url: endpoint,
                reason: format!("the answer is not JSON: {}", body.trim()),
            });
        }
    }
    Ok(())
}
