use crate::util::{Apt, fingerprint, fixtures, mbd, mbd_command, mbd_ok, pkg};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

pub(crate) const ADMIN_PASSWORD: &str = "admin-secret-1";

/// The real daemon on 127.0.0.1:0, stopped (SIGTERM) when dropped.
pub(crate) struct Daemon {
    child: Option<Child>,
    pub(crate) home: PathBuf,
    pub(crate) url: String,
    stdout: PathBuf,
}

impl Daemon {
    pub(crate) fn start(home: &Path) -> Daemon {
        let mut d = Daemon::spawn(home);
        d.wait_ready();
        d
    }

    /// Starts the daemon as `user` (on a new home: with its default chroot).
    pub(crate) fn start_as(home: &Path, user: &str) -> Daemon {
        let mut d = Daemon::spawn_as(home, Some(user), &[]);
        d.wait_ready();
        d
    }

    /// Starts the daemon with other options (without `--no-default-chroot`).
    pub(crate) fn start_with(home: &Path, extra: &[&str]) -> Daemon {
        let mut d = Daemon::spawn_with(home, extra);
        d.wait_ready();
        d
    }

    /// Starts the daemon without waiting for it to serve.
    fn spawn(home: &Path) -> Daemon {
        Daemon::spawn_with(home, &["--no-default-chroot"])
    }

    /// Starts the daemon with more options, without waiting for it to serve.
    pub(crate) fn spawn_with(home: &Path, extra: &[&str]) -> Daemon {
        Daemon::spawn_as(home, None, extra)
    }

    /// Starts the daemon as another user (`setpriv`, which execs: the child is the daemon).
    pub(crate) fn spawn_as(home: &Path, user: Option<&str>, extra: &[&str]) -> Daemon {
        Daemon::spawn_full(
            home,
            user,
            &[
                "daemon",
                "--http-endpoint",
                "127.0.0.1:0",
                "--ftp-endpoint",
                "127.0.0.1:0",
                "--log-level",
                "debug",
            ],
            extra,
        )
    }

    /// Starts the daemon with the test hook that makes every write hold the token `secs`
    /// seconds longer.
    fn start_holding_writes(home: &Path, secs: u64) -> Daemon {
        Daemon::start_env(home, &[("MBD_TEST_HOLD_WRITES", &secs.to_string())])
    }

    /// Starts the daemon (no default chroot) with more environment.
    pub(crate) fn start_env(home: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut d = Daemon::spawn_env(
            home,
            None,
            &[
                "daemon",
                "--http-endpoint",
                "127.0.0.1:0",
                "--ftp-endpoint",
                "127.0.0.1:0",
                "--log-level",
                "debug",
                "--no-default-chroot",
            ],
            &[],
            env,
        );
        d.wait_ready();
        d
    }

    /// Starts the daemon on a given HTTP endpoint (a fixed port survives restarts) with more
    /// environment; with `default_chroot`, it prepares the host's chroot.
    pub(crate) fn start_at(
        home: &Path,
        endpoint: &str,
        env: &[(&str, &str)],
        default_chroot: bool,
    ) -> Daemon {
        let mut args = vec![
            "daemon",
            "--http-endpoint",
            endpoint,
            "--ftp-endpoint",
            "127.0.0.1:0",
            "--log-level",
            "debug",
        ];
        if !default_chroot {
            args.push("--no-default-chroot");
        }
        let mut d = Daemon::spawn_env(home, None, &args, &[], env);
        d.wait_ready();
        d
    }

    /// Starts the daemon with exactly these arguments (and `extra`).
    fn spawn_full(home: &Path, user: Option<&str>, daemon_args: &[&str], extra: &[&str]) -> Daemon {
        Daemon::spawn_env(home, user, daemon_args, extra, &[])
    }

    /// [`Daemon::spawn_full`] with more environment.
    fn spawn_env(
        home: &Path,
        user: Option<&str>,
        daemon_args: &[&str],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let url_file = home.join("var/run/http.url");
        let _ = std::fs::remove_file(&url_file);
        let stdout = home.with_extension("stdout");
        let mut cmd = match user {
            None => mbd_command(home, daemon_args),
            Some(u) => {
                let mut c = std::process::Command::new("setpriv");
                c.arg(format!("--reuid={u}"))
                    .arg(format!("--regid={u}"))
                    .args(["--init-groups", "--"])
                    .arg(env!("CARGO_BIN_EXE_mbd"))
                    .arg("--home")
                    .arg(home)
                    .args(daemon_args);
                c
            }
        };
        let child = cmd
            .args(extra)
            .env("MBD_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .envs(env.iter().copied())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(home.with_extension("stderr")).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            child: Some(child),
            home: home.to_path_buf(),
            url: String::new(),
            stdout,
        }
    }

    pub(crate) fn wait_ready(&mut self) {
        let d = self;
        let url_file = d.home.join("var/run/http.url");
        let started = Instant::now();
        loop {
            if let Ok(u) = std::fs::read_to_string(&url_file) {
                d.url = u.trim().to_string();
                break;
            }
            if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited with {status}:\n{}", d.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "daemon did not start:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("the daemon runs").id()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.home.with_extension("stderr")).unwrap_or_default()
    }

    pub(crate) fn banner(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap()
    }

    /// SIGKILL, as a crash or a power cut ends it.
    pub(crate) fn kill9(&mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let status = c.wait().unwrap();
            assert!(status.success(), "daemon exit on SIGTERM: {status}");
        }
    }

    /// `mbd api` as the local administrator (the daemon's token file).
    pub(crate) fn api(&self, args: &[&str]) -> (bool, String) {
        let mut a = vec!["api"];
        a.extend_from_slice(args);
        mbd(&self.home, &a)
    }

    pub(crate) fn api_ok(&self, args: &[&str]) -> String {
        let (ok, out) = self.api(args);
        assert!(ok, "mbd api {args:?} failed:\n{out}\n{}", self.log());
        out
    }

    /// `mbd api` with explicit credentials (`None`: anonymous) against the URL.
    pub(crate) fn api_as(&self, user: Option<(&str, &str)>, args: &[&str]) -> (bool, String) {
        let mut cmd = mbd_command(Path::new("/nonexistent"), &["api", "--url", &self.url]);
        cmd.args(args);
        if let Some((u, p)) = user {
            cmd.env("MBD_USER", u).env("MBD_PASSWORD", p);
        }
        crate::util::run(&mut cmd)
    }

    /// One raw HTTP/1.1 request (paths exactly as given, nothing normalised).
    pub(crate) fn raw(&self, request: &str) -> (u16, String, Vec<u8>) {
        let addr = self.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&buf[..split]).into_owned();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head, buf[split + 4..].to_vec())
    }

    pub(crate) fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.raw(&req)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Lets `port_ext` fetch from loopback (`fetch_from_private_networks`): the tests' archives
/// are on 127.0.0.1, which the default refuses.
pub(crate) fn allow_private_fetches(home: &Path) {
    let path = home.join("etc/mbd.toml");
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        "http_endpoints = [\"127.0.0.1:0\"]\nlog_level = \"info\"\nbuild_slots = 1\n".to_string()
    });
    std::fs::create_dir_all(home.join("etc")).unwrap();
    std::fs::write(&path, format!("fetch_from_private_networks = true\n{old}")).unwrap();
}

/// The setup every daemon test starts from: repository `test` for bookworm/amd64.
pub(crate) fn setup_home(home: &Path) {
    mbd_ok(
        home,
        &[
            "setup",
            "--identity",
            "testhost",
            "--distributions",
            "bookworm:amd64",
            "--repositories",
            "test:Default:bookworm",
        ],
    );
}

pub(crate) fn setup_with_packages(home: &Path) {
    setup_home(home);
    for v in ["1.0-1", "1.0-2"] {
        let changes = pkg(&format!("mbd-hello_{v}~test12+1_amd64.changes"));
        mbd_ok(
            home,
            &[
                "repo",
                "include",
                "bookworm-test-unstable",
                changes.to_str().unwrap(),
            ],
        );
    }
}

pub(crate) fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

