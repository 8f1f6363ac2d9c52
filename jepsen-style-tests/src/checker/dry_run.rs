//! Checker 9: a dry-run resource grants every acquire at once, and the `shadow` each
//! grant carries is what the same resource enforced would have decided.
//!
//! - **Granted at once.** No acquire on a dry-run resource is refused for want of room
//!   (`would_block`, `wait_timeout`, `queue_full`, `load_exceeds_limit`), and every `ok`
//!   carries a shadow.
//! - **Each shadow agrees with its own request.** `grant`: no wait, no binding limit;
//!   `wait`: the request could wait (`wait_ms > 0`) and the would-be wait is within it;
//!   `would_block`: a try-once request that did not fit; `wait_timeout`: a would-be wait
//!   beyond the request's `wait_ms`; `load_exceeds_limit` exactly when the load is over
//!   the smallest `per: load` capacity. A binding limit is one the resource has.
//! - **What the shadows admitted obeys the limits** (the enforce direction). The grants
//!   whose shadow is `grant` are held to checkers 1 and 3's bounds, with the same stamp
//!   skew. Sound because the shadow is decided by the enforce `fit` on the replicated
//!   state: a `grant` shadow found fewer than `concurrency` live leases (the dry-run
//!   resource counts every live lease, so `grant`-shadowed leases alone never exceed
//!   it), and a bucket with room for its charge. Every `grant` or `wait` shadow is
//!   charged, so the bucket never goes below zero right after a `grant`; the charges of
//!   the `grant`-shadowed admits of a window are then at most capacity plus refill, as
//!   for an enforced bucket.
//! - **A concurrency refusal has a cause** (the other direction, where the history can
//!   decide it). A shadow that says `concurrency` binds saw at least `concurrency` live
//!   leases when it was applied, somewhere inside its acquire's interval: so at least
//!   that many other acquires of the resource (ok or info) must have been invoked before
//!   its `ok` and not have been released (an `ok` release) before its invoke. Rate
//!   refusals are not judged from below: cluster time may stand still, so the history
//!   bounds no bucket's refill from below.

use std::collections::{BTreeMap, HashMap};

use ratequeue_api as api;
use serde_json::{json, Value};

use super::overlap::{certain_holds_of, over_limit};
use super::rate::over_budget;
use super::{grants, shadow_of, Config, Grant, Verdict, EXAMPLES_MAX};
use crate::history::{pairs, Op, Type, F};

/// Refusal codes that a dry-run resource never answers.
const ROOM_CODES: [&str; 4] = [
    "would_block",
    "wait_timeout",
    "queue_full",
    "load_exceeds_limit",
];

