//! The demo page in a real headless Chromium (Debian's chromium + chromium-driver, driven
//! over the W3C WebDriver protocol): for three samples, the rendered summaries equal the
//! API's; a suggestion click and a dismiss send feedback that reaches the store.
//! Screenshots are saved under target/screenshots/.
use crate::helpers::*;
use crate::samples::samples;
use base64::Engine;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub(crate) struct Browser {
    http: reqwest::Client,
    session: String,
    base: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new("chromedriver")
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) on PATH");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await {
                if r.json::<Value>().await.map(|v| v["value"]["ready"] == true).unwrap_or(false) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1280,1000", format!("--user-data-dir={}", profile.path().display())]}}}});
        let res: Value = http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let session = res["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {res}")).to_string();
        Browser { http, session, base, driver, _profile: profile }
    }

    pub(crate) async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(v["value"].get("error").is_none(), "WebDriver {path}: {v}");
        v["value"].clone()
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    pub(crate) async fn script(&self, script: &str) -> Value {
        self.cmd(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []}))).await
    }

    pub(crate) async fn wait_for(&self, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v = self.script(script).await;
            if !v.is_null() && v != json!(false) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for: {script}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        let el =
            self.cmd(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        let id = el[ELEMENT].as_str().unwrap().to_string();
        self.cmd(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({}))).await;
    }

    pub(crate) async fn screenshot(&self, name: &str) {
        let b64 = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap()).unwrap();
        let dir = project_path("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[tokio::test]
#[ignore = "needs Debian's chromium and chromium-driver (.ci/run installs them; run with --include-ignored)"]
async fn the_page_shows_the_api_cards_and_sends_feedback() {
    let server = TestServer::builder().arg("--demo").start();
    let browser = Browser::start().await;
    let all = samples();
    for name in ["electrolytes", "quinine-order-sign", "pregnancy-third-trimester"] {
        let (_, mut request, expected) = all.iter().find(|s| s.0 == name).cloned().unwrap();
        leg_cramp_cds::samples::resolve(&mut request, chrono::Utc::now());
        let service = expected["service"].as_str().unwrap();
        let (status, body) = server.post_json(&format!("/cds-services/{service}"), &request).await;
        assert_eq!(status, 200);
        let api: Vec<String> =
            body["cards"].as_array().unwrap().iter().map(|c| c["summary"].as_str().unwrap().to_string()).collect();
        assert!(!api.is_empty(), "{name}");

        browser.goto(&server.url(&format!("/?sample={name}"))).await;
        browser.wait_for("return document.body.getAttribute('data-ready') === 'true'").await;
        let shown: Vec<String> = serde_json::from_value(
            browser
                .script("return [...document.querySelectorAll('article.card .summary')].map(e => e.textContent)")
                .await,
        )
        .unwrap();
        assert_eq!(shown, api, "{name}: page and API differ");
        browser.screenshot(name).await;
    }

    // Feedback from the page: accept a suggestion on one card, dismiss another with a reason.
    // (The electrolytes sample's labs are recent, so its cards state them and offer no order.)
    browser.goto(&server.url("/?sample=neuropathy-diabetes")).await;
    browser.wait_for("return document.body.getAttribute('data-ready') === 'true'").await;
    let accepted_rule = browser.script("return document.querySelector('article.card').dataset.rule").await;
    browser.click("article.card button.suggestion").await;
    browser
        .wait_for("return document.querySelector('article.card .feedback-status').dataset.state === 'accepted'")
        .await;
    let dismissed_rule = browser.script("return document.querySelectorAll('article.card')[1].dataset.rule").await;
    browser.click("article.card:nth-of-type(2) button.dismiss").await;
    browser.wait_for("return document.querySelectorAll('article.card')[1].querySelector('.feedback-status').dataset.state === 'overridden'").await;
    browser.screenshot("neuropathy-diabetes-after-feedback").await;

    let (_, analytics) = server.get("/analytics/rules").await;
    let stat =
        |rule: &Value| analytics["rules"].as_array().unwrap().iter().find(|r| &r["rule"] == rule).cloned().unwrap();
    assert_eq!(stat(&accepted_rule)["accepted"], 1, "{analytics}");
    assert_eq!(stat(&dismissed_rule)["overridden"], 1, "{analytics}");
    assert_eq!(stat(&dismissed_rule)["topOverrideReasons"][0]["code"], "already-addressed");
    let _ = browser.cmd(reqwest::Method::DELETE, "", None).await;
}
