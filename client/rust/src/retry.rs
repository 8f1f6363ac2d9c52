//! The retry policy, sans-IO: which failures are retried, how long to back off, when to
//! give up, and which error the caller finally sees.
//!
//! Owns: `Backoff`, `Failure`, `Idempotency`, `RetryState`. Must never do I/O or read a
//! clock: `now` and the random source are parameters, so the policy is tested exactly.
//!
//! The rules:
//! - A failure that certainly did not apply (connection refused, `no_leader`,
//!   `shutting_down`, a redirect loop) is retried by every call.
//! - A failure that may have applied (timeout or reset after sending, `504
//!   commit_timeout`) is retried only by idempotent calls: acquire (it carries a
//!   `request_id`), release and renew (idempotent by lease id), reads and `PUT`s. Any
//!   other call returns `Error::Ambiguous` at once.
//! - Retries stop at `attempts_max` or when the next sleep would pass the call's
//!   deadline. The error returned is then `Ambiguous` if any attempt may have applied,
//!   else the last definite failure.

use std::time::{Duration, Instant};

use rand::Rng;

use crate::config::Timing;
use crate::error::{ApiError, Error};

/// Exponential backoff with full jitter, floored by the server's `retry_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn new(timing: &Timing) -> Self {
        Backoff {
            initial: timing.backoff_initial,
            max: timing.backoff_max,
        }
    }

    /// The largest sleep before retry number `attempt` (1 = the first retry):
    /// `min(max, initial * 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(30);
        self.initial.saturating_mul(1u32 << shift).min(self.max)
    }

    /// The sleep before retry number `attempt`: uniform in `[0, ceiling]` ("full
    /// jitter", so a crowd of clients spreads out), but never less than `retry_after`
    /// (plus up to `initial` of jitter, so the crowd does not return at one instant).
    pub fn delay<R: Rng + ?Sized>(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut R,
    ) -> Duration {
        let jittered = uniform(rng, self.ceiling(attempt));
        match retry_after {
            Some(ra) => jittered.max(ra.saturating_add(uniform(rng, self.initial))),
            None => jittered,
        }
    }
}

fn uniform<R: Rng + ?Sized>(rng: &mut R, max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(rng.gen_range(0..=nanos))
    }
}

/// Whether a call may be sent again after an attempt that may have been applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotency {
    /// Applying the request twice is the same as once (acquire with a `request_id`,
    /// release, renew, reads, `PUT`s).
    Idempotent,
    /// A possibly applied attempt ends the call with `Error::Ambiguous`.
    NotIdempotent,
}

/// Why one attempt did not produce a definite answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The request never reached a server (connection refused, connect timeout).
    Unreachable { node: String, message: String },
    /// The server said it did not apply the request (`no_leader`, `shutting_down`).
    NotApplied(ApiError),
    /// The request may have been applied: sent, then timed out or reset, or `504
    /// commit_timeout`.
    MaybeApplied { message: String },
    /// More than `redirects_max` redirects in one attempt, or one without a Location.
    RedirectLoop { message: String },
}

impl Failure {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::NotApplied(e) => e.retry_after,
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Failure::Unreachable { node, message } => format!("cannot reach {node}: {message}"),
            Failure::NotApplied(e) => e.to_string(),
            Failure::MaybeApplied { message } | Failure::RedirectLoop { message } => {
                message.clone()
            }
        }
    }
}

/// What to do after a failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Sleep this long (possibly zero), then try again.
    Retry(Duration),
    /// Stop and return this error.
    GiveUp(Error),
}

/// The retry bookkeeping of one call.
#[derive(Clone, Debug)]
pub struct RetryState {
    idempotency: Idempotency,
    deadline: Instant,
    request_id: Option<String>,
    attempts_max: u32,
    backoff: Backoff,
    /// Failed attempts so far.
    attempts: u32,
    /// Whether some attempt may have been applied.
    ambiguous: bool,
}

impl RetryState {
    pub fn new(
        timing: &Timing,
        idempotency: Idempotency,
        deadline: Instant,
        request_id: Option<String>,
    ) -> Self {
        RetryState {
            idempotency,
            deadline,
            request_id,
            attempts_max: timing.attempts_max,
            backoff: Backoff::new(timing),
            attempts: 0,
            ambiguous: false,
        }
    }

