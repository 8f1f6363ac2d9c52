//! Resource configuration: the limits of one resource and their validation.
//!
//! Owns the rules of DESIGN.md §2 on what a valid resource is. It never touches
//! live state (leases, buckets, waiters); `state/` does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    HOLDER_LEN_MAX, LANES_PER_RESOURCE_MAX, LANE_WEIGHT_MAX, LIMIT_MAX, NAME_LEN_MAX, PAUSE_MS_MAX,
    QUEUE_LEN_MAX, RATE_BUCKETS_MAX, TTL_MS_MAX, TTL_MS_MIN, WINDOW_MS_MAX,
};

/// What a rate bucket counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Per {
    /// One unit per grant.
    Request,
    /// The request's `load` per grant.
    Load,
}

/// One token bucket: capacity `limit`, refilled continuously at `limit / window_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub per: Per,
    pub limit: u64,
    pub window_ms: u64,
}

/// Per-lane settings; lanes that are not configured get weight 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneConfig {
    pub weight: u32,
}

impl Default for LaneConfig {
    fn default() -> Self {
        LaneConfig { weight: 1 }
    }
}

/// Whether a resource's limits are enforced, or only evaluated (docs/semantics.md,
/// "Dry-run mode").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Grants wait for room; refusals are answered.
    #[default]
    Enforce,
    /// Every acquire is granted at once; each grant records what `Enforce` would have
    /// done with it (`state::Shadow`), and only what enforce would also have granted is
    /// charged to the limits.
    DryRun,
}

/// How a resource takes the provider's own figures (`Command::Report`, docs/semantics.md,
/// "Provider feedback"). Without it, reports change nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    /// The `per: request` bucket with this window takes the provider's remaining
    /// requests (`None`: the one with the shortest window).
    pub requests_window_ms: Option<u64>,
    /// The `per: load` bucket with this window takes the provider's remaining tokens
    /// (`None`: the one with the shortest window).
    pub tokens_window_ms: Option<u64>,
    /// After a 429 that names no reset: the first pause, doubled for each 429 in a row,
    /// at most `backoff_max_ms`.
    pub backoff_ms: u64,
    pub backoff_max_ms: u64,
}

pub const DEFAULT_BACKOFF_MS: u64 = 1_000;
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 60_000;

impl Default for Feedback {
    fn default() -> Self {
        Feedback {
            requests_window_ms: None,
            tokens_window_ms: None,
            backoff_ms: DEFAULT_BACKOFF_MS,
            backoff_max_ms: DEFAULT_BACKOFF_MAX_MS,
        }
    }
}

impl Feedback {
    /// The index in `rate` of the bucket of `per` that takes the provider's figure.
    pub fn bucket(&self, rate: &[RateLimit], per: Per) -> Option<usize> {
        let window = match per {
            Per::Request => self.requests_window_ms,
            Per::Load => self.tokens_window_ms,
        };
        rate.iter()
            .enumerate()
            .filter(|(_, r)| r.per == per && window.is_none_or(|w| r.window_ms == w))
            .min_by_key(|(i, r)| (r.window_ms, *i))
            .map(|(i, _)| i)
    }
}

/// The limits and queueing settings of one resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceConfig {
    /// At most this many leases held at once.
    pub concurrency: Option<u32>,
    pub rate: Vec<RateLimit>,
    pub lanes: BTreeMap<String, LaneConfig>,
    pub default_ttl_ms: u64,
    /// Maximum number of waiters queued on this resource (all lanes together).
    pub max_queue: u32,
    pub mode: Mode,
    /// Provider feedback policy; `None`: reports are accepted and change nothing.
    pub feedback: Option<Feedback>,
}

pub const DEFAULT_TTL_MS: u64 = 30_000;
pub const DEFAULT_MAX_QUEUE: u32 = 10_000;
pub const DEFAULT_LANE: &str = "default";
pub const DEFAULT_PRIORITY: i32 = 10;

impl ResourceConfig {
    /// A resource with only a concurrency limit and default settings.
    pub fn concurrency(n: u32) -> Self {
        ResourceConfig {
            concurrency: Some(n),
            rate: Vec::new(),
            lanes: BTreeMap::new(),
            default_ttl_ms: DEFAULT_TTL_MS,
            max_queue: DEFAULT_MAX_QUEUE,
            mode: Mode::Enforce,
            feedback: None,
        }
    }

