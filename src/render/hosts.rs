//! `convoy hosts`: every host's reachability, round trip, engine and capacity, as text and
//! JSON.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::model::plan::JSON_VERSION;

#[derive(Debug, Serialize)]
pub struct HostReport {
    pub name: String,
    pub address: String,
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub rtt_ms: Option<f64>,
    pub docker_version: Option<String>,
    pub cpus: Option<f64>,
    pub memory_bytes: Option<i64>,
    pub containers: Option<usize>,
    pub labels: BTreeMap<String, String>,
}

pub fn hosts_json(fleet: &str, hosts: &[HostReport]) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        version: u32,
        fleet: &'a str,
        hosts: &'a [HostReport],
    }
    let doc = Doc {
        version: JSON_VERSION,
        fleet,
        hosts,
    };
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

pub fn hosts_text(hosts: &[HostReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:<11} {:>8} {:<10} {:>5} {:>9} {:>10}  LABELS",
        "HOST", "STATE", "RTT", "DOCKER", "CPUS", "MEMORY", "CONTAINERS"
    );
    for r in hosts {
        let labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if r.reachable {
            let _ = writeln!(
                out,
                "{:<16} {:<11} {:>6.1}ms {:<10} {:>5} {:>9} {:>10}  {}",
                r.name,
                "up",
                r.rtt_ms.unwrap_or(0.0),
                r.docker_version.as_deref().unwrap_or("?"),
                r.cpus.unwrap_or(0.0),
                crate::core::drift::opt_bytes(r.memory_bytes),
                r.containers.unwrap_or(0),
                labels.join(",")
            );
        } else {
            let _ = writeln!(
                out,
                "{:<16} {:<11} {}",
                r.name,
                "unreachable",
                r.reason.as_deref().unwrap_or_default()
            );
        }
    }
    out
}
