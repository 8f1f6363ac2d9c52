//! ratequeue-node: the server shell around `ratequeue-core`.

pub mod admission;
pub mod metrics;
pub mod raft;
pub mod storage;
