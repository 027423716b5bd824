//! The engine's streaming calls for people at a terminal: the fleet's containers as a light
//! list, a container's log lines with the engine's timestamps, and exec sessions (create,
//! attach, resize, exit code).
//!
//! Everything here reads or runs inside containers that carry the fleet's label: the list is
//! filtered by it, and callers pick their targets from that list. It decides nothing about
//! ordering, prefixes or colour (the command does), and it never prints.

use std::collections::HashMap;
use std::pin::Pin;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::{ListContainersOptions, LogsOptions};
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWrite;

use super::{root_cause, DockerError, Engine};
use crate::model::spec::{LABEL_FLEET, LABEL_SERVICE, LABEL_SLOT, LABEL_STACK};

/// One container of the fleet, as `docker ps -a` lists it: enough to pick log and exec
/// targets, without the cost of a full inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedContainer {
    pub id: String,
    pub name: String,
    pub stack: String,
    pub service: String,
    pub slot: String,
    pub running: bool,
}

/// Which stream of the container a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogSource {
    Stdout,
    Stderr,
}

/// One line of a container's log. `time` is the engine's timestamp normalised to
/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, so that strings compare in time order (the engine trims
/// trailing zeros of the fraction, which breaks a plain string comparison).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogLine {
    pub time: String,
    pub source: LogSource,
    pub text: String,
}

/// What part of a log to read: `since`/`until` in Unix seconds (0: unbounded), `tail` a
/// count or `None` for all.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogRange {
    pub follow: bool,
    pub since: i64,
    pub until: i64,
    pub tail: Option<u64>,
}

/// An attached exec: the command's output and, when stdin was asked for, its input.
pub struct ExecSession {
    pub id: String,
    pub output: Pin<Box<dyn Stream<Item = Result<ExecChunk, DockerError>> + Send>>,
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

/// Output of an exec: raw bytes from stdout (or the TTY) or stderr.
#[derive(Debug, Clone)]
pub enum ExecChunk {
    Stdout(bytes::Bytes),
    Stderr(bytes::Bytes),
}

impl Engine {
    /// Every container carrying `fleet`'s label, running or not.
    pub async fn list_owned(&self, fleet: &str) -> Result<Vec<ListedContainer>, DockerError> {
        let filters =
            HashMap::from([("label".to_string(), vec![format!("{LABEL_FLEET}={fleet}")])]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| self.err("list containers", e))?;
        Ok(list
            .into_iter()
            .map(|c| {
                let labels = c.labels.unwrap_or_default();
                let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
                ListedContainer {
                    id: c.id.unwrap_or_default(),
                    name: c
                        .names
                        .unwrap_or_default()
                        .first()
                        .map(|n| n.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
                    stack: label(LABEL_STACK),
                    service: label(LABEL_SERVICE),
                    slot: label(LABEL_SLOT),
                    running: c.state.map(|s| s.to_string()).as_deref() == Some("running"),
                }
            })
            .collect())
    }

    /// A container's log lines, stdout and stderr both, each with the engine's timestamp.
    /// Lines are split on `\n` (a TTY container's output comes in arbitrary chunks); a last
    /// line without a newline is given when the stream ends.
    pub fn log_lines(
        &self,
        id: &str,
        range: LogRange,
    ) -> impl Stream<Item = Result<LogLine, DockerError>> + Send + 'static {
        let opts = LogsOptions {
            follow: range.follow,
            stdout: true,
            stderr: true,
            since: clamp_i32(range.since),
            until: clamp_i32(range.until),
            timestamps: true,
            tail: range
                .tail
                .map_or_else(|| "all".to_string(), |n| n.to_string()),
        };
        let host = self.host.clone();
        let chunks = self.docker.logs(id, Some(opts));
        let mut splitter = Splitter::default();
        chunks
            .map(Some)
            .chain(futures_util::stream::iter([None]))
            .flat_map(move |item| {
                let out: Vec<Result<LogLine, DockerError>> = match item {
                    Some(Ok(chunk)) => splitter.push(chunk).into_iter().map(Ok).collect(),
                    Some(Err(e)) => vec![Err(DockerError {
                        host: host.clone(),
                        op: "read logs".into(),
                        message: root_cause(&e),
                        status: match e {
                            bollard::errors::Error::DockerResponseServerError {
                                status_code,
                                ..
                            } => Some(status_code),
                            _ => None,
                        },
                    })],
                    None => splitter.finish().into_iter().map(Ok).collect(),
                };
                futures_util::stream::iter(out)
            })
    }

