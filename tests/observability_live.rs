//! The dashboards and alert rules against a running Vigil (pg proxy, HTTP proxy with gateway and
//! webhook taps, incident service, signals over Redis Streams), in this process:
//!
//! 1. a short load through the proxies, plus the faults some panels need (an SQL error, a pinned
//!    client, a pool timeout, a 5xx route, a refused request, a dead upstream instance, a dead
//!    provider, an unverified and a failed-outcome webhook, failed notifications), cache hits (a
//!    `[cache]` rule on the table the load reads), gateway sends whose delivery webhook never
//!    came (posted to the incident intake, backdated past `missing_outcome_secs`) and an incident
//!    acknowledged and resolved through the API;
//! 2. every metric name in `dashboards/*.json` and `rules/prometheus/*.yml` must be exported;
//! 3. a real Prometheus (Debian package) scrapes Vigil every second with the alert rules loaded;
//!    every dashboard panel query, template variables substituted, must return data, and every
//!    rule must evaluate without error.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::any;
use common::obs;
use serde_json::{Value, json};
use vigil_testkit::{PgServer, RedisServer, free_port};

/// `$__rate_interval` in the test (Grafana computes it from the scrape interval).
const RATE_INTERVAL: &str = "20s";

/// Panel queries allowed to return no data here, with the reason. Keep it short.
const NO_DATA_ALLOWED: &[(&str, &str)] = &[];

