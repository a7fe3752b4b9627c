//! The internal crontab: the daemon's periodic jobs (expiry of builds and events, snapshots
//! with retention, the setup inspection, chroot checks), their schedules (crontab(5) fields,
//! UTC, from `[crontab]` in `etc/mbd.toml`) and their history (the last 20 result lines of
//! each, in the state store).
//!
//! A job is due when the latest time its schedule names is after both its last start and the
//! moment the crontab first saw it: so a job that fell due while the daemon was down runs
//! once after the start (however many times it was missed), and a new home does not run
//! everything at once. Time comes from a [`Clock`], so tests move it instead of sleeping.
//!
//! The bodies call the domains (`incoming`, `build::queue`, the engine's snapshots,
//! `setup`); what they need from the running daemon comes through [`Host`].

mod jobs;
pub mod schedule;

pub use schedule::Schedule;

use crate::repo::Engine;
use crate::settings::Settings;
use crate::state::{Record, StateError, StateStore};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CrontabError {
    #[error("[crontab] {job}: {reason}")]
    Schedule { job: String, reason: String },
    #[error("no crontab job '{job}' (jobs: {known})")]
    NoSuchJob { job: String, known: String },
    #[error(transparent)]
    State(#[from] StateError),
}

/// One job: its id (also its key under `[crontab]`), default schedule and what it does.
#[derive(Debug)]
pub struct Job {
    pub id: &'static str,
    pub schedule: &'static str,
    pub doc: &'static str,
}

/// Every job, with mini-buildd's schedules (at fixed minutes instead of random ones).
pub const JOBS: &[Job] = &[
    Job {
        id: "retry_results",
        schedule: "15 * * * *",
        doc: "Send again now every result of a build we ran for a remote that the remote has not taken yet (between these runs each is retried on its own, waits doubling up to an hour).",
    },
    Job {
        id: "expire_builds",
        schedule: "0 5 * * *",
        doc: "Delete ended uploads older than [retention] uploads_days (keeping the newest uploads_keep) with their builds, logs and build directories.",
    },
    Job {
        id: "expire_events",
        schedule: "30 2 * * sun",
        doc: "Delete events older than [retention] events_days (keeping the newest events_keep) with their files.",
    },
    Job {
        id: "snapshots_weekly",
        schedule: "0 3 * * sun",
        doc: "Snapshot the stable-like distributions (not experimental, migrating nowhere) of active repositories as WEEKLY_<date>; delete those older than [retention] snapshots_weekly_weeks.",
    },
    Job {
        id: "snapshots_monthly",
        schedule: "30 0 1 * *",
        doc: "The same as MONTHLY_<date>, kept snapshots_monthly_weeks.",
    },
    Job {
        id: "snapshots_yearly",
        schedule: "0 1 1 jan *",
        doc: "The same as YEARLY_<date>, kept snapshots_yearly_weeks.",
    },
    Job {
        id: "setup_inspect",
        schedule: "0 2 * * sun",
        doc: "Run setup --preset Current (no update, no pca) and save its report as var/log/setup-inspect.txt; errors in it fail the job.",
    },
    Job {
        id: "chroot_check",
        schedule: "0 4 * * sun",
        doc: "Check every chroot that is not being prepared (and record Ready or Failed).",
    },
];

/// Where the time comes from.
pub trait Clock: Send + Sync {
    /// Seconds since the epoch.
    fn now(&self) -> i64;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        crate::repo::wall_clock()
    }
}

/// A clock for tests: the seconds since the epoch written in a file, read at every call;
/// the system's time while the file holds none.
pub struct FileClock(pub PathBuf);

impl Clock for FileClock {
    fn now(&self) -> i64 {
        std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_else(crate::repo::wall_clock)
    }
}

/// A job's history, in the `crontab` table under its id.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct History {
    /// When the crontab first saw the job (it is not due for times before that).
    pub first_seen: i64,
    pub last_start: Option<i64>,
    pub last_seconds: f64,
    pub last_ok: Option<bool>,
    /// The last [`KEPT_LINES`] result lines, oldest first.
    pub lines: Vec<String>,
}

impl Record for History {
    const TABLE: &'static str = "crontab";
}

/// How many result lines a job keeps.
pub const KEPT_LINES: usize = 20;

/// What the jobs need from the running daemon.
pub trait Host {
    fn engine(&self) -> &Engine;
    fn state(&self) -> &StateStore;
    fn home(&self) -> PathBuf;
    /// Holds the daemon's write token while the value lives.
    fn write_token(&self) -> Box<dyn crate::state::Token + '_>;
    /// `setup --preset Current` (what exists, without update or pca): the report.
    fn inspect_setup(&self) -> Result<crate::setup::Report, String>;
    /// Wakes the sender of build results (results were made due now).
    fn wake_result_sender(&self) {}
}

/// A job as the `crontab` call and page show it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: &'static str,
    /// Empty when disabled.
    pub schedule: String,
    pub doc: &'static str,
    pub next: Option<i64>,
    /// When the crontab first saw the job: times before it are not due (0: not yet seen).
    pub since: i64,
    pub last_start: Option<i64>,
    pub last_seconds: f64,
    pub last_ok: Option<bool>,
    pub lines: Vec<String>,
}

