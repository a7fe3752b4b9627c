//! The call registry and the handlers. Each call is declared once in [`CALLS`].

use super::auth::{self, Token, User};
use super::{ApiError, Arg, Call, Context, Invocation, Kind, Level, Output};
use crate::repo::distribution::DistName;
use crate::repo::{Engine, Repository};
use crate::state::StateStore;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

const fn arg(name: &'static str, kind: Kind, default: &'static str, doc: &'static str) -> Arg {
    Arg {
        name,
        kind,
        required: false,
        default,
        doc,
    }
}

const fn req(name: &'static str, kind: Kind, doc: &'static str) -> Arg {
    Arg {
        name,
        kind,
        required: true,
        default: "",
        doc,
    }
}

const SOURCE: Arg = req("source", Kind::Str, "source package name");
const DISTRIBUTION: Arg = req(
    "distribution",
    Kind::Str,
    "distribution, <codename>-<repository>-<suite>[-rollback<N>]",
);
const VERSION: Arg = arg("version", Kind::Str, "", "only this version");
const REPOSITORIES: Arg = arg(
    "repositories",
    Kind::List,
    "",
    "repository identities (default: all)",
);
const CODENAMES: Arg = arg("codenames", Kind::List, "", "codenames (default: all)");

/// Every API call, in the order help lists them.
pub static CALLS: &[Call] = &[
    Call {
        name: "status",
        level: Level::None,
        changes: false,
        running: false,
        doc: "Identity, URL, whether the daemon is started, load, and optionally the repositories.",
        args: &[arg(
            "with_repositories",
            Kind::Bool,
            "false",
            "include the repositories and their distributions",
        )],
        run: status,
    },
    Call {
        name: "pub_key",
        level: Level::None,
        changes: false,
        running: false,
        doc: "The archive's public key, ASCII armored (what apt's Signed-By needs).",
        args: &[],
        run: pub_key,
    },
    Call {
        name: "dput_conf",
        level: Level::None,
        changes: false,
        running: false,
        doc: "dput.cf sections for uploading to this daemon: HTTP, and FTP when it is served.",
        args: &[],
        run: dput_conf,
    },
    Call {
        name: "sources_list",
        level: Level::None,
        changes: false,
        running: false,
        doc: "APT sources for the repositories: one-line format or deb822 (.sources), with Signed-By.",
        args: &[
            CODENAMES,
            REPOSITORIES,
            arg(
                "suites",
                Kind::List,
                "",
                "suite names (default: all, in layout order)",
            ),
            arg("types", Kind::List, "deb", "deb and/or deb-src"),
            arg(
                "format",
                Kind::Str,
                "list",
                "list (one-line) or sources (deb822)",
            ),
            arg(
                "signed_by",
                Kind::Str,
                "",
                "key file path for Signed-By (default: /etc/apt/keyrings/mbd-<identity>.asc); 'inline' embeds the key (sources format only)",
            ),
            arg(
                "options",
                Kind::Str,
                "",
                "extra options for each line, e.g. 'arch=amd64'",
            ),
            arg(
                "rollbacks",
                Kind::Int,
                "0",
                "also list this many rollback distributions per suite (<0: all)",
            ),
            arg(
                "snapshot",
                Kind::Str,
                "",
                "a snapshot name: list <dist>/snapshots/<name> instead",
            ),
            arg(
                "mirror",
                Kind::Str,
                "",
                "base URL to use instead of this daemon's /repositories/",
            ),
            arg(
                "with_comment",
                Kind::Bool,
                "false",
                "a comment line before each entry",
            ),
        ],
        run: sources_list,
    },
    Call {
        name: "ls",
        level: Level::None,
        changes: false,
        running: false,
        doc: "Versions of a source per repository, distribution and rollback.",
        args: &[SOURCE, REPOSITORIES, CODENAMES, VERSION],
        run: ls,
    },
    Call {
        name: "show",
        level: Level::None,
        changes: false,
        running: false,
        doc: "Like ls, plus .dsc paths and the migration state per distribution.",
        args: &[SOURCE, REPOSITORIES, CODENAMES, VERSION],
        run: show,
    },
    Call {
        name: "migrate",
        level: Level::Staff,
        changes: true,
        running: false,
        doc: "Copy a source and its binaries to the suite its suite migrates to; from a rollback distribution, restore it.",
        args: &[
            SOURCE,
            DISTRIBUTION,
            arg(
                "full",
                Kind::Bool,
                "false",
                "follow the migration chain to its end",
            ),
            VERSION,
        ],
        run: migrate,
    },
    Call {
        name: "remove",
        level: Level::Admin,
        changes: true,
        running: false,
        doc: "Remove a source and its binaries from a distribution (kept in rollback0 unless told otherwise).",
        args: &[
            SOURCE,
            DISTRIBUTION,
            arg(
                "without_rollback",
                Kind::Bool,
                "false",
                "do not keep the removed version in rollback0",
            ),
            VERSION,
        ],
        run: remove,
    },
    Call {
        name: "include",
        level: Level::Admin,
        changes: true,
        running: false,
        doc: "Import package files that are on the daemon's machine (.changes, .dsc, .deb, .udeb or directories; absolute paths) into a distribution: the admin import, no upload policy, every integrity check.",
        args: &[
            DISTRIBUTION,
            req(
                "files",
                Kind::List,
                "absolute paths on the daemon's machine",
            ),
        ],
        run: include,
    },
    Call {
        name: "publish",
        level: Level::Admin,
        changes: true,
        running: false,
        doc: "Publish distributions again (all when none is named).",
        args: &[
            arg(
                "distributions",
                Kind::List,
                "",
                "distributions (default: all)",
            ),
            arg(
                "cold",
                Kind::Bool,
                "false",
                "recompress every index instead of reusing cached segments",
            ),
        ],
        run: publish,
    },
    Call {
        name: "snapshot_ls",
        level: Level::None,
        changes: false,
        running: false,
        doc: "Snapshots of a distribution.",
        args: &[DISTRIBUTION],
        run: snapshot_ls,
    },
    Call {
        name: "snapshot_create",
        level: Level::Admin,
        changes: true,
        running: true,
        doc: "Freeze the current content of a distribution under a name (published under dists/<dist>/snapshots/<name>/).",
        args: &[DISTRIBUTION, req("name", Kind::Str, "snapshot name")],
        run: snapshot_create,
    },
    Call {
        name: "snapshot_delete",
        level: Level::Admin,
        changes: true,
        running: true,
        doc: "Delete a snapshot.",
        args: &[DISTRIBUTION, req("name", Kind::Str, "snapshot name")],
        run: snapshot_delete,
    },
    Call {
        name: "events",
        level: Level::None,
        changes: false,
        running: false,
        doc: "Decisions on uploads (REJECTED with the reason, ACCEPTED, PACKAGING, INSTALLED), oldest first.",
        args: &[
            arg(
                "type",
                Kind::Str,
                "",
                "only this type: REJECTED, ACCEPTED, PACKAGING, BUILDING, BUILT, INSTALLED or FAILED",
            ),
            arg("source", Kind::Str, "", "only this source"),
            arg("distribution", Kind::Str, "", "only this distribution"),
            arg(
                "since",
                Kind::Int,
                "0",
                "only events at or after this time (seconds since the epoch)",
            ),
        ],
        run: events,
    },
    Call {
        name: "start",
        level: Level::Admin,
        changes: true,
        running: false,
        doc: "Start the daemon after maintenance: uploads and builds run again.",
        args: &[],
        run: start,
    },
    Call {
        name: "stop",
        level: Level::Admin,
        changes: true,
        running: false,
        doc: "Stop for maintenance: HTTP and read calls stay up; uploads and builds pause; nothing is lost.",
        args: &[],
        run: stop,
    },
    Call {
        name: "uploaders",
        level: Level::Admin,
        changes: false,
        running: false,
        doc: "Per repository: whether unauthenticated uploads are allowed, and the users' upload keys.",
        args: &[REPOSITORIES],
        run: uploaders,
    },
    Call {
        name: "set_repository",
        level: Level::Admin,
        changes: true,
        running: false,
        doc: "Set a repository's upload policy, all of it (a flag not given is off): whether uploads need a signature by an uploader key, and whether binary-only uploads are installed directly.",
        args: &[
            req("repository", Kind::Str, "repository identity"),
            arg(
                "allow_unauthenticated_uploads",
                Kind::Bool,
                "false",
                "take uploads without checking their signature",
            ),
            arg(
                "allow_binary_uploads",
                Kind::Bool,
                "false",
                "install binary-only uploads directly instead of refusing them",
            ),
        ],
        run: set_repository,
    },
    Call {
        name: "set_user_key",
        level: Level::Login,
        changes: true,
        running: false,
        doc: "Set the OpenPGP key (armored) you sign uploads with.",
        args: &[req("key", Kind::Str, "the public key, ASCII armored")],
        run: set_user_key,
    },
    Call {
        name: "subscribe",
        level: Level::Login,
        changes: true,
        running: false,
        doc: "Subscribe to the events of a source in a distribution (empty: all).",
        args: &[
            arg("source", Kind::Str, "", "source package (default: all)"),
            arg("distribution", Kind::Str, "", "distribution (default: all)"),
        ],
        run: subscribe,
    },
    Call {
        name: "unsubscribe",
        level: Level::Login,
        changes: true,
        running: false,
        doc: "Remove a subscription (exact match).",
        args: &[
            arg("source", Kind::Str, "", "source package (default: all)"),
            arg("distribution", Kind::Str, "", "distribution (default: all)"),
        ],
        run: unsubscribe,
    },
    Call {
        name: "subscriptions",
        level: Level::Login,
        changes: false,
        running: false,
        doc: "Your subscriptions.",
        args: &[],
        run: subscriptions,
    },
    Call {
        name: "user_add",
        level: Level::Admin,
        changes: true,
        running: false,
        doc: "Create a user, or reset an existing user's level and password.",
        args: &[
            req("name", Kind::Str, "user name"),
            arg("level", Kind::Str, "login", "login, staff or admin"),
            arg(
                "password",
                Kind::Str,
                "",
                "password (default: a generated one, shown once)",
            ),
        ],
        run: user_add,
    },
    Call {
        name: "user_remove",
        level: Level::Admin,
        changes: true,
        running: false,
        doc: "Delete a user and revoke their tokens.",
        args: &[req("name", Kind::Str, "user name")],
        run: user_remove,
    },
    Call {
        name: "users",
        level: Level::Admin,
        changes: false,
        running: false,
        doc: "The users and their levels.",
        args: &[],
        run: users,
    },
    Call {
        name: "token_create",
        level: Level::Login,
        changes: true,
        running: false,
        doc: "Issue an API token for yourself; the secret is shown once.",
        args: &[arg("label", Kind::Str, "", "what the token is for")],
        run: token_create,
    },
    Call {
        name: "token_ls",
        level: Level::Login,
        changes: false,
        running: false,
        doc: "Your tokens (administrators: everybody's).",
        args: &[],
        run: token_ls,
    },
    Call {
        name: "token_revoke",
        level: Level::Login,
        changes: true,
        running: false,
        doc: "Revoke a token by its id (your own; administrators: anybody's).",
        args: &[req("id", Kind::Str, "token id, as token_ls shows it")],
        run: token_revoke,
    },
    Call {
        name: "builds",
        level: Level::None,
        changes: false,
        running: false,
        doc: "The build queue: accepted uploads (building, installed, failed, cancelled) and each architecture's build (needs-build, building, built, failed, dep-wait, cancelled), oldest first.",
        args: &[arg("source", Kind::Str, "", "only this source")],
        run: builds,
    },
    Call {
        name: "cancel",
        level: Level::Staff,
        changes: true,
        running: false,
        doc: "Cancel an upload's builds (running ones are stopped); the upload ends FAILED.",
        args: &[req(
            "upload",
            Kind::Str,
            "<source>_<version>, as `builds` lists it",
        )],
        run: cancel,
    },
    Call {
        name: "retry",
        level: Level::Staff,
        changes: true,
        running: false,
        doc: "Build again what failed, waited for dependencies or was cancelled.",
        args: &[req(
            "upload",
            Kind::Str,
            "<source>_<version>, as `builds` lists it",
        )],
        run: retry,
    },
    Call {
        name: "chroots",
        level: Level::None,
        changes: false,
        running: false,
        doc: "The build chroots: codename, architecture, backend, state (preparing, ready, failed) and message.",
        args: &[],
        run: chroots,
    },
    Call {
        name: "chroot_prepare",
        level: Level::Admin,
        changes: true,
        running: false,
        doc: "Create (or re-create) a build chroot with mmdebstrap in the background; `chroots` shows its progress. Needs root.",
        args: &[
            req("codename", Kind::Str, "base codename, e.g. bookworm"),
            req(
                "architecture",
                Kind::Str,
                "e.g. amd64 (i386 on amd64 works)",
            ),
            arg(
                "mirror",
                Kind::Str,
                "",
                "archive URL (default: from the host's apt sources)",
            ),
            arg(
                "backend",
                Kind::Str,
                "directory",
                "directory (overlay sessions) or file (a tarball)",
            ),
        ],
        run: chroot_prepare,
    },
    Call {
        name: "chroot_check",
        level: Level::Admin,
        changes: true,
        running: false,
        doc: "Update and upgrade a chroot's packages (apt-get update, dist-upgrade, clean).",
        args: &[req("chroot", Kind::Str, "<codename>-<architecture>")],
        run: chroot_check,
    },
    Call {
        name: "chroot_remove",
        level: Level::Admin,
        changes: true,
        running: false,
        doc: "Remove a chroot: its schroot configuration and its files.",
        args: &[req("chroot", Kind::Str, "<codename>-<architecture>")],
        run: chroot_remove,
    },
    Call {
        name: "setup",
        level: Level::Admin,
        changes: true,
        running: false,
        doc: "Report (and with update/pca create, prepare, check and activate) the archives, keys, sources, distributions, repositories and chroots a setup needs. Explicit lists replace the implicit '..._from_...' ones; a preset (Debian, Ubuntu) bootstraps everything from that origin.",
        args: &[
            arg(
                "identity",
                Kind::Str,
                "",
                "the instance identity (fixed once the archive key exists: only reported)",
            ),
            arg(
                "ftp_endpoint",
                Kind::Str,
                "",
                "<host>:<port> for FTP uploads, or none (kept in etc/mbd.toml; in effect from the daemon's next start)",
            ),
            arg(
                "preset",
                Kind::Str,
                "",
                "Debian or Ubuntu: bootstrap (everything from the origin, repository test, update and pca); Current: report on every existing object; Extend: Current, applied (update and pca)",
            ),
            arg(
                "from_origins",
                Kind::List,
                "",
                "origins for the implicit options: Debian|Ubuntu[:lts|:all]",
            ),
            arg("archives", Kind::List, "", "archive URLs (ending in /)"),
            arg(
                "archives_from_origins",
                Kind::Bool,
                "false",
                "the origins' known archives",
            ),
            arg(
                "archives_from_apt_sources",
                Kind::Bool,
                "false",
                "the archives the host's apt sources name",
            ),
            arg(
                "sources",
                Kind::List,
                "",
                "codenames (each with its security and backports sources)",
            ),
            arg(
                "sources_from_origins",
                Kind::Bool,
                "false",
                "the origins' supported codenames (':lts' adds LTS, ':all' all)",
            ),
            arg(
                "distributions",
                Kind::List,
                "",
                "<codename>:<arch>[+<arch>...]",
            ),
            arg(
                "distributions_from_sources",
                Kind::Bool,
                "false",
                "one distribution per source codename, for the host's architecture",
            ),
            arg(
                "repositories",
                Kind::List,
                "",
                "<id>:<layout>:<codename>[+<codename>...]",
            ),
            arg(
                "repositories_from_distributions",
                Kind::List,
                "",
                "<id>[:<layout>]: a repository on every distribution",
            ),
            arg("chroots", Kind::List, "", "<codename>:<arch>"),
            arg(
                "chroots_from_sources",
                Kind::Bool,
                "false",
                "a chroot per distribution and architecture",
            ),
            arg(
                "chroots_backend",
                Kind::Str,
                "directory",
                "directory or file",
            ),
            arg(
                "update",
                Kind::Bool,
                "false",
                "create missing objects and update differing ones",
            ),
            arg(
                "pca",
                Kind::Bool,
                "false",
                "prepare, check and activate the objects (chroots are prepared in the background)",
            ),
            arg("format", Kind::Str, "text", "text or json"),
        ],
        run: setup,
    },
    Call {
        name: "config_objects",
        level: Level::Staff,
        changes: false,
        running: false,
        doc: "Archives, apt keys, sources and repositories with their status (Removed, Prepared (-*xA), Active) and what their last check found.",
        args: &[arg(
            "kind",
            Kind::Str,
            "",
            "archive, aptkey, source or repository (default: all)",
        )],
        run: config_objects,
    },
    Call {
        name: "config_action",
        level: Level::Admin,
        changes: true,
        running: false,
        doc: "Run a status action on an apt key, a source, a repository or a chroot: prepare, check, activate, deactivate, remove, pc or pca. A source's keys get the action first; a failed check leaves it Failed with the reason. A repository's prepare publishes it and its check verifies the published tree as apt would; only an active repository takes uploads (remove keeps its packages). A deactivated chroot starts no builds.",
        args: &[
            req("kind", Kind::Str, "aptkey, source, repository or chroot"),
            req(
                "id",
                Kind::Str,
                "key id, source codename, repository identity or <codename>-<arch>",
            ),
            req(
                "action",
                Kind::Str,
                "prepare, check, activate, deactivate, remove, pc or pca",
            ),
        ],
        run: config_action,
    },
    Call {
        name: "config_set",
        level: Level::Admin,
        changes: true,
        running: false,
        doc: "Edit an apt key (key: armored text) or a source (apt_keys, codeversion_override, check_valid_until, extra_identifiers as k=v lists, remove_from_component); the object is marked changed and must be prepared again.",
        args: &[
            req("kind", Kind::Str, "aptkey or source"),
            req("id", Kind::Str, "key id or source codename"),
            req("field", Kind::Str, "the field to set"),
            arg(
                "value",
                Kind::List,
                "",
                "the new value (lists: one item per value)",
            ),
        ],
        run: config_set,
    },
    Call {
        name: "port",
        level: Level::Staff,
        changes: true,
        running: true,
        doc: "Port a source package from one distribution to another (or rebuild it in the same one): a new version by mini-buildd's rules, a changelog entry and signatures by the archive key, uploaded to our own incoming and built like any upload.",
        args: &[
            SOURCE,
            req(
                "from_distribution",
                Kind::Str,
                "where the source is (rollbacks too)",
            ),
            req("to_distribution", Kind::Str, "an uploadable distribution"),
            VERSION,
            arg(
                "options",
                Kind::List,
                "lintian-mode=ignore",
                "MINI_BUILDD_OPTION lines for the new entry",
            ),
        ],
        run: port,
    },
    Call {
        name: "keyring_packages",
        level: Level::Admin,
        changes: true,
        running: true,
        doc: "Build the <identity>-archive-keyring package (the archive key for apt, .sources files for every repository, a dput configuration) for each distribution whose suite builds keyring packages, through the normal upload and build path; once installed it migrates on to stable.",
        args: &[
            arg(
                "distributions",
                Kind::List,
                "",
                "target distributions (default: every unstable-like suite that builds keyring packages)",
            ),
            arg(
                "without_migration",
                Kind::Bool,
                "false",
                "leave it in the target distribution",
            ),
        ],
        run: keyring_packages,
    },
    Call {
        name: "uploader_activate",
        level: Level::Staff,
        changes: true,
        running: false,
        doc: "Activate a user as an uploader (after they set a key): their key then signs uploads to the given repositories (default: all).",
        args: &[
            req("name", Kind::Str, "user name"),
            arg(
                "repositories",
                Kind::List,
                "",
                "repositories they may upload to (default: all)",
            ),
        ],
        run: uploader_activate,
    },
    Call {
        name: "uploader_deactivate",
        level: Level::Staff,
        changes: true,
        running: false,
        doc: "Deactivate an uploader: their key no longer signs uploads.",
        args: &[req("name", Kind::Str, "user name")],
        run: uploader_deactivate,
    },
    Call {
        name: "port_ext",
        level: Level::Staff,
        changes: true,
        running: true,
        doc: "Port an external source package (a .dsc URL; its files are fetched from beside it and checked) to a distribution: its version plus the distribution's default appendix, signed by the archive key. The .dsc must be signed by an uploader of the target repository unless allow_unauthenticated.",
        args: &[
            req("dsc_url", Kind::Str, "http URL of the .dsc"),
            req("to_distribution", Kind::Str, "an uploadable distribution"),
            arg(
                "options",
                Kind::List,
                "lintian-mode=ignore",
                "MINI_BUILDD_OPTION lines for the new entry",
            ),
            arg(
                "allow_unauthenticated",
                Kind::Bool,
                "false",
                "take a .dsc that no uploader signed",
            ),
        ],
        run: port_ext,
    },
    Call {
        name: "layouts",
        level: Level::None,
        changes: false,
        running: false,
        doc: "Every layout (built-in and custom) with its suites and version rules, as JSON that layout_set takes.",
        args: &[],
        run: layouts,
    },
    Call {
        name: "layout_set",
        level: Level::Admin,
        changes: true,
        running: false,
        doc: "Add a custom layout from JSON (the shape `layouts` shows); it is checked as mini-buildd checks suite options. Built-in layouts and layouts in use cannot change.",
        args: &[req("layout", Kind::Str, "the layout as JSON")],
        run: layout_set,
    },
    Call {
        name: "distributions",
        level: Level::None,
        changes: false,
        running: false,
        doc: "The distributions: codename, codeversion, components, architectures, base and extra sources, build options.",
        args: &[],
        run: distributions,
    },
    Call {
        name: "distribution_set",
        level: Level::Admin,
        changes: true,
        running: false,
        doc: "Set a distribution's build options: deb_build_options and deb_build_profiles (words), lintian_mode (disabled, ignore, errfail, warnfail; empty: the daemon's), add_depends (one dependency per value), chroot_setup_script (a script starting with #!, run in the chroot before build-dependencies are installed), sbuildrc_snippet (Perl for the build's .sbuildrc; %LIBDIR% is a directory kept per codename and architecture). Uploads' options add to or override them.",
        args: &[
            req("codename", Kind::Str, "the distribution's codename"),
            req(
                "field",
                Kind::Str,
                "deb_build_options, deb_build_profiles, lintian_mode, add_depends, chroot_setup_script or sbuildrc_snippet",
            ),
            arg(
                "value",
                Kind::List,
                "",
                "the new value (lists: one item per value; texts: one value, none to clear)",
            ),
        ],
        run: distribution_set,
    },
];

