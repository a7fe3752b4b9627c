//! Source package descriptions (`.dsc`).

use crate::checksums::Digests;
use crate::control::Paragraph;
use crate::deb::valid_package_name;
use crate::files::{ControlFileError, FileList, Problem, Trust, read_paragraph, required};
use crate::version::Version;
use std::path::{Path, PathBuf};

/// A parsed `.dsc`. The paragraph is kept whole: the Sources index is made from it.
#[derive(Debug, Clone)]
pub struct Dsc {
    pub path: PathBuf,
    pub paragraph: Paragraph,
    pub source: String,
    pub version: Version,
    pub format: String,
    pub binaries: Vec<String>,
    pub architectures: Vec<String>,
    pub files: FileList,
    /// Fingerprint of the key that signed it, when the signature was checked.
    pub signer: Option<String>,
}

impl Dsc {
    /// Reads and parses a `.dsc` (signed or not), without checking the listed files.
    pub fn read(path: &Path, trust: Trust<'_>) -> Result<Dsc, ControlFileError> {
        let data = crate::files::read_control_file(path)?;
        Dsc::parse(&data, path, trust)
    }

    pub fn parse(data: &[u8], path: &Path, trust: Trust<'_>) -> Result<Dsc, ControlFileError> {
        let (paragraph, signer) = read_paragraph(data, path, trust)?;
        let err = |p: Problem| ControlFileError::new(path, p);
        let invalid = |field, reason: String| err(Problem::InvalidField { field, reason });
        let source = required(&paragraph, "Source", path)?.to_string();
        if !valid_package_name(&source) {
            return Err(invalid(
                "Source",
                format!("'{source}' is not a valid package name"),
            ));
        }
        let version = Version::parse(required(&paragraph, "Version", path)?)
            .map_err(|e| invalid("Version", e.to_string()))?;
        let format = required(&paragraph, "Format", path)?.to_string();
        let binaries = required(&paragraph, "Binary", path)?
            .split(',')
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty())
            .collect();
        let architectures = required(&paragraph, "Architecture", path)?
            .split_whitespace()
            .map(str::to_string)
            .collect();
        required(&paragraph, "Files", path)?;
        let files = FileList::from_paragraph(&paragraph, false).map_err(|e| err(e.into()))?;
        if files.entries.is_empty() {
            return Err(invalid("Files", "lists no file".into()));
        }
        Ok(Dsc {
            path: path.to_path_buf(),
            paragraph,
            source,
            version,
            format,
            binaries,
            architectures,
            files,
            signer,
        })
    }

    /// The `.dsc` file name Debian tools give this source: `<source>_<version without epoch>.dsc`.
    pub fn file_name(&self) -> String {
        format!("{}_{}.dsc", self.source, self.version.without_epoch())
    }

    /// Checks every listed file in `dir` (size and checksums); returns their digests.
    pub fn verify_files(&self, dir: &Path) -> Result<Vec<Digests>, ControlFileError> {
        self.files
            .verify_in(dir)
            .map_err(|e| ControlFileError::new(&self.path, e))
    }
}
