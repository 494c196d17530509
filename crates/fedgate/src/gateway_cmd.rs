//! The gateway's subcommands: `fedgate serve` (the runtime with its listeners), `fedgate config
//! check` and `fedgate status` (the metrics listener's `/status` as tables).

use std::process::ExitCode;

use fedgate_store::StoreUrl;

use crate::cli::{self, TopCommand};
use crate::output::OutputFormat;

/// `serve`, `config check`, `status`; any other command is given back.
pub fn intercept(
    command: TopCommand,
    store: Option<&str>,
    config: Option<&std::path::Path>,
    format: OutputFormat,
) -> Result<ExitCode, Box<TopCommand>> {
    match command {
        TopCommand::Serve => {
            let Some(config) = config else {
                eprintln!("fedgate serve needs --config <FILE> (e.g. examples/fedgate.toml).");
                return Ok(ExitCode::from(2));
            };
            Ok(serve(fedgate_config::Config::load(config), store))
        }
        other => gateway_info_command(other, config, format),
    }
}

/// `fedgate serve`: run the gateway with the loaded config (and `--store`, if given).
fn serve(
    loaded: Result<fedgate_config::Config, fedgate_config::ConfigError>,
    store: Option<&str>,
) -> ExitCode {
    let mut config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    if let Some(url) = store {
        match StoreUrl::parse(url) {
            Ok(u) => config.store = u,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        }
    }
    match fedgate_gateway::run_serve(config, std::sync::Arc::new(crate::control::AdminPlane)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fedgate serve: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `fedgate config check` and `fedgate status` (not `--cluster`, which reads the store); any
/// other command is handed back.
fn gateway_info_command(
    command: TopCommand,
    config: Option<&std::path::Path>,
    format: OutputFormat,
) -> Result<ExitCode, Box<TopCommand>> {
    use std::path::Path;
    let load = |file: &Path| fedgate_config::Config::load(file);
    match command {
        TopCommand::Config {
            action: cli::ConfigAction::Check { file },
        } => Ok(match load(&file) {
            Ok(_) => {
                println!("{}: OK", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        }),
        TopCommand::Status { cluster: false } => {
            let default = Path::new("fedgate.toml");
            let file = config
                .map(Path::to_path_buf)
                .or_else(|| default.exists().then(|| default.to_path_buf()));
            let addr = match file.map(|f| load(&f)) {
                Some(Ok(c)) => match c.metrics_listen {
                    Some(a) => a,
                    None => {
                        eprintln!(
                            "the configuration has no metrics_listen; fedgate status reads it"
                        );
                        return Ok(ExitCode::from(1));
                    }
                },
                Some(Err(e)) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(1));
                }
                None => std::net::SocketAddr::from(([127, 0, 0, 1], 9269)),
            };
            Ok(match fedgate_manage::status::fetch(addr) {
                Ok(v) => {
                    match format {
                        OutputFormat::Json => println!("{v:#}"),
                        OutputFormat::List => {
                            print!("{}", fedgate_manage::status::render_table(&v))
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e:#}");
                    ExitCode::from(1)
                }
            })
        }
        other => Err(Box::new(other)),
    }
}
