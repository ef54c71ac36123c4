//! Hostile load (issue 13): one 9 MB request of 36,000 medications, two of them at once
//! beside health checks, and a burst of twenty 10 MB bodies. Work per request is linear and
//! runs off the HTTP workers; bodies in flight are bounded (503 with Retry-After past the
//! bound); memory returns to where it was after a burst.

use crate::helpers::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Medications recorded by product code and name: two diuretics and a PPI.
const DRUGS: [(&str, &str); 3] = [
    ("310798", "hydrochlorothiazide 25 MG Oral Tablet"),
    ("197417", "furosemide 40 MG Oral Tablet"),
    ("40790", "omeprazole 20 MG Delayed Release Oral Capsule"),
];

/// A patient-view request for a patient with leg cramps and `n` active MedicationRequests,
/// each with its own id, in the prefetch shape of the other tests (Bundles per key). Every
/// fourth is a statin known only by its ATC class and a product name of its own, so the merged
/// medication-review card names thousands of different drugs as well as gathering `n` pieces
/// of evidence. Written directly as text: the test should not spend its time building it.
fn request_with_medications(n: usize) -> Vec<u8> {
    let mut entries = String::with_capacity(n * 300);
    for i in 0..n {
        let coding = match i % 4 {
            3 => {
                format!(r#"{{"system":"http://www.whocc.no/atc","code":"C10AA{i:05}","display":"lipid product {i}"}}"#)
            }
            k => {
                let (code, text) = DRUGS[k];
                format!(
                    r#"{{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"{code}","display":"{text}"}}"#
                )
            }
        };
        if i > 0 {
            entries.push(',');
        }
        entries.push_str(&format!(
            r#"{{"resource":{{"resourceType":"MedicationRequest","id":"mr-{i}","status":"active","intent":"order","medicationCodeableConcept":{{"coding":[{coding}]}}}}}}"#
        ));
    }
    let condition = r#"{"resourceType":"Condition","id":"c1","clinicalStatus":{"coding":[{"code":"active"}]},"code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"R25.2"}]}}"#;
    format!(
        r#"{{"hook":"patient-view","hookInstance":"{}","context":{{"userId":"Practitioner/example","patientId":"p1"}},"prefetch":{{"patient":{{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1970-01-01"}},"conditions":{{"resourceType":"Bundle","type":"searchset","entry":[{{"resource":{condition}}}]}},"medicationRequests":{{"resourceType":"Bundle","type":"searchset","entry":[{entries}]}},"medicationStatements":null,"labs":null,"vitals":null,"pregnancy":null}}}}"#,
        uuid()
    )
    .into_bytes()
}

const SERVICE: &str = "/cds-services/leg-cramp-causes";

/// Posts a body; (status, seconds until the whole answer was read, answer).
async fn timed_post(server: &TestServer, body: Vec<u8>) -> (u16, f64, serde_json::Value) {
    let started = Instant::now();
    let (status, value) = server.post_raw(SERVICE, body).await;
    (status, started.elapsed().as_secs_f64(), value)
}

/// The codes of the cards' topics.
fn topics(body: &serde_json::Value) -> Vec<String> {
    rule_summaries(body).into_iter().map(|(topic, _)| topic).collect()
}

/// The server's CPU time so far (user + system), in seconds, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    let per_second = std::process::Command::new("getconf").arg("CLK_TCK").output().unwrap();
    ticks / String::from_utf8_lossy(&per_second.stdout).trim().parse::<f64>().unwrap()
}

