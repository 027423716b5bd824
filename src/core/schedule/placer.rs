//! The greedy placer behind [`place`](super::place): the runtime view of hosts and services
//! (room left, ports taken, spread groups), step 1's eligibility, step 2's sticky pass and
//! step 3's new replicas, in the order the module comment of `schedule` gives.
//!
//! "the planning core is pure": it must not do I/O, read a clock, draw random numbers or let
//! `HashMap` order show; every tie ends on an index in host name or (stack, service) order, so
//! the same snapshot always gives the same placement. It must not move a replica to even out the
//! spread: a replica keeps its host whenever step 2 allows. The words of a pending reason are
//! `reasons`'s business.

use std::collections::BTreeMap;

use crate::model::spec::{Constraint, ConstraintAttribute, DeployMode, DesiredState, ServiceSpec};

use super::{Assignment, ExistingReplica, HostFacts, HostState, Placement, ReplicaKey, Snapshot};

/// The ip id of an unspecified host IP (``, `0.0.0.0`, `::`): it clashes with every IP.
/// Reservations are clamped at zero and summed in `i128`, so no input overflows.
const WILDCARD_IP: u32 = 0;

/// One host during placement; everything is indexed by the host's position in name order.
pub(super) struct HostRt<'a> {
    pub(super) facts: &'a HostFacts,
    cap_cpu: Option<i128>,
    cap_mem: Option<i128>,
    used_cpu: i128,
    used_mem: i128,
    /// Published host ports in use: (protocol+port id, ip id, owning service index).
    ports: Vec<(u32, u32, usize)>,
}

impl HostRt<'_> {
    pub(super) fn accepts_new(&self) -> bool {
        self.facts.state == HostState::Up && !self.facts.cordon
    }
    fn free_mem(&self) -> i128 {
        self.cap_mem.map_or(i128::MAX, |c| c - self.used_mem)
    }
}

/// Why a host cannot take one more replica of a service.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum NoRoom {
    Max(u32),
    Port(u32),
    Memory(i128),
    Cpu(i128),
}

/// One service during placement.
pub(super) struct Svc<'a> {
    stack: &'a str,
    name: &'a str,
    pub(super) spec: &'a ServiceSpec,
    /// Statically eligible hosts (step 1), ascending host index.
    pub(super) eligible: Vec<usize>,
    /// Published host ports: (protocol+port id, ip id), deduplicated.
    ports: Vec<(u32, u32)>,
    pub(super) cpu: i128,
    pub(super) mem: i128,
    /// `max_replicas_per_node`; 0 means no limit, as in Swarm.
    max: Option<u32>,
    /// Desired slots in order: "1".."N", or host names for a global service.
    slots: Vec<String>,
    /// The host a slot keeps from the sticky pass.
    sticky: Vec<Option<usize>>,
    deps: Vec<usize>,
}

pub(super) struct Placer<'a> {
    pub(super) hosts: Vec<HostRt<'a>>,
    pub(super) svcs: Vec<Svc<'a>>,
    /// (protocol, port) for each port id, for messages.
    pub(super) port_names: Vec<(String, u16)>,
    /// Spread label key → value id per host (0: the host lacks the label).
    spread_values: BTreeMap<&'a str, Vec<u32>>,
}

impl<'a> Placer<'a> {
    pub(super) fn new(
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
            if self.svcs[s].spec.mode == DeployMode::Global {
                // A global slot on a host that takes no new replicas exists only for the copy
                // that runs there; when that copy cannot stay (no room), the slot goes with it,
                // as it would once the copy is gone: placing again must not bring it back as
                // "pending" (stability).
                let host_of_slot =
                    |slot: &str| self.hosts.iter().position(|h| h.facts.name == slot);
                let keep: Vec<bool> = slots
                    .iter()
                    .zip(&sticky)
                    .map(|((slot, _), kept)| {
                        kept.is_some()
                            || host_of_slot(slot).is_some_and(|h| self.hosts[h].accepts_new())
                    })
                    .collect();
                let mut k = keep.iter();
                slots.retain(|_| *k.next().unwrap_or(&true));
                let mut k = keep.iter();
                sticky.retain(|_| *k.next().unwrap_or(&true));
            }
            let svc = &mut self.svcs[s];
            svc.slots = slots.into_iter().map(|(slot, _)| slot).collect();
            svc.sticky = sticky;
        }
        self
    }

    /// Whether host `h`, already running `count` replicas of service `s`, has room for one more.
    pub(super) fn room(&self, h: usize, s: usize, count: u32) -> Result<(), NoRoom> {
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

    pub(super) fn run(mut self) -> Placement {
        let mut out: BTreeMap<ReplicaKey, Assignment> = BTreeMap::new();
        let mut pending = vec![false; self.svcs.len()];
        // Position of a host in the current service's eligible list (usize::MAX: not eligible).
        let mut pos_of = vec![usize::MAX; self.hosts.len()];
        for s in self.order() {
            let assignments = match self.blocking_dependency(s, &pending) {
                Some(dep) => {
                    // Replicas that run stay: a dependency that cannot grow is no reason to
                    // remove what works ("removal is never the side effect of an error"). Only
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
}

/// Step 1 for one host and one service.
pub(super) fn statically_eligible(host: &HostFacts, spec: &ServiceSpec) -> bool {
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
pub(super) fn constraint_holds(host: &HostFacts, c: &Constraint) -> bool {
    let actual = match &c.attribute {
        ConstraintAttribute::Hostname => Some(&host.name),
        ConstraintAttribute::Label(key) => host.labels.get(key),
    };
    (actual == Some(&c.value)) == c.equal
}
