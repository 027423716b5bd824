//! Command-line definitions: one enum of commands, their flags, and nothing else.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "convoy",
    version,
    about = "Declarative GitOps reconciler for Docker fleets, agentless over SSH",
    after_help = "Environment: CONVOY_MAX_FILE_SIZE (e.g. `8MiB`) caps every file read from the \
                  repository; by default 4 MiB for convoy.yaml and Compose files, 1 MiB for \
                  .env and env files."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output on stderr (-v info, -vv debug). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "CONVOY_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Where Convoy keeps history, caches and connection sockets (never needed to converge).
    #[arg(long, global = true, env = "CONVOY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct RepoArgs {
    /// The fleet repository's root (where `convoy.yaml` is).
    #[arg(long, default_value = ".", env = "CONVOY_REPO")]
    pub repo: PathBuf,
    /// Read the files at this git revision instead of the working files.
    #[arg(long)]
    pub rev: Option<String>,
}

/// The per-fleet lock that `apply` and the daemon take.
#[derive(Debug, Clone, Copy, Args)]
pub struct LockArgs {
    /// Seconds to wait for another Convoy process acting on the same fleet from this machine
    /// before giving up with an error that names it; 0 refuses at once.
    #[arg(long = "lock-timeout", value_name = "SECS", default_value_t = 60)]
    pub lock_timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and validate the repository; print every error. Exit 0 valid, 2 invalid.
    Validate {
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Show what `apply` would do. Exit 0 in sync, 1 differences, 2 error.
    Diff {
        #[command(flatten)]
        repo: RepoArgs,
        /// Plan `--rev` against this revision's desired state as if it ran (no engine contacted).
        #[arg(long)]
        base: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Make the fleet match the repository. Exit 0 converged, 1 not fully, 2 invalid input.
    Apply {
        #[command(flatten)]
        repo: RepoArgs,
        /// Pull every image first and replace containers whose image changed behind its tag.
        #[arg(long)]
        pull: bool,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Every host: reachability, round trip, Docker version, CPUs, memory, owned containers.
    Hosts {
        #[command(flatten)]
        repo: RepoArgs,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Reconcile continuously: on file changes, engine events, lost and returning hosts, and a
    /// periodic full re-observation. Runs until SIGTERM.
    Daemon {
        /// The fleet repository's root (a local directory, watched for changes).
        #[arg(long, default_value = ".", env = "CONVOY_REPO")]
        repo: std::path::PathBuf,
        /// Full re-observation at least this often, in seconds (events cover the rest).
        #[arg(long = "resync", default_value_t = 30)]
        resync_secs: u64,
        /// Heartbeat ping of each host, in milliseconds.
        #[arg(long = "heartbeat-ms", default_value_t = 1000)]
        heartbeat_ms: u64,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Images without a registry.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Desired and running replicas per service, with health and restarts.
    Status {
        #[command(flatten)]
        repo: RepoArgs,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Copy an image from the local engine to hosts that lack it (compared by image ID).
    Push {
        /// The image reference, as the stacks name it.
        image: String,
        #[command(flatten)]
        repo: RepoArgs,
        /// Only these hosts (repeatable); all hosts by default.
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
}
