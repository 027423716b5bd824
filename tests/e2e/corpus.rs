//! The Compose corpus of issue 9 (`tests/corpus/`): one small stack per feature plus three
//! realistic stacks (nginx with its config from the repository, an app built from a
//! Dockerfile, redis with a password secret), validated, then applied together on the 3-host
//! test fleet over SSH: they converge, a second apply changes nothing, and each stack is
//! checked from outside (the engines' inspect data, `docker exec`, an HTTP fetch from this
//! process to a port published on a host's address, a search of the hosts' persistent files
//! for secret values). Then, on the same converged fleet (`corpus_changes.rs`), files of the
//! corpus change: a changed config, page or secret replaces exactly the service that uses it; a
//! changed build context is built once and shipped once, an unchanged one neither (image events
//! counted on every host). One convergence serves every check: the fleet tests run one at a
//! time, and each convergence from scratch costs the whole of `scripts/test` its time.
//!
//! The features land one helper branch at a time: each corpus entry names the [`Feature`] it
//! needs, and only the features in [`LANDED`] (or in `CONVOY_CORPUS_LANDED`, a comma list of
//! feature names or `all`, to try a merge before editing the list) are applied and checked.
//! The entries of features not landed must still be refused by `validate` (so a merge that
//! forgets to extend [`LANDED`] fails here, by name). This file must not hold any fleet-wide
//! state beyond the fleet lock it takes through [`Hosts::get`], and must clean up every
//! container, network, volume, image and tmpfs it causes, also when it fails.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::fleet::{HostCleanup, Hosts};
use crate::harness::*;

#[path = "corpus_changes.rs"]
mod changes;

/// What a corpus entry needs from issue 9, by the helper branch that brings it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Feature {
    /// Supported before issue 9's branches.
    Today,
    /// Relative bind mounts of files and directories, shipped to the hosts.
    Binds,
    /// `configs` (file, content, environment).
    Configs,
    /// `secrets` (file, environment) on the hosts' tmpfs.
    Secrets,
    /// `build:` on the builder engine, shipped by image ID.
    Build,
    /// `depends_on.restart` and the less common engine settings.
    EngineKeys,
    /// `volumes_from`, `network_mode: service:`, lifecycle hooks,
    /// `privileged`/`shm_size`/`dns_opt`/`links`, `restart_policy.delay`/`window`.
    ServiceKeys,
}

impl Feature {
    fn name(self) -> &'static str {
        match self {
            Feature::Today => "today",
            Feature::Binds => "binds",
            Feature::Configs => "configs",
            Feature::Secrets => "secrets",
            Feature::Build => "build",
            Feature::EngineKeys => "engine-keys",
            Feature::ServiceKeys => "service-keys",
        }
    }
}

/// The features merged on this branch. The lead adds each one as its branch lands.
const LANDED: &[Feature] = &[
    Feature::Today,
    Feature::Binds,
    Feature::Configs,
    Feature::Secrets,
    Feature::Build,
    Feature::EngineKeys,
    Feature::ServiceKeys,
];

/// Every corpus stack: folder (under `tests/corpus/`), and what it needs.
const CORPUS: &[(&str, &[Feature])] = &[
    ("features/anonymous-volume", &[Feature::Today]),
    ("features/bind-dir", &[Feature::Binds]),
    ("features/bind-file", &[Feature::Binds]),
    ("features/build-context", &[Feature::Build]),
    ("features/build-options", &[Feature::Build]),
    ("features/configs-content", &[Feature::Configs]),
    ("features/configs-file", &[Feature::Configs]),
    ("features/container-name", &[Feature::Today]),
    ("features/depends-on-restart", &[Feature::EngineKeys]),
    ("features/engine-options", &[Feature::ServiceKeys]),
    ("features/expose", &[Feature::Today]),
    ("features/extends", &[Feature::Today]),
    ("features/include", &[Feature::Today]),
    ("features/ipam-fixed-address", &[Feature::Today]),
    ("features/legacy-external", &[Feature::Today]),
    ("features/lifecycle-hooks", &[Feature::ServiceKeys]),
    ("features/network-mode-service", &[Feature::ServiceKeys]),
    ("features/profiles", &[Feature::Today]),
    ("features/pull-policy", &[Feature::Today]),
    ("features/resources", &[Feature::Today]),
    ("features/restart-policy", &[Feature::ServiceKeys]),
    ("features/secrets-environment", &[Feature::Secrets]),
    ("features/secrets-file", &[Feature::Secrets]),
    ("features/volumes-from", &[Feature::ServiceKeys]),
    ("stacks/app-build", &[Feature::Build]),
    ("stacks/db-secret", &[Feature::Secrets]),
    ("stacks/web-nginx", &[Feature::Binds, Feature::Configs]),
];

