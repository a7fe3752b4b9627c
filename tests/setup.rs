//! `setup` against the real Debian archive this machine uses: from an empty home (a daemon
//! started with `--no-default-setup`) to checked sources, a distribution whose codeversion comes
//! from the real Release file, and a published repository; and the refusals — an unknown
//! origin, an unknown codename, an unreachable archive, keys that did not sign — each ending
//! with clear reasons and no half-created objects.
//!
//! It needs the host's Debian mirror over http (as the build test does).

use crate::daemon::{Daemon, json};
use std::path::Path;

/// This machine's Debian codename and major version (from /etc/os-release).
fn host_release() -> (String, String) {
    let text = std::fs::read_to_string("/etc/os-release").unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    (field("VERSION_CODENAME"), field("VERSION_ID"))
}

fn sources(d: &Daemon) -> serde_json::Value {
    json(&d.api_ok(&["config_objects", "--kind", "source"]))["source"].clone()
}

fn source<'a>(all: &'a serde_json::Value, codename: &str) -> &'a serde_json::Value {
    all.as_array()
        .unwrap()
        .iter()
        .find(|s| s["codename"] == codename)
        .unwrap_or_else(|| panic!("no source {codename}: {all}"))
}

fn report(d: &Daemon, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["setup", "--format", "json"];
    a.extend_from_slice(args);
    json(&d.api_ok(&a))
}

fn entry<'a>(r: &'a serde_json::Value, kind: &str, id: &str) -> &'a serde_json::Value {
    r["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == kind && e["id"] == id)
        .unwrap_or_else(|| panic!("no {kind} {id} in {r}"))
}

