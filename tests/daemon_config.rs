//! `convoy daemon --config`: the file under the flags, the defaults, every located error, the
//! bound on the file and random input, and `systemd/daemon.yaml.example` kept valid.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use convoy::cli::DaemonArgs;
use convoy::cmd::daemon_config::{
    resolve, resolve_bytes, ConfigError, DaemonConfig, KEYS, MAX_CONFIG_BYTES,
};
use proptest::prelude::*;

const FILE: &str = "/etc/convoy/daemon.yaml";

fn from_text(cli: DaemonArgs, text: &str) -> Result<DaemonConfig, ConfigError> {
    resolve_bytes(cli, None, Path::new(FILE), text.as_bytes())
}

fn ok(text: &str) -> DaemonConfig {
    from_text(DaemonArgs::default(), text).unwrap_or_else(|e| panic!("{e}"))
}

/// The error's lines.
fn err(cli: DaemonArgs, text: &str) -> Vec<String> {
    match from_text(cli, text) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    }
}

fn err1(text: &str) -> String {
    let lines = err(DaemonArgs::default(), text);
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines[0].clone()
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/daemon.yaml.example")
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn without_a_config_every_default_applies() {
    let c = resolve(DaemonArgs::default(), None).unwrap();
    assert_eq!(
        c,
        DaemonConfig {
            repo: ".".into(),
            branch: None,
            path: None,
            poll_interval: Duration::from_secs(60),
            resync: Duration::from_secs(30),
            heartbeat: Duration::from_millis(1000),
            lock_timeout: Duration::from_secs(60),
            listen: Some(addr("127.0.0.1:7878")),
            insecure_listen: false,
            tls: None,
            api_token_file: None,
            metrics_token: false,
            webhook_secret_file: None,
            git_credentials_file: None,
            git_ca_file: None,
            require_signed: false,
            allowed_signers: None,
            gpg_keyring: None,
            age_key_file: None,
            state_dir: None,
            notifications: Vec::new(),
        }
    );
    // An empty file, or comments only, is the same.
    assert_eq!(ok(""), c);
    assert_eq!(ok("# nothing set\n\n"), c);
}

#[test]
fn every_key_is_read_from_the_file() {
    let c = ok("repo: /srv/fleet\n\
                branch: prod\n\
                path: deploy/fleet\n\
                poll-interval: 5\n\
                resync: 0x10\n\
                heartbeat-ms: 250\n\
                lock-timeout: 0\n\
                listen: '[::1]:9000'\n\
                insecure-listen: true\n\
                tls-cert: /tls/cert.pem\n\
                tls-key: /tls/key.pem\n\
                api-token-file: /s/api\n\
                metrics-token: true\n\
                webhook-secret-file: /s/hook\n\
                git-credentials-file: /s/git\n\
                git-ca-file: /s/ca.pem\n\
                require-signed: true\n\
                allowed-signers: /s/signers\n\
                gpg-keyring: /s/keyring.gpg\n\
                state-dir: /var/lib/convoy\n");
    assert_eq!(c.repo, "/srv/fleet");
    assert_eq!(c.branch.as_deref(), Some("prod"));
    assert_eq!(c.path, Some(PathBuf::from("deploy/fleet")));
    assert_eq!(c.poll_interval, Duration::from_secs(5));
    assert_eq!(c.resync, Duration::from_secs(16));
    assert_eq!(c.heartbeat, Duration::from_millis(250));
    assert_eq!(c.lock_timeout, Duration::ZERO);
    assert_eq!(c.listen, Some(addr("[::1]:9000")));
    assert!(c.insecure_listen && c.metrics_token && c.require_signed);
    assert_eq!(
        c.tls,
        Some((
            PathBuf::from("/tls/cert.pem"),
            PathBuf::from("/tls/key.pem")
        ))
    );
    assert_eq!(c.api_token_file, Some(PathBuf::from("/s/api")));
    assert_eq!(c.webhook_secret_file, Some(PathBuf::from("/s/hook")));
    assert_eq!(c.git_credentials_file, Some(PathBuf::from("/s/git")));
    assert_eq!(c.git_ca_file, Some(PathBuf::from("/s/ca.pem")));
    assert_eq!(c.allowed_signers, Some(PathBuf::from("/s/signers")));
    assert_eq!(c.gpg_keyring, Some(PathBuf::from("/s/keyring.gpg")));
    assert_eq!(c.state_dir, Some(PathBuf::from("/var/lib/convoy")));
}

#[test]
fn flags_win_over_the_file_and_the_file_over_defaults() {
    let text = "repo: /srv/fleet\nbranch: prod\nresync: 10\nlisten: off\nstate-dir: /from/file\n";
    let cli = DaemonArgs {
        branch: Some("staging".into()),
        resync: Some(3),
        listen: Some("127.0.0.1:1".into()),
        ..Default::default()
    };
    let c = resolve_bytes(
        cli,
        Some(PathBuf::from("/from/flag")),
        Path::new(FILE),
        text.as_bytes(),
    )
    .unwrap();
    assert_eq!(c.repo, "/srv/fleet", "not given as a flag: the file's");
    assert_eq!(c.branch.as_deref(), Some("staging"));
    assert_eq!(c.resync, Duration::from_secs(3));
    assert_eq!(c.listen, Some(addr("127.0.0.1:1")));
    assert_eq!(c.state_dir, Some(PathBuf::from("/from/flag")));
    assert_eq!(c.poll_interval, Duration::from_secs(60), "given nowhere");
    // Without the flags, the file's values.
    let c = ok(text);
    assert_eq!(c.listen, None, "`off` serves no API");
    assert_eq!(c.state_dir, Some(PathBuf::from("/from/file")));
}

#[test]
fn a_switch_given_on_the_command_line_wins_and_absent_leaves_the_file_to_decide() {
    let cli = DaemonArgs {
        metrics_token: true,
        insecure_listen: true,
        ..Default::default()
    };
    let c = from_text(cli, "metrics-token: false\n").unwrap();
    assert!(c.metrics_token && c.insecure_listen);
    let c = ok("metrics-token: true\ninsecure-listen: false\n");
    assert!(c.metrics_token && !c.insecure_listen);
}

#[test]
fn a_flag_given_still_leaves_the_files_value_checked() {
    let cli = DaemonArgs {
        resync: Some(3),
        ..Default::default()
    };
    let lines = err(cli, "resync: soon\n");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with(&format!("{FILE}:1:9: resync: expected a whole number")));
}

