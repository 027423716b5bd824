//! The change half of the corpus test (`corpus.rs`, of which this is a child module): on the
//! converged corpus, a changed config file, a changed page in a bind-mounted folder and a changed
//! secret each replace exactly the service that uses it, every other container of the corpus
//! kept (one apply per change, each compared with the whole fleet); a changed build context is
//! built once, on one host, and loaded once into each other host (image events counted on every
//! host's engine; the corpus's second apply checks with the same count that an unchanged one is
//! neither built nor shipped).
//!
//! It runs inside the corpus test, on its fleet and under the fleet lock that test holds: no
//! fleet of its own, no second convergence from scratch. It must not hold state or clean up
//! anything itself: the corpus test's guards remove what it makes, also when it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{exec, fleet_view, host_of, inspect, short};
use crate::fleet::Hosts;
use crate::harness::*;

/// Unix time with nanoseconds, as `docker events --since` takes it.
pub(super) fn unix_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// Image events (`tag`, `load`, `import`, `pull`, ...) of one host's engine in a time window.
fn image_events(hosts: &Hosts, host: &str, since: &str, until: &str) -> Vec<String> {
    hosts
        .docker(
            host,
            &[
                "events",
                "--since",
                since,
                "--until",
                until,
                "--filter",
                "type=image",
                "--format",
                "{{.Action}}",
            ],
        )
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// No image event (`tag` of a build, `load`, `pull`, ...) on any host in the time window.
pub(super) fn assert_no_image_events(hosts: &Hosts, since: &str, until: &str) {
    for h in &hosts.names {
        let ev = image_events(hosts, h, since, until);
        assert!(ev.is_empty(), "{h}: image events on a no-op pass: {ev:?}");
    }
}

/// Container name → id of every container of the fleet.
fn ids(hosts: &Hosts, fleet: &str) -> BTreeMap<String, String> {
    fleet_view(hosts, fleet)
        .into_iter()
        .map(|(_, name, id, _)| (name, id))
        .collect()
}

/// Names whose container id differs between two [`ids`] views (or that exist in one only).
fn replaced(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    names
        .into_iter()
        .filter(|n| before.get(*n) != after.get(*n))
        .cloned()
        .collect()
}

/// The corpus fleet `t`, converged with the entries for which `has` holds, and its state folder.
pub(super) struct Converged<'a> {
    pub hosts: &'a Hosts,
    pub t: &'a TestFleet,
    pub state: &'a str,
}

impl Converged<'_> {
    fn stack_dir(&self, entry: &str) -> std::path::PathBuf {
        self.t
            .path()
            .join("stacks")
            .join(self.t.stack(short(entry)))
    }

    /// `apply`, converged, then every container of the fleet running again.
    fn apply(&self) -> Run {
        let run = self
            .t
            .convoy(&["apply", "--state-dir", self.state])
            .outcome(Outcome::Converged);
        wait_for("every container running", Duration::from_secs(60), || {
            fleet_view(self.hosts, &self.t.id)
                .iter()
                .all(|(_, _, _, st)| st == "running")
        });
        run
    }

    fn diff(&self, want: Outcome) -> Run {
        self.t
            .convoy(&["diff", "--state-dir", self.state])
            .outcome(want)
    }

    /// The containers one `apply` replaces, of the whole fleet.
    fn replaced_by_apply(&self) -> Vec<String> {
        let before = ids(self.hosts, &self.t.id);
        self.apply();
        replaced(&before, &ids(self.hosts, &self.t.id))
    }
}

