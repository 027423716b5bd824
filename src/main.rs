//! The `convoy` binary: parses arguments, sets up logging, runs the command, and owns the
//! exit-code policy (0 success or in sync, 1 differences or not converged, 2 error).

use convoy::{app, cli};

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = cli::Cli::parse();
    init_logging(cli.verbose, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(app::EXIT_ERROR);
        }
    };
    let code = match runtime.block_on(app::run(cli.command, cli.state_dir)) {
        Ok(code) => code,
        Err(e) => {
            // The chain once, lowercase, subject first (DESIGN.md: errors, logs, output).
            eprintln!("error: {e:#}");
            app::EXIT_ERROR
        }
    };
    std::process::exit(code);
}

fn init_logging(verbose: u8, format: cli::LogFormat) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        cli::LogFormat::Text => builder.init(),
        cli::LogFormat::Json => builder.json().init(),
    }
}
