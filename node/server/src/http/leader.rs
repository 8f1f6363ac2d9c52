//! Leader routing: leader-only requests are answered on the serving leader, sent on
//! with a 307 (same path, query, method and body) by a follower that knows the leader,
//! and refused with a 503 `no_leader` otherwise. Linearizable reads pass a ReadIndex
//! round first unless `?stale=true`.

use std::time::Duration;

use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ratequeue_api as api;
use ratequeue_api::ErrorCode;
use serde::Deserialize;

use super::error::{refusal, rejection};
use super::ApiError;
use crate::admission::Failure;
use crate::node::Node;

/// Retry-After sent with 503 during elections.
pub(super) const NO_LEADER_RETRY_MS: u64 = 500;

pub(super) fn redirect_target(base: &str, uri: &Uri) -> String {
    let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
    format!("{}{}", base.trim_end_matches('/'), pq)
}

/// Leader-only requests go through this: Ok on the serving leader, else the error
/// response (a 307 for followers that know the leader, a 503 otherwise).
pub(super) fn require_leader(node: &Node, uri: &Uri) -> Result<(), Response> {
    if node.is_shutting_down() {
        let e = ApiError::new(ErrorCode::ShuttingDown, "node is shutting down")
            .retry(NO_LEADER_RETRY_MS);
        return Err(e.into_response());
    }
    if node.admission.is_serving() {
        return Ok(());
    }
    Err(leader_error(node, uri))
}

/// A 307 to the leader (same path and query; method and body are kept by 307), or a
/// 503 `no_leader` while no other leader is known.
pub(super) fn leader_error(node: &Node, uri: &Uri) -> Response {
    if let Some((id, url)) = node.leader().filter(|(id, _)| *id != node.id) {
        let location = redirect_target(&url, uri);
        if let (Ok(loc), Ok(leader)) = (
            HeaderValue::from_str(&location),
            HeaderValue::from_str(&id.to_string()),
        ) {
            let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
            r.headers_mut().insert(LOCATION, loc);
            r.headers_mut().insert(api::LEADER_HEADER, leader);
            return r;
        }
    }
    ApiError::new(ErrorCode::NoLeader, "no leader is known; retry shortly")
        .retry(NO_LEADER_RETRY_MS)
        .into_response()
}

pub(super) fn failure(node: &Node, uri: &Uri, f: Failure) -> Response {
    match f {
        Failure::NotLeader => leader_error(node, uri),
        Failure::Ambiguous => ApiError::new(
            ErrorCode::CommitTimeout,
            "the write may or may not have been applied; retry with the same request_id",
        )
        .into_response(),
        Failure::Refused(r) => refusal(r).into_response(),
        Failure::NotOwner => ApiError::new(
            ErrorCode::Forbidden,
            "the lease was acquired by another key; only that key or an admin may release or renew it",
        )
        .into_response(),
        Failure::Rejected(r) => rejection(r).into_response(),
    }
}

/// The query of a read: `?stale=true` answers from this node's applied state, without
/// going to the leader.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ReadQuery {
    /// Answer from this node's applied state (any node, possibly behind the leader)
    /// instead of a linearizable read on the leader.
    #[serde(default)]
    pub(super) stale: bool,
}

/// How long a read waits for its leader to confirm it still leads: ReadIndex rounds are
/// tried again for this long (each is bounded by a heartbeat's timeout), so a follower
/// slow to answer one heartbeat (a busy machine) does not fail the read.
pub(super) const READ_CONFIRM_MAX: Duration = Duration::from_secs(2);

/// The pause after a failed ReadIndex round, doubled after each one up to
/// `READ_CONFIRM_BACKOFF_MAX`: a round that fails at once (a follower's connection
/// refused) is not tried again back to back for two seconds, and a slow one is tried
/// again soon.
pub(super) const READ_CONFIRM_BACKOFF_FIRST: Duration = Duration::from_millis(10);
pub(super) const READ_CONFIRM_BACKOFF_MAX: Duration = Duration::from_millis(100);

