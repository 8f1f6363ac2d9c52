//! ratequeue-node: the server shell around `ratequeue-core`.
//!
//! - `node`: the node handle: start-up, bootstrap, membership, status, shutdown.
//! - `http`: the client API (DESIGN.md §5), a shell over a node handle.
//! - `serve`: binds the listeners and mounts the API and peer routers over a node.
//! - `listener`: the API listener's serve loop: connection caps, header-read and idle
//!   timeouts, HTTP/1.1 + h2c, over plain or TLS streams (`Handshake`).
//! - `admin_token`: the admin token(s), reloadable without a restart.
//! - `admission`: the leader's queue and group commit.
//! - `clock`: the node's one clock (the leader's monotonic readings, the series' wall
//!   clock); with the feature `failpoints`, moved by the harness's clock faults.
//! - `series`: the dashboard's per-second, per-resource series (display only).
//! - `raft`: openraft types, the state-machine store, the peer network.
//! - `storage`: the sled-backed log store behind the project's storage trait.
//! - `dev`: the local 3-node cluster.
//! - `fuzzing`: only with the feature `fuzzing` (and in tests), the fuzz targets'
//!   harness and seed corpus (`fuzz/`).
//! - `sabotage`: only with the feature `sabotage-follower-grants`, a deliberately broken
//!   build for the fault-injection harness's negative control.

// openraft's `StorageError` is large and is the error type its traits demand.
#![allow(clippy::result_large_err)]

pub mod admin_token;
pub mod admission;
pub mod clock;
pub mod dev;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod node;
pub mod raft;
#[cfg(feature = "sabotage-follower-grants")]
pub mod sabotage;
pub mod series;
pub mod serve;
pub mod storage;
pub mod tls;