#[test]
fn an_unknown_key_is_located_and_the_nearest_key_suggested() {
    assert_eq!(
        err1("branch: main\n\npoll-intervall: 5\n"),
        format!("{FILE}:3:1: poll-intervall: unknown key, did you mean `poll-interval`?")
    );
    assert!(err1("  webhook_secret_file: /x\n")
        .ends_with(":1:3: webhook_secret_file: unknown key, did you mean `webhook-secret-file`?"));
    assert!(err1("heartbeatMs: 5\n").contains("did you mean `heartbeat-ms`?"));
    // Nothing near: the keys are listed instead.
    let far = err1("colour: blue\n");
    assert!(far.starts_with(&format!("{FILE}:1:1: colour: unknown key (the keys are")));
    assert!(far.contains("state-dir"), "{far}");
    assert!(err1("config: /etc/other.yaml\n").contains("cannot name another"));
}

#[test]
fn a_wrong_type_names_the_key_and_where_its_value_is() {
    assert_eq!(
        err1("resync: \"30\"\n"),
        format!(
            "{FILE}:1:9: resync: expected a whole number of seconds (durations have no suffix), found a string"
        )
    );
    assert!(err1("poll-interval: 1m\n").ends_with("found a string"));
    assert!(err1("poll-interval: 1.5\n").ends_with("found a number"));
    assert_eq!(
        err1("repo: /srv\nbranch:\n  - main\n"),
        format!("{FILE}:3:3: branch: expected a string, found a list")
    );
    assert!(err1("listen: {a: 1}\n").ends_with("listen: expected a string, found a map"));
    assert!(err1("repo: true\n").ends_with("repo: expected a string, found a boolean"));
    assert!(err1("branch:\n").ends_with("branch: expected a string, found nothing (null)"));
    assert!(err1("branch: ''\n").ends_with("branch: must not be empty"));
    assert!(err1("metrics-token: yes\n")
        .ends_with("metrics-token: expected true or false, found a string"));
    assert!(err1("require-signed: 'true'\n").ends_with("found a string"));
    // A plain number is a fine string (a branch named 2024).
    assert_eq!(ok("branch: 2024\n").branch.as_deref(), Some("2024"));
}

