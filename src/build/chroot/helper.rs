//! The chroot helper: the only thing a non-root daemon runs as root.
//!
//! `mbd chroot-helper HOME OPERATION ARGS…` does one of five fixed operations on the chroots
//! of the home `HOME`, each argument checked here, by pattern, before anything runs:
//!
//! - `make-tree CODENAME ARCH BACKEND CHECK_VALID_UNTIL MIRROR [SOURCE…]`: mmdebstrap, with
//!   options of our own only, into `HOME/var/chroots/CODENAME-ARCH/tmp` (or `tmp.tar`);
//! - `remove-tree CODENAME ARCH PART`: one of `tmp`, `tmp.tar`, `source`, `source.tar`, or
//!   the chroot's whole directory (`all`);
//! - `install-conf CODENAME ARCH BACKEND`: the schroot configuration, written here (never a
//!   file of the caller's);
//! - `remove-conf CODENAME ARCH`.
//!
//! Codenames and architectures are lowercase words; a mirror is an `http://`, `https://` or
//! `file:///` URL of plain characters; an extra source is `deb URL SUITE COMPONENT…`. Nothing is
//! passed through: no option, no hook, no path. Paths are made here from those words and must
//! be, canonically, where they say (no symbolic link on the way). The sudo rule
//! [`sudoers`] prints fixes `HOME` (the first argument), so a user allowed it reaches no other
//! home.
//!
//! When the daemon is root it runs the same operations in-process; otherwise through
//! `sudo -n` and the rule.

use super::{Backend, Chroot};
use crate::build::BuildError;
use std::path::{Path, PathBuf};
use std::process::Command;

const MMDEBSTRAP: &str = "/usr/bin/mmdebstrap";
const RM: &str = "/usr/bin/rm";

/// What may be removed of a chroot's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The tree being made (`tmp`, or `tmp.tar` for the file backend).
    Staging(Backend),
    /// The finished tree (`source` or `source.tar`).
    Tree(Backend),
    /// The chroot's whole directory.
    All,
}

impl Part {
    fn word(self) -> &'static str {
        match self {
            Part::Staging(Backend::Directory) => "tmp",
            Part::Staging(Backend::File) => "tmp.tar",
            Part::Tree(Backend::Directory) => "source",
            Part::Tree(Backend::File) => "source.tar",
            Part::All => "all",
        }
    }

    fn parse(word: &str) -> Result<Part, String> {
        Ok(match word {
            "tmp" => Part::Staging(Backend::Directory),
            "tmp.tar" => Part::Staging(Backend::File),
            "source" => Part::Tree(Backend::Directory),
            "source.tar" => Part::Tree(Backend::File),
            "all" => Part::All,
            other => return Err(format!("'{other}' is not a part of a chroot")),
        })
    }
}

/// One operation, its arguments checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    MakeTree {
        codename: String,
        arch: String,
        backend: Backend,
        check_valid_until: bool,
        mirror: String,
        sources: Vec<String>,
    },
    RemoveTree {
        codename: String,
        arch: String,
        part: Part,
    },
    InstallConf {
        codename: String,
        arch: String,
        backend: Backend,
    },
    RemoveConf {
        codename: String,
        arch: String,
    },
}

/// A codename or an architecture: a lowercase word (letters, digits, `-`), at most 40 long,
/// starting with a letter or digit.
pub fn check_name(what: &str, word: &str) -> Result<(), String> {
    let ok = (1..=40).contains(&word.len())
        && word.as_bytes()[0].is_ascii_alphanumeric()
        && word
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} '{}' is not a lowercase word of letters, digits and '-'",
            word.escape_debug()
        ))
    }
}

/// A mirror: `http://HOST…`, `https://HOST…` or `file:///PATH`, of URL characters only (no
/// space, quote or backslash), with no `..` segment, at most 512 long.
pub fn check_mirror(url: &str) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("mirror '{}': {why}", url.escape_debug()));
    if url.len() > 512 {
        return refuse("longer than 512");
    }
    let rest = if let Some(r) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    {
        if r.is_empty() || r.starts_with('/') {
            return refuse("no host");
        }
        r
    } else if let Some(r) = url.strip_prefix("file://") {
        if !r.starts_with('/') {
            return refuse("a file:// URL needs an absolute path");
        }
        r
    } else {
        return refuse("not an http://, https:// or file:/// URL");
    };
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&()*+,;=%".contains(&b);
    if !rest.bytes().all(plain) {
        return refuse("characters other than those of a URL");
    }
    if rest.split('/').any(|s| s == "..") {
        return refuse("a '..' segment");
    }
    Ok(())
}

