//! Compose `build:` on the 3-host SSH fleet: the image is built from the repository on the
//! builder (the local engine), shipped to the host that runs the service, and neither built nor
//! sent again until the context changes; a build that fails fails its own service only, with
//! its last lines (secret build args masked).
//!
//! Builds are counted twice: from Convoy's own log (`-v`), and from the host engine's `load`
//! events, the independent judge. Every image built or sent is removed on drop, from the local
//! engine and from every host, after the fleet's containers.

use std::time::Duration;

use crate::fleet::{HostCleanup, Hosts};
use crate::harness::*;

/// Removes the images of a repository (`convoy-build/<stack>-<context folder>`) locally and on every
/// host; declared before `HostCleanup`, so that it drops after it.
pub(crate) struct RemoveImages<'a>(pub(crate) &'a Hosts, pub(crate) Vec<String>);

impl Drop for RemoveImages<'_> {
    fn drop(&mut self) {
        let mut engines = vec![None];
        engines.extend(
            self.0
                .names
                .iter()
                .map(|h| Some(format!("unix://{}", self.0.sock(h)))),
        );
        for e in engines {
            for repo in &self.1 {
                let mut args: Vec<&str> = Vec::new();
                if let Some(h) = &e {
                    args.extend(["-H", h.as_str()]);
                }
                args.extend([
                    "images",
                    "--format",
                    "{{.Repository}}:{{.Tag}}",
                    repo.as_str(),
                ]);
                let Some(out) = docker_try(&args) else {
                    continue;
                };
                for tag in out.lines().filter(|l| !l.is_empty()) {
                    let mut rm: Vec<&str> = Vec::new();
                    if let Some(h) = &e {
                        rm.extend(["-H", h.as_str()]);
                    }
                    rm.extend(["rmi", "-f", tag]);
                    let _ = docker_try(&rm);
                }
            }
        }
    }
}

fn state_dir(t: &TestFleet) -> String {
    t.path().join("state").to_string_lossy().into_owned()
}

/// Unix time with nanoseconds, as `docker events --since` takes it.
fn now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// Image `load` events on a host's engine since `since`.
fn loads(hosts: &Hosts, host: &str, since: &str) -> usize {
    hosts
        .docker(
            host,
            &[
                "events",
                "--since",
                since,
                "--until",
                &now(),
                "--filter",
                "type=image",
                "--filter",
                "event=load",
                "--format",
                "{{.Action}}",
            ],
        )
        .lines()
        .filter(|l| !l.is_empty())
        .count()
}

fn count(run: &Run, what: &str) -> usize {
    run.stderr.lines().filter(|l| l.contains(what)).count()
}

fn apply(t: &TestFleet) -> Run {
    t.convoy(&["apply", "-v", "--state-dir", &state_dir(t)])
}

fn setup(hosts: &Hosts, t: &TestFleet) {
    hosts.write_fleet_file(t, &hosts.known_hosts(), "");
    let mut y = std::fs::read_to_string(t.path().join("convoy.yaml")).unwrap();
    y.push_str("builder: local\n");
    t.write("convoy.yaml", &y);
}

