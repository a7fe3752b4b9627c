//! The `debmirror` export: a standalone copy of selected published distributions that any
//! static web server can serve to apt, as Debian's `debmirror` tool makes one.
//!
//! Per repository, the destination gets `dists/<dist>/` for each selected distribution (its
//! signed `InRelease`, `Release` and `Release.gpg` as published, and of the files they list
//! those of the selected components and architectures, with their by-hash copies) and
//! exactly the `pool/` files those indices reference. The signed files are kept verbatim, so
//! the mirror verifies with the archive key; apt only fetches the indices its sources ask
//! for, so listed files of other architectures are not needed.
//!
//! Every index is read through its by-hash name (its SHA256 from the verified `InRelease`),
//! so a publish running meanwhile cannot mix two generations. Pool files are hard links
//! where the destination is on the same file system (pool files never change under a name),
//! else copies; a file already there with the size the index gives is kept. Order: pool,
//! indices, signed files last; then what the export no longer references is removed.

use super::distribution::DistName;
use super::{Engine, RepoError};
use crate::checksums::Digests;
use crate::repo::release;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What to export. Empty lists select everything.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub repositories: Vec<String>,
    pub codenames: Vec<String>,
    pub suites: Vec<String>,
    /// How many rollback distributions of each suite: 0 none, -1 all.
    pub rollbacks: i64,
    pub architectures: Vec<String>,
    pub components: Vec<String>,
    /// `{}` is replaced by the repository's identity.
    pub destination: String,
}

/// What one repository's export did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Exported {
    pub repository: String,
    pub destination: PathBuf,
    pub distributions: Vec<String>,
    /// Pool files linked or copied now, and those already there.
    pub pool_new: usize,
    pub pool_kept: usize,
    pub pool_bytes: u64,
    /// Files the export no longer references, removed.
    pub removed: usize,
}

fn wanted(list: &[String], value: &str) -> bool {
    list.is_empty() || list.iter().any(|v| v == value)
}

impl Selection {
    fn dist(&self, d: &DistName) -> bool {
        wanted(&self.codenames, &d.codename)
            && wanted(&self.suites, &d.suite)
            && match d.rollback {
                None => true,
                Some(n) => self.rollbacks < 0 || i64::from(n) < self.rollbacks,
            }
    }

    /// Whether a file a Release lists (`main/binary-amd64/Packages.xz`) is selected.
    fn file(&self, path: &str) -> bool {
        let mut parts = path.split('/');
        let (Some(component), Some(dir)) = (parts.next(), parts.next()) else {
            return false;
        };
        if !wanted(&self.components, component) {
            return false;
        }
        let dir = match dir {
            "debian-installer" => parts.next().unwrap_or(""),
            d => d,
        };
        let arch = dir
            .strip_prefix("binary-")
            .or_else(|| dir.strip_prefix("Contents-udeb-"))
            .or_else(|| dir.strip_prefix("Contents-"))
            .map(|a| a.split('.').next().unwrap_or(a));
        match arch {
            Some("all") => true,
            Some(a) => wanted(&self.architectures, a),
            None => matches!(dir, "source" | "i18n"),
        }
    }
}

impl Engine {
    /// Exports the selected distributions of the selected repositories (see the module).
    pub fn debmirror(&self, sel: &Selection) -> Result<Vec<Exported>, RepoError> {
        let keyring = self.key.keyring();
        let mut out = Vec::new();
        for repo in self.repositories()? {
            if !wanted(&sel.repositories, &repo.identity) {
                continue;
            }
            let layout = self.layout(&repo.layout)?;
            let dists: Vec<DistName> = super::dists::repository_dists(&repo, &layout)
                .into_iter()
                .filter(|d| sel.dist(d))
                .collect();
            let dest = PathBuf::from(sel.destination.replace("{}", &repo.identity));
            let source = self.repo_dir(&repo.identity);
            out.push(
                export_repository(&source, &dest, &dists, sel, &keyring).map_err(|reason| {
                    RepoError::Export {
                        path: dest.clone(),
                        reason,
                    }
                })?,
            );
            out.last_mut().unwrap().repository = repo.identity.clone();
        }
        Ok(out)
    }
}

/// One distribution's selected files: their paths under `dists/<dist>/` and digests.
struct DistFiles {
    name: String,
    signed: Vec<(String, Vec<u8>)>,
    files: BTreeMap<String, Digests>,
}

