//! Hostile input to the whole reader: what a few hundred bytes may cost (nested `.env`
//! references, values grown by interpolation, a file's values together), and property-based
//! fuzzing of `load` with arbitrary bytes as `compose.yaml`, `convoy.yaml` and `.env` and with
//! structured mutations of a valid repository (keys deleted, duplicated and retyped, anchors and
//! merges, nested interpolations, huge numbers, unicode, NULs). Whatever the input: no panic,
//! and each case within a bounded time; memory is bounded by the caps of the interpolation and
//! of the sources.
//!
//! Tests only, on in-memory repositories through `load`; no disk, no engine, and the
//! environment is a map handed in.

use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

/// What one case may take in a debug build, a hundred times what a valid repository takes.
const CASE_TIME: Duration = Duration::from_secs(1);

/// A `.env` of `levels` levels, each variable the previous one `copies` times: a few hundred
/// bytes whose last variable would be `10 * copies^levels` bytes long.
fn nested_dotenv(levels: usize, copies: usize) -> String {
    let mut text = String::from("A0=xxxxxxxxxx\n");
    for i in 1..=levels {
        text.push_str(&format!(
            "A{i}={}\n",
            format!("${{A{}}}", i - 1).repeat(copies)
        ));
    }
    text
}

/// `load` of `tree` when it finishes within `limit`, run on a thread of its own: a deadline on
/// the test, not a clock in the code under test ("the planning core is pure"); a regression
/// fails after `limit` instead of hanging the run (its thread is left to finish).
fn load_within(
    limit: Duration,
    tree: MemoryTree,
    vars: BTreeMap<String, String>,
) -> Result<DesiredState, ManifestErrors> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(load(&tree, &vars));
    });
    match rx.recv_timeout(limit) {
        Ok(result) => result,
        Err(RecvTimeoutError::Disconnected) => panic!("load panicked"),
        Err(RecvTimeoutError::Timeout) => panic!("not loaded within {limit:?}"),
    }
}

#[test]
fn nested_dotenv_references_nothing_uses_cost_nothing() {
    // Its last variable would be 430 MB long.
    let dotenv = nested_dotenv(8, 9);
    assert!(dotenv.len() < 600, "{}", dotenv.len());
    let files = [
        ("convoy.yaml", FLEET),
        (
            "stacks/web/compose.yaml",
            "services:\n  app:\n    image: busybox\n",
        ),
        ("stacks/web/.env", dotenv.as_str()),
    ];
    let result = load_within(Duration::from_millis(100), tree(&files), BTreeMap::new());
    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn a_nested_dotenv_reference_that_is_used_is_a_located_error_naming_the_variable() {
    let dotenv = nested_dotenv(7, 8);
    let files = [
        ("convoy.yaml", FLEET),
        (
            "stacks/web/compose.yaml",
            "services:\n  app:\n    image: busybox\n    command: echo ${A7}\n",
        ),
        ("stacks/web/.env", dotenv.as_str()),
    ];
    let result = load_within(CASE_TIME, tree(&files), BTreeMap::new());
    let e: Vec<String> = result
        .expect_err("over the cap")
        .0
        .iter()
        .map(|e| e.to_string())
        .collect();
    // A5 is the first to pass 64 KiB (10 * 8^5 bytes); what uses it fails without a second
    // message of its own in `.env`, and the compose file says which variable it could not use.
    assert_eq!(
        e,
        vec![
            "stacks/web/.env:6:1: variable `A5` expands to more than 65536 bytes (the cap on an interpolated value)",
            "stacks/web/compose.yaml:4:14: services.app.command: variable `A7` has no usable value: its definition could not be expanded",
        ]
    );
    assert!(!e.iter().any(|m| m.contains("xxxx")), "{e:?}");
}

#[test]
fn a_nested_env_file_is_a_located_error_not_gigabytes() {
    let env_file = nested_dotenv(7, 8);
    let files = [
        ("convoy.yaml", FLEET),
        (
            "stacks/web/compose.yaml",
            "services:\n  app:\n    image: busybox\n    env_file: app.env\n",
        ),
        ("stacks/web/app.env", env_file.as_str()),
    ];
    let result = load_within(CASE_TIME, tree(&files), BTreeMap::new());
    let e: Vec<String> = result
        .expect_err("over the cap")
        .0
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        e,
        vec!["stacks/web/app.env:6:1: variable `A5` expands to more than 65536 bytes (the cap on an interpolated value)"]
    );
}

