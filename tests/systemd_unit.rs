//! The systemd unit (`systemd/convoy.service`) as systemd itself judges it: `systemd-analyze
//! security --offline=true` must rate it 2.0 or lower, and `systemd-analyze verify` must accept a
//! copy whose `ExecStart` names the binary built here, without a warning about it. A third check
//! reads the unit's settings: the hardening must not take away what Convoy needs (the network,
//! `AF_UNIX`/`AF_INET`/`AF_INET6`, running `ssh` and `git`, the user's `~/.ssh`, the `docker`
//! group, its state directory) nor the notify protocol the daemon speaks.
//!
//! Under CI (`CI` or `CONVOY_REQUIRE_DOCKER` set) a missing `systemd-analyze` is a failure, never
//! a skip: `scripts/ensure-docker` installs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The highest exposure the unit may have (`systemd-analyze security`'s scale: 0 to 10).
const MAX_EXPOSURE: f64 = 2.0;

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/convoy.service")
}

fn unit_text() -> String {
    std::fs::read_to_string(unit_path()).expect("read systemd/convoy.service")
}

/// Runs `systemd-analyze ARGS`; `None` (a skip) when it is not installed and CI does not
/// require it.
fn systemd_analyze(args: &[&str]) -> Option<Output> {
    match Command::new("systemd-analyze").args(args).output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let required = std::env::var_os("CI").is_some()
                || std::env::var_os("CONVOY_REQUIRE_DOCKER").is_some();
            assert!(
                !required,
                "systemd-analyze is required (CI or CONVOY_REQUIRE_DOCKER set) but not installed: run scripts/ensure-docker"
            );
            eprintln!("SKIPPED: systemd-analyze is not installed; run scripts/ensure-docker");
            None
        }
        Err(e) => panic!("cannot run systemd-analyze: {e}"),
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The number on the "Overall exposure level for convoy.service: 1.3 OK" line.
fn overall_exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    let (_, rest) = line.rsplit_once(": ")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn the_exposure_line_is_read() {
    let report = "  ✗ PrivateNetwork=   Service has access to the host's network   0.5\n\
                  → Overall exposure level for convoy.service: 1.3 OK 🙂\n";
    assert_eq!(overall_exposure(report), Some(1.3));
    assert_eq!(
        overall_exposure("→ Overall exposure level for x.service: 8.6 EXPOSED 🙁"),
        Some(8.6)
    );
    assert_eq!(overall_exposure("no such line"), None);
}

#[test]
fn the_unit_scores_two_or_lower_in_systemd_analyze_security() {
    let unit = unit_path();
    let Some(out) = systemd_analyze(&[
        "security",
        "--offline=true",
        "--no-pager",
        unit.to_str().expect("a UTF-8 path"),
    ]) else {
        return;
    };
    let report = text(&out);
    let score = overall_exposure(&report)
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{report}"));
    assert!(
        score <= MAX_EXPOSURE,
        "systemd-analyze security rates the unit {score} (at most {MAX_EXPOSURE} allowed):\n{report}"
    );
}

#[test]
fn systemd_analyze_verify_accepts_the_unit_with_the_built_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = env!("CARGO_BIN_EXE_convoy");
    let mut replaced = 0;
    let copy: String = unit_text()
        .lines()
        .map(|l| match l.strip_prefix("ExecStart=") {
            Some(cmd) => {
                replaced += 1;
                let args = cmd.split_once(' ').map_or("", |(_, a)| a);
                format!("ExecStart={binary} {args}\n")
            }
            None => format!("{l}\n"),
        })
        .collect();
    assert_eq!(replaced, 1, "the unit has one ExecStart");
    // The same name as the real unit: verify reads the unit's name from the file's.
    let path = dir.path().join("convoy.service");
    std::fs::write(&path, copy).expect("write the copy");
    // The `convoy` user need not exist: verify checks the unit, not the machine's accounts.
    let Some(out) = systemd_analyze(&["verify", "--no-pager", path.to_str().expect("UTF-8")])
    else {
        return;
    };
    let report = text(&out);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{report}"
    );
    // A key it does not know or a value it cannot parse is only a warning, ignored: still a
    // mistake in the unit.
    let about_the_unit: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("convoy.service"))
        .collect();
    assert!(
        about_the_unit.is_empty(),
        "systemd-analyze verify warns about the unit:\n{}",
        about_the_unit.join("\n")
    );
}

/// Every value of `key` in the unit's `[Service]` section, in order.
fn service_values(unit: &str, key: &str) -> Vec<String> {
    let mut section = "";
    let mut values = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section != "[Service]" {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            if k.trim() == key {
                values.push(v.trim().to_string());
            }
        }
    }
    values
}

fn last(unit: &str, key: &str) -> Option<String> {
    service_values(unit, key).pop()
}

#[test]
fn the_hardening_keeps_what_convoy_needs_and_the_notify_protocol() {
    let unit = unit_text();
    // The daemon speaks the notify protocol; only it may.
    assert_eq!(last(&unit, "Type").as_deref(), Some("notify"));
    assert_eq!(last(&unit, "NotifyAccess").as_deref(), Some("main"));
    assert!(last(&unit, "WatchdogSec").is_some(), "a watchdog period");
    assert_eq!(last(&unit, "Restart").as_deref(), Some("on-failure"));
    // Sockets: the Docker socket and SSH control sockets, and SSH to the hosts.
    let families = last(&unit, "RestrictAddressFamilies").unwrap_or_default();
    for family in ["AF_UNIX", "AF_INET", "AF_INET6"] {
        assert!(
            families.split_whitespace().any(|f| f == family) && !families.starts_with('~'),
            "{family} must stay allowed: RestrictAddressFamilies={families}"
        );
    }
    for (key, taking) in [
        ("PrivateNetwork", "the network to the hosts"),
        ("PrivateUsers", "the docker group (mapped to nobody)"),
        ("DynamicUser", "the user's ~/.ssh and the docker group"),
    ] {
        assert_ne!(
            last(&unit, key).as_deref(),
            Some("yes"),
            "{key}=yes would take away {taking}"
        );
    }
    assert!(
        service_values(&unit, "IPAddressDeny").is_empty()
            || !service_values(&unit, "IPAddressAllow").is_empty(),
        "an IPAddressDeny= without an allow list cuts the hosts off"
    );
    // ~/.ssh must stay readable (ssh's key, known_hosts and config).
    let home = last(&unit, "ProtectHome");
    assert!(
        matches!(home.as_deref(), None | Some("no") | Some("read-only")),
        "ProtectHome={home:?} hides the user's ~/.ssh"
    );
    // ssh and git must stay executable, nothing of the system hidden wholesale.
    for key in ["NoExecPaths", "InaccessiblePaths", "TemporaryFileSystem"] {
        assert!(
            service_values(&unit, key).is_empty(),
            "{key}= can take away ssh, git or the Docker socket"
        );
    }
    // The state directory the daemon is given is the one systemd makes writable.
    let state = last(&unit, "StateDirectory").expect("a StateDirectory");
    let exec = last(&unit, "ExecStart").expect("an ExecStart");
    assert!(
        exec.contains(&format!("--state-dir /var/lib/{state}")),
        "ExecStart={exec} must use the StateDirectory={state}"
    );
    // The system calls filter must leave the network and processes to it.
    let filters = service_values(&unit, "SystemCallFilter");
    for needed in ["@network-io", "@process", "@file-system", "@io-event"] {
        assert!(
            !filters
                .iter()
                .any(|f| f.starts_with('~') && f.contains(needed)),
            "SystemCallFilter={filters:?} denies {needed}"
        );
    }
}
