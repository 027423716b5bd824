//! `convoy logs` and `convoy exec` on the SSH test fleet: logs of replicas on several hosts
//! merged in time order (checked against each engine's own `docker logs -t`), `--tail`,
//! `--since`, `--until`, `--host`, following new and stopping replicas, an unreachable host,
//! and exec's exit codes and stdin.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::fleet::{HostCleanup, Hosts, Restore};
use crate::harness::*;

fn state_dir(t: &TestFleet) -> String {
    t.path().join("state").to_string_lossy().into_owned()
}

/// `convoy <sub> --repo DIR --state-dir DIR <rest>`: the repository before `rest`, which may
/// end in `-- CMD ...`.
fn convoy_cmd(t: &TestFleet, sub: &str, rest: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_convoy"));
    cmd.arg(sub)
        .arg("--repo")
        .arg(t.path())
        .args(["--state-dir", &state_dir(t)])
        .args(rest)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    cmd
}

fn convoy(t: &TestFleet, sub: &str, rest: &[&str]) -> Run {
    Run::from(convoy_cmd(t, sub, rest).output().expect("run convoy"))
}

/// A `convoy logs -f` (or any) child, killed on drop; its stdout goes to a file read while it
/// runs.
struct Follower {
    child: Child,
    out: std::path::PathBuf,
}

impl Follower {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Unix seconds a few seconds ahead: replicas started by one apply wait for it, so that their
/// lines interleave at known offsets whatever order they started in.
fn start_at(secs_ahead: u64) -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + secs_ahead
}

/// A service pinned to `host` that waits for `start`, sleeps `offset_us`, then prints
/// `<word> 1` .. `<word> 6` every 400 ms (to stderr when `stderr`), then sleeps.
fn ticker(word: &str, host: &str, start: u64, offset_us: u64, stderr: bool) -> String {
    let redirect = if stderr { " >&2" } else { "" };
    format!(
        r#"  {word}:
    image: {IMAGE}
    command: ["sh", "-c", "while [ $$(date +%s) -lt {start} ]; do usleep 20000; done; usleep {offset_us}; i=0; while [ $$i -lt 6 ]; do i=$$((i+1)); echo {word} $$i{redirect}; usleep 400000; done; exec sleep 3600"]
    deploy:
      placement:
        constraints: ["node.hostname == {host}"]
"#
    )
}

fn with_connect_timeout(t: &TestFleet) {
    let f = std::fs::read_to_string(t.path().join("convoy.yaml")).unwrap();
    t.write("convoy.yaml", &format!("connect_timeout: 2s\n{f}"));
}

/// Waits until `name` on `host` has printed `n` lines (stdout and stderr).
fn wait_for_lines(hosts: &Hosts, host: &str, name: &str, n: usize) {
    wait_for(
        &format!("{n} lines from {name}"),
        Duration::from_secs(40),
        || {
            let h = format!("unix://{}", hosts.sock(host));
            let out = Command::new("docker")
                .args(["-H", &h, "logs", name])
                .output()
                .expect("docker logs");
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            all.lines().count() >= n
        },
    );
}

/// `docker logs -t` of a container, as (timestamp, text) pairs, stdout and stderr both.
fn engine_lines(hosts: &Hosts, host: &str, name: &str) -> Vec<(String, String)> {
    let h = format!("unix://{}", hosts.sock(host));
    let out = Command::new("docker")
        .args(["-H", &h, "logs", "-t", name])
        .output()
        .expect("docker logs");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    all.lines()
        .map(|l| {
            let (ts, text) = l.split_once(' ').unwrap();
            (normalise(ts), text.to_string())
        })
        .collect()
}

/// An engine timestamp with its fraction padded to 9 digits, so strings sort in time order.
fn normalise(ts: &str) -> String {
    let body = ts.trim_end_matches('Z');
    let (secs, frac) = body.split_once('.').unwrap_or((body, ""));
    format!("{secs}.{frac:0<9}Z")
}

