//! ratequeue-testkit: local clusters of real `ratequeue serve` processes, for the
//! integration tests of every crate, the fault-injection harness, benchmarks, and
//! (through `ratequeue dev --ephemeral --json`, `dev`) test suites in other languages.
//!
//! - `block`: loopback addressing, one `127.A.B.0/24` block per cluster.
//! - `config`: `ClusterConfig` (binary, node count, secrets, extra flags and env for
//!   every node or one node).
//! - `cluster`: `Cluster`, the processes: spawn, stop (SIGTERM), kill (SIGKILL),
//!   pause/resume (SIGSTOP/SIGCONT), restart, wipe, reap; logs and data dirs.
//! - `api`: status, leaders (`wait_leader`), requests following 307s, membership.
//! - `process`: one child; the registry behind `kill_all_started`.
//! - `pki`: test certificates (a CA, per-node identities, a client certificate) for
//!   clusters that speak TLS (`ClusterConfig::test_tls`).
//! - `wait`: polling with a deadline (`poll_until`, `eventually`).
//! - `dev`: the line protocol of `ratequeue dev --ephemeral --json` (docs/testkit.md).
//!
//! Nothing here sleeps in place of a condition: every wait polls with a deadline. The
//! kit knows the server only through its command line and HTTP API.

mod api;
pub mod block;
mod cluster;
pub mod config;
pub mod dev;
pub mod pki;
mod process;
pub mod wait;

pub use api::{HOPS_MAX, MEMBERSHIP_TIMEOUT};
pub use block::Block;
pub use cluster::{Cluster, MembersHook};
pub use config::{random_token, ClusterConfig, NodeOptions, TestTls};
pub use pki::TestPki;
pub use process::kill_all_started;
pub use wait::{eventually, poll_until};
