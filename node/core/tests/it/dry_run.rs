//! Dry-run mode (docs/semantics.md, "Dry-run mode"): every grant is made at once, and its
//! shadow is what enforce would have decided. The properties: the shadow is the enforce
//! decision on a copy of the same state; while enforce would refuse nothing, a dry-run
//! resource evolves exactly as an enforced one; and on a history of try-once requests
//! the shadows of a dry-run resource are, one by one, the outcomes an enforced resource
//! gives the same history (refused requests are charged to nothing).

use proptest::prelude::*;
use ratequeue_core::config::Mode;
use ratequeue_core::{
    Admit, Command, Event, Fit, Grant, LeaseId, LimitKind, Outcome, Rejection, Request,
    ResourceConfig, Scheduler, Shadow, ShadowDecision, State,
};

use crate::check::{grant_cmd, limits, loads, put, requests};
use crate::model::{build_log, steps};

/// The same log with every resource in `mode`, and grants waiting 0, 50 or 30 000 ms.
fn with_mode(log: &[(u64, Vec<Command>)], mode: Mode) -> Vec<(u64, Vec<Command>)> {
    log.iter()
        .map(|(t, commands)| {
            let commands = commands
                .iter()
                .map(|c| match c {
                    Command::PutResource { name, config } => Command::PutResource {
                        name: name.clone(),
                        config: ResourceConfig {
                            mode,
                            ..config.clone()
                        },
                    },
                    Command::Grant(g) => Command::Grant(Grant {
                        wait_ms: [0, 50, 30_000][(g.nonce % 3) as usize],
                        ..g.clone()
                    }),
                    other => other.clone(),
                })
                .collect();
            (*t, commands)
        })
        .collect()
}

/// What an enforced grant's outcome says enforce decides, as a shadow.
fn as_shadow(enforced: &Outcome, wait_ms: u64) -> Option<Shadow> {
    let shadow = |decision, wait_ms, binding| {
        Some(Shadow {
            decision,
            wait_ms,
            binding,
        })
    };
    match enforced {
        Outcome::Granted {
            duplicate: false, ..
        } => shadow(ShadowDecision::Grant, 0, None),
        Outcome::Rejected(Rejection::NoRoom {
            retry_after_ms,
            binding,
        }) => {
            let decision = if wait_ms == 0 {
                ShadowDecision::WouldBlock
            } else if *retry_after_ms > wait_ms {
                ShadowDecision::WaitTimeout
            } else {
                ShadowDecision::Wait
            };
            shadow(decision, *retry_after_ms, Some(*binding))
        }
        Outcome::Rejected(Rejection::LoadExceedsLimit { .. }) => {
            shadow(ShadowDecision::LoadExceedsLimit, 0, Some(LimitKind::Load))
        }
        _ => None,
    }
}

fn shadow_of(o: &Outcome) -> Option<Shadow> {
    match o {
        Outcome::Granted { shadow, .. } => *shadow,
        _ => None,
    }
}

