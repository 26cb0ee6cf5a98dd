use std::process::ExitCode;

use clap::Parser;
use vigil::cli::{CacheCommand, Cli, Command, IncidentCommand};
use vigil::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
                let components = c.components();
                println!(
                    "{}: configuration ok (components: {})",
                    config.display(),
                    if components.is_empty() {
                        "none".to_string()
                    } else {
                        components.join(", ")
                    }
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("vigil: {e}");
                ExitCode::from(2)
            }
        },
        Command::Cache { command } => {
            let config = match &command {
                CacheCommand::Flush { config, .. } | CacheCommand::Install { config, .. } => config,
            };
            let loaded = match Config::load(config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("vigil: {e}");
                    return ExitCode::from(2);
                }
            };
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("vigil: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let r = rt.block_on(async {
                match &command {
                    CacheCommand::Flush {
                        table, database, ..
                    } => {
                        vigil::cache_cmd::flush(&loaded, table.as_deref(), database.as_deref())
                            .await
                    }
                    CacheCommand::Install { database, .. } => {
                        vigil::cache_cmd::install(&loaded, database.as_deref())
                            .await
                            .map(|d| format!("triggers installed in: {}", d.join(", ")))
                    }
                }
            });
            match r {
                Ok(msg) => {
                    println!("{msg}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("vigil: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Incident {
            command:
                IncidentCommand::Replay {
                    signals,
                    rules,
                    json,
                },
        } => match vigil::replay::replay(&signals, rules.as_deref(), json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vigil: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Report {
            config,
            since,
            until,
            compare,
            format,
            out,
            no_pgss,
        } => {
            use vigil::cli::ReportFormat;
            use vigil_incident::reports::Format;
            let args = vigil::report::ReportArgs {
                config,
                since,
                until,
                compare,
                format: match format {
                    ReportFormat::Html => Format::Html,
                    ReportFormat::Md => Format::Md,
                    ReportFormat::Json => Format::Json,
                },
                pgss: !no_pgss,
            };
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("vigil: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let text = match rt.block_on(vigil::report::report(&args)) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("vigil report: {e:#}");
                    return ExitCode::from(2);
                }
            };
            let written = match &out {
                Some(p) => std::fs::write(p, text),
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(text.as_bytes())
                }
            };
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("vigil report: cannot write the report: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo {
            scenario,
            duration,
            keep,
            small,
        } => {
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("vigil: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let opts = vigil::demo::DemoOptions {
                scenarios: scenario.expand(),
                duration,
                keep,
                small,
            };
            match rt.block_on(vigil::demo::run(opts)) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("vigil demo: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => {
            let loaded = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("vigil: {e}");
                    return ExitCode::from(2);
                }
            };
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("vigil: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(vigil::run::run(loaded, config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("vigil: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
