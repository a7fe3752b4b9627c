//! The `mbd` command.

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use mbd::changes::Changes;
use mbd::dsc::Dsc;
use mbd::files::Trust;
use mbd::openpgp::{KeyAlgorithm, Keyring};
use mbd::repo::{Engine, SetupOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mbd",
    version,
    about = "Debian build daemon and APT repository engine"
)]
struct Cli {
    /// The instance's home directory (store, keys, published repositories).
    #[arg(long, global = true, env = "MBD_HOME", default_value = "mbd-home")]
    home: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and verify Debian files (.changes, .dsc, .deb, .udeb) as mbd would on upload.
    ///
    /// A .changes has its listed files checked (size and checksums); with --keyring its
    /// signature must come from one of the keyring's keys.
    Check {
        /// Keyring (armored or binary) whose keys may sign .changes and .dsc files.
        #[arg(long)]
        keyring: Option<PathBuf>,
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Create or extend the setup: archive key, distributions, repositories; then publish.
    Setup {
        /// Names the archive (Origin) and its key; defaults to the host name.
        #[arg(long)]
        identity: Option<String>,
        /// Distributions as <codename>:<arch>[+<arch>...], e.g. bookworm:amd64+i386.
        #[arg(long, value_delimiter = ',')]
        distributions: Vec<String>,
        /// Repositories as <id>:<layout>:<codename>[+<codename>...], e.g. test:Default:bookworm.
        #[arg(long, value_delimiter = ',')]
        repositories: Vec<String>,
        /// Generate an RSA-4096 archive key instead of Ed25519 (for very old clients).
        #[arg(long)]
        rsa: bool,
    },
    /// Work on the repositories.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Run the daemon: serve the repositories to apt and the API (first start on an empty
    /// home creates a default setup: repository 'test' for this host's codename).
    Daemon {
        /// Address to serve HTTP on (repeatable; default from <home>/etc/mbd.toml, 0.0.0.0:8066).
        #[arg(long = "http-endpoint")]
        http_endpoints: Vec<String>,
        /// Address for anonymous FTP uploads (repeatable; default 0.0.0.0:8067; 'none': no FTP).
        #[arg(long = "ftp-endpoint")]
        ftp_endpoints: Vec<String>,
        /// Host name for the URLs given to clients.
        #[arg(long)]
        hostname: Option<String>,
        /// Log level (error, warn, info, debug, trace).
        #[arg(long)]
        log_level: Option<String>,
        /// The administrator's password at first start (else generated into etc/admin-password,
        /// mode 0600).
        #[arg(long, env = "MBD_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: Option<String>,
        /// On a new home, do not prepare the build chroot for this host (needs root and the
        /// network; `mbd api chroot_prepare` does it later).
        #[arg(long)]
        no_default_chroot: bool,
        /// On a new home, create only the archive key and the administrator, no repository:
        /// `mbd api setup ...` makes the rest (e.g. `--preset Debian`).
        #[arg(long)]
        no_default_setup: bool,
        /// On a new home, the instance identity (names the archive and its key; default: the
        /// short host name).
        #[arg(long)]
        identity: Option<String>,
    },
    /// Print the archive's public key (what apt's signed-by needs).
    PubKey {
        /// Binary instead of ASCII armored.
        #[arg(long)]
        binary: bool,
    },
    /// Print the sudo rule a dedicated user needs to run the daemon on this home without being
    /// root: the chroot helper, for this home only (for /etc/sudoers.d/; the user also needs
    /// `sbuild-adduser USER`).
    Sudoers {
        /// The user the daemon runs as.
        #[arg(long)]
        user: String,
    },
    /// Follow the daemon's events as they happen (uploads decided, builds, installs); with
    /// --exit-on, end at the first event of those kinds: status 0, or 1 for a --fail-on kind,
    /// 2 if the stream ends first. "dput, then wait for the result".
    Events {
        /// The daemon's URL (default: the one this home's daemon serves, else
        /// http://localhost:8066).
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        source: Option<String>,
        /// Only this version (events of the last hour are replayed first).
        #[arg(long)]
        version: Option<String>,
        #[arg(long)]
        distribution: Option<String>,
        /// Replay stored events from this time (seconds since the epoch).
        #[arg(long)]
        since: Option<i64>,
        /// End at the first event of these kinds (comma-separated: INSTALLED,FAILED,REJECTED).
        #[arg(long, default_value = "")]
        exit_on: String,
        /// The kinds that end with status 1.
        #[arg(long, default_value = "FAILED,REJECTED")]
        fail_on: String,
    },
    /// Trust an archive on first use (as root): its identity from its status, a temporary apt
    /// source with its key inline, through which apt installs <identity>-archive-keyring; the
    /// temporary source goes again. apt is the system's, or the one APT_CONFIG names.
    BootstrapApt {
        /// The daemon's URL (http://HOST:8066).
        url: String,
    },
    /// A key and a self-signed certificate for the HTTPS and FTPS endpoints.
    SelfSignedCertificate {
        #[command(subcommand)]
        action: CertificateCommand,
    },
}

#[derive(Subcommand)]
enum CertificateCommand {
    /// Write etc/tls.key and etc/tls.crt in the home (with openssl) and print the settings.
    Create {
        /// The name clients use (default: this host's name); an address is added as an IP
        /// name.
        #[arg(long)]
        hostname: Option<String>,
        /// Replace a key and certificate that exist.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Freeze the current content of a distribution under a name.
    Create { distribution: String, name: String },
    /// List a distribution's snapshots.
    Ls { distribution: String },
    /// Delete a snapshot.
    Delete { distribution: String, name: String },
}

#[derive(Subcommand)]
enum RepoCommand {
    /// Import .changes, .dsc, .deb or .udeb files into a distribution (no upload policy, full
    /// integrity checks). An older or equal version is an error.
    Include {
        distribution: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Copy a source and its binaries to the suite its suite migrates to; from a rollback
    /// distribution, restore it.
    Migrate {
        source: String,
        distribution: String,
        /// Follow the migration chain to its end.
        #[arg(long)]
        full: bool,
        #[arg(long)]
        version: Option<String>,
    },
    /// Remove a source and its binaries from a distribution.
    Remove {
        source: String,
        distribution: String,
        /// Do not keep the removed version in rollback0.
        #[arg(long)]
        without_rollback: bool,
        #[arg(long)]
        version: Option<String>,
    },
    /// Versions of a source per distribution and rollback.
    Ls {
        source: String,
        #[arg(long)]
        json: bool,
    },
    /// Snapshots of a distribution, published under dists/<dist>/snapshots/<name>/.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Like ls, with .dsc paths and migration state per distribution.
    Show {
        source: String,
        #[arg(long)]
        json: bool,
    },
    /// Publish distributions again (all when none is named).
    Publish {
        distributions: Vec<String>,
        /// Recompress every index instead of reusing cached compressed segments.
        #[arg(long)]
        cold: bool,
    },
}

/// mbd allocates through jemalloc. glibc's malloc kept freed memory of one phase (the
/// reader threads' packages, the compression threads' buffers) in per-thread arenas, so the
/// peak RSS of the same import or export varied by up to 100 MB between identical runs.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation: hand freed pages back to the kernel at
/// once instead of after its default decay of 10 s, so that a phase of a long operation
/// (publishing after a large import) does not stack on the memory of the phase before.
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: JemallocConf = JemallocConf(c"dirty_decay_ms:0,muzzy_decay_ms:0".as_ptr());

#[repr(transparent)]
struct JemallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a static, immutable C string.
unsafe impl Sync for JemallocConf {}

fn main() -> ExitCode {
    // The chroot helper runs as root through sudo: its words are read by it alone, never by
    // clap (no global option, no abbreviation, no environment).
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("chroot-helper") {
        let host_arch = mbd::settings::host_distribution().1;
        return match mbd::build::chroot::helper::main(&args[2..], &host_arch) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mbd {e}");
                ExitCode::from(2)
            }
        };
    }
    // `mbd api <call>` is generated from the API's call registry, not derived.
    let matches = Cli::command()
        .subcommand(mbd::api::client::command())
        .get_matches();
    // Like other Unix tools, a command ends quietly when the reader of its output goes away
    // (`mbd repo ls x | head`) instead of failing on the broken pipe. The daemon keeps Rust's
    // default (SIGPIPE ignored): a client closing its connection, or a log pipe closing, is
    // an error on that one write, never the end of the process.
    if matches.subcommand_name() != Some("daemon") {
        // SAFETY: before any other thread exists (clap's parsing spawns none).
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    if let Some(("api", m)) = matches.subcommand() {
        let home = matches
            .get_one::<PathBuf>("home")
            .cloned()
            .unwrap_or_default();
        return match mbd::api::client::run(m, &home) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mbd api: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    if !matches!(cli.command, Command::Daemon { .. }) {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("MBD_LOG")
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_writer(std::io::stderr)
            .init();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mbd: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let home = cli.home;
    match cli.command {
        Command::Setup {
            identity,
            distributions,
            repositories,
            rsa,
        } => {
            let opts = SetupOptions {
                identity,
                distributions,
                repositories,
                key_algorithm: if rsa {
                    KeyAlgorithm::Rsa4096
                } else {
                    KeyAlgorithm::Ed25519
                },
            };
            let engine = Engine::setup(&home, &opts)?;
            println!(
                "{}: archive '{}', key {}",
                home.display(),
                engine.instance().identity,
                engine.key().fingerprint()
            );
            for r in engine.repositories()? {
                println!(
                    "repository {} ({}): {}",
                    r.identity,
                    r.layout,
                    r.codenames.join(" ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Events {
            url,
            source,
            version,
            distribution,
            since,
            exit_on,
            fail_on,
        } => {
            let url = url
                .or_else(|| {
                    std::fs::read_to_string(mbd::api::client::url_file(&home))
                        .ok()
                        .map(|u| u.trim().to_string())
                })
                .unwrap_or_else(|| "http://localhost:8066".to_string());
            let follow = mbd::api::follow::Follow {
                url: url.trim_end_matches('/').to_string(),
                source,
                version,
                distribution,
                since,
                exit_on: mbd::api::follow::kinds(&exit_on)?,
                fail_on: mbd::api::follow::kinds(&fail_on)?,
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let mut out = std::io::stdout();
            let ended = follow.run(now, &mut |line| {
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            })?;
            Ok(match ended {
                mbd::api::follow::Ended::At { failed: false, .. } => ExitCode::SUCCESS,
                mbd::api::follow::Ended::At { failed: true, .. } => ExitCode::from(1),
                mbd::api::follow::Ended::Closed => ExitCode::from(2),
            })
        }
        Command::BootstrapApt { url } => {
            let done = mbd::api::bootstrap::bootstrap(&url)?;
            println!(
                "{} installed: apt trusts the archive {} (sources for its distributions: /usr/share/{}/sources.list.d/)",
                done.package, done.identity, done.package
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::SelfSignedCertificate {
            action: CertificateCommand::Create { hostname, force },
        } => {
            let made = mbd::daemon::tls::create_self_signed(&home, hostname.as_deref(), force)?;
            print!("{made}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Sudoers { user } => {
            std::fs::create_dir_all(&home)?;
            let home = std::fs::canonicalize(&home)?;
            print!("{}", mbd::build::chroot::sudoers(&user, &home)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::PubKey { binary } => {
            // The key file alone: no store to open, so this works while a daemon owns it.
            let key = mbd::openpgp::ArchiveKey::load(&mbd::repo::key_path(&home))?;
            let key = if binary {
                key.public_binary()
            } else {
                key.public_armored()
            };
            std::io::stdout().write_all(&key)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Repo(cmd) => {
            if mbd::daemon::HomeLock::is_held(&home) {
                return through_daemon(&home, cmd);
            }
            repo_command(&home, cmd)
        }
        Command::Daemon {
            http_endpoints,
            ftp_endpoints,
            hostname,
            log_level,
            admin_password,
            no_default_chroot,
            no_default_setup,
            identity,
        } => {
            mbd::daemon::run(mbd::daemon::Options {
                home,
                http_endpoints,
                ftp_endpoints,
                hostname,
                log_level,
                admin_password,
                default_chroot: !no_default_chroot,
                default_setup: !no_default_setup,
                identity,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { keyring, files } => {
            let keyring = keyring.as_deref().map(Keyring::from_file).transpose()?;
            let mut failed = 0;
            for file in &files {
                match check_file(file, keyring.as_ref()) {
                    Ok(summary) => println!("ok: {}: {summary}", file.display()),
                    Err(e) => {
                        failed += 1;
                        eprintln!("rejected: {e}");
                    }
                }
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// A daemon owns the store of `home`: the `repo` commands go through its API (with the
/// daemon's local admin token).
fn through_daemon(home: &Path, cmd: RepoCommand) -> Result<ExitCode> {
    let s = |v: &str| v.to_string();
    let argv: Vec<String> = match cmd {
        RepoCommand::Migrate {
            source,
            distribution,
            full,
            version,
        } => {
            let mut a = vec![s("migrate"), source, distribution];
            if full {
                a.push(s("--full"));
            }
            a.extend(version.into_iter().flat_map(|v| [s("--version"), v]));
            a
        }
        RepoCommand::Remove {
            source,
            distribution,
            without_rollback,
            version,
        } => {
            let mut a = vec![s("remove"), source, distribution];
            if without_rollback {
                a.push(s("--without-rollback"));
            }
            a.extend(version.into_iter().flat_map(|v| [s("--version"), v]));
            a
        }
        RepoCommand::Ls { source, .. } => vec![s("ls"), source],
        RepoCommand::Show { source, .. } => vec![s("show"), source],
        RepoCommand::Snapshot(SnapshotCommand::Create { distribution, name }) => {
            vec![s("snapshot_create"), distribution, name]
        }
        RepoCommand::Snapshot(SnapshotCommand::Ls { distribution }) => {
            vec![s("snapshot_ls"), distribution]
        }
        RepoCommand::Snapshot(SnapshotCommand::Delete { distribution, name }) => {
            vec![s("snapshot_delete"), distribution, name]
        }
        RepoCommand::Include {
            distribution,
            files,
        } => {
            // The daemon reads the files where they are: hand it absolute paths.
            let mut paths = Vec::new();
            for f in &files {
                let abs = std::fs::canonicalize(f)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                paths.push(abs.to_string_lossy().into_owned());
            }
            vec![s("include"), distribution, paths.join(",")]
        }
        RepoCommand::Publish {
            distributions,
            cold,
        } => {
            let mut a = vec![s("publish")];
            if !distributions.is_empty() {
                a.push(s("--distributions"));
                a.push(distributions.join(","));
            }
            if cold {
                a.push(s("--cold"));
            }
            a
        }
    };
    let matches = mbd::api::client::command()
        .no_binary_name(true)
        .try_get_matches_from(&argv)?;
    match mbd::api::client::run(&matches, home) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("mbd: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn repo_command(home: &Path, cmd: RepoCommand) -> Result<ExitCode> {
    let engine = Engine::open(home)?;
    match cmd {
        RepoCommand::Include {
            distribution,
            files,
        } => {
            for line in engine.include(&distribution, &files)? {
                println!("included {line}");
            }
        }
        RepoCommand::Migrate {
            source,
            distribution,
            full,
            version,
        } => {
            for target in engine.migrate(&source, &distribution, full, version.as_deref())? {
                println!("migrated {source} to {target}");
            }
        }
        RepoCommand::Remove {
            source,
            distribution,
            without_rollback,
            version,
        } => {
            engine.remove(&source, &distribution, without_rollback, version.as_deref())?;
            println!("removed {source} from {distribution}");
        }
        RepoCommand::Ls { source, json } => {
            let ls = engine.ls(&source)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&ls)?);
            } else {
                for (repo, dists) in &ls {
                    for (dist, e) in dists {
                        if let Some(v) = &e.version {
                            println!(
                                "{repo} | {source} | {v} | {dist} | {}",
                                e.component.as_deref().unwrap_or("")
                            );
                        }
                        for (rb, r) in &e.rollbacks {
                            println!("{repo} | {source} | {} | {rb} | {}", r.version, r.component);
                        }
                    }
                }
            }
        }
        RepoCommand::Snapshot(SnapshotCommand::Create { distribution, name }) => {
            engine.snapshot_create(&distribution, &name)?;
            println!("created snapshot {name} of {distribution}");
        }
        RepoCommand::Snapshot(SnapshotCommand::Ls { distribution }) => {
            for name in engine.snapshot_ls(&distribution)? {
                println!("{name}");
            }
        }
        RepoCommand::Snapshot(SnapshotCommand::Delete { distribution, name }) => {
            engine.snapshot_delete(&distribution, &name)?;
            println!("deleted snapshot {name} of {distribution}");
        }
        RepoCommand::Show { source, json } => {
            let show = engine.show(&source)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&show)?);
            } else {
                for (repo, dists) in &show {
                    for (dist, e) in dists {
                        if let Some(v) = &e.version {
                            let migrated = match &e.migrates_to {
                                Some(t) if e.is_migrated => format!(" (migrated to {t})"),
                                Some(t) => format!(" (not yet in {t})"),
                                None => String::new(),
                            };
                            let dsc = e.dsc_path.as_deref().unwrap_or("-");
                            println!("{repo} | {source} | {v} | {dist} | {dsc}{migrated}");
                        }
                        for (rb, r) in &e.rollbacks {
                            let dsc = r.dsc_path.as_deref().unwrap_or("-");
                            println!("{repo} | {source} | {} | {rb} | {dsc}", r.version);
                        }
                    }
                }
            }
        }
        RepoCommand::Publish {
            distributions,
            cold,
        } => {
            let engine = engine;
            engine.set_cold(cold);
            if distributions.is_empty() {
                engine.publish_all()?;
            } else {
                let names = distributions
                    .iter()
                    .map(|d| engine.resolve(d).map(|r| r.name))
                    .collect::<Result<Vec<_>, _>>()?;
                engine.publish(&names)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check_file(path: &Path, keyring: Option<&Keyring>) -> Result<String> {
    let trust = keyring.map_or(Trust::Unchecked, Trust::Keyring);
    let signer = |s: &Option<String>| match s {
        Some(f) => format!(", signed by {f}"),
        None => String::new(),
    };
    let name = path.to_string_lossy();
    if name.ends_with(".changes") {
        let c = Changes::read(path, trust)?;
        c.verify_files()?;
        Ok(format!(
            "{} {} for {}, {} files verified{}",
            c.source,
            c.version,
            c.distributions.join(" "),
            c.files.entries.len(),
            signer(&c.signer)
        ))
    } else if name.ends_with(".dsc") {
        let d = Dsc::read(path, trust)?;
        d.verify_files(path.parent().unwrap_or(Path::new(".")))?;
        Ok(format!(
            "source {} {}, {} files verified{}",
            d.source,
            d.version,
            d.files.entries.len(),
            signer(&d.signer)
        ))
    } else if name.ends_with(".deb") || name.ends_with(".udeb") {
        let b = mbd::deb::read(path, true)?;
        Ok(format!(
            "{} {} {} ({}), {} bytes, {} files, sha256 {}",
            b.name,
            b.version,
            b.architecture,
            b.package_type.extension(),
            b.digests.size,
            b.contents.as_ref().map_or(0, Vec::len),
            b.digests.sha256
        ))
    } else {
        anyhow::bail!(
            "{}: unknown file type (expected .changes, .dsc, .deb or .udeb)",
            path.display()
        )
    }
}
