//! autopkgtest after a successful build: the source's `debian/tests` run against the packages
//! just built, in a fresh session of the build's own schroot chroot (autopkgtest's schroot
//! backend). mini-buildd's modes: `disabled` (not run), `ignore` (run, never fails the build),
//! `errfail` (failing tests fail it), `warnfail` (skipped tests and "no tests" fail it too).
//! The output is appended to the build log.
//!
//! Our repository's target distribution is added to the testbed (its key inline in the setup
//! commands), so test dependencies on packages we built resolve as build-dependencies do.

use crate::changelog::QaMode;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What autopkgtest's exit code says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Some tests were skipped or only flaky ones failed (exit 2).
    Skipped,
    /// The source has no tests (exit 8).
    NoTests,
    /// A test failed, or the package is erroneous (exit 4, 6, 12).
    Fail,
    /// The testbed failed or autopkgtest could not run (exit 16, 20, a signal).
    Error,
}

impl Verdict {
    pub fn from_exit(code: Option<i32>) -> Verdict {
        match code {
            Some(0) => Verdict::Pass,
            Some(2) => Verdict::Skipped,
            Some(8) => Verdict::NoTests,
            Some(4 | 6 | 12) => Verdict::Fail,
            _ => Verdict::Error,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Skipped => "skipped",
            Verdict::NoTests => "no tests",
            Verdict::Fail => "fail",
            Verdict::Error => "testbed error",
        }
    }

    /// Whether the build passes under `mode` with this verdict (mini-buildd's rule).
    pub fn passes(self, mode: QaMode) -> bool {
        match mode {
            QaMode::Disabled | QaMode::Ignore => true,
            QaMode::ErrFail => matches!(self, Verdict::Pass | Verdict::Skipped | Verdict::NoTests),
            QaMode::WarnFail => self == Verdict::Pass,
        }
    }
}

/// One autopkgtest run's inputs.
pub struct Run<'a> {
    /// The source package (its `debian/tests`).
    pub dsc: &'a Path,
    /// The build's `.changes`: its `.deb` files are the packages under test.
    pub changes: &'a Path,
    /// The schroot chroot of the build.
    pub chroot: &'a str,
    /// `deb ...` lines of our repository and the file with its key (armored).
    pub extra_repositories: (&'a [String], &'a Path),
    /// autopkgtest's output directory (must not exist).
    pub output: PathBuf,
    pub limit: Duration,
}

impl Run<'_> {
    /// autopkgtest's arguments.
    pub fn args(&self) -> Result<Vec<String>, String> {
        let mut a = vec![
            "--no-built-binaries".to_string(),
            format!("--output-dir={}", self.output.display()),
            format!("--timeout-test={}", self.limit.as_secs().max(60)),
        ];
        let (lines, key) = self.extra_repositories;
        if !lines.is_empty() {
            let key =
                std::fs::read_to_string(key).map_err(|e| format!("{}: {e}", key.display()))?;
            a.push(format!("--setup-commands={}", setup_commands(lines, &key)));
        }
        let dir = self.changes.parent().unwrap_or(Path::new("."));
        let text = std::fs::read_to_string(self.changes)
            .map_err(|e| format!("{}: {e}", self.changes.display()))?;
        a.extend(
            debs_of(&text)
                .into_iter()
                .map(|d| dir.join(d).display().to_string()),
        );
        a.push(self.dsc.display().to_string());
        a.extend(["--".to_string(), "schroot".to_string(), self.chroot.into()]);
        Ok(a)
    }
}

