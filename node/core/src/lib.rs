//! ratequeue-core: the sans-IO heart of ratequeue.
//!
//! - `state`: the replicated limiter state machine (resources, buckets, leases, keys,
//!   idempotency window, cluster time). Deterministic: same commands, same bytes.
//! - `scheduler`: the leader's admission queue (lanes by stride, priority, FIFO, strict
//!   head of line, deadlines) deciding grants against a speculative `State`.
//! - `clock`: the cluster clock's stamping rule.
//! - `codec`: bounded bincode decoding, for every decoder of bytes from outside.
//! - `sabotage`: the harness's broken decisions (only with the feature `failpoints`).
//!
//! This crate must never do I/O, read a clock, use randomness, spawn, or depend on
//! tokio, openraft, sled or HTTP. Time is always a parameter. That is what lets the
//! tests and the history checkers replay it exactly.

pub mod bucket;
pub mod clock;
pub mod codec;
pub mod config;
pub mod keys;
pub mod sabotage;
pub mod scheduler;
pub mod scope;
pub mod state;

pub use clock::LeaderClock;
pub use config::{Feedback, LaneConfig, Mode, Per, RateLimit, ResourceConfig};
pub use keys::{ApiKey, Role};
pub use scheduler::{
    Admit, Event, HeadView, LaneView, PriorityGroup, Progress, QueueView, Refusal, Request,
    Scheduler, WaiterId, POSITION_COUNT_MAX,
};
pub use scope::{Caller, Denied};
pub use state::{
    Ahead, Binding, Command, Estimate, Fit, Grant, HeldLease, LeaseId, LeaseView, LimitKind,
    LimitView, Outcome, Rejection, Report, RequestKey, Shadow, ShadowDecision, State, Table,
};

/// Resource and lane names: at most this many bytes.
pub const NAME_LEN_MAX: usize = 128;
/// `request_id`: at most this many bytes.
pub const REQUEST_ID_LEN_MAX: usize = 128;
/// A lease's holder label (`holder` on acquire): at most this many bytes.
pub const HOLDER_LEN_MAX: usize = 128;
/// Any `limit` or `concurrency`.
pub const LIMIT_MAX: u64 = 1_000_000_000_000;
/// A provider's pause (a 429's `retry_after_ms` or reset, or the backoff): at most 1 h;
/// any duration in a report is at most this.
pub const PAUSE_MS_MAX: u64 = 3_600_000;
/// A bucket window: at most 30 days.
pub const WINDOW_MS_MAX: u64 = 30 * 24 * 3_600_000;
/// Any single `load` or `actual_load`.
pub const LOAD_MAX: u64 = LIMIT_MAX;
pub const RATE_BUCKETS_MAX: usize = 8;
pub const LANES_PER_RESOURCE_MAX: usize = 64;
pub const LANE_WEIGHT_MAX: u32 = 1_000;
/// Lease TTL bounds: 100 ms to 24 h.
pub const TTL_MS_MIN: u64 = 100;
pub const TTL_MS_MAX: u64 = 24 * 3_600_000;
/// `max_queue` of one resource.
pub const QUEUE_LEN_MAX: u32 = 1_000_000;
/// Waiters on the leader across all resources.
pub const WAITERS_MAX: usize = 1_000_000;
/// Distinct lanes with waiters in one resource's queue.
pub const LANES_QUEUED_MAX: usize = 1_024;
pub const RESOURCES_MAX: usize = 100_000;
/// Live leases across the cluster.
pub const LEASES_MAX: usize = 2_000_000;
pub const KEYS_MAX: usize = 10_000;
/// Resource or lane patterns of one key, and the length of each.
pub const KEY_PATTERNS_MAX: usize = 64;
pub const KEY_PATTERN_LEN_MAX: usize = 256;
/// A key's `in_flight_max`: requests in flight on one node.
pub const KEY_IN_FLIGHT_MAX: u32 = 1_000_000;
/// A key's `expires_in_ms`: at most ten years of cluster time.
pub const KEY_EXPIRES_IN_MS_MAX: u64 = 10 * 365 * 24 * 3_600_000;
/// Ended leases are remembered for exact release/renew answers for this long of
/// cluster time (longer than any SDK retries a release or renew: 10 s and 30 s)...
pub const TOMBSTONE_WINDOW_MS: u64 = 60_000;
/// ...and at most this many (the oldest ended are forgotten first).
pub const TOMBSTONES_MAX: usize = 1_000_000;
/// A granted `request_id` is remembered for 10 minutes of cluster time...
pub const IDEMPOTENCY_WINDOW_MS: u64 = 600_000;
/// ...or until this many newer ones push it out.
pub const IDEMPOTENCY_WINDOW_LEN_MAX: usize = 1_000_000;
