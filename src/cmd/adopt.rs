//! `convoy adopt --project NAME --host HOST [--stack NAME]` and `convoy adopt --all`: writes a
//! running Compose project into the repository as a stack (`stacks/<stack>/compose.yaml`
//! inferred from inspect by `render::adopt`, its secret-looking values in the stack's `.env`),
//! and records the adoption in `convoy.yaml` (`adopt:`), from which the fleet owns exactly
//! those containers (`model::adopt`).
//!
//! It only reads the engines; it writes the working files of the repository, never a
//! revision. `convoy.yaml` is edited as text, an entry appended, so the user's comments and
//! layout stay. It refuses to overwrite a stack, to adopt a project twice, and leaves the
//! repository as it found it when the result does not validate. Secret values are written
//! only to the `.env`; nothing printed carries one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::logs::connect_selected;
use super::{emit_line, load_repo, Outcome};
use crate::cli::AdoptArgs;
use crate::infra::docker::Engine;
use crate::model::adopt::{is_project_name, Adoption};

const FLEET_FILE: &str = "convoy.yaml";

pub async fn run(args: &AdoptArgs, state_dir: &Path) -> Result<Outcome> {
    if args.repo.rev.is_some() {
        eprintln!("error: `convoy adopt` writes the working files; `--rev` is not for it");
        return Ok(Outcome::Invalid);
    }
    if !args.all && (args.project.is_none() || args.host.is_none()) {
        eprintln!(
            "error: name the project and its host (`--project NAME --host HOST`), or `--all`"
        );
        return Ok(Outcome::Invalid);
    }
    let Some(loaded) = load_for_adopt(&args.repo)? else {
        return Ok(Outcome::Invalid);
    };
    let hosts: Vec<String> = args.host.iter().cloned().collect();
    let fleet = match connect_selected(&loaded, &hosts, state_dir).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(Outcome::Invalid);
        }
    };
    let mut failed = false;
    for (host, e) in &fleet.failed {
        eprintln!("error: host `{host}` is unreachable: {}", e.reason);
        failed = true;
    }
    let desired = &loaded.desired;
    let mut targets: Vec<Adoption> = Vec::new();
    match (&args.project, args.all) {
        (Some(project), false) => targets.push(Adoption {
            project: project.clone(),
            host: args.host.clone().unwrap_or_default(),
            stack: args.stack.clone().unwrap_or_else(|| project.clone()),
        }),
        _ => {
            for (host, engine) in &fleet.engines {
                let projects = match engine.compose_projects().await {
                    Ok(p) => p,
                    Err(e) => {
                        eprintln!("error: {e}");
                        failed = true;
                        continue;
                    }
                };
                for project in projects {
                    if desired
                        .settings
                        .adopted
                        .iter()
                        .any(|a| a.project == project && &a.host == host)
                    {
                        continue;
                    }
                    // A project of one name on two hosts is two stacks.
                    let taken = |s: &str| {
                        desired.stacks.contains_key(s)
                            || targets.iter().any(|t| t.stack == s)
                            || stack_dir(&args.repo.repo, s).exists()
                    };
                    let stack = if taken(&project) {
                        format!("{project}-{host}")
                    } else {
                        project.clone()
                    };
                    targets.push(Adoption {
                        project,
                        host: host.clone(),
                        stack,
                    });
                }
            }
            if targets.is_empty() && !failed {
                emit_line("No Compose project to adopt.");
            }
        }
    }

    let fleet_path = args.repo.repo.join(FLEET_FILE);
    let original = std::fs::read_to_string(&fleet_path)
        .with_context(|| format!("cannot read {}", fleet_path.display()))?;
    let mut text = original.clone();
    let mut written: Vec<(Adoption, PathBuf, crate::render::adopt::Inferred, usize)> = Vec::new();
    // Network and volume names the stacks written in this run make.
    let mut claimed: Vec<String> = Vec::new();
    for t in targets {
        let Some(engine) = fleet.engines.get(&t.host) else {
            continue;
        };
        match adopt_one(
            &args.repo.repo,
            desired,
            engine,
            &t,
            &mut text,
            &mut claimed,
        )
        .await
        {
            Ok((dir, inferred, containers)) => written.push((t, dir, inferred, containers)),
            Err(why) => {
                eprintln!(
                    "error: project `{}` on host `{}` is not adopted: {why}",
                    t.project, t.host
                );
                failed = true;
            }
        }
    }
    fleet.close().await;
    if written.is_empty() {
        return Ok(if failed {
            Outcome::Invalid
        } else {
            Outcome::InSync
        });
    }
    std::fs::write(&fleet_path, &text)
        .with_context(|| format!("cannot write {}", fleet_path.display()))?;
    // What was written must validate; if not, the repository goes back to how it was.
    let valid = match load_repo(&args.repo) {
        Ok(Some(_)) => true,
        Ok(None) => false,
        Err(e) => {
            eprintln!("error: {e:#}");
            false
        }
    };
    if !valid {
        for (_, dir, _, _) in &written {
            let _ = std::fs::remove_dir_all(dir);
        }
        std::fs::write(&fleet_path, &original)
            .with_context(|| format!("cannot restore {}", fleet_path.display()))?;
        eprintln!("error: the adopted stacks do not validate (above); nothing was written");
        return Ok(Outcome::Invalid);
    }
    for (a, _, inferred, containers) in &written {
        emit_line(&format!(
            "adopted Compose project `{}` on host `{}` as stack `{}`: stacks/{}/compose.yaml ({} container(s))",
            a.project, a.host, a.stack, a.stack, containers
        ));
        for note in &inferred.notes {
            emit_line(&format!("note: {note}"));
        }
        if !inferred.secret_names.is_empty() {
            eprintln!(
                "warning: stacks/{}/.env holds the values of {}: encrypt it with SOPS before committing it (`sops --encrypt --in-place stacks/{}/.env`)",
                a.stack,
                inferred.secret_names.join(", "),
                a.stack
            );
        }
    }
    emit_line("Run `convoy diff`: it should find the adopted stacks in sync.");
    Ok(if failed {
        Outcome::NotConverged
    } else {
        Outcome::Converged
    })
}

