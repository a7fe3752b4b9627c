//! The worker's part in a build farm: as a requester, a thread per build handed to a remote
//! (deliver the request, wait, fail over, take the result); as a builder, the jobs made from
//! requests remotes sent us and the signed results they end with. Counts per remote for
//! `/metrics`.

use super::dispatch::{self, Waited, Waiting};
use super::queue::{Build, Dirs, Job, State, Upload, UploadState};
use super::sbuild::{Outcome, Report};
use super::worker::{Control, Host};
use crate::remote::builds::{Ended, Paths, RemoteBuild};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

/// Builds per remote: handed to it, built by it, taken from it (failed over).
#[derive(Debug, Default)]
pub struct FarmCounts {
    counts: Mutex<BTreeMap<String, [u64; 3]>>,
}

impl FarmCounts {
    fn add(&self, remote: &str, which: usize) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.entry(remote.to_string()).or_default()[which] += 1;
    }

    /// `(remote, dispatched, built, failed over)` for each remote seen.
    pub fn snapshot(&self) -> Vec<(String, [u64; 3])> {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// Stores where a build went (before the request is sent, so an early result finds it).
fn record_dispatch<H: Host + ?Sized>(host: &H, job: &Job, remote: &str, id: &str) -> bool {
    let mut ok = false;
    host.with_stores(&mut |_, state| {
        let key = format!("{}/{}", job.upload.id, job.build.architecture);
        match state.get::<Build>(&key) {
            Ok(Some(mut b)) if b.state == State::Building => {
                b.builder = remote.to_string();
                b.request = id.to_string();
                b.status = format!("building on {remote}");
                ok = state.put(&key, &b).is_ok();
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "reading a build"),
        }
    });
    ok
}

/// Runs one build handed to a remote to its end: delivers the request (to the next candidate
/// when one refuses it), waits for the result, and fails over when the remote loses it. A
/// shutdown leaves the build with the remote: the next start waits for it again.
pub fn run_dispatch<H: Host + ?Sized>(
    host: &H,
    control: &Control,
    dirs: &Dirs,
    job: &Job,
    waiting: Waiting,
) {
    let arch = &job.build.architecture;
    let mut remote = job.dispatch.clone().unwrap_or_default();
    let mut id = job.build.request.clone();
    let mut tried: Vec<String> = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    let failed = |why: String| Report {
        outcome: Outcome::Failed,
        status: why,
        fail_stage: None,
    };
    loop {
        if id.is_empty() {
            id = dispatch::request_id(job);
            if !record_dispatch(host, job, &remote, &id) {
                return; // cancelled or gone meanwhile
            }
            let mut sent = Err("not written".to_string());
            host.with_peer(&mut |key, _, url| {
                sent = dispatch::write_request(key, url, job, &id)
                    .and_then(|path| dispatch::send_request(&remote, &id, &path));
            });
            match sent {
                Ok(()) => {
                    control.farm.add(&remote, 0);
                    tracing::info!(upload = %job.upload.id, %arch, %remote, request = %id, "build handed to a remote");
                }
                Err(why) => {
                    tracing::warn!(upload = %job.upload.id, %arch, %remote, reason = %why, "a remote did not take a build request");
                    reasons.push(why);
                    tried.push(remote.clone());
                    match next_candidate(host, job, &tried) {
                        Some(next) => {
                            remote = next;
                            id.clear();
                            continue;
                        }
                        None => {
                            let why = format!(
                                "build request upload failed for {arch}/{}: {}",
                                job.codename,
                                reasons.join("; ")
                            );
                            return super::worker::conclude(host, dirs, job, failed(why));
                        }
                    }
                }
            }
        }
        let watch = dispatch::Watch {
            cancelled: &|| control.is_cancelled(&job.upload.id),
            stopping: &|| control.is_stopping(),
            arrived: &control.results_in,
        };
        match dispatch::wait(job, &remote, &id, waiting, &watch) {
            Waited::Result(report) => {
                control.farm.add(&remote, 1);
                return super::worker::conclude(host, dirs, job, report);
            }
            Waited::Cancelled => {
                host.with_peer(&mut |key, _, _| dispatch::send_cancel(key, &remote, &id));
                return super::worker::conclude(host, dirs, job, failed("cancelled".into()));
            }
            Waited::Stopping => return,
            Waited::Lost(why) => {
                tracing::warn!(upload = %job.upload.id, %arch, %remote, reason = %why, "a remote lost a build");
                control.farm.add(&remote, 2);
                reasons.push(why.clone());
                tried.push(remote.clone());
                match next_candidate(host, job, &tried) {
                    Some(next) => {
                        tracing::info!(upload = %job.upload.id, %arch, from = %remote, to = %next, "build handed over");
                        remote = next;
                        id.clear();
                    }
                    None => {
                        let why = format!(
                            "the build on {remote} was lost ({why}), and no other builder has {}/{arch}",
                            job.codename
                        );
                        return super::worker::conclude(host, dirs, job, failed(why));
                    }
                }
            }
        }
    }
}

fn next_candidate<H: Host + ?Sized>(host: &H, job: &Job, tried: &[String]) -> Option<String> {
    let mut next = None;
    host.with_peer(&mut |_, state, _| next = dispatch::next_remote(state, job, tried));
    next
}

/// The job of a request a remote sent us: its files, our chroot, its repository (with the
/// requester's key) as the extra source, its build options.
pub fn job_for_remote(home: &Path, rb: &RemoteBuild) -> Job {
    let r = &rb.request;
    let paths = Paths::new(home, &r.id);
    let chroot_id = format!("{}-{}", r.codename, r.architecture);
    Job {
        upload: Upload {
            id: r.upload.clone(),
            source: r.source.clone(),
            version: r.version.clone(),
            distribution: r.distribution.clone(),
            changes: r.changes.clone(),
            dsc: r.dsc.clone(),
            state: UploadState::Building,
            reason: String::new(),
            created: rb.received,
            changed_by: String::new(),
            maintainer: String::new(),
        },
        build: Build {
            upload: r.upload.clone(),
            architecture: r.architecture.clone(),
            arch_all: r.arch_all,
            optional: false,
            state: State::Building,
            status: String::new(),
            fail_stage: None,
            started: rb.started,
            finished: 0,
            attempts: 1,
            builder: String::new(),
            request: r.id.clone(),
        },
        queue_dir: paths.files(),
        dir: paths.build(),
        log: paths.log(),
        chroot: super::chroot::schroot_name(home, &chroot_id),
        codename: r.codename.clone(),
        extra_repositories: r.extra_repositories.clone(),
        options: r.options.clone(),
        pinned: r.pinned.clone(),
        dispatch: None,
        for_remote: Some(r.id.clone()),
        repository_key: Some(paths.requester_key()),
    }
}

/// A build we ran for a remote ended: its signed result is written and due to be sent.
pub fn finish_for_remote<H: Host + ?Sized>(host: &H, home: &Path, job: &Job, result: &Report) {
    let Some(id) = &job.for_remote else {
        return;
    };
    let changes = job
        .dir
        .join(job.upload.result_changes_name(&job.build.architecture));
    let ended = Ended {
        outcome: dispatch::outcome_word(result.outcome).to_string(),
        status: result.status.clone(),
        fail_stage: result.fail_stage.clone(),
        changes: (result.outcome == Outcome::Successful).then_some(changes),
    };
    let mut ended = Some(ended);
    host.with_peer(&mut |key, state, url| {
        let Some(ended) = ended.take() else {
            return;
        };
        if let Err(e) = crate::remote::builds::finish(
            state,
            home,
            key,
            url,
            id,
            ended,
            crate::repo::wall_clock(),
        ) {
            tracing::error!(request = %id, error = %e, "writing a remote build's result");
        }
    });
}
