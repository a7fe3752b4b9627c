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

use crate::api::{self, ApiError, Context, Output};
use crate::repo::{Engine, RepoError, SetupOptions};
use crate::settings::write_atomic;
pub use crate::settings::{Settings, SettingsError, host_distribution, settings_path};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// What `mbd daemon` is given on its command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub home: PathBuf,
    pub http_endpoints: Vec<String>,
    pub ftp_endpoints: Vec<String>,
    pub hostname: Option<String>,
    pub log_level: Option<String>,
    /// The administrator's password at first start (else one is generated and printed).
    pub admin_password: Option<String>,
    /// On a new home, prepare the build chroot for the host.
    pub default_chroot: bool,
    /// On a new home, create the default repository (else only the key and the instance).
    pub default_setup: bool,
    /// On a new home, the instance identity (default: the short host name).
    pub identity: Option<String>,
}

/// The exclusive lock on a home, held for the daemon's life.
pub struct HomeLock {
    _file: std::fs::File,
}

pub fn lock_path(home: &Path) -> PathBuf {
    home.join("var/run/daemon.lock")
}

impl HomeLock {
    pub fn acquire(home: &Path) -> Result<HomeLock, DaemonError> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let path = lock_path(home);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let pid = std::fs::read_to_string(&path)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty());
            return Err(DaemonError::Locked {
                home: home.to_path_buf(),
                pid,
            });
        }
        file.set_len(0).map_err(io(&path))?;
        writeln!(file, "{}", std::process::id()).map_err(io(&path))?;
        Ok(HomeLock { _file: file })
    }

    /// Whether a daemon holds the lock of `home` now.
    pub fn is_held(home: &Path) -> bool {
        use std::os::fd::AsRawFd;
        let Ok(file) = std::fs::File::open(lock_path(home)) else {
            return false;
        };
        // SAFETY: as above; a shared probe that is released when `file` closes.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 }
    }
}

/// Sets up logging for the daemon: stderr (journald keeps it) and `<home>/var/log/daemon.log`.
pub fn init_logging(home: &Path, level: &str) -> Result<(), DaemonError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let path = home.join("var/log/daemon.log");
    let file = log::RotatingFile::open(&path, log::MAX_SIZE).map_err(io(&path))?;
    let filter =
        tracing_subscriber::EnvFilter::try_new(level).map_err(|e| DaemonError::Settings {
            path: settings_path(home),
            reason: format!("log level '{level}': {e}"),
        })?;
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(file),
        )
        .try_init()
        .map_err(|e| DaemonError::Settings {
            path: settings_path(home),
            reason: format!("logging: {e}"),
        })
}

/// Opens the engine; on an empty home creates the embedded default: one repository `test`
/// (layout Default, unauthenticated uploads allowed) for the host's codename and architecture.
fn open_or_create(
    home: &Path,
    default_setup: bool,
    identity: Option<String>,
) -> Result<(Engine, bool), DaemonError> {
    match Engine::open(home) {
        Ok(e) => Ok((e, false)),
        Err(RepoError::NotSetUp { .. }) if !default_setup => {
            tracing::info!("empty home: creating the archive key only (no default setup)");
            let opts = SetupOptions {
                identity,
                ..SetupOptions::default()
            };
            Ok((Engine::setup(home, &opts)?, true))
        }
        Err(RepoError::NotSetUp { .. }) => {
            let (codename, arch) = host_distribution();
            tracing::info!(%codename, %arch, "empty home: creating the default setup");
            let engine = Engine::setup(
                home,
                &SetupOptions {
                    identity,
                    distributions: vec![format!("{codename}:{arch}")],
                    repositories: vec![format!("test:Default:{codename}")],
                    ..SetupOptions::default()
                },
            )?;
            Ok((engine, true))
        }
        Err(e) => Err(e.into()),
    }
}

