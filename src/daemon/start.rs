//! Start-up and shutdown: the home's lock, logging, the engine (or the embedded default on an
//! empty home), the administrator, the endpoints, the banner, then serving until SIGTERM or
//! SIGINT.

use super::listen::{Listeners, ShutdownSignals};
use super::{DaemonError, Served, ftp, housekeeping, io, legacy, log, router};
use crate::api::{self, Context, Output};
use crate::repo::{Engine, RepoError, SetupOptions};
use crate::settings::write_atomic;
use crate::settings::{Settings, host_distribution, settings_path};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What `mbd daemon` is given on its command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub home: PathBuf,
    pub http_endpoints: Vec<String>,
    pub ftp_endpoints: Vec<String>,
    pub hostname: Option<String>,
    pub log_level: Option<String>,
    /// The administrator's password at first start (else one is generated into
    /// `etc/admin-password`, mode 0600).
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

/// Lets the daemon open as many descriptors as its hard limit allows (systemd's default soft
/// limit, 1,024, is below what the connection limits admit: 4,096 HTTP connections alone).
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the one struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            let wanted = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                tracing::info!(
                    from = limit.rlim_cur,
                    to = limit.rlim_max,
                    "open files limit raised"
                );
            }
        }
    }
}

/// Sets up logging for the daemon: stderr (journald keeps it) and `<home>/var/log/daemon.log`.
pub fn init_logging(home: &Path, level: &str) -> Result<(), DaemonError> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let path = home.join("var/log/daemon.log");
    let file = log::RotatingFile::open(&path, log::MAX_SIZE).map_err(io(&path))?;
    // libunftp's spans carry its whole session state: they would prefix every line of an FTP
    // session with kilobytes of it. Its warnings and errors still come through.
    let directives = if level.contains("libunftp") {
        level.to_string()
    } else {
        format!("{level},libunftp=warn")
    };
    let filter =
        tracing_subscriber::EnvFilter::try_new(&directives).map_err(|e| DaemonError::Settings {
            path: settings_path(home),
            reason: format!("log level '{level}': {e}"),
        })?;
    // Under systemd, stderr goes to the journal, which stamps each line itself.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let stderr = if journal {
        stderr.without_time().boxed()
    } else {
        stderr.boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
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

/// Where a generated administrator password is left for the administrator (mode 0600).
pub fn admin_password_path(home: &Path) -> PathBuf {
    home.join("etc/admin-password")
}

/// Modes that keep the home to the daemon's user (and its group, for reading): the home and
/// `etc/` 0750, the stores 0600 (they hold password hashes and tokens' digests), `keys/` 0700.
/// Files written later get their own modes where they are made (logs 0640, keys and tokens
/// 0600).
fn secure_home(home: &Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [
        (home.to_path_buf(), 0o750),
        (home.join("etc"), 0o750),
        (home.join("keys"), 0o700),
        (crate::repo::store_path(home), 0o600),
        (home.join("state.redb"), 0o600),
    ] {
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(io(&path))?;
        }
    }
    Ok(())
}

