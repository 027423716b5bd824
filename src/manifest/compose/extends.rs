//! Service `extends` (in the same file, or `file:` elsewhere in the repository), resolved into
//! one service definition with Compose's merge rules, before the service reader sees it.
//!
//! The rules (Compose specification, "extends" and "merge"): mappings are merged key by key,
//! the extending service winning; sequences are appended, an identical item once;
//! `environment`, `labels` and `annotations` are merged by variable name whether written as a
//! list or a map; `volumes` and `devices` are unique by target (the extending service's entry
//! replaces the base's); `command`, `entrypoint` and `healthcheck.test` are replaced whole;
//! `depends_on` and `volumes_from` are not inherited. Relative paths (`env_file`, bind mount
//! sources) are read from the folder of the file that writes them, so they are rewritten to be
//! read from the stack's folder. Nodes keep their positions: an error in an inherited value
//! names the file where it is written. No I/O but through `Files::load`.

use super::super::typed::{Diag, Keys};
use super::super::yaml::{Kind, Node};
use super::sources::{get, Files, MAX_DEPTH};

const EXTENDS: Keys = Keys {
    supported: &["service", "file"],
    unsupported: &[],
    extensions: false,
};

/// Not inherited from the extended service (Compose: they name other services of its file).
const NOT_INHERITED: [&str; 2] = ["depends_on", "volumes_from"];
/// Replaced whole, never merged (shell commands).
const REPLACED: [&str; 2] = ["command", "entrypoint"];
/// Merged by name whether written as a list of `K=V` or as a map.
const BY_NAME: [&str; 3] = ["environment", "labels", "annotations"];
/// A string or a list: merged as a list.
const STRING_OR_LIST: [&str; 5] = ["dns", "dns_search", "dns_opt", "env_file", "tmpfs"];

/// Service `name` of file `file` (its definition `value`) with its `extends` chain resolved,
/// relative paths read from the stack's folder, and no `extends` key; `None` after an error.
pub(super) fn resolve(
    d: &mut Diag,
    files: &mut Files<'_>,
    file: usize,
    name: &str,
    value: &Node,
    path: &str,
) -> Option<Node> {
    let mut chain = vec![(file, name.to_string())];
    resolve_in(d, files, file, value, path, &mut chain)
}

fn resolve_in(
    d: &mut Diag,
    files: &mut Files<'_>,
    file: usize,
    value: &Node,
    path: &str,
    chain: &mut Vec<(usize, String)>,
) -> Option<Node> {
    let stack_dir = files.list[0].dir.clone();
    let local = rebase(value, &files.list[file].dir, &stack_dir);
    let Some(ext) = get(value, "extends") else {
        return Some(local);
    };
    let epath = format!("{path}.extends");
    let (target, rel, at, at_path) = match &ext.kind {
        Kind::Map(entries) => {
            let mut service = None;
            let mut rel = None;
            for (key, _k, v, fpath) in d.fields(entries, &epath, &EXTENDS) {
                let s = d.string(v, &fpath)?;
                match key {
                    "service" => service = Some((s, v, fpath)),
                    _ => rel = Some((s, v, fpath)),
                }
            }
            let Some((service, v, fpath)) = service else {
                d.at(ext, &epath, "`extends` needs `service`");
                return None;
            };
            (service, rel, v, fpath)
        }
        _ => (d.string(ext, &epath)?, None, ext, epath.clone()),
    };
    let target_file = match &rel {
        Some((rel, node, fpath)) => {
            let dir = files.list[file].dir.clone();
            files.load(d, &dir, rel, node, fpath)?
        }
        None => file,
    };
    let names = |chain: &[(usize, String)], files: &Files<'_>| {
        chain
            .iter()
            .map(|(f, s)| {
                if *f == 0 {
                    format!("`{s}`")
                } else {
                    format!("`{s}` ({})", files.list[*f].path)
                }
            })
            .collect::<Vec<_>>()
            .join(" → ")
    };
    if chain.iter().any(|(f, s)| *f == target_file && *s == target) {
        let mut cycle = chain.clone();
        cycle.push((target_file, target.clone()));
        let text = names(&cycle, files);
        d.at(at, &at_path, format!("`extends` makes a cycle: {text}"));
        return None;
    }
    if chain.len() >= MAX_DEPTH {
        d.at(
            at,
            &at_path,
            format!("`extends` chains more than {MAX_DEPTH} services"),
        );
        return None;
    }
    let base_value = get(&files.list[target_file].root, "services")
        .and_then(|s| get(s, &target))
        .cloned();
    let Some(base_value) = base_value else {
        let place = if target_file == file {
            String::new()
        } else {
            format!(" in `{}`", files.list[target_file].path)
        };
        d.at(
            at,
            &at_path,
            format!("`extends` names unknown service `{target}`{place}"),
        );
        return None;
    };
    chain.push((target_file, target));
    let base = resolve_in(d, files, target_file, &base_value, path, chain);
    chain.pop();
    let mut base = base?;
    if let Kind::Map(entries) = &mut base.kind {
        entries.retain(|(k, _)| !k.scalar().is_some_and(|k| NOT_INHERITED.contains(&k)));
    }
    Some(merge_service(base, local))
}

