//! Handing builds to remotes, as the requester: the signed request (the upload's files, our
//! repository as the build's extra source, the distribution's build options), its delivery
//! (`PUT <remote>/remote/requests/<id>`), the wait for the result, and the result's
//! acceptance (`PUT /remote/results/<id>`, signed by the remote the build was handed to).
//!
//! Each dispatch has its own request id, stored on the build: a result for any other id
//! (a stray one, or a late one from a remote the build was taken from) is refused, so a
//! build is never installed twice. A remote that stops answering for [`Waiting::timeout`]
//! or forgets the request loses it: the build goes to the next candidate, or fails naming
//! the remote and why.

use super::queue::{Build, Dirs, Job, State};
use super::route;
use super::sbuild::{Outcome, Report};
use crate::openpgp::ArchiveKey;
use crate::remote::transport::{self, BuildResult, Member, Request};
use crate::state::StateStore;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The largest request or result envelope taken (the upload limits are smaller).
pub const MAX_ENVELOPE: u64 = 8 << 30;

/// The result a waiter finds in the job directory once it was accepted.
const RESULT_FILE: &str = "remote-result.json";

/// A new request id for a job: `<source>_<version>_<arch>_<random>` (no epoch).
pub fn request_id(job: &Job) -> String {
    let version = job
        .upload
        .version
        .split_once(':')
        .map_or(job.upload.version.as_str(), |(_, v)| v);
    format!(
        "{}_{version}_{}_{}",
        job.upload.source,
        job.build.architecture,
        transport::nonce()
    )
}

/// Where a job's request envelope is written.
pub fn request_path(job: &Job) -> PathBuf {
    job.dir.with_extension("request.tar")
}