/// The port `stacks/web-nginx` publishes on its host's address (each host has its own
/// network namespace, and the corpus runs under the fleet lock: no other user of it).
const WEB_PORT: u16 = 18080;
/// Secret values of the corpus, searched for in every output and on the hosts' disks.
const SECRETS: &[(&str, &str)] = &[
    ("features/secrets-file", "corpus-s3cret-file-v1"),
    ("features/secrets-environment", "corpus-t0ken-env-v1"),
    ("stacks/db-secret", "corpus-redis-pw-3f9c1a"),
];

fn landed() -> BTreeSet<Feature> {
    let mut set: BTreeSet<Feature> = LANDED.iter().copied().collect();
    let all = [
        Feature::Today,
        Feature::Binds,
        Feature::Configs,
        Feature::Secrets,
        Feature::Build,
        Feature::ServiceKeys,
    ];
    if let Ok(extra) = std::env::var("CONVOY_CORPUS_LANDED") {
        for word in extra.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            if word == "all" {
                set.extend(all);
                continue;
            }
            let f = all
                .iter()
                .find(|f| f.name() == word)
                .unwrap_or_else(|| panic!("CONVOY_CORPUS_LANDED: unknown feature `{word}`"));
            set.insert(*f);
        }
    }
    set
}

/// The corpus entries whose every need has landed, and those still waiting.
fn split_corpus() -> (Vec<&'static str>, Vec<&'static str>) {
    let landed = landed();
    let (mut ready, mut waiting) = (Vec::new(), Vec::new());
    for (entry, needs) in CORPUS {
        if needs.iter().all(|n| landed.contains(n)) {
            ready.push(*entry);
        } else {
            waiting.push(*entry);
        }
    }
    (ready, waiting)
}

fn corpus_root() -> PathBuf {
    project_root().join("tests/corpus")
}

/// The short stack name of a corpus entry: `features/bind-file` → `bind-file`.
fn short(entry: &str) -> &str {
    entry.rsplit('/').next().expect("entry")
}

/// Copies a corpus folder, every file, into `stacks/<unique stack>/` of `t`.
fn copy_stack(t: &TestFleet, entry: &str) {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for e in std::fs::read_dir(from).expect("read corpus dir") {
            let e = e.expect("entry");
            let ty = e.file_type().expect("file type");
            let dest = to.join(e.file_name());
            if ty.is_dir() {
                copy_dir(&e.path(), &dest);
            } else {
                std::fs::copy(e.path(), &dest).expect("copy corpus file");
                let mode = std::fs::metadata(e.path()).expect("meta").permissions();
                std::fs::set_permissions(&dest, mode).expect("chmod");
            }
        }
    }
    copy_dir(
        &corpus_root().join(entry),
        &t.path().join("stacks").join(t.stack(short(entry))),
    );
}

