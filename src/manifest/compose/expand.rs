//! The manifest-level transforms that run before any service is read: top-level `include`,
//! service `extends` and `profiles`. They turn the stack's Compose file (and the files it
//! names) into one YAML tree of the shape the stack reader already knows, without those keys.
//!
//! Every node keeps the line and column where it is written, in whichever file (`sources`
//! numbers the files). Included files are read relative to the including file's folder; an
//! include cycle, too deep a nesting and a name an included file already defines are located
//! errors. No I/O but through `Files::load`.

use super::super::typed::{join, Diag, Keys};
use super::super::yaml::{Kind, Node};
use super::sources::{get, inside, parent, Files, LINE_STRIDE, MAX_DEPTH};
use super::{extends, profiles, Input};

const INCLUDE: Keys = Keys {
    supported: &["path", "project_directory", "env_file"],
    unsupported: &[],
    extensions: false,
};

/// Whether a stack's file uses `include`, `extends` or `profiles`.
pub(super) fn needed(root: &Node) -> bool {
    let uses = |service: &(Node, Node)| {
        get(&service.1, "extends").is_some() || get(&service.1, "profiles").is_some()
    };
    get(root, "include").is_some()
        || matches!(get(root, "services").map(|s| &s.kind), Some(Kind::Map(services)) if services.iter().any(uses))
}

/// One service as gathered from the files: its key, its definition and the file it is in.
pub(super) struct Gathered {
    pub key: Node,
    pub value: Node,
    pub file: usize,
}

/// The stack's tree after `include`, `extends` and `profiles`, and the file table that locates
/// its nodes. `None` when an error makes reading the services pointless.
pub(super) fn expand<'a>(d: &mut Diag, root: &Node, input: &'a Input<'a>) -> Expanded<'a> {
    let mut files = Files::new(&d.file.clone(), root, input);
    let Kind::Map(top) = &root.kind else {
        // The stack reader says what is wrong with a file that is not a map.
        return Expanded {
            root: Some(root.clone()),
            left_out: Vec::new(),
            files,
        };
    };
    let mut services: Vec<Gathered> = Vec::new();
    let mut networks: Vec<(Node, Node)> = Vec::new();
    let mut volumes: Vec<(Node, Node)> = Vec::new();
    let mut others: Vec<(Node, Node)> = Vec::new();
    let mut seen: Vec<(usize, usize)> = Vec::new();
    gather(
        d,
        &mut files,
        0,
        top,
        &mut Sections {
            services: &mut services,
            networks: &mut networks,
            volumes: &mut volumes,
            others: &mut others,
        },
        &mut seen,
        0,
    );

    let mut resolved: Vec<(Node, Node)> = Vec::new();
    let mut unresolved = false;
    for g in &services {
        let name = g.key.scalar().unwrap_or_default();
        let path = join("services", name);
        match extends::resolve(d, &mut files, g.file, name, &g.value, &path) {
            Some(v) => resolved.push((g.key.clone(), v)),
            None => unresolved = true,
        }
    }
    if unresolved {
        // Reading the others would only add noise (an unknown dependency, a stack without
        // services); the stack is invalid anyway.
        return Expanded {
            root: None,
            left_out: Vec::new(),
            files,
        };
    }

    let stack_name = get(root, "name")
        .and_then(Node::scalar)
        .unwrap_or(input.folder_name)
        .to_string();
    let enabled = input.profiles.get(&stack_name);
    let services_at = get(root, "services").map(|n| (n.line, n.col));
    let Some((kept, left_out)) = profiles::filter(d, resolved, enabled, &stack_name, services_at)
    else {
        return Expanded {
            root: None,
            left_out: Vec::new(),
            files,
        };
    };

    let mut out = others;
    let position = |n: &Node| (n.line, n.col);
    let map_node = |entries: Vec<(Node, Node)>, at: Option<(usize, usize)>| {
        let (line, col) = entries
            .first()
            .map(|(k, _)| position(k))
            .or(at)
            .unwrap_or((root.line, root.col));
        Node {
            kind: Kind::Map(entries),
            line,
            col,
        }
    };
    for (name, entries) in [
        ("services", kept),
        ("networks", networks),
        ("volumes", volumes),
    ] {
        let Some(key) = top.iter().find(|(k, _)| k.scalar() == Some(name)) else {
            if !entries.is_empty() {
                out.push((scalar_at(name, root), map_node(entries, None)));
            }
            continue;
        };
        let value = if entries.is_empty() && !matches!(key.1.kind, Kind::Map(_)) {
            // Keep what is written (null, or a wrong type the reader reports).
            key.1.clone()
        } else {
            map_node(entries, Some(position(&key.1)))
        };
        out.push((key.0.clone(), value));
    }
    Expanded {
        root: Some(Node {
            kind: Kind::Map(out),
            line: root.line,
            col: root.col,
        }),
        left_out,
        files,
    }
}

