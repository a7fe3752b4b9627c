//! Build chroots: one per codename and architecture, made with mmdebstrap (or debootstrap)
//! and entered through schroot.
//!
//! A chroot lives in `<home>/var/chroots/<codename>-<arch>/` (the tree in `source/`, the
//! preparation log in `prepare.log`) and is known to schroot as `mbd-<tag>-<codename>-<arch>`
//! through `/etc/schroot/chroot.d/mbd-<tag>-<codename>-<arch>.conf`: a directory backend whose
//! sessions are overlays (upper directories on tmpfs under `/dev/shm/mbd-schroot-<tag>`), so
//! builds never change the tree. Preparing needs root.
//!
//! `<tag>` names the home (8 hex digits of the SHA-256 of its canonical path): several homes on
//! one host each have their own chroots and never overwrite another's configuration. A
//! configuration under the name of earlier versions (`mbd-<codename>-<arch>`) that points at
//! this home's tree is replaced at start ([`migrate`]).
//!
//! The tree is made in `tmp/` and renamed to `source/` when complete; the schroot
//! configuration is written last. A crash while preparing leaves no usable-looking chroot.

mod apt_sources;
pub mod helper;

pub use apt_sources::mirror_from_apt_sources;
use helper::{Op, Part};

use super::BuildError;
use crate::state::{Record, StateStore};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where schroot reads chroot definitions.
pub const SCHROOT_CONF_DIR: &str = "/etc/schroot/chroot.d";

/// How often mmdebstrap is tried before preparing fails.
pub const PREPARE_ATTEMPTS: u32 = 3;

/// The home's tag in schroot names: 8 hex digits of the SHA-256 of its canonical path.
pub fn home_tag(home: &Path) -> String {
    use sha2::Digest;
    let path = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf());
    let digest = sha2::Sha256::digest(path.as_os_str().as_encoded_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The schroot name of chroot `<codename>-<arch>` of `home`.
pub fn schroot_name(home: &Path, id: &str) -> String {
    format!("mbd-{}-{id}", home_tag(home))
}

/// Where the home's session overlays live (tmpfs: builds write a lot and are thrown away).
pub fn overlay_dir(home: &Path) -> PathBuf {
    PathBuf::from(format!("/dev/shm/mbd-schroot-{}", home_tag(home)))
}

/// What a chroot is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChrootState {
    /// Being made (see its log).
    Preparing,
    /// Builds can use it.
    Ready,
    /// The last prepare or check failed (see its log).
    Failed,
}

/// The backend schroot uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A directory; sessions are overlays.
    #[default]
    Directory,
    /// A tarball unpacked for each session (slow; for filesystems without overlay).
    File,
}

/// A chroot as the store keeps it (`chroot/<codename>-<arch>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chroot {
    pub codename: String,
    pub architecture: String,
    pub backend: Backend,
    pub state: ChrootState,
    /// The archive the tree was made from.
    pub mirror: String,
    /// Why it failed, or what it is doing.
    pub message: String,
    /// Seconds since the epoch of the last state change.
    pub changed: i64,
    /// Further apt lines the tree is made with and keeps (`deb URL SUITE main`: the
    /// distribution's security source).
    #[serde(default)]
    pub extra_sources: Vec<String>,
    /// Deactivated by staff: kept, but no build starts in it.
    #[serde(default)]
    pub deactivated: bool,
    /// Whether apt in the tree checks the archive's Valid-Until (off when its source's
    /// `check_valid_until` is: a mirror that is not refreshed). Kept in the tree's apt
    /// configuration, so builds in it honour it too.
    #[serde(default = "yes")]
    pub check_valid_until: bool,
}

fn yes() -> bool {
    true
}

impl Chroot {
    pub fn new(codename: &str, architecture: &str, mirror: &str, backend: Backend) -> Chroot {
        Chroot {
            codename: codename.to_string(),
            architecture: architecture.to_string(),
            backend,
            state: ChrootState::Preparing,
            mirror: mirror.to_string(),
            message: String::new(),
            changed: 0,
            extra_sources: Vec::new(),
            deactivated: false,
            check_valid_until: true,
        }
    }