/// An extra apt source: `deb URL SUITE COMPONENT…` (no options), each word checked.
pub fn check_source(line: &str) -> Result<(), String> {
    let words: Vec<&str> = line.split(' ').collect();
    let refuse = |why: &str| Err(format!("source '{}': {why}", line.escape_debug()));
    if words.len() < 4 || words[0] != "deb" {
        return refuse("not 'deb URL SUITE COMPONENT…'");
    }
    check_mirror(words[1]).or_else(|e| refuse(&e))?;
    let word = |w: &str| {
        !w.is_empty()
            && w.as_bytes()[0].is_ascii_alphanumeric()
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b))
            && !w.split('/').any(|s| s == "..")
    };
    if !words[2..].iter().all(|w| word(w)) {
        return refuse("a suite or component is not a plain word");
    }
    Ok(())
}

/// A user name as `adduser` allows it by default.
fn check_user(user: &str) -> Result<(), String> {
    let ok = (1..=32).contains(&user.len())
        && (user.as_bytes()[0].is_ascii_lowercase() || user.as_bytes()[0] == b'_')
        && user
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "user '{}' is not a plain user name",
            user.escape_debug()
        ))
    }
}

fn backend(word: &str) -> Result<Backend, String> {
    match word {
        "directory" => Ok(Backend::Directory),
        "file" => Ok(Backend::File),
        other => Err(format!("backend '{other}' is not directory or file")),
    }
}

fn backend_word(b: Backend) -> &'static str {
    match b {
        Backend::Directory => "directory",
        Backend::File => "file",
    }
}

impl Op {
    /// The operation the words after `HOME` name; anything more, less or odd is refused.
    pub fn parse(words: &[String]) -> Result<Op, String> {
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let names = |c: &str, a: &str| -> Result<(String, String), String> {
            check_name("codename", c)?;
            check_name("architecture", a)?;
            Ok((c.to_string(), a.to_string()))
        };
        match w.as_slice() {
            ["make-tree", c, a, b, v, mirror, sources @ ..] => {
                let (codename, arch) = names(c, a)?;
                check_mirror(mirror)?;
                for s in sources {
                    check_source(s)?;
                }
                let check_valid_until = match *v {
                    "yes" => true,
                    "no" => false,
                    other => return Err(format!("'{other}' is not yes or no")),
                };
                Ok(Op::MakeTree {
                    codename,
                    arch,
                    backend: backend(b)?,
                    check_valid_until,
                    mirror: mirror.to_string(),
                    sources: sources.iter().map(|s| s.to_string()).collect(),
                })
            }
            ["remove-tree", c, a, p] => {
                let (codename, arch) = names(c, a)?;
                Ok(Op::RemoveTree {
                    codename,
                    arch,
                    part: Part::parse(p)?,
                })
            }
            ["install-conf", c, a, b] => {
                let (codename, arch) = names(c, a)?;
                Ok(Op::InstallConf {
                    codename,
                    arch,
                    backend: backend(b)?,
                })
            }
            ["remove-conf", c, a] => {
                let (codename, arch) = names(c, a)?;
                Ok(Op::RemoveConf { codename, arch })
            }
            _ => Err(format!(
                "'{}' is not one of: make-tree CODENAME ARCH BACKEND yes|no MIRROR [SOURCE…]; \
                 remove-tree CODENAME ARCH PART; install-conf CODENAME ARCH BACKEND; \
                 remove-conf CODENAME ARCH",
                w.join(" ").escape_debug()
            )),
        }
    }

    /// The words [`Op::parse`] reads back.
    pub fn words(&self) -> Vec<String> {
        let mut w: Vec<String> = Vec::new();
        let mut push = |s: &str| w.push(s.to_string());
        match self {
            Op::MakeTree {
                codename,
                arch,
                backend,
                check_valid_until,
                mirror,
                sources,
            } => {
                for s in ["make-tree", codename, arch, backend_word(*backend)] {
                    push(s);
                }
                push(if *check_valid_until { "yes" } else { "no" });
                push(mirror);
                for s in sources {
                    push(s);
                }
            }
            Op::RemoveTree {
                codename,
                arch,
                part,
            } => {
                for s in ["remove-tree", codename, arch, part.word()] {
                    push(s);
                }
            }
            Op::InstallConf {
                codename,
                arch,
                backend,
            } => {
                for s in ["install-conf", codename, arch, backend_word(*backend)] {
                    push(s);
                }
            }
            Op::RemoveConf { codename, arch } => {
                for s in ["remove-conf", codename, arch] {
                    push(s);
                }
            }
        }
        w
    }

