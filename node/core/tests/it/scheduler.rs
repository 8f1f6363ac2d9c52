//! The admission scheduler through a simulated leader shell (see `check::Shell`): lanes
//! by weight, priority then FIFO within a lane, strict head of line, deadlines, bounds,
//! try-once, cancellation, idempotent attach, exact wakeups, and a randomised
//! simulation in which no grant ever exceeds a limit.

use std::collections::BTreeMap;

use proptest::prelude::*;
use ratequeue_core::{
    Admit, Binding, Command, LaneConfig, LeaseId, LimitKind, Outcome, Per, Refusal, Rejection,
    ResourceConfig, WaiterId,
};

use crate::check::{limits, loads, requests, shell, Answer, Shell};
use crate::model::{normalized, Model};

const CONCURRENCY: Binding = Binding {
    kind: LimitKind::Concurrency,
    bucket: None,
};

fn with_lanes(mut cfg: ResourceConfig, lanes: &[(&str, u32)]) -> ResourceConfig {
    for (name, weight) in lanes {
        cfg.lanes
            .insert((*name).into(), LaneConfig { weight: *weight });
    }
    cfg
}

/// Grants one waiter at once (nothing queued, room now) and returns its lease id.
fn hold(s: &mut Shell, resource: &str, ttl_ms: u64) -> LeaseId {
    let r = ratequeue_core::Request {
        ttl_ms,
        ..s.req(resource)
    };
    let id = s.wait(r);
    s.lease_of(id).id
}

fn lane_req(s: &mut Shell, resource: &str, lane: &str, priority: i32) -> WaiterId {
    let r = ratequeue_core::Request {
        lane: lane.into(),
        priority,
        ..s.req(resource)
    };
    s.wait(r)
}

/// Releases the current holder and polls in the same batch; returns the new grant.
fn hand_over(s: &mut Shell, holder: LeaseId) -> (WaiterId, ratequeue_core::LeaseView) {
    let t = s.now() + 1;
    s.at(t);
    let before = s.grants.len();
    assert_eq!(s.release(holder), Outcome::Released { already: false });
    s.poll();
    s.commit();
    assert_eq!(s.grants.len(), before + 1, "one release, one grant");
    let (w, lease, at) = s.grants.last().unwrap().clone();
    assert_eq!(at, t, "granted in the batch of the release");
    (w, lease)
}

#[test]
fn backlogged_lanes_share_capacity_by_weight_3_to_1() {
    let cfg = with_lanes(ResourceConfig::concurrency(1), &[("A", 3)]);
    let mut s = shell(&[("r", cfg)]);
    let mut holder = hold(&mut s, "r", 3_600_000);
    for _ in 0..500 {
        lane_req(&mut s, "r", "A", 10);
        lane_req(&mut s, "r", "B", 10);
    }
    let (mut a, mut b) = (0i64, 0i64);
    for n in 1..=400i64 {
        let (_, lease) = hand_over(&mut s, holder);
        holder = lease.id;
        match lease.lane.as_str() {
            "A" => a += 1,
            "B" => b += 1,
            other => panic!("lane {other}"),
        }
        assert!((4 * a - 3 * n).abs() <= 4, "after {n} grants: A {a}, B {b}");
    }
    assert!((299..=301).contains(&a) && a + b == 400, "A {a} B {b}");
}

#[test]
fn a_lane_alone_gets_everything_and_idle_time_banks_no_credit() {
    let cfg = with_lanes(ResourceConfig::concurrency(1), &[("A", 3)]);
    let mut s = shell(&[("r", cfg)]);
    let mut holder = hold(&mut s, "r", 3_600_000);
    for _ in 0..100 {
        lane_req(&mut s, "r", "B", 10);
    }
    for _ in 0..99 {
        let (_, lease) = hand_over(&mut s, holder);
        assert_eq!(lease.lane, "B");
        holder = lease.id;
    }
    // B has one waiter left and keeps coming; A arrives after B ran alone for 99 grants.
    for _ in 0..100 {
        lane_req(&mut s, "r", "A", 10);
        lane_req(&mut s, "r", "B", 10);
    }
    let mut b = 0;
    for _ in 0..40 {
        let (_, lease) = hand_over(&mut s, holder);
        holder = lease.id;
        b += usize::from(lease.lane == "B");
    }
    assert!(
        (9..=11).contains(&b),
        "B got {b} of 40: A must not catch up on B's solo run"
    );
}

#[test]
fn higher_priority_goes_first_within_a_lane_fifo_among_equals() {
    let mut s = shell(&[("r", ResourceConfig::concurrency(1))]);
    let mut holder = hold(&mut s, "r", 3_600_000);
    let w1 = lane_req(&mut s, "r", "default", 10);
    let w2 = lane_req(&mut s, "r", "default", 10);
    let w3 = lane_req(&mut s, "r", "default", 10);
    let w4 = lane_req(&mut s, "r", "default", 100);
    let w5 = lane_req(&mut s, "r", "default", 100);
    let w6 = lane_req(&mut s, "r", "default", -5);
    let view = s.sched.queue_view("r").unwrap();
    let groups: Vec<(i32, usize, WaiterId)> = view.lanes[0]
        .groups
        .iter()
        .map(|g| (g.priority, g.waiting, g.first))
        .collect();
    assert_eq!(groups, vec![(100, 2, w4), (10, 3, w1), (-5, 1, w6)]);
    assert_eq!(
        (view.waiting, view.lanes.len(), view.truncated),
        (6, 1, false)
    );
    let head = view.head.unwrap();
    assert_eq!(
        (head.waiter, head.priority, head.lane.as_str()),
        (w4, 100, "default")
    );
    let mut order = Vec::new();
    for _ in 0..6 {
        let (w, lease) = hand_over(&mut s, holder);
        holder = lease.id;
        order.push(w);
    }
    assert_eq!(order, vec![w4, w5, w1, w2, w3, w6]);
    assert_eq!(s.sched.queue_view("r"), None, "no waiters, no queue");
}

