//! The archive's lifecycle. The `debmirror` export: the exported tree, served by a plain
//! static web server, is a repository apt (`--error-on=any`) installs from with the archive
//! key; exporting again copies only what changed and removes what is no longer referenced;
//! Debian's own `debmirror`, pointed at the daemon, fetches the same pool files. Retiring a
//! codename as the seed's workflow does it. `debdiff` between two versions in the pool.

use crate::daemon::{Daemon, json, setup_with_packages};
use crate::util::{Apt, HttpServer, run};
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Every file under `dir/pool`, relative to `dir`.
fn pool_of(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.join("pool")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel);
            }
        }
    }
    out
}

/// The daemon's `.sources` entry for bookworm's unstable, with `URIs` at `url`.
fn sources_at(d: &Daemon, url: &str) -> String {
    let text = d.api_ok(&[
        "sources_list",
        "--format",
        "sources",
        "--signed-by",
        "inline",
        "--suites",
        "unstable",
        "--codenames",
        "bookworm",
    ]);
    text.lines()
        .map(|l| {
            if l.starts_with("URIs:") {
                format!("URIs: {url}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn the_export_is_a_mirror_apt_installs_from_and_follows_changes() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // mbd-hello 1.0-2 in bookworm-test-unstable, 1.0-1 in its rollback0.
    setup_with_packages(&home);
    let d = Daemon::start(&home);
    let dest = dir.path().join("mirror");
    let export = |extra: &[&str]| {
        let target = format!("{}/{{}}", dest.display());
        let mut args = vec![
            "debmirror",
            "--destination",
            &target,
            "--codenames",
            "bookworm",
        ];
        args.extend_from_slice(extra);
        json(&d.api_ok(&args))
    };
    let done = export(&[]);
    assert_eq!(done[0]["repository"], "test", "{done}");
    let tree = dest.join("test");
    let pool = pool_of(&tree);
    assert!(!pool.is_empty());
    assert!(
        pool.iter()
            .all(|f| f.contains("1.0-2~test12+1") || f.ends_with(".orig.tar.gz")),
        "{pool:?}"
    );
    assert!(pool.iter().any(|f| f.ends_with("_amd64.deb")), "{pool:?}");
    assert!(pool.iter().any(|f| f.ends_with(".dsc")), "{pool:?}");
    assert!(tree.join("dists/bookworm-test-unstable/InRelease").exists());
    assert!(!tree.join("dists/bookworm-test-unstable-rollback0").exists());

    // A plain static server and apt: the signature verifies with the archive key, nothing
    // warns, the package installs.
    let server = HttpServer::start(&tree);
    let apt = Apt::new(&sources_at(&d, &server.url("/")));
    let (ok, out) = apt.get(&["--error-on=any", "update"]);
    assert!(ok, "{out}");
    assert!(!out.contains("W:") && !out.contains("N:"), "{out}");
    let (ok, out) = apt.get(&["install", "-y", "mbd-hello"]);
    assert!(ok, "{out}");
    assert!(out.contains("1.0-2~test12+1"), "{out}");

    // With every rollback: 1.0-1's files join; what was there stays as it was.
    let kept = tree.join(pool.iter().find(|f| f.ends_with("_amd64.deb")).unwrap());
    let inode = std::fs::metadata(&kept).unwrap().ino();
    let done = export(&["--rollbacks=-1"]);
    assert!(
        done[0]["pool_kept"].as_u64().unwrap() >= pool.len() as u64,
        "{done}"
    );
    assert!(done[0]["pool_new"].as_u64().unwrap() > 0, "{done}");
    assert_eq!(std::fs::metadata(&kept).unwrap().ino(), inode);
    let with_rollbacks = pool_of(&tree);
    assert!(
        with_rollbacks.iter().any(|f| f.contains("1.0-1~test12+1")),
        "{with_rollbacks:?}"
    );
    assert!(
        tree.join("dists/bookworm-test-unstable-rollback0/InRelease")
            .exists()
    );

    // Without them again: 1.0-1's files and the rollback's dists go.
    let done = export(&[]);
    assert!(done[0]["removed"].as_u64().unwrap() > 0, "{done}");
    assert_eq!(pool_of(&tree), pool);
    assert!(!tree.join("dists/bookworm-test-unstable-rollback0").exists());
    let (ok, out) = apt.get(&["--error-on=any", "update"]);
    assert!(ok, "{out}");

    // Selections: no amd64 index when only i386 is asked for; a relative destination is refused.
    let only_source = dir.path().join("src-only");
    let target = format!("{}/{{}}", only_source.display());
    d.api_ok(&[
        "debmirror",
        "--destination",
        &target,
        "--architectures",
        "i386",
        "--codenames",
        "bookworm",
    ]);
    let listed = only_source.join("test/dists/bookworm-test-unstable/main");
    assert!(listed.join("source").exists());
    assert!(!listed.join("binary-amd64").exists());
    assert!(
        pool_of(&only_source.join("test"))
            .iter()
            .all(|f| !f.ends_with("_amd64.deb"))
    );
    let (ok, out) = d.api(&["debmirror", "--destination", "relative/{}"]);
    assert!(!ok && out.contains("not an absolute path"), "{out}");

    // Debian's debmirror, pointed at the daemon, for the same selection: the same pool files.
    let real = dir.path().join("real");
    let keyring = dir.path().join("archive.gpg");
    let armored = dir.path().join("archive.asc");
    std::fs::write(&armored, crate::util::mbd_ok(&home, &["pub-key"])).unwrap();
    let (ok, out) = run(std::process::Command::new("gpg")
        .args(["--batch", "--yes", "--dearmor", "--output"])
        .arg(&keyring)
        .arg(&armored));
    assert!(ok, "{out}");
    let host = d.url.trim_start_matches("http://").to_string();
    let (ok, out) = run(std::process::Command::new("debmirror")
        .args([
            "--verbose",
            "--method=http",
            "--diff=none",
            "--rsync-extra=none",
            "--getcontents",
            "--i18n",
        ])
        .arg(format!("--host={host}"))
        .args([
            "--root=repositories/test",
            "--dist=bookworm-test-unstable",
            "--arch=amd64",
            "--section=main",
            "--source",
        ])
        .arg(format!("--keyring={}", keyring.display()))
        .arg(&real)
        .env("HOME", dir.path()));
    assert!(ok, "debmirror:\n{out}");
    let ours = export(&[
        "--architectures",
        "amd64",
        "--components",
        "main",
        "--suites",
        "unstable",
    ]);
    assert_eq!(ours[0]["repository"], "test");
    assert_eq!(pool_of(&real), pool_of(&tree), "debmirror's pool and ours");
    // The indices: every index debmirror fetched is ours byte for byte; what differs is
    // listed in docs/ARCHITECTURE.md (debmirror keeps no by-hash copies, we keep no
    // uncompressed index apt does not need).
    let files_of = |root: &Path| {
        let mut out = BTreeSet::new();
        let mut stack = vec![root.join("dists")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    out.insert(e.path().strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        out
    };
    let (theirs, mine) = (files_of(&real), files_of(&tree));
    eprintln!(
        "only debmirror: {:?}\nonly ours: {:?}",
        theirs.difference(&mine).collect::<Vec<_>>(),
        mine.difference(&theirs).collect::<Vec<_>>()
    );
    for f in theirs.intersection(&mine) {
        assert_eq!(
            std::fs::read(real.join(f)).unwrap(),
            std::fs::read(tree.join(f)).unwrap(),
            "{f}"
        );
    }
    assert!(
        theirs.contains("dists/bookworm-test-unstable/InRelease"),
        "{theirs:?}"
    );
}

/// Every file under `root/dists/<dist>` for the dists whose name starts with `prefix`, with
/// its bytes.
fn dists_content(root: &Path, prefix: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack: Vec<_> = std::fs::read_dir(root.join("dists"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// The seed's workflow for an old codename: stop, debmirror of the codename, retire it from
/// the repository, pca, start. Its distributions and rollbacks leave the published tree, the
/// pool files only they used are freed, trixie's distributions are byte-identical, and an
/// upload for bookworm is refused naming the codename.
#[test]
fn retiring_a_codename_after_archiving_it() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    crate::util::mbd_ok(
        &home,
        &[
            "setup",
            "--identity",
            "testhost",
            "--distributions",
            "bookworm:amd64",
            "--distributions",
            "trixie:amd64",
            "--repositories",
            "test:Default:bookworm+trixie",
        ],
    );
    let include = |dist: &str, changes: &str| {
        let path = crate::util::pkg(changes);
        crate::util::mbd_ok(&home, &["repo", "include", dist, path.to_str().unwrap()]);
    };
    include(
        "trixie-test-unstable",
        "mbd-hello_1.0-1~test12+1_amd64.changes",
    );
    include(
        "bookworm-test-unstable",
        "mbd-hello_1.0-1~test12+1_amd64.changes",
    );
    include(
        "bookworm-test-unstable",
        "mbd-hello_1.0-2~test12+1_amd64.changes",
    );
    include(
        "bookworm-test-unstable",
        "mbd-greeter_1.0~test12+1_amd64.changes",
    );
    let d = Daemon::start(&home);
    let repo = home.join("repositories/test");
    let trixie = dists_content(&repo, "trixie-");
    assert!(trixie.contains_key("dists/trixie-test-unstable/InRelease"));
    let pool = pool_of(&repo);
    let only_bookworm: Vec<&String> = pool
        .iter()
        .filter(|f| f.contains("1.0-2~test12+1") || f.contains("mbd-greeter"))
        .collect();
    assert!(!only_bookworm.is_empty());

    d.api_ok(&["stop"]);
    let archive = dir.path().join("archive");
    let target = format!("{}/{{}}", archive.display());
    d.api_ok(&[
        "debmirror",
        "--codenames",
        "bookworm",
        "--rollbacks=-1",
        "--destination",
        &target,
    ]);
    let archived = archive.join("test");
    assert!(
        archived
            .join("dists/bookworm-test-unstable-rollback0/InRelease")
            .exists()
    );
    assert!(pool_of(&archived).iter().any(|f| f.contains("mbd-greeter")));
    let (ok, out) = d.api(&["retire_codename", "test", "trixie-x"]);
    assert!(!ok && out.contains("has no codename 'trixie-x'"), "{out}");
    let retired = json(&d.api_ok(&["retire_codename", "test", "bookworm"]));
    let removed: Vec<&str> = retired["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(removed.contains(&"bookworm-test-unstable"), "{retired}");
    assert!(
        removed.contains(&"bookworm-test-unstable-rollback0"),
        "{retired}"
    );
    d.api_ok(&["config_action", "repository", "test", "pca"]);
    d.api_ok(&["start"]);

    // The published tree: no bookworm, trixie as it was, bookworm's own pool files freed.
    let left: Vec<String> = std::fs::read_dir(repo.join("dists"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.iter().all(|n| !n.starts_with("bookworm")), "{left:?}");
    assert_eq!(dists_content(&repo, "trixie-"), trixie);
    let started = std::time::Instant::now();
    while only_bookworm.iter().any(|f| repo.join(f).exists()) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "not freed: {:?}",
            pool_of(&repo)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        pool_of(&repo)
            .iter()
            .any(|f| f.contains("mbd-hello_1.0-1~test12+1"))
    );
    let ls = json(&d.api_ok(&["ls", "mbd-hello"]));
    assert!(ls["test"].get("bookworm-test-unstable").is_none(), "{ls}");
    assert!(ls["test"].get("trixie-test-unstable").is_some(), "{ls}");

    // An upload for the retired codename is refused, naming it.
    let files: Vec<std::path::PathBuf> = [
        "mbd-greeter_1.0~test12+1.dsc",
        "mbd-greeter_1.0~test12+1.tar.xz",
        "mbd-greeter_1.0~test12+1_source.buildinfo",
        "mbd-greeter_1.0~test12+1_source.changes",
    ]
    .iter()
    .map(|f| crate::util::pkg(f))
    .collect();
    crate::daemon::put_upload(&d, &files);
    let events = crate::daemon::wait_for_events(&d, 1);
    let e = events.last().unwrap();
    assert_eq!(e["kind"], "REJECTED", "{e}");
    assert!(e["reason"].as_str().unwrap().contains("bookworm"), "{e}");
    eprintln!("rejection: {}", e["reason"]);
}

#[test]
fn debdiff_between_two_versions_in_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // mbd-hello 1.0-2 in bookworm-test-unstable, 1.0-1 in its rollback0.
    setup_with_packages(&home);
    let d = Daemon::start(&home);
    let out = d.api_ok(&["debdiff", "mbd-hello", "1.0-1~test12+1", "1.0-2~test12+1"]);
    assert!(out.contains("debian/changelog"), "{out}");
    assert!(out.contains("+mbd-hello (1.0-2~test12+1)"), "{out}");
    let (ok, out) = d.api(&["debdiff", "mbd-hello", "1.0-1~test12+1", "9.9"]);
    assert!(!ok && out.contains("9.9"), "{out}");
}

/// Disk usage: `status`, `/metrics` and the home page show what the pool, the published
/// trees, chroots, build logs and events take, measured at start by housekeeping.
#[test]
fn status_metrics_and_the_home_page_show_disk_usage() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_with_packages(&home);
    let d = Daemon::start(&home);
    let started = std::time::Instant::now();
    let disk = loop {
        let status = json(&d.api_ok(&["status"]));
        if !status["disk"].is_null() {
            break status["disk"].clone();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let pool = pool_of(&home.join("repositories/test"));
    let files: u64 = pool
        .iter()
        .map(|f| {
            std::fs::metadata(home.join("repositories/test").join(f))
                .unwrap()
                .len()
        })
        .sum();
    assert!(disk["pool"].as_u64().unwrap() >= files, "{disk} < {files}");
    assert!(disk["published"].as_u64().unwrap() > 0, "{disk}");
    assert!(disk["events"].as_u64().unwrap() > 0, "{disk}");
    let (code, _, body) = d.get("/metrics", &[]);
    assert_eq!(code, 200);
    let metrics = String::from_utf8_lossy(&body);
    assert!(
        metrics.contains(&format!("mbd_disk_bytes{{part=\"pool\"}} {}", disk["pool"])),
        "{metrics}"
    );
    let (code, _, body) = d.get("/", &[]);
    assert_eq!(code, 200);
    let page = String::from_utf8_lossy(&body);
    assert!(
        page.contains("Disk: pool ") && page.contains("build logs"),
        "{page}"
    );
}

/// The crontab's view of one job.
fn job(d: &Daemon, id: &str) -> serde_json::Value {
    json(&d.api_ok(&["crontab"]))
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == id)
        .unwrap_or_else(|| panic!("no job {id}"))
        .clone()
}

/// Waits until every job in `ids` has started at `at` (the test clock's time).
fn wait_for_jobs(d: &Daemon, ids: &[&str], at: i64) {
    let started = std::time::Instant::now();
    while !ids.iter().all(|id| job(d, id)["last_start"] == at) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "jobs {ids:?} did not run at {at}:\n{}\n{}",
            d.api_ok(&["crontab"]),
            d.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The next Saturday 12:00 UTC at least two days from now.
fn a_saturday_noon() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut day = now / 86_400 + 2;
    // 1970-01-01 was a Thursday; Saturday is 6 counted from Sunday.
    while (day + 4) % 7 != 6 {
        day += 1;
    }
    day * 86_400 + 12 * 3600
}

/// The internal crontab under a test clock (`MBD_TEST_CLOCK`: the daemon reads the time from a
/// file): nothing runs when the jobs are first seen; when the clock passes Sunday 03:00 the
/// weekly jobs run (events expire per `[retention]` keeping the newest, `stable` is
/// snapshotted as `WEEKLY_<date>` with its packages, the setup inspection writes its report);
/// after three weeks down each missed job runs once, not once per missed time; `cronjob` runs
/// one now (administrators only); `/ui/crontab` shows the jobs, their lines and the report.
#[test]
fn the_crontab_runs_jobs_on_schedule_and_once_after_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_with_packages(&home);
    // mbd-hello 1.0-2 to stable, as the snapshot's content.
    for from in ["bookworm-test-unstable", "bookworm-test-testing"] {
        crate::util::mbd_ok(&home, &["repo", "migrate", "mbd-hello", from]);
    }
    let clock = dir.path().join("clock");
    let set = |t: i64| std::fs::write(&clock, t.to_string()).unwrap();
    let saturday = a_saturday_noon();
    set(saturday);
    let clock_env = [("MBD_TEST_CLOCK", clock.to_str().unwrap())];
    // Four events (binary-only uploads are refused).
    let mut d = Daemon::start_env(&home, &clock_env);
    for u in &crate::daemon::generated_uploads(dir.path(), 4, true) {
        crate::daemon::put_upload(&d, &crate::util::files_ending(u, ""));
    }
    let mut events: Vec<String> = crate::daemon::wait_for_events(&d, 4)
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    events.sort();
    d.stop();
    let settings = home.join("etc/mbd.toml");
    let text = std::fs::read_to_string(&settings).unwrap();
    assert!(text.contains("events_keep = 1000"), "{text}");
    std::fs::write(
        &settings,
        text.replace("events_days = 365", "events_days = 1")
            .replace("events_keep = 1000", "events_keep = 2"),
    )
    .unwrap();

    let mut d = Daemon::start_env(&home, &clock_env);
    let started = std::time::Instant::now();
    while job(&d, "snapshots_weekly")["since"] != saturday {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{}",
            d.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let listing = json(&d.api_ok(&["crontab"]));
    assert!(
        listing
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["last_start"].is_null()),
        "nothing runs at first sight: {listing}"
    );
    assert_eq!(job(&d, "snapshots_weekly")["next"], saturday + 15 * 3600);

    // Sunday 03:00:30: the weekly jobs.
    let sunday = saturday + 15 * 3600 + 30;
    set(sunday);
    wait_for_jobs(
        &d,
        &["expire_events", "snapshots_weekly", "setup_inspect"],
        sunday,
    );
    for not_yet in ["chroot_check", "expire_builds"] {
        assert!(
            job(&d, not_yet)["last_start"].is_null(),
            "{not_yet} ran early"
        );
    }
    let left: Vec<String> = json(&d.api_ok(&["events"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, events[2..].to_vec());
    let files = crate::daemon::names_in(&home.join("var/events"));
    let expected: Vec<String> = events[2..].iter().map(|id| format!("{id}.json")).collect();
    assert_eq!(files, expected);
    let line = job(&d, "expire_events")["lines"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        line.starts_with("I: expire_events: successful (")
            && line.contains("2 events removed (older than 1 days, newest 2 kept); "),
        "{line}"
    );
    let (_, date) =
        run(std::process::Command::new("date").args(["-u", "-d", &format!("@{sunday}"), "+%F"]));
    let weekly = format!("WEEKLY_{}", date.trim());
    let snapshots = json(&d.api_ok(&["snapshot_ls", "bookworm-test-stable"]));
    assert_eq!(snapshots, serde_json::json!([weekly]));
    let (status, _, body) = d.get(
        &format!(
            "/repositories/test/dists/bookworm-test-stable/snapshots/{weekly}/main/binary-amd64/Packages"
        ),
        &[],
    );
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("Package: mbd-hello\n"));
    assert!(
        json(&d.api_ok(&["snapshot_ls", "bookworm-test-unstable"]))
            .as_array()
            .unwrap()
            .is_empty()
    );
    let report = std::fs::read_to_string(home.join("var/log/setup-inspect.txt")).unwrap();
    assert!(report.starts_with("Setup inspection of "), "{report}");
    assert!(report.contains("repository"), "{report}");
    let (status, _, page) = d.get("/ui/crontab", &[]);
    let page = String::from_utf8_lossy(&page).to_string();
    assert_eq!(status, 200, "{page}");
    for expected in [
        "id=\"job-snapshots_weekly\"",
        &weekly,
        "<code>0 3 * * sun</code>",
        "Last setup inspection",
        "I: expire_events: successful",
    ] {
        assert!(page.contains(expected), "{expected} not in:\n{page}");
    }

    // Three weeks down: each missed job runs once.
    d.stop();
    let later = sunday + 21 * 86_400;
    set(later);
    let d = Daemon::start_env(&home, &clock_env);
    wait_for_jobs(
        &d,
        &[
            "expire_builds",
            "expire_events",
            "snapshots_weekly",
            "chroot_check",
        ],
        later,
    );
    assert_eq!(
        job(&d, "snapshots_weekly")["lines"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        job(&d, "expire_builds")["lines"].as_array().unwrap().len(),
        1
    );
    // (MONTHLY_ and YEARLY_ ones too when the three weeks crossed a 1st.)
    let weeklies = json(&d.api_ok(&["snapshot_ls", "bookworm-test-stable"]))
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n.as_str().unwrap().starts_with("WEEKLY_"))
        .count();
    assert_eq!(weeklies, 2);
    // Run one now; only administrators may.
    let ran = json(&d.api_ok(&["cronjob", "expire_builds"]));
    assert_eq!(ran["successful"], true, "{ran}");
    assert!(
        ran["line"]
            .as_str()
            .unwrap()
            .starts_with("I: expire_builds: successful")
    );
    assert_eq!(
        job(&d, "expire_builds")["lines"].as_array().unwrap().len(),
        2
    );
    let (ok, out) = d.api(&["cronjob", "nope"]);
    assert!(!ok && out.contains("no crontab job 'nope'"), "{out}");
    let (ok, out) = d.api_as(None, &["cronjob", "expire_builds"]);
    assert!(!ok && out.contains("needs authorization: ADMIN"), "{out}");
}
