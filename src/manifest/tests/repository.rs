//! The repository as a whole: which stack folders are read, stack names, YAML syntax errors,
//! errors collected across files and sorted, one broken stack failing the whole repository
//! ("a repository that does not validate changes nothing"), and hostile input that must give
//! errors, never a panic or a stack overflow.
//!
//! Tests only, on in-memory repositories through `load`; no disk, no engine.

use super::*;

#[test]
fn yaml_syntax_error_is_located() {
    let e = errs(&[
        ("convoy.yaml", FLEET),
        (
            "stacks/web/compose.yaml",
            "services:\n  app:\n    image: [a\n",
        ),
    ]);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("stacks/web/compose.yaml:4:1: invalid yaml:"),
        "{e:?}"
    );
    let e = errs(&[("convoy.yaml", "fleet: a\n  b: c\n")]);
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("convoy.yaml:2:4: invalid yaml:"), "{e:?}");
}

#[test]
fn stacks_rules() {
    // No stacks at all is an error...
    let e = errs(&[("convoy.yaml", FLEET)]);
    assert_eq!(
        e,
        vec!["stacks: no stacks found under `stacks/`; write `stacks: []` in convoy.yaml to run none on purpose"]
    );
    // ...unless asked for explicitly.
    let s = ok(&[("convoy.yaml", "fleet: prod\nstacks: []\n")]);
    assert!(s.stacks.is_empty());
    // A listed folder must exist; only listed folders are read.
    let e = errs(&[
        ("convoy.yaml", "fleet: prod\nstacks: [web, missing]\n"),
        ("stacks/web/compose.yaml", "services:\n  a:\n    image: x\n"),
        ("stacks/other/compose.yaml", "broken: ["),
    ]);
    assert_eq!(
        e,
        vec!["convoy.yaml:2:15: stacks: stack folder `stacks/missing` does not exist"]
    );
    // Two compose files in one folder; a folder with none.
    let e = errs(&[
        ("convoy.yaml", FLEET),
        ("stacks/web/compose.yaml", "services:\n  a:\n    image: x\n"),
        (
            "stacks/web/docker-compose.yml",
            "services:\n  a:\n    image: x\n",
        ),
        ("stacks/empty/README", "nothing"),
    ]);
    assert_eq!(
        e,
        vec![
            "stacks/empty: no compose file (expected `compose.yaml`, `compose.yml`, `docker-compose.yaml` or `docker-compose.yml`)",
            "stacks/web: more than one compose file (`compose.yaml`, `docker-compose.yml`); keep one",
        ]
    );
    // Other accepted file names, and `name:` overriding the folder.
    let s = ok(&[
        ("convoy.yaml", FLEET),
        ("stacks/a/compose.yml", "services:\n  a:\n    image: x\n"),
        (
            "stacks/B_Folder/docker-compose.yaml",
            "name: shop\nservices:\n  a:\n    image: x\n",
        ),
    ]);
    assert_eq!(s.stacks.keys().collect::<Vec<_>>(), vec!["a", "shop"]);
    assert_eq!(s.stacks["shop"].file, "stacks/B_Folder/docker-compose.yaml");
}

#[test]
fn duplicate_and_invalid_stack_names() {
    let e = errs(&[
        ("convoy.yaml", FLEET),
        (
            "stacks/one/compose.yaml",
            "name: shop\nservices:\n  a:\n    image: x\n",
        ),
        (
            "stacks/two/compose.yaml",
            "name: shop\nservices:\n  a:\n    image: x\n",
        ),
    ]);
    assert_eq!(
        e,
        vec![
            "stacks/two/compose.yaml: stack name `shop` is also used by `stacks/one/compose.yaml`"
        ]
    );
    let e = errs(&[
        ("convoy.yaml", FLEET),
        ("stacks/Web/compose.yaml", "services:\n  a:\n    image: x\n"),
    ]);
    assert_eq!(
        e,
        vec!["stacks/Web/compose.yaml: stack name `Web` is not valid: use lowercase letters, digits, `_` and `-`, starting with a letter or digit"]
    );
}

#[test]
fn one_broken_stack_among_good_ones() {
    let e = errs(&[
        ("convoy.yaml", FLEET),
        ("stacks/a/compose.yaml", "services:\n  a:\n    image: x\n"),
        (
            "stacks/b/compose.yaml",
            "services:\n  b:\n    image: x\n    restart: sometimes\n",
        ),
        ("stacks/c/compose.yaml", "services:\n  c:\n    image: x\n"),
    ]);
    assert_eq!(
        e,
        vec!["stacks/b/compose.yaml:4:14: services.b.restart: invalid restart policy `sometimes` (expected no, always, on-failure[:N] or unless-stopped)"]
    );
}

