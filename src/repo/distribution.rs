//! Distributions: a base codename with components and architectures (`Distribution`), and the
//! names apt sees, `<codename>-<repo>-<suite>[-rollback<N>]` (`DistName`).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A codename with the components and architectures its repositories carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distribution {
    pub codename: String,
    /// `%CODEVERSION%` in version rules: `12` for bookworm, `~SID` for sid.
    pub codeversion: String,
    pub components: Vec<String>,
    /// Build architectures; the first non-optional one also builds `Architecture: all`.
    pub architectures: Vec<String>,
    pub optional_architectures: Vec<String>,
    /// The Source (its codename) the distribution builds on; empty for one made by
    /// `--distributions` alone, which builds from the host's mirror.
    #[serde(default)]
    pub base_source: String,
    /// Further sources for builds, with their apt pin priorities (security, backports).
    #[serde(default)]
    pub extra_sources: Vec<PrioritySource>,
    /// What builds for this distribution get unless an upload says otherwise.
    #[serde(default)]
    pub build: BuildOptions,
}

/// A distribution's defaults for its builds (an upload's `MINI_BUILDD_OPTION` lines add to
/// the word lists and override the lintian and autopkgtest modes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildOptions {
    /// `DEB_BUILD_OPTIONS` words, e.g. `noddebs` (Ubuntu) or `nocheck`.
    #[serde(default)]
    pub deb_build_options: Vec<String>,
    /// Build profiles (`DEB_BUILD_PROFILES`).
    #[serde(default)]
    pub deb_build_profiles: Vec<String>,
    /// disabled, ignore, errfail or warnfail; empty: the daemon's `lintian_mode`.
    #[serde(default)]
    pub lintian_mode: String,
    /// disabled, ignore, errfail or warnfail; empty: the daemon's `autopkgtest_mode`.
    #[serde(default)]
    pub autopkgtest_mode: String,
    /// sbuild's build-dependency resolver: aptitude or apt; empty: aptitude (mini-buildd's
    /// default: a versioned build-dependency on a version only our repository has resolves
    /// even where Debian's older version is apt's candidate).
    #[serde(default)]
    pub build_dep_resolver: String,
    /// Extra build-dependencies of every build (sbuild's `--add-depends`).
    #[serde(default)]
    pub add_depends: Vec<String>,
    /// A script, starting with `#!`, run in the chroot before build-dependencies are
    /// installed.
    #[serde(default)]
    pub chroot_setup_script: String,
    /// Perl appended to the build's `.sbuildrc`; `%LIBDIR%` is a directory kept per codename
    /// and architecture (`<home>/var/chroots-libdir/<codename>/<arch>`).
    #[serde(default)]
    pub sbuildrc_snippet: String,
}

/// A source and its apt pin priority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrioritySource {
    pub source: String,
    pub priority: i64,
}

impl Distribution {
    /// Parses `codename:arch+arch` (the `setup --distributions` syntax), with main as the only
    /// component.
    pub fn parse_spec(spec: &str) -> Result<Distribution, String> {
        let (codename, archs) = spec
            .split_once(':')
            .ok_or_else(|| format!("'{spec}' is not '<codename>:<arch>[+<arch>...]'"))?;
        if !valid_word(codename) {
            return Err(format!("'{codename}' is not a valid codename ([a-z0-9]+)"));
        }
        let architectures: Vec<String> = archs.split('+').map(str::to_string).collect();
        for a in &architectures {
            if a.is_empty()
                || a == "all"
                || a == "source"
                || !a
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(format!("'{a}' is not a valid architecture"));
            }
        }
        Ok(Distribution {
            codename: codename.to_string(),
            codeversion: codeversion(codename),
            components: vec!["main".to_string()],
            architectures,
            optional_architectures: Vec::new(),
            base_source: String::new(),
            extra_sources: Vec::new(),
            build: BuildOptions::default(),
        })
    }

    /// Makes `optional` the architectures whose build may fail without failing an upload:
    /// each one of the distribution's, and at least one left mandatory (it builds
    /// `Architecture: all`).
    pub fn set_optional_architectures(&mut self, optional: Vec<String>) -> Result<(), String> {
        if let Some(a) = optional.iter().find(|a| !self.architectures.contains(a)) {
            return Err(format!(
                "'{a}' is not an architecture of {} ({})",
                self.codename,
                self.architectures.join(", ")
            ));
        }
        if self.architectures.iter().all(|a| optional.contains(a)) {
            return Err(format!(
                "at least one architecture of {} must stay mandatory",
                self.codename
            ));
        }
        self.optional_architectures = optional;
        Ok(())
    }

    /// The architecture that builds `Architecture: all` packages.
    pub fn arch_all(&self) -> &str {
        self.architectures
            .iter()
            .find(|a| !self.optional_architectures.contains(a))
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// `[a-z0-9]+`: codenames and repository identities.
pub fn valid_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// mini-buildd's codeversion for the codenames it knows: the major release number for
/// Debian releases, year+month for Ubuntu, `~CODENAME` for rolling and unknown ones.
pub fn codeversion(codename: &str) -> String {
    let known = [
        ("buster", "10"),
        ("bullseye", "11"),
        ("bookworm", "12"),
        ("trixie", "13"),
        ("focal", "2004"),
        ("jammy", "2204"),
        ("noble", "2404"),
    ];
    known
        .iter()
        .find(|(c, _)| *c == codename)
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| format!("~{}", codename.to_ascii_uppercase()))
}

