//! Compose's anonymous volumes (`volumes: ["/data"]`, `type: volume` without `source`): read as
//! `MountKind::Anonymous`, one named volume per slot once resolved, and the errors around them.
//!
//! Tests only, on in-memory repositories through `load`; no disk, no engine.

use super::*;

#[test]
fn anonymous_volumes_short_and_long() {
    let s = service(
        "services:\n  db:\n    image: x\n    volumes:\n      - /data\n      - type: volume\n        target: /cache\n        read_only: true\n",
    );
    let m = &s.container.mounts;
    assert_eq!(m.len(), 2);
    assert!(m
        .iter()
        .all(|m| m.kind == MountKind::Anonymous && m.source.is_empty()));
    // Sorted, as every mount list is.
    assert_eq!(m[0].target, "/cache");
    assert!(m[0].read_only);
    assert_eq!(m[1].target, "/data");
    // Each slot gets its own volume, the same on every resolution (a replacement reuses it).
    let one = s.container.for_slot("web", "db", "1");
    let two = s.container.for_slot("web", "db", "2");
    assert!(one.mounts.iter().all(|m| m.kind == MountKind::Volume));
    assert_eq!(
        one.mounts[1].source,
        anonymous_volume_name("web", "db", "1", "/data")
    );
    assert_ne!(one.mounts[0].source, two.mounts[0].source);
    assert_ne!(one.mounts[0].source, one.mounts[1].source);
    assert_eq!(one, s.container.for_slot("web", "db", "1"));
    assert_eq!(
        s.container.anonymous_volumes("web", "db", "1"),
        vec![one.mounts[0].source.clone(), one.mounts[1].source.clone()]
    );
    assert!(one.mounts[0].source.starts_with("web_db_1_anon_"));
}

#[test]
fn anonymous_volume_errors_are_located() {
    let e = web_errs(
        "services:\n  a:\n    image: x\n    volumes:\n      - /data\n      - /data\n      - type: bind\n        target: /b\n",
    );
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:6:9: services.a.volumes[1]: `/data` is mounted twice",
            "stacks/web/compose.yaml:7:9: services.a.volumes[2]: a bind mount needs a `source` (an absolute host path)",
        ]
    );
}

/// A spec without anonymous volumes resolves to itself, so its hash and drift are as before.
#[test]
fn a_spec_without_anonymous_volumes_is_its_own_slot_spec() {
    let s = service(
        "services:\n  a:\n    image: x\n    volumes: [d:/d, /etc/x:/x]\nvolumes:\n  d: {}\n",
    );
    assert_eq!(s.container.for_slot("web", "a", "1"), s.container);
    assert!(s.container.anonymous_volumes("web", "a", "1").is_empty());
}