pub fn find(name: &str) -> Option<&'static Call> {
    CALLS.iter().find(|c| c.name == name)
}

fn status(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let engine = ctx.engine();
    let running = ctx.is_running();
    let mut out = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "identity": engine.instance().identity,
        "url": ctx.url,
        "incoming_url": format!("{}/incoming/", ctx.url),
        "running": running,
        // Running builds per slot; -1 while stopped (as mini-buildd reports it).
        "load": ctx.builds.load(running),
        "chroots": crate::build::chroot::all(ctx.state())?
            .iter()
            .map(|c| json!({"chroot": c.id(), "state": c.state}))
            .collect::<Vec<_>>(),
        "remotes": [],
        "uptime": ctx.started.elapsed().map_or(0, |d| d.as_secs()),
    });
    if inv.args.bool("with_repositories") {
        let mut repos = serde_json::Map::new();
        for r in engine.repositories()? {
            let layout = engine.layout(&r.layout)?;
            let mut dists = Vec::new();
            for codename in &r.codenames {
                for suite in &layout.suites {
                    dists.push(DistName::new(codename, &r.identity, &suite.name).to_string());
                }
            }
            repos.insert(
                r.identity.clone(),
                json!({
                    "layout": r.layout,
                    "codenames": r.codenames,
                    "allow_unauthenticated_uploads": r.allow_unauthenticated_uploads,
                    "distributions": dists,
                }),
            );
        }
        out["repositories"] = serde_json::Value::Object(repos);
    }
    Ok(Output::Json(out))
}

