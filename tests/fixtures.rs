use crate::util::{files_ending, fixtures, pkg, uploaders};
use mbd::changes::Changes;
use mbd::deb::{self, PackageType};
use mbd::dsc::Dsc;
use mbd::files::Trust;
use std::path::Path;

#[test]
fn every_changes_verifies_with_the_uploader_key() {
    let keyring = uploaders();
    let changes = files_ending(&fixtures().join("pkg"), ".changes");
    assert_eq!(changes.len(), 6);
    for path in changes {
        let c = Changes::read(&path, Trust::Keyring(&keyring)).unwrap();
        assert_eq!(
            c.signer.as_deref(),
            Some(crate::util::fingerprint("uploader").as_str())
        );
        assert_eq!(c.distributions, ["bookworm-test-unstable"]);
        let digests = c.verify_files().unwrap();
        assert_eq!(digests.len(), c.files.entries.len());
        assert!(c.has_source(), "{}", path.display());
        assert!(c.dsc().is_some());
    }
}

#[test]
fn full_changes_lists_source_and_both_binaries() {
    let c = Changes::read(
        &pkg("mbd-hello_1.0-1~test12+1_amd64.changes"),
        Trust::Unchecked,
    )
    .unwrap();
    assert_eq!(c.source, "mbd-hello");
    assert_eq!(c.version.as_str(), "1.0-1~test12+1");
    let mut bins: Vec<&str> = c.binaries().map(|e| e.name.as_str()).collect();
    bins.sort();
    assert_eq!(
        bins,
        [
            "mbd-hello-doc_1.0-1~test12+1_all.deb",
            "mbd-hello_1.0-1~test12+1_amd64.deb"
        ]
    );
    assert_eq!(c.dsc().unwrap().section.as_deref(), Some("misc"));
}

#[test]
fn every_dsc_parses_and_its_files_verify() {
    let keyring = uploaders();
    for path in files_ending(&fixtures().join("pkg"), ".dsc") {
        let d = Dsc::read(&path, Trust::Keyring(&keyring)).unwrap();
        assert_eq!(d.file_name(), path.file_name().unwrap().to_string_lossy());
        d.verify_files(path.parent().unwrap()).unwrap();
    }
    let hello = Dsc::read(&pkg("mbd-hello_1.0-2~test12+1.dsc"), Trust::Unchecked).unwrap();
    assert_eq!(hello.format, "3.0 (quilt)");
    assert_eq!(hello.binaries, ["mbd-hello", "mbd-hello-doc"]);
    assert_eq!(hello.architectures, ["any", "all"]);
    let greeter = Dsc::read(&pkg("mbd-greeter_1.0~test12+1.dsc"), Trust::Unchecked).unwrap();
    assert_eq!(
        greeter.paragraph.get("Build-Depends"),
        Some("mbd-hello (>= 1.0)")
    );
}

#[test]
fn every_binary_package_parses_with_digests_and_contents() {
    let mut all = files_ending(&fixtures().join("pkg"), "deb");
    all.extend(files_ending(&fixtures().join("pkg/compression"), ".deb"));
    assert_eq!(all.len(), 10);
    for path in all {
        let b = deb::read(&path, true).unwrap();
        let data = std::fs::read(&path).unwrap();
        assert_eq!(
            b.digests,
            mbd::checksums::Digests::of(&data),
            "{}",
            path.display()
        );
        let expected_name = format!(
            "{}_{}_{}.{}",
            b.name,
            b.version.without_epoch(),
            b.architecture,
            b.package_type.extension()
        );
        assert_eq!(path.file_name().unwrap().to_string_lossy(), expected_name);
        assert!(!b.contents.as_ref().unwrap().is_empty());
    }
    let hello = deb::read(&pkg("mbd-hello_1.0-1~test12+1_amd64.deb"), true).unwrap();
    assert_eq!(hello.source, "mbd-hello");
    assert_eq!(
        hello.contents.unwrap(),
        [
            "usr/bin/mbd-hello",
            "usr/share/doc/mbd-hello/copyright",
            "usr/share/mbd-hello/arch"
        ]
    );
    let udeb = deb::read(&pkg("mbd-installer-step_1.0_amd64.udeb"), false).unwrap();
    assert_eq!(udeb.package_type, PackageType::Udeb);
    assert!(udeb.contents.is_none());
    for z in ["gzip", "xz", "zstd", "none"] {
        let b = deb::read(
            &fixtures().join(format!("pkg/compression/mbd-compressed-{z}_1.0_all.deb")),
            true,
        )
        .unwrap();
        assert_eq!(
            b.contents.unwrap(),
            [format!("usr/share/mbd-compressed-{z}/method")]
        );
    }
}

