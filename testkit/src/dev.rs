//! `ratequeue dev --ephemeral --json`: a throwaway local cluster driven over stdin and
//! stdout, for test suites in any language (docs/testkit.md has the contract).
//!
//! Starts `nodes` separate `ratequeue serve` processes on a free loopback block with a
//! fresh temporary dir, waits for a serving leader, prints one JSON line describing the
//! cluster, then answers one JSON line per command line read: `kill|stop|start|pause|
//! resume <id>`, `add-member|remove-member <id>`, `status`, `wait-leader [ms]`, `quit`.
//! On EOF, `quit`, SIGTERM/SIGINT or the death of its parent it kills every node,
//! removes the dir and returns. Runs on one thread (the nodes die with the thread that
//! spawned them, see `ClusterConfig::exit_with_parent`).

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, BufReader};
use tokio::signal::unix::{signal, SignalKind};

use crate::{Cluster, ClusterConfig, TestTls};

/// Longest command line accepted; longer ones are answered with an error and skipped.
pub const LINE_BYTES_MAX: usize = 1024;
/// Nodes `--nodes` may ask for.
pub const NODES_MAX: u64 = 9;
/// How long `start` waits for the restarted process to answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `wait-leader <ms>` may ask for.
const WAIT_MS_MAX: u64 = 600_000;
/// How often the parent is checked for being gone (besides PR_SET_PDEATHSIG).
const PARENT_POLL: Duration = Duration::from_millis(250);

/// What `ratequeue dev --ephemeral` was asked for.
#[derive(Clone, Debug)]
pub struct DevOptions {
    pub nodes: u64,
    /// The `ratequeue` binary the nodes run.
    pub bin: PathBuf,
    /// Extra `serve` flags for every node.
    pub serve_args: Vec<String>,
    pub leader_timeout: Duration,
    /// `--tls` (`--tls-client-auth`): TLS with certificates the kit makes.
    pub tls: Option<TestTls>,
}

/// Runs the supervisor to the end on a single-threaded runtime of its own. Errors
/// before the first line are printed as `{"ok":false,"error":…}` and returned.
pub fn run(opts: DevOptions) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let r = rt.block_on(supervise(opts));
    // Reading stdin blocks a thread that cannot be cancelled; do not wait for it.
    rt.shutdown_background();
    r
}

fn emit(v: &Value) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}")?;
    out.flush()
}

fn error(e: impl std::fmt::Display) -> Value {
    json!({"ok": false, "error": e.to_string()})
}

/// The first line and `status`: the cluster, `"ok": true`, the current serving leader,
/// and this supervisor's own `pid`.
async fn describe(c: &Cluster) -> Value {
    let mut v = c.describe(c.serving_leader().await);
    v["ok"] = json!(true);
    v["pid"] = json!(std::process::id());
    v
}

async fn supervise(opts: DevOptions) -> anyhow::Result<()> {
    // Learn of the parent's death even if it never closes our stdin.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM);
    let parent = nix::unistd::getppid();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let stop = async move {
        let mut tick = tokio::time::interval(PARENT_POLL);
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = int.recv() => return,
                _ = tick.tick() => {
                    if nix::unistd::getppid() != parent {
                        return;
                    }
                }
            }
        }
    };
    tokio::pin!(stop);

    if !(1..=NODES_MAX).contains(&opts.nodes) {
        let e = anyhow::anyhow!("--nodes must be in 1..={NODES_MAX}");
        emit(&error(&e))?;
        return Err(e);
    }
    let mut config = ClusterConfig::new(&opts.bin)
        .nodes(opts.nodes)
        .args(&opts.serve_args)
        .leader_timeout(opts.leader_timeout);
    if let Some(t) = opts.tls {
        config = config.test_tls(t.client_auth);
    }
    let started = tokio::select! {
        r = Cluster::start(config) => r,
        () = &mut stop => return Ok(()),
    };
    let mut cluster = match started {
        Ok(c) => c,
        Err(e) => {
            emit(&error(format!("{e:#}")))?;
            return Err(e);
        }
    };
    let first = tokio::select! {
        v = describe(&cluster) => v,
        () = &mut stop => return Ok(()),
    };
    emit(&first)?;

    let mut stdin = BufReader::new(tokio::io::stdin());
    loop {
        let line = tokio::select! {
            l = next_line(&mut stdin) => l,
            () = &mut stop => break,
        };
        let line = match line {
            Ok(Some(Ok(l))) => l,
            Ok(Some(Err(too_long))) => {
                emit(&error(too_long))?;
                continue;
            }
            Ok(None) | Err(_) => break,
        };
        if line.is_empty() {
            continue;
        }
        let answer = tokio::select! {
            a = command(&mut cluster, &line) => a,
            () = &mut stop => break,
        };
        let quit = answer.is_none();
        if emit(&answer.unwrap_or_else(|| json!({"ok": true}))).is_err() || quit {
            break;
        }
    }
    // Dropping the cluster kills every node and removes the temporary dir.
    cluster.kill_all();
    drop(cluster);
    Ok(())
}