#[test]
fn durations_are_bounded_in_the_file_and_on_the_command_line() {
    assert!(
        err1("poll-interval: 0\n").ends_with("1:16: poll-interval: must be at least 1 (seconds)")
    );
    assert!(err1("heartbeat-ms: 99\n").ends_with("must be at least 100 (milliseconds)"));
    assert!(err1("resync: -5\n").ends_with("must be at least 1 (seconds)"));
    assert!(err1("lock-timeout: 99999999999999999999\n").contains("must be at most 31536000"));
    assert_eq!(
        ok("heartbeat-ms: 100\n").heartbeat,
        Duration::from_millis(100)
    );
    let cli = DaemonArgs {
        heartbeat_ms: Some(10),
        ..Default::default()
    };
    let e = resolve(cli, None).unwrap_err().to_string();
    assert_eq!(e, "--heartbeat-ms: must be at least 100 (milliseconds)");
}

#[test]
fn require_signed_needs_allowed_signers_or_a_keyring() {
    assert_eq!(
        err1("branch: main\nrequire-signed: true\n"),
        format!(
            "{FILE}:2:17: require-signed: needs `allowed-signers` or `gpg-keyring` (or both): without them no commit could be applied"
        )
    );
    assert!(ok("require-signed: true\nallowed-signers: /s\n").require_signed);
    assert!(ok("require-signed: true\ngpg-keyring: /k\n").require_signed);
    assert!(!ok("require-signed: false\n").require_signed);
    // The flag alone is located as the flag; a signer from the file satisfies it.
    let flag = || DaemonArgs {
        require_signed: true,
        ..Default::default()
    };
    let e = resolve(flag(), None).unwrap_err().to_string();
    assert!(e.starts_with("--require-signed: needs"), "{e}");
    assert!(
        from_text(flag(), "gpg-keyring: /k\n")
            .unwrap()
            .require_signed
    );
}

#[test]
fn listen_is_ip_port_or_off() {
    assert_eq!(ok("listen: 0.0.0.0:80\n").listen, Some(addr("0.0.0.0:80")));
    assert_eq!(ok("listen: off\n").listen, None);
    for bad in [
        "localhost",
        "7878",
        "127.0.0.1",
        "127.0.0.1:99999",
        "'off '",
        "::1:80",
    ] {
        let e = err1(&format!("listen: {bad}\n"));
        assert!(
            e.ends_with(
                "1:9: listen: expected `ip:port` (`127.0.0.1:7878`, `[::1]:7878`) or `off`"
            ),
            "{bad}: {e}"
        );
    }
    let cli = DaemonArgs {
        listen: Some("nowhere".into()),
        ..Default::default()
    };
    assert!(resolve(cli, None)
        .unwrap_err()
        .to_string()
        .starts_with("--listen: expected"));
}

#[test]
fn tls_takes_both_files_or_neither() {
    assert!(err1("tls-cert: /c.pem\n").ends_with("tls-cert: needs `tls-key` too (both or neither)"));
    assert!(err1("tls-key: /k.pem\n").ends_with("tls-key: needs `tls-cert` too (both or neither)"));
    // From both sources, they pair.
    let cli = DaemonArgs {
        tls_cert: Some("/flag/c.pem".into()),
        ..Default::default()
    };
    let c = from_text(cli, "tls-key: /file/k.pem\n").unwrap();
    assert_eq!(
        c.tls,
        Some((PathBuf::from("/flag/c.pem"), PathBuf::from("/file/k.pem")))
    );
}

