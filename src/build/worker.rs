//! Runs the build queue: plans new uploads, starts jobs while build slots are free, runs each
//! in its own thread through a [`Builder`], and stores results. Chroot preparation runs here
//! too, in the background.
//!
//! The worker only touches the store through a [`Host`] (the daemon's engine lock), and only
//! while the host is running (maintenance holds builds back; running ones finish).

use super::chroot::{self, Chroot, ChrootState};
use super::queue::{self, Builder, Dirs, Job, now};
use super::sbuild::{self, Outcome, Report};
use crate::incoming::Event;
use crate::repo::Engine;
use crate::state::{StateError, StateStore};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What the worker needs from the daemon.
pub trait Host: Send + Sync + 'static {
    /// Runs `f` with the write token held.
    fn with_stores(&self, f: &mut dyn FnMut(&Engine, &StateStore));
    /// Runs `f` with a reading engine, without the write token (staging results).
    fn with_engine(&self, f: &mut dyn FnMut(&Engine));
    /// Tells the world (event files, hooks, live stream).
    fn announce(&self, events: Vec<Event>);
    /// Started (not in maintenance).
    fn running(&self) -> bool;
    /// Runs `f` with what builds for and by remotes need, without the write token: our
    /// archive key, the state store, and our URL as peers reach it.
    fn with_peer(&self, f: &mut dyn FnMut(&crate::openpgp::ArchiveKey, &StateStore, &str));
}

/// Shared between the worker and the API: wake-ups, cancellations, counts.
#[derive(Debug, Default)]
pub struct Control {
    wake: Mutex<bool>,
    cond: Condvar,
    cancelled: Mutex<HashSet<String>>,
    /// Chroots to prepare.
    preparing: Mutex<Vec<Chroot>>,
    /// Ids of the chroots being prepared now: never two preparations of one chroot.
    in_progress: Mutex<HashSet<String>>,
    /// Builds running now.
    pub active: AtomicUsize,
    /// Build slots (set when the worker starts).
    pub slots: AtomicUsize,
    /// Panics the worker, its builds and its chroot preparations survived.
    pub panics: AtomicU64,
    /// The daemon is shutting down: no build starts, running ones stop and are queued again.
    stopping: std::sync::atomic::AtomicBool,
    /// Builds per remote, for `/metrics`.
    pub farm: super::farm::FarmCounts,
    /// Raised when a result of a build handed to a remote arrived (wakes the waiters).
    pub results_in: Signal,
    /// Raised when a build we ran for a remote ended (wakes the result sender).
    pub results_out: Signal,
    /// When each remote was last woken (at most every [`WAKE_EVERY`]).
    woken: Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// A wake-up for threads that otherwise look again after a timeout: each raise bumps a
/// generation, and a waiter waits for a generation after the one it saw.
#[derive(Debug, Default)]
pub struct Signal {
    generation: Mutex<u64>,
    cond: Condvar,
}

impl Signal {
    pub fn raise(&self) {
        *self.generation.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.cond.notify_all();
    }

    /// The generation now (take it before looking, then wait since it).
    pub fn seen(&self) -> u64 {
        *self.generation.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a raise after generation `seen`, or `timeout`.
    pub fn wait_since(&self, seen: u64, timeout: Duration) {
        let guard = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .cond
            .wait_timeout_while(guard, timeout, |g| *g == seen)
            .unwrap_or_else(|e| e.into_inner());
    }
}

/// How often a remote that builds wait for is woken at most.
const WAKE_EVERY: Duration = Duration::from_secs(300);

impl Control {
    /// Makes the worker look at the queue now.
    pub fn nudge(&self) {
        *self.wake.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cond.notify_all();
    }

    /// Records a chroot as waiting to be prepared and asks the worker to prepare it.
    pub fn request(&self, state: &StateStore, mut chroot: Chroot) -> Result<(), StateError> {
        chroot.state = ChrootState::Preparing;
        chroot.message = "waiting to be prepared".to_string();
        state.put(&chroot.id(), &chroot)?;
        self.prepare(chroot);
        Ok(())
    }

