//! `rules/cache.yaml`: what is cached. Rules match by fingerprint (16 hex digits), by a glob
//! (`*`) over the normalized text, or by a table read; the first matching rule wins. `auto`
//! caches eligible fingerprints whose database time (calls x mean) crossed a threshold.
//! Each rule (and `auto`) can be observe-only: the cache reports what it would have served.
//!
//! The file is polled for changes and reloaded; an invalid file keeps the previous rules.

use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::Cache;

/// Why rules could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
}

/// One rule.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A name for reports.
    #[serde(default)]
    pub name: Option<String>,
    /// Matches this fingerprint (16 hex digits).
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Matches normalized text (constants as `$n`, lowercase keywords) with `*` wildcards,
    /// case-insensitively.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Matches statements reading this table (name without schema).
    #[serde(default)]
    pub table: Option<String>,
    /// Seconds an entry lives at most (the last safety net; invalidation is by writes).
    #[serde(default)]
    pub ttl: Option<f64>,
    /// Results larger than this (bytes) are not cached.
    #[serde(default)]
    pub max_bytes: Option<usize>,
    /// Report what would be cached and the hit rate it would have had; serve nothing.
    #[serde(default)]
    pub observe_only: bool,
    /// Also serve/fill inside explicit READ COMMITTED transactions until their first write
    /// (never under REPEATABLE READ/SERIALIZABLE, nor after a write or unknown statement).
    #[serde(default)]
    pub in_transaction: bool,
}

/// The `auto` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Auto {
    pub enabled: bool,
    /// Cache an eligible fingerprint once its observed database time reaches this (ms).
    pub min_db_time_ms: f64,
    pub ttl: f64,
    pub max_bytes: usize,
    pub observe_only: bool,
}

impl Default for Auto {
    fn default() -> Self {
        Auto {
            enabled: false,
            min_db_time_ms: 10_000.0,
            ttl: 60.0,
            max_bytes: 1 << 20,
            observe_only: false,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// TTL (seconds) of rules that set none.
    pub default_ttl: f64,
    /// Size limit (bytes) of rules that set none.
    pub default_max_bytes: usize,
    pub auto: Auto,
    pub rules: Vec<Rule>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            default_ttl: 60.0,
            default_max_bytes: 1 << 20,
            auto: Auto::default(),
            rules: Vec::new(),
        }
    }
}

/// What a matching rule says about one statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub rule: String,
    pub ttl: Duration,
    pub max_bytes: usize,
    pub observe_only: bool,
    /// Served inside explicit READ COMMITTED transactions until their first write.
    pub in_transaction: bool,
}

/// Glob with `*` (any run of characters), ASCII case-insensitive.
fn glob(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi].eq_ignore_ascii_case(&t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.001, 365.0 * 86_400.0))
}

impl Rules {
    pub fn parse(text: &str, file: &Path) -> Result<Rules, RulesError> {
        let invalid = |message: String| RulesError::Invalid {
            file: file.to_owned(),
            message,
        };
        let rules: Rules = if text.trim().is_empty() {
            Rules::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| invalid(e.to_string()))?
        };
        for (i, r) in rules.rules.iter().enumerate() {
            if r.fingerprint.is_none() && r.pattern.is_none() && r.table.is_none() {
                return Err(invalid(format!(
                    "rule {} matches nothing: set fingerprint, pattern or table",
                    i + 1
                )));
            }
            if let Some(f) = &r.fingerprint
                && vigil_analyzer::parse_id(f).is_none()
            {
                return Err(invalid(format!(
                    "rule {}: fingerprint {f:?} is not 16 hex digits",
                    i + 1
                )));
            }
        }
        Ok(rules)
    }

    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            file: path.to_owned(),
            source,
        })?;
        Rules::parse(&text, path)
    }

    /// The first rule matching a statement (all given conditions of a rule must hold).
    /// `normalized` is computed only when a rule has a pattern.
    pub fn matching(
        &self,
        fingerprint: u64,
        normalized: &mut dyn FnMut() -> String,
        tables: &[String],
    ) -> Option<Decision> {
        let mut norm: Option<String> = None;
        for (i, r) in self.rules.iter().enumerate() {
            if let Some(f) = &r.fingerprint
                && vigil_analyzer::parse_id(f) != Some(fingerprint)
            {
                continue;
            }
            if let Some(t) = &r.table
                && !tables.iter().any(|x| super::store::table_name(x) == *t)
            {
                continue;
            }
            if let Some(p) = &r.pattern {
                let n = norm.get_or_insert_with(&mut *normalized);
                if !glob(p, n) {
                    continue;
                }
            }
            return Some(Decision {
                rule: r.name.clone().unwrap_or_else(|| format!("rule {}", i + 1)),
                ttl: secs(r.ttl.unwrap_or(self.default_ttl)),
                max_bytes: r.max_bytes.unwrap_or(self.default_max_bytes),
                observe_only: r.observe_only,
                in_transaction: r.in_transaction,
            });
        }
        None
    }

    /// The decision of the `auto` mode for a fingerprint that crossed the threshold.
    pub fn auto_decision(&self) -> Decision {
        Decision {
            rule: "auto".into(),
            ttl: secs(self.auto.ttl),
            max_bytes: self.auto.max_bytes,
            observe_only: self.auto.observe_only,
            in_transaction: false,
        }
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Poll the rules file; reload on change (keeping the old rules if the new file is invalid).
pub(crate) async fn watch(cache: Weak<Cache>, path: PathBuf, poll: Duration) {
    let mut last = mtime(&path);
    let mut tick = tokio::time::interval(poll);
    loop {
        tick.tick().await;
        let now = mtime(&path);
        if now == last {
            continue;
        }
        last = now;
        let Some(cache) = cache.upgrade() else { return };
        match Rules::load(&path) {
            Ok(r) => {
                tracing::info!(file = %path.display(), rules = r.rules.len(), "cache rules reloaded");
                cache.set_rules(r);
            }
            Err(e) => tracing::warn!(error = %e, "cache rules not reloaded"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_a_shell() {
        assert!(glob(
            "select * from deals*",
            "SELECT count(*) FROM deals WHERE x = $1"
        ));
        assert!(glob("*contacts*", "select * from contacts"));
        assert!(!glob("select * from deals", "select * from contacts"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
    }

    #[test]
    fn rules_match_in_order_and_validate() {
        let text = "default_ttl: 10\nrules:\n  - table: deals\n    ttl: 5\n  - pattern: 'select * from contacts*'\n    observe_only: true\n";
        let r = Rules::parse(text, Path::new("x.yaml")).unwrap();
        let d = r
            .matching(1, &mut || String::new(), &["public.deals".into()])
            .unwrap();
        assert_eq!(d.ttl, Duration::from_secs(5));
        let d = r
            .matching(
                1,
                &mut || "select * from contacts where id = $1".into(),
                &[],
            )
            .unwrap();
        assert!(d.observe_only);
        assert_eq!(d.ttl, Duration::from_secs(10));
        assert!(r.matching(1, &mut || "select 1".into(), &[]).is_none());
        assert!(Rules::parse("rules:\n  - ttl: 5\n", Path::new("x")).is_err());
        assert!(Rules::parse("rules:\n  - fingerprint: zz\n", Path::new("x")).is_err());
    }
}
