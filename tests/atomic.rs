//! Publishing is atomic for apt: a client that reads `InRelease` at any moment and then fetches
//! the files it lists always gets matching hashes, also when mbd is killed (SIGKILL) in the
//! middle of publishing.
//!
//! The main test kills `mbd repo publish` (all 46 distributions), `mbd repo include` and
//! `mbd repo migrate` (which shift every rollback slot of their suite and free old pool
//! files) at moments spread over their whole run time, and checks the published tree after
//! every kill ([`check_tree`] says exactly what is asserted, down to the pool files the indices
//! name). After each killed operation that changes the store, and at the end, it lets the
//! engine recover (any command opens it: `repo ls`), checks the settled tree, and asserts that
//! recovery alone brought every distribution up to date: publishing again afterwards (the
//! distributions the rounds change; at the end, all of them) changes no signed Release text.
//!
//! Kill delays come from a small PRNG seeded per iteration; the seed and delay are printed on
//! failure. `MBD_ATOMIC_SEED=<u64>` runs another sequence, `MBD_ATOMIC_ITERATIONS=<n>` a
//! longer one.

use crate::util::{make_deb, mbd_command, mbd_ok, pkg, run};
use mbd::openpgp::Keyring;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEFAULT_SEED: u64 = 0x6d62_645f_6174_6f6d;
const DEFAULT_ITERATIONS: u64 = 30;
const REPO: &str = "test";
const SUITE: &str = "bookworm-test-unstable";
const TESTING: &str = "bookworm-test-testing";

/// splitmix64: tiny, deterministic, and good enough to spread kill times.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    let Ok(v) = std::env::var(name) else {
        return default;
    };
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    parsed.unwrap_or_else(|e| panic!("{name}={v}: {e}"))
}

/// Size and every hash of some content, computed here (not with mbd's own code).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sums {
    size: u64,
    md5: String,
    sha1: String,
    sha256: String,
    sha512: String,
}

impl Sums {
    fn of(data: &[u8]) -> Sums {
        use sha2::Digest;
        Sums {
            size: data.len() as u64,
            md5: hex::encode(md5::Md5::digest(data)),
            sha1: hex::encode(sha1::Sha1::digest(data)),
            sha256: hex::encode(sha2::Sha256::digest(data)),
            sha512: hex::encode(sha2::Sha512::digest(data)),
        }
    }
}

impl fmt::Display for Sums {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes, MD5 {}, SHA256 {}",
            self.size, self.md5, self.sha256
        )
    }
}

/// The hash lists of a Release and the length of their hex digests.
const ALGORITHMS: [(&str, usize); 4] = [
    ("MD5Sum", 32),
    ("SHA1", 40),
    ("SHA256", 64),
    ("SHA512", 128),
];

/// The files a Release lists, path → size and every hash. Every hash list must be there, list
/// the same files with the same sizes, and `Acquire-By-Hash: yes` must be set.
fn listed_files(release: &str) -> Result<BTreeMap<String, Sums>, String> {
    let mut lists: BTreeMap<&str, BTreeMap<String, (u64, String)>> = BTreeMap::new();
    let mut current: Option<(&str, usize)> = None;
    let mut by_hash = false;
    for line in release.lines() {
        if let Some(entry) = line.strip_prefix(' ') {
            let Some((alg, len)) = current else {
                continue; // a continuation line of another field
            };
            let words: Vec<&str> = entry.split_whitespace().collect();
            let [hash, size, path] = words[..] else {
                return Err(format!("malformed {alg} line '{line}'"));
            };
            if hash.len() != len || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("malformed {alg} hash in '{line}'"));
            }
            let size: u64 = size
                .parse()
                .map_err(|_| format!("malformed size in '{line}'"))?;
            let list = lists.entry(alg).or_default();
            if list
                .insert(path.to_string(), (size, hash.to_string()))
                .is_some()
            {
                return Err(format!("{path} listed twice under {alg}"));
            }
        } else {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("malformed line '{line}'"))?;
            current = ALGORITHMS
                .iter()
                .copied()
                .find(|(a, _)| *a == name && value.trim().is_empty());
            if name == "Acquire-By-Hash" && value.trim() == "yes" {
                by_hash = true;
            }
        }
    }
    if !by_hash {
        return Err("no 'Acquire-By-Hash: yes'".into());
    }
    let list = |alg: &str| {
        lists
            .get(alg)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| format!("no {alg} list"))
    };
    let sha256 = list("SHA256")?;
    for (alg, _) in ALGORITHMS {
        let other = list(alg)?;
        let sizes = |l: &BTreeMap<String, (u64, String)>| {
            l.iter()
                .map(|(p, (s, _))| (p.clone(), *s))
                .collect::<Vec<_>>()
        };
        if sizes(other) != sizes(sha256) {
            return Err(format!("{alg} and SHA256 list other files or sizes"));
        }
    }
    let (md5, sha1, sha512) = (list("MD5Sum")?, list("SHA1")?, list("SHA512")?);
    Ok(sha256
        .iter()
        .map(|(path, (size, hash))| {
            (
                path.clone(),
                Sums {
                    size: *size,
                    md5: md5[path].1.clone(),
                    sha1: sha1[path].1.clone(),
                    sha256: hash.clone(),
                    sha512: sha512[path].1.clone(),
                },
            )
        })
        .collect())
}

