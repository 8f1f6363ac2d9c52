//! ratequeue-client: the async Rust client of ratequeue.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ratequeue_client::Error> {
//! use std::time::Duration;
//! let client = ratequeue_client::Client::builder()
//!     .url("http://10.0.0.1:7700,http://10.0.0.2:7700,http://10.0.0.3:7700")
//!     .api_key("rq_…")
//!     .build()?;
//! let permit = client
//!     .acquire("openai")
//!     .load(2000)
//!     .priority(100)
//!     .lane("user-facing")
//!     .ttl(Duration::from_secs(30))
//!     .timeout(Duration::from_secs(10))
//!     .await?;
//! // … call the resource, passing permit.fencing_token() downstream …
//! permit.set_actual_load(1234);
//! permit.release().await?;
//! # Ok(()) }
//! ```
//!
//! Code map:
//! - `config.rs`: `Timing`, URLs and key from arguments or the environment, validators.
//! - `error.rs`: `Error` (definite vs ambiguous), `ApiError`, answer classification.
//! - `retry.rs`: the sans-IO retry policy (backoff, which failures retry, final error).
//! - `transport.rs`: node choice, the cached leader, redirects by hand, the retry loop.
//! - `client.rs`: `Client` and its typed calls. `acquire.rs`: the `acquire(…)` builder.
//! - `permit.rs`: `Permit`, its renewal task and lost flag.
//! - `main.rs` and `cli/`: the `rqctl` binary (not part of the library).
//!
//! Never here: wire structs (they are `ratequeue-api`'s, re-exported as `api`).

pub mod config;
pub mod retry;

mod acquire;
mod client;
mod error;
mod permit;
mod transport;

#[cfg(test)]
mod call_tests;

pub use acquire::Acquire;
pub use client::{new_request_id, Client, ClientBuilder};
pub use config::{Timing, TlsFiles};
pub use error::{ApiError, Error, LeaseLost};
pub use permit::Permit;
pub use ratequeue_api as api;
pub use ratequeue_api::ErrorCode;
pub use retry::{Backoff, Idempotency};