/// Every corpus folder exists with a compose file, and every folder under `features/` and
/// `stacks/` is listed in [`CORPUS`]: the list and the tree cannot drift apart.
#[test]
fn the_corpus_list_matches_the_corpus_tree() {
    let mut on_disk = BTreeSet::new();
    for part in ["features", "stacks"] {
        for e in std::fs::read_dir(corpus_root().join(part)).expect("corpus dir") {
            let e = e.expect("entry");
            if e.file_type().expect("type").is_dir() {
                on_disk.insert(format!("{part}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    let listed: BTreeSet<String> = CORPUS.iter().map(|(d, _)| d.to_string()).collect();
    assert_eq!(
        on_disk, listed,
        "tests/corpus and CORPUS in tests/e2e/corpus.rs"
    );
    for (d, _) in CORPUS {
        assert!(
            corpus_root().join(d).join("compose.yaml").is_file(),
            "{d}/compose.yaml"
        );
    }
}

/// `convoy validate`: every entry whose features have landed validates (exit 0, warnings
/// allowed); every other one is still refused, so landing a feature without extending
/// [`LANDED`] is caught here.
#[test]
fn the_corpus_validates_as_far_as_its_features_have_landed() {
    let (ready, waiting) = split_corpus();
    let mut wrong = Vec::new();
    for entry in ready.iter().chain(waiting.iter()) {
        let mut t = TestFleet::new();
        t.env("CONVOY_CORPUS_ID", &t.id.clone());
        copy_stack(&t, entry);
        let run = t.convoy(&["validate"]);
        let expect_ok = ready.contains(entry);
        if (run.code == 0) != expect_ok {
            wrong.push(format!(
                "{entry}: validate exited {} (want {}):\n{}{}",
                run.code,
                if expect_ok { 0 } else { 2 },
                run.stdout,
                run.stderr
            ));
        }
        for (e, value) in SECRETS {
            if e == entry {
                assert!(
                    !run.stdout.contains(value) && !run.stderr.contains(value),
                    "{entry}: validate printed the secret's value"
                );
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} corpus entries disagree with LANDED (tests/e2e/corpus.rs); a refused entry of a \
         landed feature is a bug, an accepted entry of a waiting one means its feature landed: \
         add it to LANDED\n\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// The fleet file of the corpus: the 3 hosts over SSH, each with its own `files_dir` and
/// `secrets_dir` (the test hosts share one file system) under the test's temporary folder,
/// once the features that bring those keys have landed.
fn write_fleet_file(hosts: &Hosts, t: &TestFleet) {
    let landed = landed();
    let files = landed.contains(&Feature::Binds) || landed.contains(&Feature::Configs);
    let secrets = landed.contains(&Feature::Secrets);
    let mut y = format!(
        "fleet: {}\nssh:\n  user: root\n  identity_file: {}\n  known_hosts: {}\nhosts:\n",
        t.id,
        hosts.env["FLEET_SSH_KEY"],
        hosts.known_hosts()
    );
    for h in &hosts.names {
        let dir = t.path().join("hostdirs").join(h);
        y.push_str(&format!(
            "  {h}:\n    address: ssh://root@{}\n    docker_socket: {}\n",
            addr(hosts, h),
            hosts.sock(h),
        ));
        if files {
            y.push_str(&format!("    files_dir: {}\n", dir.join("files").display()));
        }
        if secrets {
            y.push_str(&format!(
                "    secrets_dir: {}\n",
                dir.join("secrets").display()
            ));
        }
    }
    t.write("convoy.yaml", &y);
}

fn addr(hosts: &Hosts, host: &str) -> String {
    hosts.env[&format!("{}_ADDR", host.to_uppercase())].clone()
}

/// Unmounts every mount under the test's folder (the tmpfs Convoy mounts at `secrets_dir`)
/// and removes the fleet's volumes and the corpus's built images and tags from every host and
/// its tags from this machine's engine (the default builder), on drop.
/// Declared before `HostCleanup` so it drops after it (containers go first).
struct CorpusCleanup<'a> {
    hosts: &'a Hosts,
    fleet: String,
    root: PathBuf,
    corpus_id: String,
}

impl Drop for CorpusCleanup<'_> {
    fn drop(&mut self) {
        for m in mounts_under(&self.root) {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        for h in &self.hosts.names {
            let sock = format!("unix://{}", self.hosts.sock(h));
            let label = format!("label=convoy.fleet={}", self.fleet);
            if let Some(vols) = docker_try(&["-H", &sock, "volume", "ls", "-q", "--filter", &label])
            {
                for v in vols.split_whitespace() {
                    let _ = docker_try(&["-H", &sock, "volume", "rm", "-f", v]);
                }
            }
            // The legacy-external stack's resources, made by this test.
            let _ = docker_try(&[
                "-H",
                &sock,
                "network",
                "rm",
                &format!("corpus-ext-net-{}", self.corpus_id),
            ]);
            let _ = docker_try(&[
                "-H",
                &sock,
                "volume",
                "rm",
                "-f",
                &format!("corpus-ext-vol-{}", self.corpus_id),
            ]);
            remove_built_images(&sock);
            remove_fleet_tags(Some(&sock), &self.fleet);
        }
        // The default builder is this machine's engine: the tags it built for this fleet.
        remove_fleet_tags(None, &self.fleet);
    }
}

/// Untags every image Convoy tagged for `fleet`'s stacks (`convoy-build/<stack>-<service>`,
/// the stack named `<fleet><short name>`) on one engine (`None`: this machine's). Only tags:
/// an image another tag still names (another test's, on the shared local engine) stays.
fn remove_fleet_tags(sock: Option<&str>, fleet: &str) {
    let mut args: Vec<&str> = Vec::new();
    if let Some(s) = sock {
        args.extend(["-H", s]);
    }
    let pattern = format!("reference=convoy-build/{fleet}*");
    args.extend(["images", "--format", "{{.Repository}}:{{.Tag}}", "--filter"]);
    args.push(&pattern);
    let Some(out) = docker_try(&args) else {
        return;
    };
    let prefix = format!("convoy-build/{fleet}");
    for tag in out.lines() {
        // `e1x1` must not take `e1x10`'s: a short name starts with a letter.
        let ours = tag
            .strip_prefix(&prefix)
            .and_then(|rest| rest.chars().next())
            .is_some_and(|c| !c.is_ascii_digit());
        if ours {
            let mut rm: Vec<&str> = Vec::new();
            if let Some(s) = sock {
                rm.extend(["-H", s]);
            }
            rm.extend(["rmi", tag]);
            let _ = docker_try(&rm);
        }
    }
}

/// Removes the fleet's containers from every host, the hosts and the containers in parallel;
/// declared after `HostCleanup`, so that it drops before it and leaves it only the networks.
/// The corpus runs dozens of containers: one `docker rm -f` after another took 12 s of the
/// fleet lock.
struct RemoveContainers<'a>(&'a Hosts, String);

impl Drop for RemoveContainers<'_> {
    fn drop(&mut self) {
        let label = format!("label=convoy.fleet={}", self.1);
        std::thread::scope(|s| {
            for h in &self.0.names {
                let sock = format!("unix://{}", self.0.sock(h));
                let label = &label;
                s.spawn(move || {
                    let Some(ids) = docker_try(&["-H", &sock, "ps", "-aq", "--filter", label])
                    else {
                        return;
                    };
                    let ids: Vec<&str> = ids.split_whitespace().collect();
                    std::thread::scope(|s| {
                        for chunk in ids.chunks(4) {
                            let sock = &sock;
                            s.spawn(move || {
                                let mut args = vec!["-H", sock.as_str(), "rm", "-f"];
                                args.extend(chunk);
                                let _ = docker_try(&args);
                            });
                        }
                    });
                });
            }
        });
    }
}

/// The images the corpus builds, found by the labels their Dockerfiles and compose files set.
fn remove_built_images(sock: &str) {
    for label in [
        "label=org.convoy.corpus.app-version",
        "label=org.convoy.corpus=build-options",
    ] {
        if let Some(ids) = docker_try(&["-H", sock, "images", "-q", "--filter", label]) {
            let ids: BTreeSet<&str> = ids.split_whitespace().collect();
            for id in ids {
                let _ = docker_try(&["-H", sock, "rmi", "-f", id]);
            }
        }
    }
    for tag in ["corpus/build-options:1", "corpus/build-options:extra"] {
        let _ = docker_try(&["-H", sock, "rmi", "-f", tag]);
    }
}

/// Mount points under `root`, deepest first, from /proc/self/mounts.
fn mounts_under(root: &Path) -> Vec<String> {
    let root = root.to_string_lossy().into_owned();
    let mut v: Vec<String> = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .filter(|m| m.starts_with(&root))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.len()));
    v
}

/// tmpfs mount points anywhere, from /proc/self/mounts: the places a secret may be.
fn tmpfs_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "tmpfs").then(|| PathBuf::from(f[1]))
        })
        .collect()
}

