//! What went wrong reaching a host: [`SshError`], and the reading of ssh's own words into it.
//!
//! ssh says why a master failed only in text (its log, which `openssh` hands back as the source
//! of its error). This file is the one place that reads that text, so that callers match on
//! variants and never parse messages. It only names a failure: it must not run ssh, touch files,
//! retry or decide what to do about it, and it must never report a refused or changed host key
//! as anything milder than `HostKeyChanged` or `UnknownHostKey`.

use std::io;
use std::time::Duration;

/// What went wrong reaching a host. Messages name the host and the cause; the text that ssh
/// writes (only in the master's log, and in the `Debug` form of `openssh`'s error) is classified
/// here so that callers never have to parse it.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("host key changed for host `{host}`: the key it offers does not match known_hosts, refusing to connect ({detail})")]
    HostKeyChanged { host: String, detail: String },
    #[error("no known host key for host `{host}`: add its key to known_hosts ({detail})")]
    UnknownHostKey { host: String, detail: String },
    #[error("authentication to host `{host}` failed: {detail}")]
    AuthFailed { host: String, detail: String },
    #[error("host `{host}` is unreachable: {cause}")]
    Unreachable { host: String, cause: String },
    #[error("cannot forward the docker socket `{socket}` of host `{host}`: {cause}")]
    ForwardFailed {
        host: String,
        socket: String,
        cause: String,
    },
    #[error("the docker engine of host `{host}` is not answering at `{socket}`: {cause}")]
    EngineNotAnswering {
        host: String,
        socket: String,
        cause: String,
    },
    #[error("timed out after {after:?} {step} on host `{host}`")]
    Timeout {
        host: String,
        step: &'static str,
        after: Duration,
    },
    #[error("ssh to host `{host}` failed: {cause}")]
    Other { host: String, cause: String },
    /// This process's control folder could not be made: no ssh host can be reached.
    #[error("cannot set up the ssh control folder: {cause}")]
    Setup { cause: String },
}

pub(super) fn other(host: &str, cause: impl Into<String>) -> SshError {
    SshError::Other {
        host: host.to_string(),
        cause: cause.into(),
    }
}

/// Everything an `openssh` error says: `Display` of it and of each source. ssh's own words (from
/// the master's log) are in the source `io::Error`; the top-level `Display` only says "failed to
/// connect".
pub(super) fn error_text(err: &openssh::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

/// Turns a failed master start into what happened, from ssh's log text.
pub(super) fn classify_connect_error(host: &str, err: &openssh::Error) -> SshError {
    let text = error_text(err);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let find = |needle: &str| lines.iter().find(|l| l.contains(needle)).copied();
    let last = lines.last().copied().unwrap_or("no message from ssh");
    let host = host.to_string();

    if text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || text.contains("has changed and you have requested strict checking")
    {
        let detail = find("Offending")
            .or_else(|| find("has changed"))
            .unwrap_or("host key verification failed")
            .to_string();
        return SshError::HostKeyChanged { host, detail };
    }
    if let Some(line) =
        find("host key is known for").or_else(|| find("Host key verification failed"))
    {
        return SshError::UnknownHostKey {
            host,
            detail: line.to_string(),
        };
    }
    if let Some(line) =
        find("Permission denied (").or_else(|| find("Too many authentication failures"))
    {
        return SshError::AuthFailed {
            host,
            detail: line.trim_start_matches("ssh: ").to_string(),
        };
    }
    const UNREACHABLE: [&str; 8] = [
        "Could not resolve hostname",
        "Connection refused",
        "No route to host",
        "Network is unreachable",
        "Connection timed out",
        "Operation timed out",
        "Connection closed by",
        "Connection reset",
    ];
    if let Some(line) = lines
        .iter()
        .find(|l| UNREACHABLE.iter().any(|n| l.contains(n)))
    {
        return SshError::Unreachable {
            host,
            cause: line.trim_start_matches("ssh: ").to_string(),
        };
    }
    if let openssh::Error::Connect(e) = err {
        if e.kind() == io::ErrorKind::NotFound {
            return other(&host, format!("cannot run `ssh`: {e}"));
        }
    }
    SshError::Other {
        host,
        cause: last.trim_start_matches("ssh: ").to_string(),
    }
}
