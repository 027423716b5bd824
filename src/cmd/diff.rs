//! `convoy diff`: the plan, nothing changed. With `--base REV` the base revision's desired
//! state stands in for what runs, so no engine is contacted (a review of a change).

use std::path::Path;

use anyhow::Result;

use super::{emit, emit_line, load, open_source, style, with_fleet, Outcome};
use crate::cli::{Output, RepoArgs};
use crate::core::pass::{assume_observed, plan_pass, HostMemory};
use crate::reconcile::observe_and_plan;
use crate::render;

pub async fn run(
    repo: &RepoArgs,
    base: Option<&str>,
    output: Output,
    state_dir: &Path,
) -> Result<Outcome> {
    let source = open_source(repo)?;
    let Some(loaded) = load(source.as_ref(), None)? else {
        return Ok(Outcome::Invalid);
    };
    for w in &loaded.desired.files.warnings {
        eprintln!("{w}");
    }
    let mut plan = match base {
        Some(base_rev) => {
            let Some(base) = load(source.as_ref(), Some(base_rev))? else {
                return Ok(Outcome::Invalid);
            };
            let assumed = assume_observed(&base.desired, &base.commit);
            plan_pass(
                &loaded.desired,
                &assumed,
                &HostMemory::default(),
                &loaded.commit,
            )
            .plan
        }
        None => {
            with_fleet(&loaded, state_dir, async |fleet| {
                observe_and_plan(fleet, &loaded, &HostMemory::default())
                    .await
                    .pass
                    .plan
            })
            .await
        }
    };
    // The whole change is shown; a note says which stacks of it a sync window holds now.
    let holds = super::windows::holds_now(&loaded.desired, super::windows::now_secs());
    super::windows::note_holds(&mut plan, &holds);
    match output {
        Output::Text => emit(&render::plan_text(&plan, style())),
        Output::Json => emit_line(&render::plan_json(&plan)),
    }
    // "In sync" is never claimed about an engine Convoy could not see.
    Ok(if !plan.unreachable.is_empty() {
        Outcome::Unobserved
    } else if plan.is_converged() {
        Outcome::InSync
    } else {
        Outcome::Differs
    })
}