/// The jobs with their schedules and the retention they apply.
pub struct Crontab {
    schedules: Vec<(&'static Job, Option<Schedule>)>,
    retention: crate::settings::Retention,
    /// One job at a time (the timer and `cronjob` never run two at once).
    running: std::sync::Mutex<()>,
}

impl Crontab {
    /// The jobs with the schedules of `[crontab]` (an empty schedule disables a job); an
    /// unknown job id or a bad schedule is an error naming it.
    pub fn new(settings: &Settings) -> Result<Crontab, CrontabError> {
        let given: &BTreeMap<String, String> = &settings.crontab;
        if let Some(unknown) = given.keys().find(|k| find(k).is_none()) {
            return Err(no_such_job(unknown));
        }
        let schedules = JOBS
            .iter()
            .map(|job| {
                let text = given.get(job.id).map_or(job.schedule, String::as_str);
                let schedule = match text.trim() {
                    "" => None,
                    t => Some(Schedule::parse(t).map_err(|reason| CrontabError::Schedule {
                        job: job.id.to_string(),
                        reason,
                    })?),
                };
                Ok((job, schedule))
            })
            .collect::<Result<_, CrontabError>>()?;
        Ok(Crontab {
            schedules,
            retention: settings.retention.clone(),
            running: std::sync::Mutex::new(()),
        })
    }

    /// The jobs with their default schedules and retention.
    pub fn with_defaults() -> Crontab {
        Crontab {
            schedules: JOBS
                .iter()
                .map(|job| (job, Schedule::parse(job.schedule).ok()))
                .collect(),
            retention: crate::settings::Retention::default(),
            running: std::sync::Mutex::new(()),
        }
    }

    fn history(&self, state: &StateStore, id: &str, now: i64) -> Result<History, StateError> {
        Ok(match state.get::<History>(id)? {
            Some(h) => h,
            None => {
                let h = History {
                    first_seen: now,
                    ..History::default()
                };
                state.put(id, &h)?;
                h
            }
        })
    }

    /// The jobs due at `now`, in table order; records jobs seen for the first time.
    pub fn due(&self, state: &StateStore, now: i64) -> Result<Vec<&'static str>, CrontabError> {
        let mut due = Vec::new();
        for (job, schedule) in &self.schedules {
            let Some(s) = schedule else { continue };
            let h = self.history(state, job.id, now)?;
            let since = h.last_start.unwrap_or(i64::MIN).max(h.first_seen);
            if s.latest_at_or_before(now).is_some_and(|at| at > since) {
                due.push(job.id);
            }
        }
        Ok(due)
    }

    /// Runs one job now and records its result line; returns whether it succeeded.
    pub fn run(&self, id: &str, host: &dyn Host, clock: &dyn Clock) -> Result<bool, CrontabError> {
        let job = find(id).ok_or_else(|| no_such_job(id))?;
        let _one = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let start = clock.now();
        let timer = std::time::Instant::now();
        let result = jobs::run(job.id, host, &self.retention, start);
        let seconds = timer.elapsed().as_secs_f64();
        let when = format!("{}, {seconds:.1} s", utc(start));
        let line = match &result {
            Ok(summary) => format!("I: {}: successful ({when}): {summary}", job.id),
            Err(why) => format!("E: {}: failed ({when}): {why}", job.id),
        };
        match &result {
            Ok(_) => tracing::info!(job = job.id, "{line}"),
            Err(_) => tracing::error!(job = job.id, "{line}"),
        }
        let state = host.state();
        let mut h = self.history(state, job.id, start)?;
        h.last_start = Some(start);
        h.last_seconds = seconds;
        h.last_ok = Some(result.is_ok());
        h.lines.push(line);
        let extra = h.lines.len().saturating_sub(KEPT_LINES);
        h.lines.drain(..extra);
        state.put(job.id, &h)?;
        Ok(result.is_ok())
    }

    /// Every job with its schedule, next run and history.
    pub fn listing(&self, state: &StateStore, now: i64) -> Result<Vec<JobView>, CrontabError> {
        self.schedules
            .iter()
            .map(|(job, schedule)| {
                let h = state.get::<History>(job.id)?.unwrap_or_default();
                Ok(JobView {
                    id: job.id,
                    schedule: schedule.as_ref().map_or(String::new(), |s| s.text().into()),
                    doc: job.doc,
                    next: schedule.as_ref().and_then(|s| s.next_after(now)),
                    since: h.first_seen,
                    last_start: h.last_start,
                    last_seconds: h.last_seconds,
                    last_ok: h.last_ok,
                    lines: h.lines,
                })
            })
            .collect()
    }
}

fn find(id: &str) -> Option<&'static Job> {
    JOBS.iter().find(|j| j.id == id)
}

fn no_such_job(id: &str) -> CrontabError {
    CrontabError::NoSuchJob {
        job: id.to_string(),
        known: JOBS.iter().map(|j| j.id).collect::<Vec<_>>().join(", "),
    }
}

/// `2026-12-06 03:00:00 UTC`
pub fn utc(t: i64) -> String {
    let s = t.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        crate::repo::release::civil_date(t),
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `2026-12-06 03:00 UTC, in 2 h` (or `, 5 min ago`): a time to the minute with a hint
/// relative to `now`, as the web UI shows times.
pub fn utc_relative(t: i64, now: i64) -> String {
    let d = (t - now).abs();
    // `YYYY-MM-DD HH:MM` of `YYYY-MM-DD HH:MM:SS UTC`.
    let at = format!("{} UTC", &utc(t)[..16]);
    let span = match d {
        0..60 => return format!("{at}, just now"),
        60..7200 => format!("{} min", d / 60),
        7200..172_800 => format!("{} h", d / 3600),
        _ => format!("{} days", d / 86_400),
    };
    match t >= now {
        true => format!("{at}, in {span}"),
        false => format!("{at}, {span} ago"),
    }
}

/// `1 min 12 s`, `40 s`, `2 h 5 min`: a duration in seconds as people read it.
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s / 60 % 60),
    }
}

/// Where the setup inspection's last report is kept.
pub fn inspection_report(home: &Path) -> PathBuf {
    home.join("var/log/setup-inspect.txt")
}

#[cfg(test)]
mod tests;