    /// Its state in mini-buildd's status model: preparing is Prepared (-), ready is Active
    /// (checked when it became ready) unless deactivated, failed is Prepared (x).
    pub fn status(&self) -> crate::status::Status {
        use crate::status::{Check, State, Status};
        let (state, check) = match self.state {
            ChrootState::Preparing => (State::Prepared, Check::Unchecked),
            ChrootState::Ready if self.deactivated => {
                (State::Prepared, Check::Checked(self.changed))
            }
            ChrootState::Ready => (State::Active, Check::Checked(self.changed)),
            ChrootState::Failed => (State::Prepared, Check::Failed),
        };
        Status {
            state,
            check,
            message: self.message.clone(),
        }
    }

    /// `<codename>-<arch>`: the store key's tail and the directory name.
    pub fn id(&self) -> String {
        format!("{}-{}", self.codename, self.architecture)
    }

    /// The schroot name (the home's own).
    pub fn schroot_name(&self, home: &Path) -> String {
        schroot_name(home, &self.id())
    }

    pub fn dir(&self, home: &Path) -> PathBuf {
        home.join("var/chroots").join(self.id())
    }

    pub fn log_path(&self, home: &Path) -> PathBuf {
        self.dir(home).join("prepare.log")
    }

    pub fn conf_path(&self, home: &Path) -> PathBuf {
        Path::new(SCHROOT_CONF_DIR).join(format!("{}.conf", self.schroot_name(home)))
    }

    /// The configuration earlier versions wrote, under a name shared by every home.
    pub fn legacy_conf_path(&self) -> PathBuf {
        Path::new(SCHROOT_CONF_DIR).join(format!("mbd-{}.conf", self.id()))
    }

    /// The line of a schroot configuration that names this home's tree.
    pub fn source_line(&self, home: &Path) -> String {
        match self.backend {
            Backend::Directory => format!("directory={}", self.source(home).display()),
            Backend::File => format!("file={}", self.source(home).display()),
        }
    }

    /// The tree (directory backend) or tarball (file backend) schroot uses.
    pub fn source(&self, home: &Path) -> PathBuf {
        match self.backend {
            Backend::Directory => self.dir(home).join("source"),
            Backend::File => self.dir(home).join("source.tar"),
        }
    }

    /// The schroot configuration; `user` (besides root) may use it and its source chroot.
    pub fn schroot_conf(&self, home: &Path, host_arch: &str, user: &str) -> String {
        let mut text = format!(
            "# Written by mbd; removed with the chroot.\n[{name}]\ndescription=mbd build chroot {id}\n",
            name = self.schroot_name(home),
            id = self.id()
        );
        match self.backend {
            Backend::Directory => text.push_str(&format!(
                "type=directory\n{}\nunion-type=overlay\nunion-overlay-directory={}\n",
                self.source_line(home),
                overlay_dir(home).display()
            )),
            Backend::File => text.push_str(&format!("type=file\n{}\n", self.source_line(home))),
        }
        let users = if user == "root" {
            "root".to_string()
        } else {
            format!("root,{user}")
        };
        text.push_str(&format!(
            "users={users}\nroot-users={users}\nsource-root-users={users}\ngroups=root,sbuild\nroot-groups=root,sbuild\nprofile=sbuild\n"
        ));
        // eatmydata is in every chroot: builds skip fsync.
        text.push_str("command-prefix=eatmydata\n");
        text.push_str(&format!(
            "personality={}\n",
            personality(host_arch, &self.architecture)
        ));
        text
    }
}

impl Record for Chroot {
    const TABLE: &'static str = "chroots";
}