/// Makes sure an administrator exists; returns the generated password to print once, if any.
/// Also keeps a local admin token in `<home>/etc/api-token` (mode 0600) for `mbd api` on
/// this machine.
fn ensure_admin(
    state: &crate::state::StateStore,
    home: &Path,
    password: Option<&str>,
) -> Result<Option<String>, DaemonError> {
    let admins = state
        .all::<api::auth::User>()?
        .into_iter()
        .any(|(_, u)| u.level == api::Level::Admin);
    let mut generated = None;
    if !admins {
        let pw = match password {
            Some(p) => p.to_string(),
            None => {
                let p = api::auth::new_password();
                generated = Some(p.clone());
                p
            }
        };
        api::auth::put_user(state, "admin", api::Level::Admin, &pw)?;
    }
    let token_file = api::client::token_file(home);
    if !token_file.exists() {
        if let Some((_, admin)) = state
            .all::<api::auth::User>()?
            .into_iter()
            .find(|(_, u)| u.level == api::Level::Admin)
        {
            let (secret, _) = api::auth::create_token(state, &admin.name, "local admin")?;
            write_atomic(
                &token_file,
                format!("{}:{secret}\n", admin.name).as_bytes(),
                0o600,
            )?;
        }
    }
    Ok(generated)
}

fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The URL clients use for an endpoint actually bound.
fn base_url(bound: SocketAddr, hostname: Option<&str>) -> String {
    let host = match hostname.filter(|h| !h.is_empty()) {
        Some(h) => h.to_string(),
        None if bound.ip().is_unspecified() => system_hostname(),
        None => match bound {
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
            SocketAddr::V4(a) => a.ip().to_string(),
        },
    };
    format!("http://{host}:{}", bound.port())
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

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(opts: Options) -> Result<(), DaemonError> {
    let home = opts.home.clone();
    std::fs::create_dir_all(&home).map_err(io(&home))?;
    // Absolute from here on: chroot paths go into schroot's configuration and sudo rules.
    let home = std::fs::canonicalize(&home).map_err(io(&home))?;
    let _lock = HomeLock::acquire(&home)?;
    let mut settings = Settings::load_or_create(&home)?;
    if !opts.http_endpoints.is_empty() {
        settings.http_endpoints = opts.http_endpoints.clone();
    }
    if !opts.ftp_endpoints.is_empty() {
        // "none" switches FTP off.
        settings.ftp_endpoints = opts
            .ftp_endpoints
            .iter()
            .filter(|e| e.as_str() != "none")
            .cloned()
            .collect();
    }
    if let Some(h) = &opts.hostname {
        settings.hostname = h.clone();
    }
    if let Some(l) = &opts.log_level {
        settings.log_level = l.clone();
    }
    init_logging(&home, &settings.log_level)?;
    let (engine, created) = open_or_create(&home, opts.default_setup, opts.identity.clone())?;
    let admin_password = opts
        .admin_password
        .clone()
        .or_else(|| std::env::var("MBD_ADMIN_PASSWORD").ok());
    let state = legacy::open_state(&engine)?;
    let generated = ensure_admin(&state, &home, admin_password.as_deref())?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io(&home))?;
    runtime.block_on(async move {
        let mut listeners = Vec::new();
        for ep in &settings.http_endpoints {
            listeners.push(bind(ep).await?);
        }
        let first = listeners
            .first()
            .ok_or_else(|| DaemonError::Settings {
                path: settings_path(&home),
                reason: "no HTTP endpoint".to_string(),
            })?
            .local_addr()
            .map_err(io(&home))?;
        let url = base_url(first, Some(settings.hostname.as_str()));
        let tls = tls_config(&home, &settings)?;
        let mut https = Vec::new();
        for ep in &settings.https_endpoints {
            let Some(config) = &tls else {
                return Err(DaemonError::Settings {
                    path: settings_path(&home),
                    reason: format!("HTTPS on {ep} needs tls_certificate and tls_key"),
                });
            };
            let l = bind(ep).await?;
            https.push(tls::TlsListener::new(l, config.clone()).map_err(io(&home))?);
        }
        // FTP endpoints: bound here first so a busy port fails the start and port 0 works.
        let mut ftp = Vec::new();
        for ep in &settings.ftp_endpoints {
            let probe = std::net::TcpListener::bind(ep).map_err(|source| DaemonError::Bind {
                addr: ep.clone(),
                source,
            })?;
            let addr = probe.local_addr().map_err(io(&home))?;
            drop(probe);
            ftp.push(addr);
        }
        let access_path = home.join("var/log/access.log");
        let state = Arc::new(Served {
            repositories: engine.home().join("repositories").into(),
            files: Arc::default(),
            access: log::RotatingFile::open(&access_path, log::MAX_SIZE)
                .map_err(io(&access_path))?,
            ctx: Arc::new({
                let mut ctx = Context::new(engine, state, url.clone());
                ctx.ftp = ftp.first().map(|a| {
                    api::calls::authority(&base_url(*a, Some(settings.hostname.as_str())))
                        .to_string()
                });
                ctx.https = https.first().and_then(|l| {
                    let a = axum::serve::Listener::local_addr(l).ok()?;
                    Some(
                        api::calls::authority(&base_url(a, Some(settings.hostname.as_str())))
                            .to_string(),
                    )
                });
                ctx.incoming_login = settings.incoming_login;
                ctx
            }),
        });
        // Before anything can arrive: clean up after a crash.
        let incoming = &state.ctx.incoming;
        incoming
            .create_dirs()
            .and_then(|()| incoming.recover())
            .map_err(|e| DaemonError::Settings {
                path: incoming.dir.clone(),
                reason: e.to_string(),
            })?;
        let ftps = (!settings.tls_certificate.is_empty()).then(|| {
            (
                home.join(&settings.tls_certificate),
                home.join(&settings.tls_key),
            )
        });
        for addr in ftp {
            let ctx = state.ctx.clone();
            let ftps = ftps.clone();
            tokio::spawn(async move {
                if let Err(e) = ftp::serve(ctx, addr.to_string(), ftps).await {
                    tracing::error!(%addr, error = %e, "FTP server stopped");
                }
            });
            tracing::info!(%addr, "FTP uploads");
        }
        print_banner(
            &state.ctx,
            created.then_some(opts.default_setup),
            generated.as_deref(),
        )?;
        // Uploads that waited through a restart are decided now; leftovers of interrupted
        // uploads go after their age, checked here and every few minutes; old history goes
        // at start and every hour.
        housekeeping::spawn(
            state.ctx.clone(),
            std::time::Duration::from_secs(settings.incoming_orphan_age),
            settings.retention.clone(),
        );
        // Builds: the worker, and on a new home the chroot for the host.
        {
            let lintian =
                crate::changelog::QaMode::parse(&settings.lintian_mode).ok_or_else(|| {
                    DaemonError::Settings {
                        path: settings_path(&home),
                        reason: format!(
                            "lintian_mode '{}' is not disabled, ignore, errfail or warnfail",
                            settings.lintian_mode
                        ),
                    }
                })?;
            let builder = crate::build::worker::Sbuild {
                home: home.clone(),
                limit: std::time::Duration::from_secs(settings.build_timeout),
                jobs: settings.build_jobs,
                lintian,
            };
            let armored = state.ctx.engine().key().public_armored();
            builder.write_key(&armored).map_err(io(&home))?;
            let local = match first.ip() {
                ip if ip.is_unspecified() => SocketAddr::new([127, 0, 0, 1].into(), first.port()),
                _ => first,
            };
            let (codename, host_arch) = host_distribution();
            crate::build::worker::spawn(
                state.ctx.clone(),
                state.ctx.builds.clone(),
                Arc::new(builder),
                crate::build::worker::Settings {
                    home: home.clone(),
                    slots: settings.build_slots.max(1) as usize,
                    local_url: format!("http://{local}"),
                    host_arch: host_arch.clone(),
                },
            );
            if created
                && opts.default_setup
                && opts.default_chroot
                && settings.prepare_default_chroot
            {
                prepare_default_chroot(&state.ctx, &codename, &host_arch);
            }
        }
        write_atomic(
            &api::client::url_file(&home),
            format!("{url}\n").as_bytes(),
            0o644,
        )?;
        tracing::info!(%url, "serving");
        let ctx = state.ctx.clone();
        let app = router(state);
        let shutdown = shutdown_signal();
        let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
        let mut servers = Vec::new();
        for l in listeners {
            use axum::serve::ListenerExt;
            let mut rx = tx.subscribe();
            let app = app.clone();
            // Without TCP_NODELAY a response whose head and body go out in two writes waits
            // for the client's delayed ACK (tens of milliseconds) on every request.
            let l = l.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            servers.push(tokio::spawn(async move {
                axum::serve(l, app.into_make_service_with_connect_info::<SocketAddr>())
                    .with_graceful_shutdown(async move {
                        let _ = rx.recv().await;
                    })
                    .await
            }));
        }
        for l in https {
            use axum::serve::ListenerExt;
            let mut rx = tx.subscribe();
            let app = app.clone();
            servers.push(tokio::spawn(async move {
                axum::serve(
                    l.tap_io(|_| {}),
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move {
                    let _ = rx.recv().await;
                })
                .await
            }));
        }
        shutdown.await;
        tracing::info!("shutting down");
        let _ = tx.send(());
        for s in servers {
            let _ = s.await;
        }
        // Running builds stop (sbuild ends its session) and are queued for the next start.
        let builds = ctx.builds.clone();
        let running = tokio::task::spawn_blocking(move || builds.shut_down(SHUTDOWN_WAIT)).await;
        if let Ok(n @ 1..) = running {
            tracing::warn!(
                builds = n,
                "builds still running at exit; the next start runs them again"
            );
        }
        let _ = std::fs::remove_file(api::client::url_file(&home));
        Ok::<(), DaemonError>(())
    })?;
    tracing::info!("stopped");
    Ok(())
}

