//! The durable build queue: what was accepted, which builds it needs, how they went.
//!
//! Records live in the state store: [`Upload`] `<source>_<version>` for each accepted source
//! upload (waiting in `<home>/var/queue/<source>_<version>/`), and [`Build`]
//! `<source>_<version>/<arch>` for each of its builds. States use the names of Debian's
//! buildd: needs-build, building, built, failed, dep-wait (and cancelled). A restart puts
//! `building` back to `needs-build`, so an interrupted build runs again. Retention
//! ([`prune_uploads`]) drops old ended uploads with their builds and logs.
//!
//! The steps are functions over the [`Engine`] and the [`StateStore`], called with the write
//! token held: [`plan_new`] turns new queue directories into records, [`start_next`] hands
//! out the next job when a slot and its chroot are free, [`record_result`] stores a result
//! and, once every build of the upload has ended, fails the upload or hands back its
//! [`Install`]; that is staged without the token ([`Install::stage`]: verifying and copying
//! the results) and [`install`]ed with it. The build itself runs outside the token, through
//! a [`Builder`].

use super::BuildError;
use super::chroot::{Chroot, ChrootState};
use super::sbuild::{Outcome, Report};
use crate::changes::Changes;
use crate::dsc::Dsc;
use crate::files::Trust;
use crate::incoming::{Event, EventKind};
use crate::repo::{Engine, RepoError, Staged};
use crate::state::{Record, StateStore};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The state of one architecture's build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    NeedsBuild,
    Building,
    Built,
    Failed,
    DepWait,
    Cancelled,
}

impl State {
    /// Whether the build has ended (for now: `retry` starts it again).
    pub fn is_final(self) -> bool {
        !matches!(self, State::NeedsBuild | State::Building)
    }
}

/// One architecture's build of an upload (`build/<upload>/<arch>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    /// `<source>_<version>`
    pub upload: String,
    pub architecture: String,
    pub arch_all: bool,
    pub optional: bool,
    pub state: State,
    /// sbuild's status, or why it did not run.
    pub status: String,
    pub fail_stage: Option<String>,
    /// Seconds since the epoch; 0 when not yet.
    pub started: i64,
    pub finished: i64,
    pub attempts: u32,
    /// The remote it was handed to (its URL); empty: built here.
    #[serde(default)]
    pub builder: String,
    /// The id of the request that remote builds: only its result counts.
    #[serde(default)]
    pub request: String,
}

/// What happened to an accepted upload as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UploadState {
    Building,
    Installed,
    Failed,
    Cancelled,
}

/// An accepted source upload (`upload/<source>_<version>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    pub id: String,
    pub source: String,
    pub version: String,
    pub distribution: String,
    /// File names in the queue directory.
    pub changes: String,
    pub dsc: String,
    pub state: UploadState,
    pub reason: String,
    pub created: i64,
    /// `Changed-By` of the accepted `.changes` (mail's automatic recipients).
    #[serde(default)]
    pub changed_by: String,
    /// Its `Maintainer`.
    #[serde(default)]
    pub maintainer: String,
}

impl Upload {
    /// The `.changes` sbuild writes for an architecture:
    /// `<source>_<version without epoch>_<arch>.changes`.
    pub fn result_changes_name(&self, arch: &str) -> String {
        let version = self
            .version
            .split_once(':')
            .map_or(self.version.as_str(), |(_, v)| v);
        format!("{}_{version}_{arch}.changes", self.source)
    }
}

