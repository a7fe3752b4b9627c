//! The build farm with three real daemons on one host (distinct homes, ports and archive
//! keys): A holds the repository and no chroot; B and C are builders with real chroots
//! (two homes on one host, each with its own). Uploads to A are built by B or C, by load,
//! and installed on A; a builder killed mid-build loses its build to the other; A restarted
//! while a remote builds takes the result afterwards; forged results and requests from
//! unknown keys are refused with their reasons. Needs root, as the build tests.

use crate::build::{
    CHROOT, can_build, copy_fixture_uploads, dput, nanos, wait_for, wait_for_chroot,
};
use crate::daemon::{Daemon, changes_in, generated_with, json};
use crate::remotes::peer_up;
use crate::util::{Apt, mbd_ok};
use std::path::Path;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(900);

/// A loopback endpoint with a port that is free now (kept across a daemon's restarts).
fn free_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", l.local_addr().unwrap().port())
}

fn home_for(dir: &Path, identity: &str, repository: bool) -> std::path::PathBuf {
    let home = dir.join(identity);
    let mut args = vec!["setup", "--identity", identity];
    if repository {
        args.extend([
            "--distributions",
            "bookworm:amd64",
            "--repositories",
            "test:Default:bookworm",
        ]);
    }
    mbd_ok(&home, &args);
    home
}

/// A remote that stops answering loses its builds after 10 s (300 by default): written into
/// the settings a first start made.
fn short_remote_timeout(home: &Path) {
    let mut d = Daemon::start(home);
    d.stop();
    let settings = home.join("etc/mbd.toml");
    let old = std::fs::read_to_string(&settings).unwrap();
    assert!(old.contains("remote_timeout = 300\n"), "{old}");
    std::fs::write(
        &settings,
        old.replace("remote_timeout = 300\n", "remote_timeout = 10\n"),
    )
    .unwrap();
}

/// The build of `source` on amd64 as A lists it.
fn build_of(a: &Daemon, source: &str) -> serde_json::Value {
    json(&a.api_ok(&["builds", "--source", source]))[0]["builds"]["amd64"].clone()
}

