//! Compose's lifecycle hooks, `post_start` and `pre_stop`: a list of `{command, user,
//! privileged, working_dir, environment}` each, read into `ContainerSpec::hooks` (issue 9);
//! and `pre_start`, the same fields with `per_replica` (the specification's `image`, a second
//! image to ship, is refused by name), its `command` optional (the image's own runs).
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

/// The keys of one `pre_start` hook.
pub(super) const PRE_START: Keys = Keys {
    supported: &[
        "command",
        "user",
        "privileged",
        "working_dir",
        "environment",
        "per_replica",
    ],
    unsupported: &[(
        "image",
        "Convoy ships each host the images of its services only, so another image for the hook would reach no host; run the hook from the service's image, or make it a one-shot service (`restart: no`) that this one depends on with `condition: service_completed_successfully`",
    )],
    extensions: true,
};

impl Stack<'_> {
    /// `post_start` or `pre_stop`: the hooks in the order written.
    pub(super) fn read_hooks(&self, d: &mut Diag, v: &Node, path: &str) -> Vec<Hook> {
        self.read_hook_list(d, v, path, &HOOK).0
    }

    /// `pre_start`: the hooks in the order written, and whether every one of them says
    /// `per_replica: true` (Convoy runs each before every replica it starts).
    pub(super) fn read_pre_start(&self, d: &mut Diag, v: &Node, path: &str) -> (Vec<Hook>, bool) {
        self.read_hook_list(d, v, path, &PRE_START)
    }

    fn read_hook_list(&self, d: &mut Diag, v: &Node, path: &str, keys: &Keys) -> (Vec<Hook>, bool) {
        let Kind::Seq(items) = &v.kind else {
            if !v.is_null() {
                d.at(
                    v,
                    path,
                    format!("expected a list of hooks, found {}", v.type_name()),
                );
            }
            return (Vec::new(), true);
        };
        let mut out = Vec::new();
        let mut all_per_replica = true;
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{path}[{i}]");
            if let Some((h, per_replica)) = self.read_hook(d, item, &ipath, keys) {
                out.push(h);
                all_per_replica &= per_replica;
            }
        }
        (out, all_per_replica)
    }

    fn read_hook(&self, d: &mut Diag, v: &Node, path: &str, keys: &Keys) -> Option<(Hook, bool)> {
        let entries = d.map(v, path)?;
        let before = d.errors.len();
        let mut hook = Hook::default();
        let mut command = None;
        let mut per_replica = false;
        // `pre_start` runs a container, whose image has a command of its own.
        let command_required = !keys.supported.contains(&"per_replica");
        for (field, _k, v, fpath) in d.fields(entries, path, keys) {
            match field {
                "per_replica" => per_replica = d.bool(v, &fpath).unwrap_or(false),
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
            None if command_required
                && !entries.iter().any(|(k, _)| k.scalar() == Some("command")) =>
            {
                d.at(v, path, "a hook needs a `command`")
            }
            None => {}
        }
        (d.errors.len() == before).then_some((hook, per_replica))
    }
}

impl Stack<'_> {
    /// A warning when `pre_start` hooks that are not `per_replica` belong to a service that runs
    /// more than one container: Compose runs them once for the service, Convoy before each
    /// replica it starts, since each replica is on its own host with that host's volumes (and
    /// one run on one host would prepare nothing on the others).
    pub(super) fn warn_pre_start_per_replica(
        &self,
        d: &Diag,
        at: Option<(&Node, String)>,
        svc: &crate::model::spec::ServiceSpec,
    ) {
        let Some((node, path)) = at else {
            return;
        };
        let many = match svc.mode {
            crate::model::spec::DeployMode::Global => "a global service".to_string(),
            _ if svc.replicas > 1 => format!("{} replicas", svc.replicas),
            _ => return,
        };
        self.warn(
            d,
            node,
            &path,
            format!(
                "`pre_start` runs before each replica Convoy starts, not once for the service \
             ({many}, each on its host with that host's volumes): make the hooks safe to run \
             more than once, at the same time on several hosts, and say so with \
             `per_replica: true`"
            ),
        );
    }
}