/// The server's CPU seconds and the wall-clock seconds for one call with `n` medications.
async fn measured_call(server: &TestServer, n: usize) -> (f64, f64) {
    let body = request_with_medications(n);
    let cpu = cpu_seconds(server.pid());
    let (status, seconds, answer) = timed_post(server, body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(topics(&answer).contains(&"medication-review".to_string()), "{:?}", topics(&answer));
    assert_valid_response(&answer);
    (cpu_seconds(server.pid()) - cpu, seconds)
}

/// The lesser CPU time and the lesser wall-clock time of two calls with `n` medications.
async fn best_of_two(server: &TestServer, n: usize) -> (f64, f64) {
    let (first, second) = (measured_call(server, n).await, measured_call(server, n).await);
    (first.0.min(second.0), first.1.min(second.1))
}

/// The work is linear: 36,000 medications cost the server about four times the CPU of 9,000
/// (the quadratic de-duplication made it sixteen). And the answer comes within 2 s in the
/// build that is shipped: an unoptimised test build is several times slower at parsing and
/// cannot be held to that figure, so there the figure is printed and the release run
/// (`cargo test --release --test api hostile_load`, in .ci/run) asserts it.
#[tokio::test]
async fn one_9mb_request_with_36000_medications_answers_within_2s() {
    let server = TestServer::start();
    assert!(
        (9_000_000..10 << 20).contains(&request_with_medications(36_000).len()),
        "a 9 MB request within --max-body"
    );
    // Warm up: the first call pays for lazy initialisation, not for the size of the request.
    let (status, _) = server.post_json(SERVICE, &patient_view_request()).await;
    assert_eq!(status, 200);
    // The better of two calls of each size: the machine may be busy with other tests.
    let (cpu_small, _) = best_of_two(&server, 9_000).await;
    let (cpu, seconds) = best_of_two(&server, 36_000).await;
    eprintln!("9,000 medications: {cpu_small:.2} s CPU; 36,000: {cpu:.2} s CPU, answered in {seconds:.3} s");
    // Four times the work, with room for noise and the clock's 10 ms ticks.
    assert!(cpu <= 6.0 * cpu_small + 0.1, "36,000 medications took {cpu:.2} s CPU, 9,000 took {cpu_small:.2} s");
    if !cfg!(debug_assertions) {
        assert!(seconds <= 2.0, "36,000 medications took {seconds:.3} s (at most 2 s)");
    }
}

#[tokio::test]
async fn healthz_answers_within_1s_while_two_huge_requests_run() {
    let server = std::sync::Arc::new(TestServer::start());
    let body = request_with_medications(36_000);
    let (status, _) = server.post_json(SERVICE, &patient_view_request()).await;
    assert_eq!(status, 200);
    // Two clients keep a 36,000-medication request in flight for a few seconds each.
    let busy_for = Duration::from_secs(4);
    let started = Instant::now();
    let huge: Vec<_> = (0..2)
        .map(|_| {
            let (server, body) = (server.clone(), body.clone());
            tokio::spawn(async move {
                let mut answered = 0;
                while started.elapsed() < busy_for {
                    let (status, _, answer) = timed_post(&server, body.clone()).await;
                    assert_eq!(status, 200, "{answer}");
                    answered += 1;
                }
                (answered, started.elapsed())
            })
        })
        .collect();
    // Meanwhile, health checks and a small patient-view call, one after another.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut probes = Vec::new();
    while started.elapsed() < busy_for {
        let t = Instant::now();
        let (status, _) = server.get("/healthz").await;
        assert_eq!(status, 200);
        let health = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (status, _) = server.post_json(SERVICE, &patient_view_request()).await;
        assert_eq!(status, 200);
        probes.push((health, t.elapsed().as_secs_f64()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut until = Duration::ZERO;
    for task in huge {
        let (answered, finished) = task.await.unwrap();
        assert!(answered >= 1, "a huge request was answered");
        until = until.max(finished);
    }
    let worst_health = probes.iter().map(|p| p.0).fold(0.0, f64::max);
    let worst_small = probes.iter().map(|p| p.1).fold(0.0, f64::max);
    eprintln!(
        "{} probes while two huge requests ran for {:.1} s: /healthz worst {worst_health:.3} s, small call worst {worst_small:.3} s",
        probes.len(),
        until.as_secs_f64()
    );
    assert!(probes.len() >= 5, "health was probed while the huge requests ran: {probes:?}");
    assert!(worst_health <= 1.0, "/healthz took {worst_health:.3} s (at most 1 s): {probes:?}");
    assert!(worst_small <= 1.0, "a small call took {worst_small:.3} s (at most 1 s): {probes:?}");
}

/// The server's resident memory in KiB (`VmRSS`, or `VmHWM` for the peak), from /proc.
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in {status}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Memory a burst may leave resident once it has settled (measured: 10 to 25 MiB, what the
/// runtime keeps of a burst's threads and connections).
const SETTLED_MARGIN_KIB: u64 = 32 << 10;

/// Memory a burst may take beyond the baseline while it runs: the default 32 MiB of bodies in
/// flight, what is parsed from them, and their answers (measured: about 220 MiB; before the
/// bound, twenty 10 MB bodies took 778 MB).
const BURST_MARGIN_KIB: u64 = 320 << 10;

/// Waits until the server has been quiet long enough to give a burst's memory back.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(3)).await;
}

#[tokio::test]
async fn twenty_concurrent_10mb_bodies_are_bounded_and_memory_returns() {
    let server = std::sync::Arc::new(TestServer::start());
    let pid = server.pid();
    let body = request_with_medications(38_000);
    assert!(body.len() <= 10 << 20 && body.len() > 9_500_000, "a 10 MB body within --max-body: {}", body.len());
    // Warm up with the same kind of request (one at a time), so that what the process keeps
    // for itself (allocator pools, evaluation threads) is in the baseline.
    for _ in 0..2 {
        let (status, _, answer) = timed_post(&server, body.clone()).await;
        assert_eq!(status, 200, "{answer}");
    }
    settle().await;
    let before = memory_kib(pid, "VmRSS:");
    // The peak is measured from here: reset the high-water mark to the current RSS.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let burst: Vec<_> = (0..20)
        .map(|_| {
            let (server, body) = (server.clone(), body.clone());
            tokio::spawn(async move {
                let res = server
                    .client
                    .post(server.url(SERVICE))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("an answer, not a reset");
                let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
                let (status, answer) = read(res).await;
                (status, retry_after, answer)
            })
        })
        .collect();
    let mut answered = 0;
    let mut refused = 0;
    for task in burst {
        let (status, retry_after, answer) = task.await.unwrap();
        match status {
            200 => answered += 1,
            503 => {
                refused += 1;
                assert!(retry_after.as_deref().is_some_and(|s| s.parse::<u64>().is_ok()), "{retry_after:?}");
                assert_outcome(&answer, "retry after");
                assert_eq!(answer["issue"][0]["code"], "throttled", "{answer}");
            }
            other => panic!("a burst request got {other}: {answer}"),
        }
    }
    let peak = memory_kib(pid, "VmHWM:");
    eprintln!("burst of 20: {answered} answered, {refused} refused (503); RSS before {before} KiB, peak {peak} KiB");
    assert!(answered >= 1 && refused >= 1, "{answered} answered, {refused} refused");
    assert!(peak <= before + BURST_MARGIN_KIB, "peak RSS {peak} KiB during the burst, {before} KiB before");
    // Memory returns: within the margin of the pre-burst value once the burst has settled.
    settle().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = memory_kib(pid, "VmRSS:");
    while after > before + SETTLED_MARGIN_KIB && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = memory_kib(pid, "VmRSS:");
    }
    eprintln!("RSS after the burst settled: {after} KiB (before {before} KiB)");
    assert!(after <= before + SETTLED_MARGIN_KIB, "RSS {after} KiB after the burst, {before} KiB before");
    // And the service is healthy: health, and a call, answer.
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    let (status, _) = server.post_json(SERVICE, &patient_view_request()).await;
    assert_eq!(status, 200);
}

/// Sends a request head (and `body_part` of its body) on a raw connection.
fn send_head(port: u16, headers: &str, body_part: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head =
        format!("POST {SERVICE} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{headers}\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body_part).unwrap();
    stream
}

/// Reads an HTTP/1.1 answer (head, then `Content-Length` bytes of body): (status, head, body).
fn read_answer(mut stream: TcpStream) -> (u16, String, String) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&raw).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let head = head.to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|n| body.len() >= n) {
                let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
                return (status, head, body.to_string());
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => panic!("the connection ended before a whole answer: {text:?}"),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

fn assert_busy_refusal(status: u16, head: &str, body: &str) {
    assert_eq!(status, 503, "{head}\n{body}");
    assert!(head.contains("\r\nretry-after: 1"), "{head}");
    let value: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_outcome(&value, "retry after");
}

#[tokio::test]
async fn bodies_past_the_in_flight_bound_get_503_with_retry_after_and_are_not_read() {
    let server = TestServer::builder().args(["--max-inflight-bodies", "1", "--max-inflight-bytes", "1MiB"]).start();
    let port = server.port;
    let outcome = tokio::task::spawn_blocking(move || {
        // Bytes: a declared 5 MiB body does not fit in 1 MiB; refused before a byte is sent.
        let (status, head, body) = read_answer(send_head(port, "Content-Length: 5242880\r\n", b""));
        assert_busy_refusal(status, &head, &body);
        // A chunked body is refused once it outgrows the bound, without reading the rest.
        let chunk = vec![b' '; 256 << 10];
        let mut stream = send_head(port, "Transfer-Encoding: chunked\r\n", b"");
        for _ in 0..8 {
            let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
            framed.extend_from_slice(&chunk);
            framed.extend_from_slice(b"\r\n");
            if stream.write_all(&framed).is_err() {
                break;
            }
        }
        let (status, head, body) = read_answer(stream);
        assert_busy_refusal(status, &head, &body);
        // Count: while one body is being received, a second one is refused at once.
        let held = send_head(port, "Content-Length: 100\r\n", b"{\"hook\":");
        std::thread::sleep(Duration::from_millis(300));
        let (status, head, body) = read_answer(send_head(port, "Content-Length: 2\r\n", b"{}"));
        assert_busy_refusal(status, &head, &body);
        drop(held);
    });
    outcome.await.unwrap();
    // The refused requests left nothing behind: the place is free again, the server healthy.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    let (status, body) = server.post_json(SERVICE, &patient_view_request()).await;
    assert_eq!(status, 200, "{body}");
    assert!(server.wait_for_log("request refused: bodies in flight at their bound").await);
}

/// The same request with an unreadable element in every MedicationRequest: each one is read by
/// the tolerant reader (several parses each) and named in the warnings.
fn request_with_unreadable_elements(n: usize) -> Vec<u8> {
    let text = String::from_utf8(request_with_medications(n)).unwrap();
    text.replace(r#""intent":"order","#, r#""intent":"order","dosageInstruction":[{"text":5}],"#).into_bytes()
}

/// Reading thousands of damaged resources is linear too, and the log gets a few lines for
/// them, not one each (before: 32,000 damaged resources wrote 32,009 lines, 9.5 MB, of log).
#[tokio::test]
async fn thousands_of_damaged_resources_are_read_linearly_and_logged_in_a_few_lines() {
    let server = TestServer::start();
    let (status, _) = server.post_json(SERVICE, &patient_view_request()).await;
    assert_eq!(status, 200);
    let mut cpu = Vec::new();
    for n in [4_000, 16_000] {
        let body = request_with_unreadable_elements(n);
        let before = cpu_seconds(server.pid());
        let (status, _, answer) = timed_post(&server, body).await;
        assert_eq!(status, 200, "{answer}");
        let warnings = answer["extension"]["org.leg-cramp-cds.warnings"].as_array().expect("warnings");
        assert_eq!(warnings.len(), n, "one warning per damaged resource");
        cpu.push(cpu_seconds(server.pid()) - before);
    }
    eprintln!("damaged resources: 4,000 took {:.2} s CPU, 16,000 took {:.2} s", cpu[0], cpu[1]);
    assert!(cpu[1] <= 6.0 * cpu[0] + 0.1, "16,000 took {:.2} s CPU, 4,000 took {:.2} s", cpu[1], cpu[0]);
    assert!(server.wait_for_log("not logged one by one").await);
    let lines = server.log_text().lines().filter(|l| l.contains("FHIR resource skipped")).count();
    assert!(lines <= 20, "{lines} log lines for 20,000 skipped elements");
}
