//! The end-to-end harness: a throwaway fleet repository with its own fleet id, the real
//! `convoy` binary, and the Docker CLI as the independent judge of what runs.
//!
//! Every test gets a unique fleet id and unique stack names, so tests run in parallel on one
//! engine and never see each other. Dropping a `TestFleet` removes every container, network
//! and volume carrying its fleet label, also when the test failed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

pub const IMAGE: &str = "convoy-test/busybox:1";

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static IMAGES: Once = Once::new();

/// Whether Docker must be there: under CI a missing engine is a failure, never a skip.
pub fn docker_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("CONVOY_REQUIRE_DOCKER").is_some()
}

pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `true` when the local engine answers; panics when it does not and Docker is required.
pub fn docker_available() -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if docker_required() {
            panic!("Docker is required (CI or CONVOY_REQUIRE_DOCKER set) but `docker info` fails: run scripts/ensure-docker");
        }
        eprintln!("SKIPPED: no Docker engine answers; run scripts/ensure-docker (set CONVOY_REQUIRE_DOCKER=1 to make this a failure)");
        return false;
    }
    IMAGES.call_once(|| {
        let status = Command::new("bash")
            .arg(project_root().join("scripts/test-image"))
            .status()
            .expect("run scripts/test-image");
        assert!(status.success(), "scripts/test-image failed");
    });
    true
}