pub(crate) fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn apt_and_every_api_call_through_the_real_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_with_packages(&home);
    let d = Daemon::start(&home);

    // One daemon per home; the CLI does not touch a store a daemon owns.
    let (ok, out) = mbd(&home, &["daemon", "--http-endpoint", "127.0.0.1:0"]);
    assert!(
        !ok && out.contains("another mbd daemon runs on this home"),
        "{out}"
    );
    // `mbd repo ...` on a home a daemon owns goes through its API.
    let ls = json(&mbd_ok(&home, &["repo", "ls", "mbd-hello"]));
    assert_eq!(
        ls["test"]["bookworm-test-unstable"]["version"],
        "1.0-2~test12+1"
    );
    let greeter = pkg("mbd-greeter_1.0~test12+1_amd64.changes");
    let out = mbd_ok(
        &home,
        &[
            "repo",
            "include",
            "bookworm-test-unstable",
            greeter.to_str().unwrap(),
        ],
    );
    assert!(out.contains("mbd-greeter"), "{out}");
    let (ok, out) = mbd(
        &home,
        &["repo", "include", "bookworm-test-unstable", "missing.deb"],
    );
    assert!(!ok && out.contains("missing.deb"), "{out}");
    let (ok, out) = d.api(&["include", "bookworm-test-unstable", "relative.deb"]);
    assert!(
        !ok && out.contains("not an absolute path") && out.contains("HTTP 400"),
        "{out}"
    );
    let out = mbd_ok(&home, &["repo", "publish", "bookworm-test-unstable"]);
    assert!(out.contains("published bookworm-test-unstable"), "{out}");

    // apt, with the .sources the API gives (key inline).
    let sources = d.api_ok(&[
        "sources_list",
        "--format",
        "sources",
        "--signed-by",
        "inline",
        "--suites",
        "unstable,testing",
        "--rollbacks",
        "1",
        "--types",
        "deb",
        "deb-src",
    ]);
    assert!(
        sources.contains("Suites: bookworm-test-unstable-rollback0\n"),
        "{sources}"
    );
    let apt = Apt::new(&sources);
    apt.update();
    let (ok, out) = apt.get(&["download", "mbd-hello-doc"]);
    assert!(ok, "{out}");
    assert_eq!(
        std::fs::read(apt.downloaded("mbd-hello-doc_1.0-2~test12+1_all.deb")).unwrap(),
        std::fs::read(pkg("mbd-hello-doc_1.0-2~test12+1_all.deb")).unwrap()
    );
    let (ok, out) = apt.get(&["download", "mbd-hello-doc/bookworm-test-unstable-rollback0"]);
    assert!(ok, "{out}");

    // The one-line format with a key file.
    let list = d.api_ok(&["sources_list", "--suites", "stable", "--with-comment"]);
    assert_eq!(
        list.lines().nth(1).unwrap(),
        format!(
            "deb [signed-by=/etc/apt/keyrings/mbd-testhost.asc] {}/repositories/test bookworm-test-stable main",
            d.url
        )
    );

    // Reads.
    let status = json(&d.api_ok(&["status", "--with-repositories"]));
    assert_eq!(status["identity"], "testhost");
    assert_eq!(status["running"], true);
    assert_eq!(status["url"], d.url.as_str());
    assert!(
        status["repositories"]["test"]["distributions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "bookworm-test-unstable")
    );
    let key = d.api_ok(&["pub_key"]);
    assert!(
        key.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
        "{key}"
    );
    let dput = d.api_ok(&["dput_conf"]);
    assert!(dput.starts_with("[mbd-testhost]\n"), "{dput}");
    let ls = json(&d.api_ok(&["ls", "mbd-hello"]));
    assert_eq!(
        ls["test"]["bookworm-test-unstable"]["version"],
        "1.0-2~test12+1"
    );
    assert_eq!(
        ls["test"]["bookworm-test-unstable"]["rollbacks"]["bookworm-test-unstable-rollback0"]["version"],
        "1.0-1~test12+1"
    );
    let show = json(&d.api_ok(&["show", "mbd-hello", "--codenames", "bookworm"]));
    assert_eq!(
        show["test"]["bookworm-test-unstable"]["migrates_to"],
        "bookworm-test-testing"
    );
    let none = json(&d.api_ok(&["ls", "mbd-hello", "--version", "9.9"]));
    assert_eq!(none, serde_json::json!({}));

    // Changes: migrate, then apt sees it in testing.
    let migrated = json(&d.api_ok(&["migrate", "mbd-hello", "bookworm-test-unstable"]));
    assert_eq!(migrated, serde_json::json!(["bookworm-test-testing"]));
    apt.update();
    let (ok, out) = apt.get(&["download", "mbd-hello/bookworm-test-testing"]);
    assert!(ok, "{out}");
    let (ok, out) = apt.get(&["install", "-y", "mbd-hello/bookworm-test-testing"]);
    assert!(ok, "{out}");
    let (ok, out) = apt.get(&["download", "mbd-greeter"]);
    assert!(ok, "{out}");
    d.api_ok(&["remove", "mbd-hello", "bookworm-test-testing"]);
    let ls = json(&d.api_ok(&["ls", "mbd-hello"]));
    assert!(
        ls["test"]["bookworm-test-testing"]["version"].is_null(),
        "{ls}"
    );
    assert_eq!(
        ls["test"]["bookworm-test-testing"]["rollbacks"]["bookworm-test-testing-rollback0"]["version"],
        "1.0-2~test12+1"
    );

    // Snapshots.
    d.api_ok(&["snapshot_create", "bookworm-test-unstable", "s1"]);
    assert_eq!(
        json(&d.api_ok(&["snapshot_ls", "bookworm-test-unstable"])),
        serde_json::json!(["s1"])
    );
    let (code, _, _) = d.get(
        "/repositories/test/dists/bookworm-test-unstable/snapshots/s1/InRelease",
        &[],
    );
    assert_eq!(code, 200);
    d.api_ok(&["snapshot_delete", "bookworm-test-unstable", "s1"]);
    assert_eq!(
        json(&d.api_ok(&["snapshot_ls", "bookworm-test-unstable"])),
        serde_json::json!([])
    );

    // Maintenance: HTTP and reads stay up, calls that need a started daemon wait.
    assert_eq!(d.api_ok(&["stop"]).trim(), "stopped");
    let status = json(&d.api_ok(&["status"]));
    assert_eq!(status["running"], false);
    assert_eq!(status["load"], -1.0);
    let (ok, out) = d.api(&["snapshot_create", "bookworm-test-unstable", "s2"]);
    assert!(
        !ok && out.contains("HTTP 503") && out.contains("stopped for maintenance"),
        "{out}"
    );
    apt.update();
    assert_eq!(d.api_ok(&["start"]).trim(), "started");
    d.api_ok(&["snapshot_create", "bookworm-test-unstable", "s2"]);

    // Users, levels, tokens, keys, subscriptions.
    let staff = json(&d.api_ok(&[
        "user_add",
        "dev",
        "--level",
        "staff",
        "--password",
        "dev-pw",
    ]));
    assert_eq!(staff["level"], "staff");
    assert!(staff["password"].is_null());
    let login = json(&d.api_ok(&["user_add", "viewer"]));
    let viewer_pw = login["password"].as_str().unwrap().to_string();
    assert_eq!(viewer_pw.len(), 20);
    let users = json(&d.api_ok(&["users"]));
    assert_eq!(users.as_array().unwrap().len(), 3, "{users}");
    d.api_ok(&["user_add", "temp", "--password", "temp-pw"]);
    assert!(d.api_as(Some(("temp", "temp-pw")), &["subscriptions"]).0);
    d.api_ok(&["user_remove", "temp"]);
    let (ok, out) = d.api_as(Some(("temp", "temp-pw")), &["subscriptions"]);
    assert!(
        !ok && out.contains("HTTP 401"),
        "removed user still works: {out}"
    );

    // Each level refused below it, with 401 for nobody and 403 for too little.
    let (ok, out) = d.api_as(None, &["migrate", "mbd-hello", "bookworm-test-unstable"]);
    assert!(
        !ok && out.contains("migrate needs authorization: STAFF (HTTP 401)"),
        "{out}"
    );
    let (ok, out) = d.api_as(None, &["subscribe"]);
    assert!(
        !ok && out.contains("subscribe needs authorization: LOGIN (HTTP 401)"),
        "{out}"
    );
    let (ok, out) = d.api_as(
        Some(("viewer", &viewer_pw)),
        &["migrate", "mbd-hello", "bookworm-test-unstable"],
    );
    assert!(
        !ok && out.contains("(HTTP 403)") && out.contains("STAFF"),
        "{out}"
    );
    let (ok, out) = d.api_as(
        Some(("dev", "dev-pw")),
        &["remove", "mbd-hello", "bookworm-test-unstable"],
    );
    assert!(
        !ok && out.contains("remove needs authorization: ADMIN") && out.contains("HTTP 403"),
        "{out}"
    );
    let (ok, out) = d.api_as(Some(("dev", "wrong")), &["status"]);
    assert!(
        !ok && out.contains("authentication failed") && out.contains("HTTP 401"),
        "{out}"
    );
    let (ok, out) = d.api_as(Some(("admin", "wrong")), &["users"]);
    assert!(!ok && out.contains("HTTP 401"), "{out}");
    assert!(d.api_as(Some(("admin", ADMIN_PASSWORD)), &["users"]).0);
    // Nothing changed by the refused calls.
    let ls = json(&d.api_ok(&["ls", "mbd-hello"]));
    assert_eq!(
        ls["test"]["bookworm-test-unstable"]["version"],
        "1.0-2~test12+1"
    );

    // Staff may migrate; a login user may subscribe and manage tokens.
    let (ok, out) = d.api_as(
        Some(("dev", "dev-pw")),
        &["migrate", "mbd-hello", "bookworm-test-unstable"],
    );
    assert!(ok, "{out}");
    let sub = json(
        &d.api_as(
            Some(("viewer", &viewer_pw)),
            &["subscribe", "--source", "mbd-hello"],
        )
        .1,
    );
    assert_eq!(sub["created"], true);
    let subs = json(&d.api_as(Some(("viewer", &viewer_pw)), &["subscriptions"]).1);
    assert_eq!(subs.as_array().unwrap().len(), 1);
    let gone = json(
        &d.api_as(
            Some(("viewer", &viewer_pw)),
            &["unsubscribe", "--source", "mbd-hello"],
        )
        .1,
    );
    assert_eq!(gone.as_array().unwrap().len(), 1);
    let token = json(
        &d.api_as(
            Some(("viewer", &viewer_pw)),
            &["token_create", "--label", "ci"],
        )
        .1,
    );
    let secret = token["token"].as_str().unwrap().to_string();
    let id = token["id"].as_str().unwrap().to_string();
    let (ok, out) = d.api_as(Some(("viewer", &secret)), &["subscriptions"]);
    assert!(ok, "{out}");
    let mut bearer = mbd_command(
        Path::new("/nonexistent"),
        &["api", "--url", &d.url, "token_ls"],
    );
    bearer.env("MBD_TOKEN", &secret);
    let (ok, out) = crate::util::run(&mut bearer);
    assert!(ok && out.contains("\"ci\""), "{out}");
    let (ok, out) = d.api_as(Some(("viewer", &secret)), &["token_revoke", &id]);
    assert!(ok, "{out}");
    let (ok, out) = d.api_as(Some(("viewer", &secret)), &["subscriptions"]);
    assert!(
        !ok && out.contains("HTTP 401"),
        "revoked token still works: {out}"
    );

    // Upload keys.
    let uploader = std::fs::read_to_string(fixtures().join("keys/uploader.asc")).unwrap();
    let (ok, out) = d.api_as(Some(("dev", "dev-pw")), &["set_user_key", &uploader]);
    assert!(ok, "{out}");
    let (ok, out) = d.api_as(Some(("dev", "dev-pw")), &["set_user_key", "not a key"]);
    assert!(
        !ok && out.contains("not a usable key") && out.contains("HTTP 400"),
        "{out}"
    );
    let up = json(&d.api_ok(&["uploaders"]));
    assert_eq!(up["test"]["allow_unauthenticated_uploads"], true);
    assert_eq!(up["test"]["uploaders"][0]["user"], "dev");
    assert_eq!(
        up["test"]["uploaders"][0]["fingerprint"],
        fingerprint("uploader").as_str()
    );
    // A new key waits for staff.
    assert_eq!(up["test"]["uploaders"][0]["status"], "Prepared (-)", "{up}");
    assert_eq!(up["test"]["uploaders"][0]["active"], false, "{up}");
    let (ok, out) = d.api(&["uploader_activate", "viewer"]);
    assert!(!ok && out.contains("has set no key"), "{out}");
    let (ok, out) = d.api(&["uploader_activate", "dev", "--repositories", "nosuch"]);
    assert!(!ok && out.contains("No repository 'nosuch'"), "{out}");
    d.api_ok(&["uploader_activate", "dev", "--repositories", "test"]);
    let up = json(&d.api_ok(&["uploaders"]));
    assert_eq!(up["test"]["uploaders"][0]["status"], "Active (C)", "{up}");
    assert_eq!(up["test"]["uploaders"][0]["active"], true, "{up}");
    // Setting a key again needs a new activation.
    d.api_as(Some(("dev", "dev-pw")), &["set_user_key", &uploader]);
    let up = json(&d.api_ok(&["uploaders"]));
    assert_eq!(up["test"]["uploaders"][0]["active"], false, "{up}");
    d.api_ok(&["uploader_activate", "dev"]);
    d.api_ok(&["uploader_deactivate", "dev"]);
    let up = json(&d.api_ok(&["uploaders"]));
    assert_eq!(up["test"]["uploaders"][0]["status"], "Prepared (C)", "{up}");

    // Health and metrics.
    let (code, _, body) = d.get("/health", &[]);
    assert_eq!((code, body.as_slice()), (200, b"ok\n".as_slice()));
    let (_, _, body) = d.get("/metrics", &[]);
    let metrics = String::from_utf8(body).unwrap();
    assert!(
        metrics.contains("mbd_api_calls_total{call=\"migrate\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("mbd_up 1"), "{metrics}");
    // The access log records requests (its writer takes them in every 50 ms).
    let started = Instant::now();
    loop {
        let access = std::fs::read_to_string(home.join("var/log/access.log")).unwrap();
        if access.contains("\"GET /metrics HTTP/1.1\" 200") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{access}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        std::fs::read_to_string(home.join("var/log/daemon.log"))
            .unwrap()
            .contains("serving")
    );
}

#[test]
fn http_is_what_apt_expects_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_with_packages(&home);
    let d = Daemon::start(&home);
    let inrelease = "/repositories/test/dists/bookworm-test-unstable/InRelease";
    let on_disk =
        std::fs::read(home.join("repositories/test/dists/bookworm-test-unstable/InRelease"))
            .unwrap();
    let (code, head, body) = d.get(inrelease, &[]);
    assert_eq!(code, 200);
    assert_eq!(body, on_disk);
    assert_eq!(
        header(&head, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(header(&head, "cache-control"), Some("no-cache"));
    let etag = header(&head, "etag").unwrap().to_string();
    let modified = header(&head, "last-modified").unwrap().to_string();
    assert_eq!(d.get(inrelease, &[("If-None-Match", &etag)]).0, 304);
    assert_eq!(d.get(inrelease, &[("If-Modified-Since", &modified)]).0, 304);
    let (code, head, body) = d.get(inrelease, &[("Range", "bytes=10-19")]);
    assert_eq!(code, 206);
    assert_eq!(body, on_disk[10..20]);
    assert_eq!(
        header(&head, "content-range"),
        Some(format!("bytes 10-19/{}", on_disk.len()).as_str())
    );
    assert_eq!(d.get(inrelease, &[("Range", "bytes=999999-")]).0, 416);
    // A Range that does not parse is ignored (RFC 9110): the whole file.
    let (code, _, body) = d.get(inrelease, &[("Range", "bytes=abc")]);
    assert_eq!((code, body.len()), (200, on_disk.len()));
    // A stale If-Range gets the whole file.
    let (code, _, body) = d.get(
        inrelease,
        &[("Range", "bytes=0-1"), ("If-Range", "\"stale\"")],
    );
    assert_eq!((code, body.len()), (200, on_disk.len()));
    let (code, head, body) = d.raw(&format!(
        "HEAD {inrelease} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(code, 200);
    assert!(body.is_empty());
    assert_eq!(
        header(&head, "content-length"),
        Some(on_disk.len().to_string().as_str())
    );
    let deb = "/repositories/test/pool/main/m/mbd-hello/mbd-hello-doc_1.0-2~test12+1_all.deb";
    let (code, head, _) = d.get(deb, &[]);
    assert_eq!(code, 200, "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("application/vnd.debian.binary-package")
    );
    assert!(
        header(&head, "cache-control")
            .unwrap()
            .contains("immutable")
    );
    // Directory listing, and a redirect to the slash form.
    let (code, _, body) = d.get("/repositories/test/dists/", &[]);
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("bookworm-test-unstable/"));
    assert_eq!(d.get("/repositories/test/dists", &[]).0, 301);

    // Nothing outside the published trees, whatever the spelling.
    for (path, want) in [
        ("/repositories/test/../../mbd.redb", 400),
        ("/repositories/test/%2e%2e/%2e%2e/keys/archive.key", 400),
        ("/repositories/test/dists/..%2f..%2f..%2fmbd.redb", 400),
        ("/repositories/test/.staging", 400),
        ("/repositories/..", 400),
        ("/repositories/test/conf", 404),
        ("/repositories/nosuch/dists/", 404),
        ("/keys/archive.key", 404),
        ("/mbd.redb", 404),
        ("/var/log/daemon.log", 404),
    ] {
        let (code, head, body) = d.get(path, &[]);
        assert_eq!(code, want, "{path}: {head}");
        let problem = json(&String::from_utf8_lossy(&body));
        assert!(!problem["detail"].as_str().unwrap().is_empty(), "{path}");
    }
}

#[test]
fn bad_input_gets_a_4xx_with_a_reason_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_with_packages(&home);
    let d = Daemon::start(&home);
    let before = d.api_ok(&["show", "mbd-hello"]);
    let inrelease = home.join("repositories/test/dists/bookworm-test-unstable/InRelease");
    let published = std::fs::read(&inrelease).unwrap();
    let cases: &[(&[&str], u16, &str)] = &[
        (
            &["migrate", "mbd-hello", "bookworm-test"],
            400,
            "Malformed distribution 'bookworm-test'",
        ),
        (
            &["migrate", "mbd-hello", "bookworm-nosuch-unstable"],
            404,
            "No such repository 'nosuch'",
        ),
        (
            &["remove", "mbd-hello", "bookworm-test-unstable-rollback9"],
            400,
            "keeps",
        ),
        (
            &["remove", "nosuch", "bookworm-test-unstable"],
            404,
            "No such source 'nosuch'",
        ),
        (
            &["sources_list", "--repositories", "nosuch"],
            404,
            "No such repository 'nosuch'",
        ),
        (
            &["sources_list", "--rollbacks", "many"],
            400,
            "argument 'rollbacks' must be an integer, not 'many'",
        ),
        (
            &["snapshot_create", "bookworm-test-unstable", "../x"],
            400,
            "Invalid snapshot name",
        ),
        (&["user_add", "a/b"], 400, "not a valid user name"),
        (
            &["chroot_prepare", "book worm", "amd64"],
            400,
            "codename 'book worm' is not a lowercase word",
        ),
        (
            &["chroot_prepare", "bookworm", "amd64", "--backend", "zfs"],
            400,
            "backend 'zfs' is not directory or file",
        ),
        (
            &["chroot_remove", "nosuch-amd64"],
            404,
            "no chroot 'nosuch-amd64'",
        ),
        (
            &["cancel", "nosuch_1.0"],
            404,
            "no upload 'nosuch_1.0' in the build queue",
        ),
        (
            &["retry", "nosuch_1.0"],
            404,
            "no upload 'nosuch_1.0' in the build queue",
        ),
    ];
    for (args, status, text) in cases {
        let (ok, out) = d.api(args);
        assert!(!ok, "{args:?} succeeded: {out}");
        assert!(
            out.contains(text) && out.contains(&format!("HTTP {status}")),
            "{args:?}: {out}"
        );
    }
    assert_eq!(json(&d.api_ok(&["chroots"])), serde_json::json!([]));
    // Logs only of builds and chroots that exist; no path is made from the URL.
    for path in [
        "/logs/nosuch_1.0/amd64",
        "/logs/..%2F..%2Fetc/passwd",
        "/chroot-logs/nosuch-amd64",
        "/chroot-logs/..%2Fetc",
    ] {
        let (code, _, _) = d.get(path, &[]);
        assert_eq!(code, 404, "{path}");
    }
    // Raw HTTP: unknown call, unknown argument, wrong method, wrong output, oversized body.
    let token = std::fs::read_to_string(home.join("etc/api-token")).unwrap();
    let (user, secret) = token.trim().split_once(':').unwrap();
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{user}:{secret}")
        )
    );
    let (code, head, body) = d.get("/api/nosuch", &[]);
    assert_eq!(code, 404);
    assert_eq!(
        header(&head, "content-type"),
        Some("application/problem+json")
    );
    assert!(
        json(&String::from_utf8_lossy(&body))["detail"]
            .as_str()
            .unwrap()
            .contains("No API call 'nosuch'")
    );
    let (code, _, body) = d.get("/api/ls?source=x&colour=red", &[]);
    assert_eq!(code, 400);
    assert!(String::from_utf8_lossy(&body).contains("unknown argument 'colour'"));
    let (code, head, _) = d.get(
        "/api/remove?source=mbd-hello&distribution=bookworm-test-unstable",
        &[("Authorization", &basic)],
    );
    assert_eq!(code, 405, "{head}");
    let (code, _, _) = d.get("/api/status?output=xml", &[]);
    assert_eq!(code, 400);
    let big = "x".repeat(1024 * 1024);
    let (code, _, _) = d.raw(&format!(
        "POST /api/remove HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {basic}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\nsource={big}",
        big.len() + 7
    ));
    assert_eq!(code, 413);
    let (code, _, _) = d.raw(&format!(
        "POST /api/remove HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {basic}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    ));
    assert_eq!(code, 400);
    assert_eq!(d.api_ok(&["show", "mbd-hello"]), before);
    assert_eq!(std::fs::read(&inrelease).unwrap(), published);
}

#[test]
fn kill_9_and_restart_keeps_every_object_and_published_file() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_with_packages(&home);
    let mut d = Daemon::start(&home);
    d.api_ok(&["migrate", "mbd-hello", "bookworm-test-unstable"]);
    mbd_ok(
        &home,
        &[
            "repo",
            "snapshot",
            "create",
            "bookworm-test-testing",
            "keep",
        ],
    );
    d.api_ok(&[
        "user_add",
        "dev",
        "--level",
        "staff",
        "--password",
        "dev-pw",
    ]);
    let show = d.api_ok(&["show", "mbd-hello"]);
    let tree = |h: &Path| {
        let mut files = Vec::new();
        let mut stack = vec![h.join("repositories")];
        while let Some(p) = stack.pop() {
            for e in std::fs::read_dir(&p).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else if !e.file_name().to_string_lossy().starts_with('.') {
                    files.push((e.path(), std::fs::read(e.path()).unwrap()));
                }
            }
        }
        files.sort();
        files
    };
    let published = tree(&home);
    d.kill9();
    let mut d = Daemon::start(&home);
    assert_eq!(d.api_ok(&["show", "mbd-hello"]), show);
    assert_eq!(tree(&home), published);
    assert!(d.api_as(Some(("dev", "dev-pw")), &["status"]).0);
    assert_eq!(
        json(&d.api_ok(&["snapshot_ls", "bookworm-test-testing"])),
        serde_json::json!(["keep"])
    );
    // SIGTERM ends it cleanly; afterwards the CLI may use the home again.
    d.stop();
    mbd_ok(&home, &["repo", "ls", "mbd-hello"]);
}

#[test]
fn first_start_on_an_empty_home_gives_a_usable_repository() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let d = Daemon::start(&home);
    let banner = d.banner();
    assert!(banner.contains("created the default setup"), "{banner}");
    assert!(
        banner.contains(&format!("serving at {}/", d.url)),
        "{banner}"
    );
    assert!(banner.contains("[mbd-"), "{banner}");
    // The .sources printed is what apt needs, key included.
    let start = banner.find("Types: deb").expect("a .sources entry");
    let end = banner[start..].find("\n\n").unwrap() + start + 1;
    let apt = Apt::new(&banner[start..end]);
    apt.update();
    let settings = std::fs::read_to_string(home.join("etc/mbd.toml")).unwrap();
    assert!(settings.contains("http_endpoints"), "{settings}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(home.join("etc/api-token"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let status = json(&d.api_ok(&["status", "--with-repositories"]));
    assert_eq!(
        status["repositories"]["test"]["allow_unauthenticated_uploads"],
        true
    );
}

#[test]
fn web_ui_in_headless_chromium_log_in_migrate_and_see_it_in_testing() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_with_packages(&home);
    let d = Daemon::start(&home);

    // Anonymous visitors see versions but no actions, and a form post without a session is
    // refused without changing anything.
    let (code, _, body) = d.get("/ui/package/mbd-hello", &[]);
    let page = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("1.0-2~test12+1") && !page.contains("migrate-bookworm"),
        "{page}"
    );
    let form =
        "source=mbd-hello&distribution=bookworm-test-unstable&next=%2Fui%2Fpackage%2Fmbd-hello";
    let (code, _, body) = d.raw(&format!(
        "POST /ui/api/migrate HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    ));
    assert_eq!(code, 401);
    assert!(String::from_utf8_lossy(&body).contains("migrate needs authorization: STAFF"));
    let ls = json(&d.api_ok(&["ls", "mbd-hello"]));
    assert!(ls["test"]["bookworm-test-testing"].is_null(), "{ls}");

    // Every call of the registry has its form.
    for call in mbd::api::calls::CALLS {
        let (code, _, body) = d.get(&format!("/ui/api/{}", call.name), &[]);
        assert_eq!(code, 200, "{}", call.name);
        assert!(String::from_utf8_lossy(&body).contains("id=\"call-form\""));
    }

    // The click path in a real Chromium, with screenshots.
    let shots = dir.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let (ok, out) = crate::util::run(
        std::process::Command::new("/usr/bin/python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/click_path.py"))
            .args([&d.url, "admin", ADMIN_PASSWORD])
            .arg(&shots),
    );
    assert!(ok && out.contains("click path ok"), "{out}\n{}", d.log());
    for name in ["home", "repository", "package", "live"] {
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name}.png");
        assert!(png.len() > 10_000, "{name}.png is only {} bytes", png.len());
    }
    let ls = json(&d.api_ok(&["ls", "mbd-hello"]));
    assert_eq!(
        ls["test"]["bookworm-test-testing"]["version"],
        "1.0-2~test12+1"
    );
    assert_eq!(
        json(&d.api_ok(&["snapshot_ls", "bookworm-test-testing"])),
        serde_json::json!(["ui1"])
    );
    // Logging out revoked the web session's token.
    let tokens = json(&d.api_ok(&["token_ls"]));
    assert!(
        !tokens
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["label"] == "web session"),
        "{tokens}"
    );
}

