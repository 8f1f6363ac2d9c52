//! Tests of the durable Raft storage layer (`ratequeue_node::storage`): openraft's storage
//! suite on both backends, crash/reopen, corruption detection and flush ordering.

mod corruption;
mod durability;
mod flush_order;
mod reopen;
mod suite;
mod support;