/// When a tree is checked.
#[derive(Clone, Copy)]
enum Mode<'a> {
    /// Right after mbd was killed. `unfinished`: the distributions whose publish the store
    /// flags as not finished (the ones the next open republishes).
    Interrupted { unfinished: &'a BTreeSet<String> },
    /// After a command ran to completion (a publish, or a recovery by opening the engine).
    Settled,
}

/// What [`check_tree`] found.
#[derive(Debug, Default)]
struct Report {
    /// Distribution directories (relative to `dists/`) that have an `InRelease`.
    dists: BTreeSet<String>,
    /// Files listed in an `InRelease` whose by-hash copies and plain name were checked.
    listed: usize,
    /// Files under some `by-hash/SHA256|SHA512/` checked against their names.
    by_hash_files: usize,
    /// Pool file references (from the indices apt fetches) checked.
    pool_refs: usize,
    /// Plain names (in flagged distributions only) holding a whole index that is newer than
    /// what their `InRelease` lists.
    ahead: Vec<String>,
    /// Temporary files (`.<name>.tmp`) seen.
    temporary: usize,
    /// Everything that breaks an invariant, each naming the file, what was expected and found.
    problems: Vec<String>,
}

fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Device, inode, size, mtime and ctime of a file: while they stay the same, so does its
/// content (every write changes the ctime, which cannot be set back).
type Stamp = (u64, u64, u64, i64, i64, i64, i64);

/// The sums of files already read, by [`Stamp`]: other names of one file (mbd hard-links
/// `by-hash/SHA512/` and plain names to `by-hash/SHA256/`) and files unchanged since an earlier
/// check are not read again.
#[derive(Default)]
struct Hashed(HashMap<Stamp, Sums>);

impl Hashed {
    fn sums(&mut self, path: &Path) -> std::io::Result<Sums> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        let stamp = (
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        );
        if let Some(sums) = self.0.get(&stamp) {
            return Ok(sums.clone());
        }
        let sums = Sums::of(&std::fs::read(path)?);
        self.0.insert(stamp, sums.clone());
        Ok(sums)
    }
}

/// Every regular file below `root`: its path relative to `root` (`/`-separated), sorted.
fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(root.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let path = join(&rel, &entry.file_name().into_string().unwrap());
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort_unstable();
    out
}