/// Waits until the daemon has decided `n` uploads in all; returns the events.
pub(crate) fn wait_for_events(d: &Daemon, n: usize) -> Vec<serde_json::Value> {
    let started = Instant::now();
    loop {
        let events = json(&d.api_ok(&["events"]));
        let decided: Vec<serde_json::Value> = events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] != "PACKAGING")
            .cloned()
            .collect();
        if decided.len() >= n {
            return decided;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {} of {n} uploads decided: {events}\n{}",
            decided.len(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until incoming is empty: a decision's event is stored before its files go (so a
/// crash between keeps the upload), so the files may still be there when the event is seen.
fn wait_incoming_empty(home: &Path, what: &str) {
    let started = Instant::now();
    loop {
        let left = names_in(&home.join("var/incoming"));
        if left.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what} left {left:?} in incoming"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// After a rejection: the `.changes` is gone, and so are its files when it was `owned`
/// (parsed, and signed where that is required). An untrusted one may name anyone's files:
/// they stay until the orphan sweep, which the test does here by hand.
fn after_rejection(home: &Path, what: &str, owned: bool) {
    if owned {
        return wait_incoming_empty(home, what);
    }
    let started = Instant::now();
    loop {
        let left = names_in(&home.join("var/incoming"));
        if !left.iter().any(|n| n.ends_with(".changes")) {
            for n in left {
                std::fs::remove_file(home.join("var/incoming").join(n)).unwrap();
            }
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what} left {left:?} in incoming"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that an upload's event is a rejection whose reason says `why`.
pub(crate) fn assert_rejected(event: &serde_json::Value, why: &str) {
    assert_eq!(event["kind"], "REJECTED", "{event}");
    assert!(
        event["reason"].as_str().unwrap_or_default().contains(why),
        "{event}"
    );
}

/// The `host:port` of the FTP section in `dput_conf`'s text.
pub(crate) fn ftp_address(conf: &str) -> String {
    conf.split("[mbd-testhost-ftp]")
        .nth(1)
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("fqdn     = ")))
        .unwrap_or_else(|| panic!("no FTP section: {conf}"))
        .to_string()
}

/// Repository `test` takes only uploads signed by an active uploader: user `dev` (password
/// `dev-pw`, staff) with the fixtures' uploader key.
pub(crate) fn require_signed_uploads(d: &Daemon) {
    d.api_ok(&["set_repository", "test"]);
    d.api_ok(&[
        "user_add",
        "dev",
        "--level",
        "staff",
        "--password",
        "dev-pw",
    ]);
    let uploader = std::fs::read_to_string(fixtures().join("keys/uploader.asc")).unwrap();
    assert!(
        d.api_as(Some(("dev", "dev-pw")), &["set_user_key", &uploader])
            .0
    );
    d.api_ok(&["uploader_activate", "dev"]);
}

/// PUTs files to /incoming as dput's http method does (one request per file, the .changes
/// last): for broken twins that dput itself would refuse to send.
pub(crate) fn put_upload(d: &Daemon, files: &[PathBuf]) {
    let mut files = files.to_vec();
    files.sort_by_key(|f| f.to_string_lossy().ends_with(".changes"));
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&f).unwrap();
        let mut req = format!(
            "PUT /incoming/{name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            data.len()
        )
        .into_bytes();
        req.extend_from_slice(&data);
        let addr = d.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(&req).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 201"), "{name}: {answer}");
    }
}

#[test]
fn dput_uploads_are_accepted_or_rejected_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let d = Daemon::start(&home);
    // Uploads need a signature by a user's key here.
    require_signed_uploads(&d);
    // Users whose keys expired or were revoked since.
    for (user, key) in [("old", "expired.asc"), ("gone", "revoked.asc")] {
        d.api_ok(&["user_add", user, "--password", "pw"]);
        let key = std::fs::read_to_string(fixtures().join("keys").join(key)).unwrap();
        let (ok, out) = d.api_as(Some((user, "pw")), &["set_user_key", &key]);
        assert!(ok, "{out}");
    }
    // Staff activates the uploaders (only active uploaders' keys are in the keyring).
    for user in ["old", "gone"] {
        d.api_ok(&["uploader_activate", user]);
    }

    // Each broken twin is rejected with its own reason, and leaves nothing behind.
    let stranger = fingerprint("stranger");
    let twins: &[(&str, String)] = &[
        ("bad-signature", "signature: bad signature by key".into()),
        (
            "unknown-key",
            format!("signature: signed by unknown key {}", &stranger[24..]),
        ),
        ("expired-key", "signature: signed by expired key".into()),
        ("revoked-key", "signature: signed by revoked key".into()),
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
            "unsafe file name '../mbd-hello_1.0.orig.tar.gz'".into(),
        ),
        ("malformed-control", "expected 'Field: value'".into()),
    ];
    for (i, (twin, reason)) in twins.iter().enumerate() {
        let files = crate::util::files_ending(&fixtures().join("broken").join(twin), "");
        put_upload(&d, &files);
        let events = wait_for_events(&d, i + 1);
        let e = &events[i];
        assert_eq!(e["kind"], "REJECTED", "{twin}: {e}");
        let why = e["reason"].as_str().unwrap();
        assert!(
            why.starts_with("mbd-hello_1.0-1~test12+1_source.changes")
                && why.contains(reason.as_str()),
            "{twin}: expected '{reason}' in '{why}'"
        );
        let owned = matches!(*twin, "tampered-file" | "missing-file" | "wrong-size");
        after_rejection(&home, twin, owned);
    }
    // The policy rules, on an unsigned upload to a repository that allows that.
    d.api_ok(&["set_repository", "test", "--allow-unauthenticated-uploads"]);
    let work = dir.path().join("work");
    let policy = dir.path().join("policy");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&policy).unwrap();
    let unsigned = fixtures().join("broken/unsigned");
    let text =
        std::fs::read_to_string(unsigned.join("mbd-hello_1.0-1~test12+1_source.changes")).unwrap();
    let policy_cases = [
        (
            text.replace(
                "Distribution: bookworm-test-unstable",
                "Distribution: bookworm-test-testing",
            ),
            "suite 'testing' of bookworm-test-testing is not uploadable",
        ),
        (
            text.replace(
                "Distribution: bookworm-test-unstable",
                "Distribution: bookworm-test-unstable-rollback0",
            ),
            "is a rollback distribution",
        ),
        (
            text.replace("Version: 1.0-1~test12+1", "Version: 1.0-1"),
            "does not match the version rule of bookworm-test-unstable",
        ),
        (
            text.replace(
                "Distribution: bookworm-test-unstable",
                "Distribution: sid-test-unstable",
            ),
            "No distribution for codename 'sid' in repository 'test'",
        ),
    ];
    for (k, (changes, reason)) in policy_cases.iter().enumerate() {
        let mut files = crate::util::files_ending(&unsigned, "");
        files.retain(|f| !f.to_string_lossy().ends_with(".changes"));
        let c = policy.join("mbd-hello_1.0-1~test12+1_source.changes");
        std::fs::write(&c, changes).unwrap();
        files.push(c);
        put_upload(&d, &files);
        let events = wait_for_events(&d, twins.len() + k + 1);
        let e = events.last().unwrap();
        assert_eq!(e["kind"], "REJECTED", "{e}");
        assert!(e["reason"].as_str().unwrap().contains(reason), "{e}");
        // Rejected before the rules that come after the target distribution: not trusted.
        after_rejection(&home, reason, reason.contains("version rule"));
    }
    d.api_ok(&["set_repository", "test"]);
    let decided_before = twins.len() + policy_cases.len();
    let ls = json(&d.api_ok(&["ls", "mbd-hello"]));
    assert_eq!(
        ls,
        serde_json::json!({}),
        "rejected uploads changed the store"
    );

    // The real dput, http method, a correctly signed upload.
    for f in crate::util::files_ending(&fixtures().join("pkg"), "") {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("mbd-hello_1.0-1~test12+1") || name == "mbd-hello_1.0.orig.tar.gz" {
            std::fs::copy(&f, work.join(&name)).unwrap();
        }
    }
    let dput_cf = work.join("dput.cf");
    let dput_section = d.api_ok(&["dput_conf"]);
    std::fs::write(
        &dput_cf,
        format!("{dput_section}allow_unsigned_uploads = 1\n"),
    )
    .unwrap();
    let section = dput_section
        .lines()
        .next()
        .unwrap()
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let (ok, out) = crate::util::run(
        std::process::Command::new("dput")
            .args(["-u", "-c"])
            .arg(&dput_cf)
            .arg(&section)
            .arg(work.join("mbd-hello_1.0-1~test12+1_source.changes")),
    );
    assert!(ok, "dput failed:\n{out}");
    let events = wait_for_events(&d, decided_before + 1);
    let accepted = events.last().unwrap();
    assert_eq!(accepted["kind"], "ACCEPTED", "{accepted}");
    assert_eq!(accepted["distribution"], "bookworm-test-unstable");
    let packaging = json(&d.api_ok(&["events", "--type", "PACKAGING", "--source", "mbd-hello"]));
    assert_eq!(packaging.as_array().unwrap().len(), 1, "{packaging}");
    let queued = home.join("var/queue/mbd-hello_1.0-1~test12+1");
    for name in [
        "mbd-hello_1.0-1~test12+1_source.changes",
        "mbd-hello_1.0-1~test12+1.dsc",
        "mbd-hello_1.0.orig.tar.gz",
        "mbd-hello_1.0-1~test12+1.debian.tar.xz",
    ] {
        assert_eq!(
            std::fs::read(queued.join(name)).unwrap(),
            std::fs::read(work.join(name)).unwrap(),
            "{name}"
        );
    }
    wait_incoming_empty(&home, "the accepted upload");
    // The same upload again is refused: it already waits for its builds.
    let (ok, out) = crate::util::run(
        std::process::Command::new("dput")
            .args(["-u", "-f", "-c"])
            .arg(&dput_cf)
            .arg(&section)
            .arg(work.join("mbd-hello_1.0-1~test12+1_source.changes")),
    );
    assert!(ok, "dput failed:\n{out}");
    let events = wait_for_events(&d, decided_before + 2);
    let again = events.last().unwrap();
    assert_rejected(again, "already accepted");
    // Names that could escape incoming never get in.
    let (code, _, _) = d.raw("PUT /incoming/..%2Fx HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx");
    assert!(code == 400 || code == 404, "{code}");
    let (code, _, _) = d.raw("PUT /incoming/.hidden HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx");
    assert_eq!(code, 400);
}

