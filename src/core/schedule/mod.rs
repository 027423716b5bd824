//! Placement: which host runs each replica of each service (Compose's Swarm-style `deploy` keys).
//!
//! Pure (DESIGN.md, invariant 1): a [`Snapshot`] of the hosts and of the replicas that exist in,
//! an assignment of every desired replica slot to a host (or `Pending` with a reason) out. It must
//! not do I/O, read a clock, draw random numbers or let `HashMap` order show: the same snapshot
//! gives the same placement. It decides nothing about containers; `plan` turns a placement into
//! steps (a replica assigned elsewhere than where it runs is moved, one with no assignment removed).
//!
//! The order, which makes the greedy bin packing reproducible:
//! 1. Eligibility per service: host not `Down`, not `drain`, in `x-convoy.hosts` (when given),
//!    every constraint holds (a missing label is `!=` anything, never `==`). New replicas go only
//!    to eligible hosts that are `Up` and not `cordon`.
//! 2. Sticky pass, services by (stack, service), slots in numeric order: an existing copy of a
//!    desired slot stays where it is if its host is eligible and it is healthy or its host is Up
//!    (of several copies: Up host first, then healthy, then newest `created`, then host name), and
//!    if it still has room (ports, `max_replicas_per_node`, reservations against capacity);
//!    otherwise it is placed anew in step 3. Sticky replicas consume room before any new one.
//!    A slot with no known copy anywhere sticks to an `Unreachable` host whose replicas are
//!    unknown if a placement that treats such hosts as up and empty puts it there: it may run
//!    there, and a second copy must not be started blind.
//! 3. New replicas, service by service: global services first (one possible host per replica),
//!    then fewest eligible hosts, then largest memory then CPU reservation, then (stack, service);
//!    a service waits for the services it `depends_on`. A service with a pending dependency
//!    keeps its sticky replicas; its new ones are pending. Slots in numeric order; the host is,
//!    among eligible hosts with room, the one with the fewest replicas of this service in its
//!    spread group (per spread key, outermost first), then on the host, then the most free
//!    memory, then the name. A replica is pending only if no eligible host has room at its turn.
//!
//! Nothing moves to even out the spread: a new host only receives new replicas.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::spec::{
    Capacity, Constraint, ConstraintAttribute, DeployMode, DesiredState, ServiceSpec,
};

/// One replica of one service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ReplicaKey {
    pub stack: String,
    pub service: String,
    /// `1`, `2`, ... for replicated services; the host name for global ones.
    pub slot: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Assignment {
    Host { host: String },
    Pending { reason: String },
}

/// Every desired replica and where it goes, in a deterministic order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub replicas: BTreeMap<ReplicaKey, Assignment>,
}

impl Placement {
    /// The host a replica is assigned to, if any.
    pub fn host_of(&self, key: &ReplicaKey) -> Option<&str> {
        match self.replicas.get(key) {
            Some(Assignment::Host { host }) => Some(host),
            _ => None,
        }
    }
}

/// What placement knows about one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Declared in `convoy.yaml`, else read from the engine; `None` when neither is known.
    pub capacity: Option<Capacity>,
    pub state: HostState,
    /// `cordon: true`: no new replicas.
    pub cordon: bool,
    /// `drain: true`: no replicas at all; its replicas move elsewhere.
    pub drain: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    /// Observed in this pass.
    Up,
    /// Not observed, but within `host_down_after` of its last contact (or no clock has watched
    /// it: a one-shot command). Its replicas stay assigned to it; nothing new goes there.
    Unreachable,
    /// Unreachable for longer than `host_down_after`: lost. Its replicas are placed elsewhere.
    Down,
}

/// A replica that exists on a host now (an owned container).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExistingReplica {
    pub key: ReplicaKey,
    pub host: String,
    /// Running (or a completed one-shot) and not unhealthy or dead: eligible to stay put.
    pub healthy: bool,
    /// Creation time (RFC 3339) as the engine reports it: of two copies of one slot (a host came
    /// back after its replicas were placed elsewhere), the newer is the one placement made.
    pub created: String,
}