/// Files under `dirs` (not following links, not entering tmpfs mounts, regular files under
/// 256 MiB) whose bytes contain one of `needles`, each with the needles it holds; and how many
/// files were searched. One `find | grep -F` over the hosts' data roots (hundreds of megabytes
/// of image layers): a byte-by-byte search in this debug-built test took minutes.
fn files_containing(
    dirs: &[PathBuf],
    needles: &[&str],
    tmpfs: &[PathBuf],
) -> (Vec<(PathBuf, Vec<String>)>, usize) {
    use std::os::unix::ffi::OsStrExt;
    use std::process::Stdio;
    let dirs: Vec<&PathBuf> = dirs.iter().filter(|d| d.is_dir()).collect();
    if dirs.is_empty() || needles.is_empty() {
        return (Vec::new(), 0);
    }
    let mut find = Command::new("find");
    find.args(&dirs);
    let prune: Vec<&PathBuf> = tmpfs
        .iter()
        .filter(|m| dirs.iter().any(|d| m.starts_with(d)))
        .collect();
    if !prune.is_empty() {
        find.arg("(");
        for (i, m) in prune.iter().enumerate() {
            if i > 0 {
                find.arg("-o");
            }
            // `-path` takes a glob: its special characters stand for themselves here.
            let mut glob = String::new();
            for ch in m.to_string_lossy().chars() {
                if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
                    glob.push('\\');
                }
                glob.push(ch);
            }
            find.arg("-path").arg(glob);
        }
        find.args([")", "-prune", "-o"]);
    }
    find.args(["-type", "f", "-size", "-268435456c", "-print0"]);
    // Files may come and go under a running engine: find's complaints about them are noise.
    let listed = find.stderr(Stdio::null()).output().expect("run find");
    let searched = listed
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .count();
    let mut grep = Command::new("xargs");
    grep.args(["-0", "-r", "grep", "-lFZs"]);
    for n in needles {
        grep.arg("-e").arg(n);
    }
    let mut child = grep
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run xargs grep");
    let mut stdin = child.stdin.take().expect("stdin");
    let feed = std::thread::spawn(move || {
        let _ = stdin.write_all(&listed.stdout);
    });
    let out = child.wait_with_output().expect("xargs grep");
    feed.join().expect("feeding grep");
    // grep exits 1 when nothing matches, and xargs then 123: only the names it printed count.
    let found = out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let path = PathBuf::from(std::ffi::OsStr::from_bytes(p));
            let bytes = std::fs::read(&path).unwrap_or_default();
            let which = needles
                .iter()
                .filter(|n| bytes.windows(n.len()).any(|w| w == n.as_bytes()))
                .map(|n| n.to_string())
                .collect();
            (path, which)
        })
        .collect();
    (found, searched)
}