    /// Creates and starts an exec of `cmd` in container `id`, attached.
    pub async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
        stdin: bool,
    ) -> Result<ExecSession, DockerError> {
        let created = self
            .docker
            .create_exec(
                id,
                CreateExecOptions {
                    attach_stdin: Some(stdin),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(tty),
                    cmd: Some(cmd.to_vec()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.err("create exec", e))?;
        let started = self
            .docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(|e| self.err("start exec", e))?;
        match started {
            StartExecResults::Attached { output, input } => {
                let host = self.host.clone();
                let output = output.filter_map(move |item| {
                    let r = match item {
                        Ok(LogOutput::StdErr { message }) => Some(Ok(ExecChunk::Stderr(message))),
                        Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                            Some(Ok(ExecChunk::Stdout(message)))
                        }
                        Ok(LogOutput::StdIn { .. }) => None,
                        Err(e) => Some(Err(DockerError {
                            host: host.clone(),
                            op: "read exec output".into(),
                            message: root_cause(&e),
                            status: None,
                        })),
                    };
                    futures_util::future::ready(r)
                });
                Ok(ExecSession {
                    id: created.id,
                    output: Box::pin(output),
                    input,
                })
            }
            StartExecResults::Detached => Err(DockerError {
                host: self.host.clone(),
                op: "start exec".into(),
                message: "the engine did not attach".into(),
                status: None,
            }),
        }
    }

    /// Tells the engine the terminal's size for an exec with a TTY.
    pub async fn exec_resize(
        &self,
        exec_id: &str,
        rows: u16,
        cols: u16,
    ) -> Result<(), DockerError> {
        self.docker
            .resize_exec(
                exec_id,
                ResizeExecOptions {
                    height: rows,
                    width: cols,
                },
            )
            .await
            .map_err(|e| self.err("resize exec", e))
    }

    /// The exec's exit code once it has ended; `None` while it runs.
    pub async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, DockerError> {
        let i = self
            .docker
            .inspect_exec(exec_id)
            .await
            .map_err(|e| self.err("inspect exec", e))?;
        Ok(if i.running.unwrap_or(false) {
            None
        } else {
            i.exit_code
        })
    }
}

fn clamp_i32(v: i64) -> i32 {
    v.clamp(0, i32::MAX as i64) as i32
}

/// Cuts the engine's chunks into lines per source and parses each line's timestamp.
#[derive(Default)]
struct Splitter {
    out: Vec<u8>,
    err: Vec<u8>,
}

impl Splitter {
    fn push(&mut self, chunk: LogOutput) -> Vec<LogLine> {
        let (buf, source, message) = match chunk {
            LogOutput::StdErr { message } => (&mut self.err, LogSource::Stderr, message),
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                (&mut self.out, LogSource::Stdout, message)
            }
            LogOutput::StdIn { .. } => return Vec::new(),
        };
        buf.extend_from_slice(&message);
        let mut lines = Vec::new();
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = buf.drain(..=nl).collect();
            lines.push(parse_line(&raw[..nl], source));
        }
        lines
    }

    fn finish(&mut self) -> Vec<LogLine> {
        let mut lines = Vec::new();
        for (buf, source) in [
            (&mut self.out, LogSource::Stdout),
            (&mut self.err, LogSource::Stderr),
        ] {
            if !buf.is_empty() {
                lines.push(parse_line(buf, source));
                buf.clear();
            }
        }
        lines
    }
}

/// `2026-12-01T19:57:40.1234Z text` → the normalised time and the text (a trailing `\r`,
/// which TTY output carries, removed).
fn parse_line(raw: &[u8], source: LogSource) -> LogLine {
    let s = String::from_utf8_lossy(raw);
    let (ts, text) = s.split_once(' ').unwrap_or((&s, ""));
    let text = text.strip_suffix('\r').unwrap_or(text);
    LogLine {
        time: normalise_time(ts),
        source,
        text: text.to_string(),
    }
}

/// RFC 3339 in UTC with a fraction of 0 to 9 digits → exactly 9 digits. Engines write log
/// timestamps in UTC (`Z`); anything else is kept as it is.
pub fn normalise_time(ts: &str) -> String {
    let Some(body) = ts.strip_suffix('Z') else {
        return ts.to_string();
    };
    let (secs, frac) = body.split_once('.').unwrap_or((body, ""));
    if secs.len() != 19 || !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return ts.to_string();
    }
    format!("{secs}.{frac:0<9}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_compare_in_order_once_normalised() {
        let a = normalise_time("2026-12-01T19:57:40.1Z");
        let b = normalise_time("2026-12-01T19:57:40.12Z");
        let c = normalise_time("2026-12-01T19:57:40Z");
        assert_eq!(a, "2026-12-01T19:57:40.100000000Z");
        assert!(c < a && a < b);
    }

    #[test]
    fn chunks_split_into_lines_per_stream() {
        let mut s = Splitter::default();
        let out = |m: &str| LogOutput::StdOut {
            message: bytes::Bytes::from(m.to_string()),
        };
        assert!(s.push(out("2026-12-01T00:00:01Z he")).is_empty());
        let l = s.push(out(
            "llo\r\n2026-12-01T00:00:02.5Z x\n2026-12-01T00:00:03Z tail",
        ));
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].text, "hello");
        assert_eq!(l[1].time, "2026-12-01T00:00:02.500000000Z");
        let rest = s.finish();
        assert_eq!(rest[0].text, "tail");
    }
}
