//! `ratequeue dev --ephemeral --json` (docs/testkit.md): the first line, every command,
//! and that nothing is left running or on disk after EOF, `quit`, SIGTERM or the death
//! of its parent.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ratequeue");
/// Bound on any one answer (starting a cluster included) on a busy machine.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

struct Dev {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Dev {
    fn start(nodes: u64) -> (Dev, Value) {
        let mut child = Command::new(BIN)
            .args([
                "dev",
                "--ephemeral",
                "--json",
                "--nodes",
                &nodes.to_string(),
            ])
            .args(["--serve-arg=--cache-mb=16"])
            .env("RATEQUEUE_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let lines = read_lines(child.stdout.take().unwrap());
        let mut d = Dev {
            child,
            stdin,
            lines,
        };
        let first = d.answer();
        (d, first)
    }

    fn answer(&mut self) -> Value {
        let line = self.lines.recv_timeout(ANSWER_TIMEOUT).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    fn cmd(&mut self, line: &str) -> Value {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        self.answer()
    }

    /// Waits for the supervisor's exit and returns whether it exited 0.
    fn exit_ok(&mut self) -> bool {
        let c = &mut self.child;
        poll(ANSWER_TIMEOUT, "the supervisor to exit", || {
            c.try_wait().unwrap()
        })
        .success()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_lines(out: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Alive and not a zombie.
fn alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn pids(v: &Value) -> Vec<u64> {
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["pid"].as_u64())
        .collect()
}

/// Every node process gone and the dir removed (polled: after the death of its parent
/// nothing else tells when the supervisor is done).
fn assert_cleaned_up(pids: &[u64], dir: &Path) {
    poll(Duration::from_secs(30), "the nodes to be gone", || {
        pids.iter().all(|p| !alive(*p)).then_some(())
    });
    let what = format!("{} to be removed", dir.display());
    poll(Duration::from_secs(30), &what, || {
        (!dir.exists()).then_some(())
    });
}

/// The status code of a plain HTTP/1.1 GET (no client library needed).
fn http_get_status(base: &str, path: &str, token: &str) -> u16 {
    use std::io::Read as _;
    let host = base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).unwrap();
    String::from_utf8_lossy(&head[9..12]).parse().unwrap()
}

fn node_pid(status: &Value, id: u64) -> Option<u64> {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .and_then(|n| n["pid"].as_u64())
}

#[test]
fn every_command_answers_one_line_and_quit_cleans_up() {
    let (mut d, first) = Dev::start(3);
    assert_eq!(first["ok"], true, "{first}");
    let nodes = first["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(n["id"], i as u64 + 1);
        let url = n["api_url"].as_str().unwrap();
        assert!(
            url.starts_with("http://127.") && url.ends_with(":7700"),
            "{url}"
        );
        assert!(n["peer_addr"].as_str().unwrap().ends_with(":7701"));
        assert!(alive(n["pid"].as_u64().unwrap()));
        assert!(Path::new(n["data_dir"].as_str().unwrap()).is_dir());
    }
    let dir = PathBuf::from(first["dir"].as_str().unwrap());
    assert!(dir.is_dir());
    let leader = first["leader_id"].as_u64().expect("a leader serves");
    let token = first["admin_token"].as_str().unwrap().to_owned();
    // The leader serves a leader-only request with the printed token.
    let leader_url = nodes[leader as usize - 1]["api_url"].as_str().unwrap();
    assert_eq!(http_get_status(leader_url, "/v1/resources", &token), 200);
    let mut all_pids = pids(&first);

    let follower = (1..=3).find(|i| *i != leader).unwrap();
    let old = node_pid(&first, follower).unwrap();
    let a = d.cmd(&format!("kill {follower}"));
    assert_eq!(a["ok"], true, "{a}");
    assert!(a["pid"].is_null());
    poll(
        Duration::from_secs(10),
        "the killed node to be gone",
        || (!alive(old)).then_some(()),
    );
    let s = d.cmd("status");
    assert_eq!(s["ok"], true);
    assert!(node_pid(&s, follower).is_none(), "{s}");
    assert_eq!(s["admin_token"], token.as_str());
    assert_eq!(s["dir"], first["dir"]);
    let a = d.cmd(&format!("kill {follower}"));
    assert_eq!(a["ok"], false, "killing a stopped node fails: {a}");
    assert!(a["error"].as_str().unwrap().contains("not running"));

    let a = d.cmd(&format!("start {follower}"));
    assert_eq!(a["ok"], true, "{a}");
    let new = a["pid"].as_u64().unwrap();
    assert!(alive(new) && new != old);
    all_pids.push(new);
    let a = d.cmd(&format!("start {follower}"));
    assert_eq!(a["ok"], false, "{a}");

    let a = d.cmd("wait-leader");
    assert_eq!(a["ok"], true, "{a}");
    assert!(a["leader_id"].as_u64().is_some());

    let a = d.cmd(&format!("pause {follower}"));
    assert_eq!(a["ok"], true, "{a}");
    let s = d.cmd("status");
    let paused = s["nodes"][follower as usize - 1]["paused"].clone();
    assert_eq!(paused, true, "{s}");
    let a = d.cmd(&format!("resume {follower}"));
    assert_eq!(a["ok"], true, "{a}");

    let a = d.cmd(&format!("stop {follower}"));
    assert_eq!(a["ok"], true, "{a}");
    assert_eq!(a["exit"], "exit status: 0", "a graceful stop: {a}");

    for bad in [
        "bogus",
        "kill",
        "kill x",
        "kill 9",
        "pause 1 2",
        "wait-leader forever",
    ] {
        let a = d.cmd(bad);
        assert_eq!(a["ok"], false, "{bad}: {a}");
        assert!(a["error"].as_str().is_some_and(|e| !e.is_empty()), "{a}");
    }
    let a = d.cmd(&"x".repeat(5_000));
    assert_eq!(a["ok"], false, "{a}");

    let a = d.cmd("quit");
    assert_eq!(a["ok"], true, "{a}");
    assert!(d.exit_ok());
    assert_cleaned_up(&all_pids, &dir);
}

#[test]
fn eof_on_stdin_kills_the_nodes_and_removes_the_dir() {
    let (mut d, first) = Dev::start(1);
    assert_eq!(first["leader_id"], 1, "{first}");
    drop(d.stdin.take());
    assert!(d.exit_ok());
    assert_cleaned_up(&pids(&first), Path::new(first["dir"].as_str().unwrap()));
}

#[test]
fn sigterm_kills_the_nodes_and_removes_the_dir() {
    let (mut d, first) = Dev::start(1);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(d.child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(d.exit_ok());
    assert_cleaned_up(&pids(&first), Path::new(first["dir"].as_str().unwrap()));
}

/// The parent (a shell here) dies without closing the supervisor's stdin: the
/// supervisor still notices, and cleans up.
#[test]
fn the_death_of_the_parent_kills_the_nodes_and_removes_the_dir() {
    let mut sh = Command::new("sh")
        // A background job's stdin would be /dev/null (an immediate EOF): hand it ours.
        .args([
            "-c",
            "exec 3<&0; \"$0\" dev --ephemeral --json --nodes 1 <&3 3<&- & wait",
        ])
        .arg(BIN)
        .env("RATEQUEUE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let _keep_stdin_open = sh.stdin.take();
    let lines = read_lines(sh.stdout.take().unwrap());
    let first: Value = serde_json::from_str(&lines.recv_timeout(ANSWER_TIMEOUT).unwrap()).unwrap();
    assert_eq!(first["ok"], true, "{first}");
    let supervisor = first["pid"].as_u64().unwrap();
    assert!(alive(supervisor));
    sh.kill().unwrap();
    sh.wait().unwrap();
    assert_cleaned_up(&pids(&first), Path::new(first["dir"].as_str().unwrap()));
    poll(Duration::from_secs(30), "the supervisor to exit", || {
        (!alive(supervisor)).then_some(())
    });
}