/// Makes sure every host holds `image` (the fleet copies only the busybox images): saved from
/// the root engine and loaded into each host that lacks it.
fn ensure_on_hosts(hosts: &Hosts, image: &str) {
    for h in &hosts.names {
        let sock = format!("unix://{}", hosts.sock(h));
        if docker_try(&["-H", &sock, "image", "inspect", image]).is_some() {
            continue;
        }
        let status = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -o pipefail; docker save {image} | docker -H {sock} load -q"
            ))
            .status()
            .expect("docker save | load");
        assert!(status.success(), "loading {image} into {h} failed");
    }
}

/// (host, container name, id, state) of every container of the fleet, for before/after.
/// One `docker ps` per host (not one inspect per container: the corpus has dozens, and tests
/// poll this).
fn fleet_view(hosts: &Hosts, fleet: &str) -> Vec<(String, String, String, String)> {
    let mut v = Vec::new();
    for h in &hosts.names {
        let out = hosts.docker(
            h,
            &[
                "ps",
                "-a",
                "--no-trunc",
                "--filter",
                &format!("label=convoy.fleet={fleet}"),
                "--format",
                "{{.Names}} {{.ID}} {{.State}}",
            ],
        );
        let mut lines: Vec<(String, String, String, String)> = out
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                assert_eq!(f.len(), 3, "docker ps: {l}");
                (
                    h.clone(),
                    f[0].to_string(),
                    f[1].to_string(),
                    f[2].to_string(),
                )
            })
            .collect();
        lines.sort();
        v.extend(lines);
    }
    v
}

/// The host running container `name`, and the host's socket URL.
fn host_of(hosts: &Hosts, fleet: &str, name: &str) -> (String, String) {
    for h in &hosts.names {
        if hosts.fleet_containers(h, fleet).iter().any(|n| n == name) {
            return (h.clone(), format!("unix://{}", hosts.sock(h)));
        }
    }
    panic!("no host runs {name}");
}

/// `docker exec` in a fleet container, wherever it runs.
fn exec(hosts: &Hosts, fleet: &str, name: &str, cmd: &[&str]) -> String {
    let (h, _) = host_of(hosts, fleet, name);
    let mut args = vec!["exec", name];
    args.extend_from_slice(cmd);
    hosts.docker(&h, &args)
}

fn inspect(hosts: &Hosts, fleet: &str, name: &str, format: &str) -> String {
    let (h, _) = host_of(hosts, fleet, name);
    hosts.docker(&h, &["inspect", "-f", format, name])
}

