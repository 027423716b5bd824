//! How a service's rollout is written: `deploy.update_config` and `deploy.rollback_config`
//! (Swarm's keys: `parallelism`, `delay`, `order`, `monitor`, `failure_action`,
//! `max_failure_ratio`), the rollout keys of `x-convoy` (`progress_deadline`, `readiness`), and
//! the refusal of a dotted `x-convoy.<key>` written at the service level, which Compose would
//! take as one extension key of that name and ignore.
//!
//! Reads only the nodes handed in and writes only into the service's `RolloutSpec`; no I/O.
//! Nothing here touches the `ContainerSpec`: rollout settings are not part of the spec hash, so
//! changing them alone replaces no container. A key with a bad value keeps its default and gets
//! a located error (the stack then gives no spec at all).

use super::duration_ns;
use super::keys::{READINESS, UPDATE_CONFIG};
use crate::manifest::typed::{join, Diag};
use crate::manifest::yaml::Node;
use crate::model::rollout::{FailureAction, Readiness, RolloutSpec, UpdateConfig, UpdateOrder};

/// Reads `update_config` (`rollback: false`) or `rollback_config` (`rollback: true`) into
/// `into`, which holds the defaults of the one it is (`UpdateConfig::default()` or
/// `UpdateConfig::rollback_default()`) for every key not written.
pub(super) fn read_update_config(
    d: &mut Diag,
    v: &Node,
    path: &str,
    into: &mut UpdateConfig,
    rollback: bool,
) {
    let Some(entries) = d.map(v, path) else {
        return;
    };
    for (f, _k, fv, fpath) in d.fields(entries, path, &UPDATE_CONFIG) {
        match f {
            // Swarm's 0 means "all at once", which `UpdateConfig::batch_size` knows.
            "parallelism" => {
                if let Some(n) = d.non_negative(fv, &fpath) {
                    into.parallelism = n;
                }
            }
            "delay" => {
                if let Some(ms) = duration_ms(d, fv, &fpath) {
                    into.delay_ms = ms;
                }
            }
            "monitor" => {
                if let Some(ms) = duration_ms(d, fv, &fpath) {
                    into.monitor_ms = ms;
                }
            }
            "order" => match d.string(fv, &fpath).as_deref() {
                Some("stop-first") => into.order = UpdateOrder::StopFirst,
                Some("start-first") => into.order = UpdateOrder::StartFirst,
                Some(o) => d.at(
                    fv,
                    &fpath,
                    format!("invalid order `{o}` (expected stop-first or start-first)"),
                ),
                None => {}
            },
            "failure_action" => match d.string(fv, &fpath).as_deref() {
                // Swarm refuses it too: a failed rollback has no older version to go back to.
                Some("rollback") if rollback => d.at(
                    fv,
                    &fpath,
                    "`failure_action: rollback` cannot be used in `rollback_config`: a failed \
                     rollback has no older version to go back to (expected pause or continue)",
                ),
                Some("rollback") => into.failure_action = FailureAction::Rollback,
                Some("pause") => into.failure_action = FailureAction::Pause,
                Some("continue") => into.failure_action = FailureAction::Continue,
                Some(a) => {
                    let expected = if rollback {
                        "pause or continue"
                    } else {
                        "rollback, pause or continue"
                    };
                    d.at(
                        fv,
                        &fpath,
                        format!("invalid failure_action `{a}` (expected {expected})"),
                    )
                }
                None => {}
            },
            "max_failure_ratio" => match d.number(fv, &fpath) {
                Some(r) if (0.0..=1.0).contains(&r) => into.max_failure_ratio = r,
                Some(r) => d.at(
                    fv,
                    &fpath,
                    format!(
                        "invalid max_failure_ratio {r} (expected a fraction from 0 to 1: 0.25 \
                         tolerates one failed replica in four)"
                    ),
                ),
                None => {}
            },
            _ => {}
        }
    }
}

