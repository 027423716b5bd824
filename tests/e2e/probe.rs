//! The readiness probe (issue 10) on the real fleet over SSH: a busybox `httpd` in a container
//! on a fleet host, probed with the library's `infra::probe::http_status` through that host's
//! OpenSSH master (`ssh -W` to the container's address), as the executor will.
//!
//! The binary has no debug command for it, so this test drives the library in-process: it
//! loads the test repository, connects the fleet as `convoy` does, and closes it at the end.
//! Containers carry the test's fleet label, so `HostCleanup` removes them also when it fails.

use std::time::{Duration, Instant};

use convoy::infra::files::HostShell;
use convoy::infra::fleet::{ConnectOptions, Fleet};
use convoy::infra::probe::{http_status, ProbeFailure};

use crate::fleet::{HostCleanup, Hosts};
use crate::harness::*;

/// Live `ssh -W <addr>` processes: a probe must leave none behind.
fn ssh_forwards_to(addr: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| {
            let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"ssh"))
                && args
                    .windows(2)
                    .any(|w| w[0] == b"-W" && w[1] == addr.as_bytes())
        })
        .count()
}

#[test]
fn a_readiness_probe_reads_a_containers_http_status_through_the_hosts_ssh_master() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "");
    // No stack: the repository only names the hosts to connect.
    let fleet_file = std::fs::read_to_string(t.path().join("convoy.yaml")).expect("convoy.yaml");
    t.write("convoy.yaml", &format!("{fleet_file}stacks: []\n"));
    let host = hosts.names[1].clone();
    let label = format!("convoy.fleet={}", t.id);
    // Port 8080: httpd (in the background); port 8081: `nc` with a stdin that never ends, which
    // accepts and never answers.
    let web = format!("{}-probe-web", t.id);
    hosts.docker(
        &host,
        &[
            "run", "-d", "--name", &web, "--label", &label, IMAGE, "sh", "-c",
            "mkdir -p /www && echo ok > /www/index.html && httpd -p 8080 -h /www && sleep 3600 | nc -l -p 8081",
        ],
    );
    // Host networking: the port is the host's own, probed on the host's loopback.
    let host_port = 20_000 + (std::process::id() % 20_000) as u16;
    let on_host = format!("{}-probe-hostnet", t.id);
    hosts.docker(
        &host,
        &[
            "run", "-d", "--name", &on_host, "--label", &label, "--network", "host", IMAGE,
            "sh", "-c",
            &format!("mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 127.0.0.1:{host_port} -h /www"),
        ],
    );
    let web_ip = hosts.docker(
        &host,
        &[
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &web,
        ],
    );

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let source = convoy::infra::source::open(t.path(), None).expect("open the repository");
        let loaded = convoy::reconcile::load(source.as_ref(), None).expect("load");
        let opts = ConnectOptions::new(&t.path().join("state"));
        let fleet = Fleet::connect(&loaded.desired, &opts).await;
        assert!(fleet.failed.is_empty(), "{:?}", fleet.failed);
        let shells = fleet.shells(&loaded.desired);
        let shell = &shells[&host];
        assert!(matches!(shell, HostShell::Ssh(_)), "{shell:?}");
        let engine = &fleet.engines[&host];
        let limit = Duration::from_secs(5);

        // The server starts after `docker run` returns: refused until it listens.
        for name in [&web, &on_host] {
            let port = if name == &web { 8080 } else { host_port };
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match http_status(shell, engine, name, port, "/", limit).await {
                    Ok(code) => {
                        assert_eq!(code, 200, "{name}");
                        break;
                    }
                    Err(e) if e.failure.is_refused() && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(
                http_status(shell, engine, name, port, "/missing", limit).await,
                Ok(404),
                "{name}"
            );
        }

        // A closed port is refused (through the master: the forward is), and the error says
        // where.
        let e = http_status(shell, engine, &web, 9, "/", limit)
            .await
            .expect_err("nothing listens on port 9");
        assert!(e.failure.is_refused(), "{e}");
        let text = e.to_string();
        for part in [web.as_str(), host.as_str(), "port 9"] {
            assert!(text.contains(part), "{text}");
        }

        // A server that never answers: the probe ends at its timeout and kills its ssh.
        let short = Duration::from_millis(1500);
        let started = Instant::now();
        let e = http_status(shell, engine, &web, 8081, "/", short)
            .await
            .expect_err("nc never answers");
        assert_eq!(e.failure, ProbeFailure::Timeout(short), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));

        // A container that does not exist has no address; nothing is connected.
        let e = http_status(shell, engine, &format!("{}-absent", t.id), 80, "/", limit)
            .await
            .expect_err("no such container");
        assert!(matches!(e.failure, ProbeFailure::NoAddress(_)), "{e}");

        // No `ssh -W` outlives its probe (dropped children are killed, then reaped).
        let deadline = Instant::now() + Duration::from_secs(5);
        for addr in [format!("{web_ip}:8080"), format!("{web_ip}:8081")] {
            while ssh_forwards_to(&addr) > 0 {
                assert!(Instant::now() < deadline, "an ssh -W {addr} is left");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        fleet.close().await;
    });
}

