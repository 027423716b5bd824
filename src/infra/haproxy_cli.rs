//! HAProxy's master CLI, as the drain of a replica needs it (issue 13): which old workers a
//! reload left behind, and how many connections each still has to given addresses.
//!
//! A reload (SIGUSR2) gives new connections to a new worker at once, but the old workers keep
//! the connections they had until those end (or `hard-stop-after`): a replica taken out of
//! the configuration may still be serving requests through them. The master CLI listens on
//! the host's loopback (`model::proxy::MASTER_CLI_PORT`) and is reached like a probe
//! (`infra::probe::converse_at`: `ssh -W` through the host's master connection): `show proc`
//! lists the old workers, `@!<pid> show stat` gives one worker's counters in CSV, of which the
//! `scur` (current sessions) of every server at the replica's address is summed.
//!
//! It only reads: how long to wait and what to do then are the executor's. Answers are bounded
//! ([`MAX_ANSWER`]) and parsed by column name, so a newer HAProxy with more columns reads the
//! same.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::infra::files::HostShell;
use crate::infra::probe::{converse_at, ProbeFailure};
use crate::model::proxy::MASTER_CLI_PORT;

/// The most of one answer read: `show stat` of a proxy with a few thousand servers.
pub const MAX_ANSWER: usize = 4 << 20;
/// How long one command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// Sends one command to the master CLI of the shell's host and returns the answer.
async fn command(shell: &HostShell, cmd: &str) -> Result<String, ProbeFailure> {
    let target = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), MASTER_CLI_PORT);
    let answer = converse_at(
        shell,
        target,
        format!("{cmd}\n").as_bytes(),
        MAX_ANSWER,
        COMMAND_TIMEOUT,
    )
    .await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// The connections the proxy's old workers still have to servers at `addresses` (IPs);
/// 0 when no old worker is left.
pub async fn old_connections(shell: &HostShell, addresses: &[String]) -> Result<u64, ProbeFailure> {
    let procs = command(shell, "show proc").await?;
    let mut total = 0;
    for pid in old_workers(&procs) {
        // A worker that ended between the two commands is simply not found: nothing left.
        let stat = command(shell, &format!("@!{pid} show stat")).await?;
        total += sessions_to(&stat, addresses);
    }
    Ok(total)
}

/// The PIDs under `# old workers` in an answer to `show proc`.
pub fn old_workers(show_proc: &str) -> Vec<u32> {
    let mut section = "";
    let mut out = Vec::new();
    for line in show_proc.lines() {
        let line = line.trim();
        if let Some(head) = line.strip_prefix('#') {
            section = head.trim();
            continue;
        }
        if section == "old workers" {
            if let Some(pid) = line.split_whitespace().next().and_then(|p| p.parse().ok()) {
                out.push(pid);
            }
        }
    }
    out
}

/// The sum of `scur` over the server rows of a `show stat` CSV whose `addr` is one of
/// `addresses` (any port). Rows it cannot read count nothing.
pub fn sessions_to(show_stat: &str, addresses: &[String]) -> u64 {
    let mut lines = show_stat.lines();
    let Some(header) = lines.find_map(|l| l.strip_prefix("# ")) else {
        return 0;
    };
    let cols: Vec<&str> = header.split(',').collect();
    let at = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(sv), Some(scur), Some(addr)) = (at("svname"), at("scur"), at("addr")) else {
        return 0;
    };
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| {
            f.get(sv)
                .is_some_and(|s| *s != "FRONTEND" && *s != "BACKEND")
        })
        .filter(|f| {
            f.get(addr)
                .and_then(|a| host_of(a))
                .is_some_and(|ip| addresses.iter().any(|x| x == ip))
        })
        .filter_map(|f| f.get(scur)?.parse::<u64>().ok())
        .sum()
}

/// The address part of `ip:port` or `[ip6]:port`.
fn host_of(addr: &str) -> Option<&str> {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split_once(']').map(|(ip, _)| ip);
    }
    addr.rsplit_once(':').map(|(ip, _)| ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    // What HAProxy 2.6 answers (the test image's), trimmed to the columns that matter plus
    // one it does not read.
    const PROC: &str =
        "#<PID>          <type>          <reloads>       <uptime>        <version>\n\
        1               master          3 [failed: 0]   0d00h00m24s     2.6.12\n\
        # workers\n\
        21              worker          0               0d00h00m01s     2.6.12\n\
        # old workers\n\
        17              worker          1               0d00h00m13s     2.6.12\n\
        12              worker          2               0d00h00m20s     2.6.12\n\
        # programs\n\n";

    #[test]
    fn old_workers_are_read_from_their_section_only() {
        assert_eq!(old_workers(PROC), vec![17, 12]);
        let none = "#<PID> <type>\n1 master 0\n# workers\n8 worker 0\n# programs\n";
        assert!(old_workers(none).is_empty());
        assert!(old_workers("").is_empty());
        assert!(old_workers("Unknown command.\n").is_empty());
    }

    #[test]
    fn sessions_are_summed_over_servers_at_the_addresses() {
        let stat = "# pxname,svname,qcur,qmax,scur,smax,addr,extra\n\
            in_80,FRONTEND,,,7,9,,\n\
            in_80,web-1,0,0,2,3,172.18.0.5:8080,\n\
            in_80,web-2,0,0,4,4,172.18.0.6:8080,\n\
            in_80,BACKEND,0,0,6,7,,\n\
            x_app_web_8080,web-1,0,0,1,1,172.18.0.5:8080,\n\
            v6,web-9,0,0,5,5,[fd00::5]:80,\n\
            broken,line\n";
        assert_eq!(sessions_to(stat, &["172.18.0.5".into()]), 3);
        assert_eq!(sessions_to(stat, &["172.18.0.6".into()]), 4);
        assert_eq!(sessions_to(stat, &["fd00::5".into()]), 5);
        assert_eq!(sessions_to(stat, &["10.0.0.1".into()]), 0);
        // Not a CSV with the columns it needs: nothing, not a guess.
        assert_eq!(
            sessions_to("Can't find the target PID\n", &["172.18.0.5".into()]),
            0
        );
        assert_eq!(sessions_to("# pxname,svname\nx,y\n", &["x".into()]), 0);
    }
}