/// `a/b/c` → (`a/b`, `c`); `c` → (``, `c`).
fn split_last(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The pool files an uncompressed `Packages` or `Sources` index refers to: (path relative to
/// the repository, size, SHA256).
fn pool_references(index: &[u8]) -> Vec<(String, u64, String)> {
    let text = String::from_utf8_lossy(index);
    let mut out = Vec::new();
    for stanza in text.split("\n\n").filter(|s| !s.trim().is_empty()) {
        let mut fields: Vec<(&str, String)> = Vec::new();
        for line in stanza.lines() {
            match (line.strip_prefix(' '), fields.last_mut()) {
                (Some(more), Some((_, value))) => {
                    value.push('\n');
                    value.push_str(more);
                }
                _ => {
                    let (name, value) = line.split_once(':').unwrap_or((line, ""));
                    fields.push((name, value.trim().to_string()));
                }
            }
        }
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        if let (Some(file), Some(size), Some(sha256)) =
            (field("Filename"), field("Size"), field("SHA256"))
        {
            out.push((
                file.to_string(),
                size.parse().unwrap_or(u64::MAX),
                sha256.to_string(),
            ));
        }
        if let (Some(dir), Some(list)) = (field("Directory"), field("Checksums-Sha256")) {
            for entry in list.lines().filter(|l| !l.trim().is_empty()) {
                let w: Vec<&str> = entry.split_whitespace().collect();
                if let [sha256, size, name] = w[..] {
                    out.push((
                        format!("{dir}/{name}"),
                        size.parse().unwrap_or(u64::MAX),
                        sha256.to_string(),
                    ));
                }
            }
        }
    }
    out
}

/// Checks a repository's `dists/` tree as apt would meet it. Asserted, in every mode:
///
/// 1. every file under a `by-hash/SHA256/` or `by-hash/SHA512/` directory (listed or kept
///    from an older publish) has exactly the content its name is the hash of;
/// 2. every `InRelease` verifies with the archive key, and its signed text sets
///    `Acquire-By-Hash: yes` and lists the same files with the same sizes under MD5Sum, SHA1,
///    SHA256 and SHA512;
/// 3. for every listed file `<d>/<name>`, both `<d>/by-hash/SHA256/<sha256>` and
///    `<d>/by-hash/SHA512/<sha512>` exist and have exactly the listed size and all four
///    listed hashes (that is what apt fetches, as `Acquire-By-Hash: yes` tells it);
/// 4. plain names: every listed file exists under its plain name and has exactly the listed
///    size and hashes. The one exception, only in [`Mode::Interrupted`] and only in a
///    distribution the store flags as unfinished: the plain name may instead hold another
///    whole index, i.e. content that is also present, complete, under
///    `<d>/by-hash/SHA256/<its sha256>` (the new index: the publish was killed after swapping
///    plain names in, before `InRelease`). A partial write matches neither and is always
///    reported;
/// 5. `Release` is byte-identical to the signed text of `InRelease` and `Release.gpg` verifies
///    it, except (in [`Mode::Interrupted`]) in a flagged distribution, where `Release` and
///    `Release.gpg` may already be the new ones while `InRelease` is still the old one;
/// 6. the pool files that the listed `Packages` and `Sources` indices (as apt fetches them,
///    by hash) refer to exist with the size and SHA256 those indices give.
///
/// In [`Mode::Settled`] there must also be no temporary file left anywhere.
fn check_tree(dists_root: &Path, keyring: &Keyring, mode: Mode<'_>, hashed: &mut Hashed) -> Report {
    let mut report = Report::default();
    let files = walk(dists_root);
    let mut by_hash: HashMap<String, Sums> = HashMap::new();
    let mut pool: HashMap<String, Option<Sums>> = HashMap::new();
    // Pool references by index content (many distributions carry identical indices).
    let mut references: HashMap<String, Vec<(String, u64, String)>> = HashMap::new();
    for rel in &files {
        let (parent, name) = split_last(rel);
        if is_temporary(name) {
            report.temporary += 1;
            if matches!(mode, Mode::Settled) {
                report.problems.push(format!(
                    "{rel}: temporary file left after a completed command"
                ));
            }
            continue;
        }
        let (by_hash_dir, alg) = split_last(parent);
        if split_last(by_hash_dir).1 != "by-hash" {
            continue;
        }
        let sums = hashed.sums(&dists_root.join(rel)).unwrap();
        let actual = match alg {
            "SHA256" => &sums.sha256,
            "SHA512" => &sums.sha512,
            other => {
                report
                    .problems
                    .push(format!("{rel}: unexpected by-hash/{other}"));
                continue;
            }
        };
        if actual != name {
            report.problems.push(format!(
                "{rel}: content is not what its name is the hash of: has {sums}"
            ));
        }
        report.by_hash_files += 1;
        by_hash.insert(rel.clone(), sums);
    }

    let repo_root = dists_root.parent().unwrap();
    for rel in files.iter().filter(|p| split_last(p).1 == "InRelease") {
        let dist = split_last(rel).0;
        report.dists.insert(dist.to_string());
        let flagged = match mode {
            Mode::Interrupted { unfinished } => unfinished.contains(dist),
            Mode::Settled => false,
        };
        let inrelease = std::fs::read(dists_root.join(rel)).unwrap();
        let body = match keyring.verify_cleartext(&inrelease) {
            Ok(v) => v.body,
            Err(e) => {
                report.problems.push(format!(
                    "{rel}: signature does not verify with the archive key: {e}"
                ));
                continue;
            }
        };
        let text = String::from_utf8_lossy(&body);
        let listed = match listed_files(&text) {
            Ok(l) => l,
            Err(e) => {
                report.problems.push(format!("{rel}: {e}"));
                continue;
            }
        };
        for (path, want) in &listed {
            report.listed += 1;
            let plain = join(dist, path);
            let dir = split_last(&plain).0;
            // Uncompressed Contents is listed but not published (as reprepro does): like apt,
            // check it through the listed `.gz`, which must decompress to exactly it.
            if split_last(path).1.starts_with("Contents-") && !path.ends_with(".gz") {
                let gz = format!("{path}.gz");
                match listed
                    .get(&gz)
                    .map(|g| format!("{dir}/by-hash/SHA256/{}", g.sha256))
                {
                    None => report
                        .problems
                        .push(format!("{plain}: listed without {gz} in {dist}/InRelease")),
                    Some(by) if by_hash.contains_key(&by) => {
                        let mut data = Vec::new();
                        let f = std::fs::File::open(dists_root.join(&by)).unwrap();
                        match flate2::read::MultiGzDecoder::new(f).read_to_end(&mut data) {
                            Ok(_) if Sums::of(&data) == *want => {}
                            Ok(_) => report.problems.push(format!(
                                "{by}: decompresses to {}; {dist}/InRelease lists {path} with {want}",
                                Sums::of(&data)
                            )),
                            Err(e) => report.problems.push(format!("{by}: not gzip: {e}")),
                        }
                    }
                    // The missing .gz by-hash file is reported with the .gz entry.
                    Some(_) => {}
                }
                continue;
            }
            for (alg, hash) in [("SHA256", &want.sha256), ("SHA512", &want.sha512)] {
                let by = format!("{dir}/by-hash/{alg}/{hash}");
                match by_hash.get(&by) {
                    None => report.problems.push(format!(
                        "{by}: missing; {dist}/InRelease lists {path} with {alg} {hash}"
                    )),
                    Some(found) if found != want => report
                        .problems
                        .push(format!("{by}: has {found}; {dist}/InRelease lists {want}")),
                    Some(_) => {}
                }
            }
            let by256 = format!("{dir}/by-hash/SHA256/{}", want.sha256);
            if (path.ends_with("/Packages") || path.ends_with("/Sources"))
                && by_hash.get(&by256) == Some(want)
            {
                let refs = references.entry(want.sha256.clone()).or_insert_with(|| {
                    pool_references(&std::fs::read(dists_root.join(&by256)).unwrap())
                });
                for (file, size, sha256) in refs.iter() {
                    report.pool_refs += 1;
                    let found = pool
                        .entry(file.clone())
                        .or_insert_with(|| hashed.sums(&repo_root.join(file)).ok());
                    match found {
                        Some(f) if f.size == *size && f.sha256 == *sha256 => {}
                        Some(f) => report.problems.push(format!(
                            "{file}: has {f}; {dist}/{path} (as InRelease lists it) says {size} bytes, SHA256 {sha256}"
                        )),
                        None => report.problems.push(format!(
                            "{file}: missing from the pool; {dist}/{path} (as InRelease lists it) refers to it"
                        )),
                    }
                }
            }
            let found = match hashed.sums(&dists_root.join(&plain)) {
                Ok(sums) => sums,
                Err(e) => {
                    report.problems.push(format!(
                        "{plain}: listed in {dist}/InRelease but unreadable: {e}"
                    ));
                    continue;
                }
            };
            if found == *want {
                continue;
            }
            let whole_index =
                by_hash.get(&format!("{dir}/by-hash/SHA256/{}", found.sha256)) == Some(&found);
            if flagged && whole_index {
                report.ahead.push(plain);
            } else {
                report.problems.push(format!(
                    "{plain}: has {found}; {dist}/InRelease lists {want}{}",
                    match (flagged, whole_index) {
                        (true, _) => " (publish interrupted, but this is no whole index under by-hash either: a partial write?)",
                        (false, true) => " (a whole newer index, but the store does not flag this distribution as unfinished)",
                        (false, false) => "",
                    }
                ));
            }
        }
        if !flagged {
            let release_path = join(dist, "Release");
            match std::fs::read(dists_root.join(&release_path)) {
                Ok(release) if release == body => {
                    let gpg = std::fs::read(dists_root.join(join(dist, "Release.gpg")))
                        .unwrap_or_default();
                    if let Err(e) = keyring.verify_detached(&release, &gpg) {
                        report
                            .problems
                            .push(format!("{dist}/Release.gpg: does not verify Release: {e}"));
                    }
                }
                Ok(_) => report.problems.push(format!(
                    "{release_path}: differs from the signed text of InRelease"
                )),
                Err(e) => report
                    .problems
                    .push(format!("{release_path}: unreadable: {e}")),
            }
        }
    }
    report
}

/// The signed text of the `InRelease` of `dists` (all when empty), by distribution directory.
fn signed_texts(
    dists_root: &Path,
    keyring: &Keyring,
    dists: &[String],
) -> BTreeMap<String, String> {
    walk(dists_root)
        .into_iter()
        .filter(|p| {
            let (dist, name) = split_last(p);
            name == "InRelease" && (dists.is_empty() || dists.iter().any(|d| d == dist))
        })
        .map(|p| {
            let v = keyring
                .verify_cleartext(&std::fs::read(dists_root.join(&p)).unwrap())
                .unwrap_or_else(|e| panic!("{p}: {e}"));
            (
                split_last(&p).0.to_string(),
                String::from_utf8(v.body).unwrap(),
            )
        })
        .collect()
}

/// The distributions of the test repository whose publish the store flags as unfinished,
/// read from a copy of the store (opening redb after a kill may repair the file, and the test
/// must leave that to mbd).
fn unfinished(home: &Path, scratch: &Path) -> BTreeSet<String> {
    let copy = scratch.join("flags.redb");
    let _ = std::fs::remove_file(&copy);
    std::fs::copy(mbd::repo::store_path(home), &copy).unwrap();
    let store = mbd::repo::store::Store::open(&copy).unwrap();
    store
        .unfinished_publishes()
        .unwrap()
        .into_iter()
        .filter(|(repo, _)| repo == REPO)
        .map(|(_, dist)| dist)
        .collect()
}

fn assert_clean(report: &Report, context: &dyn fmt::Display) {
    const SHOWN: usize = 20;
    assert!(
        report.problems.is_empty(),
        "{context}:\n{} problem(s) in the published tree:\n  {}{}",
        report.problems.len(),
        report
            .problems
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  "),
        if report.problems.len() > SHOWN {
            "\n  ..."
        } else {
            ""
        }
    );
}

/// One killed command.
struct Round {
    iteration: u64,
    seed: u64,
    args: Vec<String>,
    delay: Duration,
    span: Duration,
    /// "killed", or how it ended before the kill.
    outcome: String,
}

impl fmt::Display for Round {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "iteration {} (seed {:#x}): `mbd {}` {} after {} µs (an unkilled run took {} µs)",
            self.iteration,
            self.seed,
            self.args.join(" "),
            self.outcome,
            self.delay.as_micros(),
            self.span.as_micros()
        )
    }
}

