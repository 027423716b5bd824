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
    /// age identities that open the stacks' SOPS-encrypted files (PGP ones open with the
    /// system's gpg and its `GNUPGHOME`). Default: SOPS's `~/.config/sops/age/keys.txt`.
    #[arg(long, global = true, env = "SOPS_AGE_KEY_FILE", value_name = "FILE")]
    pub age_key_file: Option<PathBuf>,
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
        /// Apply changes that a sync window holds now, where the window allows manual syncs
        /// (`manual_sync`, true unless written false).
        #[arg(long)]
        force: bool,
    },
    /// Every host: reachability, round trip, Docker version, CPUs, memory, owned containers.
    Hosts {
        #[command(flatten)]
        repo: RepoArgs,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Reconcile continuously: follow a branch (or a directory's files) and act on pushes,
    /// webhooks, engine events, lost and returning hosts, and a periodic re-observation. Serves
    /// the HTTP API and metrics. Runs until SIGTERM.
    Daemon(Box<DaemonArgs>),
    /// Ask a running daemon for a pass now. Exit 0 accepted, 2 unreachable or refused.
    Sync {
        #[command(flatten)]
        client: DaemonClientArgs,
        /// Release a commit held by the deletion guard.
        #[arg(long)]
        allow_prune: bool,
        /// Apply the commit a sync window holds, where the window allows manual syncs
        /// (`manual_sync`, true unless written false); refused where it does not.
        #[arg(long)]
        force: bool,
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
        /// Ask this running daemon (`http://127.0.0.1:7878`) instead of observing directly.
        #[arg(long)]
        daemon: Option<String>,
        /// The API token (with `--daemon`).
        #[arg(long, env = "CONVOY_API_TOKEN_FILE")]
        api_token_file: Option<PathBuf>,
        /// A CA certificate (PEM) to verify an `https://` daemon with (with `--daemon`).
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// Logs of every matching replica on every host, merged in time order, each line prefixed
    /// with `host/stack-service-slot`. Exit 1 when a host could not be read.
    Logs(LogsArgs),
    /// Run a command in one replica (slot 1 by default). The command's exit code is passed
    /// through; 125 no such replica or host unreachable, 126 cannot execute, 127 not found.
    Exec(ExecArgs),
    /// Go back by a new commit: the branch gets a commit whose tree is an earlier commit's (the
    /// last one that applied, by default), after printing the diff it will cause. Exit 0
    /// written (or dry run), 1 refused (dirty tree, branch moved, nothing to revert), 2 invalid.
    Rollback(RollbackArgs),
    /// Write the fleet as another engine's files: one `docker stack deploy` file, or one file
    /// of Kubernetes manifests, per stack.
    /// What the target cannot express is listed on stderr. Exit 0 written, 1 something was not
    /// expressible and `--strict` was given, 2 invalid.
    Export(ExportArgs),
    /// The deploy history of the state directory, newest first: every pass that changed
    /// something or was refused. Reads the file directly (no daemon needed). Exit 0, 2 when
    /// the history cannot be read.
    History(HistoryArgs),
    /// Write a running Compose project into the repository as a stack (compose file inferred
    /// from inspect, secret-looking values in the stack's `.env`) and record its adoption in
    /// `convoy.yaml`: from then on the fleet owns those containers. Exit 0 adopted, 1 some
    /// project not, 2 nothing adopted.
    Adopt(AdoptArgs),
    /// Jobs (`x-convoy.job`): each with its schedule, next run and last runs (exit code,
    /// duration, host, last log lines); `jobs run NAME` starts one now. Exit 0, 1 a host could
    /// not be read or the run failed, 2 invalid or the daemon unavailable.
    Jobs(JobsArgs),
}

/// `convoy jobs`'s flags.
#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(subcommand)]
    pub command: Option<JobsCommand>,
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub client: DaemonClientArgs,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Start one run of a job now (`service` or `stack/service`). Exit 0 it succeeded (or the
    /// daemon took the request), 1 it failed, 2 no such job or the daemon unavailable.
    Run {
        name: String,
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        client: DaemonClientArgs,
    },
}

/// What `convoy export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportTarget {
    Swarm,
    Kubernetes,
}

/// `convoy export`'s flags.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The engine to export to.
    #[arg(long, value_enum)]
    pub to: ExportTarget,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The folder to write `<stack>.yaml` (and the configs and secrets they name) into.
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    pub dir: PathBuf,
    /// Write secrets' values as files (mode 0600) instead of naming secrets to create.
    #[arg(long)]
    pub include_secrets: bool,
    /// Exit 1 when anything could not be expressed in the target.
    #[arg(long)]
    pub strict: bool,
}

/// `convoy rollback`'s flags.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// A working tree (the revert is committed and checked out), a bare repository or a URL
    /// (the revert is pushed, with `--push`).
    #[arg(long, default_value = ".", env = "CONVOY_REPO")]
    pub repo: String,
    /// The commit to return to.
    #[arg(long, value_name = "REV", conflicts_with = "last")]
    pub to: Option<String>,
    /// Return to the last commit that applied successfully (the default).
    #[arg(long)]
    pub last: bool,
    /// The branch (a working tree's checked-out one; a remote's HEAD by default).
    #[arg(long)]
    pub branch: Option<String>,
    /// The fleet's root inside a bare repository or URL, when not its top.
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// Push the commit: required for a bare repository or URL; for a working tree, pushes to
    /// the branch's upstream before moving the branch.
    #[arg(long)]
    pub push: bool,
    /// Why, in the commit message.
    #[arg(long, short = 'm')]
    pub message: Option<String>,
    /// Print the diff the revert would cause and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Sign the commit with the user's git signing key (`git commit-tree -S`), for a daemon
    /// that only applies signed commits.
    #[arg(long)]
    pub gpg_sign: bool,
    /// HTTPS: a file holding a token or `user:password` (as the daemon's).
    #[arg(long)]
    pub git_credentials_file: Option<PathBuf>,
    /// HTTPS: a CA bundle to verify the git server with.
    #[arg(long)]
    pub git_ca_file: Option<PathBuf>,
}

