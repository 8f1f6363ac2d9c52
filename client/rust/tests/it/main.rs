//! Integration tests of ratequeue-client and rqctl against real 3-node clusters of the
//! `ratequeue` binary (built beforehand: see `cluster.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod cluster;
mod failover;
mod lease;
mod rqctl;
mod tls;