/// A plain HTTP/1.0 GET from this process: (status line and headers, body).
fn http_get(addr: &str, port: u16, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect((addr, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: corpus\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    Some((head.to_string(), body.to_string()))
}

/// Every corpus entry whose features have landed, applied together on the 3-host fleet,
/// checked, applied again, then changed (`corpus_changes.rs`).
#[test]
fn the_corpus_converges_on_the_fleet_stays_converged_and_a_change_replaces_only_its_users() {
    let Some(hosts) = Hosts::get() else { return };
    let (ready, waiting) = split_corpus();
    eprintln!("corpus: applying {ready:?}; waiting for their features: {waiting:?}");
    let mut t = TestFleet::new();
    let corpus_id = t.id.clone();
    let _files = CorpusCleanup {
        hosts: &hosts,
        fleet: t.id.clone(),
        root: t.path().to_path_buf(),
        corpus_id: corpus_id.clone(),
    };
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    let _containers = RemoveContainers(&hosts, t.id.clone());
    t.env("CONVOY_CORPUS_ID", &corpus_id);
    t.env("CORPUS_WEB_PORT", &WEB_PORT.to_string());
    write_fleet_file(&hosts, &t);
    let state = t.path().join("state").to_string_lossy().into_owned();
    let has = |e: &str| ready.contains(&e);

    // Real software for the realistic stacks, on every host (built once per machine).
    let mut extra_images = Vec::new();
    if has("stacks/web-nginx") {
        extra_images.push(("nginx", "convoy-test/nginx:1"));
    }
    if has("stacks/db-secret") {
        extra_images.push(("redis", "convoy-test/redis:1"));
    }
    if !extra_images.is_empty() {
        let status = Command::new("bash")
            .arg(project_root().join("scripts/test-image"))
            .args(extra_images.iter().map(|(n, _)| *n))
            .status()
            .expect("scripts/test-image");
        assert!(status.success(), "scripts/test-image failed");
        for (_, image) in &extra_images {
            ensure_on_hosts(&hosts, image);
        }
    }
    // The build stacks' images must be new to every host: "runs on a host that never had it".
    for h in &hosts.names {
        remove_built_images(&format!("unix://{}", hosts.sock(h)));
    }
    // legacy-external: an external network and volume exist before the stack (never created
    // by Convoy), on every host.
    if has("features/legacy-external") {
        for h in &hosts.names {
            hosts.docker(
                h,
                &["network", "create", &format!("corpus-ext-net-{corpus_id}")],
            );
            hosts.docker(
                h,
                &["volume", "create", &format!("corpus-ext-vol-{corpus_id}")],
            );
        }
    }
    for e in &ready {
        copy_stack(&t, e);
    }

    let mut outputs = String::new();
    let apply = t
        .convoy(&["apply", "--state-dir", &state])
        .outcome(Outcome::Converged);
    outputs.push_str(&apply.stdout);
    outputs.push_str(&apply.stderr);

    // Self-checking services (their commands exit unless what they test holds) must stay up.
    let fleet = t.id.clone();
    wait_for(
        "every corpus container running",
        Duration::from_secs(60),
        || {
            fleet_view(&hosts, &fleet)
                .iter()
                .all(|(_, _, _, st)| st == "running")
        },
    );
    let c = |entry: &str, svc: &str, slot: u32| t.cname(short(entry), svc, slot);

    // --- per-feature checks, for what has landed ---------------------------------------
    if has("features/bind-file") {
        let out = exec(
            &hosts,
            &fleet,
            &c("features/bind-file", "app", 1),
            &["cat", "/etc/corpus/app.conf"],
        );
        assert!(out.contains("corpus-bind-file-v1"), "{out}");
    }
    if has("features/bind-dir") {
        let out = exec(
            &hosts,
            &fleet,
            &c("features/bind-dir", "web", 1),
            &[
                "wget",
                "-q",
                "-O",
                "-",
                "http://127.0.0.1:8080/sub/nested.txt",
            ],
        );
        assert!(out.contains("nested file"), "{out}");
    }
    if has("features/configs-content") {
        let name = c("features/configs-content", "app", 1);
        let out = exec(&hosts, &fleet, &name, &["cat", "/etc/app/inline.conf"]);
        assert!(out.contains("greeting=hello-corpus"), "{out}");
        let st = exec(
            &hosts,
            &fleet,
            &name,
            &["stat", "-c", "%u:%g:%a", "/etc/app/inline.conf"],
        );
        assert_eq!(st, "65534:65534:440");
    }
    if has("features/secrets-file") {
        let name = c("features/secrets-file", "app", 1);
        let v = exec(&hosts, &fleet, &name, &["cat", "/run/secrets/db_password"]);
        assert_eq!(v, "corpus-s3cret-file-v1");
        let mounts = inspect(&hosts, &fleet, &name, "{{json .Mounts}}");
        assert!(
            !mounts.contains("corpus-s3cret"),
            "a mount names the secret's value: {mounts}"
        );
    }
    if has("features/secrets-environment") {
        let v = exec(
            &hosts,
            &fleet,
            &c("features/secrets-environment", "app", 1),
            &["cat", "/run/secrets/api_token"],
        );
        assert_eq!(v, "corpus-t0ken-env-v1");
    }
    if has("features/build-options") {
        let name = c("features/build-options", "app", 1);
        assert_eq!(
            inspect(&hosts, &fleet, &name, "{{.Config.Image}}"),
            "corpus/build-options:1"
        );
        let (_, sock) = host_of(&hosts, &fleet, &name);
        let label = docker(&[
            "-H",
            &sock,
            "image",
            "inspect",
            "-f",
            "{{index .Config.Labels \"org.convoy.corpus\"}}",
            "corpus/build-options:1",
        ]);
        assert_eq!(label, "build-options");
    }
    if has("features/volumes-from") {
        let (a, _) = host_of(&hosts, &fleet, &c("features/volumes-from", "writer", 1));
        let (b, _) = host_of(&hosts, &fleet, &c("features/volumes-from", "reader", 1));
        assert_eq!(a, b, "volumes_from: reader and writer on one host");
    }
    if has("features/network-mode-service") {
        let (a, _) = host_of(
            &hosts,
            &fleet,
            &c("features/network-mode-service", "server", 1),
        );
        let (b, _) = host_of(
            &hosts,
            &fleet,
            &c("features/network-mode-service", "sidecar", 1),
        );
        assert_eq!(a, b, "network_mode: service: on one host");
    }
    if has("features/lifecycle-hooks") {
        let out = exec(
            &hosts,
            &fleet,
            &c("features/lifecycle-hooks", "app", 1),
            &["cat", "/tmp/post_start"],
        );
        assert_eq!(out, "corpus-post-start-v1");
        let out = exec(
            &hosts,
            &fleet,
            &c("features/lifecycle-hooks", "app", 1),
            &["cat", "/prepared/by-pre-start"],
        );
        assert_eq!(out, "corpus-pre-start", "the pre_start hook ran first");
    }
    if has("features/profiles") {
        let all: Vec<String> = fleet_view(&hosts, &fleet)
            .into_iter()
            .map(|v| v.1)
            .collect();
        assert!(all.contains(&c("features/profiles", "app", 1)), "{all:?}");
        assert!(
            !all.contains(&c("features/profiles", "debug", 1)),
            "{all:?}"
        );
    }
    if has("features/extends") {
        let env = inspect(
            &hosts,
            &fleet,
            &c("features/extends", "local", 1),
            "{{json .Config.Env}}",
        );
        assert!(
            env.contains("\"FROM_BASE=1\"") && env.contains("\"ROLE=local\""),
            "{env}"
        );
        let env = inspect(
            &hosts,
            &fleet,
            &c("features/extends", "shared", 1),
            "{{json .Config.Env}}",
        );
        assert!(
            env.contains("\"FROM_COMMON=1\"") && env.contains("\"ROLE=shared\""),
            "{env}"
        );
    }
    if has("features/include") {
        host_of(&hosts, &fleet, &c("features/include", "cache", 1));
    }
    if has("features/anonymous-volume") {
        let mounts = inspect(
            &hosts,
            &fleet,
            &c("features/anonymous-volume", "app", 1),
            "{{range .Mounts}}{{.Type}}:{{.Destination}} {{end}}",
        );
        assert!(mounts.contains("volume:/data"), "{mounts}");
    }
    if has("features/container-name") {
        let named = format!("corpus-named-{corpus_id}");
        host_of(&hosts, &fleet, &named);
    }
    if has("features/ipam-fixed-address") {
        let ip = inspect(
            &hosts,
            &fleet,
            &c("features/ipam-fixed-address", "app", 1),
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        );
        assert_eq!(ip, "10.250.93.10");
    }
    if has("features/engine-options") {
        let hc = inspect(
            &hosts,
            &fleet,
            &c("features/engine-options", "app", 1),
            "{{.HostConfig.ShmSize}} {{json .HostConfig.DnsOptions}}",
        );
        assert_eq!(hc, r#"67108864 ["ndots:2","timeout:3"]"#);
    }
    if has("features/resources") {
        let hc = inspect(
            &hosts,
            &fleet,
            &c("features/resources", "app", 1),
            "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.MemoryReservation}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}}",
        );
        assert_eq!(hc, "67108864 134217728 16777216 500000000 512");
    }

    // --- the realistic stacks ----------------------------------------------------------
    if has("stacks/web-nginx") {
        let name = c("stacks/web-nginx", "web", 1);
        let (h, _) = host_of(&hosts, &fleet, &name);
        let a = addr(&hosts, &h);
        let mut got = None;
        wait_for(
            "nginx answering on its published port",
            Duration::from_secs(30),
            || {
                got = http_get(&a, WEB_PORT, "/");
                got.is_some()
            },
        );
        let (head, body) = got.expect("response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(body.contains("corpus-web-page-v1"), "{body}");
        // Only the shipped nginx.conf and the shipped config add these headers.
        assert!(head.contains("X-Corpus-Config: shipped-v1"), "{head}");
        assert!(head.contains("X-Corpus-Header: from-configs"), "{head}");
        let (_, about) = http_get(&a, WEB_PORT, "/about/").expect("about page");
        assert!(about.contains("corpus-web-about-v1"), "{about}");
    }
    if has("stacks/app-build") {
        // Three replicas spread over the three hosts: at least two hosts never had the image
        // (removed above, built on the builder alone) and run it now, the same image ID.
        let mut images = BTreeSet::new();
        let mut on = BTreeSet::new();
        for slot in 1..=3 {
            let name = c("stacks/app-build", "app", slot);
            let (h, sock) = host_of(&hosts, &fleet, &name);
            on.insert(h);
            let image = docker(&["-H", &sock, "inspect", "-f", "{{.Image}}", &name]);
            let version = docker(&[
                "-H",
                &sock,
                "image",
                "inspect",
                "-f",
                "{{index .Config.Labels \"org.convoy.corpus.app-version\"}}",
                &image,
            ]);
            assert_eq!(version, "1.0.0", "{name} on its host");
            let page = exec(
                &hosts,
                &fleet,
                &name,
                &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"],
            );
            assert!(page.contains("corpus-app-build-v1"), "{page}");
            images.insert(image);
        }
        assert_eq!(on.len(), 3, "one replica per host: {on:?}");
        assert_eq!(images.len(), 1, "one image, shipped by ID: {images:?}");
        // .dockerignore kept www/README.md out of the context (COPY www/ would take it).
        let ls = exec(
            &hosts,
            &fleet,
            &c("stacks/app-build", "app", 1),
            &["ls", "/srv/www"],
        );
        assert!(!ls.contains("README"), "{ls}");
    }
    if has("stacks/db-secret") {
        let redis = c("stacks/db-secret", "redis", 1);
        wait_for(
            "the client wrote through AUTH",
            Duration::from_secs(30),
            || {
                let (_, sock) = host_of(&hosts, &fleet, &redis);
                docker_try(&[
                    "-H",
                    &sock,
                    "exec",
                    &redis,
                    "sh",
                    "-c",
                    "REDISCLI_AUTH=\"$(cat /run/secrets/redis_password)\" redis-cli get corpus",
                ])
                .is_some_and(|v| v == "ok")
            },
        );
        let noauth = exec(
            &hosts,
            &fleet,
            &redis,
            &["sh", "-c", "redis-cli get corpus 2>&1; true"],
        );
        assert!(
            noauth.contains("NOAUTH"),
            "redis without the password: {noauth}"
        );
        let cmd = inspect(
            &hosts,
            &fleet,
            &redis,
            "{{json .Config.Cmd}} {{json .Config.Env}}",
        );
        assert!(!cmd.contains("corpus-redis-pw"), "{cmd}");
    }

    // --- a second apply changes nothing --------------------------------------------------
    let before = fleet_view(&hosts, &fleet);
    let diff = t
        .convoy(&["diff", "--state-dir", &state])
        .outcome(Outcome::InSync);
    outputs.push_str(&diff.stdout);
    outputs.push_str(&diff.stderr);
    let since = changes::unix_now();
    let again = t
        .convoy(&["apply", "--state-dir", &state])
        .outcome(Outcome::Converged);
    let until = changes::unix_now();
    outputs.push_str(&again.stdout);
    outputs.push_str(&again.stderr);
    assert_eq!(
        fleet_view(&hosts, &fleet),
        before,
        "a second apply changed something"
    );
    // Unchanged build contexts: nothing built or shipped (no image event on any host).
    changes::assert_no_image_events(&hosts, &since, &until);
    let status = t
        .convoy(&["status", "--output", "json", "--state-dir", &state])
        .outcome(Outcome::AllReachable);
    outputs.push_str(&status.stdout);

    // --- secrets: in no output, in no persistent file of the hosts -------------------------
    let tmpfs = tmpfs_mounts();
    for (entry, value) in SECRETS {
        if !has(entry) {
            continue;
        }
        assert!(
            !outputs.contains(value),
            "{entry}: a convoy output shows the secret"
        );
    }
    // The hosts' engines (data roots, container configs) and the files Convoy shipped; the
    // repository itself holds the secret files and is left out. One search for every value.
    // A canary on a persistent path shows that the search finds what is there.
    let canary = format!("corpus-search-canary-{corpus_id}");
    t.write(
        "search-canary/inside/file.bin",
        &format!("\0\x01{canary}\n"),
    );
    let mut values: Vec<&str> = SECRETS
        .iter()
        .filter(|(entry, _)| has(entry))
        .map(|(_, v)| *v)
        .collect();
    values.push(&canary);
    let (found, searched) = files_containing(
        &[
            PathBuf::from(&hosts.env["FLEET_DIR"]),
            t.path().join("hostdirs"),
            PathBuf::from("/var/lib/convoy"),
            t.path().join("search-canary"),
        ],
        &values,
        &tmpfs,
    );
    assert!(searched > 100, "only {searched} files searched for secrets");
    assert!(
        found
            .iter()
            .any(|(p, which)| p.ends_with("inside/file.bin")
                && which == std::slice::from_ref(&canary)),
        "the search missed its canary: {found:?}"
    );
    for (entry, value) in SECRETS {
        let on_disk: Vec<&PathBuf> = found
            .iter()
            .filter(|(_, which)| which.iter().any(|w| w == value))
            .map(|(p, _)| p)
            .collect();
        assert!(
            on_disk.is_empty(),
            "{entry}: the secret is on a persistent path: {on_disk:?}"
        );
    }

    // --- changes: each replaces exactly its users, on this converged fleet -----------------
    let converged = changes::Converged {
        hosts: &hosts,
        t: &t,
        state: &state,
    };
    changes::a_changed_file_replaces_exactly_the_services_that_use_it(&converged, &has);
    if has("stacks/app-build") {
        changes::a_changed_build_context_rebuilds_once_and_ships_once(&converged);
    }
}
