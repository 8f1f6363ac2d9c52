//! `rqctl run RESOURCE [--load N …] -- COMMAND ARGS…`: hold a slot while a command runs.
//!
//! Acquires a permit (it renews itself while the command runs), starts the command with
//! inherited stdio and `RATEQUEUE_LEASE_ID` / `RATEQUEUE_FENCING_TOKEN` /
//! `RATEQUEUE_RESOURCE` in its environment, waits, releases, and exits with the
//! command's status (128+N if signal N ended it). SIGTERM and SIGHUP sent to rqctl are
//! passed on to the command; SIGINT is not (a terminal already sends it to the whole
//! process group) but no longer kills rqctl, so the release still happens. Any of the
//! three while still waiting for a slot ends rqctl (128+N) and cancels the wait. While it
//! waits, a status line on a terminal's stderr says where it stands (`progress`: position
//! in its lane, the binding limit, the estimated wait; plain lines with `--verbose` when
//! stderr is not a terminal). rqctl writes only to stderr, never into the command's stdout.

use std::future::IntoFuture as _;
use std::io::IsTerminal as _;
use std::os::unix::process::ExitStatusExt as _;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use ratequeue_client::{new_request_id, Client, Error};
use tokio::signal::unix::{signal, SignalKind};

use super::{describe, Failure, OrFail, Out, EXIT_ERROR, EXIT_TEMPFAIL};

#[derive(clap::Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct Args {
    /// The resource whose slot the command holds.
    pub resource: String,
    /// The request's weight (tokens, bytes, credits).
    #[arg(long, default_value_t = 1)]
    pub load: u64,
    /// Higher is served first within the lane.
    #[arg(long)]
    pub priority: Option<i32>,
    #[arg(long)]
    pub lane: Option<String>,
    /// Lease TTL; the slot is renewed every third of it while the command runs.
    #[arg(long, value_name = "MS")]
    pub ttl_ms: Option<u64>,
    /// How long to wait in the queue for a slot (default 30000; 0 = try once).
    #[arg(long, value_name = "MS")]
    pub wait_ms: Option<u64>,
    /// Send SIGTERM to the command if the lease is lost (default: only warn).
    #[arg(long)]
    pub kill_on_lost: bool,
    /// Report the lease and the release on stderr (and, when stderr is not a terminal,
    /// the wait's progress as plain lines).
    #[arg(short, long)]
    pub verbose: bool,
    /// The command and its arguments (after `--`).
    #[arg(required = true, num_args = 1.., value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Exit code for an acquire that failed: 75 (try again later) when waiting or retrying
/// could help, 1 otherwise.
pub fn acquire_exit_code(e: &Error) -> u8 {
    if e.is_temporary() {
        EXIT_TEMPFAIL
    } else {
        EXIT_ERROR
    }
}

/// The shell convention: the exit code, else 128 + the signal number.
pub fn status_code(status: std::process::ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code & 0xff).unwrap_or(1);
    }
    match status.signal() {
        Some(sig) => u8::try_from(128 + sig).unwrap_or(255),
        None => 1,
    }
}

fn forward(pid: Option<u32>, sig: Signal) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