/// Every chroot the store knows.
pub fn all(state: &StateStore) -> Result<Vec<Chroot>, crate::state::StateError> {
    Ok(state.all::<Chroot>()?.into_iter().map(|(_, c)| c).collect())
}

/// One chroot by id (`<codename>-<arch>`).
pub fn find(state: &StateStore, id: &str) -> Result<Chroot, BuildError> {
    state
        .get::<Chroot>(id)?
        .ok_or_else(|| BuildError::NoSuchChroot(id.to_string()))
}

/// `linux32` for a 32-bit chroot on its 64-bit host (i386 on amd64, armhf on arm64).
pub fn personality(host_arch: &str, arch: &str) -> &'static str {
    match (host_arch, arch) {
        (host, a) if companion_architecture(host) == Some(a) => "linux32",
        ("arm64", "armel") => "linux32",
        _ => "linux",
    }
}

/// The 32-bit architecture a 64-bit host runs under `linux32` (i386 on amd64, armhf on
/// arm64), if any.
pub fn companion_architecture(host_arch: &str) -> Option<&'static str> {
    match host_arch {
        "amd64" => Some("i386"),
        "arm64" => Some("armhf"),
        _ => None,
    }
}

/// The architectures this host builds natively: its own, then its 32-bit companion when
/// the kernel runs its binaries (`arch-test -n`: the kernel alone, no emulation). What
/// mini-buildd's presets give a distribution (amd64+i386 on amd64).
pub fn native_architectures(host_arch: &str) -> Vec<String> {
    let mut archs = vec![host_arch.to_string()];
    if let Some(c) = companion_architecture(host_arch) {
        let runs = std::process::Command::new("arch-test")
            .args(["-n", c])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if runs {
            archs.push(c.to_string());
        } else {
            tracing::info!(
                arch = c,
                "the kernel does not run it (arch-test -n): not native"
            );
        }
    }
    archs
}

/// Runs a command, appending its output to the log; an error names the command and the log.
fn run_logged(cmd: &mut Command, log: &Path) -> Result<(), BuildError> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| BuildError::io(log, e))?;
    let shown = format!("{cmd:?}");
    let _ = writeln!(file, "$ {shown}");
    let out = file.try_clone().map_err(|e| BuildError::io(log, e))?;
    let err = file.try_clone().map_err(|e| BuildError::io(log, e))?;
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| BuildError::Command {
            command: shown.clone(),
            reason: e.to_string(),
            log: log.to_path_buf(),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::Command {
            command: shown,
            reason: status.to_string(),
            log: log.to_path_buf(),
        })
    }
}

/// Makes the chroot: the tree with mmdebstrap (variant buildd, eatmydata included), then the
/// schroot configuration, each through the [`helper`]. Output goes to the chroot's log.
pub fn prepare(chroot: &Chroot, home: &Path) -> Result<(), BuildError> {
    let dir = chroot.dir(home);
    std::fs::create_dir_all(&dir).map_err(|e| BuildError::io(&dir, e))?;
    let log = chroot.log_path(home);
    let _ = std::fs::remove_file(&log);
    let (codename, arch) = (chroot.codename.clone(), chroot.architecture.clone());
    let remove = |part| {
        let op = Op::RemoveTree {
            codename: codename.clone(),
            arch: arch.clone(),
            part,
        };
        helper::invoke(home, &op, &log)
    };
    let tmp = dir.join(match chroot.backend {
        Backend::Directory => "tmp",
        Backend::File => "tmp.tar",
    });
    if tmp.symlink_metadata().is_ok() {
        remove(Part::Staging(chroot.backend))?;
    }
    let make = Op::MakeTree {
        codename: codename.clone(),
        arch: arch.clone(),
        backend: chroot.backend,
        check_valid_until: chroot.check_valid_until,
        mirror: chroot.mirror.clone(),
        sources: chroot.extra_sources.clone(),
    };
    // Mirrors and networks fail now and then: up to three attempts.
    let mut attempt = 1;
    loop {
        match helper::invoke(home, &make, &log) {
            Ok(()) => break,
            Err(e) if attempt >= PREPARE_ATTEMPTS => return Err(e),
            Err(e) => {
                tracing::warn!(chroot = %chroot.id(), attempt, error = %e, "mmdebstrap failed; trying again");
                if tmp.symlink_metadata().is_ok() {
                    remove(Part::Staging(chroot.backend))?;
                }
                std::thread::sleep(std::time::Duration::from_secs(10));
                attempt += 1;
            }
        }
    }
    let source = chroot.source(home);
    if source.symlink_metadata().is_ok() {
        remove(Part::Tree(chroot.backend))?;
    }
    // Same parent: the owner of `dir` may rename root's tree.
    std::fs::rename(&tmp, &source).map_err(|e| BuildError::io(&source, e))?;
    let overlay = overlay_dir(home);
    std::fs::create_dir_all(&overlay).map_err(|e| BuildError::io(&overlay, e))?;
    let conf = Op::InstallConf {
        codename,
        arch,
        backend: chroot.backend,
    };
    helper::invoke(home, &conf, &log)?;
    check(chroot, home)
}

