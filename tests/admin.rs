//! The admin server of a running `vigil`: metrics in Prometheus text format, health probes, and the
//! token rule for non-loopback addresses.

mod common;

use common::{Vigil, wait_http};
use vigil_testkit::free_port;

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_probes_answer() {
    let port = free_port();
    let mut vigil = Vigil::start(&format!("[admin]\nlisten = \"127.0.0.1:{port}\"\n"), &[]);
    wait_http(port, "/healthz").await;
    let base = format!("http://127.0.0.1:{port}");
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);

    let resp = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let body = resp.text().await.unwrap();
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text format");
    let names: Vec<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    assert!(names.contains(&"vigil_build_info"), "{names:?}");
    assert!(names.contains(&"vigil_signals_dropped_total"), "{names:?}");

    let index: serde_json::Value = reqwest::get(format!("{base}/api/"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(index["service"], "vigil");
    assert!(vigil.terminate().success());
}

#[tokio::test]
async fn a_non_loopback_admin_server_refuses_requests_without_the_token() {
    let port = free_port();
    let token = "test-admin-token-0123456789";
    let mut vigil = Vigil::start(
        &format!("[admin]\nlisten = \"0.0.0.0:{port}\"\ntoken = \"${{VIGIL_ADMIN_TOKEN}}\"\n"),
        &[("VIGIL_ADMIN_TOKEN", token)],
    );
    wait_http(port, "/healthz").await;
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    for path in ["/metrics", "/api/"] {
        let r = client.get(url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = client
            .get(url(path))
            .bearer_auth("wrong-token-0123456789xx")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with a wrong token");
        let r = client
            .get(url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path} with the token");
    }
    // Probes stay open for orchestrators.
    assert_eq!(
        client.get(url("/healthz")).send().await.unwrap().status(),
        200
    );
    assert!(vigil.terminate().success());
}