/// Runs the checks an upload gets (signature, then the listed files) or a package read.
fn check(dir: &Path) -> String {
    let keyring = uploaders();
    if let Some(path) = files_ending(dir, ".changes").first() {
        let outcome = Changes::read(path, Trust::Keyring(&keyring))
            .and_then(|c| c.verify_files().map(|_| ()));
        return match outcome {
            Ok(()) => panic!("{} was accepted", path.display()),
            Err(e) => e.to_string(),
        };
    }
    let path = files_ending(dir, "deb")
        .pop()
        .unwrap_or_else(|| panic!("{}: no fixture", dir.display()));
    match deb::read(&path, true) {
        Ok(_) => panic!("{} was accepted", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_broken_twin_is_refused_naming_file_and_reason() {
    let stranger = crate::util::fingerprint("stranger");
    let expired = crate::util::fingerprint("expired");
    let revoked = crate::util::fingerprint("revoked");
    let cases: Vec<(&str, String)> = vec![
        ("bad-signature", "signature: bad signature by key".into()),
        (
            "unknown-key",
            format!("signature: signed by unknown key {}", &stranger[24..]),
        ),
        (
            "expired-key",
            format!("signature: signed by expired key {}", &expired[24..]),
        ),
        (
            "revoked-key",
            format!("signature: signed by revoked key {}", &revoked[24..]),
        ),
        ("unsigned", "signature: not OpenPGP clear-signed".into()),
        (
            "tampered-file",
            "mbd-hello_1.0-1~test12+1.debian.tar.xz: SHA256 checksum mismatch".into(),
        ),
        (
            "missing-file",
            "mbd-hello_1.0.orig.tar.gz: file is missing".into(),
        ),
        (
            "wrong-size",
            "mbd-hello_1.0-1~test12+1.debian.tar.xz: size is 1209, expected 1208".into(),
        ),
        (
            "unsafe-name",
            "unsafe file name '../mbd-hello_1.0.orig.tar.gz': contains a path separator".into(),
        ),
        (
            "malformed-control",
            "line 8: expected 'Field: value', found 'This line has no colon'".into(),
        ),
        (
            "truncated-deb",
            "truncated or corrupt: archive ends after".into(),
        ),
        (
            "unknown-compression-deb",
            "member 'control.tar.bz2' uses unsupported compression 'bz2'".into(),
        ),
        (
            "malformed-deb-control",
            "control file, line 4: expected 'Field: value'".into(),
        ),
    ];
    let broken = fixtures().join("broken");
    let mut dirs: Vec<String> = std::fs::read_dir(&broken)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut named: Vec<String> = cases.iter().map(|(d, _)| d.to_string()).collect();
    named.sort();
    assert_eq!(dirs, named, "every broken twin has a case here");
    for (dir, reason) in cases {
        let message = check(&broken.join(dir));
        let file = files_ending(&broken.join(dir), "")
            .into_iter()
            .find(|p| message.starts_with(&p.display().to_string()))
            .unwrap_or_else(|| panic!("{dir}: message does not start with the file: {message}"));
        let rest = &message[file.display().to_string().len()..];
        assert!(
            rest.contains(&reason),
            "{dir}: expected '{reason}' in '{message}'"
        );
    }
}