/// Loads the repository. One with no stack yet (no `stacks:` in `convoy.yaml`, no folder under
/// `stacks/`) is the usual start of an adoption, and is not valid as it is (an empty repository
/// must say `stacks: []`): its fleet file is read from a copy that says so, in a folder of our
/// own, removed after. Relative paths in the fleet file are relative to the working directory,
/// not to the repository, so the copy reads the same.
fn load_for_adopt(repo: &crate::cli::RepoArgs) -> Result<Option<crate::reconcile::Loaded>> {
    let fleet_path = repo.repo.join(FLEET_FILE);
    let text = std::fs::read_to_string(&fleet_path).unwrap_or_default();
    let no_stacks = std::fs::read_dir(repo.repo.join("stacks"))
        .map(|entries| !entries.flatten().any(|e| e.path().is_dir()))
        .unwrap_or(true);
    if text.is_empty() || has_top_key(&text, "stacks") || !no_stacks {
        return load_repo(repo);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let copy = std::env::temp_dir().join(format!("convoy-adopt-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&copy).with_context(|| format!("cannot create {}", copy.display()))?;
    let mut with_stacks = text;
    if !with_stacks.ends_with('\n') {
        with_stacks.push('\n');
    }
    with_stacks.push_str("stacks: []\n");
    let loaded = std::fs::write(copy.join(FLEET_FILE), with_stacks)
        .with_context(|| format!("cannot write {}", copy.display()))
        .and_then(|()| {
            load_repo(&crate::cli::RepoArgs {
                repo: copy.clone(),
                rev: None,
            })
        });
    let _ = std::fs::remove_dir_all(&copy);
    loaded
}

fn stack_dir(repo: &Path, stack: &str) -> PathBuf {
    repo.join("stacks").join(stack)
}

/// Reads project `t.project` on `engine`, writes its stack, and adds the adoption (and the
/// stack, when `convoy.yaml` lists its stacks) to `fleet_text`. Returns the stack's folder,
/// what was inferred, and how many containers it covers.
async fn adopt_one(
    repo: &Path,
    desired: &crate::model::spec::DesiredState,
    engine: &Engine,
    t: &Adoption,
    fleet_text: &mut String,
    claimed: &mut Vec<String>,
) -> Result<(PathBuf, crate::render::adopt::Inferred, usize), String> {
    if !is_project_name(&t.project) {
        return Err("a Compose project name is lower-case letters, digits, `_` and `-`".into());
    }
    if t.stack.is_empty()
        || !t
            .stack
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(format!(
            "`{}` is no stack name (letters, digits, `_`, `.` and `-`)",
            t.stack
        ));
    }
    if let Some(a) = desired
        .settings
        .adopted
        .iter()
        .find(|a| a.project == t.project && a.host == t.host)
    {
        return Err(format!("it is adopted already, as stack `{}`", a.stack));
    }
    let dir = stack_dir(repo, &t.stack);
    if desired.stacks.contains_key(&t.stack) || dir.exists() {
        return Err(format!(
            "stack `{}` exists; name another with `--stack`",
            t.stack
        ));
    }
    let view = engine
        .project_view(&t.project)
        .await
        .map_err(|e| e.to_string())?;
    if view.containers.is_empty() {
        return Err("no container of it runs there".into());
    }
    // Engine names of networks and volumes other stacks make or use: one adopted project of
    // one name on two hosts must not have both stacks make them.
    let taken: std::collections::BTreeSet<String> = desired
        .stacks
        .values()
        .flat_map(|s| {
            s.networks
                .values()
                .map(|n| n.engine_name.clone())
                .chain(s.volumes.values().map(|v| v.engine_name.clone()))
        })
        .chain(claimed.iter().cloned())
        .collect();
    let inferred = crate::render::adopt::infer(&view, &t.host, &taken);
    claimed.extend(view.networks.keys().cloned());
    claimed.extend(view.volumes.keys().cloned());
    let next = add_adoption(fleet_text, t)?;
    let next = if has_top_key(&next, "stacks") {
        add_list_item(&next, "stacks", &quote(&t.stack))?
    } else {
        next
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let write = |name: &str, text: &str, secret: bool| -> Result<(), String> {
        let path = dir.join(name);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        if secret {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        std::io::Write::write_all(&mut f, text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    let result = write("compose.yaml", &inferred.compose, false).and_then(|()| {
        if inferred.dotenv.is_empty() {
            Ok(())
        } else {
            write(".env", &inferred.dotenv, true)
        }
    });
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    *fleet_text = next;
    let n = view.containers.len();
    Ok((dir, inferred, n))
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// Is `key:` a top-level key of the YAML `text`?
fn has_top_key(text: &str, key: &str) -> bool {
    text.lines().any(|l| top_key_rest(l, key).is_some())
}

/// The rest of a top-level `key:` line, after the colon.
fn top_key_rest<'l>(line: &'l str, key: &str) -> Option<&'l str> {
    let rest = line.strip_prefix(key)?.strip_prefix(':')?;
    (rest.is_empty() || rest.starts_with([' ', '\t'])).then_some(rest)
}

/// `text` with `{project, host, stack}` appended to its `adopt:` list (made when missing).
fn add_adoption(text: &str, a: &Adoption) -> Result<String, String> {
    let item = format!(
        "{{project: {}, host: {}, stack: {}}}",
        quote(&a.project),
        quote(&a.host),
        quote(&a.stack)
    );
    add_list_item(text, "adopt", &item)
}

/// `text` with `item` appended to the top-level list `key` (made at the end when missing),
/// every other line as it was: a block list gets a line after its last item, a one-line flow
/// list the item before its `]`.
fn add_list_item(text: &str, key: &str, item: &str) -> Result<String, String> {
    let lines: Vec<&str> = text.lines().collect();
    let Some(at) = lines.iter().position(|l| top_key_rest(l, key).is_some()) else {
        let mut out = text.to_string();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("{key}:\n  - {item}\n"));
        return Ok(out);
    };
    let rest = top_key_rest(lines[at], key).unwrap_or_default();
    let (value, comment) = match rest.find(" #") {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let value = value.trim();
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    if value == "[]" || value == "~" || value == "null" {
        out[at] = format!("{key}:{comment}\n  - {item}");
    } else if let Some(inner) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        let sep = if inner.trim().is_empty() { "" } else { ", " };
        out[at] = format!("{key}: [{}{sep}{item}]{comment}", inner.trim_end());
    } else if value.is_empty() {
        // A block list: its lines are indented or start with `- `; blank lines and comments
        // inside it count only when an item follows.
        let mut last = at;
        let mut indent = "  ".to_string();
        let mut seen_item = false;
        for (i, l) in lines.iter().enumerate().skip(at + 1) {
            let t = l.trim_start();
            if t.is_empty() || (t.starts_with('#') && !l.starts_with('#')) {
                continue;
            }
            if l.starts_with([' ', '\t']) || l.starts_with("- ") {
                if !seen_item && t.starts_with("- ") {
                    indent = l[..l.len() - t.len()].to_string();
                    seen_item = true;
                }
                last = i;
            } else {
                break;
            }
        }
        out.insert(last + 1, format!("{indent}- {item}"));
    } else {
        return Err(format!(
            "`{key}:` in {FLEET_FILE} is not a list this command can add to; add `{item}` to it by hand"
        ));
    }
    let mut joined = out.join("\n");
    joined.push('\n');
    Ok(joined)
}

#[cfg(test)]
#[path = "adopt_tests.rs"]
mod tests;
