//! What travels between instances: a build request (requester → builder) and a build result
//! (builder → requester), each an *envelope*: an uncompressed tar whose first member,
//! `envelope.asc`, is a clear-signed JSON document listing every other member with its size
//! and SHA-256. The receiver extracts members with safe names only, verifies the signature
//! against its remotes keyring, reads only the signed text, and refuses a member that is
//! missing, extra, or differs from its listing.

use crate::files::safe_file_name;
use crate::openpgp::{ArchiveKey, Keyring};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The signed document's member name.
pub const ENVELOPE: &str = "envelope.asc";

/// At most this many members (a build's results: debs, udebs, dbgsym, buildinfo, log).
const MAX_MEMBERS: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{name}: {reason}")]
    Refused { name: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn refused(name: &str, reason: impl Into<String>) -> TransportError {
    TransportError::Refused {
        name: name.to_string(),
        reason: reason.into(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TransportError + '_ {
    move |source| TransportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One member of an envelope as its document lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

impl Member {
    /// Lists a file (name and digest) for a document.
    pub fn of(path: &Path) -> Result<Member, TransportError> {
        let file = std::fs::File::open(path).map_err(io(path))?;
        let mut reader = crate::checksums::HashingReader::new(file);
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(io(path))?;
        let sums = reader.finish().map_err(io(path))?;
        Ok(Member {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            size: sums.size,
            sha256: sums.sha256,
        })
    }
}

/// A build request: everything a builder needs, signed by the requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Unique per dispatch (`<source>_<version>_<arch>_<random>`): a result names it.
    pub id: String,
    /// The requester's base URL: results go to `<requester>/remote/results/<id>`.
    pub requester: String,
    /// `<source>_<version>` at the requester.
    pub upload: String,
    pub source: String,
    pub version: String,
    pub distribution: String,
    pub codename: String,
    pub architecture: String,
    pub arch_all: bool,
    /// The upload's `.changes` and `.dsc` (members).
    pub changes: String,
    pub dsc: String,
    /// `deb` lines of the requester's repository the build installs from.
    pub extra_repositories: Vec<String>,
    pub options: crate::repo::distribution::BuildOptions,
    pub pinned: Vec<crate::config::PinnedSource>,
    pub members: Vec<Member>,
}

/// How a build went, signed by the builder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildResult {
    /// The request's id.
    pub id: String,
    /// The builder's base URL.
    pub builder: String,
    pub upload: String,
    pub architecture: String,
    /// `successful`, `failed` or `dep-wait`.
    pub outcome: String,
    pub status: String,
    pub fail_stage: Option<String>,
    /// The build log's member name.
    pub log: String,
    /// sbuild's `.changes` (when it built), listed among the members with its files.
    pub changes: Option<String>,
    pub members: Vec<Member>,
}

/// Writes an envelope: the document (JSON), clear-signed by `key`, then each file.
pub fn write_envelope(
    path: &Path,
    key: &ArchiveKey,
    document: &impl Serialize,
    files: &[PathBuf],
) -> Result<(), TransportError> {
    let json = serde_json::to_vec_pretty(document).map_err(|e| refused(ENVELOPE, e.to_string()))?;
    let signed = key
        .clearsign(&json)
        .map_err(|e| refused(ENVELOPE, format!("signing: {e}")))?;
    let tmp = path.with_extension("part");
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let mut head = tar::Header::new_gnu();
    head.set_size(signed.len() as u64);
    head.set_mode(0o644);
    head.set_cksum();
    tar.append_data(&mut head, ENVELOPE, signed.as_slice())
        .map_err(io(&tmp))?;
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut src = std::fs::File::open(f).map_err(io(f))?;
        tar.append_file(&name, &mut src).map_err(io(f))?;
    }
    let mut out = tar.into_inner().map_err(io(&tmp))?;
    out.flush().map_err(io(&tmp))?;
    out.get_ref().sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Extracts an envelope into `dir` (made afresh): regular members with safe names, at most
/// [`MAX_MEMBERS`] and `max_bytes` in all. Returns the signed document's bytes.
pub fn open_envelope(path: &Path, dir: &Path, max_bytes: u64) -> Result<Vec<u8>, TransportError> {
    let what = path.display().to_string();
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut archive = tar::Archive::new(file);
    let mut signed = None;
    let mut total = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| refused(&what, format!("not a tar: {e}")))?;
    for (n, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| refused(&what, format!("not a tar: {e}")))?;
        if n >= MAX_MEMBERS {
            return Err(refused(&what, format!("more than {MAX_MEMBERS} members")));
        }
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .map_err(|e| refused(&what, e.to_string()))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(refused(&name, "not a regular file"));
        }
        safe_file_name(&name).map_err(|e| refused(&name, e.to_string()))?;
        total += entry.size();
        if total > max_bytes {
            return Err(refused(&what, format!("larger than {max_bytes} bytes")));
        }
        if name == ENVELOPE {
            if n != 0 {
                return Err(refused(&name, "must be the first member"));
            }
            let mut text = Vec::new();
            entry
                .by_ref()
                .take(1 << 20)
                .read_to_end(&mut text)
                .map_err(|e| refused(&name, e.to_string()))?;
            signed = Some(text);
            continue;
        }
        let target = dir.join(&name);
        if target.exists() {
            return Err(refused(&name, "appears twice"));
        }
        let mut out = std::fs::File::create(&target).map_err(io(&target))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| refused(&name, e.to_string()))?;
    }
    signed.ok_or_else(|| refused(&what, format!("no {ENVELOPE}")))
}

