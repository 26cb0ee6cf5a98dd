//! Incident service benchmark (issue 7), two modes:
//!
//! - `ingest [SIGNALS] [--store URL] [--rules DIR]`: a realistic mixed signal stream (email and
//!   SMS webhooks, gateway sends and payment outcomes across providers and failure classes,
//!   HTTP route windows, pg query-statistics buckets, a SendGrid blocked-IP spike in the middle)
//!   fed through [`IncidentService::ingest`] in batches of 256 (the pump's `batch_max`, i.e. the
//!   same call `vigil run`'s in-process transport makes: store insert, then detection), with
//!   [`IncidentService::tick`] (correlation, incident persistence, outbox) every 10 s of signal
//!   time (the default `tick_secs`). The store is SQLite in a file, as `vigil run` defaults.
//!   Run it on one core (`taskset -c 1`); it prints signals/s of process CPU time and of wall
//!   time, and the incidents opened (proof that detection and correlation ran).
//! - `page --intake URL --receiver-port PORT [--warmup SECS]`: in real time, normal traffic to a
//!   running `vigil run` (`POST URL/v1/signals` once a second), then a systemic spike (SendGrid
//!   blocked-IP bounces); a tiny HTTP receiver on PORT (the Slack webhook URL of the shipped
//!   routes) takes the page. Prints seconds from the first failing signal to the page.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use vigil_incident::correlate::ChangeKind;
use vigil_incident::{IncidentConfig, IncidentService};
use vigil_signal::{Channel, Latency, Outcome, QueryStats, Scope, Signal, Source};

/// SplitMix64: small and deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

const EMAIL: [&str; 2] = ["sendgrid", "mailgun"];
const SMS: [&str; 2] = ["twilio", "vonage"];
const PAY: [&str; 2] = ["stripe", "adyen"];
const ROUTES: [&str; 6] = [
    "GET /api/contacts/:id",
    "GET /api/contacts",
    "POST /api/campaigns/:id/send",
    "POST /api/payments",
    "GET /api/deals",
    "POST /webhooks/sendgrid",
];