#[test]
fn relative_paths_in_the_file_are_resolved_against_its_directory() {
    let c = ok("repo: fleet\n\
                path: deploy/fleet\n\
                api-token-file: secrets/api\n\
                tls-cert: ../tls/cert.pem\n\
                tls-key: /abs/key.pem\n\
                state-dir: state\n");
    assert_eq!(c.repo, "/etc/convoy/fleet");
    assert_eq!(
        c.path,
        Some(PathBuf::from("deploy/fleet")),
        "inside the repo"
    );
    assert_eq!(
        c.api_token_file,
        Some(PathBuf::from("/etc/convoy/secrets/api"))
    );
    let (cert, key) = c.tls.unwrap();
    assert_eq!(cert, PathBuf::from("/etc/convoy/../tls/cert.pem"));
    assert_eq!(key, PathBuf::from("/abs/key.pem"));
    assert_eq!(c.state_dir, Some(PathBuf::from("/etc/convoy/state")));
    // Remotes are not paths.
    for remote in [
        "https://github.com/acme/fleet.git",
        "file:///srv/fleet.git",
        "git@github.com:acme/fleet.git",
        "ssh://git@host:22/fleet",
    ] {
        assert_eq!(ok(&format!("repo: '{remote}'\n")).repo, remote);
    }
    assert_eq!(ok("repo: ./a:b\n").repo, "/etc/convoy/./a:b");
    // Flags stay as given (relative to the working directory).
    let cli = DaemonArgs {
        api_token_file: Some("rel/api".into()),
        ..Default::default()
    };
    assert_eq!(
        from_text(cli, "").unwrap().api_token_file,
        Some(PathBuf::from("rel/api"))
    );
    assert!(err1("path: /abs\n").ends_with("path: must be relative to the repository's top"));
}

#[test]
fn every_error_is_listed_one_per_line_in_file_order() {
    let cli = DaemonArgs {
        listen: Some("bad".into()),
        ..Default::default()
    };
    let lines = err(
        cli,
        "reso: 1\nresync: x\nrepo: [a]\ntls-key: /k\nrepo: again\nrequire-signed: true\n",
    );
    assert_eq!(
        lines,
        [
            format!("{FILE}:1:1: reso: unknown key, did you mean `repo`?"),
            format!("{FILE}:2:9: resync: expected a whole number of seconds (durations have no suffix), found a string"),
            format!("{FILE}:3:7: repo: expected a string, found a list"),
            format!("{FILE}:4:10: tls-key: needs `tls-cert` too (both or neither)"),
            format!("{FILE}:5:1: repo: duplicate key (first written at line 3)"),
            format!("{FILE}:6:17: require-signed: needs `allowed-signers` or `gpg-keyring` (or both): without them no commit could be applied"),
            "--listen: expected `ip:port` (`127.0.0.1:7878`, `[::1]:7878`) or `off`".to_string(),
        ]
    );
}

#[test]
fn broken_yaml_and_odd_shapes_are_located_errors() {
    assert!(err1("repo: [unclosed\n").starts_with(&format!("{FILE}:")));
    assert!(err1("- repo\n").contains("must be a map of `key: value` lines, not a list"));
    assert!(err1("just text\n").contains("not a single value"));
    assert!(err1("repo: a\n---\nrepo: b\n").contains("only one yaml document"));
    assert!(err1("repo: !include x\n").contains("yaml tag `!include` is not supported"));
    assert_eq!(ok("branch: !!str 10\n").branch.as_deref(), Some("10"));
    assert!(err1("resync: !!str 10\n").ends_with("found a string"));
    assert!(err1("branch: a\x00b\n")
        .starts_with(&format!("{FILE}:1:10: invalid yaml: character U+0000")));
    let e = from_text(DaemonArgs::default(), "").map(|_| ());
    assert!(e.is_ok());
    let bytes = b"repo: /srv\nbranch: \xff\n";
    let e = resolve_bytes(DaemonArgs::default(), None, Path::new(FILE), bytes)
        .unwrap_err()
        .to_string();
    assert_eq!(e, format!("{FILE}:2:9: the config file is not UTF-8 text"));
    // An alias reads as what it names; a merge key is not a flag.
    assert_eq!(ok("branch: &b main\nrepo: *b\n").repo, "/etc/convoy/main");
    assert!(err1("<<: {repo: x}\n").contains("<<: unknown key"));
}

