//! The `<identity>-archive-keyring` package (§9 of the reference): the archive key where apt
//! finds it (`/usr/share/keyrings/` for `Signed-By`, `/etc/apt/trusted.gpg.d/` so that
//! installing the package is all a client needs), deb822 `.sources` files for every
//! distribution of every repository, and a dput configuration. It is made as a native source
//! package, signed by the archive key, uploaded to our own incoming for each distribution
//! whose suite builds keyring packages, built like any upload, and (after it is installed)
//! migrated on to the stable suite.

use crate::port::{AfterInstall, PortError, Ported, Workdir, io};
use crate::repo::Engine;
use crate::state::{StateError, StateStore};
use std::os::unix::fs::PermissionsExt;

/// One keyring package upload per target distribution: `dists`, or every distribution whose
/// suite has `build_keyring_package` (unstable in the built-in layouts). `url` is the
/// daemon's base URL, `dput_conf` the dput sections clients use.
pub fn upload_all(
    engine: &Engine,
    incoming: &crate::incoming::Incoming,
    url: &str,
    dput_conf: &str,
    dists: &[String],
    now: i64,
) -> Result<Vec<Ported>, PortError> {
    let mut targets = Vec::new();
    if dists.is_empty() {
        for repo in engine.repositories()? {
            let layout = engine.layout(&repo.layout)?;
            for codename in &repo.codenames {
                for suite in layout.suites.iter().filter(|s| s.build_keyring_package) {
                    targets.push(format!("{codename}-{}-{}", repo.identity, suite.name));
                }
            }
        }
    } else {
        targets = dists.to_vec();
    }
    if targets.is_empty() {
        return Err(PortError::Refused(
            "keyring_packages: no distribution builds keyring packages".to_string(),
        ));
    }
    targets
        .iter()
        .map(|dist| upload_one(engine, incoming, url, dput_conf, dist, now))
        .collect()
}

/// Marks keyring package uploads to be migrated on through their suites once installed
/// (before they are decided).
pub fn migrate_when_installed(state: &StateStore, uploads: &[Ported]) -> Result<(), StateError> {
    for ported in uploads {
        AfterInstall {
            migrate_full: true,
            ports: Vec::new(),
        }
        .store(state, &ported.source, &ported.version)?;
    }
    Ok(())
}

fn upload_one(
    engine: &Engine,
    incoming: &crate::incoming::Incoming,
    url: &str,
    dput_conf: &str,
    dist: &str,
    now: i64,
) -> Result<Ported, PortError> {
    let r = crate::port::uploadable(engine, dist, "keyring_packages")?;
    let id = engine.instance().identity.clone();
    let name = format!("{}-archive-keyring", id.to_ascii_lowercase());
    let (version, date) = crate::port::stamped_version(&r, now);
    let work = Workdir::new(engine.home())?;
    let tree = work.path().join("src");
    let write = |rel: &str, data: &[u8]| -> Result<(), PortError> {
        let p = tree.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        std::fs::write(&p, data).map_err(io(&p))
    };
    let maintainer = crate::port::archive_maintainer(engine);
    write(
        "debian/control",
        format!(
            "Source: {name}\nSection: misc\nPriority: optional\nMaintainer: {maintainer}\nBuild-Depends: debhelper-compat (= 13)\nStandards-Version: 4.6.2\nRules-Requires-Root: no\n\nPackage: {name}\nArchitecture: all\nDepends: ${{misc:Depends}}\nDescription: mbd archive key and apt sources for {id}\n The OpenPGP key that signs the mbd archive '{id}', installed where apt\n finds it (/usr/share/keyrings and /etc/apt/trusted.gpg.d), with deb822\n .sources files for its repositories in\n /usr/share/{name}/sources.list.d/ and a dput configuration.\n"
        )
        .as_bytes(),
    )?;
    write("debian/rules", b"#!/usr/bin/make -f\n%:\n\tdh $@\n")?;
    let rules = tree.join("debian/rules");
    std::fs::set_permissions(&rules, std::fs::Permissions::from_mode(0o755)).map_err(io(&rules))?;
    write("debian/source/format", b"3.0 (native)\n")?;
    write(
        "debian/copyright",
        format!("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: {name}\n\nFiles: *\nCopyright: the operators of the mbd archive {id}\nLicense: public-domain\n The archive's public key and generated configuration files.\n").as_bytes(),
    )?;
    write(
        "debian/install",
        format!(
            "{name}.gpg usr/share/keyrings/\n{name}.gpg etc/apt/trusted.gpg.d/\nsources.list.d usr/share/{name}/\ndput.cf usr/share/{name}/\n"
        )
        .as_bytes(),
    )?;
    write(&format!("{name}.gpg"), &engine.key().public_binary())?;
    write("dput.cf", dput_conf.as_bytes())?;
    for repo in engine.repositories()? {
        let layout = engine.layout(&repo.layout)?;
        for codename in &repo.codenames {
            let d = engine.distribution(codename)?;
            for suite in &layout.suites {
                let main = format!("{codename}-{}-{}", repo.identity, suite.name);
                let mut names = vec![main.clone()];
                names.extend((0..suite.rollback).map(|n| format!("{main}-rollback{n}")));
                for dist_name in names {
                    let rest = dist_name
                        .strip_prefix(&format!("{codename}-{}-", repo.identity))
                        .unwrap_or(&dist_name);
                    write(
                        &format!(
                            "sources.list.d/{codename}/{}_{rest}.sources",
                            repo.identity
                        ),
                        format!(
                            "Types: deb deb-src\nURIs: {url}/repositories/{}/\nSuites: {dist_name}\nComponents: {}\nSigned-By: /usr/share/keyrings/{name}.gpg\n",
                            repo.identity,
                            d.components.join(" ")
                        )
                        .as_bytes(),
                    )?;
                }
            }
        }
    }
    crate::port::prepend_changelog(
        engine,
        &tree,
        &name,
        &version,
        &r.name.to_string(),
        &[
            format!("Automatic keyring package for archive '{id}'."),
            "MINI_BUILDD_OPTION: lintian-mode=ignore".to_string(),
        ],
        &date,
    )?;
    let changes = crate::port::build_upload(engine, incoming, work.path(), &tree, &name, &version)?;
    Ok(Ported {
        source: name,
        version,
        distribution: r.name.to_string(),
        changes,
    })
}
