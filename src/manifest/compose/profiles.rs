//! Service `profiles`: a service that names profiles runs only when one of them is enabled for
//! its stack (`profiles: {<stack>: [names]}` in `convoy.yaml`, as `COMPOSE_PROFILES` does for
//! Compose); a service without `profiles` always runs. A disabled service is left out before
//! the service reader sees it, so it is not desired anywhere.
//!
//! It must not let an enabled service depend on a disabled one: that is a located error naming
//! both, since the dependency could never start. No I/O.

use std::collections::BTreeSet;

use super::super::typed::{join, Diag};
use super::super::yaml::{Kind, Node};
use super::sources::get;

/// Services as (key, definition).
type Services = Vec<(Node, Node)>;

/// Compose's pattern for a profile name: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn is_profile_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The services (key, definition) to run, and those left out (still to be checked), without
/// their `profiles` key; `None` when none is left to run.
pub(super) fn filter(
    d: &mut Diag,
    services: Vec<(Node, Node)>,
    enabled: Option<&BTreeSet<String>>,
    stack: &str,
    services_at: Option<(usize, usize)>,
) -> Option<(Services, Services)> {
    let empty = BTreeSet::new();
    let enabled = enabled.unwrap_or(&empty);
    let mut kept: Vec<(Node, Node)> = Vec::new();
    // Disabled service name → its profiles.
    let mut disabled: Vec<(String, Vec<String>)> = Vec::new();
    let mut left_out: Vec<(Node, Node)> = Vec::new();
    let total = services.len();
    for (k, mut v) in services {
        let name = k.scalar().unwrap_or_default().to_string();
        let path = join(&join("services", &name), "profiles");
        let mut names: Vec<String> = Vec::new();
        if let Some(p) = get(&v, "profiles") {
            for (i, (s, node)) in d
                .string_list(p, &path)
                .unwrap_or_default()
                .into_iter()
                .enumerate()
            {
                if is_profile_name(&s) {
                    names.push(s);
                } else {
                    d.at(
                        node,
                        &format!("{path}[{i}]"),
                        "a profile name is letters, digits, `_`, `.` and `-`, starting with a \
                         letter or digit (at least two characters)",
                    );
                }
            }
        }
        if let Kind::Map(entries) = &mut v.kind {
            entries.retain(|(k, _)| k.scalar() != Some("profiles"));
        }
        if names.is_empty() || names.iter().any(|n| enabled.contains(n)) {
            kept.push((k, v));
        } else {
            disabled.push((name, names));
            left_out.push((k, v));
        }
    }
    for (k, v) in &kept {
        let name = k.scalar().unwrap_or_default();
        let Some(deps) = get(v, "depends_on") else {
            continue;
        };
        let dpath = join(&join("services", name), "depends_on");
        let listed: Vec<(&str, &Node, String)> = match &deps.kind {
            Kind::Seq(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.scalar().map(|s| (s, n, format!("{dpath}[{i}]"))))
                .collect(),
            Kind::Map(entries) => entries
                .iter()
                .filter(|(_, v)| get(v, "required").and_then(Node::as_bool) != Some(false))
                .filter_map(|(k, _)| k.scalar().map(|s| (s, k, join(&dpath, s))))
                .collect(),
            Kind::Scalar { .. } => Vec::new(),
        };
        for (dep, node, path) in listed {
            if let Some((_, profiles)) = disabled.iter().find(|(n, _)| n == dep) {
                d.at(
                    node,
                    &path,
                    format!(
                        "`{name}` depends on `{dep}`, which runs only with profile {}: none is \
                         enabled for stack `{stack}` (`profiles:` in convoy.yaml)",
                        quoted(profiles)
                    ),
                );
            }
        }
    }
    // The reader would add "unknown service" to the error above, and a dependency that is not
    // `required` is left out, as Compose does when the service does not run.
    let off = |n: &Node| {
        n.scalar()
            .is_some_and(|s| disabled.iter().any(|(d, _)| d == s))
    };
    for (_, v) in &mut kept {
        let Kind::Map(entries) = &mut v.kind else {
            continue;
        };
        for (k, deps) in entries.iter_mut() {
            if k.scalar() != Some("depends_on") {
                continue;
            }
            match &mut deps.kind {
                Kind::Seq(items) => items.retain(|n| !off(n)),
                Kind::Map(entries) => entries.retain(|(k, _)| !off(k)),
                Kind::Scalar { .. } => {}
            }
        }
    }
    if kept.is_empty() && total > 0 {
        let msg = format!(
            "every service of stack `{stack}` is in a profile not enabled for it \
             (`profiles:` in convoy.yaml)"
        );
        match services_at {
            Some((line, col)) => d.at(
                &Node {
                    kind: Kind::Seq(Vec::new()),
                    line,
                    col,
                },
                "services",
                msg,
            ),
            None => d.file_level(msg),
        }
        return None;
    }
    Some((kept, left_out))
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_follow_compose() {
        assert!(is_profile_name("debug"));
        assert!(is_profile_name("a1.b_c-d"));
        assert!(!is_profile_name("d"));
        assert!(!is_profile_name("-x"));
        assert!(!is_profile_name("a b"));
        assert!(!is_profile_name(""));
    }
}
