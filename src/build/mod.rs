//! The build orchestrator: accepted source uploads become per-architecture build requests,
//! run by sbuild in the daemon's chroots; results are installed when every mandatory
//! architecture succeeded.
//!
//! So far: [`request`], which plans the build requests of a source package.

pub mod request;

/// Why a build cannot be planned or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
}
