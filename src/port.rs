//! Ports: a source package already in one distribution becomes a new source upload for
//! another (or the same: a rebuild), with a version made by mini-buildd's rules (§4.4 of the
//! reference), a changelog entry by the archive, both `.dsc` and `.changes` signed by the
//! archive key, into our own incoming — from there it goes the way of every upload.
//!
//! The source tree work is dpkg's (`dpkg-source -x`/`-b`, `dpkg-genchanges -S`); the version
//! arithmetic is pure and tested against the reference's examples.

use crate::incoming::Incoming;
use crate::repo::{Engine, RepoError};
use crate::state::{Record, StateError, StateStore};
use regex::Regex;
use sha1::{Digest, Sha1};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Refused(String),
    #[error("{program} failed in {dir}: {output}")]
    Command {
        program: String,
        dir: PathBuf,
        output: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Incoming { path: PathBuf, reason: String },
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PortError + '_ {
    move |source| PortError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The right-most match of `re` in `text`, as Python's `finditer` sees it: a pattern that can
/// match the empty string also matches at the very end.
fn rightmost(re: &Regex, text: &str) -> Option<(usize, usize)> {
    if let Some(m) = re.find_at(text, text.len()) {
        if m.start() == text.len() {
            return Some((m.start(), m.end()));
        }
    }
    re.find_iter(text).last().map(|m| (m.start(), m.end()))
}

fn bad_rule(rule: &str, e: regex::Error) -> PortError {
    PortError::Refused(format!(
        "version rule '{rule}' is not a regular expression: {e}"
    ))
}

/// The version a port gets (§4.4): from a distribution whose version rule is `from_regex` to
/// one whose default version appendix is `to_default`. `rebuild_stamp` (`YYYYmmddHHMMSS`,
/// UTC) makes it a rebuild into the same distribution instead.
pub fn new_version(
    version: &str,
    from_regex: &str,
    to_default: &str,
    rebuild_stamp: Option<&str>,
) -> Result<String, PortError> {
    if let Some(stamp) = rebuild_stamp {
        let re = Regex::new(r"\+rebuilt[0-9]{14}").map_err(|e| bad_rule("+rebuilt", e))?;
        return Ok(match rightmost(&re, version) {
            Some((s, e)) => format!("{}+rebuilt{stamp}{}", &version[..s], &version[e..]),
            None => format!("{version}+rebuilt{stamp}"),
        });
    }
    let from = Regex::new(from_regex).map_err(|e| bad_rule(from_regex, e))?;
    let digit = Regex::new(r"\+[0-9]").map_err(|e| bad_rule(r"\+[0-9]", e))?;
    let apdx = rightmost(&from, version);
    let mut to = to_default.to_string();
    if let Some((s, e)) = apdx {
        let a = &version[s..e];
        if let Some((rs, re)) = rightmost(&digit, a) {
            let rev = &a[rs..re];
            to = match rightmost(&digit, to_default) {
                Some((ts, te)) => format!("{}{rev}{}", &to_default[..ts], &to_default[te..]),
                None => format!("{to_default}{rev}"),
            };
        }
    }
    Ok(match apdx {
        Some((s, e)) => format!("{}{to}{}", &version[..s], &version[e..]),
        None => format!("{version}{to}"),
    })
}

/// What to do once an upload is installed: migrate it on through its suites (keyring
/// packages), port it to further distributions (the `auto-ports` upload option). Stored as
/// `<source>_<version>` in the state store.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AfterInstall {
    pub migrate_full: bool,
    pub ports: Vec<String>,
}

impl Record for AfterInstall {
    const TABLE: &'static str = "after_install";
}

impl AfterInstall {
    pub fn key(source: &str, version: &str) -> String {
        format!("{source}_{version}")
    }

    /// Adds to what is stored for the upload.
    pub fn store(&self, state: &StateStore, source: &str, version: &str) -> Result<(), StateError> {
        let key = AfterInstall::key(source, version);
        let mut all = state.get::<AfterInstall>(&key)?.unwrap_or_default();
        all.migrate_full |= self.migrate_full;
        for p in &self.ports {
            if !all.ports.contains(p) {
                all.ports.push(p.clone());
            }
        }
        state.put(&key, &all)
    }

    /// Takes (loads and deletes) what is stored for an upload.
    pub fn take(
        state: &StateStore,
        source: &str,
        version: &str,
    ) -> Result<Option<AfterInstall>, StateError> {
        let key = AfterInstall::key(source, version);
        let found = state.get::<AfterInstall>(&key)?;
        if found.is_some() {
            state.delete::<AfterInstall>(&key)?;
        }
        Ok(found)
    }
}

