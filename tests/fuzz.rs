//! Fuzzing the parsers that read what uploaders send: `.changes` (also with signature
//! checking), `.dsc`, `.deb`/`.udeb`, `debian/changelog` top entries and MINI_BUILDD_OPTION
//! lines. Inputs are the committed fixtures and their broken twins, mutated by proptest
//! (byte flips, insertions, deletions, truncation, repeated and spliced ranges).
//!
//! Properties: no parser panics, and every error names the file it was given. The test runs
//! batches until `MBD_FUZZ_SECONDS` (default 3) have passed; `scripts/fuzz.sh` runs it for a
//! minute or more in release mode. A failure prints the seed of its batch and the shrunk input.

use crate::util::{fixtures, uploaders};
use mbd::changes::Changes;
use mbd::dsc::Dsc;
use mbd::files::Trust;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        at: usize,
        bits: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    /// Repeats a range of the input at another place.
    Repeat {
        from: usize,
        len: usize,
        at: usize,
    },
    /// Puts a range of another seed at a place.
    Splice {
        seed: usize,
        from: usize,
        len: usize,
        at: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        4 => (at, 1..=255u8).prop_map(|(at, bits)| Mutation::Flip { at, bits }),
        2 => (at, prop::collection::vec(prop_oneof![
            any::<u8>(),
            Just(b'\n'),
            Just(b' '),
            Just(b':'),
            Just(0u8),
            Just(0xff),
        ], 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        2 => (at, 1..64usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => at.prop_map(|at| Mutation::Truncate { at }),
        1 => (at, 1..256usize, at)
            .prop_map(|(from, len, at)| Mutation::Repeat { from, len, at }),
        1 => (any::<usize>(), at, 1..512usize, at)
            .prop_map(|(seed, from, len, at)| Mutation::Splice { seed, from, len, at }),
    ]
}

fn apply(seeds: &[Seed], data: &mut Vec<u8>, m: &Mutation) {
    let pos = |at: usize, len: usize| if len == 0 { 0 } else { at % (len + 1) };
    match m {
        Mutation::Flip { at, bits } => {
            if !data.is_empty() {
                let i = at % data.len();
                data[i] ^= bits;
            }
        }
        Mutation::Insert { at, bytes } => {
            let i = pos(*at, data.len());
            data.splice(i..i, bytes.iter().copied());
        }
        Mutation::Delete { at, len } => {
            let i = pos(*at, data.len());
            let end = (i + len).min(data.len());
            data.drain(i..end);
        }
        Mutation::Truncate { at } => data.truncate(pos(*at, data.len())),
        Mutation::Repeat { from, len, at } => {
            let f = pos(*from, data.len());
            let piece: Vec<u8> = data[f..(f + len).min(data.len())].to_vec();
            let i = pos(*at, data.len());
            data.splice(i..i, piece);
        }
        Mutation::Splice {
            seed,
            from,
            len,
            at,
        } => {
            let other = &seeds[seed % seeds.len()].data;
            let f = pos(*from, other.len());
            let piece = &other[f..(f + len).min(other.len())];
            let i = pos(*at, data.len());
            data.splice(i..i, piece.iter().copied());
        }
    }
}

struct Seed {
    path: PathBuf,
    data: Vec<u8>,
}

fn seeds() -> Vec<Seed> {
    let mut found = Vec::new();
    let mut dirs = vec![fixtures().join("pkg"), fixtures().join("broken")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let kind = [".changes", ".dsc", ".deb", ".udeb"]
                .iter()
                .any(|s| name.ends_with(s));
            if kind {
                found.push(Seed {
                    data: std::fs::read(&p).unwrap(),
                    path: p,
                });
            }
        }
    }
    // Changelogs: the top entries the .changes carry, as debian/changelog has them.
    let changelogs: Vec<Seed> = found
        .iter()
        .filter(|s| s.path.extension().is_some_and(|e| e == "changes"))
        .filter_map(|s| {
            let c = Changes::parse(&s.data, &s.path, Trust::Unchecked).ok()?;
            let text: String = c
                .changes_text()
                .lines()
                .skip(1)
                .map(|l| {
                    let l = l.strip_prefix(' ').unwrap_or(l);
                    if l == "." { "\n".to_string() } else { format!("{l}\n") }
                })
                .collect();
            let entry = format!(
                "{} ({}) {}; urgency=medium\n\n{text}  MINI_BUILDD_OPTION: auto-ports: bookworm-test-experimental\n  MINI_BUILDD_OPTION: amd64:deb-build-options=nocheck parallel=4\n\n -- mbd fixtures <fixtures@mbd.invalid>  Sun, 23 Nov 2025 00:00:00 +0000\n\nolder (0.9) unstable; urgency=low\n\n  * Before.\n\n -- x <x@y>  Sat, 01 Jan 2000 00:00:00 +0000\n",
                c.source,
                c.version,
                c.distributions.join(" ")
            );
            Some(Seed {
                path: s.path.with_file_name("changelog"),
                data: entry.into_bytes(),
            })
        })
        .collect();
    found.extend(changelogs);
    found.sort_by(|a, b| a.path.cmp(&b.path));
    assert!(found.len() > 30, "only {} seeds", found.len());
    found
}

/// How many parser runs refused their input (the rest parsed it).
static REFUSED: AtomicU64 = AtomicU64::new(0);
static RUNS: AtomicU64 = AtomicU64::new(0);

/// Runs every parser that takes this kind of file; errors must name the file.
fn parse_all(
    path: &Path,
    data: &[u8],
    keyring: &mbd::openpgp::Keyring,
) -> Result<(), TestCaseError> {
    let shown = path.display().to_string();
    let names_file = |what: &str, e: &dyn std::fmt::Display| -> Result<(), TestCaseError> {
        REFUSED.fetch_add(1, Ordering::Relaxed);
        let msg = e.to_string();
        prop_assert!(
            msg.contains(&shown),
            "{what} error does not name {shown}: {msg}"
        );
        Ok(())
    };
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    RUNS.fetch_add(1 + u64::from(name.ends_with(".changes")), Ordering::Relaxed);
    if name.ends_with(".changes") {
        match Changes::parse(data, path, Trust::Unchecked) {
            Err(e) => names_file(".changes", &e)?,
            Ok(c) => {
                let _ = mbd::changelog::UploadOptions::from_changes_text(c.changes_text());
            }
        }
        if let Err(e) = Changes::parse(data, path, Trust::Keyring(keyring)) {
            names_file("signed .changes", &e)?;
        }
    } else if name.ends_with(".dsc") {
        if let Err(e) = Dsc::parse(data, path, Trust::Unchecked) {
            names_file(".dsc", &e)?;
        }
    } else if name.ends_with("deb") {
        let udeb = name.ends_with(".udeb");
        if let Err(e) = mbd::deb::read_from(data, path, udeb, true) {
            names_file(".deb", &e)?;
        }
    } else {
        let text = String::from_utf8_lossy(data);
        if let Err(e) = mbd::changelog::parse_top_entry(&text, path) {
            names_file("changelog", &e)?;
        }
    }
    Ok(())
}

#[test]
fn parsers_never_panic_and_name_the_file_on_mutated_uploads() {
    let budget = Duration::from_secs(
        std::env::var("MBD_FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
    );
    let seeds = seeds();
    let keyring = uploaders();
    // Untouched seeds first: the broken twins must fail cleanly too.
    for s in &seeds {
        parse_all(&s.path, &s.data, &keyring).unwrap();
    }
    let strategy = (0..seeds.len(), prop::collection::vec(mutation(), 1..6));
    let started = Instant::now();
    let (mut batches, mut cases) = (0u64, 0u64);
    while started.elapsed() < budget || batches == 0 {
        let seed = batches.to_le_bytes().repeat(4);
        let config = Config {
            cases: 512,
            failure_persistence: None,
            ..Config::default()
        };
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
        let result = runner.run(&strategy, |(i, mutations)| {
            let s = &seeds[i];
            let mut data = s.data.clone();
            for m in &mutations {
                apply(&seeds, &mut data, m);
            }
            parse_all(&s.path, &data, &keyring)
        });
        if let Err(e) = result {
            panic!("batch {batches} (seed bytes {seed:?}): {e}");
        }
        batches += 1;
        cases += 512;
    }
    let (runs, refused) = (
        RUNS.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed),
    );
    eprintln!(
        "fuzz: {cases} mutated inputs from {} seeds in {:.1} s without a panic; {runs} parser runs, {refused} refused with the file named, {} parsed",
        seeds.len(),
        started.elapsed().as_secs_f64(),
        runs - refused
    );
    assert!(
        refused > 0 && refused < runs,
        "mutations never (or always) broke the input"
    );
}
