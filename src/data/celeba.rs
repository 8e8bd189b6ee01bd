//! Reader for CelebA's attribute file `list_attr_celeba.txt`.
//!
//! The file's line 1 is the number of images, line 2 the attribute names (40 in CelebA)
//! separated by whitespace, and every further line `<file name> <one value per attribute>`,
//! each value `1` (has the attribute) or `-1` (has not), separated by any whitespace. Blank
//! lines are ignored.

use std::path::Path;

use crate::error::{GlowError, Result};

/// The attributes of every image of an attribute file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// The attribute names, in file order.
    pub names: Vec<String>,
    /// The image file names, in file order.
    pub files: Vec<String>,
    /// `values[i][a]`: whether image `files[i]` has attribute `names[a]`.
    pub values: Vec<Vec<bool>>,
}

impl Attributes {
    /// The column of attribute `name` (exact, case-sensitive), failing with the list of valid
    /// names when there is none.
    pub fn index(&self, name: &str) -> Result<usize> {
        self.names.iter().position(|n| n == name).ok_or_else(|| {
            GlowError::Label(format!(
                "unknown CelebA attribute '{name}'; valid names: {}",
                self.names.join(", ")
            ))
        })
    }

    /// Whether image `file` (e.g. `000001.jpg`) has attribute `name`; fails on an unknown
    /// attribute or file. Fast (binary search) when `files` is sorted, as in CelebA.
    pub fn has(&self, file: &str, name: &str) -> Result<bool> {
        let column = self.index(name)?;
        let row = self.row(file).ok_or_else(|| {
            GlowError::Label(format!(
                "image '{file}' is not in the CelebA attribute list; check the file name"
            ))
        })?;
        Ok(self.values[row][column])
    }

    /// The row of `file`: binary search (right whenever `files` is sorted), else a linear scan.
    fn row(&self, file: &str) -> Option<usize> {
        self.files
            .binary_search_by(|f| f.as_str().cmp(file))
            .ok()
            .or_else(|| self.files.iter().position(|f| f == file))
    }
}

/// Reads a CelebA attribute file (see the module doc for the format).
///
/// Fails, naming the file and line, on a missing or non-numeric count, a missing name line, an
/// image line whose number of values differs from the number of names, a value other than
/// `1` / `-1`, and a count that differs from the number of image lines.
pub fn read_celeba_attributes(path: &Path) -> Result<Attributes> {
    let text = std::fs::read_to_string(path).map_err(|e| GlowError::io(path, e))?;
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .filter(|(_, line)| !line.trim().is_empty());
    let count = parse_count(path, lines.next())?;
    let names = parse_names(path, lines.next())?;
    let (mut files, mut values) = (Vec::new(), Vec::new());
    for (number, line) in lines {
        let (file, row) = parse_image_line(path, number, line, &names)?;
        files.push(file);
        values.push(row);
    }
    if files.len() != count {
        return Err(GlowError::file(
            path,
            format!(
                "the header says {count} images but the file has {} image lines; the file is \
                 truncated or corrupt, re-download it",
                files.len()
            ),
        ));
    }
    Ok(Attributes {
        names,
        files,
        values,
    })
}

/// Parses the image count of the first non-blank line.
fn parse_count(path: &Path, line: Option<(usize, &str)>) -> Result<usize> {
    let (number, line) = line.ok_or_else(|| {
        GlowError::file(path, "the file is empty; expected a CelebA attribute list")
    })?;
    line.trim().parse().map_err(|_| {
        GlowError::file(
            path,
            format!(
                "line {number}: expected the number of images, found '{}'; is this \
                 list_attr_celeba.txt?",
                line.trim()
            ),
        )
    })
}

/// Parses the attribute names of the second non-blank line.
fn parse_names(path: &Path, line: Option<(usize, &str)>) -> Result<Vec<String>> {
    let (_, line) = line.ok_or_else(|| {
        GlowError::file(
            path,
            "missing the attribute names line; the file is truncated, re-download it",
        )
    })?;
    Ok(line.split_whitespace().map(str::to_string).collect())
}

/// Parses one `<file name> <values...>` line, line `number` of the file.
fn parse_image_line(
    path: &Path,
    number: usize,
    line: &str,
    names: &[String],
) -> Result<(String, Vec<bool>)> {
    let mut fields = line.split_whitespace();
    let file = fields.next().unwrap_or_default().to_string();
    let raw: Vec<&str> = fields.collect();
    if raw.len() != names.len() {
        return Err(GlowError::file(
            path,
            format!(
                "line {number} ({file}): {} values, but the header names {} attributes; the file \
                 is corrupt, re-download it",
                raw.len(),
                names.len()
            ),
        ));
    }
    let row = raw
        .iter()
        .zip(names)
        .map(|(value, name)| parse_value(path, number, value, name))
        .collect::<Result<_>>()?;
    Ok((file, row))
}

/// Parses one attribute value: `1` is true, `-1` false.
fn parse_value(path: &Path, number: usize, value: &str, name: &str) -> Result<bool> {
    match value {
        "1" => Ok(true),
        "-1" => Ok(false),
        _ => Err(GlowError::file(
            path,
            format!(
                "line {number}: value '{value}' of attribute {name} is neither 1 nor -1; the \
                 file is corrupt, re-download it"
            ),
        )),
    }
}
