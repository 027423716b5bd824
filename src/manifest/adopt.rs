//! `adopt:` in `convoy.yaml`: the Compose projects the fleet takes over, each as
//! `{project, host, stack}`, read with located errors.
//!
//! Every entry widens what the fleet owns (`model::adopt`), so the reader is strict: a host the
//! fleet file does not declare, a stack the repository does not have, a project adopted twice
//! on one host or a stack that two adoptions claim on one host are errors at the entry that
//! writes them. It must not read anything but the node it is given (no I/O).

use std::collections::BTreeMap;

use super::typed::{Diag, Keys};
use super::yaml::{Kind, Node};
use crate::model::adopt::{is_project_name, Adoption};

const ENTRY: Keys = Keys {
    supported: &["project", "host", "stack"],
    unsupported: &[],
    extensions: false,
};

/// The entries of `adopt:`, each with the node of its stack name (checked once the stacks are
/// read). Hosts are checked by `check_hosts`, once they are.
pub(super) fn read(d: &mut Diag, v: &Node, path: &str) -> Vec<(Adoption, Node, Node)> {
    let items = match &v.kind {
        Kind::Seq(items) => items,
        _ if v.is_null() => return Vec::new(),
        _ => {
            d.at(
                v,
                path,
                format!(
                    "expected a list of `{{project, host, stack}}`, found {}",
                    v.type_name()
                ),
            );
            return Vec::new();
        }
    };
    let mut out: Vec<(Adoption, Node, Node)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        let Some(entries) = d.map(item, &ipath) else {
            continue;
        };
        let mut project = None;
        let mut host = None;
        let mut stack = None;
        for (name, _k, val, kpath) in d.fields(entries, &ipath, &ENTRY) {
            let Some(s) = d.string(val, &kpath) else {
                continue;
            };
            match name {
                "project" if !is_project_name(&s) => d.at(
                    val,
                    &kpath,
                    "a Compose project name is lower-case letters, digits, `_` and `-`",
                ),
                "project" => project = Some(s),
                "host" => host = Some((s, val.clone())),
                "stack" if !is_stack_name(&s) => d.at(
                    val,
                    &kpath,
                    "a stack name is letters, digits, `_`, `.` and `-`",
                ),
                "stack" => stack = Some((s, val.clone())),
                _ => {}
            }
        }
        for (key, missing) in [
            ("project", project.is_none()),
            ("host", host.is_none()),
            ("stack", stack.is_none()),
        ] {
            if missing && !entries.iter().any(|(k, _)| k.scalar() == Some(key)) {
                d.at(item, &format!("{ipath}.{key}"), format!("missing `{key}`"));
            }
        }
        let (Some(project), Some((host, host_node)), Some((stack, stack_node))) =
            (project, host, stack)
        else {
            continue;
        };
        if let Some((first, _, _)) = out
            .iter()
            .find(|(a, _, _)| a.host == host && (a.project == project || a.stack == stack))
        {
            let what = if first.project == project {
                format!("project `{project}` on host `{host}` is adopted twice")
            } else {
                format!(
                    "stack `{stack}` on host `{host}` already adopts project `{}`",
                    first.project
                )
            };
            d.at(item, &ipath, what);
            continue;
        }
        out.push((
            Adoption {
                project,
                host,
                stack,
            },
            host_node,
            stack_node,
        ));
    }
    out
}

/// Every adopted host must be a host of the fleet.
pub(super) fn check_hosts<T>(
    d: &mut Diag,
    adopted: &[(Adoption, Node, Node)],
    hosts: &BTreeMap<String, T>,
) {
    for (i, (a, host_node, _)) in adopted.iter().enumerate() {
        if !hosts.contains_key(&a.host) {
            let known: Vec<&str> = hosts.keys().map(String::as_str).collect();
            d.at(
                host_node,
                &format!("adopt[{i}].host"),
                format!(
                    "unknown host `{}` (the hosts are: {})",
                    a.host,
                    known.join(", ")
                ),
            );
        }
    }
}

/// Every adopted stack must be a stack of the repository; a folder whose stack did not load
/// is not reported again.
pub(super) fn check_stacks<T>(
    file: &str,
    adopted: &[(Adoption, Node)],
    stacks: &BTreeMap<String, T>,
    folders: &[String],
    errors: &mut Vec<super::ManifestError>,
) {
    for (i, (a, node)) in adopted.iter().enumerate() {
        if !stacks.contains_key(&a.stack) && !folders.contains(&a.stack) {
            errors.push(super::ManifestError {
                file: file.to_string(),
                line: node.line,
                column: node.col,
                key: format!("adopt[{i}].stack"),
                message: format!("no stack is named `{}`", a.stack),
            });
        }
    }
}

/// A stack name as the fleet file writes one (`[a-zA-Z0-9_.-]+`, as `fleet::is_plain_name`;
/// not imported from there, which reads this module).
fn is_stack_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}
