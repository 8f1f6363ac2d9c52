//! Deliberately broken decisions for the fault-injection harness's negative controls
//! (docs/consistency.md, "Dry-run and provider reports"). Compiled in only with the
//! cargo feature `failpoints` (which `ratequeue-node`'s feature of the same name
//! enables); without it every switch is a constant `false` and the optimiser removes
//! the branches. The node's test build sets them at start from its environment.
//!
//! - `dry_run_uncharged`: a dry-run grant charges no bucket, so the shadow of every later
//!   request is decided as if the traffic the resource let through had not happened:
//!   a shadow that says `grant` to more than the limits allow.
//! - `ignore_pause`: a provider's 429 is recorded and answered (`paused_ms`), but the
//!   admission decision ignores the pause: grants go on while the provider refuses.
//!
//! Must never: be enabled in a release build, or change anything while unset.

#[cfg(feature = "failpoints")]
mod switches {
    use std::sync::atomic::{AtomicBool, Ordering};

    static DRY_RUN_UNCHARGED: AtomicBool = AtomicBool::new(false);
    static IGNORE_PAUSE: AtomicBool = AtomicBool::new(false);

    /// Sets the broken decisions for this process.
    pub fn set(dry_run_uncharged: bool, ignore_pause: bool) {
        DRY_RUN_UNCHARGED.store(dry_run_uncharged, Ordering::Relaxed);
        IGNORE_PAUSE.store(ignore_pause, Ordering::Relaxed);
    }

    pub(crate) fn dry_run_uncharged() -> bool {
        DRY_RUN_UNCHARGED.load(Ordering::Relaxed)
    }

    pub(crate) fn ignore_pause() -> bool {
        IGNORE_PAUSE.load(Ordering::Relaxed)
    }
}

#[cfg(feature = "failpoints")]
pub use switches::set;
#[cfg(feature = "failpoints")]
pub(crate) use switches::{dry_run_uncharged, ignore_pause};

#[cfg(not(feature = "failpoints"))]
pub(crate) const fn dry_run_uncharged() -> bool {
    false
}

#[cfg(not(feature = "failpoints"))]
pub(crate) const fn ignore_pause() -> bool {
    false
}
