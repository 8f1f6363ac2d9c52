//! A deliberately broken build, for the fault-injection harness's negative control only
//! (`jepsen-style-tests`, docs/consistency.md). Compiled in only with the cargo feature
//! `sabotage-follower-grants`; a normal build has none of this.
//!
//! With it, a follower answers an acquire itself instead of redirecting: it decides
//! against a copy of its own applied state and hands out the lease without a Raft
//! entry, as a limiter that trusted local state would. The grant is never replicated, so
//! it breaks the concurrency limit (the leader grants the same slots), reuses fencing
//! tokens (the follower's next token is the leader's too), and is absent from the final
//! read. The harness must catch it.

use ratequeue_api as api;
use ratequeue_core::{Command, Grant, Outcome};

use crate::admission::AcquireParams;
use crate::http::lease_json;
use crate::node::Node;

/// Grants from this node's applied state, or `None` (answered `would_block`); never waits.
pub fn follower_grant(node: &Node, p: AcquireParams) -> Option<api::Lease> {
    let mut state = node.applied.read().state.clone();
    let now_ms = state.now_ms();
    let grant = Grant {
        resource: p.resource,
        lane: p.lane,
        load: p.load,
        ttl_ms: p.ttl_ms,
        request_id: p.request_id,
        nonce: rand::random(),
    };
    match state.apply_entry(now_ms, &[Command::Grant(grant)]).pop() {
        Some(Outcome::Granted { lease, limits, .. }) => Some(lease_json(lease, &limits, 0)),
        _ => None,
    }
}