/// A build handed to a [`Builder`].
#[derive(Debug, Clone)]
pub struct Job {
    pub upload: Upload,
    pub build: Build,
    /// The upload's files.
    pub queue_dir: PathBuf,
    /// Where the build runs and leaves its results and log.
    pub dir: PathBuf,
    pub log: PathBuf,
    /// The schroot chroot to use.
    pub chroot: String,
    pub codename: String,
    /// `deb ...` of the target distribution, for build-dependencies from our repository.
    /// `deb` lines of our repository the build installs from: the target distribution and
    /// the ones its suite builds against ([`crate::repo::layout::Layout::build_suites`]).
    pub extra_repositories: Vec<String>,
    /// The distribution's defaults for its builds.
    pub options: crate::repo::distribution::BuildOptions,
    /// The distribution's extra sources the chroot does not carry (below
    /// [`crate::config::CHROOT_PRIORITY`]).
    pub pinned: Vec<super::sbuild::PinnedSource>,
    /// The remote (URL) this build is handed to instead of running here.
    pub dispatch: Option<String>,
    /// The request id when we build this for a remote.
    pub for_remote: Option<String>,
    /// The key of the repository in `extra_repositories`, when it is not ours.
    pub repository_key: Option<PathBuf>,
}

/// Runs one build (sbuild in production; a fake in unit tests) and says how it ended.
pub trait Builder: Send + Sync {
    fn build(&self, job: &Job, cancelled: &dyn Fn() -> bool) -> Report;
}

/// Seconds since the epoch.
pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Record for Upload {
    const TABLE: &'static str = "uploads";
}

impl Record for Build {
    const TABLE: &'static str = "builds";
}

fn build_key(upload: &str, arch: &str) -> String {
    format!("{upload}/{arch}")
}

/// Paths of a home's build work.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub home: PathBuf,
    pub queue: PathBuf,
    pub builds: PathBuf,
}

impl Dirs {
    pub fn new(home: &Path) -> Dirs {
        Dirs {
            home: home.to_path_buf(),
            queue: home.join("var/queue"),
            builds: home.join("var/builds"),
        }
    }

    pub fn job_dir(&self, upload: &str, arch: &str) -> PathBuf {
        self.builds.join(upload).join(arch)
    }

    /// The build log: served as `/logs/<upload>/<arch>`.
    pub fn log(&self, upload: &str, arch: &str) -> PathBuf {
        self.job_dir(upload, arch)
            .join(format!("{upload}_{arch}.build"))
    }
}

fn event(upload: &Upload, kind: EventKind, reason: String) -> Event {
    Event {
        id: String::new(),
        time: 0,
        kind,
        file: upload.changes.clone(),
        source: upload.source.clone(),
        version: upload.version.clone(),
        distribution: upload.distribution.clone(),
        reason,
        changed_by: upload.changed_by.clone(),
        maintainer: upload.maintainer.clone(),
    }
}

/// Every upload record, oldest first.
pub fn uploads(state: &StateStore) -> Result<Vec<Upload>, BuildError> {
    let mut all: Vec<Upload> = state.all::<Upload>()?.into_iter().map(|(_, u)| u).collect();
    all.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    Ok(all)
}

/// The uploads being built, oldest first. Each has its queue directory until it ends, so the
/// directory's names find them without decoding every upload record kept for history.
fn building(state: &StateStore, dirs: &Dirs) -> Result<Vec<Upload>, BuildError> {
    let Ok(entries) = std::fs::read_dir(&dirs.queue) else {
        return Ok(Vec::new());
    };
    let mut active = Vec::new();
    for e in entries.filter_map(Result::ok) {
        let id = e.file_name().to_string_lossy().into_owned();
        if id.starts_with('.') {
            continue;
        }
        if let Some(u) = state.get::<Upload>(&id)?
            && u.state == UploadState::Building
        {
            active.push(u);
        }
    }
    active.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    Ok(active)
}

/// The builds of an upload, by architecture.
pub fn builds_of(state: &StateStore, upload: &str) -> Result<Vec<Build>, BuildError> {
    Ok(state
        .under::<Build>(&format!("{upload}/"))?
        .into_iter()
        .map(|(_, b)| b)
        .collect())
}

