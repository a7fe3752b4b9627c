//! The handlers of the API calls, one file per domain; [`super::calls::CALLS`] declares them.
//! A handler parses its checked arguments, calls the domain and renders the result.

pub mod builds;
pub mod config;
pub mod crontab;
pub mod packages;
pub mod remotes;
pub mod status;
pub mod users;