/// The `.deb` files a `.changes` lists (not `.ddeb` debug symbols, not `.udeb`).
fn debs_of(changes: &str) -> Vec<String> {
    let mut debs: Vec<String> = changes
        .lines()
        .skip_while(|l| !l.starts_with("Files:"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().last())
        .filter(|f| f.ends_with(".deb") && !f.contains('/'))
        .map(str::to_string)
        .collect();
    debs.sort();
    debs
}

/// Shell run in the testbed before the tests: our repository, trusted by its key only.
fn setup_commands(lines: &[String], key: &str) -> String {
    let lines: Vec<String> = lines
        .iter()
        .map(|line| match line.strip_prefix("deb ") {
            Some(rest) => format!("deb [signed-by=/etc/apt/keyrings/mbd-archive.asc] {rest}"),
            None => line.to_string(),
        })
        .map(|l| l.replace('\'', ""))
        .collect();
    format!(
        "mkdir -p /etc/apt/keyrings && cat > /etc/apt/keyrings/mbd-archive.asc <<'MBD_KEY_END'\n{}\nMBD_KEY_END\nprintf '%s\\n' '{}' > /etc/apt/sources.list.d/mbd.list && apt-get update",
        key.trim_end(),
        lines.join("' '")
    )
}

/// Runs autopkgtest when `mode` asks for it and appends its output to `log`. `Ok` carries the
/// verdict (`None`: not run); `Err` says why the build fails.
pub fn check(
    run: &Run,
    mode: QaMode,
    log: &Path,
    cancelled: &dyn Fn() -> bool,
) -> Result<Option<Verdict>, String> {
    if mode == QaMode::Disabled {
        return Ok(None);
    }
    let mut file = super::sbuild::log_section(
        log,
        &format!("Autopkgtest (mbd, schroot {}, mode {mode:?})", run.chroot),
    )?;
    let verdict = run
        .args()
        .and_then(|args| execute(&args, &file, run.limit, cancelled))
        .map(Verdict::from_exit);
    let verdict = match verdict {
        Ok(v) => v,
        Err(e) => {
            let _ = writeln!(file, "autopkgtest did not run: {e}");
            Verdict::Error
        }
    };
    let _ = writeln!(file, "Autopkgtest: {}", verdict.word());
    if verdict.passes(mode) {
        Ok(Some(verdict))
    } else {
        Err(format!("autopkgtest: {} (mode {mode:?})", verdict.word()))
    }
}

/// Runs autopkgtest with its output into `log`, within `limit` (plus its own setup time).
fn execute(
    args: &[String],
    log: &std::fs::File,
    limit: Duration,
    cancelled: &dyn Fn() -> bool,
) -> Result<Option<i32>, String> {
    let child = std::process::Command::new("autopkgtest")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log.try_clone().map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("autopkgtest: {e}"))?;
    super::sbuild::supervise(child, limit * 2, cancelled).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_exit_code_and_the_mode() {
        assert_eq!(Verdict::from_exit(Some(0)), Verdict::Pass);
        assert_eq!(Verdict::from_exit(Some(2)), Verdict::Skipped);
        assert_eq!(Verdict::from_exit(Some(4)), Verdict::Fail);
        assert_eq!(Verdict::from_exit(Some(8)), Verdict::NoTests);
        assert_eq!(Verdict::from_exit(Some(16)), Verdict::Error);
        assert_eq!(Verdict::from_exit(None), Verdict::Error);
        assert!(Verdict::Fail.passes(QaMode::Ignore));
        assert!(!Verdict::Fail.passes(QaMode::ErrFail));
        assert!(!Verdict::Error.passes(QaMode::ErrFail));
        assert!(Verdict::NoTests.passes(QaMode::ErrFail));
        assert!(!Verdict::NoTests.passes(QaMode::WarnFail));
        assert!(Verdict::Pass.passes(QaMode::WarnFail));
    }

    #[test]
    fn the_packages_under_test_are_the_changes_debs() {
        let changes = "Source: x\nFiles:\n abc 10 misc optional x_1_amd64.deb\n abd 11 debug optional x-dbgsym_1_amd64.ddeb\n abe 12 misc optional libx-dev_1_amd64.deb\n abf 1 misc optional x-udeb_1_amd64.udeb\nChecksums-Sha256:\n ff 10 x_1_amd64.deb\n";
        assert_eq!(debs_of(changes), ["libx-dev_1_amd64.deb", "x_1_amd64.deb"]);
    }

    #[test]
    fn the_testbed_trusts_our_repository_by_its_key_only() {
        let s = setup_commands(
            &[
                "deb http://127.0.0.1:8066/repositories/test bookworm-test-unstable main".into(),
                "deb http://127.0.0.1:8066/repositories/test bookworm-test-stable main".into(),
            ],
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\nabc\n-----END PGP PUBLIC KEY BLOCK-----\n",
        );
        assert!(s.contains("printf '%s\\n' 'deb [signed-by=/etc/apt/keyrings/mbd-archive.asc] http://127.0.0.1:8066/repositories/test bookworm-test-unstable main' 'deb [signed-by=/etc/apt/keyrings/mbd-archive.asc] http://127.0.0.1:8066/repositories/test bookworm-test-stable main' > /etc/apt/sources.list.d/mbd.list"), "{s}");
        assert!(s.contains("<<'MBD_KEY_END'\n-----BEGIN PGP PUBLIC KEY BLOCK-----\nabc\n-----END PGP PUBLIC KEY BLOCK-----\nMBD_KEY_END\n"));
    }
}