#[test]
fn setup_from_the_debian_origin_checks_real_sources_and_refuses_bad_ones() {
    let (codename, version) = host_release();
    let mirror = mbd::build::chroot::mirror_from_apt_sources(Path::new("/etc/apt"), &codename)
        .expect("the host's apt sources name a Debian mirror");
    let mirror = format!("{}/", mirror.trim_end_matches('/'));
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let d = Daemon::start_with(&home, &["--no-default-setup", "--no-default-chroot"]);
    assert!(d.banner().contains("no repositories"), "{}", d.banner());
    let status = json(&d.api_ok(&["status", "--with-repositories"]));
    assert_eq!(status["repositories"], serde_json::json!({}), "{status}");

    // An unknown origin: refused, nothing created.
    let (ok, out) = d.api(&[
        "setup",
        "--from-origins",
        "Foo",
        "--sources",
        &codename,
        "--update",
    ]);
    assert!(
        !ok && out.contains("unknown origin 'Foo' (known: Debian, Ubuntu)"),
        "{out}"
    );
    assert_eq!(sources(&d), serde_json::json!([]));

    // Report only: everything missing, nothing stored.
    let args = [
        "--from-origins",
        "Debian",
        "--archives",
        &mirror,
        "--sources",
        &codename,
        "--distributions-from-sources",
        "--repositories-from-distributions",
        "test",
    ];
    let r = report(&d, &args);
    assert_eq!(entry(&r, "source", &codename)["status"], "missing", "{r}");
    assert_eq!(entry(&r, "archive", &mirror)["status"], "missing", "{r}");
    assert_eq!(r["severity"], 2);
    assert_eq!(sources(&d), serde_json::json!([]));

    // Update and pca: the source is checked against the real InRelease and its real keys.
    let mut apply = args.to_vec();
    apply.extend(["--update", "--pca"]);
    let r = report(&d, &apply);
    let e = entry(&r, "source", &codename);
    assert_eq!(e["status"], "active", "{r}");
    assert_eq!(e["actions"], serde_json::json!(["created", "pca"]), "{r}");
    assert_eq!(
        entry(&r, "distribution", &codename)["status"],
        "exists",
        "{r}"
    );
    assert_eq!(
        entry(&r, "repository", "test")["actions"][0],
        "created",
        "{r}"
    );
    let all = sources(&d);
    let s = source(&all, &codename);
    assert_eq!(s["label"], "Active (C)", "{s}");
    assert_eq!(s["codeversion"], version.as_str(), "{s}");
    assert_eq!(s["archives"][0], mirror.as_str(), "{s}");
    assert!(
        s["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "main")
    );
    let keys = json(&d.api_ok(&["config_objects", "--kind", "aptkey"]))["aptkey"].clone();
    let used: Vec<&serde_json::Value> = keys
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| s["apt_keys"].as_array().unwrap().contains(&k["key_id"]))
        .collect();
    assert!(
        used.iter().all(|k| k["label"] == "Active (C)"
            && k["info"]["fingerprint"].as_str().unwrap().len() == 40),
        "{keys}"
    );
    // The security source is an extra source of the distribution (the backports one too,
    // when the archive carries it).
    let security = format!("{codename}-security");
    assert_eq!(
        source(&all, &security)["label"],
        "Prepared (x)",
        "only {mirror} was given: {all}"
    );
    // The repository is published for the distribution, with the source's codeversion.
    // On the host's native architectures: amd64 and i386 where the kernel runs i386.
    let (code, _, body) = d.get(
        &format!("/repositories/test/dists/{codename}-test-unstable/InRelease"),
        &[],
    );
    assert_eq!(code, 200);
    let release = String::from_utf8_lossy(&body);
    let i386_runs = std::process::Command::new("arch-test")
        .args(["-n", "i386"])
        .output()
        .is_ok_and(|o| o.status.success());
    let expected = if i386_runs {
        "Architectures: amd64 i386\n"
    } else {
        "Architectures: amd64\n"
    };
    assert!(release.contains(expected), "{release}");
    let status = json(&d.api_ok(&["status", "--with-repositories"]));
    assert_eq!(
        status["repositories"]["test"]["codenames"][0],
        codename.as_str(),
        "{status}"
    );

    // Again: nothing to do.
    let r = report(&d, &apply);
    let created: Vec<&serde_json::Value> = r["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["actions"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "created"))
        })
        .collect();
    assert!(created.is_empty(), "{r}");

    // Current: a report on what exists, nothing changed. Extend applies it: a deactivated
    // repository is activated again.
    let r = report(&d, &["--preset", "Current"]);
    assert_eq!(entry(&r, "source", &codename)["status"], "active", "{r}");
    assert_eq!(
        entry(&r, "distribution", &codename)["status"],
        "exists",
        "{r}"
    );
    assert_eq!(entry(&r, "repository", "test")["status"], "active", "{r}");
    d.api_ok(&["config_action", "repository", "test", "deactivate"]);
    let r = report(&d, &["--preset", "Current"]);
    let e = entry(&r, "repository", "test");
    assert_eq!(e["status"], "deactivated", "{r}");
    assert!(e.get("actions").is_none(), "report only: {r}");
    let r = report(&d, &["--preset", "Extend"]);
    let e = entry(&r, "repository", "test");
    assert_eq!(e["status"], "active", "{r}");
    assert_eq!(e["actions"], serde_json::json!(["pca"]), "{r}");

    // Keys that did not sign the Release: the check fails, naming the keys that did.
    let (ok, out) = d.api(&[
        "config_set",
        "source",
        &codename,
        "apt_keys",
        "--value",
        "605C66F00D6C9793",
    ]);
    assert!(ok, "{out}");
    assert_eq!(source(&sources(&d), &codename)["label"], "Prepared (*)");
    let (ok, out) = d.api(&["config_action", "source", &codename, "pca"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("no good signature by the source's keys (605C66F00D6C9793)"),
        "{out}"
    );
    assert!(out.contains("it is signed by "), "{out}");
    let all = sources(&d);
    let s = source(&all, &codename);
    assert_eq!(s["label"], "Prepared (x)", "{s}");
    assert!(
        s["status"]["message"]
            .as_str()
            .unwrap()
            .contains("it is signed by"),
        "{s}"
    );

    // An unknown codename: its source ends Failed with the archive's answer; no distribution,
    // and the repository is not extended with it.
    let r = report(
        &d,
        &[
            "--from-origins",
            "Debian",
            "--sources",
            "bookwurm",
            "--distributions-from-sources",
            "--repositories-from-distributions",
            "test",
            "--update",
            "--pca",
        ],
    );
    let e = entry(&r, "source", "bookwurm");
    assert_eq!(e["status"], "failed", "{r}");
    assert!(
        e["message"].as_str().unwrap().contains(&format!(
            "no {mirror}dists/bookwurm/InRelease or Release (HTTP 404)"
        )),
        "{r}"
    );
    assert_eq!(r["severity"], 3);
    assert_eq!(
        entry(&r, "distribution", "bookwurm")["status"],
        "waiting",
        "{r}"
    );
    let status = json(&d.api_ok(&["status", "--with-repositories"]));
    assert_eq!(
        status["repositories"]["test"]["codenames"],
        serde_json::json!([codename]),
        "{status}"
    );
    assert_eq!(source(&sources(&d), "bookwurm")["label"], "Prepared (x)");
}

