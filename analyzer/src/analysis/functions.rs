//! Function volatility: PostgreSQL's `provolatile` (immutable, stable, volatile), a built-in
//! list of well-known functions, whether a function depends on the session or the clock, and
//! whether it has side effects. Callers can supply the server's `pg_proc` answer through
//! [`FunctionVolatility`], which takes precedence over the built-in list.

use std::collections::HashMap;

/// PostgreSQL function volatility, ordered from the most to the least cache-friendly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Volatility {
    /// Same result for the same arguments, forever.
    #[default]
    Immutable,
    /// Same result within one statement (may depend on settings, the clock, the session).
    Stable,
    /// May return a different result on every call or have side effects.
    Volatile,
}

impl Volatility {
    /// From `pg_proc.provolatile` (`i`, `s`, `v`).
    pub fn from_provolatile(c: char) -> Option<Volatility> {
        match c {
            'i' => Some(Volatility::Immutable),
            's' => Some(Volatility::Stable),
            'v' => Some(Volatility::Volatile),
            _ => None,
        }
    }
}

/// A caller-supplied function volatility table (e.g. loaded from `pg_proc.provolatile`),
/// keyed by lowercase function name without schema. Consulted before the built-in list.
#[derive(Debug, Clone, Default)]
pub struct FunctionVolatility {
    map: HashMap<String, Volatility>,
}

impl FunctionVolatility {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `name`'s volatility. Overloads with different volatilities keep the most volatile.
    pub fn insert(&mut self, name: &str, v: Volatility) {
        let key = name.rsplit('.').next().unwrap_or(name).to_ascii_lowercase();
        let e = self.map.entry(key).or_insert(v);
        *e = (*e).max(v);
    }

    /// Builder form of [`FunctionVolatility::insert`].
    pub fn with(mut self, name: &str, v: Volatility) -> Self {
        self.insert(name, v);
        self
    }

    pub fn get(&self, name: &str) -> Option<Volatility> {
        self.map.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Volatile built-ins.
const VOLATILE: &[&str] = &[
    "random",
    "random_normal",
    "setseed",
    "nextval",
    "setval",
    "currval",
    "lastval",
    "clock_timestamp",
    "timeofday",
    "txid_current",
    "txid_current_if_assigned",
    "pg_current_xact_id",
    "pg_current_xact_id_if_assigned",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v4",
    "uuidv4",
    "uuidv7",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "set_config",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_shared",
    "pg_advisory_unlock_all",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "pg_notify",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "dblink",
    "dblink_exec",
    "lo_import",
    "lo_export",
    "lo_create",
    "lo_unlink",
    "pg_stat_reset",
    "pg_stat_statements_reset",
    "pg_reload_conf",
    "pg_switch_wal",
    "pg_logical_emit_message",
];

/// Built-ins whose result depends on the session (user, settings, backend) or the clock.
const SESSION_DEPENDENT: &[&str] = &[
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
    "transaction_timestamp",
    "statement_timestamp",
    "clock_timestamp",
    "timeofday",
    "current_setting",
    "current_user",
    "session_user",
    "user",
    "current_role",
    "current_schema",
    "current_schemas",
    "current_database",
    "current_catalog",
    "pg_backend_pid",
    "inet_client_addr",
    "inet_client_port",
    "inet_server_addr",
    "inet_server_port",
    "pg_my_temp_schema",
    "txid_current_snapshot",
    "pg_current_snapshot",
    "currval",
    "lastval",
    "pg_postmaster_start_time",
    "pg_conf_load_time",
    "pg_is_in_recovery",
];

/// Built-ins with side effects (a SELECT calling them is a possible write).
const SIDE_EFFECTS: &[&str] = &[
    "nextval",
    "setval",
    "set_config",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_shared",
    "pg_advisory_unlock_all",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "pg_notify",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "dblink_exec",
    "lo_import",
    "lo_export",
    "lo_create",
    "lo_unlink",
    "pg_stat_reset",
    "pg_stat_statements_reset",
    "txid_current",
    "pg_current_xact_id",
    "pg_reload_conf",
    "pg_switch_wal",
    "pg_logical_emit_message",
    "setseed",
];

/// Stable built-ins that are not session-dependent.
const STABLE: &[&str] = &[
    "to_char",
    "to_timestamp",
    "age",
    "date_trunc",
    "jsonb_build_object",
    "json_build_object",
    "row_to_json",
    "to_json",
    "to_jsonb",
];

/// Immutable built-ins (aggregates, window functions and common scalar functions).
const IMMUTABLE: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "lower",
    "upper",
    "length",
    "char_length",
    "octet_length",
    "abs",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "trunc",
    "concat",
    "concat_ws",
    "substring",
    "substr",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "replace",
    "split_part",
    "position",
    "strpos",
    "left",
    "right",
    "lpad",
    "rpad",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    "array_length",
    "cardinality",
    "unnest",
    "generate_series",
    "md5",
    "mod",
    "power",
    "sqrt",
    "exp",
    "ln",
    "log",
    "sign",
    "extract",
    "date_part",
    "jsonb_agg",
    "json_agg",
    "jsonb_object_agg",
    "json_object_agg",
    "array_position",
    "array_remove",
    "array_append",
    "stddev",
    "variance",
    "percentile_cont",
    "percentile_disc",
    "regexp_replace",
    "regexp_match",
    "initcap",
    "reverse",
    "repeat",
    "jsonb_array_length",
    "jsonb_typeof",
    "array_to_string",
    "string_to_array",
    "width_bucket",
    "encode",
    "decode",
    "sha256",
    "to_hex",
    "chr",
    "ascii",
];

fn contains(list: &[&str], name: &str) -> bool {
    list.contains(&name)
}

/// Everything known about one function name (lowercase, without schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionTraits {
    /// `None` when neither the caller's table nor the built-in list knows the function.
    pub volatility: Option<Volatility>,
    pub session_dependent: bool,
    pub side_effects: bool,
}

/// Looks `name` up in the caller's table, then the built-in lists.
pub fn traits(name: &str, lookup: Option<&FunctionVolatility>) -> FunctionTraits {
    let builtin = if contains(VOLATILE, name) {
        Some(Volatility::Volatile)
    } else if contains(SESSION_DEPENDENT, name) || contains(STABLE, name) {
        Some(Volatility::Stable)
    } else if contains(IMMUTABLE, name) {
        Some(Volatility::Immutable)
    } else {
        None
    };
    FunctionTraits {
        volatility: lookup.and_then(|l| l.get(name)).or(builtin),
        session_dependent: contains(SESSION_DEPENDENT, name),
        side_effects: contains(SIDE_EFFECTS, name),
    }
}

/// Session-level advisory locks (not the `_xact_` variants, released at transaction end).
pub fn is_session_advisory_lock(name: &str) -> bool {
    matches!(
        name,
        "pg_advisory_lock"
            | "pg_advisory_lock_shared"
            | "pg_try_advisory_lock"
            | "pg_try_advisory_lock_shared"
    )
}

/// Session-level advisory unlocks.
pub fn is_session_advisory_unlock(name: &str) -> bool {
    matches!(
        name,
        "pg_advisory_unlock" | "pg_advisory_unlock_shared" | "pg_advisory_unlock_all"
    )
}
