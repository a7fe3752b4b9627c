//! Small published files kept in memory, so that most of what apt asks for (InRelease,
//! pool files of small packages, compressed indices) is answered without touching the file
//! system or leaving the async thread.
//!
//! An entry is valid for one *generation* of the published trees: the daemon bumps the
//! generation whenever a writer gives back the write token (a publish may have replaced
//! `InRelease` or removed a pool file). A request that finds an entry of an older
//! generation checks the file again (`stat`: same device, inode, size and modification time
//! keep the entry); anything else reads the file afresh. The cache holds at most
//! [`CAPACITY`] bytes of file content; when an insert would pass it, it starts over.
//!
//! An entry may also keep its file open, so that plain-HTTP connections hand its bytes to
//! the kernel (`sendfile`) instead of copying them from memory; at most [`OPEN_FILES`]
//! entries do.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// The most file content the cache holds.
pub const CAPACITY: usize = 128 << 20;

/// The most entries that keep their file open.
pub const OPEN_FILES: usize = 256;

/// What a file was when it was read: its identity and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
    pub modified: SystemTime,
}

impl Identity {
    pub fn of(meta: &std::fs::Metadata) -> Identity {
        use std::os::unix::fs::MetadataExt;
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        }
    }
}

/// One cached file.
pub struct Entry<H> {
    pub generation: u64,
    pub identity: Identity,
    /// The response head made from it (validators, content type).
    pub head: Arc<H>,
    pub body: axum::body::Bytes,
    /// The file `body` was read from, kept open (see [`FileCache::may_keep_open`]).
    pub file: Option<Arc<std::fs::File>>,
}

impl<H> Clone for Entry<H> {
    fn clone(&self) -> Self {
        Entry {
            generation: self.generation,
            identity: self.identity.clone(),
            head: self.head.clone(),
            body: self.body.clone(),
            file: self.file.clone(),
        }
    }
}

/// The cache, by request path below `/repositories/` (only paths that resolved to a file
/// inside a published tree are ever stored).
pub struct FileCache<H> {
    entries: RwLock<HashMap<String, Entry<H>>>,
    size: AtomicUsize,
    /// Entries that keep their file open.
    open: AtomicUsize,
}

impl<H> Default for FileCache<H> {
    fn default() -> Self {
        FileCache {
            entries: RwLock::new(HashMap::new()),
            size: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
        }
    }
}

impl<H> FileCache<H> {
    /// The entry for `path`, of whatever generation.
    pub fn get(&self, path: &str) -> Option<Entry<H>> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .cloned()
    }

    /// Stores an entry (replacing the path's previous one).
    pub fn put(&self, path: &str, entry: Entry<H>) {
        let len = entry.body.len();
        let opens = usize::from(entry.file.is_some());
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if self.size.load(Ordering::Relaxed) + len > CAPACITY {
            entries.clear();
            self.size.store(0, Ordering::Relaxed);
            self.open.store(0, Ordering::Relaxed);
        }
        if let Some(old) = entries.insert(path.to_string(), entry) {
            self.dropped(&old);
        }
        self.size.fetch_add(len, Ordering::Relaxed);
        self.open.fetch_add(opens, Ordering::Relaxed);
    }

    /// Forgets a path (its file is gone).
    pub fn forget(&self, path: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = entries.remove(path) {
            self.dropped(&old);
        }
    }

    /// Accounts for an entry that left the map (under its write lock).
    fn dropped(&self, old: &Entry<H>) {
        self.size.fetch_sub(old.body.len(), Ordering::Relaxed);
        if old.file.is_some() {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether a new entry may keep its file open (fewer than [`OPEN_FILES`] do).
    pub fn may_keep_open(&self) -> bool {
        self.open.load(Ordering::Relaxed) < OPEN_FILES
    }

    /// Bytes of file content held.
    pub fn size(&self) -> usize {
        self.size.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> Entry<()> {
        Entry {
            generation: 1,
            identity: Identity {
                dev: 0,
                ino: 0,
                len: n as u64,
                modified: SystemTime::UNIX_EPOCH,
            },
            head: Arc::new(()),
            body: axum::body::Bytes::from(vec![0; n]),
            file: None,
        }
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let c = FileCache::default();
        let chunk = CAPACITY / 4 + 1;
        for i in 0..10 {
            c.put(&format!("f{i}"), entry(chunk));
            assert!(c.size() <= CAPACITY, "{}", c.size());
        }
        c.put("f9", entry(10));
        c.forget("f9");
        assert!(c.get("f9").is_none());
        assert!(c.size() <= CAPACITY);
    }

    /// Entries that keep their file open are counted: at most [`OPEN_FILES`] do, and
    /// replacing or forgetting one (or starting over) gives its place back.
    #[test]
    fn open_files_are_counted_and_capped() {
        let c = FileCache::default();
        let open = |n: usize| Entry {
            file: Some(Arc::new(std::fs::File::open("/dev/null").unwrap())),
            ..entry(n)
        };
        for i in 0..OPEN_FILES {
            assert!(c.may_keep_open(), "{i}");
            c.put(&format!("f{i}"), open(1));
        }
        assert!(!c.may_keep_open());
        c.put("f0", open(1));
        assert!(!c.may_keep_open(), "a replaced entry gave back its place");
        c.put("f0", entry(1));
        assert!(c.may_keep_open());
        c.put("f0", open(1));
        c.forget("f1");
        assert!(c.may_keep_open());
        c.put("big", entry(CAPACITY));
        assert!(c.may_keep_open());
        assert!(c.get("f0").is_none(), "the cache started over");
    }
}
