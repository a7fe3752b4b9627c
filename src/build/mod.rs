//! The build orchestrator: accepted source uploads become per-architecture build requests,
//! run by sbuild in the daemon's chroots; results are installed when every mandatory
//! architecture succeeded.
//!
//! - [`request`] plans which architectures a source builds on.
//! - [`chroot`] makes, checks and removes the schroot chroots (mmdebstrap, overlay sessions).
//! - [`sbuild`] is one sbuild run: its command line and what its log says.
//! - [`lintian`] checks the results on the host, in mini-buildd's modes.
//! - [`autopkgtest`] runs the source's tests against the results in a session of the chroot.
//! - [`queue`] is the durable queue in the store: uploads, their builds, their states.
//! - [`route`] chooses the builder of each build: here or a remote, by load.
//! - [`dispatch`] hands builds to remotes and takes their results.
//! - [`worker`] runs the queue: build slots, threads, cancellation.

pub mod autopkgtest;
pub mod chroot;
pub mod dispatch;
pub mod farm;
pub mod lintian;
pub mod queue;
pub mod request;
pub mod route;
pub mod sbuild;
pub mod worker;

use crate::repo::RepoError;
use std::path::{Path, PathBuf};

/// Why a build cannot be planned or run.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "{source_name}: builds for none of {codename}'s architectures ({configured}); its Architecture field is '{wanted}'"
    )]
    NoArchitecture {
        source_name: String,
        codename: String,
        configured: String,
        wanted: String,
    },
    #[error("{codename}: no architecture builds Architecture: all packages (all are optional)")]
    NoArchAll { codename: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{command} failed ({reason}); its output is in {log}")]
    Command {
        command: String,
        reason: String,
        log: PathBuf,
    },
    #[error("no upload '{0}' in the build queue")]
    NoSuchUpload(String),
    #[error("no chroot '{0}'")]
    NoSuchChroot(String),
    /// schroot's configuration of a chroot is missing or points elsewhere.
    #[error("{0}")]
    ChrootConf(String),
    #[error("{0}")]
    Refused(String),
    /// A remote's record or a request to one.
    #[error("{0}")]
    Remote(String),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

impl BuildError {
    pub fn io(path: &Path, source: std::io::Error) -> BuildError {
        BuildError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
