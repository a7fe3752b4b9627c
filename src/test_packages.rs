//! The test packages (§6.6 of the reference): three small native source packages made from
//! templates, signed by the archive key and uploaded to our own incoming like any upload, to
//! check that the whole path works — `mbd-test-archall` (Architecture: all) and
//! `mbd-test-cpp` (a C++ program, Architecture: any) must be INSTALLED, `mbd-test-ftbfs`
//! (fails to build on purpose) must FAIL.

use crate::incoming::{Event, EventKind};
use crate::port::{PortError, Ported, Workdir, io};
use crate::repo::Engine;
use crate::state::StateStore;
use std::os::unix::fs::PermissionsExt;

/// The templates, and what each must end as.
pub const TEMPLATES: &[(&str, EventKind)] = &[
    ("mbd-test-archall", EventKind::Installed),
    ("mbd-test-cpp", EventKind::Installed),
    ("mbd-test-ftbfs", EventKind::Failed),
];

/// The files of a template besides `debian/changelog`: (path, content, executable).
fn files(source: &str) -> Vec<(&'static str, String, bool)> {
    let (arch, build_depends, rules, extra): (&str, &str, &str, Vec<(&'static str, String, bool)>) =
        match source {
            "mbd-test-archall" => (
                "all",
                "",
                "#!/usr/bin/make -f\n%:\n\tdh $@\n",
                vec![
                    ("hello.txt", "mbd-test-archall: an Architecture: all package.\n".into(), false),
                    ("debian/install", "hello.txt usr/share/mbd-test-archall/\n".into(), false),
                ],
            ),
            "mbd-test-cpp" => (
                "any",
                ", g++",
                "#!/usr/bin/make -f\n%:\n\tdh $@\n\noverride_dh_auto_build:\n\t$(CXX) $(CPPFLAGS) $(CXXFLAGS) $(LDFLAGS) -o mbd-test-cpp hello.cpp\n\noverride_dh_auto_test:\n\ttest \"$$(./mbd-test-cpp)\" = \"mbd-test-cpp works\"\n",
                vec![
                    (
                        "hello.cpp",
                        "#include <iostream>\n\nint main() {\n    std::cout << \"mbd-test-cpp works\" << std::endl;\n    return 0;\n}\n".into(),
                        false,
                    ),
                    ("debian/install", "mbd-test-cpp usr/bin/\n".into(), false),
                ],
            ),
            _ => (
                "any",
                "",
                "#!/usr/bin/make -f\n%:\n\tdh $@\n\noverride_dh_auto_build:\n\t@echo 'mbd-test-ftbfs fails to build on purpose'\n\tfalse\n",
                Vec::new(),
            ),
        };
    let mut all = vec![
        (
            "debian/control",
            format!(
                "Source: {source}\nSection: misc\nPriority: optional\nMaintainer: @MAINTAINER@\nBuild-Depends: debhelper-compat (= 13){build_depends}\nStandards-Version: 4.6.2\nRules-Requires-Root: no\n\nPackage: {source}\nArchitecture: {arch}\nDepends: ${{shlibs:Depends}}, ${{misc:Depends}}\nDescription: mbd test package ({source})\n One of the packages `mbd api test_packages` uploads to check that\n uploads are built and installed.\n"
            ),
            false,
        ),
        ("debian/rules", rules.to_string(), true),
        ("debian/source/format", "3.0 (native)\n".to_string(), false),
        (
            "debian/copyright",
            format!(
                "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: {source}\n\nFiles: *\nCopyright: none\nLicense: public-domain\n A template of mbd.\n"
            ),
            false,
        ),
    ];
    all.extend(extra);
    all
}

/// Uploads the named templates (all when `sources` is empty) to each of `dists` (default:
/// the `*experimental` distributions of every active repository); the version is a UTC
/// timestamp (`now`, a second more for each further distribution) with the suite's
/// appendix.
pub fn upload_all(
    engine: &Engine,
    incoming: &crate::incoming::Incoming,
    sources: &[String],
    dists: &[String],
    now: i64,
) -> Result<Vec<Ported>, PortError> {
    let names: Vec<&str> = match sources {
        [] => TEMPLATES.iter().map(|(n, _)| *n).collect(),
        given => given.iter().map(String::as_str).collect(),
    };
    if let Some(bad) = names
        .iter()
        .find(|n| !TEMPLATES.iter().any(|(t, _)| t == *n))
    {
        return Err(PortError::Refused(format!(
            "test_packages: no template '{bad}' (templates: mbd-test-archall, mbd-test-cpp, mbd-test-ftbfs)"
        )));
    }
    let mut targets = dists.to_vec();
    if targets.is_empty() {
        for repo in engine.repositories()? {
            if !repo.status.is_active() {
                continue;
            }
            let layout = engine.layout(&repo.layout)?;
            // Suites named *experimental, as mini-buildd picks them (not `snapshot`).
            let experimental = layout
                .suites
                .iter()
                .filter(|s| s.experimental && s.uploadable && s.name.ends_with("experimental"));
            for suite in experimental {
                for codename in &repo.codenames {
                    targets.push(format!("{codename}-{}-{}", repo.identity, suite.name));
                }
            }
        }
    }
    if targets.is_empty() {
        return Err(PortError::Refused(
            "test_packages: no experimental distribution to upload to (give --distributions)"
                .to_string(),
        ));
    }
    let mut out = Vec::new();
    // A second apart per distribution: the same source never has one version twice in
    // incoming (two repositories' versions would otherwise be the same).
    for (n, dist) in targets.iter().enumerate() {
        for name in &names {
            out.push(upload_one(engine, incoming, name, dist, now + n as i64)?);
        }
    }
    Ok(out)
}

fn upload_one(
    engine: &Engine,
    incoming: &crate::incoming::Incoming,
    source: &str,
    dist: &str,
    now: i64,
) -> Result<Ported, PortError> {
    let r = crate::port::uploadable(engine, dist, "test_packages")?;
    let (version, date) = crate::port::stamped_version(&r, now);
    let work = Workdir::new(engine.home())?;
    let tree = work.path().join("src");
    let maintainer = crate::port::archive_maintainer(engine);
    for (rel, text, executable) in files(source) {
        let p = tree.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        std::fs::write(&p, text.replace("@MAINTAINER@", &maintainer)).map_err(io(&p))?;
        if executable {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).map_err(io(&p))?;
        }
    }
    crate::port::prepend_changelog(
        engine,
        &tree,
        source,
        &version,
        &r.name.to_string(),
        &[
            format!("Test package {source} of mbd."),
            "MINI_BUILDD_OPTION: lintian-mode=ignore".to_string(),
        ],
        &date,
    )?;
    let changes =
        crate::port::build_upload(engine, incoming, work.path(), &tree, source, &version)?;
    Ok(Ported {
        source: source.to_string(),
        version,
        distribution: r.name.to_string(),
        changes,
    })
}

/// The final event (INSTALLED, FAILED, REJECTED) of an upload, if there is one yet.
pub fn outcome(state: &StateStore, p: &Ported) -> Result<Option<Event>, crate::state::StateError> {
    let finals = [EventKind::Installed, EventKind::Failed, EventKind::Rejected];
    Ok(
        crate::incoming::events(state, None, Some(&p.source), None, 0)?
            .into_iter()
            .rev()
            .find(|e| e.version == p.version && finals.contains(&e.kind)),
    )
}

/// Whether an upload ended as its template must: archall and cpp INSTALLED, ftbfs FAILED.
pub fn as_expected(source: &str, kind: EventKind) -> bool {
    TEMPLATES
        .iter()
        .any(|(t, want)| *t == source && *want == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_expected_ends_pass() {
        assert!(as_expected("mbd-test-archall", EventKind::Installed));
        assert!(as_expected("mbd-test-cpp", EventKind::Installed));
        assert!(as_expected("mbd-test-ftbfs", EventKind::Failed));
        assert!(!as_expected("mbd-test-ftbfs", EventKind::Installed));
        assert!(!as_expected("mbd-test-cpp", EventKind::Failed));
        assert!(!as_expected("mbd-test-archall", EventKind::Rejected));
        assert!(!as_expected("hello", EventKind::Installed));
    }

    #[test]
    fn every_template_is_a_debhelper_package_with_executable_rules() {
        for (name, _) in TEMPLATES {
            let f = files(name);
            let control = &f.iter().find(|(p, _, _)| *p == "debian/control").unwrap().1;
            assert!(
                control.starts_with(&format!("Source: {name}\n")),
                "{control}"
            );
            let rules = f.iter().find(|(p, _, _)| *p == "debian/rules").unwrap();
            assert!(rules.2 && rules.1.starts_with("#!/usr/bin/make -f\n"));
        }
    }
}