#[test]
fn priority_does_not_cross_lanes() {
    let mut s = shell(&[("r", ResourceConfig::concurrency(1))]);
    let mut holder = hold(&mut s, "r", 3_600_000);
    for _ in 0..3 {
        lane_req(&mut s, "r", "y", 10);
    }
    for _ in 0..3 {
        lane_req(&mut s, "r", "x", 100);
    }
    let mut lanes = String::new();
    for _ in 0..6 {
        let (_, lease) = hand_over(&mut s, holder);
        holder = lease.id;
        lanes.push_str(&lease.lane);
    }
    assert_eq!(
        lanes, "xyxyxy",
        "equal weights alternate whatever the priorities"
    );
}

#[test]
fn a_large_head_is_not_starved_by_small_requests() {
    // 100 load per second: 1 token per 10 ms.
    let mut s = shell(&[("r", limits(None, &[loads(100, 1_000)]))]);
    let r = ratequeue_core::Request {
        load: 90,
        ..s.req("r")
    };
    let first = s.wait(r);
    s.lease_of(first);
    let r = ratequeue_core::Request {
        load: 100,
        ..s.req("r")
    };
    let big = s.wait(r);
    assert_eq!(s.sched.next_wakeup(), Some(900));
    let mut small = Vec::new();
    for t in (10..900).step_by(10) {
        s.at(t);
        let r = s.req("r");
        small.push(s.wait(r));
        assert_eq!(s.sched.next_wakeup(), Some(900), "at {t}");
    }
    assert_eq!(
        s.granted_waiters(),
        vec![first],
        "10 tokens were free, yet nothing jumped the head"
    );
    s.at(899);
    assert_eq!(s.granted_waiters(), vec![first]);
    s.at(900);
    assert_eq!(s.granted_waiters(), vec![first, big]);
    // The small ones follow at the refill rate, in order.
    assert_eq!(s.sched.next_wakeup(), Some(910));
    s.at(910);
    s.at(920);
    assert_eq!(s.granted_waiters(), vec![first, big, small[0], small[1]]);
}

#[test]
fn waiters_time_out_at_their_deadline_with_retry_after() {
    let mut s = shell(&[("r", ResourceConfig::concurrency(1))]);
    hold(&mut s, "r", 5_000);
    let r = ratequeue_core::Request {
        deadline_ms: 1_000,
        ..s.req("r")
    };
    let w = s.wait(r);
    assert_eq!(s.sched.next_wakeup(), Some(1_000));
    s.at(999);
    assert_eq!(s.answer(w), None);
    s.at(1_000);
    // No release seen yet: the holder is expected to hold as long again as it has (1 s),
    // well before its expiry at 5 s.
    assert_eq!(
        s.answer(w),
        Some(Answer::Refused(Refusal::WaitTimeout {
            retry_after_ms: 1_000,
            binding: Some(CONCURRENCY),
        }))
    );
    assert!(s.sched.is_empty());
    assert_eq!(s.sched.next_wakeup(), None);
}

/// A queued waiter whose deadline is already reached (`deadline_ms == now`, not try-once)
/// is due at once: `next_wakeup` says "now" until the next poll, which times it out.
#[test]
fn a_waiter_enqueued_at_its_deadline_times_out_at_the_next_poll() {
    let mut s = shell(&[("r", ResourceConfig::concurrency(1))]);
    hold(&mut s, "r", 5_000);
    let r = ratequeue_core::Request {
        deadline_ms: s.now(),
        ..s.req("r")
    };
    let w = s.wait(r);
    assert_eq!(
        s.sched.next_wakeup(),
        Some(s.now()),
        "due now, not in the future"
    );
    assert_eq!(s.answer(w), None, "answered by a poll, not by the enqueue");
    s.poll();
    assert!(matches!(
        s.answer(w),
        Some(Answer::Refused(Refusal::WaitTimeout { .. }))
    ));
    assert!(s.sched.is_empty());
    assert_eq!(s.sched.next_wakeup(), None);
}

/// The shrunk case that once failed the simulation: a waiter that is not try-once with
/// `wait_ms` 0 behind two holders. The simulated shell must poll before it sleeps.
#[test]
fn the_simulation_polls_a_waiter_due_at_enqueue() {
    let enqueue = |wait_ms| SimOp::Enqueue {
        res: 0,
        lane: 0,
        high: false,
        load: 0,
        ttl: 3,
        try_once: false,
        wait_ms,
        rid: None,
    };
    let (s, refused) = simulate(&[enqueue(None), enqueue(None), enqueue(Some(0))]).unwrap();
    assert!(refused.is_empty());
    assert!(s
        .answers
        .values()
        .any(|a| matches!(a, Answer::Refused(Refusal::WaitTimeout { .. }))));
}

#[test]
fn a_timed_out_or_cancelled_head_unblocks_those_behind_it() {
    let mut s = shell(&[("r", limits(None, &[loads(100, 1_000)]))]);
    let r = ratequeue_core::Request {
        load: 95,
        ..s.req("r")
    };
    let first = s.wait(r);
    let r = ratequeue_core::Request {
        load: 100,
        deadline_ms: 300,
        ..s.req("r")
    };
    let big = s.wait(r);
    let r = ratequeue_core::Request {
        load: 100,
        ..s.req("r")
    };
    let big2 = s.wait(r);
    let r = s_req_load(&mut s, 3);
    let a = s.wait(r);
    let r = s_req_load(&mut s, 3);
    let b = s.wait(r);
    s.at(300);
    // big timed out; big2 is now the head and blocks a and b (8 tokens are free).
    assert!(matches!(
        s.answer(big),
        Some(Answer::Refused(Refusal::WaitTimeout { .. }))
    ));
    assert_eq!(s.granted_waiters(), vec![first]);
    assert!(s.cancel(big2));
    assert!(!s.cancel(big2), "cancel is answered once");
    assert!(s.sched.has_work());
    s.poll();
    assert_eq!(s.granted_waiters(), vec![first, a, b]);
    assert!(!s.cancel(a), "a granted waiter is no longer waiting");
    assert_eq!(s.answer(big2), None, "a cancelled waiter is not answered");
}

