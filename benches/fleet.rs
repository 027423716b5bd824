//! Benchmark: Convoy on the three-host SSH test fleet (`tests/fleet/up`).
//!
//! Run with `cargo bench --bench fleet` (or `scripts/bench-fleet`, which brings up a private
//! fleet around it and always takes it down). Reads `CONVOY_FLEET_ENV`, else
//! `FLEET_DIR/fleet.env` (`FLEET_DIR` defaults to `/var/tmp/convoy-fleet`, as in
//! `tests/fleet`). `BENCH_ROUNDS` sets the rounds (default 20).
//!
//! It writes a temporary fleet repository (every host of the fleet over ssh://, one stack of
//! 30 `deploy.mode: global` busybox `sleep` services: 30 containers on each host), applies it
//! once with the real `convoy` binary, then measures, in the same run:
//!
//! 1. an observe-and-plan pass (`reconcile::observe_and_plan`: `Fleet::observe` then
//!    `core::pass::plan_pass`) on connections opened once and kept (target: under 100 ms);
//! 2. the same pass on fresh connections each time (`Fleet::connect` + pass + `close`): what
//!    reuse buys;
//! 3. a whole `convoy diff` process (exit 0: the fleet is converged);
//! 4. create+start of a `sleep` container on one host over the SSH forward against the same on
//!    that host's Docker socket directly, interleaved, each followed by an untimed removal
//!    (target: SSH within 1.1x of direct).
//!
//! Rounds 1-3 run in a rotating order inside each round. At the end the stack is removed with
//! `convoy apply` (`stacks: []`), and a guard removes whatever is left (containers, networks,
//! ssh masters), also when the benchmark panics.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use convoy::core::pass::HostMemory;
use convoy::infra::docker::Engine;
use convoy::infra::fleet::{ConnectOptions, Fleet};
use convoy::infra::source;
use convoy::model::plan::Replica;
use convoy::model::spec::{ContainerSpec, DesiredState};
use convoy::reconcile::{self, Loaded};

