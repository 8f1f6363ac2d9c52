//! Waiter progress (`Scheduler::progress`): position in the lane, the waiters of the
//! resource served first by the lanes' weights, the binding limit and the estimated wait,
//! as they move while waiters are granted; the bound of the position count.

use ratequeue_core::{
    Binding, LaneConfig, LeaseId, LimitKind, Outcome, Progress, RequestKey, ResourceConfig,
    WaiterId, POSITION_COUNT_MAX,
};

use crate::check::{limits, loads, shell, Shell};

fn hold(s: &mut Shell, resource: &str) -> LeaseId {
    let r = s.req(resource);
    let id = s.wait(r);
    s.lease_of(id).id
}

fn queue(s: &mut Shell, resource: &str, lane: &str, request_id: &str) -> WaiterId {
    let r = ratequeue_core::Request {
        lane: lane.into(),
        request_id: Some(request_id.into()),
        owner: Some("workers".into()),
        ..s.req(resource)
    };
    s.wait(r)
}

#[track_caller]
fn progress(s: &Shell, id: WaiterId) -> Progress {
    s.sched.progress(&s.spec, id).expect("still waiting")
}

/// (position, ahead in the resource, estimated wait, binding kind)
fn stand(p: &Progress) -> (u64, u64, u64, Option<LimitKind>) {
    (
        p.position,
        p.ahead_in_resource,
        p.estimate.wait_ms,
        p.estimate.binding.map(|b| b.kind),
    )
}

fn observe_holds(s: &mut Shell, resource: &str, n: usize, hold_ms: u64) {
    for _ in 0..n {
        let lease = hold(s, resource);
        let t = s.now() + hold_ms;
        s.at(t);
        assert_eq!(s.release(lease), Outcome::Released { already: false });
        s.commit();
    }
}

#[test]
fn waiters_in_two_lanes_see_their_positions_move_and_the_binding_limit() {
    let mut cfg = ResourceConfig::concurrency(1);
    cfg.lanes.insert("batch".into(), LaneConfig { weight: 1 });
    cfg.lanes
        .insert("interactive".into(), LaneConfig { weight: 3 });
    let mut s = shell(&[("r", cfg)]);
    observe_holds(&mut s, "r", 2, 100);
    let mut holder = hold(&mut s, "r");
    let b: Vec<WaiterId> = (0..4)
        .map(|i| queue(&mut s, "r", "batch", &format!("b{i}")))
        .collect();
    let i: Vec<WaiterId> = (0..3)
        .map(|n| queue(&mut s, "r", "interactive", &format!("i{n}")))
        .collect();
    let c = Some(LimitKind::Concurrency);
    // Stride order from equal passes: b0 (tie by name), i0, i1, i2, b1, b2, b3.
    // One slot turning over every 100 ms: n releases ahead take n × 100 ms.
    assert_eq!(
        stand(&progress(&s, b[0])),
        (1, 0, 100, c),
        "the head of line"
    );
    assert_eq!(stand(&progress(&s, i[0])), (1, 1, 200, c));
    assert_eq!(stand(&progress(&s, i[1])), (2, 2, 300, c));
    assert_eq!(stand(&progress(&s, b[2])), (3, 5, 600, c));
    let p = progress(&s, b[3]);
    assert_eq!(
        (
            p.lane.as_str(),
            p.priority,
            p.queued_in_resource,
            p.position_exact
        ),
        ("batch", 10, 7, true)
    );
    // A retry with the same request id finds its waiter.
    let key = RequestKey {
        owner: Some("workers".into()),
        resource: "r".into(),
        request_id: "b3".into(),
    };
    assert_eq!(s.sched.waiter_for(&key), Some(b[3]));
    let other_key = RequestKey {
        owner: Some("other".into()),
        ..key.clone()
    };
    assert_eq!(s.sched.waiter_for(&other_key), None, "scoped to its key");

    // Each release grants the head; everyone behind moves up.
    let mut order = Vec::new();
    for _ in 0..3 {
        let t = s.now() + 100;
        s.at(t);
        assert_eq!(s.release(holder), Outcome::Released { already: false });
        s.poll();
        s.commit();
        let (w, lease, _) = s.grants.last().unwrap().clone();
        holder = lease.id;
        order.push(w);
        assert!(
            s.sched.progress(&s.spec, w).is_none(),
            "a granted waiter has none"
        );
    }
    assert_eq!(order, vec![b[0], i[0], i[1]]);
    assert_eq!(stand(&progress(&s, i[2])), (1, 0, 100, c));
    assert_eq!(stand(&progress(&s, b[1])), (1, 1, 200, c));
    assert_eq!(stand(&progress(&s, b[3])), (3, 3, 400, c));
    assert_eq!(progress(&s, b[3]).queued_in_resource, 4);

    // A cancelled waiter has no progress, and those behind it move up.
    assert!(s.cancel(b[2]));
    assert!(s.sched.progress(&s.spec, b[2]).is_none());
    assert_eq!(
        s.sched.waiter_for(&RequestKey {
            request_id: "b2".into(),
            ..key
        }),
        None
    );
    assert_eq!(stand(&progress(&s, b[3])), (2, 2, 300, c));
}

