//! `Release` files: the top one of a distribution (which apt verifies and trusts for every
//! index hash) and the small per-component ones.

use crate::checksums::Digests;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What a top-level Release says about its distribution.
#[derive(Debug, Clone)]
pub struct ReleaseInfo {
    pub origin: String,
    pub label: String,
    pub suite: String,
    pub codename: String,
    /// Seconds since the epoch.
    pub date: i64,
    pub valid_until: Option<i64>,
    pub architectures: Vec<String>,
    pub components: Vec<String>,
    pub description: String,
    pub not_automatic: bool,
    pub but_automatic_upgrades: bool,
}

/// An index file listed in a Release, by path relative to the distribution directory.
#[derive(Debug, Clone)]
pub struct Listed {
    pub path: String,
    pub digests: Digests,
}

/// Picks one digest out of a [`Digests`].
type DigestField = fn(&Digests) -> &str;

/// Renders a top-level Release. Files are listed in the order given, under every hash.
pub fn render(info: &ReleaseInfo, files: &[Listed]) -> String {
    let mut s = String::new();
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(s, "{name}: {value}");
    };
    field("Origin", &info.origin);
    field("Label", &info.label);
    field("Suite", &info.suite);
    field("Codename", &info.codename);
    field("Date", &rfc2822(info.date));
    if let Some(v) = info.valid_until {
        field("Valid-Until", &rfc2822(v));
    }
    field("Architectures", &info.architectures.join(" "));
    field("Components", &info.components.join(" "));
    field("Description", &info.description);
    if info.not_automatic {
        field("NotAutomatic", "yes");
    }
    if info.but_automatic_upgrades {
        field("ButAutomaticUpgrades", "yes");
    }
    field("Acquire-By-Hash", "yes");
    let hashes: [(&str, DigestField); 4] = [
        ("MD5Sum", |d| &d.md5),
        ("SHA1", |d| &d.sha1),
        ("SHA256", |d| &d.sha256),
        ("SHA512", |d| &d.sha512),
    ];
    for (name, pick) in hashes {
        let _ = writeln!(s, "{name}:");
        for f in files {
            let _ = writeln!(s, " {} {:>16} {}", pick(&f.digests), f.digests.size, f.path);
        }
    }
    s
}

/// Every file a top-level Release lists, as its lines say: the digests the four lists give
/// (empty where a list leaves the file out) with the size of its last line, and whether all
/// four lists name it, with one size.
pub fn entries(text: &str) -> BTreeMap<String, (Digests, bool)> {
    // Per file: its digests, and a bit per list that names it (0x80: sizes disagree).
    let mut found: BTreeMap<String, (Digests, u8)> = BTreeMap::new();
    let mut section = None;
    for line in text.lines() {
        if !line.starts_with(' ') {
            section = match line {
                "MD5Sum:" => Some(0),
                "SHA1:" => Some(1),
                "SHA256:" => Some(2),
                "SHA512:" => Some(3),
                _ => None,
            };
            continue;
        }
        let Some(s) = section else { continue };
        let [digest, size, path] = line.split_whitespace().collect::<Vec<_>>()[..] else {
            continue;
        };
        let Ok(size) = size.parse::<u64>() else {
            continue;
        };
        let (d, seen) = found.entry(path.to_string()).or_insert_with(|| {
            let d = Digests {
                size,
                md5: String::new(),
                sha1: String::new(),
                sha256: String::new(),
                sha512: String::new(),
            };
            (d, 0)
        });
        if d.size != size {
            *seen |= 0x80;
            d.size = size;
        }
        *seen |= 1 << s;
        let field = match s {
            0 => &mut d.md5,
            1 => &mut d.sha1,
            2 => &mut d.sha256,
            _ => &mut d.sha512,
        };
        *field = digest.to_string();
    }
    found
        .into_iter()
        .map(|(path, (d, seen))| (path, (d, seen == 0b1111)))
        .collect()
}

/// The files a top-level Release lists (as [`render`] writes them), by path: each with its
/// size and its four digests. A file missing from one of the four lists, or listed with two
/// sizes, is left out.
pub fn listed(text: &str) -> BTreeMap<String, Digests> {
    entries(text)
        .into_iter()
        .filter_map(|(path, (d, whole))| whole.then_some((path, d)))
        .collect()
}

