//! The history store on real SQLite files in temporary directories: round trip, pruning, the
//! stack filter, a corrupt file replaced, and writers in two threads (two connections) and two
//! processes' worth of connections at once.

use super::*;
use crate::model::history::{entry_from_hold, Hold, ServiceChanges};
use crate::model::outcome::{HoldReason, PassReason, PassResult};

fn entry(fleet: &str, commit: &str, stack: &str, result: PassResult) -> HistoryEntry {
    let mut e = entry_from_hold(Hold {
        fleet,
        commit,
        reason: HoldReason::InvalidCommit,
        trigger: PassReason::Start,
        message: "m",
        errors: Vec::new(),
        at: 1.0,
    });
    e.result = result;
    e.converged = true;
    e.detail = None;
    if !stack.is_empty() {
        e.changes.push(ServiceChanges {
            stack: stack.into(),
            service: "app".into(),
            created: 1,
            ..Default::default()
        });
    }
    e
}

#[test]
fn entries_round_trip_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path(), 10).unwrap();
    let a = entry("f", "c1", "web", PassResult::Applied);
    let b = entry("f", "c2", "db", PassResult::Failed);
    let ida = h.record(&a).unwrap();
    let idb = h.record(&b).unwrap();
    assert!(idb > ida);
    let got = h.entries(10, None, None).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].commit, "c2");
    assert_eq!(got[0].id, idb);
    let mut b_stored = b.clone();
    b_stored.id = idb;
    assert_eq!(got[0], b_stored);
    // Reopened (a restart): still there.
    drop(h);
    let h = History::open(dir.path(), 10).unwrap();
    assert_eq!(h.entries(1, None, None).unwrap()[0].commit, "c2");
    let ro = History::open_read_only(dir.path()).unwrap().unwrap();
    assert_eq!(ro.entries(10, Some("f"), None).unwrap().len(), 2);
    assert!(ro.entries(10, Some("other"), None).unwrap().is_empty());
}

#[test]
fn read_only_open_of_a_missing_history_is_none() {
    let dir = tempfile::tempdir().unwrap();
    assert!(History::open_read_only(dir.path()).unwrap().is_none());
    assert!(!path(dir.path()).exists(), "a reader creates nothing");
}

#[test]
fn entries_beyond_the_limit_are_pruned_per_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path(), 3).unwrap();
    for i in 0..5 {
        h.record(&entry("f", &format!("c{i}"), "web", PassResult::Applied))
            .unwrap();
    }
    h.record(&entry("g", "other", "web", PassResult::Applied))
        .unwrap();
    let f = h.entries(100, Some("f"), None).unwrap();
    let commits: Vec<&str> = f.iter().map(|e| e.commit.as_str()).collect();
    assert_eq!(commits, ["c4", "c3", "c2"]);
    assert_eq!(h.entries(100, Some("g"), None).unwrap().len(), 1);
    // The stack rows of pruned entries go with them.
    let conn = h.conn.lock().unwrap();
    let stacks: i64 = conn
        .query_row("SELECT count(*) FROM entry_stacks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stacks, 4);
    drop(conn);
    h.set_limit(1);
    h.record(&entry("f", "c5", "web", PassResult::Applied))
        .unwrap();
    assert_eq!(h.entries(100, Some("f"), None).unwrap().len(), 1);
}

#[test]
fn the_stack_filter_and_the_query_limit() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path(), 100).unwrap();
    h.record(&entry("f", "c1", "web", PassResult::Applied))
        .unwrap();
    h.record(&entry("f", "c2", "db", PassResult::Applied))
        .unwrap();
    h.record(&entry("f", "c3", "web", PassResult::Applied))
        .unwrap();
    let web = h.entries(100, None, Some("web")).unwrap();
    assert_eq!(
        web.iter().map(|e| e.commit.as_str()).collect::<Vec<_>>(),
        ["c3", "c1"]
    );
    assert!(h.entries(100, None, Some("nope")).unwrap().is_empty());
    assert_eq!(h.entries(1, None, Some("web")).unwrap()[0].commit, "c3");
    assert_eq!(h.entries(0, None, None).unwrap().len(), 0);
}

#[test]
fn good_commits_applied_cleanly_newest_first_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path(), 100).unwrap();
    h.record(&entry("f", "old", "web", PassResult::Applied))
        .unwrap();
    h.record(&entry("f", "good", "web", PassResult::Applied))
        .unwrap();
    let mut half = entry("f", "half", "web", PassResult::Applied);
    half.failures.push(crate::model::history::Failure {
        host: "a".into(),
        stack: "web".into(),
        service: "app".into(),
        step: "+ web-app-2".into(),
        error: "no such image".into(),
    });
    h.record(&half).unwrap();
    let mut unverified = entry("f", "unverified", "web", PassResult::Applied);
    unverified.converged = false;
    h.record(&unverified).unwrap();
    h.record(&entry("f", "bad", "web", PassResult::Failed))
        .unwrap();
    h.record(&entry(
        "f",
        "held",
        "",
        PassResult::Held {
            reason: HoldReason::DeletionGuard,
        },
    ))
    .unwrap();
    h.record(&entry("f", "good", "web", PassResult::Applied))
        .unwrap();
    assert_eq!(h.good_commits(10), ["good", "unverified", "old"]);
    assert_eq!(h.good_commits(1), ["good"]);
    assert_eq!(h.good_commits_of(Some("g"), 10), Vec::<String>::new());
}

