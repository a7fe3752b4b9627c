//! The daemon's timers: deciding uploads that waited (at start, after maintenance), removing
//! orphaned files from incoming, retention of history, and the home's disk usage (with
//! retention: at start, then hourly). Each round runs off the async
//! runtime; a round that panics is logged, counted in `mbd_task_panics_total`, and the
//! next round runs as usual.

use crate::api::Context;
use crate::settings::Retention;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Applies retention once; returns how many events and uploads went.
pub fn apply_retention(ctx: &Context, r: &Retention) -> (usize, usize) {
    let home = ctx.home();
    let day = 24 * 3600;
    let events =
        crate::incoming::prune_events(ctx.state(), &home, r.events_days * day, r.events_keep)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "retention of events");
                0
            });
    let dirs = crate::build::queue::Dirs::new(&home);
    let uploads = {
        // Not while the worker changes the same records.
        let _token = ctx.writer();
        crate::build::queue::prune_uploads(ctx.state(), &dirs, r.uploads_days * day, r.uploads_keep)
    }
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, "retention of uploads");
        0
    });
    if events + uploads > 0 {
        tracing::info!(events, uploads, "retention: old history removed");
    }
    (events, uploads)
}

/// Starts the timers.
pub fn spawn(ctx: Arc<Context>, orphan_age: Duration, retention: Retention) {
    let every = Duration::from_secs((orphan_age.as_secs() / 2).clamp(1, 300));
    tokio::spawn(async move {
        let mut last_retention: Option<Instant> = None;
        loop {
            let c = ctx.clone();
            let prune = last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY);
            let r = retention.clone();
            let round = tokio::task::spawn_blocking(move || {
                c.process_uploads(None);
                if let Err(e) = c.incoming.remove_orphans(orphan_age) {
                    tracing::warn!(error = %e, "cleaning incoming");
                }
                if prune {
                    apply_retention(&c, &r);
                    let usage =
                        crate::files::DiskUsage::measure(&c.home(), crate::repo::publish_time());
                    *c.disk.lock().unwrap_or_else(|e| e.into_inner()) = Some(usage);
                }
            })
            .await;
            if let Err(e) = round {
                if e.is_panic() {
                    ctx.builds.panics.fetch_add(1, Ordering::SeqCst);
                    let why = crate::build::worker::panic_message(&*e.into_panic());
                    tracing::error!(panic = %why, "a housekeeping round panicked");
                }
            }
            if prune {
                last_retention = Some(Instant::now());
            }
            tokio::time::sleep(every).await;
        }
    });
}