/// Runs the docker CLI; panics with its stderr when it fails.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs the docker CLI; `None` when it fails.
pub fn docker_try(args: &[&str]) -> Option<String> {
    let out = Command::new("docker").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Polls `cond` every 100 ms until it holds or `timeout` passes; panics with `what` then.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A command's outcome as the README's table of exit codes states it: tests name what they
/// expect instead of a bare number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // the whole table, though not every outcome has a test of its own yet
pub enum Outcome {
    Valid,
    Invalid,
    InSync,
    Differs,
    /// `diff` could not observe a host: "in sync" is never claimed blind.
    Unobserved,
    Converged,
    NotConverged,
    AllReachable,
    SomeUnreachable,
    Pushed,
    PushFailed,
    Stopped,
    /// An error before any outcome (a bad revision, an unreadable repository).
    Error,
    /// `sync`: the daemon accepted the request.
    Accepted,
    /// `rollback`: the revert commit was written (or shown, with `--dry-run`).
    Written,
    /// `rollback`: refused, nothing changed.
    Refused,
}

impl Outcome {
    pub fn code(self) -> i32 {
        match self {
            Outcome::Valid
            | Outcome::InSync
            | Outcome::Converged
            | Outcome::AllReachable
            | Outcome::Pushed
            | Outcome::Stopped
            | Outcome::Accepted
            | Outcome::Written => 0,
            Outcome::Differs
            | Outcome::NotConverged
            | Outcome::SomeUnreachable
            | Outcome::PushFailed
            | Outcome::Refused => 1,
            Outcome::Invalid | Outcome::Unobserved | Outcome::Error => 2,
        }
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts the command's outcome (by the exit code the README gives it), showing both
    /// streams when it is wrong.
    pub fn outcome(self, want: Outcome) -> Run {
        let code = want.code();
        assert_eq!(
            self.code, code,
            "exit code {} (want {code}: {want:?})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// A fleet repository in a temporary directory, with its own fleet id.
pub struct TestFleet {
    pub id: String,
    pub dir: tempfile::TempDir,
    extra_env: Vec<(String, String)>,
}

impl TestFleet {
    pub fn new() -> TestFleet {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        // Short and lowercase: it prefixes stack names, which become container names.
        let id = format!("e{}x{n}", std::process::id() % 100_000);
        let dir = tempfile::tempdir().expect("tempdir");
        let t = TestFleet {
            id,
            dir,
            extra_env: Vec::new(),
        };
        t.write("convoy.yaml", &format!("fleet: {}\n", t.id));
        t
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The real stack name for a short one: unique per test.
    pub fn stack(&self, short: &str) -> String {
        format!("{}{short}", self.id)
    }

    /// The engine name of a replica.
    pub fn cname(&self, stack: &str, service: &str, slot: u32) -> String {
        format!("{}-{service}-{slot}", self.stack(stack))
    }

    pub fn write(&self, rel: &str, contents: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, contents).expect("write");
    }

    /// Writes `stacks/<unique name>/compose.yaml`.
    pub fn compose(&self, short: &str, yaml: &str) {
        self.write(&format!("stacks/{}/compose.yaml", self.stack(short)), yaml);
    }

    pub fn remove_stack(&self, short: &str) {
        std::fs::remove_dir_all(self.path().join("stacks").join(self.stack(short)))
            .expect("remove stack");
    }

    pub fn env(&mut self, k: &str, v: &str) {
        self.extra_env.push((k.into(), v.into()));
    }

    /// Runs `convoy <args> --repo <dir>`.
    pub fn convoy(&self, args: &[&str]) -> Run {
        self.convoy_with(env!("CARGO_BIN_EXE_convoy"), args)
    }

    /// Runs another `convoy` binary (the previous release) the same way.
    pub fn convoy_with(&self, binary: &str, args: &[&str]) -> Run {
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .arg("--repo")
            .arg(self.path())
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG");
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        Run::from(cmd.output().expect("run convoy"))
    }

    /// Starts `convoy <args> --repo <dir>` in the background, its output piped (read it with
    /// `wait_with_output`).
    pub fn spawn_convoy(&self, args: &[&str]) -> std::process::Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_convoy"));
        cmd.args(args)
            .arg("--repo")
            .arg(self.path())
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd.spawn().expect("spawn convoy")
    }

    /// Names of this fleet's containers, as the engine reports them, sorted.
    pub fn containers(&self) -> Vec<String> {
        self.names(&["-a"])
    }

    /// Names of this fleet's running containers, sorted.
    pub fn running(&self) -> Vec<String> {
        self.names(&["--filter", "status=running"])
    }

    fn names(&self, filter: &[&str]) -> Vec<String> {
        let label = format!("label=convoy.fleet={}", self.id);
        let mut args = vec!["ps", "--filter", label.as_str()];
        args.extend_from_slice(filter);
        args.extend(["--format", "{{.Names}}"]);
        let mut v: Vec<String> = docker(&args)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    /// `docker inspect -f FORMAT NAME`.
    pub fn inspect(&self, name: &str, format: &str) -> String {
        docker(&["inspect", "-f", format, name])
    }

    pub fn id_of(&self, name: &str) -> String {
        self.inspect(name, "{{.Id}}")
    }

    /// Every container's (name, id, state), for before/after comparisons.
    pub fn engine_view(&self) -> Vec<(String, String, String)> {
        self.containers()
            .into_iter()
            .map(|n| {
                let id = self.id_of(&n);
                let st = self.inspect(&n, "{{.State.Status}}");
                (n, id, st)
            })
            .collect()
    }
}

impl Drop for TestFleet {
    fn drop(&mut self) {
        let label = format!("label=convoy.fleet={}", self.id);
        if let Some(ids) = docker_try(&["ps", "-aq", "--filter", &label]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids);
                let _ = docker_try(&args);
            }
        }
        if let Some(nets) = docker_try(&["network", "ls", "-q", "--filter", &label]) {
            for n in nets.split_whitespace() {
                let _ = docker_try(&["network", "rm", n]);
            }
        }
        if let Some(vols) = docker_try(&["volume", "ls", "-q", "--filter", &label]) {
            for v in vols.split_whitespace() {
                let _ = docker_try(&["volume", "rm", "-f", v]);
            }
        }
    }
}

/// A container the fleet does not own, removed on drop.
pub struct Unowned(pub String);

impl Unowned {
    pub fn run(name: &str, labels: &[&str]) -> Unowned {
        let mut args = vec!["run", "-d", "--name", name];
        for l in labels {
            args.push("--label");
            args.push(l);
        }
        args.extend([IMAGE, "sleep", "3600"]);
        docker(&args);
        Unowned(name.to_string())
    }
}

impl Drop for Unowned {
    fn drop(&mut self) {
        let _ = docker_try(&["rm", "-f", &self.0]);
    }
}

/// A running `convoy daemon`, stopped with SIGTERM on drop (SIGKILL if it does not exit in
/// time), so no test leaves one behind, also when it fails.
pub struct Daemon {
    child: std::process::Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(t: &TestFleet, extra: &[&str]) -> Daemon {
        Daemon::start_env(t, extra, &[])
    }

    /// `start` with extra environment variables (a `NOTIFY_SOCKET`, say).
    pub fn start_env(t: &TestFleet, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::follow(t, &t.path().to_string_lossy(), extra, env)
    }

    /// A daemon following `repo` (a bare repository, a URL), with its state in the test's
    /// directory. Its API listens on a free loopback port unless `extra` says `--listen`.
    pub fn follow(t: &TestFleet, repo: &str, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let log = t.path().join("daemon.log");
        let file = std::fs::File::create(&log).expect("daemon log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_convoy"));
        cmd.arg("daemon")
            .arg("--repo")
            .arg(repo)
            .arg("--state-dir")
            .arg(t.path().join("state"))
            .args(extra)
            .env("RUST_LOG", "convoy=debug")
            .env_remove("WATCHDOG_PID")
            .env_remove("CONVOY_API_TOKEN_FILE")
            .stdout(std::process::Stdio::null())
            .stderr(file);
        if !extra.contains(&"--listen") {
            // Tests run in parallel: each daemon on its own port.
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn convoy daemon");
        Daemon { child, log }
    }

    /// The API's base URL (`http://127.0.0.1:PORT`), from the daemon's log line that says
    /// where it listens.
    pub fn api(&self) -> String {
        let mut url = String::new();
        wait_for("the API to listen", Duration::from_secs(20), || {
            let log = self.log();
            let found = log
                .lines()
                .filter(|l| l.contains("API listening"))
                .find_map(|l| l.split("addr=").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .map(|addr| addr.trim_matches('"').to_string());
            match found {
                Some(addr) => {
                    url = format!("http://{addr}");
                    true
                }
                None => false,
            }
        });
        url
    }

    /// Kills the daemon with SIGKILL (no clean-up of its own) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> i32 {
        self.terminate()
    }

    /// Sends SIGTERM and returns at once.
    pub fn term(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits for the exit; SIGKILL and -1 past the deadline.
    pub fn wait(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return -1;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn terminate(&mut self) -> i32 {
        self.term();
        self.wait(Duration::from_secs(15))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// Writes stack `web`: two services that use every supported Compose key (anchors and `<<`
/// merges included), publishing the two host ports given on 127.0.0.1. A fleet converged from
/// it must stay converged: on a second pass, and with a newer Convoy (the upgrade test).
pub fn every_key_stack(t: &TestFleet, ports: (u16, u16)) {
    every_key_stack_of(t, ports, true)
}

/// [`every_key_stack`] without the keys added since the previous release (the `opts`
/// service): what the upgrade test converges with that release's binary, which refuses them.
pub fn previous_release_key_stack(t: &TestFleet, ports: (u16, u16)) {
    every_key_stack_of(t, ports, false)
}

fn every_key_stack_of(t: &TestFleet, ports: (u16, u16), newer_keys: bool) {
    // Keys the previous release refuses, each with the engine's normal form to model: exposed
    // ports merged with the image's, swap, the default ipc mode and runtime.
    let newer = if newer_keys {
        format!(
            r#"
  opts:
    image: {IMAGE}
    command: sleep 3600
    expose: ["9000", "9001/udp"]
    stdin_open: true
    tty: true
    mem_limit: 64m
    memswap_limit: 128m
    mem_reservation: 16m
    cpus: 0.25
    cpu_shares: 512
    security_opt: ["no-new-privileges:true"]
    devices: ["/dev/null:/dev/xnull:rw"]
    ipc: shareable
    pid: host
    runtime: runc
    pull_policy: missing
  # The host's network namespace (the engine reports a `host` network), the platform the
  # image is for (the engine does not report it), and a restart policy said twice alike.
  hostnet:
    image: {IMAGE}
    command: sleep 3600
    network_mode: host
    platform: linux/amd64
    restart: on-failure:2
    deploy:
      restart_policy:
        condition: on-failure
        max_attempts: 2
  isolated:
    image: {IMAGE}
    command: sleep 3600
    network_mode: none
    deploy:
      restart_policy:
        condition: any
"#
        )
    } else {
        String::new()
    };
    let bind = t.path().join("bind");
    std::fs::create_dir_all(&bind).unwrap();
    // Sources and targets in crossed order: the engine lists mounts in its own order.
    let (src_a, src_b) = (t.path().join("a"), t.path().join("b"));
    std::fs::create_dir_all(&src_a).unwrap();
    std::fs::create_dir_all(&src_b).unwrap();
    t.write(
        &format!("stacks/{}/app.env", t.stack("web")),
        "FROM_FILE=1\nAPI_TOKEN=abc\n",
    );
    t.compose(
        "web",
        &format!(
            r#"
x-common: &common
  image: {IMAGE}
  labels:
    team: core
services:
  db:
    <<: *common
    command: sleep 3600
    # Options without a driver: the engine's default driver is used.
    logging:
      options:
        max-size: 2m
    deploy:
      resources:
        limits:
          pids: 0
  app:
    <<: *common
    entrypoint: ["sh", "-c"]
    command: ["exec sleep 3600"]
    environment:
      MODE: prod
      LIST: "a,b"
    env_file: app.env
    ports:
      - "127.0.0.1:{p1}:80"
      - target: 81
        published: "{p2}"
        host_ip: 127.0.0.1
        protocol: udp
    volumes:
      - data:/data
      - {bind}:/bind:ro
      - {src_b}:/mnt/a
      - {src_a}:/mnt/b
      - type: volume
        source: cache
        target: /cache
    restart: on-failure:3
    healthcheck:
      test: ["CMD", "true"]
      interval: 5s
      timeout: 2s
      retries: 2
      start_period: 1s
      start_interval: 1s
    user: "1000:1000"
    working_dir: /tmp
    hostname: app-host
    stop_signal: SIGINT
    stop_grace_period: 3s
    cap_add: [NET_ADMIN]
    cap_drop: [MKNOD]
    read_only: true
    tmpfs:
      - /run:size=16m
      - /scratch
    init: true
    extra_hosts:
      - "db.example:10.0.0.5"
    dns: [10.0.0.53]
    sysctls:
      net.core.somaxconn: 1024
    ulimits:
      nofile:
        soft: 1024
        hard: 2048
      nproc: 512
    logging:
      driver: json-file
      options:
        max-size: 1m
    networks:
      default:
      back:
        aliases: [api]
    depends_on:
      db:
        condition: service_started
    deploy:
      replicas: 1
      resources:
        limits:
          cpus: "0.5"
          memory: 64m
          pids: 100
        reservations:
          memory: 16m
      restart_policy:
        condition: on-failure
        max_attempts: 3
{newer}
networks:
  back: {{}}
volumes:
  data: {{}}
  cache: {{}}
"#,
            p1 = ports.0,
            p2 = ports.1,
            bind = bind.display(),
            src_a = src_a.display(),
            src_b = src_b.display()
        ),
    );
}

/// Runs git in `dir` with a fixed identity and no signing; panics with its stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Stack `short`: `db` never turns healthy while a test runs (its first probe is 30 s away),
/// so `app`, which waits for it to be healthy, waits at its gate.
pub fn gated_stack(t: &TestFleet, short: &str) {
    t.compose(
        short,
        &format!(
            r#"
services:
  db:
    image: {IMAGE}
    command: sleep 3600
    healthcheck:
      test: ["CMD", "test", "-f", "/never"]
      interval: 30s
      start_period: 60s
      retries: 100
  app:
    image: {IMAGE}
    command: sleep 3600
    depends_on:
      db:
        condition: service_healthy
"#
        ),
    );
}

/// Waits until `db` of stack `short` runs and its step is logged done: `app`'s gate wait has
/// begun.
pub fn wait_for_the_gate(t: &TestFleet, d: &Daemon, short: &str) {
    let db = t.cname(short, "db", 1);
    wait_for("db running", Duration::from_secs(30), || {
        docker_try(&["inspect", "-f", "{{.State.Running}}", &db]).as_deref() == Some("true")
    });
    wait_for("db's step to be done", Duration::from_secs(10), || {
        d.log()
            .lines()
            .any(|l| l.contains("done") && l.contains(&format!("+ {db} ")))
    });
    assert!(
        docker_try(&["inspect", &t.cname(short, "app", 1)]).is_none(),
        "app must wait for db"
    );
}
