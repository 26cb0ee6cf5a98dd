//! Deterministic generators of recorded signal streams for the golden replay scenarios.
#![allow(dead_code)]

pub mod receiver;

use chrono::{DateTime, TimeZone, Utc};
use vigil_signal::{Channel, Latency, Outcome, QueryStats, Scope, Signal, Source};

/// Start of every scenario: Monday 2026-11-02 00:00 UTC.
pub const T0: i64 = 1_793_577_600_000;
pub const MIN: i64 = 60_000;

pub fn at(minute: i64, second: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(T0 + minute * MIN + second * 1000)
        .single()
        .expect("valid time")
}

/// SplitMix64: small, deterministic, good enough for noise.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Poisson-distributed count with mean `lambda` (Knuth; small lambdas) or normal approx.
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda > 50.0 {
            let u1 = self.unit().max(1e-12);
            let u2 = self.unit();
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            return (lambda + z * lambda.sqrt()).round().max(0.0) as u64;
        }
        let l = (-lambda).exp();
        let (mut k, mut p) = (0u64, 1.0);
        loop {
            p *= self.unit();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }
}

/// A stream under construction.
#[derive(Default)]
pub struct Stream {
    pub signals: Vec<Signal>,
    seq: u64,
}

impl Stream {
    fn id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}-{}", self.seq)
    }

    /// Successful outcomes over one minute, as a pre-aggregated count.
    pub fn ok(
        &mut self,
        m: i64,
        source: Source,
        channel: Channel,
        provider: Option<&str>,
        outcome: Outcome,
        count: u64,
    ) {
        if count == 0 {
            return;
        }
        let mut s = Signal::new(source, channel, outcome)
            .with_id(self.id("ok"))
            .with_time(at(m, 0))
            .with_window(60)
            .with_count(count);
        if let Some(p) = provider {
            s = s.with_provider(p);
        }
        self.signals.push(s);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn fail(
        &mut self,
        m: i64,
        sec: i64,
        source: Source,
        channel: Channel,
        provider: Option<&str>,
        class: &str,
        code: &str,
        scope: Scope,
        subject: &str,
        count: u64,
    ) -> &mut Signal {
        let mut s = Signal::new(source, channel, Outcome::Failed)
            .with_id(self.id("f"))
            .with_time(at(m, sec))
            .with_class(class)
            .with_code(code)
            .with_scope(scope)
            .with_subject(subject)
            .with_count(count);
        if let Some(p) = provider {
            s = s.with_provider(p);
        }
        self.signals.push(s);
        self.signals.last_mut().expect("just pushed")
    }

    /// One minute of HTTP traffic on a route: ok requests with latency, and `errors` 5xx.
    pub fn http(&mut self, m: i64, route: &str, ok: u64, mean_latency: f64, errors: u64) {
        let s = Signal::new(Source::HttpIngress, Channel::Http, Outcome::Succeeded)
            .with_id(self.id("http"))
            .with_time(at(m, 0))
            .with_window(60)
            .with_count(ok.max(1))
            .with_attr("route", route)
            .with_latency(Latency {
                sum_seconds: mean_latency * ok.max(1) as f64,
                max_seconds: mean_latency * 4.0,
                p95_seconds: mean_latency * 2.5,
            });
        self.signals.push(s);
        if errors > 0 {
            let s = Signal::new(Source::HttpIngress, Channel::Http, Outcome::Failed)
                .with_id(self.id("http5"))
                .with_time(at(m, 30))
                .with_window(60)
                .with_class("http_5xx")
                .with_code("504")
                .with_count(errors)
                .with_attr("route", route)
                .with_attr("trace_id", format!("{:032x}", m));
            self.signals.push(s);
        }
    }

    /// A heavy query turning heavy (or staying heavy) in minute `m`.
    pub fn heavy_query(&mut self, m: i64, fingerprint: &str, table: &str, route: &str, p95: f64) {
        let stats = QueryStats {
            fingerprint: fingerprint.into(),
            query: format!("SELECT * FROM {table} WHERE lower(email) = $1"),
            database: "crm".into(),
            role: "app".into(),
            calls: 120,
            total_seconds: 120.0 * p95 * 0.6,
            p95_seconds: p95,
            tables: vec![table.into()],
            tags: [("route".to_string(), route.to_string())]
                .into_iter()
                .collect(),
            kind: Some("read".into()),
            ..QueryStats::default()
        };
        let s = Signal::new(Source::PgProxy, Channel::Db, Outcome::Firing)
            .with_id(self.id("hq"))
            .with_time(at(m, 5))
            .with_window(60)
            .with_class("heavy_query")
            .with_subject(fingerprint)
            .with_attr("fingerprint", fingerprint)
            .with_query(stats);
        self.signals.push(s);
    }

    /// JSON lines, as `vigil incident replay` reads them.
    pub fn jsonl(&self) -> String {
        let mut out = String::new();
        for s in &self.signals {
            out.push_str(&s.to_json());
            out.push('\n');
        }
        out
    }
}