/// A `unix://` host (the engine on this machine): the probe connects straight to the
/// container's address. Also a container sharing another's network namespace (its address is
/// the other's) and one with no network at all.
#[test]
fn a_readiness_probe_of_a_local_engines_container_connects_directly() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    // No hosts: the local engine (`DOCKER_HOST` or the default socket), as the CLI's.
    t.write("convoy.yaml", &format!("fleet: {}\nstacks: []\n", t.id));
    let label = format!("convoy.fleet={}", t.id);
    let web = format!("{}-probe-web", t.id);
    docker(&[
        "run",
        "-d",
        "--name",
        &web,
        "--label",
        &label,
        IMAGE,
        "sh",
        "-c",
        "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www",
    ]);
    let joined = format!("{}-probe-joined", t.id);
    docker(&[
        "run",
        "-d",
        "--name",
        &joined,
        "--label",
        &label,
        "--network",
        &format!("container:{web}"),
        IMAGE,
        "sleep",
        "3600",
    ]);
    let alone = format!("{}-probe-alone", t.id);
    docker(&[
        "run",
        "-d",
        "--name",
        &alone,
        "--label",
        &label,
        "--network",
        "none",
        IMAGE,
        "sleep",
        "3600",
    ]);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let source = convoy::infra::source::open(t.path(), None).expect("open the repository");
        let loaded = convoy::reconcile::load(source.as_ref(), None).expect("load");
        let opts = ConnectOptions::new(&t.path().join("state"));
        let fleet = Fleet::connect(&loaded.desired, &opts).await;
        assert!(fleet.failed.is_empty(), "{:?}", fleet.failed);
        let shells = fleet.shells(&loaded.desired);
        let (host, shell) = shells.iter().next().expect("the local host");
        assert!(matches!(shell, HostShell::Local), "{shell:?}");
        let engine = &fleet.engines[host];
        let limit = Duration::from_secs(5);

        for name in [&web, &joined] {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match http_status(shell, engine, name, 8080, "/", limit).await {
                    Ok(code) => {
                        assert_eq!(code, 200, "{name}");
                        break;
                    }
                    Err(e) if e.failure.is_refused() && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(
                http_status(shell, engine, name, 8080, "/missing", limit).await,
                Ok(404),
                "{name}"
            );
        }
        let e = http_status(shell, engine, &web, 9, "/", limit)
            .await
            .expect_err("nothing listens on port 9");
        assert_eq!(e.failure, ProbeFailure::Refused, "{e}");
        let e = http_status(shell, engine, &alone, 8080, "/", limit)
            .await
            .expect_err("no network");
        assert!(matches!(e.failure, ProbeFailure::NoAddress(_)), "{e}");
        fleet.close().await;
    });
}
