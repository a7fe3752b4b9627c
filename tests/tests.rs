//! mbd's integration tests: one binary, one module per area.

/// Publishing stays atomic for apt when mbd is killed at any moment.
mod atomic;
/// Builds end to end: default chroot, dput, sbuild, installed binaries, apt-get install.
mod build;
/// The chroot helper: hostile words refused, sudo's rule bound to one home.
mod chroot_helper;
/// The client helpers: `mbd events` for CI pipelines, `mbd self-signed-certificate`.
mod clients;
/// The daemon: apt over its HTTP, every API call through `mbd api`, auth, bad input, restarts.
mod daemon;
/// Packages stanzas of real Debian packages against `apt-ftparchive packages`.
mod differential;
/// The build farm: a repository-only daemon builds on two remote builders (real chroots).
mod farm;
/// Every fixture parses and verifies; every broken twin fails naming its file and reason.
mod fixtures;
/// A full disk: failed calls change nothing and say why.
mod full_disk;
/// The upload parsers on mutated fixtures: no panic, every error names its file.
mod fuzz;
/// The API and FTP of the real daemon under generated requests: no internal failure.
mod fuzz_network;
/// Hostile input: nothing from the network ends, grows or overreaches the daemon.
mod hostile;
/// The layer rule: no module of `src/` names a higher layer.
mod layers;
/// The archive's lifecycle: the debmirror export (apt from a static copy; Debian's debmirror),
/// retiring a codename, debdiff.
mod lifecycle;
/// Notifications: mail to a real SMTP server; webhooks to a receiver that checks signatures.
mod notifications;
/// The apt of trixie (sqv), sid and bookworm against what the daemon publishes.
mod releases;
/// Remotes: peering of real daemons, handshakes, auto-reactivate, wake.
mod remotes;
/// The repository engine: apt against published suites, rollbacks, migrations, refusals.
mod repo;
/// Published files over HTTP: from memory, mapped, by sendfile, pipelined.
mod serving;
/// `setup` against the host's real Debian archive: sources checked with real keys, refusals.
mod setup;
/// The real gpgv accepts what mbd signs; uploads signed outside the keyring are refused.
mod signatures;
/// Helpers: fixture paths, running external tools, an HTTP server, an isolated apt.
mod util;
/// Version ordering against `dpkg --compare-versions`.
mod version_oracle;
