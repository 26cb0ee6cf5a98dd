//! The HTTP API and console over a real listener: intake, filters, acknowledge, notes, silences,
//! and the console's no-JavaScript forms.

mod common;

use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use vigil_incident::{IncidentConfig, IncidentService};

async fn serve() -> (IncidentService, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = IncidentConfig {
        store: "sqlite::memory:".into(),
        rules: dir.path().join("rules"),
        ..IncidentConfig::default()
    };
    let svc = IncidentService::new(config, &mut Registry::default())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = svc.api_router();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (svc, base, dir)
}

/// The Alertmanager v4 fixture from shared/fixtures (upstream: metalmatze/alertmanager-bot, MIT);
/// the same bytes inline when the shared tree is not beside the checkout.
const FIRING: &str = r#"{"receiver":"telegram","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"Fire","severity":"critical"},"annotations":{"message":"Something is on fire"},"startsAt":"2018-11-04T22:43:58.283995108+01:00","endsAt":"2018-11-04T22:46:58.283995108+01:00","generatorURL":"http://localhost:9090/graph?g0.expr=vector%28666%29\u0026g0.tab=1"}],"groupLabels":{"alertname":"Fire"},"commonLabels":{"alertname":"Fire","severity":"critical"},"commonAnnotations":{"message":"Something is on fire"},"externalURL":"http://localhost:9093","version":"4","groupKey":"{}:{alertname=\"Fire\"}"}"#;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/providers/alertmanager")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|_| FIRING.as_bytes().to_vec())
}

#[tokio::test]
async fn intake_incident_api_and_console() {
    let (svc, base, _dir) = serve().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Alertmanager webhook v4 (the upstream fixture): stored once however often it is re-sent.
    let firing = fixture("firing_fire_compact.raw.json");
    let r: Value = http
        .post(format!("{base}/v1/alertmanager"))
        .body(firing.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["stored"], 1);
    let r: Value = http
        .post(format!("{base}/v1/alertmanager"))
        .body(firing)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["duplicates"], 1);
    let bad = http
        .post(format!("{base}/v1/alertmanager"))
        .body("{\"alerts\": 3}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // Signals and CRM events.
    let sig = json!([{"v":1,"id":"s-1","time":"2026-11-27T10:00:00Z","source":"webhook","channel":"email","provider":"sendgrid","outcome":"delivered","count":10},
                     {"v":9,"id":"s-2","time":"2026-11-27T10:00:00Z","source":"webhook","channel":"email","outcome":"delivered"}]);
    let r: Value = http
        .post(format!("{base}/v1/signals"))
        .json(&sig)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (r["stored"].as_u64(), r["invalid"].as_u64()),
        (Some(1), Some(1))
    );
    let ev = json!({"id":"e-1","kind":"automation_step_failed","status":"failed","name":"send_campaign","code":"57014","fingerprint":"9f86d081884c7d65"});
    let r: Value = http
        .post(format!("{base}/v1/events"))
        .json(&ev)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["stored"], 1);
    let wrong = http
        .post(format!("{base}/v1/events"))
        .json(&json!({"id":"e-2","kind":"x","status":"maybe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    assert_eq!(svc.store().count_signals().await.unwrap(), 3);

    // The critical alert opens an incident on the next tick (the fixture is from 2018: tick then).
    let t = chrono::DateTime::parse_from_rfc3339("2018-11-04T21:45:00Z")
        .unwrap()
        .timestamp_millis();
    svc.tick(t).await.unwrap();
    let list: Vec<Value> = http
        .get(format!("{base}/api/incidents?state=open"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(list[0]["severity"], "critical");
    let none: Vec<Value> = http
        .get(format!("{base}/api/incidents?layer=database"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(
        http.get(format!("{base}/api/incidents?state=bogus"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        http.get(format!("{base}/api/incidents/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Console lists it with its buttons; the form acknowledges and redirects back.
    let page = http
        .get(format!("{base}/console"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("id=\"incident-{id}\"")) && page.contains("data-state=\"open\"")
    );
    assert!(page.contains(&format!("action=\"/console/incidents/{id}/acknowledge\"")));
    assert!(!page.contains("<script"));
    let r = http
        .post(format!("{base}/console/incidents/{id}/acknowledge"))
        .header("x-vigil-user", "ana")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let page = http
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("data-state=\"acknowledged\""), "{page}");
    assert!(!page.contains(&format!("/console/incidents/{id}/acknowledge")));

    // Acknowledging twice conflicts through the API.
    assert_eq!(
        http.post(format!("{base}/api/incidents/{id}/acknowledge"))
            .send()
            .await
            .unwrap()
            .status(),
        409
    );
    let n = http
        .post(format!("{base}/api/incidents/{id}/notes"))
        .header("x-vigil-user", "bo")
        .json(&json!({"body":"looking <b>now</b>"}))
        .send()
        .await
        .unwrap();
    assert_eq!(n.status(), 201);
    let detail: Value = http
        .get(format!("{base}/api/incidents/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["incident"]["state"], "acknowledged");
    let kinds: Vec<&str> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["opened", "acknowledged", "note"]);
    assert_eq!(detail["timeline"][1]["actor"], "ana");
    assert_eq!(detail["notes"][0]["author"], "bo");
    let html = http
        .get(format!("{base}/console/incidents/{id}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("looking &lt;b&gt;now&lt;/b&gt;"),
        "notes are escaped"
    );
    assert!(html.contains("alert Fire firing"));

    // Silences.
    let s = http
        .post(format!("{base}/api/silences"))
        .json(&json!({"match": {"channel": "email"}, "ends": "2099-01-01T00:00:00Z", "comment": "migration"}))
        .send()
        .await
        .unwrap();
    assert_eq!(s.status(), 201);
    let list: Vec<Value> = http
        .get(format!("{base}/api/silences"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);

    // Resolve through the API; resolved shows under "Recently resolved".
    let r: Value = http
        .post(format!("{base}/api/incidents/{id}/resolve"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["state"], "resolved");
    let resolved: Vec<Value> = http
        .get(format!("{base}/api/incidents?state=resolved"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resolved.len(), 1);
}
