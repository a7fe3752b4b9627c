//! Event hooks: the executables in `<home>/etc/event-hooks/`, run for every decision, in
//! name order, one event after another on one supervised thread of their own. A hook that
//! fails, hangs (killed after [`HOOK_TIMEOUT`]) or floods its stderr never holds up the
//! daemon; a panic while running one is logged and counted, and the next hook runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long one event hook may run.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// Events waiting for their hooks; beyond this, an event's hooks are skipped (and logged).
const WAITING: usize = 1000;

/// How much of a failing hook's stderr goes into the log.
const STDERR_KEPT: usize = 2048;

/// The hook runner of a home.
#[derive(Debug)]
pub struct Hooks {
    queue: std::sync::mpsc::SyncSender<PathBuf>,
    panics: Arc<AtomicU64>,
}

impl Hooks {
    /// Starts the runner; it ends when the `Hooks` is dropped.
    pub fn start(home: &Path) -> Hooks {
        let (queue, events) = std::sync::mpsc::sync_channel::<PathBuf>(WAITING);
        let panics = Arc::new(AtomicU64::new(0));
        let (dir, counted) = (home.join("etc/event-hooks"), panics.clone());
        let started = std::thread::Builder::new()
            .name("event-hooks".to_string())
            .spawn(move || {
                for event_file in events {
                    for hook in hooks_in(&dir) {
                        let ran = std::panic::catch_unwind(|| run_one(&hook, &event_file));
                        if let Err(payload) = ran {
                            counted.fetch_add(1, Ordering::SeqCst);
                            let why = payload
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| payload.downcast_ref::<String>().cloned())
                                .unwrap_or_default();
                            tracing::error!(hook = %hook.display(), panic = %why, "an event hook's runner panicked; it goes on");
                        }
                    }
                }
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "the event hook runner did not start");
        }
        Hooks { queue, panics }
    }

    /// Runs the hooks for an event file (later, in order with the events before it).
    pub fn run(&self, event_file: PathBuf) {
        if let Err(e) = self.queue.try_send(event_file) {
            let file = match &e {
                std::sync::mpsc::TrySendError::Full(f)
                | std::sync::mpsc::TrySendError::Disconnected(f) => f.display().to_string(),
            };
            tracing::warn!(event = %file, "event hooks skipped: {WAITING} events wait for theirs already");
        }
    }

    /// Panics the runner survived.
    pub fn panics(&self) -> u64 {
        self.panics.load(Ordering::SeqCst)
    }
}

/// The executables in `dir` (not hidden), in name order; read for every event, so a hook
/// added or removed counts from the next event on.
fn hooks_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut hooks: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            use std::os::unix::fs::PermissionsExt;
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            !name.starts_with('.')
                && std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .collect();
    hooks.sort();
    hooks
}

/// Runs one hook with the event file's path and logs how it went.
fn run_one(hook: &Path, event_file: &Path) {
    let started = std::time::Instant::now();
    let child = std::process::Command::new(hook)
        .arg(event_file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(hook = %hook.display(), error = %e, "event hook did not start");
            return;
        }
    };
    // Drained all along, so a hook that writes much to stderr never blocks on the pipe.
    let (sent, stderr) = std::sync::mpsc::channel();
    if let Some(mut pipe) = child.stderr.take() {
        std::thread::spawn(move || {
            use std::io::Read;
            let (mut kept, mut buf) = (Vec::new(), [0u8; 4096]);
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = STDERR_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            let _ = sent.send(String::from_utf8_lossy(&kept).trim().to_string());
        });
    }
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if started.elapsed() > HOOK_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    // Something the hook started may keep the pipe open: wait for its end only a moment.
    let stderr = stderr
        .recv_timeout(Duration::from_secs(1))
        .unwrap_or_default();
    match status {
        Some(s) if s.success() => {
            tracing::info!(hook = %hook.display(), event = %event_file.display(), "event hook ran")
        }
        Some(s) => {
            tracing::warn!(hook = %hook.display(), event = %event_file.display(), status = %s, %stderr, "event hook failed")
        }
        None => {
            tracing::warn!(hook = %hook.display(), %stderr, "event hook timed out and was killed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn hook(dir: &Path, name: &str, script: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Hooks run in name order, events in the order they came; a hook that floods its
    /// stderr and fails holds up neither the next hook nor the next event.
    #[test]
    fn hooks_run_in_order_and_a_noisy_failing_one_holds_nothing_up() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("etc/event-hooks");
        std::fs::create_dir_all(&dir).unwrap();
        let seen = home.path().join("seen");
        hook(&dir, "10-noisy", "head -c 1000000 /dev/zero >&2; exit 3");
        hook(
            &dir,
            "20-record",
            &format!("echo \"$1\" >> {}", seen.display()),
        );
        hook(
            &dir,
            ".hidden",
            &format!("echo hidden >> {}", seen.display()),
        );
        let hooks = Hooks::start(home.path());
        for n in 1..=3 {
            hooks.run(PathBuf::from(format!("/events/{n}.json")));
        }
        let started = std::time::Instant::now();
        loop {
            let text = std::fs::read_to_string(&seen).unwrap_or_default();
            if text.lines().count() == 3 {
                assert_eq!(text, "/events/1.json\n/events/2.json\n/events/3.json\n");
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "hooks ran for: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(hooks.panics(), 0);
    }
}
