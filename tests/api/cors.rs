use crate::helpers::*;

#[tokio::test]
async fn preflight_allows_authorization_and_content_type() {
    let server = TestServer::start();
    for (path, method) in [("/cds-services", "GET"), ("/cds-services/leg-cramp-causes", "POST")] {
        let res = server
            .client
            .request(reqwest::Method::OPTIONS, server.url(path))
            .header("Origin", "http://sandbox.example.org")
            .header("Access-Control-Request-Method", method)
            .header("Access-Control-Request-Headers", "authorization,content-type")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "{path}");
        let h = res.headers();
        assert_eq!(h["access-control-allow-origin"], "*");
        let allowed = h["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
        assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
        // The methods of that resource, as its `Allow` lists them.
        let methods = h["access-control-allow-methods"].to_str().unwrap();
        assert!(methods.contains(method), "{methods}");
        assert_eq!(methods, h["allow"].to_str().unwrap());
    }
}

#[tokio::test]
async fn simple_request_gets_allow_origin() {
    let server = TestServer::start();
    let res = server.client.get(server.url("/cds-services")).header("Origin", "http://x.example").send().await.unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn configured_origins_restrict_cors() {
    let server = TestServer::builder().args(["--cors-origin", "https://ehr.example.org"]).start();
    let ok = server
        .client
        .request(reqwest::Method::OPTIONS, server.url("/cds-services"))
        .header("Origin", "https://ehr.example.org")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://ehr.example.org");
    let res = server
        .client
        .request(reqwest::Method::OPTIONS, server.url("/cds-services"))
        .header("Origin", "https://evil.example.com")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    assert!(res.status().is_client_error());
    let (_, body) = read(res).await;
    assert_eq!(body["resourceType"], "OperationOutcome");
}
