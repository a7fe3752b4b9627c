//! Built-in knowledge of the Debian and Ubuntu archives: where they are, which components they
//! have, which keys sign them, which extra sources (security, backports) belong to a release,
//! and which codenames `--from-origins` selects (from distro-info-data's tables). Pure data and
//! functions; reading the tables from disk is the caller's business.

use std::collections::BTreeMap;

/// One origin mbd knows.
#[derive(Debug)]
pub struct Origin {
    pub name: &'static str,
    /// Mirrors, each ending in exactly one `/`.
    pub archives: &'static [&'static str],
    pub components: &'static [&'static str],
    /// Keys that sign the main archive (long ids of primary keys in the host keyrings).
    pub archive_keys: &'static [&'static str],
    /// Keys that sign the security archive.
    pub security_keys: &'static [&'static str],
    /// The distro-info-data table with this origin's releases.
    pub distro_info: &'static str,
    /// The origin of its backports archive (Debian has its own).
    pub backports_origin: &'static str,
    /// Whether the extra sources say their codename in `Codename:` (Ubuntu) or in the suite
    /// directory only (Debian).
    pub extras_keep_codename: bool,
}

pub static ORIGINS: &[Origin] = &[
    Origin {
        name: "Debian",
        archives: &[
            "http://deb.debian.org/debian/",
            "http://deb.debian.org/debian-security/",
            "http://archive.debian.org/debian/",
            "http://archive.debian.org/debian-security/",
        ],
        components: &["main", "contrib", "non-free", "non-free-firmware"],
        archive_keys: &[
            // Debian Archive Automatic Signing Keys (11/bullseye, 12/bookworm, 13/trixie).
            "73A4F27B8DD47936",
            "B7C5D7D6350947F8",
            "225629DF75B188BD",
            // Debian Stable Release Keys (11/bullseye, 12/bookworm, 13/trixie).
            "605C66F00D6C9793",
            "F8D2585B8783D481",
            "762F67A0B2C39DE4",
        ],
        security_keys: &[
            // Debian Security Archive Automatic Signing Keys (11, 12, 13).
            "A48449044AAD5C5D",
            "254CF3B5AEC0A8F0",
            "9904613D4CCE68C6",
        ],
        distro_info: "debian.csv",
        backports_origin: "Debian Backports",
        extras_keep_codename: false,
    },
    Origin {
        name: "Ubuntu",
        archives: &[
            "http://archive.ubuntu.com/ubuntu/",
            "http://security.ubuntu.com/ubuntu/",
            "http://old-releases.ubuntu.com/ubuntu/",
        ],
        components: &["main", "universe", "restricted", "multiverse"],
        // Ubuntu Archive Automatic Signing Key (2018).
        archive_keys: &["871920D1991BC93C"],
        security_keys: &["871920D1991BC93C"],
        distro_info: "ubuntu.csv",
        backports_origin: "Ubuntu",
        extras_keep_codename: true,
    },
];

pub fn find(name: &str) -> Option<&'static Origin> {
    ORIGINS.iter().find(|o| o.name.eq_ignore_ascii_case(name))
}

/// The names of the known origins, for error messages.
pub fn names() -> String {
    ORIGINS
        .iter()
        .map(|o| o.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a Source is set up with, before it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    pub origin: String,
    /// The directory under `dists/`.
    pub codename: String,
    /// Further Release fields that must match (a `Codename` here replaces the directory name).
    pub extra_identifiers: BTreeMap<String, String>,
    pub apt_keys: Vec<String>,
    /// Prefix stripped from the Release's component names.
    pub remove_from_component: String,
}

/// An extra source of a distribution and its apt pin priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extra {
    pub spec: SourceSpec,
    pub priority: i64,
}

/// One row of a distro-info-data table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub version: String,
    pub series: String,
    pub created: String,
    pub release: String,
    pub eol: String,
    /// Debian: eol-lts; Ubuntu: eol-server.
    pub eol_lts: String,
    /// Debian: eol-elts; Ubuntu: eol-esm.
    pub eol_extended: String,
}