    /// A resource with only rate buckets and default settings.
    pub fn rate(rate: Vec<RateLimit>) -> Self {
        ResourceConfig {
            concurrency: None,
            rate,
            lanes: BTreeMap::new(),
            default_ttl_ms: DEFAULT_TTL_MS,
            max_queue: DEFAULT_MAX_QUEUE,
            mode: Mode::Enforce,
            feedback: None,
        }
    }

    /// The same config in dry-run mode.
    pub fn dry_run(self) -> Self {
        ResourceConfig {
            mode: Mode::DryRun,
            ..self
        }
    }

    pub fn lane_weight(&self, lane: &str) -> u32 {
        self.lanes.get(lane).map_or(1, |l| l.weight)
    }

    /// The largest load a single request may ever carry: the smallest `per: load` capacity.
    pub fn load_max(&self) -> Option<u64> {
        self.rate
            .iter()
            .filter(|r| r.per == Per::Load)
            .map(|r| r.limit)
            .min()
    }

    /// Checks the config against DESIGN.md §2 and the bounds in `lib.rs`.
    pub fn validate(&self) -> Result<(), String> {
        if self.concurrency.is_none() && self.rate.is_empty() {
            return Err("a resource needs at least one limit (concurrency or rate)".into());
        }
        if let Some(c) = self.concurrency {
            if c == 0 || u64::from(c) > LIMIT_MAX {
                return Err(format!("concurrency must be in 1..={LIMIT_MAX}"));
            }
        }
        if self.rate.len() > RATE_BUCKETS_MAX {
            return Err(format!("at most {RATE_BUCKETS_MAX} rate buckets"));
        }
        for r in &self.rate {
            if r.limit == 0 || r.limit > LIMIT_MAX {
                return Err(format!("rate limit must be in 1..={LIMIT_MAX}"));
            }
            if r.window_ms == 0 || r.window_ms > WINDOW_MS_MAX {
                return Err(format!("window_ms must be in 1..={WINDOW_MS_MAX}"));
            }
        }
        if self.lanes.len() > LANES_PER_RESOURCE_MAX {
            return Err(format!("at most {LANES_PER_RESOURCE_MAX} configured lanes"));
        }
        for (name, lane) in &self.lanes {
            validate_name(name).map_err(|e| format!("lane {e}"))?;
            if lane.weight == 0 || lane.weight > LANE_WEIGHT_MAX {
                return Err(format!("lane weight must be in 1..={LANE_WEIGHT_MAX}"));
            }
        }
        if !(TTL_MS_MIN..=TTL_MS_MAX).contains(&self.default_ttl_ms) {
            return Err(format!(
                "default_ttl_ms must be in {TTL_MS_MIN}..={TTL_MS_MAX}"
            ));
        }
        if self.max_queue > QUEUE_LEN_MAX {
            return Err(format!("max_queue must be in 0..={QUEUE_LEN_MAX}"));
        }
        if let Some(f) = &self.feedback {
            for (window, per, name) in [
                (f.requests_window_ms, Per::Request, "requests_window_ms"),
                (f.tokens_window_ms, Per::Load, "tokens_window_ms"),
            ] {
                if window.is_some() && f.bucket(&self.rate, per).is_none() {
                    return Err(format!("feedback {name} names no rate bucket of that kind"));
                }
            }
            if f.backoff_ms == 0
                || f.backoff_ms > f.backoff_max_ms
                || f.backoff_max_ms > PAUSE_MS_MAX
            {
                return Err(format!(
                    "feedback needs 1 <= backoff_ms <= backoff_max_ms <= {PAUSE_MS_MAX}"
                ));
            }
        }
        Ok(())
    }
}

/// Resource and lane names: 1–128 chars of `[A-Za-z0-9._:-]`.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > NAME_LEN_MAX {
        return Err(format!("name must be 1..={NAME_LEN_MAX} characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err("name may contain only [A-Za-z0-9._:-]".into());
    }
    Ok(())
}

/// A lease's holder label: 1–128 bytes of printable ASCII (space to `~`). It is only
/// shown (dashboard, lease listings), so control characters and anything a terminal or
/// a page could mis-render are refused rather than escaped everywhere it appears.
pub fn validate_holder(holder: &str) -> Result<(), String> {
    if holder.is_empty() || holder.len() > HOLDER_LEN_MAX {
        return Err(format!("holder must be 1..={HOLDER_LEN_MAX} characters"));
    }
    if !holder.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err("holder may contain only printable ASCII (space to ~)".into());
    }
    Ok(())
}