/// Updates and upgrades the packages in the tree (through the schroot source chroot, as
/// root: schroot allows it to the users the configuration names).
pub fn check(chroot: &Chroot, home: &Path) -> Result<(), BuildError> {
    check_conf(chroot, home)?;
    let log = chroot.log_path(home);
    let overlay = overlay_dir(home);
    std::fs::create_dir_all(&overlay).map_err(|e| BuildError::io(&overlay, e))?;
    let source = format!("source:{}", chroot.schroot_name(home));
    for args in [
        &["apt-get", "-q", "update"][..],
        &[
            "apt-get",
            "-q",
            "-y",
            "-o",
            "Dpkg::Options::=--force-confold",
            "dist-upgrade",
        ],
        &["apt-get", "-q", "clean"],
    ] {
        let mut cmd = Command::new("schroot");
        cmd.args(["--directory", "/", "--user", "root", "-c", &source, "--"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive");
        run_logged(&mut cmd, &log)?;
    }
    Ok(())
}

/// Checks a chroot and records the outcome: Ready ("checked") or Failed with the reason.
pub fn check_and_record(
    state: &StateStore,
    home: &Path,
    mut chroot: Chroot,
) -> Result<(), BuildError> {
    let result = check(&chroot, home);
    chroot.changed = crate::repo::publish_time();
    match &result {
        Ok(()) => {
            chroot.state = ChrootState::Ready;
            chroot.message = "checked".to_string();
        }
        Err(e) => {
            chroot.state = ChrootState::Failed;
            chroot.message = e.to_string();
        }
    }
    state.put(&chroot.id(), &chroot)?;
    result
}

/// Whether schroot's configuration of the chroot exists and points at this home's tree.
pub fn check_conf(chroot: &Chroot, home: &Path) -> Result<(), BuildError> {
    let conf = chroot.conf_path(home);
    let text = std::fs::read_to_string(&conf).map_err(|e| {
        BuildError::ChrootConf(format!(
            "the schroot configuration {} cannot be read ({e}); prepare the chroot again",
            conf.display()
        ))
    })?;
    // The helper writes the canonical home.
    let want = chroot.source_line(&std::fs::canonicalize(home).unwrap_or_else(|_| home.into()));
    if !text.lines().any(|l| l.trim() == want) {
        let found = text
            .lines()
            .find(|l| l.starts_with("directory=") || l.starts_with("file="))
            .unwrap_or("no tree");
        return Err(BuildError::ChrootConf(format!(
            "the schroot configuration {} names {found}, not this home's {want}; prepare the chroot again",
            conf.display()
        )));
    }
    Ok(())
}

/// At start: a ready chroot whose configuration is missing under this home's name gets it
/// again (the helper also removes a configuration under the earlier, shared name when it
/// points at this home's tree). `Err` says why the chroot cannot be used.
pub fn migrate(chroot: &Chroot, home: &Path) -> Result<bool, BuildError> {
    if chroot.conf_path(home).exists() || chroot.source(home).symlink_metadata().is_err() {
        return Ok(false);
    }
    let log = chroot.log_path(home);
    let op = Op::InstallConf {
        codename: chroot.codename.clone(),
        arch: chroot.architecture.clone(),
        backend: chroot.backend,
    };
    helper::invoke(home, &op, &log)?;
    Ok(true)
}

/// Removes the schroot configuration and the chroot's directory.
pub fn remove(chroot: &Chroot, home: &Path) -> Result<(), BuildError> {
    let log = home.join("var/log/chroots.log");
    if let Some(d) = log.parent() {
        std::fs::create_dir_all(d).map_err(|e| BuildError::io(d, e))?;
    }
    let (codename, arch) = (chroot.codename.clone(), chroot.architecture.clone());
    if chroot.conf_path(home).exists() || chroot.legacy_conf_path().exists() {
        let op = Op::RemoveConf {
            codename: codename.clone(),
            arch: arch.clone(),
        };
        helper::invoke(home, &op, &log)?;
    }
    if chroot.dir(home).symlink_metadata().is_ok() {
        let op = Op::RemoveTree {
            codename,
            arch,
            part: Part::All,
        };
        helper::invoke(home, &op, &log)?;
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The user mbd runs as.
pub fn daemon_user() -> String {
    // SAFETY: getpwuid returns a pointer into static storage or NULL; read at once.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() {
            return "root".to_string();
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_string_lossy()
            .into_owned()
    }
}

/// The sudo rule a dedicated (non-root) user needs to run mbd with the home `home`, naming
/// this very binary (see [`helper::sudoers`]).
pub fn sudoers(user: &str, home: &Path) -> Result<String, BuildError> {
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| BuildError::io(Path::new("/proc/self/exe"), e))?;
    Ok(helper::sudoers(user, home, &exe))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schroot_conf_is_an_overlay_directory_with_the_right_personality() {
        let c = Chroot::new(
            "bookworm",
            "i386",
            "http://deb.example/debian",
            Backend::Directory,
        );
        let home = Path::new("/var/lib/mbd");
        let tag = home_tag(home);
        assert_eq!(tag.len(), 8);
        assert_ne!(tag, home_tag(Path::new("/var/lib/mbd2")));
        let conf = c.schroot_conf(home, "amd64", "mbd");
        assert!(
            conf.contains(&format!("[mbd-{tag}-bookworm-i386]\n")),
            "{conf}"
        );
        assert!(conf.contains(&format!("type=directory\ndirectory=/var/lib/mbd/var/chroots/bookworm-i386/source\nunion-type=overlay\nunion-overlay-directory=/dev/shm/mbd-schroot-{tag}\n")), "{conf}");
        assert!(conf.contains("personality=linux32\n"));
        assert!(conf.contains("profile=sbuild\n"));
        assert!(conf.contains("command-prefix=eatmydata\n"));
        assert!(conf.contains("users=root,mbd\nroot-users=root,mbd\nsource-root-users=root,mbd\n"));
        assert_eq!(
            c.conf_path(home),
            Path::new(&format!(
                "/etc/schroot/chroot.d/mbd-{tag}-bookworm-i386.conf"
            ))
        );
        assert_eq!(
            c.legacy_conf_path(),
            Path::new("/etc/schroot/chroot.d/mbd-bookworm-i386.conf")
        );
        let f = Chroot::new("bookworm", "amd64", "m", Backend::File);
        let conf = f.schroot_conf(Path::new("/h"), "amd64", "root");
        assert!(conf.contains("type=file\nfile=/h/var/chroots/bookworm-amd64/source.tar\n"));
        assert!(conf.contains("personality=linux\n"));
        assert!(conf.contains("users=root\n"));
    }
}
