//! Files in the plan: a service's `FileMount`s (relative binds, configs, secrets) become bind
//! mounts from the host's `files_dir`/`secrets_dir` (`for_host`), the drift of those mounts is
//! told by name (`./conf/nginx.conf (content changed)`, `secret db (secret changed)`), and a
//! container whose files a host lost is found (`missing`).
//!
//! Pure: no I/O. A secret's host path carries a random generation written by the executor; the
//! planner keeps the generation a container binds while the host says it holds the desired
//! value (`FilesSeen::secrets_current`), and asks for a new one (`PENDING_GENERATION`)
//! otherwise. No value, and no hash of one, is ever part of what this returns.

use crate::model::files::{FileKind, FileMount, FilesSeen, HostFiles, PENDING_GENERATION};
use crate::model::observed::ObservedContainer;
use crate::model::plan::FieldChange;
use crate::model::spec::{ContainerSpec, MountKind, MountSpec};

/// The host path a file mount is bound from on a host: the content-addressed copy, or the
/// secret generation the existing container binds while it is current, else a pending one.
pub fn host_source(
    f: &FileMount,
    host: &HostFiles,
    fleet: &str,
    stack: &str,
    existing: Option<&ObservedContainer>,
    seen: Option<&FilesSeen>,
) -> String {
    match f.kind {
        FileKind::Bind | FileKind::Config => host.blob_source(fleet, &f.address),
        FileKind::Secret => {
            let prefix = host.secret_prefix(fleet, stack, &f.name);
            let current = existing
                .and_then(|c| c.actual.mounts.iter().find(|m| m.target == f.target))
                .map(|m| m.source.clone())
                .filter(|s| {
                    s.strip_prefix(&prefix)
                        .is_some_and(|g| !g.is_empty() && g != PENDING_GENERATION)
                        && seen.is_some_and(|seen| seen.secrets_current.contains(s))
                });
            current.unwrap_or_else(|| format!("{prefix}{PENDING_GENERATION}"))
        }
    }
}

/// The spec a replica runs on a host: every file mount made a bind mount of its host path.
/// A spec without files is returned as it is.
pub fn for_host(
    spec: &ContainerSpec,
    host: &HostFiles,
    fleet: &str,
    stack: &str,
    existing: Option<&ObservedContainer>,
    seen: Option<&FilesSeen>,
) -> ContainerSpec {
    if spec.files.is_empty() {
        return spec.clone();
    }
    let mut out = spec.clone();
    for f in &spec.files {
        out.mounts.push(MountSpec {
            kind: MountKind::Bind,
            source: host_source(f, host, fleet, stack, existing, seen),
            target: f.target.clone(),
            read_only: f.read_only,
        });
    }
    out
}

/// Splits a host spec and the container's inspected spec into the parts the general drift
/// compares (file mounts taken out of both) and the changes of the file mounts, by name.
pub fn split_drift(
    desired: &ContainerSpec,
    actual: &ContainerSpec,
) -> (ContainerSpec, ContainerSpec, Vec<FieldChange>) {
    if desired.files.is_empty() {
        return (desired.clone(), actual.clone(), Vec::new());
    }
    let is_file_target = |t: &str| desired.files.iter().any(|f| f.target == t);
    let mut d = desired.clone();
    d.mounts.retain(|m| !is_file_target(&m.target));
    let mut a = actual.clone();
    a.mounts.retain(|m| !is_file_target(&m.target));
    let mut changes = Vec::new();
    for f in &desired.files {
        let want = desired.mounts.iter().find(|m| m.target == f.target);
        let have = actual.mounts.iter().find(|m| m.target == f.target);
        match (want, have) {
            (Some(w), Some(h)) if w.source == h.source && w.read_only == h.read_only => {}
            (Some(_), Some(h)) => changes.push(FieldChange {
                field: field_of(f).into(),
                old: if h.read_only == f.read_only {
                    f.label()
                } else {
                    format!("{} ({})", f.label(), if h.read_only { "ro" } else { "rw" })
                },
                new: f.changed_label(),
            }),
            (_, None) => changes.push(FieldChange {
                field: field_of(f).into(),
                old: "(none)".into(),
                new: f.label(),
            }),
            (None, Some(_)) => {}
        }
    }
    (d, a, changes)
}

fn field_of(f: &FileMount) -> &'static str {
    match f.kind {
        FileKind::Bind => "files",
        FileKind::Config => "configs",
        FileKind::Secret => "secrets",
    }
}

/// The repository paths and config names of a spec's files the host lacks (a wiped files
/// folder, a rebooted host); empty when the host was not asked (`seen` is `None`).
pub fn missing(spec: &ContainerSpec, seen: Option<&FilesSeen>) -> Vec<String> {
    let Some(seen) = seen else {
        return Vec::new();
    };
    spec.files
        .iter()
        .filter(|f| f.kind != FileKind::Secret && !seen.present.contains(&f.address))
        .map(FileMount::label)
        .collect()
}