    /// Whether an earlier attempt may have been applied.
    pub fn ambiguous(&self) -> bool {
        self.ambiguous
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Decides after a failed attempt. `fast_failover`: another node that has not
    /// refused a connection in this round may answer at once, so retry without sleeping.
    pub fn on_failure<R: Rng + ?Sized>(
        &mut self,
        failure: Failure,
        now: Instant,
        fast_failover: bool,
        rng: &mut R,
    ) -> Decision {
        self.attempts += 1;
        if matches!(failure, Failure::MaybeApplied { .. }) {
            self.ambiguous = true;
            if self.idempotency == Idempotency::NotIdempotent {
                return Decision::GiveUp(self.final_error(&failure));
            }
        }
        if self.attempts >= self.attempts_max {
            return Decision::GiveUp(self.final_error(&failure));
        }
        let delay = if fast_failover && matches!(failure, Failure::Unreachable { .. }) {
            Duration::ZERO
        } else {
            self.backoff
                .delay(self.attempts, failure.retry_after(), rng)
        };
        if now + delay > self.deadline {
            return Decision::GiveUp(self.final_error(&failure));
        }
        Decision::Retry(delay)
    }

    /// The error a caller sees when retrying stops after `failure`.
    pub fn final_error(&self, failure: &Failure) -> Error {
        if self.ambiguous {
            let mut message = failure.describe();
            if !matches!(failure, Failure::MaybeApplied { .. }) {
                message.push_str(" (after an earlier attempt that may have been applied)");
            }
            return Error::Ambiguous {
                message,
                request_id: self.request_id.clone(),
            };
        }
        match failure {
            Failure::NotApplied(e) => Error::Api(e.clone()),
            Failure::Unreachable { .. } | Failure::RedirectLoop { .. } => Error::Unavailable {
                message: failure.describe(),
            },
            Failure::MaybeApplied { message } => Error::Ambiguous {
                message: message.clone(),
                request_id: self.request_id.clone(),
            },
        }
    }
}

/// How a transport error (no HTTP answer) bears on whether the request was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportClass {
    /// The connection was never made: the request certainly did not arrive.
    NotSent,
    /// The request may have arrived (timeout, reset, closed mid-answer).
    MaybeSent,
    /// The request could not even be built: a bug or a bad argument, never retried.
    Fatal,
}

/// Classifies by the error's kind flags (`reqwest::Error::is_*`).
pub fn classify_transport_flags(is_builder: bool, is_connect: bool) -> TransportClass {
    if is_builder {
        TransportClass::Fatal
    } else if is_connect {
        // Includes a connect timeout: reqwest flags it as both connect and timeout.
        TransportClass::NotSent
    } else {
        TransportClass::MaybeSent
    }
}

