//! The one way files reach a host: a shell on it. For an `ssh://` host, `sh -c '<script>'`
//! through the host's existing OpenSSH master (its control socket and generated config: no new
//! authentication, strict host keys); for a `unix://` host, the local `sh`. Data goes on stdin
//! (a tar stream), never on a command line; every run has a deadline and bounded output.
//!
//! On that channel: `observe` (which content addresses a host holds, and whether the secrets
//! its containers bind hold the desired values, compared here in memory), `ship` (a tar of what
//! is missing, unpacked under a temporary name and renamed into place so a half-written folder
//! is never used), `write_secrets` (only to a tmpfs at `secrets_dir`, mounted when it is not one
//! unless `secrets_on_disk`) and `collect` (what no container uses any more). It never touches
//! anything outside the fleet's folder of `files_dir` and `secrets_dir`, and never puts a
//! secret's value in an error, a log line or a path.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::infra::ssh::ShellTarget;
use crate::model::files::{Blob, FileKind, FilePayload, FilesSeen, HostFiles, SecretValue};
use crate::model::observed::{ObservedHost, ObservedState};
use crate::model::spec::DesiredState;

/// How long one script may run.
const DEADLINE: Duration = Duration::from_secs(60);
/// The most of a script's stdout and stderr kept.
const MAX_STDOUT: usize = 64 << 20;
const MAX_STDERR: usize = 8 << 10;
/// The size of the tmpfs Convoy mounts at `secrets_dir`.
const SECRETS_TMPFS_SIZE: &str = "16m";

/// Where a host's shell runs.
#[derive(Debug, Clone)]
pub enum HostShell {
    /// The local `sh` (a `unix://` host: the same machine).
    Local,
    /// The local `sh` with extra variables for that child only, never the process's own
    /// environment (tests put a directory of shims first in its `PATH`).
    LocalWith(Vec<(String, String)>),
    Ssh(ShellTarget),
}

/// A failed script; never holds stdout (which may hold a secret read back).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ShellError(pub String);

/// A script's standard output.
pub struct ShellOutput {
    pub stdout: Vec<u8>,
}

impl HostShell {
    /// Runs `script` with `stdin` on the host, within the deadline.
    pub async fn run(&self, script: &str, stdin: Vec<u8>) -> Result<ShellOutput, ShellError> {
        let mut cmd = match self {
            HostShell::Local => {
                let mut c = tokio::process::Command::new("sh");
                c.arg("-c").arg(script);
                c
            }
            HostShell::LocalWith(vars) => {
                let mut c = tokio::process::Command::new("sh");
                c.arg("-c").arg(script).envs(vars.iter().cloned());
                c
            }
            HostShell::Ssh(t) => {
                let mut c = t.muxed_ssh();
                c.arg("-T")
                    .arg(&t.destination)
                    .arg("--")
                    .arg(format!("sh -c {}", quote(script)));
                c
            }
        };
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| ShellError(format!("cannot start the shell: {e}")))?;
        let mut input = child.stdin.take().expect("piped");
        let mut out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let work = async {
            let write = async move {
                let r = input.write_all(&stdin).await;
                drop(input);
                r
            };
            let read_out = async {
                let mut buf = Vec::new();
                (&mut out)
                    .take(MAX_STDOUT as u64 + 1)
                    .read_to_end(&mut buf)
                    .await
                    .map(|_| buf)
            };
            let read_err = async {
                let mut buf = Vec::new();
                (&mut err)
                    .take(MAX_STDERR as u64)
                    .read_to_end(&mut buf)
                    .await
                    .map(|_| buf)
            };
            let (w, o, e) = tokio::join!(write, read_out, read_err);
            let status = child.wait().await;
            (w, o, e, status)
        };
        let (w, o, e, status) = tokio::time::timeout(DEADLINE, work)
            .await
            .map_err(|_| ShellError(format!("no answer within {DEADLINE:?}")))?;
        let stderr = String::from_utf8_lossy(&e.unwrap_or_default())
            .trim()
            .to_string();
        let status = status.map_err(|e| ShellError(format!("the shell failed: {e}")))?;
        if !status.success() {
            return Err(ShellError(if stderr.is_empty() {
                format!("the shell exited with {status}")
            } else {
                stderr
            }));
        }
        if let Err(e) = w {
            return Err(ShellError(format!("cannot send the data: {e}")));
        }
        let stdout = o.map_err(|e| ShellError(format!("cannot read the answer: {e}")))?;
        if stdout.len() > MAX_STDOUT {
            return Err(ShellError("the answer is too large".into()));
        }
        Ok(ShellOutput { stdout })
    }
}

