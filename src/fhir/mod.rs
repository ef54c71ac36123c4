//! FHIR R4 input: minimal typed models of what the rules read, the client that fetches
//! missing prefetch from the EHR's FHIR server, and the gathering of every resource a
//! request carries (prefetch, fallback fetches, draft orders) into one [`ResourceSet`].

pub mod client;
pub mod model;
pub mod resources;
pub mod terminology;

pub use model::*;
pub use resources::{ResourceSet, SkippedResource};
