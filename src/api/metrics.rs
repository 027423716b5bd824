//! `GET /metrics`: the Prometheus text format (0.0.4) rendered from a copy of `DaemonStatus`
//! and the webhook counts this module keeps. Every label value is escaped; series with a fixed
//! set of labels (pass results, host states, webhook results) are all written, zeros
//! included, so dashboards and alerts see them from the start.
//!
//! It reads; it must not ask the daemon for anything nor block its loop.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use super::hooks::{HookResult, Provider};
use crate::daemon::DaemonStatus;

/// Every `PassResult` code, in the order they are written.
const PASS_RESULTS: [&str; 6] = [
    "applied",
    "converged",
    "failed",
    "rolled_back",
    "held",
    "superseded",
];
/// Every `RolloutResult::code`, in the order they are written.
const ROLLOUT_RESULTS: [&str; 4] = ["completed", "rolled_back", "paused", "interrupted"];
/// Every host state `DaemonStatus::hosts` uses.
const HOST_STATES: [&str; 4] = ["connected", "unreachable", "down", "parked"];

/// Webhooks by provider and result.
#[derive(Default)]
pub(super) struct HookCounts {
    counts: [[AtomicU64; HookResult::ALL.len()]; Provider::ALL.len()],
}

impl HookCounts {
    pub(super) fn add(&self, provider: Provider, result: HookResult) {
        self.counts[provider as usize][result as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn get(&self, provider: Provider, result: HookResult) -> u64 {
        self.counts[provider as usize][result as usize].load(Ordering::Relaxed)
    }
}

pub(super) fn render(s: &DaemonStatus, hooks: &HookCounts) -> String {
    let mut out = Out(String::with_capacity(4096));
    let c = &s.counters;

    out.family("convoy_up", "gauge", "1 while the daemon serves its API.");
    out.sample("convoy_up", &[], 1.0);
    out.family(
        "convoy_ready",
        "gauge",
        "1 once a first pass has completed (or the first commit was refused as invalid).",
    );
    out.sample("convoy_ready", &[], if s.ready { 1.0 } else { 0.0 });

    out.family(
        "convoy_passes_total",
        "counter",
        "Reconcile passes, by result.",
    );
    for result in PASS_RESULTS {
        let n = c.passes.get(result).copied().unwrap_or(0);
        out.sample("convoy_passes_total", &[("result", result)], n as f64);
    }
    // A result code this build does not know yet is still counted.
    for (result, n) in c.passes.iter().filter(|(r, _)| !PASS_RESULTS.contains(r)) {
        out.sample("convoy_passes_total", &[("result", result)], *n as f64);
    }

    let h = &c.pass_duration;
    out.family(
        "convoy_pass_duration_seconds",
        "histogram",
        "How long reconcile passes took.",
    );
    let mut cumulative = 0u64;
    for (bound, n) in h.bounds.iter().zip(&h.counts) {
        cumulative += n;
        let le = number(*bound);
        out.sample(
            "convoy_pass_duration_seconds_bucket",
            &[("le", &le)],
            cumulative as f64,
        );
    }
    out.sample(
        "convoy_pass_duration_seconds_bucket",
        &[("le", "+Inf")],
        h.count as f64,
    );
    out.sample("convoy_pass_duration_seconds_sum", &[], h.sum);
    out.sample("convoy_pass_duration_seconds_count", &[], h.count as f64);

    counter_map(
        &mut out,
        "convoy_pass_steps_total",
        "Steps executed, by action.",
        "action",
        &c.steps,
    );

    out.family(
        "convoy_replicas",
        "gauge",
        "Replicas per service at the last pass: desired, running, and pending (no host can take them).",
    );
    for svc in &s.services {
        for (state, n) in [
            ("desired", svc.desired),
            ("running", svc.running),
            ("pending", svc.pending),
        ] {
            out.sample(
                "convoy_replicas",
                &[
                    ("stack", &svc.stack),
                    ("service", &svc.service),
                    ("state", state),
                ],
                n as f64,
            );
        }
    }

    out.family("convoy_hosts", "gauge", "Hosts by connection state.");
    let mut hosts: BTreeMap<&str, u64> = HOST_STATES.iter().map(|s| (*s, 0)).collect();
    for host in &s.hosts {
        *hosts.entry(host.state).or_default() += 1;
    }
    for state in HOST_STATES {
        out.sample("convoy_hosts", &[("state", state)], hosts[state] as f64);
    }
    for (state, n) in hosts.iter().filter(|(s, _)| !HOST_STATES.contains(s)) {
        out.sample("convoy_hosts", &[("state", state)], *n as f64);
    }

    if let (Some(commit), Some(time)) = (&s.commit, s.commit_time) {
        out.family(
            "convoy_applied_commit_timestamp_seconds",
            "gauge",
            "Committer time of the commit in force, Unix seconds.",
        );
        out.sample(
            "convoy_applied_commit_timestamp_seconds",
            &[("commit", commit)],
            time as f64,
        );
    }

    // The newest commit not in force, and why: an alert can name it (`invalid_commit`,
    // `deletion_guard`, `unsigned_commit`).
    out.family(
        "convoy_pending_commit",
        "gauge",
        "1 for the newest commit that is held, labelled with its id and the hold reason.",
    );
    if let Some(p) = &s.pending {
        out.sample(
            "convoy_pending_commit",
            &[("commit", &p.commit), ("reason", p.reason.code())],
            1.0,
        );
    }

    out.family(
        "convoy_commit_errors_total",
        "counter",
        "Commits refused because they do not validate.",
    );
    out.sample("convoy_commit_errors_total", &[], c.commit_errors as f64);
    out.family(
        "convoy_git_fetches_total",
        "counter",
        "Fetches of the remote (polls, webhooks, syncs).",
    );
    out.sample("convoy_git_fetches_total", &[], c.git_fetches as f64);
    out.family(
        "convoy_git_fetch_errors_total",
        "counter",
        "Fetches of the remote that failed.",
    );
    out.sample(
        "convoy_git_fetch_errors_total",
        &[],
        c.git_fetch_errors as f64,
    );
    counter_map(
        &mut out,
        "convoy_heals_total",
        "Steps that healed something (missing, exited, unhealthy, drifted, ...), by reason.",
        "reason",
        &c.heals,
    );

    rollouts(&mut out, s);

    out.family(
        "convoy_webhooks_total",
        "counter",
        "Webhooks received, by provider and result.",
    );
    for provider in Provider::ALL {
        for result in HookResult::ALL {
            out.sample(
                "convoy_webhooks_total",
                &[("provider", provider.code()), ("result", result.code())],
                hooks.get(provider, result) as f64,
            );
        }
    }

    out.family(
        "convoy_notifications_total",
        "counter",
        "Notifications and commit statuses, by delivery result (delivered, retried: an attempt failed and another follows, failed: given up, dropped: a full queue's oldest or left at exit).",
    );
    for (result, n) in s.notifications.by_result() {
        out.sample(
            "convoy_notifications_total",
            &[("result", result)],
            n as f64,
        );
    }
    out.0
}

/// Quarantined specs, rollouts ended, and the batch of each rollout in flight. The per-service
/// series are written for every service the daemon knows (zeros included), so an alert on
/// `increase(convoy_rollouts_total{result="rolled_back"}[1h])` sees the first one.
fn rollouts(out: &mut Out, s: &DaemonStatus) {
    let c = &s.counters;
    let mut services: BTreeSet<(&str, &str)> = s
        .services
        .iter()
        .map(|x| (x.stack.as_str(), x.service.as_str()))
        .collect();
    services.extend(
        c.rollouts
            .iter()
            .map(|x| (x.stack.as_str(), x.service.as_str())),
    );
    services.extend(
        s.rollouts
            .iter()
            .map(|x| (x.stack.as_str(), x.service.as_str())),
    );

    out.family(
        "convoy_quarantined_specs",
        "gauge",
        "1 per service whose desired spec failed a rollout and is quarantined (not tried again until it changes).",
    );
    let quarantined: BTreeSet<(&str, &str)> = s
        .quarantined
        .iter()
        .map(|q| (q.stack.as_str(), q.service.as_str()))
        .collect();
    for (stack, service) in &quarantined {
        out.sample(
            "convoy_quarantined_specs",
            &[("stack", stack), ("service", service)],
            1.0,
        );
    }

    out.family(
        "convoy_rollouts_total",
        "counter",
        "Rollouts that ended, by service and result (completed, rolled_back, paused, interrupted).",
    );
    for (stack, service) in &services {
        let count = |result: &str| {
            c.rollouts
                .iter()
                .filter(|x| x.stack == *stack && x.service == *service && x.result == result)
                .map(|x| x.count)
                .sum::<u64>()
        };
        for result in ROLLOUT_RESULTS {
            out.sample(
                "convoy_rollouts_total",
                &[("stack", stack), ("service", service), ("result", result)],
                count(result) as f64,
            );
        }
        // A result code this build does not know yet is still counted.
        for x in c.rollouts.iter().filter(|x| {
            x.stack == *stack && x.service == *service && !ROLLOUT_RESULTS.contains(&x.result)
        }) {
            out.sample(
                "convoy_rollouts_total",
                &[("stack", stack), ("service", service), ("result", x.result)],
                x.count as f64,
            );
        }
    }

    out.family(
        "convoy_rollout_batch",
        "gauge",
        "The batch (1-based) a rollout in flight is at, per service; 0 when none runs.",
    );
    for (stack, service) in &services {
        let batch = s
            .rollouts
            .iter()
            .find(|r| r.stack == *stack && r.service == *service)
            .map(|r| r.batch)
            .unwrap_or(0);
        out.sample(
            "convoy_rollout_batch",
            &[("stack", stack), ("service", service)],
            batch as f64,
        );
    }
}

fn counter_map(
    out: &mut Out,
    name: &str,
    help: &str,
    label: &str,
    values: &BTreeMap<&'static str, u64>,
) {
    out.family(name, "counter", help);
    for (k, n) in values {
        out.sample(name, &[(label, k)], *n as f64);
    }
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", number(value));
    }
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
pub(super) fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value or bound: integers without a fraction, `+Inf`, `-Inf`, `NaN` spelled as
/// Prometheus reads them.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}
