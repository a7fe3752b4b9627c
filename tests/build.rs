//! Builds end to end, with no fakes (trixie, bookworm and sid, on amd64 and i386): a new home, `setup` with the Debian preset (or, for the
//! dedicated user, the daemon's default setup), the chroot it prepares (mmdebstrap, schroot), the stock `dput`, real `sbuild` runs, and `apt-get install`
//! of what was built from the daemon's HTTP server.
//!
//! It needs root (chroots, schroot) and the host's Debian mirror. Without root it says so and
//! passes, unless `MBD_REQUIRE_BUILDS=1` (set by `.ci/run`) demands it.
//!
//! It also measures mbd's overhead around sbuild for the fixture package: the time from the
//! upload's ACCEPTED to its INSTALLED event, minus the time between BUILDING and BUILT (event
//! ids are nanosecond timestamps). `docs/PERFORMANCE.md` records the numbers.

use crate::daemon::{Daemon, changes_in, generated, generated_with, json};
use crate::util::{Apt, fixtures};
use std::path::Path;
use std::time::{Duration, Instant};

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// Waits for an event of `kind` about `source`; panics on FAILED (with the build log).
pub(crate) fn wait_for(d: &Daemon, source: &str, kind: &str, limit: Duration) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let events = json(&d.api_ok(&["events", "--source", source]));
        for e in events.as_array().unwrap() {
            if e["kind"] == kind {
                return e.clone();
            }
            if e["kind"] == "FAILED" && kind != "FAILED" || e["kind"] == "REJECTED" {
                let builds = d.api_ok(&["builds", "--source", source]);
                // The end of each build log says why.
                let mut logs = String::new();
                for (arch, b) in json(&builds)[0]["builds"].as_object().into_iter().flatten() {
                    let path = b["log"].as_str().unwrap_or_default();
                    let (_, _, body) = d.get(path.trim_start_matches(&d.url), &[]);
                    let text = String::from_utf8_lossy(&body);
                    let tail: Vec<&str> = text.lines().rev().take(80).collect();
                    logs.push_str(&format!("--- {arch}\n"));
                    for l in tail.into_iter().rev() {
                        logs.push_str(l);
                        logs.push('\n');
                    }
                }
                panic!("{source}: {e}\n{builds}\n{logs}\n{}", d.log());
            }
        }
        assert!(
            started.elapsed() < limit,
            "{source}: no {kind} within {limit:?}: {events}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The build log a build's `log` URL names, as the daemon serves it (it must answer 200).
fn served_log(d: &Daemon, build: &serde_json::Value) -> String {
    let path = build["log"].as_str().unwrap_or_default();
    let (code, _, body) = d.get(path.trim_start_matches(&d.url), &[]);
    assert_eq!(code, 200, "{path}");
    String::from_utf8_lossy(&body).into_owned()
}

/// Waits for an event of `kind` about one version of `source`; panics on FAILED or REJECTED.
fn wait_for_version(d: &Daemon, source: &str, version: &str, kind: &str, limit: Duration) {
    let started = Instant::now();
    loop {
        let events = json(&d.api_ok(&["events", "--source", source]));
        for e in events.as_array().unwrap() {
            if e["version"] != version {
                continue;
            }
            if e["kind"] == kind {
                return;
            }
            if e["kind"] == "FAILED" || e["kind"] == "REJECTED" {
                let builds = d.api_ok(&["builds", "--source", source]);
                panic!("{source} {version}: {e}\n{builds}\n{}", d.log());
            }
        }
        assert!(
            started.elapsed() < limit,
            "{source} {version}: no {kind} within {limit:?}: {events}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub(crate) fn nanos(event: &serde_json::Value) -> u128 {
    event["id"].as_str().unwrap().parse().unwrap()
}

/// dput (http method) of a `.changes` with the daemon's own dput.cf section.
pub(crate) fn dput(d: &Daemon, work: &Path, changes: &Path) {
    let conf = d.api_ok(&["dput_conf"]);
    let section = conf
        .lines()
        .next()
        .unwrap()
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let cf = work.join("dput.cf");
    std::fs::write(
        &cf,
        conf.replacen(
            "login    = anonymous\n",
            "login    = anonymous\nallow_unsigned_uploads = 1\n",
            1,
        ),
    )
    .unwrap();
    let (ok, out) = crate::util::run(
        std::process::Command::new("dput")
            .args(["-u", "-f", "-c"])
            .arg(&cf)
            .arg(&section)
            .arg(changes),
    );
    assert!(ok, "dput: {out}");
}

/// Both tests make the chroot `mbd-bookworm-amd64`: one at a time.
pub(crate) static CHROOT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Whether the build tests can run here (as root); false means skipped, unless required.
pub(crate) fn can_build() -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("MBD_REQUIRE_BUILDS").is_err(),
        "MBD_REQUIRE_BUILDS is set, but builds need root"
    );
    eprintln!("skipped: building needs root (chroots and schroot)");
    false
}

/// Whether the host's Debian mirror contradicts itself for an index a chroot needs: the size
/// its `InRelease` lists against the size it serves. Such a mirror (mid-sync, or a stale
/// cache in front of it) fails every `apt-get update` of that suite, mmdebstrap's included,
/// whatever mbd does; the contradiction, if so.
fn mirror_fault(base: &str, suite: &str, index: &str) -> Option<String> {
    let curl = |args: &[&str]| {
        std::process::Command::new("curl")
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let release = curl(&["-sf", &format!("{base}/dists/{suite}/InRelease")])?;
    let listed: u64 = release.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        (w.len() == 3 && w[2] == index)
            .then(|| w[1].parse().ok())
            .flatten()
    })?;
    let head = curl(&["-sfI", &format!("{base}/dists/{suite}/{index}")])?;
    let served: u64 = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-length:")
            .and_then(|v| v.trim().parse().ok())
    })?;
    (listed != served).then(|| {
        format!("{base}/dists/{suite}/{index}: its InRelease lists {listed} bytes, the mirror serves {served}")
    })
}