#[test]
fn logs_of_two_hosts_merge_in_time_order_with_tail_since_until_and_host() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "");
    let (h1, h2) = (hosts.names[0].clone(), hosts.names[1].clone());
    let start = start_at(6);
    t.compose(
        "lg",
        &format!(
            "services:\n{}{}",
            ticker("a", &h1, start, 0, false),
            ticker("b", &h2, start, 200_000, true)
        ),
    );
    convoy(&t, "apply", &[]).outcome(Outcome::Converged);
    let (a, b) = (t.cname("lg", "a", 1), t.cname("lg", "b", 1));
    wait_for_lines(&hosts, &h1, &a, 6);
    wait_for_lines(&hosts, &h2, &b, 6);
    let stack = t.stack("lg");
    let pa = format!("{h1}/{a} | ");
    let pb = format!("{h2}/{b} | ");
    let expect = |lines: &[(char, u32)]| -> String {
        lines
            .iter()
            .map(|(w, i)| {
                let p = if *w == 'a' { &pa } else { &pb };
                format!("{p}{w} {i}\n")
            })
            .collect()
    };
    let all: Vec<(char, u32)> = (1..=6).flat_map(|i| [('a', i), ('b', i)]).collect();

    // Everything: a and b alternate (200 ms apart), b's lines from its stderr.
    let out = convoy(&t, "logs", &[&stack]).outcome(Outcome::AllReachable);
    assert_eq!(out.stdout, expect(&all), "stderr: {}", out.stderr);

    // The same order as the engines' own timestamps, merged independently here.
    let mut independent: Vec<(String, String)> = engine_lines(&hosts, &h1, &a)
        .into_iter()
        .map(|(ts, l)| (ts, format!("{pa}{l}")))
        .chain(
            engine_lines(&hosts, &h2, &b)
                .into_iter()
                .map(|(ts, l)| (ts, format!("{pb}{l}"))),
        )
        .collect();
    independent.sort();
    let with_ts = convoy(&t, "logs", &[&stack, "--timestamps"]).outcome(Outcome::AllReachable);
    let want: String = independent
        .iter()
        .map(|(ts, l)| {
            let (prefix, text) = l.split_once(" | ").unwrap();
            format!("{prefix} | {ts} {text}\n")
        })
        .collect();
    // Convoy shows the engine's timestamp as the engine wrote it; compare normalised.
    let got: String = with_ts
        .stdout
        .lines()
        .map(|l| {
            let (prefix, rest) = l.split_once(" | ").unwrap();
            let (ts, text) = rest.split_once(' ').unwrap();
            format!("{prefix} | {} {text}\n", normalise(ts))
        })
        .collect();
    assert_eq!(got, want);

    // The last two lines of each replica.
    let out = convoy(&t, "logs", &[&stack, "--tail", "2"]).outcome(Outcome::AllReachable);
    assert_eq!(out.stdout, expect(&all[8..]), "{}", out.stderr);

    // --since and --until at a's fourth line (RFC 3339): from it on, and before it.
    let a4 = &independent
        .iter()
        .find(|(_, l)| l.ends_with("a 4"))
        .unwrap()
        .0;
    let out = convoy(&t, "logs", &[&stack, "--since", a4]).outcome(Outcome::AllReachable);
    assert_eq!(out.stdout, expect(&all[6..]), "{}", out.stderr);
    let out = convoy(&t, "logs", &[&stack, "--until", a4]).outcome(Outcome::AllReachable);
    assert_eq!(out.stdout, expect(&all[..6]), "{}", out.stderr);
    // A duration ago: every line is younger than ten minutes.
    let out = convoy(&t, "logs", &[&stack, "--since", "10m"]).outcome(Outcome::AllReachable);
    assert_eq!(out.stdout, expect(&all));

    // One host; one service; one slot.
    let only_b: Vec<(char, u32)> = (1..=6).map(|i| ('b', i)).collect();
    let out = convoy(&t, "logs", &[&stack, "--host", &h2]).outcome(Outcome::AllReachable);
    assert_eq!(out.stdout, expect(&only_b), "{}", out.stderr);
    let out = convoy(&t, "logs", &[&format!("{stack}/b/1")]).outcome(Outcome::AllReachable);
    assert_eq!(out.stdout, expect(&only_b), "{}", out.stderr);
    let out = convoy(&t, "logs", &[&format!("{stack}/c")]).outcome(Outcome::AllReachable);
    assert_eq!(out.stdout, "");

    // Names that do not exist are errors, not empty logs.
    let out = convoy(&t, "logs", &["nosuchstack"]).outcome(Outcome::Invalid);
    assert!(
        out.stderr.contains("no stack `nosuchstack`"),
        "{}",
        out.stderr
    );
    let out = convoy(&t, "logs", &[&stack, "--host", "nosuchhost"]).outcome(Outcome::Error);
    assert!(
        out.stderr.contains("no host `nosuchhost`"),
        "{}",
        out.stderr
    );
}