#[test]
fn interpolation_cannot_grow_a_value_past_the_cap() {
    let big = "y".repeat(40_000);
    let e = errs_env(
        &files(&web(
            "services:\n  app:\n    image: busybox\n    command: echo ${BIG} ${BIG}\n",
        )),
        &[("BIG", &big)],
    );
    assert_eq!(
        e,
        vec!["stacks/web/compose.yaml:4:14: services.app.command: the value grows past 65536 bytes with `${BIG}` (the cap on an interpolated value)"]
    );
    // Written that long, a value stays as long as it is written.
    let long = format!(
        "services:\n  app:\n    image: busybox\n    command: echo $$x {}\n",
        "z".repeat(70_000)
    );
    assert!(load(&tree(&files(&web(&long))), &BTreeMap::new()).is_ok());
}

#[test]
fn values_under_the_cap_add_up_to_the_file_budget() {
    // 100 variables of 50,000 bytes each, every one used: 5 MB in all, over the 4 MiB cap.
    let mut compose = String::from("services:\n  app:\n    image: busybox\n    environment:\n");
    for i in 0..100 {
        compose.push_str(&format!("      V{i}: ${{BIG}}\n"));
    }
    let big = "y".repeat(50_000);
    let result = load_within(
        CASE_TIME,
        tree(&files(&web(&compose))),
        env(&[("BIG", &big)]),
    );
    let e: Vec<String> = result
        .expect_err("over the budget")
        .0
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("interpolation produces more than 4194304 bytes in this file"),
        "{e:?}"
    );
}

#[test]
fn dotenv_variables_are_expanded_once_each() {
    // Each level uses the one below it twice, and every value stays two bytes long: without
    // memoising, the last one would take 2^40 expansions.
    let mut dotenv = String::from("B0=ok\n");
    for i in 1..=40 {
        dotenv.push_str(&format!("B{i}=${{B{p}:+x}}${{B{p}:+y}}\n", p = i - 1));
    }
    let files = [
        ("convoy.yaml", FLEET),
        (
            "stacks/web/compose.yaml",
            "services:\n  app:\n    image: busybox\n    command: echo ${B40}\n",
        ),
        ("stacks/web/.env", dotenv.as_str()),
    ];
    let result = load_within(CASE_TIME, tree(&files), BTreeMap::new());
    let state = result.expect("valid");
    assert_eq!(
        state.stacks["web"].services["app"].container.command,
        Some(vec!["echo".to_string(), "xy".to_string()])
    );
}

#[test]
fn dotenv_variables_still_reach_bare_environment_entries_and_env_files() {
    // Neither is interpolated in the compose file: they are looked up by the services' reader,
    // so they count as used too.
    let s = ok(&[
        ("convoy.yaml", FLEET),
        (
            "stacks/web/compose.yaml",
            "services:\n  app:\n    image: busybox\n    env_file: app.env\n    environment: [BARE]\n",
        ),
        (
            "stacks/web/.env",
            "BARE=${BASE}-bare\nFOR_ENV_FILE=${BASE}-file\nBASE=ignored\nUNUSED=${A0}\n",
        ),
        ("stacks/web/app.env", "FROM_FILE=${FOR_ENV_FILE}\n"),
    ]);
    assert_eq!(
        s.stacks["web"].services["app"].container.env,
        env(&[("BARE", "-bare"), ("FROM_FILE", "-file")])
    );
}

#[test]
fn a_long_chain_of_dotenv_references_does_not_overflow_the_stack() {
    let mut dotenv = String::from("C0=c\n");
    for i in 1..=5_000 {
        dotenv.push_str(&format!("C{i}=${{C{}}}\n", i - 1));
    }
    let tree = MemoryTree::new()
        .with("convoy.yaml", FLEET)
        .with(
            "stacks/web/compose.yaml",
            "services:\n  app:\n    image: busybox\n    command: echo ${C5000}\n",
        )
        .with("stacks/web/.env", &dotenv);
    // On a thread with a small stack, as a test's or a daemon's task's could be.
    let run = move || load(&tree, &BTreeMap::new());
    let state = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(run)
        .unwrap()
        .join()
        .unwrap()
        .expect("valid");
    assert_eq!(
        state.stacks["web"].services["app"].container.command,
        Some(vec!["echo".to_string(), "c".to_string()])
    );
}