fn pub_key(ctx: &Context, _: &Invocation) -> Result<Output, ApiError> {
    let key = ctx.engine().key().public_armored();
    Ok(Output::Text(String::from_utf8_lossy(&key).into_owned()))
}

/// `host:port` of a base URL.
pub fn authority(url: &str) -> &str {
    url.split_once("://")
        .map_or(url, |(_, rest)| rest)
        .trim_end_matches('/')
}

/// The dput.cf section for uploading over HTTP.
/// Where and how dput reaches the incoming.
pub struct Incoming<'a> {
    pub url: &'a str,
    /// `host:port`
    pub https: Option<&'a str>,
    /// `host:port`
    pub ftp: Option<&'a str>,
    /// The `login` dput uses (`anonymous` unless uploads need a login).
    pub login: &'a str,
}

/// The dput.cf sections: HTTP (`mbd-<identity>`), and HTTPS (`mbd-<identity>-https`) and FTP
/// (`mbd-<identity>-ftp`) if served.
pub fn dput_sections(identity: &str, to: &Incoming<'_>) -> String {
    let section = |suffix: &str, method: &str, fqdn: &str| {
        format!(
            "[mbd-{identity}{suffix}]\nmethod   = {method}\nfqdn     = {fqdn}\nincoming = /incoming\nlogin    = {}\n",
            to.login
        )
    };
    let mut text = section("", "http", authority(to.url));
    if let Some(https) = to.https {
        text.push('\n');
        text.push_str(&section("-https", "https", https));
    }
    if let Some(ftp) = to.ftp {
        text.push('\n');
        text.push_str(&section("-ftp", "ftp", ftp));
    }
    text
}

