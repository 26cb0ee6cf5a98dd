//! `vigil cache ...`: the `[cache]` section turned into the proxy's [`CacheSettings`], and the
//! operator commands.
//!
//! - `vigil cache flush [--table T] [--database D]`: invalidates everything, one database, or
//!   the entries reading one table. Backend `redis`: straight through Redis (the same
//!   generation bumps a write makes, or a new epoch for everything; the broadcast evicts every
//!   replica's L1), no running Vigil needed. Backend `memory`: asks the running Vigil (admin
//!   API, `POST /api/cache/flush`).
//! - `vigil cache install [--database D]`: installs the NOTIFY triggers that let Vigil follow
//!   writes made outside it (see the README's Cache section), on every `[pg]` database.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigil_proxy::cache::remote::{FlushScope, flush_redis, redis_endpoint};
use vigil_proxy::cache::{Backend, Cache, CacheSettings};

use crate::config::{CacheBackend, CacheConfig, Config, resolve};

/// The proxy-side settings of `[cache]` (`base`: the config file's folder).
pub fn settings(c: &CacheConfig, base: &Path) -> CacheSettings {
    CacheSettings {
        backend: match c.backend {
            CacheBackend::Memory => Backend::Memory,
            CacheBackend::Redis => Backend::Redis {
                url: c.url.clone().unwrap_or_default(),
            },
        },
        rules_path: Some(resolve(base, &c.rules)),
        redis_timeout: Duration::from_millis(c.redis_timeout_ms.max(1)),
        prefix: c.prefix.clone(),
        l1_bytes: c.l1_mb << 20,
        compress_above: c.compress_above,
        max_entry_bytes: c.max_entry_bytes,
        listen: c.listen,
        fill_lock_wait: Duration::from_millis(c.fill_lock_wait_ms),
        ..CacheSettings::default()
    }
}

/// `vigil cache flush`: through Redis with backend `redis`, else through the admin API.
pub async fn flush(
    config: &Config,
    table: Option<&str>,
    database: Option<&str>,
) -> anyhow::Result<String> {
    match &config.cache {
        Some(c) if c.backend == CacheBackend::Redis => {
            flush_shared(config, c, table, database).await
        }
        _ => flush_admin(config, table, database).await,
    }
}

/// How long `vigil cache flush` waits for Redis.
const REDIS_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

async fn flush_shared(
    config: &Config,
    c: &CacheConfig,
    table: Option<&str>,
    database: Option<&str>,
) -> anyhow::Result<String> {
    let url = c
        .url
        .as_deref()
        .context("[cache] url is required with backend = \"redis\"")?;
    let configured: Vec<String> = config
        .pg
        .iter()
        .flat_map(|pg| pg.databases.iter().map(|d| d.name.clone()))
        .collect();
    let databases: Vec<String> = match database {
        Some(d) if !configured.iter().any(|n| n == d) => {
            bail!("no [pg] database named {d:?}")
        }
        Some(d) => vec![d.to_owned()],
        None => configured,
    };
    let (scope, what) = match (table, database) {
        (Some(t), _) => {
            if databases.is_empty() {
                bail!("no [pg] database to flush table {t:?} in");
            }
            (
                FlushScope::Table {
                    databases: &databases,
                    table: t,
                },
                format!("entries reading {t} in {}", databases.join(", ")),
            )
        }
        (None, Some(_)) => (
            FlushScope::Databases(&databases),
            format!("every entry of {}", databases.join(", ")),
        ),
        (None, None) => (FlushScope::Everything, "every entry".to_owned()),
    };
    flush_redis(url, &c.prefix, scope, REDIS_FLUSH_TIMEOUT).await?;
    Ok(format!(
        "flushed {what} (Redis at {}; every replica's L1 follows)",
        redis_endpoint(url)
    ))
}

/// The memory backend lives in the running Vigil: ask its admin API.
async fn flush_admin(
    config: &Config,
    table: Option<&str>,
    database: Option<&str>,
) -> anyhow::Result<String> {
    let mut query = Vec::new();
    if let Some(t) = table {
        query.push(format!("table={}", urlencode(t)));
    }
    if let Some(d) = database {
        query.push(format!("database={}", urlencode(d)));
    }
    let path = if query.is_empty() {
        "/api/cache/flush".to_owned()
    } else {
        format!("/api/cache/flush?{}", query.join("&"))
    };
    let addr = config.admin.listen;
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n"
    );
    if let Some(t) = config.admin.token.as_deref().filter(|t| !t.is_empty()) {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .context("admin API: connect timed out")?
        .with_context(|| format!("cannot reach the running Vigil's admin API at {addr}"))?;
    s.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp))
        .await
        .context("admin API: no answer")??;
    let text = String::from_utf8_lossy(&resp);
    let status = text.split_whitespace().nth(1).unwrap_or("");
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_owned();
    if status == "404" {
        bail!("the running Vigil has no [cache]");
    }
    if status != "200" {
        bail!("flush failed (HTTP {status}): {body}");
    }
    Ok(body)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `vigil cache install`: returns the databases done.
pub async fn install(config: &Config, database: Option<&str>) -> anyhow::Result<Vec<String>> {
    let Some(pg) = &config.pg else {
        bail!("the configuration has no [pg] section");
    };
    let mut done = Vec::new();
    for db in &pg.databases {
        if database.is_some_and(|d| d != db.name) {
            continue;
        }
        let url = vigil_proxy::pg::upstream::UpstreamUrl::parse(&db.url)
            .map_err(|e| anyhow::anyhow!("database {}: {e}", db.name))?;
        // As the proxy: the url's user and password, else a configured user's.
        let fallback = pg.users.iter().find(|u| u.password.is_some());
        let user = url
            .user
            .clone()
            .or_else(|| fallback.map(|u| u.name.clone()))
            .context("no user to connect as (set one in the database url)")?;
        let password = url.password.clone().or_else(|| {
            pg.users
                .iter()
                .find(|u| u.name == user)
                .or(fallback)
                .and_then(|u| u.password.clone())
        });
        let mut pc = tokio_postgres::Config::new();
        pc.host(&url.host)
            .port(url.port)
            .user(&user)
            .dbname(&url.database)
            .connect_timeout(Duration::from_secs(10));
        if let Some(p) = &password {
            pc.password(p);
        }
        let (client, conn) = pc
            .connect(tokio_postgres::NoTls)
            .await
            .with_context(|| format!("database {}: cannot connect", db.name))?;
        let task = tokio::spawn(conn);
        client
            .batch_execute(Cache::install_sql())
            .await
            .with_context(|| format!("database {}: installing the triggers failed", db.name))?;
        drop(client);
        let _ = task.await;
        done.push(db.name.clone());
    }
    if done.is_empty() {
        bail!("no [pg] database matches");
    }
    Ok(done)
}
