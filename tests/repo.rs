use crate::util::{Apt, HttpServer, make_deb, make_deb_with, mbd, mbd_ok, pkg};
use mbd::repo::{Engine, RepoError, SetupOptions};
use std::path::Path;

fn setup_cli(home: &Path) {
    mbd_ok(
        home,
        &[
            "setup",
            "--identity",
            "testhost",
            "--distributions",
            "bookworm:amd64+i386",
            "--repositories",
            "test:Default:bookworm",
        ],
    );
}

fn engine(home: &Path) -> Engine {
    Engine::setup(
        home,
        &SetupOptions {
            identity: Some("testhost".into()),
            distributions: vec!["bookworm:amd64".into()],
            repositories: vec!["test:Default:bookworm".into()],
            ..Default::default()
        },
    )
    .unwrap()
}

fn sources(server: &HttpServer, key: &Path, suites: &str) -> String {
    format!(
        "Types: deb deb-src\nURIs: {}\nSuites: {suites}\nComponents: main\nSigned-By: {}\n",
        server.url("test"),
        key.display()
    )
}

fn same_bytes(a: &Path, b: &Path) {
    assert_eq!(
        std::fs::read(a).unwrap(),
        std::fs::read(b).unwrap(),
        "{} != {}",
        a.display(),
        b.display()
    );
}

#[test]
fn apt_gets_packages_from_a_suite_a_rollback_and_after_a_migration() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    setup_cli(h);
    let v1 = pkg("mbd-hello_1.0-1~test12+1_amd64.changes");
    let v2 = pkg("mbd-hello_1.0-2~test12+1_amd64.changes");
    mbd_ok(
        h,
        &[
            "repo",
            "include",
            "bookworm-test-unstable",
            v1.to_str().unwrap(),
        ],
    );
    mbd_ok(
        h,
        &[
            "repo",
            "include",
            "bookworm-test-unstable",
            v2.to_str().unwrap(),
        ],
    );
    let key = h.join("archive.pgp");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mbd"))
        .args(["--home", h.to_str().unwrap(), "pub-key", "--binary"])
        .output()
        .unwrap();
    std::fs::write(&key, out.stdout).unwrap();

    let server = HttpServer::start(&h.join("repositories"));
    let apt = Apt::new(&sources(
        &server,
        &key,
        "bookworm-test-unstable bookworm-test-unstable-rollback0 bookworm-test-testing",
    ));
    apt.update();
    // The suite has the new version; the rollback the old one.
    let (ok, out) = apt.get(&["download", "mbd-hello-doc"]);
    assert!(ok, "{out}");
    same_bytes(
        &apt.downloaded("mbd-hello-doc_1.0-2~test12+1_all.deb"),
        &pkg("mbd-hello-doc_1.0-2~test12+1_all.deb"),
    );
    let (ok, out) = apt.get(&["download", "mbd-hello-doc/bookworm-test-unstable-rollback0"]);
    assert!(ok, "{out}");
    same_bytes(
        &apt.downloaded("mbd-hello-doc_1.0-1~test12+1_all.deb"),
        &pkg("mbd-hello-doc_1.0-1~test12+1_all.deb"),
    );
    let (ok, out) = apt.get(&["source", "--download-only", "mbd-hello"]);
    assert!(ok, "{out}");
    same_bytes(
        &apt.downloaded("mbd-hello_1.0-2~test12+1.dsc"),
        &pkg("mbd-hello_1.0-2~test12+1.dsc"),
    );

    // Testing is empty until the migration.
    let (ok, _) = apt.get(&["download", "mbd-hello/bookworm-test-testing"]);
    assert!(!ok, "testing had mbd-hello before the migration");
    mbd_ok(
        h,
        &["repo", "migrate", "mbd-hello", "bookworm-test-unstable"],
    );
    let show: serde_json::Value =
        serde_json::from_str(&mbd_ok(h, &["repo", "show", "mbd-hello", "--json"])).unwrap();
    let unstable = &show["test"]["bookworm-test-unstable"];
    assert_eq!(unstable["migrates_to"], "bookworm-test-testing");
    assert_eq!(unstable["is_migrated"], true);
    assert_eq!(unstable["uploadable"], true);
    assert_eq!(
        unstable["dsc_path"],
        "test/pool/main/m/mbd-hello/mbd-hello_1.0-2~test12+1.dsc"
    );
    assert_eq!(
        unstable["rollbacks"]["bookworm-test-unstable-rollback0"]["dsc_path"],
        "test/pool/main/m/mbd-hello/mbd-hello_1.0-1~test12+1.dsc"
    );
    assert_eq!(show["test"]["bookworm-test-testing"]["is_migrated"], false);
    apt.update();
    let (ok, out) = apt.get(&["download", "mbd-hello/bookworm-test-testing"]);
    assert!(ok, "{out}");
    same_bytes(
        &apt.downloaded("mbd-hello_1.0-2~test12+1_amd64.deb"),
        &pkg("mbd-hello_1.0-2~test12+1_amd64.deb"),
    );

    // And it installs (into the isolated root).
    let (ok, out) = apt.get(&["install", "-y", "mbd-hello/bookworm-test-testing"]);
    assert!(ok, "{out}");
    assert_eq!(
        std::fs::read_to_string(apt.root().join("usr/share/mbd-hello/arch"))
            .unwrap()
            .trim(),
        "amd64"
    );
}