#[test]
fn a_source_on_an_unreachable_archive_fails_with_the_reason() {
    let (codename, _) = host_release();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(
        &dir.path().join("home"),
        &[
            "--no-default-setup",
            "--no-default-chroot",
            "--identity",
            "lab",
        ],
    );
    assert!(d.banner().contains("archive 'lab'"), "{}", d.banner());
    // The identity is fixed once the key exists: a different one is reported, not applied.
    let r = report(&d, &["--identity", "other", "--update"]);
    let e = entry(&r, "instance", "lab");
    assert_eq!(e["diff"][0], "identity: lab → other", "{r}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("mbd daemon --identity"),
        "{r}"
    );
    let r = report(
        &d,
        &[
            "--from-origins",
            "Debian",
            "--archives",
            "http://example.invalid/debian/",
            "--sources",
            &codename,
            "--distributions-from-sources",
            "--repositories-from-distributions",
            "test",
            "--chroots-from-sources",
            "--update",
            "--pca",
        ],
    );
    let e = entry(&r, "source", &codename);
    assert_eq!(e["status"], "failed", "{r}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("http://example.invalid/debian/: unreachable"),
        "{r}"
    );
    for (kind, id) in [
        ("distribution", codename.clone()),
        ("repository", "test".to_string()),
    ] {
        assert_eq!(entry(&r, kind, &id)["status"], "waiting", "{r}");
    }
    let chroots: Vec<&serde_json::Value> = r["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "chroot")
        .collect();
    assert!(
        !chroots.is_empty() && chroots.iter().all(|e| e["status"] == "waiting"),
        "{r}"
    );
    let status = json(&d.api_ok(&["status", "--with-repositories"]));
    assert_eq!(status["repositories"], serde_json::json!({}), "{status}");
    assert_eq!(json(&d.api_ok(&["chroots"])), serde_json::json!([]));
    // A bad archive URL or chroot backend is refused before anything is created.
    let (ok, out) = d.api(&["setup", "--archives", "ftp://x.example/debian/", "--update"]);
    assert!(
        !ok && out.contains("must be an http:// or https:// URL"),
        "{out}"
    );
    let (ok, out) = d.api(&["setup", "--chroots-backend", "lvm"]);
    assert!(!ok && out.contains("chroot backend 'lvm'"), "{out}");
    let (ok, out) = d.api(&["setup", "--preset", "Arch"]);
    assert!(!ok && out.contains("unknown preset 'Arch'"), "{out}");
}

#[test]
fn a_custom_layout_is_checked_and_carries_a_new_repository() {
    let (codename, _) = host_release();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("home"));
    let all = json(&d.api_ok(&["layouts"]));
    let mut small = all
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "Default")
        .unwrap()
        .clone();
    // Two suites: unstable (uploadable) migrates to stable.
    small["name"] = "Small".into();
    small["meta_distributions"] = serde_json::json!({});
    let suites: Vec<serde_json::Value> = small["suites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "stable" || s["name"] == "unstable")
        .cloned()
        .collect();
    small["suites"] = serde_json::json!(suites);
    small["suites"][1]["migrates_to"] = "stable".into();

    // Broken variants are refused with the reason.
    let mut bad = small.clone();
    bad["suites"][1]["migrates_to"] = "nowhere".into();
    let (ok, out) = d.api(&["layout_set", &bad.to_string()]);
    assert!(
        !ok && out.contains("migrates to 'nowhere', which is not in this layout"),
        "{out}"
    );
    let mut bad = small.clone();
    bad["name"] = "Default".into();
    let (ok, out) = d.api(&["layout_set", &bad.to_string()]);
    assert!(!ok && out.contains("is built in"), "{out}");
    let (ok, out) = d.api(&["layout_set", "{\"name\": 1}"]);
    assert!(!ok && out.contains("not a layout"), "{out}");

    d.api_ok(&["layout_set", &small.to_string()]);
    let r = d.api_ok(&[
        "setup",
        "--repositories",
        &format!("small:Small:{codename}"),
        "--update",
    ]);
    assert!(r.contains("repository   small"), "{r}");
    // Created and published, but not active until staff says so (pca).
    let label = |d: &Daemon| {
        let all = json(&d.api_ok(&["config_objects", "--kind", "repository"]));
        all["repository"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["identity"] == "small")
            .unwrap()["label"]
            .clone()
    };
    assert_eq!(label(&d), "Prepared (-)");
    d.api_ok(&["config_action", "repository", "small", "pca"]);
    assert_eq!(label(&d), "Active (C)");
    let (code, _, _) = d.get(
        &format!("/repositories/small/dists/{codename}-small-unstable/InRelease"),
        &[],
    );
    assert_eq!(code, 200);
    let (code, _, _) = d.get(
        &format!("/repositories/small/dists/{codename}-small-testing/InRelease"),
        &[],
    );
    assert_eq!(code, 404, "the layout has no testing suite");
    // Build options per distribution.
    let (ok, out) = d.api(&[
        "distribution_set",
        &codename,
        "lintian_mode",
        "--value",
        "sometimes",
    ]);
    assert!(!ok && out.contains("lintian_mode 'sometimes'"), "{out}");
    let (ok, out) = d.api(&["distribution_set", &codename, "colour", "--value", "x"]);
    assert!(!ok && out.contains("'colour' cannot be set"), "{out}");
    let (ok, out) = d.api(&[
        "distribution_set",
        &codename,
        "chroot_setup_script",
        "--value",
        "echo no shebang",
    ]);
    assert!(!ok && out.contains("must start with a '#!' line"), "{out}");
    let (ok, out) = d.api(&[
        "distribution_set",
        &codename,
        "add_depends",
        "--value",
        "a\nb",
    ]);
    assert!(!ok && out.contains("is not one dependency"), "{out}");
    let (ok, out) = d.api(&["distribution_set", "nosuch", "lintian_mode"]);
    assert!(!ok && out.contains("No distribution 'nosuch'"), "{out}");
    d.api_ok(&[
        "distribution_set",
        &codename,
        "lintian_mode",
        "--value",
        "warnfail",
    ]);
    d.api_ok(&[
        "distribution_set",
        &codename,
        "deb_build_options",
        "--value",
        "nocheck",
        "--value",
        "noddebs",
    ]);
    let all = json(&d.api_ok(&["distributions"]));
    let dist = &all[0];
    assert_eq!(dist["build"]["lintian_mode"], "warnfail", "{all}");
    assert_eq!(
        dist["build"]["deb_build_options"],
        serde_json::json!(["nocheck", "noddebs"]),
        "{all}"
    );

    // In use now: it cannot change.
    let (ok, out) = d.api(&["layout_set", &small.to_string()]);
    assert!(
        !ok && out.contains("is used by repositories small"),
        "{out}"
    );
}

