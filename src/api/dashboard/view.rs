//! The live part of the dashboard, rendered from one copy of `DaemonStatus` and the newest
//! history entries: the commit in force and the one pending (with its located errors), the
//! buttons the API allows, rollouts in flight, the pass in flight, quarantined specs, hosts,
//! stacks and services with their replicas, jobs, and the recent passes. The same fragment is
//! the first page's content and every Server-Sent Event's data, so what a reload shows and what
//! a live update shows cannot differ.
//!
//! Pure: values in, escaped HTML out (`html::esc` on every outside value). It must not read the
//! clock (the caller passes `now`) nor show anything `DaemonStatus` and the history do not hold.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::html::{bytes, commit_link, csrf_input, esc, short};
use crate::daemon::{DaemonStatus, ReplicaFact};
use crate::model::history::HistoryEntry;
use crate::model::job::RunPhase;
use crate::model::observed::{Health, RunState};
use crate::model::outcome::{HoldReason, PassResult};
use crate::model::time::rfc3339;

/// What one rendering of the live fragment needs.
pub struct Live<'a> {
    pub status: &'a DaemonStatus,
    /// The newest passes, or why they cannot be read.
    pub history: Result<&'a [HistoryEntry], &'a str>,
    /// The session's CSRF token for the forms (empty for a bearer client).
    pub csrf: &'a str,
    /// Unix seconds, for "for 2 min".
    pub now: f64,
}

/// The live fragment (the content of `<div id="live">`).
pub fn live(l: &Live) -> String {
    let s = l.status;
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<div class=\"meta\" data-passes=\"{}\" data-phase=\"{}\"></div>",
        s.passes,
        esc(s.phase)
    );
    summary(&mut out, l);
    pending(&mut out, s);
    rollouts(&mut out, s);
    in_flight(&mut out, s);
    quarantined(&mut out, s);
    hosts(&mut out, s, l.now);
    services(&mut out, s);
    jobs(&mut out, s);
    history(&mut out, l.history, 15);
    out
}

fn ago(now: f64, at: f64) -> String {
    let secs = (now - at).max(0.0) as u64;
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        3600..=86_399 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d", secs / 86_400),
    }
}

fn time_tag(at: f64) -> String {
    let t = rfc3339(at);
    format!("<time datetime=\"{t}\">{t}</time>", t = esc(&t))
}

fn summary(out: &mut String, l: &Live) {
    let s = l.status;
    let _ = write!(
        out,
        "<section class=\"card\" aria-labelledby=\"h-summary\"><h2 id=\"h-summary\">Fleet</h2><dl class=\"kv\">\
         <dt>Source</dt><dd><code>{src}</code>{branch}</dd>\
         <dt>Phase</dt><dd><span class=\"badge {phase}\">{phase}</span>{ready}</dd>\
         <dt>Applied commit</dt><dd id=\"applied\">{applied}{when}</dd>",
        src = esc(&s.source),
        // The source names the branch when it follows one; a default branch learnt later
        // is said here.
        branch = s
            .branch
            .as_deref()
            .filter(|b| !s.source.contains(&format!("branch {b}")))
            .map(|b| format!(" branch <code>{}</code>", esc(b)))
            .unwrap_or_default(),
        phase = esc(s.phase),
        ready = if s.ready { "" } else { " (not ready)" },
        applied = s.commit.as_deref().map(commit_link).unwrap_or("none yet".into()),
        when = s
            .commit_time
            .map(|t| format!(" committed {}", time_tag(t as f64)))
            .unwrap_or_default(),
    );
    let _ = write!(out, "<dt>Last pass</dt><dd id=\"last-pass\">");
    match s.last_pass_at {
        Some(at) => {
            let _ = write!(
                out,
                "{} ago: <span class=\"badge {r}\">{r}</span>{hold}{conv}, {why}, {ms} ms",
                ago(l.now, at),
                r = esc(s.last_result.as_ref().map(PassResult::code).unwrap_or("?")),
                hold = match &s.last_result {
                    Some(PassResult::Held { reason }) => format!(" ({})", esc(reason.code())),
                    _ => String::new(),
                },
                conv = if s.converged { "" } else { ", not converged" },
                why = s
                    .last_reason
                    .as_ref()
                    .map(|r| esc(&r.to_string()))
                    .unwrap_or_default(),
                ms = s.last_pass_ms.unwrap_or(0),
            );
        }
        None => out.push_str("none yet"),
    }
    let _ = write!(out, "</dd><dt>Passes</dt><dd>{}</dd></dl>", s.passes);
    // The only actions: those `POST /api/v1/sync` allows with the same token.
    let _ = write!(
        out,
        "<div class=\"actions\"><form method=\"post\" action=\"/sync\">{}\
         <button type=\"submit\" id=\"sync-now\">Sync now</button></form>",
        csrf_input(l.csrf)
    );
    if s.pending
        .as_ref()
        .is_some_and(|p| p.reason == HoldReason::DeletionGuard)
    {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/sync\">{}\
             <input type=\"hidden\" name=\"allow_prune\" value=\"true\">\
             <button type=\"submit\" class=\"danger\" id=\"allow-prune\">Allow prune</button></form>",
            csrf_input(l.csrf)
        );
    }
    out.push_str("</div></section>");
}