/// What a port produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ported {
    pub source: String,
    pub version: String,
    pub distribution: String,
    /// The `.changes` in incoming (decide it with the usual upload processing).
    #[serde(skip)]
    pub changes: PathBuf,
}

/// `YYYYmmddHHMMSS` and the RFC 2822 date of a time (UTC).
pub fn stamps(secs: i64) -> (String, String) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    let date = httpdate::fmt_http_date(t).replace(" GMT", " +0000");
    let day = crate::repo::release::civil_date(secs).replace('-', "");
    let s = secs.rem_euclid(86_400);
    (
        format!("{day}{:02}{:02}{:02}", s / 3600, s / 60 % 60, s % 60),
        date,
    )
}

/// What to port where.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub source: &'a str,
    /// Where it is (a rollback distribution too).
    pub from: &'a str,
    /// An uploadable distribution (the same as `from` for a rebuild).
    pub to: &'a str,
    /// The version in `from` (default: the one there).
    pub version: Option<&'a str>,
    /// `MINI_BUILDD_OPTION` lines of the new changelog entry.
    pub options: &'a [String],
}

/// Ports a source package; the result waits in incoming.
pub fn port(
    engine: &Engine,
    incoming: &Incoming,
    req: &Request<'_>,
    now: i64,
) -> Result<Ported, PortError> {
    let Request {
        source,
        from,
        to,
        version,
        options,
    } = *req;
    let from_r = engine.resolve(from)?;
    let to_r = uploadable(engine, to, "port")?;
    let (old_version, files) = engine.source_files(from, source, version)?;
    let from_regex = from_r.layout.mandatory_version_regex(
        &from_r.suite,
        &from_r.repository.identity,
        &from_r.distribution.codeversion,
    );
    let to_default = to_r.layout.default_version(
        &to_r.suite,
        &to_r.repository.identity,
        &to_r.distribution.codeversion,
    );
    let (stamp, date) = stamps(now);
    let same = from_r.name.main() == to_r.name;
    let new = new_version(
        &old_version,
        &from_regex,
        &to_default,
        same.then_some(stamp.as_str()),
    )?;
    let dsc = files
        .first()
        .ok_or_else(|| PortError::Refused(format!("port: {source} has no .dsc in {from}")))?;
    let sha1 = hex::encode(Sha1::digest(std::fs::read(dsc).map_err(io(dsc))?));
    let work = Workdir::new(engine.home())?;
    for f in &files {
        let name = f.file_name().unwrap_or_default();
        std::fs::copy(f, work.path().join(name)).map_err(io(f))?;
    }
    let dsc_name = dsc
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let lines = vec![
        "Automated port via mbd (no changes).".to_string(),
        format!("  Original DSC's SHA1: {sha1}."),
    ];
    let to_name = to_r.name.to_string();
    repack(
        engine,
        incoming,
        &work,
        &dsc_name,
        (source, &new, &to_name),
        lines,
        options,
        &date,
    )
}

/// Unpacks the `.dsc` in `work`, adds the changelog entry (`lines`, then one line per
/// option) for (source, version, distribution) and uploads the result.
#[allow(clippy::too_many_arguments)]
fn repack(
    engine: &Engine,
    incoming: &Incoming,
    work: &Workdir,
    dsc_name: &str,
    (source, version, dist): (&str, &str, &str),
    mut lines: Vec<String>,
    options: &[String],
    date: &str,
) -> Result<Ported, PortError> {
    run(Command::new("dpkg-source")
        .args(["--no-check", "-x", dsc_name, "src"])
        .current_dir(work.path()))?;
    let tree = work.path().join("src");
    lines.extend(options.iter().map(|o| format!("MINI_BUILDD_OPTION: {o}")));
    prepend_changelog(engine, &tree, source, version, dist, &lines, date)?;
    let changes = build_upload(engine, incoming, work.path(), &tree, source, version)?;
    Ok(Ported {
        source: source.to_string(),
        version: version.to_string(),
        distribution: dist.to_string(),
        changes,
    })
}

/// Resolves the distribution an upload made by `call` goes to: it must take uploads (not a
/// rollback, an uploadable suite).
pub(crate) fn uploadable(
    engine: &Engine,
    dist: &str,
    call: &str,
) -> Result<crate::repo::Resolved, PortError> {
    let r = engine.resolve(dist)?;
    if r.is_rollback() || !r.suite.uploadable {
        return Err(PortError::Refused(format!(
            "{call}: {dist} is not an uploadable distribution"
        )));
    }
    Ok(r)
}

/// The version of a package the daemon makes itself (keyring and test packages): a UTC
/// timestamp with the suite's default appendix; and the changelog's date.
pub(crate) fn stamped_version(r: &crate::repo::Resolved, now: i64) -> (String, String) {
    let (stamp, date) = stamps(now);
    let appendix = r.layout.default_version(
        &r.suite,
        &r.repository.identity,
        &r.distribution.codeversion,
    );
    (format!("{stamp}{appendix}"), date)
}

