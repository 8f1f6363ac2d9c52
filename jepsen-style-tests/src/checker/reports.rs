//! Checker 10: provider reports take budget away and never give it, and a reported 429
//! pauses grants.
//!
//! - **Never above the limit, never above the provider's figure.** The answer to an
//!   `ok` report gives the resource's limits right after it was applied: no bucket may
//!   show more than its configured limit, and the bucket the feedback policy assigns a
//!   reported figure to (`requests_window_ms` / `tokens_window_ms`, else the shortest
//!   window of that kind) no more than that figure. A 429 report's answer must show a
//!   pause at least as long as the one asked for (`retry_after_ms`, else the latest
//!   reset). That the reports never let more through than capacity plus refill is
//!   checker 3, which holds the report workload's resource to its bound like any other.
//! - **A 429 pause is honoured.** For an `ok` 429 report asking for a pause `P`, no
//!   grant on its resource whose acquire (first attempt of its request id) was invoked
//!   after the report's `ok` may be answered before `report invoke + P - skew`.
//!
//! Why that bound is sound under the clock nemesis. The report is applied at cluster
//! time `T_r`, the stamp of its entry, which its leader took at harness time `w_r`
//! when the entry's batch opened: at most the stamp skew before the report's invoke,
//! so `w_r >= invoke - skew`. The pause lasts until `T_r + P` or longer (a report never
//! shortens a pause). The grant's entry comes later in the log (its acquire was sent
//! after the report was applied and answered), stamped `T_g` at harness time `w_g`,
//! which is before the grant was applied and answered: `w_g <= ok`. Applying it
//! re-checks the pause, so `T_g >= T_r + P`. Cluster time never runs ahead of the
//! harness clock along the log: a leader stamps `base + elapsed` on its monotonic
//! clock, which the clock faults only slow down or set back (and `LeaderClock` never
//! lets a stamp go back), and a new leader starts from the last stamp, so
//! `T_g - T_r <= w_g - w_r`. Together: `P <= ok - invoke + skew`. Only `ok` reports
//! are used (an `info` report may have paused too, which can only remove grants) and
//! only `ok` grants (an `info` grant may not exist).

use ratequeue_api as api;
use serde_json::{json, Value};

use super::{grants, Config, Verdict, EXAMPLES_MAX};
use crate::history::{pairs, Op, F};

/// One acknowledged 429 report.
struct Pause<'a> {
    resource: &'a str,
    lease_id: Option<&'a str>,
    invoke_ms: f64,
    ok_ms: f64,
    pause_ms: u64,
}

