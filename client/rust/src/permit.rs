//! `Permit`: a granted lease that renews itself and is released on drop.
//!
//! Owns: the renewal task and the lost flag. A renewal answered `410 lease_expired` (or
//! `404 lease_not_found`), or failing for a whole TTL, marks the permit lost: `is_lost()`
//! turns true and `lost()` resolves. Never silent: the loss is also logged.
//!
//! Renewal schedule: every `ttl / Timing::renew_divisor` (a third) after the last
//! confirmation, where a confirmation is the instant the successful request was *sent*
//! (the lease surely lives until then plus its TTL, since cluster time never runs ahead
//! of a client's clock). Retries of one renewal stop at that instant plus the TTL.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratequeue_api as api;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::error::{Error, LeaseLost};

/// `actual_load` not set.
const NO_ACTUAL_LOAD: u64 = u64::MAX;

/// What the permit, its renewal task and its `lost()` futures share.
struct Shared {
    lease_id: String,
    resource: String,
    lane: String,
    load: u64,
    queued_ms: u64,
    limits: Vec<api::Limit>,
    shadow: Option<api::Shadow>,
    request_id: String,
    fencing_token: AtomicU64,
    ttl_ms: AtomicU64,
    actual_load: AtomicU64,
    /// Set once the holder gave the lease back: a `410` seen after that is not a loss.
    released: AtomicBool,
    lost: watch::Sender<Option<LeaseLost>>,
}

impl Shared {
    /// Records the loss unless the permit was released meanwhile. True if recorded.
    fn mark_lost(&self, cause: Error) -> bool {
        let lost = LeaseLost {
            lease_id: self.lease_id.clone(),
            cause,
        };
        let recorded = self.lost.send_if_modified(|slot| {
            if slot.is_some() || self.released.load(Ordering::SeqCst) {
                return false;
            }
            *slot = Some(lost.clone());
            true
        });
        if recorded {
            tracing::warn!(lease_id = %self.lease_id, resource = %self.resource, error = %lost.cause,
                "ratequeue lease lost; the holder must stop using the resource");
        }
        recorded
    }

    fn lost(&self) -> Option<LeaseLost> {
        self.lost.borrow().clone()
    }
}

/// A granted slot. Renews itself in the background (unless built with
/// `auto_renew(false)`); `release().await` gives it back and reports the answer; dropping
/// it releases it from a spawned task (best effort: the lease otherwise lapses at its
/// TTL). Watch `is_lost()` / `lost()` in long work: a lost lease must stop being used.
pub struct Permit {
    shared: Arc<Shared>,
    client: Client,
    renewer: Option<JoinHandle<()>>,
    /// Released explicitly (or the release was already handed to a task).
    finished: bool,
}

