//! leg-cramp-cds: a CDS Hooks 2.0.1 service that finds the known causes of a patient's leg
//! cramps in their FHIR R4 record and answers with advisory cards.
//!
//! Data flows one way: [`protocol`] (wire types, schemas) → [`service`] (one function for every
//! caller) → response, with the clinical knowledge loaded by [`catalog`] from the cards
//! directory and served by [`http`] and the offline [`commands`].

pub mod auth;
pub mod cards;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod facts;
pub mod fhir;
pub mod http;
pub mod knowledge;
pub mod metrics;
pub mod protocol;
pub mod report;
pub mod rules;
pub mod samples;
pub mod serve;
pub mod service;
pub mod store;
pub mod telemetry;

/// rustls is built with `ring` only (no aws-lc C build); it must be installed as the process
/// default before any TLS client or server is built. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
