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
}
