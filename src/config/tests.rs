use super::*;
use crate::openpgp::{ArchiveKey, KeyAlgorithm};
use std::collections::HashMap;

/// Canned answers; any other URL is unreachable.
struct Canned(HashMap<String, (u16, Vec<u8>)>);

impl Fetch for Canned {
    fn get(&self, url: &str) -> Result<(u16, Vec<u8>), String> {
        if url.starts_with("http://down.invalid/") {
            return Err("dns error: failed to lookup address".to_string());
        }
        Ok(self.0.get(url).cloned().unwrap_or((404, Vec::new())))
    }
}

const RELEASE: &str = "Origin: Debian\nLabel: Debian\nSuite: stable\nVersion: 12.15\nCodename: bookworm\nDate: Sat, 08 Nov 2025 10:00:00 UTC\nArchitectures: all amd64 arm64\nComponents: main contrib\nDescription: Debian 12.15 Released 08 November 2025\n";

fn archive_with(signer: &ArchiveKey, release: &str) -> Canned {
    let mut m = HashMap::new();
    m.insert(
        "http://mirror.example/debian/dists/bookworm/InRelease".to_string(),
        (200, signer.clearsign(release.as_bytes()).unwrap()),
    );
    Canned(m)
}

fn source() -> Source {
    let (spec, _) = origin::find("Debian")
        .unwrap()
        .sources_for("bookworm", true);
    Source::new(&spec)
}

fn archives() -> Vec<Archive> {
    vec![
        Archive::new("http://down.invalid/debian/").unwrap(),
        Archive::new("http://mirror.example/debian/").unwrap(),
    ]
}

#[test]
fn a_good_release_fills_in_the_source() {
    let key = ArchiveKey::generate("archive <a@example>", KeyAlgorithm::Ed25519).unwrap();
    let mut s = source();
    let mut a = archives();
    s.check(&mut a, &key.keyring(), &archive_with(&key, RELEASE), 0)
        .unwrap();
    assert_eq!(s.archives, ["http://mirror.example/debian/"]);
    assert_eq!(s.codeversion(), "12");
    assert_eq!(s.components, ["main", "contrib"]);
    assert_eq!(s.architectures, ["all", "amd64", "arm64"]);
    assert!(s.description.starts_with("Debian 12.15"));
    assert!(a[0].ping_ms < 0.0 && a[1].ping_ms >= 0.0);
    s.codeversion_override = "12x".into();
    assert_eq!(s.codeversion(), "12x");
}

#[test]
fn a_release_signed_by_other_keys_names_the_keys_that_signed_it() {
    let signer = ArchiveKey::generate("signer <s@example>", KeyAlgorithm::Ed25519).unwrap();
    let ours = ArchiveKey::generate("ours <o@example>", KeyAlgorithm::Ed25519).unwrap();
    let mut s = source();
    let err = s
        .check(
            &mut archives(),
            &ours.keyring(),
            &archive_with(&signer, RELEASE),
            0,
        )
        .unwrap_err();
    let info = &signer.keyring().infos()[0];
    let named = std::iter::once(&info.long_id)
        .chain(info.subkeys.iter())
        .any(|id| err.contains(&format!("it is signed by {id}")));
    assert!(named, "{err} / {info:?}");
    assert!(
        err.contains("http://down.invalid/debian/: unreachable"),
        "{err}"
    );
    assert!(s.archives.is_empty());
}

#[test]
fn identity_validity_and_presence_are_checked() {
    let key = ArchiveKey::generate("archive <a@example>", KeyAlgorithm::Ed25519).unwrap();
    let other = RELEASE.replace("Codename: bookworm", "Codename: trixie");
    let err = source()
        .check(
            &mut archives(),
            &key.keyring(),
            &archive_with(&key, &other),
            0,
        )
        .unwrap_err();
    assert!(err.contains("Codename: 'trixie', not 'bookworm'"), "{err}");
    let expired = format!("{RELEASE}Valid-Until: Sat, 15 Nov 2025 10:00:00 UTC\n");
    let fetch = archive_with(&key, &expired);
    let err = source()
        .check(&mut archives(), &key.keyring(), &fetch, 1_795_910_400)
        .unwrap_err();
    assert!(err.contains("expired at Sat, 15 Nov 2025"), "{err}");
    let mut lax = source();
    lax.check_valid_until = false;
    lax.check(&mut archives(), &key.keyring(), &fetch, 1_795_910_400)
        .unwrap();
    let err = source()
        .check(&mut archives(), &key.keyring(), &Canned(HashMap::new()), 0)
        .unwrap_err();
    assert!(
        err.contains(
            "no http://mirror.example/debian/dists/bookworm/InRelease or Release (HTTP 404)"
        ),
        "{err}"
    );
}

#[test]
fn keys_come_from_their_text_or_the_host_keyrings() {
    let key = ArchiveKey::generate("archive <a@example>", KeyAlgorithm::Ed25519).unwrap();
    let id = key.keyring().infos()[0].long_id.clone();
    let mut k = AptKey::new(&id).unwrap();
    k.key = String::from_utf8(key.public_armored()).unwrap();
    k.prepare(&[Path::new("/nonexistent")]).unwrap();
    assert_eq!(k.info.as_ref().unwrap().name, "archive <a@example>");
    k.check().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("x-archive-keyring.gpg"),
        key.public_binary(),
    )
    .unwrap();
    let mut k = AptKey::new(&id[8..]).unwrap();
    k.prepare(&[Path::new("/nonexistent"), dir.path()]).unwrap();
    assert_eq!(k.info.unwrap().long_id, id);
    let err = AptKey::new("DEADBEEFDEADBEEF")
        .unwrap()
        .prepare(&[dir.path()])
        .unwrap_err();
    assert!(err.contains("key DEADBEEFDEADBEEF is in none of"), "{err}");
    assert!(AptKey::new("xyz").is_err());
    assert_eq!(
        Archive::new("http://x.example/debian").unwrap().url,
        "http://x.example/debian/"
    );
    assert!(Archive::new("ftp://x.example/debian/").is_err());
    assert!(Archive::new("http://x.example/debian//").is_err());
}
