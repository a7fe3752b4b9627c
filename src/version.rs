//! Debian package versions: `[epoch:]upstream[-revision]`, ordered exactly as dpkg orders them.
//!
//! The comparison follows dpkg's `verrevcmp`: strings are compared in alternating runs of
//! non-digits and digits; in a non-digit run `~` sorts before everything (even the end of the
//! string), letters sort before non-letters, and digit runs compare numerically.
//! `tests/version_oracle.rs` checks this against `dpkg --compare-versions`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Why a version string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version '{version}': {reason}")]
pub struct VersionError {
    pub version: String,
    pub reason: &'static str,
}

/// A parsed Debian version. Keeps the text as written (so `0:1.0` stays `0:1.0` in file
/// names and indices) while comparing by value: `1.0`, `0:1.0` and `1.0-0` are equal.
#[derive(Clone)]
pub struct Version {
    text: String,
    epoch: u32,
    /// Byte range of the upstream part inside `text`.
    upstream: (usize, usize),
    /// Byte offset of the revision inside `text` (after the last `-`), if any.
    revision: Option<usize>,
}

impl Version {
    /// Parses a version, refusing what dpkg refuses plus versions that do not start with a
    /// digit (dpkg only warns about those; an archive should not accept them).
    pub fn parse(text: &str) -> Result<Version, VersionError> {
        let err = |reason| VersionError {
            version: text.to_string(),
            reason,
        };
        if text.is_empty() {
            return Err(err("empty version"));
        }
        if text.chars().any(|c| c.is_whitespace()) {
            return Err(err("contains white space"));
        }
        let (epoch, rest_start) = match text.find(':') {
            Some(i) => {
                let digits = &text[..i];
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err("epoch is not a number"));
                }
                let epoch = digits
                    .parse::<u32>()
                    .ok()
                    .filter(|e| *e <= i32::MAX as u32)
                    .ok_or_else(|| err("epoch is too big"))?;
                (epoch, i + 1)
            }
            None => (0, 0),
        };
        let rest = &text[rest_start..];
        let (upstream_end, revision) = match rest.rfind('-') {
            Some(i) => (rest_start + i, Some(rest_start + i + 1)),
            None => (text.len(), None),
        };
        let upstream = &text[rest_start..upstream_end];
        if upstream.is_empty() {
            return Err(err("empty upstream version"));
        }
        if !upstream.as_bytes()[0].is_ascii_digit() {
            return Err(err("upstream version does not start with a digit"));
        }
        let upstream_ok = |b: u8| b.is_ascii_alphanumeric() || b".+~-:".contains(&b);
        if !upstream.bytes().all(upstream_ok) {
            return Err(err("invalid character in upstream version"));
        }
        if upstream.contains(':') {
            return Err(err("colon in upstream version"));
        }
        if let Some(r) = revision {
            let rev = &text[r..];
            if rev.is_empty() {
                return Err(err("empty revision"));
            }
            if !rev
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".+~".contains(&b))
            {
                return Err(err("invalid character in revision"));
            }
        }
        Ok(Version {
            text: text.to_string(),
            epoch,
            upstream: (rest_start, upstream_end),
            revision,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    pub fn upstream(&self) -> &str {
        &self.text[self.upstream.0..self.upstream.1]
    }

    pub fn revision(&self) -> Option<&str> {
        self.revision.map(|r| &self.text[r..])
    }

    /// The version as it appears in file names: without the epoch.
    pub fn without_epoch(&self) -> &str {
        &self.text[self.upstream.0..]
    }
}

/// dpkg's character weight inside a non-digit run; `None` stands for the end of the run.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

/// dpkg's `verrevcmp` on one part (upstream or revision).
fn compare_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let (wa, wb) = (weight(a.get(i).copied()), weight(b.get(j).copied()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            i += 1;
            j += 1;
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| compare_part(self.upstream(), other.upstream()))
            .then_with(|| {
                compare_part(
                    self.revision().unwrap_or(""),
                    other.revision().unwrap_or(""),
                )
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({})", self.text)
    }
}

impl FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn tilde_and_letters_order_like_dpkg() {
        let ordered = [
            "1.0~~", "1.0~~a", "1.0~", "1.0~rc1", "1.0", "1.0-0.1", "1.0-1", "1.0a", "1.0+dfsg",
            "1.0.1", "1.1", "1:0.9",
        ];
        for w in ordered.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn equal_values_with_different_text() {
        assert_eq!(v("1.0"), v("0:1.0"));
        assert_eq!(v("1.0"), v("1.0-0"));
        assert_eq!(v("1.00"), v("1.0"));
        assert_eq!(v("0:1.0").as_str(), "0:1.0");
        assert_eq!(v("2:1.0-3").without_epoch(), "1.0-3");
    }

    #[test]
    fn parts() {
        let x = v("3:1.2-3-4~bpo1");
        assert_eq!(x.epoch(), 3);
        assert_eq!(x.upstream(), "1.2-3");
        assert_eq!(x.revision(), Some("4~bpo1"));
    }

    #[test]
    fn refusals_name_the_reason() {
        for (bad, why) in [
            ("", "empty version"),
            ("a1.0", "upstream version does not start with a digit"),
            ("1.0-", "empty revision"),
            ("x:1.0", "epoch is not a number"),
            ("1.0 1", "contains white space"),
            ("1.0_1", "invalid character in upstream version"),
            ("1.0-1_2", "invalid character in revision"),
            ("1:", "empty upstream version"),
        ] {
            let e = Version::parse(bad).unwrap_err();
            assert_eq!(e.reason, why, "{bad}");
            assert!(e.to_string().contains(&format!("'{bad}'")));
        }
    }
}
