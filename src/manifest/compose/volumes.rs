//! Volumes: the top-level `volumes` (named volumes and their engine names) and a service's
//! `volumes` (mounts, short and long syntax).
//!
//! Reads only the nodes handed in; no I/O. A bind mount's source is an absolute path on the
//! host, or a path of the repository relative to the Compose file, shipped to the hosts
//! (`files::repo_mount`); a named volume must be declared at
//! the top level; an anonymous volume (`/data`, or `type: volume` without `source`) becomes
//! each slot's own named volume (`MountKind::Anonymous`, resolved per slot by the planner).

use std::collections::BTreeMap;

use super::keys::{MOUNT, MOUNT_BIND, MOUNT_VOLUME, VOLUME};
use super::networks::{read_external, settle_name};
use super::{user_labels, Stack};
use crate::manifest::typed::{join, Diag};
use crate::manifest::yaml::{Kind, Node};
use crate::model::spec::{ContainerSpec, MountKind, MountSpec, VolumeSpec};

const BIND_WITHOUT_SOURCE: &str = "a bind mount needs a `source` (an absolute host path)";

impl Stack<'_> {
    pub(super) fn read_volumes(&mut self, d: &mut Diag, v: &Node, path: &str) {
        let Some(entries) = d.map(v, path) else {
            return;
        };
        for (k, v) in entries {
            let name = k.scalar().unwrap_or_default().to_string();
            let vpath = join(path, &name);
            let Some(fields) = d.map(v, &vpath) else {
                continue;
            };
            let mut spec = VolumeSpec {
                engine_name: format!("{}_{name}", self.name),
                driver: "local".into(),
                driver_opts: BTreeMap::new(),
                labels: BTreeMap::new(),
                external: false,
            };
            let mut explicit_name = None;
            let mut external_name = None;
            for (field, _k, v, fpath) in d.fields(fields, &vpath, &VOLUME) {
                match field {
                    "driver" => spec.driver = d.string(v, &fpath).unwrap_or_default(),
                    "driver_opts" => {
                        spec.driver_opts = d.string_map(v, &fpath, false).unwrap_or_default()
                    }
                    "labels" => spec.labels = user_labels(d, v, &fpath),
                    "name" => explicit_name = d.string(v, &fpath),
                    "external" => {
                        let (external, name) = read_external(d, v, &fpath);
                        spec.external = external;
                        external_name = name;
                    }
                    _ => {}
                }
            }
            if let Some(n) = settle_name(d, explicit_name, external_name) {
                spec.engine_name = n;
            } else if spec.external {
                spec.engine_name = name.clone();
            }
            self.volumes.insert(name, spec);
        }
    }

    pub(super) fn read_mounts(&self, d: &mut Diag, v: &Node, path: &str, c: &mut ContainerSpec) {
        let Kind::Seq(items) = &v.kind else {
            d.at(v, path, format!("expected a list, found {}", v.type_name()));
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{path}[{i}]");
            let mount = match &item.kind {
                Kind::Map(entries) => self.read_long_mount(d, item, entries, &ipath),
                _ => d
                    .string(item, &ipath)
                    .and_then(|s| self.short_mount(d, item, &ipath, &s)),
            };
            if let Some(m) = mount {
                if m.source.starts_with(super::files::REPO_SOURCE) {
                    self.repo_mount(d, item, &ipath, m, c);
                    continue;
                }
                if c.mounts.iter().any(|o| o.target == m.target) {
                    d.at(item, &ipath, format!("`{}` is mounted twice", m.target));
                    continue;
                }
                c.mounts.push(m);
            }
        }
    }

    /// Checks a mount source and gives (kind, engine-side source).
    fn mount_source(
        &self,
        d: &mut Diag,
        node: &Node,
        path: &str,
        kind: Option<MountKind>,
        source: &str,
    ) -> Option<(MountKind, String)> {
        if source.is_empty() {
            // Compose keeps an anonymous volume across a recreate of the container; a
            // per-slot named volume does the same here (see `MountKind::Anonymous`).
            if kind == Some(MountKind::Bind) {
                d.at(node, path, BIND_WITHOUT_SOURCE);
                return None;
            }
            return Some((MountKind::Anonymous, String::new()));
        }
        let looks_relative = source.starts_with('.') || source.starts_with('~');
        let kind = kind.unwrap_or(if source.starts_with('/') || looks_relative {
            MountKind::Bind
        } else {
            MountKind::Volume
        });
        match kind {
            MountKind::Bind => {
                if !source.starts_with('/') {
                    // Shipped from the repository (`files`): read by `repo_mount`.
                    return Some((
                        MountKind::Bind,
                        format!("{}{source}", super::files::REPO_SOURCE),
                    ));
                }
                Some((MountKind::Bind, source.to_string()))
            }
            MountKind::Volume => match self.volumes.get(source) {
                Some(v) => Some((MountKind::Volume, v.engine_name.clone())),
                None => {
                    d.at(
                        node,
                        path,
                        format!("volume `{source}` is not declared in the top-level `volumes`"),
                    );
                    None
                }
            },
            MountKind::Anonymous => Some((MountKind::Anonymous, String::new())),
        }
    }

    fn short_mount(&self, d: &mut Diag, node: &Node, path: &str, s: &str) -> Option<MountSpec> {
        let parts: Vec<&str> = s.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [_] => ("", parts[0], ""),
            [a, b] => (*a, *b, ""),
            [a, b, m] => (*a, *b, *m),
            _ => {
                d.at(
                    node,
                    path,
                    format!("invalid volume `{s}` (expected `source:target[:ro]`)"),
                );
                return None;
            }
        };
        let mut read_only = false;
        for opt in mode.split(',').filter(|o| !o.is_empty()) {
            match opt {
                "ro" => read_only = true,
                "rw" => read_only = false,
                // Docker on Linux accepts and ignores these (they tune Docker Desktop's file
                // sharing on macOS).
                "cached" | "delegated" | "consistent" => {}
                // SELinux relabelling has no field in the engine's mount API, which Convoy
                // uses: said, not silently dropped, and harmless where SELinux is off.
                "z" | "Z" => self.warn(
                    d,
                    node,
                    path,
                    format!(
                        "volume option `{opt}` (SELinux relabelling) is not applied by Convoy: \
                         on a host with SELinux enforcing, label the source yourself \
                         (`chcon -Rt container_file_t`); elsewhere it has no effect"
                    ),
                ),
                other => {
                    d.at(
                        node,
                        path,
                        format!("volume option `{other}` is not supported yet"),
                    );
                    return None;
                }
            }
        }
        if !target.starts_with('/') {
            d.at(
                node,
                path,
                format!("mount target `{target}` is not an absolute path"),
            );
            return None;
        }
        let (kind, source) = self.mount_source(d, node, path, None, source)?;
        Some(MountSpec {
            kind,
            source,
            target: target.to_string(),
            read_only,
        })
    }

    fn read_long_mount(
        &self,
        d: &mut Diag,
        node: &Node,
        entries: &[(Node, Node)],
        path: &str,
    ) -> Option<MountSpec> {
        let before = d.errors.len();
        let mut kind = None;
        let mut source = String::new();
        let mut target = None;
        let mut read_only = false;
        let mut saw_type = false;
        for (field, _k, v, fpath) in d.fields(entries, path, &MOUNT) {
            match field {
                "type" => {
                    saw_type = true;
                    match d.string(v, &fpath).as_deref() {
                        Some("bind") => kind = Some(MountKind::Bind),
                        Some("volume") => kind = Some(MountKind::Volume),
                        Some("tmpfs") => d.at(
                            v,
                            &fpath,
                            "mount type `tmpfs` is not supported yet: use the service's `tmpfs`",
                        ),
                        Some(t @ ("cluster" | "npipe" | "image")) => {
                            d.at(v, &fpath, format!("mount type `{t}` is not supported yet"))
                        }
                        Some(t) => d.at(
                            v,
                            &fpath,
                            format!("invalid mount type `{t}` (expected bind or volume)"),
                        ),
                        None => {}
                    }
                }
                "source" => source = d.string(v, &fpath).unwrap_or_default(),
                "target" => target = d.string(v, &fpath),
                "read_only" => read_only = d.bool(v, &fpath).unwrap_or(false),
                "bind" => {
                    if let Some(e) = d.map(v, &fpath) {
                        d.fields(e, &fpath, &MOUNT_BIND);
                    }
                }
                "volume" => {
                    if let Some(e) = d.map(v, &fpath) {
                        d.fields(e, &fpath, &MOUNT_VOLUME);
                    }
                }
                _ => {}
            }
        }
        if !saw_type {
            d.at(node, path, "missing `type` (bind or volume)");
        }
        let Some(target) = target else {
            d.at(node, path, "missing `target`");
            return None;
        };
        if !target.starts_with('/') {
            d.at(
                node,
                path,
                format!("mount target `{target}` is not an absolute path"),
            );
            return None;
        }
        if d.errors.len() > before {
            return None;
        }
        let (kind, source) = self.mount_source(d, node, path, kind, &source)?;
        Some(MountSpec {
            kind,
            source,
            target,
            read_only,
        })
    }
}