/// One key of `x-convoy` that belongs to the rollout (`progress_deadline`, `readiness`); the
/// caller reads `hosts` itself.
pub(super) fn read_x_convoy_key(
    d: &mut Diag,
    field: &str,
    v: &Node,
    path: &str,
    rollout: &mut RolloutSpec,
) {
    match field {
        "progress_deadline" => match duration_ms(d, v, path) {
            Some(0) => d.at(
                v,
                path,
                "a progress deadline of 0 would fail every new replica: expected a duration \
                 above 0 (the default is 2m)",
            ),
            Some(ms) => rollout.progress_deadline_ms = ms,
            None => {}
        },
        "readiness" => rollout.readiness = read_readiness(d, v, path),
        _ => {}
    }
}

/// `x-convoy.readiness`: `port` (required), `path` (`/` by default), `expect` (200).
fn read_readiness(d: &mut Diag, v: &Node, path: &str) -> Option<Readiness> {
    let entries = d.map(v, path)?;
    let before = d.errors.len();
    let mut port = None;
    let mut port_written = false;
    let mut r = Readiness {
        port: 0,
        path: "/".into(),
        expect: 200,
    };
    for (f, _k, fv, fpath) in d.fields(entries, path, &READINESS) {
        match f {
            "port" => {
                port_written = true;
                match d.int(fv, &fpath) {
                    Some(n) if (1..=65535).contains(&n) => port = u16::try_from(n).ok(),
                    Some(n) => d.at(
                        fv,
                        &fpath,
                        format!("invalid port {n} (expected 1 to 65535)"),
                    ),
                    None => {}
                }
            }
            "path" => {
                if let Some(s) = d.string(fv, &fpath) {
                    if !s.starts_with('/') {
                        d.at(
                            fv,
                            &fpath,
                            format!("the probe's path `{s}` does not start with `/`"),
                        );
                    } else if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                        // It goes into the request line as written.
                        d.at(
                            fv,
                            &fpath,
                            "the probe's path holds a space or a control character: \
                             percent-encode it (`%20`)",
                        );
                    } else {
                        r.path = s;
                    }
                }
            }
            "expect" => match d.int(fv, &fpath) {
                Some(n) if (100..=599).contains(&n) => r.expect = n as u16,
                Some(n) => d.at(
                    fv,
                    &fpath,
                    format!("invalid HTTP status {n} (expected 100 to 599)"),
                ),
                None => {}
            },
            _ => {}
        }
    }
    if !port_written {
        d.at(
            v,
            path,
            "missing `port`: the container port the probe asks, e.g. `readiness: {port: 8080}`",
        );
    }
    r.port = port?;
    (d.errors.len() == before).then_some(r)
}

/// A service's keys written `x-convoy.<key>`: YAML makes that one key with a dot in its name,
/// an extension Compose ignores, so the setting would silently do nothing. Each is an error
/// with the nested form to write instead.
pub(super) fn refuse_dotted_x_convoy(d: &mut Diag, entries: &[(Node, Node)], path: &str) {
    for (k, _) in entries {
        let Some(name) = k.scalar() else {
            continue;
        };
        let Some(inner) = name.strip_prefix("x-convoy.") else {
            continue;
        };
        let (first, _) = inner.split_once('.').unwrap_or((inner, ""));
        d.at(
            k,
            &join(path, name),
            format!(
                "`{name}` is one key with a dot in its name, which Compose ignores as an \
                 extension: nest it, as `x-convoy: {{{first}: ...}}`"
            ),
        );
    }
}

/// A Compose duration in whole milliseconds, rounded up so that a duration above 0 stays
/// above 0.
fn duration_ms(d: &mut Diag, v: &Node, path: &str) -> Option<u64> {
    let ns = duration_ns(d, v, path)?;
    Some(u64::try_from(ns).unwrap_or(0).div_ceil(1_000_000))
}
