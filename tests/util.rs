use std::path::{Path, PathBuf};
use std::process::Command;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub fn pkg(name: &str) -> PathBuf {
    fixtures().join("pkg").join(name)
}

pub fn uploaders() -> mbd::openpgp::Keyring {
    mbd::openpgp::Keyring::from_file(&fixtures().join("keys/uploaders.asc")).unwrap()
}

/// The fingerprint of a fixture key (`keys/fingerprints`).
pub fn fingerprint(who: &str) -> String {
    let text = std::fs::read_to_string(fixtures().join("keys/fingerprints")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{who} ")))
        .unwrap_or_else(|| panic!("no fixture key {who}"))
        .to_string()
}

/// Files in a fixture directory whose names end with `suffix`, sorted.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// Runs a command; returns (success, stdout+stderr).
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