/// One signal of the mixed stream. `spike`: SendGrid blocks our sending IP.
fn make(rng: &mut Rng, id: String, time: DateTime<Utc>, spike: bool) -> Signal {
    let subject = format!("h:{:016x}", rng.next());
    let roll = rng.below(100);
    match roll {
        // Email delivery webhooks (the most frequent signal).
        0..=34 => {
            let p = EMAIL[rng.below(2) as usize];
            let (outcome, class, code, scope) = if spike && p == "sendgrid" && rng.chance(0.6) {
                (
                    Outcome::Failed,
                    Some("blocked"),
                    Some("5.7.1"),
                    Scope::Sender,
                )
            } else if rng.chance(0.01) {
                (
                    Outcome::Failed,
                    Some("bounce"),
                    Some("5.1.1"),
                    Scope::Recipient,
                )
            } else if rng.chance(0.02) {
                (
                    Outcome::Deferred,
                    Some("deferred"),
                    Some("4.2.2"),
                    Scope::Recipient,
                )
            } else {
                (Outcome::Delivered, None, None, Scope::Recipient)
            };
            let mut s = Signal::new(Source::Webhook, Channel::Email, outcome)
                .with_id(id)
                .with_time(time)
                .with_provider(p)
                .with_scope(scope)
                .with_subject(subject)
                .with_attr("event", "delivered");
            if let Some(c) = class {
                s = s.with_class(c);
            }
            if let Some(c) = code {
                s = s
                    .with_code(c)
                    .with_permanent(Some(outcome == Outcome::Failed));
            }
            s
        }
        // Gateway sends (email and SMS accepted by the provider's API).
        35..=54 => {
            let (ch, p) = if roll < 45 {
                (Channel::Email, EMAIL[rng.below(2) as usize])
            } else {
                (Channel::Sms, SMS[rng.below(2) as usize])
            };
            let lat = 0.05 + (rng.below(200) as f64) / 1000.0;
            Signal::new(Source::ProviderGateway, ch, Outcome::Accepted)
                .with_id(id)
                .with_time(time)
                .with_provider(p)
                .with_scope(Scope::Provider)
                .with_latency(Latency {
                    sum_seconds: lat,
                    max_seconds: lat,
                    p95_seconds: lat,
                })
                .with_attr("gateway_class", "success")
                .with_attr("status", "202")
        }
        // SMS delivery receipts.
        55..=69 => {
            let p = SMS[rng.below(2) as usize];
            let failed = rng.chance(0.015);
            let mut s = Signal::new(
                Source::Webhook,
                Channel::Sms,
                if failed {
                    Outcome::Failed
                } else {
                    Outcome::Delivered
                },
            )
            .with_id(id)
            .with_time(time)
            .with_provider(p)
            .with_scope(Scope::Recipient)
            .with_subject(subject);
            if failed {
                s = s.with_class("unreachable").with_code("30003");
            }
            s
        }
        // Payment outcomes at the gateway: declines (customer), provider errors (rare).
        70..=84 => {
            let p = PAY[rng.below(2) as usize];
            let r = rng.below(1000);
            let (outcome, class, scope) = match r {
                0..=29 => (Outcome::Failed, Some("card_declined"), Scope::Recipient),
                30..=34 => (
                    Outcome::Failed,
                    Some("insufficient_funds"),
                    Scope::Recipient,
                ),
                35 => (Outcome::Failed, Some("api_error"), Scope::Provider),
                _ => (Outcome::Succeeded, None, Scope::Provider),
            };
            let mut s = Signal::new(Source::ProviderGateway, Channel::Payment, outcome)
                .with_id(id)
                .with_time(time)
                .with_provider(p)
                .with_scope(scope)
                .with_attr(
                    "gateway_class",
                    if class.is_some() {
                        "client_error"
                    } else {
                        "success"
                    },
                )
                .with_attr("status", if class.is_some() { "402" } else { "200" });
            if let Some(c) = class {
                s = s.with_class(c).with_code(c);
            }
            s
        }
        // HTTP ingress: per-route windows (5 s, 20 requests each).
        85..=97 => {
            let route = ROUTES[rng.below(ROUTES.len() as u64) as usize];
            let errors = rng.chance(0.05);
            let mut s = Signal::new(
                Source::HttpIngress,
                Channel::Http,
                if errors {
                    Outcome::Failed
                } else {
                    Outcome::Succeeded
                },
            )
            .with_id(id)
            .with_time(time)
            .with_window(5)
            .with_scope(Scope::Service)
            .with_subject(route)
            .with_count(if errors { 1 } else { 20 })
            .with_latency(Latency {
                sum_seconds: 0.9,
                max_seconds: 0.2,
                p95_seconds: 0.12,
            })
            .with_attr("route", route);
            if errors {
                s = s.with_class("http_5xx").with_permanent(Some(false));
            }
            s
        }
        // pg proxy query-statistics buckets (merged into the minute buckets by the store).
        _ => {
            let fp = format!("{:016x}", rng.below(40));
            Signal::new(Source::PgProxy, Channel::Db, Outcome::Succeeded)
                .with_id(id)
                .with_time(time)
                .with_window(10)
                .with_class("query_stats")
                .with_subject(fp.clone())
                .with_count(50)
                .with_query(QueryStats {
                    fingerprint: fp,
                    query: "SELECT id, name, email FROM contacts WHERE owner_id = $1 ORDER BY updated_at DESC LIMIT $2".into(),
                    database: "crm".into(),
                    role: "crm".into(),
                    calls: 50,
                    rows: 1000,
                    total_seconds: 0.2,
                    min_seconds: 0.001,
                    max_seconds: 0.02,
                    p50_seconds: 0.003,
                    p95_seconds: 0.01,
                    p99_seconds: 0.015,
                    kind: Some("select".into()),
                    tables: vec!["contacts".into()],
                    ..QueryStats::default()
                })
        }
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// User + system CPU time of this process, seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

async fn ingest(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .and_then(|a| a.parse().ok())
        .unwrap_or(500_000);
    let db = std::env::temp_dir().join(format!("vigil-bench-incident-{}.db", std::process::id()));
    let store = arg(args, "--store").unwrap_or_else(|| format!("sqlite://{}", db.display()));
    let rules = arg(args, "--rules").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../rules/incident")),
        PathBuf::from,
    );
    let config = IncidentConfig {
        listen: "127.0.0.1:0".into(),
        store: store.clone(),
        rules,
        ..IncidentConfig::default()
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let svc = IncidentService::new(config, &mut registry).await?;

    // The stream covers 20 minutes of signal time ending now (the spike in minutes 12-14),
    // generated before the clock starts.
    let span_ms: i64 = 20 * 60_000;
    let start_ms = Utc::now().timestamp_millis() - span_ms;
    let mut rng = Rng(7);
    let run = std::process::id();
    let signals: Vec<Signal> = (0..n)
        .map(|i| {
            let t = start_ms + (i as i64 * span_ms) / n as i64;
            let minute = (t - start_ms) / 60_000;
            let time = Utc
                .timestamp_millis_opt(t)
                .single()
                .unwrap_or_else(Utc::now);
            make(
                &mut rng,
                format!("bench-{run}-{i}"),
                time,
                (12..14).contains(&minute),
            )
        })
        .collect();
    let tick_every_ms = 10_000;
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut next_tick = start_ms + tick_every_ms;
    let mut stored = 0;
    let mut opened = 0;
    for batch in signals.chunks(256) {
        let report = svc.ingest(batch).await?;
        stored += report.stored;
        let last = batch.last().map_or(0, |s| s.time.timestamp_millis());
        while last >= next_tick {
            let r = svc.tick(next_tick).await?;
            opened += r
                .changes
                .iter()
                .filter(|(_, k)| *k == ChangeKind::Opened)
                .count();
            next_tick += tick_every_ms;
        }
    }
    let r = svc.tick(next_tick).await?;
    opened += r
        .changes
        .iter()
        .filter(|(_, k)| *k == ChangeKind::Opened)
        .count();
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    svc.store().close().await;
    if arg(args, "--store").is_none() {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
    }
    println!("signals {n} stored {stored} incidents_opened {opened}");
    println!("wall {wall:.3} s cpu {cpu:.3} s");
    println!("ingest per cpu-second {:.0} signals/s", n as f64 / cpu);
    println!("ingest per wall-second {:.0} signals/s", n as f64 / wall);
    Ok(())
}

/// One HTTP/1.1 POST with `Connection: close`; returns the status code.
fn post(addr: &str, path: &str, body: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

/// Accept HTTP requests on `listener`, answer 200, report each request's arrival.
fn receiver(listener: TcpListener, tx: mpsc::Sender<(Instant, String)>) {
    for conn in listener.incoming() {
        let Ok(mut c) = conn else { continue };
        let at = Instant::now();
        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = vec![0u8; 65536];
        let mut got = Vec::new();
        // Read headers and the body (by Content-Length).
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => got.extend_from_slice(&buf[..k]),
            }
            let text = String::from_utf8_lossy(&got);
            if let Some(h) = text.find("\r\n\r\n") {
                let len = text[..h]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .and_then(|v| v.trim().parse::<usize>().ok())
                    })
                    .unwrap_or(0);
                if got.len() >= h + 4 + len {
                    break;
                }
            }
        }
        let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        let first_line = String::from_utf8_lossy(&got)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        if tx.send((at, first_line)).is_err() {
            return;
        }
    }
}