fn dput_conf(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let identity = ctx.engine().instance().identity.clone();
    Ok(Output::Text(dput_sections(
        &identity,
        &ctx.dput_incoming(inv.user.as_ref().map(|u| u.name.as_str())),
    )))
}

/// What `sources_list` lists: one entry per distribution (and type).
struct SourcesRequest<'a> {
    codenames: &'a [String],
    repositories: &'a [String],
    suites: &'a [String],
    rollbacks: i64,
    snapshot: Option<&'a str>,
}

struct SourcesEntry {
    repository: String,
    suite_path: String,
    components: Vec<String>,
    comment: String,
}

fn sources_entries(
    engine: &Engine,
    req: &SourcesRequest<'_>,
) -> Result<Vec<SourcesEntry>, ApiError> {
    let pick =
        |filter: &[String], value: &str| filter.is_empty() || filter.iter().any(|f| f == value);
    let repos: Vec<Repository> = engine.repositories()?;
    for want in req.repositories {
        if !repos.iter().any(|r| &r.identity == want) {
            return Err(ApiError::NotFound(format!("No such repository '{want}'")));
        }
    }
    let mut out = Vec::new();
    for repo in repos.iter().filter(|r| pick(req.repositories, &r.identity)) {
        let layout = engine.layout(&repo.layout)?;
        for want in req.suites {
            if layout.suite(want).is_none() {
                return Err(ApiError::NotFound(format!(
                    "No suite '{want}' in layout '{}' of repository '{}'",
                    layout.name, repo.identity
                )));
            }
        }
        for codename in repo.codenames.iter().filter(|c| pick(req.codenames, c)) {
            let dist = engine.distribution(codename)?;
            let mut components = dist.components.clone();
            components.sort();
            for suite in layout.suites.iter().filter(|s| pick(req.suites, &s.name)) {
                let main = DistName::new(codename, &repo.identity, &suite.name);
                let count = if req.rollbacks < 0 {
                    suite.rollback
                } else {
                    (req.rollbacks as u64).min(u64::from(suite.rollback)) as u32
                };
                let names = std::iter::once(main.clone()).chain((0..count).map(|n| DistName {
                    rollback: Some(n),
                    ..main.clone()
                }));
                for name in names {
                    let name = name.to_string();
                    let suite_path = match req.snapshot {
                        Some(s) => format!("{name}/snapshots/{s}"),
                        None => name.clone(),
                    };
                    out.push(SourcesEntry {
                        repository: repo.identity.clone(),
                        comment: format!(
                            "{} '{suite_path}' ({} layout)",
                            engine.instance().origin(),
                            layout.name
                        ),
                        suite_path,
                        components: components.clone(),
                    });
                }
            }
        }
    }
    Ok(out)
}

fn sources_list(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    let engine = ctx.engine();
    let identity = engine.instance().identity.clone();
    let types = a.list("types");
    for t in types {
        if t != "deb" && t != "deb-src" {
            return Err(ApiError::BadRequest(format!(
                "sources_list: type '{t}' is neither deb nor deb-src"
            )));
        }
    }
    let deb822 = match a.str("format") {
        "list" => false,
        "sources" => true,
        other => {
            return Err(ApiError::BadRequest(format!(
                "sources_list: format '{other}' is neither list nor sources"
            )));
        }
    };
    if let Some(s) = a.opt("snapshot") {
        if s.contains('/') || s.starts_with('.') {
            return Err(ApiError::BadRequest(format!(
                "sources_list: '{s}' is not a snapshot name"
            )));
        }
    }
    let entries = sources_entries(
        engine,
        &SourcesRequest {
            codenames: a.list("codenames"),
            repositories: a.list("repositories"),
            suites: a.list("suites"),
            rollbacks: a.int("rollbacks"),
            snapshot: a.opt("snapshot"),
        },
    )?;
    let base = match a.opt("mirror") {
        Some(m) => m.trim_end_matches('/').to_string(),
        None => format!("{}/repositories", ctx.url),
    };
    let key_path = format!("/etc/apt/keyrings/mbd-{identity}.asc");
    let signed_by = a.opt("signed_by").unwrap_or(&key_path);
    if signed_by == "inline" && !deb822 {
        return Err(ApiError::BadRequest(
            "sources_list: signed_by=inline needs format=sources".to_string(),
        ));
    }
    let mut text = String::new();
    for e in &entries {
        let uri = format!("{base}/{}", e.repository);
        if a.bool("with_comment") {
            text.push_str(&format!("# {}\n", e.comment));
        }
        if deb822 {
            text.push_str(&format!(
                "Types: {}\nURIs: {uri}\nSuites: {}\nComponents: {}\n",
                types.join(" "),
                e.suite_path,
                e.components.join(" ")
            ));
            if signed_by == "inline" {
                let key = String::from_utf8_lossy(&engine.key().public_armored()).into_owned();
                text.push_str("Signed-By:\n");
                for line in key.lines() {
                    if line.is_empty() {
                        text.push_str(" .\n");
                    } else {
                        text.push_str(&format!(" {line}\n"));
                    }
                }
            } else {
                text.push_str(&format!("Signed-By: {signed_by}\n"));
            }
            for opt in a.str("options").split_whitespace() {
                if let Some((k, v)) = opt.split_once('=') {
                    text.push_str(&format!("{}: {v}\n", deb822_option(k)));
                }
            }
            text.push('\n');
        } else {
            let mut options = format!("signed-by={signed_by}");
            if let Some(extra) = a.opt("options") {
                options.push(' ');
                options.push_str(extra);
            }
            for t in types {
                text.push_str(&format!(
                    "{t} [{options}] {uri} {} {}\n",
                    e.suite_path,
                    e.components.join(" ")
                ));
            }
        }
    }
    Ok(Output::Text(text))
}

/// One-line option names as deb822 field names (`arch` → `Architectures`, ...).
fn deb822_option(key: &str) -> String {
    match key {
        "arch" => "Architectures".to_string(),
        "lang" => "Languages".to_string(),
        "target" => "Targets".to_string(),
        "pdiffs" => "PDiffs".to_string(),
        "by-hash" => "By-Hash".to_string(),
        other => other
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("-"),
    }
}

/// Keeps the entries of the requested repositories, codenames and version.
fn filter_listing<E>(
    listing: BTreeMap<String, BTreeMap<String, E>>,
    inv: &Invocation,
    version_of: impl Fn(&E) -> Option<&str>,
) -> BTreeMap<String, BTreeMap<String, E>> {
    let a = &inv.args;
    let repos = a.list("repositories");
    let codenames = a.list("codenames");
    listing
        .into_iter()
        .filter(|(repo, _)| repos.is_empty() || repos.contains(repo))
        .map(|(repo, dists)| {
            let dists = dists
                .into_iter()
                .filter(|(dist, e)| {
                    let codename = dist.split('-').next().unwrap_or("");
                    (codenames.is_empty() || codenames.iter().any(|c| c == codename))
                        && a.opt("version").is_none_or(|v| version_of(e) == Some(v))
                })
                .collect::<BTreeMap<_, _>>();
            (repo, dists)
        })
        .filter(|(_, dists)| !dists.is_empty())
        .collect()
}