/// `local` (the extending service) over `base`; `extends` itself is dropped.
fn merge_service(base: Node, local: Node) -> Node {
    let (Kind::Map(mut out), Kind::Map(local_entries)) = (base.kind, local.kind.clone()) else {
        // A service that is not a map: the reader reports it as written.
        return local;
    };
    out.retain(|(k, _)| k.scalar() != Some("extends"));
    for (k, v) in local_entries {
        let name = k.scalar().unwrap_or_default().to_string();
        if name == "extends" {
            continue;
        }
        let Some(i) = out.iter().position(|(b, _)| b.scalar() == Some(&name)) else {
            out.push((k, v));
            continue;
        };
        let b = out[i].1.clone();
        let merged = if REPLACED.contains(&name.as_str()) {
            v
        } else if BY_NAME.contains(&name.as_str()) {
            merge_maps(as_map(b, '='), as_map(v, '='), false)
        } else if STRING_OR_LIST.contains(&name.as_str()) {
            merge_value(as_seq(b), as_seq(v), false)
        } else if name == "networks" {
            merge_maps(as_map(b, '\0'), as_map(v, '\0'), false)
        } else if name == "volumes" || name == "devices" {
            unique_by_target(b, v)
        } else {
            merge_value(b, v, name == "healthcheck")
        };
        out[i] = (k, merged);
    }
    Node {
        kind: Kind::Map(out),
        line: local.line,
        col: local.col,
    }
}

/// Compose's generic merge: maps by key, sequences appended (an identical scalar once), any
/// other pair replaced. `healthcheck` replaces its `test`.
fn merge_value(base: Node, local: Node, healthcheck: bool) -> Node {
    match (&base.kind, &local.kind) {
        (Kind::Map(_), Kind::Map(_)) => merge_maps(base, local, healthcheck),
        (Kind::Seq(b), Kind::Seq(l)) => {
            let mut items = b.clone();
            for item in l {
                let same = |o: &Node| o.scalar().is_some() && o.scalar() == item.scalar();
                if let Some(i) = items.iter().position(same) {
                    items.remove(i);
                }
                items.push(item.clone());
            }
            Node {
                kind: Kind::Seq(items),
                line: local.line,
                col: local.col,
            }
        }
        _ => local,
    }
}

fn merge_maps(base: Node, local: Node, healthcheck: bool) -> Node {
    let (Kind::Map(mut out), Kind::Map(entries)) = (base.kind, local.kind.clone()) else {
        return local;
    };
    for (k, v) in entries {
        let name = k.scalar().unwrap_or_default();
        match out.iter().position(|(b, _)| b.scalar() == Some(name)) {
            Some(i) if healthcheck && name == "test" => out[i] = (k, v),
            Some(i) => {
                let merged = merge_value(out[i].1.clone(), v, false);
                out[i] = (k, merged);
            }
            None => out.push((k, v)),
        }
    }
    Node {
        kind: Kind::Map(out),
        line: local.line,
        col: local.col,
    }
}

/// A list of `K<sep>V` (or of names, with `sep` `\0`) as a map, each entry where its item is
/// written; a map or anything else as it is.
fn as_map(node: Node, sep: char) -> Node {
    let Kind::Seq(items) = &node.kind else {
        return node;
    };
    let mut entries: Vec<(Node, Node)> = Vec::new();
    for item in items {
        let Some(text) = item.scalar() else {
            // Not a list the reader accepts: keep it as written for its error.
            return node;
        };
        let (k, v) = match text.split_once(sep) {
            Some((k, v)) => (k, Some(v)),
            None => (text, None),
        };
        let at = |value: &str, plain: bool| Node {
            kind: Kind::Scalar {
                value: value.to_string(),
                plain,
            },
            line: item.line,
            col: item.col,
        };
        // A list value is always a string; a missing one is null, as `K:` in a map.
        let value = v.map_or_else(|| at("", true), |v| at(v, false));
        entries.retain(|(o, _)| o.scalar() != Some(k));
        entries.push((at(k, false), value));
    }
    Node {
        kind: Kind::Map(entries),
        line: node.line,
        col: node.col,
    }
}

