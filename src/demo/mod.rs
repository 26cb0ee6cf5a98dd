//! `vigil demo`: the whole story in one command.
//!
//! Starts a throwaway PostgreSQL (and Redis for the cache when `redis-server` is installed; the
//! in-memory cache otherwise) from the system binaries, seeds the sample CRM, starts the
//! provider simulators, Vigil itself (pg proxy, http proxy, incident service with a SQLite store,
//! all in this process), the CRM (its database URL is Vigil's pg proxy, its provider calls go
//! through Vigil's gateway, its webhooks arrive through Vigil's reverse proxy) and a traffic
//! generator; then runs failure scenarios one after another and prints each incident as it opens
//! and resolves, with its likely layer. Ctrl-C stops everything and removes what it created.
//!
//! - [`scenario`]: the scenarios and the faults they inject.
//! - [`setup`]: the generated Vigil configuration and incident rules tuned for a short demo.

pub mod scenario;
mod setup;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use vigil_democrm::{App, AppConfig, Scale, SimConfig, Simulators, Traffic, TrafficConfig};
use vigil_incident::model::{Incident, IncidentState, Severity};
use vigil_incident::store::incidents::IncidentFilter;
use vigil_testkit::{PgServer, RedisServer, free_port};

pub use scenario::Scenario;

/// `vigil demo` options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub scenarios: Vec<Scenario>,
    /// Total time for the scenarios, seconds (shared equally; at least 25 s each).
    pub duration: u64,
    /// Keep the demo's folder (database, config, logs) and print where it is.
    pub keep: bool,
    /// Data volume: the full demo (100k contacts, 1M activities) or a small one.
    pub small: bool,
}

/// What a finished demo saw, per scenario: the incidents it opened, reopened or added evidence to.
#[derive(Debug, Default)]
pub struct DemoReport {
    pub opened: BTreeMap<Scenario, Vec<Incident>>,
    /// Seconds from a scenario's fault to the first incident it opened or joined.
    pub first_after: BTreeMap<Scenario, f64>,
    /// Incidents opened while no scenario ran (warm-up, recovery): noise.
    pub unattributed: Vec<Incident>,
}

fn say(msg: impl AsRef<str>) {
    println!("{}", msg.as_ref());
}

