use super::*;
use crate::checksums::Digests;
use crate::openpgp::{ArchiveKey, KeyAlgorithm};
use crate::repo::compression::Levels;
use crate::repo::store::PublishState;
use std::collections::BTreeMap;

fn spec() -> DistSpec {
    DistSpec {
        dir: "d".into(),
        info: ReleaseInfo {
            origin: "o".into(),
            label: "d".into(),
            suite: "d".into(),
            codename: "d".into(),
            date: 0,
            valid_until: None,
            architectures: vec!["amd64".into(), "i386".into()],
            components: vec!["main".into()],
            description: "d".into(),
            not_automatic: false,
            but_automatic_upgrades: false,
        },
    }
}

#[derive(Clone)]
struct Bin {
    seq: u64,
    package: String,
    arch: &'static str,
    udeb: bool,
    section: &'static str,
    stanza: String,
    contents: Option<String>,
}

#[derive(Clone)]
struct Src {
    seq: u64,
    name: String,
    stanza: String,
}

/// Records in memory, with arrival numbers.
#[derive(Clone, Default)]
struct Fake {
    bins: Vec<Bin>,
    srcs: Vec<Src>,
    next: u64,
}

impl Fake {
    /// A binary `p<i>` (and its source) with a stanza long enough for many segments.
    fn add(&mut self, i: usize, version: usize) {
        self.next += 1;
        let stanza = format!(
            "Package: p{i}\nVersion: {version}.{i}\nDescription: {}\n",
            "x".repeat((i * 7 + version) % 300)
        );
        self.bins.push(Bin {
            seq: self.next,
            package: format!("p{i}"),
            arch: if i % 5 == 0 { "all" } else { "amd64" },
            udeb: i % 11 == 3,
            section: if i % 3 == 0 { "net" } else { "misc" },
            stanza,
            contents: (i % 13 != 7).then(|| {
                format!(
                    "usr/bin/p{i}\nusr/share/doc/p{i}/copyright\nusr/share/common/f{}",
                    i % 4
                )
            }),
        });
        self.next += 1;
        self.srcs.push(Src {
            seq: self.next,
            name: format!("p{i}"),
            stanza: format!("Package: p{i}\nVersion: {version}.{i}\n"),
        });
    }

    fn many(n: usize) -> Fake {
        let mut f = Fake::default();
        for i in 0..n {
            f.add(i, 1);
        }
        f
    }

    fn remove(&mut self, i: usize) {
        let name = format!("p{i}");
        self.bins.retain(|b| b.package != name);
        self.srcs.retain(|s| s.name != name);
    }
}

