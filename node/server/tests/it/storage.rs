//! Tests of the durable Raft storage layer (`ratequeue_node::storage`): openraft's storage
//! suite on both backends, crash/reopen, corruption detection and flush ordering.

// Test helpers outside `#[test]` fns may unwrap too (clippy's allow-*-in-tests misses them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod corruption;
mod durability;
mod flush_order;
mod reopen;
mod suite;
mod support;