/// Everything placement needs, gathered from the desired and the observed state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub hosts: BTreeMap<String, HostFacts>,
    /// Unreachable hosts whose replicas are not known (no observation of them in memory: a
    /// one-shot command, or a daemon that started during the outage). A desired slot with no
    /// known copy anywhere is presumed to run on one of them rather than started a second time.
    pub unknown: std::collections::BTreeSet<String>,
    /// Sorted by key, then host.
    pub existing: Vec<ExistingReplica>,
}

/// Builds the placement snapshot. `down` names the hosts unreachable for longer than
/// `host_down_after` (the daemon's clock knows it; a one-shot command passes none).
/// `last_known` holds, for hosts not observed now, the replicas they ran when last observed
/// (a daemon's memory); an unreachable host without an entry is `unknown`.
pub fn snapshot(
    desired: &DesiredState,
    observed: &crate::model::observed::ObservedState,
    down: &std::collections::BTreeSet<String>,
    last_known: &BTreeMap<String, Vec<ExistingReplica>>,
) -> Snapshot {
    use crate::model::observed::{Health, ObservedHost, RunState};
    let mut hosts = BTreeMap::new();
    let mut existing = Vec::new();
    let mut unknown = std::collections::BTreeSet::new();
    for (name, spec) in &desired.hosts {
        let observed_host = observed.hosts.get(name);
        let snap = observed_host.and_then(ObservedHost::snapshot);
        let state = match (snap, down.contains(name)) {
            (Some(_), _) => HostState::Up,
            (None, true) => HostState::Down,
            (None, false) => HostState::Unreachable,
        };
        let engine_capacity = snap.map(|s| Capacity {
            nano_cpus: Some(s.nano_cpus).filter(|n| *n > 0),
            memory_bytes: Some(s.memory_bytes).filter(|n| *n > 0),
        });
        let capacity = match (spec.capacity, engine_capacity) {
            (Some(c), Some(e)) => Some(Capacity {
                nano_cpus: c.nano_cpus.or(e.nano_cpus),
                memory_bytes: c.memory_bytes.or(e.memory_bytes),
            }),
            (c, e) => c.or(e),
        };
        hosts.insert(
            name.clone(),
            HostFacts {
                name: name.clone(),
                labels: spec.labels.clone(),
                capacity,
                state,
                cordon: spec.cordon,
                drain: spec.drain,
            },
        );
        if let Some(snap) = snap {
            for c in snap.containers.values() {
                let one_shot_done = c.state == RunState::Exited && c.exit_code == 0;
                existing.push(ExistingReplica {
                    key: ReplicaKey {
                        stack: c.stack.clone(),
                        service: c.service.clone(),
                        slot: c.slot.clone(),
                    },
                    host: name.clone(),
                    healthy: (matches!(c.state, RunState::Running | RunState::Restarting)
                        || one_shot_done)
                        && c.health != Some(Health::Unhealthy),
                    created: c.created.clone(),
                });
            }
        } else if state == HostState::Unreachable {
            match last_known.get(name) {
                Some(known) => existing.extend(known.iter().cloned()),
                None => {
                    unknown.insert(name.clone());
                }
            }
        }
    }
    existing.sort_by(|a, b| (&a.key, &a.host).cmp(&(&b.key, &b.host)));
    Snapshot {
        hosts,
        unknown,
        existing,
    }
}

/// Places every replica of every service of `desired` on the hosts of `snap` (see the module
/// comment for the order).
pub fn place(desired: &DesiredState, snap: &Snapshot) -> Placement {
    if snap.unknown.is_empty() {
        return Placer::new(desired, snap, &BTreeMap::new()).run();
    }
    // Where would the unseen hosts' replicas be? Place once as if they were up and empty: the
    // slots that go to an unseen host there are presumed to run on it now.
    let mut visible = snap.clone();
    visible.unknown.clear();
    for h in visible.hosts.values_mut() {
        if snap.unknown.contains(&h.name) {
            h.state = HostState::Up;
        }
    }
    let presumed: BTreeMap<ReplicaKey, String> = Placer::new(desired, &visible, &BTreeMap::new())
        .run()
        .replicas
        .into_iter()
        .filter_map(|(k, a)| match a {
            Assignment::Host { host } if snap.unknown.contains(&host) => Some((k, host)),
            _ => None,
        })
        .collect();
    Placer::new(desired, snap, &presumed).run()
}