    fn chroot(&self) -> Chroot {
        let (c, a, b) = match self {
            Op::MakeTree {
                codename,
                arch,
                backend,
                ..
            }
            | Op::InstallConf {
                codename,
                arch,
                backend,
            } => (codename, arch, *backend),
            Op::RemoveTree { codename, arch, .. } | Op::RemoveConf { codename, arch } => {
                (codename, arch, Backend::Directory)
            }
        };
        Chroot::new(c, a, "", b)
    }
}

/// Why the helper refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("chroot-helper: {0}")]
    Refused(String),
    #[error("chroot-helper: {0}")]
    Failed(String),
}

/// The home as given, which must be absolute and canonical (the sudo rule names it so).
fn canonical_home(home: &Path) -> Result<PathBuf, HelperError> {
    let real = std::fs::canonicalize(home)
        .map_err(|e| HelperError::Refused(format!("home {}: {e}", home.display())))?;
    if real != home {
        return Err(HelperError::Refused(format!(
            "home {} is not canonical ({})",
            home.display(),
            real.display()
        )));
    }
    Ok(real)
}

/// `HOME/var/chroots/ID`, which must be a real directory there (no symbolic link on the way).
/// The helper makes no directory: the daemon makes this one, as its user, before it asks (so
/// that nothing is ever created as root through a link).
fn chroot_dir(home: &Path, chroot: &Chroot) -> Result<PathBuf, HelperError> {
    let dir = chroot.dir(home);
    let real = std::fs::canonicalize(&dir)
        .map_err(|e| HelperError::Refused(format!("{}: {e}", dir.display())))?;
    if real != dir {
        return Err(HelperError::Refused(format!(
            "{} leads elsewhere ({})",
            dir.display(),
            real.display()
        )));
    }
    Ok(dir)
}

/// Runs the operation as root (the caller is root). `user` is the daemon user schroot lets
/// in; output goes to stdout and stderr.
pub fn run(home: &Path, op: &Op, user: &str, host_arch: &str) -> Result<(), HelperError> {
    let home = canonical_home(home)?;
    let chroot = op.chroot();
    match op {
        Op::MakeTree {
            check_valid_until,
            mirror,
            sources,
            ..
        } => {
            let dir = chroot_dir(&home, &chroot)?;
            let target = dir.join(Part::Staging(chroot.backend).word());
            if target.symlink_metadata().is_ok() {
                return Err(HelperError::Refused(format!(
                    "{} exists (remove it first)",
                    target.display()
                )));
            }
            let mut cmd = Command::new(MMDEBSTRAP);
            cmd.args([
                "--variant=buildd",
                // aptitude: the default build-dependency resolver (else sbuild installs it
                // into every session).
                "--include=eatmydata,aptitude",
                "--components=main",
            ])
            .arg(format!("--architectures={}", chroot.architecture));
            if !check_valid_until {
                // mmdebstrap writes it into the tree's apt.conf.d as well.
                cmd.arg("--aptopt=Acquire::Check-Valid-Until \"false\"");
            }
            cmd.arg("--")
                .arg(&chroot.codename)
                .arg(&target)
                .arg(mirror)
                .args(sources);
            status(&mut cmd)
        }
        Op::RemoveTree { part, .. } => {
            let dir = match chroot_dir(&home, &chroot) {
                Ok(d) => d,
                // Nothing there: nothing to remove.
                Err(_) if chroot.dir(&home).symlink_metadata().is_err() => return Ok(()),
                Err(e) => return Err(e),
            };
            let path = match part {
                Part::All => dir,
                p => dir.join(p.word()),
            };
            // rm never follows a symbolic link it is given, and stays on this filesystem.
            status(
                Command::new(RM)
                    .args(["--recursive", "--force", "--one-file-system", "--"])
                    .arg(&path),
            )
        }
        Op::InstallConf { .. } => {
            let dir = chroot_dir(&home, &chroot)?;
            let tree = dir.join(Part::Tree(chroot.backend).word());
            if tree.symlink_metadata().is_err() {
                return Err(HelperError::Refused(format!(
                    "{} does not exist",
                    tree.display()
                )));
            }
            check_user(user).map_err(HelperError::Refused)?;
            let text = chroot.schroot_conf(&home, host_arch, user);
            let conf = chroot.conf_path(&home);
            let staged = conf.with_extension("conf.new");
            std::fs::write(&staged, text)
                .and_then(|()| std::fs::rename(&staged, &conf))
                .map_err(|e| HelperError::Failed(format!("{}: {e}", conf.display())))?;
            println!("wrote {}", conf.display());
            remove_legacy_conf(&home, &chroot)
        }
        Op::RemoveConf { .. } => {
            remove_file(&chroot.conf_path(&home))?;
            remove_legacy_conf(&home, &chroot)
        }
    }
}

