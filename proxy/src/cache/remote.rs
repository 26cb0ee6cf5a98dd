//! Invalidation straight through Redis, without a running Vigil (`vigil cache flush` with
//! backend `redis`): the same generation bumps a write makes, and the same broadcast, so every
//! replica's L1 drops the entries too.

use std::time::Duration;

use super::store::{add_bump, add_new_epoch, table_name};

/// What to invalidate.
#[derive(Debug, Clone, Copy)]
pub enum FlushScope<'a> {
    /// Every entry of every database (a new epoch).
    Everything,
    /// Every entry of these databases.
    Databases(&'a [String]),
    /// The entries reading `table` in these databases.
    Table {
        databases: &'a [String],
        table: &'a str,
    },
}

/// Why a flush through Redis failed. Never contains the URL's credentials.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error("invalid Redis URL for {endpoint}")]
    Url { endpoint: String },
    #[error("cannot reach Redis at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("Redis at {endpoint} did not answer within {secs} s")]
    Timeout { endpoint: String, secs: u64 },
    #[error("Redis at {endpoint} refused the flush: {reason}")]
    Refused { endpoint: String, reason: String },
}

/// `host:port/db` of a Redis URL, without scheme or credentials (for messages).
pub fn redis_endpoint(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['?', '#']).next().unwrap_or("").to_owned()
}

/// `msg` with the URL and its password (if any) blanked out.
fn redact(msg: &str, url: &str) -> String {
    let mut out = msg.replace(url, "<redis url>");
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    if let Some((userinfo, _)) = rest.rsplit_once('@') {
        let password = userinfo.split_once(':').map_or(userinfo, |(_, p)| p);
        if !password.is_empty() {
            out = out.replace(password, "***");
        }
    }
    out
}

/// Invalidate `scope` in the Redis at `url` (keys under `prefix`). Gives up after `timeout`.
pub async fn flush_redis(
    url: &str,
    prefix: &str,
    scope: FlushScope<'_>,
    timeout: Duration,
) -> Result<(), FlushError> {
    let endpoint = redis_endpoint(url);
    let client = redis::Client::open(url).map_err(|_| FlushError::Url {
        endpoint: endpoint.clone(),
    })?;
    let mut pipe = redis::pipe();
    match scope {
        FlushScope::Everything => add_new_epoch(&mut pipe, prefix),
        FlushScope::Databases(dbs) => {
            for db in dbs {
                add_bump(&mut pipe, prefix, db, &[], true);
            }
        }
        FlushScope::Table { databases, table } => {
            let tables = [table_name(table)];
            for db in databases {
                add_bump(&mut pipe, prefix, db, &tables, false);
            }
        }
    }
    let work = async {
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| FlushError::Unreachable {
                endpoint: endpoint.clone(),
                reason: redact(&e.to_string(), url),
            })?;
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| FlushError::Refused {
                endpoint: endpoint.clone(),
                reason: redact(&e.to_string(), url),
            })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(FlushError::Timeout {
            endpoint: endpoint.clone(),
            secs: timeout.as_secs().max(1),
        }),
    }
}