/// An external port: the source package at `dsc_url` (fetched with the files it lists,
/// checksums verified; its signature must be by one of the target repository's uploaders
/// unless `allow_unauthenticated`) becomes an upload to `to` with the target's default
/// version appended (`1.2.3` → `1.2.3~test12+1`).
#[allow(clippy::too_many_arguments)]
pub fn port_ext(
    engine: &Engine,
    state: &StateStore,
    incoming: &Incoming,
    fetch: &dyn crate::config::Fetch,
    dsc_url: &str,
    to: &str,
    options: &[String],
    allow_unauthenticated: bool,
    now: i64,
) -> Result<Ported, PortError> {
    let to_r = uploadable(engine, to, "port_ext")?;
    let (base, dsc_name) = dsc_url
        .rsplit_once('/')
        .filter(|(_, n)| n.ends_with(".dsc") && crate::files::safe_file_name(n).is_ok())
        .ok_or_else(|| PortError::Refused(format!("port_ext: {dsc_url} does not name a .dsc")))?;
    let get = |url: &str| -> Result<Vec<u8>, PortError> {
        match fetch.get(url) {
            Ok((200, body)) => Ok(body),
            Ok((status, _)) => Err(PortError::Refused(format!(
                "port_ext: {url}: HTTP {status}"
            ))),
            Err(e) => Err(PortError::Refused(format!("port_ext: {url}: {e}"))),
        }
    };
    let data = get(dsc_url)?;
    let keyring = crate::incoming::uploaders(engine, state, &to_r.repository.identity)?;
    let trust = if allow_unauthenticated {
        crate::files::Trust::Unchecked
    } else {
        crate::files::Trust::Keyring(&keyring)
    };
    let dsc = crate::dsc::Dsc::parse(&data, Path::new(dsc_name), trust)
        .map_err(|e| PortError::Refused(format!("port_ext: {e}")))?;
    let work = Workdir::new(engine.home())?;
    let dsc_path = work.path().join(dsc_name);
    std::fs::write(&dsc_path, &data).map_err(io(&dsc_path))?;
    for f in &dsc.files.entries {
        let name = crate::files::safe_file_name(&f.name)
            .map_err(|e| PortError::Refused(format!("port_ext: {e}")))?;
        let body = get(&format!("{base}/{name}"))?;
        let p = work.path().join(name);
        std::fs::write(&p, body).map_err(io(&p))?;
    }
    dsc.verify_files(work.path())
        .map_err(|e| PortError::Refused(format!("port_ext: {e}")))?;
    let to_default = to_r.layout.default_version(
        &to_r.suite,
        &to_r.repository.identity,
        &to_r.distribution.codeversion,
    );
    let new = format!("{}{to_default}", dsc.version);
    let (_, date) = stamps(now);
    let to_name = to_r.name.to_string();
    repack(
        engine,
        incoming,
        &work,
        dsc_name,
        (&dsc.source, &new, &to_name),
        vec![
            "Automated port via mbd (no changes).".to_string(),
            format!("  External port from: {dsc_url}"),
        ],
        options,
        &date,
    )
}

/// The archive's name and address for changelog trailers.
pub fn archive_maintainer(engine: &Engine) -> String {
    let id = &engine.instance().identity;
    format!("mbd archive {id} <mbd@{id}>")
}

/// Puts a new top entry into `debian/changelog`; each item is a `  * ` line (items starting
/// with spaces continue the previous one).
pub fn prepend_changelog(
    engine: &Engine,
    tree: &Path,
    source: &str,
    version: &str,
    distribution: &str,
    items: &[String],
    date: &str,
) -> Result<(), PortError> {
    let path = tree.join("debian/changelog");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let mut entry = format!("{source} ({version}) {distribution}; urgency=medium\n\n");
    for i in items {
        if let Some(cont) = i.strip_prefix("  ") {
            entry.push_str(&format!("    {cont}\n"));
        } else {
            entry.push_str(&format!("  * {i}\n"));
        }
    }
    entry.push_str(&format!("\n -- {}  {date}\n", archive_maintainer(engine)));
    if !old.is_empty() {
        entry.push('\n');
        entry.push_str(&old);
    }
    std::fs::write(&path, entry).map_err(io(&path))
}

