//! `convoy rollback`'s writes on real repositories made by the system `git` in temporary
//! folders: a working tree gets the revert checked out, a bare repository gets it pushed, and
//! a dirty tree, a branch that moved, a detached HEAD or another branch change nothing.

use super::branch_tests::{commit, git, repos, write};
use super::*;

fn open(spec: &std::path::Path) -> Result<RollbackRepo, RevertError> {
    RollbackRepo::open(spec.to_str().unwrap(), OpenOptions::default())
}

#[test]
fn a_working_tree_gets_the_revert_committed_and_checked_out() {
    let r = repos("main");
    write(&r.work, "app.yaml", "v1\n");
    let c1 = commit(&r.work, "v1");
    write(&r.work, "app.yaml", "v2\n");
    let c2 = commit(&r.work, "v2");
    write(&r.work, "app.yaml", "v3\n");
    write(&r.work, "new.yaml", "added in v3\n");
    let c3 = commit(&r.work, "v3");

    let repo = open(&r.work).unwrap();
    assert!(repo.is_work_tree());
    assert_eq!(repo.branch(), "main");
    assert_eq!(repo.tip(), c3);
    let reverted: Vec<String> = repo
        .reverted(&c1)
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(reverted, vec![c3.clone(), c2.clone()]);
    assert!(!repo.same_tree(&c1, &c3).unwrap());
    assert_eq!(repo.resolve("HEAD~2").unwrap(), c1);

    let new = repo
        .write(&c1, "Roll back\n\nConvoy-Rollback-To: x\n", false, false)
        .unwrap();
    assert_eq!(git(&r.work, &["rev-parse", "HEAD"]), new);
    assert_eq!(git(&r.work, &["rev-parse", "HEAD^"]), c3);
    assert_eq!(
        git(&r.work, &["rev-parse", "HEAD^{tree}"]),
        git(&r.work, &["rev-parse", &format!("{c1}^{{tree}}")])
    );
    // Files and index follow: nothing left to commit, the file removed, the old value back.
    assert_eq!(git(&r.work, &["status", "--porcelain"]), "");
    assert_eq!(
        std::fs::read_to_string(r.work.join("app.yaml")).unwrap(),
        "v1\n"
    );
    assert!(!r.work.join("new.yaml").exists());
    assert_eq!(
        git(&r.work, &["log", "-1", "--format=%B"]),
        "Roll back\n\nConvoy-Rollback-To: x"
    );
}

#[test]
fn a_dirty_working_tree_is_refused_and_nothing_changes() {
    let r = repos("main");
    let c1 = git(&r.work, &["rev-parse", "HEAD"]);
    write(&r.work, "app.yaml", "v2\n");
    let c2 = commit(&r.work, "v2");
    write(&r.work, "untracked.txt", "x\n");
    let repo = open(&r.work).unwrap();
    let err = repo.write(&c1, "m", false, false).unwrap_err();
    match &err {
        RevertError::Dirty { paths, .. } => assert_eq!(paths, &vec!["untracked.txt".to_string()]),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("uncommitted changes"), "{err}");
    assert_eq!(git(&r.work, &["rev-parse", "HEAD"]), c2);
    assert_eq!(
        std::fs::read_to_string(r.work.join("app.yaml")).unwrap(),
        "v2\n"
    );
}

#[test]
fn a_bare_repository_gets_the_revert_pushed_and_a_moved_branch_is_refused() {
    let r = repos("main");
    let c1 = git(&r.work, &["rev-parse", "HEAD"]);
    let c2 = r.push("app.yaml", "v2\n", "main");

    let repo = open(&r.bare).unwrap();
    assert!(!repo.is_work_tree());
    assert_eq!(repo.tip(), c2);
    let new = repo.write(&c1, "Roll back to v1\n", false, true).unwrap();
    assert_eq!(git(&r.bare, &["rev-parse", "main"]), new);
    assert_eq!(git(&r.bare, &["rev-parse", "main^"]), c2);
    assert_eq!(
        git(&r.bare, &["rev-parse", "main^{tree}"]),
        git(&r.bare, &["rev-parse", &format!("{c1}^{{tree}}")])
    );
    // The source reads any commit of the clone.
    let tree = repo.source().tree(Some(&c1)).unwrap();
    assert!(tree.tree.read("README").unwrap().is_some());

    // Read at `new`; someone pushes before the rollback writes: refused, the branch kept.
    let repo = open(&r.bare).unwrap();
    git(&r.work, &["pull", "-q", r.bare.to_str().unwrap(), "main"]);
    let c4 = r.push("app.yaml", "v4\n", "main");
    let err = repo.write(&c1, "m", false, true).unwrap_err();
    assert!(matches!(err, RevertError::Moved { .. }), "{err:?}");
    assert_eq!(git(&r.bare, &["rev-parse", "main"]), c4);
}

#[test]
fn a_detached_head_or_another_branch_is_an_invalid_argument() {
    let r = repos("main");
    let err = RollbackRepo::open(
        r.work.to_str().unwrap(),
        OpenOptions {
            branch: Some("prod".into()),
            ..Default::default()
        },
    )
    .err()
    .unwrap();
    assert!(matches!(err, RevertError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("check out `prod` first"), "{err}");
    git(&r.work, &["checkout", "-q", "--detach"]);
    let err = open(&r.work).err().unwrap();
    assert!(err.to_string().contains("detached"), "{err}");
    let err = RollbackRepo::open("/nonexistent/convoy-repo", OpenOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, RevertError::Invalid(_)), "{err:?}");
}
