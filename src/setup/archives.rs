//! Archives: the mirrors a request names, from its origins and from the host's apt sources.

use super::sources::parse_origins;
use super::{Setup, entry};
use crate::config::{Archive, ConfigError};
use std::collections::BTreeSet;

impl Setup<'_> {
    /// Archives: those asked for, those of the origins and those of the host's apt sources,
    /// each once; `update` creates the missing ones.
    pub(super) fn archives_step(&mut self) -> Result<(), ConfigError> {
        let req = &self.req;
        let mut archive_urls: Vec<String> = req.archives.clone();
        if req.archives_from_origins {
            for (o, _) in parse_origins(&req.from_origins)? {
                archive_urls.extend(o.archives.iter().map(|a| a.to_string()));
            }
        }
        if req.archives_from_apt_sources {
            archive_urls.extend(self.env.apt_archives());
        }
        let mut archives = Vec::new();
        for u in &archive_urls {
            archives.push(Archive::new(u)?);
        }
        let mut seen = BTreeSet::new();
        archives.retain(|a| seen.insert(a.url.clone()));
        let mut new_archives = Vec::new();
        for a in archives {
            let url = &a.url.clone();
            match self.state.get::<Archive>(&Archive::key(url))? {
                Some(existing) => {
                    let mut e = entry("archive", url, "exists");
                    if existing.ping_ms >= 0.0 {
                        e.message = format!("ping {:.0} ms", existing.ping_ms);
                    }
                    self.report.push(e);
                }
                None => {
                    let mut e = entry("archive", url, "missing");
                    if self.req.update {
                        new_archives.push((Archive::key(url), a));
                        e.status = "exists".to_string();
                        e.actions.push("created".to_string());
                    }
                    self.report.push(e);
                }
            }
        }
        self.state.put_all::<Archive, _>(&new_archives)?;
        Ok(())
    }
}

/// The mirrors named in apt's sources (one-line and deb822 formats), each ending in one `/`.
pub fn apt_archives(etc_apt: &std::path::Path) -> Vec<String> {
    let mut files = vec![etc_apt.join("sources.list")];
    if let Ok(dir) = std::fs::read_dir(etc_apt.join("sources.list.d")) {
        let mut more: Vec<_> = dir.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    let mut out: Vec<String> = Vec::new();
    let mut add = |u: &str| {
        if u.starts_with("http://") || u.starts_with("https://") {
            let url = format!("{}/", u.trim_end_matches('/'));
            if !out.contains(&url) {
                out.push(url);
            }
        }
    };
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let deb822 = f.extension().is_some_and(|e| e == "sources");
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') {
                continue;
            }
            if deb822 {
                if let Some(v) = line.strip_prefix("URIs:") {
                    v.split_whitespace().for_each(&mut add);
                }
            } else if let Some(rest) = line.strip_prefix("deb ") {
                let rest = rest.trim_start();
                let rest = match rest.strip_prefix('[') {
                    Some(r) => r.split_once(']').map_or("", |(_, r)| r),
                    None => rest,
                };
                if let Some(u) = rest.split_whitespace().next() {
                    add(u);
                }
            }
        }
    }
    out
}