/// On a new home: the chroot for the host's codename and architecture, from the host's own
/// archive, prepared in the background.
fn prepare_default_chroot(ctx: &Context, codename: &str, arch: &str) {
    let Some(mirror) =
        crate::build::chroot::mirror_from_apt_sources(Path::new("/etc/apt"), codename)
    else {
        tracing::warn!(%codename, "the host's apt sources name no archive: no default chroot");
        return;
    };
    let c = crate::build::chroot::Chroot::new(
        codename,
        arch,
        &mirror,
        crate::build::chroot::Backend::Directory,
    );
    if let Err(e) = ctx.builds.request(ctx.state(), c) {
        tracing::error!(error = %e, "storing the default chroot");
    }
}

async fn bind(ep: &str) -> Result<tokio::net::TcpListener, DaemonError> {
    tokio::net::TcpListener::bind(ep)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: ep.to_string(),
            source,
        })
}

/// The TLS configuration, if a certificate is set (paths relative to the home).
fn tls_config(
    home: &Path,
    settings: &Settings,
) -> Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>, DaemonError> {
    match (
        settings.tls_certificate.is_empty(),
        settings.tls_key.is_empty(),
    ) {
        (true, true) => Ok(None),
        (false, false) => tls::server_config(
            &home.join(&settings.tls_certificate),
            &home.join(&settings.tls_key),
        )
        .map(Some),
        _ => Err(DaemonError::Settings {
            path: settings_path(home),
            reason: "set both tls_certificate and tls_key, or neither".to_string(),
        }),
    }
}