pub async fn main(client: &Client, args: Args) -> Result<u8, Failure> {
    let out = Out::default();
    let mut acquire = client.acquire(args.resource.clone()).load(args.load);
    if let Some(p) = args.priority {
        acquire = acquire.priority(p);
    }
    if let Some(l) = &args.lane {
        acquire = acquire.lane(l.clone());
    }
    if let Some(t) = args.ttl_ms {
        acquire = acquire.ttl(Duration::from_millis(t));
    }
    if let Some(w) = args.wait_ms {
        acquire = acquire.timeout(Duration::from_millis(w));
    }
    let request_id = new_request_id();
    acquire = acquire.request_id(request_id.clone());
    let tty = std::io::stderr().is_terminal();
    let status = super::progress::show(client, &args.resource, &request_id, tty);
    // Catch the signals before the slot is held, so that none ends rqctl while it holds
    // one (the release must happen).
    let mut sigterm = signal(SignalKind::terminate()).or_fail(&out)?;
    let mut sighup = signal(SignalKind::hangup()).or_fail(&out)?;
    let mut sigint = signal(SignalKind::interrupt()).or_fail(&out)?;

    // While waiting for a slot, a signal ends rqctl as it would have without the
    // handlers: dropping the acquire cancels its request, and the cluster drops the
    // waiter (or releases a grant already in flight).
    let acquired = tokio::select! {
        r = acquire.into_future() => r,
        never = status, if tty || args.verbose => match never {},
        _ = sigterm.recv() => return Ok(128 + Signal::SIGTERM as u8),
        _ = sighup.recv() => return Ok(128 + Signal::SIGHUP as u8),
        _ = sigint.recv() => return Ok(128 + Signal::SIGINT as u8),
    };
    super::progress::clear(tty);
    let permit = match acquired {
        Ok(p) => p,
        Err(e) => {
            let any = anyhow::Error::new(e.clone());
            eprintln!(
                "rqctl run: no slot of {}: {}",
                args.resource,
                describe(Some(&e), &any)
            );
            return Ok(acquire_exit_code(&e));
        }
    };
    if args.verbose {
        eprintln!(
            "rqctl run: holding lease {} of {} (fencing token {}, ttl {} ms, queued {} ms)",
            permit.lease_id(),
            permit.resource(),
            permit.fencing_token(),
            permit.ttl().as_millis(),
            permit.queued().as_millis()
        );
    }

    let (program, rest) = match args.command.split_first() {
        Some(x) => x,
        None => return Err(super::usage("no command given", &out)),
    };
    let spawned = tokio::process::Command::new(program)
        .args(rest)
        .env("RATEQUEUE_LEASE_ID", permit.lease_id())
        .env(
            "RATEQUEUE_FENCING_TOKEN",
            permit.fencing_token().to_string(),
        )
        .env("RATEQUEUE_RESOURCE", permit.resource())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rqctl run: cannot start {program:?}: {e}");
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            if let Err(e) = permit.release().await {
                eprintln!("rqctl run: releasing the slot failed: {e}");
            }
            return Ok(code);
        }
    };
    let pid = child.id();

    let lost = permit.lost();
    tokio::pin!(lost);
    let mut lost_seen = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = sigterm.recv() => forward(pid, Signal::SIGTERM),
            _ = sighup.recv() => forward(pid, Signal::SIGHUP),
            _ = sigint.recv() => {}
            l = &mut lost, if !lost_seen => {
                lost_seen = true;
                eprintln!("rqctl run: WARNING: {l}; the command no longer holds a slot");
                if args.kill_on_lost {
                    forward(pid, Signal::SIGTERM);
                }
            }
        }
    };

    match permit.release().await {
        Ok(state) if args.verbose => eprintln!("rqctl run: release: {state:?}"),
        Ok(_) => {}
        Err(e) if lost_seen => {
            if args.verbose {
                eprintln!("rqctl run: release of the lost lease: {e}");
            }
        }
        Err(e) => eprintln!("rqctl run: releasing the slot failed (it lapses at its TTL): {e}"),
    }
    match status {
        Ok(s) => Ok(status_code(s)),
        Err(e) => {
            eprintln!("rqctl run: waiting for {program:?} failed: {e}");
            Ok(EXIT_ERROR)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::ExitStatus;

    #[test]
    fn exit_statuses_map_like_a_shell() {
        assert_eq!(status_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(status_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(status_code(ExitStatus::from_raw(15)), 143); // killed by SIGTERM
        assert_eq!(status_code(ExitStatus::from_raw(9)), 137);
    }

    #[test]
    fn temporary_failures_exit_75() {
        let api = |code: ratequeue_client::ErrorCode| {
            Error::Api(ratequeue_client::ApiError {
                status: code.status(),
                code,
                message: String::new(),
                retry_after: None,
                limit: None,
                bucket: None,
            })
        };
        assert_eq!(
            acquire_exit_code(&api(ratequeue_client::ErrorCode::WaitTimeout)),
            75
        );
        assert_eq!(
            acquire_exit_code(&Error::Unavailable {
                message: String::new()
            }),
            75
        );
        assert_eq!(
            acquire_exit_code(&api(ratequeue_client::ErrorCode::ResourceNotFound)),
            1
        );
        assert_eq!(
            acquire_exit_code(&api(ratequeue_client::ErrorCode::Forbidden)),
            1
        );
    }
}
