//! The working-directory source on real files: what it refuses to read (a FIFO, a device, a
//! file over its size cap, anything a link leads to outside the repository), that it never
//! blocks doing so, and what it still reads (a link inside the repository to a file inside it).
//! A commit's tree holds to the same caps and follows no link.
//!
//! Tests only, on temporary directories and git repositories; no engine.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use super::*;

fn write(root: &Path, rel: &str, contents: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, contents).unwrap();
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// `f` on another thread, failing the test when it takes longer than a few seconds (a read
/// that blocks on a FIFO never returns: its thread is left behind).
fn within_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("blocked: still reading after 5 s")
}

/// Reads `path` from the working files of `root`, as `--repo root` does.
fn read(root: &Path, path: &str) -> Result<Option<Vec<u8>>, String> {
    let root = root.to_path_buf();
    let path = path.to_string();
    within_seconds(move || {
        let tree = WorkDir::new(&root).unwrap().tree(None).unwrap().tree;
        tree.read(&path)
    })
}

fn list(root: &Path, dir: &str) -> Result<Vec<DirEntry>, String> {
    let tree = WorkDir::new(root).unwrap().tree(None).unwrap().tree;
    tree.list(dir)
}

/// Every manifest error of the working files of `root`, as `convoy validate` prints them.
fn load_errors(root: &Path) -> Vec<String> {
    let tree = WorkDir::new(root).unwrap().tree(None).unwrap().tree;
    match crate::manifest::load(tree.as_ref(), &BTreeMap::new()) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

const COMPOSE: &str = "services:\n  app:\n    image: busybox\n";

fn repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "convoy.yaml", b"fleet: t\n");
    write(dir.path(), "stacks/web/compose.yaml", COMPOSE.as_bytes());
    dir
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let repo = repository();
    std::fs::remove_file(repo.path().join("stacks/web/compose.yaml")).unwrap();
    mkfifo(&repo.path().join("stacks/web/compose.yaml"));
    mkfifo(&repo.path().join("stacks/web/.env"));
    let e = read(repo.path(), "stacks/web/compose.yaml").unwrap_err();
    assert_eq!(e, "it is a FIFO (named pipe), not a regular file");
    let root = repo.path().to_path_buf();
    let errors = within_seconds(move || load_errors(&root));
    assert_eq!(
        errors,
        vec!["stacks/web/compose.yaml: cannot read: it is a FIFO (named pipe), not a regular file"]
    );
    std::fs::remove_file(repo.path().join("stacks/web/compose.yaml")).unwrap();
    write(repo.path(), "stacks/web/compose.yaml", COMPOSE.as_bytes());
    let root = repo.path().to_path_buf();
    assert_eq!(
        within_seconds(move || load_errors(&root)),
        vec!["stacks/web/.env: cannot read: it is a FIFO (named pipe), not a regular file"]
    );
}

#[test]
fn a_link_to_a_device_is_refused_without_reading_it() {
    let repo = repository();
    for (link, target) in [
        ("convoy.yaml", "/dev/zero"),
        ("stacks/web/.env", "/dev/urandom"),
    ] {
        std::fs::remove_file(repo.path().join(link)).ok();
        symlink(target, repo.path().join(link)).unwrap();
        let e = read(repo.path(), link).unwrap_err();
        assert!(e.contains("leads outside the repository"), "{link}: {e}");
        assert!(e.contains(target), "{link}: {e}");
    }
}

#[test]
fn a_device_inside_the_repository_is_refused() {
    let repo = repository();
    let path = repo.path().join("stacks/web/.env");
    let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // /dev/null's numbers (1, 3). Creating a device needs CAP_MKNOD: without it, nothing to test.
    // SAFETY: a valid NUL-terminated path; mknod only creates a file.
    if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 3)) } != 0 {
        // CI runs as root, where it can: there a failure to create one is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot create a device node: {}",
            std::io::Error::last_os_error()
        );
        eprintln!("SKIPPED: cannot create a device node here");
        return;
    }
    assert_eq!(
        read(repo.path(), "stacks/web/.env").unwrap_err(),
        "it is a character device, not a regular file"
    );
}

#[test]
fn files_over_their_cap_are_refused_with_the_size() {
    let repo = repository();
    // A manifest may hold 4 MiB, an env file 1 MiB.
    let mut big = COMPOSE.as_bytes().to_vec();
    big.resize(4 * 1024 * 1024 + 13, b'#');
    write(repo.path(), "stacks/web/compose.yaml", &big);
    assert_eq!(
        read(repo.path(), "stacks/web/compose.yaml").unwrap_err(),
        "it is too large: 4194317 bytes, 13 over the cap of 4194304 bytes (CONVOY_MAX_FILE_SIZE changes it)"
    );
    write(
        repo.path(),
        "stacks/web/app.env",
        &vec![b'#'; 1024 * 1024 + 1],
    );
    assert_eq!(
        read(repo.path(), "stacks/web/app.env").unwrap_err(),
        "it is too large: 1048577 bytes, 1 over the cap of 1048576 bytes (CONVOY_MAX_FILE_SIZE changes it)"
    );
    // At the cap, read whole.
    big.truncate(4 * 1024 * 1024);
    write(repo.path(), "stacks/web/compose.yaml", &big);
    assert_eq!(
        read(repo.path(), "stacks/web/compose.yaml").unwrap(),
        Some(big)
    );
}

