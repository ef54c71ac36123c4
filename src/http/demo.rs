//! The demo page (`GET /`): static HTML/CSS/JS embedded in the binary, and the sample
//! requests of the samples directory (`GET /samples`, `GET /samples/{name}`). No external
//! resources: a strict Content-Security-Policy keeps it that way.

use super::error::ApiError;
use super::AppState;
use crate::protocol::OperationOutcome;
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

const INDEX: &str = include_str!("../../static/index.html");
const APP_JS: &str = include_str!("../../static/app.js");
const APP_CSS: &str = include_str!("../../static/app.css");
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn page(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Content-Security-Policy", CSP))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Cache-Control", "no-cache"))
        .body(body)
}

#[utoipa::path(get, path = "/", tag = "Demo", summary = "The demo page (--demo only)",
    responses((status = 200, description = "HTML", content_type = "text/html", body = String)))]
pub async fn index() -> HttpResponse {
    page("text/html; charset=utf-8", INDEX)
}

#[utoipa::path(get, path = "/static/app.js", tag = "Demo", summary = "The demo page's script (--demo only)",
    responses((status = 200, description = "JavaScript", content_type = "text/javascript", body = String)))]
pub async fn app_js() -> HttpResponse {
    page("text/javascript; charset=utf-8", APP_JS)
}

#[utoipa::path(get, path = "/static/app.css", tag = "Demo", summary = "The demo page's style sheet (--demo only)",
    responses((status = 200, description = "CSS", content_type = "text/css", body = String)))]
pub async fn app_css() -> HttpResponse {
    page("text/css; charset=utf-8", APP_CSS)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 80
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `{"samples": [{"name", "title", "hook"}]}` for every `<name>.json` (not `.expected.json`).
#[utoipa::path(get, path = "/samples", tag = "Demo", summary = "The sample requests (--demo only)",
    responses((status = 200, description = "Name, title and hook of each sample", body = Object)))]
pub async fn list_samples(state: web::Data<AppState>) -> HttpResponse {
    let mut samples = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&state.samples_dir) {
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().to_string();
            let Some(name) = file.strip_suffix(".json") else { continue };
            if name.ends_with(".expected") || !valid_name(name) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
            let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
            let title = v["extension"][crate::samples::SAMPLE_EXTENSION]["title"].as_str().unwrap_or(name).to_string();
            samples.push(json!({"name": name, "title": title, "hook": v["hook"]}));
        }
    }
    samples.sort_by(|a, b| a["title"].as_str().cmp(&b["title"].as_str()));
    HttpResponse::Ok().json(json!({ "samples": samples }))
}

#[utoipa::path(get, path = "/samples/{name}", tag = "Demo", summary = "One sample request (--demo only)",
    params(("name" = String, Path, description = "Sample name, with or without .json")),
    responses((status = 200, description = "The sample, a CDS Hooks request", body = Object),
              (status = 404, description = "No such sample", body = OperationOutcome)))]
pub async fn get_sample(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let name = name.strip_suffix(".json").unwrap_or(&name).to_string();
    if !valid_name(&name) {
        return Err(ApiError::NotFound(format!("/samples/{name}")));
    }
    let text = std::fs::read_to_string(state.samples_dir.join(format!("{name}.json")))
        .map_err(|_| ApiError::NotFound(format!("/samples/{name}")))?;
    Ok(HttpResponse::Ok().content_type("application/json").body(text))
}