/// Waits until the daemon's first chroot is ready; its id.
pub(crate) fn wait_for_chroot(d: &Daemon, home: &Path, started: Instant) -> String {
    let limit = Duration::from_secs(900);
    loop {
        let list = json(&d.api_ok(&["chroots"]));
        let c = list[0].clone();
        assert!(!c.is_null(), "no default chroot: {list}\n{}", d.log());
        let id = format!(
            "{}-{}",
            c["codename"].as_str().unwrap(),
            c["architecture"].as_str().unwrap()
        );
        if c["state"] == "ready" {
            eprintln!(
                "chroot {id} ready after {:.0} s",
                started.elapsed().as_secs_f64()
            );
            // The fixtures are versioned for bookworm (~test12+1).
            assert_eq!(
                c["codename"], "bookworm",
                "the fixtures are built for bookworm"
            );
            return id;
        }
        if c["state"] == "failed" {
            let log = home.join("var/chroots").join(&id).join("prepare.log");
            panic!(
                "{c}\n{}\n{}",
                std::fs::read_to_string(log).unwrap_or_default(),
                d.log()
            );
        }
        assert!(started.elapsed() < limit, "chroot not ready: {c}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Waits until every chroot the daemon has (at least `n`) is ready; their ids.
fn wait_for_chroots(d: &Daemon, home: &Path, started: Instant, n: usize) -> Vec<String> {
    let limit = Duration::from_secs(1500);
    loop {
        let list = json(&d.api_ok(&["chroots"]));
        let all = list.as_array().cloned().unwrap_or_default();
        let id = |c: &serde_json::Value| {
            format!(
                "{}-{}",
                c["codename"].as_str().unwrap(),
                c["architecture"].as_str().unwrap()
            )
        };
        if let Some(c) = all.iter().find(|c| c["state"] == "failed") {
            let log = home.join("var/chroots").join(id(c)).join("prepare.log");
            panic!(
                "{c}\n{}\n{}",
                std::fs::read_to_string(log).unwrap_or_default(),
                d.log()
            );
        }
        if all.len() >= n && all.iter().all(|c| c["state"] == "ready") {
            eprintln!(
                "{n} chroots ready after {:.0} s",
                started.elapsed().as_secs_f64()
            );
            return all.iter().map(id).collect();
        }
        assert!(started.elapsed() < limit, "chroots not ready: {list}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Copies the source uploads of mbd-hello 1.0-1 and mbd-greeter from the fixtures.
pub(crate) fn copy_fixture_uploads(work: &Path) {
    for f in crate::util::files_ending(&fixtures().join("pkg"), "") {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let wanted = (name.starts_with("mbd-hello_1.0-1~test12+1")
            && (name.contains("_source.")
                || name.ends_with(".dsc")
                || name.ends_with(".debian.tar.xz")))
            || name == "mbd-hello_1.0.orig.tar.gz"
            || (name.starts_with("mbd-greeter_1.0~test12+1")
                && (name.contains("_source.")
                    || name.ends_with(".dsc")
                    || name.ends_with(".tar.xz")));
        if wanted {
            std::fs::copy(&f, work.join(&name)).unwrap();
        }
    }
}

/// Runs a shell command for the test's setup; panics with its output if it fails.
fn sh(cmd: &str) {
    let (ok, out) = crate::util::run(std::process::Command::new("sh").args(["-c", cmd]));
    assert!(ok, "{cmd}: {out}");
}

/// Takes the test's sudo rules away again.
struct SudoersFile(std::path::PathBuf);

impl Drop for SudoersFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_dedicated_user_builds_with_the_documented_sudo_rules() {
    if !can_build() {
        return;
    }
    let _one = CHROOT.lock().unwrap_or_else(|e| e.into_inner());
    const USER: &str = "mbd-test-builder";
    sh(&format!(
        "id {USER} >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin {USER}"
    ));
    sh(&format!("sbuild-adduser {USER} >/dev/null"));
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    sh(&format!(
        "chmod 755 {d} && chown {USER}: {h}",
        d = dir.path().display(),
        h = home.display()
    ));
    // Exactly the rules `mbd sudoers` prints.
    let rules = crate::util::mbd_ok(&home, &["sudoers", "--user", USER]);
    let file = SudoersFile(std::path::PathBuf::from("/etc/sudoers.d/mbd-test-builder"));
    std::fs::write(&file.0, &rules).unwrap();
    sh(&format!(
        "chmod 0440 {0} && visudo -cf {0}",
        file.0.display()
    ));

    let started = Instant::now();
    let d = Daemon::start_as(&home, USER);
    let chroot_id = wait_for_chroot(&d, &home, started);
    // The daemon's files are the user's; the chroot tree is root's.
    use std::os::unix::fs::MetadataExt;
    assert_ne!(
        std::fs::metadata(home.join("var")).unwrap().uid(),
        0,
        "the daemon ran as root"
    );
    let tree = home.join("var/chroots").join(&chroot_id).join("source");
    assert_eq!(std::fs::metadata(tree.join("usr/bin")).unwrap().uid(), 0);

    copy_fixture_uploads(&work);
    dput(
        &d,
        &work,
        &work.join("mbd-hello_1.0-1~test12+1_source.changes"),
    );
    wait_for(&d, "mbd-hello", "INSTALLED", Duration::from_secs(600));
    d.api_ok(&["chroot_remove", &chroot_id]);
    assert!(!home.join("var/chroots").join(&chroot_id).exists());
    assert!(
        !Path::new("/etc/schroot/chroot.d")
            .join(format!(
                "{}.conf",
                mbd::build::chroot::schroot_name(&home, &chroot_id)
            ))
            .exists()
    );
    eprintln!(
        "builds as {USER}: {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_source_upload_ends_as_installed_binaries_built_by_sbuild() {
    if !can_build() {
        return;
    }
    let _one = CHROOT.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let started = Instant::now();
    // port_ext below fetches from this daemon, on loopback.
    crate::daemon::allow_private_fetches(&home);
    // A new home with nothing but a key, then the README's setup: the Debian preset
    // restricted to this machine's codename and apt mirrors — sources checked against the
    // real archive and keys, distribution and repository `test`, the chroot prepared.
    let d = Daemon::start_with(&home, &["--no-default-setup"]);
    let (codename, _) = mbd::settings::host_distribution();
    // One architecture here (builds for amd64 and i386: the next test).
    let dist = format!("{codename}:amd64");
    let report = d.api_ok(&[
        "setup",
        "--preset",
        "Debian",
        "--archives-from-apt-sources",
        "--sources",
        &codename,
        "--distributions",
        &dist,
    ]);
    for want in [
        format!("source       {codename:<40} active [created, pca]"),
        format!("distribution {codename:<40} exists [created]"),
        format!("repository   {:<40} active [created, pca]", "test"),
        format!("chroot       {codename}-"),
    ] {
        assert!(
            report.contains(&want),
            "'{want}' not in the setup report:\n{report}"
        );
    }
    let chroot_id = wait_for_chroot(&d, &home, started);
    // The chroot is made with the security source too (the host's apt sources name it).
    let chroots = json(&d.api_ok(&["chroots"]));
    let security = chroots[0]["extra_sources"][0].as_str().unwrap_or_default();
    assert!(
        security.starts_with(&format!(
            "deb http://deb.debian.org/debian-security/ {codename}-security main"
        )),
        "{chroots}"
    );
    let conf = Path::new("/etc/schroot/chroot.d").join(format!(
        "{}.conf",
        mbd::build::chroot::schroot_name(&home, &chroot_id)
    ));
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("union-type=overlay\n"), "{text}");
    let (code, _, body) = d.get(&format!("/chroot-logs/{chroot_id}"), &[]);
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("mmdebstrap"));

    // 1. mbd-hello from the fixtures: built, installed, installable with apt.
    copy_fixture_uploads(&work);
    dput(
        &d,
        &work,
        &work.join("mbd-hello_1.0-1~test12+1_source.changes"),
    );
    let limit = Duration::from_secs(600);
    let accepted = wait_for(&d, "mbd-hello", "ACCEPTED", limit);
    let building = wait_for(&d, "mbd-hello", "BUILDING", limit);
    let built = wait_for(&d, "mbd-hello", "BUILT", limit);
    let installed = wait_for(&d, "mbd-hello", "INSTALLED", limit);
    let total = (nanos(&installed) - nanos(&accepted)) as f64 / 1e9;
    let sbuild = (nanos(&built) - nanos(&building)) as f64 / 1e9;
    eprintln!(
        "mbd-hello: accepted → installed {total:.2} s, of which sbuild {sbuild:.2} s; mbd's overhead {:.2} s ({:.1}% of sbuild's time)",
        total - sbuild,
        100.0 * (total - sbuild) / sbuild
    );
    let builds = json(&d.api_ok(&["builds", "--source", "mbd-hello"]));
    let b = &builds[0]["builds"]["amd64"];
    assert_eq!(b["state"], "built", "{builds}");
    assert_eq!(b["status"], "successful");
    assert_eq!(builds[0]["state"], "installed");
    // The log is served.
    assert!(served_log(&d, b).contains("Status: successful"));
    // The builds page shows the chroot and the build.
    let (code, _, page) = d.get("/ui/builds", &[]);
    let page = String::from_utf8_lossy(&page);
    assert_eq!(code, 200);
    for want in [
        &format!("{chroot_id}</td>"),
        "mbd-hello</a> 1.0-1~test12+1",
        "amd64: built (successful)",
        "<td>installed</td>",
    ] {
        assert!(
            page.contains(want),
            "'{want}' not on the builds page:\n{page}"
        );
    }
    let status = json(&d.api_ok(&["status"]));
    assert_eq!(status["load"], 0.0, "{status}");
    assert_eq!(status["chroots"][0]["state"], "ready", "{status}");

    let sources = d.api_ok(&[
        "sources_list",
        "--format",
        "sources",
        "--signed-by",
        "inline",
        "--suites",
        "unstable",
    ]);
    let apt = Apt::new(&sources);
    apt.update();
    let (ok, out) = apt.get(&["install", "-y", "mbd-hello", "mbd-hello-doc"]);
    assert!(ok, "apt-get install: {out}");
    assert!(apt.root().join("usr/bin/mbd-hello").exists(), "{out}");

    // 2. mbd-greeter build-depends on mbd-hello, which only our repository has.
    dput(
        &d,
        &work,
        &work.join("mbd-greeter_1.0~test12+1_source.changes"),
    );
    wait_for(&d, "mbd-greeter", "INSTALLED", limit);
    apt.update();
    let (ok, out) = apt.get(&["install", "-y", "mbd-greeter"]);
    assert!(ok, "apt-get install: {out}");

    // 3. A package that fails to build ends FAILED, with its log served.
    let failing = generated(dir.path(), 1, "--failing");
    dput(&d, &work, &changes_in(&failing[0]));
    let failed = wait_for(&d, "mbd-load-1", "FAILED", limit);
    let builds = json(&d.api_ok(&["builds", "--source", "mbd-load-1"]));
    assert_eq!(builds[0]["state"], "failed", "{builds}");
    let b = &builds[0]["builds"]["amd64"];
    assert_eq!(b["state"], "failed", "{builds}");
    assert!(
        failed["reason"].as_str().unwrap().contains("amd64"),
        "{failed}"
    );
    let log = served_log(&d, b);
    assert!(
        log.contains("mbd-load-1 fails to build on purpose"),
        "{log}"
    );
    assert!(log.contains("Status: attempted"), "{log}");

    // 3b. A build-dependency nobody has: a dep-wait, naming it in the build's status and in
    // the upload's FAILED event.
    let waiting = generated_with(
        dir.path(),
        1,
        "--source",
        &[
            ("MBD_GEN_NAME", "mbd-depwait"),
            ("MBD_GEN_BUILD_DEPENDS", "mbd-missing-dev (>= 2.0)"),
        ],
    );
    dput(&d, &work, &changes_in(&waiting[0]));
    let failed = wait_for(&d, "mbd-depwait-1", "FAILED", limit);
    let builds = json(&d.api_ok(&["builds", "--source", "mbd-depwait-1"]));
    let b = &builds[0]["builds"]["amd64"];
    assert_eq!(b["state"], "dep-wait", "{builds}");
    assert_eq!(b["fail_stage"], "install-deps", "{builds}");
    assert!(
        b["status"]
            .as_str()
            .unwrap()
            .contains("not installable: mbd-missing-dev (>= 2.0)"),
        "{builds}"
    );
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("mbd-missing-dev (>= 2.0)"),
        "{failed}"
    );

    // 4. Lintian on the host, as the upload asks (lintian-mode=errfail): the package builds,
    // lintian finds errors (no copyright file), and the build fails at stage lintian.
    let linted = generated_with(
        dir.path(),
        1,
        "--source",
        &[
            ("MBD_GEN_NAME", "mbd-lint"),
            ("MBD_GEN_OPTION", "lintian-mode=errfail"),
        ],
    );
    dput(&d, &work, &changes_in(&linted[0]));
    let failed = wait_for(&d, "mbd-lint-1", "FAILED", limit);
    assert!(
        failed["reason"].as_str().unwrap().contains("amd64"),
        "{failed}"
    );
    let builds = json(&d.api_ok(&["builds", "--source", "mbd-lint-1"]));
    let b = &builds[0]["builds"]["amd64"];
    assert_eq!(b["fail_stage"], "lintian", "{builds}");
    let log = served_log(&d, b);
    assert!(log.contains("Status: successful"), "{log}");
    assert!(log.contains("E: mbd-lint-1"), "{log}");

    // 4b. autopkgtest in a session of the build's chroot: errfail for the distribution; a
    // passing test installs, a failing one fails the build at stage autopkgtest, and an
    // upload's `autopkgtest-mode=ignore` installs despite it. The result is in the log and
    // the build's status.
    d.api_ok(&[
        "distribution_set",
        "bookworm",
        "autopkgtest_mode",
        "--value",
        "errfail",
    ]);
    let tested = |name: &str, test: &str, option: &str| {
        let mut env = vec![("MBD_GEN_NAME", name), ("MBD_GEN_TEST", test)];
        if !option.is_empty() {
            env.push(("MBD_GEN_OPTION", option));
        }
        let upload = generated_with(dir.path(), 1, "--source", &env);
        dput(&d, &work, &changes_in(&upload[0]));
        format!("{name}-1")
    };
    let autopkgtest_build = |source: &str| {
        let builds = json(&d.api_ok(&["builds", "--source", source]));
        let b = builds[0]["builds"]["amd64"].clone();
        (b.clone(), served_log(&d, &b))
    };
    let passing = tested("mbd-apt-pass", "pass", "");
    wait_for(&d, &passing, "INSTALLED", limit);
    let (b, log) = autopkgtest_build(&passing);
    assert_eq!(b["status"], "successful; autopkgtest: pass", "{b}");
    assert!(
        log.contains("payload of mbd-apt-pass-1 is installed"),
        "{log}"
    );
    assert!(log.contains("Autopkgtest: pass"), "{log}");
    let failing = tested("mbd-apt-fail", "fail", "");
    let failed = wait_for(&d, &failing, "FAILED", limit);
    let (b, log) = autopkgtest_build(&failing);
    assert_eq!(b["fail_stage"], "autopkgtest", "{b}");
    assert!(
        failed["reason"].as_str().unwrap().contains("autopkgtest"),
        "{failed}"
    );
    assert!(log.contains("this test fails on purpose"), "{log}");
    assert!(log.contains("Autopkgtest: fail"), "{log}");
    let ignored = tested("mbd-apt-ignored", "fail", "autopkgtest-mode=ignore");
    wait_for(&d, &ignored, "INSTALLED", limit);
    let (b, _) = autopkgtest_build(&ignored);
    assert_eq!(b["status"], "successful; autopkgtest: fail", "{b}");
    d.api_ok(&["distribution_set", "bookworm", "autopkgtest_mode"]);

    // 5. A port of mbd-hello to another repository's distribution (repository dev, signed
    // uploads only): a new version by mini-buildd's rules, signed by the archive key, built
    // and installed there.
    let r = d.api_ok(&[
        "setup",
        "--repositories",
        "dev:Default:bookworm",
        "--update",
        "--pca",
    ]);
    assert!(r.contains("repository   dev"), "{r}");
    let ported = json(&d.api_ok(&[
        "port",
        "mbd-hello",
        "bookworm-test-unstable",
        "bookworm-dev-unstable",
    ]));
    assert_eq!(ported["version"], "1.0-1~dev12+1", "{ported}");
    wait_for_version(&d, "mbd-hello", "1.0-1~dev12+1", "INSTALLED", limit);
    let ls = json(&d.api_ok(&["ls", "mbd-hello"]));
    assert_eq!(
        ls["dev"]["bookworm-dev-unstable"]["version"], "1.0-1~dev12+1",
        "{ls}"
    );

    // An external port: a .dsc by URL (here our own published one), with the experimental
    // suite's appendix. It is signed by the fixtures' uploader key, which counts only once
    // staff has activated an uploader with it.
    let dsc_url = format!(
        "{}/repositories/test/pool/main/m/mbd-hello/mbd-hello_1.0-1~test12+1.dsc",
        d.url
    );
    let (ok, out) = d.api(&["port_ext", &dsc_url, "bookworm-test-experimental"]);
    assert!(
        !ok && out.contains("port_ext: ") && out.contains("signed by unknown key"),
        "{out}"
    );
    let key = std::fs::read_to_string(fixtures().join("keys/uploader.asc")).unwrap();
    d.api_ok(&["set_user_key", &key]);
    d.api_ok(&["uploader_activate", "admin", "--repositories", "test"]);
    let ported = json(&d.api_ok(&["port_ext", &dsc_url, "bookworm-test-experimental"]));
    assert_eq!(ported["version"], "1.0-1~test12+1~test12+0", "{ported}");
    wait_for_version(
        &d,
        "mbd-hello",
        "1.0-1~test12+1~test12+0",
        "INSTALLED",
        limit,
    );

    // An upload asking for auto-ports is ported there once it is installed.
    let auto = generated_with(
        dir.path(),
        1,
        "--source",
        &[
            ("MBD_GEN_NAME", "mbd-auto"),
            ("MBD_GEN_OPTION", "auto-ports=bookworm-dev-unstable"),
        ],
    );
    dput(&d, &work, &changes_in(&auto[0]));
    wait_for_version(&d, "mbd-auto-1", "1.0~test12+1", "INSTALLED", limit);
    wait_for_version(&d, "mbd-auto-1", "1.0~dev12+1", "INSTALLED", limit);

    // 6. The keyring package: built through the normal path, migrated on to stable; a client
    // that installs it trusts the repository with no key step of its own.
    let uploads = json(&d.api_ok(&["keyring_packages"]));
    let keyring = uploads[0]["source"].as_str().unwrap().to_string();
    for u in uploads.as_array().unwrap() {
        wait_for_version(
            &d,
            &keyring,
            u["version"].as_str().unwrap(),
            "INSTALLED",
            limit,
        );
    }
    let test_version = uploads
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["distribution"] == "bookworm-test-unstable")
        .unwrap()["version"]
        .as_str()
        .unwrap()
        .to_string();
    let started_migration = Instant::now();
    loop {
        let ls = json(&d.api_ok(&["ls", &keyring]));
        if ls["test"]["bookworm-test-stable"]["version"] == test_version.as_str() {
            break;
        }
        assert!(
            started_migration.elapsed() < Duration::from_secs(60),
            "not migrated to stable: {ls}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let plain = |trusted: bool| {
        format!(
            "Types: deb\nURIs: {}/repositories/test/\nSuites: bookworm-test-stable\nComponents: main\n{}",
            d.url,
            if trusted { "Trusted: yes\n" } else { "" }
        )
    };
    let client = Apt::new(&plain(false));
    let (ok, out) = client.get(&["--error-on=any", "update"]);
    assert!(!ok, "an unknown key must not be trusted:\n{out}");
    std::fs::write(
        client.root().join("etc/apt/sources.list.d/mbd.sources"),
        plain(true),
    )
    .unwrap();
    client.update();
    let (ok, out) = client.get(&["install", "-y", &keyring]);
    assert!(ok, "apt-get install {keyring}: {out}");
    let root = client.root();
    assert!(
        root.join(format!("etc/apt/trusted.gpg.d/{keyring}.gpg"))
            .exists()
    );
    let sources = std::fs::read_to_string(root.join(format!(
        "usr/share/{keyring}/sources.list.d/bookworm/test_unstable.sources"
    )))
    .unwrap();
    assert!(
        sources.contains(&format!("Signed-By: /usr/share/keyrings/{keyring}.gpg")),
        "{sources}"
    );
    assert!(
        root.join(format!("usr/share/keyrings/{keyring}.gpg"))
            .exists()
    );
    std::fs::write(
        root.join("etc/apt/sources.list.d/mbd.sources"),
        plain(false),
    )
    .unwrap();
    client.update();
    // The same by `mbd bootstrap-apt` (trust on first use) in a fresh apt: the keyring
    // package installed, the temporary source gone, apt updating with no warning.
    let fresh = Apt::new("");
    std::fs::remove_file(fresh.root().join("etc/apt/sources.list.d/mbd.sources")).unwrap();
    let (ok, out) = crate::util::run(
        std::process::Command::new(env!("CARGO_BIN_EXE_mbd"))
            .args(["bootstrap-apt", &d.url])
            .env("APT_CONFIG", fresh.root().join("apt.conf")),
    );
    assert!(ok && out.contains(&format!("{keyring} installed")), "{out}");
    assert!(
        fresh
            .root()
            .join(format!("etc/apt/trusted.gpg.d/{keyring}.gpg"))
            .exists()
    );
    let left: Vec<_> = std::fs::read_dir(fresh.root().join("etc/apt/sources.list.d"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "temporary sources left: {left:?}");
    fresh.update();

    // The chroot on the status model: deactivated, it starts no builds; activated, the
    // waiting build runs.
    let label = |d: &Daemon| json(&d.api_ok(&["chroots"]))[0]["label"].clone();
    assert_eq!(label(&d), "Active (C)");
    d.api_ok(&["config_action", "chroot", &chroot_id, "deactivate"]);
    assert_eq!(label(&d), "Prepared (C)");
    // The distribution's build settings reach sbuild: an extra build-dependency (from our
    // own repository), a chroot setup script, an .sbuildrc snippet, and the backports source
    // the setup gave the distribution, pinned at its priority.
    let dists = json(&d.api_ok(&["distributions"]));
    let extras = dists[0]["extra_sources"].to_string();
    assert!(
        extras.contains(&format!("\"{codename}-backports\"")),
        "{dists}"
    );
    d.api_ok(&[
        "distribution_set",
        &codename,
        "add_depends",
        "--value",
        "mbd-hello (>= 1.0)",
    ]);
    d.api_ok(&[
        "distribution_set",
        &codename,
        "chroot_setup_script",
        "--value",
        "#!/bin/sh -e\necho \"mbd setup script in $(cat /etc/debian_version | cut -d. -f1)\"\n",
    ]);
    d.api_ok(&[
        "distribution_set",
        &codename,
        "sbuildrc_snippet",
        "--value",
        "$build_environment = { 'MBD_LIBDIR' => '%LIBDIR%' };",
    ]);
    let waiting = generated_with(dir.path(), 1, "--source", &[("MBD_GEN_NAME", "mbd-wait")]);
    dput(&d, &work, &changes_in(&waiting[0]));
    wait_for_version(&d, "mbd-wait-1", "1.0~test12+1", "PACKAGING", limit);
    std::thread::sleep(Duration::from_secs(5));
    let builds = json(&d.api_ok(&["builds", "--source", "mbd-wait-1"]));
    assert_eq!(
        builds[0]["builds"]["amd64"]["state"], "needs-build",
        "{builds}"
    );
    let (ok, out) = d.api(&["config_action", "chroot", "nosuch-amd64", "activate"]);
    assert!(!ok, "{out}");
    d.api_ok(&["config_action", "chroot", &chroot_id, "activate"]);
    wait_for_version(&d, "mbd-wait-1", "1.0~test12+1", "INSTALLED", limit);
    let builds = json(&d.api_ok(&["builds", "--source", "mbd-wait-1"]));
    let log = served_log(&d, &builds[0]["builds"]["amd64"]);
    let arch = chroot_id.rsplit('-').next().unwrap();
    for want in [
        "mbd setup script in 12".to_string(),
        format!("Pin: release n={codename}-backports\nPin-Priority: 1\n"),
        format!("{codename}-backports"),
        "Unpacking mbd-hello ".to_string(),
        format!(
            "MBD_LIBDIR={}",
            home.join("var/chroots-libdir")
                .join(&codename)
                .join(arch)
                .display()
        ),
    ] {
        assert!(log.contains(&want), "'{want}' not in the build log:\n{log}");
    }

    // A new revision uploaded as `dpkg-buildpackage -S` leaves it, without the orig tarball:
    // built from the pool copy and installed.
    let revisions = crate::daemon::revisions(dir.path());
    dput(
        &d,
        &work,
        &revisions.join("without-orig/mbd-hello_1.0-2~test12+1_source.changes"),
    );
    wait_for_version(&d, "mbd-hello", "1.0-2~test12+1", "INSTALLED", limit);
    apt.update();
    let (ok, out) = apt.get(&["install", "-y", "mbd-hello=1.0-2~test12+1"]);
    assert!(ok, "apt-get install: {out}");

    // The test packages through the normal path, to every repository's experimental
    // distribution: archall and cpp INSTALLED, ftbfs FAILED (--with-check waits and checks).
    let checked = json(&d.api_ok(&["test_packages", "--with-check"]));
    let mut results: Vec<(String, String, String)> = checked
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap().to_string();
            (field("distribution"), field("source"), field("result"))
        })
        .collect();
    results.sort();
    let dists: Vec<&String> = results.iter().map(|r| &r.0).step_by(3).collect();
    assert!(
        dists.contains(&&format!("{codename}-test-experimental")),
        "{checked}"
    );
    for (n, (dist, source, result)) in results.iter().enumerate() {
        let want = [
            ("mbd-test-archall", "INSTALLED"),
            ("mbd-test-cpp", "INSTALLED"),
            ("mbd-test-ftbfs", "FAILED"),
        ][n % 3];
        assert_eq!(
            (source.as_str(), result.as_str()),
            want,
            "{dist}: {checked}"
        );
        assert!(dist.ends_with("-experimental"), "{checked}");
    }
    let builds = json(&d.api_ok(&["builds", "--source", "mbd-test-cpp"]));
    let log = served_log(&d, &builds[0]["builds"]["amd64"]);
    assert!(
        log.contains("mbd-test-cpp works"),
        "the program's check is not in the log:\n{log}"
    );
    let (ok, out) = d.api(&["test_packages", "--sources", "mbd-test-nope"]);
    assert!(!ok && out.contains("no template 'mbd-test-nope'"), "{out}");

    // Removing the chroot takes its schroot configuration and files.
    d.api_ok(&["chroot_remove", &chroot_id]);
    assert!(!conf.exists());
    assert!(!home.join("var/chroots").join(&chroot_id).exists());
    eprintln!(
        "builds e2e: {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn uploads_build_on_amd64_and_i386_arch_all_once_and_an_optional_arch_may_fail_alone() {
    if !can_build() {
        return;
    }
    let i386 = std::process::Command::new("arch-test")
        .args(["-n", "i386"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        i386,
        "this amd64 host's kernel runs no i386 binaries (arch-test -n i386)"
    );
    let (codename, _) = mbd::settings::host_distribution();
    if let Some(fault) = mirror_fault(
        "http://deb.debian.org/debian-security",
        &format!("{codename}-security"),
        "main/binary-i386/Packages.xz",
    ) {
        eprintln!(
            "skipped: the host's mirror contradicts itself, so no i386 chroot with security updates can be made: {fault}"
        );
        return;
    }
    let _one = CHROOT.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let started = Instant::now();
    // The preset on the host's native architectures: amd64 and i386 (under linux32).
    let d = Daemon::start_with(&home, &["--no-default-setup"]);
    let report = d.api_ok(&[
        "setup",
        "--preset",
        "Debian",
        "--archives-from-apt-sources",
        "--sources",
        &codename,
    ]);
    for want in [
        format!("chroot       {codename}-amd64"),
        format!("chroot       {codename}-i386"),
    ] {
        assert!(report.contains(&want), "'{want}' not in:\n{report}");
    }
    let mut ids = wait_for_chroots(&d, &home, started, 2);
    ids.sort();
    assert_eq!(
        ids,
        [format!("{codename}-amd64"), format!("{codename}-i386")]
    );
    let conf = Path::new("/etc/schroot/chroot.d").join(format!(
        "{}.conf",
        mbd::build::chroot::schroot_name(&home, &format!("{codename}-i386"))
    ));
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("personality=linux32\n"), "{text}");

    // mbd-hello (Architecture: any) and mbd-hello-doc (all): built on both, -doc once.
    copy_fixture_uploads(&work);
    dput(
        &d,
        &work,
        &work.join("mbd-hello_1.0-1~test12+1_source.changes"),
    );
    wait_for(&d, "mbd-hello", "INSTALLED", Duration::from_secs(900));
    let builds = json(&d.api_ok(&["builds", "--source", "mbd-hello"]));
    let (amd64, i386) = (&builds[0]["builds"]["amd64"], &builds[0]["builds"]["i386"]);
    assert_eq!(
        (&amd64["state"], &i386["state"]),
        (&"built".into(), &"built".into()),
        "{builds}"
    );
    assert_eq!(
        (&amd64["arch_all"], &i386["arch_all"]),
        (&true.into(), &false.into()),
        "{builds}"
    );
    assert!(served_log(&d, i386).contains("Host Architecture: i386"));
    let pool = home.join("repositories/test/pool/main/m/mbd-hello");
    let mut debs: Vec<String> = std::fs::read_dir(&pool)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".deb"))
        .collect();
    debs.sort();
    assert_eq!(
        debs,
        [
            "mbd-hello-doc_1.0-1~test12+1_all.deb",
            "mbd-hello_1.0-1~test12+1_amd64.deb",
            "mbd-hello_1.0-1~test12+1_i386.deb",
        ],
        "{}",
        pool.display()
    );
    // apt for i386 sees the i386 build and the arch-all package.
    let dists =
        format!("/repositories/test/dists/{codename}-test-unstable/main/binary-i386/Packages");
    let (code, _, body) = d.get(&dists, &[]);
    assert_eq!(code, 200);
    let packages = String::from_utf8_lossy(&body);
    for want in [
        "Package: mbd-hello\n",
        "Architecture: i386\n",
        "Package: mbd-hello-doc\n",
        "Architecture: all\n",
    ] {
        assert!(
            packages.contains(want),
            "{want} not in {dists}:\n{packages}"
        );
    }

    // i386 made optional: a package that fails to build there only is installed from its
    // amd64 build, and its i386 failure is recorded.
    let (ok, out) = d.api(&[
        "distribution_set",
        &codename,
        "optional_architectures",
        "--value",
        "amd64",
        "--value",
        "i386",
    ]);
    assert!(!ok && out.contains("must stay mandatory"), "{out}");
    d.api_ok(&[
        "distribution_set",
        &codename,
        "optional_architectures",
        "--value",
        "i386",
    ]);
    let failing = generated_with(
        dir.path(),
        1,
        "--source",
        &[
            ("MBD_GEN_NAME", "mbd-i386fail"),
            ("MBD_GEN_FAIL_ON", "i386"),
        ],
    );
    dput(&d, &work, &changes_in(&failing[0]));
    // Its i386 build's FAILED event comes first; the upload still ends INSTALLED.
    let started = Instant::now();
    loop {
        let events = json(&d.api_ok(&["events", "--source", "mbd-i386fail-1"]));
        let kinds: Vec<&str> = events
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["kind"].as_str())
            .collect();
        if kinds.contains(&"INSTALLED") {
            assert!(kinds.contains(&"FAILED"), "{events}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "not installed: {events}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let builds = json(&d.api_ok(&["builds", "--source", "mbd-i386fail-1"]));
    let (amd64, i386) = (&builds[0]["builds"]["amd64"], &builds[0]["builds"]["i386"]);
    assert_eq!(
        (&amd64["state"], &i386["state"]),
        (&"built".into(), &"failed".into()),
        "{builds}"
    );
    assert_eq!(i386["optional"], true, "{builds}");
    assert!(served_log(&d, i386).contains("mbd-i386fail-1 fails to build on i386 on purpose"));
    let ls = json(&d.api_ok(&["ls", "mbd-i386fail-1"]));
    assert_eq!(
        ls["test"][format!("{codename}-test-unstable")]["version"],
        "1.0~test12+1",
        "{ls}"
    );
}

/// One home, one `setup --preset Debian` run for trixie, bookworm and sid on the host's native
/// architectures: six chroots the daemon makes (i386 under linux32). One upload per codename,
/// versioned by its rule, builds on amd64 and i386, is installed, and that release's own apt
/// installs it (trixie's and sid's apt in minimal roots, verifying with sqv; bookworm's, the
/// host's). This machine's mirror is a snapshot whose sid Release has passed its Valid-Until
/// (2026-11-06): the sid source is first set up as an administrator would for such a mirror,
/// `config_set source sid check_valid_until false` (its chroots' apt then skips the check
/// too); a mirror that follows Debian needs no such setting.
#[test]
fn one_home_builds_for_trixie_bookworm_and_sid_on_amd64_and_i386() {
    if !can_build() {
        return;
    }
    let i386 = std::process::Command::new("arch-test")
        .args(["-n", "i386"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(i386, "this amd64 host's kernel runs no i386 binaries");
    let releases = [
        ("trixie", "1.0~test13+1"),
        ("bookworm", "1.0~test12+1"),
        ("sid", "1.0~test~SID+1"),
    ];
    let _one = CHROOT.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let started = Instant::now();
    let d = Daemon::start_with(&home, &["--no-default-setup"]);
    d.api_ok(&[
        "setup",
        "--from-origins",
        "Debian",
        "--archives-from-apt-sources",
        "--sources",
        "sid",
        "--update",
    ]);
    d.api_ok(&[
        "config_set",
        "source",
        "sid",
        "check_valid_until",
        "--value",
        "false",
    ]);
    let report = d.api_ok(&[
        "setup",
        "--preset",
        "Debian",
        "--archives-from-apt-sources",
        "--sources",
        "trixie",
        "bookworm",
        "sid",
    ]);
    let mut want = Vec::new();
    for (codename, _) in releases {
        for line in [
            format!("source       {codename:<40} active"),
            format!("chroot       {codename}-amd64"),
            format!("chroot       {codename}-i386"),
        ] {
            assert!(report.contains(&line), "'{line}' not in:\n{report}");
        }
        want.extend([format!("{codename}-amd64"), format!("{codename}-i386")]);
    }
    want.sort();
    let mut ids = wait_for_chroots(&d, &home, started, 6);
    ids.sort();
    assert_eq!(ids, want);

    // An Architecture: any upload per codename: built on both architectures, installed.
    for (codename, version) in releases {
        let out = dir.path().join(format!("uploads-{codename}"));
        let (ok, text) = crate::util::run(
            std::process::Command::new(fixtures().join("gen-uploads.sh"))
                .arg(&out)
                .args(["1", "--source", &format!("{codename}-test-unstable")])
                .env("MBD_GEN_NAME", format!("mbd-{codename}"))
                .env("MBD_GEN_ARCH", "any")
                .env("MBD_GEN_VERSION", version),
        );
        assert!(ok, "{text}");
        dput(&d, &work, &changes_in(&out.join("1")));
    }
    for (codename, _) in releases {
        let source = format!("mbd-{codename}-1");
        wait_for(&d, &source, "INSTALLED", Duration::from_secs(1500));
        let builds = json(&d.api_ok(&["builds", "--source", &source]));
        for arch in ["amd64", "i386"] {
            let b = &builds[0]["builds"][arch];
            assert_eq!(b["state"], "built", "{builds}");
            let log = served_log(&d, b);
            assert!(
                log.contains(&mbd::build::chroot::schroot_name(
                    &home,
                    &format!("{codename}-{arch}")
                )) && log.contains(&format!("Host Architecture: {arch}")),
                "built in the {codename}-{arch} chroot:\n{log}"
            );
        }
    }
    eprintln!(
        "three releases, six chroots, six builds: {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // Each release's own apt installs its build.
    for (codename, version) in releases {
        let source = format!("mbd-{codename}-1");
        let sources = crate::releases::sources(&d, codename);
        let payload = if codename == "bookworm" {
            let apt = crate::util::Apt::new(&sources);
            let (ok, out) = apt.get(&["--error-on=any", "update"]);
            assert!(ok, "{out}");
            let (ok, out) = apt.get(&["install", "-y", &source]);
            assert!(ok, "{out}");
            std::fs::read_to_string(apt.root().join(format!("usr/share/{source}/payload")))
        } else {
            let root = crate::releases::Root::of(codename);
            std::fs::write(
                root.path.join("etc/apt/sources.list.d/mbd.sources"),
                sources,
            )
            .unwrap();
            root.apt_get(&["--error-on=any", "update"]);
            root.apt_get(&["-o", "Dpkg::Use-Pty=0", "install", "-y", &source]);
            std::fs::read_to_string(root.path.join(format!("usr/share/{source}/payload")))
        };
        assert_eq!(payload.unwrap(), "1\n", "{codename} {version}");
    }
}

/// Two homes on one host (before, the second home's chroot took over the first's schroot name
/// and every build of the first failed at `create-session`): each prepares its own chroot
/// for this host under its own schroot name and overlay directory, both build, one after the
/// other, and removing one home's chroot leaves the other's alone. A configuration under the
/// name earlier versions shared, pointing at a home's tree, is replaced at that home's start;
/// a configuration that points at another tree makes the chroot's check fail, naming both.
#[test]
fn two_homes_on_one_host_keep_their_own_chroots() {
    use mbd::build::chroot::schroot_name;
    if !can_build() {
        return;
    }
    let _one = CHROOT.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let started = Instant::now();
    let homes = [dir.path().join("a"), dir.path().join("b")];
    let mut a = Daemon::start_with(&homes[0], &[]);
    let id = wait_for_chroot(&a, &homes[0], started);
    let b = Daemon::start_with(&homes[1], &[]);
    assert_eq!(wait_for_chroot(&b, &homes[1], started), id);
    let conf_of = |home: &Path| {
        Path::new("/etc/schroot/chroot.d").join(format!("{}.conf", schroot_name(home, &id)))
    };
    let tree_of = |home: &Path| {
        let home = std::fs::canonicalize(home).unwrap();
        format!(
            "directory={}\n",
            home.join("var/chroots").join(&id).join("source").display()
        )
    };
    assert_ne!(conf_of(&homes[0]), conf_of(&homes[1]));
    let listed = json(&a.api_ok(&["chroots"]));
    assert_eq!(
        listed[0]["schroot"],
        schroot_name(&homes[0], &id),
        "{listed}"
    );
    for home in &homes {
        let text = std::fs::read_to_string(conf_of(home)).unwrap();
        assert!(text.contains(&tree_of(home)), "{text}");
    }

    // Both build, one after the other.
    copy_fixture_uploads(&work);
    let hello = work.join("mbd-hello_1.0-1~test12+1_source.changes");
    dput(&a, &work, &hello);
    wait_for(&a, "mbd-hello", "INSTALLED", Duration::from_secs(600));
    dput(&b, &work, &hello);
    wait_for(&b, "mbd-hello", "INSTALLED", Duration::from_secs(600));
    let more = generated_with(dir.path(), 1, "--source", &[("MBD_GEN_NAME", "mbd-two")]);
    dput(&a, &work, &changes_in(&more[0]));
    wait_for(&a, "mbd-two-1", "INSTALLED", Duration::from_secs(600));

    // A configuration under the shared name of earlier versions, pointing at a's tree, is
    // replaced at a's start.
    a.stop();
    let legacy = Path::new("/etc/schroot/chroot.d").join(format!("mbd-{id}.conf"));
    std::fs::rename(conf_of(&homes[0]), &legacy).unwrap();
    let mut a = Daemon::start_with(&homes[0], &[]);
    let moved = Instant::now();
    while legacy.exists() || !conf_of(&homes[0]).exists() {
        assert!(
            moved.elapsed() < Duration::from_secs(60),
            "not migrated:\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(conf_of(&homes[0])).unwrap();
    assert!(text.contains(&tree_of(&homes[0])), "{text}");

    // A configuration pointing at another tree: the check fails and says so.
    std::fs::write(
        conf_of(&homes[0]),
        text.replace(&tree_of(&homes[0]), &tree_of(&homes[1])),
    )
    .unwrap();
    let (ok, out) = a.api(&["config_action", "chroot", &id, "check"]);
    assert!(!ok, "{out}");
    let chroots = json(&a.api_ok(&["chroots"]));
    let message = chroots[0]["message"].as_str().unwrap();
    assert_eq!(chroots[0]["state"], "failed", "{chroots}");
    assert!(
        message.contains("not this home's") && message.contains(tree_of(&homes[1]).trim()),
        "{message}"
    );
    std::fs::write(conf_of(&homes[0]), &text).unwrap();
    a.api_ok(&["config_action", "chroot", &id, "check"]);

    // remake_chroots makes b's again from scratch; a's stays as it is.
    let (ok, out) = b.api(&["remake_chroots", "--chroots", "sid-s390x"]);
    assert!(!ok && out.contains("no chroot 'sid-s390x'"), "{out}");
    let remade = json(&b.api_ok(&["remake_chroots"]));
    assert_eq!(remade[&id], "preparing", "{remade}");
    assert_eq!(wait_for_chroot(&b, &homes[1], Instant::now()), id);
    let text = std::fs::read_to_string(conf_of(&homes[0])).unwrap();
    assert!(text.contains(&tree_of(&homes[0])), "{text}");

    // Removing b's chroot leaves a's.
    b.api_ok(&["chroot_remove", &id]);
    assert!(!conf_of(&homes[1]).exists());
    assert!(conf_of(&homes[0]).exists());
    a.stop();
    eprintln!("two homes: {:.0} s", started.elapsed().as_secs_f64());
}
