//! Log files with size-based rotation: `<name>` is renamed to `<name>.1` (and so on, up to a
//! fixed count) when it would pass its size limit.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

/// How large a log file grows before it is rotated.
pub const MAX_SIZE: u64 = 10 * 1024 * 1024;
/// How many rotated files are kept.
pub const KEEP: usize = 5;

/// A log file for appending: readable by the daemon's group, by nobody else (it names
/// clients, users and uploads).
fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o640))?;
    Ok(file)
}

/// How many records may wait for the writer thread; past that, records are dropped (and
/// counted) rather than making a request wait for the disk.
const QUEUE: usize = 16 * 1024;

struct Inner {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
}

impl Inner {
    fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.max {
            rotate(&self.path)?;
            self.file = open_append(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }
}

enum Message {
    Line(Vec<u8>),
    /// Answered once every record sent before it is written.
    Sync(mpsc::SyncSender<()>),
}

/// Most bytes the writer gathers before one write.
const BATCH: usize = 64 * 1024;

/// How often the writer looks for records. Senders never wake it (a wake-up per record
/// costs more than the record), so a record reaches the file within this time.
const EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// The writer thread: every [`EVERY`], what is waiting is written in one go (one `write`
/// for many records); a rotation happens between records. Ends when every sender is gone.
fn write_lines(inner: &mut Inner, received: &mpsc::Receiver<Message>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let mut done = Vec::new();
        let gone = loop {
            match received.try_recv() {
                Ok(Message::Line(line)) => {
                    let full = inner.size + (batch.len() + line.len()) as u64 > inner.max;
                    if !batch.is_empty() && (full || batch.len() >= BATCH) {
                        // Nowhere to report a failing log but the log: it is dropped.
                        let _ = inner.append(&batch);
                        batch.clear();
                    }
                    batch.extend_from_slice(&line);
                }
                Ok(Message::Sync(answer)) => done.push(answer),
                Err(mpsc::TryRecvError::Empty) => break false,
                Err(mpsc::TryRecvError::Disconnected) => break true,
            }
        };
        if !batch.is_empty() {
            let _ = inner.append(&batch);
            batch.clear();
        }
        for answer in done {
            let _ = answer.send(());
        }
        if gone {
            return;
        }
        std::thread::sleep(EVERY);
    }
}

/// A shared, rotating, append-only log file. Records are handed to a writer thread of its
/// own: whoever logs (an async HTTP handler, a build thread) never waits for the disk.
#[derive(Clone)]
pub struct RotatingFile {
    queue: mpsc::SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

impl RotatingFile {
    pub fn open(path: &Path, max: u64) -> std::io::Result<RotatingFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        let mut inner = Inner {
            path: path.to_path_buf(),
            file,
            size,
            max,
        };
        let (queue, received) = mpsc::sync_channel(QUEUE);
        let name = path
            .file_name()
            .map_or("log".into(), |n| n.to_string_lossy());
        std::thread::Builder::new()
            .name(format!("mbd-{name}"))
            .spawn(move || write_lines(&mut inner, &received))?;
        Ok(RotatingFile {
            queue,
            dropped: Arc::default(),
        })
    }

    /// Hands one record (a whole line) to the writer, which rotates the file first if the
    /// record would not fit. Never waits: with the queue full the record is dropped. Control
    /// characters in it are written escaped (`\x1b`), so a record is one line and nothing
    /// in it (a name from an upload) can move a terminal's cursor or colour its text.
    pub fn append(&self, line: &[u8]) {
        if self.queue.try_send(Message::Line(escaped(line))).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every record appended before is written (tests, shutdown).
    pub fn sync(&self) {
        let (done, wait) = mpsc::sync_channel(1);
        if self.queue.send(Message::Sync(done)).is_ok() {
            let _ = wait.recv();
        }
    }
}

/// A record with its control characters (but a final newline) written as `\xNN`.
fn escaped(line: &[u8]) -> Vec<u8> {
    let (body, end) = match line.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (line, &b""[..]),
    };
    let mut out = Vec::with_capacity(line.len());
    for &b in body {
        if b < 0x20 && b != b'\t' || b == 0x7f {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(end);
    out
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
            self.file.append(&self.buf);
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
    fn control_characters_are_escaped_and_a_record_stays_one_line() {
        assert_eq!(
            escaped(b"dist \x1b[31mred\r\nforged line\x7f\n"),
            b"dist \\x1b[31mred\\x0d\\x0aforged line\\x7f\n"
        );
        assert_eq!(escaped(b"tab\tstays"), b"tab\tstays");
    }

    #[test]
    fn rotates_by_size_and_keeps_a_few() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let f = RotatingFile::open(&path, 100).unwrap();
        for i in 0..40 {
            f.append(format!("line {i:03} ..............\n").as_bytes());
        }
        f.sync();
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size <= 100, "{size}");
        assert!(numbered(&path, 1).exists());
        assert!(numbered(&path, KEEP).exists());
        assert!(!numbered(&path, KEEP + 1).exists());
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.ends_with("line 039 ..............\n"));
    }
}
