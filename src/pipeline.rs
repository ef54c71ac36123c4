//! The one-way flow of a service call: request → patient facts → findings → cards → response.

use crate::protocol::{CdsRequest, CdsResponse, ServiceDefinition};

/// Evaluates a checked request for one service.
pub fn evaluate(_request: &CdsRequest, _service: &ServiceDefinition) -> CdsResponse {
    CdsResponse::default()
}
