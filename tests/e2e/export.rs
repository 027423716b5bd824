//! `convoy export --to swarm`, deployed for real: a stack applied by Convoy on the SSH test
//! fleet is exported, the printed commands are run (node labels, the external secret), and the
//! stack file goes to `docker stack deploy` on a single-node swarm made on one fleet host. Both
//! run the same replicas: count, image and environment, and the Swarm tasks read the same
//! config file and secret. The swarm is left and its networks and the stack's volume removed
//! afterwards, also when the test fails.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::fleet::{HostCleanup, Hosts};
use crate::harness::*;

/// Leaves the swarm made on `host` (its stacks with it) and removes the bridge it made.
struct Swarm<'a> {
    hosts: &'a Hosts,
    host: String,
    stack: String,
}

impl Drop for Swarm<'_> {
    fn drop(&mut self) {
        let sock = format!("unix://{}", self.hosts.sock(&self.host));
        let _ = docker_try(&["-H", &sock, "stack", "rm", &self.stack]);
        let label = format!("label=com.docker.stack.namespace={}", self.stack);
        let gone = || {
            docker_try(&["-H", &sock, "ps", "-aq", "--filter", &label])
                .is_some_and(|ids| ids.trim().is_empty())
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !gone() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = docker_try(&["-H", &sock, "swarm", "leave", "--force"]);
        let _ = docker_try(&["-H", &sock, "network", "rm", "docker_gwbridge"]);
        // The stack's named volume, Convoy's and then the tasks'.
        let _ = docker_try(&["-H", &sock, "volume", "rm", &format!("{}_data", self.stack)]);
    }
}

fn stack(t: &TestFleet) {
    t.write(
        &format!("stacks/{}/site.conf", t.stack("web")),
        "listen 8080;\n",
    );
    t.write(
        &format!("stacks/{}/dbpass.txt", t.stack("web")),
        "export-secret-value\n",
    );
    t.compose(
        "web",
        &format!(
            r#"configs:
  site:
    file: ./site.conf
secrets:
  dbpass:
    file: ./dbpass.txt
volumes:
  data: {{}}
services:
  app:
    image: {IMAGE}
    command: ["sh", "-c", "echo $$HOSTNAME > /data/last; exec sleep 3600"]
    environment:
      GREETING: "hello $$USER"
      MODE: export
    volumes:
      - data:/data
    configs:
      - source: site
        target: /etc/site.conf
    secrets:
      - dbpass
    stop_grace_period: 1s
    deploy:
      replicas: 2
    x-convoy:
      hosts: [host1]
"#
        ),
    );
}