#[test]
fn a_corrupt_file_is_moved_aside_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let file = path(dir.path());
    std::fs::write(
        &file,
        b"this is not a database, just garbage bytes ".repeat(200),
    )
    .unwrap();
    let h = History::open(dir.path(), 10).unwrap();
    h.record(&entry("f", "c1", "web", PassResult::Applied))
        .unwrap();
    assert_eq!(h.entries(10, None, None).unwrap().len(), 1);
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("history.db.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let kept = std::fs::read(dir.path().join(&aside[0])).unwrap();
    assert!(kept.starts_with(b"this is not a database"));
    // A reader of a corrupt file says so (it does not repair).
    std::fs::write(
        &file,
        b"garbage again, written over the database ".repeat(200),
    )
    .unwrap();
    let _ = std::fs::remove_file(dir.path().join("history.db-wal"));
    let _ = std::fs::remove_file(dir.path().join("history.db-shm"));
    assert!(History::open_read_only(dir.path())
        .and_then(|h| h.unwrap().entries(10, None, None))
        .is_err());
}

#[test]
fn garbage_written_over_a_used_database_is_replaced_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path(), 10).unwrap();
    h.record(&entry("f", "c1", "web", PassResult::Applied))
        .unwrap();
    // Garbage over the file (a disk, a bad copy) while no process has it open.
    drop(h);
    std::fs::write(path(dir.path()), b"garbage ".repeat(1000)).unwrap();
    let _ = std::fs::remove_file(dir.path().join("history.db-wal"));
    let _ = std::fs::remove_file(dir.path().join("history.db-shm"));
    let h = History::open(dir.path(), 10).unwrap();
    h.record(&entry("f", "c2", "web", PassResult::Applied))
        .unwrap();
    let got = h.entries(10, None, None).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].commit, "c2");
}

#[test]
fn writers_on_two_connections_at_once_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Created first, so both writers find the schema.
    History::open(dir.path(), 10_000).unwrap();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let dir = dir.path().to_path_buf();
            std::thread::spawn(move || {
                // Each its own connection, as two processes have.
                let h = History::open(&dir, 10_000).unwrap();
                for i in 0..100 {
                    h.record(&entry(
                        "f",
                        &format!("w{w}-{i}"),
                        "web",
                        PassResult::Applied,
                    ))
                    .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let h = History::open(dir.path(), 10_000).unwrap();
    let all = h.entries(MAX_QUERY, None, None).unwrap();
    assert_eq!(all.len(), 200);
    // Each writer's entries in its own order.
    for w in 0..2 {
        let mine: Vec<String> = all
            .iter()
            .rev()
            .filter(|e| e.commit.starts_with(&format!("w{w}-")))
            .map(|e| e.commit.clone())
            .collect();
        let expected: Vec<String> = (0..100).map(|i| format!("w{w}-{i}")).collect();
        assert_eq!(mine, expected);
    }
    let conn = h.conn.lock().unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

/// Not a test on its own: the writer process of `two_processes_writing_at_once_lose_nothing`
/// (this test binary run again with the directory and a tag in its environment).
#[test]
#[ignore = "run as a child process by two_processes_writing_at_once_lose_nothing"]
fn writer_process() {
    let (Some(dir), Ok(tag)) = (
        std::env::var_os("CONVOY_HISTORY_TEST_DIR"),
        std::env::var("CONVOY_HISTORY_TEST_TAG"),
    ) else {
        return;
    };
    let h = History::open(Path::new(&dir), 10_000).unwrap();
    for i in 0..200 {
        h.record(&entry(
            "f",
            &format!("{tag}-{i}"),
            "web",
            PassResult::Applied,
        ))
        .unwrap();
    }
}

#[test]
fn two_processes_writing_at_once_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    History::open(dir.path(), 10_000).unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<std::process::Child> = ["p0", "p1"]
        .into_iter()
        .map(|tag| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "infra::history::tests::writer_process",
                    "--ignored",
                    "--test-threads",
                    "1",
                ])
                .env("CONVOY_HISTORY_TEST_DIR", dir.path())
                .env("CONVOY_HISTORY_TEST_TAG", tag)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let h = History::open(dir.path(), 10_000).unwrap();
    let all = h.entries(MAX_QUERY, None, None).unwrap();
    for tag in ["p0", "p1"] {
        let mine = all
            .iter()
            .filter(|e| e.commit.starts_with(&format!("{tag}-")))
            .count();
        assert_eq!(mine, 200, "{tag}");
    }
    let conn = h.conn.lock().unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn a_state_directory_that_cannot_hold_a_history_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the state directory should be.
    let not_a_dir = dir.path().join("state");
    std::fs::write(&not_a_dir, "a file").unwrap();
    let e = History::open(&not_a_dir, 10).unwrap_err();
    assert!(e.to_string().contains("history database"), "{e}");
    assert!(History::open_read_only(&not_a_dir).unwrap().is_none());
}