pub(crate) fn classify_transport(e: &reqwest::Error) -> TransportClass {
    classify_transport_flags(e.is_builder(), e.is_connect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use ratequeue_api::ErrorCode;

    fn timing() -> Timing {
        Timing {
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            attempts_max: 10,
            ..Timing::default()
        }
    }

    fn no_leader(retry_ms: Option<u64>) -> Failure {
        Failure::NotApplied(ApiError {
            status: 503,
            code: ErrorCode::NoLeader,
            message: "no leader".into(),
            retry_after: retry_ms.map(Duration::from_millis),
            limit: None,
            bucket: None,
        })
    }

    fn unreachable() -> Failure {
        Failure::Unreachable {
            node: "http://n1".into(),
            message: "refused".into(),
        }
    }

    fn maybe() -> Failure {
        Failure::MaybeApplied {
            message: "reset after sending".into(),
        }
    }

    #[test]
    fn backoff_ceiling_doubles_up_to_the_max() {
        let b = Backoff::new(&timing());
        let ms: Vec<u128> = (1..=8).map(|a| b.ceiling(a).as_millis()).collect();
        assert_eq!(ms, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(2));
        assert_eq!(b.ceiling(0), Duration::from_millis(50));
    }

    #[test]
    fn backoff_delay_stays_within_bounds_and_jitters() {
        let b = Backoff::new(&timing());
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..=12 {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..200 {
                let d = b.delay(attempt, None, &mut rng);
                assert!(d <= b.ceiling(attempt), "attempt {attempt}: {d:?}");
                seen.insert(d);
            }
            assert!(seen.len() > 100, "no jitter at attempt {attempt}");
        }
    }

    #[test]
    fn backoff_respects_retry_after() {
        let b = Backoff::new(&timing());
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let d = b.delay(1, Some(Duration::from_millis(500)), &mut rng);
            assert!(d >= Duration::from_millis(500), "{d:?}");
            assert!(d <= Duration::from_millis(550), "{d:?}");
        }
    }

    #[test]
    fn not_applied_failures_retry_for_every_call() {
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(2);
        for idem in [Idempotency::Idempotent, Idempotency::NotIdempotent] {
            for f in [
                no_leader(Some(500)),
                unreachable(),
                Failure::RedirectLoop {
                    message: "x".into(),
                },
            ] {
                let mut s = RetryState::new(&timing(), idem, now + Duration::from_secs(60), None);
                match s.on_failure(f.clone(), now, false, &mut rng) {
                    Decision::Retry(d) => assert!(d <= Duration::from_secs(2)),
                    d => panic!("{f:?} {idem:?}: {d:?}"),
                }
                assert!(!s.ambiguous());
            }
        }
    }

    #[test]
    fn maybe_applied_retries_only_idempotent_calls() {
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(3);
        let deadline = now + Duration::from_secs(60);
        let mut s = RetryState::new(
            &timing(),
            Idempotency::Idempotent,
            deadline,
            Some("rid".into()),
        );
        assert!(matches!(
            s.on_failure(maybe(), now, false, &mut rng),
            Decision::Retry(_)
        ));
        assert!(s.ambiguous());

        let mut s = RetryState::new(&timing(), Idempotency::NotIdempotent, deadline, None);
        match s.on_failure(maybe(), now, false, &mut rng) {
            Decision::GiveUp(e) => assert!(e.is_ambiguous(), "{e:?}"),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn fast_failover_only_for_unreachable_nodes() {
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(4);
        let deadline = now + Duration::from_secs(60);
        let mut s = RetryState::new(&timing(), Idempotency::Idempotent, deadline, None);
        assert_eq!(
            s.on_failure(unreachable(), now, true, &mut rng),
            Decision::Retry(Duration::ZERO)
        );
        // A leaderless node's 503 carries retry_after: never skipped.
        match s.on_failure(no_leader(Some(500)), now, true, &mut rng) {
            Decision::Retry(d) => assert!(d >= Duration::from_millis(500)),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn gives_up_at_attempts_max_with_the_last_definite_error() {
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(5);
        let t = Timing {
            attempts_max: 3,
            ..timing()
        };
        let mut s = RetryState::new(
            &t,
            Idempotency::Idempotent,
            now + Duration::from_secs(600),
            None,
        );
        assert!(matches!(
            s.on_failure(unreachable(), now, false, &mut rng),
            Decision::Retry(_)
        ));
        assert!(matches!(
            s.on_failure(unreachable(), now, false, &mut rng),
            Decision::Retry(_)
        ));
        match s.on_failure(no_leader(None), now, false, &mut rng) {
            Decision::GiveUp(Error::Api(e)) => assert_eq!(e.code, ErrorCode::NoLeader),
            d => panic!("{d:?}"),
        }
        assert_eq!(s.attempts(), 3);
    }

    #[test]
    fn gives_up_before_sleeping_past_the_deadline() {
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(6);
        let mut s = RetryState::new(
            &timing(),
            Idempotency::Idempotent,
            now + Duration::from_millis(100),
            None,
        );
        // retry_after 500 ms cannot fit in a 100 ms budget.
        match s.on_failure(no_leader(Some(500)), now, false, &mut rng) {
            Decision::GiveUp(e) => assert_eq!(e.code(), Some(ErrorCode::NoLeader)),
            d => panic!("{d:?}"),
        }
        let mut s = RetryState::new(&timing(), Idempotency::Idempotent, now, None);
        match s.on_failure(
            unreachable(),
            now + Duration::from_millis(1),
            false,
            &mut rng,
        ) {
            Decision::GiveUp(Error::Unavailable { message }) => {
                assert!(message.contains("refused"))
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn an_earlier_ambiguous_attempt_makes_the_final_error_ambiguous() {
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(8);
        let t = Timing {
            attempts_max: 2,
            ..timing()
        };
        let mut s = RetryState::new(
            &t,
            Idempotency::Idempotent,
            now + Duration::from_secs(60),
            Some("req-1".into()),
        );
        assert!(matches!(
            s.on_failure(maybe(), now, false, &mut rng),
            Decision::Retry(_)
        ));
        match s.on_failure(no_leader(None), now, false, &mut rng) {
            Decision::GiveUp(Error::Ambiguous {
                request_id,
                message,
            }) => {
                assert_eq!(request_id.as_deref(), Some("req-1"));
                assert!(message.contains("earlier attempt"), "{message}");
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn transport_classes() {
        assert_eq!(classify_transport_flags(true, false), TransportClass::Fatal);
        assert_eq!(
            classify_transport_flags(false, true),
            TransportClass::NotSent
        );
        assert_eq!(
            classify_transport_flags(false, false),
            TransportClass::MaybeSent
        );
    }

    /// Real transport errors: a refused connection was never sent; a server that reads
    /// the request and never answers leaves the outcome unknown.
    #[tokio::test]
    async fn real_transport_errors_are_classified() {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let e = http
            .get(format!("http://{addr}/"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(classify_transport(&e), TransportClass::NotSent, "{e:?}");

        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (s, _) = silent.accept().await.unwrap();
                held.push(s);
            }
        });
        let e = http
            .post(format!("http://{addr}/"))
            .body("{}")
            .timeout(Duration::from_millis(200))
            .send()
            .await
            .unwrap_err();
        assert!(e.is_timeout());
        assert_eq!(classify_transport(&e), TransportClass::MaybeSent, "{e:?}");

        // A server that accepts and closes at once: reset after sending.
        let closer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closer.local_addr().unwrap();
        let server2 = tokio::spawn(async move {
            loop {
                let (s, _) = closer.accept().await.unwrap();
                drop(s);
            }
        });
        let e = http
            .post(format!("http://{addr}/"))
            .body("{}")
            .send()
            .await
            .unwrap_err();
        assert_eq!(classify_transport(&e), TransportClass::MaybeSent, "{e:?}");
        server.abort();
        server2.abort();
    }
}
