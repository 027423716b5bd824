//! The daemon's state machine in-process, where no engine is needed: what its status channel
//! publishes for a repository that does not validate, and that shutdown ends it.

use std::time::Duration;

use super::*;
use crate::infra::source::WorkDir;
use crate::model::outcome::HoldReason;

fn options(state: &std::path::Path) -> DaemonOptions {
    DaemonOptions {
        connect: ConnectOptions::new(state),
        resync: Duration::from_secs(1),
        heartbeat: Duration::from_millis(500),
        locked_fleet: None,
        poll: Duration::from_secs(60),
    }
}

#[tokio::test]
async fn an_invalid_repository_is_held_and_published_and_shutdown_ends_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("convoy.yaml"), "fleet: [unclosed\n").unwrap();
    let daemon = Daemon::new(
        std::sync::Arc::new(WorkDir::new(dir.path()).unwrap()),
        options(&dir.path().join("state")),
    )
    .unwrap();
    let mut status = daemon.subscribe();
    assert_eq!(status.borrow().phase, "starting");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::time::timeout(
        Duration::from_secs(15),
        daemon.run(async move {
            let _ = stopped.await;
        }),
    );
    let watch = async {
        tokio::time::timeout(
            Duration::from_secs(10),
            status.wait_for(|s| s.held == Some(HoldReason::InvalidCommit)),
        )
        .await
        .expect("the hold is published")
        .expect("the daemon is alive");
        assert_eq!(
            status.borrow().passes,
            0,
            "nothing runs without a good state"
        );
        assert_eq!(status.borrow().commit, None);
        let asked = std::time::Instant::now();
        stop.send(()).unwrap();
        asked
    };
    let (ended, asked) = tokio::join!(run, watch);
    ended.expect("the daemon ends after its shutdown");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        asked.elapsed()
    );
    assert_eq!(status.borrow().phase, "stopping");
}

#[test]
fn a_burst_of_requests_is_one_pass_with_every_distinct_reason() {
    let mut requests: Vec<PassReason> = Vec::new();
    let event = PassReason::EngineEvent {
        host: "h".into(),
        action: "die".into(),
        container: "c".into(),
    };
    for r in [event.clone(), PassReason::Resync, event.clone()] {
        enqueue(&mut requests, r);
    }
    assert_eq!(requests, vec![event, PassReason::Resync]);
}
