//! The commands: one file each. Every command loads through `reconcile::load`, runs the one
//! pass (or its planning half) and prints its own output on stdout through `emit`; diagnostics
//! go through `tracing` on stderr, manifest errors as `error:` lines.
//!
//! A command returns an `Outcome`, never an exit code: `main` alone maps outcomes to codes. A
//! closed stdout (`convoy diff | head -1`) ends the printing quietly and changes nothing else:
//! the command finishes what it was doing (an `apply` keeps acting) and keeps its outcome.

mod adopt;
mod apply;
mod client;
mod daemon;
pub mod daemon_config;
mod diff;
mod exec;
mod export;
mod history;
mod hosts;
mod image;
mod jobs;
pub mod logging;
mod logs;
mod rollback;
mod status;
mod sync;
mod validate;
mod windows;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;

use crate::cli::{Command, ImageCommand, RepoArgs};
use crate::infra::fleet::{ConnectOptions, Fleet};
use crate::infra::source::{self, Source};
use crate::reconcile::{self, LoadError, Loaded};
use crate::render::Style;

/// How a command ended; `main` maps each to the ecosystem's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `validate`: the repository is valid.
    Valid,
    /// The repository does not validate (or a command's input is unusable): nothing was done.
    Invalid,
    /// `diff`: nothing to do.
    InSync,
    /// `diff`: differences found.
    Differs,
    /// `diff`: a host could not be observed, so "in sync" cannot be claimed.
    Unobserved,
    /// `apply`: the fleet matches the repository.
    Converged,
    /// `apply`: not fully converged (failed steps, unreachable hosts, pending replicas).
    NotConverged,
    /// `status`, `hosts`: every host answered.
    AllReachable,
    /// `status`, `hosts`: some host did not.
    SomeUnreachable,
    /// `image push`: every host has the image.
    Pushed,
    /// `image push`: some host does not.
    PushFailed,
    /// `daemon`: stopped by a signal.
    Stopped,
    /// `sync --daemon`: the daemon took the request.
    Accepted,
    /// `status --daemon`, `sync`: the daemon could not be reached, refused the token, or
    /// answered with an error.
    Unavailable,
    /// `rollback`: the revert commit was written (and pushed), or `--dry-run` showed it.
    Written,
    /// `rollback`: refused (uncommitted changes, the branch moved, nothing to revert):
    /// nothing was changed.
    Refused,
    /// `export --strict`: something could not be expressed in the target (the files were
    /// written, the notes printed).
    Unexpressed,
    /// `exec`: the command's own exit code, or Convoy's failure as `docker exec` numbers it
    /// (125 no such replica or host unreachable, 126 cannot execute, 127 not found).
    Exited(i32),
    /// `history`: the history was read and printed.
    Listed,
}

impl Outcome {
    /// The name tests and logs use (`in_sync`, `not_converged`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Valid => "valid",
            Outcome::Invalid => "invalid",
            Outcome::InSync => "in_sync",
            Outcome::Differs => "differs",
            Outcome::Unobserved => "unobserved",
            Outcome::Converged => "converged",
            Outcome::NotConverged => "not_converged",
            Outcome::AllReachable => "all_reachable",
            Outcome::SomeUnreachable => "some_unreachable",
            Outcome::Pushed => "pushed",
            Outcome::PushFailed => "push_failed",
            Outcome::Stopped => "stopped",
            Outcome::Accepted => "accepted",
            Outcome::Unavailable => "unavailable",
            Outcome::Written => "written",
            Outcome::Unexpressed => "unexpressed",
            Outcome::Refused => "refused",
            Outcome::Exited(_) => "exited",
            Outcome::Listed => "listed",
        }
    }
}