#[test]
fn a_built_image_runs_where_it_never_was_and_is_rebuilt_only_when_its_context_changes() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let stack = t.stack("bld");
    let _images = RemoveImages(&hosts, vec![format!("convoy-build/{stack}-app")]);
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    setup(&hosts, &t);
    let dir = format!("stacks/{stack}/app");
    t.write(
        &format!("{dir}/Dockerfile"),
        &format!("FROM {IMAGE}\nCOPY hello.txt /hello.txt\nCMD [\"sleep\", \"3600\"]\n"),
    );
    t.write(&format!("{dir}/hello.txt"), &format!("first {}\n", t.id));
    t.write(&format!("{dir}/.dockerignore"), "*.log\n");
    t.write(&format!("{dir}/build.log"), "ignored\n");
    t.compose(
        "bld",
        "services:\n  app:\n    build: ./app\n    stop_grace_period: 1s\n    deploy:\n      update_config: {monitor: 0s}\n    x-convoy:\n      hosts: [host2]\n",
    );
    let host = "host2";
    let name = t.cname("bld", "app", 1);
    // host2 has never had this image: it is made for this test.
    assert!(hosts
        .docker(
            host,
            &["images", "-q", &format!("convoy-build/{stack}-app")]
        )
        .trim()
        .is_empty());

    let since = now();
    let run = apply(&t).outcome(Outcome::Converged);
    assert_eq!(count(&run, "building image"), 1, "{}", run.stderr);
    assert_eq!(count(&run, "shipped built image"), 1, "{}", run.stderr);
    assert_eq!(loads(&hosts, host, &since), 1);
    let cat = |n: &str| hosts.docker(host, &["exec", n, "cat", "/hello.txt"]);
    assert_eq!(cat(&name).trim(), format!("first {}", t.id));
    let image = hosts.docker(host, &["inspect", "-f", "{{.Config.Image}}", &name]);
    assert!(
        image
            .trim()
            .starts_with(&format!("convoy-build/{stack}-app:")),
        "{image}"
    );

    // Converged: nothing is built or sent, nothing changes; an ignored file changes nothing.
    t.write(&format!("{dir}/build.log"), "more noise\n");
    let id = hosts.docker(host, &["inspect", "-f", "{{.Id}}", &name]);
    let since = now();
    t.convoy(&["diff", "--state-dir", &state_dir(&t)])
        .outcome(Outcome::InSync);
    let run = apply(&t).outcome(Outcome::Converged);
    assert_eq!(count(&run, "building image"), 0, "{}", run.stderr);
    assert_eq!(count(&run, "shipped built image"), 0, "{}", run.stderr);
    assert_eq!(loads(&hosts, host, &since), 0);
    assert_eq!(hosts.docker(host, &["inspect", "-f", "{{.Id}}", &name]), id);

    // A changed file: `diff` names the new image, one build, one transfer, one replacement.
    t.write(&format!("{dir}/hello.txt"), &format!("second {}\n", t.id));
    let diff = t
        .convoy(&["diff", "--state-dir", &state_dir(&t)])
        .outcome(Outcome::Differs);
    assert!(
        diff.stdout.contains(&format!("convoy-build/{stack}-app:")),
        "{}",
        diff.stdout
    );
    let since = now();
    let run = apply(&t).outcome(Outcome::Converged);
    assert_eq!(count(&run, "building image"), 1, "{}", run.stderr);
    assert_eq!(count(&run, "shipped built image"), 1, "{}", run.stderr);
    assert_eq!(loads(&hosts, host, &since), 1);
    assert_ne!(hosts.docker(host, &["inspect", "-f", "{{.Id}}", &name]), id);
    wait_for("the new file", Duration::from_secs(20), || {
        cat(&name).trim() == format!("second {}", t.id)
    });
    t.convoy(&["diff", "--state-dir", &state_dir(&t)])
        .outcome(Outcome::InSync);
}

#[test]
fn a_failed_build_fails_its_service_only_with_its_last_lines_masked() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let stack = t.stack("bad");
    let _images = RemoveImages(&hosts, vec![format!("convoy-build/{stack}-broken")]);
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    setup(&hosts, &t);
    let secret = format!("tok-{}-hush", t.id);
    t.write(
        &format!("stacks/{stack}/broken/Dockerfile"),
        &format!(
            "FROM {IMAGE}\nARG API_TOKEN\nRUN echo marker-before-failure $API_TOKEN && exit 3\n"
        ),
    );
    t.compose(
        "bad",
        &format!(
            "services:\n  broken:\n    build:\n      context: ./broken\n      args:\n        API_TOKEN: {secret}\n  fine:\n    image: {IMAGE}\n    command: sleep 3600\n"
        ),
    );
    let run = apply(&t).outcome(Outcome::NotConverged);
    let all = format!("{}\n{}", run.stdout, run.stderr);
    assert!(all.contains("marker-before-failure"), "{all}");
    assert!(all.contains("last lines of the build"), "{all}");
    assert!(!all.contains(&secret), "the build arg leaked: {all}");
    // The other service converged; the broken one has no container anywhere.
    let mut running = Vec::new();
    for h in &hosts.names {
        running.extend(hosts.fleet_containers(h, &t.id));
    }
    assert_eq!(running, vec![t.cname("bad", "fine", 1)]);
}

