//! Prometheus metrics: counters and histograms kept in memory, rendered as text.
//!
//! Deliberately small and dependency-free: atomics for global figures, one mutex-held
//! map for per-resource figures. Gauges that live elsewhere (leases held, queue
//! lengths, Raft indexes) are read at scrape time.
//!
//! Label sets are bounded (issue 15, obs. 5): a `resource` label names an existing
//! resource, at most `RESOURCES_TRACKED_MAX` of them, and a `lane` label a lane the
//! resource's config names or `default`; everything else (made-up lane names, unknown
//! or deleted resources, resources past the bound) is counted under `OTHER`, which
//! can never be a resource or lane name. Series of deleted resources are dropped at
//! the next scrape.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use ratequeue_core::config::DEFAULT_LANE;
use ratequeue_core::{LimitKind, Refusal, ResourceConfig, Shadow, ShadowDecision};

/// Per-resource series are kept for at most this many resources; the rest share `OTHER`.
pub const RESOURCES_TRACKED_MAX: usize = 1_000;
/// The label value of everything past a bound (not a valid resource or lane name).
pub const OTHER: &str = "(other)";

/// The `lane` label of a grant in `lane` of a resource with `config`.
pub fn lane_label<'a>(config: Option<&ResourceConfig>, lane: &'a str) -> &'a str {
    if lane == DEFAULT_LANE || config.is_some_and(|c| c.lanes.contains_key(lane)) {
        lane
    } else {
        OTHER
    }
}

/// Upper bounds (inclusive) of histogram buckets.
const WAIT_MS_BUCKETS: [u64; 12] = [0, 1, 2, 5, 10, 25, 50, 100, 250, 1_000, 5_000, 30_000];
const BATCH_BUCKETS: [u64; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 512, 4_096];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: u64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[u64], v: u64) {
        if self.counts.len() != bounds.len() {
            self.counts = vec![0; bounds.len()];
        }
        for (i, b) in bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum = self.sum.saturating_add(v);
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[u64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in bounds.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
struct PerResource {
    grants: BTreeMap<String, u64>,
    refusals: BTreeMap<&'static str, u64>,
    wait_ms: Histogram,
    /// Dry-run grants by (shadow decision, binding limit): both from fixed sets.
    shadows: BTreeMap<(&'static str, &'static str), u64>,
    /// The wait enforce would have imposed on dry-run grants that would have waited.
    shadow_wait_ms: Histogram,
}

/// The API listener's connection figures (`listener.rs` keeps them).
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub open: AtomicUsize,
    pub refused_total: AtomicU64,
    pub refused_per_source_total: AtomicU64,
    pub header_timeouts_total: AtomicU64,
    pub idle_closed_total: AtomicU64,
    /// When the last "connection refused" line was logged (ms since the listener
    /// started), so a flood logs once a second, not once a connection.
    pub last_refusal_log_ms: AtomicU64,
}

#[derive(Default)]
pub struct Metrics {
    pub connections: Arc<ConnectionStats>,
    resources: Mutex<BTreeMap<String, PerResource>>,
    batch_size: Mutex<Histogram>,
    apply_rejections: AtomicU64,
    http_requests: AtomicU64,
    unwritten_touches: AtomicU64,
    auth_failures: AtomicU64,
    auth_throttled: AtomicU64,
}

fn refusal_code(r: &Refusal) -> &'static str {
    match r {
        Refusal::ResourceNotFound => "resource_not_found",
        Refusal::LoadExceedsLimit { .. } => "load_exceeds_limit",
        Refusal::QueueFull { .. } => "queue_full",
        Refusal::WouldBlock { .. } => "would_block",
        Refusal::WaitTimeout { .. } => "wait_timeout",
        Refusal::QuotaExceeded { .. } => "quota_exceeded",
        Refusal::RequestIdReused => "request_id_reused",
    }
}

impl Metrics {
    /// `resource` must be an existing resource's name or `OTHER`.
    fn with_resource(&self, resource: &str, f: impl FnOnce(&mut PerResource)) {
        let mut map = self.resources.lock();
        let resource = if map.contains_key(resource) || map.len() < RESOURCES_TRACKED_MAX {
            resource
        } else {
            OTHER
        };
        match map.get_mut(resource) {
            Some(r) => f(r),
            None => f(map.entry(resource.to_owned()).or_default()),
        }
    }

    /// A grant in `lane` (a `lane_label`) of the existing `resource`.
    pub fn granted(&self, resource: &str, lane: &str, queued_ms: u64) {
        self.with_resource(resource, |r| {
            match r.grants.get_mut(lane) {
                Some(n) => *n += 1,
                None => {
                    r.grants.insert(lane.to_owned(), 1);
                }
            }
            r.wait_ms.observe(&WAIT_MS_BUCKETS, queued_ms);
        });
    }

    /// A dry-run grant on the existing `resource` and what enforce would have done.
    pub fn shadow(&self, resource: &str, shadow: &Shadow) {
        let decision = match shadow.decision {
            ShadowDecision::Grant => "grant",
            ShadowDecision::Wait => "wait",
            ShadowDecision::WouldBlock => "would_block",
            ShadowDecision::WaitTimeout => "wait_timeout",
            ShadowDecision::LoadExceedsLimit => "load_exceeds_limit",
        };
        let limit = match shadow.binding {
            None => "none",
            Some(LimitKind::Concurrency) => "concurrency",
            Some(LimitKind::Request) => "request",
            Some(LimitKind::Load) => "load",
            Some(LimitKind::Provider) => "provider",
        };
        self.with_resource(resource, |r| {
            *r.shadows.entry((decision, limit)).or_default() += 1;
            if shadow.wait_ms > 0 {
                r.shadow_wait_ms.observe(&WAIT_MS_BUCKETS, shadow.wait_ms);
            }
        });
    }

