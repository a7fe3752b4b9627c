//! The layer rule (docs/ARCHITECTURE.md): every top-level module of `src/` names only modules
//! below it in [`LAYERS`]. Reads the `crate::<module>` paths of every source file.

use std::collections::BTreeSet;
use std::path::Path;

/// From the bottom up: the Debian formats, the status model, the engine, users, then the
/// application's domains, the setup, the API, the daemon.
const LAYERS: &[&str] = &[
    "version",
    "checksums",
    "control",
    "openpgp",
    "deb",
    "files",
    "dsc",
    "changes",
    "changelog",
    "status",
    "state",
    "repo",
    "users",
    "incoming",
    "webhook",
    "config",
    "remote",
    "port",
    "build",
    "mail",
    "keyring_package",
    "test_packages",
    "settings",
    "setup",
    "crontab",
    "api",
    "daemon",
];

/// The top-level module a file of `src/` belongs to (`None` for the crate root and `main`).
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// The modules a source text names as `crate::<module>`.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        if i > 0
            && (text.as_bytes()[i - 1].is_ascii_alphanumeric() || text.as_bytes()[i - 1] == b'_')
        {
            continue; // `mbd_crate::`, not ours
        }
        let rest = &text[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_module_imports_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut violations = Vec::new();
    let mut seen = BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let Some(m) = module_of(rel) else { continue };
        seen.insert(m.clone());
        let own =
            rank(&m).unwrap_or_else(|| panic!("{m} (src/{}) is not in LAYERS", rel.display()));
        let text = std::fs::read_to_string(f).unwrap();
        for used in named_modules(&text) {
            if used == m {
                continue;
            }
            match rank(&used) {
                Some(r) if r < own => {}
                Some(_) => violations.push(format!(
                    "src/{}: {m} uses {used}, a higher layer",
                    rel.display()
                )),
                None => violations.push(format!(
                    "src/{}: crate::{used} is no module in LAYERS",
                    rel.display()
                )),
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layer rule broken:\n{}",
        violations.join("\n")
    );
    // Every layer exists: a renamed module must be renamed here too.
    for l in LAYERS {
        assert!(seen.contains(*l), "{l} is in LAYERS but not in src/");
    }
}

#[test]
fn the_rule_sees_upward_imports() {
    let found = named_modules(
        "use crate::repo::Engine;\nlet x = crate::api::auth::User;\nmy_crate::daemon",
    );
    assert_eq!(
        found,
        BTreeSet::from(["repo".to_string(), "api".to_string()])
    );
}
