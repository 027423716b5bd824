//! A service's `healthcheck`: the test in its list or string form, the durations, `retries`,
//! and `disable`, which is the same as `test: [NONE]`.
//!
//! Reads only the node handed in; no I/O.

use super::duration_ns;
use super::keys::HEALTHCHECK;
use crate::manifest::typed::Diag;
use crate::manifest::yaml::{Kind, Node};
use crate::model::spec::Healthcheck;

pub(super) fn read_healthcheck(d: &mut Diag, v: &Node, path: &str) -> Option<Healthcheck> {
    let entries = d.map(v, path)?;
    let mut h = Healthcheck {
        test: Vec::new(),
        interval_ns: None,
        timeout_ns: None,
        retries: None,
        start_period_ns: None,
        start_interval_ns: None,
    };
    let mut disable = false;
    let mut test_node = None;
    for (field, _k, v, fpath) in d.fields(entries, path, &HEALTHCHECK) {
        match field {
            "test" => {
                test_node = Some((v, fpath.clone()));
                match &v.kind {
                    Kind::Seq(_) => {
                        let list: Vec<String> = d
                            .string_list(v, &fpath)
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(s, _)| s)
                            .collect();
                        match list.first().map(String::as_str) {
                            Some("NONE" | "CMD" | "CMD-SHELL") => h.test = list,
                            _ => d.at(
                                v,
                                &fpath,
                                "a test list starts with `CMD`, `CMD-SHELL` or `NONE`",
                            ),
                        }
                    }
                    _ => {
                        if let Some(s) = d.string(v, &fpath) {
                            h.test = vec!["CMD-SHELL".into(), s];
                        }
                    }
                }
            }
            "interval" => h.interval_ns = duration_ns(d, v, &fpath),
            "timeout" => h.timeout_ns = duration_ns(d, v, &fpath),
            "start_period" => h.start_period_ns = duration_ns(d, v, &fpath),
            "start_interval" => h.start_interval_ns = duration_ns(d, v, &fpath),
            "retries" => h.retries = d.non_negative(v, &fpath).map(i64::from),
            "disable" => disable = d.bool(v, &fpath).unwrap_or(false),
            _ => {}
        }
    }
    if disable {
        if let Some((n, p)) = test_node {
            d.at(n, &p, "`test` and `disable: true` exclude each other");
        }
        h.test = vec!["NONE".into()];
    }
    Some(h)
}