/// `GET /chroot-logs/<codename>-<arch>`: a chroot's preparation log (also while it runs).
async fn chroot_log(State(state): State<AppState>, UrlPath(id): UrlPath<String>) -> Response {
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
async fn build_log(
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

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

/// What a newcomer needs: the URL, an apt entry, a dput.cf section (and the admin password
/// if it was generated).
/// `created`: whether this start created the home, and if so with the default setup.
fn print_banner(
    ctx: &Context,
    created: Option<bool>,
    password: Option<&str>,
) -> Result<(), DaemonError> {
    let identity = ctx.engine().instance().identity.clone();
    let sources = ctx
        .invoke(
            "sources_list",
            "GET",
            &[
                ("format".to_string(), "sources".to_string()),
                ("signed_by".to_string(), "inline".to_string()),
                ("suites".to_string(), "unstable".to_string()),
            ],
            None,
        )
        .ok()
        .and_then(|o| match o {
            Output::Text(t) => Some(t),
            Output::Json(_) => None,
        })
        .unwrap_or_default();
    let mut out = String::new();
    match created {
        Some(true) => {
            out.push_str("mbd: created the default setup (repository 'test', layout Default)\n")
        }
        Some(false) => out.push_str(
            "mbd: created an archive key and no repositories: `mbd api setup --help` makes them\n",
        ),
        None => {}
    }
    out.push_str(&format!(
        "mbd: archive '{identity}' serving at {0}/ (repositories under {0}/repositories/)\n",
        ctx.url
    ));
    if let Some(pw) = password {
        out.push_str(&format!(
            "mbd: administrator 'admin', password (shown once): {pw}\n"
        ));
    }
    out.push_str(&format!(
        "\n# apt: /etc/apt/sources.list.d/mbd-{identity}.sources (more: mbd api sources_list --help)\n{sources}"
    ));
    out.push_str(&format!(
        "# dput: ~/.dput.cf\n{}\n",
        api::calls::dput_sections(&identity, &ctx.dput_incoming(None))
    ));
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    Ok(())
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(ui::home))
        .route("/ui/builds", get(ui::builds))
        .route("/ui/setup", get(ui::setup))
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
        .route("/repositories", get(repositories_root))
        .route("/repositories/", get(repositories_root))
        .route("/repositories/{*path}", get(repositories))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(state.clone(), access_log))
        .with_state(state)
}

