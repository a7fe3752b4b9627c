//! `debian/changelog`: the top entry, and the upload options (`MINI_BUILDD_OPTION:` lines)
//! that uploaders put in it.
//!
//! Options are read from the top entry only (ports carry several entries), from a changelog
//! file or from a `.changes`'s `Changes` field. Syntax:
//! `* MINI_BUILDD_OPTION: <key>[[<arch>]]=<value>`. Unlike mini-buildd, the value runs to the end
//! of the line and may contain `=`, `.` and spaces, so `deb-build-options=nocheck parallel=4`
//! and `add-depends=foo (>= 1.2)` mean what they say.

use crate::version::Version;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: line {line}: {reason}", path.display())]
pub struct ChangelogError {
    pub path: PathBuf,
    pub line: usize,
    pub reason: String,
}

/// A bad `MINI_BUILDD_OPTION` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("unknown upload option '{0}'")]
    Unknown(String),
    #[error("duplicate upload option '{0}'")]
    Duplicate(String),
    #[error("invalid value '{value}' for upload option '{key}': {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: &'static str,
    },
    #[error("malformed upload option line '{0}'")]
    Malformed(String),
}

/// The top entry of a changelog.
#[derive(Debug, Clone)]
pub struct ChangelogEntry {
    pub source: String,
    pub version: Version,
    pub distributions: Vec<String>,
    pub urgency: String,
    /// The change lines between header and trailer, without their two-space indentation.
    pub text: String,
    pub maintainer: String,
    pub date: String,
    pub options: UploadOptions,
}

/// Parses the top entry of a changelog.
pub fn parse_top_entry(text: &str, path: &Path) -> Result<ChangelogEntry, ChangelogError> {
    let err = |line: usize, reason: String| ChangelogError {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .skip_while(|(_, l)| l.trim().is_empty());
    let (hn, header) = lines
        .next()
        .ok_or_else(|| err(1, "empty changelog".into()))?;
    let h = parse_header(header).ok_or_else(|| {
        err(
            hn + 1,
            format!("expected 'source (version) distribution; urgency=...', found '{header}'"),
        )
    })?;
    let version = Version::parse(h.version).map_err(|e| err(hn + 1, e.to_string()))?;
    let mut body = Vec::new();
    let mut trailer = None;
    let mut body_start = hn + 2;
    for (n, line) in lines {
        if let Some(t) = line.strip_prefix(" -- ") {
            trailer = Some((n, t));
            break;
        }
        if body.is_empty() && line.trim().is_empty() {
            body_start = n + 2;
            continue;
        }
        body.push(line);
    }
    let (tn, t) =
        trailer.ok_or_else(|| err(hn + 1, "entry has no ' -- maintainer  date' line".into()))?;
    let (maintainer, date) = t
        .split_once(">  ")
        .map(|(m, d)| (format!("{m}>"), d.trim().to_string()))
        .ok_or_else(|| err(tn + 1, "trailer is not ' -- Name <email>  date'".into()))?;
    while body.last().is_some_and(|l| l.trim().is_empty()) {
        body.pop();
    }
    let text = body
        .iter()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let options = UploadOptions::parse_lines(body.iter().copied())
        .map_err(|(i, e)| err(body_start + i, e.to_string()))?;
    Ok(ChangelogEntry {
        source: h.source.to_string(),
        version,
        distributions: h.distributions.iter().map(|d| d.to_string()).collect(),
        urgency: h.urgency.to_string(),
        text,
        maintainer,
        date,
        options,
    })
}

struct Header<'a> {
    source: &'a str,
    version: &'a str,
    distributions: Vec<&'a str>,
    urgency: &'a str,
}

/// `source (version) dist [dist...]; key=value[, key=value]`
fn parse_header(line: &str) -> Option<Header<'_>> {
    let (source, rest) = line.split_once(" (")?;
    if !crate::deb::valid_package_name(source) {
        return None;
    }
    let (version, rest) = rest.split_once(')')?;
    let (dists, kv) = rest.split_once(';')?;
    let distributions: Vec<&str> = dists.split_whitespace().collect();
    if distributions.is_empty() {
        return None;
    }
    let urgency = kv
        .split(',')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("urgency"))
        .map(|(_, v)| v.trim())
        .unwrap_or("");
    Some(Header {
        source,
        version,
        distributions,
        urgency,
    })
}