/// Turns queue directories without records into an upload and its build requests. An upload
/// that cannot be planned fails (FAILED event) and leaves the queue.
pub fn plan_new(
    engine: &Engine,
    state: &StateStore,
    dirs: &Dirs,
) -> Result<Vec<Event>, BuildError> {
    let mut events = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dirs.queue) else {
        return Ok(events);
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    for id in names {
        if state.get::<Upload>(&id)?.is_some() {
            continue;
        }
        let dir = dirs.queue.join(&id);
        let mut upload = new_upload(&id);
        match plan_one(engine, &mut upload, &dir) {
            Ok(builds) => {
                let items: Vec<(String, &Build)> = builds
                    .iter()
                    .map(|b| (build_key(&id, &b.architecture), b))
                    .collect();
                let archs: Vec<&str> = builds.iter().map(|b| b.architecture.as_str()).collect();
                // Builds first: an upload record without them would look planned and empty.
                state.put_all::<Build, _>(&items)?;
                state.put(&id, &upload)?;
                tracing::info!(upload = %id, archs = ?archs, "build requests planned");
            }
            Err(reason) => {
                let mut u = upload;
                u.state = UploadState::Failed;
                u.reason = reason.clone();
                state.put(&id, &u)?;
                let _ = std::fs::remove_dir_all(&dir);
                events.push(event(&u, EventKind::Failed, reason));
            }
        }
    }
    Ok(crate::incoming::record(state, events)?)
}

/// A fresh upload record for a queue directory (filled in by [`plan_one`]).
fn new_upload(id: &str) -> Upload {
    Upload {
        id: id.to_string(),
        source: id.split('_').next().unwrap_or(id).to_string(),
        version: id.split_once('_').map(|(_, v)| v).unwrap_or("").to_string(),
        distribution: String::new(),
        changes: String::new(),
        dsc: String::new(),
        state: UploadState::Building,
        reason: String::new(),
        created: now(),
        changed_by: String::new(),
        maintainer: String::new(),
    }
}

/// Reads the upload's `.changes` and `.dsc` into `upload`; its builds, or why there are none.
fn plan_one(engine: &Engine, upload: &mut Upload, dir: &Path) -> Result<Vec<Build>, String> {
    let id = upload.id.clone();
    let file_ending = |suffix: &str| {
        std::fs::read_dir(dir).ok().and_then(|r| {
            r.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| n.ends_with(suffix))
        })
    };
    let changes_name =
        file_ending(".changes").ok_or_else(|| format!("{id}: no .changes in the queue"))?;
    upload.changes = changes_name.clone();
    let changes =
        Changes::read(&dir.join(&changes_name), Trust::Unchecked).map_err(|e| e.to_string())?;
    upload.source = changes.source.clone();
    upload.version = changes.version.to_string();
    let field = |name: &str| changes.paragraph.get(name).unwrap_or("").trim().to_string();
    upload.changed_by = field("Changed-By");
    upload.maintainer = field("Maintainer");
    let wanted = changes.distributions.first().cloned().unwrap_or_default();
    let meta = engine.meta_distributions().unwrap_or_default();
    upload.distribution = meta.get(&wanted).cloned().unwrap_or(wanted);
    let dsc_entry = changes
        .dsc()
        .ok_or_else(|| format!("{changes_name}: lists no .dsc"))?;
    upload.dsc = dsc_entry.name.clone();
    let dsc = Dsc::read(&dir.join(&upload.dsc), Trust::Unchecked).map_err(|e| e.to_string())?;
    let resolved = engine
        .resolve(&upload.distribution)
        .map_err(|e| e.to_string())?;
    let requests = super::request::plan(&dsc.source, &dsc.architectures, &resolved.distribution)
        .map_err(|e| e.to_string())?;
    Ok(requests
        .into_iter()
        .map(|r| Build {
            upload: id.clone(),
            architecture: r.architecture,
            arch_all: r.arch_all,
            optional: r.optional,
            state: State::NeedsBuild,
            status: String::new(),
            fail_stage: None,
            started: 0,
            finished: 0,
            attempts: 0,
            builder: String::new(),
            request: String::new(),
        })
        .collect())
}

