use std::process::ExitCode;

use clap::Parser;
use vigil::cli::{Cli, Command, IncidentCommand};
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
