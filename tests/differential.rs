//! mbd's `Packages` stanzas against `apt-ftparchive packages` for the same real Debian packages:
//! every stanza must carry the same fields with the same values. Only `Filename` differs by
//! design (mbd's pool path against the directory apt-ftparchive scanned): its base name must
//! agree. Field order and the letter case of field names do not matter.

use crate::util::{mbd_ok, real_debs, run};
use mbd::control::{Paragraph, parse_paragraphs};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Small bookworm packages (amd64 or all), each for what its control file carries.
const PACKAGES: &[(&str, &str)] = &[
    ("hostname", "Essential, Pre-Depends, Breaks, Replaces"),
    (
        "dash",
        "Essential, Pre-Depends, Multi-Arch: foreign, Homepage",
    ),
    ("bsdutils", "epoch; Source: util-linux (version)"),
    ("gzip", "Essential, Pre-Depends"),
    ("sysvinit-utils", "Essential, Provides, Conflicts, Replaces"),
    ("init-system-helpers", "Essential, Architecture: all"),
    (
        "ncurses-base",
        "Essential, Architecture: all, Provides, Breaks",
    ),
    (
        "libgcc-s1",
        "Important, Protected, Multi-Arch: same, Provides",
    ),
    ("libcrypt1", "epoch, Important, Protected, Conflicts"),
    (
        "init",
        "Important, Pre-Depends; Source: init-system-helpers",
    ),
    ("libzstd1", "Multi-Arch: same; Source: libzstd"),
    (
        "libbz2-1.0",
        "binNMU (+b), Multi-Arch: same; Source: bzip2 (version)",
    ),
    ("golang-truststore", "binNMU (+b), Built-Using"),
    ("aptly-api", "binNMU (+b), Built-Using"),
    ("python3-all", "binNMU (+b), Multi-Arch: allowed"),
    ("python3-nopie", "binNMU (+b), Cnf-Visible-Pkgname"),
    ("lscolors", "binNMU (+b), X-Cargo-Built-Using"),
    ("libghc-setenv-dev", "binNMU (+b), Ghc-Package"),
    ("python3-yara", "binNMU (+b), Python-Version"),
    ("libkibi-dbg", "Build-Ids"),
    (
        "gcc",
        "epoch 4:, Build-Essential; Source: gcc-defaults (version)",
    ),
    ("default-jre", "epoch 2:; Source: java-common (version)"),
    ("sse4.2-support", "Pre-Depends, Multi-Arch: foreign"),
    (
        "gstreamer1.0-pocketsphinx",
        "Gstreamer-Elements and other Gstreamer-* fields",
    ),
    (
        "python-is-python3",
        "Architecture: all; Source: what-is-python (version)",
    ),
    ("mysql-common", "Provides, Conflicts, Breaks, Replaces"),
    ("acpi-override-initramfs", "Enhances"),
    ("libdeps-renderer-dot-perl", "Provides, Enhances, Conflicts"),
    ("ruby-unindent", "Ruby-Versions"),
    ("lua-say", "Lua-Versions"),
    ("python3-whichcraft", "Python-Egg-Name"),
    ("golang-github-svent-go-nbreader-dev", "Go-Import-Path"),
    ("task-lithuanian", "non-ASCII Maintainer"),
    ("sensible-utils", "Architecture: all, plain"),
];

/// Fewer real packages than this and the test fails: it must never pass without comparing.
const MIN_DEBS: usize = 20;

