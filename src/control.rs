//! deb822 control paragraphs: the format of `.dsc`, `.changes`, `DEBIAN/control`, `Packages`,
//! `Sources` and `Release`.
//!
//! A [`Paragraph`] keeps its fields in file order with their values exactly as written, so
//! folded and multi-line values (Description, Files, Checksums-*) survive a parse/write round
//! trip. Field names are matched case-insensitively and written as first seen.

use std::fmt::{self, Write as _};

/// A syntax error in a control file, with the 1-based line where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ControlError {
    pub line: usize,
    pub reason: String,
}

/// One field: its name as written and its value. The value holds the text after `Name:` with
/// leading white space removed, and every continuation line after a `\n`, kept verbatim
/// (including its leading white space).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub value: String,
}

impl Field {
    /// The value's lines after the first, without their leading white space; for multi-line
    /// fields such as `Files` these are the entries. A continuation line of a single `.` is an
    /// empty line in deb822 and comes back as `""`.
    pub fn continuation_lines(&self) -> impl Iterator<Item = &str> {
        self.value.split('\n').skip(1).map(|l| {
            let l = l.trim_start();
            if l == "." { "" } else { l }
        })
    }

    /// The first line of the value (the whole value for simple fields).
    pub fn first_line(&self) -> &str {
        self.value.split('\n').next().unwrap_or("")
    }
}

/// An ordered deb822 paragraph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paragraph {
    fields: Vec<Field>,
}

impl Paragraph {
    pub fn new() -> Paragraph {
        Paragraph::default()
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The value of a field, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.field(name).map(|f| f.value.as_str())
    }

    /// Sets a field: replaces the value in place if the field exists, else appends it.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .fields
            .iter_mut()
            .find(|f| f.name.eq_ignore_ascii_case(name))
        {
            Some(f) => f.value = value,
            None => self.fields.push(Field {
                name: name.to_string(),
                value,
            }),
        }
    }

    /// Inserts a field at a position (or replaces it where it is, if it exists).
    pub fn insert(&mut self, index: usize, name: &str, value: impl Into<String>) {
        let value = value.into();
        if let Some(f) = self
            .fields
            .iter_mut()
            .find(|f| f.name.eq_ignore_ascii_case(name))
        {
            f.value = value;
        } else {
            let index = index.min(self.fields.len());
            self.fields.insert(
                index,
                Field {
                    name: name.to_string(),
                    value,
                },
            );
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<Field> {
        let i = self
            .fields
            .iter()
            .position(|f| f.name.eq_ignore_ascii_case(name))?;
        Some(self.fields.remove(i))
    }

    /// Renames a field in place, keeping its position and value.
    pub fn rename(&mut self, from: &str, to: &str) {
        if let Some(f) = self
            .fields
            .iter_mut()
            .find(|f| f.name.eq_ignore_ascii_case(from))
        {
            f.name = to.to_string();
        }
    }

    /// Parses exactly one paragraph; blank lines around it are allowed, a second paragraph is
    /// an error.
    pub fn parse(text: &str) -> Result<Paragraph, ControlError> {
        let mut paragraphs = parse_paragraphs(text)?;
        match paragraphs.len() {
            0 => Err(ControlError {
                line: 1,
                reason: "no control paragraph".into(),
            }),
            1 => Ok(paragraphs.remove(0)),
            _ => Err(ControlError {
                line: paragraphs[0].fields.len() + 2,
                reason: "more than one paragraph where one was expected".into(),
            }),
        }
    }

    /// Appends the paragraph in deb822 form (no trailing blank line).
    pub fn write_to(&self, out: &mut String) {
        for f in &self.fields {
            out.push_str(&f.name);
            out.push(':');
            if !f.value.is_empty() && !f.value.starts_with('\n') {
                out.push(' ');
            }
            out.push_str(&f.value);
            out.push('\n');
        }
    }
}

impl fmt::Display for Paragraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.write_to(&mut s);
        f.write_str(&s)
    }
}

