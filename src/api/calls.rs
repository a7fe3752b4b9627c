//! The call registry: each call is declared once in [`CALLS`]; its handler lives in
//! `handlers/`, one file per domain.

use super::handlers::builds::*;
use super::handlers::config::*;
use super::handlers::crontab::*;
use super::handlers::packages::*;
use super::handlers::remotes::{handshake, wake};
use super::handlers::status::*;
pub use super::handlers::status::{Incoming, authority, dput_sections};
use super::handlers::users::*;
use super::{Arg, Call, Kind, Level};

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
        name: "handshake",
        level: Level::None,
        changes: false,
        running: false,
        doc: "A peer's check: answers a message clear-signed by an active or auto-reactivate remote's key with our own clear-signed answer; anything else is refused (400).",
        args: &[req(
            "signed_message",
            Kind::Str,
            "a clear-signed message from a remote",
        )],
        run: handshake,
    },
    Call {
        name: "wake",
        level: Level::Staff,
        changes: true,
        running: false,
        doc: "Wake a remote: run its wake_command until its status answers as running (at most --attempts times, --sleep seconds apart); answers its status.",
        args: &[
            req("remote", Kind::Str, "the remote's URL"),
            arg("sleep", Kind::Int, "5", "seconds between attempts"),
            arg("attempts", Kind::Int, "3", "how often to try"),
        ],
        run: wake,
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
        name: "debmirror",
        level: Level::Admin,
        changes: false,
        running: false,
        doc: "Export distributions as a standalone, signed mirror any static web server can serve (as Debian's debmirror makes one): dists with the signed Release files as published and the selected indices with their by-hash copies, and exactly the pool files they reference. Running it again copies only what changed and removes what is no longer referenced. Works while the daemon is stopped (archiving before retiring a codename).",
        args: &[
            REPOSITORIES,
            CODENAMES,
            arg("suites", Kind::List, "", "suite names (default: all)"),
            arg(
                "rollbacks",
                Kind::Int,
                "0",
                "rollback distributions per suite: 0 none, -1 all",
            ),
            arg(
                "architectures",
                Kind::List,
                "",
                "architectures (default: all; 'all' is always in)",
            ),
            arg("components", Kind::List, "", "components (default: all)"),
            arg(
                "destination",
                Kind::Str,
                "",
                "an absolute directory; {} is the repository identity (default: <home>/debmirror/{})",
            ),
        ],
        run: debmirror,
    },
    Call {
        name: "retire_codename",
        level: Level::Admin,
        changes: true,
        running: false,
        doc: "Retire a codename from a repository (archive it with debmirror first): its distributions, rollbacks and snapshots leave the repository and its published tree, pool files only they used are freed, the other distributions stay as they are; uploads for it are refused from then on. As the seed's workflow: stop, debmirror, retire_codename, config_action repository ID pca, start.",
        args: &[
            req("repository", Kind::Str, "repository identity"),
            req("codename", Kind::Str, "the codename to retire"),
        ],
        run: retire_codename,
    },
    Call {
        name: "debdiff",
        level: Level::None,
        changes: false,
        running: false,
        doc: "Debian's debdiff between two versions of a source in the pool (any repository or distribution, rollbacks included).",
        args: &[
            req("source", Kind::Str, "source package"),
            req("old", Kind::Str, "the older version"),
            req("new", Kind::Str, "the newer version"),
        ],
        run: debdiff,
    },
    Call {
        name: "webhooks",
        level: Level::Staff,
        changes: false,
        running: false,
        doc: "Webhook deliveries not made yet: waiting for their next try, or failed for good (after 12 tries), each with its attempts and last error.",
        args: &[],
        run: webhooks,
    },
    Call {
        name: "test_packages",
        level: Level::Admin,
        changes: true,
        running: true,
        doc: "Upload the test packages (mbd-test-archall, mbd-test-cpp, mbd-test-ftbfs), made from templates and signed by the archive key, through the normal path; with --with-check, wait and fail unless archall and cpp are INSTALLED and ftbfs FAILED.",
        args: &[
            arg("sources", Kind::List, "", "templates (default: all three)"),
            arg(
                "distributions",
                Kind::List,
                "",
                "distributions (default: every experimental distribution of every active repository)",
            ),
            arg(
                "with_check",
                Kind::Bool,
                "false",
                "wait for the results and check them",
            ),
        ],
        run: test_packages,
    },
    Call {
        name: "crontab",
        level: Level::None,
        changes: false,
        running: false,
        doc: "The internal crontab's jobs: schedule (UTC), next run, last run and its last 20 result lines.",
        args: &[],
        run: crontab,
    },
    Call {
        name: "cronjob",
        level: Level::Admin,
        changes: true,
        running: false,
        doc: "Run one crontab job now; answers whether it succeeded and its result line.",
        args: &[req(
            "id",
            Kind::Str,
            "the job, e.g. snapshots_weekly (see `crontab`)",
        )],
        run: cronjob,
    },
    Call {
        name: "remake_chroots",
        level: Level::Admin,
        changes: true,
        running: false,
        doc: "Make the given chroots (codename-arch; all when none is given) again from scratch, in the background (see `chroots`); each answers preparing, or why not.",
        args: &[arg(
            "chroots",
            Kind::List,
            "",
            "chroot ids, e.g. bookworm-amd64 (default: all)",
        )],
        run: remake_chroots,
    },
    Call {
        name: "events",
        level: Level::None,
        changes: false,
        running: false,
        doc: "Decisions on uploads (REJECTED with the reason, ACCEPTED, PACKAGING, INSTALLED, FAILED) and repository operations (MIGRATED, REMOVED), oldest first.",
        args: &[
            arg(
                "type",
                Kind::Str,
                "",
                "only this type: REJECTED, ACCEPTED, PACKAGING, BUILDING, BUILT, INSTALLED, FAILED, MIGRATED or REMOVED",
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
        name: "set_user_email",
        level: Level::Login,
        changes: true,
        running: false,
        doc: "Set the address mail for your subscriptions goes to (empty: none).",
        args: &[req("email", Kind::Str, "e.g. dev@example.org")],
        run: set_user_email,
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
        doc: "Create (or re-create) a build chroot with mmdebstrap in the background; `chroots` shows its progress. Needs root or the rule `mbd sudoers` prints (the chroot helper).",
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
                "one distribution per source codename, on the host's native architectures (amd64+i386 on amd64, when the kernel runs i386)",
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
                "remotes",
                Kind::List,
                "",
                "peer instances ([http://]<host>:<port>) to share builds with",
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
        doc: "Archives, apt keys, sources, repositories and remotes with their status (Removed, Prepared (-*xA), Active) and what their last check found.",
        args: &[arg(
            "kind",
            Kind::Str,
            "",
            "archive, aptkey, source, repository or remote (default: all)",
        )],
        run: config_objects,
    },
    Call {
        name: "config_action",
        level: Level::Admin,
        changes: true,
        running: false,
        doc: "Run a status action on an apt key, a source, a repository, a remote or a chroot: prepare, check, activate, deactivate, remove, pc or pca. A remote's prepare fetches its key, its check polls its status and shakes hands (it must list us and know our key); activating checks first, and a remote that fails it waits as auto-reactivate (A). A source's keys get the action first; a failed check leaves it Failed with the reason. A repository's prepare publishes it and its check verifies the published tree as apt would; only an active repository takes uploads (remove keeps its packages). A deactivated chroot starts no builds.",
        args: &[
            req(
                "kind",
                Kind::Str,
                "aptkey, source, repository, remote or chroot",
            ),
            req(
                "id",
                Kind::Str,
                "key id, source codename, repository identity, remote URL or <codename>-<arch>",
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
        doc: "Edit an apt key (key: armored text), a source (apt_keys, codeversion_override, check_valid_until, extra_identifiers as k=v lists, remove_from_component) or a remote (wake_command); the object is marked changed and must be prepared again.",
        args: &[
            req("kind", Kind::Str, "aptkey, source or remote"),
            req("id", Kind::Str, "key id, source codename or remote URL"),
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
        doc: "Set a distribution's build options: optional_architectures (architectures whose failure does not fail an upload; the first mandatory one builds Architecture: all), deb_build_options and deb_build_profiles (words), lintian_mode and autopkgtest_mode (disabled, ignore, errfail, warnfail; empty: the daemon's), build_dep_resolver (aptitude, the default, or apt), add_depends (one dependency per value), chroot_setup_script (a script starting with #!, run in the chroot before build-dependencies are installed), sbuildrc_snippet (Perl for the build's .sbuildrc; %LIBDIR% is a directory kept per codename and architecture). Uploads' options add to or override them.",
        args: &[
            req("codename", Kind::Str, "the distribution's codename"),
            req(
                "field",
                Kind::Str,
                "optional_architectures, deb_build_options, deb_build_profiles, lintian_mode, autopkgtest_mode, build_dep_resolver, add_depends, chroot_setup_script or sbuildrc_snippet",
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
