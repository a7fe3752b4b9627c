//! Index paragraphs: a `Packages` stanza for each binary package and a `Sources` stanza for each
//! source package, rendered once when the package enters the store and reused by every
//! publish; and `Contents` lines.

use crate::checksums::Digests;
use crate::control::Paragraph;
use crate::deb::BinaryPackage;
use crate::dsc::Dsc;
use std::collections::BTreeSet;

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

/// Whether the `Contents` line of `path` owned by `owner` reads back as written: the owners
/// column is what follows the line's last space, the path what precedes its padding.
pub fn contents_readable(path: &str, owner: &str) -> bool {
    !path.ends_with(' ') && !owner.is_empty() && !owner.contains([' ', ',', '\n'])
}

/// One `Contents` line: the path, padded to 60 columns, then the owners joined by commas.
fn contents_line(text: &mut String, path: &str, owners: &[&str]) {
    text.clear();
    text.push_str(path);
    for _ in path.chars().count()..59 {
        text.push(' ');
    }
    text.push(' ');
    for (i, o) in owners.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(o);
    }
    text.push('\n');
}

/// Edits a `Contents` text: takes the `removed` owners (`section/package`) out of every line,
/// adds the (path, owner) pairs of `added`, and drops lines left without an owner. Lines are
/// sorted by path, the owners of a line sorted and unique, so an empty `old` makes the text
/// of `added` alone. Calls `line` with each line's path, its text (newline included), and
/// whether it is a line of `old` passed on untouched. `None` if `old` is not such a text.
pub fn edit_contents<'a>(
    old: &'a str,
    removed: &BTreeSet<&str>,
    mut added: Vec<(&'a str, &'a str)>,
    mut line: impl FnMut(&str, &str, bool),
) -> Option<()> {
    added.sort_unstable();
    added.dedup();
    let mut text = String::new();
    let mut owners: Vec<&str> = Vec::new();
    let mut next = 0;
    // Emits the added paths that sort before `limit` (all of them without one).
    let mut new_lines =
        |next: &mut usize, limit: Option<&str>, line: &mut dyn FnMut(&str, &str, bool)| {
            while *next < added.len() && limit.is_none_or(|l| added[*next].0 < l) {
                let path = added[*next].0;
                let mut owners = Vec::new();
                while *next < added.len() && added[*next].0 == path {
                    owners.push(added[*next].1);
                    *next += 1;
                }
                contents_line(&mut text, path, &owners);
                line(path, &text, false);
            }
        };
    for old_line in old.split_inclusive('\n') {
        let body = old_line.strip_suffix('\n')?;
        let (left, column) = body.rsplit_once(' ')?;
        let path = left.trim_end_matches(' ');
        new_lines(&mut next, Some(path), &mut line);
        let adds = next < added.len() && added[next].0 == path;
        let drops = !removed.is_empty() && column.split(',').any(|o| removed.contains(o));
        if !adds && !drops {
            line(path, old_line, true);
            continue;
        }
        owners.clear();
        owners.extend(column.split(',').filter(|o| !removed.contains(o)));
        while next < added.len() && added[next].0 == path {
            owners.push(added[next].1);
            next += 1;
        }
        owners.sort_unstable();
        owners.dedup();
        if !owners.is_empty() {
            let mut text = String::new();
            contents_line(&mut text, path, &owners);
            line(path, &text, false);
        }
    }
    new_lines(&mut next, None, &mut line);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_and_components() {
        assert_eq!(component_of_section("contrib/net"), "contrib");
        assert_eq!(component_of_section("net"), "main");
    }

    fn edit(old: &str, removed: &[&str], added: &[(&str, &str)]) -> String {
        let removed = removed.iter().copied().collect();
        let mut out = String::new();
        edit_contents(old, &removed, added.to_vec(), |_, line, _| {
            out.push_str(line)
        })
        .unwrap();
        out
    }

    #[test]
    fn contents_merges_owners() {
        let text = edit(
            "",
            &[],
            &[
                ("usr/bin/b", "misc/y"),
                ("usr/bin/a", "misc/x"),
                ("usr/bin/b", "misc/x"),
                ("usr/bin/b", "misc/x"),
            ],
        );
        let lines: Vec<String> = text
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(lines, ["usr/bin/a misc/x", "usr/bin/b misc/x,misc/y"]);
        assert_eq!(text.lines().next().unwrap().len(), 60 + "misc/x".len());
    }

    #[test]
    fn contents_edits_give_the_text_of_the_new_set() {
        let long = "usr/share/doc/a-package-with-a-rather-long-name/changelog.Debian.gz";
        let all = [
            ("usr/bin/a", "misc/x"),
            ("usr/bin/b", "misc/x"),
            ("usr/bin/b", "net/y"),
            (long, "net/y"),
            ("usr/lib/z", "misc/z"),
        ];
        let before = edit("", &[], &all);
        // Take y out and put a new z in: same as rendering the rest from nothing.
        let after = edit(
            &before,
            &["net/y", "misc/z"],
            &[("usr/bin/c", "misc/z"), ("usr/bin/b", "misc/z")],
        );
        let expected = edit(
            "",
            &[],
            &[
                ("usr/bin/a", "misc/x"),
                ("usr/bin/b", "misc/x"),
                ("usr/bin/c", "misc/z"),
                ("usr/bin/b", "misc/z"),
            ],
        );
        assert_eq!(after, expected);
        assert_eq!(edit(&before, &[], &[]), before);
        assert!(edit_contents("nospace\n", &BTreeSet::new(), vec![], |_, _, _| ()).is_none());
        assert!(contents_readable(long, "net/y"));
        assert!(!contents_readable("trailing ", "net/y"));
        assert!(!contents_readable("p", "odd section/y"));
    }
}