/// The Ubuntu keyring package from the Ubuntu archive itself (Debian 12's mirror has none):
/// its `ubuntu-archive-keyring.gpg`, or `None` when archive.ubuntu.com cannot be reached.
fn ubuntu_archive_keyring(work: &Path) -> Option<Vec<u8>> {
    use mbd::config::Fetch;
    let http = mbd::config::Http::default();
    let base = "http://archive.ubuntu.com/ubuntu/";
    let (code, gz) = http
        .get(&format!("{base}dists/noble/main/binary-amd64/Packages.gz"))
        .ok()?;
    assert_eq!(code, 200);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    let stanza = text
        .split("\n\n")
        .find(|s| s.starts_with("Package: ubuntu-keyring\n"))
        .expect("noble has ubuntu-keyring");
    let filename = stanza
        .lines()
        .find_map(|l| l.strip_prefix("Filename: "))
        .unwrap();
    let (code, deb) = http.get(&format!("{base}{filename}")).unwrap();
    assert_eq!(code, 200);
    let path = work.join("ubuntu-keyring.deb");
    std::fs::write(&path, deb).unwrap();
    let out = work.join("x");
    let (ok, log) = crate::util::run(
        std::process::Command::new("dpkg-deb")
            .arg("-x")
            .arg(&path)
            .arg(&out),
    );
    assert!(ok, "{log}");
    Some(std::fs::read(out.join("usr/share/keyrings/ubuntu-archive-keyring.gpg")).unwrap())
}

