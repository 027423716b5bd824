//! `convoy rollback`: going back is a commit like any other. It picks the commit to return to
//! (`--to REV`, or the last one that applied: the newest earlier commit on the branch that the
//! deploy history or the running containers' commit labels name), prints the diff that a
//! commit with that tree will cause on the fleet (and whether the daemon's deletion guard will
//! hold it), and writes that commit with a message naming what it reverts and a
//! `Convoy-Rollback-To:` trailer: checked out in a working tree, pushed to a bare repository
//! or URL.
//!
//! It never asks a question (scripts and CI have no terminal) and never acts on the fleet: the
//! daemon, or the next `apply`, applies the revert like any other commit. Refusals change
//! nothing and exit 1; unusable arguments or repositories exit 2.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};

use super::{emit, emit_line, load, style, with_fleet, Outcome};
use crate::cli::RollbackArgs;
use crate::core::guard;
use crate::core::pass::HostMemory;
use crate::infra::source::{CommitLine, Limits, OpenOptions, RevertError, RollbackRepo};
use crate::reconcile::{observe_and_plan, Loaded};
use crate::render;

/// How many reverted commits the message lists one by one.
const LISTED: usize = 50;
/// How many of the history's good commits are read.
const HISTORY_LOOKUP: usize = 1000;

pub async fn run(args: &RollbackArgs, state_dir: &Path) -> Result<Outcome> {
    let limits = Limits::from_env().map_err(anyhow::Error::msg)?;
    let opts = OpenOptions {
        branch: args.branch.clone(),
        path: args.path.clone(),
        credentials_file: args.git_credentials_file.clone(),
        ca_file: args.git_ca_file.clone(),
        limits,
    };
    let spec = args.repo.clone();
    let opened = tokio::task::spawn_blocking(move || RollbackRepo::open(&spec, opts))
        .await
        .context("the repository reader stopped")?;
    let repo = match opened {
        Ok(r) => r,
        Err(e) => return refusal(e),
    };
    if !repo.is_work_tree() && !args.push && !args.dry_run {
        eprintln!(
            "error: `{}` is not a working tree: the revert can only be pushed; give `--push` (or `--dry-run`)",
            repo.describe()
        );
        return Ok(Outcome::Invalid);
    }
    if !args.dry_run {
        if let Err(e) = repo.check_clean() {
            return refusal(e);
        }
    }
    let tip = repo.tip();
    let chain = match repo.first_parents() {
        Ok(c) => c,
        Err(e) => return refusal(e),
    };
    // The newest commit that validates: the fleet to observe, and the guard in force.
    let current = newest_valid(&repo, &chain);
    let to = match &args.to {
        Some(rev) => match repo.resolve(rev) {
            Ok(id) => id,
            Err(e) => return refusal(e),
        },
        None => {
            let good = known_good(state_dir, current.as_ref()).await;
            match last_good(&repo, &chain, &good) {
                Ok(Some(id)) => id,
                Ok(None) => {
                    eprintln!(
                        "refused: nothing to revert: no earlier commit of the last {} on branch `{}` is known to have applied (the deploy history and the running containers' commit labels name none); give `--to REV`",
                        chain.len(),
                        repo.branch()
                    );
                    return Ok(Outcome::Refused);
                }
                Err(e) => return refusal(e),
            }
        }
    };
    if repo.same_tree(&to, &tip).unwrap_or(false) {
        eprintln!(
            "refused: nothing to revert: branch `{}` at {} already has the tree of {}",
            repo.branch(),
            short(&tip),
            short(&to)
        );
        return Ok(Outcome::Refused);
    }
    let target_line = repo.commit_line(&to).map_err(anyhow::Error::new)?;
    let reverted = repo.reverted(&to).map_err(anyhow::Error::new)?;
    // The tree returned to must itself be valid, or the daemon would only hold it.
    let Some(target) = load(repo.source(), Some(&to))? else {
        eprintln!(
            "refused: {} does not validate (errors above): a revert to it would be held",
            short(&to)
        );
        return Ok(Outcome::Refused);
    };
    emit_line(&format!(
        "rollback of branch `{}` in {}: back to {} {}, reverting {} commit(s)",
        repo.branch(),
        repo.describe(),
        target_line.short(),
        target_line.subject,
        reverted.len()
    ));
    preview(&target, current.as_ref(), state_dir).await;
    if args.dry_run {
        emit_line("dry run: nothing was written");
        return Ok(Outcome::Written);
    }
    let message = commit_message(&target_line, &reverted, args.message.as_deref());
    let (sign, push) = (args.gpg_sign, args.push);
    let written = tokio::task::spawn_blocking(move || {
        let r = repo.write(&to, &message, sign, push);
        (repo, r)
    })
    .await
    .context("the repository writer stopped")?;
    let (repo, result) = written;
    match result {
        Ok(new) => {
            let how = if repo.is_work_tree() {
                if push {
                    "committed, pushed and checked out"
                } else {
                    "committed and checked out"
                }
            } else {
                "pushed"
            };
            emit_line(&format!(
                "wrote {new} on branch `{}` ({how}): the daemon, or the next `convoy apply`, applies it",
                repo.branch()
            ));
            Ok(Outcome::Written)
        }
        Err(e) => refusal(e),
    }
}

