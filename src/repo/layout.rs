//! Layouts: which suites a repository has and the rules of each (uploadable, experimental,
//! migrates-to, rollback count, NotAutomatic/ButAutomaticUpgrades, version rules).
//!
//! The built-in layouts are mini-buildd's: `Default`, `Default (no rollbacks)` and
//! `Debian Developer`, with suites in the order stable, hotfix, testing, unstable, snapshot,
//! experimental (the order used everywhere suites are listed).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The rules of one suite within a layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteOptions {
    pub name: String,
    pub uploadable: bool,
    pub experimental: bool,
    pub migrates_to: Option<String>,
    pub rollback: u32,
    pub build_keyring_package: bool,
    pub not_automatic: bool,
    pub but_automatic_upgrades: bool,
}

/// A named set of suites with version rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub name: String,
    pub suites: Vec<SuiteOptions>,
    pub default_version: String,
    pub mandatory_version_regex: String,
    pub experimental_default_version: String,
    pub experimental_mandatory_version_regex: String,
    /// Meta-distribution → `<codename>-<suite>`, expanded per repository.
    pub meta_distributions: BTreeMap<String, String>,
}

/// A layout that cannot work, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("layout '{layout}': {reason}")]
pub struct LayoutError {
    pub layout: String,
    pub reason: String,
}

impl Layout {
    pub fn suite(&self, name: &str) -> Option<&SuiteOptions> {
        self.suites.iter().find(|s| s.name == name)
    }

    /// The suites a build for `suite` installs its build-dependencies from, as mini-buildd
    /// gives them to sbuild: the suite itself and the whole chain it migrates to (unstable →
    /// testing → stable); for an experimental suite, itself and every non-experimental one.
    pub fn build_suites<'a>(&'a self, suite: &'a SuiteOptions) -> Vec<&'a SuiteOptions> {
        if suite.experimental {
            let others = self.suites.iter().filter(|s| !s.experimental);
            return std::iter::once(suite).chain(others).collect();
        }
        let mut out = vec![suite];
        while let Some(next) = out
            .last()
            .and_then(|s| s.migrates_to.as_deref())
            .and_then(|n| self.suite(n))
        {
            if out.iter().any(|s| s.name == next.name) || out.len() > self.suites.len() {
                break;
            }
            out.push(next);
        }
        out
    }

    /// Checks the rules mini-buildd enforces on suite options.
    pub fn validate(&self) -> Result<(), LayoutError> {
        let err = |reason: String| LayoutError {
            layout: self.name.clone(),
            reason,
        };
        for s in &self.suites {
            if s.name.is_empty() || !s.name.bytes().all(|b| b.is_ascii_lowercase()) {
                return Err(err(format!("suite name '{}' must match [a-z]+", s.name)));
            }
            if self.suites.iter().filter(|o| o.name == s.name).count() > 1 {
                return Err(err(format!("suite '{}' appears twice", s.name)));
            }
            if s.build_keyring_package && !s.uploadable {
                return Err(err(format!(
                    "suite '{}': keyring package on a non-uploadable suite",
                    s.name
                )));
            }
            if s.experimental && !s.uploadable {
                return Err(err(format!(
                    "suite '{}': experimental suites must be uploadable",
                    s.name
                )));
            }
            if let Some(target) = &s.migrates_to {
                if s.experimental {
                    return Err(err(format!(
                        "suite '{}': experimental suites do not migrate",
                        s.name
                    )));
                }
                match self.suite(target) {
                    None => {
                        return Err(err(format!(
                            "suite '{}' migrates to '{target}', which is not in this layout",
                            s.name
                        )));
                    }
                    Some(t) if t.uploadable => {
                        return Err(err(format!(
                            "suite '{}' migrates to '{target}', which is uploadable",
                            s.name
                        )));
                    }
                    Some(_) => {}
                }
            }
        }
        for (meta, target) in &self.meta_distributions {
            let Some((_, suite)) = target.split_once('-') else {
                return Err(err(format!(
                    "meta-distribution '{meta}' maps to '{target}', not '<codename>-<suite>'"
                )));
            };
            if self.suite(suite).is_none() {
                return Err(err(format!(
                    "meta-distribution '{meta}' names unknown suite '{suite}'"
                )));
            }
        }
        Ok(())
    }

    /// The version rule of a suite with placeholders substituted.
    pub fn mandatory_version_regex(
        &self,
        suite: &SuiteOptions,
        identity: &str,
        codeversion: &str,
    ) -> String {
        let (normal, experimental) = (
            &self.mandatory_version_regex,
            &self.experimental_mandatory_version_regex,
        );
        substitute(
            if suite.experimental {
                experimental
            } else {
                normal
            },
            identity,
            codeversion,
        )
    }

    /// The version appendix used for ports into a suite.
    pub fn default_version(
        &self,
        suite: &SuiteOptions,
        identity: &str,
        codeversion: &str,
    ) -> String {
        let (normal, experimental) = (&self.default_version, &self.experimental_default_version);
        substitute(
            if suite.experimental {
                experimental
            } else {
                normal
            },
            identity,
            codeversion,
        )
    }
}

