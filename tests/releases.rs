//! The apt of every Debian release mbd supports, against what mbd publishes and serves:
//! trixie's (apt 3.0, verifying with sqv) and sid's, each in a minimal root mmdebstrap makes
//! from the Debian mirror (once, cached under `target/release-roots/`), and bookworm's (apt
//! 2.6, gpgv) from the host. Each runs `apt-get --error-on=any update` (a warning fails it)
//! and installs a package from its codename's distribution.

use crate::daemon::Daemon;
use crate::util::{Apt, make_deb, mbd_ok, run};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A minimal root of `codename` with its apt (mmdebstrap's `apt` variant), made once per
/// checkout. The mirror's snapshot of sid may be older than its Valid-Until, so that check
/// is off while the root is made (not when the root's apt reads our repository).
fn release_root(codename: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release-roots");
    let root = dir.join(codename);
    if root.join("usr/bin/apt-get").exists() {
        return root;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join(format!("{codename}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let (ok, out) = run(Command::new("mmdebstrap")
        .args([
            "--variant=apt",
            "--quiet",
            "--aptopt=Acquire::Check-Valid-Until \"false\"",
            codename,
        ])
        .arg(&tmp)
        .arg("http://deb.debian.org/debian"));
    assert!(ok, "mmdebstrap {codename} failed:\n{out}");
    // Only our repository from here on.
    std::fs::remove_file(tmp.join("etc/apt/apt.conf.d/99mmdebstrap")).ok();
    std::fs::write(tmp.join("etc/apt/sources.list"), "").unwrap();
    for e in std::fs::read_dir(tmp.join("etc/apt/sources.list.d")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    match std::fs::rename(&tmp, &root) {
        Ok(()) => {}
        // Another test process made it first.
        Err(_) if root.join("usr/bin/apt-get").exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Err(e) => panic!("{}: {e}", root.display()),
    }
    root
}

/// A throwaway copy of a release root, so installs do not pile up in the cached one.
pub(crate) struct Root {
    _dir: tempfile::TempDir,
    pub(crate) path: PathBuf,
}

impl Root {
    pub(crate) fn of(codename: &str) -> Root {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(codename);
        let (ok, out) = run(Command::new("cp")
            .arg("-a")
            .arg(release_root(codename))
            .arg(&path));
        assert!(ok, "{out}");
        Root { _dir: dir, path }
    }

    pub(crate) fn apt_get(&self, args: &[&str]) -> String {
        let (ok, out) = run(Command::new("chroot")
            .arg(&self.path)
            .arg("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"));
        assert!(ok, "apt-get {args:?} in {}:\n{out}", self.path.display());
        out
    }
}

/// No warning or notice line: apt's policy on keys, hashes and signatures is met in full.
fn assert_quiet(out: &str, who: &str) {
    let noisy: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("W:") || l.starts_with("N:") || l.starts_with("E:"))
        .collect();
    assert!(noisy.is_empty(), "{who} complained:\n{out}");
}

/// The same entry with another key in Signed-By: the root's apt must refuse it (it really
/// verifies, with sqv and the key given).
fn refuses_another_key(root: &Root, sources: &str) {
    let mut entry = String::new();
    let mut in_key = false;
    for line in sources.lines() {
        if line.starts_with("Signed-By:") {
            entry.push_str("Signed-By: /etc/apt/keyrings/not-ours.asc\n");
            in_key = true;
        } else if in_key && line.starts_with(' ') {
        } else {
            in_key = false;
            entry.push_str(line);
            entry.push('\n');
        }
    }
    let keyrings = root.path.join("etc/apt/keyrings");
    std::fs::create_dir_all(&keyrings).unwrap();
    let other = crate::util::fixtures().join("keys/uploaders.asc");
    std::fs::copy(other, keyrings.join("not-ours.asc")).unwrap();
    let list = root.path.join("etc/apt/sources.list.d/mbd.sources");
    std::fs::write(list, entry).unwrap();
    let (ok, out) =
        run(Command::new("chroot")
            .arg(&root.path)
            .args(["apt-get", "--error-on=any", "update"]));
    assert!(
        !ok && out.contains("/usr/bin/sqv") && out.contains("is not signed"),
        "{out}"
    );
}

/// The `.sources` entry of `codename`'s unstable suite, key inline.
pub(crate) fn sources(d: &Daemon, codename: &str) -> String {
    d.api_ok(&[
        "sources_list",
        "--format",
        "sources",
        "--signed-by",
        "inline",
        "--suites",
        "unstable",
        "--codenames",
        codename,
    ])
}

#[test]
fn the_apt_of_trixie_sid_and_bookworm_accepts_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    mbd_ok(
        &home,
        &[
            "setup",
            "--identity",
            "testhost",
            "--distributions",
            "trixie:amd64,sid:amd64,bookworm:amd64",
            "--repositories",
            "test:Default:trixie+sid+bookworm",
        ],
    );
    for (codename, version) in [
        ("trixie", "1.0~test13+1"),
        ("sid", "1.0~test~SID+1"),
        ("bookworm", "1.0~test12+1"),
    ] {
        let deb = make_deb(&dir.path().join("debs"), "mbd-release-check", version);
        let dist = format!("{codename}-test-unstable");
        mbd_ok(&home, &["repo", "include", &dist, deb.to_str().unwrap()]);
    }
    let d = Daemon::start(&home);
    // The roots are made while the daemon runs (the first run fetches from the mirror).
    for codename in ["trixie", "sid"] {
        let root = Root::of(codename);
        let list = root.path.join("etc/apt/sources.list.d/mbd.sources");
        std::fs::write(&list, sources(&d, codename)).unwrap();
        let (_, version) = run(Command::new("chroot")
            .arg(&root.path)
            .args(["apt-get", "--version"]));
        assert!(version.starts_with("apt 3."), "{codename}: {version}");
        assert!(
            root.path.join("usr/bin/sqv").exists() && !root.path.join("usr/bin/gpgv").exists(),
            "{codename}'s apt verifies with sqv alone"
        );
        refuses_another_key(&root, &sources(&d, codename));
        std::fs::write(&list, sources(&d, codename)).unwrap();
        let out = root.apt_get(&["--error-on=any", "update"]);
        assert_quiet(&out, codename);
        assert!(
            out.contains(&format!("{codename}-test-unstable InRelease")),
            "{out}"
        );
        let out = root.apt_get(&[
            "-o",
            "Dpkg::Use-Pty=0",
            "install",
            "-y",
            "mbd-release-check",
        ]);
        assert_quiet(&out, codename);
        let installed = root.path.join("usr/share/mbd-release-check/version");
        let expected = if codename == "trixie" {
            "1.0~test13+1"
        } else {
            "1.0~test~SID+1"
        };
        assert_eq!(std::fs::read_to_string(installed).unwrap(), expected);
    }
    // bookworm's apt, the host's.
    let apt = Apt::new(&sources(&d, "bookworm"));
    let (ok, out) = apt.get(&["--error-on=any", "update"]);
    assert!(ok, "{out}");
    assert_quiet(&out, "bookworm");
    let (ok, out) = apt.get(&["install", "-y", "mbd-release-check"]);
    assert!(ok, "{out}");
    let installed = apt.root().join("usr/share/mbd-release-check/version");
    assert_eq!(std::fs::read_to_string(installed).unwrap(), "1.0~test12+1");
}