#[test]
fn a_repository_takes_uploads_only_while_active_and_its_check_finds_damage() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let d = Daemon::start(&home);
    let label = |d: &Daemon| {
        json(&d.api_ok(&["config_objects", "--kind", "repository"]))["repository"][0]["label"]
            .clone()
    };
    assert_eq!(label(&d), "Active (C)");
    d.api_ok(&["config_action", "repository", "test", "deactivate"]);
    assert_eq!(label(&d), "Prepared (C)");
    put_upload(&d, &source_upload());
    let events = wait_for_events(&d, 1);
    assert_rejected(&events[0], "repository 'test' is not active (Prepared (C))");
    // A damaged index (and the by-hash copy it is a link of) fails the check, naming the
    // file; prepare publishes it anew and the repository passes again.
    let packages =
        home.join("repositories/test/dists/bookworm-test-unstable/main/binary-amd64/Packages");
    std::fs::write(&packages, b"Package: damaged\n").unwrap();
    let (ok, out) = d.api(&["config_action", "repository", "test", "check"]);
    assert!(
        !ok && out.contains("binary-amd64/Packages: 17 bytes, InRelease says"),
        "{out}"
    );
    assert_eq!(label(&d), "Prepared (x)");
    let (ok, out) = d.api(&["config_action", "repository", "test", "activate"]);
    assert!(ok, "{out}");
    assert_eq!(
        label(&d),
        "Prepared (A)",
        "activates on its next good check"
    );
    d.api_ok(&["config_action", "repository", "test", "remove"]);
    assert_eq!(label(&d), "Removed");
    d.api_ok(&["config_action", "repository", "test", "pca"]);
    assert_eq!(label(&d), "Active (C)");
    assert_ne!(std::fs::read(&packages).unwrap(), b"Package: damaged\n");
    // Active again: the same upload is accepted.
    put_upload(&d, &source_upload());
    let events = wait_for_events(&d, 2);
    assert_eq!(events[1]["kind"], "ACCEPTED", "{events:?}");
    let (ok, out) = d.api(&["config_action", "repository", "nosuch", "check"]);
    assert!(!ok && out.contains("nosuch"), "{out}");
    // The setup page: staff only; the repository with its status and its action buttons,
    // which run the action and come back with a message.
    let (code, _, _) = d.get("/ui/setup", &[]);
    assert_eq!(code, 401);
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("admin:{ADMIN_PASSWORD}")
        )
    );
    let (code, _, page) = d.get("/ui/setup", &[("Authorization", &basic)]);
    let page = String::from_utf8_lossy(&page);
    assert_eq!(code, 200, "{page}");
    for want in [
        "<td><a href=\"/ui/repository/test\">test</a></td><td>Default</td><td>bookworm</td><td>Active (C)</td>",
        "id=\"repository-test-check\"",
        "id=\"setup-form\"",
        "id=\"setup-current\"",
    ] {
        assert!(
            page.contains(want),
            "'{want}' not on the setup page:\n{page}"
        );
    }
    let form = "kind=repository&id=test&action=deactivate&next=%2Fui%2Fsetup";
    let (code, head, _) = d.raw(&format!(
        "POST /ui/api/config_action HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {basic}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    ));
    assert_eq!(code, 303, "{head}");
    assert!(head.contains("location: /ui/setup?message="), "{head}");
    assert_eq!(label(&d), "Prepared (C)");
}

#[test]
fn setup_moves_the_ftp_endpoint_from_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let mut d = Daemon::start(&home);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let want = format!("127.0.0.1:{port}");
    let settings = home.join("etc/mbd.toml");
    let before = std::fs::read_to_string(&settings).unwrap();
    // Report only: the difference, nothing written.
    let r = d.api_ok(&["setup", "--ftp-endpoint", &want]);
    assert!(
        r.contains("daemon       ftp_endpoints")
            && r.contains(&format!("ftp_endpoints: [0.0.0.0:8067] → [{want}]")),
        "{r}"
    );
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), before);
    let (ok, out) = d.api(&["setup", "--ftp-endpoint", "nohost", "--update"]);
    assert!(
        !ok && out.contains("FTP endpoint 'nohost' is not '<host>:<port>' or 'none'"),
        "{out}"
    );
    let r = d.api_ok(&["setup", "--ftp-endpoint", &want, "--update"]);
    assert!(r.contains("[updated]") && r.contains("next start"), "{r}");
    assert!(
        std::fs::read_to_string(&settings)
            .unwrap()
            .contains(&format!("ftp_endpoints = [\"{want}\"]")),
    );
    d.stop();
    // Started without an --ftp-endpoint of its own, the daemon serves FTP where setup said.
    let mut d = Daemon::spawn_full(
        &home,
        None,
        &["daemon", "--http-endpoint", "127.0.0.1:0"],
        &["--no-default-chroot"],
    );
    d.wait_ready();
    let mut ftp = std::net::TcpStream::connect(&want).unwrap();
    let mut greeting = [0u8; 3];
    ftp.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"220");
    let conf = d.api_ok(&["dput_conf"]);
    assert!(conf.contains(&format!("fqdn     = {want}\n")), "{conf}");
}

