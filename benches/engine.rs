//! Criterion benchmarks of the engine's hot paths. The end-to-end comparison with reprepro and
//! aptly is `benches/compare.sh`; see docs/PERFORMANCE.md.

use criterion::{Criterion, criterion_group, criterion_main};
use mbd::checksums::{Mark, digests_resumed};
use mbd::deb::PackageType;
use mbd::repo::compression::Levels;
use mbd::repo::publish::{self, DistSpec};
use mbd::repo::release::ReleaseInfo;
use mbd::repo::store::{Binary, BinaryRecord, DistContents};
use mbd::version::Version;
use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Mutex;

fn versions(c: &mut Criterion) {
    let list: Vec<Version> = (0..10_000)
        .map(|i| {
            Version::parse(&format!(
                "{}:{}.{}~rc{}-{}+b{}",
                i % 3,
                i % 17,
                i % 101,
                i % 5,
                i % 9,
                i % 4
            ))
            .unwrap()
        })
        .collect();
    c.bench_function("version/sort 10k", |b| {
        b.iter(|| {
            let mut v = list.clone();
            v.sort();
            black_box(v)
        })
    });
}

fn deb_read(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/pkg/mbd-hello_1.0-1~test12+1_amd64.deb");
    c.bench_function("deb/read with contents", |b| {
        b.iter(|| black_box(mbd::deb::read(&path, true).unwrap()))
    });
}

/// A distribution of `n` synthetic binary packages, shaped like the benchmark corpus.
fn dist(n: usize) -> DistContents {
    let mut d = DistContents::default();
    for i in 0..n {
        let package = format!("pkg-{i:05}");
        let arch = if i % 5 == 0 { "all" } else { "amd64" };
        let stanza = format!(
            "Package: {package}\nSource: src-{:04}\nVersion: 1.0-1\nArchitecture: {arch}\nMaintainer: Bench <bench@example.org>\nInstalled-Size: {}\nDepends: libc6 (>= 2.36)\nSection: utils\nPriority: optional\nDescription: synthetic package {i}\n Line one of the long description.\n Line two.\nFilename: pool/main/s/src-{:04}/{package}_1.0-1_{arch}.deb\nSize: {}\nMD5sum: {:032x}\nSHA256: {:064x}\n",
            i / 10,
            i % 977,
            i / 10,
            1000 + i,
            i * 7919,
            i * 104_729
        );
        d.binaries.push((
            Binary {
                package: package.clone(),
                architecture: arch.into(),
                record: BinaryRecord {
                    version: "1.0-1".into(),
                    source_version: "1.0-1".into(),
                    component: "main".into(),
                    package_type: PackageType::Deb,
                    section: "utils".into(),
                    filename: format!("pool/main/s/src-{:04}/{package}_1.0-1_{arch}.deb", i / 10),
                    sha256: format!("{:064x}", i),
                    stanza,
                },
            },
            Some(format!(
                "usr/bin/{package}\nusr/share/doc/{package}/copyright"
            )),
        ));
    }
    d
}

fn spec() -> DistSpec {
    DistSpec {
        dir: "bookworm-test-unstable".into(),
        info: ReleaseInfo {
            origin: "bench".into(),
            label: "bookworm-test-unstable".into(),
            suite: "bookworm-test-unstable".into(),
            codename: "bookworm-test-unstable".into(),
            date: 0,
            valid_until: None,
            architectures: vec!["amd64".into(), "i386".into()],
            components: vec!["main".into()],
            description: "bench".into(),
            not_automatic: true,
            but_automatic_upgrades: true,
        },
    }
}

