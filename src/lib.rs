//! mbd: a Debian build daemon and APT repository engine.
//!
//! The Debian formats live in modules named after Debian nouns: [`version`], [`control`]
//! (deb822), [`deb`] (binary packages), [`dsc`], [`changes`], [`files`] (the file lists both
//! carry), [`changelog`], plus [`checksums`] and [`openpgp`]. See `docs/ARCHITECTURE.md`.

pub mod api;
pub mod build;
pub mod changelog;
pub mod changes;
pub mod checksums;
pub mod config;
pub mod control;
pub mod crontab;
pub mod daemon;
pub mod deb;
pub mod dsc;
pub mod files;
pub mod incoming;
pub mod keyring_package;
pub mod mail;
pub mod openpgp;
pub mod port;
pub mod remote;
pub mod repo;
pub mod settings;
pub mod setup;
pub mod state;
pub mod status;
pub mod test_packages;
pub mod users;
pub mod version;
pub mod webhook;