/// What would exhaust a recursive reader's stack or an alias-expanding one's memory, at the
/// file's size bound: an error or a value, quickly.
#[test]
fn deep_nesting_and_many_aliases_within_the_bound_are_harmless() {
    let n = (MAX_CONFIG_BYTES as usize - 20) / 2;
    let deep = format!("branch: {}{}\n", "[".repeat(n), "]".repeat(n));
    let e = err1(&deep);
    // yaml-rust2 bounds nesting itself; within its bound the list is skipped without recursion.
    assert!(e.starts_with(&format!("{FILE}:1:")), "{e}");
    let nested = format!("branch: {}{}\n", "[".repeat(200), "]".repeat(200));
    assert!(err1(&nested).ends_with("1:9: branch: expected a string, found a list"));
    let deep_maps = format!("repo: {}\n", "{a: ".repeat(n / 4));
    assert!(from_text(DaemonArgs::default(), &deep_maps).is_err());
    let mut laughs = String::from("x-a: &a [1, 1, 1, 1, 1, 1, 1, 1]\n");
    for i in 0..60 {
        laughs.push_str(&format!("x-{i}: &b{i} [*a, *a, *a, *a, *a, *a]\n"));
    }
    assert!(err(DaemonArgs::default(), &laughs).len() > 60);
}

#[test]
fn a_missing_unreadable_or_oversized_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let with = |p: &Path| DaemonArgs {
        config: Some(p.to_path_buf()),
        ..Default::default()
    };
    let missing = dir.path().join("nope.yaml");
    let e = resolve(with(&missing), None).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{}: cannot read the config file:",
            missing.display()
        )),
        "{e}"
    );
    let e = resolve(with(dir.path()), None).unwrap_err().to_string();
    assert!(e.ends_with("it is a directory"), "{e}");

    let big = dir.path().join("big.yaml");
    let mut text = "# padding\n".repeat((MAX_CONFIG_BYTES as usize) / 10);
    text.push_str("repo: /srv/fleet\n");
    std::fs::write(&big, &text).unwrap();
    let e = resolve(with(&big), None).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("{}: the config file is larger than 64 KiB", big.display())
    );
    // Just under the bound is read, and relative to its own folder.
    let fits = dir.path().join("fits.yaml");
    let under = format!("{}repo: /srv/fleet\n", "# padding\n".repeat(6_000));
    std::fs::write(&fits, &under).unwrap();
    let c = resolve(with(&fits), None).unwrap();
    assert_eq!(c.repo, "/srv/fleet");
    std::fs::write(&fits, "api-token-file: api\n").unwrap();
    let c = resolve(with(&fits), None).unwrap();
    assert_eq!(c.api_token_file, Some(dir.path().join("api")));
}

#[test]
fn the_example_file_is_valid_and_says_what_it_claims() {
    let c = resolve(
        DaemonArgs {
            config: Some(example_path()),
            ..Default::default()
        },
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.repo, "https://github.com/acme/fleet.git");
    assert_eq!(c.branch.as_deref(), Some("main"));
    assert_eq!(
        c.git_credentials_file,
        Some(PathBuf::from("/etc/convoy/git-token"))
    );
    assert_eq!(
        c.webhook_secret_file,
        Some(PathBuf::from("/etc/convoy/webhook-secret"))
    );
    assert_eq!(
        c.api_token_file,
        Some(PathBuf::from("/etc/convoy/api-token"))
    );
    assert_eq!(c.listen, Some(addr("127.0.0.1:7878")));
    assert_eq!(c.poll_interval, Duration::from_secs(60));
}