fn ls(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let listing = ctx.engine().ls(inv.args.str("source"))?;
    Output::json(&filter_listing(listing, inv, |e| e.version.as_deref()))
}

fn show(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let listing = ctx.engine().show(inv.args.str("source"))?;
    Output::json(&filter_listing(listing, inv, |e| e.version.as_deref()))
}

fn migrate(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    let targets = ctx.writer().migrate(
        a.str("source"),
        a.str("distribution"),
        a.bool("full"),
        a.opt("version"),
    )?;
    Output::json(&targets)
}

fn remove(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    ctx.writer().remove(
        a.str("source"),
        a.str("distribution"),
        a.bool("without_rollback"),
        a.opt("version"),
    )?;
    Ok(Output::Text(format!(
        "removed {} from {}",
        a.str("source"),
        a.str("distribution")
    )))
}

fn include(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let files: Vec<std::path::PathBuf> = inv
        .args
        .list("files")
        .iter()
        .map(std::path::PathBuf::from)
        .collect();
    if let Some(relative) = files.iter().find(|f| !f.is_absolute()) {
        return Err(ApiError::BadRequest(format!(
            "include: '{}' is not an absolute path on the daemon's machine",
            relative.display()
        )));
    }
    let included = ctx.writer().include(inv.args.str("distribution"), &files)?;
    Output::json(&included)
}

fn publish(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let engine = ctx.writer();
    let names = inv
        .args
        .list("distributions")
        .iter()
        .map(|d| engine.resolve(d).map(|r| r.name))
        .collect::<Result<Vec<_>, _>>()?;
    engine.set_cold(inv.args.bool("cold"));
    let result = if names.is_empty() {
        engine.publish_all()
    } else {
        engine.publish(&names)
    };
    engine.set_cold(false);
    result?;
    Ok(Output::Text(if names.is_empty() {
        "published every distribution".to_string()
    } else {
        format!(
            "published {}",
            names
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        )
    }))
}

fn snapshot_ls(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    Output::json(&ctx.engine().snapshot_ls(inv.args.str("distribution"))?)
}

fn snapshot_create(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let (dist, name) = (inv.args.str("distribution"), inv.args.str("name"));
    ctx.writer().snapshot_create(dist, name)?;
    Ok(Output::Text(format!("created snapshot {name} of {dist}")))
}

fn snapshot_delete(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let (dist, name) = (inv.args.str("distribution"), inv.args.str("name"));
    ctx.writer().snapshot_delete(dist, name)?;
    Ok(Output::Text(format!("deleted snapshot {name} of {dist}")))
}

fn events(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    let kind = match a.opt("type") {
        None => None,
        Some(t) => Some(crate::incoming::EventKind::parse(t).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "events: type '{t}' is not REJECTED, ACCEPTED, PACKAGING, BUILDING, BUILT, INSTALLED or FAILED"
            ))
        })?),
    };
    let list = crate::incoming::events(
        ctx.state(),
        kind,
        a.opt("source"),
        a.opt("distribution"),
        a.int("since"),
    )?;
    Output::json(&list)
}

fn builds(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let list: Vec<serde_json::Value> = crate::build::queue::overview(ctx.state())?
        .into_iter()
        .filter(|(u, _)| inv.args.opt("source").is_none_or(|s| u.source == s))
        .map(|(u, b)| {
            let builds: BTreeMap<String, serde_json::Value> = b
                .into_iter()
                .map(|(arch, b)| {
                    (
                        arch.clone(),
                        json!({
                            "state": crate::build::queue::state_name(b.state),
                            "status": b.status,
                            "fail_stage": b.fail_stage,
                            "arch_all": b.arch_all,
                            "optional": b.optional,
                            "attempts": b.attempts,
                            "started": b.started,
                            "finished": b.finished,
                            "log": format!("{}/logs/{}/{arch}", ctx.url, u.id),
                        }),
                    )
                })
                .collect();
            json!({
                "upload": u.id,
                "source": u.source,
                "version": u.version,
                "distribution": u.distribution,
                "state": u.state,
                "reason": u.reason,
                "builds": builds,
            })
        })
        .collect();
    Output::json(&list)
}

fn cancel(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let id = inv.args.str("upload");
    let events = crate::build::queue::cancel(ctx.state(), id)?;
    ctx.builds.cancel(id);
    for e in events {
        ctx.announce(e);
    }
    Ok(Output::Text(format!("{id}: cancelled")))
}

fn retry(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let id = inv.args.str("upload");
    let dirs = crate::build::queue::Dirs::new(&ctx.home());
    let n = crate::build::queue::retry(ctx.state(), &dirs, id)?;
    ctx.builds.forget(id);
    ctx.builds.nudge();
    Ok(Output::Text(format!("{id}: {n} build(s) queued again")))
}

fn chroots(ctx: &Context, _: &Invocation) -> Result<Output, ApiError> {
    let all: Vec<serde_json::Value> = crate::build::chroot::all(ctx.state())?
        .into_iter()
        .map(|c| {
            let mut v = json!(c);
            v["label"] = json!(c.status().label());
            v
        })
        .collect();
    Ok(Output::Json(json!(all)))
}

fn find_chroot(ctx: &Context, id: &str) -> Result<crate::build::chroot::Chroot, ApiError> {
    Ok(crate::build::chroot::find(ctx.state(), id)?)
}

fn chroot_prepare(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    use crate::build::chroot::{Backend, Chroot, ChrootState};
    let a = &inv.args;
    let (codename, arch) = (a.str("codename"), a.str("architecture"));
    let valid =
        |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid(codename) || !valid(arch) {
        return Err(ApiError::BadRequest(format!(
            "chroot_prepare: '{codename}'/'{arch}' is not a codename and an architecture"
        )));
    }
    let backend = match a.str("backend") {
        "directory" => Backend::Directory,
        "file" => Backend::File,
        other => {
            return Err(ApiError::BadRequest(format!(
                "chroot_prepare: backend '{other}' is not directory or file"
            )));
        }
    };
    let id = format!("{codename}-{arch}");
    if let Ok(c) = find_chroot(ctx, &id) {
        if c.state == ChrootState::Preparing {
            return Err(ApiError::Conflict(format!(
                "chroot {id} is being prepared already"
            )));
        }
    }
    let mirror = match a.opt("mirror") {
        Some(m) => m.to_string(),
        None => crate::build::chroot::mirror_from_apt_sources(std::path::Path::new("/etc/apt"), codename)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "chroot_prepare: the host's apt sources name no archive for {codename}; give --mirror"
                ))
            })?,
    };
    ctx.builds
        .request(ctx.state(), Chroot::new(codename, arch, &mirror, backend))?;
    Ok(Output::Text(format!(
        "preparing chroot {id} from {mirror} in the background (see `chroots`)"
    )))
}

fn chroot_check(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let c = find_chroot(ctx, inv.args.str("chroot"))?;
    crate::build::chroot::check(&c, &ctx.home())?;
    Ok(Output::Text(format!("chroot {} checked", c.id())))
}

fn chroot_remove(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let c = find_chroot(ctx, inv.args.str("chroot"))?;
    if c.state == crate::build::chroot::ChrootState::Preparing {
        return Err(ApiError::Conflict(format!(
            "chroot {} is being prepared",
            c.id()
        )));
    }
    crate::build::chroot::remove(&c, &ctx.home())?;
    ctx.state()
        .delete::<crate::build::chroot::Chroot>(&c.id())?;
    Ok(Output::Text(format!("chroot {} removed", c.id())))
}

fn start(ctx: &Context, _: &Invocation) -> Result<Output, ApiError> {
    let was = ctx.running.swap(true, Ordering::SeqCst);
    tracing::info!("started by API");
    // Uploads that arrived during maintenance are decided now.
    ctx.process_uploads(None);
    Ok(Output::Text(
        if was { "already started" } else { "started" }.to_string(),
    ))
}

fn stop(ctx: &Context, _: &Invocation) -> Result<Output, ApiError> {
    let was = ctx.running.swap(false, Ordering::SeqCst);
    tracing::info!("stopped for maintenance by API");
    Ok(Output::Text(
        if was { "stopped" } else { "already stopped" }.to_string(),
    ))
}