/// A located error's key path (` <code>services.app.image</code>`), nothing when it has none.
pub fn key_code(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(" <code>{}</code>", esc(key))
    }
}

fn pending(out: &mut String, s: &DaemonStatus) {
    let Some(p) = &s.pending else {
        return;
    };
    let _ = write!(
        out,
        "<section class=\"card warn\" id=\"pending\" aria-labelledby=\"h-pending\">\
         <h2 id=\"h-pending\">Pending commit {c}</h2>\
         <p>Held: <span class=\"badge held\">{r}</span> {m}</p>",
        c = commit_link(&p.commit),
        r = esc(p.reason.code()),
        m = esc(&p.message),
    );
    if !p.errors.is_empty() {
        out.push_str("<ul class=\"errors\">");
        for e in &p.errors {
            let _ = write!(
                out,
                "<li><code class=\"loc\">{}:{}:{}</code>{}: {}</li>",
                esc(&e.file),
                e.line,
                e.column,
                key_code(&e.key),
                esc(&e.message)
            );
        }
        out.push_str("</ul>");
    }
    // Which sync window holds which stack, and until when (the other stacks' changes apply).
    if !s.sync_windows.is_empty() {
        out.push_str("<ul class=\"windows\">");
        for h in &s.sync_windows {
            let _ = write!(out, "<li>{}</li>", esc(&h.line()));
        }
        out.push_str("</ul>");
    }
    if matches!(p.reason, HoldReason::DeletionGuard | HoldReason::SyncWindow) {
        out.push_str("<p><a href=\"/diff\">See the plan it holds</a></p>");
    }
    out.push_str("</section>");
}

/// Old, new, healthy: what a replica is in a rollout to `to_hash`.
fn rollout_role(r: &ReplicaFact, to_hash: &str) -> &'static str {
    if r.spec_hash.is_empty() {
        "missing"
    } else if r.spec_hash == to_hash {
        "new"
    } else {
        "old"
    }
}

fn rollouts(out: &mut String, s: &DaemonStatus) {
    if s.rollouts.is_empty() && s.last_rollouts.is_empty() {
        return;
    }
    out.push_str(
        "<section class=\"card\" id=\"rollouts\" aria-labelledby=\"h-rollouts\"><h2 id=\"h-rollouts\">Rollouts</h2>",
    );
    for p in &s.rollouts {
        let batch = if p.batch == 0 {
            format!("starting, {} batches", p.batches)
        } else {
            format!("batch {} of {}", p.batch, p.batches)
        };
        let _ = write!(
            out,
            "<div class=\"rollout\" data-rollout=\"{st}/{sv}\"><h3>{st}/{sv} <span class=\"badge passing\">in progress</span></h3>\
             <p><span class=\"batch\">{batch}</span>, {u} of {n} replicas updated \
             <progress max=\"{n}\" value=\"{u}\">{u} of {n}</progress></p>",
            st = esc(&p.stack),
            sv = esc(&p.service),
            batch = esc(&batch),
            u = p.updated,
            n = p.replicas,
        );
        let replicas: Vec<&ReplicaFact> = s
            .replicas
            .iter()
            .filter(|r| r.stack == p.stack && r.service == p.service)
            .collect();
        if !replicas.is_empty() {
            out.push_str(
                "<div class=\"scroll\"><table><thead><tr><th scope=\"col\">Replica</th><th scope=\"col\">Host</th>\
                 <th scope=\"col\">Spec</th><th scope=\"col\">Health</th></tr></thead><tbody>",
            );
            for r in replicas {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td><span class=\"badge {role}\">{role}</span></td><td>{}</td></tr>",
                    esc(&r.name),
                    esc(&r.host),
                    health_badge(r),
                    role = rollout_role(r, &p.to_hash),
                );
            }
            out.push_str("</tbody></table></div>");
        }
        out.push_str("</div>");
    }
    for r in &s.last_rollouts {
        let how = match &r.result {
            crate::model::rollout::RolloutResult::RolledBack {
                reason,
                batch,
                host,
            }
            | crate::model::rollout::RolloutResult::Paused {
                reason,
                batch,
                host,
            } => format!("in batch {batch} of {} on host {host}: {reason}", r.batches),
            _ => format!(
                "{} of {} batches, {} replicas updated",
                r.batches_done, r.batches, r.updated
            ),
        };
        let _ = write!(
            out,
            "<p class=\"ended\">{}/{} <span class=\"badge {c}\">{c}</span> spec <code>{}</code> {}</p>",
            esc(&r.stack),
            esc(&r.service),
            esc(&short(&r.to_hash)),
            esc(&how),
            c = esc(r.result.code()),
        );
    }
    out.push_str("</section>");
}

