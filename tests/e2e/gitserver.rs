//! Real git remotes for the tests of following a branch: `HttpsGit`, lighttpd serving `git
//! http-backend` (smart HTTP: clone, fetch, push) over TLS from a throwaway CA on 127.0.0.1,
//! behind HTTP basic auth; `SshGit`, a bare repository on a test-fleet host reached as
//! `ssh://root@<address>/<path>` with strict host key checking; and `push_commit`, which puts a
//! commit on a branch of either.
//!
//! Only the system `git`, `openssl`, `curl` and `lighttpd` are used (scripts/ensure-docker
//! installs them). Servers listen on loopback only, and everything made here (server, keys,
//! repositories) is removed on drop, also when the test panics. Nothing here may weaken host
//! key or certificate checking, and no secret goes into a panic message.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::fleet::Hosts;

/// The user of the token-only credentials file: what the daemon sends with a token alone
/// (GitHub's and Gitea's convention for a token as the password of basic auth).
pub const TOKEN_USER: &str = "x-access-token";
/// The user of the `user:password` credentials file.
pub const PASSWORD_USER: &str = "convoy";

/// How long a server may take to answer after it was started.
const READY_WITHIN: Duration = Duration::from_secs(15);
/// Ports taken by someone else between our probe and lighttpd's bind: tries before giving up.
const START_ATTEMPTS: usize = 5;

/// `n` random bytes as hex, from the kernel: secrets nobody can guess or find in a log by
/// accident (no dev-dependency on a random crate for this one use).
fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard base64 with padding, for an `Authorization: Basic` header.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Quotes a word for `sh` (GIT_SSH_COMMAND is run by a shell).
fn sh_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-=:@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs a command and panics, with its stderr, when it fails. Callers pass no secret in
/// `args`: secrets travel in the environment, which the message leaves out.
fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A `git` command with no prompt, no credential helper of the machine's and no system
/// config: a refused credential fails at once instead of asking, and only `env` decides.
pub fn git_cmd(env: &[(String, String)]) -> Command {
    let mut cmd = Command::new("git");
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .env_remove("GIT_SSL_CAINFO")
        .env_remove("GIT_SSH_COMMAND")
        .args(["-c", "credential.helper=", "-c", "commit.gpgsign=false"])
        .args([
            "-c",
            "user.name=Convoy Test",
            "-c",
            "user.email=test@convoy.invalid",
        ])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null());
    cmd
}

/// Runs `git args` in `dir` with `env`; stdout, trimmed. Panics with git's stderr on failure.
pub fn git_in(dir: &Path, env: &[(String, String)], args: &[&str]) -> String {
    let out = run_ok(
        git_cmd(env).args(args).current_dir(dir),
        &format!("git {args:?}"),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `git args` with `env`, returning the whole outcome (for tests that expect a refusal).
pub fn git_try(dir: &Path, env: &[(String, String)], args: &[&str]) -> Output {
    git_cmd(env)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git")
}

/// Commits `files` (path relative to the repository root, contents) on top of `branch` of
/// `remote` (or as its first commit when the branch does not exist yet) and pushes it there;
/// returns the full commit id. `env` is the remote's (`HttpsGit::push_env`, `SshGit::git_env`).
/// Always makes a new commit, also when the files are unchanged.
pub fn push_commit(
    remote: &str,
    env: &[(String, String)],
    branch: &str,
    files: &[(&str, &str)],
    message: &str,
) -> String {
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    git_in(w, env, &["init", "-q", "-b", branch]);
    let heads = git_in(
        w,
        env,
        &[
            "ls-remote",
            "--heads",
            remote,
            &format!("refs/heads/{branch}"),
        ],
    );
    if !heads.is_empty() {
        git_in(
            w,
            env,
            &["fetch", "-q", remote, &format!("refs/heads/{branch}")],
        );
        git_in(w, env, &["reset", "-q", "--hard", "FETCH_HEAD"]);
    }
    for (rel, contents) in files {
        let p = w.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, contents).expect("write");
    }
    git_in(w, env, &["add", "-A"]);
    git_in(w, env, &["commit", "-q", "--allow-empty", "-m", message]);
    git_in(
        w,
        env,
        &["push", "-q", remote, &format!("HEAD:refs/heads/{branch}")],
    );
    git_in(w, env, &["rev-parse", "HEAD"])
}

/// `git -c key=value ...` as environment variables (GIT_CONFIG_COUNT, GIT_CONFIG_KEY_n,
/// GIT_CONFIG_VALUE_n): values stay off command lines, where `ps` would show them.
pub fn git_config_env(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env = vec![("GIT_CONFIG_COUNT".to_string(), pairs.len().to_string())];
    for (i, (k, v)) in pairs.iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{i}"), k.to_string()));
        env.push((format!("GIT_CONFIG_VALUE_{i}"), v.clone()));
    }
    env
}

