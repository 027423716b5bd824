//! Tests of the whole reader through `load`, on in-memory repositories (`MemoryTree`): every
//! supported key, the error kinds with their exact positions, and the repository-level rules.
//! This file holds the shared helpers; the tests are in one file per topic.
//!
//! Tests only: no disk, no engine, no process environment. The reader does no I/O of its own
//! and reads only through the `RepoTree` handed in, so an in-memory tree is all it needs.

mod compose_extends;
mod compose_files;
mod compose_job;
mod compose_keys;
mod compose_prestart;
mod compose_restart;
mod compose_rollout;
mod compose_volumes;
mod engine_rules;
mod errors;
mod fleet_adopt;
mod fleet_file;
mod fleet_sync_windows;
mod fuzz;
mod interpolation;
mod limits;
mod proxy;
mod repository;
mod services;

use super::*;
use crate::model::spec::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn tree(files: &[(&str, &str)]) -> MemoryTree {
    files
        .iter()
        .fold(MemoryTree::new(), |t, (p, c)| t.with(p, c))
}

fn ok_env(files: &[(&str, &str)], e: &[(&str, &str)]) -> DesiredState {
    match load(&tree(files), &env(e)) {
        Ok(s) => s,
        Err(errs) => panic!(
            "unexpected errors:\n{}",
            errs.0
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn ok(files: &[(&str, &str)]) -> DesiredState {
    ok_env(files, &[])
}

fn errs_env(files: &[(&str, &str)], e: &[(&str, &str)]) -> Vec<String> {
    match load(&tree(files), &env(e)) {
        Ok(_) => panic!("expected errors"),
        Err(errs) => errs.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn errs(files: &[(&str, &str)]) -> Vec<String> {
    errs_env(files, &[])
}

const FLEET: &str = "fleet: prod\n";

/// One stack `web` with the given compose text.
fn web(compose: &str) -> Vec<(&'static str, String)> {
    vec![
        ("convoy.yaml", FLEET.to_string()),
        ("stacks/web/compose.yaml", compose.to_string()),
    ]
}

fn files<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(p, c)| (*p, c.as_str())).collect()
}

fn service(compose: &str) -> ServiceSpec {
    let f = web(compose);
    let state = ok(&files(&f));
    state.stacks["web"]
        .services
        .values()
        .next()
        .unwrap()
        .clone()
}

fn web_errs(compose: &str) -> Vec<String> {
    errs(&files(&web(compose)))
}