fn in_flight(out: &mut String, s: &DaemonStatus) {
    if s.in_flight.is_empty() {
        return;
    }
    out.push_str(
        "<section class=\"card\" id=\"in-flight\" aria-labelledby=\"h-flight\"><h2 id=\"h-flight\">Pass in flight</h2><ul>",
    );
    for st in &s.in_flight {
        let _ = write!(
            out,
            "<li>host <strong>{}</strong>: <code>{}</code></li>",
            esc(&st.host),
            esc(&st.line)
        );
    }
    out.push_str("</ul></section>");
}

fn quarantined(out: &mut String, s: &DaemonStatus) {
    if s.quarantined.is_empty() {
        return;
    }
    out.push_str(
        "<section class=\"card bad\" id=\"quarantined\" aria-labelledby=\"h-quar\"><h2 id=\"h-quar\">Quarantined specs</h2><ul>",
    );
    for q in &s.quarantined {
        let _ = write!(
            out,
            "<li><strong>{}/{}</strong> spec <code>{}</code> from commit {}: failed in batch {} on host {} at {}: {}</li>",
            esc(&q.stack),
            esc(&q.service),
            esc(&short(&q.spec_hash)),
            commit_link(&q.commit),
            q.batch,
            esc(&q.host),
            esc(&q.at),
            esc(&q.reason)
        );
    }
    out.push_str("</ul></section>");
}

fn hosts(out: &mut String, s: &DaemonStatus, now: f64) {
    let facts: BTreeMap<&str, &crate::daemon::HostFact> =
        s.host_facts.iter().map(|h| (h.name.as_str(), h)).collect();
    let mut runs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in s
        .replicas
        .iter()
        .filter(|r| r.state == Some(RunState::Running))
    {
        runs.entry(r.host.as_str())
            .or_default()
            .push(r.name.as_str());
    }
    out.push_str(
        "<section class=\"card\" id=\"hosts\" aria-labelledby=\"h-hosts\"><h2 id=\"h-hosts\">Hosts</h2>\
         <div class=\"scroll\"><table><thead><tr><th scope=\"col\">Host</th><th scope=\"col\">State</th>\
         <th scope=\"col\">RTT</th><th scope=\"col\">Docker</th><th scope=\"col\">CPUs</th>\
         <th scope=\"col\">Memory</th><th scope=\"col\">Runs</th></tr></thead><tbody>",
    );
    if s.hosts.is_empty() {
        out.push_str("<tr><td colspan=\"7\">No host known yet.</td></tr>");
    }
    for h in &s.hosts {
        let f = facts.get(h.name.as_str());
        let mut state = format!("<span class=\"badge {st}\">{st}</span>", st = esc(h.state));
        if let Some(since) = f.and_then(|f| f.silent_since) {
            let _ = write!(
                state,
                " since {} ({} ago)",
                time_tag(since),
                ago(now, since)
            );
        }
        if f.is_some_and(|f| f.cordoned) {
            state.push_str(" <span class=\"badge warn\">cordoned</span>");
        }
        if f.is_some_and(|f| f.drained) {
            state.push_str(" <span class=\"badge warn\">drained</span>");
        }
        if let Some(r) = &h.reason {
            let _ = write!(state, "<br><small>{}</small>", esc(r));
        }
        let names = runs.get(h.name.as_str()).cloned().unwrap_or_default();
        let _ = write!(
            out,
            "<tr data-host=\"{n}\" data-state=\"{st}\"><th scope=\"row\">{n}</th><td>{state}</td><td>{rtt}</td>\
             <td>{ver}</td><td>{cpu}</td><td>{mem}</td><td>{runs}</td></tr>",
            n = esc(&h.name),
            st = esc(h.state),
            rtt = f
                .and_then(|f| f.rtt_ms)
                .map(|ms| format!("{ms:.1} ms"))
                .unwrap_or("–".into()),
            ver = f
                .map(|f| esc(&f.engine_version))
                .filter(|v| !v.is_empty())
                .unwrap_or("–".into()),
            cpu = f
                .filter(|f| f.cpus > 0.0)
                .map(|f| format!("{}", f.cpus))
                .unwrap_or("–".into()),
            mem = bytes(f.map(|f| f.memory_bytes).unwrap_or(0)),
            runs = if names.is_empty() {
                "–".to_string()
            } else {
                format!(
                    "{} replica{}: {}",
                    names.len(),
                    if names.len() == 1 { "" } else { "s" },
                    names.iter().map(|n| esc(n)).collect::<Vec<_>>().join(", ")
                )
            },
        );
    }
    out.push_str("</tbody></table></div></section>");
}

