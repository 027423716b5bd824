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