impl Permit {
    pub(crate) fn new(
        client: Client,
        lease: api::Lease,
        request_id: String,
        sent_at: Instant,
        auto_renew: bool,
    ) -> Permit {
        let (lost, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            lease_id: lease.lease_id,
            resource: lease.resource,
            lane: lease.lane,
            load: lease.load,
            queued_ms: lease.queued_ms,
            limits: lease.limits,
            shadow: lease.shadow,
            request_id,
            fencing_token: AtomicU64::new(lease.fencing_token),
            ttl_ms: AtomicU64::new(lease.ttl_ms),
            actual_load: AtomicU64::new(NO_ACTUAL_LOAD),
            released: AtomicBool::new(false),
            lost,
        });
        let renewer = auto_renew
            .then(|| tokio::spawn(renew_loop(client.clone(), Arc::clone(&shared), sent_at)));
        Permit {
            shared,
            client,
            renewer,
            finished: false,
        }
    }

    pub fn lease_id(&self) -> &str {
        &self.shared.lease_id
    }

    /// Unique and strictly increasing across the cluster: hand it to a downstream
    /// system so it can refuse a stale holder.
    pub fn fencing_token(&self) -> u64 {
        self.shared.fencing_token.load(Ordering::SeqCst)
    }

    pub fn resource(&self) -> &str {
        &self.shared.resource
    }

    pub fn lane(&self) -> &str {
        &self.shared.lane
    }

    pub fn load(&self) -> u64 {
        self.shared.load
    }

    /// The lease's TTL as last granted or renewed.
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.shared.ttl_ms.load(Ordering::SeqCst))
    }

    /// How long the acquire waited in the queue.
    pub fn queued(&self) -> Duration {
        Duration::from_millis(self.shared.queued_ms)
    }

    /// On a dry-run resource: what enforce would have done with this acquire (would it
    /// have waited, how long, for which limit, or refused it). `None` when enforced.
    pub fn shadow(&self) -> Option<&api::Shadow> {
        self.shared.shadow.as_ref()
    }

    /// Reports what the provider answered this lease's call (`Client::report`).
    pub async fn report(&self, report: &api::ReportRequest) -> Result<api::ReportResponse, Error> {
        self.client.report(&self.shared.lease_id, report).await
    }

    /// The resource's limits as seen at grant time.
    pub fn limits(&self) -> &[api::Limit] {
        &self.shared.limits
    }

    /// The acquire's idempotency key.
    pub fn request_id(&self) -> &str {
        &self.shared.request_id
    }

    /// Reports the load really used (reserve, then settle), sent with the release: the
    /// unused reservation is credited back, an excess debited.
    pub fn set_actual_load(&self, load: u64) {
        self.shared.actual_load.store(load, Ordering::SeqCst);
    }

    pub fn actual_load(&self) -> Option<u64> {
        match self.shared.actual_load.load(Ordering::SeqCst) {
            NO_ACTUAL_LOAD => None,
            n => Some(n),
        }
    }

    /// True once the lease is known or presumed gone. Stop using the resource.
    pub fn is_lost(&self) -> bool {
        self.shared.lost.borrow().is_some()
    }

    /// Why the lease was lost, if it was.
    pub fn lost_error(&self) -> Option<LeaseLost> {
        self.shared.lost()
    }

    /// `Err` once lost: call it between units of work.
    pub fn check(&self) -> Result<(), LeaseLost> {
        match self.shared.lost() {
            Some(l) => Err(l),
            None => Ok(()),
        }
    }

    /// Resolves when the lease is lost (at once if it already is); never while it is
    /// held. For `tokio::select!` beside the work the permit guards.
    pub fn lost(&self) -> impl Future<Output = LeaseLost> + Send + 'static {
        let mut rx = self.shared.lost.subscribe();
        async move {
            let got = match rx.wait_for(Option::is_some).await {
                Ok(v) => v.clone(),
                Err(_) => None,
            };
            match got {
                Some(l) => l,
                // The permit is gone without a loss: never resolve.
                None => std::future::pending().await,
            }
        }
    }

    /// Stops renewing and releases the lease (with `set_actual_load`'s value), retried
    /// for `Timing::release_budget`. Returns the cluster's answer: `Released`,
    /// `AlreadyReleased`, or an error such as `410 lease_expired` for a lost lease.
    pub async fn release(mut self) -> Result<api::ReleaseState, Error> {
        self.stop();
        let actual = self.actual_load();
        let r = self
            .client
            .release_lease(&self.shared.lease_id, actual)
            .await?;
        Ok(r.state)
    }

    fn stop(&mut self) {
        if let Some(h) = self.renewer.take() {
            h.abort();
        }
        self.finished = true;
        self.shared.released.store(true, Ordering::SeqCst);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let gone = self.shared.lost().is_some_and(|l| !l.is_presumed());
        self.stop();
        if gone {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(lease_id = %self.shared.lease_id,
                "permit dropped outside a tokio runtime: its lease lapses at its TTL");
            return;
        };
        let client = self.client.clone();
        let lease_id = self.shared.lease_id.clone();
        let actual = self.actual_load();
        handle.spawn(async move {
            if let Err(e) = client.release_lease(&lease_id, actual).await {
                tracing::warn!(%lease_id, error = %e, "releasing a dropped permit failed");
            }
        });
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("lease_id", &self.shared.lease_id)
            .field("resource", &self.shared.resource)
            .field("lane", &self.shared.lane)
            .field("load", &self.shared.load)
            .field("fencing_token", &self.fencing_token())
            .field("ttl", &self.ttl())
            .field("lost", &self.is_lost())
            .finish()
    }
}

/// When to renew after a confirmation: a `1/divisor` of the TTL, at least `min`.
pub(crate) fn renew_interval(ttl: Duration, divisor: u32, min: Duration) -> Duration {
    (ttl / divisor.max(1)).max(min)
}

async fn renew_loop(client: Client, shared: Arc<Shared>, mut confirmed: Instant) {
    let timing = client.timing().clone();
    loop {
        let ttl = Duration::from_millis(shared.ttl_ms.load(Ordering::SeqCst));
        let next = confirmed + renew_interval(ttl, timing.renew_divisor, timing.renew_interval_min);
        tokio::time::sleep_until(next.into()).await;
        // Past this instant the lease may have expired without our knowing.
        let expiry = confirmed + ttl;
        let sent = Instant::now();
        match client.renew_until(&shared.lease_id, None, expiry).await {
            Ok(r) => {
                confirmed = sent;
                shared.ttl_ms.store(r.ttl_ms, Ordering::SeqCst);
                shared
                    .fencing_token
                    .store(r.fencing_token, Ordering::SeqCst);
            }
            // The cluster says no (410/404, or a 4xx such as a revoked key): the lease is
            // gone or will lapse.
            Err(e @ Error::Api(_)) if e.is_lease_gone() || e.status().is_some_and(|s| s < 500) => {
                shared.mark_lost(e);
                return;
            }
            Err(e) => {
                if Instant::now() + timing.backoff_initial >= expiry {
                    shared.mark_lost(e);
                    return;
                }
                tokio::time::sleep(timing.backoff_initial).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_at_a_third_of_the_ttl() {
        let min = Duration::from_millis(20);
        assert_eq!(
            renew_interval(Duration::from_secs(3), 3, min),
            Duration::from_secs(1)
        );
        assert_eq!(renew_interval(Duration::from_millis(30), 3, min), min);
    }
}