fn health_badge(r: &ReplicaFact) -> String {
    match r.health {
        Some(Health::Healthy) => "<span class=\"badge ok\">healthy</span>".into(),
        Some(Health::Unhealthy) => "<span class=\"badge bad\">unhealthy</span>".into(),
        Some(Health::Starting) => "<span class=\"badge warn\">starting</span>".into(),
        None => "–".into(),
    }
}

fn state_word(r: &ReplicaFact) -> &'static str {
    match (&r.pending, r.state) {
        (Some(_), _) => "pending",
        (None, None) => "missing",
        (None, Some(RunState::Created)) => "created",
        (None, Some(RunState::Running)) => "running",
        (None, Some(RunState::Paused)) => "paused",
        (None, Some(RunState::Restarting)) => "restarting",
        (None, Some(RunState::Removing)) => "removing",
        (None, Some(RunState::Exited)) => "exited",
        (None, Some(RunState::Dead)) => "dead",
    }
}

fn services(out: &mut String, s: &DaemonStatus) {
    out.push_str(
        "<section class=\"card\" id=\"services\" aria-labelledby=\"h-services\"><h2 id=\"h-services\">Stacks and services</h2>",
    );
    if s.services.is_empty() {
        out.push_str("<p>No service yet (no pass has run).</p>");
    }
    let mut stack = "";
    for c in &s.services {
        if c.stack != stack {
            if !stack.is_empty() {
                out.push_str("</div>");
            }
            stack = &c.stack;
            let _ = write!(
                out,
                "<div class=\"stack\" data-stack=\"{n}\"><h3>Stack {n}</h3>",
                n = esc(stack)
            );
        }
        let class = if c.running == c.desired && c.pending == 0 {
            "ok"
        } else {
            "bad"
        };
        let _ = write!(
            out,
            "<h4 data-service=\"{st}/{sv}\">{sv} <span class=\"badge {class}\">{r}/{d} running</span>{p}</h4>",
            st = esc(&c.stack),
            sv = esc(&c.service),
            r = c.running,
            d = c.desired,
            p = if c.pending > 0 {
                format!(" <span class=\"badge warn\">{} pending</span>", c.pending)
            } else {
                String::new()
            },
        );
        let replicas: Vec<&ReplicaFact> = s
            .replicas
            .iter()
            .filter(|r| r.stack == c.stack && r.service == c.service)
            .collect();
        if replicas.is_empty() {
            continue;
        }
        out.push_str(
            "<div class=\"scroll\"><table class=\"replicas\"><thead><tr><th scope=\"col\">Replica</th>\
             <th scope=\"col\">Host</th><th scope=\"col\">State</th><th scope=\"col\">Health</th>\
             <th scope=\"col\">Restarts</th><th scope=\"col\">Image</th><th scope=\"col\">Commit</th>\
             <th scope=\"col\">Container</th></tr></thead><tbody>",
        );
        for r in &replicas {
            let word = state_word(r);
            let class = match word {
                "running" => "ok",
                "pending" | "created" | "paused" => "warn",
                _ => "bad",
            };
            let mut state = format!("<span class=\"badge {class}\">{word}</span>");
            if r.crash_loop {
                state.push_str(" <span class=\"badge bad\">crash loop</span>");
            }
            if let Some(code) = r.exit_code {
                let _ = write!(state, " exit {code}");
            }
            if let Some(why) = &r.pending {
                let _ = write!(state, "<br><small>{}</small>", esc(why));
            }
            let _ = write!(
                out,
                "<tr data-replica=\"{n}\" data-state=\"{word}\" data-container=\"{cid}\">\
                 <th scope=\"row\">{n}</th><td>{host}</td><td>{state}</td><td>{health}</td>\
                 <td>{restarts}</td><td><code>{image}</code></td><td>{commit}</td><td>{cid_cell}</td></tr>",
                n = esc(&r.name),
                host = if r.host.is_empty() {
                    "–".to_string()
                } else {
                    esc(&r.host)
                },
                health = health_badge(r),
                restarts = r.restarts,
                image = esc(&r.image),
                commit = commit_link(&r.commit),
                cid = esc(&r.container),
                // Empty between a step that made it and the next observation.
                cid_cell = if r.container.is_empty() {
                    "–".to_string()
                } else {
                    format!("<code>{}</code>", esc(&r.container))
                },
            );
        }
        out.push_str("</tbody></table></div>");
        for r in replicas.iter().filter(|r| !r.last_logs.is_empty()) {
            let _ = write!(
                out,
                "<details class=\"logs\" open><summary>Last lines of {}</summary><pre>",
                esc(&r.name)
            );
            for line in &r.last_logs {
                let _ = writeln!(out, "{}", esc(line));
            }
            out.push_str("</pre></details>");
        }
    }
    if !stack.is_empty() {
        out.push_str("</div>");
    }
    out.push_str("</section>");
}