/// At start: builds that were running when the daemon stopped run again.
pub fn recover(state: &StateStore) -> Result<usize, BuildError> {
    let mut n = 0;
    for (key, mut b) in state.all::<Build>()? {
        // A remote keeps building it: its waiter is resumed and takes the result.
        if b.state == State::Building && b.builder.is_empty() {
            b.state = State::NeedsBuild;
            b.status = "interrupted; to be built again".to_string();
            state.put(&key, &b)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Where builds run from here: our own chroots (`local_url` is where they reach our HTTP
/// server) and remotes (`public_url` is where they reach it), and whether a slot is free here.
pub struct Builders<'a> {
    pub local_url: &'a str,
    pub public_url: &'a str,
    pub local_free: bool,
    /// Our load (running builds per slot).
    pub local_load: f64,
}

/// What [`start_next`] hands out.
#[derive(Debug)]
pub enum Next {
    /// A build to run here, or to hand to `job.dispatch`; marked `building`.
    Job(Box<Job>, Vec<Event>),
    /// A build nothing can run: it fails with the report (recorded by the caller).
    NoBuilder(Box<Job>, Report),
    /// Builds wait for remotes that are down; these have a wake command.
    Wake(Vec<String>),
}

/// The next job, oldest upload first, for the least loaded builder that has a ready chroot
/// for it (see [`super::route::choose`]); marks the build `building`.
pub fn start_next(
    engine: &Engine,
    state: &StateStore,
    dirs: &Dirs,
    builders: &Builders<'_>,
) -> Result<Option<Next>, BuildError> {
    let mut wake = Vec::new();
    for upload in building(state, dirs)? {
        for mut build in builds_of(state, &upload.id)? {
            if build.state != State::NeedsBuild {
                continue;
            }
            let Ok(resolved) = engine.resolve(&upload.distribution) else {
                continue;
            };
            let codename = resolved.distribution.codename.clone();
            let chroot_id = format!("{codename}-{}", build.architecture);
            let local = state.get::<Chroot>(&chroot_id)?;
            let here = super::route::Here {
                chroot_known: local.is_some(),
                ready: local.is_some_and(|c| c.state == ChrootState::Ready && !c.deactivated),
                load: builders.local_load,
            };
            let choice = super::route::choose(state, &codename, &build.architecture, &here, &[])?;
            let dispatch = match choice {
                super::route::Choice::Here if builders.local_free => None,
                super::route::Choice::Remote(url) => Some(url),
                super::route::Choice::NoBuilder(why) => {
                    // Taken (so no round hands it out again) until its failure is recorded.
                    build.state = State::Building;
                    build.started = now();
                    build.attempts += 1;
                    state.put(&build_key(&upload.id, &build.architecture), &build)?;
                    let job = job_for(state, dirs, &resolved, &upload, &build, builders, None);
                    let report = Report {
                        outcome: Outcome::Failed,
                        status: why,
                        fail_stage: None,
                    };
                    return Ok(Some(Next::NoBuilder(Box::new(job), report)));
                }
                super::route::Choice::Wait(urls) => {
                    wake.extend(urls);
                    continue;
                }
                super::route::Choice::Here => continue,
            };
            build.state = State::Building;
            build.started = now();
            build.finished = 0;
            build.attempts += 1;
            build.status = dispatch
                .as_ref()
                .map(|u| format!("handed to {u}"))
                .unwrap_or_default();
            build.fail_stage = None;
            build.builder = dispatch.clone().unwrap_or_default();
            build.request.clear();
            state.put(&build_key(&upload.id, &build.architecture), &build)?;
            let job = job_for(state, dirs, &resolved, &upload, &build, builders, dispatch);
            let events = crate::incoming::record(
                state,
                vec![event(
                    &upload,
                    EventKind::Building,
                    match &job.dispatch {
                        None => format!("{} on {}", upload.id, build.architecture),
                        Some(u) => format!("{} on {} by {u}", upload.id, build.architecture),
                    },
                )],
            )?;
            return Ok(Some(Next::Job(Box::new(job), events)));
        }
    }
    wake.sort();
    wake.dedup();
    Ok((!wake.is_empty()).then_some(Next::Wake(wake)))
}

/// The job of one build: where it runs and what it installs from.
pub fn job_for(
    state: &StateStore,
    dirs: &Dirs,
    resolved: &crate::repo::Resolved,
    upload: &Upload,
    build: &Build,
    builders: &Builders<'_>,
    dispatch: Option<String>,
) -> Job {
    let codename = resolved.distribution.codename.clone();
    let chroot_id = format!("{codename}-{}", build.architecture);
    let components = resolved.distribution.components.join(" ");
    // A remote's chroot reaches our repository at our public URL.
    let base = if dispatch.is_some() {
        builders.public_url
    } else {
        builders.local_url
    };
    Job {
        queue_dir: dirs.queue.join(&upload.id),
        dir: dirs.job_dir(&upload.id, &build.architecture),
        log: dirs.log(&upload.id, &build.architecture),
        chroot: super::chroot::schroot_name(&dirs.home, &chroot_id),
        codename: codename.clone(),
        extra_repositories: resolved
            .layout
            .build_suites(&resolved.suite)
            .iter()
            .map(|s| {
                format!(
                    "deb {base}/repositories/{repo} {codename}-{repo}-{} {components}",
                    s.name,
                    repo = resolved.repository.identity,
                )
            })
            .collect(),
        options: resolved.distribution.build.clone(),
        pinned: crate::config::pinned_sources(state, &resolved.distribution)
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading the distribution's extra sources");
                Vec::new()
            })
            .into_iter()
            .filter(|p| p.priority < crate::config::CHROOT_PRIORITY)
            .collect(),
        upload: upload.clone(),
        build: build.clone(),
        dispatch,
        for_remote: None,
        repository_key: None,
    }
}

/// The builds handed to remotes that are still building (after a restart their waiters are
/// started again), with their jobs.
pub fn dispatched(
    engine: &Engine,
    state: &StateStore,
    dirs: &Dirs,
    builders: &Builders<'_>,
) -> Result<Vec<Job>, BuildError> {
    let mut jobs = Vec::new();
    for upload in building(state, dirs)? {
        for build in builds_of(state, &upload.id)? {
            if build.state != State::Building || build.builder.is_empty() {
                continue;
            }
            let Ok(resolved) = engine.resolve(&upload.distribution) else {
                continue;
            };
            let url = build.builder.clone();
            jobs.push(job_for(
                state,
                dirs,
                &resolved,
                &upload,
                &build,
                builders,
                Some(url),
            ));
        }
    }
    Ok(jobs)
}

/// A build stopped by a shutdown goes back to `needs-build` (its attempt is not counted
/// as a failure); nothing is announced.
pub fn requeue(state: &StateStore, job: &Job) -> Result<(), BuildError> {
    let key = build_key(&job.upload.id, &job.build.architecture);
    let Some(mut build) = state.get::<Build>(&key)? else {
        return Ok(());
    };
    if build.state == State::Building {
        build.state = State::NeedsBuild;
        build.status = "stopped by a shutdown; to be built again".to_string();
        build.started = 0;
        state.put(&key, &build)?;
    }
    Ok(())
}

/// Stores a finished build; when it was the upload's last, installs or fails the upload.
/// The three steps the worker takes apart (it stages without the write token) in one call.
pub fn finish(
    engine: &Engine,
    state: &StateStore,
    dirs: &Dirs,
    job: &Job,
    result: &Report,
) -> Result<Vec<Event>, BuildError> {
    let Finished {
        mut events,
        install: ready,
    } = record_result(state, dirs, job, result)?;
    if let Some(i) = ready {
        let staged = i.stage(engine);
        events.extend(install(engine, state, dirs, i, staged)?);
    }
    Ok(events)
}

/// A stored build result: what to announce, and the results to install if it was the
/// upload's last build and every mandatory one succeeded.
#[derive(Debug, Default)]
pub struct Finished {
    pub events: Vec<Event>,
    pub install: Option<Install>,
}

/// The files of an upload ready to go into its distribution: its source `.changes` and each
/// built architecture's.
#[derive(Debug)]
pub struct Install {
    upload: String,
    distribution: String,
    files: Vec<PathBuf>,
}

impl Install {
    /// The upload's id (`<source>_<version>`).
    pub fn upload(&self) -> &str {
        &self.upload
    }

    /// Verifies and copies the files into a staging area of the pool: the long part of an
    /// install, done without the write token.
    pub fn stage(&self, engine: &Engine) -> Result<Staged, RepoError> {
        engine.stage(&self.distribution, &self.files)
    }
}

/// Stores a finished build (with the write token held). When it was the upload's last: fails
/// the upload if a mandatory architecture did not build, or hands back its [`Install`].
pub fn record_result(
    state: &StateStore,
    dirs: &Dirs,
    job: &Job,
    result: &Report,
) -> Result<Finished, BuildError> {
    let key = build_key(&job.upload.id, &job.build.architecture);
    let Some(mut build) = state.get::<Build>(&key)? else {
        return Ok(Finished::default());
    };
    if build.state == State::Cancelled {
        return Ok(Finished::default());
    }
    build.state = match result.outcome {
        Outcome::Successful => State::Built,
        Outcome::DepWait => State::DepWait,
        Outcome::Failed => State::Failed,
    };
    build.status = result.status.clone();
    build.fail_stage = result.fail_stage.clone();
    build.finished = now();
    state.put(&key, &build)?;
    let (kind, what) = if build.state == State::Built {
        (EventKind::Built, "built")
    } else {
        (EventKind::Failed, "failed")
    };
    let mut events = crate::incoming::record(
        state,
        vec![event(
            &job.upload,
            kind,
            format!(
                "{} on {}: {what} ({}{}); log: /logs/{}/{}",
                job.upload.id,
                build.architecture,
                build.status,
                build
                    .fail_stage
                    .as_ref()
                    .map(|s| format!(", stage {s}"))
                    .unwrap_or_default(),
                job.upload.id,
                build.architecture
            ),
        )],
    )?;
    let settled = settle(state, dirs, &job.upload.id)?;
    events.extend(settled.events);
    Ok(Finished {
        events,
        install: settled.install,
    })
}

/// If every build of the upload has ended: its [`Install`] when every mandatory one was
/// built, otherwise the upload fails naming the architectures.
fn settle(store: &StateStore, dirs: &Dirs, id: &str) -> Result<Finished, BuildError> {
    let Some(upload) = store.get::<Upload>(id)? else {
        return Ok(Finished::default());
    };
    if upload.state != UploadState::Building {
        return Ok(Finished::default());
    }
    let builds = builds_of(store, id)?;
    if builds.iter().any(|b| !b.state.is_final()) {
        return Ok(Finished::default());
    }
    let failed: Vec<String> = builds
        .iter()
        .filter(|b| !b.optional && b.state != State::Built)
        .map(|b| match (&b.fail_stage, b.status.starts_with("sbuild ")) {
            // A dep-wait names what could not be installed (sbuild's status says it).
            (Some(stage), _) if b.state == State::DepWait => format!(
                "{} ({} at {stage}: {})",
                b.architecture,
                state_name(b.state),
                b.status
            ),
            (Some(stage), _) => format!("{} ({} at {stage})", b.architecture, state_name(b.state)),
            (None, true) => format!("{} ({}: {})", b.architecture, state_name(b.state), b.status),
            (None, false) => format!("{} ({})", b.architecture, state_name(b.state)),
        })
        .collect();
    if !failed.is_empty() {
        let reason = format!("{}: failed on {}", upload.id, failed.join(", "));
        return Ok(Finished {
            events: fail(store, upload, reason)?,
            install: None,
        });
    }
    let mut files = vec![dirs.queue.join(id).join(&upload.changes)];
    for b in builds.iter().filter(|b| b.state == State::Built) {
        match result_changes(dirs, &upload, &b.architecture) {
            Some(c) => files.push(c),
            None => {
                let reason = format!("the results of {} are gone", b.architecture);
                return Ok(Finished {
                    events: fail(store, upload, reason)?,
                    install: None,
                });
            }
        }
    }
    Ok(Finished {
        events: Vec::new(),
        install: Some(Install {
            upload: upload.id.clone(),
            distribution: upload.distribution.clone(),
            files,
        }),
    })
}

/// Installs staged results (with the write token held) and publishes the distribution,
/// unless the upload moved on while they were staged (cancelled, installed by another path).
pub fn install(
    engine: &Engine,
    store: &StateStore,
    dirs: &Dirs,
    install: Install,
    staged: Result<Staged, RepoError>,
) -> Result<Vec<Event>, BuildError> {
    let id = install.upload;
    let Some(mut upload) = store.get::<Upload>(&id)? else {
        return Ok(Vec::new());
    };
    if upload.state != UploadState::Building {
        return Ok(Vec::new());
    }
    let (state, kind, reason) = match staged.and_then(|s| include(engine, &upload.distribution, s))
    {
        Ok(summary) => (
            UploadState::Installed,
            EventKind::Installed,
            format!(
                "{} in {}: {}",
                upload.id,
                upload.distribution,
                summary.join(", ")
            ),
        ),
        Err(e) => (
            UploadState::Failed,
            EventKind::Failed,
            format!("installing: {e}"),
        ),
    };
    upload.state = state;
    upload.reason = reason.clone();
    store.put(&id, &upload)?;
    if state == UploadState::Installed {
        remember_auto_ports(store, &dirs.queue.join(&id).join(&upload.changes), &upload)?;
        let _ = std::fs::remove_dir_all(dirs.queue.join(&id));
    }
    Ok(crate::incoming::record(
        store,
        vec![event(&upload, kind, reason)],
    )?)
}

/// The upload's `auto-ports` option, kept for after its installation (its queue directory
/// goes now).
fn remember_auto_ports(
    state: &StateStore,
    changes: &Path,
    upload: &Upload,
) -> Result<(), BuildError> {
    use crate::changelog::{OptionKey, OptionValue, UploadOptions};
    let Ok(text) = std::fs::read_to_string(changes) else {
        return Ok(());
    };
    let Ok(options) = UploadOptions::from_changes_text(&text) else {
        return Ok(());
    };
    // auto-ports is a comma list (see changelog's option values).
    let Some(OptionValue::List(ports)) = options.get(OptionKey::AutoPorts, None) else {
        return Ok(());
    };
    let ports = ports.clone();
    crate::port::AfterInstall {
        migrate_full: false,
        ports,
    }
    .store(state, &upload.source, &upload.version)?;
    Ok(())
}

fn fail(state: &StateStore, mut upload: Upload, reason: String) -> Result<Vec<Event>, BuildError> {
    upload.state = UploadState::Failed;
    upload.reason = reason.clone();
    state.put(&upload.id, &upload)?;
    Ok(crate::incoming::record(
        state,
        vec![event(&upload, EventKind::Failed, reason)],
    )?)
}

fn include(engine: &Engine, dist: &str, staged: Staged) -> Result<Vec<String>, RepoError> {
    let summary = engine.include_staged(staged)?;
    let name = engine.resolve(dist)?.name;
    engine.publish(&[name])?;
    Ok(summary)
}

/// The `.changes` sbuild left for an architecture (`<source>_<version w/o epoch>_<arch>.changes`).
fn result_changes(dirs: &Dirs, upload: &Upload, arch: &str) -> Option<PathBuf> {
    let p = dirs
        .job_dir(&upload.id, arch)
        .join(upload.result_changes_name(arch));
    p.exists().then_some(p)
}

/// Debian's names for build states.
pub fn state_name(s: State) -> &'static str {
    match s {
        State::NeedsBuild => "needs-build",
        State::Building => "building",
        State::Built => "built",
        State::Failed => "failed",
        State::DepWait => "dep-wait",
        State::Cancelled => "cancelled",
    }
}

