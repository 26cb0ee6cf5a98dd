//! The `[pg]` configuration section.
//!
//! All durations are integer **milliseconds** (`pool_timeout = 5000` is five seconds); sizes are
//! bytes. Upstream credentials come from each database's `url`; when the url has no user, the
//! client's user name is used, and when it has no password, the client's configured plain
//! `password` (if any) is used.

use std::net::SocketAddr;

use serde::Deserialize;

/// `pool_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// A server is held by a client only for the duration of a transaction.
    #[default]
    Transaction,
    /// A server is held by a client for its whole session.
    Session,
}

/// `auth_type`: how clients authenticate to Vigil.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum AuthType {
    #[default]
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "md5")]
    Md5,
    #[serde(rename = "trust")]
    Trust,
}

/// `[[pg.databases]]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The database name clients ask for.
    pub name: String,
    /// `postgres://[user[:password]@]host[:port]/dbname`.
    pub url: String,
    pub pool_size: Option<usize>,
    pub pool_mode: Option<PoolMode>,
}

/// `[[pg.users]]`.
#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// Plain password (also usable for upstream auth when the database url has none).
    pub password: Option<String>,
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` as in `pg_authid`.
    pub scram_secret: Option<String>,
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("scram_secret", &self.scram_secret.as_ref().map(|_| "***"))
            .finish()
    }
}

/// `[pg.tls]`: PEM files.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// The `[pg]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PgConfig {
    pub listen: SocketAddr,
    /// Threads serving pg clients, each a single-threaded event loop with its own listening
    /// socket (SO_REUSEPORT when more than one), so a session and its server I/O never wake
    /// another thread. 0 runs the pg proxy on the process's shared runtime. Needs a restart.
    pub threads: usize,
    pub pool_mode: PoolMode,
    /// Server connections per (database, user) pool.
    pub pool_size: usize,
    /// Idle server connections kept open per pool.
    pub min_idle: usize,
    /// Client connections accepted in total.
    pub max_clients: usize,
    /// Milliseconds a client waits for a server before failing with 53300.
    pub pool_timeout: u64,
    /// Milliseconds after which a server connection is closed when released.
    pub server_lifetime: u64,
    /// Milliseconds an idle server connection is kept.
    pub server_idle_timeout: u64,
    /// Milliseconds of idleness after which a server is health-checked (empty query) before use.
    pub server_check_idle: u64,
    /// Milliseconds allowed to connect and authenticate upstream.
    pub connect_timeout: u64,
    /// Milliseconds graceful shutdown waits for transactions to finish.
    pub shutdown_timeout: u64,
    /// Largest message accepted from a client, in bytes.
    pub max_message_size: usize,
    /// Prepared statements kept per server connection (least recently used evicted).
    pub max_prepared_statements: usize,
    pub auth_type: AuthType,
    /// Run upstream (as the database url's user) with `$1` = user name, returning
    /// `(usename, passwd)`; must be schema-qualified.
    pub auth_query: Option<String>,
    pub databases: Vec<DatabaseConfig>,
    pub users: Vec<UserConfig>,
    pub tls: Option<TlsConfig>,
}

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 6432)),
            threads: 1,
            pool_mode: PoolMode::Transaction,
            pool_size: 20,
            min_idle: 0,
            max_clients: 10_000,
            pool_timeout: 5_000,
            server_lifetime: 3_600_000,
            server_idle_timeout: 600_000,
            server_check_idle: 30_000,
            connect_timeout: 2_000,
            shutdown_timeout: 30_000,
            max_message_size: 64 * 1024 * 1024,
            max_prepared_statements: 512,
            auth_type: AuthType::ScramSha256,
            auth_query: None,
            databases: Vec::new(),
            users: Vec::new(),
            tls: None,
        }
    }
}

/// A configuration problem, naming the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PgConfigError {
    #[error("pg.{field}: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> PgConfigError {
    PgConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

