//! Binary packages (`.deb`, `.udeb`): the control paragraph, size and digests, and the file list
//! of the data member, read in one streaming pass without holding the package in memory.
//!
//! A `.deb` is an ar archive of `debian-binary` (`2.0`), `control.tar[.gz|.xz|.zst]` and
//! `data.tar[.gz|.xz|.zst]`; the members must be complete, in this order.

use crate::checksums::{Digests, HashingReader};
use crate::control::{ControlError, Paragraph};
use crate::version::Version;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a Debian binary package: {reason}")]
    NotDeb { path: PathBuf, reason: String },
    #[error(
        "{path}: member '{member}' uses unsupported compression '{compression}' (supported: gzip, xz, zstd, none)"
    )]
    UnknownCompression {
        path: PathBuf,
        member: String,
        compression: String,
    },
    #[error("{path}: truncated or corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: control file, {source}")]
    Control { path: PathBuf, source: ControlError },
    #[error("{path}: control file lacks field '{field}'")]
    MissingField { path: PathBuf, field: &'static str },
    #[error("{path}: control field '{field}': {reason}")]
    InvalidField {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
}

/// `deb` or `udeb`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PackageType {
    Deb,
    Udeb,
}

impl PackageType {
    pub fn extension(self) -> &'static str {
        match self {
            PackageType::Deb => "deb",
            PackageType::Udeb => "udeb",
        }
    }
}

/// What a `.deb` says about itself.
#[derive(Debug, Clone)]
pub struct BinaryPackage {
    /// `DEBIAN/control`, as written by the packager.
    pub control: Paragraph,
    pub name: String,
    pub version: Version,
    pub architecture: String,
    pub package_type: PackageType,
    /// Source package name and version (`Source: name (version)`, defaulting to the binary's).
    pub source: String,
    pub source_version: Version,
    pub digests: Digests,
    /// Paths of the data member's files and links, without a leading `./`; `None` when not asked for.
    pub contents: Option<Vec<String>>,
}

