//! The `[http]` configuration section: serde-deserialized raw values, checked by
//! [`HttpConfig::validate`] with errors that name the offending field.
//!
//! ```toml
//! [http]
//! listen = "0.0.0.0:8080"
//! upstream = ["http://10.0.0.5:3000", "http://10.0.0.6:3000"]
//! trusted_cidrs = ["10.0.0.0/8"]
//! pii_hash_key = "${VIGIL_PII_KEY}"     # same on every replica
//! health_check_path = "/healthz"
//! [http.timeouts]
//! connect_ms = 2000
//! per_try_ms = 15000
//! total_ms = 30000
//! [http.limits]
//! max_body_bytes = 104857600
//! [[http.providers]]
//! name = "sendgrid"
//! upstream = "https://api.sendgrid.com"
//! channel = "email"
//! [[http.webhooks]]
//! path = "/webhooks/stripe"
//! provider = "stripe"
//! secret = "${STRIPE_WEBHOOK_SECRET}"
//! [[http.webhooks]]
//! path = "/webhooks/ses"
//! provider = "ses"
//! topic_arns = ["arn:aws:sns:eu-west-1:123456789012:ses-events"]
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::webhook::Provider;

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where the proxy listens (HTTP/1.1 and h2c on one port).
    pub listen: SocketAddr,
    /// CRM upstream instances, `http://host:port` (passive ejection).
    pub upstream: Vec<String>,
    /// How a request picks among the healthy upstream instances.
    pub balance: Balance,
    /// `[[http.providers]]`: the provider gateway routes.
    pub providers: Vec<ProviderRoute>,
    /// `[[http.webhooks]]`: the webhook taps.
    pub webhooks: Vec<WebhookRoute>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    /// Peers whose `X-Forwarded-*` and `traceparent` headers are trusted.
    pub trusted_cidrs: Vec<IpNet>,
    /// Serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) instead of plain HTTP/h2c.
    pub tls: Option<TlsListen>,
    /// Extra PEM CA certificates trusted for provider TLS (besides the webpki roots).
    pub ca_file: Option<PathBuf>,
    /// Key for hashing emails and phone numbers in signals (same on every replica).
    pub pii_hash_key: Option<String>,
    /// Extra attempts for idempotent requests with an empty body.
    pub retries: u32,
    /// Consecutive connection failures before an upstream instance is ejected.
    pub eject_after_failures: u32,
    /// How long an ejected instance is skipped, in milliseconds.
    pub eject_ms: u64,
    /// Distinct route templates kept for metrics; the rest count as `_other`.
    pub max_routes: usize,
    /// Write the JSON access log (target `vigil::access`).
    pub access_log: bool,
    /// Active health checks: `GET <path>` on every upstream instance (off when unset); a
    /// non-2xx answer or an error takes the instance out until a check passes.
    pub health_check_path: Option<String>,
    pub health_check_interval_ms: u64,
    /// Window over which per-route request/5xx/latency signals are aggregated, seconds.
    pub signal_window_secs: u32,
    /// HTTP event-loop threads: each a single-threaded runtime with its own listening socket
    /// (SO_REUSEPORT when more than one), serving its connections and their upstream
    /// connections without waking another thread. `0` serves on the process's shared runtime.
    /// Default: one per CPU available to the process (at most 64), as nginx's
    /// `worker_processes auto`.
    pub threads: usize,
}

/// One event-loop thread per CPU the process may run on (its affinity mask and cgroup quota),
/// at most 64.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(64))
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            upstream: Vec::new(),
            balance: Balance::RoundRobin,
            providers: Vec::new(),
            webhooks: Vec::new(),
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            trusted_cidrs: Vec::new(),
            tls: None,
            ca_file: None,
            pii_hash_key: None,
            retries: 1,
            eject_after_failures: 3,
            eject_ms: 10_000,
            max_routes: 500,
            access_log: true,
            signal_window_secs: 10,
            health_check_path: None,
            health_check_interval_ms: 5_000,
            threads: default_threads(),
        }
    }
}

/// `[http] balance`: `round_robin` (default) or `least_requests` (the instance with the fewest
/// requests awaiting their response headers; ties rotate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    LeastRequests,
}

