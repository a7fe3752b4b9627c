//! The chroot helper, the only thing a non-root daemon runs as root: hostile words are
//! refused by the helper itself, and sudo's rule reaches no other home. (That a real chroot is
//! still prepared through it by a non-root daemon is `build::a_dedicated_user_builds_…`.)

use crate::util::run;
use std::path::Path;
use std::process::Command;

const USER: &str = "mbd-test-helper";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs the helper with `words` after `chroot-helper`, as root (in a test) or through sudo as
/// `user`; its exit status and output.
fn helper(user: Option<&str>, words: &[&str]) -> (Option<i32>, String) {
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_mbd")).unwrap();
    let mut cmd = match user {
        None => Command::new(&exe),
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", "sudo", "-n"]).arg(&exe);
            c
        }
    };
    let out = cmd.arg("chroot-helper").args(words).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

struct SudoersFile(std::path::PathBuf);

impl Drop for SudoersFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn hostile_words_are_refused_by_the_helper_and_sudo_reaches_no_other_home() {
    if !is_root() {
        eprintln!("skipped: needs root (to be root's helper)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = std::fs::canonicalize(dir.path()).unwrap().join("home");
    std::fs::create_dir_all(home.join("var/chroots")).unwrap();
    let h = home.to_str().unwrap();
    let m = "http://deb.debian.org/debian/";
    let hostile: &[&[&str]] = &[
        // A hook as the mirror, after it, or inside an extra source.
        &[
            "make-tree",
            "bookworm",
            "amd64",
            "directory",
            "yes",
            "--customize-hook=touch /pwned",
        ],
        &[
            "make-tree",
            "bookworm",
            "amd64",
            "directory",
            "yes",
            m,
            "--setup-hook=touch /pwned",
        ],
        &[
            "make-tree",
            "bookworm",
            "amd64",
            "directory",
            "yes",
            m,
            "deb --hook=x bookworm main",
        ],
        // Option injection in the mirror: a space, a quote, a file to read as sources.
        &[
            "make-tree",
            "bookworm",
            "amd64",
            "directory",
            "yes",
            "http://h/ --include=x",
        ],
        &[
            "make-tree",
            "bookworm",
            "amd64",
            "directory",
            "yes",
            "/etc/shadow",
        ],
        &[
            "make-tree",
            "bookworm",
            "amd64",
            "directory",
            "yes",
            "file:///srv/../etc",
        ],
        // Paths where words belong.
        &["make-tree", "..", "amd64", "directory", "yes", m],
        &[
            "make-tree",
            "bookworm",
            "../../../etc",
            "directory",
            "yes",
            m,
        ],
        &["remove-tree", "bookworm", "amd64", "all", "/etc"],
        &["remove-tree", "bookworm", "amd64", "../../.."],
        &["install-conf", "bookworm", "amd64", "/tmp/evil.conf"],
        &["remove-conf", "../../passwd", "x"],
        &["sh", "-c", "id"],
    ];
    for words in hostile {
        let mut all = vec![h];
        all.extend_from_slice(words);
        let (code, out) = helper(None, &all);
        assert_eq!(code, Some(2), "{words:?} was not refused: {out}");
        assert!(out.contains("chroot-helper: "), "{words:?}: {out}");
    }
    assert!(
        std::fs::read_dir(home.join("var/chroots"))
            .unwrap()
            .next()
            .is_none(),
        "a refused call made something"
    );
    assert!(!Path::new("/pwned").exists());

    // A home given other than canonically is refused.
    let indirect = format!("{h}/../home");
    let (code, out) = helper(None, &[&indirect, "remove-conf", "bookworm", "amd64"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("is not canonical"), "{out}");

    // A chroot directory that is a symbolic link elsewhere is not followed.
    let victim = dir.path().join("victim");
    std::fs::create_dir_all(victim.join("source")).unwrap();
    std::os::unix::fs::symlink(&victim, home.join("var/chroots/bookworm-amd64")).unwrap();
    for part in ["all", "source"] {
        let (code, out) = helper(None, &[h, "remove-tree", "bookworm", "amd64", part]);
        assert_eq!(code, Some(2), "{out}");
        assert!(out.contains("leads elsewhere"), "{out}");
    }
    assert!(
        victim.join("source").is_dir(),
        "the helper followed the link"
    );
    let (code, out) = helper(None, &[h, "install-conf", "bookworm", "amd64", "directory"]);
    assert_eq!(code, Some(2), "{out}");
    let conf = Path::new("/etc/schroot/chroot.d").join(format!(
        "{}.conf",
        mbd::build::chroot::schroot_name(&home, "bookworm-amd64")
    ));
    assert!(!conf.exists(), "{}", conf.display());

    // Through sudo, as a user the printed rule allows: the rule's home only.
    let (ok, out) = run(Command::new("sh").args([
        "-c",
        &format!(
            "id {USER} >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin {USER}"
        ),
    ]));
    assert!(ok, "{out}");
    let rules = crate::util::mbd_ok(&home, &["sudoers", "--user", USER]);
    assert_eq!(rules.matches("NOPASSWD").count(), 1, "{rules}");
    assert!(
        rules.contains(&format!(" chroot-helper {h} *\n")),
        "{rules}"
    );
    let file = SudoersFile(std::path::PathBuf::from("/etc/sudoers.d/mbd-test-helper"));
    std::fs::write(&file.0, &rules).unwrap();
    let (ok, out) = run(Command::new("sh").args([
        "-c",
        &format!("chmod 0440 {0} && visudo -cf {0}", file.0.display()),
    ]));
    assert!(ok, "{out}");
    // Allowed and harmless: removing a configuration that is not there.
    let (code, out) = helper(Some(USER), &[h, "remove-conf", "nosuch", "amd64"]);
    assert_eq!(code, Some(0), "the rule does not admit the helper: {out}");
    // Another home: sudo itself refuses (the helper never runs).
    let other = dir.path().to_str().unwrap();
    let (code, out) = helper(Some(USER), &[other, "remove-conf", "nosuch", "amd64"]);
    assert_ne!(code, Some(0), "{out}");
    assert!(!out.contains("chroot-helper: "), "sudo let it run: {out}");
    // The right home with hostile words: the helper refuses.
    let (code, out) = helper(
        Some(USER),
        &[
            h,
            "make-tree",
            "bookworm",
            "amd64",
            "directory",
            "yes",
            m,
            "--customize-hook=id",
        ],
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("chroot-helper: "), "{out}");
    // Anything else as root: not in the rule.
    let (ok, out) =
        run(Command::new("runuser").args(["-u", USER, "--", "sudo", "-n", "/usr/bin/id"]));
    assert!(!ok, "sudo let the user run id as root: {out}");
}
