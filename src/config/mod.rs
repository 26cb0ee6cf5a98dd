//! The one TOML configuration file.
//!
//! Every section is optional; a component runs when its section is present (`[pg]`, `[http]`,
//! `[incident]`), and `[admin]`, `[signals]`, `[telemetry]` always apply with defaults. Unknown
//! keys are rejected. String values may use `${ENV_VAR}` (see [`interpolate`]) so secrets stay
//! out of the file. Loading is raw parse, interpolate, typed deserialize (errors carry the field
//! path), then [`Config::validate`] for cross-field rules. `vigil check` prints these errors as
//! `FILE: field `a.b`: what is wrong`, like `nginx -t`.

pub mod interpolate;
mod sections;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use sections::{
    AdminConfig, CacheBackend, CacheConfig, LogFormat, SignalTransport, SignalsConfig,
    TelemetryConfig,
};

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub admin: AdminConfig,
    /// The PostgreSQL proxy; runs when present.
    pub pg: Option<vigil_proxy::pg::PgConfig>,
    /// Statement statistics and heavy-query detection (applies when `[pg]` runs).
    #[serde(default)]
    pub queries: vigil_proxy::stats::QueryStatsConfig,
    /// The hot-read cache used by the pg proxy.
    pub cache: Option<CacheConfig>,
    /// The HTTP proxy (reverse proxy, provider gateway, webhook taps); runs when present.
    pub http: Option<vigil_proxy::http::HttpConfig>,
    #[serde(default)]
    pub signals: SignalsConfig,
    /// The incident service; runs when present.
    pub incident: Option<vigil_incident::IncidentConfig>,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

/// What is wrong with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    #[error("invalid TOML: {0}")]
    Syntax(String),
    #[error("field `{field}`: environment variable `{var}` is not set")]
    MissingEnv { field: String, var: String },
    #[error("field `{field}`: {message}")]
    Invalid { field: String, message: String },
    #[error("rules file {}: {message}", file.display())]
    Rules { file: PathBuf, message: String },
}

impl ConfigError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A [`ConfigError`] with the file it is about, displayed as `FILE: error`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {error}", path.display())]
pub struct ConfigFileError {
    pub path: PathBuf,
    #[source]
    pub error: ConfigError,
}

impl Config {
    /// Read, interpolate from the process environment, parse and validate `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigFileError> {
        let wrap = |error| ConfigFileError {
            path: path.to_owned(),
            error,
        };
        let text = std::fs::read_to_string(path).map_err(|e| wrap(ConfigError::Read(e)))?;
        let config = Config::parse(&text, &|name| std::env::var(name).ok()).map_err(wrap)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.validate(base).map_err(wrap)?;
        Ok(config)
    }

    /// Parse and interpolate (no cross-field validation).
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut raw: toml::Value = toml::from_str::<toml::Table>(text)
            .map(toml::Value::Table)
            .map_err(|e| ConfigError::Syntax(e.to_string().trim_end().to_owned()))?;
        interpolate::interpolate_tree(&mut raw, &mut Vec::new(), env)?;
        serde_path_to_error::deserialize(raw).map_err(|e| {
            let field = e.path().to_string();
            let message = e.into_inner().to_string();
            // The TOML value deserializer appends "\nin `path`"; the path is already named.
            let message = match message.find("\nin `") {
                Some(i) => message[..i].trim_end().to_owned(),
                None => message.trim_end().to_owned(),
            };
            ConfigError::Invalid {
                field: if field == "." {
                    "(top level)".into()
                } else {
                    field
                },
                message,
            }
        })
    }

    /// Cross-field rules. `base` is the config file's folder: relative rule paths are resolved
    /// against the current directory first, then against it.
    pub fn validate(&self, base: &Path) -> Result<(), ConfigError> {
        self.admin.validate()?;
        self.signals.validate(self.incident.is_some())?;
        self.telemetry.validate()?;
        if let Some(pg) = &self.pg {
            pg.validate().map_err(|e| match e {
                vigil_proxy::pg::PgConfigError::Invalid { field, reason } => {
                    ConfigError::invalid(format!("pg.{field}"), reason)
                }
            })?;
        }
        if let Some(http) = &self.http {
            http.validate()
                .map_err(|e| ConfigError::invalid(format!("http.{}", e.field), e.reason))?;
        }
        self.queries.pgss.validate().map_err(|(field, reason)| {
            ConfigError::invalid(format!("queries.pgss.{field}"), reason)
        })?;
        if let Some(p) = &self.queries.heavy_rules {
            let path = resolve(base, p);
            vigil_proxy::stats::heavy::HeavyRules::load(&path).map_err(|e| ConfigError::Rules {
                file: path.clone(),
                message: match e {
                    vigil_proxy::stats::heavy::HeavyRulesError::Read { source, .. } => {
                        format!("cannot read: {source}")
                    }
                    vigil_proxy::stats::heavy::HeavyRulesError::Invalid { message, .. } => message,
                },
            })?;
        }
        if let Some(cache) = &self.cache {
            cache.validate(base)?;
        }
        if let Some(incident) = &self.incident {
            incident
                .validate()
                .map_err(|e| ConfigError::invalid(format!("incident.{}", e.field), e.problem))?;
            let dir = resolve(base, &incident.rules);
            vigil_incident::rules::check_rules(&dir).map_err(|e| ConfigError::Rules {
                file: dir.clone(),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// Names of the components this config runs.
    pub fn components(&self) -> Vec<&'static str> {
        let mut c = Vec::new();
        if self.pg.is_some() {
            c.push("pg");
        }
        if self.http.is_some() {
            c.push("http");
        }
        if self.incident.is_some() {
            c.push("incident");
        }
        c
    }
}

/// A relative path as given if it exists from the current directory, else relative to `base`.
pub fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() || p.exists() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
