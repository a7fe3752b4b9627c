//! One sbuild run: the command line for a build job, and what its `.build` log says.
//!
//! sbuild runs as root in the job's directory (`<home>/var/builds/<source>_<version>/<arch>/`),
//! which receives the `.build` log and the results. The target distribution of our own
//! repository is added as an extra repository, signed by the archive key, so that
//! build-dependencies on packages we built resolve. Lintian, autopkgtest and piuparts do not
//! run inside sbuild's session: lintian runs on the host, autopkgtest in a session of its own
//! (`autopkgtest.rs`).

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
    pub extra_repositories: Vec<String>,
    /// File with the archive's public key (armored) that signs it.
    pub extra_repository_key: Option<PathBuf>,
    /// Parallel jobs (`--jobs`, `DEB_BUILD_OPTIONS=parallel=N`).
    pub jobs: u32,
    /// Extra `DEB_BUILD_OPTIONS` words (from the upload's options).
    pub deb_build_options: Vec<String>,
    /// Build profiles (`--profiles`, from the upload's options).
    pub profiles: Vec<String>,
    /// The distribution's other apt sources (backports and the like), pinned.
    pub pinned: Vec<PinnedSource>,
    /// Extra build-dependencies (`--add-depends`).
    pub add_depends: Vec<String>,
    /// A script (with its `#!` line) run in the chroot before build-dependencies are
    /// installed.
    pub chroot_setup_script: String,
    /// Perl appended to the generated `.sbuildrc`.
    pub sbuildrc_snippet: String,
    /// The `.dsc` to build.
    pub dsc: PathBuf,
    /// sbuild's `--build-dep-resolver`: `aptitude` (mini-buildd's default; it takes a version
    /// of ours that a versioned build-dependency needs even where Debian's is apt's
    /// candidate) or `apt`.
    pub resolver: String,
}

pub use crate::config::PinnedSource;

/// Where the pins go in the chroot.
const PREFERENCES: &str = "/etc/apt/preferences.d/mbd-extra-sources";

/// Where the chroot setup script is written in the chroot.
const SETUP_SCRIPT: &str = "/tmp/mbd-chroot-setup-script";

/// A POSIX shell single-quoted word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A Perl single-quoted string.
fn perl_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
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
            format!("--build-dep-resolver={}", self.resolver),
        ];
        if !self.profiles.is_empty() {
            a.push(format!("--profiles={}", self.profiles.join(",")));
        }
        for repo in &self.extra_repositories {
            a.push(format!("--extra-repository={repo}"));
        }
        if let Some(key) = &self.extra_repository_key {
            a.push(format!("--extra-repository-key={}", key.display()));
        }
        for p in &self.pinned {
            a.push(format!("--extra-repository={}", p.line));
        }
        for d in &self.add_depends {
            a.push(format!("--add-depends={d}"));
        }
        a.push(self.dsc.display().to_string());
        a
    }

    /// The `.sbuildrc` sbuild reads (from `HOME`, the job's directory): the pins and the
    /// distribution's chroot setup script as chroot-setup commands, then the distribution's
    /// snippet. sbuild runs each command as one `/bin/sh -c` line in the chroot, after
    /// expanding its %-escapes: so each is a shell line with its data single-quoted, and
    /// every `%` doubled.
    pub fn sbuildrc(&self) -> String {
        let mut commands: Vec<String> = Vec::new();
        if !self.pinned.is_empty() {
            let pins: String = self
                .pinned
                .iter()
                .map(|p| {
                    format!(
                        "Package: *\nPin: release n={}\nPin-Priority: {}\n\n",
                        p.codename, p.priority
                    )
                })
                .collect();
            commands.push(format!("printf '%s' {} >{PREFERENCES}", shell_quote(&pins)));
            commands.push(format!("cat {PREFERENCES}"));
        }
        if !self.chroot_setup_script.is_empty() {
            commands.push(format!(
                "printf '%s' {} >{SETUP_SCRIPT} && chmod 0700 {SETUP_SCRIPT} && {SETUP_SCRIPT}",
                shell_quote(&self.chroot_setup_script.replace("\r\n", "\n"))
            ));
        }
        let mut out = String::from("# Generated by mbd for this build. Do not edit.\n");
        if !commands.is_empty() {
            out.push_str("$external_commands = {\n    'chroot-setup-commands' => [\n");
            for c in &commands {
                out.push_str(&format!("        {},\n", perl_quote(&c.replace('%', "%%"))));
            }
            out.push_str("    ],\n};\n");
        }
        if !self.sbuildrc_snippet.is_empty() {
            out.push_str(&self.sbuildrc_snippet);
            out.push('\n');
        }
        out.push_str("1;\n");
        out
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
    let missing = if fail_stage.as_deref() == Some("install-deps") {
        missing_dependencies(log)
    } else {
        Vec::new()
    };
    let status = status.map(|s| match missing.is_empty() {
        true => s,
        false => format!("{s}; not installable: {}", missing.join(", ")),
    });
    Report {
        outcome,
        status: status.unwrap_or_else(|| match exit {
            Some(c) => match first_error(log) {
                Some(e) => format!("sbuild exited with {c} before its summary: {e}"),
                None => format!("sbuild exited with {c} and no summary"),
            },
            None => "sbuild was killed".to_string(),
        }),
        fail_stage,
    }
}