fn all_users(state: &StateStore) -> Result<Vec<User>, ApiError> {
    Ok(state.all::<User>()?.into_iter().map(|(_, u)| u).collect())
}

fn uploaders(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let engine = ctx.engine();
    let repos = inv.args.list("repositories");
    let users = all_users(ctx.state())?;
    let mut out = BTreeMap::new();
    for r in engine.repositories()? {
        if repos.is_empty() || repos.contains(&r.identity) {
            let keys: Vec<serde_json::Value> = users
                .iter()
                .filter(|u| u.may_upload_to.is_empty() || u.may_upload_to.contains(&r.identity))
                .filter_map(|u| {
                    u.key_fingerprint.as_ref().map(|f| {
                        json!({
                            "user": u.name,
                            "fingerprint": f,
                            "status": u.uploader.label(),
                            "active": u.may_upload(&r.identity),
                        })
                    })
                })
                .collect();
            out.insert(
                r.identity.clone(),
                json!({
                    "allow_unauthenticated_uploads": r.allow_unauthenticated_uploads,
                    "allow_binary_uploads": r.allow_binary_uploads,
                    "uploaders": keys,
                }),
            );
        }
    }
    Output::json(&out)
}

fn set_repository(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let repo = ctx.writer().set_upload_policy(
        inv.args.str("repository"),
        inv.args.bool("allow_unauthenticated_uploads"),
        inv.args.bool("allow_binary_uploads"),
    )?;
    Output::json(&repo)
}

/// The calling user (calls at LOGIN or above always have one).
fn caller(inv: &Invocation) -> Result<&User, ApiError> {
    inv.user
        .as_ref()
        .ok_or_else(|| ApiError::Internal("authorized call without a user".to_string()))
}

fn load_user(state: &StateStore, name: &str) -> Result<User, ApiError> {
    state
        .get::<User>(name)?
        .ok_or_else(|| ApiError::NotFound(format!("No user '{name}'")))
}

fn uploader_activate(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let _token = ctx.writer();
    let state = ctx.state();
    let name = inv.args.str("name");
    let mut user = load_user(state, name)?;
    let Some(key) = user.key.clone() else {
        return Err(ApiError::BadRequest(format!(
            "uploader_activate: '{name}' has set no key (set_user_key)"
        )));
    };
    let repos = inv.args.list("repositories").to_vec();
    let known: Vec<String> = ctx
        .engine()
        .repositories()?
        .into_iter()
        .map(|r| r.identity)
        .collect();
    if let Some(bad) = repos.iter().find(|r| !known.contains(r)) {
        return Err(ApiError::NotFound(format!("No repository '{bad}'")));
    }
    // Prepare, check (the key still parses), activate.
    user.uploader.prepared();
    match crate::openpgp::Keyring::from_bytes(key.as_bytes()) {
        Ok(_) => user.uploader.checked(crate::repo::publish_time()),
        Err(e) => {
            user.uploader.failed(e.to_string());
            state.put(name, &user)?;
            return Err(ApiError::BadRequest(format!(
                "uploader_activate: the key of '{name}' is not usable: {e}"
            )));
        }
    }
    user.uploader
        .activate()
        .map_err(|r| ApiError::BadRequest(format!("uploader_activate: {r}")))?;
    user.may_upload_to = repos;
    state.put(name, &user)?;
    Output::json(
        &json!({"user": name, "status": user.uploader.label(), "may_upload_to": user.may_upload_to}),
    )
}

fn uploader_deactivate(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let _token = ctx.writer();
    let state = ctx.state();
    let name = inv.args.str("name");
    let mut user = load_user(state, name)?;
    user.uploader.deactivate();
    state.put(name, &user)?;
    Output::json(&json!({"user": name, "status": user.uploader.label()}))
}

fn set_user_key(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let _token = ctx.writer();
    let state = ctx.state();
    let text = inv.args.str("key");
    let keyring = crate::openpgp::Keyring::from_bytes(text.as_bytes())
        .map_err(|e| ApiError::BadRequest(format!("set_user_key: not a usable key: {e}")))?;
    let fingerprints = keyring.fingerprints();
    let [fingerprint] = fingerprints.as_slice() else {
        return Err(ApiError::BadRequest(format!(
            "set_user_key: give exactly one key, not {}",
            fingerprints.len()
        )));
    };
    let name = caller(inv)?.name.clone();
    let mut user = load_user(state, &name)?;
    user.key = Some(text.to_string());
    user.key_fingerprint = Some(fingerprint.clone());
    // A new key waits for staff: the uploader is Prepared, not active.
    user.uploader.changed();
    user.uploader.prepared();
    state.put(&name, &user)?;
    Ok(Output::Text(format!(
        "key {fingerprint} set for {name}; uploads signed with it are taken once staff activates it (uploader_activate)"
    )))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
struct Subscription {
    source: String,
    distribution: String,
}

/// A user's subscriptions, by user name.
impl crate::state::Record for Vec<Subscription> {
    const TABLE: &'static str = "subscriptions";
}

fn subscription_key(user: &str) -> String {
    user.to_string()
}

fn subscribe(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let _token = ctx.writer();
    let state = ctx.state();
    let user = &caller(inv)?.name;
    let wanted = Subscription {
        source: inv.args.str("source").to_string(),
        distribution: inv.args.str("distribution").to_string(),
    };
    if !wanted.distribution.is_empty() {
        ctx.engine().resolve(&wanted.distribution)?;
    }
    let mut list: Vec<Subscription> = state.get(&subscription_key(user))?.unwrap_or_default();
    let created = !list.contains(&wanted);
    if created {
        list.push(wanted.clone());
        state.put(&subscription_key(user), &list)?;
    }
    Ok(Output::Json(json!({
        "created": created,
        "source": wanted.source,
        "distribution": wanted.distribution,
    })))
}

fn unsubscribe(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let _token = ctx.writer();
    let state = ctx.state();
    let user = &caller(inv)?.name;
    let gone = Subscription {
        source: inv.args.str("source").to_string(),
        distribution: inv.args.str("distribution").to_string(),
    };
    let mut list: Vec<Subscription> = state.get(&subscription_key(user))?.unwrap_or_default();
    let before = list.len();
    list.retain(|s| s != &gone);
    let removed = if list.len() < before {
        vec![gone]
    } else {
        vec![]
    };
    state.put(&subscription_key(user), &list)?;
    Output::json(&removed)
}

fn subscriptions(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let list: Vec<Subscription> = ctx
        .state()
        .get(&subscription_key(&caller(inv)?.name))?
        .unwrap_or_default();
    Output::json(&list)
}

fn user_add(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    let level = Level::parse(a.str("level")).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "user_add: level '{}' is not login, staff or admin",
            a.str("level")
        ))
    })?;
    let generated = a.opt("password").is_none();
    let password = a
        .opt("password")
        .map_or_else(auth::new_password, str::to_string);
    let user = auth::put_user(ctx.state(), a.str("name"), level, &password)?;
    Ok(Output::Json(json!({
        "name": user.name,
        "level": user.level,
        "password": if generated { Some(password) } else { None },
    })))
}

fn user_remove(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let _token = ctx.writer();
    let state = ctx.state();
    let name = inv.args.str("name");
    if caller(inv)?.name == name {
        return Err(ApiError::Conflict(format!(
            "user_remove: you cannot remove yourself ('{name}')"
        )));
    }
    if !state.delete::<User>(name)? {
        return Err(ApiError::NotFound(format!("No user '{name}'")));
    }
    for (key, token) in auth::tokens(state)? {
        if token.user == name {
            state.delete::<Token>(&key)?;
        }
    }
    state.delete::<Vec<Subscription>>(&subscription_key(name))?;
    Ok(Output::Text(format!("removed user {name}")))
}

fn users(ctx: &Context, _: &Invocation) -> Result<Output, ApiError> {
    let list: Vec<serde_json::Value> = all_users(ctx.state())?
        .into_iter()
        .map(|u| json!({"name": u.name, "level": u.level, "key_fingerprint": u.key_fingerprint}))
        .collect();
    Output::json(&list)
}

fn token_create(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let user = caller(inv)?;
    let (secret, token) = auth::create_token(ctx.state(), &user.name, inv.args.str("label"))?;
    Ok(Output::Json(json!({
        "id": token.id,
        "user": token.user,
        "label": token.label,
        "token": secret,
    })))
}

