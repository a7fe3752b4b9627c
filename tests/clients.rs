//! The client helpers of the `mbd` binary, used as a CI pipeline or an administrator would:
//! `mbd events` waiting for an upload's outcome, `mbd self-signed-certificate` for HTTPS.

use crate::daemon::{Daemon, changes_in, put_upload, setup_home, wait_for_events};
use crate::util::mbd_command;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The files of a fixture upload: the `.changes` and what it lists.
fn upload_files(changes: &Path) -> Vec<PathBuf> {
    let data = std::fs::read(changes).unwrap();
    let c = mbd::changes::Changes::parse(&data, changes, mbd::files::Trust::Unchecked).unwrap();
    let dir = changes.parent().unwrap();
    let mut files: Vec<PathBuf> = c.files.entries.iter().map(|f| dir.join(&f.name)).collect();
    files.push(changes.to_path_buf());
    files
}

/// Waits for a follower to end; its exit code and output.
fn ended(child: std::process::Child, limit: Duration) -> (Option<i32>, String) {
    let started = Instant::now();
    let mut child = child;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (
                status.code(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            );
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "mbd events did not end: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn follow(home: &Path, args: &[&str]) -> std::process::Child {
    let mut all = vec!["events"];
    all.extend_from_slice(args);
    mbd_command(home, &all)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn mbd_events_ends_with_the_uploads_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let d = Daemon::start(&home);
    d.api_ok(&[
        "set_repository",
        "test",
        "--allow-unauthenticated-uploads",
        "--allow-binary-uploads",
    ]);
    // A binary-only upload (unsigned; the test repository takes those): installed at once.
    let upload = crate::daemon::generated(dir.path(), 1, "--binary").remove(0);
    let changes = changes_in(&upload);
    let parsed = mbd::changes::Changes::parse(
        &std::fs::read(&changes).unwrap(),
        &changes,
        mbd::files::Trust::Unchecked,
    )
    .unwrap();
    let (source, version) = (parsed.source.clone(), parsed.version.to_string());
    let wait = [
        "--source",
        source.as_str(),
        "--version",
        version.as_str(),
        "--exit-on",
        "INSTALLED,FAILED,REJECTED",
    ];
    // Following before the upload: a binary upload is installed at once.
    let follower = follow(&home, &wait);
    std::thread::sleep(Duration::from_millis(500));
    put_upload(&d, &upload_files(&changes));
    let (code, out) = ended(follower, Duration::from_secs(60));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "INSTALLED {source} {version} bookworm-test-unstable"
        )),
        "{out}"
    );
    // The same upload again is rejected (not newer); a follower that starts after the
    // decision (replaying from a time) still sees it, and ends with 1.
    std::thread::sleep(Duration::from_millis(1100));
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    put_upload(&d, &upload_files(&changes));
    wait_for_events(&d, 2);
    let mut late = wait.to_vec();
    late.extend(["--since", &since]);
    let (code, out) = ended(follow(&home, &late), Duration::from_secs(60));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.starts_with(&format!("REJECTED {source} {version}")),
        "{out}"
    );
    // A kind that is not one.
    let (code, out) = ended(
        follow(&home, &["--exit-on", "DONE"]),
        Duration::from_secs(10),
    );
    assert_ne!(code, Some(0));
    assert!(out.contains("'DONE' is not an event kind"), "{out}");
}

#[test]
fn a_self_signed_certificate_serves_dput_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    setup_home(&home);
    let out = crate::util::mbd_ok(
        &home,
        &[
            "self-signed-certificate",
            "create",
            "--hostname",
            "127.0.0.1",
        ],
    );
    assert!(out.contains("tls_certificate = \"etc/tls.crt\""), "{out}");
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(home.join("etc/tls.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let (ok, out) = crate::util::mbd(&home, &["self-signed-certificate", "create"]);
    assert!(!ok && out.contains("--force"), "{out}");
    std::fs::write(
        home.join("etc/mbd.toml"),
        "http_endpoints = [\"127.0.0.1:0\"]\nhttps_endpoints = [\"127.0.0.1:0\"]\nftp_endpoints = []\n\
         tls_certificate = \"etc/tls.crt\"\ntls_key = \"etc/tls.key\"\nlog_level = \"info\"\nbuild_slots = 1\n",
    )
    .unwrap();
    let uploads = crate::daemon::generated(dir.path(), 1, "--source");
    let d = Daemon::start(&home);
    let conf = d.api_ok(&["dput_conf"]);
    let cf = dir.path().join("dput.cf");
    std::fs::write(
        &cf,
        conf.replace("login    = admin\n", "allow_unsigned_uploads = 1\n"),
    )
    .unwrap();
    let out = std::process::Command::new("dput")
        .args(["-u", "-c"])
        .arg(&cf)
        .arg("mbd-testhost-https")
        .arg(changes_in(&uploads[0]))
        .env("SSL_CERT_FILE", home.join("etc/tls.crt"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dput over https: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let events = wait_for_events(&d, 1);
    assert_eq!(events[0]["kind"], "ACCEPTED", "{events:?}");
}