pub async fn run(command: Command, state_dir: Option<PathBuf>) -> Result<Outcome> {
    if let Command::Daemon(args) = command {
        // The daemon's config file may name the state directory too.
        return daemon::run(*args, state_dir).await;
    }
    let state_dir = state_dir.unwrap_or_else(crate::infra::fleet::default_state_dir);
    match command {
        Command::Validate { repo } => validate::run(&repo),
        Command::Diff { repo, base, output } => {
            diff::run(&repo, base.as_deref(), output, &state_dir).await
        }
        Command::Apply {
            repo,
            pull,
            output,
            lock,
            force,
        } => apply::run(&repo, pull, output, &state_dir, lock, force).await,
        Command::Status {
            repo,
            output,
            daemon: None,
            ..
        } => status::run(&repo, output, &state_dir).await,
        Command::Status {
            output,
            daemon: Some(url),
            api_token_file,
            ca_file,
            ..
        } => status::run_daemon(&url, api_token_file.as_deref(), ca_file.as_deref(), output).await,
        Command::Sync {
            client,
            allow_prune,
            force,
        } => sync::run(&client, allow_prune, force).await,
        Command::Hosts { repo, output } => hosts::run(&repo, output, &state_dir).await,
        Command::Jobs(a) => match &a.command {
            None => jobs::list(&a.repo, &a.client, a.output, &state_dir).await,
            Some(crate::cli::JobsCommand::Run { name, repo, client }) => {
                jobs::run(repo, client, name, &state_dir).await
            }
        },
        Command::Image(ImageCommand::Push { image, repo, hosts }) => {
            image::push(&repo, &image, &hosts, &state_dir).await
        }
        Command::Logs(args) => logs::run(&args, &state_dir).await,
        Command::Exec(args) => exec::run(&args, &state_dir).await,
        Command::Rollback(args) => rollback::run(&args, &state_dir).await,
        Command::Export(args) => export::run(&args),
        Command::History(args) => history::run(&args, &state_dir).await,
        Command::Adopt(args) => adopt::run(&args, &state_dir).await,
        Command::Daemon(_) => unreachable!("handled above"),
    }
}

/// Set once stdout is found closed: nothing more is written to it.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes a command's output to stdout. A closed pipe is not an error: the reader has what it
/// wanted, so the rest is dropped quietly and the command goes on to its outcome.
pub fn emit(text: &str) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            tracing::warn!(error = %e, "cannot write to stdout");
        }
    }
}

/// `emit` with a newline.
pub fn emit_line(text: &str) {
    emit(&format!("{text}\n"));
}

fn style() -> Style {
    Style {
        colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

fn open_source(repo: &RepoArgs) -> Result<Box<dyn Source>> {
    source::open(&repo.repo, repo.rev.as_deref()).map_err(|e| {
        anyhow::Error::new(e).context(format!(
            "cannot read the fleet repository `{}`",
            repo.repo.display()
        ))
    })
}

/// Loads for a one-shot command: manifest errors go to stderr (one `error:` line each, with
/// file:line:column and key), and `None` means the repository does not validate.
fn load(source: &dyn Source, rev: Option<&str>) -> Result<Option<Loaded>> {
    match reconcile::load(source, rev) {
        Ok(l) => Ok(Some(l)),
        Err(invalid @ LoadError::Invalid { .. }) => {
            let mut err = std::io::stderr().lock();
            if let LoadError::Invalid { errors, .. } = &invalid {
                for e in errors {
                    let _ = writeln!(err, "error: {e}");
                }
            }
            // "N error(s) in ORIGIN; nothing was changed"
            let _ = writeln!(err, "{invalid}");
            Ok(None)
        }
        Err(e @ LoadError::Source { .. }) => Err(e.into()),
    }
}

/// Loads `repo` at its own revision; `None` when it does not validate.
fn load_repo(repo: &RepoArgs) -> Result<Option<Loaded>> {
    let source = open_source(repo)?;
    load(source.as_ref(), None)
}

/// Connects the fleet of `loaded`, runs `f` on it, and closes every connection afterwards,
/// whatever `f` returns (an error included; a panic is covered by `Fleet`'s drop).
async fn with_fleet<T>(loaded: &Loaded, state_dir: &Path, f: impl AsyncFnOnce(&Fleet) -> T) -> T {
    let opts = ConnectOptions::for_command(state_dir, &loaded.desired.settings);
    let fleet = Fleet::connect(&loaded.desired, &opts).await;
    let result = f(&fleet).await;
    fleet.close().await;
    result
}
