//! Networks: the top-level `networks` (with their engine names), the stack's implicit `default`
//! network, and a service's `networks` (attachments and aliases).
//!
//! Reads only the nodes handed in; no I/O. Which networks are created (only those some service
//! uses, as Compose does) is decided once every service is read.

use std::collections::BTreeMap;

use super::keys::{ATTACHMENT, EXTERNAL, NETWORK};
use super::{user_labels, Stack};
use crate::manifest::typed::{join, Diag};
use crate::manifest::yaml::{Kind, Node};
use crate::model::spec::NetworkSpec;

impl Stack<'_> {
    pub(super) fn default_network(&self) -> NetworkSpec {
        NetworkSpec {
            engine_name: format!("{}_default", self.name),
            driver: "bridge".into(),
            internal: false,
            labels: BTreeMap::new(),
            external: false,
        }
    }

    pub(super) fn read_networks(
        &mut self,
        d: &mut Diag,
        v: &Node,
        path: &str,
    ) -> BTreeMap<String, NetworkSpec> {
        let mut out = BTreeMap::new();
        let Some(entries) = d.map(v, path) else {
            return out;
        };
        for (k, v) in entries {
            let name = k.scalar().unwrap_or_default().to_string();
            let npath = join(path, &name);
            let Some(fields) = d.map(v, &npath) else {
                continue;
            };
            let mut spec = NetworkSpec {
                engine_name: format!("{}_{name}", self.name),
                driver: "bridge".into(),
                internal: false,
                labels: BTreeMap::new(),
                external: false,
            };
            let mut explicit_name = None;
            let mut external_name = None;
            for (field, _k, v, fpath) in d.fields(fields, &npath, &NETWORK) {
                match field {
                    "driver" => spec.driver = d.string(v, &fpath).unwrap_or_default(),
                    "internal" => spec.internal = d.bool(v, &fpath).unwrap_or(false),
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
            out.insert(name, spec);
        }
        out
    }

    pub(super) fn read_attachments(
        &self,
        d: &mut Diag,
        v: &Node,
        path: &str,
    ) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        let check = |d: &mut Diag, name: &str, node: &Node, npath: &str| {
            if name == "default" || self.networks.contains_key(name) {
                true
            } else {
                d.at(
                    node,
                    npath,
                    format!("network `{name}` is not declared in the top-level `networks`"),
                );
                false
            }
        };
        match &v.kind {
            Kind::Seq(_) => {
                for (i, (name, node)) in d
                    .string_list(v, path)
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                {
                    if check(d, &name, node, &format!("{path}[{i}]")) {
                        out.push((name, Vec::new()));
                    }
                }
            }
            Kind::Map(entries) => {
                for (k, v) in entries {
                    let name = k.scalar().unwrap_or_default().to_string();
                    let npath = join(path, &name);
                    if !check(d, &name, k, &npath) {
                        continue;
                    }
                    let mut aliases = Vec::new();
                    if let Some(fields) = d.map(v, &npath) {
                        for (_f, _k, av, apath) in d.fields(fields, &npath, &ATTACHMENT) {
                            aliases = d
                                .string_list(av, &apath)
                                .unwrap_or_default()
                                .into_iter()
                                .map(|(s, _)| s)
                                .collect();
                        }
                    }
                    out.push((name, aliases));
                }
            }
            _ => d.at(
                v,
                path,
                format!("expected a list or a map, found {}", v.type_name()),
            ),
        }
        out
    }
}

/// `external: true`, or the older `external: {name: x}` (external, with that engine name):
/// whether it is external, and the name with where it is written.
pub(super) fn read_external<'n>(
    d: &mut Diag,
    v: &'n Node,
    path: &str,
) -> (bool, Option<(String, &'n Node, String)>) {
    let Kind::Map(entries) = &v.kind else {
        return (d.bool(v, path).unwrap_or(false), None);
    };
    let mut name = None;
    for (_f, _k, fv, fpath) in d.fields(entries, path, &EXTERNAL) {
        name = d.string(fv, &fpath).map(|n| (n, fv, fpath));
    }
    (true, name)
}

/// The engine name from `name:` and the older `external.name`; both written must agree.
pub(super) fn settle_name(
    d: &mut Diag,
    explicit: Option<String>,
    external: Option<(String, &Node, String)>,
) -> Option<String> {
    match (explicit, external) {
        (Some(n), Some((e, node, path))) if n != e => {
            d.at(
                node,
                &path,
                format!("`external.name` `{e}` disagrees with `name` `{n}`: write one of them"),
            );
            Some(n)
        }
        (Some(n), _) => Some(n),
        (None, e) => e.map(|(n, _, _)| n),
    }
}