/// An outcome with its shadow taken out, to compare with the enforced one.
fn plain(o: &Outcome) -> Outcome {
    match o {
        Outcome::Granted {
            lease,
            limits,
            duplicate,
            ..
        } => Outcome::Granted {
            lease: lease.clone(),
            limits: limits.clone(),
            duplicate: *duplicate,
            shadow: None,
        },
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The shadow of every dry-run grant is the outcome of the same grant on a copy of
    /// the state with the resource switched to enforce.
    #[test]
    fn the_shadow_is_the_enforce_decision_on_a_copy(steps in steps()) {
        let (log, _, _) = build_log(&steps);
        let log = with_mode(&log, Mode::DryRun);
        let mut s = State::new();
        // The shadow of each request id's first grant: its retries get the same.
        let mut first = std::collections::BTreeMap::new();
        for (t, commands) in &log {
            s.tick(*t);
            for c in commands {
                let expected = match c {
                    Command::Grant(g) => s.resource(&g.resource).cloned().map(|config| {
                        let mut copy = s.clone();
                        let enforce = Command::PutResource {
                            name: g.resource.clone(),
                            config: ResourceConfig { mode: Mode::Enforce, ..config },
                        };
                        copy.apply_command(&enforce);
                        (copy.apply_command(c), g.wait_ms)
                    }),
                    _ => None,
                };
                let out = s.apply_command(c);
                if let Some((enforced, wait_ms)) = expected {
                    match &out {
                        Outcome::Granted { duplicate: false, shadow, .. } => {
                            prop_assert!(shadow.is_some(), "a dry-run grant has a shadow");
                            prop_assert_eq!(*shadow, as_shadow(&enforced, wait_ms),
                                "enforce said {:?}", enforced);
                            if let Command::Grant(g) = c {
                                if let Some(k) = g.request_key() {
                                    first.insert(k, *shadow);
                                }
                            }
                        }
                        Outcome::Granted { duplicate: true, shadow, .. } => {
                            let key = match c {
                                Command::Grant(g) => g.request_key(),
                                _ => None,
                            };
                            let want = key.and_then(|k| first.get(&k).copied()).flatten();
                            prop_assert!(want.is_some(), "a retry of a dry-run grant");
                            prop_assert_eq!(*shadow, want, "a retry gets its first shadow");
                        }
                        // Refused in dry-run too (bad input, a full table, a reused id):
                        // enforce refuses it the same way.
                        other => prop_assert_eq!(other, &enforced),
                    }
                }
                s.check_invariants().map_err(TestCaseError::fail)?;
            }
        }
    }

    /// While an enforced resource refuses nothing, the dry-run resource gives the same
    /// outcomes (every shadow `Grant`) and reaches the same state.
    #[test]
    fn dry_run_is_enforce_while_enforce_refuses_nothing(steps in steps()) {
        let (log, _, _) = build_log(&steps);
        let enforced = with_mode(&log, Mode::Enforce);
        let dry = with_mode(&log, Mode::DryRun);
        let mut e = State::new();
        let mut d = State::new();
        'log: for ((t, ec), (_, dc)) in enforced.iter().zip(&dry) {
            e.tick(*t);
            d.tick(*t);
            for (ce, cd) in ec.iter().zip(dc) {
                let oe = e.apply_command(ce);
                if matches!(oe, Outcome::Rejected(
                    Rejection::NoRoom { .. } | Rejection::LoadExceedsLimit { .. })) {
                    break 'log;
                }
                let od = d.apply_command(cd);
                if let Outcome::Granted { duplicate: false, shadow, .. } = &od {
                    prop_assert_eq!(shadow.map(|s| s.decision), Some(ShadowDecision::Grant));
                }
                prop_assert_eq!(plain(&od), oe);
            }
        }
        // The same accounts: limits, holders, tokens.
        prop_assert_eq!((d.next_token(), d.lease_count()), (e.next_token(), e.lease_count()));
        let names: Vec<String> = e.resources().map(|(n, _)| n.to_owned()).collect();
        for name in &names {
            prop_assert_eq!(d.resource_stats(name), e.resource_stats(name));
            prop_assert_eq!(d.held(name).collect::<Vec<_>>(), e.held(name).collect::<Vec<_>>());
        }
    }

    /// A history of try-once requests on rate limits: the dry-run resource's shadows are,
    /// request by request, the outcomes the enforced resource gives the same history,
    /// however far the traffic exceeds the limits (what enforce refuses is charged to
    /// nothing, and its release settles nothing).
    #[test]
    fn try_once_shadows_are_the_enforced_outcomes_of_the_same_history(
        buckets in prop::collection::vec((any::<bool>(), 1u64..20, 100u64..5_000), 1..4),
        ops in prop::collection::vec(
            prop_oneof![
                (0u64..25).prop_map(Op::Grant),
                (any::<prop::sample::Index>(), prop::option::of(0u64..30))
                    .prop_map(|(i, a)| Op::Release(i, a)),
                (0u64..2_000).prop_map(Op::Tick),
            ],
            1..80,
        ),
    ) {
        let rate: Vec<_> = buckets
            .iter()
            .map(|&(req, limit, window)| if req { requests(limit, window) } else { loads(limit, window) })
            .collect();
        let config = limits(None, &rate);
        let mut e = State::new();
        let mut d = State::new();
        e.apply_entry(0, &[put("r", config.clone())]);
        d.apply_entry(0, &[put("r", config.dry_run())]);
        let mut t = 0;
        // Leases enforce granted, with the dry-run resource's lease for the same request.
        let mut both: Vec<(LeaseId, LeaseId)> = Vec::new();
        for (n, op) in ops.iter().enumerate() {
            match op {
                Op::Grant(load) => {
                    let g = Grant { wait_ms: 0, ..grant_cmd("r", *load, n as u64) };
                    let oe = e.apply_entry(t, &[Command::Grant(g.clone())]).remove(0);
                    let od = d.apply_entry(t, &[Command::Grant(g)]).remove(0);
                    prop_assert_eq!(shadow_of(&od), as_shadow(&oe, 0), "enforce said {:?}", oe);
                    if let (Outcome::Granted { lease: le, .. }, Outcome::Granted { lease: ld, .. }) = (&oe, &od) {
                        both.push((le.id, ld.id));
                    }
                }
                Op::Release(i, actual_load) => {
                    if both.is_empty() {
                        continue;
                    }
                    let (le, ld) = both.remove(i.index(both.len()));
                    let release = |lease| Command::Release { lease, actual_load: *actual_load };
                    let oe = e.apply_entry(t, &[release(le)]).remove(0);
                    let od = d.apply_entry(t, &[release(ld)]).remove(0);
                    prop_assert_eq!(od, oe);
                }
                Op::Tick(dt) => t += dt,
            }
            prop_assert_eq!(d.limits("r"), e.limits("r"), "the limits' accounts agree");
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Grant(u64),
    Release(prop::sample::Index, Option<u64>),
    Tick(u64),
}

/// The admission answer of a dry-run resource is always "now": the scheduler queues
/// nothing, and each grant's shadow says what enforce would have done.
#[test]
fn a_dry_run_resource_grants_at_once_and_records_the_enforce_decision() {
    // The leader's speculative state (which the scheduler grants against) and a
    // replica applying the grants it puts into the log.
    let mut spec = State::new();
    let config = limits(Some(1), &[loads(10, 1_000)]).dry_run();
    spec.apply_entry(0, &[put("r", config)]);
    spec.tick(10);
    let mut s = spec.clone();
    let mut sched = Scheduler::new();
    let req = |nonce, load, wait_ms: u64| Request {
        resource: "r".into(),
        lane: "default".into(),
        priority: 10,
        load,
        ttl_ms: 30_000,
        request_id: None,
        nonce,
        try_once: wait_ms == 0,
        deadline_ms: 10 + wait_ms,
        holder: None,
        owner: None,
        waiters_max: None,
    };
    let mut shadows = Vec::new();
    for (nonce, load, wait_ms) in [(1, 4, 1_000), (2, 4, 60_000), (3, 4, 0), (4, 11, 1_000)] {
        assert!(matches!(
            sched.enqueue(&mut spec, req(nonce, load, wait_ms)),
            Admit::Waiting(_)
        ));
        let events: Vec<Event> = sched.events().collect();
        let [Event::Grant { command, .. }] = &events[..] else {
            panic!("granted at once: {events:?}")
        };
        match s.apply_command(command) {
            Outcome::Granted { shadow, .. } => shadows.push(shadow.unwrap()),
            other => panic!("{other:?}"),
        }
    }
    assert!(sched.is_empty(), "nobody waits on a dry-run resource");
    let d = |decision, wait_ms, binding| Shadow {
        decision,
        wait_ms,
        binding,
    };
    assert_eq!(
        shadows,
        [
            d(ShadowDecision::Grant, 0, None),
            // The first holds the one slot for its TTL (30 s): enforce would wait for
            // it, within 60 s.
            d(ShadowDecision::Wait, 30_000, Some(LimitKind::Concurrency)),
            d(
                ShadowDecision::WouldBlock,
                30_000,
                Some(LimitKind::Concurrency)
            ),
            d(ShadowDecision::LoadExceedsLimit, 0, Some(LimitKind::Load)),
        ]
    );
    // Charged: the first two (4 + 4 of 10); not the would-block one nor the load of 11.
    let load = s.limits("r")[1];
    assert_eq!((load.kind, load.remaining), (LimitKind::Load, 2));
    assert_eq!(
        s.limits("r")[0].remaining,
        1 - 4,
        "every holder holds a slot"
    );
    // Switching to enforce is one config change: the next request waits.
    let config = s.resource("r").cloned().unwrap();
    s.apply_command(&put(
        "r",
        ResourceConfig {
            mode: Mode::Enforce,
            ..config
        },
    ));
    assert!(matches!(s.fit("r", 1), Fit::Wait { .. }));
}
