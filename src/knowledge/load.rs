//! Reading the cards directory's JSON files, and the one error shape every loader reports:
//! `file: JSON pointer: message`.

use super::valueset::{load_unit_converter, ValueSetFile, ValueSetIndex};
use super::vocabulary::MedicationVocabulary;
use crate::protocol::schemas::{Document, SchemaSet};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One problem in one file of the cards directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    pub pointer: String,
    pub message: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pointer = if self.pointer.is_empty() { "/" } else { &self.pointer };
        write!(f, "{}: {}: {}", self.file.display(), pointer, self.message)
    }
}

/// All load errors, one per line.
#[derive(Debug, Clone)]
pub struct LoadErrors(pub Vec<LoadError>);

impl std::fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

/// Reads and parses one JSON file, mapping I/O and syntax errors to a [`LoadError`].
pub fn read_json(file: &Path) -> Result<Value, LoadError> {
    let text = std::fs::read_to_string(file).map_err(|e| LoadError {
        file: file.to_path_buf(),
        pointer: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    serde_json::from_str(&text).map_err(|e| LoadError {
        file: file.to_path_buf(),
        pointer: String::new(),
        message: format!("not valid JSON: {e}"),
    })
}

/// The value sets of `valuesets/`, indexed with their units (`units.json`) and the medication
/// vocabulary; `None` when they cannot be indexed (the problems are in `errors`).
pub fn load_value_sets(dir: &Path, schemas: &SchemaSet, errors: &mut Vec<LoadError>) -> Option<ValueSetIndex> {
    let err = |file: &Path, pointer: &str, message: String| LoadError {
        file: file.to_path_buf(),
        pointer: pointer.to_string(),
        message,
    };
    let mut vs_files = Vec::new();
    for file in json_files(&dir.join("valuesets"), errors) {
        match read_json(&file) {
            Ok(v) => {
                if let Err(es) = schemas.validate(Document::ValueSet, &v) {
                    errors.extend(es.into_iter().map(|e| err(&file, &e.pointer, e.message)));
                    continue;
                }
                match serde_json::from_value::<ValueSetFile>(v) {
                    Ok(vs) => {
                        if file.file_stem().and_then(|s| s.to_str()) != Some(vs.id.as_str()) {
                            errors.push(err(&file, "/id", format!("id '{}' must equal the file name", vs.id)));
                        }
                        vs_files.push(vs);
                    }
                    Err(e) => errors.push(err(&file, "", e.to_string())),
                }
            }
            Err(e) => errors.push(e),
        }
    }
    let converter = match load_unit_converter(dir, schemas) {
        Ok(c) => c,
        Err(es) => {
            errors.extend(es);
            return None;
        }
    };
    let mut index = match ValueSetIndex::build(vs_files, &converter) {
        Ok(i) => i,
        Err(es) => {
            let vdir = dir.join("valuesets");
            errors.extend(es.into_iter().map(|(id, m)| err(&vdir.join(format!("{id}.json")), "", m)));
            return None;
        }
    };
    // Brand names and route words: medication vocabulary read with the value sets it maps to.
    index.vocabulary = MedicationVocabulary::load(dir, schemas, &index, errors);
    Some(index)
}

/// The `*.json` files of a directory, sorted; an unreadable directory is one error.
pub fn json_files(dir: &Path, errors: &mut Vec<LoadError>) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            files
        }
        Err(e) => {
            errors.push(LoadError {
                file: dir.to_path_buf(),
                pointer: String::new(),
                message: format!("cannot read directory: {e}"),
            });
            Vec::new()
        }
    }
}