fn visible_tokens(state: &StateStore, user: &User) -> Result<Vec<(String, Token)>, ApiError> {
    Ok(auth::tokens(state)?
        .into_iter()
        .filter(|(_, t)| user.level == Level::Admin || t.user == user.name)
        .collect())
}

fn token_ls(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let tokens: Vec<Token> = visible_tokens(ctx.state(), caller(inv)?)?
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    Output::json(&tokens)
}

fn token_revoke(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let _token = ctx.writer();
    let state = ctx.state();
    let id = inv.args.str("id");
    let Some((key, _)) = visible_tokens(state, caller(inv)?)?
        .into_iter()
        .find(|(_, t)| t.id == id)
    else {
        return Err(ApiError::NotFound(format!("No token '{id}' of yours")));
    };
    state.delete::<Token>(&key)?;
    Ok(Output::Text(format!("revoked token {id}")))
}

impl From<crate::config::ConfigError> for ApiError {
    fn from(e: crate::config::ConfigError) -> ApiError {
        use crate::config::ConfigError as C;
        match e {
            C::Repo(r) => ApiError::Repo(r),
            C::State(e) => e.into(),
            C::NotFound { .. } => ApiError::NotFound(e.to_string()),
            C::Object { .. } | C::Setup(_) => ApiError::BadRequest(e.to_string()),
        }
    }
}

/// What setup needs from the running daemon: the network, the host, the build queue.
struct DaemonEnv<'a> {
    ctx: &'a Context,
    http: crate::config::Http,
    /// The daemon's home (its settings file).
    home: std::path::PathBuf,
}

impl crate::setup::Env for DaemonEnv<'_> {
    fn fetch(&self) -> &dyn crate::config::Fetch {
        &self.http
    }
    fn now(&self) -> i64 {
        crate::repo::publish_time()
    }
    fn distro_info(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(std::path::Path::new("/usr/share/distro-info").join(file)).ok()
    }
    fn apt_archives(&self) -> Vec<String> {
        crate::setup::apt_archives(std::path::Path::new("/etc/apt"))
    }
    fn host_arch(&self) -> String {
        crate::settings::host_distribution().1
    }
    fn request_chroot(
        &mut self,
        state: &StateStore,
        chroot: crate::build::chroot::Chroot,
    ) -> Result<(), String> {
        self.ctx
            .builds
            .request(state, chroot)
            .map_err(|e| e.to_string())
    }
    fn ftp_endpoints(&self) -> (Vec<String>, Option<String>) {
        let configured = crate::settings::Settings::load_or_create(&self.home)
            .map(|s| s.ftp_endpoints)
            .unwrap_or_default();
        (configured, self.ctx.ftp.clone())
    }
    fn set_ftp_endpoints(&mut self, endpoints: &[String]) -> Result<(), String> {
        crate::settings::Settings::update(&self.home, |s| s.ftp_endpoints = endpoints.to_vec())
            .map_err(|e| e.to_string())
    }
}

fn setup(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    let list = |n: &str| a.list(n).to_vec();
    let req = crate::setup::Request {
        identity: a
            .opt("identity")
            .filter(|i| !i.is_empty())
            .map(str::to_string),
        ftp_endpoint: a
            .opt("ftp_endpoint")
            .filter(|i| !i.is_empty())
            .map(str::to_string),
        from_origins: list("from_origins"),
        preset: a
            .opt("preset")
            .filter(|p| !p.is_empty())
            .map(str::to_string),
        archives: list("archives"),
        archives_from_origins: a.bool("archives_from_origins"),
        archives_from_apt_sources: a.bool("archives_from_apt_sources"),
        sources: list("sources"),
        sources_from_origins: a.bool("sources_from_origins"),
        distributions: list("distributions"),
        distributions_from_sources: a.bool("distributions_from_sources"),
        repositories: list("repositories"),
        repositories_from_distributions: list("repositories_from_distributions"),
        chroots: list("chroots"),
        chroots_from_sources: a.bool("chroots_from_sources"),
        chroots_backend: a.str("chroots_backend").to_string(),
        update: a.bool("update"),
        pca: a.bool("pca"),
    };
    let format = a.str("format");
    if !matches!(format, "text" | "json") {
        return Err(ApiError::BadRequest(format!(
            "setup: format '{format}' is not text or json"
        )));
    }
    let engine = ctx.writer();
    let mut env = DaemonEnv {
        ctx,
        http: crate::config::Http::default(),
        home: engine.home().to_path_buf(),
    };
    let report = crate::setup::run(&engine, ctx.state(), &req, &mut env)?;
    match format {
        "json" => Output::json(&report),
        _ => Ok(Output::Text(report.text())),
    }
}

fn config_objects(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    use crate::config::{AptKey, Archive, KINDS, Source};
    let kind = inv.args.str("kind");
    if !kind.is_empty() && !KINDS.contains(&kind) {
        return Err(ApiError::BadRequest(format!(
            "config_objects: kind '{kind}' is not one of {}",
            KINDS.join(", ")
        )));
    }
    let engine = ctx.engine();
    let with_label = |status: &crate::status::Status, v: serde_json::Value| {
        let mut v = v;
        v["label"] = json!(status.label());
        v
    };
    let mut out = serde_json::Map::new();
    if kind.is_empty() || kind == "archive" {
        let all: Vec<Archive> = ctx
            .state()
            .all::<Archive>()?
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        out.insert("archive".into(), json!(all));
    }
    if kind.is_empty() || kind == "aptkey" {
        let all: Vec<serde_json::Value> = ctx
            .state()
            .all::<AptKey>()?
            .into_iter()
            .map(|(_, k)| {
                let mut k = k;
                k.key.clear();
                with_label(&k.status, json!(k))
            })
            .collect();
        out.insert("aptkey".into(), json!(all));
    }
    if kind.is_empty() || kind == "source" {
        let all: Vec<serde_json::Value> = ctx
            .state()
            .all::<Source>()?
            .into_iter()
            .map(|(_, s)| {
                let mut v = with_label(&s.status, json!(s));
                v["codeversion"] = json!(s.codeversion());
                v
            })
            .collect();
        out.insert("source".into(), json!(all));
    }
    if kind.is_empty() || kind == "repository" {
        let all: Vec<serde_json::Value> = engine
            .repositories()?
            .into_iter()
            .map(|r| with_label(&r.status, json!(r)))
            .collect();
        out.insert("repository".into(), json!(all));
    }
    Ok(Output::Json(serde_json::Value::Object(out)))
}

/// The status actions on a chroot: prepare (make it again, in the background), check
/// (update and upgrade it), activate, deactivate (no builds start in it), remove; pca
/// prepares it and it is active once ready.
fn chroot_action(ctx: &Context, id: &str, action: &str) -> Result<Output, ApiError> {
    use crate::build::chroot::ChrootState;
    let mut c = find_chroot(ctx, id)?;
    let key = c.id();
    let busy = || ApiError::Conflict(format!("chroot {} is being prepared", c.id()));
    match action {
        "prepare" | "pca" => {
            if c.state == ChrootState::Preparing {
                return Err(busy());
            }
            c.deactivated = false;
            ctx.builds.request(ctx.state(), c.clone())?;
            c = find_chroot(ctx, id)?;
        }
        "check" | "pc" => {
            if c.state == ChrootState::Preparing {
                return Err(busy());
            }
            let result = crate::build::chroot::check(&c, &ctx.home());
            c.changed = crate::repo::publish_time();
            match &result {
                Ok(()) => {
                    c.state = ChrootState::Ready;
                    c.message = "checked".to_string();
                }
                Err(e) => {
                    c.state = ChrootState::Failed;
                    c.message = e.to_string();
                }
            }
            ctx.state().put(&key, &c)?;
            result?;
        }
        "activate" => {
            if c.state != ChrootState::Ready {
                return Err(ApiError::BadRequest(format!(
                    "chroot {}: prepare and check it first ({})",
                    c.id(),
                    c.status().label()
                )));
            }
            c.deactivated = false;
            ctx.state().put(&key, &c)?;
            ctx.builds.nudge();
        }
        "deactivate" => {
            c.deactivated = true;
            ctx.state().put(&key, &c)?;
        }
        "remove" => {
            if c.state == ChrootState::Preparing {
                return Err(busy());
            }
            crate::build::chroot::remove(&c, &ctx.home())?;
            ctx.state().delete::<crate::build::chroot::Chroot>(&key)?;
            return Output::json(&json!({"label": "Removed"}));
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "config_action: unknown action '{other}' (known: {})",
                crate::config::ACTIONS
            )));
        }
    }
    let status = c.status();
    Output::json(&json!({"status": status, "label": status.label()}))
}