/// The build-dependencies the resolver could not install, as the log names them: dose3's
/// `unsat-dependency:` lines (sbuild's explanation), else apt's `Depends: X but ...` lines
/// under "The following packages have unmet dependencies:". Architecture qualifiers of the
/// package names go (`hello:amd64 (>= 2)` is `hello (>= 2)`); each named once, at most 10.
pub fn missing_dependencies(log: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |dep: &str| {
        let dep = dep.trim();
        let (name, rest) = dep.split_once(' ').unwrap_or((dep, ""));
        let name = name.split_once(':').map_or(name, |(n, _)| n);
        let dep = format!("{name} {rest}").trim().to_string();
        if !dep.is_empty() && !out.contains(&dep) && out.len() < 10 {
            out.push(dep);
        }
    };
    let unsat: Vec<&str> = log
        .lines()
        .filter_map(|l| l.trim().strip_prefix("unsat-dependency:"))
        .collect();
    if !unsat.is_empty() {
        unsat.into_iter().for_each(&mut add);
        return out;
    }
    let mut in_unmet = false;
    for line in log.lines() {
        if line.starts_with("The following packages have unmet dependencies:") {
            in_unmet = true;
            continue;
        }
        if !in_unmet {
            continue;
        }
        if !line.starts_with(' ') {
            in_unmet = false;
            continue;
        }
        let Some((_, dep)) = line.split_once("Depends: ") else {
            continue;
        };
        add(dep.split(" but ").next().unwrap_or(dep));
    }
    out
}

/// The first error line (`E: ...`) of a log: what went wrong when sbuild stopped before its
/// summary (no chroot session, a download or key error).
fn first_error(log: &str) -> Option<String> {
    log.lines()
        .map(str::trim)
        .find(|l| l.starts_with("E: "))
        .map(|l| l.chars().take(300).collect())
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
    let child = std::process::Command::new("sbuild")
        .args(inv.args())
        .current_dir(dir)
        .env("DEB_BUILD_OPTIONS", inv.deb_build_options())
        .env("HOME", dir)
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()?;
    supervise(child, limit, cancelled)
}

/// Opens a build log for appending and writes a section header in sbuild's style (what the
/// QA tools run after sbuild append under).
pub fn log_section(log: &Path, title: &str) -> Result<std::fs::File, String> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let rule = format!("+{}+", "-".repeat(78));
    let _ = writeln!(file, "\n{rule}\n| {title}\n{rule}\n");
    Ok(file)
}