    /// Prepares a chroot in the background.
    fn prepare(&self, chroot: Chroot) {
        self.preparing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(chroot);
        self.nudge();
    }

    /// The requested preparations to start now: each chroot once, and none that is being
    /// prepared already (the daemon's default chroot and the restart pass may ask for the
    /// same one). Each is in progress until [`Control::prepared`].
    fn take_preparations(&self) -> Vec<Chroot> {
        let waiting =
            std::mem::take(&mut *self.preparing.lock().unwrap_or_else(|e| e.into_inner()));
        let mut running = self.in_progress.lock().unwrap_or_else(|e| e.into_inner());
        waiting
            .into_iter()
            .filter(|c| running.insert(c.id()))
            .collect()
    }

    /// A preparation ended.
    fn prepared(&self, id: &str) {
        self.in_progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Stops the running builds of an upload.
    pub fn cancel(&self, upload: &str) {
        self.cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(upload.to_string());
        self.nudge();
    }

    pub(super) fn is_cancelled(&self, upload: &str) -> bool {
        self.cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(upload)
    }

    /// Lets an upload's builds run again (`retry`).
    pub fn forget(&self, upload: &str) {
        self.cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(upload);
    }

    /// For a shutdown: no new builds start; running ones are stopped (sbuild cleans its
    /// session up) and queued again. Waits up to `wait` for them; returns how many still run.
    pub fn shut_down(&self, wait: Duration) -> usize {
        self.stopping.store(true, Ordering::SeqCst);
        self.nudge();
        let started = std::time::Instant::now();
        while self.active.load(Ordering::SeqCst) > 0 && started.elapsed() < wait {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.active.load(Ordering::SeqCst)
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// mini-buildd's load: running builds per slot; -1 while in maintenance.
    pub fn load(&self, running: bool) -> f64 {
        if !running {
            return -1.0;
        }
        let slots = self.slots.load(Ordering::SeqCst).max(1);
        self.active.load(Ordering::SeqCst) as f64 / slots as f64
    }

    fn wait(&self, timeout: Duration) {
        let guard = self.wake.lock().unwrap_or_else(|e| e.into_inner());
        let (mut woken, _) = self
            .cond
            .wait_timeout_while(guard, timeout, |w| !*w)
            .unwrap_or_else(|e| e.into_inner());
        *woken = false;
    }
}

/// How the worker is set up.
#[derive(Clone)]
pub struct Settings {
    pub home: PathBuf,
    pub slots: usize,
    /// Where chroots reach our HTTP server.
    pub local_url: String,
    /// How builds handed to remotes are watched.
    pub waiting: super::dispatch::Waiting,
}

/// Starts the worker thread. The worker is supervised: a panic in one of its rounds is
/// logged, counted ([`Control::panics`]) and the next round runs; a panicking build fails
/// that build and still gives its slot back.
pub fn spawn<H: Host>(
    host: Arc<H>,
    control: Arc<Control>,
    builder: Arc<dyn Builder>,
    settings: Settings,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("mbd-builds".to_string())
        .spawn(move || run(host, control, builder, settings))
        .expect("spawning the build worker")
}

fn run<H: Host>(
    host: Arc<H>,
    control: Arc<Control>,
    builder: Arc<dyn Builder>,
    settings: Settings,
) {
    control.slots.store(settings.slots, Ordering::SeqCst);
    let dirs = Dirs::new(&settings.home);
    supervised(&control, "recovering the build queue", || {
        recover(&*host, &control, &settings.home)
    });
    supervised(&control, "resuming builds handed to remotes", || {
        resume_dispatched(&host, &control, &settings, &dirs)
    });
    loop {
        supervised(&control, "a round of the build worker", || {
            round(&host, &control, &builder, &settings, &dirs)
        });
        control.wait(Duration::from_secs(2));
    }
}

/// Runs `f`; a panic in it is logged with `what` and counted instead of ending the thread.
fn supervised(control: &Control, what: &str, f: impl FnOnce()) {
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        control.panics.fetch_add(1, Ordering::SeqCst);
        tracing::error!(task = what, panic = %panic_message(&*payload), "a background task panicked; it goes on");
    }
}

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

/// At start: builds a previous run left `building` are queued again, chroots whose
/// preparation was interrupted are prepared again, and ready chroots get their schroot
/// configuration under this home's name (earlier versions used a name every home shared).
fn recover<H: Host + ?Sized>(host: &H, control: &Control, home: &Path) {
    let mut ready = Vec::new();
    host.with_stores(&mut |_, state| {
        match queue::recover(state) {
            Ok(0) => {}
            Ok(n) => tracing::info!(builds = n, "interrupted builds queued again"),
            Err(e) => tracing::error!(error = %e, "recovering the build queue"),
        }
        match crate::remote::builds::recover(state) {
            Ok(0) => {}
            Ok(n) => tracing::info!(builds = n, "interrupted builds for remotes queued again"),
            Err(e) => tracing::error!(error = %e, "recovering the builds for remotes"),
        }
        for c in chroot::all(state).unwrap_or_default() {
            match c.state {
                ChrootState::Preparing => control.prepare(c),
                ChrootState::Ready => ready.push(c),
                ChrootState::Failed => {}
            }
        }
    });
    // The helper runs outside the stores' write.
    for mut c in ready {
        let outcome = chroot::migrate(&c, home);
        match &outcome {
            Ok(false) => continue,
            Ok(true) => {
                tracing::info!(chroot = %c.id(), name = %c.schroot_name(home), "schroot configuration now under this home's name")
            }
            Err(e) => {
                tracing::error!(chroot = %c.id(), error = %e, "migrating a chroot's schroot configuration");
                c.state = ChrootState::Failed;
                c.message = format!("its schroot configuration could not be written: {e}");
                c.changed = now();
            }
        }
        if outcome.is_err() {
            let key = c.id();
            host.with_stores(&mut |_, state| {
                if let Err(e) = state.put(&key, &c) {
                    tracing::error!(error = %e, "storing a chroot");
                }
            });
        }
    }
}

/// One round: start the chroot preparations asked for, plan new uploads, start builds here
/// while slots are free, hand builds to remotes, and run the builds remotes asked of us.
fn round<H: Host>(
    host: &Arc<H>,
    control: &Arc<Control>,
    builder: &Arc<dyn Builder>,
    settings: &Settings,
    dirs: &Dirs,
) {
    for c in control.take_preparations() {
        prepare_chroot(host.clone(), control.clone(), &settings.home, c);
    }
    if !host.running() || control.is_stopping() {
        return;
    }
    let mut public_url = String::new();
    host.with_peer(&mut |_, _, url| public_url = url.to_string());
    let mut local = Vec::new();
    let mut remote = Vec::new();
    let mut ended = Vec::new();
    let mut wake = Vec::new();
    let mut events = Vec::new();
    host.with_stores(&mut |engine, state| {
        match queue::plan_new(engine, state, dirs) {
            Ok(e) => events.extend(e),
            Err(e) => tracing::error!(error = %e, "planning builds"),
        }
        let free = |n: usize| control.active.load(Ordering::SeqCst) + n < settings.slots;
        loop {
            let running = control.active.load(Ordering::SeqCst) + local.len();
            let builders = queue::Builders {
                local_url: &settings.local_url,
                public_url: &public_url,
                local_free: free(local.len()),
                local_load: running as f64 / settings.slots.max(1) as f64,
            };
            match queue::start_next(engine, state, dirs, &builders) {
                Ok(Some(queue::Next::Job(job, e))) => {
                    events.extend(e);
                    if job.dispatch.is_some() {
                        remote.push(*job);
                    } else {
                        local.push(*job);
                    }
                }
                Ok(Some(queue::Next::NoBuilder(job, report))) => ended.push((*job, report)),
                Ok(Some(queue::Next::Wake(urls))) => {
                    wake = urls;
                    break;
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "starting a build");
                    break;
                }
            }
        }
        while free(local.len()) {
            let ready = |codename: &str, arch: &str| {
                state
                    .get::<Chroot>(&format!("{codename}-{arch}"))
                    .ok()
                    .flatten()
                    .is_some_and(|c| c.state == ChrootState::Ready && !c.deactivated)
            };
            match crate::remote::builds::start_next(state, &ready, now()) {
                Ok(Some(rb)) => local.push(super::farm::job_for_remote(&settings.home, &rb)),
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "starting a build for a remote");
                    break;
                }
            }
        }
    });
    host.announce(events);
    for (job, report) in ended {
        conclude(&**host, dirs, &job, report);
    }
    for job in local {
        let slot = Slot::take(control.clone());
        let (host, builder, dirs) = (host.clone(), builder.clone(), dirs.clone());
        std::thread::spawn(move || run_build(&*host, &slot, &*builder, &dirs, &job));
    }
    for job in remote {
        spawn_dispatch(host, control, settings, dirs, job);
    }
    wake_remotes(host, control, wake);
}

/// A thread that hands a build to a remote and waits for it (no build slot here).
fn spawn_dispatch<H: Host>(
    host: &Arc<H>,
    control: &Arc<Control>,
    settings: &Settings,
    dirs: &Dirs,
    job: Job,
) {
    let (host, control, dirs, waiting) = (
        host.clone(),
        control.clone(),
        dirs.clone(),
        settings.waiting,
    );
    std::thread::spawn(move || {
        let id = job.upload.id.clone();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::farm::run_dispatch(&*host, &control, &dirs, &job, waiting)
        }));
        if let Err(payload) = outcome {
            control.panics.fetch_add(1, Ordering::SeqCst);
            let why = panic_message(&*payload);
            tracing::error!(upload = %id, panic = %why, "a remote build's waiter panicked");
            let report = Report {
                outcome: Outcome::Failed,
                status: format!("the remote build's waiter panicked: {why}"),
                fail_stage: None,
            };
            conclude(&*host, &dirs, &job, report);
        }
    });
}