/// Waits until A has handed `source` to a remote that builds it; that remote's URL.
fn wait_for_remote_build(a: &Daemon, source: &str) -> (String, String) {
    let started = Instant::now();
    loop {
        let b = build_of(a, source);
        if b["state"] == "building" && b["request"].as_str().is_some_and(|r| !r.is_empty()) {
            return (
                b["builder"].as_str().unwrap().to_string(),
                b["request"].as_str().unwrap().to_string(),
            );
        }
        assert!(
            started.elapsed() < LIMIT,
            "{source} not handed out: {b}\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Where a remote's build of `request` stands (`GET /remote/requests/<id>`).
fn remote_state(builder: &Daemon, request: &str) -> serde_json::Value {
    let (code, _, body) = builder.get(&format!("/remote/requests/{request}"), &[]);
    if code != 200 {
        return serde_json::Value::Null;
    }
    json(&String::from_utf8_lossy(&body))
}

/// `curl -T file url`: the HTTP status and the body.
fn put(url: &str, file: &Path) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-T"])
        .arg(file)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// How often `source` was installed on `d` (INSTALLED events).
fn installs(d: &Daemon, source: &str) -> usize {
    let events = json(&d.api_ok(&["events", "--source", source]));
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "INSTALLED")
        .count()
}

/// Waits until A's last poll of each remote lists its chroot.
fn wait_until_routable(a: &Daemon, urls: &[&str]) {
    let started = Instant::now();
    loop {
        let all = json(&a.api_ok(&["config_objects", "--kind", "remote"]));
        let ready = urls.iter().all(|u| {
            all["remote"].as_array().unwrap().iter().any(|r| {
                r["url"] == *u
                    && r["label"] == "Active (C)"
                    && r["peer"]["build_chroots"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|c| c == "bookworm:amd64"))
            })
        });
        if ready {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{all}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_repository_only_instance_builds_on_remotes_fails_over_and_survives_restarts() {
    if !can_build() {
        return;
    }
    let _one = CHROOT.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let env = [("MBD_TEST_REMOTES_EVERY", "1")];
    let started = Instant::now();
    let home_a = home_for(dir.path(), "alpha", true);
    short_remote_timeout(&home_a);
    let at_a = free_endpoint();
    let mut a = Daemon::start_at(&home_a, &at_a, &env, false);
    let home_b = home_for(dir.path(), "beta", false);
    let home_c = home_for(dir.path(), "gamma", false);
    let (at_b, at_c) = (free_endpoint(), free_endpoint());
    let mut b = Daemon::start_at(&home_b, &at_b, &env, false);
    let mut c = Daemon::start_at(&home_c, &at_c, &env, false);
    // Builders only: a chroot each, no repository.
    for d in [&b, &c] {
        d.api_ok(&["chroot_prepare", "bookworm", "amd64"]);
        assert_eq!(
            json(&d.api_ok(&["status", "--with-repositories"]))["repositories"],
            serde_json::json!({})
        );
    }
    wait_for_chroot(&b, &home_b, started);
    wait_for_chroot(&c, &home_c, started);
    assert!(json(&a.api_ok(&["chroots"])).as_array().unwrap().is_empty());
    peer_up(&a, &b);
    peer_up(&a, &c);
    wait_until_routable(&a, &[&b.url, &c.url]);

    // 1. Built by a remote (both idle: the first by URL), installed on A, apt installs it.
    copy_fixture_uploads(&work);
    dput(
        &a,
        &work,
        &work.join("mbd-hello_1.0-1~test12+1_source.changes"),
    );
    let installed = wait_for(&a, "mbd-hello", "INSTALLED", LIMIT);
    let accepted = wait_for(&a, "mbd-hello", "ACCEPTED", LIMIT);
    let built = build_of(&a, "mbd-hello");
    let first = std::cmp::min(b.url.clone(), c.url.clone());
    assert_eq!(built["builder"], first.as_str(), "{built}");
    let log =
        String::from_utf8_lossy(&a.get("/logs/mbd-hello_1.0-1~test12+1/amd64", &[]).2).into_owned();
    assert!(
        log.contains("Status: successful"),
        "A keeps the build log:\n{log}"
    );
    let builder = if first == b.url { &b } else { &c };
    let on_builder = remote_state(builder, built["request"].as_str().unwrap());
    assert_eq!(on_builder["state"], "sent", "{on_builder}");
    let on_remote = on_builder["took_ms"].as_u64().unwrap() as f64 / 1e3;
    let total = (nanos(&installed) - nanos(&accepted)) as f64 / 1e9;
    eprintln!(
        "remote build: accepted → installed {total:.2} s, the build on the remote {on_remote:.2} s: orchestration overhead {:.2} s",
        total - on_remote
    );
    let sources = a.api_ok(&[
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
    let (ok, out) = apt.get(&["install", "-y", "mbd-hello"]);
    assert!(ok, "apt-get install: {out}");

    // 2. A request signed by a key that is no remote's; a result while no build waits.
    let stranger =
        mbd::openpgp::ArchiveKey::generate("stranger", mbd::openpgp::KeyAlgorithm::Ed25519)
            .unwrap();
    let forged = work.join("forged.tar");
    let doc = serde_json::json!({"id": "x_1_amd64_00", "members": []});
    mbd::remote::transport::write_envelope(&forged, &stranger, &doc, &[]).unwrap();
    let (code, body) = put(&format!("{}/remote/requests/x_1_amd64_00", b.url), &forged);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("not signed by a remote we know"), "{body}");
    assert!(b.log().contains("a build request was refused"));
    let (code, body) = put(&format!("{}/remote/results/x_1_amd64_00", a.url), &forged);
    assert_eq!(code, 409, "{body}");

    // 3. The builder is killed mid-build: after A's remote timeout the build goes to the
    // other builder, and it is installed once.
    let one = generated_with(dir.path(), 1, "--source", &[("MBD_GEN_NAME", "mbd-over")]);
    dput(&a, &work, &changes_in(&one[0]));
    let (victim, lost_request) = wait_for_remote_build(&a, "mbd-over-1");
    // While it builds: a result signed by a key that is no remote's is refused as forged.
    let (code, body) = put(&format!("{}/remote/results/{lost_request}", a.url), &forged);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("not signed by a remote we know"), "{body}");
    assert!(a.log().contains("a build result was refused"));
    let (survivor, survivor_url, victim_home, victim_at) = if victim == b.url {
        b.kill9();
        (&c, c.url.clone(), &home_b, &at_b)
    } else {
        c.kill9();
        (&b, b.url.clone(), &home_c, &at_c)
    };
    wait_for(&a, "mbd-over-1", "INSTALLED", LIMIT);
    let moved = build_of(&a, "mbd-over-1");
    assert_eq!(moved["builder"], survivor_url.as_str(), "{moved}");
    assert_eq!(installs(&a, "mbd-over-1"), 1);
    let (_, _, metrics) = a.get("/metrics", &[]);
    let metrics = String::from_utf8_lossy(&metrics).into_owned();
    assert!(
        metrics.contains(&format!(
            "mbd_remote_builds_total{{remote=\"{victim}\",outcome=\"failed_over\"}} 1"
        )),
        "{metrics}"
    );

    // 4. A stops while the survivor builds, which keeps trying to send the result; after
    // A's restart (same URL) the result is taken and installed.
    let two = generated_with(dir.path(), 1, "--source", &[("MBD_GEN_NAME", "mbd-later")]);
    dput(&a, &work, &changes_in(&two[0]));
    let (builder, request) = wait_for_remote_build(&a, "mbd-later-1");
    assert_eq!(builder, survivor_url);
    // Where it builds, with the remote's live log.
    let live = build_of(&a, "mbd-later-1")["remote_log"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(live, format!("{survivor_url}/remote/logs/{request}"));
    let page = String::from_utf8_lossy(&a.get("/ui/builds", &[]).2).into_owned();
    assert!(page.contains(&live.replace('/', "&#x2f;")), "{page}");
    a.stop();
    let waited = Instant::now();
    loop {
        // Built, and its result waits to be sent (A is down).
        let s = remote_state(survivor, &request);
        if s["state"] == "done" {
            break;
        }
        assert!(waited.elapsed() < LIMIT, "{s}\n{}", survivor.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    let a = Daemon::start_at(&home_a, &at_a, &env, false);
    survivor.api_ok(&["cronjob", "retry_results"]);
    wait_for(&a, "mbd-later-1", "INSTALLED", LIMIT);
    assert_eq!(remote_state(survivor, &request)["state"], "sent");
    let log = std::process::Command::new("curl")
        .args(["-sf", &live])
        .output()
        .unwrap();
    assert!(
        !log.status.success(),
        "the remote forgets a sent build's files"
    );

    // 5. A cancel on A reaches the remote build (held in its chroot setup long enough: the
    // distribution's setup script, which the request carries, sleeps).
    a.api_ok(&[
        "distribution_set",
        "bookworm",
        "chroot_setup_script",
        "--value",
        "#!/bin/sh\nsleep 300\n",
    ]);
    let three = generated_with(dir.path(), 1, "--source", &[("MBD_GEN_NAME", "mbd-stop")]);
    dput(&a, &work, &changes_in(&three[0]));
    let (_, request) = wait_for_remote_build(&a, "mbd-stop-1");
    let live = format!("{survivor_url}/remote/logs/{request}");
    let waited = Instant::now();
    while !std::process::Command::new("curl")
        .args(["-sf", &live])
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(waited.elapsed() < LIMIT, "no live log at {live}");
        std::thread::sleep(Duration::from_millis(200));
    }
    a.api_ok(&["cancel", "mbd-stop-1_1.0~test12+1"]);
    let waited = Instant::now();
    while remote_state(survivor, &request)["state"] != "cancelled" {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "{}",
            survivor.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // 6. The killed builder comes back and builds the request it lost again: A refuses the
    // late result (the build went elsewhere), and it is not installed twice.
    let back = Daemon::start_at(victim_home, victim_at, &env, false);
    let waited = Instant::now();
    loop {
        let s = remote_state(&back, &lost_request);
        if s["state"] == "sent" {
            let why = s["send_error"].as_str().unwrap();
            // Refused for good (409): no build waits for it (or none waits at all).
            assert!(why.starts_with("refused: ") && why.contains("409"), "{s}");
            break;
        }
        assert!(waited.elapsed() < LIMIT, "{s}\n{}", back.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(installs(&a, "mbd-over-1"), 1);
}