/// `Authorization: Basic <base64(user:password)>`, for `http.extraHeader`.
pub fn auth_header(user: &str, password: &str) -> String {
    format!(
        "Authorization: Basic {}",
        base64(format!("{user}:{password}").as_bytes())
    )
}

/// Makes `path` a bare repository whose HEAD names `main`, that takes pushes over HTTP.
fn init_bare(path: &Path) {
    run_ok(
        git_cmd(&[])
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(path),
        "git init --bare",
    );
    run_ok(
        git_cmd(&[])
            .arg("-C")
            .arg(path)
            .args(["config", "http.receivepack", "true"]),
        "git config http.receivepack",
    );
}

/// A smart-HTTP git server over TLS on 127.0.0.1, with basic auth: user `convoy` with a
/// password and user `x-access-token` with a token, both random. Killed, and its files
/// removed, on drop.
pub struct HttpsGit {
    // Declared first: the server stops before its files are removed.
    _server: Lighttpd,
    port: u16,
    password: String,
    token: String,
    dir: tempfile::TempDir,
}

/// The lighttpd process: SIGTERM on drop, SIGKILL past a deadline, and waited for.
struct Lighttpd(Child);

impl Drop for Lighttpd {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while let Ok(None) = self.0.try_wait() {
                if Instant::now() > deadline {
                    let _ = self.0.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.0.wait();
    }
}

impl HttpsGit {
    /// `start`, or `None` (skip, said on stderr) when lighttpd, openssl or curl is missing and
    /// the run does not require Docker's test tools (under CI or CONVOY_REQUIRE_DOCKER a
    /// missing tool is a failure).
    pub fn try_start() -> Option<HttpsGit> {
        let missing: Vec<&str> = [
            ("lighttpd", lighttpd_bin().exists()),
            ("openssl", on_path("openssl")),
            ("curl", on_path("curl")),
        ]
        .into_iter()
        .filter(|(_, ok)| !ok)
        .map(|(name, _)| name)
        .collect();
        if missing.is_empty() {
            return Some(HttpsGit::start());
        }
        if crate::harness::docker_required() {
            panic!("{missing:?} missing: run scripts/ensure-docker");
        }
        eprintln!("SKIPPED: {missing:?} missing; scripts/ensure-docker installs them");
        None
    }

