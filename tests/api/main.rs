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
#[macro_use]
mod feedback;
mod fhir_fallback;
mod hostile_auth;
mod hostile_http;
mod hostile_load;
mod hostile_store;
mod hostile_values;
mod replay_replicas;
mod replicas;
mod revision2;
mod rules;
mod samples;
mod service_call;
mod silent;
mod simulate;
mod spec_examples;
mod store_faults;
mod synthetic_records;
mod terminology;
mod tolerant_reading;
mod try_it;
mod units;
