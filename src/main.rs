//! The `mbd` command.

use anyhow::Result;
use clap::{Parser, Subcommand};
use mbd::changes::Changes;
use mbd::dsc::Dsc;
use mbd::files::Trust;
use mbd::openpgp::Keyring;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mbd",
    version,
    about = "Debian build daemon and APT repository engine"
)]
struct Cli {
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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MBD_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mbd: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
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
