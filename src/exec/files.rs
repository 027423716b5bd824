//! The shipping phase before the executor and the clean-up after it: the files, configs and
//! secrets the plan's creates and replaces need are put on their hosts first (`prepare`), and
//! what no container of the fleet uses any more is removed after the pass (`collect_garbage`).
//!
//! Decides nothing about containers: it ships what the plan's steps bind. A pending secret
//! generation (`PENDING_GENERATION`) gets a fresh random one, written before the step that
//! binds it and substituted into that step's mounts. Errors name the host and the path, never
//! a value.

use std::collections::{BTreeMap, BTreeSet};

use crate::infra::files::{self, HostShell};
use crate::model::files::{FileKind, FilePayload, PENDING_GENERATION};
use crate::model::observed::ObservedState;
use crate::model::plan::{Action, Plan};
use crate::model::spec::DesiredState;

/// A fresh generation for a secret's host path: 16 hex digits from the system's randomness.
fn generation() -> String {
    use std::io::Read;
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b = (t as u64 ^ u64::from(std::process::id())).to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Ships what the plan's creates and replaces need; substitutes the secret generations
/// written. Returns one message per host that failed (its steps then fail on their own).
pub async fn prepare(
    plan: &mut Plan,
    desired: &DesiredState,
    observed: &ObservedState,
    shells: &BTreeMap<String, HostShell>,
) -> Vec<String> {
    let replicas = plan
        .steps
        .iter_mut()
        .filter_map(|step| match &mut step.action {
            Action::Create { replica, .. } | Action::Replace { replica, .. } => {
                Some((step.host.as_str(), &mut **replica))
            }
            _ => None,
        })
        .collect();
    prepare_replicas(replicas, desired, observed, shells).await
}

/// `prepare` for replicas that are not steps of a plan (a job's run, `exec::jobs`): ships
/// what each `(host, replica)` binds there, and substitutes its fresh secret generations.
pub async fn prepare_replicas(
    replicas: Vec<(&str, &mut crate::model::plan::Replica)>,
    desired: &DesiredState,
    observed: &ObservedState,
    shells: &BTreeMap<String, HostShell>,
) -> Vec<String> {
    if desired.files.is_empty() {
        return Vec::new();
    }
    let pending = format!(".{PENDING_GENERATION}");
    // Per host: the addresses needed, and the pending secret paths with the fresh one each gets.
    let mut needs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut secrets: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (host, replica) in replicas {
        if replica.spec.files.is_empty() {
            continue;
        }
        needs.entry(host.to_string()).or_default().extend(
            replica
                .spec
                .files
                .iter()
                .filter(|f| f.kind != FileKind::Secret)
                .map(|f| f.address.clone()),
        );
        let fresh = secrets.entry(host.to_string()).or_default();
        for m in &mut replica.spec.mounts {
            if let Some(base) = m.source.strip_suffix(&pending) {
                let path = fresh
                    .entry(m.source.clone())
                    .or_insert_with(|| format!("{base}.{}", generation()));
                m.source = path.clone();
            }
        }
    }
    let mut jobs = Vec::new();
    for host in needs.keys().chain(secrets.keys()).collect::<BTreeSet<_>>() {
        let Some(shell) = shells.get(host) else {
            continue;
        };
        let hf = desired
            .hosts
            .get(host)
            .map(|h| h.files.clone())
            .unwrap_or_default();
        let present = observed
            .hosts
            .get(host)
            .and_then(|o| o.snapshot())
            .and_then(|s| s.files.as_deref())
            .map(|f| f.present.clone())
            .unwrap_or_default();
        let blobs: Vec<(&String, &crate::model::files::Blob)> = needs
            .get(host)
            .into_iter()
            .flatten()
            .filter(|a| !present.contains(*a))
            .filter_map(|a| desired.files.blobs.get_key_value(a))
            .collect();
        // Each fresh path: the secret's value, owner and mode, found by its prefix.
        let mut items = Vec::new();
        for (pending_path, path) in secrets.get(host).into_iter().flatten() {
            let found = desired.stacks.iter().find_map(|(stack, s)| {
                s.services.values().find_map(|svc| {
                    svc.container.files.iter().find_map(|f| {
                        let prefix = hf.secret_prefix(&desired.fleet, stack, &f.name);
                        (f.kind == FileKind::Secret && pending_path.starts_with(&prefix)).then(
                            || {
                                (
                                    desired
                                        .files
                                        .secrets
                                        .get(&FilePayload::secret_key(stack, &f.name)),
                                    f.uid,
                                    f.gid,
                                    f.mode.unwrap_or(0o400),
                                )
                            },
                        )
                    })
                })
            });
            if let Some((Some(value), uid, gid, mode)) = found {
                items.push((path.clone(), value, uid, gid, mode));
            }
        }
        let fleet = desired.fleet.clone();
        let host = host.clone();
        jobs.push(async move {
            let mut errors = Vec::new();
            if let Err(e) = files::ship(shell, &host, &hf, &fleet, &blobs).await {
                errors.push(e);
            }
            if let Err(e) = files::write_secrets(shell, &host, &hf, &fleet, &items).await {
                errors.push(e);
            }
            if blobs.is_empty() && items.is_empty() {
                return errors;
            }
            tracing::info!(host = %host, files = blobs.len(), secrets = items.len(), "shipped files");
            errors
        });
    }
    let errors: Vec<String> = futures_util::future::join_all(jobs)
        .await
        .into_iter()
        .flatten()
        .collect();
    for e in &errors {
        tracing::warn!(error = %e, "shipping files failed");
    }
    errors
}

/// After a pass that changed something: on each host, removes the fleet's content-addressed
/// folders and secret generations that no container there binds and the desired state does
/// not need. `observed` is what the hosts run after the pass.
pub async fn collect_garbage(
    desired: &DesiredState,
    before: &ObservedState,
    observed: &ObservedState,
    shells: &BTreeMap<String, HostShell>,
) {
    let wanted: BTreeSet<String> = desired.files.blobs.keys().cloned().collect();
    let mut jobs = Vec::new();
    for (host, obs) in &observed.hosts {
        let (Some(snap), Some(shell)) = (obs.snapshot(), shells.get(host)) else {
            continue;
        };
        let hf = desired
            .hosts
            .get(host)
            .map(|h| h.files.clone())
            .unwrap_or_default();
        let files_root = format!("{}/", hf.fleet_files(&desired.fleet));
        let secrets_root = format!("{}/", hf.fleet_secrets(&desired.fleet));
        let mut keep = wanted.clone();
        let mut keep_secrets = BTreeSet::new();
        let mut any = false;
        for m in snap.containers.values().flat_map(|c| &c.actual.mounts) {
            if let Some(rest) = m.source.strip_prefix(&files_root) {
                keep.insert(rest.split('/').next().unwrap_or_default().to_string());
                any = true;
            } else if m.source.starts_with(&secrets_root) {
                keep_secrets.insert(m.source.clone());
                any = true;
            }
        }
        // A host whose containers bound files before the pass may hold garbage now.
        let had = before
            .hosts
            .get(host)
            .and_then(|o| o.snapshot())
            .is_some_and(|b| {
                b.containers
                    .values()
                    .flat_map(|c| &c.actual.mounts)
                    .any(|m| {
                        m.source.starts_with(&files_root) || m.source.starts_with(&secrets_root)
                    })
            });
        if !any && !had && desired.files.is_empty() {
            continue;
        }
        let fleet = desired.fleet.clone();
        let host = host.clone();
        jobs.push(async move {
            if let Err(e) = files::collect(shell, &host, &hf, &fleet, &keep, &keep_secrets).await {
                tracing::warn!(error = %e, "removing unused files failed");
            }
        });
    }
    futures_util::future::join_all(jobs).await;
}
