//! Why a replica is pending, in words: the reasons the placer attaches to a slot it cannot place
//! (no eligible host, no room, a closed host), with sizes and lists kept short enough to read on
//! a big fleet.
//!
//! It only describes the placer's state after the fact: it must not change room, counts or any
//! assignment, so the words can never change where a replica goes. "the planning core is pure":
//! no I/O, no clock, no `HashMap` order.

use crate::model::spec::{Constraint, ConstraintAttribute};

use super::placer::{constraint_holds, NoRoom, Placer};
use super::{HostFacts, HostState};

impl Placer<'_> {
    /// The reason no eligible host takes a new replica of service `s`.
    pub(super) fn pending_reason(&self, s: usize, host_count: &[u32]) -> String {
        let svc = &self.svcs[s];
        if svc.eligible.is_empty() {
            return self.ineligible_reason(s);
        }
        let mut closed = Vec::new();
        let mut failures: Vec<(usize, NoRoom)> = Vec::new();
        for (p, &h) in svc.eligible.iter().enumerate() {
            let host = &self.hosts[h];
            if !host.accepts_new() {
                let why = if host.facts.cordon {
                    "cordoned"
                } else {
                    "unreachable"
                };
                closed.push(format!("{}: {why}", host.facts.name));
                continue;
            }
            if let Err(r) = self.room(h, s, host_count[p]) {
                failures.push((h, r));
            }
        }
        if failures.is_empty() {
            return format!(
                "no eligible host takes new replicas ({})",
                list(closed.iter().map(String::as_str))
            );
        }
        let n = failures.len();
        let first = failures[0].1;
        let same_kind = failures.iter().all(|(_, r)| {
            std::mem::discriminant(r) == std::mem::discriminant(&first)
                && !matches!((r, first), (NoRoom::Port(a), NoRoom::Port(b)) if *a != b)
        });
        let mut text = if same_kind {
            match first {
                NoRoom::Max(max) => format!(
                    "max_replicas_per_node {max} reached on all {n} eligible host{}",
                    if n == 1 { "" } else { "s" }
                ),
                NoRoom::Port(pp) => {
                    format!("port {} is taken on all eligible hosts", self.port_text(pp))
                }
                NoRoom::Memory(_) | NoRoom::Cpu(_) => {
                    let per_host: Vec<String> = failures
                        .iter()
                        .map(|(h, r)| {
                            let free = match r {
                                NoRoom::Memory(f) => bytes_text(*f),
                                NoRoom::Cpu(f) => cpu_text(*f),
                                _ => String::new(),
                            };
                            format!("{}: {free} free", self.hosts[*h].facts.name)
                        })
                        .collect();
                    let need = match first {
                        NoRoom::Memory(_) => format!("{} memory", bytes_text(svc.mem)),
                        _ => cpu_text(svc.cpu),
                    };
                    format!(
                        "no host has room: needs {need} ({})",
                        list(per_host.iter().map(String::as_str))
                    )
                }
            }
        } else {
            let per_host: Vec<String> = failures
                .iter()
                .map(|&(h, r)| format!("{}: {}", self.hosts[h].facts.name, self.short_text(r, s)))
                .collect();
            format!(
                "no eligible host has room ({})",
                list(per_host.iter().map(String::as_str))
            )
        };
        if !closed.is_empty() {
            text.push_str(&format!(
                "; no new replicas on {}",
                list(closed.iter().map(String::as_str))
            ));
        }
        text
    }

    /// The reason a service has no eligible host at all: the first filter that empties the fleet.
    fn ineligible_reason(&self, s: usize) -> String {
        let placement = &self.svcs[s].spec.placement;
        if self.hosts.is_empty() {
            return "the fleet has no hosts".into();
        }
        let mut pool: Vec<&HostFacts> = self.hosts.iter().map(|h| h.facts).collect();
        if let Some(names) = &placement.hosts {
            pool.retain(|h| names.contains(&h.name));
            if pool.is_empty() {
                return format!(
                    "no host of the fleet is in x-convoy.hosts ({})",
                    list(names.iter().map(String::as_str))
                );
            }
        }
        for c in &placement.constraints {
            pool.retain(|h| constraint_holds(h, c));
            if pool.is_empty() {
                return format!("no host matches {}", constraint_text(c));
            }
        }
        let states: Vec<String> = pool
            .iter()
            .map(|h| {
                let why = if h.state == HostState::Down {
                    "down"
                } else {
                    "drained"
                };
                format!("{}: {why}", h.name)
            })
            .collect();
        format!(
            "every matching host is down or drained ({})",
            list(states.iter().map(String::as_str))
        )
    }

    fn port_text(&self, pp: u32) -> String {
        match self.port_names.get(pp as usize) {
            Some((proto, port)) => format!("{port}/{proto}"),
            None => "?".into(),
        }
    }

    fn short_text(&self, r: NoRoom, s: usize) -> String {
        match r {
            NoRoom::Max(max) => format!("max_replicas_per_node {max} reached"),
            NoRoom::Port(pp) => format!("port {} taken", self.port_text(pp)),
            NoRoom::Memory(free) => format!(
                "needs {} memory, {} free",
                bytes_text(self.svcs[s].mem),
                bytes_text(free)
            ),
            NoRoom::Cpu(free) => {
                format!(
                    "needs {}, {} free",
                    cpu_text(self.svcs[s].cpu),
                    cpu_text(free)
                )
            }
        }
    }

    pub(super) fn no_room_text(&self, r: NoRoom, s: usize, h: usize) -> String {
        format!(
            "no room on host `{}`: {}",
            self.hosts[h].facts.name,
            self.short_text(r, s)
        )
    }
}

fn constraint_text(c: &Constraint) -> String {
    let attribute = match &c.attribute {
        ConstraintAttribute::Hostname => "node.hostname".to_string(),
        ConstraintAttribute::Label(key) => format!("node.labels.{key}"),
    };
    let op = if c.equal { "==" } else { "!=" };
    format!("{attribute}{op}{}", c.value)
}

/// A comma-separated list, cut after ten items so that a reason stays readable on a big fleet.
fn list<'s>(items: impl Iterator<Item = &'s str>) -> String {
    let items: Vec<&str> = items.collect();
    let mut text = items
        .iter()
        .take(10)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > 10 {
        text.push_str(&format!(", and {} more", items.len() - 10));
    }
    text
}

pub(super) fn bytes_text(bytes: i128) -> String {
    const MIB: i128 = 1 << 20;
    const GIB: i128 = 1 << 30;
    let (unit, size) = if bytes.abs() >= GIB {
        ("GiB", GIB)
    } else if bytes.abs() >= MIB {
        ("MiB", MIB)
    } else {
        return format!("{bytes} B");
    };
    decimal_text(bytes, size, unit)
}

pub(super) fn cpu_text(nano: i128) -> String {
    decimal_text(nano, 1_000_000_000, "cpu")
}

/// `value / unit` with up to two decimals, trailing zeros dropped: `4 GiB`, `1.5 GiB`.
fn decimal_text(value: i128, unit: i128, name: &str) -> String {
    let hundredths = value.saturating_mul(100) / unit;
    let (whole, frac) = (hundredths / 100, (hundredths % 100).abs());
    let sign = if value < 0 && whole == 0 { "-" } else { "" };
    match frac {
        0 => format!("{sign}{whole} {name}"),
        f if f % 10 == 0 => format!("{sign}{whole}.{} {name}", f / 10),
        f => format!("{sign}{whole}.{f:02} {name}"),
    }
}