/// At start: the builds remotes were building when we stopped get their waiters again.
fn resume_dispatched<H: Host>(
    host: &Arc<H>,
    control: &Arc<Control>,
    settings: &Settings,
    dirs: &Dirs,
) {
    let mut public_url = String::new();
    host.with_peer(&mut |_, _, url| public_url = url.to_string());
    let mut jobs = Vec::new();
    host.with_stores(&mut |engine, state| {
        let builders = queue::Builders {
            local_url: &settings.local_url,
            public_url: &public_url,
            local_free: false,
            local_load: 0.0,
        };
        match queue::dispatched(engine, state, dirs, &builders) {
            Ok(j) => jobs = j,
            Err(e) => tracing::error!(error = %e, "finding builds handed to remotes"),
        }
    });
    for job in jobs {
        tracing::info!(upload = %job.upload.id, arch = %job.build.architecture, remote = ?job.dispatch, "waiting again for a remote build");
        spawn_dispatch(host, control, settings, dirs, job);
    }
}

/// Runs the wake command of remotes builds wait for (each at most every [`WAKE_EVERY`]).
fn wake_remotes<H: Host>(host: &Arc<H>, control: &Arc<Control>, urls: Vec<String>) {
    for url in urls {
        {
            let mut woken = control.woken.lock().unwrap_or_else(|e| e.into_inner());
            if woken.get(&url).is_some_and(|t| t.elapsed() < WAKE_EVERY) {
                continue;
            }
            woken.insert(url.clone(), std::time::Instant::now());
        }
        let mut remote = None;
        host.with_peer(&mut |_, state, _| {
            remote = state.get::<crate::remote::Remote>(&url).ok().flatten()
        });
        let Some(remote) = remote else { continue };
        std::thread::spawn(move || {
            let http = crate::config::Http::new(Duration::from_secs(10));
            match crate::remote::wake(&remote, &http, Duration::from_secs(5), 3) {
                Ok(_) => tracing::info!(remote = %remote.url, "woke a remote builds wait for"),
                Err(e) => tracing::warn!(remote = %remote.url, error = %e, "waking a remote"),
            }
        });
    }
}

