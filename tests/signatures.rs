use crate::util::{fixtures, run, uploaders};
use mbd::changes::Changes;
use mbd::files::{Problem, Trust};
use mbd::openpgp::{ArchiveKey, KeyAlgorithm, Keyring, OpenPgpError};
use std::process::Command;

const RELEASE: &str = "Origin: mbd test\nLabel: bookworm-test-unstable\nSuite: bookworm-test-unstable\nCodename: bookworm-test-unstable\nDate: Sun, 23 Nov 2025 00:00:00 UTC\nArchitectures: amd64\nComponents: main\nDescription: test\nSHA256:\n e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0 main/binary-amd64/Packages\n";

fn gpgv_accepts(algorithm: KeyAlgorithm) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = ArchiveKey::generate("mbd archive test <archive@mbd.invalid>", algorithm).unwrap();
    std::fs::write(d.join("archive.pgp"), key.public_binary()).unwrap();
    std::fs::write(d.join("Release"), RELEASE).unwrap();
    std::fs::write(
        d.join("InRelease"),
        key.clearsign(RELEASE.as_bytes()).unwrap(),
    )
    .unwrap();
    std::fs::write(
        d.join("Release.gpg"),
        key.detached_sign(RELEASE.as_bytes()).unwrap(),
    )
    .unwrap();
    let gpgv = |args: &[&str]| {
        run(Command::new("gpgv")
            .arg("--keyring")
            .arg(d.join("archive.pgp"))
            .args(args)
            .current_dir(d))
    };
    let (ok, out) = gpgv(&["InRelease"]);
    assert!(
        ok && out.contains("Good signature"),
        "{algorithm:?} InRelease: {out}"
    );
    let (ok, out) = gpgv(&["Release.gpg", "Release"]);
    assert!(
        ok && out.contains("Good signature"),
        "{algorithm:?} Release.gpg: {out}"
    );

    // The same check must fail when the data does not match, or the test proves nothing.
    std::fs::write(d.join("Release"), RELEASE.replace("amd64", "i386")).unwrap();
    let (ok, out) = gpgv(&["Release.gpg", "Release"]);
    assert!(!ok, "gpgv accepted a tampered Release: {out}");
    let tampered = String::from_utf8(std::fs::read(d.join("InRelease")).unwrap())
        .unwrap()
        .replace("Components: main", "Components: evil");
    std::fs::write(d.join("InRelease"), tampered).unwrap();
    let (ok, out) = gpgv(&["InRelease"]);
    assert!(!ok, "gpgv accepted a tampered InRelease: {out}");

    // The armored export is the same key.
    let armored = Keyring::from_bytes(&key.public_armored()).unwrap();
    assert_eq!(armored.fingerprints(), [key.fingerprint()]);
}

#[test]
fn gpgv_accepts_inrelease_and_release_gpg_ed25519() {
    gpgv_accepts(KeyAlgorithm::Ed25519);
}

#[test]
fn gpgv_accepts_inrelease_and_release_gpg_rsa4096() {
    gpgv_accepts(KeyAlgorithm::Rsa4096);
}

#[test]
fn changes_signed_outside_the_keyring_is_refused() {
    let path = fixtures().join("broken/unknown-key/mbd-hello_1.0-1~test12+1_source.changes");
    let err = Changes::read(&path, Trust::Keyring(&uploaders())).unwrap_err();
    assert!(
        matches!(
            err.problem,
            Problem::Signature(OpenPgpError::UnknownKey { .. })
        ),
        "{err}"
    );
    // The same file is fine for a keyring that holds the stranger's key.
    let stranger = Keyring::from_file(&fixtures().join("keys/stranger.asc")).unwrap();
    let c = Changes::read(&path, Trust::Keyring(&stranger)).unwrap();
    assert_eq!(c.signer.unwrap(), crate::util::fingerprint("stranger"));
}

#[test]
fn verification_uses_only_the_signed_text() {
    // Text appended after the signature block never reaches the parser: such a file is
    // refused outright, as gpg refuses it.
    let path = crate::util::pkg("mbd-hello_1.0-1~test12+1_source.changes");
    let mut data = std::fs::read(&path).unwrap();
    let c = Changes::parse(&data, &path, Trust::Keyring(&uploaders())).unwrap();
    assert_eq!(c.source, "mbd-hello");
    data.extend_from_slice(b"\nSource: evil\n");
    let e = Changes::parse(&data, &path, Trust::Keyring(&uploaders())).unwrap_err();
    assert!(
        e.to_string().contains("text after the signature block"),
        "{e}"
    );
}
