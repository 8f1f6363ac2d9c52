//! Checker 6: replicas converge to identical state at the same applied index.
//!
//! After the final heal and quiescence, the harness records one `node_view` per member:
//! its `applied_index` and what the API exposes of its applied state (every resource
//! with config and stats from `GET /v1/resources?stale=true` minus the leader-only
//! queue lengths, plus lease count and cluster time from `/v1/cluster/status`), read
//! with the applied index unchanged before and after. State is a function of the
//! applied log prefix (DESIGN.md §7.3), so equal indexes must give equal views. Every
//! member must have reached the same index.

use serde_json::{json, Value};

use super::{harness_ops, Config, Verdict};
use crate::history::{Op, Type, F};

/// The first JSON path at which `a` and `b` differ.
pub fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(p), Some(q)) => first_difference(p, q, &format!("{path}/{k}")),
                _ => Some(format!("{path}/{k}")),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{path}/{i}"))),
        _ if a == b => None,
        _ => Some(if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        }),
    }
}

pub fn check(history: &[Op], _cfg: &Config) -> Verdict {
    let views: Vec<&Op> = harness_ops(history, F::NodeView).collect();
    if views.is_empty() {
        return Verdict::new(
            "6-convergence",
            false,
            "unknown: no replica views were recorded".into(),
            json!({}),
        );
    }
    let mut problems = Vec::new();
    let mut ok: Vec<(u64, u64, &Value)> = Vec::new();
    for v in &views {
        let node = v.node.unwrap_or(0);
        let idx = v
            .value
            .as_ref()
            .and_then(|x| x.get("applied_index"))
            .and_then(Value::as_u64);
        let view = v.value.as_ref().and_then(|x| x.get("view"));
        match (v.kind, idx, view) {
            (Type::Ok, Some(i), Some(view)) => ok.push((node, i, view)),
            _ => problems.push(json!({"node": node, "kind": "no stable view", "error": v.error})),
        }
    }
    let indexes: Vec<(u64, u64)> = ok.iter().map(|(n, i, _)| (*n, *i)).collect();
    if let Some((_, first_idx, first_view)) = ok.first() {
        if ok.iter().any(|(_, i, _)| i != first_idx) {
            problems.push(json!({"kind": "replicas stopped at different applied indexes", "indexes": indexes}));
        } else {
            for (node, _, view) in ok.iter().skip(1) {
                if let Some(path) = first_difference(first_view, view, "") {
                    problems.push(json!({
                        "kind": "different state at the same applied index",
                        "nodes": [ok[0].0, node], "applied_index": first_idx, "first_difference": path,
                    }));
                }
            }
        }
    }
    let valid = problems.is_empty();
    let summary = if valid {
        format!(
            "{} replicas identical at applied index {}",
            ok.len(),
            ok.first().map_or(0, |x| x.1)
        )
    } else {
        format!("{} convergence problems", problems.len())
    };
    Verdict::new(
        "6-convergence",
        valid,
        summary,
        json!({"indexes": indexes, "problems": problems}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::H;
    use crate::history::HARNESS;

    fn view(h: &mut H, node: u64, idx: u64, held: u64) {
        let mut o = Op::new(HARNESS, Type::Ok, F::NodeView);
        o.node = Some(node);
        o.value = Some(
            json!({"applied_index": idx, "view": {"leases": held, "resources": [{"name": "a", "held": held}]}}),
        );
        h.op(1_000.0 + node as f64, o);
    }

    #[test]
    fn diverged_or_lagging_replicas_fail() {
        let mut h = H::new();
        view(&mut h, 1, 50, 2);
        view(&mut h, 2, 50, 3);
        let v = check(&h.done(), &Config::default());
        assert!(!v.valid, "{v:?}");
        assert_eq!(v.details["problems"][0]["first_difference"], "/leases");

        let mut h = H::new();
        view(&mut h, 1, 50, 2);
        view(&mut h, 2, 49, 2);
        assert!(!check(&h.done(), &Config::default()).valid);

        assert!(
            !check(&H::new().done(), &Config::default()).valid,
            "no views is not a pass"
        );
    }

    #[test]
    fn identical_replicas_pass() {
        let mut h = H::new();
        for n in 1..=5 {
            view(&mut h, n, 77, 4);
        }
        let v = check(&h.done(), &Config::default());
        assert!(v.valid, "{v:?}");
    }
}