/// Run the demo; returns when the scenarios are done or Ctrl-C is pressed.
pub async fn run(opts: DemoOptions) -> anyhow::Result<DemoReport> {
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            println!("\nstopping (Ctrl-C)...");
            stop.cancel();
        });
    }
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("vigil-demo-")
        .tempdir()
        .context("create the demo folder")?;

    say("== starting a throwaway PostgreSQL");
    let pg = tokio::task::spawn_blocking(PgServer::start_new)
        .await?
        .context("start PostgreSQL (needs the Debian package `postgresql`)")?;
    pg.psql("postgres", "CREATE DATABASE crm")
        .context("create the CRM database")?;
    // Redis for the cache when `redis-server` is installed; the in-memory cache otherwise.
    let redis = if vigil_testkit::which("redis-server").is_some() {
        say("== starting a throwaway Redis (the cache's backend)");
        Some(
            tokio::task::spawn_blocking(RedisServer::start_new)
                .await?
                .context("start Redis")?,
        )
    } else {
        None
    };
    let direct_url = pg.url("crm");
    let scale = if opts.small {
        Scale::tiny()
    } else {
        Scale::demo()
    };
    say(format!(
        "== seeding the CRM: {} contacts, {} activities",
        scale.contacts, scale.activities
    ));
    let seeded = vigil_democrm::seed(&direct_url, scale)
        .await
        .context("seed the CRM")?;
    say(format!("   seeded in {:.1} s", seeded.total.as_secs_f64()));

    let ports = setup::Ports::pick();
    let sims = Simulators::new(
        SimConfig::default().with_webhook_base(&format!("http://127.0.0.1:{}", ports.http)),
    )?;
    let sim_listener = tokio::net::TcpListener::bind(("127.0.0.1", ports.sim)).await?;
    let sim_task = tokio::spawn({
        let sims = sims.clone();
        let stop = stop.clone();
        async move { sims.serve(sim_listener, stop.cancelled_owned()).await }
    });

    say("== starting Vigil (pg proxy, http proxy, incident service)");
    let redis_url = redis.as_ref().map(RedisServer::url);
    let config_text =
        setup::vigil_config(&ports, pg.port(), &sims, dir.path(), redis_url.as_deref());
    std::fs::write(dir.path().join("vigil.toml"), &config_text)?;
    setup::write_rules(&dir.path().join("rules"))?;
    setup::write_cache_rules(dir.path())?;
    setup::write_query_rules(dir.path())?;
    say(match &redis {
        Some(r) => format!(
            "   cache backend: redis (throwaway redis-server on 127.0.0.1:{})",
            r.port()
        ),
        None => "   cache backend: memory (redis-server not found)".to_string(),
    });
    let config = crate::config::Config::parse(&config_text, &|_| None)?;
    config.validate(dir.path())?;
    let vigil = crate::run::start(&config, dir.path()).await?;
    let incidents = vigil
        .incident
        .clone()
        .context("the demo config runs the incident service")?;

    say("== starting the CRM and its traffic");
    let mut crm_config = AppConfig::new(
        format!("postgres://postgres@127.0.0.1:{}/crm", ports.pg),
        &format!("http://127.0.0.1:{}", ports.sim),
    )
    .with_gateway(&format!("http://127.0.0.1:{}", ports.http));
    crm_config.twilio_status_callback_url =
        Some(format!("http://127.0.0.1:{}/webhooks/twilio", ports.http));
    let crm_listener = tokio::net::TcpListener::bind(("127.0.0.1", ports.crm)).await?;
    let crm_task = tokio::spawn(App::serve(
        crm_listener,
        crm_config,
        stop.clone().cancelled_owned(),
    ));
    let mut traffic_cfg = TrafficConfig::new(format!("http://127.0.0.1:{}", ports.http), scale);
    traffic_cfg.rate_per_sec = 40.0;
    let traffic = Traffic::new(traffic_cfg)?;
    let counters = traffic.counters();
    let traffic_task = tokio::spawn(traffic.run(stop.clone().cancelled_owned()));

    say(format!(
        "\n   console:  http://127.0.0.1:{}/\n   metrics:  http://{}/metrics\n   queries:  http://{}/api/queries\n   CRM via Vigil: http://127.0.0.1:{}/  (database through Vigil: postgres://postgres@127.0.0.1:{}/crm)\n",
        ports.incident, vigil.admin_addr, vigil.admin_addr, ports.http, ports.pg
    ));

    let mut report = DemoReport::default();
    let slot = Duration::from_secs((opts.duration / opts.scenarios.len().max(1) as u64).max(25));
    let store = incidents.service.store().clone();
    let mut seen: BTreeMap<String, IncidentState> = BTreeMap::new();
    let warmup = Duration::from_secs(10);
    say(format!(
        "== warming up for {} s (normal traffic)",
        warmup.as_secs()
    ));
    let (noise, _) = watch(&stop, warmup, &store, &mut seen, &counters, &vigil, None).await;
    report.unattributed.extend(noise);

    for sc in &opts.scenarios {
        if stop.is_cancelled() {
            break;
        }
        say(format!("\n== scenario {}: {}", sc.name(), sc.describe()));
        let fault = sc.inject(&sims, &pg).await?;
        let (opened, first) =
            watch(&stop, slot, &store, &mut seen, &counters, &vigil, Some(*sc)).await;
        fault.clear(&sims).await;
        report.opened.insert(*sc, opened);
        if let Some(d) = first {
            report.first_after.insert(*sc, d.as_secs_f64());
        }
    }
    if !stop.is_cancelled() {
        say("\n== faults cleared; watching recovery for 20 s");
        let (noise, _) = watch(
            &stop,
            Duration::from_secs(20),
            &store,
            &mut seen,
            &counters,
            &vigil,
            None,
        )
        .await;
        report.unattributed.extend(noise);
    }

    say("\n== summary");
    for sc in &opts.scenarios {
        let opened = report.opened.get(sc).map(Vec::as_slice).unwrap_or(&[]);
        // The incident with the expected layer if there is one, else the first.
        let pick = opened
            .iter()
            .find(|i| i.layer == sc.expected_layer())
            .or_else(|| opened.first());
        match pick {
            Some(i) => say(format!(
                "   {:<13} incident \"{}\" (likely layer: {}) {}, after {:.0} s; {} other incidents ({} critical)",
                sc.name(),
                i.title,
                i.layer.as_str(),
                if i.layer == sc.expected_layer() {
                    "as expected"
                } else {
                    "(unexpected layer)"
                },
                report.first_after.get(sc).copied().unwrap_or(f64::NAN),
                opened.len() - 1,
                opened
                    .iter()
                    .filter(|o| o.id != i.id && o.severity == Severity::Critical)
                    .count()
            )),
            None => say(format!(
                "   {:<13} no incident opened or updated",
                sc.name()
            )),
        }
    }
    say(format!(
        "   incidents outside scenarios: {} ({} critical)",
        report.unattributed.len(),
        report
            .unattributed
            .iter()
            .filter(|o| o.severity == Severity::Critical)
            .count()
    ));
    say(format!(
        "   total time {:.0} s",
        started.elapsed().as_secs_f64()
    ));

    stop.cancel();
    let _ = traffic_task.await;
    let _ = crm_task.await;
    vigil.stop().await?;
    let _ = sim_task.await;
    drop(redis);
    drop(pg);
    if opts.keep {
        let kept: PathBuf = dir.keep();
        say(format!("   kept the demo folder: {}", kept.display()));
    }
    Ok(report)
}