/// The ip id of an unspecified host IP (``, `0.0.0.0`, `::`): it clashes with every IP.
/// Reservations are clamped at zero and summed in `i128`, so no input overflows.
const WILDCARD_IP: u32 = 0;

/// One host during placement; everything is indexed by the host's position in name order.
struct HostRt<'a> {
    facts: &'a HostFacts,
    cap_cpu: Option<i128>,
    cap_mem: Option<i128>,
    used_cpu: i128,
    used_mem: i128,
    /// Published host ports in use: (protocol+port id, ip id, owning service index).
    ports: Vec<(u32, u32, usize)>,
}

impl HostRt<'_> {
    fn accepts_new(&self) -> bool {
        self.facts.state == HostState::Up && !self.facts.cordon
    }
    fn free_mem(&self) -> i128 {
        self.cap_mem.map_or(i128::MAX, |c| c - self.used_mem)
    }
}

/// Why a host cannot take one more replica of a service.
#[derive(Clone, Copy, PartialEq)]
enum NoRoom {
    Max(u32),
    Port(u32),
    Memory(i128),
    Cpu(i128),
}

/// One service during placement.
struct Svc<'a> {
    stack: &'a str,
    name: &'a str,
    spec: &'a ServiceSpec,
    /// Statically eligible hosts (step 1), ascending host index.
    eligible: Vec<usize>,
    /// Published host ports: (protocol+port id, ip id), deduplicated.
    ports: Vec<(u32, u32)>,
    cpu: i128,
    mem: i128,
    /// `max_replicas_per_node`; 0 means no limit, as in Swarm.
    max: Option<u32>,
    /// Desired slots in order: "1".."N", or host names for a global service.
    slots: Vec<String>,
    /// The host a slot keeps from the sticky pass.
    sticky: Vec<Option<usize>>,
    deps: Vec<usize>,
}

struct Placer<'a> {
    hosts: Vec<HostRt<'a>>,
    svcs: Vec<Svc<'a>>,
    /// (protocol, port) for each port id, for messages.
    port_names: Vec<(String, u16)>,
    /// Spread label key → value id per host (0: the host lacks the label).
    spread_values: BTreeMap<&'a str, Vec<u32>>,
}

impl<'a> Placer<'a> {
    fn new(
        desired: &'a DesiredState,
        snap: &'a Snapshot,
        presumed: &BTreeMap<ReplicaKey, String>,
    ) -> Self {
        let hosts: Vec<HostRt> = snap
            .hosts
            .values()
            .map(|facts| {
                let cap = facts.capacity;
                HostRt {
                    facts,
                    cap_cpu: cap.and_then(|c| c.nano_cpus).map(i128::from),
                    cap_mem: cap.and_then(|c| c.memory_bytes).map(i128::from),
                    used_cpu: 0,
                    used_mem: 0,
                    ports: Vec::new(),
                }
            })
            .collect();
        let mut port_ids: BTreeMap<(&str, u16), u32> = BTreeMap::new();
        let mut port_names = Vec::new();
        let mut ip_ids: BTreeMap<&str, u32> = BTreeMap::new();
        let mut svcs = Vec::new();
        let mut index_of: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (stack_name, stack) in &desired.stacks {
            for (service_name, spec) in &stack.services {
                index_of.insert((stack_name.as_str(), service_name.as_str()), svcs.len());
                let eligible = (0..hosts.len())
                    .filter(|&h| statically_eligible(hosts[h].facts, spec))
                    .collect();
                let mut ports = Vec::new();
                for p in &spec.container.ports {
                    let Some(port) = p.host_port else { continue };
                    let next = port_ids.len() as u32;
                    let pp = *port_ids
                        .entry((p.protocol.as_str(), port))
                        .or_insert_with(|| {
                            port_names.push((p.protocol.clone(), port));
                            next
                        });
                    let ip = match p.host_ip.as_str() {
                        "" | "0.0.0.0" | "::" => WILDCARD_IP,
                        other => {
                            let next = ip_ids.len() as u32 + 1;
                            *ip_ids.entry(other).or_insert(next)
                        }
                    };
                    ports.push((pp, ip));
                }
                ports.sort_unstable();
                ports.dedup();
                svcs.push(Svc {
                    stack: stack_name,
                    name: service_name,
                    spec,
                    eligible,
                    ports,
                    cpu: i128::from(spec.reserve_nano_cpus.unwrap_or(0).max(0)),
                    mem: i128::from(spec.reserve_memory_bytes.unwrap_or(0).max(0)),
                    max: spec.placement.max_replicas_per_node.filter(|m| *m > 0),
                    slots: Vec::new(),
                    sticky: Vec::new(),
                    deps: Vec::new(),
                });
            }
        }
        for (s, svc) in svcs.iter_mut().enumerate() {
            // `depends_on` names services of the same stack; unknown names and the service
            // itself block nothing.
            svc.deps = svc
                .spec
                .depends_on
                .keys()
                .filter_map(|d| index_of.get(&(svc.stack, d.as_str())).copied())
                .filter(|&d| d != s)
                .collect();
        }
        let mut spread_values: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for svc in &svcs {
            for key in &svc.spec.placement.spread {
                spread_values.entry(key.as_str()).or_insert_with(|| {
                    let mut ids: BTreeMap<&str, u32> = BTreeMap::new();
                    hosts
                        .iter()
                        .map(|h| match h.facts.labels.get(key) {
                            None => 0,
                            Some(v) => {
                                let next = ids.len() as u32 + 1;
                                *ids.entry(v.as_str()).or_insert(next)
                            }
                        })
                        .collect()
                });
            }
        }
        Placer {
            hosts,
            svcs,
            port_names,
            spread_values,
        }
        .with_slots(snap, presumed)
    }