/// Reads a package file. `with_contents` also lists the data member (for Contents indices),
/// which costs a decompression of the whole data member.
pub fn read(path: &Path, with_contents: bool) -> Result<BinaryPackage, DebError> {
    let file = File::open(path).map_err(|source| DebError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let udeb = path.extension().is_some_and(|e| e == "udeb");
    read_from(
        BufReader::with_capacity(buffer_len(&file), file),
        path,
        udeb,
        with_contents,
    )
}

/// The size of the buffer to read (or copy) a package file through: its length, between 8 and
/// 128 KiB. A typical package then needs no buffer larger than itself; a large buffer per
/// package costs an import of thousands of small ones a page purge and fault per file.
pub fn buffer_len(file: &File) -> usize {
    file.metadata()
        .map_or(128 << 10, |m| m.len().clamp(8 << 10, 128 << 10) as usize)
}

/// Reads a package from a stream; `path` names it in errors.
pub fn read_from(
    reader: impl Read,
    path: &Path,
    udeb_name: bool,
    with_contents: bool,
) -> Result<BinaryPackage, DebError> {
    let p = || path.to_path_buf();
    let corrupt = |reason: String| DebError::Corrupt { path: p(), reason };
    let mut archive = ar::Archive::new(HashingReader::new(reader));
    let mut expected_len: u64 = 8; // "!<arch>\n"
    let mut stage = 0; // 0: debian-binary next, 1: control next, 2: data next, 3: done
    let mut control_text = None;
    let mut contents = None;
    while let Some(entry) = archive.next_entry() {
        let mut entry = entry.map_err(|e| {
            if stage == 0 && e.kind() != io::ErrorKind::UnexpectedEof {
                DebError::NotDeb {
                    path: p(),
                    reason: e.to_string(),
                }
            } else {
                corrupt(e.to_string())
            }
        })?;
        let size = entry.header().size();
        expected_len += 60 + size + size % 2;
        let name = String::from_utf8_lossy(entry.header().identifier())
            .trim_end_matches('/')
            .to_string();
        match (stage, name.as_str()) {
            (0, "debian-binary") => {
                let mut v = String::new();
                read_member(&mut entry, size, &mut v, &name).map_err(corrupt)?;
                if !v.starts_with("2.") {
                    return Err(DebError::NotDeb {
                        path: p(),
                        reason: format!("unsupported format version '{}'", v.trim()),
                    });
                }
                stage = 1;
            }
            (1, n) if n.starts_with("control.tar") => {
                let decoder = decompressor(CountedEntry::new(&mut entry, size, &name), n)
                    .ok_or_else(|| unknown_compression(path, n))?;
                control_text =
                    Some(control_from_tar(decoder).map_err(|e| corrupt(format!("{name}: {e}")))?);
                stage = 2;
            }
            (2, n) if n.starts_with("data.tar") => {
                let decoder = decompressor(CountedEntry::new(&mut entry, size, &name), n)
                    .ok_or_else(|| unknown_compression(path, n))?;
                if with_contents {
                    contents =
                        Some(list_tar(decoder).map_err(|e| corrupt(format!("{name}: {e}")))?);
                }
                stage = 3;
            }
            (_, n) if n.starts_with('_') => {} // reserved for extensions; dpkg ignores them too
            (0, n) => {
                return Err(DebError::NotDeb {
                    path: p(),
                    reason: format!("first member is '{n}', not 'debian-binary'"),
                });
            }
            (_, n) => return Err(corrupt(format!("unexpected member '{n}'"))),
        }
    }
    let digests = archive
        .into_inner()
        .and_then(HashingReader::finish)
        .map_err(|e| corrupt(e.to_string()))?;
    if stage == 0 {
        return Err(DebError::NotDeb {
            path: p(),
            reason: "not an ar archive with a 'debian-binary' member".into(),
        });
    }
    if stage < 3 || digests.size < expected_len {
        let next = ["control.tar", "data.tar", "data.tar"][stage.min(3) - 1];
        let place = if digests.size < expected_len {
            "inside a member".to_string()
        } else {
            format!("before member '{next}'")
        };
        return Err(corrupt(format!(
            "archive ends after {} bytes, {place}",
            digests.size
        )));
    }
    let text = control_text.flatten().ok_or_else(|| DebError::Corrupt {
        path: p(),
        reason: "control member has no 'control' file".into(),
    })?;
    let control =
        Paragraph::parse(&text).map_err(|source| DebError::Control { path: p(), source })?;
    from_control(control, path, udeb_name, digests, contents)
}

fn from_control(
    control: Paragraph,
    path: &Path,
    udeb_name: bool,
    digests: Digests,
    contents: Option<Vec<String>>,
) -> Result<BinaryPackage, DebError> {
    let p = || path.to_path_buf();
    let need = |field: &'static str| {
        control
            .get(field)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or(DebError::MissingField { path: p(), field })
    };
    let invalid = |field: &'static str, reason: String| DebError::InvalidField {
        path: p(),
        field,
        reason,
    };
    let name = need("Package")?;
    if !valid_package_name(&name) {
        return Err(invalid(
            "Package",
            format!("'{name}' is not a valid package name"),
        ));
    }
    let version =
        Version::parse(&need("Version")?).map_err(|e| invalid("Version", e.to_string()))?;
    let architecture = need("Architecture")?;
    if !architecture
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid(
            "Architecture",
            format!("'{architecture}' is not one architecture"),
        ));
    }
    let (source, source_version) = match control.get("Source") {
        None => (name.clone(), version.clone()),
        Some(s) => {
            let (src, ver) = parse_source_field(s).ok_or_else(|| {
                invalid("Source", format!("'{s}' is not 'name' or 'name (version)'"))
            })?;
            let ver = match ver {
                Some(v) => Version::parse(v).map_err(|e| invalid("Source", e.to_string()))?,
                None => version.clone(),
            };
            (src.to_string(), ver)
        }
    };
    let package_type = if udeb_name || control.get("Package-Type") == Some("udeb") {
        PackageType::Udeb
    } else {
        PackageType::Deb
    };
    Ok(BinaryPackage {
        control,
        name,
        version,
        architecture,
        package_type,
        source,
        source_version,
        digests,
        contents,
    })
}

/// Debian package names: lower-case letters, digits, `+`, `-`, `.`; at least two characters,
/// starting with a letter or digit.
pub fn valid_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