/// A distribution name as apt sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DistName {
    pub codename: String,
    pub repository: String,
    pub suite: String,
    pub rollback: Option<u32>,
}

impl DistName {
    pub fn new(codename: &str, repository: &str, suite: &str) -> DistName {
        DistName {
            codename: codename.to_string(),
            repository: repository.to_string(),
            suite: suite.to_string(),
            rollback: None,
        }
    }

    /// Parses `<codename>-<repo>-<suite>[-rollback<N>]`.
    pub fn parse(s: &str) -> Result<DistName, String> {
        let malformed = || {
            format!(
                "Malformed distribution '{s}': must be '<codename>-<repoid>-<suite>[-rollback<n>]'"
            )
        };
        let parts: Vec<&str> = s.split('-').collect();
        let (base, rollback) = match parts.as_slice() {
            [c, r, su] => ([*c, *r, *su], None),
            [c, r, su, rb] => {
                let n = rb
                    .strip_prefix("rollback")
                    .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|n| n.parse::<u32>().ok())
                    .ok_or_else(malformed)?;
                ([*c, *r, *su], Some(n))
            }
            _ => return Err(malformed()),
        };
        if !base.iter().all(|p| valid_word(p)) || !base[2].bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(malformed());
        }
        Ok(DistName {
            codename: base[0].to_string(),
            repository: base[1].to_string(),
            suite: base[2].to_string(),
            rollback,
        })
    }

    pub fn with_rollback(&self, n: Option<u32>) -> DistName {
        DistName {
            rollback: n,
            ..self.clone()
        }
    }

    /// The main distribution of a rollback distribution (itself for a main one).
    pub fn main(&self) -> DistName {
        self.with_rollback(None)
    }

    pub fn with_suite(&self, suite: &str) -> DistName {
        DistName {
            suite: suite.to_string(),
            rollback: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for DistName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.codename, self.repository, self.suite)?;
        if let Some(n) = self.rollback {
            write!(f, "-rollback{n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in [
            "bookworm-test-unstable",
            "sid-debdev-experimental",
            "bookworm-test-unstable-rollback8",
        ] {
            assert_eq!(DistName::parse(s).unwrap().to_string(), s);
        }
        let d = DistName::parse("bookworm-test-unstable-rollback3").unwrap();
        assert_eq!(
            (
                d.codename.as_str(),
                d.repository.as_str(),
                d.suite.as_str(),
                d.rollback
            ),
            ("bookworm", "test", "unstable", Some(3))
        );
        assert_eq!(d.main().to_string(), "bookworm-test-unstable");
    }

    #[test]
    fn malformed_names_are_refused() {
        for s in [
            "bookworm",
            "bookworm-test",
            "a-b-c-d",
            "bookworm-test-unstable-rollback",
            "bookworm-test-unstable-rollbackx",
            "Bookworm-test-unstable",
            "bookworm-test-unstable2",
            "bookworm-te_st-unstable",
            "a-b-c-rollback1-x",
            "--",
        ] {
            let e = DistName::parse(s).unwrap_err();
            assert!(
                e.starts_with(&format!("Malformed distribution '{s}'")),
                "{e}"
            );
        }
    }

    #[test]
    fn distribution_specs() {
        let d = Distribution::parse_spec("bookworm:amd64+i386").unwrap();
        assert_eq!(d.architectures, ["amd64", "i386"]);
        assert_eq!(d.codeversion, "12");
        assert_eq!(d.arch_all(), "amd64");
        assert_eq!(
            Distribution::parse_spec("sid:amd64").unwrap().codeversion,
            "~SID"
        );
        assert!(Distribution::parse_spec("bookworm").is_err());
        assert!(Distribution::parse_spec("bookworm:all").is_err());
    }
}
