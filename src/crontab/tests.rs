use super::*;
use crate::repo::SetupOptions;
use std::sync::atomic::{AtomicI64, Ordering};

/// 2026-12-06 00:00 UTC, a Sunday.
const SUNDAY: i64 = 1_796_515_200;
const DAY: i64 = 86_400;

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl TestClock {
    fn set(&self, t: i64) {
        self.0.store(t, Ordering::SeqCst);
    }
}

struct TestHost {
    _dir: tempfile::TempDir,
    engine: Engine,
    state: StateStore,
}

impl Host for TestHost {
    fn engine(&self) -> &Engine {
        &self.engine
    }
    fn state(&self) -> &StateStore {
        &self.state
    }
    fn home(&self) -> PathBuf {
        self.engine.home().to_path_buf()
    }
    fn write_token(&self) -> Box<dyn crate::state::Token + '_> {
        Box::new(())
    }
    fn inspect_setup(&self) -> Result<crate::setup::Report, String> {
        Err("no setup here".into())
    }
}

fn host() -> TestHost {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::setup(
        dir.path(),
        &SetupOptions {
            identity: Some("t".into()),
            distributions: vec!["bookworm:amd64".into(), "trixie:amd64".into()],
            repositories: vec!["test:Default:bookworm+trixie".into()],
            ..Default::default()
        },
    )
    .unwrap();
    TestHost {
        _dir: dir,
        engine,
        state: StateStore::in_memory(),
    }
}

fn crontab(schedules: &[(&str, &str)]) -> Crontab {
    let s = Settings {
        crontab: schedules
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Settings::default()
    };
    Crontab::new(&s).unwrap()
}

#[test]
fn a_job_is_due_once_per_missed_schedule_and_not_before_it_was_first_seen() {
    let h = host();
    // The hourly job has its own test below.
    let cron = crontab(&[("retry_results", "")]);
    let clock = TestClock(AtomicI64::new(SUNDAY + 4 * 3600 + 1800));
    // First sight on Sunday 04:30, after the weekly jobs' times: nothing is due yet (a new
    // home runs nothing at once).
    assert!(cron.due(&h.state, clock.now()).unwrap().is_empty());
    // Monday 05:00: the daily expiry.
    clock.set(SUNDAY + DAY + 5 * 3600);
    assert_eq!(cron.due(&h.state, clock.now()).unwrap(), ["expire_builds"]);
    assert!(cron.run("expire_builds", &h, &clock).unwrap());
    assert!(cron.due(&h.state, clock.now()).unwrap().is_empty());
    // Down for three weeks: each job that fell due runs once, not once per missed time.
    clock.set(SUNDAY + 22 * DAY + 6 * 3600);
    let due = cron.due(&h.state, clock.now()).unwrap();
    assert_eq!(
        due,
        [
            "expire_builds",
            "expire_events",
            "snapshots_weekly",
            "setup_inspect",
            "chroot_check"
        ]
    );
    for id in &due {
        cron.run(id, &h, &clock).unwrap();
    }
    assert!(cron.due(&h.state, clock.now()).unwrap().is_empty());
    let listing = cron.listing(&h.state, clock.now()).unwrap();
    let weekly = listing.iter().find(|j| j.id == "snapshots_weekly").unwrap();
    assert_eq!(weekly.next, Some(SUNDAY + 28 * DAY + 3 * 3600));
    assert_eq!(weekly.last_start, Some(clock.now()));
    // The inspection has no setup here: a failed run says why.
    let inspect = listing.iter().find(|j| j.id == "setup_inspect").unwrap();
    assert_eq!(inspect.last_ok, Some(false));
    assert!(inspect.lines[0].starts_with("E: setup_inspect: failed (2026-12-28 06:00:00 UTC"));
    assert!(
        inspect.lines[0].ends_with("): no setup here"),
        "{:?}",
        inspect.lines
    );
}

#[test]
fn a_job_keeps_its_last_twenty_lines() {
    let h = host();
    let cron = crontab(&[]);
    let clock = TestClock(AtomicI64::new(SUNDAY));
    for n in 0..25 {
        clock.set(SUNDAY + n * 60);
        assert!(cron.run("expire_events", &h, &clock).unwrap());
    }
    let h = h.state.get::<History>("expire_events").unwrap().unwrap();
    assert_eq!(h.lines.len(), KEPT_LINES);
    assert!(
        h.lines[0].contains("2026-12-06 00:05:00 UTC"),
        "{}",
        h.lines[0]
    );
    assert!(
        h.lines[19].contains("2026-12-06 00:24:00 UTC"),
        "{}",
        h.lines[19]
    );
    assert!(h.lines[19].starts_with("I: expire_events: successful"));
    assert!(
        h.lines[19]
            .ends_with("0 events removed (older than 365 days, newest 1000 kept); 0.0 MB freed")
    );
}