#[test]
fn uploads_waiting_through_maintenance_and_a_kill_are_decided_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let mut d = Daemon::start(&home);
    d.api_ok(&["stop"]);
    let files = source_upload();
    put_upload(&d, &files);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(json(&d.api_ok(&["events"])), serde_json::json!([]));
    // A file being received when the daemon dies stays hidden and never counts as uploaded.
    std::fs::write(home.join("var/incoming/.part-interrupted"), b"half").unwrap();
    d.kill9();
    let d = Daemon::start(&home);
    let events = wait_for_events(&d, 1);
    assert_eq!(events[0]["kind"], "ACCEPTED", "{events:?}");
    assert!(home.join("var/queue/mbd-hello_1.0-1~test12+1").is_dir());
    wait_incoming_empty(&home, "the start");
    let left: Vec<_> = std::fs::read_dir(home.join("var/incoming"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.is_empty(),
        "a partial file survived the start: {left:?}"
    );
}

/// The files of mbd-hello 1.0-1's source upload, as dput sends them.
pub(crate) fn source_upload() -> Vec<PathBuf> {
    crate::util::files_ending(&fixtures().join("pkg"), "")
        .into_iter()
        .filter(|f| {
            let n = f.file_name().unwrap().to_string_lossy();
            (n.starts_with("mbd-hello_1.0-1~test12+1")
                && !n.contains("_amd64.")
                && !n.contains("_all."))
                || n == "mbd-hello_1.0.orig.tar.gz"
        })
        .collect()
}