    /// Makes the CA, the certificate, the users file and the repository root, then starts
    /// lighttpd on a free port and waits until it answers TLS with our certificate.
    pub fn start() -> HttpsGit {
        let dir = tempfile::Builder::new()
            .prefix("convoy-httpsgit-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        for sub in ["repos", "www", "upload"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        make_certificates(d);
        let password = random_hex(16);
        let token = random_hex(20);
        std::fs::write(
            d.join("users"),
            format!("{PASSWORD_USER}:{password}\n{TOKEN_USER}:{token}\n"),
        )
        .expect("users file");
        std::fs::write(d.join("token"), format!("{token}\n")).expect("token file");
        std::fs::write(
            d.join("user-password"),
            format!("{PASSWORD_USER}:{password}\n"),
        )
        .expect("user:password file");
        for f in ["users", "token", "user-password", "server.key", "ca.key"] {
            restrict(&d.join(f));
        }

        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            std::fs::write(d.join("lighttpd.conf"), lighttpd_conf(d, port)).expect("config");
            let log = std::fs::File::create(d.join("lighttpd.out")).expect("log");
            let child = Command::new(lighttpd_bin())
                .args(["-D", "-f"])
                .arg(d.join("lighttpd.conf"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("spawn lighttpd (scripts/ensure-docker installs it)");
            let mut server = Lighttpd(child);
            match wait_ready(&mut server, d, port) {
                Ok(()) => {
                    return HttpsGit {
                        _server: server,
                        port,
                        password,
                        token,
                        dir,
                    }
                }
                // Another process took the port between our probe and the bind: try another.
                Err(output) if output.contains("Address already in use") => last = output,
                Err(output) => {
                    last = output;
                    break;
                }
            }
        }
        panic!("lighttpd did not start; its output:\n{last}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:PORT/git/<name>.git`.
    pub fn url(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}/git/{name}.git", self.port)
    }

    /// The test CA's certificate (PEM): what `--git-ca-file` and `http.sslCAInfo` take.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A file holding the token alone (and a newline); the server takes it as the password of
    /// user `x-access-token` (`TOKEN_USER`).
    pub fn credentials_file_token(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    /// A file holding `convoy:<password>` (and a newline).
    pub fn credentials_file_user_password(&self) -> PathBuf {
        self.dir.path().join("user-password")
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// Every string that must never appear in an output or a log: the token, the password,
    /// and the basic-auth encodings of both credentials.
    pub fn secret_values(&self) -> Vec<String> {
        vec![
            self.token.clone(),
            self.password.clone(),
            base64(format!("{TOKEN_USER}:{}", self.token).as_bytes()),
            base64(format!("{PASSWORD_USER}:{}", self.password).as_bytes()),
        ]
    }

    /// Creates the bare repository `<name>.git` (HEAD names `main`; pushes allowed).
    pub fn create_repo(&self, name: &str) {
        init_bare(&self.repo_path(name));
    }

    /// Where repository `name` lives on disk (for a look behind the server's back).
    pub fn repo_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("repos").join(format!("{name}.git"))
    }

    /// The environment for `git` (see `git_cmd`) to clone, fetch and push as user `convoy`:
    /// our CA and an `Authorization` header, given as GIT_CONFIG_* so that no secret is on a
    /// command line.
    pub fn push_env(&self) -> Vec<(String, String)> {
        self.env_as(PASSWORD_USER, &self.password)
    }

    /// The environment for `git` as `user` with `password` (a wrong one, say), trusting our CA.
    pub fn env_as(&self, user: &str, password: &str) -> Vec<(String, String)> {
        git_config_env(&[
            ("http.sslCAInfo", self.ca_file().display().to_string()),
            ("http.extraHeader", auth_header(user, password)),
        ])
    }

    /// The environment for `git` that trusts our CA and sends no credentials.
    pub fn env_ca_only(&self) -> Vec<(String, String)> {
        git_config_env(&[("http.sslCAInfo", self.ca_file().display().to_string())])
    }

    /// The HTTP status of a `GET` of `url` (relative to the server) as `user:password`
    /// (`None`: no credentials), e.g. `401`, `200`.
    pub fn http_status(&self, path: &str, cred: Option<(&str, &str)>) -> u16 {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .arg("--cacert")
        .arg(self.ca_file());
        if cred.is_some() {
            // The credentials come as a config line on stdin: off the command line.
            cmd.args(["-K", "-"]);
        }
        let url = format!("https://127.0.0.1:{}{path}", self.port);
        let mut child = cmd
            .arg(&url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run curl");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            if let Some((u, p)) = cred {
                writeln!(stdin, "user = \"{u}:{p}\"").expect("curl config");
            }
        }
        let out = child.wait_with_output().expect("curl");
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        code.parse()
            .unwrap_or_else(|_| panic!("curl gave no status for {url}: {code:?}"))
    }
}

/// Polls until the server on `port` answers HTTPS with a certificate of our CA (so it is ours,
/// not another program's on the same port); `Err(its output)` when it exits or the deadline
/// passes.
fn wait_ready(server: &mut Lighttpd, d: &Path, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + READY_WITHIN;
    let output = || {
        std::fs::read_to_string(d.join("lighttpd.out")).unwrap_or_default()
            + &std::fs::read_to_string(d.join("error.log")).unwrap_or_default()
    };
    loop {
        if let Ok(Some(status)) = server.0.try_wait() {
            return Err(format!("exited with {status}:\n{}", output()));
        }
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "2",
            ])
            .arg("--cacert")
            .arg(d.join("ca.pem"))
            .arg(format!("https://127.0.0.1:{port}/"))
            .stdin(Stdio::null())
            .output()
            .expect("run curl (scripts/ensure-docker installs it)");
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        if code.len() == 3 && code != "000" {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("no answer within {READY_WITHIN:?}:\n{}", output()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Owner-only: the keys and secrets of a test are nobody else's business on a shared machine.
fn restrict(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// A port that was free a moment ago on 127.0.0.1 (the caller retries on a clash).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// lighttpd lives in sbin, which a non-root PATH may lack.
fn lighttpd_bin() -> PathBuf {
    ["/usr/sbin/lighttpd", "/usr/local/sbin/lighttpd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/lighttpd"))
}

/// The `git-http-backend` of the `git` on PATH (the one the tests and the daemon run).
fn http_backend() -> PathBuf {
    let out = run_ok(Command::new("git").arg("--exec-path"), "git --exec-path");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("git-http-backend")
}

/// A CA (key and self-signed certificate) and a certificate for IP 127.0.0.1 signed by it, in
/// `d`: ca.pem, ca.key, server.pem, server.key. EC keys: quick to make.
fn make_certificates(d: &Path) {
    // Arguments split on whitespace: none of them holds a space.
    let openssl = |args: &str, what: &str| {
        run_ok(
            Command::new("openssl")
                .args(args.split_whitespace())
                .current_dir(d),
            what,
        );
    };
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(
        &format!(
            "req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=convoy-test-ca \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
        ),
        "openssl: the test CA",
    );
    openssl(
        &format!("req {ec} -keyout server.key -out server.csr -subj /CN=127.0.0.1"),
        "openssl: the server key",
    );
    std::fs::write(
        d.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
    )
    .expect("extensions file");
    openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -CAserial ca.srl \
         -out server.pem -days 2 -extfile server.ext",
        "openssl: the server certificate",
    );
}

/// lighttpd's configuration: TLS on 127.0.0.1:port, `/git/...` to git-http-backend by CGI,
/// every URL behind basic auth.
fn lighttpd_conf(d: &Path, port: u16) -> String {
    let p = |rel: &str| d.join(rel).display().to_string();
    format!(
        r#"# written by tests/e2e/gitserver.rs for one test
server.modules = ("mod_openssl", "mod_auth", "mod_authn_file", "mod_alias", "mod_setenv", "mod_cgi")
server.bind = "127.0.0.1"
server.port = {port}
server.document-root = "{www}"
server.errorlog = "{errorlog}"
server.upload-dirs = ("{upload}")
ssl.engine = "enable"
ssl.pemfile = "{cert}"
ssl.privkey = "{key}"
auth.backend = "plain"
auth.backend.plain.userfile = "{users}"
auth.require = ("/" => ("method" => "basic", "realm" => "convoy-test-git", "require" => "valid-user"))
alias.url = ("/git" => "{backend}")
$HTTP["url"] =~ "^/git/" {{
  cgi.assign = ("" => "")
  setenv.add-environment = (
    "GIT_PROJECT_ROOT" => "{repos}",
    "GIT_HTTP_EXPORT_ALL" => "1"
  )
}}
"#,
        www = p("www"),
        errorlog = p("error.log"),
        upload = p("upload"),
        cert = p("server.pem"),
        key = p("server.key"),
        users = p("users"),
        backend = http_backend().display(),
        repos = p("repos"),
    )
}

/// A bare repository on a test-fleet host, reached over SSH as root with the fleet's key and
/// strict host key checking. Its folder (on the file system the hosts share with us) is
/// removed on drop.
pub struct SshGit {
    addr: String,
    repo: PathBuf,
    key: String,
    known_hosts: PathBuf,
    _dir: tempfile::TempDir,
}

impl SshGit {
    /// A fresh bare repository (HEAD names `main`) for host `n` (1-based, as `Hosts::stop`).
    /// Holding `hosts` holds the fleet lock, so the fleet tests' handshake counts never see
    /// these connections.
    pub fn on_fleet_host(hosts: &Hosts, n: usize) -> SshGit {
        let env = &hosts.env;
        let addr = env[&format!("HOST{n}_ADDR")].clone();
        let dir = tempfile::Builder::new()
            .prefix("sshgit-")
            .tempdir_in(&env["FLEET_DIR"])
            .expect("tempdir in FLEET_DIR");
        let repo = dir.path().join("repo.git");
        init_bare(&repo);
        let known_hosts = known_hosts_for(hosts, n, &addr, dir.path());
        SshGit {
            addr,
            repo,
            key: env["FLEET_SSH_KEY"].clone(),
            known_hosts,
            _dir: dir,
        }
    }

    /// `ssh://root@<address>/<absolute path>`.
    pub fn url(&self) -> String {
        format!("ssh://root@{}{}", self.addr, self.repo.display())
    }

    /// Where the repository lives (the same path on the host and here).
    pub fn repo_path(&self) -> &Path {
        &self.repo
    }

    /// The host's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The known_hosts file that names the host by its address.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// An `ssh` command line for GIT_SSH_COMMAND: the fleet's client key and a known_hosts that
    /// holds the host by address, and no ssh config of the machine's (`-F /dev/null`). It does
    /// NOT itself ask for strict checking or batch mode: that is the daemon's part (it appends
    /// `-o BatchMode=yes -o StrictHostKeyChecking=yes`); `git_env` adds them for the tests' own git.
    pub fn git_ssh_command(&self) -> String {
        self.git_ssh_command_with_known_hosts(&self.known_hosts)
    }

    /// `git_ssh_command` with another known_hosts file (an empty one, one with a wrong key).
    pub fn git_ssh_command_with_known_hosts(&self, known_hosts: &Path) -> String {
        format!(
            "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} \
             -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=10",
            sh_quote(&self.key),
            sh_quote(&known_hosts.display().to_string()),
        )
    }

    /// The environment for `git` (see `git_cmd`): GIT_SSH_COMMAND as the daemon builds it,
    /// strict host key checking and batch mode included.
    pub fn git_env(&self) -> Vec<(String, String)> {
        vec![(
            "GIT_SSH_COMMAND".into(),
            strict_ssh_command(&self.git_ssh_command()),
        )]
    }
}

/// What the daemon runs: the user's command with batch mode and strict host key checking.
pub fn strict_ssh_command(base: &str) -> String {
    format!("{base} -o BatchMode=yes -o StrictHostKeyChecking=yes")
}

/// The fleet's known_hosts when it names host `n` by `addr` with the host's own key; otherwise
/// a test-local file written from the host's public key, with the address (never a laxer check).
fn known_hosts_for(hosts: &Hosts, n: usize, addr: &str, dir: &Path) -> PathBuf {
    let host_dir = PathBuf::from(&hosts.env[&format!("HOST{n}_DIR")]);
    let pubkey = std::fs::read_to_string(host_dir.join("ssh_host_ed25519_key.pub"))
        .expect("the host's public key");
    let key: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    assert_eq!(key.len(), 2, "host {n}'s public key is malformed");
    let fleet_kh = PathBuf::from(hosts.known_hosts());
    let listed = std::fs::read_to_string(&fleet_kh)
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 3 && f[0].split(',').any(|h| h == addr) && f[1..3] == key[..]
        });
    if listed {
        return fleet_kh;
    }
    let local = dir.join("known_hosts");
    std::fs::write(&local, format!("{addr} {} {}\n", key[0], key[1])).expect("known_hosts");
    local
}
