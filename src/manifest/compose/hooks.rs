//! Compose's lifecycle hooks, `post_start` and `pre_stop`: a list of `{command, user,
//! privileged, working_dir, environment}` each, read into `ContainerSpec::hooks` (issue 9).
//!
//! Reads only the nodes handed in; no I/O. A hook's environment takes a bare `K` from the
//! variables as the service's does, and the values of secret-looking names join the file's
//! secrets, so no message shows them. It does not decide when hooks run (the executor does).

use std::collections::BTreeMap;

use super::Stack;
use crate::manifest::typed::{Diag, Keys};
use crate::manifest::yaml::{Kind, Node};
use crate::manifest::MIN_SECRET_LEN;
use crate::model::hooks::Hook;
use crate::model::spec::is_secret_name;

/// The keys of one hook.
pub(super) const HOOK: Keys = Keys {
    supported: &[
        "command",
        "user",
        "privileged",
        "working_dir",
        "environment",
    ],
    unsupported: &[],
    extensions: true,
};

impl Stack<'_> {
    /// `post_start` or `pre_stop`: the hooks in the order written.
    pub(super) fn read_hooks(&self, d: &mut Diag, v: &Node, path: &str) -> Vec<Hook> {
        let Kind::Seq(items) = &v.kind else {
            if !v.is_null() {
                d.at(
                    v,
                    path,
                    format!("expected a list of hooks, found {}", v.type_name()),
                );
            }
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{path}[{i}]");
            if let Some(h) = self.read_hook(d, item, &ipath) {
                out.push(h);
            }
        }
        out
    }

    fn read_hook(&self, d: &mut Diag, v: &Node, path: &str) -> Option<Hook> {
        let entries = d.map(v, path)?;
        let before = d.errors.len();
        let mut hook = Hook::default();
        let mut command = None;
        for (field, _k, v, fpath) in d.fields(entries, path, &HOOK) {
            match field {
                // The service's own reading of `command`; a null one is an empty command here.
                "command" => {
                    command = if v.is_null() {
                        Some(Vec::new())
                    } else {
                        super::service::command(d, v, &fpath)
                    }
                }
                "user" => hook.user = d.string(v, &fpath).filter(|s| !s.is_empty()),
                "privileged" => hook.privileged = d.bool(v, &fpath).unwrap_or(false),
                "working_dir" => {
                    hook.working_dir = d.string(v, &fpath).filter(|s| !s.is_empty());
                    if let Some(w) = hook.working_dir.as_ref().filter(|w| !w.starts_with('/')) {
                        d.at(
                            v,
                            &fpath,
                            format!("working_dir `{w}` is not an absolute path"),
                        );
                    }
                }
                "environment" => {
                    let mut env = BTreeMap::new();
                    for (k, val, _) in d.list_or_dict(v, &fpath, '=').unwrap_or_default() {
                        // A bare name takes its value from the variables, and is dropped when
                        // they have none, as for the service's own environment.
                        if let Some(val) = val.or_else(|| self.input.vars.get(&k).cloned()) {
                            env.insert(k, val);
                        }
                    }
                    d.secrets.extend(
                        env.iter()
                            .filter(|(k, v)| {
                                is_secret_name(k) && v.chars().count() >= MIN_SECRET_LEN
                            })
                            .map(|(_, v)| v.clone()),
                    );
                    hook.environment = env;
                }
                _ => {}
            }
        }
        match command {
            Some(c) if !c.is_empty() => hook.command = c,
            Some(_) => d.at(v, path, "the hook's `command` is empty"),
            None if !entries.iter().any(|(k, _)| k.scalar() == Some("command")) => {
                d.at(v, path, "a hook needs a `command`")
            }
            None => {}
        }
        (d.errors.len() == before).then_some(hook)
    }
}