/// How a QA tool's result counts (lintian, piuparts, autopkgtest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QaMode {
    Disabled,
    Ignore,
    ErrFail,
    WarnFail,
}

impl QaMode {
    pub fn parse(s: &str) -> Option<QaMode> {
        Some(match s.to_ascii_lowercase().as_str() {
            "disabled" => QaMode::Disabled,
            "ignore" => QaMode::Ignore,
            "errfail" => QaMode::ErrFail,
            "warnfail" => QaMode::WarnFail,
            _ => return None,
        })
    }
}

/// The keys an upload may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKey {
    LintianMode,
    PiupartsMode,
    AutopkgtestMode,
    InternalAptPriority,
    AutoPorts,
    DebBuildOptions,
    DebBuildProfiles,
    AddDepends,
}

impl OptionKey {
    const ALL: [(&'static str, OptionKey); 8] = [
        ("lintian-mode", OptionKey::LintianMode),
        ("piuparts-mode", OptionKey::PiupartsMode),
        ("autopkgtest-mode", OptionKey::AutopkgtestMode),
        ("internal-apt-priority", OptionKey::InternalAptPriority),
        ("auto-ports", OptionKey::AutoPorts),
        ("deb-build-options", OptionKey::DebBuildOptions),
        ("deb-build-profiles", OptionKey::DebBuildProfiles),
        ("add-depends", OptionKey::AddDepends),
    ];

    pub fn name(self) -> &'static str {
        OptionKey::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map(|(n, _)| *n)
            .unwrap_or("")
    }

    fn from_name(name: &str) -> Option<OptionKey> {
        OptionKey::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| *k)
    }
}

impl fmt::Display for OptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionValue {
    Mode(QaMode),
    Int(i64),
    List(Vec<String>),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadOption {
    pub key: OptionKey,
    /// Set for `key[arch]=value`.
    pub arch: Option<String>,
    pub value: OptionValue,
}

/// The options of one upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadOptions {
    pub options: Vec<UploadOption>,
}

impl UploadOptions {
    /// Reads the options of the top entry of a `.changes` `Changes` field (or any changelog
    /// text): reading stops at the second entry header.
    pub fn from_changes_text(text: &str) -> Result<UploadOptions, OptionError> {
        let mut headers = 0;
        let top = text.lines().take_while(|l| {
            if parse_header(l.trim()).is_some() {
                headers += 1;
            }
            headers < 2
        });
        UploadOptions::parse_lines(top).map_err(|(_, e)| e)
    }

    /// Parses option lines; an error carries the index of the offending line.
    fn parse_lines<'a>(
        lines: impl Iterator<Item = &'a str>,
    ) -> Result<UploadOptions, (usize, OptionError)> {
        let mut out = UploadOptions::default();
        for (i, line) in lines.enumerate() {
            let Some(item) = line.trim().strip_prefix('*').map(str::trim_start) else {
                continue;
            };
            let parsed = if let Some(rest) = item.strip_prefix("MINI_BUILDD_OPTION:") {
                parse_option(rest.trim())
            } else if let Some(rest) = item.strip_prefix("MINI_BUILDD:") {
                parse_ancient(rest.trim())
            } else {
                continue;
            };
            for opt in parsed.map_err(|e| (i, e))? {
                out.add(opt).map_err(|e| (i, e))?;
            }
        }
        Ok(out)
    }

    fn add(&mut self, opt: UploadOption) -> Result<(), OptionError> {
        if self
            .options
            .iter()
            .any(|o| o.key == opt.key && o.arch == opt.arch)
        {
            let name = match &opt.arch {
                Some(a) => format!("{}[{a}]", opt.key),
                None => opt.key.to_string(),
            };
            return Err(OptionError::Duplicate(name));
        }
        self.options.push(opt);
        Ok(())
    }

    /// The value for `key`: the `key[arch]` form first, then the plain key.
    pub fn get(&self, key: OptionKey, arch: Option<&str>) -> Option<&OptionValue> {
        let exact = arch.and_then(|a| {
            self.options
                .iter()
                .find(|o| o.key == key && o.arch.as_deref() == Some(a))
        });
        exact
            .or_else(|| {
                self.options
                    .iter()
                    .find(|o| o.key == key && o.arch.is_none())
            })
            .map(|o| &o.value)
    }

    pub fn is_empty(&self) -> bool {
        self.options.is_empty()
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool, OptionError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(OptionError::InvalidValue {
            key: key.into(),
            value: v.into(),
            reason: "expected true, false, 1 or 0",
        }),
    }
}