fn s_req_load(s: &mut Shell, load: u64) -> ratequeue_core::Request {
    ratequeue_core::Request { load, ..s.req("r") }
}

#[test]
fn max_queue_bounds_the_waiters_of_a_resource() {
    let mut cfg = ResourceConfig::concurrency(1);
    cfg.max_queue = 2;
    let mut s = shell(&[("r", cfg), ("other", ResourceConfig::concurrency(1))]);
    hold(&mut s, "r", 5_000);
    hold(&mut s, "other", 5_000);
    let r = s.req("other");
    s.wait(r);
    let r = s.req("r");
    s.wait(r);
    let r = s.req("r");
    s.wait(r);
    let r = s.req("r");
    // Three releases are needed (the holder's and the two waiters'); with nothing seen
    // yet each hold is guessed at the minimum.
    assert_eq!(
        s.enqueue(r),
        Admit::Rejected(Refusal::QueueFull {
            retry_after_ms: 3 * ratequeue_core::state::HOLD_GUESS_MS_MIN,
            binding: Some(CONCURRENCY),
        })
    );
    assert_eq!(s.sched.len(), 3);
    assert_eq!(s.sched.queued("r"), vec![("default".to_string(), 2)]);

    // max_queue 0: grant at once or refuse.
    let mut cfg = ResourceConfig::concurrency(1);
    cfg.max_queue = 0;
    let mut s = shell(&[("r", cfg)]);
    hold(&mut s, "r", 5_000);
    let r = s.req("r");
    assert!(matches!(
        s.enqueue(r),
        Admit::Rejected(Refusal::QueueFull { .. })
    ));
}

#[test]
fn try_once_grants_at_once_or_would_block() {
    let mut s = shell(&[("r", limits(None, &[loads(100, 1_000)]))]);
    let once = |s: &mut Shell, load: u64| ratequeue_core::Request {
        load,
        try_once: true,
        ..s.req("r")
    };
    let r = once(&mut s, 90);
    let w = s.wait(r);
    s.lease_of(w);
    // Does not fit: refused with the exact wait, not queued.
    let r = once(&mut s, 20);
    assert_eq!(
        s.enqueue(r),
        Admit::Rejected(Refusal::WouldBlock {
            retry_after_ms: 100,
            binding: Some(Binding {
                kind: LimitKind::Load,
                bucket: Some(0),
            }),
        })
    );
    assert!(s.sched.is_empty());
    // Fits, but someone is queued: it may not jump the queue.
    let r = ratequeue_core::Request {
        load: 100,
        ..s.req("r")
    };
    s.wait(r);
    let r = once(&mut s, 1);
    assert!(matches!(
        s.enqueue(r),
        Admit::Rejected(Refusal::WouldBlock { .. })
    ));
    assert_eq!(s.sched.len(), 1);
    // Unknown resource and impossible loads are refused the same way with or without try_once.
    let mut r = once(&mut s, 101);
    assert_eq!(
        s.enqueue(r.clone()),
        Admit::Rejected(Refusal::LoadExceedsLimit { load_max: 100 })
    );
    r.try_once = false;
    assert_eq!(
        s.enqueue(r.clone()),
        Admit::Rejected(Refusal::LoadExceedsLimit { load_max: 100 })
    );
    r.resource = "nope".into();
    assert_eq!(s.enqueue(r), Admit::Rejected(Refusal::ResourceNotFound));
}

#[test]
fn a_duplicate_request_id_attaches_while_waiting_and_gets_the_same_lease_after() {
    let mut s = shell(&[("r", ResourceConfig::concurrency(1))]);
    let holder = hold(&mut s, "r", 5_000);
    let r = ratequeue_core::Request {
        request_id: Some("job-7".into()),
        ..s.req("r")
    };
    let w = s.wait(r.clone());
    let retry = ratequeue_core::Request {
        nonce: r.nonce + 1,
        ..r.clone()
    };
    assert_eq!(s.enqueue(retry.clone()), Admit::Attached(w));
    assert_eq!(s.sched.len(), 1);
    s.at(10);
    s.release(holder);
    s.poll();
    let lease = s.lease_of(w);
    // Granted: a retry now gets the same lease through the log, without a new grant.
    let again = s.wait(retry);
    s.commit();
    let Some(Answer::Applied {
        outcome:
            Outcome::Granted {
                lease: same,
                duplicate: true,
                ..
            },
        ..
    }) = s.answer(again)
    else {
        panic!("{:?}", s.answer(again))
    };
    assert_eq!(same, lease);
    assert_eq!(s.spec.lease_count(), 1);
}

#[test]
fn next_wakeup_is_the_lease_expiry_that_frees_the_slot() {
    let mut s = shell(&[("r", ResourceConfig::concurrency(1))]);
    hold(&mut s, "r", 700);
    let r = s.req("r");
    let w = s.wait(r);
    assert_eq!(s.sched.next_wakeup(), Some(700));
    s.at(699);
    assert_eq!(s.answer(w), None);
    assert_eq!(s.sched.next_wakeup(), Some(700));
    s.at(700);
    assert!(matches!(s.answer(w), Some(Answer::Applied { at: 700, .. })));
}

