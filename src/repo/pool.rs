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

/// Copies `from` to `root/rel` through a temporary name and a rename. Not synced: call
/// [`sync`] once after a batch, before the store records the files.
pub fn place(from: &Path, root: &Path, rel: &str) -> io::Result<()> {
    let to = root.join(rel);
    let dir = to.parent().expect("pool paths have a directory");
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        to.file_name().unwrap().to_string_lossy()
    ));
    fs::copy(from, &tmp)?;
    fs::rename(&tmp, &to)
}

/// Moves a staged file (see [`Staging`]) to `root/rel`.
pub fn place_staged(staged: &Path, root: &Path, rel: &str) -> io::Result<()> {
    let to = root.join(rel);
    fs::create_dir_all(to.parent().expect("pool paths have a directory"))?;
    fs::rename(staged, &to)
}

/// Flushes everything written to the file system holding `path` (one `syncfs` instead of an
/// fsync per file).
pub fn sync(path: &Path) -> io::Result<()> {
    let dir = File::open(path)?;
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs only reads the descriptor, which `dir` keeps open for the call.
    let rc = unsafe { libc::syncfs(dir.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A directory inside the pool where package files are copied while they are read, so each
/// file is read once for hashing, parsing and copying. Staged files either move into the pool
/// or are deleted; whatever a crash leaves here is deleted at the next open.
pub struct Staging {
    dir: PathBuf,
    counter: std::sync::atomic::AtomicU64,
}

impl Staging {
    /// A staging area of its own (several includes may read at once; only their commits
    /// take turns).
    pub fn new(repo_root: &Path) -> io::Result<Staging> {
        static AREAS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let area = AREAS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = repo_root
            .join("pool/.staging")
            .join(format!("{}-{area}", std::process::id()));
        fs::create_dir_all(&dir)?;
        Ok(Staging {
            dir,
            counter: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Removes everything left in a repository's staging directory.
    pub fn clear(repo_root: &Path) -> io::Result<()> {
        match fs::remove_dir_all(repo_root.join("pool/.staging")) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// A fresh file to copy into. Each thread gets its own subdirectory, so parallel readers
    /// do not contend for one directory's lock.
    pub fn create(&self) -> io::Result<(PathBuf, File)> {
        static THREADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        thread_local! {
            static SLOT: u64 = THREADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.dir.join(SLOT.with(|s| s.to_string()));
        if !dir.is_dir() {
            fs::create_dir_all(&dir)?;
        }
        let path = dir.join(n.to_string());
        let file = File::options().write(true).create_new(true).open(&path)?;
        Ok((path, file))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // What was staged went into the pool or was removed with its include.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A reader that copies everything read through it into a writer.
pub struct Tee<R, W> {
    pub reader: R,
    pub writer: W,
}

impl<R: io::Read, W: Write> io::Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        self.writer.write_all(&buf[..n])?;
        Ok(n)
    }
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
