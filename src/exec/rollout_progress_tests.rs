//! The rollout driver's progress hook (`ExecOptions::rollout_progress`), without engines: a
//! batch whose step fails opens, is reported, and the rollout's end is reported once. What a
//! replica's health does to a rollout is tested on the fleet (`tests/e2e`), not here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::rollout::{Driver, Gate, ProgressHook};
use crate::model::rollout::{
    Member, Rollout, RolloutProgress, RolloutResult, UpdateConfig, UpdateOrder,
};

fn member(step: usize, batch: usize) -> Member {
    Member {
        step,
        host: "h1".into(),
        name: format!("shop-web-{}", step + 1),
        batch,
        order: UpdateOrder::StopFirst,
        keep_prev: true,
        grace_secs: None,
    }
}

#[tokio::test]
async fn the_hook_hears_each_batch_open_and_the_end() {
    let rollout = Rollout {
        stack: "shop".into(),
        service: "web".into(),
        to_hash: "abc".into(),
        commit: "c1".into(),
        replicas: 2,
        update: UpdateConfig::default(),
        rollback: UpdateConfig::rollback_default(),
        deadline_ms: 1_000,
        readiness: None,
        members: vec![member(0, 0), member(1, 1)],
        batches: 2,
        changed: Vec::new(),
        kept: Vec::new(),
        record_images: BTreeMap::new(),
        stale_records: Vec::new(),
    };
    let (gate, mut gate_rx) = watch::channel(Gate::default());
    let (step0, rx0) = watch::channel(None);
    let (_step1, rx1) = watch::channel(None);
    let heard: Arc<Mutex<Vec<RolloutProgress>>> = Arc::default();
    let sink = heard.clone();
    let driver = Driver {
        rollout,
        fleet: "prod".into(),
        engines: Arc::new(BTreeMap::new()),
        shells: BTreeMap::new(),
        gate,
        steps: BTreeMap::from([(0, rx0), (1, rx1)]),
        errors: Arc::new(Mutex::new(BTreeMap::from([(
            0,
            "the engine refused".to_string(),
        )]))),
        cancel: CancellationToken::new(),
        progress: Some(ProgressHook(Arc::new(move |p: &RolloutProgress| {
            sink.lock().unwrap().push(p.clone())
        }))),
        stopping: Default::default(),
        proxy: None,
    };
    let run = tokio::spawn(driver.run());
    // The first batch opens; its step fails: the rollout rolls back (no engine to restore on,
    // which is logged) and ends.
    gate_rx.wait_for(|g| g.opened == 1).await.unwrap();
    step0.send(Some(false)).unwrap();
    let report = run.await.unwrap();
    assert!(
        matches!(&report.result, RolloutResult::RolledBack { batch: 1, .. }),
        "{report:?}"
    );
    let heard = heard.lock().unwrap().clone();
    let seen: Vec<(u32, u32, u32, u32, bool)> = heard
        .iter()
        .map(|p| (p.batch, p.batches, p.updated, p.replicas, p.done))
        .collect();
    assert_eq!(seen, vec![(1, 2, 0, 2, false), (1, 2, 0, 2, true)]);
    assert!(heard
        .iter()
        .all(|p| p.stack == "shop" && p.service == "web"));
}
