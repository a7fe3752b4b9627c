use super::*;
use crate::repo::SetupOptions;
use std::sync::{Arc, Mutex};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/pkg")
        .join(name)
}

/// A home with repository test for bookworm amd64 (+ i386, optional), both chroots ready.
fn home() -> (tempfile::TempDir, Engine, StateStore, Dirs) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::setup(
        dir.path(),
        &SetupOptions {
            identity: Some("t".into()),
            distributions: vec!["bookworm:amd64+i386".into()],
            repositories: vec!["test:Default:bookworm".into()],
            ..Default::default()
        },
    )
    .unwrap();
    let mut d = engine.distribution("bookworm").unwrap();
    d.optional_architectures = vec!["i386".into()];
    engine.put_distribution(&d).unwrap();
    let state = StateStore::in_memory();
    for arch in ["amd64", "i386"] {
        let mut c = Chroot::new("bookworm", arch, "http://m", Default::default());
        c.state = ChrootState::Ready;
        state.put(&c.id(), &c).unwrap();
    }
    let dirs = Dirs::new(dir.path());
    (dir, engine, state, dirs)
}

/// Puts a fixture's source upload into the queue, as acceptance does.
fn queue_upload(dirs: &Dirs, stem: &str, files: &[&str]) -> String {
    let q = dirs.queue.join(stem);
    std::fs::create_dir_all(&q).unwrap();
    for f in files {
        std::fs::copy(fixture(f), q.join(f)).unwrap();
    }
    stem.to_string()
}

fn hello(dirs: &Dirs) -> String {
    queue_upload(
        dirs,
        "mbd-hello_1.0-1~test12+1",
        &[
            "mbd-hello_1.0-1~test12+1_source.changes",
            "mbd-hello_1.0-1~test12+1_source.buildinfo",
            "mbd-hello_1.0-1~test12+1.dsc",
            "mbd-hello_1.0.orig.tar.gz",
            "mbd-hello_1.0-1~test12+1.debian.tar.xz",
        ],
    )
}

fn greeter(dirs: &Dirs) -> String {
    queue_upload(
        dirs,
        "mbd-greeter_1.0~test12+1",
        &[
            "mbd-greeter_1.0~test12+1_source.changes",
            "mbd-greeter_1.0~test12+1_source.buildinfo",
            "mbd-greeter_1.0~test12+1.dsc",
            "mbd-greeter_1.0~test12+1.tar.xz",
        ],
    )
}

/// What sbuild would leave for a successful amd64 build: the fixture's full .changes and
/// the files it lists.
fn leave_results(job: &Job) {
    std::fs::create_dir_all(&job.dir).unwrap();
    let changes = format!(
        "{}_{}_{}.changes",
        job.upload.source, job.upload.version, job.build.architecture
    );
    let c = Changes::read(&fixture(&changes), Trust::Unchecked).unwrap();
    for f in &c.files.entries {
        std::fs::copy(fixture(&f.name), job.dir.join(&f.name)).unwrap();
    }
    std::fs::copy(fixture(&changes), job.dir.join(&changes)).unwrap();
}

fn done(outcome: Outcome) -> Report {
    Report {
        outcome,
        status: format!("{outcome:?}").to_lowercase(),
        fail_stage: None,
    }
}

