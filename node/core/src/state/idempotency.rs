//! The idempotency window: a granted `request_id` answers a retry with the same lease
//! for `IDEMPOTENCY_WINDOW_MS` of cluster time or until `IDEMPOTENCY_WINDOW_LEN_MAX`
//! newer ones push it out.

use serde::{Deserialize, Serialize};

use super::{LeaseView, State};
use crate::{IDEMPOTENCY_WINDOW_LEN_MAX, IDEMPOTENCY_WINDOW_MS};

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

    /// Remembers that `request_id` was granted `lease` at the current cluster time.
    pub(super) fn remember_request(&mut self, request_id: &str, lease: &LeaseView) {
        self.idempotency.insert(
            request_id.to_owned(),
            IdempotentGrant {
                lease: lease.clone(),
                at_ms: self.now_ms,
            },
        );
        self.idempotency_order.push_back(request_id.to_owned());
    }

    /// The lease a `request_id` was granted, if it is still in the idempotency window.
    pub fn granted_request(&self, request_id: &str) -> Option<&LeaseView> {
        self.idempotency.get(request_id).map(|g| &g.lease)
    }
}
