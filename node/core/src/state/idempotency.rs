//! The idempotency window: a granted `request_id` answers a retry with the same lease
//! for `IDEMPOTENCY_WINDOW_MS` of cluster time or until `IDEMPOTENCY_WINDOW_LEN_MAX`
//! newer ones push it out. A `request_id` is scoped to (key, resource) (DESIGN.md §4):
//! the same id from another key, or for another resource, is another request.

use serde::{Deserialize, Serialize};

use super::{LeaseView, State};
use crate::{IDEMPOTENCY_WINDOW_LEN_MAX, IDEMPOTENCY_WINDOW_MS};

/// What a `request_id` is unique within: the key that sent it (`None`: the admin
/// token) and the resource it asked for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestKey {
    pub owner: Option<String>,
    pub resource: String,
    pub request_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct IdempotentGrant {
    pub(super) lease: LeaseView,
    pub(super) at_ms: u64,
}

impl State {
    /// Forgets request ids older than the window, and the oldest beyond its length.
    pub(super) fn forget_old_requests(&mut self) {
        let now = self.now_ms;
        while let Some(id) = self.idempotency_order.front() {
            let old = self
                .idempotency
                .get(id)
                .is_none_or(|g| g.at_ms.saturating_add(IDEMPOTENCY_WINDOW_MS) <= now);
            if !old && self.idempotency_order.len() <= IDEMPOTENCY_WINDOW_LEN_MAX {
                break;
            }
            if let Some(id) = self.idempotency_order.pop_front() {
                self.idempotency.remove(&id);
            }
        }
    }

    /// Remembers that `key` was granted `lease` at the current cluster time.
    pub(super) fn remember_request(&mut self, key: RequestKey, lease: &LeaseView) {
        self.idempotency.insert(
            key.clone(),
            IdempotentGrant {
                lease: lease.clone(),
                at_ms: self.now_ms,
            },
        );
        self.idempotency_order.push_back(key);
    }

    /// The lease a request was granted, if it is still in the idempotency window.
    pub fn granted_request(&self, key: &RequestKey) -> Option<&LeaseView> {
        self.idempotency.get(key).map(|g| &g.lease)
    }
}

/// Whether a retry asks for the same thing as the grant it repeats: same lane, load
/// and TTL. Anything else reusing the `request_id` is refused (`RequestIdReused`).
pub(crate) fn same_request(granted: &LeaseView, lane: &str, load: u64, ttl_ms: u64) -> bool {
    granted.lane == lane && granted.load == load && granted.ttl_ms == ttl_ms
}