/// Parses a distro-info-data CSV table (header line first).
pub fn parse_distro_info(csv: &str) -> Vec<Release> {
    csv.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let at = |i: usize| f.get(i).map_or("", |s| s.trim()).to_string();
            Release {
                version: at(0),
                series: at(2),
                created: at(3),
                release: at(4),
                eol: at(5),
                eol_lts: at(6),
                eol_extended: at(7),
            }
        })
        .collect()
}

/// Which codenames `--from-origins <origin>[:lts|:all]` means on `today` (`YYYY-MM-DD`):
/// none = supported (created, not past end of life, testing and unstable included),
/// `lts` = also those in LTS/ELTS (Debian) or ESM (Ubuntu), `all` = every one released or
/// in development. Debian's `experimental` is never a base codename.
pub fn select_codenames(
    table: &[Release],
    selector: &str,
    today: &str,
) -> Result<Vec<String>, String> {
    let alive = |end: &str| end.is_empty() || end > today;
    let mut out = Vec::new();
    for r in table {
        if r.series == "experimental" || r.created.is_empty() || r.created.as_str() > today {
            continue;
        }
        let keep = match selector {
            "" => alive(&r.eol),
            "lts" => alive(&r.eol) || alive(&r.eol_lts) || alive(&r.eol_extended),
            "all" => true,
            other => {
                return Err(format!(
                    "codename selector '{other}' is not empty, 'lts' or 'all'"
                ));
            }
        };
        if keep {
            out.push(r.series.clone());
        }
    }
    Ok(out)
}

impl Origin {
    /// The base source of `codename`, and the extra sources its distributions use (security
    /// with priority 500, backports with priority 1), shaped as mini-buildd sets them up.
    /// `released` says whether the codename is a release (testing and unstable have no
    /// backports; unstable has no security archive either).
    pub fn sources_for(&self, codename: &str, released: bool) -> (SourceSpec, Vec<Extra>) {
        let spec = |origin: &str, dir: String, keys: &[&str], ids: &[(&str, String)]| SourceSpec {
            origin: origin.to_string(),
            codename: dir,
            extra_identifiers: ids
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            apt_keys: keys.iter().map(|k| k.to_string()).collect(),
            remove_from_component: String::new(),
        };
        let base = spec(self.name, codename.to_string(), self.archive_keys, &[]);
        let mut extras = Vec::new();
        if codename == "sid" || codename == "experimental" {
            return (base, extras);
        }
        let ids = |suffix: &str| -> Vec<(&str, String)> {
            if self.extras_keep_codename {
                vec![
                    ("Codename", codename.to_string()),
                    ("Suite", format!("{codename}-{suffix}")),
                ]
            } else {
                Vec::new()
            }
        };
        extras.push(Extra {
            spec: spec(
                self.name,
                format!("{codename}-security"),
                self.security_keys,
                &ids("security"),
            ),
            priority: 500,
        });
        if released {
            extras.push(Extra {
                spec: spec(
                    self.backports_origin,
                    format!("{codename}-backports"),
                    self.archive_keys,
                    &ids("backports"),
                ),
                priority: 1,
            });
        }
        (base, extras)
    }
}