/// `[http.tls]`: the listener's certificate chain and key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListen {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `[[http.providers]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderRoute {
    /// `sendgrid`, `twilio`, `stripe`, ... (used in the path and in signals).
    pub name: String,
    /// Path prefix; default `/_provider/<name>`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The provider's base URL, `https://api.sendgrid.com`.
    pub upstream: String,
    /// `email`, `sms` or `payment`.
    pub channel: ProviderChannel,
}

impl ProviderRoute {
    pub fn prefix(&self) -> String {
        self.prefix
            .clone()
            .unwrap_or_else(|| format!("/_provider/{}", self.name))
            .trim_end_matches('/')
            .to_string()
    }
}

/// The business channel of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderChannel {
    Email,
    Sms,
    Payment,
}

impl From<ProviderChannel> for vigil_signal::Channel {
    fn from(c: ProviderChannel) -> Self {
        match c {
            ProviderChannel::Email => vigil_signal::Channel::Email,
            ProviderChannel::Sms => vigil_signal::Channel::Sms,
            ProviderChannel::Payment => vigil_signal::Channel::Payment,
        }
    }
}

/// `[[http.webhooks]]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookRoute {
    /// Exact request path (`/webhooks/stripe`).
    pub path: String,
    pub provider: Provider,
    /// Stripe endpoint secret, Twilio auth token, SendGrid public key (base64 DER), Mailgun
    /// signing key, Postmark `user:password`. Not used by SES.
    #[serde(default)]
    pub secret: String,
    /// SES: the SNS topic ARNs accepted.
    #[serde(default)]
    pub topic_arns: Vec<String>,
    /// Timestamp tolerance (Stripe, SendGrid, Mailgun), seconds; 0 disables.
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
    /// The public base URL providers call (`https://crm.example.com`), for Twilio signatures.
    #[serde(default)]
    pub public_url: Option<String>,
}

impl std::fmt::Debug for WebhookRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRoute")
            .field("path", &self.path)
            .field("provider", &self.provider)
            .field("secret", &"<redacted>")
            .field("topic_arns", &self.topic_arns)
            .field("tolerance_secs", &self.tolerance_secs)
            .field("public_url", &self.public_url)
            .finish()
    }
}

fn default_tolerance() -> u64 {
    300
}

/// `[http.timeouts]`, in milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    pub connect_ms: u64,
    /// Reading a request head from the client.
    pub header_read_ms: u64,
    /// Waiting for the response head of one attempt.
    pub per_try_ms: u64,
    /// All attempts together.
    pub total_ms: u64,
    /// Idle pooled upstream connections.
    pub idle_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 2_000,
            header_read_ms: 10_000,
            per_try_ms: 15_000,
            total_ms: 30_000,
            idle_ms: 60_000,
        }
    }
}

impl Timeouts {
    pub fn connect(&self) -> Duration {
        Duration::from_millis(self.connect_ms)
    }
    pub fn header_read(&self) -> Duration {
        Duration::from_millis(self.header_read_ms)
    }
    pub fn per_try(&self) -> Duration {
        Duration::from_millis(self.per_try_ms)
    }
    pub fn total(&self) -> Duration {
        Duration::from_millis(self.total_ms)
    }
    pub fn idle(&self) -> Duration {
        Duration::from_millis(self.idle_ms)
    }
}

/// `[http.limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Request line plus headers, bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Number of request headers (431 beyond).
    pub max_headers: usize,
    /// Request body, bytes (413 beyond).
    pub max_body_bytes: u64,
    /// Webhook bodies, which the tap reads whole, bytes.
    pub max_webhook_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: 100 * 1024 * 1024,
            max_webhook_body_bytes: 1024 * 1024,
        }
    }
}

/// A configuration value that does not make sense.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("http.{field}: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