/// The per-component Release in `<component>/binary-<arch>/` or `<component>/source/`.
pub fn render_component(info: &ReleaseInfo, component: &str, architecture: &str) -> String {
    let mut s = format!(
        "Archive: {}\nOrigin: {}\nLabel: {}\nComponent: {component}\nArchitecture: {architecture}\n",
        info.suite, info.origin, info.label
    );
    if info.not_automatic {
        s.push_str("NotAutomatic: yes\n");
    }
    if info.but_automatic_upgrades {
        s.push_str("ButAutomaticUpgrades: yes\n");
    }
    let _ = writeln!(s, "Description: {}", info.description);
    s
}

/// The civil date (year, month, day; UTC) of a day counted from 1970-01-01, by Howard
/// Hinnant's days-to-civil algorithm.
pub fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `YYYY-MM-DD` (UTC) of a time in seconds since the epoch.
pub fn civil_date(unix: i64) -> String {
    let (y, m, d) = civil(unix.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `Sun, 23 Nov 2025 00:00:00 UTC`, the date form apt expects in Release files.
pub fn rfc2822(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} UTC",
        WEEKDAYS[days.rem_euclid(7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(1_795_910_400), "2026-11-29");
        assert_eq!(civil_date(951_782_400), "2000-02-29");
    }

    fn info() -> ReleaseInfo {
        ReleaseInfo {
            origin: "o".into(),
            label: "l".into(),
            suite: "s".into(),
            codename: "s".into(),
            date: 0,
            valid_until: None,
            architectures: vec!["amd64".into()],
            components: vec!["main".into()],
            description: "d".into(),
            not_automatic: false,
            but_automatic_upgrades: false,
        }
    }

    #[test]
    fn dates() {
        assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 UTC");
        assert_eq!(rfc2822(1_763_856_000), "Sun, 23 Nov 2025 00:00:00 UTC");
        assert_eq!(rfc2822(951_782_400), "Tue, 29 Feb 2000 00:00:00 UTC");
        assert_eq!(rfc2822(1_795_469_726), "Mon, 23 Nov 2026 21:35:26 UTC");
    }

    #[test]
    fn release_lists_every_file_under_every_hash() {
        let info = ReleaseInfo {
            not_automatic: true,
            ..info()
        };
        let files = vec![Listed {
            path: "main/binary-amd64/Packages".into(),
            digests: Digests::of(b""),
        }];
        let r = render(&info, &files);
        assert!(r.contains("NotAutomatic: yes\n"));
        assert!(!r.contains("ButAutomaticUpgrades"));
        assert_eq!(r.matches("main/binary-amd64/Packages").count(), 4);
        assert!(r.contains(" e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855                0 main/binary-amd64/Packages\n"));
        assert!(
            !r.lines().any(|l| l.ends_with(' ')),
            "no trailing white space in Release"
        );
    }

    #[test]
    fn listed_files_are_read_back_from_a_release() {
        let info = info();
        let files: Vec<Listed> = ["main/binary-amd64/Packages", "main/Contents-amd64.gz"]
            .iter()
            .zip([&b""[..], b"some text\n"])
            .map(|(path, data)| Listed {
                path: path.to_string(),
                digests: Digests::of(data),
            })
            .collect();
        let text = render(&info, &files);
        let back = listed(&text);
        assert_eq!(back.len(), 2);
        for f in &files {
            assert_eq!(back[&f.path], f.digests, "{}", f.path);
        }
        // A file some list leaves out, or with two sizes, is not taken.
        let partial = text.replacen(" 0 main/binary-amd64/Packages\n", " 0 other\n", 1);
        assert!(!listed(&partial).contains_key("main/binary-amd64/Packages"));
        let resized = text.replacen("10 main/Contents-amd64.gz", "11 main/Contents-amd64.gz", 1);
        assert!(!listed(&resized).contains_key("main/Contents-amd64.gz"));
        assert!(listed(&resized).contains_key("main/binary-amd64/Packages"));
    }
}