/// A build slot in use; given back when dropped, also when the build's thread unwinds.
struct Slot(Arc<Control>);

impl Slot {
    fn take(control: Arc<Control>) -> Slot {
        control.active.fetch_add(1, Ordering::SeqCst);
        Slot(control)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
        self.0.nudge();
    }
}

/// Runs one build (ours, or one a remote asked of us) and stores its result. A panic in the
/// builder is that build's failure.
fn run_build<H: Host + ?Sized>(
    host: &H,
    slot: &Slot,
    builder: &dyn Builder,
    dirs: &Dirs,
    job: &Job,
) {
    let control = &slot.0;
    let id = job.upload.id.clone();
    let cancel_key = job.for_remote.clone().unwrap_or_else(|| id.clone());
    let arch = &job.build.architecture;
    tracing::info!(upload = %id, %arch, for_remote = ?job.for_remote, "build started");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        builder.build(job, &|| {
            control.is_cancelled(&cancel_key) || control.is_stopping()
        })
    }))
    .unwrap_or_else(|payload| {
        control.panics.fetch_add(1, Ordering::SeqCst);
        let why = panic_message(&*payload);
        tracing::error!(upload = %id, %arch, panic = %why, "a build panicked");
        Report {
            outcome: Outcome::Failed,
            status: format!("the build panicked: {why}"),
            fail_stage: None,
        }
    });
    if control.is_stopping() && result.outcome != Outcome::Successful {
        // Stopped by the shutdown, not failed: it runs again after the next start.
        tracing::info!(upload = %id, %arch, "build stopped by the shutdown; queued again");
        if job.for_remote.is_none() {
            host.with_stores(&mut |_, state| {
                if let Err(e) = queue::requeue(state, job) {
                    tracing::error!(error = %e, upload = %id, "queueing a stopped build again");
                }
            });
        }
        return;
    }
    tracing::info!(upload = %id, %arch, status = %result.status, "build ended");
    if job.for_remote.is_some() {
        super::farm::finish_for_remote(host, &dirs.home, job, &result);
        return control.results_out.raise();
    }
    conclude(host, dirs, job, result);
}

