//! The clinical knowledge loaded from the cards directory: the services this host offers
//! (`services.json`, a discovery document) and the rule book (value sets, conventions, rules).
//! Loaded once at start-up and on reload, validated against `schemas/`; a broken file stops
//! the load with `file: JSON pointer: message`.

use crate::protocol::schemas::{Document, SchemaSet};
use crate::protocol::{DiscoveryResponse, ServiceDefinition};
use std::path::Path;

use crate::knowledge::load::read_json;
pub use crate::knowledge::load::{LoadError, LoadErrors};

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
