//! FHIR R4 input: minimal typed models of what the rules read, prefetch read into them in the
//! same pass as the request ([`prefetch`], whose [`CdsRequest`] the service uses), the client that fetches
//! missing prefetch from the EHR's FHIR server, and the gathering of every resource a
//! request carries (prefetch, fallback fetches, draft orders) into one [`ResourceSet`].
//! Malformed input is read tolerantly ([`tolerant`]): one-or-many arrays, unreadable
//! elements no decision needs dropped alone, as set out in [`elements`].

pub mod allow;
pub mod client;
pub mod elements;
pub mod head;
pub mod identity;
pub mod model;
pub mod one_or_many;
pub mod prefetch;
pub mod resources;
pub mod terminology;
pub mod tolerant;

pub use model::*;
pub use prefetch::CdsRequest;
pub use resources::{ResourceSet, SkippedResource};