/// Stores a build's result and announces it; installs the upload if it was its last build.
pub(super) fn conclude<H: Host + ?Sized>(host: &H, dirs: &Dirs, job: &Job, result: Report) {
    let id = &job.upload.id;
    let mut finished = queue::Finished::default();
    host.with_stores(
        &mut |_, state| match queue::record_result(state, dirs, job, &result) {
            Ok(f) => finished = f,
            Err(e) => tracing::error!(error = %e, upload = %id, "storing a build result"),
        },
    );
    host.announce(finished.events);
    if let Some(install) = finished.install {
        install_results(host, dirs, install);
    }
}

/// Stages an upload's results without the write token, then takes it to install them.
fn install_results<H: Host + ?Sized>(host: &H, dirs: &Dirs, install: queue::Install) {
    let mut staged = None;
    host.with_engine(&mut |engine| staged = Some(install.stage(engine)));
    let mut work = staged.map(|s| (install, s));
    let mut events = Vec::new();
    host.with_stores(&mut |engine, state| {
        let Some((install, staged)) = work.take() else {
            return;
        };
        let id = install.upload().to_string();
        match queue::install(engine, state, dirs, install, staged) {
            Ok(e) => events = e,
            Err(e) => tracing::error!(error = %e, upload = %id, "installing build results"),
        }
    });
    host.announce(events);
}

/// The real builder: sbuild in our schroot chroots.
pub struct Sbuild {
    pub home: PathBuf,
    /// Per-build time limit.
    pub limit: Duration,
    /// `--jobs`
    pub jobs: u32,
    /// Lintian's mode unless the distribution or the upload sets one.
    pub lintian: crate::changelog::QaMode,
    /// autopkgtest's mode unless the distribution or the upload sets one.
    pub autopkgtest: crate::changelog::QaMode,
}

