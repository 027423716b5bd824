//! `sync_windows:` in `convoy.yaml`: a list of `{kind, schedule, duration, timezone, stacks,
//! manual_sync}`, each value checked where it is written (file:line:column and key). The stack
//! names are checked against the repository's stacks once those are read (`check_stacks`):
//! a misspelt name is an error, not a warning, because it would leave the stack it meant
//! unprotected by the freeze, and the first sign would be the very deploy the window was
//! written to stop.
//!
//! No I/O and no clock: evaluating a window at a time is `core::windows`.

use std::collections::BTreeMap;

use super::typed::{Diag, Keys};
use super::values::parse_duration_ns;
use super::yaml::Node;
use super::ManifestError;
use crate::model::schedule::{parse_timezone, Schedule};
use crate::model::spec::StackSpec;
use crate::model::sync_window::{SyncWindow, WindowKind};

const WINDOW: Keys = Keys {
    supported: &[
        "kind",
        "schedule",
        "duration",
        "timezone",
        "stacks",
        "manual_sync",
    ],
    unsupported: &[],
    extensions: false,
};

/// A stack name a window lists, with its node and key path, for `check_stacks`.
pub(super) type WindowStack = (String, Node, String);

/// Reads the list; returns the windows that are valid and every stack name written.
pub(super) fn read(d: &mut Diag, v: &Node, path: &str) -> (Vec<SyncWindow>, Vec<WindowStack>) {
    let mut windows = Vec::new();
    let mut names = Vec::new();
    if v.is_null() {
        return (windows, names);
    }
    let super::yaml::Kind::Seq(items) = &v.kind else {
        d.at(
            v,
            path,
            "expected a list of windows (`- {kind: deny, schedule: \"0 22 * * 5\", duration: 60h}`)",
        );
        return (windows, names);
    };
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        if let Some(w) = read_one(d, item, &ipath, &mut names) {
            windows.push(w);
        }
    }
    (windows, names)
}

fn read_one(
    d: &mut Diag,
    item: &Node,
    path: &str,
    names: &mut Vec<WindowStack>,
) -> Option<SyncWindow> {
    let entries = d.map(item, path)?;
    let before = d.errors.len();
    let mut kind = None;
    let mut expr: Option<(String, &Node, String)> = None;
    let mut duration = None;
    let mut tz: Option<String> = None;
    let mut stacks = None;
    let mut manual_sync = true;
    for (name, _k, v, kpath) in d.fields(entries, path, &WINDOW) {
        match name {
            "kind" => match d.string(v, &kpath).as_deref() {
                Some("deny") => kind = Some(WindowKind::Deny),
                Some("allow") => kind = Some(WindowKind::Allow),
                Some(other) => d.at(
                    v,
                    &kpath,
                    format!("unknown window kind `{other}` (expected `deny` or `allow`)"),
                ),
                None => {}
            },
            "schedule" => {
                if let Some(s) = d.string(v, &kpath) {
                    expr = Some((s, v, kpath));
                }
            }
            "duration" => {
                if let Some(s) = d.string(v, &kpath) {
                    match parse_duration_ns(&s) {
                        Ok(ns) if ns >= 1_000_000_000 => {
                            duration = Some(ns.div_euclid(1_000_000_000))
                        }
                        Ok(_) => d.at(v, &kpath, "expected a duration of at least 1s"),
                        Err(m) => d.at(v, &kpath, m),
                    }
                }
            }
            "timezone" => {
                if let Some(s) = d.string(v, &kpath) {
                    match parse_timezone(&s) {
                        Ok(_) => tz = Some(s),
                        Err(e) => d.at(v, &kpath, e.to_string()),
                    }
                }
            }
            "stacks" => {
                if let Some(list) = d.string_list(v, &kpath) {
                    let mut out: Vec<String> = Vec::new();
                    for (j, (s, n)) in list.into_iter().enumerate() {
                        let spath = format!("{kpath}[{j}]");
                        if out.contains(&s) {
                            d.at(n, &spath, format!("stack `{s}` is listed twice"));
                            continue;
                        }
                        names.push((s.clone(), n.clone(), spath));
                        out.push(s);
                    }
                    stacks = Some(out);
                }
            }
            "manual_sync" => {
                if let Some(b) = d.bool(v, &kpath) {
                    manual_sync = b;
                }
            }
            _ => {}
        }
    }
    for (key, missing) in [
        ("kind", kind.is_none()),
        ("schedule", expr.is_none()),
        ("duration", duration.is_none()),
    ] {
        let written = entries.iter().any(|(k, _)| k.scalar() == Some(key));
        if missing && !written {
            d.at(item, &format!("{path}.{key}"), format!("missing `{key}`"));
        }
    }
    let schedule = match expr {
        Some((s, node, kpath)) => match Schedule::parse(&s, tz.as_deref()) {
            Ok(s) => Some(s),
            Err(e) => {
                d.at(node, &kpath, e.to_string());
                None
            }
        },
        None => None,
    };
    if d.errors.len() > before {
        return None;
    }
    Some(SyncWindow {
        kind: kind?,
        schedule: schedule?,
        duration_secs: duration?,
        stacks,
        manual_sync,
    })
}

/// A window naming a stack the repository does not have is an error (see the module's
/// paragraph). A folder whose stack did not load is not reported twice.
pub(super) fn check_stacks(
    file: &str,
    names: &[WindowStack],
    stacks: &BTreeMap<String, StackSpec>,
    folders: &[String],
    errors: &mut Vec<ManifestError>,
) {
    for (name, node, key) in names {
        if !stacks.contains_key(name) && !folders.contains(name) {
            let known: Vec<&str> = stacks.keys().map(String::as_str).collect();
            errors.push(ManifestError {
                file: file.to_string(),
                line: node.line,
                column: node.col,
                key: key.clone(),
                message: format!(
                    "no stack is named `{name}` (the stacks are: {})",
                    known.join(", ")
                ),
            });
        }
    }
}