pub fn check(history: &[Op], cfg: &Config) -> Verdict {
    let ps = pairs(history);
    let mut problems: Vec<Value> = Vec::new();
    let mut problem_count = 0usize;
    let mut note = |v: Value| {
        problem_count += 1;
        if problems.len() < EXAMPLES_MAX {
            problems.push(v);
        }
    };
    let mut reports = 0usize;
    let mut pauses: Vec<Pause<'_>> = Vec::new();
    for p in ps.iter().filter(|p| p.invoke.f == F::Report && p.is_ok()) {
        let Some(done) = p.done else { continue };
        let resource = p.invoke.resource.as_deref().unwrap_or_default();
        let Some(spec) = cfg.resources.get(resource) else {
            continue;
        };
        let (Some(asked), Some(answer)) = (
            p.invoke
                .value
                .as_ref()
                .and_then(|v| serde_json::from_value::<api::ReportRequest>(v.clone()).ok()),
            done.value
                .as_ref()
                .and_then(|v| serde_json::from_value::<api::ReportResponse>(v.clone()).ok()),
        ) else {
            continue;
        };
        reports += 1;
        let at = |problem: String| {
            json!({"resource": resource, "lease_id": p.invoke.lease_id, "at_ms": done.time_ms,
                "asked": asked, "answer": answer, "problem": problem})
        };
        let views: Vec<&api::Limit> = answer
            .limits
            .iter()
            .filter(|l| matches!(l.kind, api::LimitKind::Request | api::LimitKind::Load))
            .collect();
        for (i, (rate, view)) in spec.rate.iter().zip(&views).enumerate() {
            if view.remaining > i64::try_from(rate.limit).unwrap_or(i64::MAX) {
                note(at(format!("bucket {i} above its limit after a report")));
            }
            let Some(policy) = spec.feedback.as_ref() else {
                continue;
            };
            let figure = match rate.per {
                api::Per::Request => asked.remaining_requests,
                api::Per::Load => asked.remaining_tokens,
            };
            let window = match rate.per {
                api::Per::Request => policy.requests_window_ms,
                api::Per::Load => policy.tokens_window_ms,
            };
            if let Some(figure) = figure {
                if policy_bucket(spec, rate.per, window) == Some(i)
                    && view.remaining > i64::try_from(figure).unwrap_or(i64::MAX)
                {
                    note(at(format!("bucket {i} above the reported figure {figure}")));
                }
            }
        }
        if spec.feedback.is_none() || asked.rate_limited != Some(true) {
            continue;
        }
        let reset = asked.reset_requests_ms.max(asked.reset_tokens_ms);
        let Some(pause_ms) = asked.retry_after_ms.or(reset) else {
            continue;
        };
        if answer.paused_ms < pause_ms {
            note(at(format!(
                "answered a pause of {} ms, asked {pause_ms}",
                answer.paused_ms
            )));
        }
        pauses.push(Pause {
            resource,
            lease_id: p.invoke.lease_id.as_deref(),
            invoke_ms: p.invoke.time_ms,
            ok_ms: done.time_ms,
            pause_ms,
        });
    }
    let gs = grants(history);
    let mut in_pause = 0usize;
    let mut certain_ms = 0.0;
    for pause in &pauses {
        let until = pause.invoke_ms + pause.pause_ms as f64 - cfg.stamp_skew_ms;
        certain_ms += (until - pause.ok_ms).max(0.0);
        for g in gs.values().filter(|g| {
            g.resource == pause.resource && g.first_invoke_ms > pause.ok_ms && g.first_ok_ms < until
        }) {
            in_pause += 1;
            note(json!({"resource": pause.resource, "lease_id": g.lease_id,
                "granted_ms": g.first_ok_ms, "invoked_ms": g.first_invoke_ms,
                "report": {"lease_id": pause.lease_id, "invoke_ms": pause.invoke_ms,
                    "ok_ms": pause.ok_ms, "pause_ms": pause.pause_ms},
                "pause_certain_until_ms": until,
                "problem": "granted while a reported 429 pause certainly held"}));
        }
    }
    let valid = problem_count == 0;
    let summary = if valid {
        format!(
            "{reports} reports never raised a bucket; {} 429 pauses ({:.0} s certain) held: no grant inside one",
            pauses.len(),
            certain_ms / 1000.0
        )
    } else {
        format!("{problem_count} report problems ({in_pause} grants inside a certain 429 pause)")
    };
    Verdict::new(
        "10-reports",
        valid,
        summary,
        json!({"reports_ok": reports, "pauses": pauses.len(), "certain_pause_ms": certain_ms,
            "problems": problems, "stamp_skew_ms": cfg.stamp_skew_ms}),
    )
}