#[test]
fn packages_stanzas_match_apt_ftparchive_for_real_debs() {
    let names: Vec<&str> = PACKAGES.iter().map(|(n, _)| *n).collect();
    let (debs, failures) = real_debs(&names);
    assert!(
        debs.len() >= MIN_DEBS,
        "only {} of {} real packages could be had (at least {MIN_DEBS} are needed; \
         does `apt-get update` need to run?):\n{}",
        debs.len(),
        names.len(),
        failures.join("\n")
    );

    // Both tools get the same files, named as in a Debian pool (apt-get download writes the
    // epoch into the name as `%3a`), so the Filename base names can be compared.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).unwrap();
    let mut files = Vec::new();
    for deb in &debs {
        let pool_name = pool_name(deb);
        let to = input.join(&pool_name);
        std::fs::copy(deb, &to).unwrap();
        files.push(to);
    }

    let out = Command::new("apt-ftparchive")
        .args(["packages", "input"])
        .current_dir(dir.path())
        .output()
        .expect("cannot run apt-ftparchive (Debian package apt-utils; see scripts/deps.sh)");
    assert!(
        out.status.success(),
        "apt-ftparchive failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = by_package(
        &String::from_utf8(out.stdout).expect("apt-ftparchive output is not UTF-8"),
        "apt-ftparchive",
    );

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
    let mut args = vec!["repo", "include", "bookworm-test-unstable"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    mbd_ok(&home, &args);
    let packages =
        home.join("repositories/test/dists/bookworm-test-unstable/main/binary-amd64/Packages");
    let actual = by_package(
        &std::fs::read_to_string(&packages)
            .unwrap_or_else(|e| panic!("{}: {e}", packages.display())),
        "mbd",
    );

    assert_eq!(
        expected.len(),
        debs.len(),
        "apt-ftparchive did not describe every package: {:?}",
        expected.keys().collect::<Vec<_>>()
    );
    let mut differences = Vec::new();
    for key in expected.keys().filter(|k| !actual.contains_key(*k)) {
        differences.push(format!("{key}: apt-ftparchive lists it, mbd does not"));
    }
    for key in actual.keys().filter(|k| !expected.contains_key(*k)) {
        differences.push(format!("{key}: mbd lists it, apt-ftparchive does not"));
    }
    let mut compared = 0;
    for (key, want) in &expected {
        let Some(got) = actual.get(key) else { continue };
        differences.extend(compare(key, want, got));
        compared += 1;
    }
    assert!(
        differences.is_empty(),
        "{} difference(s) between apt-ftparchive and mbd:\n{}",
        differences.len(),
        differences.join("\n")
    );
    assert!(compared >= MIN_DEBS, "compared only {compared} stanzas");
}

/// `name_version-without-epoch_arch.deb`, from the package's own control fields (dpkg-deb).
fn pool_name(deb: &Path) -> String {
    let (ok, out) = run(Command::new("dpkg-deb").arg("--field").arg(deb).args([
        "Package",
        "Version",
        "Architecture",
    ]));
    assert!(ok, "dpkg-deb --field {}: {out}", deb.display());
    let p = Paragraph::parse(&out).unwrap_or_else(|e| panic!("{}: {e}\n{out}", deb.display()));
    let field = |f: &str| {
        p.get(f)
            .unwrap_or_else(|| panic!("{}: no {f}", deb.display()))
    };
    let arch = field("Architecture");
    assert!(
        arch == "amd64" || arch == "all",
        "{}: architecture {arch}, not amd64 or all",
        deb.display()
    );
    let version = field("Version");
    let version = version.split_once(':').map_or(version, |(_, v)| v);
    format!("{}_{version}_{arch}.deb", field("Package"))
}

/// Field name (lower case) → (name as written, value); `Filename` reduced to its base name.
type Stanza = BTreeMap<String, (String, String)>;

/// The stanzas of a Packages file keyed by `package/architecture`.
fn by_package(text: &str, tool: &str) -> BTreeMap<String, Stanza> {
    let paragraphs =
        parse_paragraphs(text).unwrap_or_else(|e| panic!("{tool}'s Packages: {e}\n{text}"));
    let mut out = BTreeMap::new();
    for p in paragraphs {
        let key = format!(
            "{}/{}",
            p.get("Package").unwrap_or("?"),
            p.get("Architecture").unwrap_or("?")
        );
        let mut stanza = Stanza::new();
        for f in p.fields() {
            let mut value = f.value.clone();
            if f.name.eq_ignore_ascii_case("Filename") {
                value = value.rsplit('/').next().unwrap_or_default().to_string();
            }
            // The parser refuses duplicates, so each name is there once.
            stanza.insert(f.name.to_ascii_lowercase(), (f.name.clone(), value));
        }
        assert!(
            out.insert(key.clone(), stanza).is_none(),
            "{tool} lists {key} twice"
        );
    }
    out
}

/// Every difference between apt-ftparchive's stanza and mbd's, one line each.
fn compare(key: &str, want: &Stanza, got: &Stanza) -> Vec<String> {
    let mut out = Vec::new();
    for (lower, (name, value)) in want {
        match got.get(lower) {
            None => out.push(format!(
                "{key}: field {name}: apt-ftparchive has {value:?}, mbd has no such field"
            )),
            Some((_, v)) if v != value => out.push(format!(
                "{key}: field {name}: apt-ftparchive has {value:?}, mbd has {v:?}"
            )),
            Some(_) => {}
        }
    }
    for (lower, (name, value)) in got {
        if !want.contains_key(lower) {
            out.push(format!(
                "{key}: field {name}: mbd has {value:?}, apt-ftparchive has no such field"
            ));
        }
    }
    out
}
