//! The one integration-test binary of ratequeue-core (STYLE.md: one per crate).
//!
//! - `check`: the `check(...)` entry point (a replica driven entry by entry) and the
//!   simulated leader shell around the scheduler.
//! - `state`, `buckets`, `leases`, `settle`, `idempotency`, `keys`, `clock`: one module per rule
//!   of DESIGN.md §2–§3.
//! - `model`: a naive reference model and the property test comparing it with `State`.
//! - `snapshot`: determinism and snapshot/restore.
//! - `dry_run`: dry-run mode: the shadow is the enforce decision (properties).
//! - `feedback`: provider reports: lowering, pauses, backoff; never raising budget.
//! - `scope`: the permission and visibility rules.
//! - `scheduler`: admission order, head of line, deadlines, bounds, wakeups, and a
//!   randomised simulation checking that no grant ever exceeds a limit.

// A failed unwrap in a test is a failed test. clippy's `allow-unwrap-in-tests` covers
// `#[test]` functions only, not the harness and model they call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod buckets;
mod check;
mod clock;
mod dry_run;
mod feedback;
mod idempotency;
mod keys;
mod leases;
mod model;
mod progress;
mod scheduler;
mod scope;
mod settle;
mod snapshot;
mod state;
