//! Prometheus metrics: counters and histograms kept in memory, rendered as text.
//!
//! Deliberately small and dependency-free: atomics for global figures, one mutex-held
//! map for per-resource figures (bounded by the resource count). Gauges that live
//! elsewhere (leases held, queue lengths, Raft indexes) are read at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use ratequeue_core::Refusal;

/// Per-resource series are kept for at most this many resources.
const RESOURCES_TRACKED_MAX: usize = 10_000;

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
}

#[derive(Default)]
pub struct Metrics {
    resources: Mutex<BTreeMap<String, PerResource>>,
    batch_size: Mutex<Histogram>,
    apply_rejections: AtomicU64,
    http_requests: AtomicU64,
}

fn refusal_code(r: &Refusal) -> &'static str {
    match r {
        Refusal::ResourceNotFound => "resource_not_found",
        Refusal::LoadExceedsLimit { .. } => "load_exceeds_limit",
        Refusal::QueueFull { .. } => "queue_full",
        Refusal::WouldBlock { .. } => "would_block",
        Refusal::WaitTimeout { .. } => "wait_timeout",
    }
}

impl Metrics {
    fn with_resource(&self, resource: &str, f: impl FnOnce(&mut PerResource)) {
        let mut map = self.resources.lock();
        if !map.contains_key(resource) && map.len() >= RESOURCES_TRACKED_MAX {
            return;
        }
        f(map.entry(resource.to_owned()).or_default());
    }

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
        let _ = writeln!(
            out,
            "# TYPE ratequeue_http_requests_total counter\nratequeue_http_requests_total {}",
            self.http_requests.load(Ordering::Relaxed)
        );
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