/// Runs `mbd` to completion; returns how long it took.
fn timed(home: &Path, args: &[&str]) -> Duration {
    let started = Instant::now();
    mbd_ok(home, args);
    started.elapsed()
}

/// After a kill of an operation that changed the store: lets the engine recover, checks the
/// settled tree, and checks that recovery alone brought every distribution up to date: a
/// complete publish afterwards (of `republish`, or of everything) changes no signed text.
fn recover_completely(
    home: &Path,
    dists: &Path,
    keyring: &Keyring,
    scratch: &Path,
    context: &dyn fmt::Display,
    republish: &[String],
    hashed: &mut Hashed,
) -> Option<Report> {
    mbd_ok(home, &["repo", "ls", "churn"]);
    let flags = unfinished(home, scratch);
    assert!(
        flags.is_empty(),
        "{context}: still flagged unfinished after recovery: {flags:?}"
    );
    let recovered = check_tree(dists, keyring, Mode::Settled, hashed);
    assert_clean(
        &recovered,
        &format!("{context}, then recovered by `mbd repo ls churn`"),
    );
    let before = signed_texts(dists, keyring, republish);
    let mut args = vec!["repo", "publish"];
    args.extend(republish.iter().map(String::as_str));
    mbd_ok(home, &args);
    let after = signed_texts(dists, keyring, republish);
    let mut stale = Vec::new();
    for (dist, text) in &after {
        let old = before.get(dist).map(String::as_str).unwrap_or("");
        if old == text {
            continue;
        }
        let old = listed_files(old).unwrap_or_default();
        let new = listed_files(text).unwrap_or_default();
        let changed: Vec<String> = new
            .iter()
            .filter(|(p, s)| old.get(*p) != Some(*s))
            .map(|(p, s)| {
                let was = old.get(p).map_or("nothing".into(), |o| o.sha256.clone());
                format!(
                    "{p}: SHA256 {was} after recovery, {} after a publish",
                    s.sha256
                )
            })
            .collect();
        stale.push(format!(
            "{dist}: {} listed files differ, e.g. {}",
            changed.len(),
            changed.first().map_or("", String::as_str)
        ));
    }
    assert!(
        stale.is_empty(),
        "{context}:\nrecovery left {} distribution(s) stale (the store changed, but the next open did not republish them):\n  {}",
        stale.len(),
        stale.join("\n  ")
    );
    // In the loop, the next round's check covers the republished tree.
    if !republish.is_empty() {
        return None;
    }
    let published = check_tree(dists, keyring, Mode::Settled, hashed);
    assert_clean(
        &published,
        &format!("{context}, then `mbd {}`", args.join(" ")),
    );
    Some(published)
}