impl HttpConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.threads > 64 {
            return Err(err("threads".to_string(), "must be at most 64"));
        }
        for (i, u) in self.upstream.iter().enumerate() {
            let uri: http::Uri = u
                .parse()
                .map_err(|_| err(format!("upstream[{i}]"), "not a URL"))?;
            if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                return Err(err(format!("upstream[{i}]"), "must be http://host:port"));
            }
        }
        let mut prefixes = Vec::new();
        for (i, p) in self.providers.iter().enumerate() {
            let f = |name: &str| format!("providers[{i}].{name}");
            if p.name.is_empty()
                || !p
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(err(f("name"), "must be [A-Za-z0-9_-]+"));
            }
            let uri: http::Uri = p
                .upstream
                .parse()
                .map_err(|_| err(f("upstream"), "not a URL"))?;
            if !matches!(uri.scheme_str(), Some("https") | Some("http")) || uri.host().is_none() {
                return Err(err(f("upstream"), "must be https://host[:port]"));
            }
            let prefix = p.prefix();
            if !prefix.starts_with('/') || prefix.len() < 2 {
                return Err(err(f("prefix"), "must start with / and not be /"));
            }
            if prefixes.contains(&prefix) {
                return Err(err(f("prefix"), "duplicate prefix"));
            }
            prefixes.push(prefix);
        }
        let mut paths = Vec::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            let f = |name: &str| format!("webhooks[{i}].{name}");
            if !w.path.starts_with('/') {
                return Err(err(f("path"), "must start with /"));
            }
            if paths.contains(&&w.path) {
                return Err(err(f("path"), "duplicate path"));
            }
            paths.push(&w.path);
            match w.provider {
                Provider::Ses if w.topic_arns.is_empty() => {
                    return Err(err(f("topic_arns"), "ses needs at least one SNS topic ARN"));
                }
                Provider::Ses => {}
                Provider::Sendgrid => {
                    super::webhook::sendgrid::public_key(&w.secret)
                        .map_err(|e| err(f("secret"), e.to_string()))?;
                }
                _ if w.secret.is_empty() => {
                    return Err(err(f("secret"), "must not be empty"));
                }
                Provider::Postmark if !w.secret.contains(':') => {
                    return Err(err(f("secret"), "postmark expects user:password"));
                }
                _ => {}
            }
        }
        let t = &self.timeouts;
        for (name, v) in [
            ("timeouts.connect_ms", t.connect_ms),
            ("timeouts.header_read_ms", t.header_read_ms),
            ("timeouts.per_try_ms", t.per_try_ms),
            ("timeouts.total_ms", t.total_ms),
            ("timeouts.idle_ms", t.idle_ms),
        ] {
            if v == 0 {
                return Err(err(name, "must be > 0"));
            }
        }
        if t.total_ms < t.per_try_ms {
            return Err(err("timeouts.total_ms", "must be >= timeouts.per_try_ms"));
        }
        let l = &self.limits;
        if l.max_header_bytes < 1024 {
            return Err(err("limits.max_header_bytes", "must be >= 1024"));
        }
        if l.max_headers == 0 {
            return Err(err("limits.max_headers", "must be > 0"));
        }
        if self.max_routes == 0 {
            return Err(err("max_routes", "must be > 0"));
        }
        if let Some(p) = &self.health_check_path
            && (!p.starts_with('/') || p.parse::<http::uri::PathAndQuery>().is_err())
        {
            return Err(err("health_check_path", "must be a path starting with /"));
        }
        if self.health_check_interval_ms < 10 {
            return Err(err("health_check_interval_ms", "must be >= 10"));
        }
        if self.signal_window_secs == 0 {
            return Err(err("signal_window_secs", "must be > 0"));
        }
        if self.eject_after_failures == 0 {
            return Err(err("eject_after_failures", "must be > 0"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_toml() {
        let c = HttpConfig::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.validate().is_ok());
        let c: HttpConfig = toml::from_str(
            r#"
            upstream = ["http://127.0.0.1:3000"]
            trusted_cidrs = ["10.0.0.0/8"]
            [timeouts]
            per_try_ms = 500
            [[providers]]
            name = "sendgrid"
            upstream = "https://api.sendgrid.com"
            channel = "email"
            [[webhooks]]
            path = "/webhooks/stripe"
            provider = "stripe"
            secret = "whsec_x"
            "#,
        )
        .unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(c.providers[0].prefix(), "/_provider/sendgrid");
        assert!(!format!("{c:?}").contains("whsec_x"));
    }

    #[test]
    fn errors_name_the_field() {
        let mut c = HttpConfig {
            upstream: vec!["ftp://x".into()],
            ..HttpConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "upstream[0]");
        c.upstream.clear();
        c.timeouts.total_ms = 1;
        assert_eq!(c.validate().unwrap_err().field, "timeouts.total_ms");
        assert!(toml::from_str::<HttpConfig>("bogus = 1").is_err());
    }
}
