//! The engine call behind Compose's lifecycle hooks: one exec in a container with the hook's
//! user, privilege, working folder and environment, run to its end, giving its exit code and
//! its last output lines (issue 9).
//!
//! It decides nothing: whether a failure fails a step, and how long a hook may take, are the
//! executor's (`exec::hooks`). It never logs the hook's environment (values may be secrets).

use std::collections::VecDeque;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;

use super::{DockerError, Engine};
use crate::model::hooks::Hook;

/// How many of a hook's last output lines its result keeps.
pub const HOOK_OUTPUT_LINES: usize = 10;

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRun {
    /// `None` when the engine did not report one.
    pub exit_code: Option<i64>,
    /// At most [`HOOK_OUTPUT_LINES`], oldest first, stdout and stderr as they came.
    pub last_lines: Vec<String>,
}

impl Engine {
    /// Runs `hook` in container `container` (ID or name) and waits for it to end.
    pub async fn run_hook(&self, container: &str, hook: &Hook) -> Result<HookRun, DockerError> {
        let env = hook.env_list();
        let options = CreateExecOptions {
            cmd: Some(hook.command.clone()),
            user: hook.user.clone(),
            privileged: Some(hook.privileged),
            working_dir: hook.working_dir.clone(),
            env: (!env.is_empty()).then_some(env),
            ..Default::default()
        };
        let mut lines: VecDeque<String> = VecDeque::new();
        let mut partial = String::new();
        let exit_code = self
            .exec_to_end(container, options, "hook exec", |bytes| {
                partial.push_str(&String::from_utf8_lossy(bytes));
                while let Some(nl) = partial.find('\n') {
                    let line: String = partial.drain(..=nl).collect();
                    keep(&mut lines, line.trim_end().to_string());
                }
            })
            .await?;
        if !partial.trim().is_empty() {
            keep(&mut lines, partial.trim_end().to_string());
        }
        Ok(HookRun {
            exit_code,
            last_lines: lines.into(),
        })
    }

    /// Runs one exec (`options`, with stdout and stderr attached and no TTY) in `container`
    /// and waits for it to end, handing each piece of its output to `output` as it comes: its
    /// exit code, `None` when the engine did not report one. `what` names it in errors.
    pub(super) async fn exec_to_end(
        &self,
        container: &str,
        options: CreateExecOptions<String>,
        what: &str,
        mut output: impl FnMut(&[u8]),
    ) -> Result<Option<i64>, DockerError> {
        let created = self
            .docker
            .create_exec(
                container,
                CreateExecOptions {
                    attach_stdin: Some(false),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(false),
                    ..options
                },
            )
            .await
            .map_err(|e| self.err(format!("create {what}"), e))?;
        let started = self
            .docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(|e| self.err(format!("start {what}"), e))?;
        if let StartExecResults::Attached {
            output: mut stream, ..
        } = started
        {
            while let Some(item) = stream.next().await {
                match item {
                    Ok(LogOutput::StdOut { message })
                    | Ok(LogOutput::StdErr { message })
                    | Ok(LogOutput::Console { message }) => output(&message),
                    Ok(LogOutput::StdIn { .. }) => {}
                    Err(e) => return Err(self.err(format!("read {what} output"), e)),
                }
            }
        }
        // The output ends with the process; the engine may record the exit code a moment
        // later, so it is asked a few times.
        for _ in 0..50 {
            let i = self
                .docker
                .inspect_exec(&created.id)
                .await
                .map_err(|e| self.err(format!("inspect {what}"), e))?;
            if !i.running.unwrap_or(false) {
                return Ok(i.exit_code);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(None)
    }
}

fn keep(lines: &mut VecDeque<String>, line: String) {
    if lines.len() == HOOK_OUTPUT_LINES {
        lines.pop_front();
    }
    lines.push_back(line);
}