/// Print progress and incident changes for `d`; returns the incidents opened (or, during a
/// scenario, joined by new findings) meanwhile and how long until the first one.
async fn watch(
    stop: &CancellationToken,
    d: Duration,
    store: &vigil_incident::Store,
    seen: &mut BTreeMap<String, IncidentState>,
    traffic: &vigil_democrm::TrafficCounters,
    vigil: &crate::run::Running,
    scenario: Option<Scenario>,
) -> (Vec<Incident>, Option<Duration>) {
    let begin = Instant::now();
    let end = begin + d;
    let slot_start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut opened = Vec::new();
    let mut first = None;
    let mut last_progress = Instant::now();
    while Instant::now() < end && !stop.is_cancelled() {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if let Ok(list) = store
            .list_incidents(&IncidentFilter {
                limit: Some(100),
                ..Default::default()
            })
            .await
        {
            for i in list {
                let prev = seen.insert(i.id.clone(), i.state);
                if prev == Some(i.state) {
                    // An incident already open that this scenario's findings joined (a new
                    // finding on its timeline since the scenario started).
                    if scenario.is_some()
                        && i.state == IncidentState::Open
                        && i.updated_ms >= slot_start_ms
                        && !opened.iter().any(|o: &Incident| o.id == i.id)
                        && store.timeline(&i.id).await.is_ok_and(|t| {
                            t.iter().any(|e| {
                                e.at_ms >= slot_start_ms
                                    && matches!(e.kind.as_str(), "finding" | "escalated")
                            })
                        })
                    {
                        first.get_or_insert(begin.elapsed());
                        say(format!(
                            "   [incident updated] {} | layer: {} | new evidence",
                            i.title,
                            i.layer.as_str()
                        ));
                        opened.push(i);
                    }
                    continue;
                }
                let verb = match (prev, i.state) {
                    (None, _) => "OPENED",
                    (_, IncidentState::Resolved) => "resolved",
                    (_, IncidentState::Acknowledged) => "acknowledged",
                    (Some(_), IncidentState::Open) => "reopened",
                };
                say(format!(
                    "   [incident {verb}] {} | layer: {} | severity: {} | channel: {}",
                    i.title,
                    i.layer.as_str(),
                    i.severity.as_str(),
                    i.channel
                ));
                // Opened or reopened while a scenario runs: this scenario's doing.
                if matches!(i.state, IncidentState::Open) {
                    first.get_or_insert(begin.elapsed());
                    opened.push(i);
                }
            }
        }
        if last_progress.elapsed() >= Duration::from_secs(5) {
            last_progress = Instant::now();
            let r = traffic.snapshot();
            let heavy = vigil
                .queries
                .as_ref()
                .map(|q| {
                    q.snapshot(vigil_proxy::stats::api::SortBy::TotalTime)
                        .into_iter()
                        .take(1)
                        .map(|r| {
                            format!(
                                "{:.0} ms total, p95 {:.0} ms: {}",
                                r.total_time_ms,
                                r.p95_ms,
                                truncate(&r.query, 60)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("")
                })
                .unwrap_or_default();
            say(format!(
                "   traffic: {} requests, {} errors | heaviest statement: {heavy}",
                r.sent(),
                r.errors()
            ));
        }
    }
    (opened, first)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}...", s.chars().take(n).collect::<String>())
    }
}

/// Ports the demo's servers use (picked free at start).
pub(crate) fn free() -> u16 {
    free_port()
}