/// Traffic level over the day: 0.25 at night, 1.0 in the afternoon.
pub fn diurnal(m: i64) -> f64 {
    let hour = (m / 60) % 24;
    let x = (hour as f64 - 15.0) / 24.0 * 2.0 * std::f64::consts::PI;
    0.625 + 0.375 * x.cos()
}

/// Normal email traffic through SendGrid for minute `m`: deliveries, ~1% recipient bounces
/// (some retried to the same dead mailbox), rare deferrals.
pub fn email_normal(st: &mut Stream, rng: &mut Rng, m: i64, per_minute: f64) {
    let n = rng.poisson(per_minute * diurnal(m));
    let bounces = rng.poisson(n as f64 * 0.01);
    st.ok(
        m,
        Source::Webhook,
        Channel::Email,
        Some("sendgrid"),
        Outcome::Delivered,
        n.saturating_sub(bounces),
    );
    for i in 0..bounces {
        let mailbox = rng.next() % 5000;
        st.fail(
            m,
            (i % 60) as i64,
            Source::Webhook,
            Channel::Email,
            Some("sendgrid"),
            "bounce",
            "5.1.1",
            Scope::Recipient,
            &format!("h:{mailbox:x}"),
            1,
        );
    }
    // A stray sender-side rejection now and then (one every ~8 hours).
    if rng.unit() < 1.0 / 480.0 {
        st.fail(
            m,
            17,
            Source::Webhook,
            Channel::Email,
            Some("sendgrid"),
            "blocked",
            "5.7.1",
            Scope::Sender,
            "h:stray",
            1,
        );
    }
}

/// Normal SMS through Twilio at `per_hour` messages an hour: ~3% undelivered to dead handsets.
pub fn sms_normal(st: &mut Stream, rng: &mut Rng, m: i64, per_hour: f64) {
    let n = rng.poisson(per_hour / 60.0);
    for i in 0..n {
        let handset = rng.next() % 2000;
        if rng.unit() < 0.03 {
            st.fail(
                m,
                (i * 7 % 60) as i64,
                Source::Webhook,
                Channel::Sms,
                Some("twilio"),
                "undelivered",
                "30003",
                Scope::Recipient,
                &format!("h:{handset:x}"),
                1,
            );
        } else {
            st.ok(
                m,
                Source::Webhook,
                Channel::Sms,
                Some("twilio"),
                Outcome::Delivered,
                1,
            );
        }
    }
}

/// Normal card payments through Stripe: ~5% declines (recipient-scoped), rare provider errors.
pub fn payments_normal(st: &mut Stream, rng: &mut Rng, m: i64, per_minute: f64) {
    let n = rng.poisson(per_minute * diurnal(m));
    let declines = rng.poisson(n as f64 * 0.05);
    st.ok(
        m,
        Source::ProviderGateway,
        Channel::Payment,
        Some("stripe"),
        Outcome::Succeeded,
        n.saturating_sub(declines),
    );
    for i in 0..declines {
        let card = rng.next() % 10_000;
        st.fail(
            m,
            (i % 60) as i64,
            Source::Webhook,
            Channel::Payment,
            Some("stripe"),
            "card_declined",
            "insufficient_funds",
            Scope::Recipient,
            &format!("h:{card:x}"),
            1,
        );
    }
    if rng.unit() < 1.0 / 1440.0 {
        st.fail(
            m,
            40,
            Source::ProviderGateway,
            Channel::Payment,
            Some("stripe"),
            "provider_5xx",
            "502",
            Scope::Provider,
            "stripe",
            1,
        )
        .attrs
        .insert("route".into(), "/api/payments".into());
    }
}

/// Normal HTTP traffic on a few routes, with a rare 5xx and latency jitter.
pub fn http_normal(st: &mut Stream, rng: &mut Rng, m: i64) {
    for (route, rpm, lat) in [
        ("GET /api/contacts", 300.0, 0.04),
        ("POST /api/automations/run", 40.0, 0.12),
        ("POST /api/payments", 30.0, 0.3),
    ] {
        let n = rng.poisson(rpm * diurnal(m));
        let errors = if rng.unit() < 0.01 { 1 } else { 0 };
        let jitter = 0.8 + 0.4 * rng.unit();
        st.http(m, route, n, lat * jitter, errors);
    }
}

/// Normal automation runs: successes, and a failed step about once an hour.
pub fn automation_normal(st: &mut Stream, rng: &mut Rng, m: i64) {
    let n = rng.poisson(20.0 * diurnal(m));
    st.ok(
        m,
        Source::App,
        Channel::Automation,
        None,
        Outcome::Succeeded,
        n,
    );
    if rng.unit() < 1.0 / 60.0 {
        st.fail(
            m,
            12,
            Source::App,
            Channel::Automation,
            None,
            "step_failed",
            "template_missing",
            Scope::Service,
            "send_campaign",
            1,
        );
    }
}
