//! CDS Hooks 2.0.1 protocol: the wire types of discovery, service calls, responses and
//! feedback, the FHIR OperationOutcome used for errors, and the JSON Schemas that guard them.
//!
//! Nothing here knows about leg cramps; it is the contract of `shared/cds-hooks/contract.md`.

pub mod discovery;
pub mod feedback;
pub mod outcome;
pub mod request;
pub mod response;
pub mod schemas;
pub mod template;

pub use discovery::{DiscoveryResponse, ServiceDefinition};
pub use outcome::{IssueCode, OperationOutcome};
pub use request::{CdsRequest, Context, FhirAuthorization, PrefetchRead, RequestError};
pub use response::{Action, ActionType, Card, CdsResponse, Coding, Indicator, Link, Source, Suggestion};
pub use schemas::{SchemaError, SchemaSet};
pub use template::{PrefetchTemplate, TemplateError};