fn config_action(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    if a.str("kind") == "chroot" {
        return chroot_action(ctx, a.str("id"), a.str("action"));
    }
    let status = crate::config::act(
        &ctx.writer(),
        ctx.state(),
        a.str("kind"),
        a.str("id"),
        a.str("action"),
        &crate::config::Http::default(),
        crate::repo::publish_time(),
    )?;
    Output::json(&json!({"status": status, "label": status.label()}))
}

fn config_set(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    let status = crate::config::set(
        ctx.state(),
        a.str("kind"),
        a.str("id"),
        a.str("field"),
        a.list("value"),
    )?;
    Output::json(&json!({"status": status, "label": status.label()}))
}

impl From<crate::port::PortError> for ApiError {
    fn from(e: crate::port::PortError) -> ApiError {
        use crate::port::PortError as P;
        match e {
            P::Repo(r) => ApiError::Repo(r),
            P::State(e) => e.into(),
            P::Refused(_) | P::Incoming { .. } => ApiError::BadRequest(e.to_string()),
            P::Command { .. } | P::Io { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

fn keyring_packages(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    let engine = ctx.writer();
    let dput = dput_sections(&engine.instance().identity, &ctx.dput_incoming(None));
    let uploads = crate::keyring_package::upload_all(
        &engine,
        ctx.state(),
        &ctx.incoming,
        &ctx.url,
        &dput,
        a.list("distributions"),
        !a.bool("without_migration"),
        crate::repo::publish_time(),
    )?;
    drop(engine);
    for u in &uploads {
        ctx.process_uploads(Some(&u.changes));
    }
    Output::json(&uploads)
}

fn port_ext(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    let ported = crate::port::port_ext(
        &ctx.writer(),
        ctx.state(),
        &ctx.incoming,
        &crate::config::Http::default(),
        a.str("dsc_url"),
        a.str("to_distribution"),
        a.list("options"),
        a.bool("allow_unauthenticated"),
        crate::repo::publish_time(),
    )?;
    ctx.process_uploads(Some(&ported.changes));
    Output::json(&ported)
}

fn layouts(ctx: &Context, _: &Invocation) -> Result<Output, ApiError> {
    Output::json(&ctx.engine().layouts()?)
}

fn layout_set(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let layout: crate::repo::layout::Layout = serde_json::from_str(inv.args.str("layout"))
        .map_err(|e| ApiError::BadRequest(format!("layout_set: not a layout: {e}")))?;
    ctx.writer().set_layout(&layout)?;
    Ok(Output::Text(format!("layout '{}' set", layout.name)))
}

fn distributions(ctx: &Context, _: &Invocation) -> Result<Output, ApiError> {
    let all = ctx.engine().distributions()?;
    Output::json(&all)
}

fn distribution_set(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    let engine = ctx.writer();
    let codename = a.str("codename");
    let mut d = engine
        .find_distribution(codename)?
        .ok_or_else(|| ApiError::NotFound(format!("No distribution '{codename}'")))?;
    let value = a.list("value");
    let field = a.str("field");
    let bad = |why: String| ApiError::BadRequest(format!("distribution_set: {why}"));
    let text = || match value {
        [] => Ok(String::new()),
        [t] => Ok(t.replace("\r\n", "\n")),
        _ => Err(bad(format!("{field} takes one text (or none to clear it)"))),
    };
    let words = || {
        let word = |w: &&String| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"=._+-:,".contains(&b))
        };
        match value.iter().find(|w| !word(w)) {
            Some(w) => Err(bad(format!("'{w}' is not a word of [A-Za-z0-9=._+-:,]"))),
            None => Ok(value.to_vec()),
        }
    };
    match field {
        "deb_build_options" => d.build.deb_build_options = words()?,
        "deb_build_profiles" => d.build.deb_build_profiles = words()?,
        "lintian_mode" => {
            let mode = words()?.first().cloned().unwrap_or_default();
            if value.len() > 1
                || (!mode.is_empty() && crate::changelog::QaMode::parse(&mode).is_none())
            {
                return Err(bad(format!(
                    "lintian_mode '{}' is not disabled, ignore, errfail or warnfail",
                    value.join(" ")
                )));
            }
            d.build.lintian_mode = mode;
        }
        "add_depends" => {
            if let Some(v) = value
                .iter()
                .find(|v| v.trim().is_empty() || v.contains(',') || v.chars().any(char::is_control))
            {
                return Err(bad(format!(
                    "add_depends '{v}' is not one dependency (give one value per dependency)"
                )));
            }
            d.build.add_depends = value.iter().map(|v| v.trim().to_string()).collect();
        }
        "chroot_setup_script" => {
            let script = text()?;
            if !script.is_empty() && !script.starts_with("#!") {
                return Err(bad(
                    "chroot_setup_script must start with a '#!' line".to_string()
                ));
            }
            d.build.chroot_setup_script = script;
        }
        "sbuildrc_snippet" => d.build.sbuildrc_snippet = text()?,
        other => {
            return Err(bad(format!(
                "'{other}' cannot be set (settable: deb_build_options, deb_build_profiles, lintian_mode, add_depends, chroot_setup_script, sbuildrc_snippet; setup sets the rest)"
            )));
        }
    }
    engine.put_distribution(&d)?;
    Output::json(&d)
}

fn port(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    let ported = crate::port::port(
        &ctx.writer(),
        &ctx.incoming,
        &crate::port::Request {
            source: a.str("source"),
            from: a.str("from_distribution"),
            to: a.str("to_distribution"),
            version: a.opt("version").filter(|v| !v.is_empty()),
            options: a.list("options"),
        },
        crate::repo::publish_time(),
    )?;
    ctx.process_uploads(Some(&ported.changes));
    Output::json(&ported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_arguments_declared_once() {
        let mut names: Vec<&str> = CALLS.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CALLS.len());
        for c in CALLS {
            let mut args: Vec<&str> = c.args.iter().map(|a| a.name).collect();
            args.sort();
            args.dedup();
            assert_eq!(args.len(), c.args.len(), "{}", c.name);
            // Defaults must parse as their kind.
            c.parse_args(
                &c.args
                    .iter()
                    .filter(|a| a.required)
                    .map(|a| (a.name.to_string(), "x".to_string()))
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        }
    }

    #[test]
    fn arguments_are_typed() {
        let c = find("sources_list").unwrap();
        let raw = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let a = c.parse_args(&raw("rollbacks", "2")).unwrap();
        assert_eq!(a.int("rollbacks"), 2);
        assert_eq!(a.list("types"), ["deb"]);
        let e = c.parse_args(&raw("rollbacks", "two")).unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(
            e.to_string(),
            "sources_list: argument 'rollbacks' must be an integer, not 'two'"
        );
        let e = c.parse_args(&raw("with_comment", "maybe")).unwrap_err();
        assert!(e.to_string().contains("with_comment"), "{e}");
        let e = c.parse_args(&raw("colour", "red")).unwrap_err();
        assert!(e.to_string().contains("unknown argument 'colour'"), "{e}");
        let e = find("ls").unwrap().parse_args(&[]).unwrap_err();
        assert!(e.to_string().contains("missing argument 'source'"), "{e}");
    }

    #[test]
    fn deb822_option_names() {
        assert_eq!(deb822_option("arch"), "Architectures");
        assert_eq!(deb822_option("check-valid-until"), "Check-Valid-Until");
    }

    #[test]
    fn dput_section_names_the_host() {
        let s = dput_sections(
            "box",
            &Incoming {
                url: "http://box.example.org:8066",
                https: None,
                ftp: Some("box.example.org:8067"),
                login: "anonymous",
            },
        );
        assert!(s.starts_with("[mbd-box]\n"));
        assert!(s.contains("fqdn     = box.example.org:8066\n"));
        assert!(s.contains("\n[mbd-box-ftp]\nmethod   = ftp\nfqdn     = box.example.org:8067\n"));
        assert!(!s.contains("https"));
    }
}