/// Every key is documented in the example, set or as a `#key: value` line; uncommenting all of
/// those still gives a valid config, and each commented default is the real default.
#[test]
fn the_example_documents_every_key_and_its_commented_settings_are_valid() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let setting = |line: &str| -> Option<String> {
        let (key, _) = line.split_once(": ")?;
        KEYS.contains(&key).then(|| key.to_string())
    };
    let mut set = Vec::new();
    let mut commented = Vec::new();
    let mut uncommented = String::new();
    for line in text.lines() {
        if let Some(key) = line.strip_prefix('#').and_then(setting) {
            commented.push(key);
            uncommented.push_str(&line[1..]);
        } else {
            if let Some(key) = setting(line) {
                set.push(key);
            }
            uncommented.push_str(line);
        }
        uncommented.push('\n');
    }
    for key in KEYS {
        let n = set.iter().chain(&commented).filter(|k| *k == key).count();
        assert_eq!(
            n, 1,
            "`{key}` must be documented exactly once in the example"
        );
    }
    let all = resolve_bytes(
        DaemonArgs::default(),
        None,
        &example_path(),
        uncommented.as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let defaults = resolve(DaemonArgs::default(), None).unwrap();
    assert_eq!(all.poll_interval, defaults.poll_interval);
    assert_eq!(all.resync, defaults.resync);
    assert_eq!(all.heartbeat, defaults.heartbeat);
    assert_eq!(all.lock_timeout, defaults.lock_timeout);
    assert_eq!(all.insecure_listen, defaults.insecure_listen);
    assert_eq!(all.metrics_token, defaults.metrics_token);
    assert_eq!(all.require_signed, defaults.require_signed);
}

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(KEYS.to_vec()).prop_map(str::to_string),
        "[a-z_-]{0,12}",
        Just("<<".to_string()),
    ]
}

fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,20}",
        "-?[0-9]{1,25}",
        Just("true".to_string()),
        Just("off".to_string()),
        Just("[a, [b, {c: d}]]".to_string()),
        Just("&a x".to_string()),
        Just("*a".to_string()),
        Just("!!str 5".to_string()),
        Just("|\n  block".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = resolve_bytes(DaemonArgs::default(), None, Path::new(FILE), &bytes);
    }

    #[test]
    fn random_text_never_panics(text in "[ -~\n\t]{0,400}", other in any::<String>()) {
        let _ = from_text(DaemonArgs::default(), &text);
        let _ = from_text(DaemonArgs::default(), &other);
    }

    /// Key/value lines built from the real keys and YAML's odd corners: never a panic, and an
    /// error always has at least one line, each located in the file or naming a flag.
    #[test]
    fn yamlish_maps_never_panic_and_errors_are_located(
        lines in proptest::collection::vec((0usize..3, key_strategy(), value_strategy()), 0..12)
    ) {
        let text: String = lines
            .iter()
            .map(|(indent, k, v)| format!("{}{k}: {v}\n", " ".repeat(*indent)))
            .collect();
        if let Err(e) = from_text(DaemonArgs::default(), &text) {
            prop_assert!(!e.0.is_empty());
            for line in e.to_string().lines() {
                prop_assert!(line.starts_with(FILE) || line.starts_with("--"), "{}", line);
            }
        }
    }
}

/// `age-key-file` (SOPS) is a path like the others, relative to the config file's folder.
#[test]
fn the_age_key_file_for_sops_is_read_relative_to_the_file() {
    let c = ok("age-key-file: keys/age.txt\n");
    assert_eq!(
        c.age_key_file,
        Some(Path::new(FILE).parent().unwrap().join("keys/age.txt"))
    );
    assert_eq!(ok("").age_key_file, None);
}

#[test]
fn notifications_are_read_with_paths_from_the_config_files_folder() {
    let c = ok("notifications:\n  - kind: generic\n    url: https://hooks.example.com/convoy\n    secret_file: hmac.key\n  - {kind: slack, url_file: /run/secrets/slack-url}\n");
    assert_eq!(c.notifications.len(), 2);
    assert_eq!(
        c.notifications[0].secret_file.as_deref(),
        Some("/etc/convoy/hmac.key")
    );
    assert_eq!(
        c.notifications[1].url_file.as_deref(),
        Some("/run/secrets/slack-url")
    );
}

#[test]
fn a_bad_notification_is_located_and_its_url_not_quoted() {
    let e = err1(
        "listen: off\nnotifications:\n  - {kind: slack, url: 'ftp://hooks.slack.com/s3cr3t'}\n",
    );
    assert_eq!(
        e,
        "/etc/convoy/daemon.yaml:3:24: notifications[0].url: expected an `https://` (or `http://`) address"
    );
}
