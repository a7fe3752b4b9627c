//! The files a `.dsc` or `.changes` lists (`Files`, `Checksums-Sha1`, `Checksums-Sha256`):
//! parsing, cross-checking, safe names, and verification against the files on disk.
//!
//! File names come from uploads and are never trusted as paths: [`safe_file_name`] admits only
//! plain names made of the characters Debian uses in file names, so joining one to a directory
//! can never leave it.

use crate::checksums::Digests;
use crate::control::{ControlError, Paragraph};
use crate::openpgp::{self, Keyring, OpenPgpError};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// An error in a `.dsc` or `.changes` (Policy's "control files"), naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct ControlFileError {
    pub path: PathBuf,
    pub problem: Problem,
}

/// What is wrong with a `.dsc` or `.changes`.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("not UTF-8 text")]
    NotText,
    #[error("signature: {0}")]
    Signature(#[from] OpenPgpError),
    #[error("{0}")]
    Syntax(#[from] ControlError),
    #[error("missing field '{0}'")]
    MissingField(&'static str),
    #[error("field '{field}': {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("{0}")]
    File(#[from] FileError),
    #[error("is {size} bytes; a control file may be at most {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("is not a regular file")]
    NotAFile,
}

/// The most a `.changes`, `.dsc` or `.buildinfo` may be (real ones are a few KiB; the
/// largest in Debian are under 200 KiB).
pub const MAX_CONTROL_FILE: u64 = 1024 * 1024;

/// The bytes an unprivileged writer may still put on the file system of `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs writes the one struct given; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Free space a store keeps in reserve: a write is refused before it starts when the file
/// system holds less (a store that hits a full disk mid-commit refuses every later write
/// until it is opened again). `MBD_TEST_STORE_RESERVE=<bytes>` changes it, for tests.
pub fn store_reserve() -> u64 {
    static RESERVE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *RESERVE.get_or_init(|| {
        std::env::var("MBD_TEST_STORE_RESERVE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(32 << 20)
    })
}

/// Whether the file system of `dir` has more than [`store_reserve`] bytes free; else an error
/// that says "No space left on device" (HTTP 507 at the API), naming `dir`.
pub fn check_room(dir: &Path) -> std::io::Result<()> {
    let reserve = store_reserve();
    if reserve == 0 {
        return Ok(());
    }
    let free = free_bytes(dir)?;
    if free < reserve {
        return Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!(
                "No space left on device: {} has {free} bytes free, less than the {reserve} kept in reserve for the stores",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// A control file's bytes: only a regular file, and only up to [`MAX_CONTROL_FILE`]
/// (checked before reading, and while reading, should it grow).
pub fn read_control_file(path: &Path) -> Result<Vec<u8>, ControlFileError> {
    use std::io::Read;
    let err = |p: Problem| ControlFileError::new(path, p);
    let file = File::open(path).map_err(|e| err(e.into()))?;
    let meta = file.metadata().map_err(|e| err(e.into()))?;
    if !meta.is_file() {
        return Err(err(Problem::NotAFile));
    }
    let too_large = |size| {
        err(Problem::TooLarge {
            size,
            limit: MAX_CONTROL_FILE,
        })
    };
    if meta.len() > MAX_CONTROL_FILE {
        return Err(too_large(meta.len()));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_CONTROL_FILE + 1)
        .read_to_end(&mut data)
        .map_err(|e| err(e.into()))?;
    if data.len() as u64 > MAX_CONTROL_FILE {
        return Err(too_large(data.len() as u64));
    }
    Ok(data)
}

impl ControlFileError {
    pub fn new(path: &Path, problem: impl Into<Problem>) -> Self {
        ControlFileError {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

/// How to treat the OpenPGP signature of a control file.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// Strip a signature without checking it (the admin import trusts its caller).
    Unchecked,
    /// The signature must verify against this keyring; only the signed text is used.
    Keyring(&'a Keyring),
}

/// A control file's paragraph, with the fingerprint of its signer when it was verified.
pub(crate) fn read_paragraph(
    data: &[u8],
    path: &Path,
    trust: Trust<'_>,
) -> Result<(Paragraph, Option<String>), ControlFileError> {
    let err = |p: Problem| ControlFileError::new(path, p);
    let (text, signer) = match trust {
        Trust::Unchecked => {
            let text = std::str::from_utf8(data).map_err(|_| err(Problem::NotText))?;
            (
                openpgp::cleartext_body(text).map_err(|e| err(e.into()))?,
                None,
            )
        }
        Trust::Keyring(k) => {
            check_signature_armor(data)
                .map_err(|reason| err(Problem::Signature(OpenPgpError::Malformed { reason })))?;
            let v = k.verify_cleartext(data).map_err(|e| err(e.into()))?;
            let text = String::from_utf8(v.body).map_err(|_| err(Problem::NotText))?;
            (text, Some(v.fingerprint))
        }
    };
    let paragraph = Paragraph::parse(&text).map_err(|e| err(e.into()))?;
    Ok((paragraph, signer))
}

/// The armor of a clear-signed file's signature, checked as gpg checks it (sequoia reads
/// past what gpg refuses): exactly one signature block, its CRC-24 checksum (`=XXXX`, when
/// present) matching its content, and nothing but white space after it.
fn check_signature_armor(data: &[u8]) -> Result<(), String> {
    const BEGIN: &str = "-----BEGIN PGP SIGNATURE-----";
    const END: &str = "-----END PGP SIGNATURE-----";
    if !data.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----") {
        // Not clear-signed at all: the verifier says so.
        return Ok(());
    }
    let text = std::str::from_utf8(data).map_err(|_| "not UTF-8 text".to_string())?;
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let begins: Vec<usize> = (0..lines.len()).filter(|&i| lines[i] == BEGIN).collect();
    let [begin] = begins[..] else {
        return Err(format!("{} signature blocks, not one", begins.len()));
    };
    let end = (begin..lines.len())
        .find(|&i| lines[i] == END)
        .ok_or("the signature block does not end")?;
    if lines[end + 1..].iter().any(|l| !l.is_empty()) {
        return Err("text after the signature block".to_string());
    }
    let mut body: Vec<&str> = lines[begin + 1..end]
        .iter()
        .copied()
        .skip_while(|l| l.contains(": "))
        .skip_while(|l| l.is_empty())
        .collect();
    let checksum = match body.last() {
        Some(l) if l.starts_with('=') && l.len() == 5 => body.pop().map(|l| &l[1..]),
        _ => None,
    };
    let Some(checksum) = checksum else {
        return Ok(());
    };
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let packets = b64
        .decode(body.concat())
        .map_err(|e| format!("the signature block is not base64: {e}"))?;
    let want = b64
        .decode(checksum)
        .map_err(|_| "the armor checksum is not base64".to_string())?;
    let got = crc24(&packets).to_be_bytes();
    if want[..] != got[1..] {
        return Err("the armor checksum does not match the signature block".to_string());
    }
    Ok(())
}

/// OpenPGP's CRC-24 (RFC 4880, 6.1).
fn crc24(data: &[u8]) -> u32 {
    let mut crc: u32 = 0x00B7_04CE;
    for &b in data {
        crc ^= u32::from(b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= 0x0186_4CFB;
            }
        }
    }
    crc & 0x00FF_FFFF
}

/// A required, non-empty field.
pub(crate) fn required<'p>(
    p: &'p Paragraph,
    field: &'static str,
    path: &Path,
) -> Result<&'p str, ControlFileError> {
    p.get(field)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ControlFileError::new(path, Problem::MissingField(field)))
}

/// Something wrong with one listed file, or with the lists themselves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("unsafe file name '{name}': {reason}")]
    UnsafeName { name: String, reason: &'static str },
    #[error("field '{field}': malformed entry '{line}'")]
    MalformedEntry { field: &'static str, line: String },
    #[error("{name}: listed in '{field}' but not in 'Files'")]
    NotInFiles { name: String, field: &'static str },
    #[error("{name}: listed twice in '{field}'")]
    Duplicate { name: String, field: &'static str },
    #[error("{name}: size {size} in '{field}' disagrees with size {files_size} in 'Files'")]
    SizeDisagrees {
        name: String,
        field: &'static str,
        size: u64,
        files_size: u64,
    },
    #[error("{name}: file is missing")]
    Missing { name: String },
    #[error("{name}: cannot read: {reason}")]
    Unreadable { name: String, reason: String },
    #[error("{name}: size is {actual}, expected {expected}")]
    WrongSize {
        name: String,
        expected: u64,
        actual: u64,
    },
    #[error("{name}: {algorithm} checksum mismatch (expected {expected}, got {actual})")]
    WrongChecksum {
        name: String,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
}

/// One listed file. `section` and `priority` are set only for `.changes` entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    pub md5: String,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    pub section: Option<String>,
    pub priority: Option<String>,
}

/// Refuses anything that is not a plain Debian file name: path separators, `..`, a leading
/// `.` or `-`, control characters, characters outside `[A-Za-z0-9.+~_-]` (and `:` for no
/// one: epochs never appear in file names), and over-long names.
pub fn safe_file_name(name: &str) -> Result<&str, FileError> {
    let bad = |reason| FileError::UnsafeName {
        name: name.escape_debug().to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > 255 {
        return Err(bad("longer than 255 bytes"));
    }
    if name.contains('/') || name.contains('\\') {
        return Err(bad("contains a path separator"));
    }
    if name.contains("..") {
        return Err(bad("contains '..'"));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(bad("contains a control character"));
    }
    if name.starts_with('.') {
        return Err(bad("starts with '.'"));
    }
    if name.starts_with('-') {
        return Err(bad("starts with '-'"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".+~_-".contains(&b))
    {
        return Err(bad("contains a character outside [A-Za-z0-9.+~_-]"));
    }
    Ok(name)
}

/// The merged file lists of a `.dsc` or `.changes`, in `Files` order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileList {
    pub entries: Vec<FileEntry>,
}

impl FileList {
    /// Reads `Files` (required) and `Checksums-Sha1`/`Checksums-Sha256` (optional; when
    /// present they must list exactly the same files with the same sizes).
    /// `with_section` is true for `.changes` (`md5 size section priority name`).
    pub fn from_paragraph(p: &Paragraph, with_section: bool) -> Result<FileList, FileError> {
        let mut entries: Vec<FileEntry> = Vec::new();
        let mut index = BTreeMap::new();
        if let Some(field) = p.field("Files") {
            for line in field.continuation_lines().filter(|l| !l.is_empty()) {
                let parts: Vec<&str> = line.split_whitespace().collect();
                let malformed = || FileError::MalformedEntry {
                    field: "Files",
                    line: line.to_string(),
                };
                let (md5, size, section, priority, name) = match (with_section, parts.as_slice()) {
                    (false, [md5, size, name]) => (md5, size, None, None, name),
                    (true, [md5, size, sec, pri, name]) => (
                        md5,
                        size,
                        Some(sec.to_string()),
                        Some(pri.to_string()),
                        name,
                    ),
                    _ => return Err(malformed()),
                };
                let size = size.parse::<u64>().map_err(|_| malformed())?;
                if !is_hex(md5, 32) {
                    return Err(malformed());
                }
                let name = safe_file_name(name)?.to_string();
                if index.insert(name.clone(), entries.len()).is_some() {
                    return Err(FileError::Duplicate {
                        name,
                        field: "Files",
                    });
                }
                entries.push(FileEntry {
                    name,
                    size,
                    md5: md5.to_ascii_lowercase(),
                    sha1: None,
                    sha256: None,
                    section,
                    priority,
                });
            }
        }
        for (field, hex_len) in [("Checksums-Sha1", 40), ("Checksums-Sha256", 64)] {
            let Some(f) = p.field(field) else { continue };
            let mut seen = 0;
            for line in f.continuation_lines().filter(|l| !l.is_empty()) {
                let malformed = || FileError::MalformedEntry {
                    field,
                    line: line.to_string(),
                };
                let [hash, size, name] = line.split_whitespace().collect::<Vec<_>>()[..] else {
                    return Err(malformed());
                };
                let size = size.parse::<u64>().map_err(|_| malformed())?;
                if !is_hex(hash, hex_len) {
                    return Err(malformed());
                }
                let name = safe_file_name(name)?;
                let Some(&i) = index.get(name) else {
                    return Err(FileError::NotInFiles {
                        name: name.to_string(),
                        field,
                    });
                };
                let e = &mut entries[i];
                if e.size != size {
                    return Err(FileError::SizeDisagrees {
                        name: name.to_string(),
                        field,
                        size,
                        files_size: e.size,
                    });
                }
                let slot = if hex_len == 40 {
                    &mut e.sha1
                } else {
                    &mut e.sha256
                };
                if slot.replace(hash.to_ascii_lowercase()).is_some() {
                    return Err(FileError::Duplicate {
                        name: name.to_string(),
                        field,
                    });
                }
                seen += 1;
            }
            if seen != entries.len()
                && let Some(e) = entries.iter().find(|e| {
                    if hex_len == 40 {
                        e.sha1.is_none()
                    } else {
                        e.sha256.is_none()
                    }
                })
            {
                return Err(FileError::Missing {
                    name: format!("{} (not listed in '{field}')", e.name),
                });
            }
        }
        Ok(FileList { entries })
    }

    pub fn get(&self, name: &str) -> Option<&FileEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Checks every listed file in `dir`: present, same size, same checksums. Returns the
    /// digests of each file, in list order.
    pub fn verify_in(&self, dir: &Path) -> Result<Vec<Digests>, FileError> {
        self.entries.iter().map(|e| e.verify_in(dir)).collect()
    }
}

impl FileEntry {
    /// Checks this file in `dir` and returns its digests.
    pub fn verify_in(&self, dir: &Path) -> Result<Digests, FileError> {
        let name = safe_file_name(&self.name)?;
        let path = dir.join(name);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(FileError::Missing {
                    name: self.name.clone(),
                });
            }
            Err(e) => {
                return Err(FileError::Unreadable {
                    name: self.name.clone(),
                    reason: e.to_string(),
                });
            }
        };
        let d = Digests::of_reader(file).map_err(|e| FileError::Unreadable {
            name: self.name.clone(),
            reason: e.to_string(),
        })?;
        self.check(&d)?;
        Ok(d)
    }

    /// Compares the listed size and checksums with computed digests.
    pub fn check(&self, d: &Digests) -> Result<(), FileError> {
        if d.size != self.size {
            return Err(FileError::WrongSize {
                name: self.name.clone(),
                expected: self.size,
                actual: d.size,
            });
        }
        let pairs = [
            ("SHA256", self.sha256.as_deref(), &d.sha256),
            ("SHA1", self.sha1.as_deref(), &d.sha1),
            ("MD5", Some(self.md5.as_str()), &d.md5),
        ];
        for (algorithm, expected, actual) in pairs {
            if let Some(expected) = expected
                && expected != actual
            {
                return Err(FileError::WrongChecksum {
                    name: self.name.clone(),
                    algorithm,
                    expected: expected.to_string(),
                    actual: actual.clone(),
                });
            }
        }
        Ok(())
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// gpg's armor rules on a real signed `.changes`: as made it passes; a wrong checksum,
    /// text after the block and a second block are each refused.
    #[test]
    fn signature_armor_is_checked_like_gpg() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/pkg/mbd-hello_1.0-1~test12+1_source.changes");
        let good = std::fs::read_to_string(path).unwrap();
        assert_eq!(check_signature_armor(good.as_bytes()), Ok(()));
        let crc_line = good
            .lines()
            .find(|l| l.starts_with('=') && l.len() == 5)
            .expect("gpg writes a checksum");
        let flipped = format!(
            "={}",
            if &crc_line[1..] == "AAAA" {
                "AAAB"
            } else {
                "AAAA"
            }
        );
        let cases = [
            (good.replace(crc_line, &flipped), "checksum does not match"),
            (format!("{good}Source: evil\n"), "text after"),
            (
                format!("{good}\n-----BEGIN PGP SIGNATURE-----\n"),
                "2 signature blocks",
            ),
        ];
        for (bad, why) in cases {
            let e = check_signature_armor(bad.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        assert_eq!(crc24(b""), 0x00B7_04CE);
    }

    #[test]
    fn unsafe_names_are_refused_with_a_reason() {
        for (name, reason) in [
            ("../etc/passwd", "contains a path separator"),
            ("a/b", "contains a path separator"),
            ("a..b", "contains '..'"),
            (".hidden", "starts with '.'"),
            ("-rf", "starts with '-'"),
            ("a\nb", "contains a control character"),
            ("a b", "contains a character outside [A-Za-z0-9.+~_-]"),
            ("a:1.0", "contains a character outside [A-Za-z0-9.+~_-]"),
            ("", "empty"),
        ] {
            match safe_file_name(name) {
                Err(FileError::UnsafeName { reason: r, .. }) => assert_eq!(r, reason, "{name:?}"),
                other => panic!("{name:?}: {other:?}"),
            }
        }
        assert!(safe_file_name("hello_1.0~rc1+dfsg-1_amd64.deb").is_ok());
    }

    fn para(files: &str, sha256: &str) -> Paragraph {
        Paragraph::parse(&format!("Files:\n{files}\nChecksums-Sha256:\n{sha256}\n")).unwrap()
    }

    const MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";
    const SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn lists_must_agree() {
        let ok = para(&format!(" {MD5} 0 a.txt"), &format!(" {SHA256} 0 a.txt"));
        let list = FileList::from_paragraph(&ok, false).unwrap();
        assert_eq!(list.entries[0].sha256.as_deref(), Some(SHA256));

        let other = para(&format!(" {MD5} 0 a.txt"), &format!(" {SHA256} 0 b.txt"));
        assert!(matches!(
            FileList::from_paragraph(&other, false),
            Err(FileError::NotInFiles { .. })
        ));
        let size = para(&format!(" {MD5} 0 a.txt"), &format!(" {SHA256} 1 a.txt"));
        assert!(matches!(
            FileList::from_paragraph(&size, false),
            Err(FileError::SizeDisagrees { .. })
        ));
        let short = para(
            &format!(" {MD5} 0 a.txt\n {MD5} 0 b.txt"),
            &format!(" {SHA256} 0 a.txt"),
        );
        assert!(matches!(
            FileList::from_paragraph(&short, false),
            Err(FileError::Missing { .. })
        ));
    }

    #[test]
    fn verify_against_disk() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"").unwrap();
        let p = para(&format!(" {MD5} 0 a.txt"), &format!(" {SHA256} 0 a.txt"));
        let list = FileList::from_paragraph(&p, false).unwrap();
        assert_eq!(list.verify_in(dir.path()).unwrap()[0].sha256, SHA256);
        std::fs::write(dir.path().join("a.txt"), b"x").unwrap();
        assert!(matches!(
            list.verify_in(dir.path()),
            Err(FileError::WrongSize { .. })
        ));
        std::fs::remove_file(dir.path().join("a.txt")).unwrap();
        assert!(matches!(
            list.verify_in(dir.path()),
            Err(FileError::Missing { .. })
        ));
    }
}

/// What a home's parts take on disk (bytes), as `status`, the home page and `/metrics` show
/// it; measured by the housekeeping rounds (at start, then hourly).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiskUsage {
    /// Seconds since the epoch of the measurement.
    pub measured: i64,
    /// Every repository's `pool/`.
    pub pool: u64,
    /// Every repository's `dists/` (indices, by-hash copies, snapshots).
    pub published: u64,
    /// `var/chroots/` (the trees are root's; what the daemon cannot read is not counted).
    pub chroots: u64,
    /// `var/builds/`: build directories and logs.
    pub build_logs: u64,
    /// `var/events/` and the state store, which keeps the events.
    pub events: u64,
}

impl DiskUsage {
    pub fn measure(home: &Path, now: i64) -> DiskUsage {
        let mut pool = 0;
        let mut published = 0;
        for repo in std::fs::read_dir(home.join("repositories"))
            .into_iter()
            .flatten()
            .flatten()
        {
            pool += tree_size(&repo.path().join("pool"));
            published += tree_size(&repo.path().join("dists"));
        }
        DiskUsage {
            measured: now,
            pool,
            published,
            chroots: tree_size(&home.join("var/chroots")),
            build_logs: tree_size(&home.join("var/builds")),
            events: tree_size(&home.join("var/events"))
                + std::fs::metadata(home.join("state.redb")).map_or(0, |m| m.len()),
        }
    }

    /// The parts by name, in display order.
    pub fn parts(&self) -> [(&'static str, u64); 5] {
        [
            ("pool", self.pool),
            ("published", self.published),
            ("chroots", self.chroots),
            ("build_logs", self.build_logs),
            ("events", self.events),
        ]
    }
}

/// The bytes the files under `dir` take (blocks allocated), each hard-linked file once, not
/// following symbolic links nor leaving the file system; what cannot be read is skipped.
pub fn tree_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = entry.path().symlink_metadata() else {
                continue;
            };
            if m.dev() != top.dev() {
                continue;
            }
            if m.is_dir() {
                stack.push(entry.path());
            } else if m.is_file() && (m.nlink() == 1 || seen.insert((m.dev(), m.ino()))) {
                total += m.blocks() * 512;
            }
        }
    }
    total
}
