//! Benchmark: `convoy apply` against `docker-compose up -d` and against the engine's own limit
//! (the same containers created and started with parallel raw API calls), on one 20-service
//! stack of busybox `sleep` containers, in the same run on the same engine.
//!
//! Run with `cargo bench --bench apply` (needs the local engine and `convoy-test/busybox:1`;
//! `scripts/ensure-docker` provides both). `BENCH_ROUNDS` sets the rounds (default 7). Each
//! round runs the three contenders in a rotating order, each from a clean engine, timed until
//! every container runs and the command has returned. Prints medians and ratios.
//!
//! `CONVOY_BENCH_BASE_BIN=/path/to/convoy` adds a fourth contender: another build of Convoy
//! (the previous release, say, built with `--release`), timed in the same rounds on the same
//! engine, so a change is compared before/after without the noise of two runs.
//!
//! `cargo bench --bench apply -- --files` runs another comparison instead (issue 9's target: a
//! no-op apply of 20 services that use configs, secrets and a build stays within 1.2x of the
//! no-op apply of the same 20 services without them): two fleets side by side on the local
//! engine, deployed once, then `BENCH_ROUNDS` no-op applies of each in alternating order.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::CreateContainerOptions;

const SERVICES: usize = 20;
const IMAGE: &str = "convoy-test/busybox:1";

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and a benchmark has no place inside the test run.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benches/apply: a benchmark, run it with `cargo bench --bench apply`");
        return;
    }
    if std::env::args().any(|a| a == "--files") {
        files_noop();
        return;
    }
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let fleet = format!("bench{}", std::process::id());
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo");
    let stack_dir = repo.join("stacks").join("bench");
    std::fs::create_dir_all(&stack_dir).unwrap();
    std::fs::write(repo.join("convoy.yaml"), format!("fleet: {fleet}\n")).unwrap();
    let mut compose = String::from("services:\n");
    for i in 1..=SERVICES {
        compose.push_str(&format!(
            "  s{i:02}:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n"
        ));
    }
    std::fs::write(stack_dir.join("compose.yaml"), &compose).unwrap();
    let compose_dir = dir.path().join("compose");
    std::fs::create_dir_all(&compose_dir).unwrap();
    std::fs::write(compose_dir.join("docker-compose.yml"), &compose).unwrap();
    let project = format!("benchc{}", std::process::id());

    let rt = tokio::runtime::Runtime::new().unwrap();
    let docker = bollard::Docker::connect_with_local_defaults().expect("local engine");

    let mut cold_convoy = Vec::new();
    let mut noop_convoy = Vec::new();
    let mut cold_compose = Vec::new();
    let mut noop_compose = Vec::new();
    let mut cold_raw = Vec::new();
    let base_bin = std::env::var("CONVOY_BENCH_BASE_BIN")
        .ok()
        .filter(|b| !b.is_empty());
    let mut cold_base = Vec::new();
    let mut noop_base = Vec::new();
    let contenders = if base_bin.is_some() { 4 } else { 3 };
    let apply_twice = |bin: &str, cold: &mut Vec<Duration>, noop: &mut Vec<Duration>| {
        let t = timed(|| run_ok(Command::new(bin).args(["apply", "--repo"]).arg(&repo)));
        assert_eq!(running(&format!("label=convoy.fleet={fleet}")), SERVICES);
        cold.push(t);
        noop.push(timed(|| {
            run_ok(Command::new(bin).args(["apply", "--repo"]).arg(&repo))
        }));
    };

    cleanup(&fleet, &project, &compose_dir);
    for round in 0..rounds {
        for k in 0..contenders {
            match (round + k) % contenders {
                0 => apply_twice(
                    env!("CARGO_BIN_EXE_convoy"),
                    &mut cold_convoy,
                    &mut noop_convoy,
                ),
                3 => apply_twice(
                    base_bin.as_deref().unwrap_or_default(),
                    &mut cold_base,
                    &mut noop_base,
                ),
                1 => {
                    let up = || {
                        run_ok(
                            Command::new("docker-compose")
                                .args(["-p", &project, "up", "-d"])
                                .current_dir(&compose_dir),
                        )
                    };
                    cold_compose.push(timed(up));
                    assert_eq!(
                        running(&format!("label=com.docker.compose.project={project}")),
                        SERVICES
                    );
                    noop_compose.push(timed(up));
                }
                2 => {
                    let t = Instant::now();
                    rt.block_on(raw_parallel(&docker, &fleet));
                    cold_raw.push(t.elapsed());
                    assert_eq!(running(&format!("label=bench.raw={fleet}")), SERVICES);
                }
                _ => unreachable!("contender {k}"),
            }
            cleanup(&fleet, &project, &compose_dir);
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }

    let m = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (cc, nc, cp, np, cr) = (
        m(&mut cold_convoy),
        m(&mut noop_convoy),
        m(&mut cold_compose),
        m(&mut noop_compose),
        m(&mut cold_raw),
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{SERVICES} services, {rounds} rounds, medians:");
    println!("  cold  convoy apply          {:8.1} ms", ms(cc));
    println!("  cold  docker-compose up -d  {:8.1} ms", ms(cp));
    println!("  cold  raw parallel API      {:8.1} ms", ms(cr));
    println!("  no-op convoy apply          {:8.1} ms", ms(nc));
    println!("  no-op docker-compose up -d  {:8.1} ms", ms(np));
    println!("ratios:");
    println!(
        "  cold convoy / compose   {:.2}x (target <= 1.0)",
        ms(cc) / ms(cp)
    );
    println!(
        "  cold convoy / raw       {:.2}x (target <= 1.10)",
        ms(cc) / ms(cr)
    );
    println!(
        "  no-op convoy / compose  {:.2}x (target <= 0.10)",
        ms(nc) / ms(np)
    );
    if base_bin.is_some() {
        let (cb, nb) = (m(&mut cold_base), m(&mut noop_base));
        println!("before/after (CONVOY_BENCH_BASE_BIN, same rounds):");
        println!("  cold  base convoy apply     {:8.1} ms", ms(cb));
        println!("  no-op base convoy apply     {:8.1} ms", ms(nb));
        println!(
            "  cold this / base        {:.2}x (target within 10%)",
            ms(cc) / ms(cb)
        );
        println!(
            "  no-op this / base       {:.2}x (target within 10%)",
            ms(nc) / ms(nb)
        );
    }
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn running(filter: &str) -> usize {
    let out = Command::new("docker")
        .args(["ps", "-q", "--filter", filter, "--filter", "status=running"])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// What the engine can do: one network, then every container created and started at once.
async fn raw_parallel(docker: &bollard::Docker, fleet: &str) {
    let net = format!("{fleet}raw_default");
    docker
        .create_network(NetworkCreateRequest {
            name: net.clone(),
            driver: Some("bridge".into()),
            ..Default::default()
        })
        .await
        .expect("network");
    let tasks = (1..=SERVICES).map(|i| {
        let docker = docker.clone();
        let net = net.clone();
        let fleet = fleet.to_string();
        async move {
            let name = format!("{fleet}raw-s{i:02}-1");
            let body = ContainerCreateBody {
                image: Some(IMAGE.into()),
                cmd: Some(vec!["sleep".into(), "3600".into()]),
                labels: Some(HashMap::from([("bench.raw".to_string(), fleet.clone())])),
                host_config: Some(HostConfig {
                    network_mode: Some(net),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let c = docker
                .create_container(
                    Some(CreateContainerOptions {
                        name: Some(name),
                        ..Default::default()
                    }),
                    body,
                )
                .await
                .expect("create");
            docker.start_container(&c.id, None).await.expect("start");
        }
    });
    futures_util::future::join_all(tasks).await;
}

fn cleanup(fleet: &str, project: &str, compose_dir: &Path) {
    let _ = Command::new("docker-compose")
        .args(["-p", project, "down", "-t", "0"])
        .current_dir(compose_dir)
        .output();
    for filter in [
        format!("label=convoy.fleet={fleet}"),
        format!("label=bench.raw={fleet}"),
    ] {
        let out = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
            .expect("docker ps");
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
    // By ID, until none is left: a network whose last endpoint is still being released refuses
    // removal for a moment, and a second one of the same name makes the next round ambiguous.
    let deadline = Instant::now() + Duration::from_secs(20);
    for net in [format!("{fleet}raw_default"), "bench_default".to_string()] {
        loop {
            let out = Command::new("docker")
                .args(["network", "ls", "-q", "--filter", &format!("name=^{net}$")])
                .output()
                .expect("docker network ls");
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if ids.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "network {net} cannot be removed: {ids:?}"
            );
            let _ = Command::new("docker")
                .args(["network", "rm"])
                .args(&ids)
                .output();
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Issue 9's benchmark: the no-op apply of 20 services with a config, a secret and an image
/// built from the repository, against the no-op apply of the same 20 services without them.
/// Both fleets stay deployed side by side; each round times one no-op apply of each, in
/// alternating order. Prints the medians and the ratio (target <= 1.2).
fn files_noop() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let pid = std::process::id();
    let dir = tempfile::tempdir().expect("tempdir");
    let plain_fleet = format!("benchplain{pid}");
    let files_fleet = format!("benchfiles{pid}");
    let plain = dir.path().join("plain");
    let files = dir.path().join("files");

    // The same 20 services; the second fleet's also mount a config and a secret and run an
    // image built from the repository (one context: one build, shipped to the one engine).
    let mut plain_compose = String::from("services:\n");
    let mut files_compose = String::from("services:\n");
    for i in 1..=SERVICES {
        plain_compose.push_str(&format!(
            "  s{i:02}:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n"
        ));
        files_compose.push_str(&format!(
            "  s{i:02}:\n    build:\n      context: ./app\n      labels:\n        org.convoy.bench: files{pid}\n    command: [\"sleep\", \"3600\"]\n    configs: [app_conf]\n    secrets: [app_token]\n"
        ));
    }
    files_compose.push_str(
        "configs:\n  app_conf:\n    file: ./conf/app.conf\nsecrets:\n  app_token:\n    file: ./secrets/token.txt\n",
    );
    // The local engine as an explicit host, so that its files_dir and secrets_dir are this
    // run's (secrets_dir on /dev/shm: a tmpfs already, nothing to mount).
    let files_dir = dir.path().join("host-files");
    let secrets_dir = format!("/dev/shm/convoy-bench-{pid}");
    // Two stack names: both fleets run on the one engine, and container names are per stack.
    for (repo, fleet, compose, name) in [
        (&plain, &plain_fleet, &plain_compose, "benchplain"),
        (&files, &files_fleet, &files_compose, "benchfiles"),
    ] {
        let stack = repo.join("stacks").join(name);
        std::fs::create_dir_all(&stack).unwrap();
        std::fs::write(
            repo.join("convoy.yaml"),
            format!(
                "fleet: {fleet}\nhosts:\n  local:\n    address: unix:///var/run/docker.sock\n    files_dir: {}\n    secrets_dir: {secrets_dir}\n",
                files_dir.display()
            ),
        )
        .unwrap();
        std::fs::write(stack.join("compose.yaml"), compose).unwrap();
    }
    let app = files.join("stacks/benchfiles");
    std::fs::create_dir_all(app.join("app")).unwrap();
    std::fs::create_dir_all(app.join("conf")).unwrap();
    std::fs::create_dir_all(app.join("secrets")).unwrap();
    std::fs::write(
        app.join("app/Dockerfile"),
        format!("FROM {IMAGE}\nCOPY marker /marker\n"),
    )
    .unwrap();
    std::fs::write(app.join("app/marker"), format!("bench {pid}\n")).unwrap();
    std::fs::write(app.join("conf/app.conf"), "setting = 1\n").unwrap();
    std::fs::write(app.join("secrets/token.txt"), format!("bench-token-{pid}")).unwrap();

    let bin = env!("CARGO_BIN_EXE_convoy");
    let apply = |repo: &Path| run_ok(Command::new(bin).args(["apply", "--repo"]).arg(repo));
    files_cleanup(&plain_fleet, &files_fleet, pid);
    // Deploy both once (the build happens here), untimed.
    apply(&plain);
    apply(&files);
    assert_eq!(
        running(&format!("label=convoy.fleet={plain_fleet}")),
        SERVICES
    );
    assert_eq!(
        running(&format!("label=convoy.fleet={files_fleet}")),
        SERVICES
    );

    let mut noop_plain = Vec::new();
    let mut noop_files = Vec::new();
    for round in 0..rounds {
        if round % 2 == 0 {
            noop_plain.push(timed(|| apply(&plain)));
            noop_files.push(timed(|| apply(&files)));
        } else {
            noop_files.push(timed(|| apply(&files)));
            noop_plain.push(timed(|| apply(&plain)));
        }
    }
    // A no-op stays a no-op: nothing was replaced while timing.
    assert_eq!(
        running(&format!("label=convoy.fleet={files_fleet}")),
        SERVICES
    );
    files_cleanup(&plain_fleet, &files_fleet, pid);
    let _ = std::fs::remove_dir_all(&secrets_dir);

    let m = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (p, f) = (m(&mut noop_plain), m(&mut noop_files));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{SERVICES} services, {rounds} rounds, medians:");
    println!(
        "  no-op apply, image only                  {:8.1} ms",
        ms(p)
    );
    println!(
        "  no-op apply, + config, secret and build  {:8.1} ms",
        ms(f)
    );
    println!("ratio:");
    println!(
        "  with files / without    {:.2}x (target <= 1.2)",
        ms(f) / ms(p)
    );
}

/// Removes both fleets' containers and networks and the images the files fleet built.
fn files_cleanup(plain_fleet: &str, files_fleet: &str, pid: u32) {
    for fleet in [plain_fleet, files_fleet] {
        let filter = format!("label=convoy.fleet={fleet}");
        let out = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
            .expect("docker ps");
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
        let out = Command::new("docker")
            .args(["network", "ls", "-q", "--filter", &filter])
            .output()
            .expect("docker network ls");
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("docker").args(["network", "rm", id]).output();
        }
    }
    let out = Command::new("docker")
        .args([
            "images",
            "-q",
            "--filter",
            &format!("label=org.convoy.bench=files{pid}"),
        ])
        .output()
        .expect("docker images");
    for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let _ = Command::new("docker").args(["rmi", "-f", id]).output();
    }
}
