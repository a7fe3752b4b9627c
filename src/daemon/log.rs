//! Log files with size-based rotation: `<name>` is renamed to `<name>.1` (and so on, up to a
//! fixed count) when it would pass its size limit.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How large a log file grows before it is rotated.
pub const MAX_SIZE: u64 = 10 * 1024 * 1024;
/// How many rotated files are kept.
pub const KEEP: usize = 5;

struct Inner {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
}

/// A shared, rotating, append-only log file.
#[derive(Clone)]
pub struct RotatingFile(Arc<Mutex<Inner>>);

impl RotatingFile {
    pub fn open(path: &Path, max: u64) -> std::io::Result<RotatingFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile(Arc::new(Mutex::new(Inner {
            path: path.to_path_buf(),
            file,
            size,
            max,
        }))))
    }

    /// Appends one record (a whole line), rotating first if it would not fit.
    pub fn append(&self, line: &[u8]) -> std::io::Result<()> {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if inner.size > 0 && inner.size + line.len() as u64 > inner.max {
            rotate(&inner.path)?;
            inner.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&inner.path)?;
            inner.size = 0;
        }
        inner.file.write_all(line)?;
        inner.size += line.len() as u64;
        Ok(())
    }
}

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn rotate(path: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(numbered(path, KEEP));
    for n in (1..KEEP).rev() {
        let from = numbered(path, n);
        if from.exists() {
            std::fs::rename(&from, numbered(path, n + 1))?;
        }
    }
    std::fs::rename(path, numbered(path, 1))
}

/// A `tracing` writer: each formatted event is appended as one record.
pub struct LineWriter {
    file: RotatingFile,
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.file.append(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RotatingFile {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            file: self.clone(),
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_a_few() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let f = RotatingFile::open(&path, 100).unwrap();
        for i in 0..40 {
            f.append(format!("line {i:03} ..............\n").as_bytes())
                .unwrap();
        }
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size <= 100, "{size}");
        assert!(numbered(&path, 1).exists());
        assert!(numbered(&path, KEEP).exists());
        assert!(!numbered(&path, KEEP + 1).exists());
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.ends_with("line 039 ..............\n"));
    }
}