/// A word for `sh`: single-quoted.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// What a permission failure asks of the SSH user, appended to errors.
const NEEDS: &str = "the SSH user needs root, or write access to `files_dir` and `secrets_dir` \
     (and root to mount a tmpfs at `secrets_dir`)";

/// The secrets of the desired state with where their generations live on a host:
/// (`<secrets_dir>/<fleet>/<stack>/<name>.` prefix, value), one per secret. Every generation
/// under a prefix is read back and compared, whoever binds it, so the check needs no
/// observation of the containers and runs beside it.
fn secret_prefixes<'a>(
    desired: &'a DesiredState,
    host: &HostFiles,
) -> Vec<(String, &'a SecretValue)> {
    let mut out = Vec::new();
    for (stack_name, stack) in &desired.stacks {
        for svc in stack.services.values() {
            for f in svc
                .container
                .files
                .iter()
                .filter(|f| f.kind == FileKind::Secret)
            {
                if let Some(value) = desired
                    .files
                    .secrets
                    .get(&FilePayload::secret_key(stack_name, &f.name))
                {
                    out.push((
                        host.secret_prefix(&desired.fleet, stack_name, &f.name),
                        value,
                    ));
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// What each host holds of the files the desired state needs: one round trip per host (the
/// shells given), none when the desired state uses no files. Independent of the containers'
/// observation, so `Fleet::observe` runs it beside the engines'; `apply_seen` puts the answers
/// into the snapshots.
pub async fn check(
    shells: &BTreeMap<String, HostShell>,
    desired: &DesiredState,
) -> BTreeMap<String, Result<FilesSeen, String>> {
    if desired.files.is_empty() {
        return BTreeMap::new();
    }
    let addresses: Vec<&String> = desired.files.blobs.keys().collect();
    let mut jobs = Vec::new();
    for (name, shell) in shells {
        let host = desired
            .hosts
            .get(name)
            .map(|h| h.files.clone())
            .unwrap_or_default();
        let secrets = secret_prefixes(desired, &host);
        let mut script = format!("d={}\n", quote(&host.fleet_files(&desired.fleet)));
        script.push_str("for a in");
        for a in &addresses {
            script.push(' ');
            script.push_str(a);
        }
        script.push_str("; do [ -d \"$d/$a\" ] && echo \"P $a\"; done\n");
        for (i, (prefix, _)) in secrets.iter().enumerate() {
            // Each generation: `S <index> <length> <path>`, its bytes, a newline.
            script.push_str(&format!(
                "for p in {}*; do if [ -f \"$p\" ] && [ -r \"$p\" ]; then n=$(wc -c < \"$p\"); echo \"S {i} $n $p\"; cat \"$p\"; echo; fi; done\n",
                quote(prefix)
            ));
        }
        script.push_str("true\n");
        let shell = shell.clone();
        let name = name.clone();
        jobs.push(async move {
            let r = shell.run(&script, Vec::new()).await;
            let seen = r
                .map(|out| parse_seen(&out.stdout, &secrets))
                .map_err(|e| e.to_string());
            (name, seen)
        });
    }
    futures_util::future::join_all(jobs)
        .await
        .into_iter()
        .collect()
}

/// Puts each reachable host's answer from `check` into its snapshot. A host whose check failed
/// is reported unreachable with why (the planner then plans nothing there rather than replace
/// on a guess).
pub fn apply_seen(observed: &mut ObservedState, seen: BTreeMap<String, Result<FilesSeen, String>>) {
    for (name, r) in seen {
        let Some(ObservedHost::Reachable(snap)) = observed.hosts.get_mut(&name) else {
            continue;
        };
        match r {
            Ok(seen) => snap.files = Some(Box::new(seen)),
            Err(e) => {
                tracing::warn!(host = %name, error = %e, "cannot check the host's files");
                observed.hosts.insert(
                    name,
                    ObservedHost::Unreachable {
                        reason: format!("cannot check its files: {e}"),
                    },
                );
            }
        }
    }
}

/// Reads the check's answer: `P <address>` lines, then for each secret generation that exists,
/// `S <index> <n> <path>`, its n bytes and a newline. Values are compared here and dropped.
fn parse_seen(out: &[u8], secrets: &[(String, &SecretValue)]) -> FilesSeen {
    let mut seen = FilesSeen::default();
    let mut i = 0;
    while i < out.len() {
        let end = out[i..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(out.len(), |p| i + p);
        let line = String::from_utf8_lossy(&out[i..end]).to_string();
        i = end + 1;
        if let Some(a) = line.strip_prefix("P ") {
            seen.present.insert(a.to_string());
        } else if let Some(rest) = line.strip_prefix("S ") {
            let mut words = rest.splitn(3, ' ');
            let idx = words.next().and_then(|w| w.parse::<usize>().ok());
            let n = words.next().and_then(|w| w.trim().parse::<usize>().ok());
            let (Some(idx), Some(n), Some(path)) = (idx, n, words.next()) else {
                break;
            };
            let content = out.get(i..i + n).unwrap_or_default();
            i += n + 1;
            if let Some((prefix, value)) = secrets.get(idx) {
                // A generation is `<prefix><letters and digits>`: nothing else under it counts.
                let gen = path.strip_prefix(prefix.as_str()).unwrap_or_default();
                let is_generation =
                    !gen.is_empty() && gen.chars().all(|c| c.is_ascii_alphanumeric());
                if is_generation && value.data == content {
                    seen.secrets_current.insert(path.to_string());
                }
            }
        }
    }
    seen
}

/// One entry of a tar: path, data (`None`: a folder), mode, uid, gid.
type TarEntry<'a> = (String, Option<&'a [u8]>, u32, u32, u32);

/// A secret generation to write: host path, value, uid, gid, mode.
pub type SecretItem<'a> = (String, &'a SecretValue, Option<u32>, Option<u32>, u32);

/// A ustar archive of `entries`.
fn tar(entries: &[TarEntry<'_>]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for (path, data, mode, uid, gid) in entries {
        let mut h = [0u8; 512];
        let name = if data.is_none() {
            format!("{path}/")
        } else {
            path.clone()
        };
        let (prefix, base) = if name.len() <= 100 {
            ("", name.as_str())
        } else {
            match name[..name.len().min(156)].rfind('/') {
                Some(cut) if name.len() - cut - 1 <= 100 && cut <= 155 => {
                    (&name[..cut], &name[cut + 1..])
                }
                _ => return Err(format!("path `{path}` is too long to ship")),
            }
        };
        h[..base.len()].copy_from_slice(base.as_bytes());
        let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
            let s = format!("{:0width$o}\0", v, width = len - 1);
            h[at..at + len].copy_from_slice(s.as_bytes());
        };
        octal(&mut h, 100, 8, u64::from(*mode));
        octal(&mut h, 108, 8, u64::from(*uid));
        octal(&mut h, 116, 8, u64::from(*gid));
        octal(&mut h, 124, 12, data.map_or(0, |d| d.len() as u64));
        octal(&mut h, 136, 12, 0);
        h[156] = if data.is_none() { b'5' } else { b'0' };
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        out.extend_from_slice(&h);
        if let Some(d) = data {
            out.extend_from_slice(d);
            let pad = (512 - d.len() % 512) % 512;
            out.extend(std::iter::repeat_n(0u8, pad));
        }
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    Ok(out)
}

/// Ships the blobs a host lacks: one tar, unpacked under a temporary folder of the fleet's
/// files folder and renamed into place address by address.
pub async fn ship(
    shell: &HostShell,
    host_name: &str,
    host: &HostFiles,
    fleet: &str,
    blobs: &[(&String, &Blob)],
) -> Result<(), String> {
    if blobs.is_empty() {
        return Ok(());
    }
    let mut entries = Vec::new();
    let mut fixes = String::new();
    for (address, blob) in blobs {
        entries.push(((*address).clone(), None, 0o755, 0, 0));
        for e in &blob.entries {
            let path = if e.path.is_empty() {
                format!("{address}/f")
            } else {
                format!("{address}/f/{}", e.path)
            };
            entries.push((path, e.data.as_deref(), e.mode, 0, 0));
        }
        // Owner and mode as written, whoever runs tar.
        let root = quote(&format!("{address}/f"));
        if let Some(mode) = blob.entries.first().map(|e| e.mode) {
            fixes.push_str(&format!("chmod {mode:o} \"$t\"/{root}\n"));
        }
        if blob.uid.is_some() || blob.gid.is_some() {
            let owner = format!(
                "{}:{}",
                blob.uid.map(|u| u.to_string()).unwrap_or_default(),
                blob.gid.map(|g| g.to_string()).unwrap_or_default()
            );
            fixes.push_str(&format!("chown -R {owner} \"$t\"/{root}\n"));
        }
        fixes.push_str(&format!(
            "if [ -e \"$d\"/{a} ]; then rm -rf \"$t\"/{a}; else mv \"$t\"/{a} \"$d\"/{a}; fi\n",
            a = quote(address)
        ));
    }
    let data = tar(&entries).map_err(|e| format!("host `{host_name}`: {e}"))?;
    let dir = host.fleet_files(fleet);
    let script = format!(
        "set -e\nd={d}\nmkdir -p \"$d\" 2>/dev/null || {{ echo \"cannot create \\`$d\\`\" >&2; exit 3; }}\n\
         t=$(mktemp -d \"$d/.in.XXXXXX\" 2>/dev/null) || {{ echo \"cannot write in \\`$d\\`\" >&2; exit 3; }}\n\
         trap 'rm -rf \"$t\"' EXIT\ntar -x -o -C \"$t\" -f -\n{fixes}",
        d = quote(&dir)
    );
    shell
        .run(&script, data)
        .await
        .map(|_| ())
        .map_err(|e| format!("host `{host_name}`: cannot ship files to `{dir}`: {e}; {NEEDS}"))
}

/// Writes secret generations (`<secrets_dir>/<fleet>/<stack>/<name>.<gen>`), each with its
/// owner and mode, on the host's tmpfs at `secrets_dir`: mounted there when it is not one,
/// refused on a persistent disk unless `secrets_on_disk`. The values go on stdin only.
pub async fn write_secrets(
    shell: &HostShell,
    host_name: &str,
    host: &HostFiles,
    fleet: &str,
    items: &[SecretItem<'_>],
) -> Result<(), String> {
    if items.is_empty() {
        return Ok(());
    }
    let base = host.fleet_secrets(fleet);
    let mut entries = Vec::new();
    let mut dirs = BTreeSet::new();
    let mut fixes = String::new();
    for (path, value, uid, gid, mode) in items {
        let rel = path
            .strip_prefix(&format!("{base}/"))
            .ok_or_else(|| format!("host `{host_name}`: secret path outside `{base}`"))?;
        if let Some((stack, _)) = rel.split_once('/') {
            dirs.insert(stack.to_string());
        }
        entries.push((rel.to_string(), Some(value.data.as_slice()), *mode, 0, 0));
        fixes.push_str(&format!("chmod {mode:o} \"$s\"/{}\n", quote(rel)));
        if uid.is_some() || gid.is_some() {
            fixes.push_str(&format!(
                "chown {}:{} \"$s\"/{}\n",
                uid.map(|u| u.to_string()).unwrap_or_default(),
                gid.map(|g| g.to_string()).unwrap_or_default(),
                quote(rel)
            ));
        }
    }
    let mut tar_entries: Vec<TarEntry<'_>> = dirs
        .iter()
        .map(|d| (d.clone(), None, 0o700, 0, 0))
        .collect();
    tar_entries.extend(entries);
    let data = tar(&tar_entries).map_err(|e| format!("host `{host_name}`: {e}"))?;
    let script = format!(
        "set -e\nd={d}\ns={s}\n\
         mkdir -p \"$d\" 2>/dev/null || {{ echo \"cannot create \\`$d\\`\" >&2; exit 3; }}\n\
         fs=$(stat -f -c %T \"$d\" 2>/dev/null || echo unknown)\n\
         if [ \"$fs\" != tmpfs ] && [ \"$fs\" != ramfs ] && [ {on_disk} != 1 ]; then\n\
           mount -t tmpfs -o mode=0700,size={size} convoy-secrets \"$d\" 2>/dev/null || {{\n\
             echo \"\\`$d\\` is on a persistent disk ($fs) and a tmpfs cannot be mounted there: refusing to write a secret to disk (mount a tmpfs there, or set secrets_on_disk: true)\" >&2; exit 4; }}\n\
         fi\n\
         umask 077\nmkdir -p \"$s\"\nchmod 700 \"$s\"\n\
         tar -x -o -C \"$s\" -f -\n{fixes}",
        d = quote(&host.secrets_dir),
        s = quote(&base),
        on_disk = u8::from(host.secrets_on_disk),
        size = SECRETS_TMPFS_SIZE,
    );
    shell
        .run(&script, data)
        .await
        .map(|_| ())
        .map_err(|e| format!("host `{host_name}`: cannot write secrets to `{base}`: {e}; {NEEDS}"))
}

/// Removes what the fleet's containers on a host no longer use: content-addressed folders
/// not in `keep` (addresses) and secret generations not in `keep_secrets` (host paths). Only
/// inside the fleet's folders of `files_dir` and `secrets_dir`.
pub async fn collect(
    shell: &HostShell,
    host_name: &str,
    host: &HostFiles,
    fleet: &str,
    keep: &BTreeSet<String>,
    keep_secrets: &BTreeSet<String>,
) -> Result<(), String> {
    let mut list = String::new();
    for a in keep {
        list.push_str(&format!("{}/{a}\n", host.fleet_files(fleet)));
    }
    for p in keep_secrets {
        list.push_str(p);
        list.push('\n');
    }
    let script = format!(
        "keep=$(cat)\nd={d}\ns={s}\n\
         if [ -d \"$d\" ]; then for x in \"$d\"/*; do [ -e \"$x\" ] || continue; printf '%s\\n' \"$keep\" | grep -qxF -- \"$x\" || rm -rf -- \"$x\"; done; fi\n\
         if [ -d \"$s\" ]; then for x in \"$s\"/*/*; do [ -e \"$x\" ] || continue; printf '%s\\n' \"$keep\" | grep -qxF -- \"$x\" || rm -f -- \"$x\"; done; fi\ntrue\n",
        d = quote(&host.fleet_files(fleet)),
        s = quote(&host.fleet_secrets(fleet)),
    );
    shell
        .run(&script, list.into_bytes())
        .await
        .map(|_| ())
        .map_err(|e| format!("host `{host_name}`: cannot remove unused files: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(quote("a'b"), "'a'\\''b'");
    }

    #[tokio::test]
    async fn a_local_shell_ships_checks_and_collects() {
        let dir = tempfile::tempdir().unwrap();
        let host = HostFiles {
            files_dir: dir.path().join("files").to_string_lossy().into_owned(),
            secrets_dir: dir.path().join("secrets").to_string_lossy().into_owned(),
            secrets_on_disk: true,
        };
        let shell = HostShell::Local;
        let blob = Blob {
            entries: vec![
                crate::model::files::BlobEntry {
                    path: String::new(),
                    data: None,
                    mode: 0o755,
                },
                crate::model::files::BlobEntry {
                    path: "index.html".into(),
                    data: Some(b"<p>hi</p>\n".to_vec()),
                    mode: 0o644,
                },
            ],
            uid: None,
            gid: None,
            owner: None,
        };
        let addr = blob.address();
        ship(&shell, "h", &host, "f1", &[(&addr, &blob)])
            .await
            .unwrap();
        let src = host.blob_source("f1", &addr);
        assert_eq!(
            std::fs::read_to_string(format!("{src}/index.html")).unwrap(),
            "<p>hi</p>\n"
        );
        // Shipping again is harmless; the temporary folder is gone.
        ship(&shell, "h", &host, "f1", &[(&addr, &blob)])
            .await
            .unwrap();
        let names: Vec<_> = std::fs::read_dir(host.fleet_files("f1"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![addr.clone()]);

        let value = SecretValue {
            data: b"s3cret\n".to_vec(),
        };
        let path = format!("{}abc123", host.secret_prefix("f1", "web", "db"));
        write_secrets(
            &shell,
            "h",
            &host,
            "f1",
            &[(path.clone(), &value, None, None, 0o400)],
        )
        .await
        .unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o400);

        // The check finds the address and compares the secret in memory.
        let other = SecretValue {
            data: b"other!\n".to_vec(),
        };
        let script = format!(
            "p={}; n=$(wc -c < \"$p\"); echo \"P {addr}\"; echo \"S 0 $n $p\"; cat \"$p\"; echo",
            quote(&path)
        );
        let out = shell.run(&script, Vec::new()).await.unwrap();
        let prefix = host.secret_prefix("f1", "web", "db");
        let seen = parse_seen(&out.stdout, &[(prefix.clone(), &value)]);
        assert!(seen.present.contains(&addr));
        assert!(seen.secrets_current.contains(&path));
        // Another secret's prefix: not a generation of it, however equal the bytes.
        let elsewhere = host.secret_prefix("f1", "web", "other");
        let seen = parse_seen(&out.stdout, &[(elsewhere, &value)]);
        assert!(seen.secrets_current.is_empty());
        let seen = parse_seen(&out.stdout, &[(prefix, &other)]);
        assert!(seen.secrets_current.is_empty());

        // Garbage: nothing kept, everything of the fleet goes; nothing else is touched.
        std::fs::write(dir.path().join("files/keep-me"), "x").unwrap();
        collect(&shell, "h", &host, "f1", &BTreeSet::new(), &BTreeSet::new())
            .await
            .unwrap();
        assert!(!std::path::Path::new(&src).exists());
        assert!(!std::path::Path::new(&path).exists());
        assert!(dir.path().join("files/keep-me").exists());
    }

    #[tokio::test]
    async fn a_failure_says_what_the_user_needs() {
        let host = HostFiles {
            files_dir: "/proc/convoy-cannot".into(),
            ..Default::default()
        };
        let blob = Blob::file(b"x".to_vec(), 0o444, None, None);
        let addr = blob.address();
        let e = ship(&HostShell::Local, "h1", &host, "f", &[(&addr, &blob)])
            .await
            .unwrap_err();
        assert!(
            e.contains("host `h1`") && e.contains("/proc/convoy-cannot/f"),
            "{e}"
        );
        assert!(e.contains("SSH user needs root"), "{e}");
    }
}

#[cfg(test)]
#[path = "files_disk_tests.rs"]
mod disk_tests;
