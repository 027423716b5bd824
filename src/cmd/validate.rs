//! `convoy validate`: parse and validate everything, print every error or a one-line summary.

use anyhow::Result;

use super::{emit_line, load_repo, Outcome};
use crate::cli::RepoArgs;

pub fn run(repo: &RepoArgs) -> Result<Outcome> {
    let Some(l) = load_repo(repo)? else {
        return Ok(Outcome::Invalid);
    };
    // Warnings (a read-write folder of the repository, ...) do not fail validation.
    for w in &l.desired.files.warnings {
        eprintln!("{w}");
    }
    let services: usize = l.desired.stacks.values().map(|s| s.services.len()).sum();
    emit_line(&format!(
        "valid: fleet `{}` at {}, {} host(s), {} stack(s), {} service(s)",
        l.desired.fleet,
        l.commit,
        l.desired.hosts.len(),
        l.desired.stacks.len(),
        services
    ));
    Ok(Outcome::Valid)
}