fn kinds(events: &[Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

#[test]
fn builds_run_in_architecture_order_and_install_when_the_mandatory_ones_succeed() {
    let (_d, engine, state, dirs) = home();
    let id = hello(&dirs);
    assert!(plan_new(&engine, &state, &dirs).unwrap().is_empty());
    let builds = builds_of(&state, &id).unwrap();
    assert_eq!(builds.len(), 2);
    assert!(builds.iter().all(|b| b.state == State::NeedsBuild));
    let amd64 = builds.iter().find(|b| b.architecture == "amd64").unwrap();
    assert!(amd64.arch_all && !amd64.optional);
    // Planning again adds nothing.
    plan_new(&engine, &state, &dirs).unwrap();
    assert_eq!(builds_of(&state, &id).unwrap().len(), 2);

    let (first, e) = next_job(&engine, &state, &dirs, "http://127.0.0.1:1")
        .unwrap()
        .unwrap();
    assert_eq!(kinds(&e), [EventKind::Building]);
    assert_eq!(first.build.architecture, "amd64");
    // Unstable builds against unstable and the suites it migrates to.
    assert_eq!(
        first.extra_repositories,
        [
            "deb http://127.0.0.1:1/repositories/test bookworm-test-unstable main",
            "deb http://127.0.0.1:1/repositories/test bookworm-test-testing main",
            "deb http://127.0.0.1:1/repositories/test bookworm-test-stable main",
        ]
    );
    // The home's own schroot name.
    assert_eq!(
        first.chroot,
        format!(
            "mbd-{}-bookworm-amd64",
            crate::build::chroot::home_tag(&dirs.home)
        )
    );
    let (second, _) = next_job(&engine, &state, &dirs, "http://x")
        .unwrap()
        .unwrap();
    assert_eq!(second.build.architecture, "i386");
    assert!(
        next_job(&engine, &state, &dirs, "http://x")
            .unwrap()
            .is_none()
    );

    // The optional architecture fails: the upload waits for amd64, then installs.
    let e = finish(&engine, &state, &dirs, &second, &done(Outcome::Failed)).unwrap();
    assert_eq!(kinds(&e), [EventKind::Failed]);
    leave_results(&first);
    let e = finish(&engine, &state, &dirs, &first, &done(Outcome::Successful)).unwrap();
    assert_eq!(kinds(&e), [EventKind::Built, EventKind::Installed], "{e:?}");
    let u = state.get::<Upload>(&id).unwrap().unwrap();
    assert_eq!(u.state, UploadState::Installed);
    assert_eq!(
        engine
            .dist_sources("bookworm-test-unstable")
            .unwrap()
            .get("mbd-hello")
            .map(String::as_str),
        Some("1.0-1~test12+1")
    );
    assert!(!dirs.queue.join(&id).exists());
}

#[test]
fn a_mandatory_failure_fails_the_upload_naming_the_architecture() {
    let (_d, engine, state, dirs) = home();
    let id = greeter(&dirs);
    plan_new(&engine, &state, &dirs).unwrap();
    // Architecture: all builds once, on amd64.
    assert_eq!(builds_of(&state, &id).unwrap().len(), 1);
    let (job, _) = next_job(&engine, &state, &dirs, "http://x")
        .unwrap()
        .unwrap();
    let e = finish(&engine, &state, &dirs, &job, &done(Outcome::DepWait)).unwrap();
    assert_eq!(kinds(&e), [EventKind::Failed, EventKind::Failed]);
    assert!(
        e[1].reason.contains("failed on amd64 (dep-wait)"),
        "{}",
        e[1].reason
    );
    assert!(dirs.queue.join(&id).exists(), "kept for a retry");
    assert_eq!(retry(&state, &dirs, &id).unwrap(), 1);
    let (job, _) = next_job(&engine, &state, &dirs, "http://x")
        .unwrap()
        .unwrap();
    assert_eq!(job.build.attempts, 2);
    leave_results(&job);
    let e = finish(&engine, &state, &dirs, &job, &done(Outcome::Successful)).unwrap();
    assert_eq!(kinds(&e), [EventKind::Built, EventKind::Installed]);
}

#[test]
fn interrupted_builds_run_again_and_cancelled_ones_do_not() {
    let (_d, engine, state, dirs) = home();
    let id = greeter(&dirs);
    plan_new(&engine, &state, &dirs).unwrap();
    next_job(&engine, &state, &dirs, "http://x")
        .unwrap()
        .unwrap();
    assert!(
        next_job(&engine, &state, &dirs, "http://x")
            .unwrap()
            .is_none()
    );
    // A restart.
    assert_eq!(recover(&state).unwrap(), 1);
    let (job, _) = next_job(&engine, &state, &dirs, "http://x")
        .unwrap()
        .unwrap();
    assert_eq!(job.build.attempts, 2);
    let e = cancel(&state, &id).unwrap();
    assert!(e[0].reason.contains("cancelled"));
    // The result of the stopped build is dropped.
    assert!(
        finish(&engine, &state, &dirs, &job, &done(Outcome::Failed))
            .unwrap()
            .is_empty()
    );
    assert!(
        next_job(&engine, &state, &dirs, "http://x")
            .unwrap()
            .is_none()
    );
    assert!(matches!(cancel(&state, &id), Err(BuildError::Refused(_))));
    assert!(matches!(
        cancel(&state, "nope_1"),
        Err(BuildError::NoSuchUpload(_))
    ));
    retry(&state, &dirs, &id).unwrap();
    assert!(
        next_job(&engine, &state, &dirs, "http://x")
            .unwrap()
            .is_some()
    );
}

#[test]
fn retention_drops_old_ended_uploads_with_builds_and_logs_and_keeps_the_rest() {
    let (_d, _engine, state, dirs) = home();
    let day = 86_400;
    let put = |id: &str, days_ago: i64, st: UploadState| {
        let mut u = new_upload(id);
        u.created = now() - days_ago * day;
        u.state = st;
        state.put(id, &u).unwrap();
        let b = Build {
            upload: id.to_string(),
            architecture: "amd64".into(),
            arch_all: true,
            optional: false,
            state: State::Built,
            status: String::new(),
            fail_stage: None,
            started: 0,
            finished: 0,
            attempts: 1,
            builder: String::new(),
            request: String::new(),
        };
        state.put(&build_key(id, "amd64"), &b).unwrap();
        std::fs::create_dir_all(dirs.job_dir(id, "amd64")).unwrap();
        std::fs::write(dirs.log(id, "amd64"), "log").unwrap();
    };
    put("a_1", 50, UploadState::Installed);
    put("b_1", 40, UploadState::Failed);
    put("c_1", 45, UploadState::Building);
    put("d_1", 35, UploadState::Cancelled);
    put("e_1", 1, UploadState::Installed);
    // Older than 30 days and not the newest ended one: a, b, d (c still builds; e is new).
    assert_eq!(
        prune_uploads(&state, &dirs, now() - 30 * day, 1).unwrap(),
        3
    );
    let left: Vec<String> = uploads(&state).unwrap().into_iter().map(|u| u.id).collect();
    assert_eq!(left, ["c_1", "e_1"]);
    for gone in ["a_1", "b_1", "d_1"] {
        assert!(builds_of(&state, gone).unwrap().is_empty());
        assert!(!dirs.builds.join(gone).exists());
    }
    assert!(dirs.log("e_1", "amd64").exists());
    // At age 0 the newest ended upload still stays.
    assert_eq!(prune_uploads(&state, &dirs, now(), 1).unwrap(), 0);
    assert_eq!(prune_uploads(&state, &dirs, now(), 0).unwrap(), 1);
    assert_eq!(builds_of(&state, "c_1").unwrap().len(), 1);
}

#[test]
fn builds_wait_for_a_ready_chroot() {
    let (_d, engine, state, dirs) = home();
    state.delete::<Chroot>("bookworm-amd64").unwrap();
    greeter(&dirs);
    plan_new(&engine, &state, &dirs).unwrap();
    assert!(
        next_job(&engine, &state, &dirs, "http://x")
            .unwrap()
            .is_none()
    );
}

#[test]
fn an_upload_that_cannot_be_planned_fails_and_leaves_the_queue() {
    let (_d, engine, state, dirs) = home();
    let q = dirs.queue.join("broken_1.0");
    std::fs::create_dir_all(&q).unwrap();
    std::fs::write(q.join("broken_1.0_source.changes"), "not a changes file").unwrap();
    let e = plan_new(&engine, &state, &dirs).unwrap();
    assert_eq!(kinds(&e), [EventKind::Failed]);
    assert!(
        e[0].reason.contains("broken_1.0_source.changes"),
        "{}",
        e[0].reason
    );
    assert!(!q.exists());
}

/// The next local job, as a free slot here takes it (no remotes).
fn next_job(
    engine: &Engine,
    state: &StateStore,
    dirs: &Dirs,
    url: &str,
) -> Result<Option<(Job, Vec<Event>)>, BuildError> {
    let builders = Builders {
        local_url: url,
        public_url: url,
        local_free: true,
        local_load: 0.0,
    };
    Ok(match start_next(engine, state, dirs, &builders)? {
        Some(Next::Job(job, events)) => Some((*job, events)),
        Some(other) => panic!("not a job: {other:?}"),
        None => None,
    })
}

struct TestHost {
    engine: Mutex<Engine>,
    state: StateStore,
    events: Mutex<Vec<Event>>,
}

impl crate::build::worker::Host for TestHost {
    fn with_stores(&self, f: &mut dyn FnMut(&Engine, &StateStore)) {
        f(&self.engine.lock().unwrap(), &self.state)
    }
    fn with_engine(&self, f: &mut dyn FnMut(&Engine)) {
        f(&self.engine.lock().unwrap())
    }
    fn announce(&self, events: Vec<Event>) {
        self.events.lock().unwrap().extend(events);
    }
    fn running(&self) -> bool {
        true
    }
    fn with_peer(&self, f: &mut dyn FnMut(&crate::openpgp::ArchiveKey, &StateStore, &str)) {
        f(
            self.engine.lock().unwrap().key(),
            &self.state,
            "http://test.invalid",
        )
    }
}

impl TestHost {
    fn count(&self, kind: EventKind) -> usize {
        let events = self.events.lock().unwrap();
        events.iter().filter(|e| e.kind == kind).count()
    }

    /// Waits (30 s at most) until `n` events of `kind` were announced.
    fn wait_for(&self, kind: EventKind, n: usize) {
        let started = std::time::Instant::now();
        while self.count(kind) < n {
            assert!(
                started.elapsed().as_secs() < 30,
                "{:?}",
                self.events.lock().unwrap()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Starts the worker (one slot) on the home's stores with `builder`.
fn start_worker(
    d: &tempfile::TempDir,
    engine: Engine,
    state: StateStore,
    builder: Arc<dyn Builder>,
) -> (Arc<TestHost>, Arc<crate::build::worker::Control>) {
    use crate::build::worker;
    let host = Arc::new(TestHost {
        engine: Mutex::new(engine),
        state,
        events: Mutex::new(Vec::new()),
    });
    let control = Arc::new(worker::Control::default());
    worker::spawn(
        host.clone(),
        control.clone(),
        builder,
        worker::Settings {
            home: d.path().to_path_buf(),
            slots: 1,
            local_url: "http://x".into(),
            waiting: crate::build::dispatch::Waiting {
                poll: std::time::Duration::from_millis(50),
                timeout: std::time::Duration::from_secs(1),
            },
        },
    );
    (host, control)
}

/// Supervision: a build whose builder panics fails with the panic's message, gives its
/// slot back, and the next build (one slot) still runs and installs.
#[test]
fn a_panicking_build_fails_and_releases_its_slot() {
    use std::sync::atomic::Ordering;

    struct Panicky;
    impl Builder for Panicky {
        fn build(&self, job: &Job, _: &dyn Fn() -> bool) -> Report {
            if job.upload.source == "mbd-greeter" {
                panic!("injected by the test");
            }
            if job.build.architecture == "amd64" {
                leave_results(job);
                return done(Outcome::Successful);
            }
            done(Outcome::Failed)
        }
    }
    let (d, engine, state, dirs) = home();
    hello(&dirs);
    greeter(&dirs);
    let (host, control) = start_worker(&d, engine, state, Arc::new(Panicky));
    // greeter (first in the queue) panics; hello still builds and installs after it.
    host.wait_for(EventKind::Installed, 1);
    assert_eq!(control.panics.load(Ordering::SeqCst), 1);
    let events = host.events.lock().unwrap();
    let failed: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == EventKind::Failed && e.source == "mbd-greeter")
        .collect();
    // The build's failure (with the panic's message), then the upload's.
    assert_eq!(failed.len(), 2, "{events:?}");
    assert!(
        failed[0].reason.contains("injected by the test"),
        "{}",
        failed[0].reason
    );
    let installed = events
        .iter()
        .find(|e| e.kind == EventKind::Installed)
        .unwrap();
    assert_eq!(installed.source, "mbd-hello");
    drop(events);
    let started = std::time::Instant::now();
    while control.active.load(Ordering::SeqCst) != 0 {
        assert!(
            started.elapsed().as_secs() < 10,
            "a slot was never given back"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A shutdown stops a running build (its builder sees `cancelled`) and queues it again:
/// no FAILED event, the record back at needs-build, the slot given back, nothing new
/// started.
#[test]
fn a_shutdown_stops_running_builds_and_queues_them_again() {
    struct UntilStopped;
    impl Builder for UntilStopped {
        fn build(&self, _: &Job, cancelled: &dyn Fn() -> bool) -> Report {
            while !cancelled() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            done(Outcome::Failed)
        }
    }
    let (d, engine, state, dirs) = home();
    let id = greeter(&dirs);
    let (host, control) = start_worker(&d, engine, state, Arc::new(UntilStopped));
    host.wait_for(EventKind::Building, 1);
    assert_eq!(control.shut_down(std::time::Duration::from_secs(10)), 0);
    let builds = builds_of(&host.state, &id).unwrap();
    assert_eq!(builds.len(), 1);
    assert_eq!(builds[0].state, State::NeedsBuild, "{builds:?}");
    assert!(builds[0].status.contains("shutdown"), "{builds:?}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(host.count(EventKind::Failed), 0);
    assert_eq!(
        host.count(EventKind::Building),
        1,
        "nothing started after the shutdown"
    );
    // The next start builds it again.
    assert_eq!(recover(&host.state).unwrap(), 0);
    assert_eq!(
        host.state.get::<Upload>(&id).unwrap().unwrap().state,
        UploadState::Building
    );
}

/// The worker with a fake builder: one slot means one build at a time, and every upload
/// ends installed.
#[test]
fn the_worker_keeps_to_its_slots() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Fake {
        running: AtomicUsize,
        most: AtomicUsize,
    }
    impl Builder for Fake {
        fn build(&self, job: &Job, _: &dyn Fn() -> bool) -> Report {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(100));
            let outcome = if job.build.architecture == "amd64" {
                leave_results(job);
                Outcome::Successful
            } else {
                Outcome::Failed
            };
            self.running.fetch_sub(1, Ordering::SeqCst);
            done(outcome)
        }
    }
    let (d, engine, state, dirs) = home();
    hello(&dirs);
    greeter(&dirs);
    let fake = Arc::new(Fake {
        running: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
    });
    let (host, _control) = start_worker(&d, engine, state, fake.clone());
    host.wait_for(EventKind::Installed, 2);
    assert_eq!(fake.most.load(Ordering::SeqCst), 1);
    let events = host.events.lock().unwrap();
    // Three builds (hello amd64 and i386, greeter amd64), one at a time, in queue order.
    let building: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == EventKind::Building)
        .map(|e| e.reason.as_str())
        .collect();
    assert_eq!(
        building,
        [
            "mbd-greeter_1.0~test12+1 on amd64",
            "mbd-hello_1.0-1~test12+1 on amd64",
            "mbd-hello_1.0-1~test12+1 on i386"
        ]
    );
}

/// A remote as routing sees it after a good poll: active, running, these chroots.
fn remote_with(state: &StateStore, url: &str, load: f64, chroots: &[&str]) {
    let r = crate::remote::Remote {
        url: url.to_string(),
        wake_command: String::new(),
        key: String::new(),
        fingerprint: String::new(),
        status: crate::status::Status::active(),
        peer: Some(crate::remote::Peer {
            running: true,
            load,
            build_chroots: chroots.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        }),
        polled: 0,
    };
    state.put(url, &r).unwrap();
}

#[test]
fn builds_go_to_the_least_loaded_builder_and_fail_at_once_when_none_exists() {
    let (_d, engine, state, dirs) = home();
    state.delete::<Chroot>("bookworm-amd64").unwrap();
    state.delete::<Chroot>("bookworm-i386").unwrap();
    // Repository only, and the one remote builds i386 only: amd64 has no builder.
    remote_with(&state, "http://b:1", 0.0, &["bookworm:i386"]);
    let id = greeter(&dirs);
    plan_new(&engine, &state, &dirs).unwrap();
    let builders = Builders {
        local_url: "http://local",
        public_url: "http://public:1",
        local_free: true,
        local_load: 0.0,
    };
    let Some(Next::NoBuilder(job, report)) = start_next(&engine, &state, &dirs, &builders).unwrap()
    else {
        panic!("no builder expected")
    };
    assert!(
        report.status.starts_with("no builder for bookworm/amd64"),
        "{}",
        report.status
    );
    assert!(
        start_next(&engine, &state, &dirs, &builders)
            .unwrap()
            .is_none(),
        "taken until recorded"
    );
    let e = finish(&engine, &state, &dirs, &job, &report).unwrap();
    assert!(
        e[0].reason.contains("no builder for bookworm/amd64"),
        "{e:?}"
    );
    assert_eq!(uploads(&state).unwrap()[0].state, UploadState::Failed);
    // A second remote that has the chroot, and a busier third: the least loaded one gets it,
    // with our public URL for its extra repository.
    remote_with(&state, "http://c:1", 0.5, &["bookworm:amd64"]);
    remote_with(&state, "http://d:1", 0.2, &["bookworm:amd64"]);
    retry(&state, &dirs, &id).unwrap();
    let Some(Next::Job(job, events)) = start_next(&engine, &state, &dirs, &builders).unwrap()
    else {
        panic!("a job expected")
    };
    assert_eq!(job.dispatch.as_deref(), Some("http://d:1"));
    assert!(job.extra_repositories[0].starts_with("deb http://public:1/repositories/test "));
    assert!(
        events[0].reason.ends_with("by http://d:1"),
        "{}",
        events[0].reason
    );
    let stored = &builds_of(&state, &id).unwrap()[0];
    assert_eq!(
        (stored.state, stored.builder.as_str()),
        (State::Building, "http://d:1")
    );
    // Handed out: a restart keeps it with the remote.
    assert_eq!(recover(&state).unwrap(), 0);
    assert_eq!(
        dispatched(&engine, &state, &dirs, &builders).unwrap().len(),
        1
    );
}
