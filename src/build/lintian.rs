//! Lintian on a build's results, on the host (installing lintian into every clean chroot
//! session would cost more than the build). mini-buildd's modes: `disabled` (not run),
//! `ignore` (run, never fails the build), `errfail` (errors fail it), `warnfail` (errors and
//! warnings fail it). The output is appended to the build log.

use crate::changelog::QaMode;
use std::io::Write;
use std::path::Path;

/// lintian's `--fail-on` for a mode (`None`: do not run).
pub fn fail_on(mode: QaMode) -> Option<&'static str> {
    match mode {
        QaMode::Disabled => None,
        QaMode::Ignore => Some("none"),
        QaMode::ErrFail => Some("error"),
        QaMode::WarnFail => Some("error,warning"),
    }
}

/// Runs lintian on `changes` and appends its output to `log`. `Err` says why the build fails.
pub fn check(changes: &Path, mode: QaMode, log: &Path) -> Result<(), String> {
    let Some(fail_on) = fail_on(mode) else {
        return Ok(());
    };
    let mut file = super::sbuild::log_section(
        log,
        &format!("Lintian (mbd, on the host, --fail-on {fail_on})"),
    )?;
    let out = file.try_clone().map_err(|e| e.to_string())?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    let status = std::process::Command::new("lintian")
        .arg(format!("--fail-on={fail_on}"))
        .arg("--suppress-tags=bad-distribution-in-changes-file")
        .arg(changes)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .status();
    let result = match status {
        Err(e) => Err(format!("lintian did not run: {e}")),
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("lintian found problems ({s}; --fail-on {fail_on})")),
    };
    let _ = writeln!(
        file,
        "Lintian: {}",
        match &result {
            Ok(()) => "pass".to_string(),
            Err(e) => e.clone(),
        }
    );
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(fail_on(QaMode::Disabled), None);
        assert_eq!(fail_on(QaMode::Ignore), Some("none"));
        assert_eq!(fail_on(QaMode::ErrFail), Some("error"));
        assert_eq!(fail_on(QaMode::WarnFail), Some("error,warning"));
    }
}