/// Writes the signed request of `job` under id `id`: every file of the upload's queue
/// directory, and what the build needs to know.
pub fn write_request(
    key: &ArchiveKey,
    public_url: &str,
    job: &Job,
    id: &str,
) -> Result<PathBuf, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&job.queue_dir)
        .map_err(|e| format!("{}: {e}", job.queue_dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    let members = files
        .iter()
        .map(|f| Member::of(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let request = Request {
        id: id.to_string(),
        requester: public_url.to_string(),
        upload: job.upload.id.clone(),
        source: job.upload.source.clone(),
        version: job.upload.version.clone(),
        distribution: job.upload.distribution.clone(),
        codename: job.codename.clone(),
        architecture: job.build.architecture.clone(),
        arch_all: job.build.arch_all,
        changes: job.upload.changes.clone(),
        dsc: job.upload.dsc.clone(),
        extra_repositories: job.extra_repositories.clone(),
        options: job.options.clone(),
        pinned: job.pinned.clone(),
        members,
    };
    let path = request_path(job);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    transport::write_envelope(&path, key, &request, &files).map_err(|e| e.to_string())?;
    Ok(path)
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// Hands a request to a remote.
pub fn send_request(remote: &str, id: &str, envelope: &Path) -> Result<(), String> {
    let file = std::fs::File::open(envelope).map_err(|e| format!("{}: {e}", envelope.display()))?;
    let mut response = agent(Duration::from_secs(600))
        .put(&format!("{remote}/remote/requests/{id}"))
        .send(file)
        .map_err(|e| format!("{remote} is down: {e}"))?;
    let code = response.status().as_u16();
    if (200..300).contains(&code) {
        return Ok(());
    }
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Err(format!("{remote} refused it: HTTP {code}: {}", body.trim()))
}

/// Where a remote's build of a request stands: `Some(state)`, `None` if it does not know it.
pub fn request_state(remote: &str, id: &str) -> Result<Option<String>, String> {
    let mut response = agent(Duration::from_secs(10))
        .get(&format!("{remote}/remote/requests/{id}"))
        .call()
        .map_err(|e| e.to_string())?;
    match response.status().as_u16() {
        404 => Ok(None),
        200 => {
            let body = response.body_mut().read_to_string().unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            Ok(Some(v["state"].as_str().unwrap_or("").to_string()))
        }
        code => Err(format!("HTTP {code}")),
    }
}

/// Tells a remote to stop building a request (best effort).
pub fn send_cancel(key: &ArchiveKey, remote: &str, id: &str) {
    let text = crate::remote::builds::cancel_text(id);
    let Ok(signed) = key.clearsign(text.as_bytes()) else {
        return;
    };
    if let Err(e) = agent(Duration::from_secs(10))
        .put(&format!("{remote}/remote/cancel/{id}"))
        .send(&signed[..])
    {
        tracing::warn!(%remote, request = id, error = %e, "cancelling a remote build");
    }
}

/// Why a result is refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No build waits for it (stray, or late after the build went elsewhere): 409.
    #[error("{0}")]
    NotWanted(String),
    /// Signed by a key that is no remote's, or by another remote than the builder: 403.
    #[error("{0}")]
    Forged(String),
    /// Broken: 400.
    #[error("{0}")]
    Bad(String),
}

/// Takes a result envelope (on disk at `envelope`): verified against the remotes' keys, it
/// must answer the request a build waits for and be signed by the remote that build was
/// handed to; its files go into the build's directory and its log where build logs go.
/// Returns `<upload>/<arch>`.
pub fn accept_result(
    state: &StateStore,
    dirs: &Dirs,
    id: &str,
    envelope: &Path,
) -> Result<String, Refusal> {
    let bad = |why: String| Refusal::Bad(format!("build result {id}: {why}"));
    crate::files::safe_file_name(id).map_err(|e| bad(e.to_string()))?;
    let unpacked = dirs.builds.join(".results").join(id);
    let outcome = take(state, dirs, id, envelope, &unpacked);
    let _ = std::fs::remove_dir_all(&unpacked);
    outcome
}

fn take(
    state: &StateStore,
    dirs: &Dirs,
    id: &str,
    envelope: &Path,
    unpacked: &Path,
) -> Result<String, Refusal> {
    let bad = |why: String| Refusal::Bad(format!("build result {id}: {why}"));
    let signed = transport::open_envelope(envelope, unpacked, MAX_ENVELOPE)
        .map_err(|e| bad(e.to_string()))?;
    let ring = crate::remote::keyring(state).map_err(|e| bad(e.to_string()))?;
    let (fingerprint, result): (String, BuildResult) = transport::verify(&signed, &ring)
        .map_err(|e| Refusal::Forged(format!("build result {id}: {e}")))?;
    if result.id != id {
        return Err(bad(format!("its document names the id {}", result.id)));
    }
    let build = waiting_build(state, id)?;
    let signer = crate::remote::by_fingerprint(state, &fingerprint)
        .map_err(|e| bad(e.to_string()))?
        .map(|r| r.url)
        .unwrap_or_default();
    if signer != build.builder {
        return Err(Refusal::Forged(format!(
            "build result {id}: signed by {}, but the build was handed to {}",
            if signer.is_empty() {
                &fingerprint
            } else {
                &signer
            },
            build.builder
        )));
    }
    transport::check_members(unpacked, &result.members).map_err(|e| bad(e.to_string()))?;
    let job_dir = dirs.job_dir(&build.upload, &build.architecture);
    if job_dir.exists() {
        std::fs::remove_dir_all(&job_dir)
            .map_err(|e| bad(format!("{}: {e}", job_dir.display())))?;
    }
    std::fs::create_dir_all(&job_dir).map_err(|e| bad(format!("{}: {e}", job_dir.display())))?;
    let log = dirs.log(&build.upload, &build.architecture);
    for m in &result.members {
        let to = if m.name == result.log {
            log.clone()
        } else {
            job_dir.join(&m.name)
        };
        std::fs::rename(unpacked.join(&m.name), &to)
            .map_err(|e| bad(format!("{}: {e}", to.display())))?;
    }
    let report = serde_json::json!({
        "id": id,
        "outcome": result.outcome,
        "status": result.status,
        "fail_stage": result.fail_stage,
    });
    let file = job_dir.join(RESULT_FILE);
    std::fs::write(&file, report.to_string())
        .map_err(|e| bad(format!("{}: {e}", file.display())))?;
    Ok(format!("{}/{}", build.upload, build.architecture))
}

/// The build that waits for request `id`.
fn waiting_build(state: &StateStore, id: &str) -> Result<Build, Refusal> {
    let builds = state
        .all::<Build>()
        .map_err(|e| Refusal::Bad(e.to_string()))?;
    builds
        .into_iter()
        .map(|(_, b)| b)
        .find(|b| b.request == id && b.state == State::Building)
        .ok_or_else(|| {
            Refusal::NotWanted(format!(
                "build result {id}: no build waits for it (a stray result, or a late one from a remote the build was taken from)"
            ))
        })
}

/// The accepted result in a job's directory for request `id`, as a report.
pub fn taken_result(job: &Job, id: &str) -> Option<Report> {
    let text = std::fs::read_to_string(job.dir.join(RESULT_FILE)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    if v["id"] != id {
        return None;
    }
    Some(Report {
        outcome: match v["outcome"].as_str() {
            Some("successful") => Outcome::Successful,
            Some("dep-wait") => Outcome::DepWait,
            _ => Outcome::Failed,
        },
        status: v["status"].as_str().unwrap_or("").to_string(),
        fail_stage: v["fail_stage"].as_str().map(str::to_string),
    })
}

/// An outcome's word in a result.
pub fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Successful => "successful",
        Outcome::DepWait => "dep-wait",
        Outcome::Failed => "failed",
    }
}

/// How a waiter watches a remote.
#[derive(Debug, Clone, Copy)]
pub struct Waiting {
    /// How often it looks for the result and asks the remote.
    pub poll: Duration,
    /// How long a remote may not answer before the build goes elsewhere.
    pub timeout: Duration,
}

/// How one wait for a remote's result ended.
pub enum Waited {
    Result(Report),
    /// The remote lost it (down for the timeout, or it forgot the request).
    Lost(String),
    Cancelled,
    Stopping,
}

/// What a waiter watches besides the remote: cancellation, shutdown, and the signal raised
/// when a result arrived.
pub struct Watch<'a> {
    pub cancelled: &'a dyn Fn() -> bool,
    pub stopping: &'a dyn Fn() -> bool,
    pub arrived: &'a super::worker::Signal,
}

/// Waits for the result of request `id` from `remote`: woken when a result arrives, and
/// asking the remote where it stands every [`Waiting::poll`].
pub fn wait(job: &Job, remote: &str, id: &str, waiting: Waiting, watch: &Watch<'_>) -> Waited {
    let (cancelled, stopping) = (watch.cancelled, watch.stopping);
    let mut last_answer = Instant::now();
    let mut last_asked: Option<Instant> = None;
    loop {
        let seen = watch.arrived.seen();
        if let Some(report) = taken_result(job, id) {
            return Waited::Result(report);
        }
        if cancelled() {
            return Waited::Cancelled;
        }
        if stopping() {
            return Waited::Stopping;
        }
        if last_asked.is_some_and(|t| t.elapsed() < waiting.poll) {
            watch.arrived.wait_since(seen, Duration::from_millis(500));
            continue;
        }
        last_asked = Some(Instant::now());
        match request_state(remote, id) {
            Ok(Some(_)) => last_answer = Instant::now(),
            Ok(None) => {
                // It may have been sent and taken just now.
                if let Some(report) = taken_result(job, id) {
                    return Waited::Result(report);
                }
                return Waited::Lost(format!("{remote} does not know the request any more"));
            }
            Err(e) if last_answer.elapsed() >= waiting.timeout => {
                return Waited::Lost(format!(
                    "{remote} did not answer for {} s ({e})",
                    waiting.timeout.as_secs()
                ));
            }
            Err(_) => {}
        }
        watch.arrived.wait_since(seen, Duration::from_millis(500));
    }
}

/// The next remote for a build that `failed` remotes could not take: the least loaded other
/// one that has the chroot, if any.
pub fn next_remote(state: &StateStore, job: &Job, failed: &[String]) -> Option<String> {
    let nowhere = route::Here {
        chroot_known: false,
        ready: false,
        load: 0.0,
    };
    match route::choose(
        state,
        &job.codename,
        &job.build.architecture,
        &nowhere,
        failed,
    ) {
        Ok(route::Choice::Remote(url)) => Some(url),
        _ => None,
    }
}