fn export_repository(
    source: &Path,
    dest: &Path,
    dists: &[DistName],
    sel: &Selection,
    keyring: &crate::openpgp::Keyring,
) -> Result<Exported, String> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| format!("{}: {e}", p.display())
    };
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    // 1. What to export: the verified InRelease of each distribution says.
    let mut plan = Vec::new();
    for d in dists {
        let dir = source.join("dists").join(d.to_string());
        if !dir.join("InRelease").exists() {
            continue; // Never published (e.g. a rollback slot not used yet).
        }
        plan.push(dist_files(&dir, &d.to_string(), sel, keyring)?);
    }
    // 2. The pool files the selected indices reference.
    let mut pool: BTreeMap<String, u64> = BTreeMap::new();
    for d in &plan {
        let dir = source.join("dists").join(&d.name);
        for (path, digests) in &d.files {
            let base = path.rsplit('/').next().unwrap_or(path);
            if base == "Packages" || base == "Sources" {
                let text = read_index(&dir, path, &d.files)?;
                pool_files(&text, base == "Sources", &mut pool)?;
                let _ = digests;
            }
        }
    }
    let mut report = Exported {
        destination: dest.to_path_buf(),
        distributions: plan.iter().map(|d| d.name.clone()).collect(),
        ..Exported::default()
    };
    for (name, size) in &pool {
        let from = source.join(name);
        let to = dest.join(name);
        if std::fs::metadata(&to).is_ok_and(|m| m.len() == *size) {
            report.pool_kept += 1;
            continue;
        }
        place(&from, &to)?;
        report.pool_new += 1;
        report.pool_bytes += size;
    }
    // 3. The indices and their by-hash copies, then the signed files.
    let mut keep: BTreeSet<PathBuf> = pool.keys().map(|n| dest.join(n)).collect();
    for d in &plan {
        let (from_dir, to_dir) = (
            source.join("dists").join(&d.name),
            dest.join("dists").join(&d.name),
        );
        for (path, digests) in &d.files {
            let Some(from) = existing_copy(&from_dir, path, digests) else {
                continue; // Listed but not published (an uncompressed index next to its .gz).
            };
            let to = to_dir.join(path);
            let hashed = super::publish::by_hash_path(&to, "SHA256", &digests.sha256);
            if !std::fs::metadata(&hashed).is_ok_and(|m| m.len() == digests.size) {
                place(&from, &hashed)?;
            }
            replace_with_link(&hashed, &to)?;
            keep.insert(hashed);
            keep.insert(to);
        }
        for (name, bytes) in &d.signed {
            let to = to_dir.join(name);
            write_atomically(&to, bytes)?;
            keep.insert(to);
        }
    }
    // 4. What is no longer referenced.
    for top in ["pool", "dists"] {
        report.removed += remove_unreferenced(&dest.join(top), &keep)?;
    }
    Ok(report)
}

/// The verified InRelease of `dir` and the files it lists that `sel` selects.
fn dist_files(
    dir: &Path,
    name: &str,
    sel: &Selection,
    keyring: &crate::openpgp::Keyring,
) -> Result<DistFiles, String> {
    let mut signed = Vec::new();
    for file in ["InRelease", "Release", "Release.gpg"] {
        let path = dir.join(file);
        match std::fs::read(&path) {
            Ok(bytes) => signed.push((file.to_string(), bytes)),
            Err(e) if file == "InRelease" => return Err(format!("{}: {e}", path.display())),
            Err(_) => {}
        }
    }
    let verified = keyring
        .verify_cleartext(&signed[0].1)
        .map_err(|e| format!("{}: {e}", dir.join("InRelease").display()))?;
    let body = String::from_utf8_lossy(&verified.body);
    let files = release::listed(&body)
        .into_iter()
        .filter(|(path, _)| sel.file(path))
        .collect();
    Ok(DistFiles {
        name: name.to_string(),
        signed,
        files,
    })
}

/// The published copy of a listed file with its digest: by-hash first (immutable), then the
/// plain name if its size matches.
fn existing_copy(dir: &Path, path: &str, d: &Digests) -> Option<PathBuf> {
    let plain = dir.join(path);
    let hashed = super::publish::by_hash_path(&plain, "SHA256", &d.sha256);
    [hashed, plain]
        .into_iter()
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.len() == d.size))
}

/// The text of index `path` (`main/binary-amd64/Packages`), from whichever compressed or
/// plain variant is published, checked against the verified digest.
fn read_index(dir: &Path, path: &str, files: &BTreeMap<String, Digests>) -> Result<String, String> {
    use sha2::Digest;
    for ext in ["", ".xz", ".gz"] {
        let name = format!("{path}{ext}");
        let Some(d) = files.get(&name) else { continue };
        let Some(file) = existing_copy(dir, &name, d) else {
            continue;
        };
        let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        if hex::encode(sha2::Sha256::digest(&bytes)) != d.sha256 {
            return Err(format!("{}: SHA256 differs from InRelease", file.display()));
        }
        let mut text = String::new();
        let read = match ext {
            ".xz" => liblzma::read::XzDecoder::new(&bytes[..]).read_to_string(&mut text),
            ".gz" => flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_string(&mut text),
            _ => std::str::from_utf8(&bytes)
                .map(|t| text.push_str(t))
                .map(|()| 0)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        };
        read.map_err(|e| format!("{}: {e}", file.display()))?;
        return Ok(text);
    }
    Err(format!(
        "{}: no published variant",
        dir.join(path).display()
    ))
}