/// Parses a file of paragraphs separated by blank lines. Lines starting with `#` are comments.
pub fn parse_paragraphs(text: &str) -> Result<Vec<Paragraph>, ControlError> {
    let mut out = Vec::new();
    let mut current = Paragraph::new();
    for (n, raw) in text.split('\n').enumerate() {
        let line_no = n + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let Some(last) = current.fields.last_mut() else {
                return Err(ControlError {
                    line: line_no,
                    reason: "continuation line without a field".into(),
                });
            };
            last.value.push('\n');
            last.value.push_str(line.trim_end());
            continue;
        }
        let Some(colon) = line.find(':') else {
            return Err(ControlError {
                line: line_no,
                reason: format!("expected 'Field: value', found '{}'", shorten(line)),
            });
        };
        let name = &line[..colon];
        if name.is_empty() {
            return Err(ControlError {
                line: line_no,
                reason: "empty field name".into(),
            });
        }
        if let Some(bad) = name
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
        {
            return Err(ControlError {
                line: line_no,
                reason: format!(
                    "invalid character {bad:?} in field name '{}'",
                    shorten(name)
                ),
            });
        }
        if current.field(name).is_some() {
            return Err(ControlError {
                line: line_no,
                reason: format!("duplicate field '{name}'"),
            });
        }
        current.fields.push(Field {
            name: name.to_string(),
            value: line[colon + 1..].trim().to_string(),
        });
    }
    if !current.is_empty() {
        out.push(current);
    }
    Ok(out)
}

fn shorten(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == 60 {
            out.push('…');
            break;
        }
        if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DSC: &str = "Format: 3.0 (quilt)\nSource: hello\nBinary: hello, hello-doc\nDescription: short\n long line one\n .\n line three\nFiles:\n 0123 10 hello_1.0.orig.tar.gz\n 4567 20 hello_1.0-1.debian.tar.xz\n";

    #[test]
    fn round_trip_keeps_order_and_multiline_values() {
        let p = Paragraph::parse(DSC).unwrap();
        assert_eq!(p.to_string(), DSC);
        let files = p.field("files").unwrap();
        assert_eq!(files.first_line(), "");
        assert_eq!(
            files.continuation_lines().collect::<Vec<_>>(),
            [
                "0123 10 hello_1.0.orig.tar.gz",
                "4567 20 hello_1.0-1.debian.tar.xz"
            ]
        );
        let d = p.field("Description").unwrap();
        assert_eq!(d.first_line(), "short");
        assert_eq!(
            d.continuation_lines().collect::<Vec<_>>(),
            ["long line one", "", "line three"]
        );
    }

    #[test]
    fn several_paragraphs_and_comments() {
        let ps = parse_paragraphs("# c\nA: 1\n\n\n \nB: 2\nC:  x  \n").unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[1].get("c"), Some("x"));
    }

    #[test]
    fn errors_carry_line_numbers() {
        let e = parse_paragraphs("A: 1\nB 2\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("expected 'Field: value'"), "{e}");
        let e = parse_paragraphs(" x\n").unwrap_err();
        assert_eq!(
            (e.line, e.reason.as_str()),
            (1, "continuation line without a field")
        );
        let e = parse_paragraphs("A: 1\na: 2\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("duplicate"));
        let e = Paragraph::parse("A: 1\n\nB: 2\n").unwrap_err();
        assert!(e.reason.contains("more than one paragraph"));
    }

    #[test]
    fn set_insert_remove_rename() {
        let mut p = Paragraph::parse("Source: x\nVersion: 1\n").unwrap();
        p.rename("Source", "Package");
        p.insert(1, "Binary", "x");
        p.set("version", "2");
        p.set("Directory", "pool/main/x/x");
        assert_eq!(
            p.to_string(),
            "Package: x\nBinary: x\nVersion: 2\nDirectory: pool/main/x/x\n"
        );
        assert_eq!(p.remove("BINARY").unwrap().value, "x");
    }
}