#[test]
fn next_wakeup_is_the_exact_refill_millisecond() {
    // 3 per second: tokens come back at 334, 667 and 1 000.
    let mut s = shell(&[("r", limits(None, &[requests(3, 1_000)]))]);
    for _ in 0..3 {
        let r = s.req("r");
        let w = s.wait(r);
        s.lease_of(w);
    }
    let mut waiting = Vec::new();
    for _ in 0..3 {
        let r = s.req("r");
        waiting.push(s.wait(r));
    }
    for (w, at) in waiting.into_iter().zip([334, 667, 1_000]) {
        assert_eq!(s.sched.next_wakeup(), Some(at));
        s.at(at - 1);
        assert_eq!(s.answer(w), None, "not before {at}");
        s.at(at);
        assert!(
            matches!(s.answer(w), Some(Answer::Applied { outcome: Outcome::Granted { .. }, at: a }) if a == at)
        );
    }
    assert_eq!(s.sched.next_wakeup(), None);
}

#[test]
fn next_wakeup_takes_the_binding_limit() {
    let mut s = shell(&[("r", limits(Some(1), &[requests(1, 1_000)]))]);
    hold(&mut s, "r", 500);
    let r = s.req("r");
    let w = s.wait(r);
    assert_eq!(
        s.sched.next_wakeup(),
        Some(1_000),
        "the bucket binds, not the lease"
    );
    s.at(500);
    assert_eq!(s.sched.next_wakeup(), Some(1_000));
    s.at(999);
    assert_eq!(s.answer(w), None);
    s.at(1_000);
    assert!(s.answer(w).is_some());
}

#[test]
fn a_renew_that_shortens_the_blocking_lease_moves_the_wakeup() {
    let mut s = shell(&[("r", ResourceConfig::concurrency(1))]);
    let holder = hold(&mut s, "r", 10_000);
    let r = s.req("r");
    let w = s.wait(r);
    assert_eq!(s.sched.next_wakeup(), Some(10_000));
    s.at(100);
    let o = s.propose(Command::Renew {
        lease: holder,
        ttl_ms: Some(200),
    });
    assert!(matches!(o, Outcome::Renewed { .. }));
    s.poll();
    assert_eq!(s.sched.next_wakeup(), Some(300));
    s.at(299);
    assert_eq!(s.answer(w), None);
    s.at(300);
    assert!(matches!(s.answer(w), Some(Answer::Applied { at: 300, .. })));
}

#[test]
fn deleting_a_resource_refuses_its_waiters_and_a_smaller_limit_refuses_impossible_heads() {
    let mut s = shell(&[
        ("r", ResourceConfig::concurrency(1)),
        ("l", limits(None, &[loads(100, 1_000)])),
    ]);
    hold(&mut s, "r", 5_000);
    let r = s.req("r");
    let a = s.wait(r);
    let r = s.req("r");
    let b = s.wait(r);
    s.propose(Command::DeleteResource { name: "r".into() });
    s.poll();
    for w in [a, b] {
        assert_eq!(
            s.answer(w),
            Some(Answer::Refused(Refusal::ResourceNotFound))
        );
    }
    assert!(s.sched.is_empty());

    let r = ratequeue_core::Request {
        load: 100,
        ..s.req("l")
    };
    let first = s.wait(r);
    s.lease_of(first);
    let r = ratequeue_core::Request {
        load: 80,
        ..s.req("l")
    };
    let big = s.wait(r);
    let r = ratequeue_core::Request {
        load: 10,
        ..s.req("l")
    };
    let small = s.wait(r);
    s.at(200);
    s.propose(crate::check::put("l", limits(None, &[loads(50, 1_000)])));
    s.poll();
    assert_eq!(
        s.answer(big),
        Some(Answer::Refused(Refusal::LoadExceedsLimit { load_max: 50 }))
    );
    // 100 per second carried over as 20 tokens held at 200 ms; the small one fits.
    assert!(matches!(
        s.answer(small),
        Some(Answer::Applied { at: 200, .. })
    ));
}

#[test]
fn many_lanes_over_time_do_not_fill_the_lane_table() {
    // A resource that never drains its queue, served to clients with ever new lane names
    // (lanes are free-form). Only lanes with waiters count against LANES_QUEUED_MAX.
    let mut s = shell(&[("r", ResourceConfig::concurrency(1))]);
    let mut holder = hold(&mut s, "r", 3_600_000);
    lane_req(&mut s, "r", "main", 10);
    for i in 0..2 * ratequeue_core::LANES_QUEUED_MAX {
        let lane = format!("l{i}");
        let r = ratequeue_core::Request { lane, ..s.req("r") };
        match s.enqueue(r) {
            Admit::Waiting(_) => {}
            other => panic!("waiter {i} with {} queued: {other:?}", s.sched.len()),
        }
        let (_, lease) = hand_over(&mut s, holder);
        holder = lease.id;
    }
}

#[test]
fn the_lane_table_is_bounded_by_lanes_with_waiters() {
    let mut s = shell(&[("r", ResourceConfig::concurrency(1))]);
    hold(&mut s, "r", 3_600_000);
    for i in 0..ratequeue_core::LANES_QUEUED_MAX {
        lane_req(&mut s, "r", &format!("l{i}"), 10);
    }
    let r = ratequeue_core::Request {
        lane: "one-too-many".into(),
        ..s.req("r")
    };
    assert!(matches!(
        s.enqueue(r),
        Admit::Rejected(Refusal::QueueFull { .. })
    ));
    // A lane that is already queued still has room.
    lane_req(&mut s, "r", "l7", 10);
}

