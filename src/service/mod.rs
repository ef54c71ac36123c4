//! The service: what one CDS Hooks call does, the same for every caller (the HTTP route,
//! `eval`, `check` and the rule-case harness). [`call::run_call`] drives it; the HTTP layer
//! only authenticates, reads and parses the body, and maps [`ServiceError`] to a status.

pub mod call;
pub mod cases;
mod error;
mod evaluate;
mod prefetch;
mod recording;

pub use call::{run_call, CallContext, CallOutcome, Feedback, ServiceCall};
pub use error::{MissingKey, ServiceError};
pub use evaluate::{evaluate, evaluate_with_snoozes, plan_prefetch, Evaluation, PrefetchPlan, WARNINGS_EXTENSION};
