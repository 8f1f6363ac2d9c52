//! Everything openraft: the type config, the state-machine store, and the peer network.

pub mod network;
pub mod state_machine;
pub mod types;
