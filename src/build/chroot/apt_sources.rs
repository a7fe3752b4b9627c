//! The host's own archives, as its apt sources name them: mini-buildd's
//! `--archives-from-apt-sources`.

use std::path::{Path, PathBuf};

/// The host's archive for `codename`, as its apt sources name it (deb822 `.sources` files or
/// `sources.list` lines); mini-buildd's `--archives-from-apt-sources`.
pub fn mirror_from_apt_sources(etc_apt: &Path, codename: &str) -> Option<String> {
    let mut texts: Vec<(bool, String)> = Vec::new();
    if let Ok(t) = std::fs::read_to_string(etc_apt.join("sources.list")) {
        texts.push((false, t));
    }
    if let Ok(dir) = std::fs::read_dir(etc_apt.join("sources.list.d")) {
        let mut files: Vec<PathBuf> = dir.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let name = f.to_string_lossy().into_owned();
            if let Ok(t) = std::fs::read_to_string(&f) {
                if name.ends_with(".sources") {
                    texts.push((true, t));
                } else if name.ends_with(".list") {
                    texts.push((false, t));
                }
            }
        }
    }
    texts.iter().find_map(|(deb822, text)| {
        if *deb822 {
            mirror_in_deb822(text, codename)
        } else {
            mirror_in_one_line(text, codename)
        }
    })
}

fn mirror_in_deb822(text: &str, codename: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let enabled = field("Enabled").is_none_or(|v| v != "no");
        let types = field("Types").unwrap_or_default();
        let suites = field("Suites").unwrap_or_default();
        if enabled
            && types.split_whitespace().any(|t| t == "deb")
            && suites.split_whitespace().any(|s| s == codename)
        {
            if let Some(uri) =
                field("URIs").and_then(|u| u.split_whitespace().next().map(String::from))
            {
                return Some(uri);
            }
        }
    }
    None
}

fn mirror_in_one_line(text: &str, codename: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next()?.trim();
        let mut words = line.split_whitespace();
        if words.next()? != "deb" {
            return None;
        }
        let mut uri = words.next()?;
        if uri.starts_with('[') {
            // Options: skip to the word after the closing bracket.
            while !uri.ends_with(']') {
                uri = words.next()?;
            }
            uri = words.next()?;
        }
        (words.next()? == codename).then(|| uri.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_comes_from_the_hosts_apt_sources() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path();
        std::fs::create_dir_all(etc.join("sources.list.d")).unwrap();
        std::fs::write(
            etc.join("sources.list.d/debian.sources"),
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
             Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n",
        )
        .unwrap();
        assert_eq!(
            mirror_from_apt_sources(etc, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(mirror_from_apt_sources(etc, "trixie"), None);
        std::fs::write(
            etc.join("sources.list"),
            "# comment\ndeb-src http://src.example/debian trixie main\ndeb [arch=amd64 signed-by=/k.gpg] http://one.example/debian trixie main\n",
        )
        .unwrap();
        assert_eq!(
            mirror_from_apt_sources(etc, "trixie").as_deref(),
            Some("http://one.example/debian")
        );
    }
}