const SERVICES: usize = 30;
const IMAGE: &str = "convoy-test/busybox:1";
/// On every container the benchmark creates itself (measure 4).
const BENCH_LABEL: &str = "convoy.bench";
const TARGET_PASS_MS: f64 = 100.0;
const TARGET_SSH_RATIO: f64 = 1.1;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and a benchmark has no place inside the test run.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benches/fleet: a benchmark, run it with `cargo bench --bench fleet`");
        return;
    }
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(20);
    let env_path = fleet_env_path();
    let text = match std::fs::read_to_string(&env_path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "benches/fleet: no test fleet at {} ({e}): run tests/fleet/up first \
                 (e.g. FLEET_DIR=/var/tmp/convoy-bench-fleet FLEET_NET=10.231.5 tests/fleet/up), \
                 or use scripts/bench-fleet",
                env_path.display()
            );
            std::process::exit(2);
        }
    };
    let fleet_env: BTreeMap<String, String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let get = |k: &str| -> String {
        fleet_env
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{} has no {k}", env_path.display()))
    };
    let hosts: Vec<String> = get("HOSTS").split(',').map(str::to_string).collect();
    let host_key = |h: &str, what: &str| get(&format!("{}_{what}", h.to_uppercase()));
    let sockets: BTreeMap<String, PathBuf> = hosts
        .iter()
        .map(|h| (h.clone(), PathBuf::from(host_key(h, "DOCKER_SOCK"))))
        .collect();

    let run_id = format!("bench{}", std::process::id());
    let fleet_name = run_id.clone();
    // Short paths: ssh control sockets and forwards live under the state dirs.
    let dir = tempfile::Builder::new()
        .prefix("cvyb")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let repo = dir.path().join("repo");
    // One state dir per concurrent user of ssh: each holds a per-pid control folder and lock,
    // so the kept fleet, the fresh fleets and the convoy processes must not share one.
    let state_kept = dir.path().join("k");
    let state_fresh = dir.path().join("f");
    let state_cli = dir.path().join("c");
    let _guard = Cleanup {
        sockets: sockets.clone(),
        fleet: fleet_name.clone(),
        run: run_id.clone(),
        state_dirs: vec![state_kept.clone(), state_fresh.clone(), state_cli.clone()],
    };

    // The repository: every host over ssh, one stack of SERVICES global services.
    let mut yaml = format!(
        "fleet: {fleet_name}\nssh:\n  user: {}\n  identity_file: {}\n  known_hosts: {}\nhosts:\n",
        fleet_env
            .get("FLEET_SSH_USER")
            .cloned()
            .unwrap_or_else(|| "root".into()),
        get("FLEET_SSH_KEY"),
        get("FLEET_KNOWN_HOSTS")
    );
    for h in &hosts {
        yaml.push_str(&format!(
            "  {h}:\n    address: ssh://root@{}\n    docker_socket: {}\n",
            host_key(h, "ADDR"),
            sockets[h].display()
        ));
    }
    let stack_dir = repo.join("stacks").join("bench");
    std::fs::create_dir_all(&stack_dir).unwrap();
    std::fs::write(repo.join("convoy.yaml"), &yaml).unwrap();
    let mut compose = String::from("services:\n");
    for i in 1..=SERVICES {
        compose.push_str(&format!(
            "  s{i:02}:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    deploy:\n      mode: global\n"
        ));
    }
    std::fs::write(stack_dir.join("compose.yaml"), &compose).unwrap();
    let expected = SERVICES * hosts.len();

    println!(
        "benches/fleet: fleet {} ({} hosts over ssh), stack of {SERVICES} global services = {expected} containers, {rounds} rounds",
        env_path.display(),
        hosts.len()
    );

    // Apply once with the real binary.
    let started = Instant::now();
    let code = convoy_cli(&state_cli, &["apply", "--repo"], &repo, true);
    let apply_time = started.elapsed();
    assert_eq!(code, 0, "the first `convoy apply` did not converge");
    let running: usize = hosts
        .iter()
        .map(|h| {
            count(
                &sockets[h],
                &format!("label=convoy.fleet={fleet_name}"),
                true,
            )
        })
        .sum();
    assert_eq!(
        running, expected,
        "containers running after the first apply"
    );
    println!(
        "benches/fleet: first apply of {expected} containers: {:.2} s (not a measure, set-up)",
        apply_time.as_secs_f64()
    );

    let src = source::open(&repo, None).expect("open the bench repository");
    let loaded = reconcile::load(src.as_ref(), None)
        .unwrap_or_else(|e| panic!("bench repository invalid: {e:?}"));
    let commit = loaded.commit.clone();
    let desired = loaded.desired.clone();

    let load_start = loadavg();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let kept_opts = ConnectOptions::new(&state_kept);
    let fresh_opts = ConnectOptions::new(&state_fresh);

    let mut kept = Vec::new();
    let mut fresh = Vec::new();
    let mut fresh_connect = Vec::new();
    let mut diff = Vec::new();
    let mut via_ssh = Vec::new();
    let mut direct = Vec::new();

    rt.block_on(async {
        let fleet = Fleet::connect(&desired, &kept_opts).await;
        assert!(
            fleet.failed.is_empty(),
            "hosts not connected: {:?}",
            fleet.failed
        );
        // Warm-up: one of each, not recorded.
        pass(&fleet, &desired, &commit).await;
        {
            let f = Fleet::connect(&desired, &fresh_opts).await;
            assert!(f.failed.is_empty(), "hosts not connected: {:?}", f.failed);
            pass(&f, &desired, &commit).await;
            f.close().await;
        }

        // Measures 1, 2 and 3, in a rotating order within each round.
        for round in 0..rounds {
            for k in 0..3 {
                match (round + k) % 3 {
                    0 => {
                        let t = Instant::now();
                        pass(&fleet, &desired, &commit).await;
                        kept.push(t.elapsed());
                    }
                    1 => {
                        let t = Instant::now();
                        let f = Fleet::connect(&desired, &fresh_opts).await;
                        fresh_connect.push(t.elapsed());
                        assert!(f.failed.is_empty(), "hosts not connected: {:?}", f.failed);
                        pass(&f, &desired, &commit).await;
                        f.close().await;
                        fresh.push(t.elapsed());
                    }
                    _ => {
                        let t = Instant::now();
                        let code = convoy_cli(&state_cli, &["diff", "--repo"], &repo, false);
                        diff.push(t.elapsed());
                        assert_eq!(code, 0, "`convoy diff` on the converged fleet");
                    }
                }
            }
        }

        // Measure 4: create+start over the SSH forward vs on the socket directly, same host.
        let host = &hosts[0];
        let ssh_engine = fleet.engines[host].clone();
        let direct_engine = Engine::unix(host, &sockets[host]).expect("direct engine");
        let engines = [("ssh", &ssh_engine), ("direct", &direct_engine)];
        // Warm-up, one each.
        for (route, engine) in engines {
            create_start_remove(engine, &run_id, route, usize::MAX).await;
        }
        for round in 0..rounds {
            for k in 0..2 {
                let (route, engine) = engines[(round + k) % 2];
                let t = create_start_remove(engine, &run_id, route, round).await;
                if route == "ssh" {
                    via_ssh.push(t);
                } else {
                    direct.push(t);
                }
            }
        }
        fleet.close().await;
    });

    // Leave the fleet clean: `stacks: []`, no stack folder, apply.
    std::fs::write(repo.join("convoy.yaml"), format!("{yaml}stacks: []\n")).unwrap();
    std::fs::remove_dir_all(repo.join("stacks").join("bench")).unwrap();
    let code = convoy_cli(&state_cli, &["apply", "--repo"], &repo, true);
    assert_eq!(code, 0, "the removing `convoy apply` did not converge");
    let left: usize = hosts
        .iter()
        .map(|h| {
            count(
                &sockets[h],
                &format!("label=convoy.fleet={fleet_name}"),
                false,
            )
        })
        .sum();
    assert_eq!(left, 0, "containers of the bench fleet left after removal");

    println!(
        "machine: {} cpus, load average {load_start} at the start of the measures, {} at the end",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    report(
        rounds,
        &hosts[0],
        &kept,
        &fresh,
        &fresh_connect,
        &diff,
        &via_ssh,
        &direct,
    );
}

