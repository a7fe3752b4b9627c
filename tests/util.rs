use std::path::{Path, PathBuf};
use std::process::Command;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub fn pkg(name: &str) -> PathBuf {
    fixtures().join("pkg").join(name)
}

pub fn uploaders() -> mbd::openpgp::Keyring {
    mbd::openpgp::Keyring::from_file(&fixtures().join("keys/uploaders.asc")).unwrap()
}

/// The fingerprint of a fixture key (`keys/fingerprints`).
pub fn fingerprint(who: &str) -> String {
    let text = std::fs::read_to_string(fixtures().join("keys/fingerprints")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{who} ")))
        .unwrap_or_else(|| panic!("no fixture key {who}"))
        .to_string()
}

/// Files in a fixture directory whose names end with `suffix`, sorted.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// Runs a command; returns (success, stdout+stderr).
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A static file server on 127.0.0.1:0 for apt: GET and HEAD of files below `root`, one
/// request per connection. It stops when dropped.
pub struct HttpServer {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    pub fn start(root: &Path) -> HttpServer {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let root = root.to_path_buf();
        let handle = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                        break;
                    }
                }
                let mut words = request.split_whitespace();
                let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or("/"));
                let path = percent_decode(target.split('?').next().unwrap_or("/"));
                let file = root.join(path.trim_start_matches('/'));
                let mut out = stream;
                let safe = !path.split('/').any(|c| c == "..");
                match std::fs::read(&file) {
                    Ok(body) if safe && file.is_file() => {
                        let _ = write!(
                            out,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        if method != "HEAD" {
                            let _ = out.write_all(&body);
                        }
                    }
                    _ => {
                        let _ = write!(
                            out,
                            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                    }
                }
            }
        });
        HttpServer {
            port,
            stop,
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An isolated apt: its own configuration, lists, cache and dpkg database in a temporary
/// directory; nothing of the host's apt state is read or changed.
pub struct Apt {
    pub dir: tempfile::TempDir,
}

impl Apt {
    /// `sources` is the content of a deb822 `.sources` file.
    pub fn new(sources: &str) -> Apt {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for d in [
            "etc/apt/apt.conf.d",
            "etc/apt/preferences.d",
            "etc/apt/sources.list.d",
            "etc/apt/trusted.gpg.d",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            "var/lib/dpkg/info",
            "var/lib/dpkg/updates",
            "var/log/apt",
            "download",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(r.join("var/lib/dpkg/status"), "").unwrap();
        std::fs::write(r.join("etc/apt/sources.list"), "").unwrap();
        std::fs::write(r.join("etc/apt/sources.list.d/mbd.sources"), sources).unwrap();
        let rd = r.display();
        std::fs::write(
            r.join("apt.conf"),
            format!(
                "Dir \"{rd}/\"; Dir::State \"{rd}/var/lib/apt/\"; Dir::State::status \"{rd}/var/lib/dpkg/status\";\n\
                 Dir::Cache \"{rd}/var/cache/apt/\"; Dir::Etc \"{rd}/etc/apt/\"; Dir::Log \"{rd}/var/log/apt/\";\n\
                 APT::Architecture \"amd64\"; APT::Architectures {{ \"amd64\"; }}; Acquire::Languages \"none\";\n\
                 Debug::NoLocking \"true\"; APT::Sandbox::User \"root\";\n\
                 DPkg::Options {{ \"--root={rd}\"; \"--admindir={rd}/var/lib/dpkg\"; \"--force-script-chrootless\"; \"--force-not-root\"; }};\n\
                 DPkg::Use-Pty \"0\";\n"
            ),
        )
        .unwrap();
        Apt { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Runs apt-get with this configuration; `--error-on=any` makes every warning fatal.
    pub fn get(&self, args: &[&str]) -> (bool, String) {
        run(Command::new("apt-get")
            .env("APT_CONFIG", self.root().join("apt.conf"))
            .current_dir(self.root().join("download"))
            .args(args))
    }

    pub fn update(&self) {
        let (ok, out) = self.get(&["--error-on=any", "update"]);
        assert!(ok, "apt-get update failed:\n{out}");
    }

    pub fn downloaded(&self, name: &str) -> PathBuf {
        self.root().join("download").join(name)
    }
}

/// Runs the real `mbd` binary.
pub fn mbd(home: &Path, args: &[&str]) -> (bool, String) {
    run(Command::new(env!("CARGO_BIN_EXE_mbd"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1763856000"))
}

/// Like [`mbd`], failing the test with the output when the command fails.
pub fn mbd_ok(home: &Path, args: &[&str]) -> String {
    let (ok, out) = mbd(home, args);
    assert!(ok, "mbd {args:?} failed:\n{out}");
    out
}

/// Builds a tiny `Architecture: all` package (no dependencies) with dpkg-deb.
pub fn make_deb(dir: &Path, name: &str, version: &str) -> PathBuf {
    make_deb_with(dir, name, version, "test package")
}

/// Like [`make_deb`], with a chosen description (so two builds can differ).
pub fn make_deb_with(dir: &Path, name: &str, version: &str, description: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let root = dir.join(format!("build-{name}-{version}"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join(format!("usr/share/{name}"))).unwrap();
    std::fs::write(root.join(format!("usr/share/{name}/version")), version).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!("Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: mbd tests <tests@mbd.invalid>\nSection: misc\nPriority: optional\nDescription: {description} {name}\n"),
    )
    .unwrap();
    let out = dir.join(format!("{name}_{version}_all.deb"));
    let (ok, text) = run(Command::new("dpkg-deb")
        .args(["-Znone", "--root-owner-group", "--build"])
        .arg(&root)
        .arg(&out));
    assert!(ok, "{text}");
    std::fs::remove_dir_all(&root).unwrap();
    out
}

/// Real Debian packages from the host's apt sources (`apt-get download`; needs `apt-get update`
/// to have run), cached in `target/real-debs/` so that later runs do not download again: a
/// name counts as cached when a `<name>_*.deb` file is there. Returns the cached file of each
/// name that could be had, and for each other name why not.
pub fn real_debs(names: &[&str]) -> (Vec<PathBuf>, Vec<String>) {
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/real-debs");
    std::fs::create_dir_all(&cache).unwrap();
    let cached = |name: &str| -> Option<PathBuf> {
        let prefix = format!("{name}_");
        files_ending(&cache, ".deb").into_iter().find(|p| {
            p.file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with(&prefix))
        })
    };
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| cached(n).is_none())
        .collect();
    let mut failures = Vec::new();
    if !missing.is_empty() {
        // Download next to the cache and move complete files in, so an interrupted run never
        // leaves a partial file that looks cached.
        let tmp = tempfile::tempdir_in(&cache).unwrap();
        let download = |names: &[&str]| {
            run(Command::new("apt-get")
                .args(["download", "-q"])
                .args(names)
                .current_dir(tmp.path()))
        };
        if !download(&missing).0 {
            // One unavailable name fails the whole batch: take the others one by one.
            for name in &missing {
                let (ok, out) = download(&[name]);
                if !ok {
                    failures.push(format!("{name}: apt-get download failed: {}", out.trim()));
                }
            }
        }
        for deb in files_ending(tmp.path(), ".deb") {
            std::fs::rename(&deb, cache.join(deb.file_name().unwrap())).unwrap();
        }
    }
    let mut found = Vec::new();
    for name in names {
        match cached(name) {
            Some(p) => found.push(p),
            None if failures.iter().any(|f| f.starts_with(&format!("{name}:"))) => {}
            None => failures.push(format!("{name}: not downloaded")),
        }
    }
    (found, failures)
}

/// The real `mbd` binary as [`mbd`] runs it (same home and `SOURCE_DATE_EPOCH`), not started:
/// for tests that spawn it and kill it.
pub fn mbd_command(home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mbd"));
    cmd.arg("--home")
        .arg(home)
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1763856000");
    cmd
}
