//! The cluster clock (DESIGN.md §3), as arithmetic only.
//!
//! The shell reads its monotonic clock and passes elapsed milliseconds in; nothing
//! here reads a clock. Applying an entry uses `now = max(state.now_ms, entry.now_ms)`
//! (see `State::tick`).

/// A leader's stamping rule: `base` is the `now_ms` of the last entry in its log when it
/// took office; stamps are `base + elapsed` and never go below the last stamp issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderClock {
    base_ms: u64,
    last_ms: u64,
}

impl LeaderClock {
    pub fn new(base_ms: u64) -> Self {
        LeaderClock {
            base_ms,
            last_ms: base_ms,
        }
    }

    /// The cluster time for an entry proposed `elapsed_ms` after taking office.
    pub fn stamp(&mut self, elapsed_ms: u64) -> u64 {
        self.last_ms = self.last_ms.max(self.base_ms.saturating_add(elapsed_ms));
        self.last_ms
    }

    /// The cluster time `elapsed_ms` after taking office, without issuing a stamp.
    pub fn peek(&self, elapsed_ms: u64) -> u64 {
        self.last_ms.max(self.base_ms.saturating_add(elapsed_ms))
    }

    /// Milliseconds after taking office at which cluster time reaches `at_ms`.
    pub fn elapsed_at(&self, at_ms: u64) -> u64 {
        at_ms.saturating_sub(self.base_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_start_at_base_and_never_go_back() {
        let mut c = LeaderClock::new(1_000);
        assert_eq!(c.stamp(0), 1_000);
        assert_eq!(c.stamp(25), 1_025);
        assert_eq!(c.stamp(10), 1_025, "a late reading never moves time back");
        assert_eq!(c.peek(100), 1_100);
        assert_eq!(c.elapsed_at(1_100), 100);
    }
}
