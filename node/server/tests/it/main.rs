//! Integration tests of ratequeue-node: storage, real node processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admission;
mod cluster;
mod dashboard;
mod dev;
mod dry_run;
mod feedback;
mod isolation;
mod replication;
mod security;
mod storage;
mod waiters;
