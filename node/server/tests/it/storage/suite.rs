//! openraft's own storage test suite, on both backends. `Suite::test_all` builds its own
//! tokio runtimes, so these are plain `#[test]`s.

use openraft::testing::Suite;

use super::support::{MemBuilder, SledBuilder};

#[test]
fn openraft_suite_on_mem_backend() {
    Suite::test_all(MemBuilder).unwrap();
}

#[test]
fn openraft_suite_on_sled_backend() {
    Suite::test_all(SledBuilder).unwrap();
}
