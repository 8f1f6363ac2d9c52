//! ratequeue-node: the server shell around `ratequeue-core`.

pub mod raft;
