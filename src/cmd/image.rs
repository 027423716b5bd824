//! `convoy image push`: copy an image from the local engine to hosts that lack that image ID.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Result;

use super::{emit_line, load_repo, with_fleet, Outcome};
use crate::cli::RepoArgs;
use crate::infra::images::{push_image, PushOutcome};
use crate::reconcile::local_engine;

pub async fn push(
    repo: &RepoArgs,
    image: &str,
    only: &[String],
    state_dir: &Path,
) -> Result<Outcome> {
    let Some(loaded) = load_repo(repo)? else {
        return Ok(Outcome::Invalid);
    };
    for h in only {
        if !loaded.desired.hosts.contains_key(h) {
            anyhow::bail!("no host `{h}` in convoy.yaml");
        }
    }
    let local = local_engine().await.map_err(anyhow::Error::msg)?;
    if local.image_id(image).await?.is_none() {
        anyhow::bail!("image `{image}` is not on the local engine");
    }
    let wanted = |h: &String| only.is_empty() || only.contains(h);
    let (results, unreachable) = with_fleet(&loaded, state_dir, async |fleet| {
        let targets: Vec<_> = fleet.engines.iter().filter(|(h, _)| wanted(h)).collect();
        let progress = std::io::stderr().is_terminal();
        if progress {
            eprintln!("pushing `{image}` to {} host(s)...", targets.len());
        }
        let results = futures_util::future::join_all(targets.iter().map(|(host, engine)| {
            let local = &local;
            async move {
                let r = push_image(local, engine, host, image).await;
                if progress {
                    eprintln!("  [{host}] {}", if r.is_ok() { "done" } else { "failed" });
                }
                (host.to_string(), r)
            }
        }))
        .await;
        let unreachable: Vec<(String, String)> = fleet
            .failed
            .iter()
            .filter(|(h, _)| wanted(h))
            .map(|(h, e)| (h.clone(), e.reason.clone()))
            .collect();
        (results, unreachable)
    })
    .await;
    let mut failed = 0;
    for (host, r) in &results {
        match r {
            Ok(PushOutcome::Present) => {
                emit_line(&format!("{host}: already has `{image}` (same image ID)"));
            }
            Ok(PushOutcome::Sent { bytes }) => {
                emit_line(&format!("{host}: sent `{image}` ({bytes} bytes)"));
            }
            Err(e) => {
                failed += 1;
                emit_line(&format!("{host}: failed: {e}"));
            }
        }
    }
    for (host, reason) in &unreachable {
        failed += 1;
        emit_line(&format!("{host}: unreachable: {reason}"));
    }
    Ok(if failed == 0 {
        Outcome::Pushed
    } else {
        Outcome::PushFailed
    })
}
