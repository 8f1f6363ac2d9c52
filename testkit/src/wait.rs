//! Waiting is polling with a deadline, never a sleep standing in for a condition.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Pause between two polls.
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `f` until it returns `Some`, or fails after `timeout` naming `what`.
pub async fn poll_until<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `poll_until` for tests: panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll_until(timeout, what, f).await {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}