impl Sbuild {
    /// The archive key (armored) that signs our repositories, for `--extra-repository-key`.
    fn key_file(&self) -> PathBuf {
        self.home.join("var/builds/archive-key.asc")
    }

    /// Writes the archive key where sbuild reads it.
    pub fn write_key(&self, armored: &[u8]) -> std::io::Result<()> {
        let path = self.key_file();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, armored)
    }
}

impl Builder for Sbuild {
    fn build(&self, job: &Job, cancelled: &dyn Fn() -> bool) -> Report {
        let failed = |status: String| Report {
            outcome: Outcome::Failed,
            status,
            fail_stage: None,
        };
        if job.dir.exists() {
            let _ = std::fs::remove_dir_all(&job.dir);
        }
        if let Err(e) = std::fs::create_dir_all(&job.dir) {
            return failed(format!("{}: {e}", job.dir.display()));
        }
        let BuildOptions {
            deb_build_options,
            profiles,
            add_depends,
            lintian,
            autopkgtest,
        } = upload_options(job).over(&job.options, self.lintian, self.autopkgtest);
        let libdir = self
            .home
            .join("var/chroots-libdir")
            .join(&job.codename)
            .join(&job.build.architecture);
        if let Err(e) = std::fs::create_dir_all(&libdir) {
            return failed(format!("{}: {e}", libdir.display()));
        }
        let inv = sbuild::Invocation {
            codename: job.codename.clone(),
            architecture: job.build.architecture.clone(),
            arch_all: job.build.arch_all,
            chroot: job.chroot.clone(),
            extra_repositories: job.extra_repositories.clone(),
            extra_repository_key: Some(
                job.repository_key
                    .clone()
                    .unwrap_or_else(|| self.key_file()),
            ),
            jobs: self.jobs,
            deb_build_options,
            profiles,
            pinned: job.pinned.clone(),
            add_depends,
            chroot_setup_script: job.options.chroot_setup_script.clone(),
            sbuildrc_snippet: job
                .options
                .sbuildrc_snippet
                .replace("%LIBDIR%", &libdir.display().to_string()),
            dsc: job.queue_dir.join(&job.upload.dsc),
            resolver: match job.options.build_dep_resolver.as_str() {
                "" => "aptitude".to_string(),
                r => r.to_string(),
            },
        };
        let rc = job.dir.join(".sbuildrc");
        if let Err(e) = std::fs::write(&rc, inv.sbuildrc()) {
            return failed(format!("{}: {e}", rc.display()));
        }
        let exit = match sbuild::run(&inv, &job.dir, &job.log, self.limit, cancelled) {
            Ok(c) => c,
            Err(e) => return failed(format!("sbuild did not run: {e}")),
        };
        let log = std::fs::read(&job.log).unwrap_or_default();
        let report = sbuild::report(&String::from_utf8_lossy(&log), exit);
        let status = if exit.is_none() && cancelled() {
            "cancelled".to_string()
        } else {
            report.status
        };
        if report.outcome != Outcome::Successful || status == "skipped" {
            return Report { status, ..report };
        }
        let changes = job
            .dir
            .join(job.upload.result_changes_name(&job.build.architecture));
        let qa_failed = |stage: &str, why: String| Report {
            outcome: Outcome::Failed,
            status: why,
            fail_stage: Some(stage.to_string()),
        };
        if let Err(why) = super::lintian::check(&changes, lintian, &job.log) {
            return qa_failed("lintian", why);
        }
        let key = job
            .repository_key
            .clone()
            .unwrap_or_else(|| self.key_file());
        let run = super::autopkgtest::Run {
            dsc: &inv.dsc,
            changes: &changes,
            chroot: &job.chroot,
            extra_repositories: (&job.extra_repositories, key.as_path()),
            output: job.dir.join("autopkgtest"),
            limit: self.limit,
        };
        match super::autopkgtest::check(&run, autopkgtest, &job.log, cancelled) {
            Err(why) => qa_failed("autopkgtest", why),
            Ok(None) => Report { status, ..report },
            Ok(Some(verdict)) => Report {
                status: format!("{status}; autopkgtest: {}", verdict.word()),
                ..report
            },
        }
    }
}