/// Cancels an upload's builds that have not ended (a running one is stopped by the worker).
pub fn cancel(state: &StateStore, id: &str) -> Result<Vec<Event>, BuildError> {
    let Some(mut upload) = state.get::<Upload>(id)? else {
        return Err(BuildError::NoSuchUpload(id.to_string()));
    };
    if upload.state != UploadState::Building {
        return Err(BuildError::Refused(format!(
            "upload '{id}' is {:?}, not building",
            upload.state
        )));
    }
    for mut b in builds_of(state, id)? {
        if !b.state.is_final() {
            b.state = State::Cancelled;
            b.finished = now();
            state.put(&build_key(id, &b.architecture), &b)?;
        }
    }
    upload.state = UploadState::Cancelled;
    upload.reason = "cancelled".to_string();
    state.put(id, &upload)?;
    Ok(crate::incoming::record(
        state,
        vec![event(
            &upload,
            EventKind::Failed,
            format!("{id}: cancelled"),
        )],
    )?)
}

/// Builds again what failed, waited for dependencies or was cancelled.
pub fn retry(state: &StateStore, dirs: &Dirs, id: &str) -> Result<usize, BuildError> {
    let Some(mut upload) = state.get::<Upload>(id)? else {
        return Err(BuildError::NoSuchUpload(id.to_string()));
    };
    if upload.state == UploadState::Installed {
        return Err(BuildError::Refused(format!(
            "upload '{id}' is installed already"
        )));
    }
    if !dirs.queue.join(id).is_dir() {
        return Err(BuildError::Refused(format!(
            "the files of upload '{id}' are gone"
        )));
    }
    let mut n = 0;
    for mut b in builds_of(state, id)? {
        if matches!(b.state, State::Failed | State::DepWait | State::Cancelled) {
            b.state = State::NeedsBuild;
            b.status = String::new();
            b.fail_stage = None;
            state.put(&build_key(id, &b.architecture), &b)?;
            n += 1;
        }
    }
    upload.state = UploadState::Building;
    upload.reason = String::new();
    state.put(id, &upload)?;
    Ok(n)
}