fn versions(e: &Engine, source: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for dists in e.ls(source).unwrap().values() {
        for (dist, entry) in dists {
            if let Some(v) = &entry.version {
                out.push((dist.clone(), v.clone()));
            }
            for (rb, r) in &entry.rollbacks {
                out.push((rb.clone(), r.version.clone()));
            }
        }
    }
    out.sort();
    out
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn rollbacks_shift_up_to_the_oldest_slot_and_drop_beyond_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir.path().join("home"));
    let debs: Vec<_> = (1..=5)
        .map(|n| make_deb(dir.path(), "chain", &format!("1.{n}")))
        .collect();
    for deb in &debs {
        e.include("bookworm-test-testing", std::slice::from_ref(deb))
            .unwrap();
    }
    // testing keeps 3 rollbacks: 1.1 fell out.
    assert_eq!(
        versions(&e, "chain"),
        pairs(&[
            ("bookworm-test-testing", "1.5"),
            ("bookworm-test-testing-rollback0", "1.4"),
            ("bookworm-test-testing-rollback1", "1.3"),
            ("bookworm-test-testing-rollback2", "1.2"),
        ])
    );
    let pool = e.repo_dir("test").join("pool/main/c/chain");
    assert!(
        !pool.join("chain_1.1_all.deb").exists(),
        "the dropped version's pool file is deleted"
    );
    assert!(pool.join("chain_1.2_all.deb").exists());
    let packages = std::fs::read_to_string(
        e.repo_dir("test")
            .join("dists/bookworm-test-testing-rollback2/main/binary-amd64/Packages"),
    )
    .unwrap();
    assert!(packages.contains("Version: 1.2\n"), "{packages}");
    let release = std::fs::read_to_string(
        e.repo_dir("test")
            .join("dists/bookworm-test-testing-rollback2/Release"),
    )
    .unwrap();
    assert!(
        release.contains("NotAutomatic: yes\n") && !release.contains("ButAutomaticUpgrades"),
        "{release}"
    );
}

#[test]
fn migrate_full_follows_the_chain_and_refuses_a_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir.path().join("home"));
    e.include(
        "bookworm-test-unstable",
        &[make_deb(dir.path(), "mig", "1.0")],
    )
    .unwrap();
    let arrived = e
        .migrate("mig", "bookworm-test-unstable", true, None)
        .unwrap();
    assert_eq!(arrived, ["bookworm-test-testing", "bookworm-test-stable"]);
    assert_eq!(
        versions(&e, "mig"),
        pairs(&[
            ("bookworm-test-stable", "1.0"),
            ("bookworm-test-testing", "1.0"),
            ("bookworm-test-unstable", "1.0")
        ])
    );
    let err = e
        .migrate("mig", "bookworm-test-unstable", false, None)
        .unwrap_err();
    assert!(matches!(err, RepoError::AlreadyMigrated { .. }), "{err}");
    let err = e
        .migrate("mig", "bookworm-test-stable", false, None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "You can't migrate from 'bookworm-test-stable': its suite migrates nowhere"
    );
    let err = e
        .migrate("nosuch", "bookworm-test-unstable", false, None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "No such source 'nosuch' in bookworm-test-unstable"
    );
}

