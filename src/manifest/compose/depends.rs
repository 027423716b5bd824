//! A service's `depends_on` (list or map with conditions), and the check across services that
//! no dependency cycle exists.
//!
//! Reads only the nodes handed in; no I/O. Dependencies on unknown services and on oneself are
//! checked once every service is read, from what is gathered here.

use std::collections::{BTreeMap, BTreeSet};

use super::keys::DEPENDS;
use super::{Gathered, Stack};
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
                        g.depends.push((s, item, ipath));
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
                    for (field, fk, fv, fpath) in d.fields(fields, &dpath, &DEPENDS) {
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
                            "restart" => d.at(fk, &fpath, "`restart` is not supported yet"),
                            _ => {}
                        }
                    }
                    svc.depends_on.insert(dep.clone(), cond);
                    g.depends.push((dep, k, dpath));
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

pub(super) fn report_cycles(d: &mut Diag, gathered: &BTreeMap<String, Gathered<'_>>) {
    for (start, g) in gathered {
        for (first, node, path) in g.depends.iter().filter(|(dep, _, _)| dep != start) {
            // Depth-first from this edge; a path back to `start` is a cycle through it.
            let mut stack = vec![(first.clone(), vec![start.clone(), first.clone()])];
            let mut visited = BTreeSet::new();
            while let Some((cur, trail)) = stack.pop() {
                if cur == *start {
                    d.at(
                        node,
                        path,
                        format!("dependency cycle: {}", trail.join(" -> ")),
                    );
                    break;
                }
                if !visited.insert(cur.clone()) {
                    continue;
                }
                if let Some(next) = gathered.get(&cur) {
                    for (dep, _, _) in &next.depends {
                        let mut t = trail.clone();
                        t.push(dep.clone());
                        stack.push((dep.clone(), t));
                    }
                }
            }
        }
    }
}