#[test]
fn follow_picks_up_a_replica_that_starts_and_says_when_one_stops() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "");
    let (h1, h2) = (hosts.names[0].clone(), hosts.names[1].clone());
    let service = |word: &str, host: &str| {
        format!(
            "  {word}:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo {word} ready; exec sleep 3600\"]\n    stop_grace_period: 1s\n    deploy:\n      placement:\n        constraints: [\"node.hostname == {host}\"]\n"
        )
    };
    t.compose("fo", &format!("services:\n{}", service("a", &h1)));
    convoy(&t, "apply", &[]).outcome(Outcome::Converged);
    let (a, b) = (t.cname("fo", "a", 1), t.cname("fo", "b", 1));
    let stack = t.stack("fo");
    let out_path = t.path().join("follow.out");
    let child = convoy_cmd(&t, "logs", &[&stack, "-f"])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn convoy logs -f");
    let f = Follower {
        child,
        out: out_path,
    };
    wait_for("a's line while following", Duration::from_secs(30), || {
        f.output().contains(&format!("{h1}/{a} | a ready"))
    });

    // A replica that starts during the follow (on another host) is picked up from its start.
    t.compose(
        "fo",
        &format!("services:\n{}{}", service("a", &h1), service("b", &h2)),
    );
    convoy(&t, "apply", &[]).outcome(Outcome::Converged);
    wait_for("b's line while following", Duration::from_secs(30), || {
        f.output().contains(&format!("{h2}/{b} | b ready"))
    });

    // One that stops is reported as such, with its exit code.
    hosts.docker(&h1, &["stop", "-t", "1", &a]);
    wait_for("a's stop while following", Duration::from_secs(30), || {
        f.output()
            .contains(&format!("{h1}/{a} exited with code 137"))
    });
    // Nothing was printed twice.
    let out = f.output();
    assert_eq!(out.matches("a ready").count(), 1, "{out}");
    assert_eq!(out.matches("b ready").count(), 1, "{out}");

    // A reader that goes away (`convoy logs -f | head -1`) ends the follow.
    let mut child = convoy_cmd(&t, "logs", &[&stack, "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn convoy logs -f");
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(first.contains(" | "), "{first}");
    let mut ended = Follower {
        child,
        out: t.path().join("none"),
    };
    wait_for("the follow to end", Duration::from_secs(10), || {
        matches!(ended.child.try_wait(), Ok(Some(_)))
    });
}

#[test]
fn an_unreachable_host_is_named_and_the_others_logs_still_print() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "");
    with_connect_timeout(&t);
    t.compose(
        "un",
        &format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo hello from $$HOSTNAME; i=0; while true; do i=$$((i+1)); echo tick $$i; usleep 300000; done\"]\n    deploy:\n      replicas: 3\n"
        ),
    );
    convoy(&t, "apply", &[]).outcome(Outcome::Converged);
    for (i, h) in hosts.names.iter().enumerate() {
        wait_for_lines(&hosts, h, &t.cname("un", "app", i as u32 + 1), 1);
    }
    let _restore = Restore(&hosts);
    // A follow that loses a host names it on stderr and goes on with the others.
    let (out_path, err_path) = (t.path().join("follow.out"), t.path().join("follow.err"));
    let child = convoy_cmd(&t, "logs", &["-f", "--tail", "1"])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn convoy logs -f");
    let f = Follower {
        child,
        out: out_path,
    };
    let h1 = &hosts.names[0];
    let c2 = format!("{}/{} | tick", hosts.names[1], t.cname("un", "app", 2));
    wait_for(
        "host1's ticks while following",
        Duration::from_secs(30),
        || f.output().contains(&format!("{h1}/")),
    );
    hosts.stop(1);
    let note = format!("host `{h1}` is unreachable");
    wait_for(
        "the lost host named on stderr",
        Duration::from_secs(60),
        || {
            std::fs::read_to_string(&err_path)
                .unwrap_or_default()
                .contains(&note)
        },
    );
    let seen = f.output().len();
    wait_for(
        "host2's ticks after the loss",
        Duration::from_secs(10),
        || f.output()[seen..].contains(&c2),
    );
    drop(f);

    let out = convoy(&t, "logs", &[]).outcome(Outcome::SomeUnreachable);
    assert!(
        out.stderr.contains(&format!("host `{h1}` is unreachable")),
        "{}",
        out.stderr
    );
    for (i, h) in hosts.names.iter().enumerate().skip(1) {
        let prefix = format!("{h}/{} | hello from", t.cname("un", "app", i as u32 + 1));
        assert!(out.stdout.contains(&prefix), "{prefix}: {}", out.stdout);
    }
    assert!(!out.stdout.contains(&format!("{h1}/")), "{}", out.stdout);
    // exec: a replica on the stopped host is Convoy's own failure, 125, and says why.
    let out = convoy(
        &t,
        "exec",
        &[&format!("{}/app/1", t.stack("un")), "--", "true"],
    );
    assert_eq!(out.code, 125, "{}", out.stderr);
    assert!(out.stderr.contains(h1.as_str()), "{}", out.stderr);
}

