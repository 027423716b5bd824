//! The `convoy` binary: parses arguments, sets up logging, runs the command, and owns the
//! exit-code policy: `exit_code` is the one place where an outcome becomes a number (0 success
//! or in sync, 1 differences or not converged, 2 invalid input or error, as `kubectl diff`).

use convoy::cli;
use convoy::cmd::{self, Outcome};

use clap::Parser;

const EXIT_ERROR: i32 = 2;

fn exit_code(outcome: Outcome) -> i32 {
    match outcome {
        Outcome::Valid
        | Outcome::InSync
        | Outcome::Converged
        | Outcome::AllReachable
        | Outcome::Pushed
        | Outcome::Stopped
        | Outcome::Accepted
        | Outcome::Written
        | Outcome::Listed => 0,
        Outcome::Differs
        | Outcome::NotConverged
        | Outcome::SomeUnreachable
        | Outcome::PushFailed
        | Outcome::Refused
        | Outcome::Unexpressed => 1,
        // "In sync" is never claimed blind: a host that could not be observed is an error.
        Outcome::Invalid | Outcome::Unobserved => EXIT_ERROR,
        // An unreachable daemon, a refused token: nothing was learnt or asked.
        Outcome::Unavailable => EXIT_ERROR,
        // `exec`: the command's code passes through, as `docker exec` does.
        Outcome::Exited(code) => code,
    }
}

fn main() {
    let cli = cli::Cli::parse();
    cmd::logging::init(cli.verbose, cli.log_format);
    // The keys every load of this process opens SOPS files with (in memory only).
    convoy::infra::sops_keys::install(convoy::infra::sops_keys::SopsKeys::from_env(
        cli.age_key_file.as_deref(),
    ));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(EXIT_ERROR);
        }
    };
    let code = match runtime.block_on(cmd::run(cli.command, cli.state_dir)) {
        Ok(outcome) => {
            tracing::debug!(outcome = outcome.name(), "command ended");
            exit_code(outcome)
        }
        Err(e) => {
            // The chain once, lowercase, subject first; an engine's message may quote a
            // secret ("secrets stay masked").
            eprintln!("error: {}", cmd::logging::mask_known(&format!("{e:#}")));
            EXIT_ERROR
        }
    };
    // Tasks still running (a watcher that ignores cancellation) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}