/// Jobs: each with its schedule (or "once per spec"), next run and last runs (result, exit
/// code, duration, host), and the last lines of a failed run, from the status's `jobs`.
fn jobs(out: &mut String, s: &DaemonStatus) {
    out.push_str(
        "<section class=\"card\" id=\"jobs\" aria-labelledby=\"h-jobs\"><h2 id=\"h-jobs\">Jobs</h2>",
    );
    if s.jobs.is_empty() {
        out.push_str("<p>No job in the commit in force.</p></section>");
        return;
    }
    out.push_str(
        "<div class=\"scroll\"><table class=\"jobs\"><thead><tr><th scope=\"col\">Job</th>\
         <th scope=\"col\">Schedule</th><th scope=\"col\">Next run</th>\
         <th scope=\"col\">Last runs</th></tr></thead><tbody>",
    );
    for j in &s.jobs {
        let schedule = match &j.schedule {
            Some(expr) => format!(
                "<code>{}</code> {} ({})",
                esc(expr),
                esc(&j.timezone),
                j.concurrency.as_str()
            ),
            None => "once per spec".to_string(),
        };
        let next = j.next_run.as_deref().map(esc).unwrap_or_else(|| "–".into());
        let mut runs = String::new();
        for r in j.last_runs.iter().take(5) {
            let (class, word) = match r.phase {
                RunPhase::Running => ("warn", "running"),
                RunPhase::Succeeded => ("ok", "succeeded"),
                RunPhase::Failed => ("bad", "failed"),
            };
            let code = r
                .exit_code
                .map(|c| format!(" exit {c}"))
                .unwrap_or_default();
            let took = r
                .duration_secs
                .map(|d| format!(", {d} s"))
                .unwrap_or_default();
            let at = r.scheduled_at.as_deref().map(esc).unwrap_or_default();
            let _ = write!(
                runs,
                "<div><span class=\"badge {class}\">{word}{code}</span> {at} on {}{took}</div>",
                esc(&r.host)
            );
        }
        if runs.is_empty() {
            runs.push_str("none yet");
        }
        let _ = write!(
            out,
            "<tr data-job=\"{st}/{n}\"><th scope=\"row\">{st}/{n}</th><td>{schedule}</td><td>{next}</td><td>{runs}</td></tr>",
            st = esc(&j.stack),
            n = esc(&j.name),
        );
    }
    out.push_str("</tbody></table></div>");
    // The last lines of each job's newest failed run (masked where they were read).
    for j in &s.jobs {
        let Some(r) = j
            .last_runs
            .iter()
            .find(|r| r.phase == RunPhase::Failed && !r.last_lines.is_empty())
        else {
            continue;
        };
        let _ = write!(
            out,
            "<details class=\"logs\"><summary>Last lines of {}</summary><pre>",
            esc(&r.container)
        );
        for line in &r.last_lines {
            let _ = writeln!(out, "{}", esc(line));
        }
        out.push_str("</pre></details>");
    }
    out.push_str("</section>");
}

