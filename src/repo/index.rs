//! Index paragraphs: a `Packages` stanza for each binary package and a `Sources` stanza for each
//! source package, rendered once when the package enters the store and reused by every
//! publish; and `Contents` lines.

use crate::checksums::Digests;
use crate::control::Paragraph;
use crate::deb::BinaryPackage;
use crate::dsc::Dsc;

/// The `Packages` stanza of a binary package stored at `filename` (a pool path).
pub fn packages_stanza(pkg: &BinaryPackage, filename: &str) -> String {
    let mut p = pkg.control.clone();
    // What the archive computes replaces anything the package claims.
    for f in ["Filename", "Size", "MD5sum", "SHA1", "SHA256", "SHA512"] {
        p.remove(f);
    }
    let d = &pkg.digests;
    p.set("Filename", filename);
    p.set("Size", d.size.to_string());
    p.set("MD5sum", d.md5.clone());
    p.set("SHA1", d.sha1.clone());
    p.set("SHA256", d.sha256.clone());
    p.set("SHA512", d.sha512.clone());
    p.to_string()
}

/// One file of a source package as the Sources index lists it.
#[derive(Debug, Clone)]
pub struct SourceFile<'a> {
    pub name: &'a str,
    pub digests: &'a Digests,
}

/// The `Sources` stanza: the `.dsc` paragraph with `Source` renamed `Package` (first), the
/// `.dsc` itself added to the file lists, and `Directory`, `Priority`, `Section`.
pub fn sources_stanza(
    dsc: &Dsc,
    files: &[SourceFile<'_>],
    directory: &str,
    section: &str,
    priority: &str,
) -> String {
    let mut p = Paragraph::new();
    p.set("Package", dsc.source.clone());
    for f in dsc.paragraph.fields() {
        let skip = [
            "Source",
            "Files",
            "Checksums-Sha1",
            "Checksums-Sha256",
            "Checksums-Sha512",
            "Directory",
            "Priority",
            "Section",
            "Hash",
        ];
        if skip.iter().any(|s| s.eq_ignore_ascii_case(&f.name)) {
            continue;
        }
        p.set(&f.name, f.value.clone());
    }
    let list = |pick: fn(&Digests) -> &str| {
        let mut s = String::new();
        for f in files {
            s.push_str(&format!(
                "\n {} {} {}",
                pick(f.digests),
                f.digests.size,
                f.name
            ));
        }
        s
    };
    p.set("Files", list(|d| &d.md5));
    p.set("Checksums-Sha1", list(|d| &d.sha1));
    p.set("Checksums-Sha256", list(|d| &d.sha256));
    p.set("Checksums-Sha512", list(|d| &d.sha512));
    p.set("Directory", directory);
    p.set("Priority", priority);
    p.set("Section", section);
    p.to_string()
}

/// The component a section belongs to: `contrib/net` is in contrib, `net` in main.
pub fn component_of_section(section: &str) -> &str {
    match section.split_once('/') {
        Some((component, _)) => component,
        None => "main",
    }
}

/// Renders a Contents file from (path, owner) pairs, where an owner is `section/package`: one
/// line per path, owners joined by commas, sorted by path. Calls `line` with each line's path
/// and text (newline included).
pub fn contents<'a>(mut entries: Vec<(&'a str, &'a str)>, mut line: impl FnMut(&str, &str)) {
    entries.sort_unstable();
    entries.dedup();
    let mut text = String::new();
    let mut i = 0;
    while i < entries.len() {
        let path = entries[i].0;
        text.clear();
        text.push_str(path);
        for _ in path.chars().count()..59 {
            text.push(' ');
        }
        text.push(' ');
        text.push_str(entries[i].1);
        let mut j = i + 1;
        while j < entries.len() && entries[j].0 == path {
            text.push(',');
            text.push_str(entries[j].1);
            j += 1;
        }
        text.push('\n');
        line(path, &text);
        i = j;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_and_components() {
        assert_eq!(component_of_section("contrib/net"), "contrib");
        assert_eq!(component_of_section("net"), "main");
    }

    #[test]
    fn contents_merges_owners() {
        let mut lines = Vec::new();
        contents(
            vec![
                ("usr/bin/b", "misc/y"),
                ("usr/bin/a", "misc/x"),
                ("usr/bin/b", "misc/x"),
            ],
            |path, line| {
                lines.push((
                    path.to_string(),
                    line.split_whitespace().collect::<Vec<_>>().join(" "),
                ))
            },
        );
        assert_eq!(
            lines,
            [
                ("usr/bin/a".to_string(), "usr/bin/a misc/x".to_string()),
                (
                    "usr/bin/b".to_string(),
                    "usr/bin/b misc/x,misc/y".to_string()
                )
            ]
        );
    }
}
