//! Provider feedback: a lease holder's report of what the provider answered (remaining
//! requests and tokens, reset times, retry-after, a 429), applied to the lease's resource
//! by its `feedback` policy. A report only ever takes budget away: a bucket is lowered to
//! the provider's figure, never raised (so never above its configured limit), and a 429
//! pauses grants until the provider's reset, else for an exponential backoff. All of it
//! in cluster time, through the log, like every other change.

use super::{LeaseId, Outcome, Rejection, Report, State};
use crate::config::Per;
use crate::PAUSE_MS_MAX;

impl State {
    pub(super) fn report(&mut self, id: LeaseId, report: &Report) -> Outcome {
        let resource = match self.live(id) {
            Ok(l) => l.resource.clone(),
            Err(e) => return Outcome::Rejected(e),
        };
        let durations = [
            report.reset_requests_ms,
            report.reset_tokens_ms,
            report.retry_after_ms,
        ];
        if durations.iter().flatten().any(|&ms| ms > PAUSE_MS_MAX) {
            return Outcome::Rejected(Rejection::Invalid(format!(
                "report durations must be at most {PAUSE_MS_MAX} ms"
            )));
        }
        let now = self.now_ms;
        let Some(r) = self.resources.get_mut(&resource) else {
            return Outcome::Rejected(Rejection::ResourceNotFound);
        };
        if let Some(policy) = r.config.feedback {
            for (per, remaining) in [
                (Per::Request, report.remaining_requests),
                (Per::Load, report.remaining_tokens),
            ] {
                let (Some(remaining), Some(i)) = (remaining, policy.bucket(&r.config.rate, per))
                else {
                    continue;
                };
                if let (Some(rl), Some(b)) = (r.config.rate.get(i), r.buckets.get_mut(i)) {
                    b.lower_to(rl, now, remaining);
                }
            }
            if report.rate_limited {
                // The provider's own word on when to come back, else the latest reset it
                // named, else our backoff.
                let reset = report
                    .retry_after_ms
                    .or(report.reset_requests_ms.max(report.reset_tokens_ms));
                let pause = reset.unwrap_or_else(|| {
                    let shift = r.rate_limited_streak.min(63);
                    policy
                        .backoff_ms
                        .saturating_mul(1u64 << shift)
                        .min(policy.backoff_max_ms)
                });
                r.rate_limited_streak = r.rate_limited_streak.saturating_add(1);
                r.paused_until_ms = r.paused_until_ms.max(now.saturating_add(pause));
            } else {
                r.rate_limited_streak = 0;
            }
        }
        let paused_ms = r.paused_until_ms.saturating_sub(now);
        Outcome::Reported {
            limits: self.limits(&resource),
            paused_ms,
        }
    }
}
