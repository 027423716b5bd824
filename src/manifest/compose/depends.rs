//! A service's `depends_on` (list or map with conditions), and the checks across services: no
//! dependency cycle, and no `service_healthy` on a service that declares no healthcheck.
//!
//! Reads only the nodes handed in; no I/O. Dependencies on unknown services and on oneself are
//! checked once every service is read, from what is gathered here. The cycle check is linear in
//! services plus edges (strongly connected components, then one path per cycle), so a chain of
//! thousands of services costs milliseconds; it reports each cycle once, at one of its edges.

use std::collections::BTreeMap;

use super::keys::DEPENDS;
use super::{Dependency, Gathered, HealthDecl, Stack};
use crate::manifest::typed::{join, Diag};
use crate::manifest::yaml::{Kind, Node};
use crate::model::spec::{DependsCondition, ServiceSpec};

const DEPENDS_CONDITIONS: &str =
    "(expected service_started, service_healthy or service_completed_successfully)";
const NOT_REQUIRED: &str = "`required: false` is not supported yet: every dependency is required";

impl Stack<'_> {
    pub(super) fn read_depends<'n>(
        &self,
        d: &mut Diag,
        v: &'n Node,
        path: &str,
        svc: &mut ServiceSpec,
        g: &mut Gathered<'n>,
    ) {
        match &v.kind {
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let ipath = format!("{path}[{i}]");
                    if let Some(s) = d.string(item, &ipath) {
                        svc.depends_on
                            .insert(s.clone(), DependsCondition::ServiceStarted);
                        g.depends.push(Dependency {
                            service: s,
                            node: item,
                            path: ipath,
                            condition: DependsCondition::ServiceStarted,
                        });
                    }
                }
            }
            Kind::Map(entries) => {
                for (k, v) in entries {
                    let dep = k.scalar().unwrap_or_default().to_string();
                    let dpath = join(path, &dep);
                    let Some(fields) = d.map(v, &dpath) else {
                        continue;
                    };
                    let mut cond = DependsCondition::ServiceStarted;
                    for (field, _fk, fv, fpath) in d.fields(fields, &dpath, &DEPENDS) {
                        match field {
                            "condition" => match d.string(fv, &fpath).as_deref() {
                                Some("service_started") => cond = DependsCondition::ServiceStarted,
                                Some("service_healthy") => cond = DependsCondition::ServiceHealthy,
                                Some("service_completed_successfully") => {
                                    cond = DependsCondition::ServiceCompletedSuccessfully
                                }
                                Some(other) => d.at(
                                    fv,
                                    &fpath,
                                    format!("invalid condition `{other}` {DEPENDS_CONDITIONS}"),
                                ),
                                None => {}
                            },
                            "required" => {
                                let required = d.bool(fv, &fpath);
                                if required == Some(false) {
                                    d.at(fv, &fpath, NOT_REQUIRED);
                                }
                            }
                            // `false` is Compose's default. `true`: the dependent is replaced
                            // after the dependency whenever a pass replaces or starts it again
                            // (`core::plan`), as Compose restarts it.
                            "restart" if d.bool(fv, &fpath) == Some(true) => {
                                svc.restart_with.insert(dep.clone());
                            }
                            _ => {}
                        }
                    }
                    svc.depends_on.insert(dep.clone(), cond);
                    g.depends.push(Dependency {
                        service: dep,
                        node: k,
                        path: dpath,
                        condition: cond,
                    });
                }
            }
            _ => d.at(
                v,
                path,
                format!("expected a list or a map, found {}", v.type_name()),
            ),
        }
    }
}