/// Debian's distribution registry (`docker-registry`, installed by `scripts/ensure-docker`),
/// serving `127.0.0.1:<free port>` from a temporary folder; killed on drop.
struct Registry {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

impl Registry {
    /// `None` (a skip) when the registry is not installed and Docker is not required.
    fn start() -> Option<Registry> {
        if !std::path::Path::new(REGISTRY_BIN).exists() {
            if docker_required() {
                panic!("{REGISTRY_BIN} is missing: run scripts/ensure-docker");
            }
            eprintln!("SKIPPED: {REGISTRY_BIN} is missing; run scripts/ensure-docker");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        // A free port: the kernel picks one, the listener lets it go just before the registry
        // binds it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("write the registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = std::process::Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut r = Registry { child, port, dir };
        wait_for("the registry to answer", Duration::from_secs(30), || {
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!("docker-registry exited ({status}): {}", r.log());
            }
            r.get("/v2/").is_some()
        });
        Some(r)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The body of a successful GET, `None` on any failure.
    fn get(&self, path: &str) -> Option<String> {
        let out = std::process::Command::new("curl")
            .args(["-sf", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .expect("run curl");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The tags of a repository, as the registry lists them.
    fn tags(&self, repo: &str) -> Vec<String> {
        let Some(body) = self.get(&format!("/v2/{repo}/tags/list")) else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).expect("tags/list is JSON");
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes every tag of these repositories from the local engine; declared before the
/// `TestFleet`, so that it drops after the fleet's containers are gone.
struct RemoveLocalImages(Vec<String>);

impl Drop for RemoveLocalImages {
    fn drop(&mut self) {
        for repo in &self.0 {
            let Some(out) = docker_try(&[
                "images",
                "--format",
                "{{.Repository}}:{{.Tag}}",
                repo.as_str(),
            ]) else {
                continue;
            };
            for tag in out.lines().filter(|l| !l.is_empty()) {
                let _ = docker_try(&["rmi", "-f", tag]);
            }
        }
    }
}

/// `images: pull` and an `image:` naming a registry: the builder (the local engine, also the
/// only host) builds, pushes `image:` and the `tags` that name a registry to a real registry on
/// loopback, and the host pulls from it. Docker lets an engine talk plain HTTP to a registry
/// on 127.0.0.0/8 without `insecure-registries`, so nothing is configured for this.
#[test]
fn a_built_image_goes_through_the_registry_image_names_when_hosts_pull() {
    if !docker_available() {
        return;
    }
    let Some(registry) = Registry::start() else {
        return;
    };
    let mut images = RemoveLocalImages(Vec::new());
    let t = TestFleet::new();
    let stack = t.stack("reg");
    let reg = format!("127.0.0.1:{}", registry.port);
    let repo = format!("{reg}/convoy-e2e/app");
    let hub = format!("convoy-e2e-hub/{}", t.id);
    images.0.extend([
        format!("convoy-build/{stack}-app"),
        repo.clone(),
        hub.clone(),
    ]);
    t.write(
        "convoy.yaml",
        &format!(
            "fleet: {}\nbuilder: local\nhosts:\n  local:\n    address: unix:///var/run/docker.sock\n    images: pull\n",
            t.id
        ),
    );
    let dir = format!("stacks/{stack}/app");
    t.write(
        &format!("{dir}/Dockerfile"),
        &format!("FROM {IMAGE}\nCOPY hello.txt /hello.txt\nCMD [\"sleep\", \"3600\"]\n"),
    );
    t.write(
        &format!("{dir}/hello.txt"),
        &format!("via registry {}\n", t.id),
    );
    let image = format!("{repo}:{}", t.id);
    let extra = format!("{repo}:{}-extra", t.id);
    t.compose(
        "reg",
        &format!(
            "services:\n  app:\n    image: {image}\n    build:\n      context: ./app\n      tags: [\"{extra}\", \"{hub}:1\"]\n"
        ),
    );
    assert!(registry.tags("convoy-e2e/app").is_empty());

    let run = apply(&t).outcome(Outcome::Converged);
    assert_eq!(count(&run, "building image"), 1, "{}", run.stderr);
    assert_eq!(count(&run, "pushing built image"), 2, "{}", run.stderr);
    assert_eq!(count(&run, "pulled built image"), 1, "{}", run.stderr);
    assert_eq!(count(&run, "shipped built image"), 0, "{}", run.stderr);
    // The registry holds `image:` and the extra tag that names it; the Docker Hub tag stays
    // local.
    let mut want = vec![t.id.clone(), format!("{}-extra", t.id)];
    want.sort();
    assert_eq!(registry.tags("convoy-e2e/app"), want, "{}", registry.log());
    assert!(registry.tags(&hub).is_empty());
    assert!(!docker(&["images", "-q", &format!("{hub}:1")])
        .trim()
        .is_empty());
    // The registry's manifest is the built image's: same config digest as the local image ID.
    let name = t.cname("reg", "app", 1);
    assert_eq!(
        docker(&["exec", &name, "cat", "/hello.txt"]).trim(),
        format!("via registry {}", t.id)
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.Config.Image}}", &name]).trim(),
        image
    );
    let local_id = docker(&["image", "inspect", "-f", "{{.Id}}", &image]);
    let manifest = std::process::Command::new("curl")
        .args([
            "-sf",
            "-H",
            "Accept: application/vnd.docker.distribution.manifest.v2+json",
        ])
        .arg(format!("http://{reg}/v2/convoy-e2e/app/manifests/{}", t.id))
        .output()
        .expect("curl");
    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest.stdout).expect("the manifest is JSON");
    assert_eq!(
        manifest["config"]["digest"].as_str(),
        Some(local_id.trim()),
        "{manifest}"
    );

    // Converged: nothing is built, pushed or pulled again.
    let id = t.id_of(&name);
    t.convoy(&["diff", "--state-dir", &state_dir(&t)])
        .outcome(Outcome::InSync);
    let run = apply(&t).outcome(Outcome::Converged);
    assert_eq!(count(&run, "building image"), 0, "{}", run.stderr);
    assert_eq!(count(&run, "pushing built image"), 0, "{}", run.stderr);
    assert_eq!(count(&run, "pulled built image"), 0, "{}", run.stderr);
    assert_eq!(t.id_of(&name), id);
}
