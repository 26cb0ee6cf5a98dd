//! The command line: `vigil run`, `vigil check`, and the subcommands later components add.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Vigil: a reliability sidecar for an application you cannot rewrite. A PostgreSQL proxy
/// (pooling, statement fingerprints, hot-read cache), an HTTP proxy (reverse proxy, provider
/// gateway, verified webhook taps) and an incident service that turns their signals into
/// incidents with a likely cause.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start every component the configuration enables, in one process.
    Run {
        /// The TOML configuration file.
        #[arg(short, long, env = "VIGIL_CONFIG", default_value = "vigil.toml")]
        config: PathBuf,
    },
    /// Validate a configuration and the rule files it names; exit 0, or 2 with a message naming
    /// the file, the field and what is wrong.
    Check {
        /// The TOML configuration file.
        #[arg(short, long, env = "VIGIL_CONFIG", default_value = "vigil.toml")]
        config: PathBuf,
    },
    /// The whole story in one command: a throwaway PostgreSQL, a seeded sample CRM under
    /// traffic, provider simulators and Vigil in front of it all; then failure scenarios, each
    /// opening an incident with its likely cause. Needs the PostgreSQL server binaries.
    Demo {
        /// Which scenario to run (all, one after another, by default).
        #[arg(long, value_enum, default_value = "all")]
        scenario: DemoScenario,
        /// Total seconds for the scenarios (shared equally, at least 25 s each).
        #[arg(long, default_value_t = 120)]
        duration: u64,
        /// Keep the demo folder (database, config) and print its path.
        #[arg(long)]
        keep: bool,
        /// A small data set (1k contacts) instead of 100k contacts and 1M activities.
        #[arg(long)]
        small: bool,
    },
    /// A heavy-query report from the incident store named by the config's `[incident] store`:
    /// top statements by total time, p95, calls, rows and errors, routes, trends, regressions,
    /// new statements, pool wait, cache effectiveness and candidates, plans and advice.
    Report {
        /// The TOML configuration file.
        #[arg(short, long, env = "VIGIL_CONFIG", default_value = "vigil.toml")]
        config: PathBuf,
        /// Length of the period (`7d`, `24h`, `30m`), ending at --until.
        #[arg(long, default_value = "7d")]
        since: String,
        /// End of the period: a time (RFC 3339), a date (UTC midnight) or a span ago (`1d`).
        #[arg(long)]
        until: Option<String>,
        /// `previous` (the period before, same length) or the start time of the comparison period.
        #[arg(long)]
        compare: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "html")]
        format: ReportFormat,
        /// Write the report to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// When no pg_stat_statements snapshots are stored for the period, do not read
        /// pg_stat_statements from the `[pg]` databases at report time (stored snapshots are
        /// still used).
        #[arg(long)]
        no_pgss: bool,
    },
    /// Hot-read cache tools.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Incident-service tools.
    Incident {
        #[command(subcommand)]
        command: IncidentCommand,
    },
}

/// `--scenario` of `vigil demo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoScenario {
    All,
    BounceStorm,
    SmsOutage,
    #[value(name = "payment-5xx")]
    Payment5xx,
    SlowDb,
}

impl DemoScenario {
    /// The scenarios to run, in order.
    pub fn expand(self) -> Vec<crate::demo::Scenario> {
        use crate::demo::Scenario;
        match self {
            DemoScenario::All => Scenario::ALL.to_vec(),
            DemoScenario::BounceStorm => vec![Scenario::BounceStorm],
            DemoScenario::SmsOutage => vec![Scenario::SmsOutage],
            DemoScenario::Payment5xx => vec![Scenario::Payment5xx],
            DemoScenario::SlowDb => vec![Scenario::SlowDb],
        }
    }
}

/// `--format` of `vigil report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Html,
    Md,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// Run detection and correlation on recorded signals (JSON lines) with a virtual clock,
    /// deterministically, and print the incidents and pages they would have produced.
    Replay {
        /// A file of signals, one JSON object per line (`-` for standard input).
        signals: PathBuf,
        /// The rules directory (`*.yaml`); the built-in rules when not given.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Print the report as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `vigil cache ...`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Invalidate the running Vigil's cache (every replica with Redis): everything, or the
    /// entries reading one table.
    Flush {
        #[arg(short, long, env = "VIGIL_CONFIG", default_value = "vigil.toml")]
        config: PathBuf,
        /// Only entries reading this table (name without schema).
        #[arg(long)]
        table: Option<String>,
        /// Only this `[pg]` database (client-visible name).
        #[arg(long)]
        database: Option<String>,
    },
    /// Install the NOTIFY triggers that let Vigil follow writes made outside it (idempotent;
    /// run again after migrations that add tables).
    Install {
        #[arg(short, long, env = "VIGIL_CONFIG", default_value = "vigil.toml")]
        config: PathBuf,
        /// Only this `[pg]` database (client-visible name).
        #[arg(long)]
        database: Option<String>,
    },
}