/// What an upload's MINI_BUILDD_OPTION lines (its changelog entry) ask of its builds.
#[derive(Debug, Default)]
struct UploadOptions {
    deb_build_options: Vec<String>,
    profiles: Vec<String>,
    add_depends: Vec<String>,
    lintian: Option<crate::changelog::QaMode>,
    autopkgtest: Option<crate::changelog::QaMode>,
}

/// The resolved options of one build.
#[derive(Debug)]
struct BuildOptions {
    deb_build_options: Vec<String>,
    profiles: Vec<String>,
    add_depends: Vec<String>,
    lintian: crate::changelog::QaMode,
    autopkgtest: crate::changelog::QaMode,
}

impl UploadOptions {
    /// The upload's options over its distribution's defaults: word lists add up (the
    /// distribution's first); for each QA mode the upload's wins, then the distribution's,
    /// then the daemon's.
    fn over(
        self,
        dist: &crate::repo::distribution::BuildOptions,
        daemon_lintian: crate::changelog::QaMode,
        daemon_autopkgtest: crate::changelog::QaMode,
    ) -> BuildOptions {
        let join = |a: &[String], b: Vec<String>| {
            let mut all = a.to_vec();
            all.extend(b);
            all
        };
        let mode = |upload: Option<_>, dist: &str, daemon| {
            upload
                .or_else(|| crate::changelog::QaMode::parse(dist))
                .unwrap_or(daemon)
        };
        BuildOptions {
            deb_build_options: join(&dist.deb_build_options, self.deb_build_options),
            profiles: join(&dist.deb_build_profiles, self.profiles),
            add_depends: join(&dist.add_depends, self.add_depends),
            lintian: mode(self.lintian, &dist.lintian_mode, daemon_lintian),
            autopkgtest: mode(self.autopkgtest, &dist.autopkgtest_mode, daemon_autopkgtest),
        }
    }
}

/// The upload's options for the job's architecture.
fn upload_options(job: &Job) -> UploadOptions {
    use crate::changelog::{OptionKey, OptionValue};
    let path = job.queue_dir.join(&job.upload.changes);
    let Ok(changes) = crate::changes::Changes::read(&path, crate::files::Trust::Unchecked) else {
        return UploadOptions::default();
    };
    let Ok(options) = crate::changelog::UploadOptions::from_changes_text(changes.changes_text())
    else {
        return UploadOptions::default();
    };
    let arch = Some(job.build.architecture.as_str());
    let words = |key| match options.get(key, arch) {
        Some(OptionValue::Text(t)) => t.split_whitespace().map(str::to_string).collect(),
        Some(OptionValue::List(l)) => l.clone(),
        _ => Vec::new(),
    };
    UploadOptions {
        deb_build_options: words(OptionKey::DebBuildOptions),
        profiles: words(OptionKey::DebBuildProfiles)
            .iter()
            .flat_map(|w| w.split(','))
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect(),
        add_depends: match options.get(OptionKey::AddDepends, arch) {
            Some(OptionValue::List(l)) => l.clone(),
            _ => Vec::new(),
        },
        lintian: match options.get(OptionKey::LintianMode, arch) {
            Some(OptionValue::Mode(m)) => Some(*m),
            _ => None,
        },
        autopkgtest: match options.get(OptionKey::AutopkgtestMode, arch) {
            Some(OptionValue::Mode(m)) => Some(*m),
            _ => None,
        },
    }
}

