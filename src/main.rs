use std::process::ExitCode;

use clap::Parser;
use vigil::cli::{Cli, Command};
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