/// A small HTTP server: `/fail...` answers 500, anything else 200 (or 202 for POST).
async fn fake_server() -> SocketAddr {
    let app = Router::new().fallback(any(|req: axum::extract::Request| async move {
        if req.uri().path().starts_with("/fail") {
            (StatusCode::INTERNAL_SERVER_ERROR, "boom")
        } else if req.method() == axum::http::Method::POST {
            (StatusCode::ACCEPTED, "{\"ok\":true}")
        } else {
            (StatusCode::OK, "ok")
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// RFC 3339 (UTC) of a unix time, for the Alertmanager payload.
fn rfc3339(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

const STRIPE_SECRET: &str = "whsec_observability_test";

fn config(
    pg: &PgServer,
    db: &str,
    redis: &str,
    crm: SocketAddr,
    provider: SocketAddr,
    dir: &Path,
) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[pg]
listen = "127.0.0.1:0"
auth_type = "trust"
pool_size = 2
min_idle = 0
pool_timeout = 300
[[pg.databases]]
name = "crm"
url = "postgres://postgres@127.0.0.1:{pg_port}/{db}"
[[pg.databases]]
name = "crm2"
url = "postgres://postgres@127.0.0.1:{pg_port}/{db}"
[cache]
backend = "memory"
rules = "{cache_rules}"
listen = false
[queries]
bucket_secs = 2
[http]
listen = "127.0.0.1:0"
upstream = ["http://{crm}", "http://127.0.0.1:{dead}"]
trusted_cidrs = ["127.0.0.0/8"]
pii_hash_key = "observability-test"
access_log = false
health_check_interval_ms = 500
signal_window_secs = 1
[http.limits]
max_header_bytes = 2048
[[http.providers]]
name = "sendgrid"
upstream = "http://{provider}"
channel = "email"
[[http.providers]]
name = "twilio"
upstream = "http://127.0.0.1:{dead}"
channel = "sms"
[[http.webhooks]]
path = "/webhooks/stripe"
provider = "stripe"
secret = "{STRIPE_SECRET}"
[signals]
transport = "redis"
url = "{redis}"
stream = "vigil-obs-{pid}"
group = "vigil-obs"
[incident]
listen = "127.0.0.1:0"
store = "sqlite://{store}"
rules = "{rules}"
tick_secs = 1
[incident.notifier]
poll_interval_ms = 200
backoff_initial_secs = 1
"#,
        pg_port = pg.port(),
        dead = free_port(),
        pid = std::process::id(),
        store = dir.join("vigil.db").display(),
        rules = dir.join("rules").display(),
        cache_rules = dir.join("cache.yaml").display(),
    )
}

/// Receivers: `log` (sent), a webhook whose secret variable is unset (failed) and a webhook to a
/// server answering 500 (retry; its HMAC key is read from PATH, which is always set).
fn write_rules(dir: &Path, provider: SocketAddr) {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("10-routes.yaml"),
        format!(
            "receivers:\n  - name: log\n    kind: log\n  - name: unset\n    kind: webhook\n    url: http://{provider}/hook\n    secret_env: VIGIL_OBS_TEST_UNSET_SECRET\n  - name: flaky\n    kind: webhook\n    url: http://{provider}/fail\n    secret_env: PATH\nroutes:\n  - name: all\n    receivers: [log, unset, flaky]\n"
        ),
    )
    .unwrap();
    // The cache serves the table the load reads (`obs_items`, created in `faults`).
    std::fs::write(
        dir.join("cache.yaml"),
        "default_ttl: 300\nrules:\n  - name: observability items\n    table: obs_items\n",
    )
    .unwrap();
}

async fn sql(addr: SocketAddr, db: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            addr.port()
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect through the pg proxy");
    tokio::spawn(conn);
    client
}

/// Traffic the panels need to have recent samples (latency quantiles): SQL, CRM requests,
/// provider calls, webhooks. Runs until `stop`.
async fn steady_load(pg: SocketAddr, http: SocketAddr, stop: Arc<AtomicBool>) {
    let c = sql(pg, "crm").await;
    let web = reqwest::Client::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let _ = c.query("SELECT $1::int + 1", &[&(n as i32)]).await;
        let _ = c.simple_query("SELECT count(*) FROM pg_class").await;
        // Cached by the `obs_items` rule: hits after the first fill.
        let _ = c.simple_query("SELECT sum(qty) FROM obs_items").await;
        let _ = web.get(format!("http://{http}/contacts/{n}")).send().await;
        let _ = web.get(format!("http://{http}/fail/{n}")).send().await;
        let _ = web
            .post(format!("http://{http}/_provider/sendgrid/v3/mail/send"))
            .body("{}")
            .send()
            .await;
        let _ = web
            .post(format!("http://{http}/_provider/sendgrid/fail"))
            .body("{}")
            .send()
            .await;
        stripe_webhook(&web, http, n, "payment_intent.succeeded").await;
        stripe_webhook(&web, http, n, "payment_intent.payment_failed").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn stripe_webhook(web: &reqwest::Client, http: SocketAddr, n: u64, kind: &str) {
    let body = json!({
        "id": format!("evt_obs_{kind}_{n}_{}", std::process::id()), "object": "event", "type": kind,
        "created": unix_now(),
        "data": {"object": {"id": format!("pi_obs_{n}"), "object": "payment_intent", "customer": "cus_obs",
            "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds"}}}
    })
    .to_string();
    let sig = vigil_democrm::signing::stripe_sign(STRIPE_SECRET, unix_now(), body.as_bytes());
    let _ = web
        .post(format!("http://{http}/webhooks/stripe"))
        .header("stripe-signature", sig)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
}

/// One-off faults for the panels that only show data during a failure.
async fn faults(running: &vigil::run::Running) {
    let pg = running.pg_addr.unwrap();
    let http = running.http_addr.unwrap();
    // SQL error (class 22) and a pinned client (SET in transaction mode).
    let c = sql(pg, "crm").await;
    c.simple_query(
        "CREATE TABLE obs_items (id int PRIMARY KEY, qty int NOT NULL); \
         INSERT INTO obs_items SELECT g, g FROM generate_series(1, 100) g",
    )
    .await
    .unwrap();
    assert!(c.simple_query("SELECT 1/0").await.is_err());
    c.simple_query("SET application_name = 'obs'")
        .await
        .unwrap();
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    pool_timeout(pg).await;
    let web = reqwest::Client::new();
    // Refused: headers over max_header_bytes.
    let r = web
        .get(format!("http://{http}/contacts"))
        .header("x-big", "x".repeat(4096))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    // A dead provider and an unverified webhook.
    let r = web
        .post(format!(
            "http://{http}/_provider/twilio/2010-04-01/Messages.json"
        ))
        .body("To=1")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_server_error());
    let r = web
        .post(format!("http://{http}/webhooks/stripe"))
        .header("stripe-signature", "t=1,v1=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    let _ = r.status();
    page(running.incident_addr.unwrap(), "ObsTestFirst").await;
    missing_outcomes(running.incident_addr.unwrap()).await;
}

/// Gateway sends of 20 minutes ago (past the default 15 min `missing_outcome_secs`), one with
/// its delivery webhook, posted to the incident intake as a producer with message ids would:
/// the detector holds the other three as missing outcomes.
async fn missing_outcomes(incident: SocketAddr) {
    use vigil_signal::{Channel, Outcome, Signal, Source};
    let sent = chrono::Utc::now() - chrono::Duration::minutes(20);
    let pid = std::process::id();
    let mut batch: Vec<Signal> = (0..4)
        .map(|i| {
            Signal::new(Source::ProviderGateway, Channel::Email, Outcome::Accepted)
                .with_id(format!("obs-send-{pid}-{i}"))
                .with_time(sent)
                .with_provider("sendgrid")
                .with_attr("message_id", format!("obs-msg-{pid}-{i}"))
        })
        .collect();
    batch.push(
        Signal::new(Source::Webhook, Channel::Email, Outcome::Delivered)
            .with_id(format!("obs-delivered-{pid}-0"))
            .with_time(sent + chrono::Duration::seconds(30))
            .with_provider("sendgrid")
            .with_attr("message_id", format!("obs-msg-{pid}-0")),
    );
    let r = reqwest::Client::new()
        .post(format!("http://{incident}/v1/signals"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

/// Acknowledge, then resolve, an open incident through the API; returns its id.
async fn acknowledge_and_resolve(incident: SocketAddr) -> String {
    let web = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let list: Value = web
            .get(format!("http://{incident}/api/incidents"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let open = list
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["state"] == "open")
            .and_then(|i| i["id"].as_str().map(str::to_owned));
        if let Some(id) = open {
            break id;
        }
        assert!(Instant::now() < deadline, "no open incident: {list}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for action in ["acknowledge", "resolve"] {
        let r = web
            .post(format!("http://{incident}/api/incidents/{id}/{action}"))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "{action}: {}",
            r.text().await.unwrap()
        );
    }
    id
}

/// Pool timeout: both server connections held in transactions, a third client waits 300 ms.
async fn pool_timeout(pg: SocketAddr) {
    let a = sql(pg, "crm").await;
    let b = sql(pg, "crm").await;
    a.simple_query("BEGIN").await.unwrap();
    b.simple_query("BEGIN").await.unwrap();
    let c = sql(pg, "crm").await;
    assert!(
        c.simple_query("SELECT 1").await.is_err(),
        "expected a pool timeout"
    );
}

/// An incident through the Alertmanager intake, so notifications are attempted.
async fn page(incident: SocketAddr, alertname: &str) {
    let now = rfc3339(unix_now());
    let am = json!({"version": "4", "status": "firing", "receiver": "vigil", "alerts": [
        {"status": "firing", "labels": {"alertname": alertname, "severity": "critical"},
         "annotations": {}, "startsAt": now, "endsAt": "0001-01-01T00:00:00Z"}]});
    let r = reqwest::Client::new()
        .post(format!("http://{incident}/v1/alertmanager"))
        .json(&am)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

/// A second Vigil whose signal transport is a Redis that is not there: the send-error and
/// send-dropped series exist only when delivery fails.
async fn start_with_dead_redis(crm: SocketAddr, provider: SocketAddr) -> vigil::run::Running {
    let text = format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
upstream = ["http://{crm}"]
signal_window_secs = 1
access_log = false
[[http.providers]]
name = "sendgrid"
upstream = "http://{provider}"
channel = "email"
[signals]
transport = "redis"
url = "redis://127.0.0.1:{dead}/"
"#,
        dead = free_port()
    );
    let cfg = vigil::config::Config::parse(&text, &|_| None).expect("second config");
    let running = vigil::run::start(&cfg, Path::new("."))
        .await
        .unwrap_or_else(|e| panic!("second vigil starts: {e:#}"));
    let http = running.http_addr.unwrap();
    for _ in 0..3 {
        let _ = reqwest::Client::new()
            .post(format!("http://{http}/_provider/sendgrid/v3/mail/send"))
            .body("{}")
            .send()
            .await;
    }
    running
}

struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(bin: &Path, targets: &[SocketAddr]) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let rules = obs::root().join("rules/prometheus/vigil.yml");
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: vigil\n    static_configs:\n      - targets: [{}]\n",
        rules.display(),
        targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    std::fs::write(dir.path().join("prometheus.yml"), cfg).unwrap();
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
        .spawn()
        .expect("start prometheus");
    Prometheus {
        child,
        port,
        _dir: dir,
    }
}

async fn prom_query(port: u16, q: &str) -> Value {
    let encoded: String = q
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let v: Value = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{port}/api/v1/query?query={encoded}"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "success", "{q}: {v}");
    v["data"]["result"].clone()
}

fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("${instance}", ".*")
        .replace("$instance", ".*")
        .replace("${database}", ".*")
        .replace("$database", ".*")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_rules_against_a_running_vigil_and_prometheus() {
    let pg = PgServer::shared();
    let db = pg.create_database().unwrap();
    let redis = RedisServer::shared();
    let dir = tempfile::tempdir().unwrap();
    let crm = fake_server().await;
    let provider = fake_server().await;
    write_rules(dir.path(), provider);
    let text = config(pg, &db.name, &redis.url(), crm, provider, dir.path());
    let cfg = vigil::config::Config::parse(&text, &|_| None).expect("test config");
    let running = vigil::run::start(&cfg, dir.path())
        .await
        .unwrap_or_else(|e| panic!("vigil starts: {e:#}"));
    let admin = running.admin_addr;

    faults(&running).await;
    let dead_redis = start_with_dead_redis(crm, provider).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(steady_load(
        running.pg_addr.unwrap(),
        running.http_addr.unwrap(),
        stop.clone(),
    ));

    // Wait until the lazily created series exist: notifications attempted, signals consumed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let m = reqwest::get(format!("http://{admin}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let other = reqwest::get(format!("http://{}/metrics", dead_redis.admin_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let m = format!("{m}{other}");
        let done = other.contains("vigil_signals_send_dropped_total")
            && ["result=\"failed\"", "result=\"retry\"", "result=\"sent\""]
                .iter()
                .all(|r| {
                    m.lines().any(|l| {
                        l.starts_with("vigil_incident_notifications_total") && l.contains(r)
                    })
                })
            && m.lines()
                .any(|l| l.starts_with("vigil_signals_received_total") && !l.ends_with(" 0"))
            && m.contains("vigil_incident_missing_outcomes{")
            && m.contains("vigil_webhook_event_lag_seconds_bucket{")
            && m.contains("vigil_cache_bypass_total{")
            && obs::sample(&m, "vigil_cache_hits_total").is_some_and(|v| v > 0.0);
        if done || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };

    // 2. Every metric name used by a dashboard, a template variable or a rule is exported.
    let exported = obs::exported_names(&metrics);
    let mut missing = BTreeSet::new();
    let mut used = BTreeSet::new();
    let sources = obs::panel_queries()
        .into_iter()
        .map(|q| {
            (
                format!("{} panel {} `{}`", q.dashboard, q.panel_id, q.title),
                q.expr,
            )
        })
        .chain(obs::variable_queries())
        .chain(obs::rule_exprs());
    for (what, expr) in sources {
        for name in obs::metric_names(&expr) {
            used.insert(name.clone());
            if !exported.contains(&name) && !obs::SYNTHETIC.contains(&name.as_str()) {
                missing.insert(format!("{name} (in {what})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metric names not exported by a running Vigil:\n{}\n\nexported:\n{exported:?}",
        missing.into_iter().collect::<Vec<_>>().join("\n")
    );
    println!(
        "metric names: {} used, all among {} exported",
        used.len(),
        exported.len()
    );

    // The new gauges hold what /api/pools and the detector hold: a client pinned on `crm2` shows
    // as pinned now, three sends miss their outcome.
    let pinned = sql(running.pg_addr.unwrap(), "crm2").await;
    pinned
        .simple_query("SET application_name = 'obs-pinned'")
        .await
        .unwrap();
    let m = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let pool = "{database=\"crm2\",user=\"postgres\"}";
    assert_eq!(
        obs::sample(&m, &format!("vigil_pg_pool_pinned_clients{pool}")),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        obs::sample(&m, &format!("vigil_pg_pool_servers_active{pool}")),
        Some(1.0),
        "a pinned client holds its server: {m}"
    );
    assert_eq!(
        obs::sample(&m, &format!("vigil_pg_pool_size{pool}")),
        Some(2.0)
    );
    assert_eq!(
        obs::sample(
            &m,
            "vigil_incident_missing_outcomes{channel=\"email\",provider=\"sendgrid\"}"
        ),
        Some(3.0),
        "{m}"
    );
    let api: Value = reqwest::get(format!("http://{admin}/api/pools"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let crm2 = api
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["database"] == "crm2")
        .unwrap();
    assert_eq!(crm2["pinned_clients"], 1, "{api}");

    // 3. A real Prometheus.
    let Some(bin) = obs::tool("prometheus", "prometheus") else {
        stop.store(true, Ordering::Relaxed);
        let _ = load.await;
        running.stop().await.unwrap();
        let _ = dead_redis.stop().await;
        return;
    };
    let mut prom = start_prometheus(&bin, &[admin, dead_redis.admin_addr]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = format!("http://127.0.0.1:{}/-/ready", prom.port);
    while !reqwest::get(&ready)
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        let log =
            std::fs::read_to_string(prom._dir.path().join("prometheus.log")).unwrap_or_default();
        assert!(
            prom.child.try_wait().unwrap().is_none(),
            "prometheus exited:\n{log}"
        );
        assert!(Instant::now() < deadline, "prometheus not ready:\n{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The dead-Redis instance fails (and gives up on) signal batches while Prometheus scrapes.
    let other = dead_redis.http_addr.unwrap();
    for _ in 0..3 {
        let _ = reqwest::Client::new()
            .post(format!("http://{other}/_provider/sendgrid/v3/mail/send"))
            .body("{}")
            .send()
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = prom_query(
            prom.port,
            "count(count_over_time(up{job=\"vigil\"}[1m]) >= 6 and up == 1)",
        )
        .await;
        if up[0]["value"][1] == "2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not scrape vigil at {admin}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Counters that moved before the first scrape show no rate: the faults the alert checks
    // below need happen again now, then a few scrapes.
    pool_timeout(running.pg_addr.unwrap()).await;
    page(running.incident_addr.unwrap(), "ObsTestSecond").await;
    let acked = acknowledge_and_resolve(running.incident_addr.unwrap()).await;
    let m = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        obs::sample(&m, "vigil_incident_incidents_acknowledged_total"),
        Some(1.0),
        "{acked}: {m}"
    );
    assert_eq!(
        obs::sample(&m, "vigil_incident_time_to_acknowledge_seconds_count"),
        Some(1.0),
        "{m}"
    );
    assert!(obs::sample(&m, "vigil_incident_incidents_resolved_total").is_some_and(|v| v >= 1.0));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut empty = Vec::new();
    let queries = obs::panel_queries();
    for q in &queries {
        let expr = substitute(&q.expr);
        let result = prom_query(prom.port, &expr).await;
        let allowed = NO_DATA_ALLOWED.iter().any(|(e, _)| *e == q.expr);
        if !obs::has_data(&result) && !allowed {
            empty.push(format!(
                "{} panel {} `{}` {}: {expr} -> {result}",
                q.dashboard, q.panel_id, q.title, q.ref_id
            ));
        }
    }
    // Template variables: their selectors must match series too.
    for (what, sel) in obs::variable_queries() {
        let result = prom_query(prom.port, &format!("count({})", substitute(&sel))).await;
        if !obs::has_data(&result) {
            empty.push(format!("{what}: {sel}"));
        }
    }
    // The faults above meet these alerts' conditions (before their `for:`): their expressions,
    // evaluated on the real series, must return the faulty instance.
    let exprs: std::collections::BTreeMap<String, String> = obs::rule_exprs().into_iter().collect();
    for alert in [
        "VigilRedisUnreachable",
        "VigilSignalDeliveryFailing",
        "VigilPgPoolSaturated",
        "VigilNotificationsFailing",
    ] {
        let result = prom_query(prom.port, &exprs[alert]).await;
        if !obs::has_data(&result) {
            empty.push(format!(
                "alert {alert}: condition not met by its fault: {}",
                exprs[alert]
            ));
        }
    }
    // Every alert rule evaluates without error in a real Prometheus.
    let rules: Value = reqwest::get(format!("http://127.0.0.1:{}/api/v1/rules", prom.port))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut evaluated = 0;
    for g in rules["data"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            evaluated += 1;
            assert_ne!(r["health"], "err", "rule {}: {}", r["name"], r["lastError"]);
        }
    }
    assert!(evaluated >= 5, "rules not loaded: {rules}");

    stop.store(true, Ordering::Relaxed);
    let _ = load.await;
    drop(prom);
    drop(pinned);
    running.stop().await.unwrap();
    dead_redis.stop().await.unwrap();
    assert!(
        empty.is_empty(),
        "{} problems ({} panel queries):\n{}",
        empty.len(),
        queries.len(),
        empty.join("\n")
    );
    println!(
        "prometheus: {} panel queries returned data, {evaluated} rules evaluated",
        queries.len()
    );
}
