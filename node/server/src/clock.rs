//! The node's one clock: every reading the leader stamps cluster time from
//! ([`monotonic_ms`]) and the wall clock the dashboard's series use ([`unix_ms`]).
//!
//! Cluster time (DESIGN.md §3, docs/semantics.md) is `base + elapsed` on the leader's
//! monotonic clock; nothing else in the server decides with a clock. Keeping the
//! readings in this one module is what lets the fault-injection harness move them.
//!
//! With the cargo feature `failpoints` (tests only, never a release build) the readings
//! follow `<data-dir>/failpoints/clock`, re-read at most every [`POLL_MS`], whose lines
//! set this process's view of time (docs/consistency.md, "Clock faults"):
//! `mono-offset-ms N` (the monotonic view jumps by N, which may be negative),
//! `mono-rate R` (it runs at R times real speed from now on; continuous) and
//! `wall-offset-ms N` (the wall clock jumps). A missing file means no fault. The
//! environment `RATEQUEUE_FAILPOINT_STAMP_WALL=1` makes a deliberately broken build for
//! the harness's negative control: [`monotonic_ms`] then follows the wall clock, as a
//! leader that trusted its local clock would.
//!
//! Must never: be read while applying the log (the state machine takes `now` from
//! entries only), or go backwards in a normal build.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static START: OnceLock<Instant> = OnceLock::new();

fn start() -> Instant {
    *START.get_or_init(Instant::now)
}

fn real_ms() -> f64 {
    start().elapsed().as_secs_f64() * 1000.0
}

fn real_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Milliseconds of this node's monotonic clock since the process started. The leader
/// stamps `base + (monotonic_ms() - monotonic_ms() at taking office)`.
pub fn monotonic_ms() -> u64 {
    #[cfg(feature = "failpoints")]
    {
        fault::monotonic_ms()
    }
    #[cfg(not(feature = "failpoints"))]
    {
        real_ms() as u64
    }
}

/// Milliseconds of wall-clock time since the Unix epoch (display only: the series).
pub fn unix_ms() -> u64 {
    #[cfg(feature = "failpoints")]
    {
        u64::try_from(real_unix_ms().saturating_add(fault::wall_offset_ms())).unwrap_or(0)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        u64::try_from(real_unix_ms()).unwrap_or(0)
    }
}

/// How often the failpoints build re-reads the clock file, at most.
pub const POLL_MS: f64 = 20.0;

#[cfg(feature = "failpoints")]
pub use fault::watch;

#[cfg(feature = "failpoints")]
mod fault {
    use std::path::PathBuf;
    use std::sync::OnceLock;

    use parking_lot::Mutex;

    use super::{real_ms, real_unix_ms, start, POLL_MS};

    /// Env `=1`: stamp from the wall clock (the broken build).
    pub const STAMP_WALL_ENV: &str = "RATEQUEUE_FAILPOINT_STAMP_WALL";

    static FILE: OnceLock<PathBuf> = OnceLock::new();
    static STATE: Mutex<State> = Mutex::new(State {
        read_at_ms: f64::NEG_INFINITY,
        anchor_real_ms: 0.0,
        anchor_view_ms: 0.0,
        rate: 1.0,
        mono_offset_ms: 0.0,
        wall_offset_ms: 0,
        start_unix_ms: None,
    });

    struct State {
        read_at_ms: f64,
        /// The view is `anchor_view + (real - anchor_real) * rate + mono_offset`.
        anchor_real_ms: f64,
        anchor_view_ms: f64,
        rate: f64,
        mono_offset_ms: f64,
        wall_offset_ms: i64,
        start_unix_ms: Option<i64>,
    }

    /// Follow `<data_dir>/failpoints/clock` from now on (called once at node start).
    pub fn watch(data_dir: &std::path::Path) {
        start();
        let _ = FILE.set(data_dir.join("failpoints").join("clock"));
        if std::env::var(STAMP_WALL_ENV).is_ok_and(|v| v == "1") {
            tracing::warn!(
                "failpoint: STAMP WALL, the leader stamps cluster time from the wall \
                 clock (a deliberately broken build for the harness)"
            );
        }
    }

    fn refresh(s: &mut State, now: f64) {
        if now - s.read_at_ms < POLL_MS {
            return;
        }
        s.read_at_ms = now;
        let text = FILE
            .get()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .unwrap_or_default();
        let (mut rate, mut mono, mut wall) = (1.0f64, 0.0f64, 0i64);
        for line in text.lines() {
            let mut w = line.split_whitespace();
            match (w.next(), w.next()) {
                (Some("mono-rate"), Some(v)) => rate = v.parse().unwrap_or(1.0),
                (Some("mono-offset-ms"), Some(v)) => mono = v.parse().unwrap_or(0.0),
                (Some("wall-offset-ms"), Some(v)) => wall = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        let rate = rate.clamp(0.0, 100.0);
        if rate != s.rate {
            // Re-anchor so a rate change bends the view instead of jumping it.
            s.anchor_view_ms += (now - s.anchor_real_ms) * s.rate;
            s.anchor_real_ms = now;
            s.rate = rate;
        }
        if mono != s.mono_offset_ms || wall != s.wall_offset_ms {
            tracing::warn!(
                mono_offset_ms = mono,
                mono_rate = rate,
                wall_offset_ms = wall,
                "failpoint: clock fault changed"
            );
        }
        s.mono_offset_ms = mono;
        s.wall_offset_ms = wall;
    }

    pub fn monotonic_ms() -> u64 {
        let now = real_ms();
        let mut s = STATE.lock();
        refresh(&mut s, now);
        if FILE.get().is_some() && std::env::var(STAMP_WALL_ENV).is_ok_and(|v| v == "1") {
            let wall = real_unix_ms().saturating_add(s.wall_offset_ms);
            let start_wall = *s.start_unix_ms.get_or_insert(wall);
            return u64::try_from(wall.saturating_sub(start_wall)).unwrap_or(0);
        }
        let view = s.anchor_view_ms + (now - s.anchor_real_ms) * s.rate + s.mono_offset_ms;
        view.max(0.0) as u64
    }

    pub fn wall_offset_ms() -> i64 {
        let now = real_ms();
        let mut s = STATE.lock();
        refresh(&mut s, now);
        s.wall_offset_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_forward_and_the_wall_clock_is_after_2020() {
        let a = monotonic_ms();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(monotonic_ms() >= a + 4);
        assert!(unix_ms() > 1_577_836_800_000);
    }
}
