//! Handlers of the calls on packages: listing, migration, removal, inclusion, publishing, snapshots, events, ports and keyring packages.

use super::status::dput_sections;
use crate::api::{ApiError, Context, Invocation, Output};
use crate::incoming::EventKind;
use std::collections::BTreeMap;

/// Keeps the entries of the requested repositories, codenames and version.
pub(crate) fn filter_listing<E>(
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

pub(crate) fn ls(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let listing = ctx.engine().ls(inv.args.str("source"))?;
    Output::json(&filter_listing(listing, inv, |e| e.version.as_deref()))
}

pub(crate) fn show(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let listing = ctx.engine().show(inv.args.str("source"))?;
    Output::json(&filter_listing(listing, inv, |e| e.version.as_deref()))
}

/// The version of `source` in the distribution `dist` (empty if it is not there).
fn version_in(ctx: &Context, source: &str, dist: &str) -> String {
    let ls = ctx.engine().ls(source).unwrap_or_default();
    ls.values()
        .find_map(|dists| dists.get(dist).and_then(|e| e.version.clone()))
        .unwrap_or_default()
}

/// Records and announces what an operation did (MIGRATED, REMOVED events).
fn announce_operation(
    ctx: &Context,
    kind: EventKind,
    source: &str,
    version: &str,
    dist: &str,
    reason: String,
) {
    match crate::incoming::record_operation(ctx.state(), kind, source, version, dist, reason) {
        Ok(e) => ctx.announce(e),
        Err(e) => tracing::error!(error = %e, %source, %dist, "recording an operation's event"),
    }
}

pub(crate) fn migrate(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    let (source, from) = (a.str("source"), a.str("distribution"));
    let targets = ctx
        .writer()
        .migrate(source, from, a.bool("full"), a.opt("version"))?;
    for to in &targets {
        let version = version_in(ctx, source, to);
        announce_operation(
            ctx,
            EventKind::Migrated,
            source,
            &version,
            to,
            format!("migrated from {from}"),
        );
    }
    Output::json(&targets)
}

pub(crate) fn remove(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    let (source, dist) = (a.str("source"), a.str("distribution"));
    let version = a
        .opt("version")
        .filter(|v| !v.is_empty())
        .map_or_else(|| version_in(ctx, source, dist), str::to_string);
    ctx.writer()
        .remove(source, dist, a.bool("without_rollback"), a.opt("version"))?;
    announce_operation(
        ctx,
        EventKind::Removed,
        source,
        &version,
        dist,
        format!("removed from {dist}"),
    );
    Ok(Output::Text(format!("removed {source} from {dist}")))
}

pub(crate) fn include(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
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
    // Reading and hashing on the reader; only putting them in takes the token.
    let staged = ctx.engine().stage(inv.args.str("distribution"), &files)?;
    let included = ctx.writer().include_staged(staged)?;
    Output::json(&included)
}

pub(crate) fn publish(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
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

pub(crate) fn snapshot_ls(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    Output::json(&ctx.engine().snapshot_ls(inv.args.str("distribution"))?)
}

pub(crate) fn snapshot_create(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let (dist, name) = (inv.args.str("distribution"), inv.args.str("name"));
    ctx.writer().snapshot_create(dist, name)?;
    Ok(Output::Text(format!("created snapshot {name} of {dist}")))
}

pub(crate) fn snapshot_delete(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let (dist, name) = (inv.args.str("distribution"), inv.args.str("name"));
    ctx.writer().snapshot_delete(dist, name)?;
    Ok(Output::Text(format!("deleted snapshot {name} of {dist}")))
}

pub(crate) fn events(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
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

pub(crate) fn keyring_packages(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    let engine = ctx.engine();
    let dput = dput_sections(&engine.instance().identity, &ctx.dput_incoming(None));
    // Building the packages runs on the reader; only what to do after installing them is a
    // read-modify-write of the state store.
    let uploads = crate::keyring_package::upload_all(
        engine,
        &ctx.incoming,
        &ctx.url,
        &dput,
        a.list("distributions"),
        crate::repo::publish_time(),
    )?;
    if !a.bool("without_migration") {
        let _token = ctx.writer();
        crate::keyring_package::migrate_when_installed(ctx.state(), &uploads)?;
    }
    for u in &uploads {
        ctx.process_uploads(Some(&u.changes));
    }
    Output::json(&uploads)
}

/// How long `test_packages --with-check` waits for the builds.
const TEST_PACKAGES_WAIT: std::time::Duration = std::time::Duration::from_secs(3 * 3600);

pub(crate) fn test_packages(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    // Making the packages runs on the reader: it writes only to incoming.
    let uploads = crate::test_packages::upload_all(
        ctx.engine(),
        &ctx.incoming,
        a.list("sources"),
        a.list("distributions"),
        // The wall clock, not SOURCE_DATE_EPOCH: each run needs versions of its own.
        crate::repo::wall_clock(),
    )?;
    for u in &uploads {
        ctx.process_uploads(Some(&u.changes));
    }
    if !a.bool("with_check") {
        return Output::json(&uploads);
    }
    let started = std::time::Instant::now();
    let mut results = Vec::new();
    for u in &uploads {
        let event = loop {
            if let Some(e) = crate::test_packages::outcome(ctx.state(), u)? {
                break e;
            }
            if started.elapsed() > TEST_PACKAGES_WAIT {
                return Err(ApiError::Unavailable(format!(
                    "test_packages: {} {} has no result after {} s",
                    u.source,
                    u.version,
                    TEST_PACKAGES_WAIT.as_secs()
                )));
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        };
        let ok = crate::test_packages::as_expected(&u.source, event.kind);
        results.push((u, event, ok));
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, _, ok)| !ok)
        .map(|(u, e, _)| format!("{} {}: {:?} ({})", u.source, u.version, e.kind, e.reason))
        .collect();
    if !failed.is_empty() {
        return Err(ApiError::Conflict(format!(
            "test_packages: not as expected (archall and cpp INSTALLED, ftbfs FAILED): {}",
            failed.join("; ")
        )));
    }
    Output::json(
        &results
            .iter()
            .map(|(u, e, _)| {
                serde_json::json!({"source": u.source, "version": u.version, "distribution": u.distribution, "result": e.kind})
            })
            .collect::<Vec<_>>(),
    )
}

pub(crate) fn port_ext(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    // Fetching and dpkg-source run on the reader: a port writes only to incoming.
    let timeout = std::time::Duration::from_secs(15);
    let http = if ctx.fetch_from_private_networks {
        crate::config::Http::new(timeout)
    } else {
        crate::config::Http::public_only(timeout)
    };
    let ported = crate::port::port_ext(
        ctx.engine(),
        ctx.state(),
        &ctx.incoming,
        &http,
        a.str("dsc_url"),
        a.str("to_distribution"),
        a.list("options"),
        a.bool("allow_unauthenticated"),
        crate::repo::publish_time(),
    )?;
    ctx.process_uploads(Some(&ported.changes));
    Output::json(&ported)
}

pub(crate) fn port(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    let ported = crate::port::port(
        ctx.engine(),
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

pub(crate) fn debmirror(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let a = &inv.args;
    let destination = match a.str("destination") {
        "" => ctx.home().join("debmirror/{}").display().to_string(),
        d if std::path::Path::new(d).is_absolute() => d.to_string(),
        d => {
            return Err(ApiError::BadRequest(format!(
                "debmirror: destination '{d}' is not an absolute path"
            )));
        }
    };
    let selection = crate::repo::mirror::Selection {
        repositories: a.list("repositories").to_vec(),
        codenames: a.list("codenames").to_vec(),
        suites: a.list("suites").to_vec(),
        rollbacks: a.int("rollbacks"),
        architectures: a.list("architectures").to_vec(),
        components: a.list("components").to_vec(),
        destination,
    };
    Output::json(&ctx.engine().debmirror(&selection)?)
}

pub(crate) fn retire_codename(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    let (repository, codename) = (inv.args.str("repository"), inv.args.str("codename"));
    let removed = ctx.writer().retire_codename(repository, codename)?;
    Output::json(&serde_json::json!({
        "repository": repository,
        "codename": codename,
        "removed": removed,
    }))
}

/// debdiff runs at most this many times at once (anyone may call it; each unpacks two
/// sources).
const DEBDIFF_AT_ONCE: usize = 2;

pub(crate) fn debdiff(ctx: &Context, inv: &Invocation) -> Result<Output, ApiError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static RUNNING: AtomicUsize = AtomicUsize::new(0);
    struct Slot;
    impl Drop for Slot {
        fn drop(&mut self) {
            RUNNING.fetch_sub(1, Ordering::SeqCst);
        }
    }
    if RUNNING.fetch_add(1, Ordering::SeqCst) >= DEBDIFF_AT_ONCE {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        return Err(ApiError::Unavailable(format!(
            "debdiff: {DEBDIFF_AT_ONCE} are running; try again shortly"
        )));
    }
    let _slot = Slot;
    let a = &inv.args;
    Ok(Output::Text(ctx.engine().debdiff(
        a.str("source"),
        a.str("old"),
        a.str("new"),
    )?))
}
