//! The daemon's history in-process, where no engine is needed: a repository that does not
//! validate is recorded once as held, with its located error and the trigger that brought it,
//! and the writer stores it before `run` returns (shutdown drains the queue).

use std::sync::Arc;
use std::time::Duration;

use crate::daemon::{Daemon, DaemonOptions};
use crate::infra::fleet::ConnectOptions;
use crate::infra::history::History;
use crate::infra::source::WorkDir;
use crate::model::outcome::{HoldReason, PassReason, PassResult};

#[tokio::test]
async fn a_held_commit_is_recorded_once_and_stored_before_the_daemon_ends() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("convoy.yaml"), "fleet: [unclosed\n").unwrap();
    let state = dir.path().join("state");
    let history = Arc::new(History::open(&state, 10).unwrap());
    let mut daemon = Daemon::new(
        Arc::new(WorkDir::new(&repo).unwrap()),
        DaemonOptions {
            connect: ConnectOptions::new(&state),
            resync: Duration::from_millis(200),
            heartbeat: Duration::from_millis(500),
            locked_fleet: Some("prod".into()),
            poll: Duration::from_secs(60),
        },
    )
    .unwrap();
    daemon.set_history(history.clone());
    assert!(daemon.api_handle().history.is_some());
    let mut status = daemon.subscribe();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::time::timeout(
        Duration::from_secs(15),
        daemon.run(async move {
            let _ = stopped.await;
        }),
    );
    let watch = async {
        status
            .wait_for(|s| s.held == Some(HoldReason::InvalidCommit))
            .await
            .unwrap();
        // Resyncs come and go while it is held: still one entry.
        tokio::time::sleep(Duration::from_millis(700)).await;
        stop.send(()).unwrap();
    };
    let (ended, ()) = tokio::join!(run, watch);
    ended.expect("the daemon ends");
    let entries = history.entries(10, None, None).unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(e.fleet, "prod");
    assert_eq!(e.commit, "unversioned");
    assert_eq!(
        e.result,
        PassResult::Held {
            reason: HoldReason::InvalidCommit
        }
    );
    assert_eq!(e.trigger, PassReason::Start);
    assert!(
        e.errors.iter().any(|m| m.starts_with("convoy.yaml:")),
        "{e:?}"
    );
}