#[test]
fn one_configured_cap_applies_to_every_file() {
    let repo = repository();
    let tree = WorkDir::with_limits(repo.path(), Limits::uniform(20))
        .unwrap()
        .tree(None)
        .unwrap()
        .tree;
    assert_eq!(
        tree.read("convoy.yaml").unwrap(),
        Some(b"fleet: t\n".to_vec())
    );
    assert_eq!(
        tree.read("stacks/web/compose.yaml").unwrap_err(),
        format!(
            "it is too large: {} bytes, {} over the cap of 20 bytes (set by CONVOY_MAX_FILE_SIZE)",
            COMPOSE.len(),
            COMPOSE.len() - 20
        )
    );
}

#[test]
fn sizes_parse() {
    assert_eq!(parse_size("4194304"), Ok(4 << 20));
    assert_eq!(parse_size("8MiB"), Ok(8 << 20));
    assert_eq!(parse_size("512k"), Ok(512 << 10));
    assert_eq!(parse_size(" 1G "), Ok(1 << 30));
    assert!(parse_size("0").is_err());
    assert!(parse_size("lots").is_err());
    assert!(parse_size("-1").is_err());
    assert!(parse_size("99999999999999999999g").is_err());
}

/// A repository and, beside it, a folder outside it with what a link could reach.
fn repository_and_outside() -> (tempfile::TempDir, tempfile::TempDir) {
    let repo = repository();
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret.env", b"LEAKED=outside-secret\n");
    write(outside.path(), "stack/compose.yaml", COMPOSE.as_bytes());
    (repo, outside)
}

#[test]
fn an_env_file_linked_out_of_the_repository_is_refused() {
    let (repo, outside) = repository_and_outside();
    write(
        repo.path(),
        "stacks/web/compose.yaml",
        b"services:\n  app:\n    image: busybox\n    env_file: app.env\n",
    );
    symlink(
        outside.path().join("secret.env"),
        repo.path().join("stacks/web/app.env"),
    )
    .unwrap();
    let target = outside.path().canonicalize().unwrap().join("secret.env");
    let e = read(repo.path(), "stacks/web/app.env").unwrap_err();
    assert_eq!(
        e,
        format!(
            "it leads outside the repository (to `{}`); only files inside it are read",
            target.display()
        )
    );
    let errors = load_errors(repo.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("stacks/web/compose.yaml:4:15: services.app.env_file: cannot read env file `stacks/web/app.env`: it leads outside the repository"),
        "{errors:?}"
    );
    assert!(!errors[0].contains("outside-secret"), "{errors:?}");
}

#[test]
fn a_compose_file_or_stack_folder_linked_out_of_the_repository_is_refused() {
    let (repo, outside) = repository_and_outside();
    std::fs::remove_file(repo.path().join("stacks/web/compose.yaml")).unwrap();
    symlink(
        outside.path().join("stack/compose.yaml"),
        repo.path().join("stacks/web/compose.yaml"),
    )
    .unwrap();
    symlink(outside.path().join("stack"), repo.path().join("stacks/ext")).unwrap();
    // Through a `..` too: the path is resolved, not only compared as written.
    assert!(read(repo.path(), "stacks/../../x")
        .map_or_else(|e| e.contains("outside"), |found| found.is_none()));
    let e = list(repo.path(), "stacks/ext").unwrap_err();
    assert!(e.contains("leads outside the repository"), "{e}");
    let errors = load_errors(repo.path());
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("stacks/ext: cannot list: it leads outside the repository"),
        "{errors:?}"
    );
    assert!(
        errors[1]
            .starts_with("stacks/web/compose.yaml: cannot read: it leads outside the repository"),
        "{errors:?}"
    );
}

#[test]
fn links_inside_the_repository_stay_allowed() {
    let repo = repository();
    write(repo.path(), "shared/compose.yaml", COMPOSE.as_bytes());
    write(repo.path(), "shared/common.env", b"A=1\n");
    std::fs::create_dir_all(repo.path().join("stacks/api")).unwrap();
    symlink(
        "../../shared/compose.yaml",
        repo.path().join("stacks/api/compose.yaml"),
    )
    .unwrap();
    symlink("../shared", repo.path().join("stacks/linked")).unwrap();
    symlink(
        "../../shared/common.env",
        repo.path().join("stacks/web/.env"),
    )
    .unwrap();
    assert_eq!(load_errors(repo.path()), Vec::<String>::new());
    assert!(list(repo.path(), "stacks")
        .unwrap()
        .iter()
        .any(|e| e.name == "linked" && e.is_dir));
    // The repository root itself may be reached through a link.
    let parent = tempfile::tempdir().unwrap();
    symlink(repo.path(), parent.path().join("fleet")).unwrap();
    assert_eq!(
        load_errors(&parent.path().join("fleet")),
        Vec::<String>::new()
    );
}

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

#[test]
fn a_revision_follows_no_link_and_holds_to_the_caps() {
    let (repo, outside) = repository_and_outside();
    symlink(
        outside.path().join("secret.env"),
        repo.path().join("stacks/web/.env"),
    )
    .unwrap();
    write(repo.path(), "stacks/big/compose.yaml", &[b'#'; 64]);
    git(repo.path(), &["init", "-q"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "links"]);
    let source = open_with(repo.path(), Some("HEAD"), Limits::uniform(60)).unwrap();
    let tree = source.tree(None).unwrap();
    let e = tree.tree.read("stacks/web/.env").unwrap_err();
    assert!(e.starts_with("it is a symbolic link at "), "{e}");
    assert_eq!(
        tree.tree.read("stacks/big/compose.yaml").unwrap_err(),
        "it is too large: 64 bytes, 4 over the cap of 60 bytes (set by CONVOY_MAX_FILE_SIZE)"
    );
    assert_eq!(
        tree.tree.read("convoy.yaml").unwrap(),
        Some(b"fleet: t\n".to_vec())
    );
}