pub fn check(history: &[Op], cfg: &Config) -> Verdict {
    let dry = Config {
        resources: cfg
            .resources
            .iter()
            .filter(|(n, _)| cfg.is_dry_run(n))
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect(),
        ..cfg.clone()
    };
    let ps = pairs(history);
    let mut problems: Vec<Value> = Vec::new();
    let mut problem_count = 0usize;
    let mut note = |v: Value| {
        problem_count += 1;
        if problems.len() < EXAMPLES_MAX {
            problems.push(v);
        }
    };
    let mut decisions: BTreeMap<String, usize> = BTreeMap::new();
    let mut acquires = 0usize;
    for p in ps.iter().filter(|p| {
        p.invoke.f == F::Acquire
            && p.invoke.is_client()
            && p.invoke
                .resource
                .as_deref()
                .is_some_and(|r| dry.is_dry_run(r))
    }) {
        acquires += 1;
        let resource = p.invoke.resource.as_deref().unwrap_or_default();
        let Some(done) = p.done else { continue };
        match done.kind {
            Type::Fail => {
                let code = done
                    .error
                    .as_deref()
                    .and_then(|e| e.split_whitespace().last())
                    .unwrap_or("");
                if ROOM_CODES.contains(&code) {
                    note(
                        json!({"resource": resource, "request_id": p.invoke.request_id,
                        "at_ms": done.time_ms, "problem": format!("refused {code}")}),
                    );
                }
            }
            Type::Ok => {
                let Some(sh) = shadow_of(done) else {
                    note(
                        json!({"resource": resource, "request_id": p.invoke.request_id,
                        "at_ms": done.time_ms, "problem": "granted without a shadow"}),
                    );
                    continue;
                };
                *decisions
                    .entry(decision_name(sh.decision).to_owned())
                    .or_default() += 1;
                let wait_ms = p
                    .invoke
                    .value
                    .as_ref()
                    .and_then(|v| v.get("wait_ms"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let load = p.invoke.load.unwrap_or(1);
                if let Some(spec) = dry.resources.get(resource) {
                    if let Err(why) = agrees(&sh, wait_ms, load, spec) {
                        note(
                            json!({"resource": resource, "request_id": p.invoke.request_id,
                            "at_ms": done.time_ms, "shadow": sh, "wait_ms": wait_ms,
                            "load": load, "problem": why}),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    let causeless = concurrency_without_cause(history, &dry);
    for c in &causeless {
        note(c.clone());
    }

    let admitted: Vec<Grant> = grants(history)
        .into_values()
        .filter(|g| dry.is_dry_run(&g.resource))
        .filter(|g| {
            g.shadow
                .is_some_and(|s| s.decision == api::ShadowDecision::Grant)
        })
        .collect();
    let holds = certain_holds_of(history, &dry, admitted.iter().cloned());
    let over_c = over_limit(&holds, &dry);
    let refs: Vec<&Grant> = admitted.iter().collect();
    let over_r = over_budget(&refs, &dry);

    let valid = problem_count == 0 && over_c.count == 0 && over_r.count == 0;
    let summary = if dry.resources.is_empty() {
        "no dry-run resource".to_owned()
    } else if valid {
        format!(
            "{acquires} acquires on {} dry-run resources: none refused, every shadow consistent; the {} shadow-admitted grants obey concurrency and buckets",
            dry.resources.len(),
            admitted.len()
        )
    } else {
        format!(
            "{problem_count} dry-run answers inconsistent; shadow-admitted grants: {} instants over concurrency, {} windows over capacity + refill",
            over_c.count, over_r.count
        )
    };
    Verdict::new(
        "9-dry-run",
        valid,
        summary,
        json!({
            "acquires": acquires, "decisions": decisions, "shadow_admitted": admitted.len(),
            "problems": problems,
            "concurrency": {"resources": over_c.per_resource, "violations": over_c.examples},
            "buckets": {"buckets": over_r.buckets, "violations": over_r.examples},
            "stamp_skew_ms": cfg.stamp_skew_ms,
        }),
    )
}

fn decision_name(d: api::ShadowDecision) -> &'static str {
    match d {
        api::ShadowDecision::Grant => "grant",
        api::ShadowDecision::Wait => "wait",
        api::ShadowDecision::WouldBlock => "would_block",
        api::ShadowDecision::WaitTimeout => "wait_timeout",
        api::ShadowDecision::LoadExceedsLimit => "load_exceeds_limit",
    }
}

/// Whether a shadow agrees with its own request (`wait_ms`, `load`) and the resource.
fn agrees(
    sh: &api::Shadow,
    wait_ms: u64,
    load: u64,
    spec: &api::ResourceSpec,
) -> Result<(), String> {
    use api::ShadowDecision as D;
    let load_max = spec
        .rate
        .iter()
        .filter(|r| r.per == api::Per::Load)
        .map(|r| r.limit)
        .min();
    let never = load_max.is_some_and(|m| load > m);
    if never != (sh.decision == D::LoadExceedsLimit) {
        return Err(format!(
            "load {load} against a smallest load capacity of {load_max:?}"
        ));
    }
    let has = |k: api::LimitKind| match k {
        api::LimitKind::Concurrency => spec.concurrency.is_some(),
        api::LimitKind::Request => spec.rate.iter().any(|r| r.per == api::Per::Request),
        api::LimitKind::Load => spec.rate.iter().any(|r| r.per == api::Per::Load),
        api::LimitKind::Provider => spec.feedback.is_some(),
    };
    let ok = match sh.decision {
        D::Grant => sh.wait_ms == 0 && sh.limit.is_none(),
        D::Wait => wait_ms > 0 && sh.wait_ms > 0 && sh.wait_ms <= wait_ms,
        D::WouldBlock => wait_ms == 0 && sh.wait_ms > 0,
        D::WaitTimeout => wait_ms > 0 && sh.wait_ms > wait_ms,
        D::LoadExceedsLimit => true,
    };
    if !ok {
        return Err("decision does not match the request's wait_ms".into());
    }
    if sh.decision != D::Grant && !sh.limit.is_some_and(has) {
        return Err("the binding limit is not one of the resource's".into());
    }
    Ok(())
}

/// A lease that may have been live from `from` until `until`: (resource, request id,
/// lease id if known, from, until).
type MaybeLive<'a> = (&'a str, Option<&'a str>, Option<&'a str>, f64, f64);

/// Shadows saying `concurrency` binds although fewer than `concurrency` other leases
/// can have been live at any moment of the acquire.
fn concurrency_without_cause(history: &[Op], dry: &Config) -> Vec<Value> {
    let ps = pairs(history);
    let mut first_invoke: HashMap<&str, f64> = HashMap::new();
    for p in ps.iter().filter(|p| p.invoke.f == F::Acquire) {
        if let Some(r) = p.invoke.request_id.as_deref() {
            let t = first_invoke.entry(r).or_insert(p.invoke.time_ms);
            *t = t.min(p.invoke.time_ms);
        }
    }
    let mut released_ok: HashMap<&str, f64> = HashMap::new();
    for p in ps.iter().filter(|p| p.invoke.f == F::Release && p.is_ok()) {
        if let Some(l) = p.invoke.lease_id.as_deref() {
            let t = released_ok.entry(l).or_insert(p.done_ms());
            *t = t.min(p.done_ms());
        }
    }
    let mut possible: Vec<MaybeLive<'_>> = Vec::new();
    let mut seen_leases: HashMap<&str, ()> = HashMap::new();
    for p in ps.iter().filter(|p| {
        p.invoke.f == F::Acquire
            && p.invoke.is_client()
            && p.kind() != Type::Fail
            && p.invoke
                .resource
                .as_deref()
                .is_some_and(|r| dry.is_dry_run(r))
    }) {
        let resource = p.invoke.resource.as_deref().unwrap_or_default();
        let from = p
            .invoke
            .request_id
            .as_deref()
            .and_then(|r| first_invoke.get(r).copied())
            .unwrap_or(p.invoke.time_ms);
        let lease = p.is_ok().then(|| p.lease_id()).flatten();
        if let Some(l) = lease {
            if seen_leases.insert(l, ()).is_some() {
                continue;
            }
        }
        let until = lease
            .and_then(|l| released_ok.get(l).copied())
            .unwrap_or(f64::INFINITY);
        possible.push((resource, p.invoke.request_id.as_deref(), lease, from, until));
    }
    let mut out = Vec::new();
    for p in ps.iter().filter(|p| p.invoke.f == F::Acquire && p.is_ok()) {
        let Some(done) = p.done else { continue };
        let Some(resource) = p.invoke.resource.as_deref().filter(|r| dry.is_dry_run(r)) else {
            continue;
        };
        let Some(sh) = shadow_of(done) else { continue };
        if sh.limit != Some(api::LimitKind::Concurrency) {
            continue;
        }
        let Some(c) = dry.resources.get(resource).and_then(|s| s.concurrency) else {
            continue;
        };
        let (own, own_rid) = (p.lease_id(), p.invoke.request_id.as_deref());
        let (a, b) = (p.invoke.time_ms, done.time_ms);
        let others = possible
            .iter()
            .filter(|(r, rid, l, from, until)| {
                *r == resource
                    && (own.is_none() || *l != own)
                    && (own_rid.is_none() || *rid != own_rid)
                    && *from < b
                    && *until > a
            })
            .count();
        if others < c as usize {
            out.push(
                json!({"resource": resource, "request_id": p.invoke.request_id,
                "at_ms": b, "shadow": sh, "possibly_live_others": others, "concurrency": c,
                "problem": "concurrency binds with fewer live leases than the limit"}),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::H;

    fn cfg() -> Config {
        let mut c = Config {
            stamp_skew_ms: 100.0,
            ..Config::default()
        };
        c.resources.insert(
            "dry-0".into(),
            api::ResourceSpec {
                concurrency: Some(1),
                rate: vec![
                    api::Rate {
                        per: api::Per::Request,
                        limit: 2,
                        window_ms: 1_000,
                    },
                    api::Rate {
                        per: api::Per::Load,
                        limit: 100,
                        window_ms: 1_000,
                    },
                ],
                mode: Some(api::Mode::DryRun),
                ..Default::default()
            },
        );
        c
    }

    /// A dry-run acquire of `load` with `wait_ms`, answered `ok` with `shadow`
    /// (decision, would-be wait, binding limit) and the lease `n-x` (token `n`).
    #[allow(clippy::too_many_arguments)]
    fn grant(
        h: &mut H,
        n: u64,
        t0: f64,
        t1: f64,
        wait_ms: u64,
        load: u64,
        shadow: (api::ShadowDecision, u64, Option<api::LimitKind>),
    ) -> String {
        let mut inv = Op::new(n as i64, Type::Invoke, F::Acquire);
        inv.resource = Some("dry-0".into());
        inv.request_id = Some(format!("dry-run-{n}"));
        inv.ttl_ms = Some(40_000);
        inv.load = Some(load);
        inv.value = Some(json!({"wait_ms": wait_ms}));
        let mut done = inv.complete(Type::Ok);
        let lease = format!("{n}-x");
        done.lease_id = Some(lease.clone());
        done.fencing_token = Some(n);
        done.ttl_ms = Some(40_000);
        done.load = Some(load);
        let sh = api::Shadow {
            decision: shadow.0,
            wait_ms: shadow.1,
            limit: shadow.2,
        };
        done.value = Some(json!({"queued_ms": 1, "shadow": sh}));
        h.op(t0, inv);
        h.op(t1, done);
        lease
    }

    use api::LimitKind as K;
    use api::ShadowDecision as D;

    #[test]
    fn consistent_shadows_pass() {
        let c = cfg();
        let mut h = H::new();
        h.setup(&c);
        let a = grant(&mut h, 1, 10.0, 15.0, 0, 10, (D::Grant, 0, None));
        // While `a` is held, concurrency binds: refused or waiting shadows.
        grant(
            &mut h,
            2,
            20.0,
            25.0,
            0,
            10,
            (D::WouldBlock, 39_000, Some(K::Concurrency)),
        );
        grant(
            &mut h,
            3,
            30.0,
            35.0,
            1_000,
            10,
            (D::WaitTimeout, 39_000, Some(K::Concurrency)),
        );
        h.release(1, 50.0, 55.0, Type::Ok, &a);
        let b = grant(&mut h, 4, 60.0, 65.0, 1_000, 10, (D::Grant, 0, None));
        h.release(4, 70.0, 75.0, Type::Ok, &b);
        // The request bucket (2 per second) is empty now: a wait, then a grant later.
        let w = grant(
            &mut h,
            5,
            80.0,
            85.0,
            1_000,
            10,
            (D::Wait, 400, Some(K::Request)),
        );
        h.release(5, 90.0, 95.0, Type::Ok, &w);
        grant(
            &mut h,
            6,
            100.0,
            105.0,
            0,
            150,
            (D::LoadExceedsLimit, 0, Some(K::Load)),
        );
        let v = check(&h.done(), &c);
        assert!(v.valid, "{v:?}");
        assert_eq!(v.details["shadow_admitted"], 2);
    }

    #[test]
    fn a_refusal_for_want_of_room_fails() {
        let c = cfg();
        let mut h = H::new();
        h.setup(&c);
        h.acquire(1, 10.0, 12.0, Type::Fail, "dry-0", "r", None, 40_000);
        let mut h2 = h.done();
        if let Some(d) = h2.last_mut() {
            d.error = Some("429 would_block".into());
        }
        let v = check(&h2, &c);
        assert!(!v.valid, "{v:?}");
        assert_eq!(v.details["problems"][0]["problem"], "refused would_block");
    }

    #[test]
    fn shadow_grants_over_concurrency_fail() {
        let c = cfg();
        let mut h = H::new();
        h.setup(&c);
        let a = grant(&mut h, 1, 10.0, 15.0, 0, 1, (D::Grant, 0, None));
        let b = grant(&mut h, 2, 20.0, 25.0, 0, 1, (D::Grant, 0, None));
        h.release(1, 50.0, 55.0, Type::Ok, &a);
        h.release(2, 60.0, 65.0, Type::Ok, &b);
        let v = check(&h.done(), &c);
        assert!(!v.valid, "{v:?}");
        assert!(v.details["concurrency"]["violations"][0]["at_ms"].is_number());
    }

    #[test]
    fn shadow_grants_over_a_bucket_fail() {
        // A build whose dry-run grants charge nothing: every shadow says `grant`.
        let c = cfg();
        let mut h = H::new();
        h.setup(&c);
        for n in 1..=5u64 {
            let t = 100.0 * n as f64;
            let l = grant(&mut h, n, t, t + 5.0, 0, 1, (D::Grant, 0, None));
            h.release(n as i64, t + 10.0, t + 15.0, Type::Ok, &l);
        }
        let v = check(&h.done(), &c);
        assert!(!v.valid, "{v:?}");
        assert!(v.details["buckets"]["violations"][0]["window"]["admitted"].is_number());
    }

    #[test]
    fn a_shadow_against_its_own_request_fails() {
        let c = cfg();
        for (wait_ms, load, shadow) in [
            // A try-once request cannot have waited.
            (0, 1, (D::Wait, 10, Some(K::Request))),
            // A wait within wait_ms is not a timeout.
            (1_000, 1, (D::WaitTimeout, 10, Some(K::Request))),
            // A load over every load capacity never fits.
            (0, 150, (D::Grant, 0, None)),
            // The resource has no provider feedback.
            (0, 1, (D::WouldBlock, 10, Some(K::Provider))),
        ] {
            let mut h = H::new();
            h.setup(&c);
            let l = grant(&mut h, 1, 10.0, 15.0, wait_ms, load, shadow);
            h.release(1, 20.0, 25.0, Type::Ok, &l);
            let v = check(&h.done(), &c);
            assert!(
                !v.valid,
                "{shadow:?} for wait_ms {wait_ms}, load {load}: {v:?}"
            );
        }
    }

    #[test]
    fn concurrency_binding_with_nothing_held_fails() {
        let c = cfg();
        let mut h = H::new();
        h.setup(&c);
        let a = grant(&mut h, 1, 10.0, 15.0, 0, 1, (D::Grant, 0, None));
        h.release(1, 20.0, 25.0, Type::Ok, &a);
        grant(
            &mut h,
            2,
            30.0,
            35.0,
            0,
            1,
            (D::WouldBlock, 100, Some(K::Concurrency)),
        );
        let v = check(&h.done(), &c);
        assert!(!v.valid, "{v:?}");
        assert_eq!(v.details["problems"][0]["possibly_live_others"], 0);
    }
}
