//! Relative bind mounts, `configs` and `secrets`: read from the repository at the commit, by
//! content address, with located errors for sources outside the repository and names not
//! declared, the warning of a read-write folder, and secrets' values kept out of the spec.
//!
//! Tests only, on in-memory repositories through `load`.

use super::*;
use crate::model::files::FileKind;

fn repo(compose: &str, extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, String)> {
    let mut v = web(compose);
    v.extend(extra.iter().map(|(p, c)| (*p, c.to_string())));
    v
}

#[test]
fn relative_binds_are_read_from_the_repository_by_content() {
    let f = repo(
        "services:\n  a:\n    image: x\n    volumes:\n      - ./conf/nginx.conf:/etc/nginx/nginx.conf:ro\n      - ./html:/usr/share/nginx/html\n      - type: bind\n        source: conf/nginx.conf\n        target: /b\n        read_only: true\n",
        &[
            ("stacks/web/conf/nginx.conf", "events {}\n"),
            ("stacks/web/html/index.html", "<p>hi</p>\n"),
            ("stacks/web/html/img/a.txt", "a\n"),
        ],
    );
    let s = ok(&files(&f));
    let c = &s.stacks["web"].services["a"].container;
    assert!(c.mounts.is_empty(), "{:?}", c.mounts);
    assert_eq!(c.files.len(), 3);
    let conf = c
        .files
        .iter()
        .find(|m| m.target == "/etc/nginx/nginx.conf")
        .unwrap();
    assert_eq!(
        (conf.kind, conf.name.as_str(), conf.read_only),
        (FileKind::Bind, "./conf/nginx.conf", true)
    );
    let b = c.files.iter().find(|m| m.target == "/b").unwrap();
    assert_eq!(b.address, conf.address, "same content, same address");
    let html = c
        .files
        .iter()
        .find(|m| m.target == "/usr/share/nginx/html")
        .unwrap();
    let blob = &s.files.blobs[&html.address];
    let paths: Vec<&str> = blob.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["", "img", "img/a.txt", "index.html"]);
    // A read-write folder is a warning, not an error.
    assert_eq!(s.files.warnings.len(), 1, "{:?}", s.files.warnings);
    assert!(s.files.warnings[0]
        .starts_with("stacks/web/compose.yaml:6:9: services.a.volumes[1]: warning:"));

    // Another content: another address, so another spec hash.
    let mut g = f.clone();
    g.iter_mut()
        .find(|(p, _)| *p == "stacks/web/conf/nginx.conf")
        .unwrap()
        .1 = "events { }\n".into();
    let t = ok(&files(&g));
    let c2 = &t.stacks["web"].services["a"].container;
    assert_ne!(c.hash(), c2.hash());
}

#[test]
fn configs_and_secrets_short_and_long() {
    let f = repo(
        "configs:\n  httpd:\n    file: ./httpd.conf\n  motd:\n    content: hello\nsecrets:\n  db:\n    file: ./db.txt\n  api:\n    environment: API_TOKEN\nservices:\n  a:\n    image: x\n    configs:\n      - httpd\n      - source: motd\n        target: etc/motd\n        uid: \"100\"\n        gid: \"101\"\n        mode: 0440\n    secrets:\n      - db\n      - source: api\n        target: token\n        mode: 0400\n",
        &[("stacks/web/httpd.conf", "H:/www\n"), ("stacks/web/db.txt", "s3cret-db-pass\n")],
    );
    let s = ok_env(&files(&f), &[("API_TOKEN", "tok-123456")]);
    let c = &s.stacks["web"].services["a"].container;
    let by_target = |t: &str| c.files.iter().find(|m| m.target == t).unwrap();
    assert_eq!(by_target("/httpd").kind, FileKind::Config);
    let motd = by_target("/etc/motd");
    assert_eq!(
        (motd.uid, motd.gid, motd.mode),
        (Some(100), Some(101), Some(0o440))
    );
    assert_eq!(s.files.blobs[&motd.address].uid, Some(100));
    let db = by_target("/run/secrets/db");
    assert_eq!(
        (db.kind, db.address.as_str(), db.mode),
        (FileKind::Secret, "", Some(0o400))
    );
    assert_eq!(by_target("/run/secrets/token").name, "api");
    // The values: in memory and masked, never in the spec or its serialised form.
    assert_eq!(s.files.secrets["web/db"].data, b"s3cret-db-pass\n");
    assert!(s.secret_values.contains("s3cret-db-pass"));
    assert!(s.secret_values.contains("tok-123456"));
    let json = serde_json::to_string(&s).unwrap();
    assert!(
        !json.contains("s3cret") && !json.contains("tok-123456"),
        "{json}"
    );
    assert!(!format!("{:?}", s.files).contains("s3cret"));
}

