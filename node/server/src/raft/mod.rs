//! Everything openraft: the type config, the state-machine store, the peer network, and
//! when snapshots are built.

pub mod network;
pub mod snapshot_schedule;
pub mod state_machine;
pub mod types;