fn substitute(template: &str, identity: &str, codeversion: &str) -> String {
    template
        .replace("%IDENTITY%", identity)
        .replace("%CODEVERSION%", codeversion)
}

fn suite(
    name: &str,
    uploadable: bool,
    experimental: bool,
    migrates_to: Option<&str>,
    rollback: u32,
) -> SuiteOptions {
    SuiteOptions {
        name: name.to_string(),
        uploadable,
        experimental,
        migrates_to: migrates_to.map(str::to_string),
        rollback,
        build_keyring_package: name == "unstable",
        not_automatic: true,
        but_automatic_upgrades: name != "experimental",
    }
}

fn with_defaults(name: &str, suites: Vec<SuiteOptions>) -> Layout {
    Layout {
        name: name.to_string(),
        suites,
        default_version: "~%IDENTITY%%CODEVERSION%+1".into(),
        mandatory_version_regex: r"~%IDENTITY%%CODEVERSION%\+[1-9]".into(),
        experimental_default_version: "~%IDENTITY%%CODEVERSION%+0".into(),
        experimental_mandatory_version_regex: r"~%IDENTITY%%CODEVERSION%\+0".into(),
        meta_distributions: BTreeMap::new(),
    }
}

/// mini-buildd's built-in layouts.
pub fn builtin() -> Vec<Layout> {
    let six = |r: [u32; 6]| {
        vec![
            suite("stable", false, false, None, r[0]),
            suite("hotfix", true, false, Some("stable"), r[1]),
            suite("testing", false, false, Some("stable"), r[2]),
            suite("unstable", true, false, Some("testing"), r[3]),
            suite("snapshot", true, true, None, r[4]),
            suite("experimental", true, true, None, r[5]),
        ]
    };
    let mut debdev = with_defaults(
        "Debian Developer",
        vec![
            suite("stable", false, false, None, 0),
            suite("testing", false, false, Some("stable"), 0),
            suite("unstable", true, false, Some("testing"), 0),
            suite("experimental", true, true, None, 0),
        ],
    );
    debdev.mandatory_version_regex = ".*".into();
    debdev.experimental_mandatory_version_regex = ".*".into();
    debdev.meta_distributions = [
        ("unstable", "sid-unstable"),
        ("experimental", "sid-experimental"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vec![
        with_defaults("Default", six([6, 4, 3, 9, 12, 6])),
        with_defaults("Default (no rollbacks)", six([0; 6])),
        debdev,
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn builds_see_their_suite_and_where_it_migrates_or_all_stable_ones() {
        let l = builtin().into_iter().find(|l| l.name == "Default").unwrap();
        let names = |suite: &str| -> Vec<String> {
            l.build_suites(l.suite(suite).unwrap())
                .iter()
                .map(|s| s.name.clone())
                .collect()
        };
        assert_eq!(names("unstable"), ["unstable", "testing", "stable"]);
        assert_eq!(names("hotfix"), ["hotfix", "stable"]);
        assert_eq!(names("stable"), ["stable"]);
        assert_eq!(
            names("experimental"),
            ["experimental", "stable", "hotfix", "testing", "unstable"]
        );
        assert_eq!(
            names("snapshot"),
            ["snapshot", "stable", "hotfix", "testing", "unstable"]
        );
    }

    use super::*;

    #[test]
    fn builtin_layouts_are_valid_and_match_mini_buildd() {
        let layouts = builtin();
        for l in &layouts {
            l.validate().unwrap();
        }
        let d = &layouts[0];
        assert_eq!(d.name, "Default");
        let names: Vec<&str> = d.suites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "stable",
                "hotfix",
                "testing",
                "unstable",
                "snapshot",
                "experimental"
            ]
        );
        let unstable = d.suite("unstable").unwrap();
        assert_eq!(
            (unstable.rollback, unstable.migrates_to.as_deref()),
            (9, Some("testing"))
        );
        assert!(!d.suite("experimental").unwrap().but_automatic_upgrades);
        assert_eq!(
            d.mandatory_version_regex(unstable, "test", "12"),
            r"~test12\+[1-9]"
        );
        let exp = d.suite("experimental").unwrap();
        assert_eq!(d.default_version(exp, "test", "12"), "~test12+0");
        assert_eq!(layouts[2].meta_distributions["unstable"], "sid-unstable");
    }

    #[test]
    fn invalid_layouts_are_explained() {
        let mut l = builtin().remove(0);
        l.suites[3].migrates_to = Some("hotfix".into());
        let e = l.validate().unwrap_err();
        assert!(e.reason.contains("which is uploadable"), "{e}");
        let mut l = builtin().remove(0);
        l.suites[4].migrates_to = Some("stable".into());
        assert!(
            l.validate()
                .unwrap_err()
                .reason
                .contains("experimental suites do not migrate")
        );
    }
}