#[test]
fn apt_sees_matching_hashes_whenever_mbd_is_killed_while_publishing() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (h, scratch, debs) = (&home, dir.path(), dir.path().join("debs"));
    let dists = home.join("repositories").join(REPO).join("dists");
    mbd_ok(
        h,
        &[
            "setup",
            "--identity",
            "t",
            "--distributions",
            "bookworm:amd64+i386",
            "--repositories",
            "test:Default:bookworm",
        ],
    );
    for changes in [
        "mbd-hello_1.0-1~test12+1_amd64.changes",
        "mbd-hello_1.0-2~test12+1_amd64.changes",
    ] {
        mbd_ok(
            h,
            &["repo", "include", SUITE, pkg(changes).to_str().unwrap()],
        );
    }
    // Content in several suites: fillers for stable, testing and unstable.
    for (suite, count) in [("bookworm-test-stable", 8), (TESTING, 8), (SUITE, 16)] {
        let batch = dir.path().join(suite);
        for n in 0..count {
            make_deb(&batch, &format!("filler-{suite}-{n}"), "1.0");
        }
        mbd_ok(h, &["repo", "include", suite, batch.to_str().unwrap()]);
    }
    let key = scratch.join("archive.pgp");
    let out = mbd_command(h, &["pub-key", "--binary"]).output().unwrap();
    assert!(out.status.success());
    std::fs::write(&key, &out.stdout).unwrap();
    let keyring = Keyring::from_bytes(&out.stdout).unwrap();

    // Fill unstable and its 9 rollbacks with `churn` (the last 4 versions also migrated to
    // testing and its 3 rollbacks), and testing and its rollbacks with `drop`: from the first
    // round on, every include and migrate shifts all rollback slots of its suite and pushes
    // the oldest version out (freeing its pool file once nothing else refers to it). The last
    // of each is timed: how long each operation runs unkilled, the span kills are spread over.
    let (mut span_include, mut span_migrate, mut span_drop) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for n in 1..=10 {
        let deb = make_deb(&debs, "churn", &format!("0.{n}"));
        span_include = timed(h, &["repo", "include", SUITE, deb.to_str().unwrap()]);
        if n > 6 {
            span_migrate = timed(h, &["repo", "migrate", "churn", SUITE]);
        }
    }
    for n in 1..=4 {
        let deb = make_deb(&debs, "drop", &format!("0.{n}"));
        span_drop = timed(h, &["repo", "include", TESTING, deb.to_str().unwrap()]);
    }
    let span_publish = timed(h, &["repo", "publish"]);
    let mut hashed = Hashed::default();
    let baseline = check_tree(&dists, &keyring, Mode::Settled, &mut hashed);
    assert_clean(&baseline, &"after setup");
    assert_eq!(baseline.dists.len(), 46, "{:?}", baseline.dists);
    let setup_time = started.elapsed();

    let base_seed = env_u64("MBD_ATOMIC_SEED", DEFAULT_SEED);
    let iterations = env_u64("MBD_ATOMIC_ITERATIONS", DEFAULT_ITERATIONS);
    let (mut killed, mut mid_publish, mut ahead_rounds, mut ahead_files) = (0, 0, 0, 0);
    let mut checked = (0, 0, 0);
    let (mut check_time, mut recovery_time) = (Duration::ZERO, Duration::ZERO);
    // A suite's distributions (main and rollbacks): what a round into it can change, and what
    // is republished to see whether a recovery left any of them stale.
    let family = |suite: &str| -> Vec<String> {
        let dists: Vec<String> = baseline
            .dists
            .iter()
            .filter(|d| d.starts_with(suite))
            .cloned()
            .collect();
        assert!(dists.len() > 1, "{suite}: {dists:?}");
        dists
    };
    for i in 0..iterations {
        let seed = base_seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut rng = Rng(seed);
        // Publish everything; include a new `churn` into unstable (shifting its rollbacks);
        // publish again; migrate it to testing; include a new `drop` into testing (the oldest
        // `drop` falls out of testing's last rollback and leaves the pool).
        let (args, span, changes): (Vec<String>, Duration, Option<&str>) = match i % 5 {
            0 | 2 => (vec!["repo".into(), "publish".into()], span_publish, None),
            1 | 4 => {
                let (name, suite, span) = if i % 5 == 1 {
                    ("churn", SUITE, span_include)
                } else {
                    ("drop", TESTING, span_drop)
                };
                let deb = make_deb(&debs, name, &format!("1.{}", i + 1));
                (
                    vec![
                        "repo".into(),
                        "include".into(),
                        suite.into(),
                        deb.to_string_lossy().into_owned(),
                    ],
                    span,
                    Some(suite),
                )
            }
            _ => (
                vec![
                    "repo".into(),
                    "migrate".into(),
                    "churn".into(),
                    SUITE.into(),
                ],
                span_migrate,
                Some(TESTING),
            ),
        };
        let limit = span.as_micros() as u64 * 11 / 10;
        let delay = Duration::from_micros(rng.below(limit));
        let log = scratch.join("round.log");
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = mbd_command(h, &argv)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().unwrap();
        let outcome = match status.signal() {
            Some(9) => {
                killed += 1;
                "killed".to_string()
            }
            _ => format!("ended ({status}) before the kill"),
        };
        let round = Round {
            iteration: i,
            seed,
            args: args.clone(),
            delay,
            span,
            outcome,
        };
        // A migrate may fail on its own (the include before it was killed before its commit:
        // nothing new to migrate); anything else must not.
        assert!(
            status.success() || status.signal() == Some(9) || round.args[1] == "migrate",
            "{round}: failed:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );

        let check_started = Instant::now();
        let flags = unfinished(h, scratch);
        if !flags.is_empty() {
            mid_publish += 1;
        }
        let context = format!("{round}; store flags unfinished: {flags:?}");
        let was_killed = status.signal() == Some(9);
        // A command that ended by itself must have left a settled tree.
        assert!(was_killed || flags.is_empty(), "{context}");
        let mode = if was_killed {
            Mode::Interrupted { unfinished: &flags }
        } else {
            Mode::Settled
        };
        let report = check_tree(&dists, &keyring, mode, &mut hashed);
        assert_clean(&report, &context);
        assert_eq!(
            report.dists, baseline.dists,
            "{context}: distributions with an InRelease changed"
        );
        checked.0 += report.listed;
        checked.1 += report.by_hash_files;
        checked.2 += report.pool_refs;
        if !report.ahead.is_empty() {
            ahead_rounds += 1;
            ahead_files += report.ahead.len();
        }
        check_time += check_started.elapsed();
        if let Some(suite) = changes.filter(|_| was_killed) {
            let recovery_started = Instant::now();
            let republish = family(suite);
            recover_completely(
                h,
                &dists,
                &keyring,
                scratch,
                &context,
                &republish,
                &mut hashed,
            );
            recovery_time += recovery_started.elapsed();
        }
    }
    let loop_time = started.elapsed() - setup_time;

    // Any command opens the engine and recovers; then every name matches, Release included.
    let context = "after the last kill";
    let settled =
        recover_completely(h, &dists, &keyring, scratch, &context, &[], &mut hashed).unwrap();
    assert_eq!(settled.dists, baseline.dists);
    assert!(settled.ahead.is_empty());
    // The real gpgv agrees with the in-process verification.
    for dist in &settled.dists {
        let d = dists.join(dist);
        for args in [&["InRelease"][..], &["Release.gpg", "Release"]] {
            let (ok, out) = run(Command::new("gpgv")
                .arg("--keyring")
                .arg(&key)
                .args(args)
                .current_dir(&d));
            assert!(ok, "gpgv {args:?} in {dist}: {out}");
        }
    }

    eprintln!(
        "atomic: {:.1} s in all: {:.1} s of setup, {iterations} iterations (seed {base_seed:#x}) \
         in {:.1} s ({:.1} s checking trees after kills, {:.1} s recovering and republishing); \
         unkilled runs: publish {} ms, include {} ms and {} ms, migrate {} ms; {killed} killed, \
         {mid_publish} with a publish flagged unfinished, {ahead_rounds} with plain names ahead \
         of InRelease ({ahead_files} files); {} listed files, {} by-hash files and {} pool references checked",
        started.elapsed().as_secs_f64(),
        setup_time.as_secs_f64(),
        loop_time.as_secs_f64(),
        check_time.as_secs_f64(),
        recovery_time.as_secs_f64(),
        span_publish.as_millis(),
        span_include.as_millis(),
        span_drop.as_millis(),
        span_migrate.as_millis(),
        checked.0,
        checked.1,
        checked.2
    );
    // The kills must land inside publishes, or this test proves little.
    assert!(
        mid_publish * 4 >= iterations,
        "only {mid_publish} of {iterations} kills interrupted a publish"
    );
}