#[test]
fn an_invalid_request_gets_its_rejection_through_the_log_without_crashing() {
    // The HTTP layer validates requests; should one slip through, the state machine's
    // Invalid is the answer, and the leader does not fall over (debug builds included).
    let mut s = shell(&[("r", ResourceConfig::concurrency(1))]);
    for bad in [
        ratequeue_core::Request {
            lane: "no spaces".into(),
            ..s.req("r")
        },
        ratequeue_core::Request {
            ttl_ms: 1,
            ..s.req("r")
        },
        ratequeue_core::Request {
            request_id: Some(String::new()),
            ..s.req("r")
        },
    ] {
        let w = s.wait(bad);
        assert!(matches!(
            s.answer(w),
            Some(Answer::Applied {
                outcome: Outcome::Rejected(Rejection::Invalid(_)),
                ..
            })
        ));
    }
    assert_eq!(s.spec.lease_count(), 0);
}

// ---------------------------------------------------------------------------------------
// Randomised simulation.

const SIM_RESOURCES: [&str; 3] = ["r1", "r2", "r3"];
const SIM_LANES: [&str; 3] = ["a", "b", "c"];
const SIM_TTLS: [u64; 4] = [100, 300, 2_000, 20_000];

fn sim_resources() -> Vec<(&'static str, ResourceConfig)> {
    vec![
        (
            "r1",
            with_lanes(limits(Some(2), &[requests(5, 1_000)]), &[("a", 3)]),
        ),
        (
            "r2",
            with_lanes(limits(Some(3), &[loads(50, 1_000)]), &[("b", 2)]),
        ),
        ("r3", {
            let mut c = limits(None, &[requests(2, 300), loads(20, 500)]);
            c.max_queue = 4;
            c
        }),
    ]
}

#[derive(Clone, Debug)]
enum SimOp {
    Advance(u64),
    Enqueue {
        res: usize,
        lane: usize,
        high: bool,
        load: u64,
        ttl: usize,
        try_once: bool,
        wait_ms: Option<u64>,
        rid: Option<usize>,
    },
    Cancel(usize),
    Release {
        pick: usize,
        actual: Option<u64>,
    },
    Renew {
        pick: usize,
        ttl: usize,
    },
    Poll,
}

fn sim_op() -> impl Strategy<Value = SimOp> {
    prop_oneof![
        3 => prop_oneof![0u64..20, 0u64..400, Just(1_000u64)].prop_map(SimOp::Advance),
        6 => (0..3usize, 0..3usize, prop::bool::weighted(0.2), prop_oneof![0u64..3, 0u64..30],
              0..4usize, prop::bool::weighted(0.15),
              prop::option::weighted(0.6, 0u64..3_000), prop::option::weighted(0.2, 0..4usize))
            .prop_map(|(res, lane, high, load, ttl, try_once, wait_ms, rid)| SimOp::Enqueue {
                res, lane, high, load, ttl, try_once, wait_ms, rid,
            }),
        1 => any::<usize>().prop_map(SimOp::Cancel),
        3 => (any::<usize>(), prop::option::weighted(0.4, 0u64..40))
            .prop_map(|(pick, actual)| SimOp::Release { pick, actual }),
        1 => (any::<usize>(), 0..4usize).prop_map(|(pick, ttl)| SimOp::Renew { pick, ttl }),
        1 => Just(SimOp::Poll),
    ]
}

/// Runs the ops, then lets the shell follow `next_wakeup` until every waiter is answered.
/// Returns the shell and the refusals given at admission.
fn simulate(ops: &[SimOp]) -> Result<(Shell, Vec<Refusal>), TestCaseError> {
    let mut s = shell(&sim_resources());
    let mut refused = Vec::new();
    let mut waiting: Vec<WaiterId> = Vec::new();
    let mut cancelled: Vec<WaiterId> = Vec::new();
    for op in ops {
        match op {
            SimOp::Advance(dt) => {
                let t = s.now() + dt;
                s.at(t);
            }
            SimOp::Poll => s.poll(),
            SimOp::Enqueue {
                res,
                lane,
                high,
                load,
                ttl,
                try_once,
                wait_ms,
                rid,
            } => {
                let r = ratequeue_core::Request {
                    lane: SIM_LANES[*lane].into(),
                    priority: if *high { 100 } else { 10 },
                    load: *load,
                    ttl_ms: SIM_TTLS[*ttl],
                    try_once: *try_once,
                    deadline_ms: wait_ms.map_or(u64::MAX, |w| s.now() + w),
                    request_id: rid.map(|r| format!("q{r}")),
                    ..s.req(SIM_RESOURCES[*res])
                };
                match s.enqueue(r) {
                    Admit::Waiting(w) => waiting.push(w),
                    Admit::Attached(w) => {
                        prop_assert!(waiting.contains(&w));
                        prop_assert!(
                            !s.answers.contains_key(&w),
                            "attached to an answered waiter"
                        );
                    }
                    Admit::Rejected(r) => refused.push(r),
                }
            }
            SimOp::Cancel(pick) => {
                if !waiting.is_empty() {
                    let w = waiting[pick % waiting.len()];
                    if s.cancel(w) {
                        cancelled.push(w);
                    }
                }
            }
            SimOp::Release { pick, actual } => {
                s.commit();
                if !s.grants.is_empty() {
                    let lease = s.grants[pick % s.grants.len()].1.id;
                    s.propose(Command::Release {
                        lease,
                        actual_load: *actual,
                    });
                }
            }
            SimOp::Renew { pick, ttl } => {
                s.commit();
                if !s.grants.is_empty() {
                    let lease = s.grants[pick % s.grants.len()].1.id;
                    s.propose(Command::Renew {
                        lease,
                        ttl_ms: Some(SIM_TTLS[*ttl]),
                    });
                }
            }
        }
        check_queue_views(&s)?;
    }
    // Liveness: a shell that polls after every input (as admission.rs does) and
    // otherwise sleeps until next_wakeup answers every waiter (leases expire, buckets
    // refill). Before that poll a wakeup may be due now (a waiter enqueued with its
    // deadline already reached); after it, one at or before now would make the shell spin.
    for _ in 0..10_000 {
        s.poll();
        prop_assert!(!s.sched.has_work(), "work left after a poll");
        match s.sched.next_wakeup() {
            Some(at) if at < u64::MAX => {
                prop_assert!(
                    at > s.now(),
                    "wakeup {} in the past at {} after a poll",
                    at,
                    s.now()
                );
                s.at(at);
            }
            _ => break,
        }
    }
    s.commit();
    prop_assert!(s.sched.is_empty(), "{} waiters stranded", s.sched.len());
    for w in waiting {
        prop_assert_eq!(
            s.answers.contains_key(&w),
            !cancelled.contains(&w),
            "{:?}",
            w
        );
    }
    Ok((s, refused))
}

