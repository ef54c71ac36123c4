use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_leg-cramp-cds");

pub fn project_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn fixture(rel: &str) -> Value {
    let path = project_path("tests/fixtures").join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A running service process. Killed on drop. Its log lines (JSON) are kept for inspection.
pub struct TestServer {
    child: Child,
    /// The server's own SQLite directory, unless the test chose a database.
    _data: Option<tempfile::TempDir>,
    pub port: u16,
    pub base: String,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub client: reqwest::Client,
}

pub struct ServerBuilder {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    listen: String,
    https: Option<reqwest::Certificate>,
}

impl ServerBuilder {
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// The server speaks HTTPS with a certificate signed by this (test) root.
    pub fn https(mut self, root: reqwest::Certificate) -> Self {
        self.https = Some(root);
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }

    pub fn start(self) -> TestServer {
        self.try_start().unwrap_or_else(|e| panic!("server did not start: {e}"))
    }

    /// Starts the binary and waits for its "ready" log line; `Err` carries its output if it exits.
    pub fn try_start(self) -> Result<TestServer, String> {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .args(["--listen", &self.listen, "--log-format", "json", "--workers", "2"])
            .args(&self.args)
            .current_dir(project_path(""))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !self.args.iter().any(|a| a == "--cards") {
            cmd.args(["--cards", project_path("cards").to_str().unwrap()]);
        }
        let data = if self.args.iter().any(|a| a == "--database") {
            None
        } else {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            cmd.args(["--database", dir.path().join("feedback.sqlite").to_str().unwrap()]);
            Some(dir)
        };
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<u16>();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let logs = logs.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.contains("leg-cramp-cds ready") {
                        if let Ok(v) = serde_json::from_str::<Value>(&line) {
                            if let Some(p) = v["port"].as_u64() {
                                let _ = tx.send(p as u16);
                            }
                        }
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        // Generous: on a loaded 2-core CI machine a debug build validating every card file can be slow.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(port) = rx.recv_timeout(Duration::from_millis(50)) {
                leg_cramp_cds::install_crypto_provider();
                let mut client = reqwest::Client::builder().timeout(Duration::from_secs(30));
                let base = match self.https {
                    Some(root) => {
                        client = client.tls_certs_only([root]);
                        format!("https://localhost:{port}")
                    }
                    None => format!("http://127.0.0.1:{port}"),
                };
                let client = client.build().unwrap();
                return Ok(TestServer { child, _data: data, port, base, logs, client });
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!("exited with {status}: {}", logs.lock().unwrap().join("\n")));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("no ready line within 60 s: {}", logs.lock().unwrap().join("\n")));
            }
        }
    }
}

impl TestServer {
    pub fn builder() -> ServerBuilder {
        ServerBuilder { args: Vec::new(), envs: Vec::new(), listen: "127.0.0.1:0".into(), https: None }
    }

    pub fn start() -> Self {
        Self::builder().start()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let res = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap())
            .send()
            .await
            .expect("request sent");
        read(res).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let res = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent");
        read(res).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        read(self.client.get(self.url(path)).send().await.expect("request sent")).await
    }

    /// Waits (up to 5 s) for a log line containing `needle`: lines arrive asynchronously.
    pub async fn wait_for_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.log_text().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    #[allow(dead_code)]
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

/// Strings that must never reach a log line: JWTs (base64 JSON starts `eyJ`), bearer
/// tokens, the FHIR access token used in tests, patient references and demographics.
pub const NEVER_LOGGED: [&str; 7] =
    ["eyJ", "Bearer ", "secret-fhir-token", "access_token", "Patient/", "birthDate", "1970-01-01"];

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Every test's server logs are checked: no secrets, no patient data.
        if !std::thread::panicking() {
            let logs = self.log_text();
            for needle in NEVER_LOGGED {
                if let Some(line) = logs.lines().find(|l| l.contains(needle)) {
                    panic!("log line contains {needle:?}: {line}");
                }
            }
        }
    }
}

pub async fn read(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let bytes = res.bytes().await.expect("body read");
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
    };
    (status, value)
}

/// Asserts the body is an OperationOutcome whose diagnostics mention `needle`.
pub fn assert_outcome(body: &Value, needle: &str) {
    assert_eq!(body["resourceType"], "OperationOutcome", "not an OperationOutcome: {body}");
    let issues = body["issue"].as_array().expect("issue array");
    assert!(!issues.is_empty(), "no issues: {body}");
    let text: Vec<&str> = issues.iter().filter_map(|i| i["diagnostics"].as_str()).collect();
    assert!(text.iter().any(|d| d.contains(needle)), "no diagnostics mention {needle:?}: {body}");
}

/// A minimal valid patient-view request with every prefetch key of leg-cramp-causes supplied
/// as "no data" (null), so the service has nothing to fetch.
pub fn patient_view_request() -> Value {
    serde_json::json!({
        "hook": "patient-view",
        "hookInstance": uuid(),
        "context": {"userId": "Practitioner/example", "patientId": "p1"},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-01"},
            "conditions": null, "medicationRequests": null, "medicationStatements": null,
            "labs": null, "vitals": null, "pregnancy": null
        }
    })
}

pub fn order_request(hook: &str, selections: bool) -> Value {
    let mut v = serde_json::json!({
        "hook": hook,
        "hookInstance": uuid(),
        "context": {
            "userId": "Practitioner/example",
            "patientId": "p1",
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [
                {"resource": {"resourceType": "MedicationRequest", "id": "draft-1", "status": "draft", "intent": "order",
                    "subject": {"reference": "Patient/p1"},
                    "medicationCodeableConcept": {"text": "acetaminophen 500 MG Oral Tablet"}}}
            ]}
        },
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1960-05-05"},
            "conditions": null, "medicationRequests": null, "labs": null, "pregnancy": null
        }
    });
    if selections {
        v["context"]["selections"] = serde_json::json!(["MedicationRequest/draft-1"]);
    }
    v
}

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Validates a response body against schemas/ and the no-null/no-empty rule.
pub fn assert_valid_response(body: &Value) {
    use leg_cramp_cds::protocol::response::empty_value_paths;
    use leg_cramp_cds::protocol::schemas::Document;
    let schemas = leg_cramp_cds::protocol::SchemaSet::compile().unwrap();
    if let Err(e) = schemas.validate(Document::Response, body) {
        panic!("response violates schemas/response.schema.json: {e:?}\n{body}");
    }
    assert_eq!(empty_value_paths(body), Vec::<String>::new(), "null/empty optional fields in {body}");
}

/// (topic code, summary) of every card of a response, in order.
pub fn rule_summaries(body: &Value) -> Vec<(String, String)> {
    body["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (c["source"]["topic"]["code"].as_str().unwrap().to_string(), c["summary"].as_str().unwrap().to_string())
        })
        .collect()
}