/// How long a shutdown waits for running builds to stop.
const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(90);

/// The largest request body accepted (API forms; uploads have their own route).
pub const MAX_BODY: usize = 256 * 1024;

/// How much of a refused upload is read before the 401 goes out.
const UNAUTHORIZED_DRAIN: usize = 64 << 20;

/// The largest file accepted by `PUT /incoming/<file>`.
pub const MAX_UPLOAD: u64 = 4 << 30;

/// `PUT /incoming/<file>`, as dput's http method sends it: one file per request, the `.changes`
/// last. The file is streamed to a hidden name and renamed into place when complete; a
/// `.changes` then triggers its decision.
async fn upload(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;
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
            if total > MAX_UPLOAD {
                return failed(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("{name}: larger than {MAX_UPLOAD} bytes"),
                    tmp,
                )
                .await;
            }
            if let Err(e) = file.write_all(data).await {
                tracing::error!(path = %tmp.display(), error = %e, "receiving an upload");
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
        tokio::task::spawn_blocking(move || incoming.commit(&tmp, &name)).await
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

fn simple_problem(status: StatusCode, detail: String) -> Response {
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

async fn not_found(req: Request) -> Response {
    simple_problem(
        StatusCode::NOT_FOUND,
        format!(
            "Nothing at {} (try /api or /repositories/)",
            req.uri().path()
        ),
    )
}

async fn access_log(State(state): State<AppState>, req: Request, next: Next) -> Response {
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
        .replace('"', "'");
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    state.ctx.metrics.record_status(status);
    let len = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let line = format!(
        "{peer} - - [{}] \"{method} {uri} HTTP/1.1\" {status} {len} \"-\" \"{agent}\" {:.3}\n",
        httpdate::fmt_http_date(std::time::SystemTime::now()),
        started.elapsed().as_secs_f64()
    );
    state.access.append(line.as_bytes());
    response
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.ctx.metrics.render(state.ctx.is_running());
    let panics = state
        .ctx
        .builds
        .panics
        .load(std::sync::atomic::Ordering::SeqCst);
    text.push_str("# HELP mbd_task_panics_total Panics background tasks survived (build worker, builds, chroot preparations, housekeeping rounds).\n# TYPE mbd_task_panics_total counter\n");
    text.push_str(&format!("mbd_task_panics_total {panics}\n"));
    text.push_str("# HELP mbd_access_log_dropped_total Access log records dropped because the disk fell behind.\n# TYPE mbd_access_log_dropped_total counter\n");
    text.push_str(&format!(
        "mbd_access_log_dropped_total {}\n",
        state.access.dropped()
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[derive(Deserialize, Default)]
struct StreamQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    source: Option<String>,
    distribution: Option<String>,
    /// Replay stored events from this time (seconds since the epoch) before the live ones.
    since: Option<i64>,
}

/// `GET /api/events/stream`: upload decisions as server-sent events (`event:` the kind,
/// `id:` the event id, `data:` its JSON), so a client can wait for an upload's outcome.
async fn events_stream(
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

async fn api_index() -> Response {
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

async fn api_call(
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
    match served.await {
        Ok(r) => r,
        Err(archive::Refusal::Invalid(why)) => simple_problem(StatusCode::BAD_REQUEST, why),
        Err(archive::Refusal::NotFound) => simple_problem(
            StatusCode::NOT_FOUND,
            format!("No published file /repositories/{raw}"),
        ),
    }
}