    /// Fills every service's desired slots and runs the sticky pass (step 2).
    /// The sticky pass. `presumed` places slots with no known copy on unseen hosts (see
    /// `place`).
    fn with_slots(mut self, snap: &'a Snapshot, presumed: &BTreeMap<ReplicaKey, String>) -> Self {
        let mut copies: BTreeMap<(&str, &str), BTreeMap<&str, Vec<&ExistingReplica>>> =
            BTreeMap::new();
        for e in &snap.existing {
            copies
                .entry((e.key.stack.as_str(), e.key.service.as_str()))
                .or_default()
                .entry(e.key.slot.as_str())
                .or_default()
                .push(e);
        }
        let host_index: BTreeMap<&str, usize> = self
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.facts.name.as_str(), i))
            .collect();
        let empty = BTreeMap::new();
        // Replicas of the current service per host, reset after each service.
        let mut count = vec![0u32; self.hosts.len()];
        for s in 0..self.svcs.len() {
            let svc = &self.svcs[s];
            let by_slot = copies.get(&(svc.stack, svc.name)).unwrap_or(&empty);
            // A copy is a candidate if its host is eligible and it is healthy or its host is Up.
            let candidates = |slot: &str| -> Vec<(usize, &ExistingReplica)> {
                let mut c: Vec<(usize, &ExistingReplica)> = by_slot
                    .get(slot)
                    .into_iter()
                    .flatten()
                    .filter_map(|e| {
                        let h = *host_index.get(e.host.as_str())?;
                        let up = self.hosts[h].facts.state == HostState::Up;
                        (svc.eligible.binary_search(&h).is_ok() && (e.healthy || up))
                            .then_some((h, *e))
                    })
                    .collect();
                c.sort_by(|(ha, a), (hb, b)| {
                    let up = |h: usize| self.hosts[h].facts.state == HostState::Up;
                    up(*hb)
                        .cmp(&up(*ha))
                        .then(b.healthy.cmp(&a.healthy))
                        .then(b.created.cmp(&a.created))
                        .then(ha.cmp(hb))
                });
                c
            };
            // A slot with no known copy anywhere that would sit on an unseen host is presumed
            // to run there: starting it elsewhere blind could make two.
            let presumed_at = |slot: &str| -> Option<usize> {
                if by_slot.contains_key(slot) {
                    return None;
                }
                let key = ReplicaKey {
                    stack: svc.stack.to_string(),
                    service: svc.name.to_string(),
                    slot: slot.to_string(),
                };
                let h = *host_index.get(presumed.get(&key)?.as_str())?;
                svc.eligible.binary_search(&h).is_ok().then_some(h)
            };
            let mut slots: Vec<(String, Vec<usize>)> = Vec::new();
            match svc.spec.mode {
                DeployMode::Replicated => {
                    for i in 1..=svc.spec.replicas {
                        let slot = i.to_string();
                        let mut c: Vec<usize> =
                            candidates(&slot).into_iter().map(|(h, _)| h).collect();
                        if c.is_empty() {
                            c.extend(presumed_at(&slot));
                        }
                        slots.push((slot, c));
                    }
                }
                DeployMode::Global => {
                    for &h in &svc.eligible {
                        let slot = self.hosts[h].facts.name.as_str();
                        let mut c: Vec<usize> = candidates(slot)
                            .into_iter()
                            .map(|(ch, _)| ch)
                            .filter(|&ch| ch == h)
                            .take(1)
                            .collect();
                        if c.is_empty() && presumed_at(slot) == Some(h) {
                            c.push(h);
                        }
                        if self.hosts[h].accepts_new() || !c.is_empty() {
                            slots.push((slot.to_string(), c));
                        }
                    }
                }
            }
            let mut sticky = Vec::with_capacity(slots.len());
            let mut touched = Vec::new();
            for (_, cands) in &slots {
                let kept = cands
                    .iter()
                    .copied()
                    .find(|&h| self.room(h, s, count[h]).is_ok());
                if let Some(h) = kept {
                    self.consume(h, s);
                    count[h] += 1;
                    touched.push(h);
                }
                sticky.push(kept);
            }
            for h in touched {
                count[h] = 0;
            }
            let svc = &mut self.svcs[s];
            svc.slots = slots.into_iter().map(|(slot, _)| slot).collect();
            svc.sticky = sticky;
        }
        self
    }

    /// Whether host `h`, already running `count` replicas of service `s`, has room for one more.
    fn room(&self, h: usize, s: usize, count: u32) -> Result<(), NoRoom> {
        let host = &self.hosts[h];
        let svc = &self.svcs[s];
        if let Some(max) = svc.max {
            if count >= max {
                return Err(NoRoom::Max(max));
            }
        }
        for &(pp, ip) in &svc.ports {
            let clash = host
                .ports
                .iter()
                .any(|&(p, i, _)| p == pp && (i == ip || i == WILDCARD_IP || ip == WILDCARD_IP));
            if clash {
                return Err(NoRoom::Port(pp));
            }
        }
        if let Some(cap) = host.cap_mem {
            if host.used_mem + svc.mem > cap {
                return Err(NoRoom::Memory(cap - host.used_mem));
            }
        }
        if let Some(cap) = host.cap_cpu {
            if host.used_cpu + svc.cpu > cap {
                return Err(NoRoom::Cpu(cap - host.used_cpu));
            }
        }
        Ok(())
    }

    fn consume(&mut self, h: usize, s: usize) {
        let svc = &self.svcs[s];
        let host = &mut self.hosts[h];
        host.used_cpu += svc.cpu;
        host.used_mem += svc.mem;
        host.ports
            .extend(svc.ports.iter().map(|&(pp, ip)| (pp, ip, s)));
    }

    /// Step 3: the services in greedy order, each waiting for its dependencies.
    fn order(&self) -> Vec<usize> {
        let key = |s: usize| {
            let svc = &self.svcs[s];
            let new_hosts = svc
                .eligible
                .iter()
                .filter(|&&h| self.hosts[h].accepts_new())
                .count();
            (
                svc.spec.mode != DeployMode::Global,
                new_hosts,
                std::cmp::Reverse(svc.mem),
                std::cmp::Reverse(svc.cpu),
                s, // (stack, service) order
            )
        };
        let mut by_key: Vec<usize> = (0..self.svcs.len()).collect();
        by_key.sort_by_key(|&s| key(s));
        let mut rank = vec![0; self.svcs.len()];
        for (r, &s) in by_key.iter().enumerate() {
            rank[s] = r;
        }
        let mut waiting: Vec<usize> = self.svcs.iter().map(|s| s.deps.len()).collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); self.svcs.len()];
        for (s, svc) in self.svcs.iter().enumerate() {
            for &d in &svc.deps {
                dependents[d].push(s);
            }
        }
        let mut ready: std::collections::BTreeSet<usize> = (0..self.svcs.len())
            .filter(|&s| waiting[s] == 0)
            .map(|s| rank[s])
            .collect();
        let mut done = vec![false; self.svcs.len()];
        let mut out = Vec::with_capacity(self.svcs.len());
        while out.len() < self.svcs.len() {
            // A dependency cycle (rejected by the manifest, but not trusted here) is broken by
            // taking the first service left in greedy order.
            let r = match ready.pop_first() {
                Some(r) => r,
                None => match by_key.iter().position(|&s| !done[s]) {
                    Some(r) => r,
                    None => break,
                },
            };
            let s = by_key[r];
            if done[s] {
                continue;
            }
            done[s] = true;
            out.push(s);
            for &t in &dependents[s] {
                waiting[t] = waiting[t].saturating_sub(1);
                if waiting[t] == 0 && !done[t] {
                    ready.insert(rank[t]);
                }
            }
        }
        out
    }

    fn run(mut self) -> Placement {
        let mut out: BTreeMap<ReplicaKey, Assignment> = BTreeMap::new();
        let mut pending = vec![false; self.svcs.len()];
        // Position of a host in the current service's eligible list (usize::MAX: not eligible).
        let mut pos_of = vec![usize::MAX; self.hosts.len()];
        for s in self.order() {
            let assignments = match self.blocking_dependency(s, &pending) {
                Some(dep) => {
                    // Replicas that run stay: a dependency that cannot grow is no reason to
                    // remove what works (removal is never the side effect of a problem). Only
                    // new replicas wait.
                    let reason = format!("depends on pending service `{dep}`");
                    self.svcs[s]
                        .sticky
                        .iter()
                        .map(|st| st.ok_or_else(|| reason.clone()))
                        .collect()
                }
                None => {
                    for (p, &h) in self.svcs[s].eligible.iter().enumerate() {
                        pos_of[h] = p;
                    }
                    let a = self.place_service(s, &pos_of);
                    for &h in &self.svcs[s].eligible {
                        pos_of[h] = usize::MAX;
                    }
                    a
                }
            };
            let svc = &self.svcs[s];
            for (slot, a) in svc.slots.iter().zip(assignments) {
                let assignment = match a {
                    Ok(h) => Assignment::Host {
                        host: self.hosts[h].facts.name.clone(),
                    },
                    Err(reason) => {
                        pending[s] = true;
                        Assignment::Pending { reason }
                    }
                };
                let key = ReplicaKey {
                    stack: svc.stack.to_string(),
                    service: svc.name.to_string(),
                    slot: slot.clone(),
                };
                out.insert(key, assignment);
            }
        }
        Placement { replicas: out }
    }

    fn blocking_dependency(&self, s: usize, pending: &[bool]) -> Option<&'a str> {
        self.svcs[s]
            .deps
            .iter()
            .find(|&&d| pending[d])
            .map(|&d| self.svcs[d].name)
    }

    /// Places the new replicas of service `s`; sticky ones keep their host.
    fn place_service(&mut self, s: usize, pos_of: &[usize]) -> Vec<Result<usize, String>> {
        let n_pos = self.svcs[s].eligible.len();
        // Spread groups: per level, the group id of each eligible position.
        let levels: Vec<Vec<u32>> = {
            let svc = &self.svcs[s];
            let mut parent = vec![0u32; n_pos];
            let mut levels = Vec::new();
            for key in &svc.spec.placement.spread {
                let Some(values) = self.spread_values.get(key.as_str()) else {
                    continue;
                };
                let mut ids: BTreeMap<(u32, u32), u32> = BTreeMap::new();
                let gids: Vec<u32> = svc
                    .eligible
                    .iter()
                    .zip(&parent)
                    .map(|(&h, &par)| {
                        let next = ids.len() as u32;
                        *ids.entry((par, values[h])).or_insert(next)
                    })
                    .collect();
                parent.clone_from(&gids);
                levels.push(gids);
            }
            levels
        };
        let mut group_count: Vec<Vec<u32>> = levels.iter().map(|_| vec![0; n_pos]).collect();
        let mut host_count = vec![0u32; n_pos];
        let count_at = |p: usize, host_count: &mut [u32], group_count: &mut [Vec<u32>]| {
            host_count[p] += 1;
            for (l, gids) in levels.iter().enumerate() {
                group_count[l][gids[p] as usize] += 1;
            }
        };
        for h in self.svcs[s].sticky.iter().flatten() {
            let p = pos_of[*h];
            if p < n_pos {
                count_at(p, &mut host_count, &mut group_count);
            }
        }
        let mut result = Vec::with_capacity(self.svcs[s].slots.len());
        let mut stuck: Option<String> = None;
        for i in 0..self.svcs[s].slots.len() {
            if let Some(h) = self.svcs[s].sticky[i] {
                result.push(Ok(h));
                continue;
            }
            if self.svcs[s].spec.mode == DeployMode::Global {
                // The slot names its host: that host or nothing.
                let h = self.svcs[s]
                    .eligible
                    .iter()
                    .copied()
                    .find(|&h| self.hosts[h].facts.name == self.svcs[s].slots[i]);
                let Some(h) = h else {
                    result.push(Err("host no longer eligible".to_string()));
                    continue;
                };
                let p = pos_of[h];
                let host = &self.hosts[h];
                if !host.accepts_new() {
                    let why = if host.facts.cordon {
                        "cordoned"
                    } else {
                        "unreachable"
                    };
                    let reason = match self.room(h, s, host_count[p]) {
                        Err(r) => self.no_room_text(r, s, h),
                        Ok(()) => format!("host `{}` is {why}: no new replicas", host.facts.name),
                    };
                    result.push(Err(reason));
                    continue;
                }
                match self.room(h, s, host_count[p]) {
                    Ok(()) => {
                        self.consume(h, s);
                        count_at(p, &mut host_count, &mut group_count);
                        result.push(Ok(h));
                    }
                    Err(r) => result.push(Err(self.no_room_text(r, s, h))),
                }
                continue;
            }
            // Once a replica of this service found no room, none after it will: room only
            // shrinks during the service's turn.
            if let Some(reason) = &stuck {
                result.push(Err(reason.clone()));
                continue;
            }
            let mut best: Option<usize> = None;
            for p in 0..n_pos {
                let h = self.svcs[s].eligible[p];
                if !self.hosts[h].accepts_new() || self.room(h, s, host_count[p]).is_err() {
                    continue;
                }
                let better = match best {
                    None => true,
                    Some(b) => {
                        let mut ord = std::cmp::Ordering::Equal;
                        for (l, gids) in levels.iter().enumerate() {
                            ord = group_count[l][gids[p] as usize]
                                .cmp(&group_count[l][gids[b] as usize]);
                            if ord.is_ne() {
                                break;
                            }
                        }
                        let hb = self.svcs[s].eligible[b];
                        ord.then(host_count[p].cmp(&host_count[b]))
                            .then(self.hosts[hb].free_mem().cmp(&self.hosts[h].free_mem()))
                            .then(h.cmp(&hb))
                            .is_lt()
                    }
                };
                if better {
                    best = Some(p);
                }
            }
            match best {
                Some(p) => {
                    let h = self.svcs[s].eligible[p];
                    self.consume(h, s);
                    count_at(p, &mut host_count, &mut group_count);
                    result.push(Ok(h));
                }
                None => {
                    let reason = self.pending_reason(s, &host_count);
                    stuck = Some(reason.clone());
                    result.push(Err(reason));
                }
            }
        }
        result
    }

    /// The reason no eligible host takes a new replica of service `s`.
    fn pending_reason(&self, s: usize, host_count: &[u32]) -> String {
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

    fn no_room_text(&self, r: NoRoom, s: usize, h: usize) -> String {
        format!(
            "no room on host `{}`: {}",
            self.hosts[h].facts.name,
            self.short_text(r, s)
        )
    }
}

/// Step 1 for one host and one service.
fn statically_eligible(host: &HostFacts, spec: &ServiceSpec) -> bool {
    host.state != HostState::Down
        && !host.drain
        && spec
            .placement
            .hosts
            .as_ref()
            .is_none_or(|names| names.contains(&host.name))
        && spec
            .placement
            .constraints
            .iter()
            .all(|c| constraint_holds(host, c))
}

/// A missing label is `!=` anything and never `==`, as in Swarm.
fn constraint_holds(host: &HostFacts, c: &Constraint) -> bool {
    let actual = match &c.attribute {
        ConstraintAttribute::Hostname => Some(&host.name),
        ConstraintAttribute::Label(key) => host.labels.get(key),
    };
    (actual == Some(&c.value)) == c.equal
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

fn bytes_text(bytes: i128) -> String {
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

fn cpu_text(nano: i128) -> String {
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

#[cfg(test)]
mod tests;