/// Retention: deletes ended uploads (installed, failed, cancelled) that arrived before
/// `before` (seconds since the epoch), except the newest `keep` of them, with their build
/// records, build directories (logs) and queue directories; returns how many went.
pub fn prune_uploads(
    state: &StateStore,
    dirs: &Dirs,
    before: i64,
    keep: usize,
) -> Result<usize, BuildError> {
    let mut ended: Vec<Upload> = uploads(state)?
        .into_iter()
        .filter(|u| u.state != UploadState::Building)
        .collect();
    // Newest first; the first `keep` stay whatever their age.
    ended.reverse();
    let old: Vec<Upload> = ended
        .into_iter()
        .skip(keep)
        .filter(|u| u.created < before)
        .collect();
    for u in &old {
        let builds: Vec<String> = builds_of(state, &u.id)?
            .iter()
            .map(|b| build_key(&u.id, &b.architecture))
            .collect();
        state.delete_all::<Build>(&builds)?;
        state.delete::<Upload>(&u.id)?;
        let _ = std::fs::remove_dir_all(dirs.builds.join(&u.id));
        let _ = std::fs::remove_dir_all(dirs.queue.join(&u.id));
    }
    Ok(old.len())
}

/// Uploads with their builds by architecture.
pub type Overview = Vec<(Upload, BTreeMap<String, Build>)>;

/// Uploads and their builds, for the API and the web UI.
pub fn overview(state: &StateStore) -> Result<Overview, BuildError> {
    uploads(state)?
        .into_iter()
        .map(|u| {
            let b = builds_of(state, &u.id)?
                .into_iter()
                .map(|b| (b.architecture.clone(), b))
                .collect();
            Ok((u, b))
        })
        .collect()
}

#[cfg(test)]
mod tests;
