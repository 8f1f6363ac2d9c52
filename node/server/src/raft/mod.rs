//! Everything openraft: the type config, the state-machine store, and the peer network.

pub mod types;
pub mod state_machine;
pub mod network;