#[test]
fn a_higher_priority_goes_ahead_in_the_position_and_a_bucket_is_named() {
    // 100 load per second; the first grant takes the whole bucket.
    let mut s = shell(&[("r", limits(None, &[loads(100, 1_000)]))]);
    let first = ratequeue_core::Request {
        load: 100,
        ..s.req("r")
    };
    let first = s.wait(first);
    s.lease_of(first);
    let low = queue(&mut s, "r", "default", "low");
    let r = ratequeue_core::Request {
        priority: 50,
        request_id: Some("high".into()),
        owner: Some("workers".into()),
        load: 30,
        ..s.req("r")
    };
    let high = s.wait(r);
    let bucket = Some(Binding {
        kind: LimitKind::Load,
        bucket: Some(0),
    });
    let h = progress(&s, high);
    assert_eq!((h.position, h.ahead_in_resource, h.priority), (1, 0, 50));
    // 30 tokens at 0.1 per ms.
    assert_eq!((h.estimate.wait_ms, h.estimate.binding), (300, bucket));
    let l = progress(&s, low);
    assert_eq!((l.position, l.ahead_in_resource), (2, 1));
    // Behind one waiter of load 30: 31 tokens.
    assert_eq!((l.estimate.wait_ms, l.estimate.binding), (310, bucket));
}

#[test]
fn the_position_is_counted_up_to_its_bound_then_a_lower_bound() {
    let mut s = shell(&[("r", ResourceConfig::concurrency(1))]);
    hold(&mut s, "r");
    let n = POSITION_COUNT_MAX as usize + 200;
    let ids: Vec<WaiterId> = (0..n)
        .map(|k| queue(&mut s, "r", "default", &format!("w{k}")))
        .collect();
    let at_bound = progress(&s, ids[POSITION_COUNT_MAX as usize]);
    assert_eq!(
        (at_bound.position, at_bound.position_exact),
        (POSITION_COUNT_MAX + 1, true)
    );
    let beyond = progress(&s, ids[n - 1]);
    assert!(!beyond.position_exact);
    assert_eq!(beyond.position, POSITION_COUNT_MAX + 2, "at least this");
    assert_eq!(beyond.queued_in_resource, n as u64);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// With no new arrivals, `ahead_in_resource` is exactly how many waiters are granted
    /// before each one, over configured lanes of any weight, made-up lanes (the shared
    /// class) and priorities; `position` is its rank in its lane's order.
    #[test]
    fn ahead_in_resource_is_the_number_granted_first(
        weights in proptest::collection::vec(1u32..5, 1..4),
        waiters in proptest::collection::vec((0usize..6, 0i32..3), 1..30),
    ) {
        let mut cfg = ResourceConfig::concurrency(1);
        for (i, w) in weights.iter().enumerate() {
            cfg.lanes.insert(format!("own{i}"), LaneConfig { weight: *w });
        }
        let mut s = shell(&[("r", cfg)]);
        let mut holder = hold(&mut s, "r");
        let lanes: Vec<String> = (0..6)
            .map(|i| if i < weights.len() { format!("own{i}") } else { format!("x{i}") })
            .collect();
        let mut ids = Vec::new();
        for (n, (lane, priority)) in waiters.iter().enumerate() {
            let r = ratequeue_core::Request {
                lane: lanes[*lane].clone(),
                priority: *priority,
                request_id: Some(format!("w{n}")),
                ..s.req("r")
            };
            ids.push(s.wait(r));
        }
        let predicted: Vec<(WaiterId, Progress)> =
            ids.iter().map(|&id| (id, progress(&s, id))).collect();
        let mut order = Vec::new();
        for _ in 0..ids.len() {
            let t = s.now() + 1;
            s.at(t);
            proptest::prop_assert_eq!(s.release(holder), Outcome::Released { already: false });
            s.poll();
            s.commit();
            let (w, lease, _) = s.grants.last().unwrap().clone();
            holder = lease.id;
            order.push(w);
        }
        for (id, p) in &predicted {
            let at = order.iter().position(|w| w == id).unwrap() as u64;
            proptest::prop_assert_eq!(p.ahead_in_resource, at, "waiter {:?}: {:?}", id, p);
            let in_lane = order[..at as usize]
                .iter()
                .filter(|w| predicted.iter().any(|(x, q)| x == *w && q.lane == p.lane))
                .count() as u64;
            proptest::prop_assert_eq!(p.position, in_lane + 1);
        }
    }
}
