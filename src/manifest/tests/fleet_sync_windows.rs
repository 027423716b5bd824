//! `sync_windows:` in `convoy.yaml`: the values read, the defaults, and every error located.

use super::*;
use crate::model::sync_window::WindowKind;

const COMPOSE: &str = "services:\n  app:\n    image: busybox:1\n";

fn repo(fleet: &str) -> Vec<(&'static str, String)> {
    vec![
        ("convoy.yaml", fleet.to_string()),
        ("stacks/web/compose.yaml", COMPOSE.to_string()),
        ("stacks/db/compose.yaml", COMPOSE.to_string()),
    ]
}

#[test]
fn windows_are_read_with_their_defaults() {
    let r = repo(
        "fleet: prod\nsync_windows:\n  - kind: deny\n    schedule: \"0 22 * * 5\"\n    duration: 60h\n    timezone: Europe/Berlin\n    stacks: [web]\n    manual_sync: false\n  - {kind: allow, schedule: \"@daily\", duration: 30m}\n",
    );
    let d = ok(&files(&r));
    let w = &d.settings.sync_windows;
    assert_eq!(w.len(), 2);
    assert_eq!(w[0].kind, WindowKind::Deny);
    assert_eq!(w[0].schedule.text(), "0 22 * * 5");
    assert_eq!(w[0].schedule.timezone(), "Europe/Berlin");
    assert_eq!(w[0].duration_secs, 60 * 3600);
    assert_eq!(w[0].stacks, Some(vec!["web".to_string()]));
    assert!(!w[0].manual_sync);
    // Defaults: every stack, UTC, manual syncs allowed.
    assert_eq!(w[1].kind, WindowKind::Allow);
    assert_eq!(w[1].stacks, None);
    assert_eq!(w[1].schedule.timezone(), "UTC");
    assert_eq!(w[1].duration_secs, 1800);
    assert!(w[1].manual_sync);
    assert!(w[1].names("db") && w[0].names("web") && !w[0].names("db"));
}

#[test]
fn no_windows_is_the_default() {
    let d = ok(&files(&repo("fleet: prod\n")));
    assert!(d.settings.sync_windows.is_empty());
}

#[test]
fn bad_values_are_located_errors() {
    let r = repo(
        "fleet: prod\nsync_windows:\n  - kind: freeze\n    schedule: \"0 25 * * *\"\n    duration: soon\n    timezone: Mars/Olympus\n    stacks: [web, wbe]\n    manul_sync: true\n",
    );
    let e = errs(&files(&r));
    let has = |needle: &str| {
        assert!(
            e.iter().any(|l| l.contains(needle)),
            "no error with `{needle}` in:\n{}",
            e.join("\n")
        )
    };
    has("convoy.yaml:3:11: sync_windows[0].kind: unknown window kind `freeze` (expected `deny` or `allow`)");
    has("convoy.yaml:5:15: sync_windows[0].duration: invalid duration `soon`");
    has("convoy.yaml:6:15: sync_windows[0].timezone: unknown time zone `Mars/Olympus`");
    has("convoy.yaml:8:5: sync_windows[0].manul_sync: unknown key, did you mean `manual_sync`?");
}

#[test]
fn an_unknown_stack_name_is_an_error_once_the_stacks_are_read() {
    // An error, not a warning: the misspelt stack would be left out of the freeze.
    let r = repo(
        "fleet: prod\nsync_windows:\n  - kind: deny\n    schedule: \"0 22 * * 5\"\n    duration: 60h\n    stacks: [web, wbe]\n",
    );
    assert_eq!(
        errs(&files(&r)),
        vec!["convoy.yaml:6:19: sync_windows[0].stacks[1]: no stack is named `wbe` (the stacks are: db, web)"],
    );
    let r = repo(
        "fleet: prod\nsync_windows:\n  - kind: deny\n    schedule: \"0 22 * * 5\"\n    duration: 60h\n    stacks: [web, db, web]\n",
    );
    assert_eq!(
        errs(&files(&r)),
        vec!["convoy.yaml:6:23: sync_windows[0].stacks[2]: stack `web` is listed twice"],
    );
}

#[test]
fn a_bad_schedule_and_missing_keys_are_located() {
    let r = repo(
        "fleet: prod\nsync_windows:\n  - kind: deny\n    schedule: \"0 25 * * *\"\n    duration: 1h\n  - kind: allow\n  - deny\n",
    );
    let e = errs(&files(&r));
    let has = |needle: &str| {
        assert!(
            e.iter().any(|l| l.contains(needle)),
            "no error with `{needle}` in:\n{}",
            e.join("\n")
        )
    };
    has("convoy.yaml:4:15: sync_windows[0].schedule:");
    has("sync_windows[1].schedule: missing `schedule`");
    has("sync_windows[1].duration: missing `duration`");
    has("sync_windows[2]: expected a map");
    let r = repo(
        "fleet: prod\nsync_windows:\n  - {kind: deny, schedule: \"* * * * *\", duration: 0s}\n",
    );
    let e = errs(&files(&r));
    assert!(
        e.iter()
            .any(|l| l.contains("sync_windows[0].duration: expected a duration of at least 1s")),
        "{e:?}"
    );
    let r = repo("fleet: prod\nsync_windows: deny\n");
    let e = errs(&files(&r));
    assert!(
        e.iter()
            .any(|l| l.contains("sync_windows: expected a list of windows")),
        "{e:?}"
    );
}
