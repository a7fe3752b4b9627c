//! A full disk: every call that answers an error has changed nothing, and says why (507,
//! "no space left on device"); once there is room again, everything works and the published
//! tree is whole.

use crate::daemon::{Daemon, setup_with_packages};
use std::path::{Path, PathBuf};

/// A small tmpfs mounted for the test's home, unmounted at the end.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system of `dir` (one file, `filler`): what is left is too small for
/// anything but the smallest writes.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0xa5u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
    path
}

/// What the calls below could change, as the API shows it.
fn observed(d: &Daemon) -> (String, String, String) {
    (
        d.api_ok(&["ls", "mbd-hello"]),
        d.api_ok(&["snapshot_ls", "bookworm-test-unstable"]),
        d.api_ok(&["users"]),
    )
}

/// Runs each call on the full disk: one that fails must answer 507 naming the cause and
/// leave what the API shows as it was. How many failed.
fn each_changes_nothing_or_succeeds(d: &Daemon, calls: &[&[&str]]) -> usize {
    let mut failed = 0;
    for call in calls {
        let before = observed(d);
        let (ok, out) = d.api(call);
        if ok {
            eprintln!("{call:?} succeeded on a full disk");
            continue;
        }
        failed += 1;
        eprintln!("{call:?} refused: {}", out.trim());
        assert!(
            out.contains("HTTP 507") && out.contains("No space left on device"),
            "{call:?}: {out}"
        );
        assert_eq!(
            observed(d),
            before,
            "{call:?} answered an error but changed something"
        );
    }
    failed
}

/// Two daemons on a full 48 MiB tmpfs home. The first keeps no reserve, so that its
/// changes commit and then fail while publishing: each is undone. The second keeps the
/// default reserve: every write is refused before it starts. Once there is room again,
/// every call works and apt reads a whole tree.
#[test]
fn on_a_full_disk_a_failed_call_changes_nothing_and_says_why() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let Some(_fs) = Tmpfs::mount(&home, "48m") else {
        eprintln!("skipped: mount -t tmpfs failed");
        return;
    };
    setup_with_packages(&home);
    let engine_calls: &[&[&str]] = &[
        &["snapshot_create", "bookworm-test-unstable", "full"],
        &["migrate", "mbd-hello", "bookworm-test-unstable"],
        &["remove", "mbd-hello", "bookworm-test-unstable"],
        &["snapshot_delete", "bookworm-test-unstable", "old"],
    ];
    {
        let d = Daemon::start_env(&home, &[("MBD_TEST_STORE_RESERVE", "0")]);
        d.api_ok(&["snapshot_create", "bookworm-test-unstable", "old"]);
        let filler = fill(&home);
        let failed = each_changes_nothing_or_succeeds(&d, engine_calls);
        assert!(
            failed >= 3,
            "only {failed} calls failed: the disk was not full"
        );
        std::fs::remove_file(filler).unwrap();
    }
    let d = Daemon::start(&home);
    d.api_ok(&["snapshot_create", "bookworm-test-unstable", "old"]);
    let filler = fill(&home);
    let mut calls = engine_calls.to_vec();
    calls.push(&["user_add", "someone", "--password", "a-long-password"]);
    calls.push(&["token_create", "--label", "full"]);
    let failed = each_changes_nothing_or_succeeds(&d, &calls);
    assert_eq!(failed, calls.len(), "a write started on a full disk");
    // An upload: 507 too, nothing kept.
    let (code, _, body) = d.raw(
        "PUT /incoming/x_1.0.orig.tar.gz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n",
    );
    let body = String::from_utf8_lossy(&body);
    assert_eq!(code, 507, "{body}");
    assert!(!home.join("var/incoming/x_1.0.orig.tar.gz").exists());
    // Room again: everything works, and apt sees a whole tree.
    std::fs::remove_file(filler).unwrap();
    for call in &calls {
        let (ok, out) = d.api(call);
        assert!(ok, "{call:?} after the disk had room: {out}");
    }
    let sources = d.api_ok(&[
        "sources_list",
        "--format",
        "sources",
        "--signed-by",
        "inline",
        "--suites",
        "unstable,testing",
        "--types",
        "deb",
    ]);
    let apt = crate::util::Apt::new(&sources);
    apt.update();
    // migrated, then removed from unstable: in testing only.
    let (ok, out) = apt.get(&["download", "mbd-hello/bookworm-test-testing"]);
    assert!(ok, "{out}");
    let (ok, _) = apt.get(&["download", "mbd-hello/bookworm-test-unstable"]);
    assert!(!ok, "still in unstable");
}