/// The spec a slot runs where it is assumed converged (`diff --base`): every file present
/// and each secret at an assumed generation that holds the desired value. Records both in
/// the host's snapshot, so that planning against it finds nothing to do.
pub fn assume_held(
    spec: &ContainerSpec,
    host: Option<&HostFiles>,
    fleet: &str,
    stack: &str,
    snap: &mut crate::model::observed::HostSnapshot,
) -> ContainerSpec {
    let host = host.cloned().unwrap_or_default();
    let mut out = for_host(spec, &host, fleet, stack, None, None);
    let seen = snap.files.get_or_insert_with(Default::default);
    seen.present.extend(addresses(spec).map(str::to_string));
    let pending = format!(".{PENDING_GENERATION}");
    for m in &mut out.mounts {
        if let Some(base) = m.source.strip_suffix(&pending) {
            m.source = format!("{base}.assumed");
            seen.secrets_current.insert(m.source.clone());
        }
    }
    // What the engine reports: mounts only.
    out.files.clear();
    out
}

/// The content addresses a spec needs on a host.
pub fn addresses(spec: &ContainerSpec) -> impl Iterator<Item = &str> {
    spec.files
        .iter()
        .filter(|f| f.kind != FileKind::Secret)
        .map(|f| f.address.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            image: "busybox:1".into(),
            files: vec![
                FileMount {
                    kind: FileKind::Bind,
                    name: "./www".into(),
                    address: "aa".into(),
                    target: "/www".into(),
                    read_only: true,
                    uid: None,
                    gid: None,
                    mode: None,
                },
                FileMount {
                    kind: FileKind::Secret,
                    name: "db".into(),
                    address: String::new(),
                    target: "/run/secrets/db".into(),
                    read_only: true,
                    uid: None,
                    gid: None,
                    mode: Some(0o400),
                },
            ],
            ..Default::default()
        }
    }

    fn container(actual: ContainerSpec) -> ObservedContainer {
        ObservedContainer {
            id: "c1".into(),
            name: "web-app-1".into(),
            stack: "web".into(),
            service: "app".into(),
            slot: "1".into(),
            spec_hash: String::new(),
            commit: String::new(),
            created: String::new(),
            image_id: String::new(),
            state: crate::model::observed::RunState::Running,
            exit_code: 0,
            health: None,
            restart_count: 0,
            actual,
            image_defaults: Default::default(),
        }
    }

    #[test]
    fn a_current_secret_generation_is_kept_and_a_stale_one_is_pending() {
        let h = HostFiles::default();
        let first = for_host(&spec(), &h, "f", "web", None, None);
        let secret = &first.mounts[1];
        assert_eq!(secret.source, "/run/convoy/secrets/f/web/db.pending");
        assert_eq!(first.mounts[0].source, "/var/lib/convoy/files/f/aa/f");

        let mut running = first.clone();
        running.mounts[1].source = "/run/convoy/secrets/f/web/db.0123".into();
        running.files.clear();
        let c = container(running.clone());
        let mut seen = FilesSeen::default();
        seen.present.insert("aa".into());
        seen.secrets_current
            .insert("/run/convoy/secrets/f/web/db.0123".into());
        let kept = for_host(&spec(), &h, "f", "web", Some(&c), Some(&seen));
        assert_eq!(kept.mounts[1].source, "/run/convoy/secrets/f/web/db.0123");
        let (d, a, changes) = split_drift(&kept, &running);
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(d.mounts, a.mounts);
        assert!(missing(&kept, Some(&seen)).is_empty());

        // The host holds another value: a new generation, and the diff names no value.
        seen.secrets_current.clear();
        let stale = for_host(&spec(), &h, "f", "web", Some(&c), Some(&seen));
        let (_, _, changes) = split_drift(&stale, &running);
        assert_eq!(changes.len(), 1);
        assert_eq!(
            changes[0].new,
            "secret db at /run/secrets/db (secret changed)"
        );
    }

    #[test]
    fn a_changed_file_is_named_and_a_lost_one_is_missing() {
        let h = HostFiles::default();
        let mut old = spec();
        old.files[0].address = "bb".into();
        let running = for_host(&old, &h, "f", "web", None, None);
        let now = for_host(&spec(), &h, "f", "web", None, None);
        let (_, _, changes) = split_drift(&now, &running);
        assert!(changes
            .iter()
            .any(|c| c.field == "files" && c.new == "./www (content changed)"));
        assert_eq!(
            missing(&now, Some(&FilesSeen::default())),
            vec!["./www".to_string()]
        );
        assert!(missing(&now, None).is_empty());
    }
}
