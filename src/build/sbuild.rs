//! One sbuild run: the command line for a build job, and what its `.build` log says.
//!
//! sbuild runs as root in the job's directory (`<home>/var/builds/<source>_<version>/<arch>/`),
//! which receives the `.build` log and the results. The target distribution of our own
//! repository is added as an extra repository, signed by the archive key, so that
//! build-dependencies on packages we built resolve. Lintian, autopkgtest and piuparts do not
//! run inside the chroot (lintian would be installed into every clean session).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// What one build is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Base codename (sbuild's `--dist`).
    pub codename: String,
    pub architecture: String,
    /// Build `Architecture: all` packages too.
    pub arch_all: bool,
    /// The schroot chroot.
    pub chroot: String,
    /// `deb ...` line of our own repository for the target distribution.
    pub extra_repository: Option<String>,
    /// File with the archive's public key (armored) that signs it.
    pub extra_repository_key: Option<PathBuf>,
    /// Parallel jobs (`--jobs`, `DEB_BUILD_OPTIONS=parallel=N`).
    pub jobs: u32,
    /// Extra `DEB_BUILD_OPTIONS` words (from the upload's options).
    pub deb_build_options: Vec<String>,
    /// Build profiles (`--profiles`, from the upload's options).
    pub profiles: Vec<String>,
    /// The `.dsc` to build.
    pub dsc: PathBuf,
}

impl Invocation {
    /// sbuild's arguments.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "--nolog".to_string(),
            format!("--dist={}", self.codename),
            format!("--arch={}", self.architecture),
            format!("--chroot={}", self.chroot),
            if self.arch_all {
                "--arch-all".to_string()
            } else {
                "--no-arch-all".to_string()
            },
            "--no-source".to_string(),
            "--no-run-lintian".to_string(),
            "--no-run-autopkgtest".to_string(),
            "--no-run-piuparts".to_string(),
            "--no-apt-upgrade".to_string(),
            "--no-apt-distupgrade".to_string(),
            format!("--jobs={}", self.jobs.max(1)),
        ];
        if !self.profiles.is_empty() {
            a.push(format!("--profiles={}", self.profiles.join(",")));
        }
        if let Some(repo) = &self.extra_repository {
            a.push(format!("--extra-repository={repo}"));
        }
        if let Some(key) = &self.extra_repository_key {
            a.push(format!("--extra-repository-key={}", key.display()));
        }
        a.push(self.dsc.display().to_string());
        a
    }

    /// `DEB_BUILD_OPTIONS` for the run.
    pub fn deb_build_options(&self) -> String {
        let mut words = vec![format!("parallel={}", self.jobs.max(1))];
        words.extend(
            self.deb_build_options
                .iter()
                .filter(|w| !w.starts_with("parallel="))
                .cloned(),
        );
        words.join(" ")
    }
}

/// How a build ended, from sbuild's summary (and exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Successful,
    /// Build-dependencies could not be satisfied (sbuild's given-back, exit code 3).
    DepWait,
    Failed,
}

/// What sbuild reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    /// sbuild's `Status:` (successful, attempted, given-back, failed, skipped), or what
    /// happened when it could not say.
    pub status: String,
    /// sbuild's `Fail-Stage:`, if any.
    pub fail_stage: Option<String>,
}

/// Reads the summary at the end of a `.build` log; `exit` is sbuild's exit code.
pub fn report(log: &str, exit: Option<i32>) -> Report {
    let field = |name: &str| {
        log.lines().rev().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|v| v.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        })
    };
    let status = field("Status");
    let fail_stage = field("Fail-Stage");
    let outcome = match (status.as_deref(), exit) {
        (Some("successful") | Some("skipped"), Some(0)) => Outcome::Successful,
        (Some("given-back"), _) | (_, Some(3)) => Outcome::DepWait,
        _ => Outcome::Failed,
    };
    Report {
        outcome,
        status: status.unwrap_or_else(|| match exit {
            Some(c) => format!("sbuild exited with {c} and no summary"),
            None => "sbuild was killed".to_string(),
        }),
        fail_stage,
    }
}

/// Runs sbuild in `dir` (which gets the results) with a time limit; the whole output goes to
/// `log`. Returns the exit code (`None`: killed, by the limit or `cancel`).
pub fn run(
    inv: &Invocation,
    dir: &Path,
    log: &Path,
    limit: Duration,
    cancelled: &dyn Fn() -> bool,
) -> std::io::Result<Option<i32>> {
    let file = std::fs::File::create(log)?;
    let mut child = std::process::Command::new("sbuild")
        .args(inv.args())
        .current_dir(dir)
        .env("DEB_BUILD_OPTIONS", inv.deb_build_options())
        .env("HOME", dir)
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()?;
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.code());
        }
        if started.elapsed() > limit || cancelled() {
            // sbuild cleans its session up on SIGTERM.
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let grace = std::time::Instant::now();
            while grace.elapsed() < Duration::from_secs(60) {
                if child.try_wait()?.is_some() {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv() -> Invocation {
        Invocation {
            codename: "bookworm".into(),
            architecture: "amd64".into(),
            arch_all: true,
            chroot: "mbd-bookworm-amd64".into(),
            extra_repository: Some(
                "deb http://127.0.0.1:8066/repositories/test bookworm-test-unstable main".into(),
            ),
            extra_repository_key: Some("/h/var/builds/k.asc".into()),
            jobs: 2,
            deb_build_options: vec!["nocheck".into(), "parallel=9".into()],
            profiles: vec!["nocheck".into(), "nodoc".into()],
            dsc: "/h/var/queue/x_1.0/x_1.0.dsc".into(),
        }
    }

    #[test]
    fn command_line() {
        let a = inv().args();
        for want in [
            "--dist=bookworm",
            "--arch=amd64",
            "--chroot=mbd-bookworm-amd64",
            "--arch-all",
            "--no-run-lintian",
            "--jobs=2",
            "--extra-repository=deb http://127.0.0.1:8066/repositories/test bookworm-test-unstable main",
            "--extra-repository-key=/h/var/builds/k.asc",
            "--profiles=nocheck,nodoc",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} not in {a:?}");
        }
        assert_eq!(a.last().unwrap(), "/h/var/queue/x_1.0/x_1.0.dsc");
        assert_eq!(inv().deb_build_options(), "parallel=2 nocheck");
    }

    #[test]
    fn reports() {
        let ok = "...\n+----+\n| Summary |\nBuild Architecture: amd64\nStatus: successful\n";
        assert_eq!(report(ok, Some(0)).outcome, Outcome::Successful);
        let failed = "Fail-Stage: build\nStatus: attempted\n";
        let r = report(failed, Some(2));
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(r.status, "attempted");
        assert_eq!(r.fail_stage.as_deref(), Some("build"));
        let dep = "Fail-Stage: install-deps\nStatus: given-back\n";
        assert_eq!(report(dep, Some(3)).outcome, Outcome::DepWait);
        let killed = report("half a log", None);
        assert_eq!(killed.outcome, Outcome::Failed);
        assert_eq!(killed.status, "sbuild was killed");
        // A successful summary with a failing exit code is not trusted.
        assert_eq!(report(ok, Some(1)).outcome, Outcome::Failed);
    }
}
