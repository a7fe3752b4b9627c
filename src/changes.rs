//! Upload descriptions (`.changes`).

use crate::checksums::Digests;
use crate::control::Paragraph;
use crate::deb::parse_source_field;
use crate::files::{
    ControlFileError, FileEntry, FileList, Problem, Trust, read_paragraph, required,
};
use crate::version::Version;
use std::path::{Path, PathBuf};

/// A parsed `.changes`.
#[derive(Debug, Clone)]
pub struct Changes {
    pub path: PathBuf,
    pub paragraph: Paragraph,
    pub source: String,
    pub version: Version,
    /// The `Distribution` field's words (usually one).
    pub distributions: Vec<String>,
    /// The `Architecture` field's words, `source` included for source uploads.
    pub architectures: Vec<String>,
    pub files: FileList,
    /// Fingerprint of the key that signed it, when the signature was checked.
    pub signer: Option<String>,
}

impl Changes {
    /// Reads and parses a `.changes`, without checking the listed files.
    pub fn read(path: &Path, trust: Trust<'_>) -> Result<Changes, ControlFileError> {
        let data = crate::files::read_control_file(path)?;
        Changes::parse(&data, path, trust)
    }

    pub fn parse(data: &[u8], path: &Path, trust: Trust<'_>) -> Result<Changes, ControlFileError> {
        let (paragraph, signer) = read_paragraph(data, path, trust)?;
        let err = |p: Problem| ControlFileError::new(path, p);
        let invalid = |field, reason: String| err(Problem::InvalidField { field, reason });
        for field in ["Format", "Date", "Maintainer", "Changes"] {
            required(&paragraph, field, path)?;
        }
        let source_field = required(&paragraph, "Source", path)?;
        let (source, _) = parse_source_field(source_field).ok_or_else(|| {
            invalid(
                "Source",
                format!("'{source_field}' is not a valid source name"),
            )
        })?;
        let source = source.to_string();
        let version = Version::parse(required(&paragraph, "Version", path)?)
            .map_err(|e| invalid("Version", e.to_string()))?;
        let distributions = words(required(&paragraph, "Distribution", path)?);
        let architectures = words(required(&paragraph, "Architecture", path)?);
        required(&paragraph, "Files", path)?;
        let files = FileList::from_paragraph(&paragraph, true).map_err(|e| err(e.into()))?;
        if files.entries.is_empty() {
            return Err(invalid("Files", "lists no file".into()));
        }
        Ok(Changes {
            path: path.to_path_buf(),
            paragraph,
            source,
            version,
            distributions,
            architectures,
            files,
            signer,
        })
    }

    pub fn has_source(&self) -> bool {
        self.architectures.iter().any(|a| a == "source")
    }

    /// The listed `.dsc`, if this upload carries source.
    pub fn dsc(&self) -> Option<&FileEntry> {
        self.files.entries.iter().find(|e| e.name.ends_with(".dsc"))
    }

    /// The listed binary packages (`.deb` and `.udeb`).
    pub fn binaries(&self) -> impl Iterator<Item = &FileEntry> {
        self.files
            .entries
            .iter()
            .filter(|e| e.name.ends_with(".deb") || e.name.ends_with(".udeb"))
    }

    /// The directory the listed files are expected in: the one holding the `.changes`.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Checks every listed file next to the `.changes`; returns their digests.
    pub fn verify_files(&self) -> Result<Vec<Digests>, ControlFileError> {
        self.files
            .verify_in(self.dir())
            .map_err(|e| ControlFileError::new(&self.path, e))
    }

    /// The `Changes` field (the changelog entries of this upload).
    pub fn changes_text(&self) -> &str {
        self.paragraph.get("Changes").unwrap_or("")
    }
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}