/// Prepares a chroot in the background: the store says `preparing` until it is `ready` (or
/// `failed`, with the reason and the log).
fn prepare_chroot<H: Host>(host: Arc<H>, control: Arc<Control>, home: &Path, mut c: Chroot) {
    let home = home.to_path_buf();
    c.state = ChrootState::Preparing;
    c.message = format!("preparing; log: {}", c.log_path(&home).display());
    c.changed = now();
    let key = c.id();
    let stored = c.clone();
    host.with_stores(&mut |_, state| {
        if let Err(e) = state.put(&key, &stored) {
            tracing::error!(error = %e, "storing a chroot");
        }
    });
    std::thread::spawn(move || {
        tracing::info!(chroot = %c.id(), mirror = %c.mirror, "preparing a chroot");
        let started = std::time::Instant::now();
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| chroot::prepare(&c, &home)));
        c.changed = now();
        match result {
            Err(payload) => {
                control.panics.fetch_add(1, Ordering::SeqCst);
                c.state = ChrootState::Failed;
                c.message = format!("the preparation panicked: {}", panic_message(&*payload));
                tracing::error!(chroot = %c.id(), panic = %c.message, "preparing a chroot panicked");
            }
            Ok(Err(e)) => {
                c.state = ChrootState::Failed;
                c.message = e.to_string();
                tracing::error!(chroot = %c.id(), error = %e, "preparing a chroot failed");
            }
            Ok(Ok(())) => {
                c.state = ChrootState::Ready;
                c.message = format!("prepared in {} s", started.elapsed().as_secs());
                tracing::info!(chroot = %c.id(), seconds = started.elapsed().as_secs(), "chroot ready");
            }
        }
        host.with_stores(&mut |_, state| {
            if let Err(e) = state.put(&key, &c) {
                tracing::error!(error = %e, "storing a chroot");
            }
        });
        control.prepared(&c.id());
        control.nudge();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_options_add_to_and_override_the_distribution_defaults() {
        use crate::changelog::QaMode;
        let dist = crate::repo::distribution::BuildOptions {
            deb_build_options: vec!["noddebs".into()],
            deb_build_profiles: vec!["nodoc".into()],
            lintian_mode: "warnfail".into(),
            add_depends: vec!["libfoo-dev".into()],
            ..Default::default()
        };
        let upload = UploadOptions {
            deb_build_options: vec!["nocheck".into()],
            add_depends: vec!["bar (>= 2)".into()],
            autopkgtest: Some(QaMode::ErrFail),
            ..UploadOptions::default()
        };
        let o = upload.over(&dist, QaMode::Ignore, QaMode::Disabled);
        assert_eq!(o.deb_build_options, ["noddebs", "nocheck"]);
        assert_eq!(o.add_depends, ["libfoo-dev", "bar (>= 2)"]);
        assert_eq!(o.profiles, ["nodoc"]);
        assert_eq!(o.lintian, QaMode::WarnFail);
        assert_eq!(o.autopkgtest, QaMode::ErrFail);
        let upload = UploadOptions {
            lintian: Some(QaMode::Disabled),
            ..UploadOptions::default()
        };
        let o = upload.over(&dist, QaMode::Ignore, QaMode::Ignore);
        assert_eq!(o.lintian, QaMode::Disabled);
        assert_eq!(o.autopkgtest, QaMode::Ignore);
        let plain = crate::repo::distribution::BuildOptions {
            autopkgtest_mode: "warnfail".into(),
            ..Default::default()
        };
        let o = UploadOptions::default().over(&plain, QaMode::ErrFail, QaMode::Disabled);
        assert_eq!(o.lintian, QaMode::ErrFail);
        assert_eq!(o.autopkgtest, QaMode::WarnFail);
    }

    #[test]
    fn a_chroot_is_prepared_once_at_a_time() {
        let control = Control::default();
        let c = Chroot::new("bookworm", "amd64", "http://m", Default::default());
        // The default setup and the restart pass both ask.
        control.prepare(c.clone());
        control.prepare(c.clone());
        control.prepare(Chroot::new(
            "bookworm",
            "i386",
            "http://m",
            Default::default(),
        ));
        let ids: Vec<String> = control.take_preparations().iter().map(Chroot::id).collect();
        assert_eq!(ids, ["bookworm-amd64", "bookworm-i386"]);
        // Asked again while it runs: not started twice.
        control.prepare(c.clone());
        assert!(control.take_preparations().is_empty());
        control.prepared("bookworm-amd64");
        control.prepare(c);
        assert_eq!(control.take_preparations().len(), 1);
    }
}