fn as_seq(node: Node) -> Node {
    match node.kind {
        Kind::Scalar { .. } if !node.is_null() => Node {
            line: node.line,
            col: node.col,
            kind: Kind::Seq(vec![node]),
        },
        _ => node,
    }
}

/// `volumes` and `devices`: the base's entries whose target the extending service does not
/// mount, then the extending service's.
fn unique_by_target(base: Node, local: Node) -> Node {
    let (Kind::Seq(b), Kind::Seq(l)) = (&base.kind, &local.kind) else {
        return local;
    };
    let targets: Vec<String> = l.iter().filter_map(target).collect();
    let mut items: Vec<Node> = b
        .iter()
        .filter(|i| target(i).is_none_or(|t| !targets.contains(&t)))
        .cloned()
        .collect();
    items.extend(l.iter().cloned());
    Node {
        kind: Kind::Seq(items),
        line: local.line,
        col: local.col,
    }
}

/// The container path of a mount or device: `src:dst[:mode]`, `dst`, or `{target: dst}`.
fn target(item: &Node) -> Option<String> {
    match &item.kind {
        Kind::Scalar { value, .. } => {
            let parts: Vec<&str> = value.split(':').collect();
            let t = match parts.as_slice() {
                [one] => one,
                [_, dst, ..] => dst,
                [] => return None,
            };
            Some(t.to_string())
        }
        Kind::Map(_) => get(item, "target")
            .and_then(Node::scalar)
            .map(str::to_string),
        Kind::Seq(_) => None,
    }
}

/// A service written in folder `from` with its relative paths made relative to `to`.
fn rebase(service: &Node, from: &str, to: &str) -> Node {
    let mut out = service.clone();
    if from == to {
        return out;
    }
    let prefix = relative(to, from);
    let fix = |s: &mut String| {
        if s.starts_with('.') {
            *s = format!("{prefix}/{}", s.strip_prefix("./").unwrap_or(s));
        }
    };
    let Kind::Map(entries) = &mut out.kind else {
        return out;
    };
    for (k, v) in entries.iter_mut() {
        match k.scalar() {
            Some("env_file") => each_scalar_item(v, &mut |s| {
                if !s.starts_with('/') {
                    *s = format!("{prefix}/{}", s.strip_prefix("./").unwrap_or(s));
                }
            }),
            Some("volumes") => {
                let Kind::Seq(items) = &mut v.kind else {
                    continue;
                };
                for item in items {
                    match &mut item.kind {
                        Kind::Scalar { value, .. } if value.contains(':') => {
                            if let Some((src, rest)) = value.split_once(':') {
                                let mut src = src.to_string();
                                fix(&mut src);
                                *value = format!("{src}:{rest}");
                            }
                        }
                        Kind::Map(fields) => {
                            for (fk, fv) in fields.iter_mut() {
                                if fk.scalar() == Some("source") {
                                    if let Kind::Scalar { value, .. } = &mut fv.kind {
                                        fix(value);
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// `env_file: x`, `[x, ...]` or `[{path: x}, ...]`: calls `f` on each path.
fn each_scalar_item(v: &mut Node, f: &mut dyn FnMut(&mut String)) {
    match &mut v.kind {
        Kind::Scalar { value, .. } => f(value),
        Kind::Seq(items) => {
            for item in items {
                match &mut item.kind {
                    Kind::Scalar { value, .. } => f(value),
                    Kind::Map(fields) => {
                        for (k, fv) in fields.iter_mut() {
                            if k.scalar() == Some("path") {
                                if let Kind::Scalar { value, .. } = &mut fv.kind {
                                    f(value);
                                }
                            }
                        }
                    }
                    Kind::Seq(_) => {}
                }
            }
        }
        Kind::Map(_) => {}
    }
}

/// The path from folder `from` to folder `to` (`../common` from `stacks/web` to
/// `stacks/common`); both are repository paths.
fn relative(from: &str, to: &str) -> String {
    let a: Vec<&str> = from.split('/').filter(|p| !p.is_empty()).collect();
    let b: Vec<&str> = to.split('/').filter(|p| !p.is_empty()).collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<&str> = vec![".."; a.len() - common];
    parts.extend(&b[common..]);
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::super::sources::parent;
    use super::*;

    #[test]
    fn relative_paths_between_folders() {
        assert_eq!(relative("stacks/web", "stacks/common"), "../common");
        assert_eq!(relative("stacks/web", "stacks/web/db"), "db");
        assert_eq!(relative("stacks/web", "shared"), "../../shared");
        assert_eq!(parent("stacks/web/compose.yaml"), "stacks/web");
    }
}