fn parse_option(s: &str) -> Result<Vec<UploadOption>, OptionError> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| OptionError::Malformed(s.to_string()))?;
    let (key, value) = (key.trim(), value.trim());
    let (name, arch) = match key.split_once('[') {
        Some((n, a)) => {
            let a = a
                .strip_suffix(']')
                .filter(|a| {
                    !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
                .ok_or_else(|| OptionError::Malformed(s.to_string()))?;
            (n.trim(), Some(a.to_string()))
        }
        None => (key, None),
    };
    let mode = |key: OptionKey, m: QaMode| UploadOption {
        key,
        arch: arch.clone(),
        value: OptionValue::Mode(m),
    };
    // Deprecated spellings, converted as mini-buildd does.
    match name {
        "ignore-lintian" => {
            let m = if parse_bool(name, value)? {
                QaMode::Ignore
            } else {
                QaMode::ErrFail
            };
            return Ok(vec![mode(OptionKey::LintianMode, m)]);
        }
        "run-lintian" => {
            let m = if parse_bool(name, value)? {
                QaMode::ErrFail
            } else {
                QaMode::Disabled
            };
            return Ok(vec![mode(OptionKey::LintianMode, m)]);
        }
        _ => {}
    }
    let key = OptionKey::from_name(name).ok_or_else(|| OptionError::Unknown(name.to_string()))?;
    let invalid = |reason| OptionError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason,
    };
    if value.is_empty() {
        return Err(invalid("empty value"));
    }
    let value = match key {
        OptionKey::LintianMode | OptionKey::PiupartsMode | OptionKey::AutopkgtestMode => {
            OptionValue::Mode(
                QaMode::parse(value)
                    .ok_or_else(|| invalid("expected disabled, ignore, errfail or warnfail"))?,
            )
        }
        OptionKey::InternalAptPriority => {
            if arch.is_some() {
                return Err(invalid("this option takes no architecture"));
            }
            OptionValue::Int(value.parse().map_err(|_| invalid("expected an integer"))?)
        }
        OptionKey::AutoPorts | OptionKey::AddDepends => OptionValue::List(
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        OptionKey::DebBuildOptions | OptionKey::DebBuildProfiles => {
            OptionValue::Text(value.split_whitespace().collect::<Vec<_>>().join(" "))
        }
    };
    Ok(vec![UploadOption { key, arch, value }])
}

/// The magic lines of mini-buildd 1.0, still honoured.
fn parse_ancient(s: &str) -> Result<Vec<UploadOption>, OptionError> {
    if let Some(dists) = s.strip_prefix("AUTO_BACKPORTS:") {
        return parse_option(&format!("auto-ports={}", dists.trim()));
    }
    if s.trim() == "BACKPORT_MODE" {
        return parse_option("lintian-mode=ignore");
    }
    Err(OptionError::Unknown(format!("MINI_BUILDD: {s}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "mini-buildd (1.0.25~test11+1) bullseye-test-unstable; urgency=medium

  * New upstream.
  * MINI_BUILDD_OPTION: lintian-mode=ignore
  * MINI_BUILDD_OPTION: lintian-mode[armel]=disabled
  * MINI_BUILDD_OPTION: deb-build-options=nocheck  parallel=4
  * MINI_BUILDD_OPTION: auto-ports=buster-test-unstable, bookworm-test-unstable
  * MINI_BUILDD_OPTION: add-depends=foo (>= 1.2)

 -- Jane Doe <jane@example.org>  Mon, 23 Nov 2026 12:00:00 +0000

mini-buildd (1.0.24~test11+1) bullseye-test-unstable; urgency=low

  * MINI_BUILDD_OPTION: lintian-mode=warnfail

 -- Jane Doe <jane@example.org>  Sun, 22 Nov 2026 12:00:00 +0000
";

    #[test]
    fn top_entry_and_its_options() {
        let e = parse_top_entry(LOG, Path::new("changelog")).unwrap();
        assert_eq!(e.source, "mini-buildd");
        assert_eq!(e.version.as_str(), "1.0.25~test11+1");
        assert_eq!(e.distributions, ["bullseye-test-unstable"]);
        assert_eq!(e.urgency, "medium");
        assert_eq!(e.maintainer, "Jane Doe <jane@example.org>");
        assert_eq!(e.date, "Mon, 23 Nov 2026 12:00:00 +0000");
        assert!(e.text.starts_with("* New upstream.\n"));
        let o = &e.options;
        assert_eq!(o.options.len(), 5);
        assert_eq!(
            o.get(OptionKey::LintianMode, Some("armel")),
            Some(&OptionValue::Mode(QaMode::Disabled))
        );
        assert_eq!(
            o.get(OptionKey::LintianMode, Some("amd64")),
            Some(&OptionValue::Mode(QaMode::Ignore))
        );
        assert_eq!(
            o.get(OptionKey::DebBuildOptions, None),
            Some(&OptionValue::Text("nocheck parallel=4".into()))
        );
        assert_eq!(
            o.get(OptionKey::AutoPorts, None),
            Some(&OptionValue::List(vec![
                "buster-test-unstable".into(),
                "bookworm-test-unstable".into()
            ]))
        );
        assert_eq!(
            o.get(OptionKey::AddDepends, None),
            Some(&OptionValue::List(vec!["foo (>= 1.2)".into()]))
        );
    }

    #[test]
    fn changes_field_reads_only_the_top_block() {
        let changes = "\n mini-buildd (1.0.25~test11+1) bullseye-test-unstable; urgency=medium\n .\n   * MINI_BUILDD_OPTION: run-lintian=false\n .\n mini-buildd (1.0.24) bullseye-test-unstable; urgency=low\n .\n   * MINI_BUILDD_OPTION: lintian-mode=warnfail\n";
        let o = UploadOptions::from_changes_text(changes).unwrap();
        assert_eq!(o.options.len(), 1);
        assert_eq!(
            o.get(OptionKey::LintianMode, None),
            Some(&OptionValue::Mode(QaMode::Disabled))
        );
        let ancient = UploadOptions::from_changes_text(
            "  * MINI_BUILDD: AUTO_BACKPORTS: a-b-c\n  * MINI_BUILDD: BACKPORT_MODE",
        )
        .unwrap();
        assert_eq!(ancient.options.len(), 2);
    }

    #[test]
    fn bad_options_are_refused_with_their_line() {
        let bad = |line: &str| {
            let log = LOG.replacen("  * New upstream.", line, 1);
            parse_top_entry(&log, Path::new("debian/changelog")).unwrap_err()
        };
        let e = bad("  * MINI_BUILDD_OPTION: colour=blue");
        assert_eq!(e.line, 3);
        assert!(
            e.to_string()
                .starts_with("debian/changelog: line 3: unknown upload option 'colour'"),
            "{e}"
        );
        let e = bad("  * MINI_BUILDD_OPTION: lintian-mode=sometimes");
        assert!(e.reason.contains("invalid value 'sometimes'"), "{e}");
        let e = bad("  * MINI_BUILDD_OPTION: lintian-mode=errfail");
        assert!(
            e.reason.contains("duplicate upload option 'lintian-mode'"),
            "{e}"
        );
        let e = bad("  * MINI_BUILDD_OPTION: internal-apt-priority=high");
        assert!(e.reason.contains("expected an integer"), "{e}");
    }

    #[test]
    fn malformed_entries() {
        let e = parse_top_entry("hello 1.0 unstable\n", Path::new("c")).unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse_top_entry(
            "hello (1.0) unstable; urgency=low\n\n  * x\n",
            Path::new("c"),
        )
        .unwrap_err();
        assert!(e.reason.contains("no ' -- maintainer"), "{e}");
        let e =
            parse_top_entry("hello (x1.0) unstable; urgency=low\n", Path::new("c")).unwrap_err();
        assert!(e.reason.contains("does not start with a digit"), "{e}");
    }
}