#[test]
fn setup_from_the_ubuntu_origin_checks_noble_against_the_real_archive() {
    let dir = tempfile::tempdir().unwrap();
    let Some(keyring) = ubuntu_archive_keyring(dir.path()) else {
        eprintln!("archive.ubuntu.com unreachable: Ubuntu setup not tested");
        return;
    };
    let home = dir.path().join("home");
    let d = Daemon::start_with(&home, &["--no-default-setup", "--no-default-chroot"]);
    let args = [
        "--from-origins",
        "Ubuntu",
        "--archives",
        "http://archive.ubuntu.com/ubuntu/",
        "--sources",
        "noble",
        "--distributions-from-sources",
        "--repositories-from-distributions",
        "test",
        "--update",
        "--pca",
    ];
    // The host has no Ubuntu keyring: the key cannot be found, the source fails saying so, and
    // nothing is built on it.
    let r = report(&d, &args);
    let e = entry(&r, "source", "noble");
    assert_eq!(e["status"], "failed", "{r}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("key 871920D1991BC93C is in none of the keyrings"),
        "{r}"
    );
    assert_eq!(
        entry(&r, "distribution", "noble")["status"],
        "waiting",
        "{r}"
    );
    // The keyring in the home's etc/keyrings: the same setup checks noble against the real
    // InRelease and the Ubuntu key, with its security and backports sources.
    std::fs::create_dir_all(home.join("etc/keyrings")).unwrap();
    std::fs::write(
        home.join("etc/keyrings/ubuntu-archive-keyring.gpg"),
        keyring,
    )
    .unwrap();
    let r = report(&d, &args);
    for id in ["noble", "noble-security", "noble-backports"] {
        assert_eq!(entry(&r, "source", id)["status"], "active", "{id}: {r}");
    }
    let all = sources(&d);
    let s = source(&all, "noble");
    assert_eq!(s["label"], "Active (C)", "{s}");
    assert_eq!(s["origin"], "Ubuntu", "{s}");
    assert_eq!(s["codeversion"], "2404", "{s}");
    let dists = json(&d.api_ok(&["distributions"]));
    let noble = &dists[0];
    assert_eq!(noble["codename"], "noble", "{dists}");
    assert_eq!(
        noble["build"]["deb_build_options"],
        serde_json::json!(["noddebs"]),
        "{dists}"
    );
    let extras = noble["extra_sources"].to_string();
    assert!(
        extras.contains("noble-security") && extras.contains("noble-backports"),
        "{dists}"
    );
    assert_eq!(entry(&r, "repository", "test")["status"], "active", "{r}");
    let (code, _, _) = d.get(
        "/repositories/test/dists/noble-test-unstable/InRelease",
        &[],
    );
    assert_eq!(code, 200);
}