#[test]
fn exec_passes_the_exit_code_and_stdin_through_and_uses_dockers_own_codes() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "");
    t.compose(
        "ex",
        &format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n    deploy:\n      replicas: 2\n"
        ),
    );
    convoy(&t, "apply", &[]).outcome(Outcome::Converged);
    let stack = t.stack("ex");
    let app = format!("{stack}/app");
    let (h1, h2) = (&hosts.names[0], &hosts.names[1]);

    let out = convoy(&t, "exec", &[&app, "--", "sh", "-c", "echo out; exit 7"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (7, "out\n"),
        "{}",
        out.stderr
    );
    // Slot 1 by default; a slot or a host picks another replica.
    let hostname = |h: &str, slot: u32| {
        hosts.docker(
            h,
            &[
                "inspect",
                "-f",
                "{{.Config.Hostname}}",
                &t.cname("ex", "app", slot),
            ],
        )
    };
    let out = convoy(&t, "exec", &[&app, "--", "hostname"]);
    assert_eq!(out.stdout.trim(), hostname(h1, 1), "{}", out.stderr);
    let out = convoy(&t, "exec", &[&format!("{app}/2"), "--", "hostname"]);
    assert_eq!(out.stdout.trim(), hostname(h2, 2), "{}", out.stderr);
    let out = convoy(&t, "exec", &[&app, "--host", h2, "--", "hostname"]);
    assert_eq!(out.stdout.trim(), hostname(h2, 2), "{}", out.stderr);
    // stderr stays stderr.
    let out = convoy(&t, "exec", &[&app, "--", "sh", "-c", "echo oops >&2"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""));
    assert_eq!(out.stderr, "oops\n");

    // Convoy's own failures, numbered as docker exec numbers them.
    let out = convoy(&t, "exec", &[&format!("{stack}/nope"), "--", "true"]);
    assert_eq!(out.code, 125, "{}", out.stderr);
    assert!(out.stderr.contains("no replica"), "{}", out.stderr);
    let out = convoy(&t, "exec", &[&format!("{app}/9"), "--", "true"]);
    assert_eq!(out.code, 125, "{}", out.stderr);
    let out = convoy(&t, "exec", &[&app, "--", "no-such-command"]);
    assert_eq!(out.code, 127, "{} {}", out.stdout, out.stderr);
    let out = convoy(&t, "exec", &[&app, "--", "/etc"]);
    assert_eq!(out.code, 126, "{} {}", out.stdout, out.stderr);

    // -t gives the command a terminal (even when Convoy's own output is not one).
    let out = convoy(
        &t,
        "exec",
        &["-t", &app, "--", "sh", "-c", "[ -t 1 ] && echo tty"],
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "tty\r\n"),
        "{}",
        out.stderr
    );
    resize_follows_the_terminal(&t, &app);

    // stdin passes through with -i, and its end ends `cat`.
    let mut child = convoy_cmd(&t, "exec", &["-i", &app, "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn convoy exec -i");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"line one\nline two\n")
        .unwrap();
    let out = Run::from(child.wait_with_output().unwrap());
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "line one\nline two\n"),
        "{}",
        out.stderr
    );
}

/// Under a pseudo-terminal (`script`): the command sees the terminal's size, and a new size
/// once the terminal is resized (SIGWINCH). The resize is made once the first size is seen.
fn resize_follows_the_terminal(t: &TestFleet, app: &str) {
    if Command::new("script").arg("--version").output().is_err() {
        // Under CI a missing tool is a failure (scripts/ensure-docker installs bsdutils).
        assert!(
            !docker_required(),
            "no `script` (bsdutils): scripts/ensure-docker installs it"
        );
        eprintln!("SKIPPED the resize check: no `script` (bsdutils)");
        return;
    }
    let seen = t.path().join("winch.out");
    let seen = seen.display();
    // Wait for a size (the engine may start the command before the first resize arrives),
    // print it, then wait (bounded) for the new one (stty sets rows and columns one at a time)
    // and print it.
    // (busybox's stty fails on a 0x0 terminal, which is what an exec has until the first
    // resize arrives: wait for a real size.)
    let remote = r#"i=0; while [ $i -lt 250 ]; do z=$(stty size 2>&1); case "$z" in [1-9]*" "[1-9]*) break;; esac; usleep 20000; i=$((i+1)); done; echo $z; while [ "$(stty size 2>&1)" != "50 120" ] && [ $i -lt 500 ]; do usleep 20000; i=$((i+1)); done; stty size"#;
    let inner = format!(
        "stty rows 40 cols 100; (until grep -q '40 100' {seen} 2>/dev/null; do sleep 0.05; done; stty rows 50 cols 120 </dev/tty) & {bin} exec --repo {repo} --state-dir {sd} -it {app} -- sh -c '{remote}' | tee {seen}",
        bin = env!("CARGO_BIN_EXE_convoy"),
        repo = t.path().display(),
        sd = state_dir(t),
    );
    // script's stdin stays open until it ends: its end would end the command's input, and a
    // TTY without input hangs up.
    let mut child = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .spawn()
        .expect("run script");
    let _open = child.stdin.take();
    let out = child.wait_with_output().expect("script's output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("40 100\r\n50 120\r\n"),
        "{stdout:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
