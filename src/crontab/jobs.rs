//! The bodies of the crontab's jobs: each calls its domain and returns a one-line summary
//! (what it did, what it freed) or why it failed.

use super::Host;
use crate::files::tree_size;
use crate::settings::Retention;
use std::path::Path;

const DAY: i64 = 86_400;

/// Runs the job `id` (one of [`super::JOBS`]) at `now`.
pub(super) fn run(id: &str, host: &dyn Host, r: &Retention, now: i64) -> Result<String, String> {
    match id {
        "expire_builds" => expire_builds(host, r, now),
        "expire_events" => expire_events(host, r, now),
        "snapshots_weekly" => snapshots(host, "WEEKLY_", r.snapshots_weekly_weeks, now),
        "snapshots_monthly" => snapshots(host, "MONTHLY_", r.snapshots_monthly_weeks, now),
        "snapshots_yearly" => snapshots(host, "YEARLY_", r.snapshots_yearly_weeks, now),
        "setup_inspect" => setup_inspect(host, now),
        "chroot_check" => chroot_check(host),
        "retry_results" => retry_results(host, now),
        other => Err(format!("job '{other}' has no body")),
    }
}

/// Results remotes have not taken yet are due now.
fn retry_results(host: &dyn Host, now: i64) -> Result<String, String> {
    let n = crate::remote::builds::retry_all(host.state(), now).map_err(|e| e.to_string())?;
    host.wake_result_sender();
    Ok(match n {
        0 => "no results waiting to be sent".to_string(),
        n => format!("{n} results waiting to be sent are due again"),
    })
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn days(d: u64) -> i64 {
    i64::try_from(d)
        .unwrap_or(i64::MAX / DAY)
        .saturating_mul(DAY)
}

/// Ended uploads past their age, with their builds, logs and build directories.
fn expire_builds(host: &dyn Host, r: &Retention, now: i64) -> Result<String, String> {
    let dirs = crate::build::queue::Dirs::new(&host.home());
    let size = || tree_size(&dirs.builds) + tree_size(&dirs.queue);
    let before = size();
    let gone = {
        // Not while the worker changes the same records.
        let _token = host.write_token();
        crate::build::queue::prune_uploads(
            host.state(),
            &dirs,
            now.saturating_sub(days(r.uploads_days)),
            r.uploads_keep,
        )
    }
    .map_err(|e| e.to_string())?;
    Ok(format!(
        "{gone} uploads removed with their builds and logs (older than {} days, newest {} kept); {} freed",
        r.uploads_days,
        r.uploads_keep,
        megabytes(before.saturating_sub(size()))
    ))
}

/// Events past their age, with their files.
fn expire_events(host: &dyn Host, r: &Retention, now: i64) -> Result<String, String> {
    let home = host.home();
    let dir = home.join("var/events");
    let before = tree_size(&dir);
    let gone = crate::incoming::prune_events(
        host.state(),
        &home,
        now.saturating_sub(days(r.events_days)),
        r.events_keep,
    )
    .map_err(|e| e.to_string())?;
    Ok(format!(
        "{gone} events removed (older than {} days, newest {} kept); {} freed",
        r.events_days,
        r.events_keep,
        megabytes(before.saturating_sub(tree_size(&dir)))
    ))
}

/// The stable-like distributions (not experimental, migrating nowhere) of every active
/// repository.
fn stable_like(engine: &crate::repo::Engine) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for repo in engine.repositories().map_err(|e| e.to_string())? {
        if !repo.status.is_active() {
            continue;
        }
        let layout = engine.layout(&repo.layout).map_err(|e| e.to_string())?;
        for suite in layout
            .suites
            .iter()
            .filter(|s| !s.experimental && s.migrates_to.is_none())
        {
            for codename in &repo.codenames {
                out.push(format!("{codename}-{}-{}", repo.identity, suite.name));
            }
        }
    }
    Ok(out)
}

/// `<prefix><date>` snapshots of the stable-like distributions; those of the same prefix
/// that are `keep_weeks` old or older go.
fn snapshots(host: &dyn Host, prefix: &str, keep_weeks: u64, now: i64) -> Result<String, String> {
    let engine = host.engine();
    let date = |t: i64| crate::repo::release::civil_date(t);
    let name = format!("{prefix}{}", date(now));
    let expired = date(now.saturating_sub(days(keep_weeks.saturating_mul(7))));
    let (mut made, mut gone, mut errors) = (0, Vec::new(), Vec::new());
    let dists = stable_like(engine)?;
    for dist in &dists {
        let _token = host.write_token();
        let existing = engine.snapshot_ls(dist).map_err(|e| e.to_string())?;
        if !existing.contains(&name) {
            match engine.snapshot_create(dist, &name) {
                Ok(()) => made += 1,
                Err(e) => errors.push(format!("{dist}: {e}")),
            }
        }
        let old = existing.iter().filter(|n| {
            n.strip_prefix(prefix)
                .is_some_and(|d| d.len() == 10 && d <= expired.as_str())
        });
        for old in old {
            match engine.snapshot_delete(dist, old) {
                Ok(()) => gone.push(format!("{dist}/{old}")),
                Err(e) => errors.push(format!("{dist}: {e}")),
            }
        }
    }
    let summary = format!(
        "{name} created for {made} of {} distributions; {} deleted as {keep_weeks} weeks old{}",
        dists.len(),
        gone.len(),
        if gone.is_empty() {
            String::new()
        } else {
            format!(" ({})", gone.join(", "))
        }
    );
    match errors.is_empty() {
        true => Ok(summary),
        false => Err(format!("{summary}; {}", errors.join("; "))),
    }
}

/// `setup` without update or pca; the report goes to `var/log/setup-inspect.txt`.
fn setup_inspect(host: &dyn Host, now: i64) -> Result<String, String> {
    let report = host.inspect_setup()?;
    let path = super::inspection_report(&host.home());
    let text = format!(
        "Setup inspection of {}\n\n{}",
        super::utc(now),
        report.text()
    );
    write_atomically(&path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    let verdict = ["ok", "notable", "warnings", "errors"][usize::from(report.severity.min(3))];
    let summary = format!(
        "{} objects, severity {} ({verdict}); report in var/log/setup-inspect.txt",
        report.entries.len(),
        report.severity
    );
    match report.severity {
        3 => Err(summary),
        _ => Ok(summary),
    }
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Checks every chroot that is neither being prepared nor deactivated.
fn chroot_check(host: &dyn Host) -> Result<String, String> {
    use crate::build::chroot::{self, ChrootState};
    let home = host.home();
    let all = chroot::all(host.state()).map_err(|e| e.to_string())?;
    let (mut ready, mut failed) = (0, Vec::new());
    for c in all
        .into_iter()
        .filter(|c| c.state != ChrootState::Preparing && !c.deactivated)
    {
        match chroot::check_and_record(host.state(), &home, c.clone()) {
            Ok(()) => ready += 1,
            Err(e) => failed.push(format!("{}: {e}", c.id())),
        }
    }
    let summary = format!("{} chroots checked: {ready} ready", ready + failed.len());
    match failed.is_empty() {
        true => Ok(summary),
        false => Err(format!(
            "{summary}, {} failed ({})",
            failed.len(),
            failed.join("; ")
        )),
    }
}
