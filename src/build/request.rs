//! Build requests: which architectures a source package is built on.
//!
//! A source builds on every configured architecture its `Architecture` field admits;
//! `Architecture: all` packages build on exactly one architecture, the distribution's first
//! non-optional one. Optional architectures may fail without blocking the installation.

use super::BuildError;
use crate::repo::distribution::Distribution;

/// One architecture's build of a source package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuildRequest {
    pub architecture: String,
    /// Also builds the `Architecture: all` binaries.
    pub arch_all: bool,
    /// A failure here does not block the installation.
    pub optional: bool,
}

/// Whether an `Architecture` field word admits `arch` (a Debian architecture on Linux):
/// `any`, `linux-any`, `any-<cpu>`, or the name itself.
fn admits(word: &str, arch: &str) -> bool {
    match word {
        "any" | "linux-any" => true,
        w if w == arch => true,
        w => w
            .strip_prefix("any-")
            .or_else(|| w.strip_prefix("linux-"))
            .is_some_and(|cpu| cpu == arch),
    }
}

/// The build requests of a source package whose `.dsc` says `architectures` (the words of its
/// `Architecture` field), in `dist`'s architecture order.
pub fn plan(
    source: &str,
    architectures: &[String],
    dist: &Distribution,
) -> Result<Vec<BuildRequest>, BuildError> {
    let arch_all = dist.arch_all();
    let wants_all = architectures.iter().any(|w| w == "all");
    if wants_all && arch_all.is_empty() {
        return Err(BuildError::NoArchAll {
            codename: dist.codename.clone(),
        });
    }
    let mut out = Vec::new();
    for arch in &dist.architectures {
        let specific = architectures.iter().any(|w| w != "all" && admits(w, arch));
        let builds_all = wants_all && arch == arch_all;
        if specific || builds_all {
            out.push(BuildRequest {
                architecture: arch.clone(),
                arch_all: builds_all,
                optional: dist.optional_architectures.contains(arch),
            });
        }
    }
    if out.is_empty() {
        return Err(BuildError::NoArchitecture {
            source_name: source.to_string(),
            codename: dist.codename.clone(),
            configured: dist.architectures.join(" "),
            wanted: architectures.join(" "),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(spec: &str, optional: &[&str]) -> Distribution {
        let mut d = Distribution::parse_spec(spec).unwrap();
        d.optional_architectures = optional.iter().map(|s| s.to_string()).collect();
        d
    }

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn archs(plan: &[BuildRequest]) -> Vec<(&str, bool, bool)> {
        plan.iter()
            .map(|r| (r.architecture.as_str(), r.arch_all, r.optional))
            .collect()
    }

    #[test]
    fn any_and_all_build_everywhere_with_arch_all_once() {
        let d = dist("bookworm:amd64+i386+arm64", &["arm64"]);
        let p = plan("hello", &words("any all"), &d).unwrap();
        assert_eq!(
            archs(&p),
            [
                ("amd64", true, false),
                ("i386", false, false),
                ("arm64", false, true)
            ]
        );
    }

    #[test]
    fn arch_all_only_builds_on_the_arch_all_architecture() {
        let d = dist("bookworm:i386+amd64", &["i386"]);
        let p = plan("doc", &words("all"), &d).unwrap();
        assert_eq!(archs(&p), [("amd64", true, false)]);
    }

    #[test]
    fn specific_and_wildcard_architectures() {
        let d = dist("bookworm:amd64+i386", &[]);
        assert_eq!(
            archs(&plan("x", &words("i386"), &d).unwrap()),
            [("i386", false, false)]
        );
        assert_eq!(
            archs(&plan("x", &words("any-amd64"), &d).unwrap()),
            [("amd64", false, false)]
        );
        assert_eq!(archs(&plan("x", &words("linux-any"), &d).unwrap()).len(), 2);
    }

    #[test]
    fn nothing_to_build_is_explained() {
        let d = dist("bookworm:amd64", &[]);
        let e = plan("firmware", &words("arm64 armhf"), &d).unwrap_err();
        assert_eq!(
            e.to_string(),
            "firmware: builds for none of bookworm's architectures (amd64); its Architecture field is 'arm64 armhf'"
        );
        let d = dist("bookworm:amd64", &["amd64"]);
        assert!(matches!(
            plan("doc", &words("all"), &d),
            Err(BuildError::NoArchAll { .. })
        ));
    }
}