impl PgConfig {
    /// Check every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), PgConfigError> {
        if self.pool_size == 0 {
            return Err(invalid("pool_size", "must be at least 1"));
        }
        if self.min_idle > self.pool_size {
            return Err(invalid("min_idle", "must not exceed pool_size"));
        }
        if self.threads > 64 {
            return Err(invalid("threads", "must be at most 64"));
        }
        if self.max_clients == 0 {
            return Err(invalid("max_clients", "must be at least 1"));
        }
        for (name, v) in [
            ("pool_timeout", self.pool_timeout),
            ("server_lifetime", self.server_lifetime),
            ("server_idle_timeout", self.server_idle_timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if v == 0 {
                return Err(invalid(name, "must be a positive number of milliseconds"));
            }
        }
        if self.max_message_size < 1024 {
            return Err(invalid("max_message_size", "must be at least 1024 bytes"));
        }
        if self.max_prepared_statements == 0 {
            return Err(invalid("max_prepared_statements", "must be at least 1"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, db) in self.databases.iter().enumerate() {
            if db.name.is_empty() {
                return Err(invalid(format!("databases[{i}].name"), "must not be empty"));
            }
            if !seen.insert(&db.name) {
                return Err(invalid(
                    format!("databases[{i}].name"),
                    format!("duplicate database {:?}", db.name),
                ));
            }
            if let Err(e) = crate::pg::upstream::UpstreamUrl::parse(&db.url) {
                return Err(invalid(format!("databases[{i}].url"), e.to_string()));
            }
            if db.pool_size == Some(0) {
                return Err(invalid(
                    format!("databases[{i}].pool_size"),
                    "must be at least 1",
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            if u.name.is_empty() {
                return Err(invalid(format!("users[{i}].name"), "must not be empty"));
            }
            if !seen.insert(&u.name) {
                return Err(invalid(
                    format!("users[{i}].name"),
                    format!("duplicate user {:?}", u.name),
                ));
            }
            if u.password.is_some() && u.scram_secret.is_some() {
                return Err(invalid(
                    format!("users[{i}]"),
                    "set either password or scram_secret, not both",
                ));
            }
            if let Some(s) = &u.scram_secret {
                if crate::pg::auth::scram::ScramSecret::parse(s).is_none() {
                    return Err(invalid(
                        format!("users[{i}].scram_secret"),
                        "expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>",
                    ));
                }
                if self.auth_type == AuthType::Md5 {
                    return Err(invalid(
                        format!("users[{i}].scram_secret"),
                        "auth_type md5 needs a plain password",
                    ));
                }
            }
            if self.auth_type != AuthType::Trust && u.password.is_none() && u.scram_secret.is_none()
            {
                return Err(invalid(
                    format!("users[{i}].password"),
                    "required unless auth_type is trust",
                ));
            }
        }
        if let Some(q) = &self.auth_query
            && !q.contains("$1")
        {
            return Err(invalid("auth_query", "must take the user name as $1"));
        }
        if let Some(t) = &self.tls
            && (t.cert.as_os_str().is_empty() || t.key.as_os_str().is_empty())
        {
            return Err(invalid("tls", "cert and key are both required"));
        }
        Ok(())
    }

    pub fn database(&self, name: &str) -> Option<&DatabaseConfig> {
        self.databases.iter().find(|d| d.name == name)
    }

    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }

    pub(crate) fn ms(v: u64) -> std::time::Duration {
        std::time::Duration::from_millis(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_parse() {
        let c = PgConfig::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:6432");
        assert_eq!(c.pool_mode, PoolMode::Transaction);
        c.validate().unwrap();
    }

    #[test]
    fn validate_names_the_field() {
        let c = PgConfig {
            min_idle: 50,
            ..PgConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("pg.min_idle")
        );
        let c = PgConfig {
            databases: vec![DatabaseConfig {
                name: "crm".into(),
                url: "mysql://x".into(),
                ..Default::default()
            }],
            ..PgConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("pg.databases[0].url")
        );
        let c = PgConfig {
            users: vec![UserConfig {
                name: "app".into(),
                scram_secret: Some("nope".into()),
                ..Default::default()
            }],
            ..PgConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("users[0].scram_secret")
        );
    }

    #[test]
    fn parses_toml() {
        let c: PgConfig = toml::from_str(
            r#"
            listen = "0.0.0.0:7432"
            pool_mode = "session"
            pool_size = 4
            pool_timeout = 250
            auth_type = "md5"
            [[databases]]
            name = "crm"
            url = "postgres://app:pw@db:5432/crm"
            pool_size = 8
            pool_mode = "transaction"
            [[users]]
            name = "app"
            password = "pw"
            [tls]
            cert = "/etc/vigil/cert.pem"
            key = "/etc/vigil/key.pem"
            "#,
        )
        .unwrap();
        assert_eq!(c.pool_mode, PoolMode::Session);
        assert_eq!(c.databases[0].pool_mode, Some(PoolMode::Transaction));
        assert_eq!(c.databases[0].pool_size, Some(8));
        assert_eq!(c.auth_type, AuthType::Md5);
        assert_eq!(c.pool_timeout, 250);
        assert_eq!(c.server_lifetime, PgConfig::default().server_lifetime);
        c.validate().unwrap();
        let err = toml::from_str::<PgConfig>("pool_sise = 3").unwrap_err();
        assert!(err.to_string().contains("pool_sise"));
    }

    #[test]
    fn debug_hides_secrets() {
        let u = UserConfig {
            name: "app".into(),
            password: Some("hunter2".into()),
            scram_secret: None,
        };
        assert!(!format!("{u:?}").contains("hunter2"));
    }
}