/// One line, at most `LINE_BYTES_MAX` bytes, trimmed; `None` at EOF; `Err` for a line
/// that was too long (the rest of it is skipped).
async fn next_line<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
) -> std::io::Result<Option<Result<String, String>>> {
    let mut buf = Vec::new();
    let limit = LINE_BYTES_MAX as u64 + 1;
    let n = (&mut *r).take(limit).read_until(b'\n', &mut buf).await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.len() > LINE_BYTES_MAX && !buf.ends_with(b"\n") {
        loop {
            buf.clear();
            let n = (&mut *r).take(limit).read_until(b'\n', &mut buf).await?;
            if n == 0 || buf.ends_with(b"\n") {
                break;
            }
        }
        return Ok(Some(Err(format!(
            "command line longer than {LINE_BYTES_MAX} bytes"
        ))));
    }
    Ok(Some(Ok(String::from_utf8_lossy(&buf).trim().to_owned())))
}

const USAGE: &str = "commands: kill|stop|start|pause|resume|add-member|remove-member <id>, \
                     status, wait-leader [ms], quit";

/// Answers one command; `None` for `quit`.
async fn command(c: &mut Cluster, line: &str) -> Option<Value> {
    let mut words = line.split_whitespace();
    let verb = words.next().unwrap_or_default();
    let arg = words.next();
    if words.next().is_some() {
        return Some(error(format!("too many arguments; {USAGE}")));
    }
    let r = match (verb, arg) {
        ("quit", None) => return None,
        ("status", None) => Ok(describe(c).await),
        ("wait-leader", ms) => wait_leader(c, ms).await,
        (
            "kill" | "stop" | "start" | "pause" | "resume" | "add-member" | "remove-member",
            Some(id),
        ) => match id.parse::<u64>() {
            Ok(id) => node_command(c, verb, id).await,
            Err(_) => Err(anyhow::anyhow!("node id {id:?} is not a number")),
        },
        _ => Err(anyhow::anyhow!("unknown command {line:?}; {USAGE}")),
    };
    Some(r.unwrap_or_else(|e| error(format!("{e:#}"))))
}

async fn wait_leader(c: &Cluster, ms: Option<&str>) -> anyhow::Result<Value> {
    let timeout = match ms {
        None => c.config().leader_timeout,
        Some(ms) => {
            let ms: u64 = ms
                .parse()
                .ok()
                .filter(|m| *m <= WAIT_MS_MAX)
                .with_context(|| {
                    format!("wait-leader takes a timeout in ms, at most {WAIT_MS_MAX}")
                })?;
            Duration::from_millis(ms)
        }
    };
    let l = c.wait_leader_within(timeout).await?;
    Ok(json!({"ok": true, "leader_id": l}))
}

async fn node_command(c: &mut Cluster, verb: &str, id: u64) -> anyhow::Result<Value> {
    let known = c.ids().contains(&id);
    if !known && verb != "add-member" {
        anyhow::bail!("no node {id}; nodes are {:?}", c.ids());
    }
    let running = c.is_running(id);
    let mut v = json!({"ok": true, "id": id});
    match verb {
        "kill" | "stop" | "pause" | "resume" if !running => {
            anyhow::bail!("node {id} is not running")
        }
        "kill" => c.kill(id),
        "stop" => v["exit"] = json!(c.stop(id).await?.to_string()),
        "start" if running => anyhow::bail!("node {id} is already running"),
        "start" => {
            c.spawn(id)?;
            c.wait_up(id, START_TIMEOUT).await?;
        }
        "pause" => c.pause(id)?,
        "resume" => c.resume(id)?,
        "add-member" if c.members().contains(&id) => anyhow::bail!("node {id} is a member"),
        "add-member" => c.add_member(id).await?,
        "remove-member" => c.remove_member(id).await?,
        _ => anyhow::bail!("unknown command {verb:?}"),
    }
    v["pid"] = json!(c.pid(id));
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded_and_trimmed() {
        let long = "x".repeat(LINE_BYTES_MAX + 10);
        let input = format!(" status \n{long}\nquit\nlast");
        let mut r = BufReader::new(input.as_bytes());
        assert_eq!(next_line(&mut r).await.unwrap(), Some(Ok("status".into())));
        assert!(matches!(next_line(&mut r).await.unwrap(), Some(Err(_))));
        assert_eq!(next_line(&mut r).await.unwrap(), Some(Ok("quit".into())));
        assert_eq!(next_line(&mut r).await.unwrap(), Some(Ok("last".into())));
        assert_eq!(next_line(&mut r).await.unwrap(), None);
    }
}