fn page(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let intake = arg(args, "--intake").ok_or("--intake URL is required")?;
    let addr = intake
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let port: u16 = arg(args, "--receiver-port")
        .ok_or("--receiver-port is required")?
        .parse()?;
    let warmup: u64 = arg(args, "--warmup").map_or(Ok(20), |v| v.parse())?;
    let limit: u64 = arg(args, "--limit").map_or(Ok(120), |v| v.parse())?;
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || receiver(listener, tx));

    let mut rng = Rng(11);
    let mut seq = 0u64;
    let run = std::process::id();
    let mut first_failure: Option<Instant> = None;
    let began = Instant::now();
    // 200 signals a second of the mixed stream; the spike starts after the warm-up.
    loop {
        let second = began.elapsed().as_secs();
        let spike = second >= warmup;
        let now = Utc::now();
        let batch: Vec<Signal> = (0..200)
            .map(|_| {
                seq += 1;
                make(&mut rng, format!("page-{run}-{seq}"), now, spike)
            })
            .collect();
        let failing = batch.iter().any(|s| s.class.as_deref() == Some("blocked"));
        let body = serde_json::to_string(&batch)?;
        let sent_at = Instant::now();
        let status = post(&addr, "/v1/signals", &body)?;
        if status != 200 {
            return Err(format!("POST /v1/signals answered {status}").into());
        }
        if failing && first_failure.is_none() {
            first_failure = Some(sent_at);
            eprintln!("spike started at {:.1} s", began.elapsed().as_secs_f64());
        }
        while let Ok((at, line)) = rx.try_recv() {
            match first_failure {
                Some(f) if at >= f => {
                    let secs = at.duration_since(f).as_secs_f64();
                    eprintln!("page received: {line}");
                    println!("first failure to page {secs:.1} s");
                    return Ok(());
                }
                _ => eprintln!("notification before the spike (ignored): {line}"),
            }
        }
        if began.elapsed().as_secs() > warmup + limit {
            return Err(format!("no page within {limit} s of the spike").into());
        }
        let next = began + Duration::from_secs(second + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ingest") => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Into::into)
            .and_then(|rt| rt.block_on(ingest(&args))),
        Some("page") => page(&args),
        _ => Err("usage: vigil-bench-incident ingest [SIGNALS] [--store URL] [--rules DIR] | page --intake URL --receiver-port PORT [--warmup SECS] [--limit SECS]".into()),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
