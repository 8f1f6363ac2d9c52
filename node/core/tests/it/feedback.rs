//! Provider feedback (docs/semantics.md, "Provider feedback"): a report lowers the
//! policy's buckets to the provider's figures and never raises any budget (so never
//! above the configured limit); a 429 pauses grants until the provider's reset, else for
//! an exponential backoff; all in cluster time, through `apply_command` like any other
//! command, so replicas agree.

use proptest::prelude::*;
use ratequeue_core::{
    Command, Feedback, Fit, LeaseId, LimitKind, LimitView, Outcome, Per, Rejection, Report,
    ResourceConfig, State,
};

use crate::check::{grant_cmd, limits, loads, put, requests};

fn policy() -> Feedback {
    Feedback::default()
}

fn with_feedback(mut c: ResourceConfig, f: Feedback) -> ResourceConfig {
    c.feedback = Some(f);
    c
}

fn grant(s: &mut State, at: u64, load: u64, n: u64) -> LeaseId {
    match s
        .apply_entry(at, &[Command::Grant(grant_cmd("r", load, n))])
        .remove(0)
    {
        Outcome::Granted { lease, .. } => lease.id,
        other => panic!("expected a grant, got {other:?}"),
    }
}

fn report(s: &mut State, at: u64, lease: LeaseId, report: Report) -> Outcome {
    s.apply_entry(at, &[Command::Report { lease, report }])
        .remove(0)
}

fn remaining(s: &State, kind: LimitKind) -> Vec<i64> {
    s.limits("r")
        .iter()
        .filter(|l| l.kind == kind)
        .map(|l| l.remaining)
        .collect()
}

#[test]
fn remaining_figures_lower_the_policy_buckets_only() {
    let mut s = State::new();
    let config = limits(
        None,
        &[
            requests(100, 60_000),
            requests(10_000, 86_400_000),
            loads(50_000, 60_000),
        ],
    );
    s.apply_entry(0, &[put("r", with_feedback(config, policy()))]);
    let l = grant(&mut s, 0, 1_000, 1);
    let out = report(
        &mut s,
        0,
        l,
        Report {
            remaining_requests: Some(7),
            remaining_tokens: Some(20_000),
            ..Report::default()
        },
    );
    // The shortest request window (the per-minute one) takes the provider's 7; the
    // daily bucket keeps its own count.
    assert_eq!(remaining(&s, LimitKind::Request), [7, 9_999]);
    assert_eq!(remaining(&s, LimitKind::Load), [20_000]);
    assert!(
        matches!(out, Outcome::Reported { paused_ms: 0, .. }),
        "{out:?}"
    );
    // A figure above what we count raises nothing.
    report(
        &mut s,
        0,
        l,
        Report {
            remaining_requests: Some(90),
            remaining_tokens: Some(1_000_000),
            ..Report::default()
        },
    );
    assert_eq!(remaining(&s, LimitKind::Request), [7, 9_999]);
    assert_eq!(remaining(&s, LimitKind::Load), [20_000]);
    // Refill goes on from the lowered level.
    s.tick(600);
    assert_eq!(remaining(&s, LimitKind::Request), [8, 9_999]);
}

#[test]
fn a_window_in_the_policy_picks_its_bucket_and_no_policy_changes_nothing() {
    let mut s = State::new();
    let rate = [requests(100, 60_000), requests(10_000, 86_400_000)];
    let f = Feedback {
        requests_window_ms: Some(86_400_000),
        ..policy()
    };
    s.apply_entry(0, &[put("r", with_feedback(limits(None, &rate), f))]);
    let l = grant(&mut s, 0, 1, 1);
    let r = Report {
        remaining_requests: Some(5),
        rate_limited: true,
        ..Report::default()
    };
    report(&mut s, 0, l, r);
    assert_eq!(remaining(&s, LimitKind::Request), [99, 5]);
    // Without a policy a report is answered and changes nothing.
    s.apply_entry(1, &[put("r", limits(None, &rate))]);
    let before = s.limits("r");
    let out = report(&mut s, 1, l, r);
    assert_eq!(
        out,
        Outcome::Reported {
            limits: before.clone(),
            paused_ms: 999
        },
        "the pause already set stays"
    );
    // A policy naming a window no bucket has is refused.
    let bad = Feedback {
        tokens_window_ms: Some(1_000),
        ..policy()
    };
    assert!(matches!(
        s.apply_command(&put("r", with_feedback(limits(None, &rate), bad))),
        Outcome::Rejected(Rejection::Invalid(_))
    ));
}