/// (image, sorted environment) of each running container that `filter` selects on `host`.
fn replicas(hosts: &Hosts, host: &str, filter: &str) -> Vec<(String, Vec<String>)> {
    let ids = hosts.docker(host, &["ps", "-q", "--filter", filter]);
    let mut out: Vec<(String, Vec<String>)> = ids
        .split_whitespace()
        .map(|id| {
            let image = hosts.docker(host, &["inspect", "-f", "{{.Config.Image}}", id]);
            let env = hosts.docker(
                host,
                &[
                    "inspect",
                    "-f",
                    "{{range .Config.Env}}{{println .}}{{end}}",
                    id,
                ],
            );
            let mut env: Vec<String> = env.lines().map(str::to_string).collect();
            env.sort();
            // Swarm records the image with its digest when it has one; compare the name.
            (image.split('@').next().unwrap_or("").to_string(), env)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn an_exported_stack_runs_the_same_replicas_on_a_swarm() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _clean = HostCleanup(&hosts, t.id.clone());
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "");
    stack(&t);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let convoy = replicas(&hosts, "host1", &format!("label=convoy.fleet={}", t.id));
    assert_eq!(convoy.len(), 2, "{convoy:?}");

    let out = t.path().join("swarm");
    let run = t.convoy(&["export", "--to", "swarm", "-o", out.to_str().unwrap()]);
    let run = run.outcome(Outcome::Written);
    let file = out.join(format!("{}.yaml", t.stack("web")));
    let text = std::fs::read_to_string(&file).expect("the stack file");
    assert!(text.starts_with("version: \"3.8\"\n"), "{text}");
    assert!(!text.contains("export-secret-value"), "{text}");
    assert!(
        run.stdout
            .contains(&format!("docker stack deploy -c {}", file.display())),
        "{}",
        run.stdout
    );

    // Graduating: Convoy's containers and networks go (its named volume, with the data the
    // replicas wrote, stays), then a one-node swarm on host1, labelled and given the secret as
    // the export says.
    let owned = format!("label=convoy.fleet={}", t.id);
    let ids = hosts.docker("host1", &["ps", "-aq", "--filter", &owned]);
    let mut rm = vec!["rm", "-f"];
    rm.extend(ids.split_whitespace());
    hosts.docker("host1", &rm);
    let nets = hosts.docker("host1", &["network", "ls", "-q", "--filter", &owned]);
    let mut rm = vec!["network", "rm"];
    rm.extend(nets.split_whitespace());
    hosts.docker("host1", &rm);
    let sock = format!("unix://{}", hosts.sock("host1"));
    let addr = hosts.env["HOST1_ADDR"].clone();
    let _swarm = Swarm {
        hosts: &hosts,
        host: "host1".into(),
        stack: t.stack("web"),
    };
    hosts.docker("host1", &["swarm", "init", "--advertise-addr", &addr]);
    let secret = format!("{}_dbpass", t.stack("web"));
    assert!(
        run.stdout
            .contains(&format!("docker secret create {secret} -")),
        "{}",
        run.stdout
    );
    let mut child = Command::new("docker")
        .args(["-H", &sock, "secret", "create", &secret, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("docker secret create");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"export-secret-value\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    for line in run.stdout.lines() {
        if line.starts_with("docker node update") && line.ends_with(" host1") {
            let args: Vec<&str> = line.split_whitespace().skip(1).collect();
            hosts.docker("host1", &args);
        }
    }
    hosts.docker(
        "host1",
        &[
            "stack",
            "deploy",
            "--resolve-image",
            "never",
            "-c",
            file.to_str().unwrap(),
            &t.stack("web"),
        ],
    );
    let filter = format!("label=com.docker.stack.namespace={}", t.stack("web"));
    let mut swarm = Vec::new();
    wait_for("two running swarm tasks", Duration::from_secs(60), || {
        swarm = replicas(&hosts, "host1", &filter);
        swarm.len() == 2
    });
    assert_eq!(
        swarm, convoy,
        "the same image and environment, replica for replica"
    );
    let task = hosts.docker("host1", &["ps", "-q", "--filter", &filter]);
    let task = task.split_whitespace().next().unwrap();
    assert_eq!(
        hosts.docker("host1", &["exec", task, "cat", "/etc/site.conf"]),
        "listen 8080;"
    );
    assert_eq!(
        hosts.docker("host1", &["exec", task, "cat", "/run/secrets/dbpass"]),
        "export-secret-value"
    );
    // The named volume is Convoy's own: the data a replica wrote is there for the tasks.
    assert!(!hosts
        .docker("host1", &["exec", task, "cat", "/data/last"])
        .is_empty());
}

/// The corpus's secret values (`tests/corpus/README.md`), as a `grep -E` pattern.
const SECRET_VALUES: &str = "corpus-s3cret-file-v1|corpus-t0ken-env-v1|corpus-redis-pw-3f9c1a";

/// The corpus of issue 9 (every feature folder and realistic stack) as one fleet repository.
fn corpus_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("convoy.yaml"),
        "fleet: corpus\nhosts:\n  h1: {address: \"ssh://h1\", labels: {zone: a}}\n  h2: {address: \"ssh://h2\", labels: {zone: b}}\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("stacks")).unwrap();
    for part in ["features", "stacks"] {
        let root = project_root().join("tests/corpus").join(part);
        for entry in std::fs::read_dir(&root).unwrap() {
            let from = entry.unwrap().path();
            let ok = Command::new("cp")
                .arg("-r")
                .arg(&from)
                .arg(dir.path().join("stacks"))
                .status()
                .unwrap()
                .success();
            assert!(ok, "cp {}", from.display());
        }
    }
    // Jobs: CronJobs and a Job in the Kubernetes export, checked against the schemas too.
    let jobs = dir.path().join("stacks/jobs");
    std::fs::create_dir(&jobs).unwrap();
    std::fs::write(
        jobs.join("compose.yaml"),
        "services:\n  backup:\n    image: busybox\n    x-convoy:\n      job: {schedule: \"0 3 * * *\", timezone: Europe/Berlin, concurrency: replace, deadline: 10m, history: 3}\n  tick:\n    image: busybox\n    x-convoy:\n      job: {schedule: \"@every 15m\"}\n  migrate:\n    image: busybox\n    x-convoy:\n      job: {before: [web]}\n  web:\n    image: busybox\n    command: sleep 3600\n",
    )
    .unwrap();
    dir
}

fn convoy_export(repo: &std::path::Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .arg("export")
        .args(args)
        .arg("--repo")
        .arg(repo)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("convoy export");
    Run::from(out)
}

fn yaml_files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Debian's python3 with a module the tests need (`scripts/ensure-docker` installs them).
fn python(args: &[&str]) -> Run {
    Run::from(
        Command::new("/usr/bin/python3")
            .args(args)
            .output()
            .expect("/usr/bin/python3"),
    )
}

#[test]
fn the_kubernetes_export_of_the_corpus_passes_the_openapi_schemas() {
    let repo = corpus_repo();
    for include in [false, true] {
        let out = tempfile::tempdir().unwrap();
        let mut args = vec!["--to", "kubernetes", "-o", out.path().to_str().unwrap()];
        if include {
            args.push("--include-secrets");
        }
        let run = convoy_export(repo.path(), &args).outcome(Outcome::Written);
        // What has no Kubernetes form is named, service by service.
        assert!(
            run.stderr.contains("not expressible: volumes-from/"),
            "{}",
            run.stderr
        );
        let files = yaml_files(out.path());
        assert!(files.len() >= 20, "{files:?}");
        let jobs = std::fs::read_to_string(out.path().join("jobs.yaml")).unwrap();
        assert_eq!(jobs.matches("kind: CronJob").count(), 2, "{jobs}");
        assert!(jobs.contains("timeZone: Europe/Berlin"), "{jobs}");
        // A real YAML parser reads every document, and each is an object Kubernetes knows.
        let mut parse = vec![
            "-c",
            "import sys, yaml\nn = 0\nfor f in sys.argv[1:]:\n    for d in yaml.safe_load_all(open(f)):\n        assert d['apiVersion'] and d['kind'] and d['metadata']['name'], (f, d)\n        n += 1\nprint(n)",
        ];
        parse.extend(files.iter().map(String::as_str));
        let parsed = python(&parse).outcome(Outcome::Written);
        let docs: usize = parsed.stdout.trim().parse().unwrap();
        assert!(docs > files.len() * 2, "{docs} documents");
        let mut validate = vec!["-m", "kubernetes_validate", "--strict", "--quiet"];
        validate.extend(files.iter().map(String::as_str));
        let checked = python(&validate);
        assert_eq!(
            checked.code, 0,
            "kubernetes-validate:\n{}{}",
            checked.stdout, checked.stderr
        );
        // Secrets' values: only with --include-secrets, and then in files only this user reads.
        let mut with_values = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            if text.contains("kind: Secret") {
                with_values.push(f.clone());
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{f}");
            }
        }
        assert_eq!(!with_values.is_empty(), include, "{with_values:?}");
        if !include {
            assert!(
                run.stdout
                    .contains("kubectl -n secrets-file create secret generic"),
                "{}",
                run.stdout
            );
            assert!(
                !run.stdout.contains("corpus-"),
                "no value printed: {}",
                run.stdout
            );
        }
    }
    // --strict: the same export, exit 1 because something had no form.
    let out = tempfile::tempdir().unwrap();
    let strict = convoy_export(
        repo.path(),
        &[
            "--to",
            "kubernetes",
            "--strict",
            "-o",
            out.path().to_str().unwrap(),
        ],
    );
    assert_eq!(strict.code, 1, "{}", strict.stderr);
}

#[test]
fn the_swarm_export_of_the_corpus_parses_and_keeps_secrets_out() {
    let repo = corpus_repo();
    let out = tempfile::tempdir().unwrap();
    convoy_export(
        repo.path(),
        &["--to", "swarm", "-o", out.path().to_str().unwrap()],
    )
    .outcome(Outcome::Written);
    let files = yaml_files(out.path());
    let mut parse = vec![
        "-c",
        "import sys, yaml\nfor f in sys.argv[1:]:\n    d = yaml.safe_load(open(f))\n    assert d['version'] == '3.8' and d['services'], f",
    ];
    parse.extend(files.iter().map(String::as_str));
    python(&parse).outcome(Outcome::Written);
    let found = Command::new("grep")
        .args(["-rlE", SECRET_VALUES])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        found.stdout.is_empty(),
        "a secret value in {}",
        String::from_utf8_lossy(&found.stdout)
    );
}
