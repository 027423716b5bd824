//! The refusal to write a secret to a persistent disk (`write_secrets`), exercised for real:
//! a local shell whose `mount` is a shim that fails, as it does for a user who is not root,
//! so the path the test fleet (which runs as root, where the tmpfs mount always succeeds)
//! never takes is run end to end. Only the child shell's `PATH` is changed, never the test
//! process's environment; nothing is mounted.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;

/// A value no message may show.
const VALUE: &[u8] = b"pa55w0rd-never-shown\n";

/// A folder on a persistent disk: the first of the candidates whose file system is not a
/// tmpfs (the refusal is only reached there), or the test fails saying why.
fn on_disk() -> tempfile::TempDir {
    let candidates: Vec<PathBuf> = vec![
        "/var/tmp".into(),
        std::env::temp_dir(),
        env!("CARGO_MANIFEST_DIR").into(),
    ];
    for c in candidates {
        let Ok(dir) = tempfile::tempdir_in(&c) else {
            continue;
        };
        let out = std::process::Command::new("stat")
            .args(["-f", "-c", "%T"])
            .arg(dir.path())
            .output()
            .expect("stat runs");
        let fs = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && fs != "tmpfs" && fs != "ramfs" {
            return dir;
        }
    }
    panic!("no folder on a persistent disk to test the refusal in");
}

/// A shell whose `PATH` starts with a folder holding a `mount` that always fails, and the
/// file the shim touches when it is called (so the test knows the script tried).
fn failing_mount_shell(root: &Path) -> (HostShell, PathBuf) {
    let shims = root.join("shims");
    std::fs::create_dir(&shims).unwrap();
    let called = root.join("mount-called");
    let shim = shims.join("mount");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\necho called > {}\necho 'mount: only root can do that' >&2\nexit 1\n",
            quote(&called.to_string_lossy())
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        shims.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    );
    (HostShell::LocalWith(vec![("PATH".into(), path)]), called)
}

/// Every regular file under `dir`, shims and marker aside.
fn files_under(dir: &Path, skip: &[&Path]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if skip.iter().any(|s| p.starts_with(s)) {
                continue;
            }
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn a_secret_is_refused_on_a_persistent_disk_unless_the_fleet_file_allows_it() {
    let root = on_disk();
    let (shell, called) = failing_mount_shell(root.path());
    let shims = root.path().join("shims");
    let mut host = HostFiles {
        files_dir: root.path().join("files").to_string_lossy().into_owned(),
        secrets_dir: root.path().join("secrets").to_string_lossy().into_owned(),
        secrets_on_disk: false,
    };
    let value = SecretValue {
        data: VALUE.to_vec(),
    };
    let path = format!("{}gen1", host.secret_prefix("f1", "web", "db_password"));

    let e = write_secrets(
        &shell,
        "h1",
        &host,
        "f1",
        &[(path.clone(), &value, None, None, 0o400)],
    )
    .await
    .unwrap_err();
    assert!(called.exists(), "the script never tried to mount a tmpfs");
    assert!(e.contains("host `h1`"), "{e}");
    assert!(e.contains("secrets_on_disk: true"), "{e}");
    assert!(e.contains("persistent disk"), "{e}");
    let shown = String::from_utf8_lossy(VALUE);
    assert!(!e.contains(shown.trim()), "the value is in the error: {e}");
    let written = files_under(root.path(), &[&shims, &called]);
    assert!(
        written.is_empty(),
        "written despite the refusal: {written:?}"
    );

    // Allowed by the fleet file: written with its mode, and mount never called.
    std::fs::remove_file(&called).unwrap();
    host.secrets_on_disk = true;
    write_secrets(
        &shell,
        "h1",
        &host,
        "f1",
        &[(path.clone(), &value, None, None, 0o400)],
    )
    .await
    .unwrap();
    assert!(!called.exists(), "mount was called with secrets_on_disk");
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o400);
    assert_eq!(std::fs::read(&path).unwrap(), VALUE);
    assert_eq!(
        files_under(root.path(), &[&shims]),
        vec![PathBuf::from(&path)]
    );
}