/// `service_healthy` waits for the engine to report the dependency healthy; without a
/// healthcheck it never does, and the gate would pass as soon as the container runs.
pub(super) fn report_unhealthy_gates(d: &mut Diag, gathered: &BTreeMap<String, Gathered<'_>>) {
    for g in gathered.values() {
        for dep in &g.depends {
            if dep.condition != DependsCondition::ServiceHealthy {
                continue;
            }
            let Some(target) = gathered.get(&dep.service) else {
                continue;
            };
            let why = match target.health {
                HealthDecl::Declared => continue,
                HealthDecl::Absent => "declares no healthcheck",
                HealthDecl::Disabled => "has its healthcheck disabled",
            };
            d.at(
                dep.node,
                &dep.path,
                format!(
                    "`service_healthy` needs a healthcheck, and service `{}` {why}: declare one \
                     under its `healthcheck` (`healthcheck: {{}}` keeps the image's)",
                    dep.service
                ),
            );
        }
    }
}

/// Reports each dependency cycle once, at the first edge (in name order of the services, then
/// written order) of its lowest-named service that stays inside the cycle. Self-dependencies
/// are reported by the caller. Linear: Tarjan's strongly connected components, iteratively
/// (a long chain must not overflow the stack), then one breadth-first path per component.
pub(super) fn report_cycles(d: &mut Diag, gathered: &BTreeMap<String, Gathered<'_>>) {
    let names: Vec<&String> = gathered.keys().collect();
    let index: BTreeMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    // Edges by service index, in written order; unknown services and self-loops left out.
    let edges: Vec<Vec<(usize, &Dependency<'_>)>> = gathered
        .values()
        .enumerate()
        .map(|(from, g)| {
            g.depends
                .iter()
                .filter_map(|dep| index.get(dep.service.as_str()).map(|to| (*to, dep)))
                .filter(|(to, _)| *to != from)
                .collect()
        })
        .collect();
    let component = strongly_connected(&edges);
    let mut reported = vec![false; names.len()];
    for start in 0..names.len() {
        let c = component[start];
        if reported[c] {
            continue;
        }
        let Some((first, dep)) = edges[start].iter().find(|(to, _)| component[*to] == c) else {
            continue;
        };
        reported[c] = true;
        // The shortest way back from `first` to `start` inside the component.
        let mut parent: Vec<Option<usize>> = vec![None; names.len()];
        let mut queue = std::collections::VecDeque::from([*first]);
        parent[*first] = Some(*first);
        while let Some(cur) = queue.pop_front() {
            if cur == start {
                break;
            }
            for (next, _) in &edges[cur] {
                if component[*next] == c && parent[*next].is_none() {
                    parent[*next] = Some(cur);
                    queue.push_back(*next);
                }
            }
        }
        let mut trail = vec![start];
        let mut cur = start;
        while cur != *first {
            match parent[cur] {
                Some(p) => cur = p,
                None => break,
            }
            trail.push(cur);
        }
        trail.push(start);
        trail.reverse();
        let text: Vec<&str> = trail.iter().map(|i| names[*i].as_str()).collect();
        d.at(
            dep.node,
            &dep.path,
            format!("dependency cycle: {}", text.join(" -> ")),
        );
    }
}

/// The strongly connected component of every node (Tarjan), without recursion. A node on no
/// cycle is a component of its own.
fn strongly_connected(edges: &[Vec<(usize, &Dependency<'_>)>]) -> Vec<usize> {
    const UNSEEN: usize = usize::MAX;
    let n = edges.len();
    let mut order = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut component = vec![UNSEEN; n];
    let mut next_order = 0;
    let mut components = 0;
    for root in 0..n {
        if order[root] != UNSEEN {
            continue;
        }
        // (node, index of the next edge to follow)
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        order[root] = next_order;
        low[root] = next_order;
        next_order += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(top) = work.last_mut() {
            let v = top.0;
            if let Some(&(w, _)) = edges[v].get(top.1) {
                top.1 += 1;
                if order[w] == UNSEEN {
                    order[w] = next_order;
                    low[w] = next_order;
                    next_order += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(order[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == order[v] {
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component[w] = components;
                    if w == v {
                        break;
                    }
                }
                components += 1;
            }
        }
    }
    component
}
