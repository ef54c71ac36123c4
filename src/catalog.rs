//! The clinical knowledge loaded from the cards directory: the services this host offers
//! (`services.json`, a discovery document) and the rule book (value sets, conventions, rules).
//! Loaded once at start-up and on reload, validated against `schemas/`; a broken file stops
//! the load with `file: JSON pointer: message`.

use crate::protocol::schemas::{Document, SchemaSet};
use crate::protocol::{DiscoveryResponse, ServiceDefinition};
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

#[derive(Debug, Clone)]
pub struct Catalog {
    pub services: Vec<ServiceDefinition>,
    pub rules: crate::rules::RuleBook,
}

impl Catalog {
    pub fn load(dir: &Path, schemas: &SchemaSet) -> Result<Self, LoadErrors> {
        let file = dir.join("services.json");
        let value = read_json(&file).map_err(|e| LoadErrors(vec![e]))?;
        let errors = |v: Vec<crate::protocol::SchemaError>| {
            LoadErrors(
                v.into_iter()
                    .map(|e| LoadError { file: file.clone(), pointer: e.pointer, message: e.message })
                    .collect(),
            )
        };
        schemas.validate(Document::Discovery, &value).map_err(errors)?;
        let discovery: DiscoveryResponse = serde_json::from_value(value).map_err(|e| {
            LoadErrors(vec![LoadError { file: file.clone(), pointer: String::new(), message: e.to_string() }])
        })?;
        let mut problems = Vec::new();
        for (i, service) in discovery.services.iter().enumerate() {
            if let Err(message) = service.check_prefetch_tokens() {
                problems.push(LoadError { file: file.clone(), pointer: format!("/services/{i}/prefetch"), message });
            }
            if discovery.services[..i].iter().any(|s| s.id == service.id) {
                problems.push(LoadError {
                    file: file.clone(),
                    pointer: format!("/services/{i}/id"),
                    message: format!("duplicate service id '{}'", service.id),
                });
            }
        }
        let rules = crate::rules::RuleBook::load(dir, schemas);
        if let Err(e) = &rules {
            problems.extend(e.iter().cloned());
        }
        if !problems.is_empty() {
            return Err(LoadErrors(problems));
        }
        Ok(Self { services: discovery.services, rules: rules.expect("checked") })
    }

    pub fn service(&self, id: &str) -> Option<&ServiceDefinition> {
        self.services.iter().find(|s| s.id == id)
    }
}

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