/// The bucket a feedback policy assigns a reported figure of kind `per` to: the one of
/// `window_ms`, else the shortest window of that kind.
fn policy_bucket(spec: &api::ResourceSpec, per: api::Per, window_ms: Option<u64>) -> Option<usize> {
    let of_kind = spec.rate.iter().enumerate().filter(|(_, r)| r.per == per);
    match window_ms {
        Some(w) => of_kind
            .filter(|(_, r)| r.window_ms == w)
            .map(|(i, _)| i)
            .next(),
        None => of_kind.min_by_key(|(_, r)| r.window_ms).map(|(i, _)| i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::H;
    use crate::history::Type;

    fn cfg() -> Config {
        let mut c = Config {
            stamp_skew_ms: 1_000.0,
            ..Config::default()
        };
        c.resources.insert(
            "fb-0".into(),
            api::ResourceSpec {
                rate: vec![api::Rate {
                    per: api::Per::Request,
                    limit: 10,
                    window_ms: 10_000,
                }],
                feedback: Some(api::Feedback::default()),
                ..Default::default()
            },
        );
        c
    }

    fn report(
        h: &mut H,
        t0: f64,
        t1: f64,
        asked: api::ReportRequest,
        remaining: i64,
        paused_ms: u64,
    ) {
        let mut inv = Op::new(50, Type::Invoke, F::Report);
        inv.resource = Some("fb-0".into());
        inv.lease_id = Some("1-x".into());
        inv.value = serde_json::to_value(&asked).ok();
        let mut done = inv.complete(Type::Ok);
        done.value = serde_json::to_value(api::ReportResponse {
            paused_ms,
            limits: vec![api::Limit {
                kind: api::LimitKind::Request,
                limit: 10,
                remaining,
            }],
        })
        .ok();
        h.op(t0, inv);
        h.op(t1, done);
    }

    fn too_many(retry_after_ms: u64) -> api::ReportRequest {
        api::ReportRequest {
            rate_limited: Some(true),
            retry_after_ms: Some(retry_after_ms),
            ..Default::default()
        }
    }

    #[test]
    fn a_grant_inside_a_certain_pause_fails() {
        let c = cfg();
        let mut h = H::new();
        h.setup(&c);
        h.acquire(1, 0.0, 5.0, Type::Ok, "fb-0", "a", Some(("1-x", 1)), 5_000);
        report(&mut h, 100.0, 110.0, too_many(5_000), 0, 5_000);
        // Invoked after the report's ok, answered before 100 + 5000 - 1000.
        h.acquire(
            2,
            200.0,
            300.0,
            Type::Ok,
            "fb-0",
            "b",
            Some(("2-x", 2)),
            5_000,
        );
        let v = check(&h.done(), &c);
        assert!(!v.valid, "{v:?}");
        assert_eq!(v.details["problems"][0]["lease_id"], "2-x");
    }

    #[test]
    fn grants_outside_the_certain_pause_pass() {
        let c = cfg();
        let mut h = H::new();
        h.setup(&c);
        h.acquire(1, 0.0, 5.0, Type::Ok, "fb-0", "a", Some(("1-x", 1)), 5_000);
        report(
            &mut h,
            100.0,
            110.0,
            api::ReportRequest {
                rate_limited: Some(true),
                reset_requests_ms: Some(2_000),
                reset_tokens_ms: Some(5_000),
                remaining_requests: Some(0),
                ..Default::default()
            },
            0,
            5_000,
        );
        // Invoked before the report was answered: it may have been applied first.
        h.acquire(
            2,
            105.0,
            150.0,
            Type::Ok,
            "fb-0",
            "b",
            Some(("2-x", 2)),
            5_000,
        );
        // Answered after the pause can have ended (100 + 5000 - 1000 skew).
        h.acquire(
            3,
            3_000.0,
            4_200.0,
            Type::Ok,
            "fb-0",
            "c",
            Some(("3-x", 3)),
            5_000,
        );
        // Refused or unknown inside the pause: not grants.
        h.acquire(4, 500.0, 600.0, Type::Fail, "fb-0", "d", None, 5_000);
        h.acquire(5, 700.0, 900.0, Type::Info, "fb-0", "e", None, 5_000);
        // A report that lowers: 3 left, the bucket shows 3.
        report(
            &mut h,
            5_000.0,
            5_010.0,
            api::ReportRequest {
                remaining_requests: Some(3),
                ..Default::default()
            },
            3,
            0,
        );
        let v = check(&h.done(), &c);
        assert!(v.valid, "{v:?}");
        assert_eq!(v.details["pauses"], 1);
    }

    #[test]
    fn answers_above_the_limit_the_figure_or_short_of_the_pause_fail() {
        let c = cfg();
        let cases = [
            // Raised above the configured limit by a provider with a larger quota.
            (
                api::ReportRequest {
                    remaining_requests: Some(20),
                    ..Default::default()
                },
                20,
                0,
            ),
            // Not lowered to the provider's figure.
            (
                api::ReportRequest {
                    remaining_requests: Some(3),
                    ..Default::default()
                },
                5,
                0,
            ),
            // A 429 answered with a shorter pause than it asked for.
            (too_many(5_000), 0, 0),
        ];
        for (asked, remaining, paused_ms) in cases {
            let mut h = H::new();
            h.setup(&c);
            report(&mut h, 100.0, 110.0, asked.clone(), remaining, paused_ms);
            let v = check(&h.done(), &c);
            assert!(
                !v.valid,
                "{asked:?} answered {remaining}, {paused_ms}: {v:?}"
            );
        }
    }
}
