//! The `acquire(…)` builder: `client.acquire("openai").load(2000).priority(100)
//! .lane("user-facing").ttl(..).timeout(..).holder(..).await? -> Permit`.
//!
//! Owns: turning builder calls into an `AcquireRequest` and the resulting lease into a
//! `Permit`. Retries, redirects and the `request_id` are `Client::acquire_at`'s.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use ratequeue_api as api;

use crate::client::{new_request_id, Client};
use crate::config;
use crate::error::Error;
use crate::permit::Permit;

/// A pending acquire. Nothing is sent until it is awaited.
#[must_use = "an acquire does nothing until it is awaited"]
#[derive(Debug)]
pub struct Acquire {
    client: Client,
    resource: String,
    req: api::AcquireRequest,
    auto_renew: bool,
    /// The first invalid argument, reported when awaited (builders do not fail).
    invalid: Option<Error>,
}

impl Acquire {
    pub(crate) fn new(client: Client, resource: String) -> Self {
        Acquire {
            client,
            resource,
            req: api::AcquireRequest::default(),
            auto_renew: true,
            invalid: None,
        }
    }

    fn note(&mut self, r: Result<u64, Error>) -> Option<u64> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.invalid.get_or_insert(e);
                None
            }
        }
    }

    /// The request's weight (tokens, bytes, credits); default 1.
    pub fn load(mut self, load: u64) -> Self {
        self.req.load = Some(load);
        self
    }

    /// Higher is served first within a lane; default 10.
    pub fn priority(mut self, priority: i32) -> Self {
        self.req.priority = Some(priority);
        self
    }

    /// The queue segment; default `default`.
    pub fn lane(mut self, lane: impl Into<String>) -> Self {
        self.req.lane = Some(lane.into());
        self
    }

    /// The lease's TTL (100 ms to 24 h); default the resource's `default_ttl_ms`. The
    /// permit renews itself every third of it.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        let ms = config::duration_ms("ttl", ttl, config::TTL_MS_MIN, config::TTL_MS_MAX);
        self.req.ttl_ms = self.note(ms);
        self
    }

    /// How long to wait in the queue for a grant (at most 1 h); default
    /// `Timing::wait_default` (30 s). `Duration::ZERO` is `try_once`.
    pub fn timeout(mut self, wait: Duration) -> Self {
        let ms = config::duration_ms("timeout", wait, 0, config::WAIT_MS_MAX);
        self.req.wait_ms = self.note(ms);
        self
    }

    /// Do not queue: granted only if it fits now and nobody waits, else `would_block`.
    pub fn try_once(mut self) -> Self {
        self.req.wait_ms = Some(0);
        self
    }

    /// The idempotency key (default: 128 random bits in hex). Reuse it to retry an
    /// acquire whose outcome was `Error::Ambiguous`: the cluster returns the lease it
    /// granted, never a second one.
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.req.request_id = Some(id.into());
        self
    }

    /// The label of this lease in the dashboard's lease list, instead of the client's
    /// (`ClientBuilder::holder`): sent as `<label>@<host>:<pid>`. 1–128 characters of
    /// printable ASCII.
    pub fn holder(mut self, label: impl Into<String>) -> Self {
        self.req.holder = Some(label.into());
        self
    }

    /// Whether the permit renews itself (default true). Without it the lease ends at
    /// its TTL unless released or renewed by hand.
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = on;
        self
    }

    async fn run(mut self) -> Result<Permit, Error> {
        if let Some(e) = self.invalid {
            return Err(e);
        }
        let request_id = self
            .req
            .request_id
            .get_or_insert_with(new_request_id)
            .clone();
        let (lease, sent_at) = self.client.acquire_at(&self.resource, self.req).await?;
        Ok(Permit::new(
            self.client,
            lease,
            request_id,
            sent_at,
            self.auto_renew,
        ))
    }
}

impl IntoFuture for Acquire {
    type Output = Result<Permit, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Permit, Error>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}
