//! Checking a published distribution as apt would, naming the files to delete so that the
//! next publish writes them anew.

use super::by_hash_path;
use crate::repo::release;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One thing wrong with a published distribution, as [`verify`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub reason: String,
    /// Files to delete so that the next publish writes them anew (the plain name and its
    /// by-hash copies, which are hard links to the same bytes).
    pub stale: Vec<PathBuf>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// Checks a published distribution directory as apt would: `InRelease` is signed by one of
/// `keyring`'s keys, and every file its SHA256 section lists has that size and digest, also
/// under `by-hash/SHA256/` (a listed uncompressed file that is not there is fine when its
/// `.gz` is: apt then fetches the `.gz`).
pub fn verify(dir: &Path, keyring: &crate::openpgp::Keyring) -> Vec<Problem> {
    use sha2::Digest;
    let in_release = dir.join("InRelease");
    let problem = |path: &Path, reason: String, stale: Vec<PathBuf>| Problem {
        path: path.to_path_buf(),
        reason,
        stale,
    };
    let body = match fs::read(&in_release).map(|data| keyring.verify_cleartext(&data)) {
        Ok(Ok(v)) => String::from_utf8_lossy(&v.body).into_owned(),
        Ok(Err(e)) => return vec![problem(&in_release, e.to_string(), Vec::new())],
        Err(e) => return vec![problem(&in_release, e.to_string(), Vec::new())],
    };
    let mut problems = Vec::new();
    for (name, (d, _)) in &release::entries(&body) {
        let path = dir.join(name);
        let stale = vec![
            path.clone(),
            by_hash_path(&path, "SHA256", &d.sha256),
            by_hash_path(&path, "SHA512", &d.sha512),
        ];
        match fs::read(&path) {
            Ok(bytes) => {
                let reason = if bytes.len() as u64 != d.size {
                    Some(format!("{} bytes, InRelease says {}", bytes.len(), d.size))
                } else if hex::encode(sha2::Sha256::digest(&bytes)) != d.sha256 {
                    Some("SHA256 differs from InRelease".to_string())
                } else if fs::metadata(&stale[1]).map(|m| m.len()).ok() != Some(bytes.len() as u64)
                {
                    Some("its by-hash copy is missing or of the wrong size".to_string())
                } else {
                    None
                };
                if let Some(reason) = reason {
                    problems.push(problem(&path, reason, stale));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !dir.join(format!("{name}.gz")).exists() {
                    problems.push(problem(
                        &path,
                        "listed in InRelease but missing".into(),
                        stale,
                    ));
                }
            }
            Err(e) => problems.push(problem(&path, e.to_string(), stale)),
        }
    }
    problems
}
