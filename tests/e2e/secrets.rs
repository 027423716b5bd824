//! Secrets stay masked on every stream: `apply -vv` in text and JSON logs, with third-party
//! debug output turned on by `RUST_LOG`, and `status` showing a crash-looping container that
//! echoes its own secret. Each secret is unique to its test, so finding its random core
//! anywhere on stdout or stderr, in any escaped form, is a leak.
//!
//! These tests only read what `convoy` prints; they must not assume which code path would have
//! leaked (bollard's dumps, a log field, a container's output), only that nothing does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::harness::*;

/// A random-looking core no output could contain by chance.
fn unique_core() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "k{:x}q{:x}z{}",
        nanos,
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// The secrets of one test: the random cores that must never be shown.
struct Secrets {
    password: String,
    token: String,
    from_file: String,
}

impl Secrets {
    fn new() -> Secrets {
        Secrets {
            password: unique_core(),
            token: unique_core(),
            from_file: unique_core(),
        }
    }

    fn cores(&self) -> [&str; 3] {
        [&self.password, &self.token, &self.from_file]
    }

    /// Stack `web`: one service with a secret-named variable, one whose value holds a quote
    /// and a backslash (escaped differently in every format), and a value from an env_file.
    fn write_stack(&self, t: &TestFleet) {
        t.write(
            &format!("stacks/{}/app.env", t.stack("web")),
            &format!("FROM_FILE=file-{}\n", self.from_file),
        );
        t.compose(
            "web",
            &format!(
                "services:\n  app:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    env_file: app.env\n    environment:\n      DB_PASSWORD: \"pw-{}\"\n      API_TOKEN: 'q\"{}\\x'\n",
                self.password, self.token
            ),
        );
    }

    /// Panics when any core shows on either stream.
    fn assert_never_shown(&self, what: &str, run: &Run) {
        for core in self.cores() {
            assert!(
                !run.stdout.contains(core),
                "{what}: a secret on stdout:\n{}",
                run.stdout
            );
            assert!(
                !run.stderr.contains(core),
                "{what}: a secret on stderr:\n{}",
                run.stderr
            );
        }
    }
}

/// Every stderr line is a JSON object: masking did not break a line.
fn assert_json_lines(what: &str, stderr: &str) {
    for line in stderr.lines().filter(|l| !l.is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v.is_object()),
            "{what}: not a JSON log line: {line}"
        );
    }
}

/// Whether any log line came from a crate other than Convoy (bollard, hyper, ...).
fn third_party_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            ["bollard", "hyper", "h2::", "tower"]
                .iter()
                .any(|c| l.contains(c))
        })
        .collect()
}

#[test]
fn apply_vv_shows_convoy_debug_but_no_secret_and_no_third_party_dumps() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let secrets = Secrets::new();
    secrets.write_stack(&t);
    let run = t.convoy(&["apply", "-vv"]).outcome(Outcome::Converged);
    assert!(
        run.stderr.contains("DEBUG"),
        "-vv logs debug:\n{}",
        run.stderr
    );
    secrets.assert_never_shown("apply -vv", &run);
    assert_eq!(
        third_party_lines(&run.stderr),
        Vec::<&str>::new(),
        "-vv is Convoy's debug, not bollard's"
    );
    // The same in sync, when every container is inspected (and its environment read).
    let again = t.convoy(&["apply", "-vv"]).outcome(Outcome::Converged);
    secrets.assert_never_shown("apply -vv, in sync", &again);
    let status = t.convoy(&["status", "-vv"]).outcome(Outcome::AllReachable);
    secrets.assert_never_shown("status -vv", &status);
}

#[test]
fn json_logs_never_show_a_secret_even_with_bollard_debug_on() {
    if !docker_available() {
        return;
    }
    let mut t = TestFleet::new();
    let secrets = Secrets::new();
    secrets.write_stack(&t);
    let run = t
        .convoy(&["apply", "-vv", "--log-format", "json"])
        .outcome(Outcome::Converged);
    assert!(run.stderr.contains("\"DEBUG\""), "{}", run.stderr);
    assert_json_lines("apply -vv --log-format json", &run.stderr);
    secrets.assert_never_shown("apply -vv --log-format json", &run);
    // Asked for by target: bollard dumps the inspect responses, environment and all.
    t.env("RUST_LOG", "bollard=debug");
    let dumped = t
        .convoy(&["apply", "--log-format", "json"])
        .outcome(Outcome::Converged);
    assert!(
        dumped.stderr.contains("bollard"),
        "RUST_LOG=bollard=debug turns bollard on:\n{}",
        dumped.stderr
    );
    assert!(
        dumped.stderr.contains("(secret)"),
        "the dumps are there, masked:\n{}",
        dumped.stderr
    );
    assert_json_lines("RUST_LOG=bollard=debug", &dumped.stderr);
    secrets.assert_never_shown("RUST_LOG=bollard=debug --log-format json", &dumped);
}

#[test]
fn rust_log_debug_turns_every_crate_on_and_the_writer_still_masks() {
    if !docker_available() {
        return;
    }
    let mut t = TestFleet::new();
    let secrets = Secrets::new();
    secrets.write_stack(&t);
    t.env("RUST_LOG", "debug");
    let run = t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert!(
        !third_party_lines(&run.stderr).is_empty(),
        "RUST_LOG=debug overrides the default filter:\n{}",
        run.stderr
    );
    // bollard dumped the create bodies: each secret is there, masked.
    assert!(
        run.stderr.contains("DB_PASSWORD=(secret)") && run.stderr.contains("API_TOKEN=(secret)"),
        "{}",
        run.stderr
    );
    secrets.assert_never_shown("RUST_LOG=debug apply", &run);
    let again = t.convoy(&["diff", "-vv"]).outcome(Outcome::InSync);
    secrets.assert_never_shown("RUST_LOG=debug diff -vv", &again);
}

#[test]
fn status_masks_a_secret_a_crash_looping_container_prints_and_shows_the_rest() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let token = unique_core();
    t.compose(
        "web",
        &format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo token=$$API_TOKEN; echo still-shown-marker; exit 3\"]\n    restart: always\n    environment:\n      API_TOKEN: tok-{token}\n"
        ),
    );
    // The crash loop may or may not be seen by apply's own check: only what status says counts.
    let apply = t.convoy(&["apply"]);
    assert!(!apply.stdout.contains(&token) && !apply.stderr.contains(&token));
    let name = t.cname("web", "app", 1);
    wait_for("a restart", Duration::from_secs(30), || {
        t.inspect(&name, "{{.RestartCount}}")
            .parse::<i64>()
            .unwrap_or(0)
            >= 1
    });
    // The container did print it: the engine's log is the independent judge.
    assert!(docker(&["logs", &name]).contains(&token));

    let json = t
        .convoy(&["status", "--output", "json"])
        .outcome(Outcome::AllReachable);
    assert!(!json.stdout.contains(&token), "{}", json.stdout);
    assert!(!json.stderr.contains(&token), "{}", json.stderr);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let logs = doc["services"][0]["replicas"][0]["last_logs"].to_string();
    assert!(logs.contains("token=(secret)"), "{logs}");
    assert!(logs.contains("still-shown-marker"), "{logs}");

    let text = t.convoy(&["status"]).outcome(Outcome::AllReachable);
    assert!(!text.stdout.contains(&token), "{}", text.stdout);
    assert!(!text.stderr.contains(&token), "{}", text.stderr);
    assert!(text.stdout.contains("token=(secret)"), "{}", text.stdout);
    assert!(
        text.stdout.contains("still-shown-marker"),
        "{}",
        text.stdout
    );
}