/// A changed file from the repository replaces exactly the service that uses it: a config
/// file (diff names it at both its targets), a file deep in a bind-mounted directory (the new
/// page is served), and a secret, whose diff says `(secret changed)` and never shows a value.
pub(super) fn a_changed_file_replaces_exactly_the_services_that_use_it(
    c: &Converged,
    has: &dyn Fn(&str) -> bool,
) {
    let (hosts, t) = (c.hosts, c.t);
    if has("features/configs-file") {
        std::fs::write(
            c.stack_dir("features/configs-file").join("settings.ini"),
            "[corpus]\nmarker = corpus-config-file-v1\nextra = 2\n",
        )
        .expect("edit config");
        let diff = c.diff(Outcome::Differs);
        assert!(
            diff.stdout
                .contains("config app_settings at /etc/app/settings.ini (content changed)")
                && diff
                    .stdout
                    .contains("config app_settings at /app_settings (content changed)"),
            "{}",
            diff.stdout
        );
        assert_eq!(
            c.replaced_by_apply(),
            vec![t.cname("configs-file", "app", 1)]
        );
    }

    if has("features/bind-dir") {
        std::fs::write(
            c.stack_dir("features/bind-dir").join("www/sub/nested.txt"),
            "nested file, second version\n",
        )
        .expect("edit page");
        assert_eq!(c.replaced_by_apply(), vec![t.cname("bind-dir", "web", 1)]);
        let page = exec(
            hosts,
            &t.id,
            &t.cname("bind-dir", "web", 1),
            &[
                "wget",
                "-q",
                "-O",
                "-",
                "http://127.0.0.1:8080/sub/nested.txt",
            ],
        );
        assert!(page.contains("second version"), "{page}");
    }

    if has("features/secrets-file") {
        std::fs::write(
            c.stack_dir("features/secrets-file").join("db_password.txt"),
            "corpus-s3cret-file-v2",
        )
        .expect("edit secret");
        let diff = c.diff(Outcome::Differs);
        assert!(diff.stdout.contains("(secret changed)"), "{}", diff.stdout);
        for v in ["corpus-s3cret-file-v1", "corpus-s3cret-file-v2"] {
            assert!(
                !diff.stdout.contains(v) && !diff.stderr.contains(v),
                "diff shows a secret value"
            );
        }
        let app = t.cname("secrets-file", "app", 1);
        assert_eq!(c.replaced_by_apply(), vec![app.clone()]);
        assert_eq!(
            exec(hosts, &t.id, &app, &["cat", "/run/secrets/db_password"]),
            "corpus-s3cret-file-v2"
        );
    }
    c.diff(Outcome::InSync);
}

/// `build:` on the fleet, with the builder switched to the first host (the corpus converged
/// with the default builder, the local engine), so that the two others receive the image by
/// load: a changed context is built once, on one host, and loaded once into each of the two
/// other hosts, only its replicas are replaced, and every one runs the new image. (That an
/// unchanged context is neither built nor shipped is checked on the corpus's second apply,
/// with [`assert_no_image_events`].)
pub(super) fn a_changed_build_context_rebuilds_once_and_ships_once(c: &Converged) {
    let (hosts, t) = (c.hosts, c.t);
    let y = std::fs::read_to_string(t.path().join("convoy.yaml")).expect("fleet file");
    t.write("convoy.yaml", &format!("{y}builder: {}\n", hosts.names[0]));
    let image_of = |slot: u32| {
        inspect(
            hosts,
            &t.id,
            &t.cname("app-build", "app", slot),
            "{{.Image}}",
        )
    };
    let first = image_of(1);

    // Changed: built on one host, loaded into the two others.
    std::fs::write(
        c.stack_dir("stacks/app-build").join("app/www/index.html"),
        "<p>corpus-app-build-v2</p>\n",
    )
    .expect("edit page");
    c.diff(Outcome::Differs);
    let since = unix_now();
    let replaced = c.replaced_by_apply();
    let until = unix_now();
    let replicas: Vec<String> = (1..=3).map(|s| t.cname("app-build", "app", s)).collect();
    assert_eq!(replaced, replicas, "only the built service's replicas");
    let mut built_on = Vec::new();
    let mut loads = 0;
    for h in &hosts.names {
        let ev = image_events(hosts, h, &since, &until);
        if ev.iter().any(|a| a == "tag") {
            built_on.push(h.clone());
        }
        loads += ev.iter().filter(|a| *a == "load").count();
    }
    assert_eq!(built_on.len(), 1, "built on {built_on:?}");
    assert_eq!(loads, hosts.names.len() - 1, "loads");
    let images: BTreeSet<String> = (1..=3).map(image_of).collect();
    assert_eq!(images.len(), 1, "{images:?}");
    assert!(
        !images.contains(&first),
        "the replicas still run the old image"
    );
    let app1 = t.cname("app-build", "app", 1);
    wait_for("the new page served", Duration::from_secs(30), || {
        docker_try(&[
            "-H",
            &host_of(hosts, &t.id, &app1).1,
            "exec",
            &app1,
            "wget",
            "-q",
            "-O",
            "-",
            "http://127.0.0.1:8080/",
        ])
        .is_some_and(|p| p.contains("corpus-app-build-v2"))
    });
    c.diff(Outcome::InSync);
}