/// Reads go to the leader after a ReadIndex round, unless `?stale=true`. A round that
/// fails is tried again while this node still serves as leader, for up to
/// `READ_CONFIRM_MAX`; then `503 no_leader` (or a 307 if another leader is known).
pub(super) async fn read_barrier(node: &Node, uri: &Uri, stale: bool) -> Result<(), Response> {
    if stale {
        return Ok(());
    }
    require_leader(node, uri)?;
    let confirmed = confirm(
        tokio::time::Instant::now() + READ_CONFIRM_MAX,
        || async { node.raft.ensure_linearizable().await.is_ok() },
        || node.admission.is_serving() && !node.is_shutting_down(),
        tokio::time::Instant::now,
        tokio::time::sleep,
    )
    .await;
    if confirmed {
        return Ok(());
    }
    if node.leader().is_some_and(|(id, _)| id != node.id) {
        return Err(leader_error(node, uri));
    }
    Err(ApiError::new(
        ErrorCode::NoLeader,
        "this node could not confirm with a quorum that it still leads; retry shortly",
    )
    .retry(NO_LEADER_RETRY_MS)
    .into_response())
}

/// Runs `round` until it succeeds (true), `leads` says this node no longer leads, or
/// `deadline` has passed (false), pausing between rounds (`READ_CONFIRM_BACKOFF_FIRST`,
/// doubling up to `READ_CONFIRM_BACKOFF_MAX`, never past the deadline). The clock and
/// the sleep are the caller's (tokio's; a test's own).
async fn confirm<I, R, S>(
    deadline: I,
    mut round: impl FnMut() -> R,
    leads: impl Fn() -> bool,
    now: impl Fn() -> I,
    mut sleep: impl FnMut(Duration) -> S,
) -> bool
where
    I: Copy + Ord + std::ops::Sub<Output = Duration>,
    R: std::future::Future<Output = bool>,
    S: std::future::Future<Output = ()>,
{
    let mut backoff = READ_CONFIRM_BACKOFF_FIRST;
    loop {
        if round().await {
            return true;
        }
        let t = now();
        if !leads() || t >= deadline {
            return false;
        }
        sleep(backoff.min(deadline - t)).await;
        backoff = (backoff * 2).min(READ_CONFIRM_BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::time::Instant;

    use super::*;

    /// A clock that moves only when slept on, and the rounds' start times on it.
    struct Fake {
        start: Instant,
        now: Cell<Instant>,
        rounds: RefCell<Vec<Duration>>,
    }

    impl Fake {
        fn new() -> Fake {
            let start = Instant::now();
            Fake {
                start,
                now: Cell::new(start),
                rounds: RefCell::new(Vec::new()),
            }
        }

        /// `confirm` for `READ_CONFIRM_MAX` on this clock; round `n` (from 1) succeeds
        /// when `ok(n)`.
        async fn confirm(&self, ok: impl Fn(usize) -> bool, leads: bool) -> bool {
            let round = || {
                let mut rounds = self.rounds.borrow_mut();
                rounds.push(self.now.get() - self.start);
                let done = ok(rounds.len());
                async move { done }
            };
            let sleep = |d: Duration| {
                self.now.set(self.now.get() + d);
                async {}
            };
            let now = || self.now.get();
            confirm(self.start + READ_CONFIRM_MAX, round, || leads, now, sleep).await
        }

        fn rounds_ms(&self) -> Vec<u128> {
            self.rounds.borrow().iter().map(|d| d.as_millis()).collect()
        }
    }

    /// Rounds that fail at once are spaced by the backoff (10, 20, 40, 80, then 100 ms)
    /// until the deadline, where the last pause is cut short: 24 rounds in 2 s, not
    /// thousands back to back.
    #[tokio::test]
    async fn failed_rounds_back_off_up_to_the_deadline() {
        let f = Fake::new();
        assert!(!f.confirm(|_| false, true).await);
        let ms = f.rounds_ms();
        assert_eq!(&ms[..7], &[0, 10, 30, 70, 150, 250, 350], "{ms:?}");
        assert!(ms.windows(2).all(|w| w[1] - w[0] <= 100), "{ms:?}");
        assert_eq!(ms.last(), Some(&2_000), "a last round at the deadline");
        assert_eq!(ms.len(), 24, "{ms:?}");
        assert_eq!(f.now.get() - f.start, READ_CONFIRM_MAX, "no pause past it");
    }

    /// A round that succeeds ends the wait; a node that stops leading stops at once.
    #[tokio::test]
    async fn a_confirmed_round_or_a_lost_lead_ends_the_wait() {
        let f = Fake::new();
        assert!(f.confirm(|n| n == 3, true).await);
        assert_eq!(f.rounds_ms(), [0, 10, 30]);

        let f = Fake::new();
        assert!(!f.confirm(|_| false, false).await);
        assert_eq!(f.rounds_ms(), [0], "no second round once it does not lead");
        assert_eq!(f.now.get(), f.start, "and no pause");
    }
}