/// The dashboard's queue view agrees with the queue: its per-priority counts add up to
/// each lane's, the lanes' to the resource's, the resources' to every waiter.
fn check_queue_views(s: &Shell) -> Result<(), TestCaseError> {
    let mut total = 0;
    for r in SIM_RESOURCES {
        let Some(v) = s.sched.queue_view(r) else {
            continue;
        };
        prop_assert!(!v.truncated);
        prop_assert!(v.head.is_some(), "a queue with waiters has a head");
        prop_assert_eq!(v.waiting, v.lanes.iter().map(|l| l.waiting).sum::<usize>());
        for l in &v.lanes {
            prop_assert!(l.waiting > 0);
            prop_assert_eq!(l.waiting, l.groups.iter().map(|g| g.waiting).sum::<usize>());
            prop_assert!(l.groups.windows(2).all(|g| g[0].priority > g[1].priority));
        }
        total += v.waiting;
    }
    prop_assert_eq!(total, s.sched.len());
    Ok(())
}

/// Per bucket, in log order: `(cluster time, tokens charged, is a grant)`; a settle
/// charges `actual - load` (negative: a refund).
type Charges = Vec<(u64, i128, bool)>;

/// No bucket ever gave more than capacity plus refill: for every window that ends with
/// a grant, grants + debits - credits inside it <= capacity + refill over its length.
fn check_buckets(s: &Shell) -> Result<(), TestCaseError> {
    let configs: BTreeMap<&str, ResourceConfig> = sim_resources().into_iter().collect();
    let mut loads_of: BTreeMap<LeaseId, (String, u64)> = BTreeMap::new();
    let mut charges: BTreeMap<(String, usize), Charges> = BTreeMap::new();
    for ((t, commands), outcomes) in s.log.iter().zip(&s.outcomes) {
        for (c, o) in commands.iter().zip(outcomes) {
            match (c, o) {
                (
                    Command::Grant(_),
                    Outcome::Granted {
                        lease,
                        duplicate: false,
                        ..
                    },
                ) => {
                    loads_of.insert(lease.id, (lease.resource.clone(), lease.load));
                    for (i, rl) in configs[lease.resource.as_str()].rate.iter().enumerate() {
                        let tokens = if rl.per == Per::Request {
                            1
                        } else {
                            lease.load
                        };
                        charges
                            .entry((lease.resource.clone(), i))
                            .or_default()
                            .push((*t, i128::from(tokens), true));
                    }
                }
                (
                    Command::Release {
                        lease,
                        actual_load: Some(actual),
                    },
                    Outcome::Released { already: false },
                ) => {
                    let (resource, load) = loads_of[lease].clone();
                    for (i, rl) in configs[resource.as_str()].rate.iter().enumerate() {
                        if rl.per == Per::Load {
                            charges.entry((resource.clone(), i)).or_default().push((
                                *t,
                                i128::from(*actual) - i128::from(load),
                                false,
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for ((resource, i), events) in &charges {
        let rl = configs[resource.as_str()].rate[*i];
        let (limit, w) = (i128::from(rl.limit), i128::from(rl.window_ms));
        for j in 0..events.len() {
            if !events[j].2 {
                continue;
            }
            let mut sum = 0i128;
            for k in (0..=j).rev() {
                sum += events[k].1;
                let span = i128::from(events[j].0 - events[k].0);
                prop_assert!(
                    sum * w <= limit * w + span * limit,
                    "{} bucket {}: {} tokens charged in {} ms",
                    resource,
                    i,
                    sum,
                    span
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn scheduler_driven_grants_never_exceed_a_limit(
        ops in prop::collection::vec(sim_op(), 1..150),
    ) {
        let (s, _) = simulate(&ops)?;
        // Every grant the scheduler decided was granted when applied to a replica (a
        // retried request id whose lease has ended is refused, not re-granted)...
        for (commands, outcomes) in s.log.iter().map(|(_, c)| c).zip(&s.outcomes) {
            for (c, o) in commands.iter().zip(outcomes) {
                if matches!(c, Command::Grant(_)) {
                    let ok = matches!(
                        o,
                        Outcome::Granted { .. } | Outcome::Rejected(Rejection::GrantEnded)
                    );
                    prop_assert!(ok, "{:?} -> {:?}", c, o);
                }
            }
        }
        // ...and to a fresh state replaying the log at the same times...
        let mut fresh = ratequeue_core::State::new();
        let mut model = Model::new();
        for ((t, commands), outcomes) in s.log.iter().zip(&s.outcomes) {
            prop_assert_eq!(&fresh.apply_entry(*t, commands), outcomes);
            // ...and the reference model agrees, never holding more than concurrency.
            let m = model.apply_entry(*t, commands);
            for (a, b) in m.iter().zip(outcomes) {
                prop_assert_eq!(a, &normalized(b));
            }
            for (name, cfg) in sim_resources() {
                if let Some(c) = cfg.concurrency {
                    prop_assert!(model.live(name).len() <= c as usize);
                }
            }
        }
        prop_assert_eq!(fresh.snapshot(), s.replica.snapshot());
        check_buckets(&s)?;
    }
}

/// The generator produces contention: waits, timeouts, try-once refusals, settles.
#[test]
fn the_simulation_exercises_contention() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..50 {
        let ops = prop::collection::vec(sim_op(), 100..150)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let (s, refused) = simulate(&ops).unwrap();
        let answers = s.answers.values().map(|a| match a {
            Answer::Applied { outcome, .. } => format!("{outcome:?}"),
            Answer::Refused(r) => format!("{r:?}"),
        });
        for name in answers.chain(refused.iter().map(|r| format!("{r:?}"))) {
            let name = name.split([' ', '(', '{']).next().unwrap().to_string();
            *seen.entry(name).or_default() += 1;
        }
        for o in s.outcomes.iter().flatten() {
            if let Outcome::Rejected(r) = o {
                *seen.entry(format!("{r:?}")).or_default() += 1;
            }
            if let Outcome::Released { already: false } = o {
                *seen.entry("Released".into()).or_default() += 1;
            }
        }
    }
    for (want, at_least) in [
        ("Granted", 500),
        ("WaitTimeout", 10),
        ("WouldBlock", 10),
        ("QueueFull", 1),
        ("Released", 50),
        ("LeaseExpired", 5),
    ] {
        assert!(
            seen.get(want).copied().unwrap_or(0) >= at_least,
            "{want}: {seen:?}"
        );
    }
}

/// Holds and releases `n` leases of `resource`, each for `hold_ms`: the leader sees those
/// hold times.
fn observe_holds(s: &mut Shell, resource: &str, n: usize, hold_ms: u64) {
    for _ in 0..n {
        let lease = hold(s, resource, 30_000);
        let t = s.now() + hold_ms;
        s.at(t);
        assert_eq!(s.release(lease), Outcome::Released { already: false });
        s.commit();
    }
}

fn try_once(s: &mut Shell, resource: &str, load: u64) -> Refusal {
    let r = ratequeue_core::Request {
        load,
        try_once: true,
        ..s.req(resource)
    };
    match s.enqueue(r) {
        Admit::Rejected(refusal) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_concurrency_refusal_waits_for_the_observed_hold_time_not_the_ttl() {
    let mut s = shell(&[("r", ResourceConfig::concurrency(2))]);
    observe_holds(&mut s, "r", 4, 100);
    assert_eq!(s.sched.hold_ms("r"), Some(100));
    hold(&mut s, "r", 30_000);
    hold(&mut s, "r", 30_000);
    // One release is needed; two slots turn over every 100 ms: about 50 ms, far below
    // the 30 s the holders' leases could still run.
    assert_eq!(
        try_once(&mut s, "r", 1),
        Refusal::WouldBlock {
            retry_after_ms: 50,
            binding: Some(CONCURRENCY),
        }
    );
    // Three waiters queued ahead of a retry: four releases, 200 ms.
    for _ in 0..3 {
        let r = s.req("r");
        s.wait(r);
    }
    assert_eq!(
        try_once(&mut s, "r", 1),
        Refusal::WouldBlock {
            retry_after_ms: 200,
            binding: Some(CONCURRENCY),
        }
    );
}

#[test]
fn the_hold_time_average_follows_new_hold_times() {
    let mut s = shell(&[("r", ResourceConfig::concurrency(1))]);
    observe_holds(&mut s, "r", 1, 800);
    assert_eq!(s.sched.hold_ms("r"), Some(800));
    observe_holds(&mut s, "r", 1, 0);
    assert_eq!(
        s.sched.hold_ms("r"),
        Some(700),
        "weight 1/8 for each new hold"
    );
    observe_holds(&mut s, "r", 40, 0);
    assert!(s.sched.hold_ms("r").unwrap() < 5);
    // Deleting the resource forgets it.
    s.propose(Command::DeleteResource { name: "r".into() });
    assert_eq!(s.sched.hold_ms("r"), None);
}

#[test]
fn a_holder_about_to_expire_caps_the_estimate() {
    let mut s = shell(&[("r", ResourceConfig::concurrency(1))]);
    observe_holds(&mut s, "r", 1, 10_000);
    hold(&mut s, "r", 300);
    let t = s.now() + 100;
    s.at(t);
    // Holds run 10 s here, but this lease expires in 200 ms unless renewed.
    assert_eq!(
        try_once(&mut s, "r", 1),
        Refusal::WouldBlock {
            retry_after_ms: 200,
            binding: Some(CONCURRENCY),
        }
    );
}

#[test]
fn a_bucket_refusal_counts_the_load_queued_ahead_and_names_its_bucket() {
    // rate[0]: 1 000 requests/s (never binds here); rate[1]: 100 load per second.
    let mut s = shell(&[(
        "r",
        limits(None, &[requests(1_000, 1_000), loads(100, 1_000)]),
    )]);
    let r = ratequeue_core::Request {
        load: 100,
        ..s.req("r")
    };
    let first = s.wait(r);
    s.lease_of(first);
    for _ in 0..2 {
        let r = ratequeue_core::Request {
            load: 50,
            ..s.req("r")
        };
        s.wait(r);
    }
    // A retry of 10 queues behind 100 load: 110 tokens at 0.1 per ms.
    assert_eq!(
        try_once(&mut s, "r", 10),
        Refusal::WouldBlock {
            retry_after_ms: 1_100,
            binding: Some(Binding {
                kind: LimitKind::Load,
                bucket: Some(1),
            }),
        }
    );
}

#[test]
fn the_estimate_is_a_pure_function_of_the_state() {
    let mut s = shell(&[("r", ResourceConfig::concurrency(1))]);
    observe_holds(&mut s, "r", 3, 40);
    hold(&mut s, "r", 30_000);
    let ahead = ratequeue_core::Ahead {
        waiters: 5,
        load: 5,
    };
    let a = s.spec.estimate_wait("r", 1, ahead, s.sched.hold_ms("r"));
    let b = s.replica.estimate_wait("r", 1, ahead, s.sched.hold_ms("r"));
    assert_eq!(a, b, "replica and speculative state agree");
    assert_eq!(a.wait_ms, 6 * 40);
    assert_eq!(a.binding, Some(CONCURRENCY));
}

/// Issue 15, observation 4: waiters spread over 20 made-up lane names (weight 1 each,
/// as lanes the config does not know used to get) pushed the configured `user-facing`
/// lane (weight 10) to the back: it got 10 of every 30 grants. All unconfigured lanes
/// now share one class of weight 1, so `user-facing` keeps 10 of every 11, and the
/// made-up lanes take turns within their one share.
#[test]
fn made_up_lanes_share_one_weight_and_cannot_push_a_configured_lane_back() {
    let cfg = with_lanes(ResourceConfig::concurrency(1), &[("user-facing", 10)]);
    let mut s = shell(&[("r", cfg)]);
    let mut holder = hold(&mut s, "r", 3_600_000);
    for _ in 0..520 {
        lane_req(&mut s, "r", "user-facing", 10);
    }
    for _ in 0..5 {
        for i in 0..20 {
            lane_req(&mut s, "r", &format!("made-up-{i}"), 10);
        }
    }
    let mut per_lane: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..550 {
        let (_, lease) = hand_over(&mut s, holder);
        holder = lease.id;
        *per_lane.entry(lease.lane).or_default() += 1;
    }
    let user_facing = per_lane.remove("user-facing").unwrap_or(0);
    assert!(
        (495..=505).contains(&user_facing),
        "user-facing got {user_facing} of 550 (want 10 of every 11)"
    );
    // The other 50 went round the 20 made-up lanes: 2 or 3 each.
    assert_eq!(per_lane.len(), 20, "{per_lane:?}");
    assert!(
        per_lane.values().all(|n| (2..=3).contains(n)),
        "{per_lane:?}"
    );
}

/// `default` keeps a class of its own (weight 1 unless configured): made-up lanes do
/// not dilute it either.
#[test]
fn the_default_lane_is_not_in_the_shared_class() {
    let mut s = shell(&[("r", ResourceConfig::concurrency(1))]);
    let mut holder = hold(&mut s, "r", 3_600_000);
    for _ in 0..40 {
        lane_req(&mut s, "r", "default", 10);
        for i in 0..5 {
            lane_req(&mut s, "r", &format!("x{i}"), 10);
        }
    }
    let mut default = 0;
    for _ in 0..40 {
        let (_, lease) = hand_over(&mut s, holder);
        holder = lease.id;
        default += u32::from(lease.lane == "default");
    }
    assert!((19..=21).contains(&default), "default got {default} of 40");
}

/// Issue 15, observation 4: one key could fill `max_queue` for everyone. A key may have
/// at most its `waiters_max` waiters queued (all resources together); other keys and the
/// admin token are not affected, and a served waiter frees room in the quota.
#[test]
fn a_key_may_queue_at_most_its_waiters_max() {
    let mut s = shell(&[
        ("r", ResourceConfig::concurrency(1)),
        ("q", ResourceConfig::concurrency(1)),
    ]);
    let holder = hold(&mut s, "r", 3_600_000);
    hold(&mut s, "q", 3_600_000);
    let as_key = |s: &mut Shell, key: &str, resource: &str| ratequeue_core::Request {
        owner: Some(key.into()),
        waiters_max: Some(3),
        ..s.req(resource)
    };
    let mut first = None;
    for resource in ["r", "q", "r"] {
        let r = as_key(&mut s, "greedy", resource);
        let w = s.wait(r);
        first.get_or_insert(w);
    }
    let r = as_key(&mut s, "greedy", "q");
    assert!(
        matches!(s.enqueue(r), Admit::Rejected(Refusal::QuotaExceeded { retry_after_ms }) if retry_after_ms > 0),
        "the fourth waiter of a key with waiters_max 3"
    );
    let r = as_key(&mut s, "polite", "r");
    s.wait(r);
    for _ in 0..5 {
        let r = s.req("r");
        s.wait(r);
    }
    assert_eq!(s.sched.len(), 9);
    // One of the key's waiters is served: it may queue one more.
    let t = s.now() + 1;
    s.at(t);
    s.release(holder);
    s.poll();
    s.lease_of(first.unwrap());
    let r = as_key(&mut s, "greedy", "q");
    assert!(matches!(s.enqueue(r), Admit::Waiting(_)));
}

/// A retry must ask for the same grant; a waiting `request_id` reused with another
/// load is refused, and the same id from another key is another waiter.
#[test]
fn a_waiting_request_id_reused_with_other_parameters_is_refused() {
    let mut s = shell(&[("r", ResourceConfig::concurrency(1))]);
    hold(&mut s, "r", 5_000);
    let r = ratequeue_core::Request {
        request_id: Some("job-1".into()),
        owner: Some("a".into()),
        ..s.req("r")
    };
    let w = s.wait(r.clone());
    let other_load = ratequeue_core::Request {
        load: 2,
        ..r.clone()
    };
    assert_eq!(
        s.enqueue(other_load),
        Admit::Rejected(Refusal::RequestIdReused)
    );
    let other_key = ratequeue_core::Request {
        owner: Some("b".into()),
        ..r.clone()
    };
    assert!(matches!(s.enqueue(other_key), Admit::Waiting(x) if x != w));
    // The same id retried as it was sent attaches to the first waiter.
    assert_eq!(s.enqueue(r), Admit::Attached(w));
}