fn history(out: &mut String, h: Result<&[HistoryEntry], &str>, limit: usize) {
    out.push_str(
        "<section class=\"card\" id=\"history\" aria-labelledby=\"h-history\"><h2 id=\"h-history\">Recent passes</h2>",
    );
    match h {
        Err(why) => {
            let _ = write!(out, "<p>{}</p>", esc(why));
        }
        Ok([]) => out.push_str("<p>No pass recorded yet.</p>"),
        Ok(entries) => {
            history_table(out, &entries[..entries.len().min(limit)]);
            out.push_str("<p><a href=\"/history\">All of the history</a></p>");
        }
    }
    out.push_str("</section>");
}

/// The history as a table: when, commit (linked), trigger, result, what changed.
pub fn history_table(out: &mut String, entries: &[HistoryEntry]) {
    out.push_str(
        "<div class=\"scroll\"><table class=\"history\"><thead><tr><th scope=\"col\">Ended</th>\
         <th scope=\"col\">Commit</th><th scope=\"col\">Trigger</th><th scope=\"col\">Result</th>\
         <th scope=\"col\">Changes</th></tr></thead><tbody>",
    );
    for e in entries {
        let mut result = format!(
            "<span class=\"badge {c}\">{c}</span>",
            c = esc(e.result.code())
        );
        if let PassResult::Held { reason } = &e.result {
            let _ = write!(result, " ({})", esc(reason.code()));
        }
        if let Some(d) = &e.detail {
            let _ = write!(result, "<br><small>{}</small>", esc(d));
        }
        for err in &e.errors {
            let _ = write!(result, "<br><small><code>{}</code></small>", esc(err));
        }
        let _ = write!(
            out,
            "<tr data-entry=\"{id}\"><td><time datetime=\"{end}\">{end}</time></td><td>{commit}{msg}</td>\
             <td>{trigger}</td><td>{result}</td><td>{changes}</td></tr>",
            id = e.id,
            end = esc(&e.ended_at),
            commit = commit_link(&e.commit),
            msg = e
                .message
                .as_deref()
                .map(|m| format!(
                    "<br><small>{}</small>",
                    esc(m.lines().next().unwrap_or(""))
                ))
                .unwrap_or_default(),
            trigger = esc(&e.trigger.to_string()),
            changes = esc(&changes_line(e)),
        );
    }
    out.push_str("</tbody></table></div>");
}

/// What a pass changed, in one line: `web/app: 1 created, 2 replaced; healed 1 missing`.
pub fn changes_line(e: &HistoryEntry) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in &e.changes {
        let mut what = Vec::new();
        for (n, word) in [
            (c.created, "created"),
            (c.replaced, "replaced"),
            (c.started, "started"),
            (c.removed, "removed"),
            (c.restored, "restored"),
        ] {
            if n > 0 {
                what.push(format!("{n} {word}"));
            }
        }
        if what.is_empty() {
            continue;
        }
        let name = if c.service.is_empty() {
            c.stack.clone()
        } else {
            format!("{}/{}", c.stack, c.service)
        };
        parts.push(format!("{name}: {}", what.join(", ")));
    }
    let mut line = parts.join("; ");
    if !e.heals.is_empty() {
        let heals: Vec<String> = e.heals.iter().map(|(k, n)| format!("{n} {k}")).collect();
        if !line.is_empty() {
            line.push_str("; ");
        }
        let _ = write!(line, "healed {}", heals.join(", "));
    }
    for f in &e.failures {
        if !line.is_empty() {
            line.push_str("; ");
        }
        let _ = write!(line, "failed {}", f.step);
    }
    if line.is_empty() {
        line.push('–');
    }
    line
}