/// Builds the source package of `tree` (in `work`), signs its `.dsc` and `.changes` with the
/// archive key and hands the files to incoming, the `.changes` last. Returns its path there.
pub fn build_upload(
    engine: &Engine,
    incoming: &Incoming,
    work: &Path,
    tree: &Path,
    source: &str,
    version: &str,
) -> Result<PathBuf, PortError> {
    run(Command::new("dpkg-source")
        .args(["-b", "src"])
        .current_dir(work))?;
    // File names carry the version without its epoch.
    let plain = version.split_once(':').map_or(version, |(_, v)| v);
    let dsc = work.join(format!("{source}_{plain}.dsc"));
    sign_in_place(engine, &dsc)?;
    let changes_name = format!("{source}_{plain}_source.changes");
    run(Command::new("dpkg-genchanges")
        .args(["-S", "-sa", &format!("-O../{changes_name}")])
        .current_dir(tree))?;
    let changes = work.join(&changes_name);
    sign_in_place(engine, &changes)?;
    let parsed =
        crate::changes::Changes::read(&changes, crate::files::Trust::Unchecked).map_err(|e| {
            PortError::Incoming {
                path: changes.clone(),
                reason: e.to_string(),
            }
        })?;
    let mut names: Vec<String> = parsed
        .files
        .entries
        .iter()
        .map(|f| f.name.clone())
        .collect();
    names.push(changes_name.clone());
    let mut last = PathBuf::new();
    for name in names {
        let from = work.join(&name);
        let tmp = incoming.temporary();
        std::fs::copy(&from, &tmp).map_err(io(&from))?;
        last = incoming
            .commit(&tmp, &name, None)
            .map_err(|e| PortError::Incoming {
                path: from.clone(),
                reason: e.to_string(),
            })?;
    }
    Ok(last)
}

fn sign_in_place(engine: &Engine, path: &Path) -> Result<(), PortError> {
    let text = std::fs::read(path).map_err(io(path))?;
    let signed = engine
        .key()
        .clearsign(&text)
        .map_err(|e| PortError::Refused(format!("signing {}: {e}", path.display())))?;
    std::fs::write(path, signed).map_err(io(path))
}

fn run(cmd: &mut Command) -> Result<(), PortError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let dir = cmd
        .get_current_dir()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let out = cmd
        .env("LC_ALL", "C.UTF-8")
        .output()
        .map_err(|e| PortError::Command {
            program: program.clone(),
            dir: dir.clone(),
            output: e.to_string(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(PortError::Command {
        program,
        dir,
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .trim()
        .to_string(),
    })
}

/// A scratch directory under the home, removed when dropped.
pub struct Workdir(PathBuf);

impl Workdir {
    pub fn new(home: &Path) -> Result<Workdir, PortError> {
        let base = home.join("var/tmp");
        std::fs::create_dir_all(&base).map_err(io(&base))?;
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(|e| PortError::Refused(e.to_string()))?;
        let dir = base.join(format!("port-{}", hex::encode(bytes)));
        std::fs::create_dir(&dir).map_err(io(&dir))?;
        Ok(Workdir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_versions_as_the_reference_computes_them() {
        let sid = r"~testSID\+[1-9]";
        let cases = [
            ("1.2.3-1~testSID+1", sid, "~test70+1", "1.2.3-1~test70+1"),
            ("1.2.3-1~testSID+4", sid, "~test70+1", "1.2.3-1~test70+4"),
            (
                "1.2.3-1~testSID+4fud15",
                sid,
                "~test70+1",
                "1.2.3-1~test70+4fud15",
            ),
            (
                "1.2.3-1~testSID+0exp2",
                r"~testSID\+0",
                "~test70+0",
                "1.2.3-1~test70+0exp2",
            ),
            ("1.2.3-1", ".*", "~port+1", "1.2.3-1~port+1"),
            (
                "1.0-1~test12+1",
                r"~test12\+[1-9]",
                "~dev12+1",
                "1.0-1~dev12+1",
            ),
            ("1.0-1", r"~test12\+[1-9]", "~test13+1", "1.0-1~test13+1"),
        ];
        for (v, from, to, want) in cases {
            assert_eq!(new_version(v, from, to, None).unwrap(), want, "{v}");
        }
    }

    #[test]
    fn rebuilds_append_or_replace_the_stamp() {
        let r = |v: &str, stamp: &str| new_version(v, ".*", "", Some(stamp)).unwrap();
        assert_eq!(r("1.2.3", "20130215100453"), "1.2.3+rebuilt20130215100453");
        assert_eq!(
            r("1.2.3+rebuilt20130215100453", "20130217120517"),
            "1.2.3+rebuilt20130217120517"
        );
        assert!(new_version("1", "(", "", None).is_err());
    }

    #[test]
    fn stamps_are_utc() {
        let (stamp, date) = stamps(1_795_953_600);
        assert_eq!(stamp, "20261129120000");
        assert_eq!(date, "Sun, 29 Nov 2026 12:00:00 +0000");
    }
}