#[test]
fn errors_are_collected_across_files_and_sorted() {
    let e = errs(&[
        (
            "convoy.yaml",
            "fleet: prod\nhosts:\n  a:\n    address: nope\n",
        ),
        ("stacks/a/compose.yaml", "services:\n  a:\n    imgae: x\n"),
        (
            "stacks/b/compose.yaml",
            "services:\n  b:\n    image: x\n    external_links: [db]\n",
        ),
    ]);
    assert_eq!(
        e,
        vec![
            "convoy.yaml:4:14: hosts.a.address: expected `unix:///path/docker.sock` or `ssh://[user@]host[:port]`",
            "stacks/a/compose.yaml:2:3: services.a: missing `image`",
            "stacks/a/compose.yaml:3:5: services.a.imgae: unknown key, did you mean `image`?",
            "stacks/b/compose.yaml:4:5: services.b.external_links: `external_links` is not supported yet: links to containers outside the stack: join an external network both are on and use their names",
        ]
    );
}

#[test]
fn hostile_input_does_not_panic() {
    let deep = "[".repeat(10_000);
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    for text in [
        deep.as_str(),
        bomb,
        "\u{0}",
        "services: [",
        "- a\n- b\n",
        "--- a\n--- b\n",
        "? [a]\n: b\n",
    ] {
        let _ = load(
            &tree(&[("convoy.yaml", FLEET), ("stacks/web/compose.yaml", text)]),
            &BTreeMap::new(),
        );
        let _ = load(&tree(&[("convoy.yaml", text)]), &BTreeMap::new());
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}x{}", "${A:-".repeat(20_000), "}".repeat(20_000));
    let compose = format!("services:\n  app:\n    image: busybox\n    command: \"{deep}\"\n");
    let errs = load(
        &tree(&[
            ("convoy.yaml", "fleet: t\n"),
            ("stacks/web/compose.yaml", &compose),
        ]),
        &env(&[]),
    )
    .expect_err("too deep");
    assert!(
        errs.0[0].message.contains("nested more than"),
        "{:?}",
        errs.0
    );
}

/// Stack `qa-b` with service `c` and stack `qa` with service `b-c` both name `qa-b-c-1`: each
/// apply would replace the other's container, forever.
#[test]
fn two_services_that_would_share_container_names() {
    let e = errs(&[
        ("convoy.yaml", FLEET),
        (
            "stacks/qa/compose.yaml",
            "services:\n  b-c:\n    image: x\n",
        ),
        (
            "stacks/qa-b/compose.yaml",
            "services:\n  c:\n    image: x\n",
        ),
    ]);
    assert_eq!(
        e,
        vec!["stacks/qa-b/compose.yaml:2:3: services.c: service `c` of stack `qa-b` and service `b-c` of stack `qa` (stacks/qa/compose.yaml) would both name a container `qa-b-c-<slot>`: rename a stack or a service"]
    );
    // Through a global service's slots, which are host names: `a` on host `b-1` and `a-b`'s
    // first replica are both `s-a-b-1`.
    let e = errs(&[
        (
            "convoy.yaml",
            "fleet: prod\nhosts:\n  b-1:\n    address: ssh://one\n  x:\n    address: ssh://two\n",
        ),
        (
            "stacks/s/compose.yaml",
            "services:\n  a:\n    image: x\n    deploy: {mode: global}\n  a-b:\n    image: x\n",
        ),
    ]);
    assert_eq!(
        e,
        vec!["stacks/s/compose.yaml:5:3: services.a-b: service `a-b` of stack `s` and service `a` of stack `s` (stacks/s/compose.yaml) would both name a container `s-a-b-1`: rename a stack or a service"]
    );
    // Names that only look alike are fine.
    ok(&[
        ("convoy.yaml", FLEET),
        ("stacks/qa/compose.yaml", "services:\n  b:\n    image: x\n"),
        (
            "stacks/qa-b/compose.yaml",
            "services:\n  b:\n    image: x\n",
        ),
    ]);
}

#[test]
fn two_stacks_that_would_make_one_volume_or_network() {
    let e = errs(&[
        ("convoy.yaml", FLEET),
        (
            "stacks/x/compose.yaml",
            "services:\n  a:\n    image: x\n    volumes: [data:/d]\nvolumes:\n  data: {name: shared}\n",
        ),
        (
            "stacks/y/compose.yaml",
            "services:\n  a:\n    image: x\n    volumes: [data:/d]\nvolumes:\n  data: {name: shared}\n",
        ),
    ]);
    assert_eq!(
        e,
        vec!["stacks/y/compose.yaml: volumes.data: stack `y` and stack `x` (stacks/x/compose.yaml) would both make volume `shared`: rename one, or declare it `external: true` in one of them"]
    );
    // Declared external in one of them: shared on purpose, no error.
    let d = ok(&[
        ("convoy.yaml", FLEET),
        (
            "stacks/x/compose.yaml",
            "services:\n  a:\n    image: x\n    volumes: [data:/d]\nvolumes:\n  data: {name: shared}\n",
        ),
        (
            "stacks/y/compose.yaml",
            "services:\n  a:\n    image: x\n    volumes: [data:/d]\nvolumes:\n  data: {name: shared, external: true}\n",
        ),
    ]);
    assert_eq!(d.stacks.len(), 2);
}
