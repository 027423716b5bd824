//! The git-server harness (`gitserver.rs`) checked with the system `git` alone, before any
//! daemon test relies on it: HTTPS clone, push and fetch with the credentials files and the
//! test CA, refusals of wrong credentials and of an unknown CA, and SSH to a fleet host with
//! strict host key checking, refused when the host's key is unknown or wrong.
//!
//! These tests judge the harness, not Convoy: they must not run the `convoy` binary.

use std::path::Path;

use crate::fleet::Hosts;
use crate::gitserver::*;

#[test]
fn basic_auth_header_is_standard_base64() {
    // RFC 7617's example, and the three padding cases.
    assert_eq!(
        auth_header("Aladdin", "open sesame"),
        "Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
    assert_eq!(auth_header("a", ""), "Authorization: Basic YTo=");
    assert_eq!(auth_header("ab", "c"), "Authorization: Basic YWI6Yw==");
    assert_eq!(auth_header("ab", "cd"), "Authorization: Basic YWI6Y2Q=");
}

/// The first line of a credentials file.
fn read_secret(p: &Path) -> String {
    std::fs::read_to_string(p)
        .expect("credentials file")
        .trim_end()
        .to_string()
}

fn assert_no_secret(srv: &HttpsGit, text: &str) {
    for s in srv.secret_values() {
        assert!(!text.contains(&s), "a secret value leaked into: {text}");
    }
}

/// A clone, a push and a fetch over HTTPS, as the token file's user and as the user:password
/// file's; the server's repository on disk is the judge of what arrived.
#[test]
fn https_clone_push_and_fetch_with_the_credentials_files_and_the_ca() {
    let Some(srv) = HttpsGit::try_start() else {
        return;
    };
    srv.create_repo("cfg");
    let url = srv.url("cfg");
    assert_eq!(url, format!("https://127.0.0.1:{}/git/cfg.git", srv.port()));

    let token = read_secret(&srv.credentials_file_token());
    assert_eq!(token, srv.token());
    let as_token = srv.env_as(TOKEN_USER, &token);
    let first = push_commit(
        &url,
        &as_token,
        "main",
        &[("convoy.yaml", "fleet: one\n")],
        "first",
    );
    assert_eq!(first.len(), 40, "a full commit id: {first}");
    let on_server = git_in(
        &srv.repo_path("cfg"),
        &[],
        &["rev-parse", "refs/heads/main"],
    );
    assert_eq!(on_server, first, "the push reached the server's repository");

    let work = tempfile::tempdir().unwrap();
    git_in(work.path(), &as_token, &["clone", "-q", &url, "clone"]);
    let clone = work.path().join("clone");
    assert_eq!(git_in(&clone, &[], &["rev-parse", "HEAD"]), first);
    assert_eq!(
        std::fs::read_to_string(clone.join("convoy.yaml")).unwrap(),
        "fleet: one\n"
    );

    let user_password = read_secret(&srv.credentials_file_user_password());
    let (user, password) = user_password.split_once(':').expect("user:password");
    assert_eq!((user, password), (PASSWORD_USER, srv.password()));
    let as_user = srv.env_as(user, password);
    let second = push_commit(
        &url,
        &as_user,
        "main",
        &[("stacks/web/compose.yaml", "services: {}\n")],
        "second",
    );
    assert_ne!(second, first);
    git_in(&clone, &as_token, &["fetch", "-q", "origin"]);
    assert_eq!(git_in(&clone, &[], &["rev-parse", "origin/main"]), second);
    assert_eq!(
        git_in(&clone, &[], &["rev-parse", "origin/main^"]),
        first,
        "push_commit builds on the branch"
    );
    let listed = git_in(&clone, &as_user, &["ls-remote", &url, "refs/heads/main"]);
    assert!(listed.starts_with(&second), "ls-remote: {listed}");

    // A second branch starts from nothing and leaves main alone.
    let other = push_commit(&url, &srv.push_env(), "prod", &[("a", "b")], "prod");
    let srv_repo = srv.repo_path("cfg");
    assert_eq!(git_in(&srv_repo, &[], &["rev-parse", "prod"]), other);
    assert_eq!(git_in(&srv_repo, &[], &["rev-parse", "main"]), second);
}

/// Basic auth is enforced: no credentials, a wrong password, and the token sent as the other
/// user's password all get 401; git fails without leaking a secret.
#[test]
fn https_refuses_wrong_credentials_with_401() {
    let Some(srv) = HttpsGit::try_start() else {
        return;
    };
    srv.create_repo("cfg");
    let refs = "/git/cfg.git/info/refs?service=git-upload-pack";
    assert_eq!(srv.http_status(refs, None), 401, "no credentials");
    assert_eq!(
        srv.http_status(refs, Some((PASSWORD_USER, "wrong"))),
        401,
        "a wrong password"
    );
    assert_eq!(
        srv.http_status(refs, Some((PASSWORD_USER, srv.token()))),
        401,
        "the token is x-access-token's, not convoy's"
    );
    assert_eq!(
        srv.http_status(refs, Some((TOKEN_USER, srv.password()))),
        401,
        "the password is convoy's, not x-access-token's"
    );
    assert_eq!(srv.http_status(refs, Some((TOKEN_USER, srv.token()))), 200);
    assert_eq!(
        srv.http_status(refs, Some((PASSWORD_USER, srv.password()))),
        200
    );

    let dir = tempfile::tempdir().unwrap();
    let url = srv.url("cfg");
    let out = git_try(
        dir.path(),
        &srv.env_as(PASSWORD_USER, "wrong"),
        &["ls-remote", &url],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a wrong password must be refused");
    // After a 401 git asks for credentials, and no prompt is allowed.
    assert!(
        stderr.contains("could not read Username") || stderr.contains("Authentication failed"),
        "refused for the credentials: {stderr}"
    );
    assert_no_secret(&srv, &stderr);
    let out = git_try(dir.path(), &srv.env_ca_only(), &["ls-remote", &url]);
    assert!(!out.status.success(), "no credentials must be refused");
    let out = git_try(dir.path(), &srv.push_env(), &["ls-remote", &url]);
    assert!(
        out.status.success(),
        "the right password: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Without the test CA, git refuses the server's certificate (the check is real).
#[test]
fn https_without_the_ca_refuses_the_certificate() {
    let Some(srv) = HttpsGit::try_start() else {
        return;
    };
    srv.create_repo("cfg");
    // The right credentials, but the system's CAs only.
    let env = git_config_env(&[(
        "http.extraHeader",
        auth_header(PASSWORD_USER, srv.password()),
    )]);
    let dir = tempfile::tempdir().unwrap();
    let out = git_try(dir.path(), &env, &["ls-remote", &srv.url("cfg")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unknown CA must be refused");
    assert!(
        stderr.contains("certificate"),
        "refused for the certificate: {stderr}"
    );
    assert_no_secret(&srv, &stderr);
}

/// Clone, push and fetch over ssh:// to a fleet host, as the daemon runs ssh: batch mode and
/// strict host key checking.
#[test]
fn ssh_clone_push_and_fetch_with_strict_host_key_checking() {
    let Some(hosts) = Hosts::get() else { return };
    let remote = SshGit::on_fleet_host(&hosts, 2);
    let url = remote.url();
    assert!(
        url.starts_with(&format!("ssh://root@{}/", hosts.env["HOST2_ADDR"])),
        "{url}"
    );
    // The fleet's known_hosts names hosts by address: the harness uses it as it is.
    assert_eq!(remote.known_hosts(), Path::new(&hosts.known_hosts()));
    let env = remote.git_env();
    // Strict host key checking, and no other value for it anywhere on the command line.
    let ssh = &env[0].1;
    assert!(ssh.contains("StrictHostKeyChecking=yes"));
    assert_eq!(ssh.matches("HostKeyChecking").count(), 1, "{ssh}");

    let first = push_commit(&url, &env, "main", &[("convoy.yaml", "fleet: s\n")], "one");
    assert_eq!(
        git_in(remote.repo_path(), &[], &["rev-parse", "refs/heads/main"]),
        first
    );
    let work = tempfile::tempdir().unwrap();
    git_in(work.path(), &env, &["clone", "-q", &url, "clone"]);
    let clone = work.path().join("clone");
    assert_eq!(git_in(&clone, &[], &["rev-parse", "HEAD"]), first);

    let second = push_commit(&url, &env, "main", &[("convoy.yaml", "fleet: t\n")], "two");
    git_in(&clone, &env, &["fetch", "-q", "origin"]);
    assert_eq!(git_in(&clone, &[], &["rev-parse", "origin/main"]), second);
    assert_eq!(git_in(&clone, &[], &["rev-parse", "origin/main^"]), first);
}

/// The same command with a known_hosts that lacks the host, or holds another host's key for
/// its address, is refused: host key checking is strict, not advisory.
#[test]
fn ssh_with_an_unknown_or_wrong_host_key_is_refused() {
    let Some(hosts) = Hosts::get() else { return };
    let remote = SshGit::on_fleet_host(&hosts, 2);
    let dir = tempfile::tempdir().unwrap();

    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    let host1_key = std::fs::read_to_string(
        Path::new(&hosts.env["HOST1_DIR"]).join("ssh_host_ed25519_key.pub"),
    )
    .unwrap();
    let key: Vec<&str> = host1_key.split_whitespace().take(2).collect();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, format!("{} {} {}\n", remote.addr(), key[0], key[1])).unwrap();

    for (what, kh) in [("unknown", &empty), ("wrong", &wrong)] {
        let env = vec![(
            "GIT_SSH_COMMAND".to_string(),
            strict_ssh_command(&remote.git_ssh_command_with_known_hosts(kh)),
        )];
        let out = git_try(dir.path(), &env, &["ls-remote", &remote.url()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a {what} host key must be refused");
        assert!(
            stderr.contains("Host key verification failed"),
            "{what}: {stderr}"
        );
    }
    // And the harness's own known_hosts is accepted: the refusals above were for the key.
    let out = git_try(dir.path(), &remote.git_env(), &["ls-remote", &remote.url()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
