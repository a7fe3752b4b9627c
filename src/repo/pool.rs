//! The pool: `pool/<component>/<prefix>/<source>/<file>`, where `<prefix>` is the first
//! letter of the source, or `libX` for `lib*` sources.
//!
//! Files enter the pool before the store records them (a crash leaves at most an unreferenced
//! file, which the journal lets the next open remove) and leave it only after the store has
//! dropped the last reference.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// `pool/<component>/<prefix>/<source>`
pub fn directory(component: &str, source: &str) -> String {
    let prefix = if source.starts_with("lib") && source.len() > 3 {
        &source[..4]
    } else {
        &source[..1]
    };
    format!("pool/{component}/{prefix}/{source}")
}

/// Copies `from` to `root/rel` atomically (temporary file, fsync, rename).
pub fn place(from: &Path, root: &Path, rel: &str) -> io::Result<()> {
    let to = root.join(rel);
    let dir = to.parent().expect("pool paths have a directory");
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        to.file_name().unwrap().to_string_lossy()
    ));
    {
        let mut src = File::open(from)?;
        let mut dst = File::create(&tmp)?;
        io::copy(&mut src, &mut dst)?;
        dst.flush()?;
        dst.sync_all()?;
    }
    fs::rename(&tmp, &to)
}

/// Removes a pool file and the directories it leaves empty (up to `pool/`).
pub fn remove(root: &Path, rel: &str) -> io::Result<()> {
    let path = root.join(rel);
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut dir: Option<PathBuf> = path.parent().map(Path::to_path_buf);
    while let Some(d) = dir {
        if d == root.join("pool") || fs::remove_dir(&d).is_err() {
            break;
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    Ok(())
}

/// The journal of pool files placed by an operation that has not committed yet.
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    pub fn new(path: PathBuf) -> Journal {
        Journal { path }
    }

    /// Records the paths about to be placed (durably, before any copy).
    pub fn begin(&self, paths: &[String]) -> io::Result<()> {
        if let Some(d) = self.path.parent() {
            fs::create_dir_all(d)?;
        }
        let mut f = File::create(&self.path)?;
        f.write_all(paths.join("\n").as_bytes())?;
        f.sync_all()
    }

    pub fn end(&self) -> io::Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Paths left by an interrupted operation.
    pub fn leftovers(&self) -> io::Result<Vec<String>> {
        match fs::read_to_string(&self.path) {
            Ok(s) => Ok(s
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(directory("main", "hello"), "pool/main/h/hello");
        assert_eq!(directory("contrib", "libfoo"), "pool/contrib/libf/libfoo");
        assert_eq!(directory("main", "lib"), "pool/main/l/lib");
    }
}