/// Reads a server-sent event stream until a line equals `until`; returns what was read.
fn read_stream(d: &Daemon, path: &str, until: &str) -> std::thread::JoinHandle<String> {
    let addr = d.url.trim_start_matches("http://").to_string();
    let (path, until) = (path.to_string(), until.to_string());
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let mut reader = std::io::BufReader::new(s);
        let mut seen = String::new();
        let mut told = false;
        loop {
            let mut line = String::new();
            match std::io::BufRead::read_line(&mut reader, &mut line) {
                Ok(0) | Err(_) => return seen,
                Ok(_) => {}
            }
            if !told && line.trim().is_empty() {
                // The response head is over: the stream is subscribed.
                let _ = tx.send(());
                told = true;
            }
            seen.push_str(&line);
            if line.trim_end() == until {
                // Read the data line that follows, then stop.
                let mut data = String::new();
                let _ = std::io::BufRead::read_line(&mut reader, &mut data);
                let _ = std::io::BufRead::read_line(&mut reader, &mut data);
                seen.push_str(&data);
                return seen;
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the stream answered");
    handle
}

#[test]
fn decisions_reach_event_files_hooks_and_the_live_stream() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let hooks = home.join("etc/event-hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let record = home.join("hooked");
    std::fs::write(
        hooks.join("10-record"),
        format!("#!/bin/sh\ncat \"$1\" >> {}\n", record.display()),
    )
    .unwrap();
    std::fs::write(hooks.join("05-fails"), "#!/bin/sh\nexit 3\n").unwrap();
    std::fs::write(hooks.join("README"), "not executable, not run\n").unwrap();
    for h in ["10-record", "05-fails"] {
        std::fs::set_permissions(
            hooks.join(h),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    let d = Daemon::start(&home);
    let live = read_stream(
        &d,
        "/api/events/stream?source=mbd-hello",
        "event: PACKAGING",
    );
    put_upload(&d, &source_upload());
    let seen = live.join().unwrap();
    assert!(seen.contains("text/event-stream"), "{seen}");
    assert!(seen.contains("event: ACCEPTED\n"), "{seen}");
    assert!(seen.contains("\"source\":\"mbd-hello\""), "{seen}");
    // Each decision is a JSON file, and went through the hooks (the failing one aside).
    let files: Vec<_> = std::fs::read_dir(home.join("var/events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    let started = Instant::now();
    loop {
        let hooked = std::fs::read_to_string(&record).unwrap_or_default();
        if hooked.contains("\"ACCEPTED\"") && hooked.contains("\"PACKAGING\"") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "hooks ran: {hooked}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(d.log().contains("event hook failed"), "{}", d.log());
    // A late client replays what it missed.
    let replay = read_stream(
        &d,
        "/api/events/stream?since=0&type=ACCEPTED",
        "event: ACCEPTED",
    );
    assert!(replay.join().unwrap().contains("mbd-hello"));
    let (code, _, _) = d.get("/api/events/stream?type=NOPE", &[]);
    assert_eq!(code, 400);
}

#[test]
fn dput_over_ftp_into_a_write_only_incoming() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let d = Daemon::start(&home);
    let conf = d.api_ok(&["dput_conf"]);
    let ftp = ftp_address(&conf);
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    for f in source_upload() {
        std::fs::copy(&f, work.join(f.file_name().unwrap())).unwrap();
    }
    let cf = work.join("dput.cf");
    std::fs::write(
        &cf,
        conf.replace(
            "login    = anonymous\n",
            "login    = anonymous\nallow_unsigned_uploads = 1\n",
        ),
    )
    .unwrap();
    let (ok, out) = crate::util::run(
        std::process::Command::new("dput")
            .args(["-u", "-c"])
            .arg(&cf)
            .arg("mbd-testhost-ftp")
            .arg(work.join("mbd-hello_1.0-1~test12+1_source.changes")),
    );
    assert!(ok, "dput over ftp failed:\n{out}");
    let events = wait_for_events(&d, 1);
    assert_eq!(events[0]["kind"], "ACCEPTED", "{events:?}");
    assert_eq!(events[0]["source"], "mbd-hello");

    // What else an FTP client tries is refused, and nothing is listed or served.
    let (host, port) = ftp.rsplit_once(':').unwrap();
    let script = format!(
        r#"
import ftplib, io
f = ftplib.FTP()
f.connect("{host}", {port}, timeout=20)
f.login()
def attempt(name, call):
    try:
        call()
        print(name, "allowed")
    except ftplib.all_errors as e:
        print(name, "refused", str(e).split()[0])
f.cwd("/incoming")
f.storbinary("STOR note.txt", io.BytesIO(b"hello"))
print("LIST", len(f.nlst()))
attempt("RETR", lambda: f.retrbinary("RETR note.txt", lambda b: None))
attempt("DELE", lambda: f.delete("note.txt"))
attempt("RNFR", lambda: f.rename("note.txt", "other.txt"))
attempt("MKD", lambda: f.mkd("sub"))
attempt("CWD", lambda: f.cwd("/etc"))
attempt("STOR-escape", lambda: f.storbinary("STOR ../escape.txt", io.BytesIO(b"x")))
# A file no upload claims yet (an interrupted transfer) is replaced by a retry.
attempt("STOR-retry", lambda: f.storbinary("STOR note.txt", io.BytesIO(b"other")))
# Active mode (the server would connect where PORT says) is refused: passive only.
f.set_pasv(False)
attempt("ACTIVE", lambda: f.storbinary("STOR active.txt", io.BytesIO(b"active")))
f.quit()
"#
    );
    let (ok, out) =
        crate::util::run(std::process::Command::new("/usr/bin/python3").args(["-c", &script]));
    assert!(ok, "{out}");
    for expected in [
        "LIST 0",
        "RETR refused",
        "DELE refused",
        "RNFR refused",
        "MKD refused",
        "CWD refused",
        "STOR-escape refused",
        "STOR-retry allowed",
        "ACTIVE refused 5",
    ] {
        assert!(out.contains(expected), "expected '{expected}' in:\n{out}");
    }
    assert_eq!(
        std::fs::read(home.join("var/incoming/note.txt")).unwrap(),
        b"other"
    );
    assert!(!home.join("var/escape.txt").exists());
    assert!(!home.join("var/incoming/active.txt").exists());
}

/// `n` distinct unsigned uploads made by `fixtures/gen-uploads.sh`; the directory of each.
pub(crate) fn generated_uploads(dir: &Path, n: usize, binary: bool) -> Vec<PathBuf> {
    generated(dir, n, if binary { "--binary" } else { "--source" })
}

/// `n` uploads of a kind (`--source`, `--binary`, `--failing`) from `fixtures/gen-uploads.sh`.
pub(crate) fn generated(dir: &Path, n: usize, mode: &str) -> Vec<PathBuf> {
    generated_with(dir, n, mode, &[])
}

/// [`generated`] with environment for the script (`MBD_GEN_NAME`, `MBD_GEN_OPTION`).
pub(crate) fn generated_with(
    dir: &Path,
    n: usize,
    mode: &str,
    env: &[(&str, &str)],
) -> Vec<PathBuf> {
    let name = env
        .iter()
        .find(|(k, _)| *k == "MBD_GEN_NAME")
        .map_or("mbd-load", |(_, v)| v);
    let out = dir.join(format!("uploads{mode}-{name}"));
    let mut cmd = std::process::Command::new(fixtures().join("gen-uploads.sh"));
    cmd.arg(&out).arg(n.to_string()).arg(mode);
    cmd.envs(env.iter().copied());
    let (ok, text) = crate::util::run(&mut cmd);
    assert!(ok, "gen-uploads.sh failed:\n{text}");
    (1..=n).map(|i| out.join(i.to_string())).collect()
}

pub(crate) fn changes_in(dir: &Path) -> PathBuf {
    crate::util::files_ending(dir, ".changes")
        .pop()
        .unwrap_or_else(|| panic!("no .changes in {}", dir.display()))
}

/// The names in a directory, sorted (without the `.upload` logs dput leaves).
pub(crate) fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".upload"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Every generated upload waits in its queue directory, byte for byte, exactly once.
fn assert_all_queued(home: &Path, uploads: &[PathBuf], events: &[serde_json::Value]) {
    let mut accepted = std::collections::BTreeMap::new();
    for e in events {
        assert_eq!(e["kind"], "ACCEPTED", "{e}");
        *accepted
            .entry(e["source"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(accepted.len(), uploads.len(), "{accepted:?}");
    assert!(accepted.values().all(|n| *n == 1), "{accepted:?}");
    for u in uploads {
        let changes = changes_in(u);
        let name = changes.file_name().unwrap().to_string_lossy().into_owned();
        let stem = name.strip_suffix("_source.changes").unwrap();
        let queued = home.join("var/queue").join(stem);
        assert_eq!(names_in(&queued), names_in(u), "{}", queued.display());
        for f in names_in(u) {
            assert_eq!(
                std::fs::read(queued.join(&f)).unwrap(),
                std::fs::read(u.join(&f)).unwrap(),
                "{f}"
            );
        }
    }
    assert_eq!(names_in(&home.join("var/incoming")), Vec::<String>::new());
    let queue = names_in(&home.join("var/queue"));
    assert_eq!(queue.len(), uploads.len(), "{queue:?}");
}

#[test]
fn a_hundred_concurrent_uploads_over_http_and_ftp_are_all_decided() {
    const N: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let uploads = generated_uploads(dir.path(), N, false);
    let d = Daemon::start(&home);
    let cf = dir.path().join("dput.cf");
    let conf = d.api_ok(&["dput_conf"]);
    std::fs::write(
        &cf,
        conf.replace(
            "[mbd-testhost]\n",
            "[mbd-testhost]\nallow_unsigned_uploads = 1\n",
        )
        .replace(
            "[mbd-testhost-ftp]\n",
            "[mbd-testhost-ftp]\nallow_unsigned_uploads = 1\n",
        ),
    )
    .unwrap();
    // All at once: even ones over HTTP, odd ones over FTP, each by its own dput.
    let children: Vec<_> = uploads
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let section = if i % 2 == 0 {
                "mbd-testhost"
            } else {
                "mbd-testhost-ftp"
            };
            std::process::Command::new("dput")
                .args(["-u", "-c"])
                .arg(&cf)
                .arg(section)
                .arg(changes_in(u))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "dput of upload {}: {}{}",
            i + 1,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let events = wait_for_events(&d, N);
    assert_all_queued(&home, &uploads, &events);
    let packaging = json(&d.api_ok(&["events", "--type", "PACKAGING"]));
    assert_eq!(packaging.as_array().unwrap().len(), N);
}

/// PUTs every file of a directory (the .changes last).
fn put_files(d: &Daemon, dir: &Path) {
    put_upload(d, &crate::util::files_ending(dir, ""));
}

#[test]
fn kill_9_during_uploads_and_acceptance_loses_nothing() {
    // 10 uploads over HTTP first, then 5 more before each of 10 restarts.
    const FIRST: usize = 10;
    const BATCH: usize = 5;
    const ROUNDS: usize = 10;
    const N: usize = FIRST + ROUNDS * BATCH;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    // Leftovers of interrupted uploads go after 2 s here.
    std::fs::create_dir_all(home.join("etc")).unwrap();
    std::fs::write(
        home.join("etc/mbd.toml"),
        "http_endpoints = [\"127.0.0.1:0\"]\nftp_endpoints = []\nlog_level = \"info\"\nbuild_slots = 1\nincoming_orphan_age = 2\n",
    )
    .unwrap();
    let uploads = generated_uploads(dir.path(), N, false);
    let mut d = Daemon::start(&home);
    // Complete uploads wait (maintenance) ...
    d.api_ok(&["stop"]);
    for u in &uploads[..FIRST] {
        put_files(&d, u);
    }
    // ... while one file is half sent and another upload lacks its .changes.
    let addr = d.url.trim_start_matches("http://").to_string();
    let mut half = std::net::TcpStream::connect(&addr).unwrap();
    half.write_all(
        b"PUT /incoming/mbd-late_1.0.tar.xz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
    )
    .unwrap();
    half.write_all(&[7u8; 4000]).unwrap();
    half.flush().unwrap();
    let lonely = uploads[0].parent().unwrap().join("lonely");
    std::fs::create_dir_all(&lonely).unwrap();
    std::fs::write(lonely.join("mbd-late_1.0.dsc"), "Format: 3.0 (native)\n").unwrap();
    put_files(&d, &lonely);
    let started = Instant::now();
    while !names_in(&home.join("var/incoming"))
        .iter()
        .any(|n| n.starts_with(".part-"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no partial file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    d.kill9();
    drop(half);
    // Kill again at moments spread over the pass that decides waiting uploads at start
    // (deciding one takes a few milliseconds). Before each start, more complete uploads wait,
    // as if they had arrived just before a crash.
    let mut seed: u64 = 0x6b69_6c6c;
    let mut queued = Vec::new();
    for round in 0..=ROUNDS {
        if round > 0 {
            for u in &uploads[FIRST + (round - 1) * BATCH..FIRST + round * BATCH] {
                for f in names_in(u) {
                    std::fs::copy(u.join(&f), home.join("var/incoming").join(&f)).unwrap();
                }
            }
        }
        let mut d = Daemon::spawn(&home);
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let delay = (seed >> 33) % 60;
        std::thread::sleep(Duration::from_millis(delay));
        d.kill9();
        queued.push((delay, names_in(&home.join("var/queue")).len()));
    }
    eprintln!("queue directories after each kill: {queued:?}");
    // A kill may come before a start has cleaned up; a start that serves has.
    let d = Daemon::start(&home);
    let incoming = names_in(&home.join("var/incoming"));
    assert!(
        !incoming.iter().any(|n| n.starts_with(".part-")),
        "a partial file survived a start: {incoming:?}"
    );
    let events = wait_for_events(&d, N);
    // The file without its .changes goes after its age.
    let started = Instant::now();
    while names_in(&home.join("var/incoming")).contains(&"mbd-late_1.0.dsc".to_string()) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "orphan not removed: {:?}",
            names_in(&home.join("var/incoming"))
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_all_queued(&home, &uploads, &events);
    let packaging = json(&d.api_ok(&["events", "--type", "PACKAGING"]));
    assert_eq!(packaging.as_array().unwrap().len(), N, "{packaging}");
    assert!(
        !names_in(&home.join("var/queue"))
            .iter()
            .any(|n| n.starts_with('.')),
        "a half-filled queue directory survived"
    );
}

/// An archive that answers every request after `delay` (404), counting the requests.
fn slow_archive(delay: Duration) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                std::thread::sleep(delay);
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    (port, asked)
}

/// Fails unless `f` is done within a second.
fn at_once(what: &str, f: &dyn Fn()) {
    let t = Instant::now();
    f();
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "{what} waited {took:?} for a writer"
    );
}

#[test]
fn reads_answer_while_a_write_holds_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_with_packages(&home);
    // Every write holds the write token 5 s longer (test hook).
    let d = std::sync::Arc::new(Daemon::start_holding_writes(&home, 5));
    let spawned = Instant::now();
    let writer = {
        let d = d.clone();
        std::thread::spawn(move || d.api(&["migrate", "mbd-hello", "bookworm-test-unstable"]))
    };
    // The migration (after other writers, housekeeping's, each holding the token 5 s) is
    // done and then holds the token: testing shows it.
    let waiting = Instant::now();
    loop {
        let ls = json(&d.api_ok(&["ls", "mbd-hello"]));
        if ls["test"]["bookworm-test-testing"]["version"] == "1.0-2~test12+1" {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(40),
            "the migration did not happen: {ls}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Meanwhile every kind of read answers at once: a published file, status, ls, a log page.
    for _ in 0..3 {
        at_once("InRelease", &|| {
            let (code, _, body) = d.get(
                "/repositories/test/dists/bookworm-test-testing/InRelease",
                &[],
            );
            assert_eq!(code, 200);
            assert!(String::from_utf8_lossy(&body).contains("Suite: bookworm-test-testing"));
        });
        at_once("status", &|| {
            json(&d.api_ok(&["status"]));
        });
        at_once("ls", &|| {
            let ls = json(&d.api_ok(&["ls", "mbd-hello"]));
            assert_eq!(
                ls["test"]["bookworm-test-unstable"]["version"],
                "1.0-2~test12+1"
            );
        });
        at_once("a log page", &|| {
            let (code, _, _) = d.get("/logs/mbd-hello_1.0-2~test12+1/amd64", &[]);
            assert_eq!(code, 404);
        });
        at_once("the home page", &|| {
            let (code, _, _) = d.get("/", &[]);
            assert_eq!(code, 200);
        });
    }
    assert!(
        !writer.is_finished(),
        "the migration gave the token back before the reads: they proved nothing"
    );
    let (ok, out) = writer.join().unwrap();
    assert!(ok, "{out}");
    // The migration is seen (committed) before its writer gives the token back, so only the
    // call as a whole is known to take the hook's 5 s.
    assert!(
        spawned.elapsed() >= Duration::from_secs(5),
        "the hook did not hold the token"
    );
}

#[test]
fn writers_do_not_wait_for_the_fetches_of_a_port_or_a_setup() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_with_packages(&home);
    allow_private_fetches(&home);
    let d = std::sync::Arc::new(Daemon::start(&home));
    let (port, asked) = slow_archive(Duration::from_secs(3));
    let wait_asked = |n: usize, what: &str| {
        let started = Instant::now();
        while asked.load(std::sync::atomic::Ordering::SeqCst) < n {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{what} never asked the archive"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        started
    };
    // port_ext fetches the .dsc from an archive that takes 3 s per answer; a migration and
    // the reads meanwhile are done at once.
    let ported = {
        let d = d.clone();
        let url = format!("http://127.0.0.1:{port}/pool/x_1.0.dsc");
        std::thread::spawn(move || d.api(&["port_ext", &url, "bookworm-test-unstable"]))
    };
    let started = wait_asked(1, "port_ext");
    at_once("a migration during port_ext", &|| {
        d.api_ok(&["migrate", "mbd-hello", "bookworm-test-unstable"]);
    });
    at_once("ls during port_ext", &|| {
        let ls = json(&d.api_ok(&["ls", "mbd-hello"]));
        assert_eq!(
            ls["test"]["bookworm-test-testing"]["version"],
            "1.0-2~test12+1"
        );
    });
    assert!(
        !ported.is_finished(),
        "port_ext ended before the migration: it proved nothing"
    );
    let (ok, out) = ported.join().unwrap();
    assert!(!ok && out.contains("404"), "{out}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "port_ext did not wait: {out}"
    );

    // setup checks a source against the slow archive without holding the write token.
    let setup = {
        let d = d.clone();
        let archive = format!("http://127.0.0.1:{port}/debian/");
        std::thread::spawn(move || {
            d.api(&[
                "setup",
                "--from-origins",
                "Debian",
                "--archives",
                &archive,
                "--sources",
                "bookworm",
                "--update",
                "--pca",
            ])
        })
    };
    let before = asked.load(std::sync::atomic::Ordering::SeqCst);
    let started = wait_asked(before + 1, "setup");
    at_once("a migration during the setup", &|| {
        d.api_ok(&["migrate", "mbd-hello", "bookworm-test-testing"]);
    });
    assert!(
        !setup.is_finished(),
        "the setup ended before the migration: it proved nothing"
    );
    let (_ok, report) = setup.join().unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "the setup did not wait for the archive:\n{report}"
    );

    // A source check (config_action) fetches without the token too.
    let check = {
        let d = d.clone();
        std::thread::spawn(move || d.api(&["config_action", "source", "bookworm", "check"]))
    };
    let before = asked.load(std::sync::atomic::Ordering::SeqCst);
    wait_asked(before + 1, "the source check");
    at_once("a snapshot during a source check", &|| {
        d.api_ok(&["snapshot_create", "bookworm-test-unstable", "s1"]);
    });
    assert!(
        !check.is_finished(),
        "the source check ended before the snapshot: it proved nothing"
    );
    let (ok, out) = check.join().unwrap();
    assert!(
        !ok,
        "a source at an archive that answers 404 passed its check: {out}"
    );
}

/// The uploads of later mbd-hello revisions (fixtures/gen-revisions.sh): `without-orig`
/// (1.0-2, the orig tarball left out) and `changed-orig` (1.0-3, another orig of that name).
pub(crate) fn revisions(dir: &Path) -> PathBuf {
    let out = dir.join("revisions");
    let (ok, text) =
        crate::util::run(std::process::Command::new(fixtures().join("gen-revisions.sh")).arg(&out));
    assert!(ok, "gen-revisions.sh failed:\n{text}");
    out
}

#[test]
fn a_new_revision_without_its_orig_tarball_is_built_from_the_pool_copy_or_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let revisions = revisions(dir.path());
    let d = Daemon::start(&home);
    d.api_ok(&["set_repository", "test", "--allow-unauthenticated-uploads"]);
    let orig = "mbd-hello_1.0.orig.tar.gz";
    let without = revisions.join("without-orig");
    assert!(!names_in(&without).contains(&orig.to_string()));
    // Nothing in the pool yet: rejected before anything is queued, naming the file.
    put_files(&d, &without);
    let events = wait_for_events(&d, 1);
    assert_rejected(
        &events[0],
        &format!(
            "mbd-hello_1.0-2~test12+1.dsc lists {orig} which neither the upload nor the pool of repository test has; upload with the orig tarball (dpkg-buildpackage -sa)"
        ),
    );
    assert!(
        events[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("mbd-hello_1.0-2~test12+1_source.changes: "),
        "{}",
        events[0]
    );
    assert_eq!(names_in(&home.join("var/queue")), Vec::<String>::new());
    assert_eq!(names_in(&home.join("var/incoming")), Vec::<String>::new());
    // 1.0-1 with its orig tarball in the repository: the same upload is accepted, and the
    // pool copy waits with it for the build.
    let first = pkg("mbd-hello_1.0-1~test12+1_amd64.changes");
    mbd_ok(
        &home,
        &[
            "repo",
            "include",
            "bookworm-test-unstable",
            first.to_str().unwrap(),
        ],
    );
    put_files(&d, &without);
    let events = wait_for_events(&d, 2);
    assert_eq!(events[1]["kind"], "ACCEPTED", "{events:?}");
    let queued = home.join("var/queue/mbd-hello_1.0-2~test12+1");
    assert_eq!(
        std::fs::read(queued.join(orig)).unwrap(),
        std::fs::read(pkg(orig)).unwrap()
    );
    // Another file under the orig's name: rejected, naming both checksums.
    put_files(&d, &revisions.join("changed-orig"));
    let events = wait_for_events(&d, 3);
    let sha256 = |p: &Path| {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(std::fs::read(p).unwrap()))
    };
    assert_rejected(
        &events[2],
        &format!(
            "{orig}: the pool of repository test has a different file of that name (SHA256 {}, uploaded {})",
            sha256(&pkg(orig)),
            sha256(&revisions.join("changed-orig").join(orig))
        ),
    );
    assert!(!home.join("var/queue/mbd-hello_1.0-3~test12+1").exists());
    assert_eq!(names_in(&home.join("var/incoming")), Vec::<String>::new());
}

#[test]
fn binary_only_uploads_are_refused_unless_the_repository_takes_them() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let uploads = generated_uploads(dir.path(), 2, true);
    let d = Daemon::start(&home);
    put_files(&d, &uploads[0]);
    let events = wait_for_events(&d, 1);
    assert_rejected(
        &events[0],
        "binary-only uploads are not enabled for repository test",
    );
    assert_eq!(names_in(&home.join("var/incoming")), Vec::<String>::new());
    d.api_ok(&[
        "set_repository",
        "test",
        "--allow-unauthenticated-uploads",
        "--allow-binary-uploads",
    ]);
    put_files(&d, &uploads[1]);
    let events = wait_for_events(&d, 2);
    assert_eq!(events[1]["kind"], "INSTALLED", "{events:?}");
    assert_eq!(events[1]["source"], "mbd-load-2");
    assert_eq!(names_in(&home.join("var/incoming")), Vec::<String>::new());
    // It is in the published distribution: apt gets it.
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
    let (ok, out) = apt.get(&["download", "mbd-load-2"]);
    assert!(ok, "{out}");
    assert_eq!(
        std::fs::read(apt.downloaded("mbd-load-2_1.0~test12+1_all.deb")).unwrap(),
        std::fs::read(uploads[1].join("mbd-load-2_1.0~test12+1_all.deb")).unwrap()
    );
}

#[test]
fn uploads_over_https_and_ftps_need_a_login_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    // A self-signed certificate for 127.0.0.1; clients trust it through SSL_CERT_FILE.
    let cert = home.join("etc/tls.crt");
    std::fs::create_dir_all(home.join("etc")).unwrap();
    let (ok, out) = crate::util::run(
        std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "30"])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(home.join("etc/tls.key"))
            .arg("-out")
            .arg(&cert),
    );
    assert!(ok, "openssl: {out}");
    std::fs::write(
        home.join("etc/mbd.toml"),
        "http_endpoints = [\"127.0.0.1:0\"]\nhttps_endpoints = [\"127.0.0.1:0\"]\nftp_endpoints = []\n\
         tls_certificate = \"etc/tls.crt\"\ntls_key = \"etc/tls.key\"\nincoming_login = true\n\
         log_level = \"info\"\nbuild_slots = 1\n",
    )
    .unwrap();
    let uploads = generated_uploads(dir.path(), 2, false);
    let d = Daemon::start(&home);
    d.api_ok(&["user_add", "dev", "--password", "dev-pw"]);
    let conf = d.api_ok(&["dput_conf"]);
    assert!(
        conf.contains("[mbd-testhost-https]\nmethod   = https\nfqdn     = 127.0.0.1:"),
        "{conf}"
    );
    // The administrator asked: the sections name that user.
    assert!(conf.contains("login    = admin\n"), "{conf}");
    let ftp = ftp_address(&conf);

    // Without a login, or with a wrong one, nothing gets in.
    let put = |auth: &str| {
        d.raw(&format!(
            "PUT /incoming/x_1.0.dsc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Length: 1\r\n\r\nx"
        ))
    };
    let (code, head, _) = put("");
    assert_eq!(code, 401, "{head}");
    assert_eq!(
        header(&head, "www-authenticate"),
        Some("Basic realm=\"mbd incoming\"")
    );
    let (code, _, _) = put("Authorization: Basic ZGV2Ondyb25n\r\n"); // dev:wrong
    assert_eq!(code, 401);
    assert_eq!(names_in(&home.join("var/incoming")), Vec::<String>::new());

    // The real dput over HTTPS: it meets the 401, asks for the password (read from stdin, as
    // there is no terminal) and sends the files again with it.
    let cf = dir.path().join("dput.cf");
    std::fs::write(
        &cf,
        conf.replace(
            "login    = admin\n",
            "login    = dev\nallow_unsigned_uploads = 1\n",
        ),
    )
    .unwrap();
    let mut dput = std::process::Command::new("setsid")
        .args(["-w", "dput", "-u", "-c"])
        .arg(&cf)
        .arg("mbd-testhost-https")
        .arg(changes_in(&uploads[0]))
        .env("SSL_CERT_FILE", &cert)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    dput.stdin.take().unwrap().write_all(b"dev-pw\n").unwrap();
    let out = dput.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dput over https: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let events = wait_for_events(&d, 1);
    assert_eq!(events[0]["kind"], "ACCEPTED", "{events:?}");
    assert_eq!(events[0]["source"], "mbd-load-1");

    // FTPS: anonymous is refused; the user logs in over TLS and stores the second upload.
    let (host, port) = ftp.rsplit_once(':').unwrap();
    let files: Vec<String> = {
        let mut f = crate::util::files_ending(&uploads[1], "");
        f.sort_by_key(|p| p.to_string_lossy().ends_with(".changes"));
        f.iter()
            .filter(|p| !p.to_string_lossy().ends_with(".upload"))
            .map(|p| format!("{:?}", p.to_str().unwrap()))
            .collect()
    };
    let script = format!(
        r#"
import ftplib, os, ssl
try:
    f = ftplib.FTP(); f.connect("{host}", {port}, timeout=20); f.login()
    print("anonymous allowed")
except ftplib.error_perm as e:
    print("anonymous refused", str(e).split()[0])
try:
    f = ftplib.FTP(); f.connect("{host}", {port}, timeout=20); f.login("dev", "dev-pw")
    print("login in clear allowed")
except ftplib.error_perm as e:
    print("login in clear refused", str(e).split()[0])
f = ftplib.FTP_TLS(context=ssl.create_default_context(cafile="{cert}"))
f.connect("{host}", {port}, timeout=20)
f.login("dev", "dev-pw")
f.prot_p()
f.cwd("/incoming")
for path in [{files}]:
    with open(path, "rb") as data:
        f.storbinary("STOR " + os.path.basename(path), data)
print("stored over TLS", f.sock.version())
f.quit()
"#,
        cert = cert.display(),
        files = files.join(", ")
    );
    let (ok, out) = crate::util::run(
        std::process::Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(&script),
    );
    assert!(ok, "ftps client: {out}\n{}", d.log());
    assert!(out.contains("anonymous refused 530"), "{out}");
    assert!(out.contains("login in clear refused 5"), "{out}");
    assert!(out.contains("stored over TLS TLSv1."), "{out}");
    let events = wait_for_events(&d, 2);
    assert_eq!(events[1]["kind"], "ACCEPTED", "{events:?}");
    assert_eq!(events[1]["source"], "mbd-load-2");
}

#[test]
fn bad_build_and_tls_settings_stop_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    std::fs::create_dir_all(home.join("etc")).unwrap();
    let base = "http_endpoints = [\"127.0.0.1:0\"]\nftp_endpoints = []\nlog_level = \"info\"\nbuild_slots = 1\n";
    let cases = [
        (
            "lintian_mode = \"strict\"\n".to_string(),
            "lintian_mode 'strict' is not disabled, ignore, errfail or warnfail",
        ),
        (
            "tls_certificate = \"etc/none.crt\"\n".to_string(),
            "set both tls_certificate and tls_key, or neither",
        ),
        (
            "tls_certificate = \"etc/none.crt\"\ntls_key = \"etc/none.key\"\n".to_string(),
            "none.crt: reading the TLS certificate",
        ),
        (
            "https_endpoints = [\"127.0.0.1:0\"]\n".to_string(),
            "needs tls_certificate and tls_key",
        ),
    ];
    for (extra, reason) in cases {
        std::fs::write(home.join("etc/mbd.toml"), format!("{base}{extra}")).unwrap();
        let (ok, out) = crate::util::run(
            mbd_command(&home, &["daemon", "--no-default-chroot"])
                .env("MBD_ADMIN_PASSWORD", ADMIN_PASSWORD),
        );
        assert!(!ok, "started with {extra}: {out}");
        let file = if reason.contains("none.crt") {
            "etc/none.crt"
        } else {
            "etc/mbd.toml"
        };
        assert!(
            out.contains(reason) && out.contains(file),
            "{extra}: expected '{file}' and '{reason}' in:\n{out}"
        );
        // Nothing was served.
        assert!(!home.join("var/run/http.url").exists());
    }
}

/// Long lists page: the home page's upload decisions 20 at a time and the builds page's
/// uploads 25 at a time, with newer/older links; times read as UTC dates with a relative
/// hint, builds with their arrival.
#[test]
fn long_lists_page_and_times_read_as_dates() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let d = Daemon::start(&home);
    // Source uploads are accepted and wait for a chroot: 30 in the build queue.
    let uploads = generated_uploads(dir.path(), 30, false);
    for u in &uploads {
        put_upload(&d, &crate::util::files_ending(u, ""));
    }
    let events = wait_for_events(&d, 30);
    let started = Instant::now();
    while json(&d.api_ok(&["builds"])).as_array().unwrap().len() < 30 {
        assert!(started.elapsed() < Duration::from_secs(60), "{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let page = |path: &str| {
        let (code, _, body) = d.get(path, &[]);
        assert_eq!(code, 200, "{path}");
        String::from_utf8(body).unwrap()
    };
    let rows = |html: &str, table: &str| {
        let t = html
            .split(&format!("<table id=\"{table}\">"))
            .nth(1)
            .unwrap();
        t.split("</table>")
            .next()
            .unwrap()
            .matches("<tr><td>")
            .count()
    };
    let decisions = json(&d.api_ok(&["events"])).as_array().unwrap().len();
    assert!(decisions >= 30, "{events:?}");
    let first = page("/");
    assert_eq!(rows(&first, "uploads"), 20);
    assert!(first.contains("<a href=\"/?page=1\">older</a>") && !first.contains(">newer<"));
    let last_page = (decisions - 1) / 20;
    let last = page(&format!("/?page={last_page}"));
    assert_eq!(rows(&last, "uploads"), decisions - 20 * last_page);
    assert!(last.contains(&format!("<a href=\"/?page={}\">newer</a>", last_page - 1)));
    assert!(!last.contains(">older<"));
    let re = regex::Regex::new(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d UTC, (just now|\d+ min ago)</td>")
        .unwrap();
    assert_eq!(re.find_iter(&first).count(), 20, "{first}");

    let builds = page("/ui/builds");
    assert_eq!(rows(&builds, "builds"), 25);
    assert!(builds.contains("Page 1 of 2") && builds.contains("href=\"/ui/builds?page=1\">older"));
    let older = page("/ui/builds?page=1");
    assert_eq!(rows(&older, "builds"), 5);
    assert!(older.contains("Page 2 of 2") && older.contains("href=\"/ui/builds?page=0\">newer"));
    // Together the pages list every upload once.
    let sources = regex::Regex::new(r#"/ui/package/(mbd-load-\d+)""#).unwrap();
    let mut listed: Vec<String> = [&builds, &older]
        .iter()
        .flat_map(|html| sources.captures_iter(html).map(|c| c[1].to_string()))
        .collect();
    listed.sort();
    listed.dedup();
    assert_eq!(listed.len(), 30, "{listed:?}");
    // Every page loads the live script, which the policy allows from here only.
    let (_, head, _) = d.get("/", &[]);
    assert!(
        head.contains("script-src 'self'; connect-src 'self'"),
        "{head}"
    );
    assert!(first.contains("<script src=\"/static/live.js\" defer></script>"));
    let (code, _, js) = d.get("/static/live.js", &[]);
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&js).contains("new EventSource(\"/api/events/stream\")"));
}