fn remove_file(path: &Path) -> Result<(), HelperError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(HelperError::Failed(format!("{}: {e}", path.display()))),
    }
}

/// Removes the configuration earlier versions wrote under the name every home shared, but
/// only when it points at this home's tree (another home's stays).
fn remove_legacy_conf(home: &Path, chroot: &Chroot) -> Result<(), HelperError> {
    let legacy = chroot.legacy_conf_path();
    let Ok(text) = std::fs::read_to_string(&legacy) else {
        return Ok(());
    };
    let ours = chroot.source_line(home);
    if text.lines().any(|l| l.trim() == ours) {
        println!(
            "removing {} (it pointed at this home's tree)",
            legacy.display()
        );
        remove_file(&legacy)?;
    }
    Ok(())
}

/// Runs a command, after printing it (the chroot's log shows what ran as root).
fn status(cmd: &mut Command) -> Result<(), HelperError> {
    let shown = format!("{cmd:?}");
    println!("$ {shown}");
    let s = cmd
        .stdin(std::process::Stdio::null())
        .status()
        .map_err(|e| HelperError::Failed(format!("{shown}: {e}")))?;
    if s.success() {
        Ok(())
    } else {
        Err(HelperError::Failed(format!("{shown}: {s}")))
    }
}

/// The helper as a command: `args` are the words after `chroot-helper`, `host_arch` this
/// host's architecture. Root only; the daemon user is the one sudo names (`SUDO_USER`), else
/// root.
pub fn main(args: &[String], host_arch: &str) -> Result<(), HelperError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(HelperError::Refused(
            "runs as root only (through sudo and the rule `mbd sudoers` prints)".to_string(),
        ));
    }
    let Some((home, words)) = args.split_first() else {
        return Err(HelperError::Refused(
            "usage: chroot-helper HOME OPERATION ARGS…".into(),
        ));
    };
    let op = Op::parse(words).map_err(HelperError::Refused)?;
    let user = std::env::var("SUDO_USER").unwrap_or_else(|_| "root".to_string());
    run(Path::new(home), &op, &user, host_arch)
}

/// Runs `op` for the daemon as `MBD chroot-helper HOME …`: directly when it is root, else
/// through `sudo -n` (never asks for a password: without the rule it fails). The helper's
/// output, and that of what it runs, goes to `log`.
pub fn invoke(home: &Path, op: &Op, log: &Path) -> Result<(), BuildError> {
    let exe =
        std::env::current_exe().map_err(|e| BuildError::io(Path::new("/proc/self/exe"), e))?;
    let mut cmd = if super::is_root() {
        Command::new(exe)
    } else {
        let mut c = Command::new("sudo");
        c.arg("-n").arg(exe);
        c
    };
    cmd.arg("chroot-helper").arg(home).args(op.words());
    super::run_logged(&mut cmd, log)
}