impl Records for Fake {
    type Error = std::convert::Infallible;
    fn arrivals(&self) -> Result<(Vec<u64>, Vec<u64>), Self::Error> {
        Ok((
            self.bins.iter().map(|b| b.seq).collect(),
            self.srcs.iter().map(|s| s.seq).collect(),
        ))
    }
    fn binaries(&self, after: u64, f: &mut dyn FnMut(BinaryRow<'_>)) -> Result<(), Self::Error> {
        for b in self.bins.iter().filter(|b| b.seq > after) {
            f(BinaryRow {
                seq: b.seq,
                package: &b.package,
                architecture: b.arch,
                component: "main",
                package_type: if b.udeb {
                    PackageType::Udeb
                } else {
                    PackageType::Deb
                },
                section: b.section,
                stanza: b.stanza.as_bytes(),
                contents: b.contents.as_deref(),
            });
        }
        Ok(())
    }
    fn sources(&self, after: u64, f: &mut dyn FnMut(SourceRow<'_>)) -> Result<(), Self::Error> {
        for s in self.srcs.iter().filter(|s| s.seq > after) {
            f(SourceRow {
                seq: s.seq,
                name: &s.name,
                component: "main",
                stanza: &s.stanza,
            });
        }
        Ok(())
    }
}

fn empty(keys: &[String]) -> Vec<Option<Vec<u8>>> {
    vec![None; keys.len()]
}

#[test]
fn new_segments_taken_from_the_files_rebuild_the_same_files_from_the_cache() {
    let spec = spec();
    let Ok(cold) = render(&spec, &Fake::many(3000), Levels::default(), &empty, None);
    assert!(cold.new_segments.len() > 20, "{}", cold.new_segments.len());
    let expected: Vec<(String, Vec<u8>)> = cold
        .files
        .iter()
        .map(|f| (f.path.clone(), f.data.clone()))
        .collect();
    let cache: BTreeMap<String, Vec<u8>> = new_segment_bytes(cold.files, &cold.new_segments)
        .into_iter()
        .collect();
    assert_eq!(cache.len(), cold.segments.len());
    let lookup = |keys: &[String]| keys.iter().map(|k| cache.get(k).cloned()).collect();
    let Ok(warm) = render(&spec, &Fake::many(3000), Levels::default(), &lookup, None);
    assert!(warm.new_segments.is_empty());
    let got: Vec<(String, Vec<u8>)> = warm.files.into_iter().map(|f| (f.path, f.data)).collect();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert!(g == e, "{} differs when built from the cache", e.0);
    }
}

/// What a publish leaves for the next: its outline, digest marks, `Release` entries
/// and files (by SHA-256).
#[derive(Default)]
struct Publish {
    outline: Outline,
    marks: Marks,
    listed: BTreeMap<String, Digests>,
    files: BTreeMap<[u8; 32], Vec<u8>>,
}

/// Publishes a render after `before`: files left as published are taken from it.
fn published(r: &Rendered, before: &Publish) -> Publish {
    let mut next = Publish {
        outline: r.outline.clone(),
        ..Publish::default()
    };
    for (f, (d, m)) in r.files.iter().zip(digests(&r.files, &before.marks)) {
        let digest: [u8; 32] = hex::decode(&d.sha256).unwrap().try_into().unwrap();
        let data = match &f.same {
            Some(_) => before.files[&digest].clone(),
            None => f.data.clone(),
        };
        next.files.insert(digest, data);
        if !m.is_empty() {
            next.marks.insert(f.path.clone(), m);
        }
        next.listed.insert(f.path.clone(), d);
    }
    next.outline.complete(|path| {
        let d = next.listed.get(path)?;
        hex::decode(&d.sha256).ok()?.try_into().ok()
    });
    next
}

/// A render of `fake` from what a previous publish left, read through `load`.
fn rebuilt(fake: &Fake, p: &Publish, load: LoadFile<'_>) -> Rendered {
    let present = |_: &str, d: &Digests| {
        let digest: [u8; 32] = hex::decode(&d.sha256).unwrap().try_into().unwrap();
        p.files
            .get(&digest)
            .is_some_and(|b| b.len() as u64 == d.size)
    };
    let previous = Previous {
        outline: p.outline.clone(),
        marks: &p.marks,
        load,
        listed: p.listed.clone(),
        present: &present,
    };
    let Ok(r) = render(&spec(), fake, Levels::default(), &empty, Some(previous));
    r
}

#[test]
fn texts_rebuilt_from_the_previous_publish_are_the_full_render() {
    let spec = spec();
    let mut fake = Fake::many(400);
    let Ok(first) = render(&spec, &fake, Levels::default(), &empty, None);
    let mut previous = published(&first, &Publish::default());
    let mut unread = 0;
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut rebuilds = 0;
    for step in 0..16 {
        match step % 4 {
            // New packages arrive.
            0 => (0..1 + next(3)).for_each(|_| fake.add(400 + next(60) as usize, step)),
            // New versions replace old ones (removed, then added again).
            1 => (0..1 + next(3)).for_each(|_| {
                let i = next(460) as usize;
                fake.remove(i);
                fake.add(i, step);
            }),
            // Packages leave.
            2 => (0..1 + next(3)).for_each(|_| fake.remove(next(460) as usize)),
            // Nothing changes, or a second record of a package arrives under a name one
            // that stays has: its lines are shared, and only a full render can tell.
            _ if step == 7 => {
                let i = (0..460)
                    .find(|i| i % 5 != 0 && fake.bins.iter().any(|b| b.package == format!("p{i}")))
                    .unwrap();
                let mut twin = fake
                    .bins
                    .iter()
                    .find(|b| b.package == format!("p{i}"))
                    .unwrap()
                    .clone();
                fake.next += 1;
                twin.seq = fake.next;
                twin.arch = "all";
                fake.bins.push(twin);
            }
            _ => {}
        }
        let load = |_: &str, digest: &[u8; 32]| previous.files.get(digest).cloned();
        let incremental = rebuilt(&fake, &previous, &load);
        let Ok(full) = render(&spec, &fake, Levels::default(), &empty, None);
        assert_eq!(incremental.files.len(), full.files.len());
        for (i, f) in incremental.files.iter().zip(&full.files) {
            assert_eq!(i.path, f.path);
            // A file left as published is the previous one, unread.
            let data = match &i.same {
                Some(d) => {
                    unread += 1;
                    assert!(i.data.is_empty());
                    let digest: [u8; 32] = hex::decode(&d.sha256).unwrap().try_into().unwrap();
                    &previous.files[&digest]
                }
                None => &i.data,
            };
            assert!(
                *data == f.data,
                "step {step}: {} differs from the full render",
                f.path
            );
        }
        assert_eq!(incremental.outline, full.outline, "step {step}");
        if incremental.incremental {
            rebuilds += 1;
        }
        assert_eq!(incremental.incremental, step != 7, "step {step}");
        if step == 4 {
            // Compressed segments were taken over from the previous files: fewer were
            // compressed than a full render compresses.
            assert!(
                incremental.new_segments.len() < full.new_segments.len(),
                "{} of {}",
                incremental.new_segments.len(),
                full.new_segments.len()
            );
        }
        previous = published(&incremental, &previous);
    }
    assert!(rebuilds >= 14);
    // Texts of the other architecture, udebs and sources were left as published, and
    // not read, in many steps.
    assert!(unread >= 20, "{unread} files left as published");
    // A previous text that no longer matches its outline means a full render, not a
    // wrong one.
    fake.add(3, 99);
    let load = |_: &str, _: &[u8; 32]| Some(b"Package: x\n".to_vec());
    assert!(!rebuilt(&fake, &previous, &load).incremental);
}

#[test]
fn superseded_by_hash_files_stay_for_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let key = ArchiveKey::generate("t <t@mbd.invalid>", KeyAlgorithm::Ed25519).unwrap();
    let files = |text: &str| {
        vec![File {
            path: "main/binary-amd64/Packages".to_string(),
            data: text.as_bytes().to_vec(),
            ..File::default()
        }]
    };
    let by_hash = |text: &str| {
        dir.path()
            .join("d/main/binary-amd64/by-hash/SHA256")
            .join(Digests::of(text.as_bytes()).sha256)
    };
    let publish = |text: &str, previous: &PublishState, now: i64| {
        let (state, _, _) = write(
            dir.path(),
            &spec(),
            &files(text),
            &Marks::new(),
            &key,
            previous,
            now,
            60,
        )
        .unwrap();
        state
    };
    let s1 = publish("one\n", &PublishState::default(), 1000);
    let s2 = publish("two\n", &s1, 1010);
    assert!(by_hash("one\n").exists(), "kept within the grace period");
    let s3 = publish("two\n", &s2, 1069);
    assert!(by_hash("one\n").exists(), "59 s after it was superseded");
    publish("two\n", &s3, 1070);
    assert!(
        !by_hash("one\n").exists(),
        "removed once the grace period is over"
    );
    assert!(by_hash("two\n").exists());
    let plain = std::fs::read(dir.path().join("d/main/binary-amd64/Packages")).unwrap();
    assert_eq!(plain, b"two\n");
}
