//! `rqctl run`'s status line while it waits for a slot: "waiting: 12th in lane batch,
//! load/min binds, ~4 s". Polls `Client::waiter_progress` once a second; on a terminal
//! the line is rewritten in place (and cleared once the wait ends), otherwise (with
//! `--verbose`) a plain line is printed when it changes, at most every 10 s.

use std::io::Write as _;
use std::time::{Duration, Instant};

use ratequeue_client::api::{self, LimitKind, Per};
use ratequeue_client::Client;

/// How often the leader is asked: one cheap read per second per waiting rqctl.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// A plain (not a terminal) status line is printed at most this often.
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", …
pub fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// "~0.4 s", "~4.2 s", "~42 s", "~3 min", "~2 h".
pub fn approx(ms: u64) -> String {
    match ms {
        0..=9_949 => format!("~{:.1} s", ms as f64 / 1000.0),
        9_950..=119_999 => format!("~{} s", ms.div_ceil(1000)),
        120_000..=7_199_999 => format!("~{} min", ms.div_ceil(60_000)),
        _ => format!("~{} h", ms.div_ceil(3_600_000)),
    }
}

/// A window as a rate unit: "/s", "/min", "/h", "/day", else "/N ms".
fn per_window(window_ms: u64) -> String {
    match window_ms {
        1_000 => "/s".into(),
        60_000 => "/min".into(),
        3_600_000 => "/h".into(),
        86_400_000 => "/day".into(),
        ms => format!("/{ms} ms"),
    }
}

/// The binding limit's name: "concurrency", "requests/min", "load/min", "provider
/// pause"; `rate` is the resource's rate list when known.
pub fn limit_name(p: &api::WaiterProgress, rate: Option<&[api::Rate]>) -> Option<String> {
    let kind = p.binding_limit?;
    let bucket = p
        .binding_bucket
        .and_then(|i| rate?.get(usize::try_from(i).ok()?).copied());
    Some(match (kind, bucket) {
        (LimitKind::Concurrency, _) => "concurrency".into(),
        (LimitKind::Provider, _) => "provider pause".into(),
        (_, Some(r)) => {
            let what = match r.per {
                Per::Request => "requests",
                Per::Load => "load",
            };
            format!("{what}{}", per_window(r.window_ms))
        }
        (LimitKind::Request, None) => "request rate".into(),
        (LimitKind::Load, None) => "load rate".into(),
    })
}

/// The status line of one answer.
pub fn line(p: &api::WaiterProgress, rate: Option<&[api::Rate]>) -> String {
    let position = if p.position_exact {
        ordinal(p.position)
    } else {
        format!("{}+", ordinal(p.position))
    };
    let binds = match limit_name(p, rate) {
        Some(name) => format!("{name} binds"),
        None => "waiting for those ahead".into(),
    };
    format!(
        "waiting: {position} in lane {}, {binds}, {}",
        p.lane,
        approx(p.estimated_wait_ms)
    )
}

/// Shows the status until dropped (the acquire ended); never returns.
pub async fn show(
    client: &Client,
    resource: &str,
    request_id: &str,
    tty: bool,
) -> std::convert::Infallible {
    let mut rate: Option<Vec<api::Rate>> = None;
    let mut last: Option<(String, Instant)> = None;
    loop {
        tokio::time::sleep(POLL_EVERY).await;
        let Ok(Some(p)) = client.waiter_progress(resource, request_id).await else {
            continue;
        };
        if p.binding_bucket.is_some() && rate.is_none() {
            // Once, to name the bucket by its window; a key that may not read it keeps
            // the generic name.
            rate = Some(
                client
                    .get_resource(resource)
                    .await
                    .map(|r| r.config.rate)
                    .unwrap_or_default(),
            );
        }
        let text = line(&p, rate.as_deref());
        if tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{text}");
            let _ = err.flush();
        } else if last
            .as_ref()
            .is_none_or(|(t, at)| *t != text && at.elapsed() >= PLAIN_EVERY)
        {
            eprintln!("rqctl run: {text}");
            last = Some((text, Instant::now()));
        }
    }
}

/// Clears a terminal's status line.
pub fn clear(tty: bool) {
    if tty {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(kind: Option<LimitKind>, bucket: Option<u32>) -> api::WaiterProgress {
        api::WaiterProgress {
            resource: "r".into(),
            request_id: "x".into(),
            lane: "batch".into(),
            priority: 10,
            load: 1,
            position: 12,
            position_exact: true,
            ahead_in_resource: 30,
            queued_in_resource: 40,
            binding_limit: kind,
            binding_bucket: bucket,
            estimated_wait_ms: 4_000,
            waited_ms: 100,
        }
    }

    #[test]
    fn the_line_names_position_lane_limit_and_wait() {
        let rate = [
            api::Rate {
                per: Per::Request,
                limit: 60,
                window_ms: 60_000,
            },
            api::Rate {
                per: Per::Load,
                limit: 90_000,
                window_ms: 60_000,
            },
        ];
        let p = progress(Some(LimitKind::Load), Some(1));
        assert_eq!(
            line(&p, Some(&rate)),
            "waiting: 12th in lane batch, load/min binds, ~4.0 s"
        );
        assert_eq!(
            line(&p, None),
            "waiting: 12th in lane batch, load rate binds, ~4.0 s"
        );
        let mut p = progress(Some(LimitKind::Concurrency), None);
        p.position = 1001;
        p.position_exact = false;
        p.estimated_wait_ms = 200_000;
        assert_eq!(
            line(&p, None),
            "waiting: 1001st+ in lane batch, concurrency binds, ~4 min"
        );
        let p = progress(None, None);
        assert_eq!(
            line(&p, None),
            "waiting: 12th in lane batch, waiting for those ahead, ~4.0 s"
        );
    }

    #[test]
    fn ordinals_and_durations() {
        let o: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .map(ordinal)
            .into();
        assert_eq!(
            o,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
        assert_eq!(approx(400), "~0.4 s");
        assert_eq!(approx(42_000), "~42 s");
        assert_eq!(approx(7_200_000), "~2 h");
    }
}