/// mini-buildd's codeversion from a Release file's Origin, Codename and Version (§4.1 of the
/// reference): `~CODENAME` without a version; the major number for modern Debian; the first two
/// numbers joined for old Debian, Ubuntu and others.
pub fn codeversion(origin: &str, codename: &str, version: &str) -> String {
    if version.trim().is_empty() {
        return format!("~{}", codename.to_ascii_uppercase());
    }
    let digits = |s: &str| -> String { s.chars().take_while(char::is_ascii_digit).collect() };
    let mut parts = version.trim().split('.');
    let first = digits(parts.next().unwrap_or(""));
    const OLD_DEBIAN: &[&str] = &[
        "buzz", "rex", "bo", "hamm", "slink", "potato", "woody", "sarge", "etch", "lenny",
        "squeeze",
    ];
    if origin == "Debian" && !OLD_DEBIAN.contains(&codename) {
        return first;
    }
    format!("{first}{}", digits(parts.next().unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "version,codename,series,created,release,eol,eol-lts,eol-elts
10,Buster,buster,2017-06-17,2019-07-06,2022-09-10,2024-06-30,2029-06-30
11,Bullseye,bullseye,2019-07-06,2021-08-14,2024-08-14,2026-08-31,2031-06-30
12,Bookworm,bookworm,2021-08-14,2023-06-10,2026-07-11,2028-06-30,2033-06-30
13,Trixie,trixie,2023-06-10,2025-08-09,2028-08-09,2030-06-30,2035-06-30
14,Forky,forky,2025-08-09
15,Duke,duke,2027-08-01
,Sid,sid,1993-08-16
,Experimental,experimental,1993-08-16
";

    #[test]
    fn codename_selection_follows_the_distro_info_dates() {
        let t = parse_distro_info(DEBIAN);
        assert_eq!(
            select_codenames(&t, "", "2026-11-29").unwrap(),
            ["trixie", "forky", "sid"]
        );
        assert_eq!(
            select_codenames(&t, "lts", "2026-11-29").unwrap(),
            ["buster", "bullseye", "bookworm", "trixie", "forky", "sid"]
        );
        assert_eq!(
            select_codenames(&t, "", "2026-01-01").unwrap(),
            ["bookworm", "trixie", "forky", "sid"]
        );
        assert_eq!(select_codenames(&t, "all", "2026-11-29").unwrap().len(), 6);
        assert!(select_codenames(&t, "old", "2026-11-29").is_err());
    }

    #[test]
    fn codeversions_as_mini_buildd_computes_them() {
        assert_eq!(codeversion("Debian", "bookworm", "12.15"), "12");
        assert_eq!(codeversion("Debian", "trixie", "13.8"), "13");
        assert_eq!(codeversion("Debian", "sid", ""), "~SID");
        assert_eq!(codeversion("Debian", "squeeze", "6.0.6"), "60");
        assert_eq!(codeversion("Debian", "etch", "4.0r9"), "40");
        assert_eq!(codeversion("Ubuntu", "jammy", "22.04"), "2204");
        assert_eq!(
            codeversion("Debian Backports", "bookworm-backports", ""),
            "~BOOKWORM-BACKPORTS"
        );
    }

    #[test]
    fn debian_and_ubuntu_extra_sources() {
        let debian = find("debian").unwrap();
        let (base, extras) = debian.sources_for("bookworm", true);
        assert_eq!(base.codename, "bookworm");
        assert!(base.apt_keys.contains(&"B7C5D7D6350947F8".to_string()));
        let names: Vec<(&str, &str, i64)> = extras
            .iter()
            .map(|e| (e.spec.origin.as_str(), e.spec.codename.as_str(), e.priority))
            .collect();
        assert_eq!(
            names,
            [
                ("Debian", "bookworm-security", 500),
                ("Debian Backports", "bookworm-backports", 1)
            ]
        );
        assert!(extras[0].spec.extra_identifiers.is_empty());
        assert!(debian.sources_for("sid", false).1.is_empty());
        assert_eq!(debian.sources_for("forky", false).1.len(), 1);

        let ubuntu = find("Ubuntu").unwrap();
        let (_, extras) = ubuntu.sources_for("noble", true);
        assert_eq!(extras[0].spec.codename, "noble-security");
        assert_eq!(extras[0].spec.extra_identifiers["Codename"], "noble");
        assert_eq!(extras[1].spec.extra_identifiers["Suite"], "noble-backports");
        assert!(find("Foo").is_none());
    }
}