#[test]
fn a_429_pauses_grants_until_the_reset_else_backs_off_exponentially() {
    let mut s = State::new();
    let f = Feedback {
        backoff_ms: 100,
        backoff_max_ms: 350,
        ..policy()
    };
    s.apply_entry(0, &[put("r", with_feedback(limits(Some(10), &[]), f))]);
    let l = grant(&mut s, 0, 1, 1);
    let limited = |retry_after_ms| Report {
        rate_limited: true,
        retry_after_ms,
        ..Report::default()
    };
    // The provider's own retry-after decides.
    let out = report(&mut s, 1_000, l, limited(Some(2_500)));
    assert!(
        matches!(
            out,
            Outcome::Reported {
                paused_ms: 2_500,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(
        s.fit("r", 1),
        Fit::Wait {
            ms: 2_500,
            binding: LimitKind::Provider
        }
    );
    s.tick(3_500);
    assert_eq!(s.fit("r", 1), Fit::Now);
    // That 429 counts in the streak: a 429 without a reset now backs off 200 ms. A
    // report without a 429 ends the streak.
    let out = report(&mut s, 3_500, l, limited(None));
    assert!(
        matches!(out, Outcome::Reported { paused_ms: 200, .. }),
        "{out:?}"
    );
    report(&mut s, 3_800, l, Report::default());
    // 429s without a reset: 100, 200, 350 (capped), 350 ms.
    for (at, pause) in [(4_000, 100), (5_000, 200), (6_000, 350), (7_000, 350)] {
        let out = report(&mut s, at, l, limited(None));
        assert!(
            matches!(out, Outcome::Reported { paused_ms, .. } if paused_ms == pause),
            "{at}: {out:?}"
        );
    }
    // A report without a 429 ends the streak: the next backoff starts over.
    report(&mut s, 8_000, l, Report::default());
    let out = report(&mut s, 9_000, l, limited(None));
    assert!(
        matches!(out, Outcome::Reported { paused_ms: 100, .. }),
        "{out:?}"
    );
    // A report never shortens a pause.
    let out = report(
        &mut s,
        9_000,
        l,
        Report {
            rate_limited: true,
            retry_after_ms: Some(10),
            ..Report::default()
        },
    );
    assert!(
        matches!(out, Outcome::Reported { paused_ms: 100, .. }),
        "{out:?}"
    );
    // The pause is replicated state: a snapshot carries it.
    let copy = State::restore(&s.snapshot()).unwrap();
    assert_eq!(copy.fit("r", 1), s.fit("r", 1));
}

#[test]
fn a_report_needs_a_live_lease_and_bounded_durations() {
    let mut s = State::new();
    s.apply_entry(
        0,
        &[put("r", with_feedback(limits(Some(1), &[]), policy()))],
    );
    let l = grant(&mut s, 0, 1, 1);
    let out = report(
        &mut s,
        0,
        l,
        Report {
            retry_after_ms: Some(3_600_001),
            ..Report::default()
        },
    );
    assert!(
        matches!(out, Outcome::Rejected(Rejection::Invalid(_))),
        "{out:?}"
    );
    s.apply_entry(
        1,
        &[Command::Release {
            lease: l,
            actual_load: None,
        }],
    );
    let out = report(&mut s, 1, l, Report::default());
    assert_eq!(out, Outcome::Rejected(Rejection::LeaseReleased));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever is reported, no limit's remaining budget ever rises because of a report,
    /// and none is ever above its configured limit.
    #[test]
    fn a_report_never_raises_budget(
        buckets in prop::collection::vec((any::<bool>(), 1u64..1_000, 100u64..100_000), 1..4),
        ops in prop::collection::vec(
            prop_oneof![
                (0u64..50).prop_map(Op::Grant),
                (
                    prop::option::of(0u64..2_000),
                    prop::option::of(0u64..2_000),
                    prop::option::of(0u64..5_000),
                    any::<bool>(),
                ).prop_map(|(rq, rt, ra, limited)| Op::Report(Report {
                    remaining_requests: rq,
                    remaining_tokens: rt,
                    reset_requests_ms: None,
                    reset_tokens_ms: ra,
                    retry_after_ms: ra.filter(|_| limited),
                    rate_limited: limited,
                })),
                (0u64..3_000).prop_map(Op::Tick),
            ],
            1..60,
        ),
    ) {
        let rate: Vec<_> = buckets
            .iter()
            .map(|&(req, limit, window)| ratequeue_core::RateLimit {
                per: if req { Per::Request } else { Per::Load },
                limit,
                window_ms: window,
            })
            .collect();
        let mut s = State::new();
        s.apply_entry(0, &[put("r", with_feedback(limits(Some(1_000), &rate), policy()))]);
        let mut t = 0;
        let mut held: Vec<LeaseId> = Vec::new();
        for (n, op) in ops.iter().enumerate() {
            match op {
                Op::Grant(load) => {
                    let out = s.apply_entry(t, &[Command::Grant(grant_cmd("r", *load, n as u64))]);
                    if let Outcome::Granted { lease, .. } = &out[0] {
                        held.push(lease.id);
                    }
                }
                Op::Report(r) => {
                    let Some(&lease) = held.last() else { continue };
                    s.tick(t);
                    let before: Vec<LimitView> = s.limits("r");
                    let out = s.apply_command(&Command::Report { lease, report: *r });
                    let after = s.limits("r");
                    // A lease that expired meanwhile (30 s TTL) gets `LeaseExpired`.
                    prop_assert!(
                        matches!(out, Outcome::Reported { .. } | Outcome::Rejected(Rejection::LeaseExpired)),
                        "{:?}", out
                    );
                    for (b, a) in before.iter().zip(&after) {
                        prop_assert!(a.remaining <= b.remaining, "raised: {:?} -> {:?}", b, a);
                    }
                }
                Op::Tick(dt) => t += dt,
            }
            for l in s.limits("r") {
                prop_assert!(l.remaining <= l.limit as i64, "above its limit: {:?}", l);
            }
            s.check_invariants().map_err(TestCaseError::fail)?;
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Grant(u64),
    Report(Report),
    Tick(u64),
}