#[test]
fn snapshots_are_made_for_stable_like_distributions_and_expire_by_age() {
    let h = host();
    let cron = crontab(&[]);
    let clock = TestClock(AtomicI64::new(SUNDAY));
    let stable = ["bookworm-test-stable", "trixie-test-stable"];
    for week in 0..10 {
        clock.set(SUNDAY + week * 7 * DAY + 3 * 3600);
        assert!(cron.run("snapshots_weekly", &h, &clock).unwrap());
    }
    // Eight weeks kept: the snapshots of weeks 2..=9.
    for dist in stable {
        let names = h.engine.snapshot_ls(dist).unwrap();
        assert_eq!(names.len(), 8, "{dist}: {names:?}");
        assert_eq!(names.first().unwrap(), "WEEKLY_2026-12-20");
        assert_eq!(names.last().unwrap(), "WEEKLY_2027-02-07");
    }
    // Only stable-like suites: unstable migrates, experimental is experimental.
    assert!(
        h.engine
            .snapshot_ls("bookworm-test-unstable")
            .unwrap()
            .is_empty()
    );
    assert!(
        h.engine
            .snapshot_ls("bookworm-test-experimental")
            .unwrap()
            .is_empty()
    );
    let lines = h
        .state
        .get::<History>("snapshots_weekly")
        .unwrap()
        .unwrap()
        .lines;
    assert!(
        lines[9].ends_with("WEEKLY_2027-02-07 created for 2 of 2 distributions; 2 deleted as 8 weeks old (bookworm-test-stable/WEEKLY_2026-12-13, trixie-test-stable/WEEKLY_2026-12-13)"),
        "{}",
        lines[9]
    );
    // Run again the same day: nothing new, nothing lost.
    assert!(cron.run("snapshots_weekly", &h, &clock).unwrap());
    assert_eq!(h.engine.snapshot_ls(stable[0]).unwrap().len(), 8);
    // Other prefixes are left alone.
    assert!(cron.run("snapshots_monthly", &h, &clock).unwrap());
    clock.set(clock.now() + 60 * 7 * DAY);
    assert!(cron.run("snapshots_weekly", &h, &clock).unwrap());
    let names = h.engine.snapshot_ls(stable[0]).unwrap();
    assert_eq!(names, ["MONTHLY_2027-02-07", "WEEKLY_2028-04-02"]);
}

#[test]
fn schedules_come_from_the_settings_and_bad_ones_are_named() {
    let cron = crontab(&[("expire_events", "0 6 * * *"), ("chroot_check", "")]);
    let h = host();
    let listing = cron.listing(&h.state, SUNDAY).unwrap();
    let get = |id: &str| listing.iter().find(|j| j.id == id).unwrap();
    assert_eq!(get("expire_events").schedule, "0 6 * * *");
    assert_eq!(get("expire_events").next, Some(SUNDAY + 6 * 3600));
    assert_eq!(get("chroot_check").schedule, "");
    assert_eq!(get("chroot_check").next, None);
    assert_eq!(get("expire_builds").schedule, "0 5 * * *");
    let mut s = Settings::default();
    s.crontab.insert("expire_all".into(), "0 0 * * *".into());
    let e = Crontab::new(&s).err().unwrap().to_string();
    assert!(
        e.starts_with("no crontab job 'expire_all' (jobs: retry_results, expire_builds, "),
        "{e}"
    );
    s.crontab.clear();
    s.crontab.insert("expire_events".into(), "0 0 * *".into());
    let e = Crontab::new(&s).err().unwrap().to_string();
    assert!(
        e.starts_with("[crontab] expire_events: '0 0 * *' has 4 fields"),
        "{e}"
    );
    let e = cron.run("nope", &h, &SystemClock).unwrap_err().to_string();
    assert!(e.starts_with("no crontab job 'nope'"), "{e}");
}

#[test]
fn the_default_schedules_parse() {
    for job in JOBS {
        Schedule::parse(job.schedule).unwrap_or_else(|e| panic!("{}: {e}", job.id));
    }
    let h = host();
    let listing = Crontab::with_defaults().listing(&h.state, SUNDAY).unwrap();
    assert!(listing.iter().all(|j| j.next.is_some()), "{listing:?}");
}

#[test]
fn times_read_as_people_read_them() {
    let t = SUNDAY + 15 * 3600 + 53 * 60;
    assert_eq!(utc(t), "2026-12-06 15:53:00 UTC");
    assert_eq!(utc_relative(t, t + 185), "2026-12-06 15:53 UTC, 3 min ago");
    assert_eq!(utc_relative(t, t + 20), "2026-12-06 15:53 UTC, just now");
    assert_eq!(utc_relative(t, t - 20), "2026-12-06 15:53 UTC, just now");
    assert_eq!(
        utc_relative(t, t - 3 * 3600),
        "2026-12-06 15:53 UTC, in 3 h"
    );
    assert_eq!(
        utc_relative(t, t + 3 * DAY),
        "2026-12-06 15:53 UTC, 3 days ago"
    );
    assert_eq!(duration(40), "40 s");
    assert_eq!(duration(72), "1 min 12 s");
    assert_eq!(duration(2 * 3600 + 300), "2 h 5 min");
}

#[test]
fn results_for_remotes_are_retried_hourly() {
    let h = host();
    let cron = crontab(&[]);
    let clock = TestClock(AtomicI64::new(SUNDAY + 5 * 3600 + 1800));
    assert!(cron.due(&h.state, clock.now()).unwrap().is_empty());
    clock.set(SUNDAY + 6 * 3600 + 15 * 60);
    assert_eq!(cron.due(&h.state, clock.now()).unwrap(), ["retry_results"]);
    assert!(cron.run("retry_results", &h, &clock).unwrap());
    let listing = cron.listing(&h.state, clock.now()).unwrap();
    let job = listing.iter().find(|j| j.id == "retry_results").unwrap();
    assert_eq!(job.next, Some(clock.now() + 3600));
    assert!(
        job.lines[0].contains("no results waiting to be sent"),
        "{:?}",
        job.lines
    );
}