/// Waits for a child (sbuild, autopkgtest) until it ends, `limit` passes or `cancelled` says
/// so; then SIGTERM (both clean their schroot session up on it), a minute's grace, and KILL.
/// The exit code, or `None` when it was stopped or killed by a signal.
pub fn supervise(
    mut child: std::process::Child,
    limit: Duration,
    cancelled: &dyn Fn() -> bool,
) -> std::io::Result<Option<i32>> {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.code());
        }
        if started.elapsed() > limit || cancelled() {
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
            extra_repositories: vec![
                "deb http://127.0.0.1:8066/repositories/test bookworm-test-unstable main".into(),
            ],
            extra_repository_key: Some("/h/var/builds/k.asc".into()),
            jobs: 2,
            deb_build_options: vec!["nocheck".into(), "parallel=9".into()],
            profiles: vec!["nocheck".into(), "nodoc".into()],
            pinned: vec![PinnedSource {
                line: "deb http://deb.debian.org/debian/ bookworm-backports main".into(),
                codename: "bookworm-backports".into(),
                priority: 1,
            }],
            add_depends: vec!["libfoo-dev (>= 1.2)".into()],
            chroot_setup_script: "#!/bin/sh\r\necho \"'it''s' \\\\o/ 100%\"\r\n".into(),
            sbuildrc_snippet: "$build_environment = { 'X' => '/l' };".into(),
            dsc: "/h/var/queue/x_1.0/x_1.0.dsc".into(),
            resolver: "aptitude".into(),
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
            "--extra-repository=deb http://deb.debian.org/debian/ bookworm-backports main",
            "--add-depends=libfoo-dev (>= 1.2)",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} not in {a:?}");
        }
        assert_eq!(a.last().unwrap(), "/h/var/queue/x_1.0/x_1.0.dsc");
        assert_eq!(inv().deb_build_options(), "parallel=2 nocheck");
    }

    #[test]
    fn sbuildrc_pins_runs_the_setup_script_and_ends_with_the_snippet() {
        let rc = Invocation {
            chroot_setup_script: "#!/bin/sh\r\necho hi\r\n".into(),
            ..inv()
        }
        .sbuildrc();
        let want = concat!(
            "# Generated by mbd for this build. Do not edit.\n",
            "$external_commands = {\n",
            "    'chroot-setup-commands' => [\n",
            "        'printf \\'%%s\\' \\'Package: *\nPin: release n=bookworm-backports\nPin-Priority: 1\n\n\\' ",
            ">/etc/apt/preferences.d/mbd-extra-sources',\n",
            "        'cat /etc/apt/preferences.d/mbd-extra-sources',\n",
            "        'printf \\'%%s\\' \\'#!/bin/sh\necho hi\n\\' ",
            ">/tmp/mbd-chroot-setup-script && chmod 0700 /tmp/mbd-chroot-setup-script && /tmp/mbd-chroot-setup-script',\n",
            "    ],\n",
            "};\n",
            "$build_environment = { 'X' => '/l' };\n",
            "1;\n",
        );
        assert_eq!(rc, want);
        let plain = Invocation {
            pinned: Vec::new(),
            chroot_setup_script: String::new(),
            sbuildrc_snippet: String::new(),
            ..inv()
        };
        assert_eq!(
            plain.sbuildrc(),
            "# Generated by mbd for this build. Do not edit.\n1;\n"
        );
    }

    /// What sbuild does with the setup script's command: Perl reads it, %% becomes %, and
    /// `/bin/sh -c` runs it; the script runs with its text intact.
    #[test]
    fn the_setup_script_command_runs_the_script_as_written() {
        let (Ok(_), Ok(_)) = (
            std::process::Command::new("perl").arg("-v").output(),
            std::process::Command::new("sh")
                .arg("-c")
                .arg("true")
                .output(),
        ) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let rc = inv().sbuildrc();
        let out = std::process::Command::new("perl")
            .arg("-e")
            .arg(format!(
                "{rc}\nmy $c = $external_commands->{{'chroot-setup-commands'}}->[2]; $c =~ s/%%/%/g; print $c;"
            ))
            .output()
            .unwrap();
        let line = String::from_utf8(out.stdout)
            .unwrap()
            .replace(SETUP_SCRIPT, &dir.path().join("s").display().to_string());
        let ran = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&line)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&ran.stdout),
            "'it''s' \\o/ 100%\n",
            "{line}\n{}",
            String::from_utf8_lossy(&ran.stderr)
        );
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
        assert_eq!(report(dep, Some(3)).status, "given-back");
        let killed = report("half a log", None);
        assert_eq!(killed.outcome, Outcome::Failed);
        assert_eq!(killed.status, "sbuild was killed");
        // A successful summary with a failing exit code is not trusted.
        assert_eq!(report(ok, Some(1)).outcome, Outcome::Failed);
        // Stopped before the summary: the first error line says why.
        let early = "sbuild (Debian sbuild) 0.85.0\nI: no session\nE: Error creating chroot session: skipping hello\nE: later noise\n";
        let r = report(early, Some(1));
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(
            r.status,
            "sbuild exited with 1 before its summary: E: Error creating chroot session: skipping hello"
        );
        assert_eq!(
            report("no errors", Some(1)).status,
            "sbuild exited with 1 and no summary"
        );
    }

    #[test]
    fn a_dep_wait_names_what_could_not_be_installed() {
        // dose3's explanation, as sbuild prints it after the resolver failed.
        let dose = "  reasons:\n   -\n    missing:\n     pkg:\n      package: sbuild-build-depends-main-dummy\n      unsat-dependency: mbd-missing-dev:amd64 (>= 2.0)\n   -\n      unsat-dependency: mbd-other:amd64\n      unsat-dependency: mbd-missing-dev:amd64 (>= 2.0)\nE: Package build dependencies not satisfied; skipping\nFail-Stage: install-deps\nStatus: given-back\n";
        let r = report(dose, Some(3));
        assert_eq!(r.outcome, Outcome::DepWait);
        assert_eq!(
            r.status,
            "given-back; not installable: mbd-missing-dev (>= 2.0), mbd-other"
        );
        // apt's resolver lines, when there is no dose3 explanation.
        let apt = "The following packages have unmet dependencies:\n sbuild-build-depends-main-dummy : Depends: libnope-dev (>= 1.2) but it is not installable\n                                   Depends: libgone-dev but it is not going to be installed\nE: Unable to correct problems, you have held broken packages.\nFail-Stage: install-deps\nStatus: given-back\n";
        assert_eq!(
            missing_dependencies(apt),
            ["libnope-dev (>= 1.2)", "libgone-dev"]
        );
        // Only at install-deps: a failed build's log that mentions Depends is not a dep-wait.
        let build = "The following packages have unmet dependencies:\n x : Depends: y but it is not installable\nFail-Stage: build\nStatus: attempted\n";
        assert_eq!(report(build, Some(2)).status, "attempted");
    }
}