/// Splits `name` or `name (version)`.
pub fn parse_source_field(s: &str) -> Option<(&str, Option<&str>)> {
    let s = s.trim();
    match s.split_once('(') {
        None if valid_package_name(s) => Some((s, None)),
        None => None,
        Some((name, rest)) => {
            let name = name.trim();
            let version = rest.strip_suffix(')')?.trim();
            (valid_package_name(name) && !version.is_empty()).then_some((name, Some(version)))
        }
    }
}

fn unknown_compression(path: &Path, member: &str) -> DebError {
    DebError::UnknownCompression {
        path: path.to_path_buf(),
        member: member.to_string(),
        compression: member
            .split_once(".tar")
            .map(|(_, c)| c.trim_start_matches('.').to_string())
            .unwrap_or_default(),
    }
}

/// A decompressing reader for a member named `*.tar[.gz|.xz|.zst]`; `None` for anything else.
fn decompressor<'r>(inner: impl Read + 'r, member: &str) -> Option<Box<dyn Read + 'r>> {
    let suffix = member.split_once(".tar")?.1;
    Some(match suffix {
        "" => Box::new(inner),
        ".gz" => Box::new(flate2::read::MultiGzDecoder::new(inner)),
        ".xz" => Box::new(liblzma::read::XzDecoder::new_multi_decoder(inner)),
        ".zst" => Box::new(zstd::stream::read::Decoder::new(inner).ok()?),
        _ => return None,
    })
}

/// Reads a whole small member as text.
fn read_member(r: &mut impl Read, size: u64, out: &mut String, name: &str) -> Result<(), String> {
    if size > 1024 {
        return Err(format!("member '{name}' is {size} bytes, too big"));
    }
    CountedEntry::new(r, size, name)
        .read_to_string(out)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Finds `./control` in the control tarball.
fn control_from_tar(r: impl Read) -> io::Result<Option<String>> {
    const LIMIT: u64 = 4 << 20;
    let mut tar = tar::Archive::new(r);
    let mut found = None;
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        if path == Path::new("./control") || path == Path::new("control") {
            if entry.size() > LIMIT {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "control file over 4 MiB",
                ));
            }
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            found = Some(text);
        }
    }
    Ok(found)
}

/// Lists the files and links of the data tarball.
fn list_tar(r: impl Read) -> io::Result<Vec<String>> {
    let mut tar = tar::Archive::new(r);
    let mut files = Vec::new();
    for entry in tar.entries()? {
        let entry = entry?;
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let path = entry.path()?;
        let s = path.to_string_lossy();
        let s = s.trim_start_matches("./").trim_start_matches('/');
        if !s.is_empty() {
            files.push(s.to_string());
        }
    }
    Ok(files)
}

/// An ar member reader that reports a short member as an error instead of a silent end.
struct CountedEntry<'a, R> {
    inner: &'a mut R,
    remaining: u64,
    name: String,
}

impl<'a, R: Read> CountedEntry<'a, R> {
    fn new(inner: &'a mut R, size: u64, name: &str) -> Self {
        CountedEntry {
            inner,
            remaining: size,
            name: name.to_string(),
        }
    }
}

impl<R: Read> Read for CountedEntry<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let max = buf.len().min(self.remaining as usize);
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("member '{}' ends {} bytes early", self.name, self.remaining),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_field_forms() {
        assert_eq!(parse_source_field("hello"), Some(("hello", None)));
        assert_eq!(
            parse_source_field("hello (1.0-1)"),
            Some(("hello", Some("1.0-1")))
        );
        assert_eq!(parse_source_field("Hello"), None);
        assert_eq!(parse_source_field("hello (1.0"), None);
    }

    #[test]
    fn package_names() {
        assert!(valid_package_name("libc6"));
        assert!(valid_package_name("g++-12"));
        assert!(!valid_package_name("a"));
        assert!(!valid_package_name("-x"));
        assert!(!valid_package_name("foo_bar"));
    }

    #[test]
    fn garbage_is_not_a_deb() {
        let e = read_from(
            &b"hello world, not an archive"[..],
            Path::new("x.deb"),
            false,
            false,
        )
        .unwrap_err();
        assert!(matches!(e, DebError::NotDeb { .. }), "{e}");
        assert!(e.to_string().starts_with("x.deb: "));
    }
}