/// The 1-minute load average: on a shared machine, the context every figure needs.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn fleet_env_path() -> PathBuf {
    if let Some(p) = std::env::var_os("CONVOY_FLEET_ENV").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    PathBuf::from(std::env::var("FLEET_DIR").unwrap_or_else(|_| "/var/tmp/convoy-fleet".into()))
        .join("fleet.env")
}

/// One observe-and-plan pass; the fleet must be converged.
async fn pass(fleet: &Fleet, desired: &DesiredState, commit: &str) {
    let loaded = Loaded {
        desired: desired.clone(),
        commit: commit.to_string(),
        key: None,
        commit_time: None,
        inputs: Default::default(),
        frozen: Default::default(),
    };
    let p = reconcile::observe_and_plan(fleet, &loaded, &HostMemory::default())
        .await
        .pass
        .plan;
    assert!(
        p.is_converged(),
        "the fleet is not converged: {} steps, unreachable {:?}",
        p.steps.len(),
        p.unreachable
    );
}

/// Creates and starts one labelled `sleep` container (timed), then removes it (not timed).
async fn create_start_remove(engine: &Engine, run: &str, route: &str, round: usize) -> Duration {
    let name = if round == usize::MAX {
        format!("{run}-{route}-warm")
    } else {
        format!("{run}-{route}-{round}")
    };
    let labels = BTreeMap::from([(BENCH_LABEL.to_string(), run.to_string())]);
    let spec = ContainerSpec {
        image: IMAGE.into(),
        command: Some(vec!["sleep".into(), "3600".into()]),
        labels: labels.clone(),
        ..Default::default()
    };
    let replica = Replica {
        stack: "bench".into(),
        service: route.into(),
        slot: round.to_string(),
        name: name.clone(),
        spec_hash: spec.hash(),
        image: IMAGE.into(),
        spec,
        labels,
        secret_env: BTreeSet::new(),
    };
    let t = Instant::now();
    let id = engine
        .create_container(&replica, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    engine
        .start(&id, &name)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let elapsed = t.elapsed();
    engine
        .remove(&id, &name, Some(0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    elapsed
}

/// Runs the `convoy` binary; its stdout is dropped, its stderr shown when `show_err`.
fn convoy_cli(state_dir: &Path, args: &[&str], repo: &Path, show_err: bool) -> i32 {
    let status = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .arg("--state-dir")
        .arg(state_dir)
        .args(args)
        .arg(repo)
        .stdout(Stdio::null())
        .stderr(if show_err {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .status()
        .expect("run convoy");
    status.code().unwrap_or(-1)
}

/// Containers matching `filter` on the engine at `sock` (running only, or all).
fn count(sock: &Path, filter: &str, running_only: bool) -> usize {
    let host = format!("unix://{}", sock.display());
    let mut args = vec!["-H", host.as_str(), "ps", "-q", "--filter", filter];
    if !running_only {
        args.push("-a");
    }
    let out = Command::new("docker")
        .args(&args)
        .output()
        .expect("docker ps");
    assert!(out.status.success(), "docker ps on {}", sock.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .count()
}

/// Removes everything the benchmark may have left, also on panic: containers of the bench
/// fleet and of this run on every host, the fleet's networks, and ssh masters under the
/// state dirs.
struct Cleanup {
    sockets: BTreeMap<String, PathBuf>,
    fleet: String,
    run: String,
    state_dirs: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let docker = |args: &[&str]| -> Option<String> {
            let out = Command::new("docker")
                .args(args)
                .stderr(Stdio::null())
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        };
        for sock in self.sockets.values() {
            let h = format!("unix://{}", sock.display());
            for filter in [
                format!("label=convoy.fleet={}", self.fleet),
                format!("label={BENCH_LABEL}={}", self.run),
            ] {
                if let Some(ids) = docker(&["-H", &h, "ps", "-aq", "--filter", &filter]) {
                    let ids: Vec<&str> = ids.split_whitespace().collect();
                    if !ids.is_empty() {
                        eprintln!(
                            "benches/fleet: removing {} leftover containers on {}",
                            ids.len(),
                            sock.display()
                        );
                        let mut args = vec!["-H", h.as_str(), "rm", "-f"];
                        args.extend(ids);
                        let _ = docker(&args);
                    }
                }
            }
            let filter = format!("label=convoy.fleet={}", self.fleet);
            if let Some(nets) = docker(&["-H", &h, "network", "ls", "-q", "--filter", &filter]) {
                for n in nets.split_whitespace() {
                    let _ = docker(&["-H", &h, "network", "rm", n]);
                }
            }
        }
        // ssh masters (`.../.ssh-connection*/master`) that a panic kept from being closed.
        for d in &self.state_dirs {
            for master in find_masters(d) {
                let _ = Command::new("ssh")
                    .arg("-o")
                    .arg(format!("ControlPath={}", master.display()))
                    .args(["-O", "exit", "convoy-bench"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

fn find_masters(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            found.extend(find_masters(&p));
        } else if p.file_name().is_some_and(|n| n == "master") {
            found.push(p);
        }
    }
    found
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median and p90 (nearest rank) in ms.
fn stats(v: &[Duration]) -> (f64, f64) {
    let mut s: Vec<f64> = v.iter().copied().map(ms).collect();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    let p90 = s[((n as f64 * 0.9).ceil() as usize).clamp(1, n) - 1];
    (median, p90)
}

#[allow(clippy::too_many_arguments)]
fn report(
    rounds: usize,
    host: &str,
    kept: &[Duration],
    fresh: &[Duration],
    fresh_connect: &[Duration],
    diff: &[Duration],
    via_ssh: &[Duration],
    direct: &[Duration],
) {
    let (k50, k90) = stats(kept);
    let (f50, f90) = stats(fresh);
    let (c50, c90) = stats(fresh_connect);
    let (d50, d90) = stats(diff);
    let (s50, s90) = stats(via_ssh);
    let (r50, r90) = stats(direct);
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };

    let mut cmd = String::new();
    for k in ["BENCH_ROUNDS", "CONVOY_FLEET_ENV", "FLEET_DIR"] {
        if let Ok(v) = std::env::var(k) {
            cmd.push_str(&format!("{k}={v} "));
        }
    }
    cmd.push_str("cargo bench --bench fleet");

    println!();
    println!("command: {cmd}");
    println!("rounds: {rounds} (medians and p90 in ms)");
    println!(
        "{:<52} {:>9} {:>9}  {:<22} verdict",
        "measure", "median", "p90", "target"
    );
    let row = |name: &str, m: f64, p: f64, target: &str, v: &str| {
        println!("{name:<52} {m:>9.2} {p:>9.2}  {target:<22} {v}");
    };
    row(
        "1  observe+plan pass, established connections",
        k50,
        k90,
        &format!("< {TARGET_PASS_MS:.0} ms"),
        verdict(k50 < TARGET_PASS_MS),
    );
    row("2  observe+plan pass, fresh connections", f50, f90, "", "");
    row("     of which Fleet::connect", c50, c90, "", "");
    println!(
        "{:<52} {:>8.1}x {:>8.1}x",
        "     fresh / established",
        f50 / k50,
        f90 / k90
    );
    row(
        "3  `convoy diff` process, converged (exit 0)",
        d50,
        d90,
        "",
        "",
    );
    row(
        &format!("4a create+start over the SSH forward ({host})"),
        s50,
        s90,
        "",
        "",
    );
    row(
        &format!("4b create+start on the socket directly ({host})"),
        r50,
        r90,
        "",
        "",
    );
    let ratio = s50 / r50;
    println!(
        "{:<52} {:>8.3}x {:>8.3}x  {:<22} {}",
        "     SSH / direct",
        ratio,
        s90 / r90,
        format!("<= {TARGET_SSH_RATIO:.1}x (median)"),
        verdict(ratio <= TARGET_SSH_RATIO)
    );
}