fn render(c: &mut Criterion) {
    let spec = spec();
    let contents = dist(10_000);
    let empty = |keys: &[String]| vec![None; keys.len()];
    let mut group = c.benchmark_group("publish/render 10k packages");
    group.sample_size(10);
    group.bench_function("cold (every segment compressed)", |b| {
        b.iter(|| {
            black_box(publish::render(
                &spec,
                &contents,
                Levels::default(),
                &empty,
                None,
            ))
        })
    });
    // A cache holding every segment of the current state.
    let cache: Mutex<HashMap<String, Vec<u8>>> = Mutex::new(HashMap::new());
    let Ok(cold) = publish::render(&spec, &contents, Levels::default(), &empty, None);
    cache
        .lock()
        .unwrap()
        .extend(publish::new_segment_bytes(cold.files, &cold.new_segments));
    let lookup = |keys: &[String]| {
        let c = cache.lock().unwrap();
        keys.iter().map(|k| c.get(k).cloned()).collect()
    };
    // The same files again, from the cache.
    let Ok(first) = publish::render(&spec, &contents, Levels::default(), &lookup, None);
    group.bench_function("warm (nothing changed)", |b| {
        b.iter(|| {
            black_box(publish::render(
                &spec,
                &contents,
                Levels::default(),
                &lookup,
                None,
            ))
        })
    });
    let mut changed = dist(10_000);
    changed.binaries[4321]
        .0
        .record
        .stanza
        .push_str("Homepage: https://example.org/changed\n");
    group.bench_function("every record read (one package changed)", |b| {
        b.iter(|| {
            black_box(publish::render(
                &spec,
                &changed,
                Levels::default(),
                &lookup,
                None,
            ))
        })
    });
    // Rebuilt from the previous publish's texts after one package arrived (the texts are
    // handed over in memory; a publish reads them back from its by-hash files).
    let mut arrived = dist(10_000);
    let (binary, list) = arrived.binaries[4321].clone();
    arrived.binaries.push((
        Binary {
            package: "arrived".into(),
            ..binary
        },
        list,
    ));
    // What the publish of `first` leaves: outline, digest marks, files by digest.
    let sha256 = |d: &[u8]| -> [u8; 32] { <sha2::Sha256 as sha2::Digest>::digest(d).into() };
    let files: HashMap<[u8; 32], Vec<u8>> = first
        .files
        .iter()
        .map(|f| (sha256(&f.data), f.data.clone()))
        .collect();
    let mut outline = first.outline.clone();
    outline.complete(|path| {
        let f = first.files.iter().find(|f| f.path == path)?;
        Some(sha256(&f.data))
    });
    let first_digests = publish::digests(&first.files, &publish::Marks::new());
    let first_marks: publish::Marks = first_digests
        .iter()
        .zip(&first.files)
        .filter(|((_, m), _)| !m.is_empty())
        .map(|((_, m), f)| (f.path.clone(), m.clone()))
        .collect();
    let first_listed: std::collections::BTreeMap<String, _> = first_digests
        .into_iter()
        .zip(&first.files)
        .map(|((d, _), f)| (f.path.clone(), d))
        .collect();
    let load = |_: &str, digest: &[u8; 32]| files.get(digest).cloned();
    let present = |_: &str, d: &mbd::checksums::Digests| {
        hex::decode(&d.sha256)
            .ok()
            .and_then(|h| <[u8; 32]>::try_from(h).ok())
            .is_some_and(|h| files.contains_key(&h))
    };
    group.bench_function(
        "rebuilt from the previous texts (one package arrived)",
        |b| {
            b.iter(|| {
                let previous = publish::Previous {
                    outline: outline.clone(),
                    marks: &first_marks,
                    load: &load,
                    listed: first_listed.clone(),
                    present: &present,
                };
                let r =
                    publish::render(&spec, &arrived, Levels::default(), &lookup, Some(previous));
                assert!(matches!(&r, Ok(r) if r.incremental));
                black_box(r)
            })
        },
    );
    group.finish();

    // Release digests of every file, from scratch and resumed after a one-package change.
    let mut group = c.benchmark_group("publish/digests 10k packages");
    group.sample_size(10);
    let resumable = |r: &publish::Rendered, marks: &publish::Marks| -> Vec<(String, Mark)> {
        digests_resumed(&publish::resumable(&r.files, marks))
            .into_iter()
            .zip(&r.files)
            .flat_map(|((_, m), f)| m.into_iter().map(|m| (f.path.clone(), m)))
            .collect()
    };
    let mut marks = publish::Marks::new();
    for (path, m) in resumable(&first, &marks) {
        marks.entry(path).or_default().push(m);
    }
    let Ok(second) = publish::render(&spec, &changed, Levels::default(), &lookup, None);
    group.bench_function("fresh", |b| {
        b.iter(|| black_box(resumable(&second, &publish::Marks::new())))
    });
    group.bench_function("resumed after one change", |b| {
        b.iter(|| black_box(resumable(&second, &marks)))
    });
    group.finish();
}

criterion_group!(benches, versions, deb_read, render);
criterion_main!(benches);