// --- Property-based fuzzing -------------------------------------------------------------------

/// A valid repository with most keys of both files, the base of the structured mutations.
const BASE_FLEET: &str = "fleet: prod
images: pull
ssh:
  user: deploy
hosts:
  edge-1:
    address: ssh://deploy@203.0.113.10:22
    labels: {zone: a}
    capacity: {cpus: 4, memory: 8g}
  local:
    address: unix:///var/run/docker.sock
connect_timeout: 5s
host_down_after: 30s
";

const BASE_COMPOSE: &str = "x-base: &base
  restart: always
  labels:
    team: core
services:
  app:
    <<: *base
    image: registry.example/app:${TAG:-1.2}
    command: sh -c 'echo hi'
    environment:
      - PLAIN=1
      - FROM_DOTENV
      - DB_PASSWORD=${DB_PASSWORD}
    env_file: app.env
    ports:
      - \"127.0.0.1:8080:80\"
      - target: 443
        published: 8443
    volumes:
      - data:/var/lib/data
    healthcheck:
      test: [CMD, true]
      interval: 10s
    depends_on:
      db:
        condition: service_started
    ulimits:
      nofile: {soft: 1024, hard: 2048}
    deploy:
      replicas: ${REPLICAS:-2}
      resources:
        limits: {cpus: '0.5', memory: 256m}
      placement:
        constraints: [node.labels.zone == a]
  db:
    image: postgres:16
    stop_grace_period: 1m
volumes:
  data:
";

const BASE_DOTENV: &str = "TAG=1.3
FROM_DOTENV=${TAG}-x
REPLICAS=3
DB_PASSWORD='s3cr3t-value'
export NESTED=${UNSET:-${TAG:+${FROM_DOTENV}}}
";

const BASE_ENV_FILE: &str = "APP_MODE=prod\nAPP_TAG=${TAG}\n";

/// Values a key may be given instead of its own: other types, edges of numbers, tags, aliases,
/// interpolations, unicode and control characters.
const VALUES: &[&str] = &[
    "[]",
    "{}",
    "~",
    "",
    "-1",
    "0",
    "99999999999999999999999999999",
    "-9223372036854775809",
    "1e400",
    "0x7fffffffffffffff",
    "1000000000",
    "true",
    "\"\\0\"",
    "\"a\\u0000b\"",
    "\"\\t\\r\\n\"",
    "!!binary aGVsbG8=",
    "!include other.yaml",
    "!!str 5",
    "\"ĳ💥\u{202e}é\u{301}\"",
    "\u{fffd}\u{feff}",
    "*base",
    "&again {x: 1}",
    "[*base, *base]",
    "{<<: *base}",
    "'${A}'",
    "\"${A:-${B:-${C:-${D}}}}\"",
    "${A:?${B}}",
    "${",
    "${}",
    "${1A}",
    "$$$$",
    "${A:+${A:+${A:+x}}}",
    "${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A:-${A}}}}}}}}}}}}}}}}}}",
    "|\n  block\n  text",
    ">-\n  folded",
    "? complex\n: key",
    "- a\n- b",
    "1:2:3:4:5",
    "-1m",
    "1e3h",
    "9999999999999999h",
    "0.0000000001",
    "NaN",
    ".inf",
    "\"\u{0}\"",
];

/// Lines a mutation may insert anywhere in a YAML file.
const LINES: &[&str] = &[
    "x-a: &a {image: busybox, restart: always}",
    "    <<: *a",
    "    <<: [*a, *base]",
    "  dup: *base",
    "  dup: *base",
    "    environment: &e {A: '1'}",
    "    labels: *e",
    "\u{0}",
    "\u{feff}services:",
    "%YAML 1.2",
    "---",
    "...",
    "services: {}",
    "  app: null",
    "    deploy: {replicas: 99999999999999999999}",
    "    deploy: {replicas: -1, mode: global}",
    "    x-convoy: {hosts: [nowhere]}",
    "    image: ${A:-${B:-${C:-${D:-${E:-${F:-${G:-${H:-${I:-${J}}}}}}}}}}",
    "    command: ${UNCLOSED",
    "stacks: [app, app, ../etc]",
    "hosts: {}",
    "\t- tab",
    "  - \"unterminated",
];