#[test]
fn remove_keeps_a_rollback_unless_told_and_rollbacks_restore() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir.path().join("home"));
    let deb = make_deb(dir.path(), "rem", "1.0");
    e.include("bookworm-test-unstable", std::slice::from_ref(&deb))
        .unwrap();
    e.remove("rem", "bookworm-test-unstable", false, None)
        .unwrap();
    assert_eq!(
        versions(&e, "rem"),
        pairs(&[("bookworm-test-unstable-rollback0", "1.0")])
    );
    // Restore from the rollback into the empty main distribution.
    assert_eq!(
        e.migrate("rem", "bookworm-test-unstable-rollback0", false, None)
            .unwrap(),
        ["bookworm-test-unstable"]
    );
    let err = e
        .migrate("rem", "bookworm-test-unstable-rollback0", false, None)
        .unwrap_err();
    assert!(matches!(err, RepoError::RestoreOccupied { .. }), "{err}");
    // Without rollback: gone from the main distribution, rollback untouched.
    e.remove("rem", "bookworm-test-unstable", true, None)
        .unwrap();
    assert_eq!(
        versions(&e, "rem"),
        pairs(&[("bookworm-test-unstable-rollback0", "1.0")])
    );
    e.remove("rem", "bookworm-test-unstable-rollback0", false, None)
        .unwrap();
    assert!(versions(&e, "rem").is_empty());
    assert!(
        !e.repo_dir("test").join("pool/main/r/rem").exists(),
        "pool cleaned when nothing refers to it"
    );
}

#[test]
fn removing_from_a_rollback_slot_moves_older_slots_down() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir.path().join("home"));
    for n in 1..=4 {
        e.include(
            "bookworm-test-testing",
            &[make_deb(dir.path(), "gap", &format!("1.{n}"))],
        )
        .unwrap();
    }
    e.remove("gap", "bookworm-test-testing-rollback0", false, None)
        .unwrap();
    assert_eq!(
        versions(&e, "gap"),
        pairs(&[
            ("bookworm-test-testing", "1.4"),
            ("bookworm-test-testing-rollback0", "1.2"),
            ("bookworm-test-testing-rollback1", "1.1")
        ])
    );
}

#[test]
fn older_or_equal_versions_are_refused_with_a_non_zero_exit() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    setup_cli(h);
    let v1 = pkg("mbd-hello_1.0-1~test12+1_amd64.changes");
    let v2 = pkg("mbd-hello_1.0-2~test12+1_amd64.changes");
    mbd_ok(
        h,
        &[
            "repo",
            "include",
            "bookworm-test-unstable",
            v2.to_str().unwrap(),
        ],
    );
    for older in [&v1, &v2] {
        let (ok, out) = mbd(
            h,
            &[
                "repo",
                "include",
                "bookworm-test-unstable",
                older.to_str().unwrap(),
            ],
        );
        assert!(!ok, "accepted {}", older.display());
        assert!(
            out.contains("is not newer than 1.0-2~test12+1 in bookworm-test-unstable"),
            "{out}"
        );
    }
}

#[test]
fn bad_distribution_names_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir.path().join("home"));
    let deb = make_deb(dir.path(), "names", "1.0");
    for (dist, message) in [
        ("bookworm-test", "Malformed distribution 'bookworm-test'"),
        ("bookworm-nope-unstable", "No such repository 'nope'"),
        (
            "sid-test-unstable",
            "No distribution for codename 'sid' in repository 'test'",
        ),
        (
            "bookworm-test-nosuch",
            "No distribution for suite 'nosuch' in layout 'Default'",
        ),
        (
            "bookworm-test-unstable-rollback9",
            "No rollback distribution 'bookworm-test-unstable-rollback9': suite 'unstable' keeps 9 rollbacks",
        ),
        (
            "bookworm-test-unstable-rollback0",
            "cannot include into rollback distribution",
        ),
    ] {
        let err = e
            .include(dist, std::slice::from_ref(&deb))
            .unwrap_err()
            .to_string();
        assert!(err.contains(message), "{dist}: {err}");
    }
}