/// Adds the pool files (path under the repository, size) an index references.
fn pool_files(text: &str, sources: bool, pool: &mut BTreeMap<String, u64>) -> Result<(), String> {
    let paragraphs =
        crate::control::parse_paragraphs(text).map_err(|e| format!("an index: {e}"))?;
    for p in paragraphs {
        if !sources {
            let (Some(name), Some(size)) = (p.get("Filename"), p.get("Size")) else {
                continue;
            };
            pool.insert(safe(name)?, size.trim().parse().unwrap_or(0));
            continue;
        }
        let Some(dir) = p.get("Directory") else {
            continue;
        };
        let Some(files) = p.field("Checksums-Sha256").or_else(|| p.field("Files")) else {
            continue;
        };
        for line in files.continuation_lines() {
            if let [_, size, name] = line.split_whitespace().collect::<Vec<_>>()[..] {
                pool.insert(safe(&format!("{dir}/{name}"))?, size.parse().unwrap_or(0));
            }
        }
    }
    Ok(())
}

/// A pool path from an index: relative, under `pool/`, no `..`.
fn safe(path: &str) -> Result<String, String> {
    let path = path.trim();
    if !path.starts_with("pool/") || path.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err(format!("an index names '{path}', which is not a pool path"));
    }
    Ok(path.to_string())
}

/// Puts `from` at `to`: a hard link where possible, else a copy (through a temporary name).
fn place(from: &Path, to: &Path) -> Result<(), String> {
    let dir = to.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.mbd-tmp",
        to.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(from, &tmp).is_err() {
        std::fs::copy(from, &tmp)
            .map_err(|e| format!("{} → {}: {e}", from.display(), tmp.display()))?;
    }
    std::fs::rename(&tmp, to).map_err(|e| format!("{}: {e}", to.display()))
}

/// `to` becomes another name of `hashed` (apt reads both).
fn replace_with_link(hashed: &Path, to: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let same = match (std::fs::metadata(hashed), std::fs::metadata(to)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    };
    if same {
        return Ok(());
    }
    place(hashed, to)
}

fn write_atomically(to: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = to.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.mbd-tmp",
        to.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, to))
        .map_err(|e| format!("{}: {e}", to.display()))
}

/// Removes every file under `dir` that `keep` does not name, and directories left empty.
fn remove_unreferenced(dir: &Path, keep: &BTreeSet<PathBuf>) -> Result<usize, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if kind.is_dir() {
            removed += remove_unreferenced(&path, keep)?;
            let _ = std::fs::remove_dir(&path); // Only when empty.
        } else if !keep.contains(&path) {
            std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selection_picks_distributions_and_index_files() {
        let sel = Selection {
            suites: vec!["unstable".into()],
            rollbacks: 1,
            architectures: vec!["amd64".into()],
            components: vec!["main".into()],
            ..Selection::default()
        };
        let d = |suite: &str, rollback| DistName {
            codename: "bookworm".into(),
            repository: "test".into(),
            suite: suite.into(),
            rollback,
        };
        assert!(sel.dist(&d("unstable", None)));
        assert!(sel.dist(&d("unstable", Some(0))));
        assert!(!sel.dist(&d("unstable", Some(1))));
        assert!(!sel.dist(&d("stable", None)));
        for yes in [
            "main/binary-amd64/Packages.xz",
            "main/binary-all/Packages",
            "main/source/Sources.gz",
            "main/Contents-amd64.gz",
            "main/debian-installer/binary-amd64/Packages",
            "main/i18n/Translation-en",
        ] {
            assert!(sel.file(yes), "{yes}");
        }
        for no in [
            "main/binary-i386/Packages.xz",
            "contrib/binary-amd64/Packages",
            "main/Contents-i386.gz",
            "Release",
        ] {
            assert!(!sel.file(no), "{no}");
        }
    }

    #[test]
    fn pool_paths_from_indices_are_checked() {
        let mut pool = BTreeMap::new();
        pool_files(
            "Package: a\nFilename: pool/main/a/a/a_1_all.deb\nSize: 10\n\nPackage: b\nFilename: pool/main/b/b/../../../x\nSize: 1\n",
            false,
            &mut pool,
        )
        .unwrap_err();
        pool_files(
            "Package: s\nDirectory: pool/main/s/s\nChecksums-Sha256:\n ab 12 s_1.dsc\n cd 34 s_1.tar.xz\n",
            true,
            &mut pool,
        )
        .unwrap();
        assert_eq!(pool.get("pool/main/s/s/s_1.dsc"), Some(&12));
        assert_eq!(pool.get("pool/main/s/s/s_1.tar.xz"), Some(&34));
    }
}