/// What `expand` makes of a stack's file.
pub(super) struct Expanded<'a> {
    /// The tree to read; `None` after an error that makes reading it pointless.
    pub root: Option<Node>,
    /// Services left out by their profiles, to be checked on their own.
    pub left_out: Vec<(Node, Node)>,
    pub files: Files<'a>,
}

/// The expanded tree with `service` as its only service, without its `depends_on` (which may
/// name services that do run): a service left out by its profiles is still checked, as
/// Compose validates every service, so a typo in it does not wait for the day it is enabled.
pub(super) fn alone(root: &Node, key: &Node, service: &Node) -> Node {
    let mut service = service.clone();
    if let Kind::Map(entries) = &mut service.kind {
        entries.retain(|(k, _)| k.scalar() != Some("depends_on"));
    }
    let mut out = root.clone();
    if let Kind::Map(entries) = &mut out.kind {
        let services = Node {
            line: key.line,
            col: key.col,
            kind: Kind::Map(vec![(key.clone(), service)]),
        };
        match entries
            .iter_mut()
            .find(|(k, _)| k.scalar() == Some("services"))
        {
            Some((_, v)) => *v = services,
            None => entries.push((scalar_at("services", key), services)),
        }
    }
    out
}

fn scalar_at(text: &str, at: &Node) -> Node {
    Node {
        kind: Kind::Scalar {
            value: text.to_string(),
            plain: true,
        },
        line: at.line,
        col: at.col,
    }
}

struct Sections<'s> {
    services: &'s mut Vec<Gathered>,
    networks: &'s mut Vec<(Node, Node)>,
    volumes: &'s mut Vec<(Node, Node)>,
    /// The stack file's other top-level keys, kept for the stack reader.
    others: &'s mut Vec<(Node, Node)>,
}