#[test]
fn the_same_pool_path_with_other_content_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir.path().join("home"));
    let a = make_deb_with(&dir.path().join("a"), "same", "1.0", "first build of");
    e.include("bookworm-test-unstable", &[a]).unwrap();
    let b = make_deb_with(&dir.path().join("b"), "same", "1.0", "second build of");
    let err = e.include("bookworm-test-testing", &[b]).unwrap_err();
    assert!(matches!(err, RepoError::PoolConflict { .. }), "{err}");
    assert!(
        err.to_string().contains(
            "pool/main/s/same/same_1.0_all.deb is already in the pool with different content"
        ),
        "{err}"
    );
}

#[test]
fn ambiguous_meta_distributions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = Engine::setup(
        dir.path(),
        &SetupOptions {
            identity: Some("t".into()),
            distributions: vec!["sid:amd64".into()],
            repositories: vec![
                "dev:Debian Developer:sid".into(),
                "other:Debian Developer:sid".into(),
            ],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Ambiguous meta-distribution 'experimental': sid-dev-experimental and sid-other-experimental"
    );
}

#[test]
fn publishing_the_same_state_twice_gives_identical_bytes() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    setup_cli(h);
    let v1 = pkg("mbd-hello_1.0-1~test12+1_amd64.changes");
    mbd_ok(
        h,
        &[
            "repo",
            "include",
            "bookworm-test-unstable",
            v1.to_str().unwrap(),
        ],
    );
    let dists = h.join("repositories/test/dists");
    let before = snapshot(&dists);
    mbd_ok(h, &["repo", "publish"]);
    let after = snapshot(&dists);
    assert_eq!(before.len(), after.len());
    let mut compared = 0;
    for ((p1, b1), (p2, b2)) in before.iter().zip(&after) {
        assert_eq!(p1, p2);
        let name = p1.file_name().unwrap().to_string_lossy();
        if name == "Release.gpg" {
            continue; // salted signature packets differ by design; InRelease's text is compared
        }
        if name == "InRelease" {
            let text =
                |b: &[u8]| mbd::openpgp::cleartext_body(std::str::from_utf8(b).unwrap()).unwrap();
            assert_eq!(text(b1), text(b2), "{}", p1.display());
        } else {
            assert_eq!(b1, b2, "{} differs", p1.display());
        }
        compared += 1;
    }
    assert!(compared > 500, "compared {compared} files");
}

#[test]
fn publishes_rebuilt_from_the_previous_ones_give_the_bytes_of_a_cold_publish() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir.path().join("home"));
    let debs = dir.path().join("debs");
    let unstable = "bookworm-test-unstable";
    for name in ["inc-a", "inc-b", "inc-c", "inc-d"] {
        e.include(unstable, &[make_deb(&debs, name, "1.0")])
            .unwrap();
    }
    e.include(unstable, &[pkg("mbd-hello_1.0-1~test12+1_amd64.changes")])
        .unwrap();
    // A new version replaces b (1.0 goes to the rollback), a leaves, c migrates, e arrives.
    e.include(unstable, &[make_deb(&debs, "inc-b", "2.0")])
        .unwrap();
    e.remove("inc-a", unstable, false, None).unwrap();
    e.migrate("inc-c", unstable, false, None).unwrap();
    e.include(unstable, &[make_deb(&debs, "inc-e", "1.0")])
        .unwrap();
    e.include(unstable, &[pkg("mbd-hello_1.0-2~test12+1_amd64.changes")])
        .unwrap();
    let dists = e.repo_dir("test").join("dists");
    // Everything but the Release files, whose Date is the clock's.
    let indices = || -> Vec<(std::path::PathBuf, Vec<u8>)> {
        snapshot(&dists)
            .into_iter()
            .filter(|(p, _)| {
                let name = p.file_name().unwrap().to_string_lossy();
                !matches!(name.as_ref(), "Release" | "InRelease" | "Release.gpg")
            })
            .collect()
    };
    let before = indices();
    // The Release files, but their Date: entries of files left as published come from the
    // previous Release, and must be what a cold publish computes.
    let releases = || -> Vec<(std::path::PathBuf, String)> {
        snapshot(&dists)
            .into_iter()
            .filter(|(p, _)| p.file_name().unwrap() == "Release")
            .map(|(p, b)| {
                let text = String::from_utf8(b).unwrap();
                let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("Date:")).collect();
                (p, kept.join("\n"))
            })
            .collect()
    };
    let releases_before = releases();
    let packages = dists.join("bookworm-test-unstable/main/binary-amd64/Packages");
    let listed = std::fs::read_to_string(&packages).unwrap();
    // Arrival order: the last upload's binary is listed last.
    assert!(
        listed.find("Package: inc-e").unwrap() < listed.rfind("Package: mbd-hello").unwrap(),
        "{listed}"
    );
    e.set_cold(true);
    e.publish_all().unwrap();
    let after = indices();
    let names = |s: &[(std::path::PathBuf, Vec<u8>)]| {
        s.iter()
            .map(|(p, _)| p.clone())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let new: Vec<_> = names(&after).difference(&names(&before)).cloned().collect();
    assert!(new.is_empty(), "a cold publish wrote other files: {new:?}");
    assert_eq!(before.len(), after.len());
    for ((p, b1), (_, b2)) in before.iter().zip(&after) {
        assert!(b1 == b2, "{} differs from its cold publish", p.display());
    }
    assert!(before.len() > 100, "{}", before.len());
    let releases_after = releases();
    assert_eq!(releases_before.len(), releases_after.len());
    for ((p, r1), (_, r2)) in releases_before.iter().zip(&releases_after) {
        assert!(
            r1 == r2,
            "{} differs from its cold publish:\n{r1}\n---\n{r2}",
            p.display()
        );
    }
}

fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn snapshots_freeze_a_distribution_for_apt_and_delete_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let e = engine(&home);
    e.include(
        "bookworm-test-stable",
        &[make_deb(dir.path(), "snap", "1.0")],
    )
    .unwrap();
    e.snapshot_create("bookworm-test-stable", "WEEKLY_2026-11-23T02:37")
        .unwrap();
    e.include(
        "bookworm-test-stable",
        &[make_deb(dir.path(), "snap", "2.0")],
    )
    .unwrap();
    assert_eq!(
        e.snapshot_ls("bookworm-test-stable").unwrap(),
        ["WEEKLY_2026-11-23T02:37"]
    );
    let err = e
        .snapshot_create("bookworm-test-stable", "WEEKLY_2026-11-23T02:37")
        .unwrap_err();
    assert!(matches!(err, RepoError::SnapshotExists { .. }), "{err}");
    let err = e
        .snapshot_create("bookworm-test-stable", "../escape")
        .unwrap_err();
    assert!(matches!(err, RepoError::SnapshotName { .. }), "{err}");

    std::fs::write(home.join("archive.pgp"), e.key().public_binary()).unwrap();
    let server = HttpServer::start(&home.join("repositories"));
    let apt = Apt::new(&sources(
        &server,
        &home.join("archive.pgp"),
        "bookworm-test-stable/snapshots/WEEKLY_2026-11-23T02:37",
    ));
    apt.update();
    let (ok, out) = apt.get(&["download", "snap"]);
    assert!(ok, "{out}");
    assert!(
        apt.downloaded("snap_1.0_all.deb").exists(),
        "the snapshot serves the frozen version"
    );

    e.snapshot_delete("bookworm-test-stable", "WEEKLY_2026-11-23T02:37")
        .unwrap();
    assert!(e.snapshot_ls("bookworm-test-stable").unwrap().is_empty());
    assert!(
        !e.repo_dir("test")
            .join("dists/bookworm-test-stable/snapshots/WEEKLY_2026-11-23T02:37")
            .exists()
    );
    let err = e
        .snapshot_delete("bookworm-test-stable", "WEEKLY_2026-11-23T02:37")
        .unwrap_err();
    assert!(matches!(err, RepoError::NoSuchSnapshot { .. }), "{err}");
    // 1.0 stays in the pool only because stable's rollback0 still holds it.
    assert_eq!(
        versions(&e, "snap"),
        pairs(&[
            ("bookworm-test-stable", "2.0"),
            ("bookworm-test-stable-rollback0", "1.0")
        ])
    );
}