/// Copies a tree file by file (no hard links, so changes to the copy stay there).
fn copy_tree(from: &Path, to: &Path) {
    for rel in walk(from) {
        let target = to.join(&rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&rel), target).unwrap();
    }
}

/// Checks a sabotaged tree in each mode: `Some(path)`: a problem starting with `path` must be
/// reported; `None`: nothing may be.
fn check_sabotage(
    tree: &Path,
    keyring: &Keyring,
    what: &str,
    expect: &[(Mode<'_>, Option<&Path>)],
) {
    for (n, (mode, reported)) in expect.iter().enumerate() {
        let report = check_tree(tree, keyring, *mode, &mut Hashed::default());
        match reported {
            Some(path) => assert!(
                report
                    .problems
                    .iter()
                    .any(|p| p.starts_with(&path.display().to_string())),
                "{what} (mode {n}): not reported as {}: {:?}",
                path.display(),
                report.problems
            ),
            None => assert!(
                report.problems.is_empty(),
                "{what} (mode {n}): {:?}",
                report.problems
            ),
        }
    }
}

/// The checker must report what it exists to find, or the test above proves nothing.
#[test]
fn the_atomicity_checker_reports_broken_trees() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    mbd_ok(
        &home,
        &[
            "setup",
            "--identity",
            "t",
            "--distributions",
            "bookworm:amd64",
            "--repositories",
            "test:Default:bookworm",
        ],
    );
    let changes = pkg("mbd-hello_1.0-1~test12+1_amd64.changes");
    mbd_ok(
        &home,
        &["repo", "include", SUITE, changes.to_str().unwrap()],
    );
    let out = mbd_command(&home, &["pub-key", "--binary"])
        .output()
        .unwrap();
    let keyring = Keyring::from_bytes(&out.stdout).unwrap();
    let good_repo = home.join("repositories/test");
    let good = good_repo.join("dists");
    assert_clean(
        &check_tree(&good, &keyring, Mode::Settled, &mut Hashed::default()),
        &"the good tree",
    );
    let listed = listed_files(&signed_texts(&good, &keyring, &[])[SUITE]).unwrap();
    let packages = &listed["main/binary-amd64/Packages"];
    let index_dir = Path::new(SUITE).join("main/binary-amd64");
    let by256 = index_dir.join("by-hash/SHA256").join(&packages.sha256);
    let by512 = index_dir.join("by-hash/SHA512").join(&packages.sha512);
    let plain = index_dir.join("Packages");
    let flagged: BTreeSet<String> = [SUITE.to_string()].into();
    let other: BTreeSet<String> = ["bookworm-test-testing".to_string()].into();
    let interrupted = |unfinished| Mode::Interrupted { unfinished };
    let mut case = 0;
    let mut sabotage =
        |what: &str, damage: &dyn Fn(&Path), expect: &[(Mode<'_>, Option<&Path>)]| {
            case += 1;
            let copy = dir.path().join(format!("case{case}"));
            copy_tree(&good_repo, &copy);
            damage(&copy.join("dists"));
            check_sabotage(&copy.join("dists"), &keyring, what, expect);
        };

    // A by-hash file with one byte changed: never excused.
    let flip = |p: &Path| {
        let mut data = std::fs::read(p).unwrap();
        data[0] ^= 1;
        std::fs::write(p, data).unwrap();
    };
    sabotage(
        "corrupt by-hash/SHA256 file",
        &|t| flip(&t.join(&by256)),
        &[
            (Mode::Settled, Some(&by256)),
            (interrupted(&flagged), Some(&by256)),
        ],
    );
    // A missing by-hash/SHA512 copy.
    sabotage(
        "missing by-hash/SHA512 file",
        &|t| std::fs::remove_file(t.join(&by512)).unwrap(),
        &[
            (Mode::Settled, Some(&by512)),
            (interrupted(&flagged), Some(&by512)),
        ],
    );
    // A partial write under the plain name: never excused, even while interrupted.
    sabotage(
        "truncated plain name",
        &|t| {
            let p = t.join(&plain);
            let data = std::fs::read(&p).unwrap();
            std::fs::write(&p, &data[..data.len() / 2]).unwrap();
        },
        &[
            (Mode::Settled, Some(&plain)),
            (interrupted(&flagged), Some(&plain)),
        ],
    );
    // A whole newer index under the plain name (and under by-hash): the state a publish killed
    // before InRelease leaves, allowed only for the distribution the store flags.
    sabotage(
        "plain name ahead of InRelease",
        &|t| {
            let newer = b"Package: newer\n".as_slice();
            let s = Sums::of(newer);
            for (alg, hash) in [("SHA256", &s.sha256), ("SHA512", &s.sha512)] {
                let by = t.join(&index_dir).join("by-hash").join(alg).join(hash);
                std::fs::write(by, newer).unwrap();
            }
            std::fs::write(t.join(&plain), newer).unwrap();
        },
        &[
            (Mode::Settled, Some(&plain)),
            (interrupted(&other), Some(&plain)),
            (interrupted(&flagged), None),
        ],
    );
    // A tampered InRelease, and a Release that is not what InRelease signs.
    let inrelease = Path::new(SUITE).join("InRelease");
    sabotage(
        "tampered InRelease",
        &|t| {
            let p = t.join(&inrelease);
            let text = std::fs::read_to_string(&p).unwrap();
            std::fs::write(&p, text.replace("Components: main", "Components: evil")).unwrap();
        },
        &[(Mode::Settled, Some(&inrelease))],
    );
    let release = Path::new(SUITE).join("Release");
    sabotage(
        "Release differs from InRelease",
        &|t| flip(&t.join(&release)),
        &[
            (Mode::Settled, Some(&release)),
            (interrupted(&other), Some(&release)),
            (interrupted(&flagged), None),
        ],
    );
    // A pool file that an index (in every mode) still refers to.
    let deb = "pool/main/m/mbd-hello/mbd-hello_1.0-1~test12+1_amd64.deb";
    sabotage(
        "pool file removed",
        &|t| std::fs::remove_file(t.parent().unwrap().join(deb)).unwrap(),
        &[
            (Mode::Settled, Some(Path::new(deb))),
            (interrupted(&flagged), Some(Path::new(deb))),
        ],
    );
    // Leftover temporary files are fine while interrupted, not after a completed command.
    let tmp = index_dir.join(".Packages.tmp");
    sabotage(
        "temporary file",
        &|t| std::fs::write(t.join(&tmp), b"partial").unwrap(),
        &[(Mode::Settled, Some(&tmp)), (interrupted(&flagged), None)],
    );
}