/// Lines a mutation may insert anywhere in a dotenv file.
const DOTENV_LINES: &[&str] = &[
    "A=${B}${B}${B}${B}",
    "B=${A:-${C:-${D}}}",
    "C='lit $A'",
    "D=\"multi",
    "line\"",
    "E",
    "export F=${F}${F}",
    "G=${H?required}",
    "bad key=1",
    "TAG=${TAG}${TAG}${TAG}${TAG}${TAG}${TAG}${TAG}${TAG}",
    "FROM_DOTENV=${FROM_DOTENV}${FROM_DOTENV}${FROM_DOTENV}${FROM_DOTENV}",
    "REPLICAS=${REPLICAS:-${TAG:+99999999999999999999}}",
    "DB_PASSWORD=\"${NESTED}\\n\\t\\\"\"",
    "APP_TAG=${APP_TAG:?}",
    "\u{0}=\u{0}",
    "# ${comment}",
    "  export   SPACED = value # note",
    "UNI=ĳ💥\u{202e}",
    "\u{feff}BOM=1",
];

#[derive(Debug, Clone)]
enum Mutation {
    /// Delete line `n`.
    Delete(usize),
    /// Write line `n` twice (a duplicate key, a repeated list item).
    Duplicate(usize),
    /// Give line `n` another value.
    Retype(usize, usize),
    /// Insert one of `LINES` (`DOTENV_LINES` in a dotenv file) before line `n`.
    Insert(usize, usize),
    /// Move line `n` two columns in or out.
    Indent(usize, bool),
    /// Put a character (a NUL, a quote, a brace, non-ASCII) at a byte offset.
    Char(usize, char),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), 0..VALUES.len()).prop_map(|(n, v)| Mutation::Retype(n, v)),
        (any::<usize>(), any::<usize>()).prop_map(|(n, l)| Mutation::Insert(n, l)),
        (any::<usize>(), any::<bool>()).prop_map(|(n, i)| Mutation::Indent(n, i)),
        (
            any::<usize>(),
            prop::sample::select(vec![
                '\0', '"', '\'', '{', '}', '[', ':', '$', '&', '*', 'é', '💥'
            ])
        )
            .prop_map(|(n, c)| Mutation::Char(n, c)),
    ]
}

fn mutate(text: &str, dotenv: bool, m: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let len = lines.len();
    match m {
        Mutation::Delete(n) => {
            lines.remove(n % len);
        }
        Mutation::Duplicate(n) => {
            let line = lines[n % len].clone();
            lines.insert(n % len, line);
        }
        Mutation::Retype(n, v) => {
            let line = &mut lines[n % len];
            let cut = line
                .find(": ")
                .map(|p| p + 2)
                .or_else(|| line.find('=').map(|p| p + 1))
                .or_else(|| line.find("- ").map(|p| p + 2))
                .unwrap_or(line.len());
            line.truncate(cut);
            line.push_str(VALUES[*v]);
        }
        Mutation::Insert(n, l) => {
            let pool = if dotenv { DOTENV_LINES } else { LINES };
            lines.insert(n % (len + 1), pool[l % pool.len()].to_string());
        }
        Mutation::Indent(n, inward) => {
            let line = &mut lines[n % len];
            if *inward {
                line.insert_str(0, "  ");
            } else if line.starts_with("  ") {
                line.drain(..2);
            }
        }
        Mutation::Char(n, c) => {
            let mut text = lines.join("\n");
            let mut at = n % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.insert(at, *c);
            return text;
        }
    }
    lines.join("\n") + "\n"
}

/// The base repository with `mutations` applied to the file numbered `which` (0 `convoy.yaml`,
/// 1 `compose.yaml`, 2 `.env`, 3 the env file), and its environment.
fn mutated_repository(which: usize, mutations: &[Mutation]) -> MemoryTree {
    let mut texts = [BASE_FLEET, BASE_COMPOSE, BASE_DOTENV, BASE_ENV_FILE].map(str::to_string);
    for m in mutations {
        texts[which] = mutate(&texts[which], which >= 2, m);
    }
    let [fleet, compose, dotenv, env_file] = texts;
    MemoryTree::new()
        .with("convoy.yaml", &fleet)
        .with("stacks/web/compose.yaml", &compose)
        .with("stacks/web/.env", &dotenv)
        .with("stacks/web/app.env", &env_file)
}