/// Collects the services, networks and volumes of file `index` and, first, of the files it
/// includes (an included file's resources may not be redefined: Compose refuses the clash).
fn gather(
    d: &mut Diag,
    files: &mut Files<'_>,
    index: usize,
    top: &[(Node, Node)],
    out: &mut Sections<'_>,
    chain: &mut Vec<(usize, usize)>,
    depth: usize,
) {
    let dir = files.list[index].dir.clone();
    if let Some((_, v)) = top.iter().find(|(k, _)| k.scalar() == Some("include")) {
        let items: Vec<&Node> = match &v.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ if v.is_null() => Vec::new(),
            _ => {
                d.at(v, "include", "expected a list of files to include");
                Vec::new()
            }
        };
        for (i, item) in items.into_iter().enumerate() {
            let ipath = format!("include[{i}]");
            for (rel, at, apath) in include_paths(d, item, &ipath, &dir) {
                let Some(inc) = files.load(d, &dir, &rel, at, &apath) else {
                    continue;
                };
                if inc == index || chain.iter().any(|(f, _)| *f == inc) {
                    d.at(
                        at,
                        &apath,
                        format!(
                            "`{}` includes itself (through {})",
                            files.list[inc].path, files.list[index].path
                        ),
                    );
                    continue;
                }
                if depth + 1 > MAX_DEPTH {
                    d.at(
                        at,
                        &apath,
                        format!("includes are nested more than {MAX_DEPTH} deep"),
                    );
                    continue;
                }
                let Kind::Map(inc_top) = files.list[inc].root.kind.clone() else {
                    d.at(
                        at,
                        &apath,
                        format!(
                            "`{}` is not a compose file (expected a map with `services:`)",
                            files.list[inc].path
                        ),
                    );
                    continue;
                };
                // The included file's own top-level keys are checked as the stack's are.
                let _ = d.fields(&inc_top, "", &super::keys::TOP);
                chain.push((index, inc));
                gather(d, files, inc, &inc_top, out, chain, depth + 1);
                chain.pop();
            }
        }
    }
    for (k, v) in top {
        let key = k.scalar().unwrap_or_default();
        match key {
            "services" | "networks" | "volumes" => {
                let Kind::Map(entries) = &v.kind else {
                    if index == 0 || v.is_null() {
                        continue; // The stack reader reports the stack's own.
                    }
                    d.at(v, key, "expected a map");
                    continue;
                };
                for (name, value) in entries {
                    let n = name.scalar().unwrap_or_default();
                    let clash = match key {
                        "services" => out
                            .services
                            .iter()
                            .find(|g| g.key.scalar() == Some(n))
                            .map(|g| (g.key.line, g.file)),
                        "networks" => first_of(out.networks, n),
                        _ => first_of(out.volumes, n),
                    };
                    if let Some((line, file)) = clash {
                        let other = &files.list[file].path;
                        let line = line % LINE_STRIDE;
                        d.at(
                            name,
                            &join(key, n),
                            format!(
                                "`{n}` is also defined in `{other}` (line {line}): an included \
                                 file's {key} may not be redefined"
                            ),
                        );
                        continue;
                    }
                    match key {
                        "services" => out.services.push(Gathered {
                            key: name.clone(),
                            value: value.clone(),
                            file: index,
                        }),
                        "networks" => out.networks.push((name.clone(), value.clone())),
                        _ => out.volumes.push((name.clone(), value.clone())),
                    }
                }
            }
            "include" => {}
            _ if index == 0 => out.others.push((k.clone(), v.clone())),
            _ => {}
        }
    }
}

fn first_of(entries: &[(Node, Node)], name: &str) -> Option<(usize, usize)> {
    entries
        .iter()
        .find(|(k, _)| k.scalar() == Some(name))
        .map(|(k, _)| (k.line, Files::index_of(k.line)))
}

/// The files one `include` entry names: a path, or `{path: <path or list>, ...}`.
fn include_paths<'n>(
    d: &mut Diag,
    item: &'n Node,
    path: &str,
    dir: &str,
) -> Vec<(String, &'n Node, String)> {
    match &item.kind {
        Kind::Map(entries) => {
            let mut out = Vec::new();
            let mut project_dir = None;
            for (name, _k, v, fpath) in d.fields(entries, path, &INCLUDE) {
                match name {
                    "path" => {
                        for (i, (s, n)) in d
                            .string_or_list(v, &fpath)
                            .unwrap_or_default()
                            .into_iter()
                            .enumerate()
                        {
                            let at = if matches!(v.kind, Kind::Seq(_)) {
                                format!("{fpath}[{i}]")
                            } else {
                                fpath.clone()
                            };
                            out.push((s, n, at));
                        }
                    }
                    "project_directory" => project_dir = Some((v, fpath)),
                    _ => d.at(
                        v,
                        &fpath,
                        "`env_file` of an include is not supported yet: the included file is \
                         interpolated with the stack's own variables",
                    ),
                }
            }
            if !entries.iter().any(|(k, _)| k.scalar() == Some("path")) {
                d.at(item, path, "an include needs `path`");
            }
            if let Some((v, fpath)) = project_dir {
                // Paths in an included file are read from its own folder; another project
                // directory would need every relative path in it rebased.
                let folder = |f: &str| inside(dir, f).map(|p| parent(&p).to_string());
                let wanted = d.string(v, &fpath).and_then(|s| inside(dir, &s));
                let same = wanted.is_some() && out.iter().all(|(f, _, _)| folder(f) == wanted);
                if !same {
                    d.at(
                        v,
                        &fpath,
                        "`project_directory` other than the included file's own folder is not \
                         supported: an included file's relative paths are read from its folder",
                    );
                }
            }
            out
        }
        _ => match d.string(item, path) {
            Some(s) => vec![(s, item, path.to_string())],
            None => Vec::new(),
        },
    }
}