    /// A refusal on `resource`: an existing resource's name, or `OTHER`.
    pub fn refused(&self, resource: &str, refusal: &Refusal) {
        let code = refusal_code(refusal);
        self.with_resource(resource, |r| *r.refusals.entry(code).or_default() += 1);
    }

    pub fn batch(&self, commands: usize) {
        self.batch_size
            .lock()
            .observe(&BATCH_BUCKETS, commands as u64);
    }

    pub fn apply_rejection(&self) {
        self.apply_rejections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn http_request(&self) {
        self.http_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A release or renew answered without a Raft write.
    pub fn unwritten_touch(&self) {
        self.unwritten_touches.fetch_add(1, Ordering::Relaxed);
    }

    pub fn auth_failure(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn auth_throttled(&self) {
        self.auth_throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops the series of resources that no longer exist.
    pub fn retain_resources(&self, exists: impl Fn(&str) -> bool) {
        self.resources
            .lock()
            .retain(|name, _| name == OTHER || exists(name));
    }

    /// Renders every series; `gauges` are figures read by the caller at scrape time.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP ratequeue_apply_rejections_total Grants the speculative state allowed but the log rejected (should stay 0).\n# TYPE ratequeue_apply_rejections_total counter\nratequeue_apply_rejections_total {}",
            self.apply_rejections.load(Ordering::Relaxed)
        );
        let counters = [
            (
                "ratequeue_http_requests_total",
                "HTTP requests served by the lease endpoints.",
                &self.http_requests,
            ),
            (
                "ratequeue_unwritten_touches_total",
                "Releases and renews answered without a Raft write (not the caller's lease, or already final).",
                &self.unwritten_touches,
            ),
            (
                "ratequeue_auth_failures_total",
                "Requests with a missing, unknown or expired token.",
                &self.auth_failures,
            ),
            (
                "ratequeue_auth_throttled_total",
                "Requests refused because their source failed authentication too often.",
                &self.auth_throttled,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let conn = &self.connections;
        let _ = writeln!(
            out,
            "# HELP ratequeue_api_connections Open connections on the API listener.\n# TYPE ratequeue_api_connections gauge\nratequeue_api_connections {}",
            conn.open.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP ratequeue_api_connections_closed_total Connections the API listener refused or closed, by the bound that was reached.\n# TYPE ratequeue_api_connections_closed_total counter"
        );
        for (reason, c) in [
            ("connections_max", &conn.refused_total),
            ("connections_per_source_max", &conn.refused_per_source_total),
            ("header_read_timeout", &conn.header_timeouts_total),
            ("idle_timeout", &conn.idle_closed_total),
        ] {
            let _ = writeln!(
                out,
                "ratequeue_api_connections_closed_total{{reason=\"{reason}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP ratequeue_batch_commands Commands per Raft entry.\n# TYPE ratequeue_batch_commands histogram");
        self.batch_size
            .lock()
            .render(&mut out, "ratequeue_batch_commands", "", &BATCH_BUCKETS);
        let map = self.resources.lock();
        let _ = writeln!(out, "# TYPE ratequeue_grants_total counter");
        for (res, r) in map.iter() {
            for (lane, n) in &r.grants {
                let _ = writeln!(
                    out,
                    "ratequeue_grants_total{{resource=\"{res}\",lane=\"{lane}\"}} {n}"
                );
            }
        }
        let _ = writeln!(out, "# TYPE ratequeue_refusals_total counter");
        for (res, r) in map.iter() {
            for (code, n) in &r.refusals {
                let _ = writeln!(
                    out,
                    "ratequeue_refusals_total{{resource=\"{res}\",code=\"{code}\"}} {n}"
                );
            }
        }
        let _ = writeln!(out, "# HELP ratequeue_dry_run_grants_total Grants on dry-run resources by what enforce would have done.\n# TYPE ratequeue_dry_run_grants_total counter");
        for (res, r) in map.iter() {
            for ((decision, limit), n) in &r.shadows {
                let _ = writeln!(
                    out,
                    "ratequeue_dry_run_grants_total{{resource=\"{res}\",decision=\"{decision}\",limit=\"{limit}\"}} {n}"
                );
            }
        }
        let _ = writeln!(out, "# HELP ratequeue_dry_run_wait_ms The wait enforce would have imposed on dry-run grants.\n# TYPE ratequeue_dry_run_wait_ms histogram");
        for (res, r) in map.iter().filter(|(_, r)| !r.shadows.is_empty()) {
            let labels = format!("resource=\"{res}\"");
            r.shadow_wait_ms.render(
                &mut out,
                "ratequeue_dry_run_wait_ms",
                &labels,
                &WAIT_MS_BUCKETS,
            );
        }
        let _ = writeln!(out, "# HELP ratequeue_queue_wait_ms Time from enqueue to committed grant.\n# TYPE ratequeue_queue_wait_ms histogram");
        for (res, r) in map.iter() {
            let labels = format!("resource=\"{res}\"");
            r.wait_ms.render(
                &mut out,
                "ratequeue_queue_wait_ms",
                &labels,
                &WAIT_MS_BUCKETS,
            );
        }
        out
    }
}

/// This process's resident set size, from `/proc/self/status` (0 where it is missing).
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let kb = s.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
            kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}