/// Loads, and fails the case when it takes too long; a panic fails it too.
fn load_within_bound(tree: &MemoryTree, vars: &BTreeMap<String, String>) -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (t, v) = (tree.clone(), vars.clone());
    std::thread::spawn(move || {
        let _ = tx.send(load(&t, &v));
    });
    let result = match rx.recv_timeout(CASE_TIME) {
        Ok(result) => result,
        Err(RecvTimeoutError::Disconnected) => return Err("load panicked".into()),
        Err(RecvTimeoutError::Timeout) => return Err(format!("not loaded within {CASE_TIME:?}")),
    };
    // Every error is located in a file of the repository, or in none at all.
    if let Err(errors) = result {
        for e in &errors.0 {
            if !(tree.files.contains_key(&e.file)
                || e.file == "stacks"
                || e.file.starts_with("stacks/"))
            {
                return Err(format!("error in an unknown file: {e}"));
            }
        }
    }
    Ok(())
}

fn fuzz_env() -> BTreeMap<String, String> {
    env(&[
        ("A", "a"),
        ("DB_PASSWORD", "from-the-environment"),
        ("EMPTY", ""),
    ])
}

/// Text that is mostly YAML's and dotenv's punctuation, so the parsers get past the first byte.
fn arb_yamlish() -> impl Strategy<Value = String> {
    "[a-z0-9 :\\-\\[\\]{}&*<>!|#'\"$=.,?%@`~\n\t\u{0}é💥]{0,300}"
}

/// Raw bytes, invalid UTF-8 included.
fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..512)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2500))]

    /// A valid repository mutated in any file, a few mutations at a time.
    #[test]
    fn mutated_repositories_never_panic_and_stay_bounded(
        which in 0..4usize,
        mutations in prop::collection::vec(arb_mutation(), 1..6),
    ) {
        let tree = mutated_repository(which, &mutations);
        prop_assert_eq!(load_within_bound(&tree, &fuzz_env()), Ok(()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Arbitrary text or bytes as each of the files a stack is made of.
    #[test]
    fn arbitrary_files_never_panic_and_stay_bounded(
        which in 0..4usize,
        text in arb_yamlish(),
        bytes in arb_bytes(),
        raw in any::<bool>(),
    ) {
        let path = ["convoy.yaml", "stacks/web/compose.yaml", "stacks/web/.env", "stacks/web/app.env"][which];
        let mut tree = mutated_repository(0, &[]);
        tree.files.insert(path.to_string(), if raw { bytes } else { text.into_bytes() });
        prop_assert_eq!(load_within_bound(&tree, &fuzz_env()), Ok(()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    /// A `.env` of arbitrary references to each other, used from the compose file.
    #[test]
    fn arbitrary_dotenv_references_stay_bounded(
        defs in prop::collection::vec((0..6usize, "(\\$\\{V[0-5](:?[-+?])?|\\$V[0-5]|\\}|x{1,3}|'|\"){0,12}"), 0..24),
    ) {
        let dotenv: String = defs.iter().map(|(n, v)| format!("V{n}={v}\n")).collect();
        let tree = mutated_repository(0, &[])
            .with("stacks/web/.env", &dotenv)
            .with(
                "stacks/web/compose.yaml",
                "services:\n  app:\n    image: busybox\n    command: echo ${V0} ${V5:-${V3}}\n    environment: [V1, V2]\n",
            );
        prop_assert_eq!(load_within_bound(&tree, &fuzz_env()), Ok(()));
    }
}

#[test]
fn the_base_of_the_mutations_is_valid() {
    let state = ok_env(
        &[
            ("convoy.yaml", BASE_FLEET),
            ("stacks/web/compose.yaml", BASE_COMPOSE),
            ("stacks/web/.env", BASE_DOTENV),
            ("stacks/web/app.env", BASE_ENV_FILE),
        ],
        &[("A", "a"), ("DB_PASSWORD", "from-the-environment")],
    );
    let app = &state.stacks["web"].services["app"];
    assert_eq!(app.container.image, "registry.example/app:1.3");
    assert_eq!(app.replicas, 3);
    assert_eq!(app.container.env["FROM_DOTENV"], "1.3-x");
    assert_eq!(app.container.env["APP_TAG"], "1.3");
    assert_eq!(app.container.env["DB_PASSWORD"], "from-the-environment");
}