#[test]
fn undeclared_names_outside_sources_and_bad_keys_are_located() {
    let e = errs(&files(&repo(
        "configs:\n  c:\n    file: ../../../etc/passwd\n  d:\n    external: true\n  e:\n    file: ./e\n    content: x\nsecrets:\n  s:\n    file: ~/.ssh/id\n  t:\n    environment: NOPE\nservices:\n  a:\n    image: x\n    configs:\n      - nope\n      - source: e\n        mdoe: 1\n    secrets:\n      - ghost\n      - source: s\n        mode: 9z\n",
        &[("stacks/web/e", "x")],
    )));
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:3:11: configs.c.file: `../../../etc/passwd` leads outside the repository: only files of the repository are shipped",
            "stacks/web/compose.yaml:5:5: configs.d.external: `external` is not supported yet: an external config lives in a Swarm, which Convoy does not use: use `file`, `content` or `environment`",
            "stacks/web/compose.yaml:6:3: configs.e: needs exactly one of `file`, `content` or `environment`",
            "stacks/web/compose.yaml:11:11: secrets.s.file: `~/.ssh/id` is in a home folder, outside the repository: only files of the repository are shipped",
            "stacks/web/compose.yaml:13:18: secrets.t.environment: variable `NOPE` is not set (neither in the environment nor in `.env`)",
            "stacks/web/compose.yaml:18:9: services.a.configs[0]: config `nope` is not declared in the top-level `configs`",
            "stacks/web/compose.yaml:20:9: services.a.configs[1].mdoe: unknown key, did you mean `mode`?",
            "stacks/web/compose.yaml:22:9: services.a.secrets[0]: secret `ghost` is not declared in the top-level `secrets`",
            "stacks/web/compose.yaml:24:15: services.a.secrets[1].mode: invalid mode `9z` (expected octal, e.g. 0440)",
        ]
    );
}

/// A read-write copy is its service's own (what one writes never shows in another's mount nor
/// in a read-only copy of the same content); read-only copies of one content are shared.
#[test]
fn read_write_copies_belong_to_their_service() {
    let f = repo(
        "services:\n  a:\n    image: x\n    volumes: [./html:/w, ./html:/r:ro]\n  b:\n    image: x\n    volumes: [./html:/w, ./html:/r:ro]\n",
        &[("stacks/web/html/index.html", "<p>hi</p>\n")],
    );
    let s = ok(&files(&f));
    let addr = |svc: &str, target: &str| {
        s.stacks["web"].services[svc]
            .container
            .files
            .iter()
            .find(|m| m.target == target)
            .unwrap()
            .address
            .clone()
    };
    assert_eq!(addr("a", "/r"), addr("b", "/r"));
    assert_ne!(addr("a", "/w"), addr("b", "/w"));
    assert_ne!(addr("a", "/w"), addr("a", "/r"));
}

/// A read-write source the repository does not have is an empty folder, as Compose creates
/// one, with a warning; read-only it is an error.
#[test]
fn a_missing_read_write_source_is_an_empty_folder_with_a_warning() {
    let f = repo(
        "services:\n  a:\n    image: x\n    volumes: [./data:/var/lib/app]\n",
        &[],
    );
    let s = ok(&files(&f));
    let m = &s.stacks["web"].services["a"].container.files[0];
    let blob = &s.files.blobs[&m.address];
    assert_eq!(blob.entries.len(), 1);
    assert!(blob.entries[0].data.is_none(), "a folder");
    assert_eq!(s.files.warnings.len(), 1, "{:?}", s.files.warnings);
    assert!(
        s.files.warnings[0].contains("`./data` is not in the repository"),
        "{:?}",
        s.files.warnings
    );
    let e = errs(&files(&repo(
        "services:\n  a:\n    image: x\n    volumes: [./data:/var/lib/app:ro]\n",
        &[],
    )));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("does not exist in the repository"), "{e:?}");
}