/// `convoy history`'s flags.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Entries shown, newest first.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
    /// Only entries that concern this stack.
    #[arg(long)]
    pub stack: Option<String>,
    /// Only this fleet's entries (every fleet of the state directory by default).
    #[arg(long)]
    pub fleet: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

/// `convoy adopt`'s flags.
#[derive(Debug, Args)]
pub struct AdoptArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The Compose project (`com.docker.compose.project`).
    #[arg(long, conflicts_with = "all")]
    pub project: Option<String>,
    /// The host it runs on (with `--all`: only this host).
    #[arg(long)]
    pub host: Option<String>,
    /// The stack to write it as (default: the project's name).
    #[arg(long, requires = "project")]
    pub stack: Option<String>,
    /// Every Compose project on every host (each not adopted yet).
    #[arg(long)]
    pub all: bool,
}

/// `convoy logs`'s flags.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// `STACK`, `STACK/SERVICE` or `STACK/SERVICE/SLOT` (stack folder names); all by default.
    pub target: Option<String>,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Follow: keep printing, pick up replicas that start, say when one stops.
    #[arg(short, long)]
    pub follow: bool,
    /// Only lines since this time: a duration ago (`10m`, `2h`, `30s`) or RFC 3339.
    #[arg(long)]
    pub since: Option<String>,
    /// Only lines before this time: a duration ago or RFC 3339.
    #[arg(long)]
    pub until: Option<String>,
    /// The last N lines of each replica.
    #[arg(long, short = 'n', value_name = "N")]
    pub tail: Option<u64>,
    /// Show the engine's timestamp of each line.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Only this host (repeatable).
    #[arg(long = "host")]
    pub hosts: Vec<String>,
}

/// `convoy exec`'s flags.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// `STACK/SERVICE` or `STACK/SERVICE/SLOT`.
    pub target: String,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Only look for the replica on this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Keep stdin open and pass it to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a TTY (resized with the terminal).
    #[arg(short, long)]
    pub tty: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<String>,
}

/// How a client command reaches a running daemon.
#[derive(Debug, Clone, Args)]
pub struct DaemonClientArgs {
    /// The daemon's API (`http://127.0.0.1:7878`).
    #[arg(long)]
    pub daemon: Option<String>,
    /// A file holding the API token.
    #[arg(long, env = "CONVOY_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// A CA certificate (PEM) to verify an `https://` daemon with.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

/// `convoy daemon`'s flags. Each is optional here: a value not given on the command line comes
/// from `--config`, then from the default that the config module documents.
#[derive(Debug, Clone, Default, Args)]
pub struct DaemonArgs {
    /// A YAML file holding any of the flags below (flag name = key); flags given here win.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// What to follow: a working directory (default `.`), a bare repository or `file://` URL
    /// (its refs are watched), or an `ssh://`, `user@host:path` or `https://` remote (polled
    /// and fetched on webhooks).
    #[arg(long, env = "CONVOY_REPO")]
    pub repo: Option<String>,
    /// The branch to follow (default: the repository's HEAD branch).
    #[arg(long)]
    pub branch: Option<String>,
    /// The fleet's root inside the repository (where `convoy.yaml` is), when not its top.
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// Seconds between fetches of a remote (default 60, with 10 % jitter).
    #[arg(long = "poll-interval", value_name = "SECS")]
    pub poll_interval: Option<u64>,
    /// Full re-observation at least this often, in seconds (default 30).
    #[arg(long = "resync", value_name = "SECS")]
    pub resync: Option<u64>,
    /// Heartbeat ping of each host, in milliseconds (default 1000).
    #[arg(long = "heartbeat-ms", value_name = "MS")]
    pub heartbeat_ms: Option<u64>,
    /// Seconds to wait for another Convoy process on the same fleet (default 60).
    #[arg(long = "lock-timeout", value_name = "SECS")]
    pub lock_timeout: Option<u64>,
    /// The API's address (default `127.0.0.1:7878`); `off` serves no API.
    #[arg(long)]
    pub listen: Option<String>,
    /// Serve a non-loopback `--listen` without TLS (a warning is logged).
    #[arg(long)]
    pub insecure_listen: bool,
    /// TLS certificate chain (PEM) for the API.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the API.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// A file holding the API's bearer token; without it only health endpoints and metrics
    /// answer.
    #[arg(long, env = "CONVOY_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Require the API token on `/metrics` too.
    #[arg(long)]
    pub metrics_token: bool,
    /// A file holding the webhooks' shared secret; without it the hooks answer 404.
    #[arg(long)]
    pub webhook_secret_file: Option<PathBuf>,
    /// A file holding an HTTPS remote's token (one line) or `user:password`.
    #[arg(long)]
    pub git_credentials_file: Option<PathBuf>,
    /// A CA certificate (PEM) to verify an HTTPS remote with.
    #[arg(long)]
    pub git_ca_file: Option<PathBuf>,
    /// Hold every commit not signed by an allowed key.
    #[arg(long)]
    pub require_signed: bool,
    /// Allowed SSH signers, in git's `gpg.ssh.allowedSignersFile` format.
    #[arg(long)]
    pub allowed_signers: Option<PathBuf>,
    /// A GnuPG keyring of allowed signers (as `gpgv --keyring` reads it).
    #[arg(long)]
    pub gpg_keyring: Option<PathBuf>,
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