/// Makes sure an administrator exists; a generated password goes to
/// [`admin_password_path`] (mode 0600), never to a log or the terminal; returns that path.
/// Also keeps a local admin token in `<home>/etc/api-token` (mode 0600) for `mbd api` on
/// this machine.
fn ensure_admin(
    state: &crate::state::StateStore,
    home: &Path,
    password: Option<&str>,
) -> Result<Option<PathBuf>, DaemonError> {
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
                let file = admin_password_path(home);
                write_atomic(&file, format!("{p}\n").as_bytes(), 0o600)?;
                generated = Some(file);
                p
            }
        };
        api::auth::put_user(state, "admin", api::Level::Admin, &pw)?;
    }
    let token_file = api::client::token_file(home);
    // A token revoked meanwhile (a new admin password revokes them all) is replaced.
    let valid = std::fs::read_to_string(&token_file).ok().is_some_and(|t| {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(t.trim());
        api::auth::authenticate(state, Some(&format!("Basic {basic}"))).is_ok_and(|u| u.is_some())
    });
    if !valid {
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

pub(super) fn system_hostname() -> String {
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

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(opts: Options) -> Result<(), DaemonError> {
    std::fs::create_dir_all(&opts.home).map_err(io(&opts.home))?;
    // Absolute from here on: chroot paths go into schroot's configuration and sudo rules.
    let home = std::fs::canonicalize(&opts.home).map_err(io(&opts.home))?;
    let _lock = HomeLock::acquire(&home)?;
    let settings = settings_for(&home, &opts)?;
    init_logging(&home, &settings.log_level)?;
    raise_open_files_limit();
    let (engine, created) = open_or_create(&home, opts.default_setup, opts.identity.clone())?;
    let admin_password = opts
        .admin_password
        .clone()
        .or_else(|| std::env::var("MBD_ADMIN_PASSWORD").ok())
        .filter(|p| !p.is_empty());
    let state = legacy::open_state(&engine)?;
    let generated = ensure_admin(&state, &home, admin_password.as_deref())?;
    secure_home(&home)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io(&home))?;
    runtime.block_on(async move {
        let mut listeners = Listeners::bind(&home, &settings).await?;
        let served = served(&home, &settings, &listeners, engine, state)?;
        let ctx = served.ctx.clone();
        recover_incoming(&ctx)?;
        spawn_ftp(&ctx, &home, &settings, std::mem::take(&mut listeners.ftp));
        let created = created.then_some(opts.default_setup);
        print_banner(&ctx, created, generated.as_deref())?;
        // Uploads that waited through a restart are decided now; leftovers of interrupted
        // uploads go after their age, checked here and every few minutes; the crontab's
        // jobs run when due (one that fell due while the daemon was down, once now).
        housekeeping::spawn(
            ctx.clone(),
            std::time::Duration::from_secs(settings.incoming_orphan_age),
        );
        housekeeping::spawn_crontab(ctx.clone());
        housekeeping::spawn_remotes(ctx.clone());
        housekeeping::spawn_senders(ctx.clone());
        let default_chroot = created == Some(true) && opts.default_chroot;
        start_builds(&ctx, &home, &settings, listeners.first, default_chroot)?;
        let url_file = api::client::url_file(&home);
        let signals = ShutdownSignals::register().map_err(io(&url_file))?;
        write_atomic(&url_file, format!("{}\n", ctx.url).as_bytes(), 0o644)?;
        tracing::info!(url = %ctx.url, "serving");
        let state = Arc::new(served);
        listeners.serve(router(state.clone()), state, signals).await;
        stop_builds(&ctx).await;
        let _ = std::fs::remove_file(url_file);
        Ok::<(), DaemonError>(())
    })?;
    tracing::info!("stopped");
    Ok(())
}

/// The home's settings with the command line's overrides.
fn settings_for(home: &Path, opts: &Options) -> Result<Settings, DaemonError> {
    let mut settings = Settings::load_or_create(home)?;
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
    Ok(settings)
}

/// What the HTTP handlers share: the application context and the serving state.
fn served(
    home: &Path,
    settings: &Settings,
    listeners: &Listeners,
    engine: Engine,
    state: crate::state::StateStore,
) -> Result<Served, DaemonError> {
    let hostname = Some(settings.hostname.as_str());
    let authority = |a: SocketAddr| api::calls::authority(&base_url(a, hostname)).to_string();
    let access_path = home.join("var/log/access.log");
    let mut ctx = Context::new(engine, state, base_url(listeners.first, hostname));
    ctx.ftp = listeners
        .ftp
        .first()
        .and_then(|l| l.local_addr().ok())
        .map(authority);
    ctx.https = listeners.first_https().map(authority);
    ctx.incoming_login = settings.incoming_login;
    ctx.incoming_limits = settings.incoming_limits();
    ctx.fetch_from_private_networks = settings.fetch_from_private_networks;
    ctx.anonymous_uploads_from =
        settings
            .anonymous_networks()
            .map_err(|reason| DaemonError::Settings {
                path: settings_path(home),
                reason,
            })?;
    ctx.crontab = crate::crontab::Crontab::new(settings).map_err(|e| DaemonError::Settings {
        path: settings_path(home),
        reason: e.to_string(),
    })?;
    ctx.webhooks =
        crate::webhook::Outbox::load(home, &settings.webhooks, settings.webhook_retry_seconds)
            .map_err(|e| DaemonError::Settings {
                path: settings_path(home),
                reason: e.to_string(),
            })?;
    let host = match settings.hostname.as_str() {
        "" => system_hostname(),
        h => h.to_string(),
    };
    ctx.mail = crate::mail::Mailer::load(
        home,
        &settings.mail,
        &ctx.engine().instance().identity,
        &ctx.url,
        &host,
    )
    .map_err(|e| DaemonError::Settings {
        path: settings_path(home),
        reason: e.to_string(),
    })?;
    if let Some(file) = std::env::var_os("MBD_TEST_CLOCK") {
        tracing::warn!(file = %std::path::Path::new(&file).display(), "test hook MBD_TEST_CLOCK: the crontab's time comes from this file");
        ctx.clock = Arc::new(crate::crontab::FileClock(file.into()));
    }
    Ok(Served {
        repositories: ctx.engine().home().join("repositories").into(),
        files: Arc::default(),
        access: log::RotatingFile::open(&access_path, log::MAX_SIZE).map_err(io(&access_path))?,
        ctx: Arc::new(ctx),
    })
}

/// Before anything can arrive: clean up after a crash.
fn recover_incoming(ctx: &Context) -> Result<(), DaemonError> {
    let incoming = &ctx.incoming;
    incoming
        .create_dirs()
        .and_then(|()| incoming.recover())
        .map_err(|e| DaemonError::Settings {
            path: incoming.dir.clone(),
            reason: e.to_string(),
        })?;
    Ok(())
}

/// One FTP server per endpoint (FTPS when a certificate is set).
fn spawn_ftp(
    ctx: &Arc<Context>,
    home: &Path,
    settings: &Settings,
    listeners: Vec<std::net::TcpListener>,
) {
    let ftps = (!settings.tls_certificate.is_empty()).then(|| {
        (
            home.join(&settings.tls_certificate),
            home.join(&settings.tls_key),
        )
    });
    for listener in listeners {
        let Ok(addr) = listener.local_addr() else {
            continue;
        };
        let ctx = ctx.clone();
        let ftps = ftps.clone();
        tokio::spawn(async move {
            if let Err(e) = ftp::serve(ctx, listener, ftps).await {
                tracing::error!(%addr, error = %e, "FTP server stopped");
            }
        });
        tracing::info!(%addr, "FTP uploads");
    }
}

/// Builds: the worker, and on a new home (if asked) the chroot for the host.
fn start_builds(
    ctx: &Arc<Context>,
    home: &Path,
    settings: &Settings,
    first: SocketAddr,
    default_chroot: bool,
) -> Result<(), DaemonError> {
    let mode = |name: &str, value: &str| {
        crate::changelog::QaMode::parse(value).ok_or_else(|| DaemonError::Settings {
            path: settings_path(home),
            reason: format!("{name} '{value}' is not disabled, ignore, errfail or warnfail"),
        })
    };
    let lintian = mode("lintian_mode", &settings.lintian_mode)?;
    let autopkgtest = mode("autopkgtest_mode", &settings.autopkgtest_mode)?;
    let builder = crate::build::worker::Sbuild {
        home: home.to_path_buf(),
        limit: std::time::Duration::from_secs(settings.build_timeout),
        jobs: settings.build_jobs,
        lintian,
        autopkgtest,
    };
    builder
        .write_key(&ctx.engine().key().public_armored())
        .map_err(io(home))?;
    let local = match first.ip() {
        ip if ip.is_unspecified() => SocketAddr::new([127, 0, 0, 1].into(), first.port()),
        _ => first,
    };
    let (codename, host_arch) = host_distribution();
    crate::build::worker::spawn(
        ctx.clone(),
        ctx.builds.clone(),
        Arc::new(builder),
        crate::build::worker::Settings {
            home: home.to_path_buf(),
            slots: settings.build_slots.max(1) as usize,
            local_url: format!("http://{local}"),
            waiting: crate::build::dispatch::Waiting {
                poll: if std::env::var_os("MBD_TEST_REMOTES_EVERY").is_some() {
                    std::time::Duration::from_millis(500)
                } else {
                    std::time::Duration::from_secs(5)
                },
                timeout: std::time::Duration::from_secs(settings.remote_timeout.max(1)),
            },
        },
    );
    if default_chroot && settings.prepare_default_chroot {
        prepare_default_chroot(ctx, &codename, &host_arch);
    }
    Ok(())
}

/// Running builds stop (sbuild ends its session) and are queued for the next start.
async fn stop_builds(ctx: &Context) {
    let builds = ctx.builds.clone();
    let running = tokio::task::spawn_blocking(move || builds.shut_down(SHUTDOWN_WAIT)).await;
    if let Ok(n @ 1..) = running {
        tracing::warn!(
            builds = n,
            "builds still running at exit; the next start runs them again"
        );
    }
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

/// What a newcomer needs: the URL, an apt entry, a dput.cf section (and where the admin
/// password is, if it was generated).
/// `created`: whether this start created the home, and if so with the default setup.
fn print_banner(
    ctx: &Context,
    created: Option<bool>,
    password: Option<&Path>,
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
    if let Some(file) = password {
        out.push_str(&format!(
            "mbd: administrator 'admin', its password is in {} (mode 0600)\n",
            file.display()
        ));
    }
    out.push_str(&format!(
        "\n# apt: /etc/apt/sources.list.d/mbd-{identity}.sources (more: mbd api sources_list --help)\n{sources}"
    ));
    out.push_str(&format!(
        "# dput: ~/.dput.cf\n{}\n",
        api::calls::dput_sections(&identity, &ctx.dput_incoming(None))
    ));
    if !ctx.incoming_login {
        let from: Vec<String> = ctx
            .anonymous_uploads_from
            .iter()
            .map(ToString::to_string)
            .collect();
        out.push_str(&format!(
            "# uploads without a login are taken from {} only; for other hosts widen anonymous_uploads_from in etc/mbd.toml (or set incoming_login)\n",
            from.join(", ")
        ));
    }
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    Ok(())
}

/// How long a shutdown waits for running builds to stop.
const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(90);
