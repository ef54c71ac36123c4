//! Black-box API tests: each starts the real `leg-cramp-cds` binary on a random loopback
//! port and talks HTTP to it, as an EHR would. One test binary, one module per endpoint.

// Not every test module uses every helper.
#[allow(dead_code)]
mod helpers;

mod auth;
mod browser;
mod cors;
mod discovery;
mod errors;
mod eval_command;
mod facts;
mod feedback;
mod fhir_fallback;
mod hostile_load;
mod revision2;
mod rules;
mod samples;
mod service_call;
mod spec_examples;
mod store_faults;
mod synthetic_records;
mod terminology;
mod tolerant_reading;
mod try_it;
mod units;
