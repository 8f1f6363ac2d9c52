//! The client-facing HTTP API (DESIGN.md §5): routing, authentication, leader
//! redirects, request validation and the mapping of outcomes to statuses.
//!
//! A shell over a `Node` handle: handlers never decide admission; they validate,
//! authenticate, and hand commands to `Admission` (leader) or answer with a redirect
//! (follower). Nothing below `http` imports from it.
//!
//! - `error`: `ApiError`, the `Body` extractor, core refusals/rejections as errors.
//! - `access`: the request span and the access log line.
//! - `auth`: the `authenticate` middleware (bearer token -> `Caller`, failed-auth
//!   throttle per source, per-key in-flight quota). What a `Caller` may see and do is
//!   decided in `ratequeue_core::scope`, nowhere here.
//! - `leader`: leader-only requests, 307 redirects, 503 `no_leader`, read barriers.
//! - `leases`: acquire, release, renew. `resources`: resource CRUD and views.
//! - `keys`: API keys. `cluster`: status, membership, `/healthz`, `/readyz`, `/metrics`.
//! - `dashboard`: the dashboard's aggregated views; `ui`: its embedded files;
//!   `forward`: the layer that sends the dashboard's leader-only calls on to the leader.
//! - `router`: `app(node)`, every route in one place (`routes`).
//! - `openapi`: the OpenAPI description (`GET /v1/openapi.json`) from the handlers'
//!   annotations and the wire types.

pub mod access;
mod auth;
mod cluster;
mod dashboard;
mod error;
mod forward;
mod keys;
mod leader;
pub(crate) mod leases;
pub mod openapi;
mod resources;
mod router;
mod ui;

pub use auth::{denied, key_hash, AuthGuard, Caller};
pub use error::{ApiError, Body, BODY_BYTES_MAX, BODY_READ_TIMEOUT};
pub use leases::{WAIT_MS_DEFAULT, WAIT_MS_MAX};
pub use resources::{resource_config, resource_spec};
pub use router::{app, metrics_app};