/// A `RevertError` as the command's outcome: refusals exit 1, the rest 2.
fn refusal(e: RevertError) -> Result<Outcome> {
    match e {
        RevertError::Dirty { .. } | RevertError::Moved { .. } => {
            eprintln!("refused: {e}");
            Ok(Outcome::Refused)
        }
        RevertError::Invalid(_) => {
            eprintln!("error: {e}");
            Ok(Outcome::Invalid)
        }
        RevertError::Git(_) => Err(anyhow::Error::new(e)),
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// The newest of the branch's last commits whose fleet validates (quietly: a broken tip is
/// often why one rolls back), at most a few tried.
fn newest_valid(repo: &RollbackRepo, chain: &[CommitLine]) -> Option<Loaded> {
    chain
        .iter()
        .take(10)
        .find_map(|c| crate::reconcile::load(repo.source(), Some(&c.id)).ok())
}

/// Commits known to have applied: the deploy history's, then the commit labels of what runs
/// on the fleet of `current`.
async fn known_good(state_dir: &Path, current: Option<&Loaded>) -> BTreeSet<String> {
    let mut good = BTreeSet::new();
    let Some(loaded) = current else {
        return good;
    };
    let (dir, fleet) = (state_dir.to_path_buf(), loaded.desired.fleet.clone());
    let recorded = tokio::task::spawn_blocking(move || {
        match crate::infra::history::History::open_read_only(&dir) {
            Ok(Some(h)) => h.good_commits_of(Some(&fleet), HISTORY_LOOKUP),
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the deploy history: only the containers' labels say what applied");
                Vec::new()
            }
        }
    })
    .await
    .unwrap_or_default();
    good.extend(recorded);
    let labels = with_fleet(loaded, state_dir, async |fleet| {
        let planned = observe_and_plan(fleet, loaded, &HostMemory::default()).await;
        planned
            .observed
            .hosts
            .values()
            .filter_map(|h| h.snapshot())
            .flat_map(|s| s.containers.values())
            .map(|c| c.commit.clone())
            .collect::<Vec<_>>()
    })
    .await;
    // A `-dirty` label names working files, not a commit one can return to.
    good.extend(
        labels
            .into_iter()
            .filter(|c| !c.is_empty() && !c.ends_with("-dirty")),
    );
    good
}

/// The newest commit before the tip, on the branch's first-parent line, that `good` names
/// (in full, or by the 12-digit prefix a working tree's `apply` labels with) and whose tree
/// differs from the tip's.
fn last_good(
    repo: &RollbackRepo,
    chain: &[CommitLine],
    good: &BTreeSet<String>,
) -> Result<Option<String>, RevertError> {
    let Some(tip) = chain.first() else {
        return Ok(None);
    };
    for c in &chain[1..] {
        let named = good.contains(&c.id) || good.contains(c.short());
        if named && !repo.same_tree(&c.id, &tip.id)? {
            return Ok(Some(c.id.clone()));
        }
    }
    Ok(None)
}

/// Prints the plan of `target` against what runs, and whether the daemon's deletion guard
/// will hold it.
async fn preview(target: &Loaded, current: Option<&Loaded>, state_dir: &Path) {
    let (plan, trip) = with_fleet(target, state_dir, async |fleet| {
        let planned = observe_and_plan(fleet, target, &HostMemory::default()).await;
        let percent = guard::effective_percent(
            current.map(|c| c.desired.settings.prune_guard_percent),
            target.desired.settings.prune_guard_percent,
        );
        let trip = guard::check(&planned.pass.plan, &planned.observed, percent);
        (planned.pass.plan, trip)
    })
    .await;
    emit(&render::plan_text(&plan, style()));
    if let Some(trip) = trip {
        emit_line(&format!(
            "note: a daemon will hold this revert (deletion guard: {}); release it with `convoy sync --daemon URL --allow-prune` once it is pushed",
            trip.message()
        ));
    }
}

/// The revert commit's message: a subject naming the commit returned to, the reason given,
/// the commits it reverts, and the `Convoy-Rollback-To:` trailer.
fn commit_message(to: &CommitLine, reverted: &[CommitLine], reason: Option<&str>) -> String {
    let mut out = format!("Roll back to {}: {}\n\n", to.short(), to.subject);
    if let Some(reason) = reason.map(str::trim).filter(|r| !r.is_empty()) {
        out.push_str(reason);
        out.push_str("\n\n");
    }
    out.push_str("Reverts:\n");
    for c in reverted.iter().take(LISTED) {
        out.push_str(&format!("  {} {}\n", c.short(), c.subject));
    }
    if reverted.len() > LISTED {
        out.push_str(&format!("  and {} more\n", reverted.len() - LISTED));
    }
    out.push_str(&format!("\nConvoy-Rollback-To: {}\n", to.id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, subject: &str) -> CommitLine {
        CommitLine {
            id: id.repeat(40 / id.len()),
            subject: subject.into(),
        }
    }

    #[test]
    fn the_message_names_the_target_the_reason_what_it_reverts_and_ends_with_the_trailer() {
        let to = c("a", "web 1.25");
        let m = commit_message(
            &to,
            &[c("c", "break it"), c("b", "web 1.27")],
            Some("  health checks failed  "),
        );
        assert_eq!(
            m,
            format!(
                "Roll back to aaaaaaaaaaaa: web 1.25\n\nhealth checks failed\n\nReverts:\n  cccccccccccc break it\n  bbbbbbbbbbbb web 1.27\n\nConvoy-Rollback-To: {}\n",
                "a".repeat(40)
            )
        );
        let many: Vec<CommitLine> = (0..LISTED + 3).map(|_| c("d", "x")).collect();
        let m = commit_message(&to, &many, None);
        assert!(m.contains("  and 3 more\n"), "{m}");
        assert!(!m.contains("\n\n\n"), "{m}");
    }
}