/// The one sudo rule a dedicated (non-root) user needs to run mbd with the home `home` (an
/// absolute, canonical path), for `/etc/sudoers.d/`: the helper, with that home. The user must
/// also be in group sbuild (`sbuild-adduser USER`).
pub fn sudoers(user: &str, home: &Path, exe: &Path) -> String {
    format!(
        "# mbd: user {user} may run the chroot helper as root, for the home {home} only.\n\
         # Written by `mbd sudoers`; check with visudo -cf FILE. The helper checks every\n\
         # argument itself; {exe} must be root's and writable by root only.\n\
         {user} ALL=(root) NOPASSWD: {exe} chroot-helper {home} *\n",
        home = home.display(),
        exe = exe.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn operations_read_back_what_they_write() {
        let ops = [
            Op::MakeTree {
                codename: "bookworm".into(),
                arch: "i386".into(),
                backend: Backend::File,
                check_valid_until: false,
                mirror: "http://deb.debian.org/debian/".into(),
                sources: vec![
                    "deb http://deb.debian.org/debian-security/ bookworm-security main".into(),
                ],
            },
            Op::RemoveTree {
                codename: "sid".into(),
                arch: "amd64".into(),
                part: Part::Staging(Backend::Directory),
            },
            Op::RemoveTree {
                codename: "sid".into(),
                arch: "amd64".into(),
                part: Part::All,
            },
            Op::InstallConf {
                codename: "trixie".into(),
                arch: "amd64".into(),
                backend: Backend::Directory,
            },
            Op::RemoveConf {
                codename: "trixie".into(),
                arch: "amd64".into(),
            },
        ];
        for op in ops {
            assert_eq!(Op::parse(&op.words()), Ok(op.clone()));
        }
    }

    #[test]
    fn hostile_arguments_are_refused() {
        let tree = |c: &str, a: &str, m: &str, extra: &[&str]| {
            let mut w = words(&["make-tree", c, a, "directory", "yes", m]);
            w.extend(extra.iter().map(|s| s.to_string()));
            Op::parse(&w)
        };
        let m = "http://deb.debian.org/debian";
        for (what, r) in [
            (
                "hook as mirror",
                tree("bookworm", "amd64", "--customize-hook=sh", &[]),
            ),
            (
                "hook after mirror",
                tree("bookworm", "amd64", m, &["--setup-hook=id"]),
            ),
            (
                "hook in source",
                tree("bookworm", "amd64", m, &["deb --hook=x bookworm main"]),
            ),
            ("option codename", tree("--variant=x", "amd64", m, &[])),
            ("dotdot codename", tree("..", "amd64", m, &[])),
            ("slash arch", tree("bookworm", "../../etc", m, &[])),
            (
                "space in mirror",
                tree("bookworm", "amd64", "http://a b", &[]),
            ),
            (
                "quote in mirror",
                tree("bookworm", "amd64", "http://a\"b", &[]),
            ),
            (
                "dotdot file",
                tree("bookworm", "amd64", "file:///srv/../etc", &[]),
            ),
            (
                "relative file",
                tree("bookworm", "amd64", "file://etc/x", &[]),
            ),
            (
                "ftp mirror",
                tree("bookworm", "amd64", "ftp://h/debian", &[]),
            ),
            ("path mirror", tree("bookworm", "amd64", "/etc/shadow", &[])),
            (
                "options in source",
                tree(
                    "bookworm",
                    "amd64",
                    m,
                    &["deb [trusted=yes] http://h/ x main"],
                ),
            ),
            (
                "dotdot component",
                tree("bookworm", "amd64", m, &["deb http://h/ x ../main"]),
            ),
            ("newline codename", tree("book\nworm", "amd64", m, &[])),
            (
                "extra path to rm",
                Op::parse(&words(&["remove-tree", "bookworm", "amd64", "all", "/etc"])),
            ),
            (
                "path part",
                Op::parse(&words(&["remove-tree", "bookworm", "amd64", "../x"])),
            ),
            (
                "conf from a file",
                Op::parse(&words(&[
                    "install-conf",
                    "bookworm",
                    "amd64",
                    "/tmp/x.conf",
                ])),
            ),
            ("unknown op", Op::parse(&words(&["sh", "-c", "id"]))),
            ("nothing", Op::parse(&[])),
        ] {
            assert!(r.is_err(), "{what}: {r:?}");
        }
        assert!(tree("bookworm", "amd64", "file:///srv/mirror/debian", &[]).is_ok());
        assert!(tree("bookworm", "amd64", "https://h:8080/debian?x=1", &[]).is_ok());
    }

    #[test]
    fn paths_must_be_where_they_say() {
        let dir = tempfile::tempdir().unwrap();
        let home = std::fs::canonicalize(dir.path()).unwrap();
        let c = Chroot::new("bookworm", "amd64", "", Backend::Directory);
        assert!(
            chroot_dir(&home, &c).is_err(),
            "missing: the helper makes none"
        );
        std::fs::create_dir_all(c.dir(&home)).unwrap();
        assert!(chroot_dir(&home, &c).is_ok());
        // A symbolic link on the way is refused.
        let other = home.join("elsewhere");
        std::fs::create_dir_all(other.join("bookworm-i386")).unwrap();
        std::os::unix::fs::symlink(&other, home.join("var/chroots2")).unwrap();
        std::fs::rename(home.join("var/chroots"), home.join("var/old")).unwrap();
        std::fs::rename(home.join("var/chroots2"), home.join("var/chroots")).unwrap();
        let i = Chroot::new("bookworm", "i386", "", Backend::Directory);
        assert!(chroot_dir(&home, &i).is_err());
        // So is a home that is not canonical.
        assert!(canonical_home(&home.join("var/../var")).is_err());
        assert!(canonical_home(Path::new("relative")).is_err());
    }

    #[test]
    fn the_rule_names_the_helper_with_the_home() {
        let s = sudoers("mbd", Path::new("/var/lib/mbd"), Path::new("/usr/bin/mbd"));
        assert!(
            s.contains("mbd ALL=(root) NOPASSWD: /usr/bin/mbd chroot-helper /var/lib/mbd *\n"),
            "{s}"
        );
        assert_eq!(s.matches("NOPASSWD").count(), 1);
    }
}