/// Verifies the document's signature against `keyring`; returns the signer's fingerprint and
/// the document read from the signed text only.
pub fn verify<T: serde::de::DeserializeOwned>(
    signed: &[u8],
    keyring: &Keyring,
) -> Result<(String, T), TransportError> {
    let verified = keyring
        .verify_cleartext(signed)
        .map_err(|e| refused(ENVELOPE, format!("not signed by a remote we know: {e}")))?;
    let doc = serde_json::from_slice(&verified.body)
        .map_err(|e| refused(ENVELOPE, format!("does not read: {e}")))?;
    Ok((verified.fingerprint, doc))
}

/// Checks that `dir` holds exactly the listed members, each with its size and SHA-256.
pub fn check_members(dir: &Path, members: &[Member]) -> Result<(), TransportError> {
    for m in members {
        safe_file_name(&m.name).map_err(|e| refused(&m.name, e.to_string()))?;
        let path = dir.join(&m.name);
        if !path.is_file() {
            return Err(refused(&m.name, "listed but missing"));
        }
        let found = Member::of(&path)?;
        if found.size != m.size || found.sha256 != m.sha256 {
            return Err(refused(
                &m.name,
                format!(
                    "differs from its listing: {} bytes, SHA-256 {} (listed {} bytes, {})",
                    found.size, found.sha256, m.size, m.sha256
                ),
            ));
        }
    }
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let name = entry.map_err(io(dir))?.file_name();
        let name = name.to_string_lossy();
        if !members.iter().any(|m| m.name == name) {
            return Err(refused(&name, "not listed in the signed document"));
        }
    }
    Ok(())
}

/// A random hex string (request ids).
pub fn nonce() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the system's random source");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openpgp::KeyAlgorithm;

    fn key(name: &str) -> ArchiveKey {
        ArchiveKey::generate(name, KeyAlgorithm::Ed25519).unwrap()
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Doc {
        members: Vec<Member>,
    }

    #[test]
    fn envelopes_round_trip_and_tampering_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.dsc");
        std::fs::write(&a, "Source: a\n").unwrap();
        let signer = key("requester");
        let doc = Doc {
            members: vec![Member::of(&a).unwrap()],
        };
        let env = dir.path().join("req.tar");
        write_envelope(&env, &signer, &doc, std::slice::from_ref(&a)).unwrap();
        let out = dir.path().join("out");
        let signed = open_envelope(&env, &out, 1 << 20).unwrap();
        let (fp, read): (String, Doc) = verify(&signed, &signer.keyring()).unwrap();
        assert_eq!((fp, &read), (signer.fingerprint(), &doc));
        check_members(&out, &read.members).unwrap();
        // A stranger's signature, a changed member, an extra member, a size cap.
        let e = verify::<Doc>(&signed, &key("other").keyring()).unwrap_err();
        assert!(
            e.to_string().contains("not signed by a remote we know"),
            "{e}"
        );
        std::fs::write(out.join("a.dsc"), "Source: b\n").unwrap();
        let e = check_members(&out, &read.members).unwrap_err();
        assert!(
            e.to_string().starts_with("a.dsc: differs from its listing"),
            "{e}"
        );
        std::fs::write(out.join("a.dsc"), "Source: a\n").unwrap();
        std::fs::write(out.join("evil.deb"), "x").unwrap();
        let e = check_members(&out, &read.members).unwrap_err();
        assert_eq!(e.to_string(), "evil.deb: not listed in the signed document");
        assert!(
            open_envelope(&env, &out, 10)
                .unwrap_err()
                .to_string()
                .contains("larger than 10 bytes")
        );
    }

    #[test]
    fn unsafe_member_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join("bad.tar");
        let mut tar = tar::Builder::new(std::fs::File::create(&env).unwrap());
        let mut head = tar::Header::new_gnu();
        head.set_size(1);
        head.set_mode(0o644);
        head.set_cksum();
        tar.append_data(&mut head, "envelope.asc", &b"x"[..])
            .unwrap();
        let mut head = tar::Header::new_gnu();
        head.set_size(1);
        head.set_mode(0o644);
        head.set_cksum();
        tar.append_data(&mut head, ".hidden", &b"x"[..]).unwrap();
        tar.finish().unwrap();
        let e = open_envelope(&env, &dir.path().join("o"), 1 << 20).unwrap_err();
        assert!(e.to_string().starts_with(".hidden:"), "{e}");
    }
}
