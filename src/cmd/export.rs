//! `convoy export --to swarm|kubernetes`: the repository's desired state (at `--rev`, or the working
//! files) as another engine's files in `-o DIR`, the notes of what the target cannot express
//! on stderr (service by service), and the commands to run before deploying on stdout.
//!
//! It reads the repository only: no engine is contacted. Secrets' values are written only
//! with `--include-secrets`, into files of mode 0600, and never printed.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result};

use super::{emit_line, load_repo, Outcome};
use crate::cli::{ExportArgs, ExportTarget};
use crate::render::export::{self, ExportOptions};

pub fn run(args: &ExportArgs) -> Result<Outcome> {
    let Some(loaded) = load_repo(&args.repo)? else {
        return Ok(Outcome::Invalid);
    };
    let opts = ExportOptions {
        include_secrets: args.include_secrets,
    };
    let exported = match args.to {
        ExportTarget::Swarm => export::swarm::export(&loaded.desired, opts),
        ExportTarget::Kubernetes => export::kubernetes::export(&loaded.desired, opts),
    };
    for f in &exported.files {
        let path = args.dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(if f.secret { 0o600 } else { 0o644 })
            .open(&path)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        file.write_all(&f.data)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    for n in &exported.unexpressed {
        eprintln!("not expressible: {n}");
    }
    if !exported.commands.is_empty() {
        emit_line("# Before deploying:");
        for c in &exported.commands {
            emit_line(c);
        }
    }
    emit_line("# Deploy:");
    for stack in loaded.desired.stacks.keys() {
        let file = args.dir.join(format!("{stack}.yaml"));
        emit_line(&match args.to {
            ExportTarget::Swarm => format!("docker stack deploy -c {} {stack}", file.display()),
            ExportTarget::Kubernetes => format!("kubectl apply -f {}", file.display()),
        });
    }
    Ok(if args.strict && !exported.unexpressed.is_empty() {
        Outcome::Unexpressed
    } else {
        Outcome::Written
    })
}
