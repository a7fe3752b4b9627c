//! The daemon's timers: deciding uploads that waited (at start, after maintenance), removing
//! orphaned files from incoming, the home's disk usage (at start, then hourly), and the
//! internal crontab (every [`CRON_TICK`], its due jobs one after another), and the webhook
//! deliveries and mail (a thread each). Each round runs off the async runtime; a round that panics is logged, counted in `mbd_task_panics_total`,
//! and the next round runs as usual.

use crate::api::Context;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often the disk usage is measured.
const DISK_USAGE_EVERY: Duration = Duration::from_secs(3600);

/// How often the crontab looks for due jobs (every second under a test clock, which jumps).
const CRON_TICK: Duration = Duration::from_secs(30);

/// Runs one round off the runtime; a panic is logged and counted, never fatal.
async fn round(ctx: &Arc<Context>, what: &str, work: impl FnOnce(Arc<Context>) + Send + 'static) {
    let c = ctx.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || work(c)).await {
        if e.is_panic() {
            ctx.builds.panics.fetch_add(1, Ordering::SeqCst);
            let why = crate::build::worker::panic_message(&*e.into_panic());
            tracing::error!(panic = %why, "a {what} round panicked");
        }
    }
}

/// Starts the timers of incoming and the disk usage.
pub fn spawn(ctx: Arc<Context>, orphan_age: Duration) {
    let every = Duration::from_secs((orphan_age.as_secs() / 2).clamp(1, 300));
    tokio::spawn(async move {
        let mut last_measure: Option<Instant> = None;
        loop {
            let measure = last_measure.is_none_or(|t| t.elapsed() >= DISK_USAGE_EVERY);
            round(&ctx, "housekeeping", move |c| {
                c.process_uploads(None);
                if let Err(e) = c.incoming.remove_orphans(orphan_age) {
                    tracing::warn!(error = %e, "cleaning incoming");
                }
                if measure {
                    let usage =
                        crate::files::DiskUsage::measure(&c.home(), crate::repo::publish_time());
                    *c.disk.lock().unwrap_or_else(|e| e.into_inner()) = Some(usage);
                }
            })
            .await;
            if measure {
                last_measure = Some(Instant::now());
            }
            tokio::time::sleep(every).await;
        }
    });
}

/// How often remotes are checked (their status polled, auto-reactivate ones re-activated).
const REMOTES_EVERY: Duration = Duration::from_secs(60);

/// Starts the remotes' poll: every remote that counts is checked each [`REMOTES_EVERY`] (each
/// second under `MBD_TEST_REMOTES_EVERY=1`), its status kept for routing.
pub fn spawn_remotes(ctx: Arc<Context>) {
    let every = std::env::var("MBD_TEST_REMOTES_EVERY")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(REMOTES_EVERY, Duration::from_secs);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            round(&ctx, "remotes", |c| {
                if let Err(e) = c.refresh_remotes() {
                    tracing::error!(error = %e, "checking remotes");
                }
            })
            .await;
        }
    });
}

/// Starts the crontab: each tick runs the jobs due (while the daemon is started).
pub fn spawn_crontab(ctx: Arc<Context>) {
    let tick = match std::env::var_os("MBD_TEST_CLOCK") {
        Some(_) => Duration::from_secs(1),
        None => CRON_TICK,
    };
    tokio::spawn(async move {
        loop {
            round(&ctx, "crontab", |c| {
                if !c.is_running() {
                    return;
                }
                let due = match c.crontab.due(c.state(), c.clock.now()) {
                    Ok(due) => due,
                    Err(e) => {
                        tracing::error!(error = %e, "crontab");
                        return;
                    }
                };
                for id in due {
                    if let Err(e) = c.crontab.run(id, c.as_ref(), c.clock.as_ref()) {
                        tracing::error!(job = id, error = %e, "crontab");
                    }
                }
            })
            .await;
            tokio::time::sleep(tick).await;
        }
    });
}

/// Starts the webhook deliveries and the mail: a thread each (they wait on the network),
/// woken by each queued event and otherwise when the next retry is due.
pub fn spawn_senders(ctx: Arc<Context>) {
    spawn_sender(
        ctx.clone(),
        "webhooks",
        |c, now| {
            c.webhooks
                .deliver_due(c.state(), now)
                .map_err(|e| e.to_string())
        },
        |c, wait| c.webhooks.wait(wait),
    );
    spawn_sender(
        ctx.clone(),
        "mail",
        |c, now| {
            c.mail
                .deliver_due(c.state(), now)
                .map_err(|e| e.to_string())
        },
        |c, wait| c.mail.wait(wait),
    );
    spawn_remote_results(ctx);
}

/// Sends the results of builds we ran for remotes: woken when one ends, else when a retry
/// is due (or after a minute).
fn spawn_remote_results(ctx: Arc<Context>) {
    let started = std::thread::Builder::new()
        .name("remote-results".to_string())
        .spawn(move || {
            loop {
                let seen = ctx.builds.results_out.seen();
                let now = crate::repo::wall_clock();
                let home = ctx.home();
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    crate::remote::builds::send_due(ctx.state(), &home, now)?;
                    crate::remote::builds::next_send(ctx.state())
                }));
                let wait = match ran {
                    Ok(Ok(next)) => next.map_or(60, |t| (t - now).clamp(1, 60)),
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "sending build results");
                        60
                    }
                    Err(payload) => {
                        ctx.builds.panics.fetch_add(1, Ordering::SeqCst);
                        let why = crate::build::worker::panic_message(&*payload);
                        tracing::error!(panic = %why, "a remote-results round panicked");
                        60
                    }
                };
                ctx.builds
                    .results_out
                    .wait_since(seen, Duration::from_secs(wait as u64));
            }
        });
    if let Err(e) = started {
        tracing::error!(error = %e, "the remote-results thread did not start");
    }
}

type Round = fn(&Context, i64) -> Result<Option<i64>, String>;

fn spawn_sender(ctx: Arc<Context>, name: &'static str, round: Round, wait: fn(&Context, Duration)) {
    let started = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            loop {
                let now = crate::repo::wall_clock();
                let ran =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| round(&ctx, now)));
                let next = match ran {
                    Ok(Ok(next)) => next,
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "{name}");
                        Some(60)
                    }
                    Err(payload) => {
                        ctx.builds.panics.fetch_add(1, Ordering::SeqCst);
                        let why = crate::build::worker::panic_message(&*payload);
                        tracing::error!(panic = %why, "a {name} round panicked");
                        Some(60)
                    }
                };
                let secs = next.map_or(3600, |s| s.clamp(1, 3600));
                wait(&ctx, Duration::from_secs(secs as u64));
            }
        });
    if let Err(e) = started {
        tracing::error!(error = %e, "the {name} thread did not start");
    }
}
