//! The `rqctl` binary: `run` limits a fleet of shell commands to the resource's
//! concurrency and passes exit statuses through; admin subcommands print text or JSON and
//! report API errors with their code.

use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{concurrency, eventually, Cluster};

fn run(cmd: &mut std::process::Command) -> Output {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Eight `rqctl run` processes on a resource of concurrency 2: at most two commands
/// ever run at once (each logs start and end with `date +%s%N`), and all finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_limits_a_fleet_of_commands_to_the_concurrency() {
    let c = Cluster::start(3).await;
    c.put_resource("sem", concurrency(2)).await;
    let log = c.dir().join("fleet.log");
    let script = format!(
        "echo \"$1 start $(date +%s%N)\" >> {log}; sleep 0.3; echo \"$1 end $(date +%s%N)\" >> {log}",
        log = log.display()
    );
    let fleet: Vec<std::process::Child> = (0..8)
        .map(|i| {
            c.rqctl()
                .args(["run", "sem", "--wait-ms", "60000", "--ttl-ms", "5000", "--"])
                .args(["sh", "-c", &script, "sh", &i.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in fleet {
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "rqctl run failed: {}",
            text(&out.stderr)
        );
    }

    // Sweep the start/end events in time order.
    let mut events: Vec<(u128, i32, String)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 3, "bad line {l:?}");
            let delta = if f[1] == "start" { 1 } else { -1 };
            (f[2].parse().unwrap(), delta, f[0].to_owned())
        })
        .collect();
    assert_eq!(events.len(), 16, "every command started and ended once");
    // At equal instants count ends first: a release precedes the next grant.
    events.sort_by_key(|(t, d, _)| (*t, *d));
    let (mut running, mut max) = (0, 0);
    for (_, d, _) in &events {
        running += d;
        max = max.max(running);
    }
    assert_eq!(running, 0);
    assert!(
        max <= 2,
        "at most 2 commands at once, saw {max}: {events:?}"
    );
    assert_eq!(max, 2, "the two slots were used side by side");
    let client = c.client();
    assert_eq!(c.held(&client, "sem").await, 0, "every slot was released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_passes_exit_statuses_through() {
    let c = Cluster::start(3).await;
    c.put_resource("sem", concurrency(1)).await;
    let status = |args: &[&str]| {
        let out = run(c.rqctl().args(["run", "sem", "--"]).args(args));
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    assert_eq!(status(&["true"]).0, Some(0));
    assert_eq!(status(&["sh", "-c", "exit 7"]).0, Some(7));
    assert_eq!(
        status(&["sh", "-c", "kill -TERM $$"]).0,
        Some(143),
        "signal N -> 128+N"
    );
    assert_eq!(status(&["sh", "-c", "kill -KILL $$"]).0, Some(137));
    assert_eq!(status(&["/nonexistent/command"]).0, Some(127));
    // The child sees its lease; rqctl keeps stdout for the child alone.
    let (code, stdout, _) = status(&[
        "sh",
        "-c",
        "echo $RATEQUEUE_RESOURCE $RATEQUEUE_FENCING_TOKEN",
    ]);
    assert_eq!(code, Some(0));
    let f: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(f[0], "sem");
    assert!(f[1].parse::<u64>().unwrap() > 0);

    // No slot: 75 when waiting could help, 1 when it cannot.
    let client = c.client();
    let held = client
        .acquire("sem")
        .ttl(Duration::from_secs(60))
        .await
        .unwrap();
    let out = run(c
        .rqctl()
        .args(["run", "sem", "--wait-ms", "0", "--", "true"]));
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("would_block"),
        "{}",
        text(&out.stderr)
    );
    held.release().await.unwrap();
    let out = run(c.rqctl().args(["run", "nope", "--", "true"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("resource_not_found"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(c.held(&client, "sem").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_subcommands() {
    let c = Cluster::start(3).await;
    let ok = |args: &[&str]| {
        let out = run(c.rqctl().args(args));
        assert!(
            out.status.success(),
            "rqctl {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    };

    let out = ok(&[
        "resource",
        "put",
        "openai",
        "--concurrency",
        "10",
        "--rpm",
        "60",
        "--tpm",
        "100000",
        "--lane",
        "user-facing=3",
    ]);
    assert!(out.contains("created resource openai"), "{out}");
    let v: Value = serde_json::from_str(&ok(&["resource", "get", "openai", "--json"])).unwrap();
    assert_eq!(v["config"]["concurrency"], 10);
    assert_eq!(
        v["config"]["rate"][0],
        serde_json::json!({"per": "request", "limit": 60, "window_ms": 60000})
    );
    assert_eq!(
        v["config"]["rate"][1],
        serde_json::json!({"per": "load", "limit": 100000, "window_ms": 60000})
    );
    assert_eq!(v["config"]["lanes"]["user-facing"]["weight"], 3);
    let v: Value = serde_json::from_str(&ok(&[
        "resource",
        "put",
        "raw",
        "--json",
        r#"{"concurrency": 2}"#,
    ]))
    .unwrap();
    assert_eq!(v["created"], true);
    let out = ok(&["resource", "list"]);
    assert!(out.starts_with("NAME"), "{out}");
    assert!(
        out.contains("openai") && out.contains("raw") && out.contains("concurrency 10"),
        "{out}"
    );
    let out = ok(&["resource", "get", "openai"]);
    assert!(out.contains("user-facing=3"), "{out}");
    ok(&["resource", "delete", "raw"]);

    // API errors: the code and message on stderr, exit 1; JSON on stdout with --json.
    let out = run(c.rqctl().args(["resource", "get", "raw"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("resource_not_found"),
        "{}",
        text(&out.stderr)
    );
    let out = run(c.rqctl().args(["resource", "delete", "raw", "--json"]));
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "resource_not_found");
    // Usage errors found after parsing.
    let out = run(c.rqctl().args(["resource", "put", "x"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("at least one limit"),
        "{}",
        text(&out.stderr)
    );

    // Keys.
    let v: Value = serde_json::from_str(&ok(&[
        "key",
        "create",
        "workers",
        "--resource",
        "openai*",
        "--json",
    ]))
    .unwrap();
    let key = v["key"].as_str().unwrap().to_owned();
    let out = ok(&["key", "list"]);
    assert!(
        out.contains("workers") && out.contains("client") && out.contains("openai*"),
        "{out}"
    );
    // The new key works for its resources and is refused elsewhere.
    let out = run(c
        .rqctl()
        .env("RATEQUEUE_API_KEY", &key)
        .args(["run", "openai", "--", "true"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(c.rqctl().args([
        "--api-key",
        &key,
        "resource",
        "put",
        "z",
        "--concurrency",
        "1",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("forbidden"),
        "{}",
        text(&out.stderr)
    );
    ok(&["key", "delete", "workers"]);

    // Status: a table naming the leader and every member's role.
    let leader = c.leader().await;
    let out = ok(&["status"]);
    assert!(
        out.starts_with(&format!("leader {leader} ({})", c.url(leader))),
        "{out}"
    );
    assert_eq!(out.matches("follower").count(), 2, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains(" leader ")).count(),
        1,
        "{out}"
    );
    let v: Value = serde_json::from_str(&ok(&["status", "--json"])).unwrap();
    assert_eq!(v["view"]["leader_id"], leader);
    assert_eq!(v["nodes"].as_array().unwrap().len(), 3);

    // --url beats the environment; a follower URL alone works.
    let follower = c.follower().await;
    let out = run(c.rqctl().env("RATEQUEUE_URL", "http://127.0.0.1:1").args([
        "--url",
        &c.url(follower),
        "resource",
        "list",
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn sigterm(child: &std::process::Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
}

async fn wait_exit(child: std::process::Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

/// SIGTERM while the command runs goes to the command (rqctl then releases and exits
/// with its status); SIGTERM while rqctl waits for a slot cancels the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_forwards_signals_and_cancels_waits() {
    let c = Cluster::start(3).await;
    c.put_resource("sem", concurrency(1)).await;
    let client = c.client();
    let stats = |client: &ratequeue_client::Client| {
        let client = client.clone();
        async move {
            let r = client.get_resource("sem").await.unwrap();
            (r.stats.held, r.stats.queued.values().sum::<u64>())
        }
    };

    let running = c
        .rqctl()
        .args([
            "run",
            "sem",
            "--",
            "sh",
            "-c",
            "trap 'kill $!; exit 5' TERM; sleep 30 & wait",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the command to hold the slot",
        || async { (stats(&client).await == (1, 0)).then_some(()) },
    )
    .await;

    let waiting = c
        .rqctl()
        .args([
            "run",
            "sem",
            "--wait-ms",
            "60000",
            "--",
            "echo",
            "must-not-run",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the second rqctl to queue",
        || async { (stats(&client).await == (1, 1)).then_some(()) },
    )
    .await;
    sigterm(&waiting);
    let out = wait_exit(waiting).await;
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("must-not-run"));
    eventually(
        Duration::from_secs(10),
        "the cancelled waiter to leave the queue",
        || async { (stats(&client).await == (1, 0)).then_some(()) },
    )
    .await;

    // The shell set its trap long ago: it started before the second rqctl queued.
    sigterm(&running);
    let out = wait_exit(running).await;
    assert_eq!(
        out.status.code(),
        Some(5),
        "the command's own status: {}",
        text(&out.stderr)
    );
    assert_eq!(
        stats(&client).await,
        (0, 0),
        "released after the command ended"
    );
}

/// While `rqctl run` waits for a slot it says where it stands (plain lines with
/// `--verbose` when stderr is not a terminal), and `Client::waiter_progress` reads the
/// same from the leader: position, lane, binding limit; none once granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_shows_where_it_waits_and_the_client_reads_progress() {
    use std::io::BufRead as _;

    let c = Cluster::start(3).await;
    c.put_resource("sem", concurrency(1)).await;
    let client = c.client();
    let holder = client.acquire("sem").await.unwrap();

    // The client's own view of a waiter it queued.
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .acquire("sem")
                .lane("batch")
                .request_id("progress-1")
                .timeout(Duration::from_secs(60))
                .await
        })
    };
    let p = eventually(Duration::from_secs(20), "the waiter queued", || async {
        client.waiter_progress("sem", "progress-1").await.unwrap()
    })
    .await;
    assert_eq!(
        (
            p.lane.as_str(),
            p.position,
            p.ahead_in_resource,
            p.queued_in_resource
        ),
        ("batch", 1, 0, 1)
    );
    assert_eq!(
        p.binding_limit,
        Some(ratequeue_client::api::LimitKind::Concurrency)
    );
    assert!(p.estimated_wait_ms >= 1);
    assert_eq!(
        client.waiter_progress("sem", "never-sent").await.unwrap(),
        None
    );

    let mut rqctl = c
        .rqctl()
        .args([
            "run",
            "sem",
            "--verbose",
            "--lane",
            "batch",
            "--wait-ms",
            "60000",
        ])
        .args(["--", "true"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = rqctl.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no status line: {seen:?}"));
        seen.push(line.clone());
        if line.starts_with("rqctl run: waiting:") {
            break line;
        }
    };
    // Behind the first waiter in its lane, the one slot binds.
    assert!(
        status.starts_with("rqctl run: waiting: 2nd in lane batch, concurrency binds, ~"),
        "{status}"
    );

    holder.release().await.unwrap();
    let first = waiting.await.unwrap().unwrap();
    assert_eq!(
        client.waiter_progress("sem", "progress-1").await.unwrap(),
        None
    );
    first.release().await.unwrap();
    let out = wait_exit(rqctl).await;
    assert!(out.status.success());
    reader.join().unwrap();
    seen.extend(rx.try_iter());
    assert!(
        seen.iter()
            .any(|l| l.starts_with("rqctl run: holding lease")),
        "{seen:?}"
    );
}

/// On a terminal (`script` gives `rqctl run` a pseudo-terminal) the status line is
/// rewritten in place while rqctl waits, and cleared once the slot is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_on_a_terminal_rewrites_one_status_line_and_clears_it() {
    use std::io::Read as _;

    let c = Cluster::start(3).await;
    c.put_resource("sem", concurrency(1)).await;
    let client = c.client();
    let holder = client.acquire("sem").await.unwrap();
    let rqctl = c.rqctl();
    let line = format!(
        "{} run sem --wait-ms 60000 -- true",
        rqctl.get_program().to_string_lossy()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .envs(rqctl.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs the command on a pseudo-terminal");
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let want = b"\r\x1b[2Kwaiting: 1st in lane default, concurrency binds, ~";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !seen.windows(want.len()).any(|w| w == want) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let chunk = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no status line: {:?}", text(&seen)));
        seen.extend(chunk);
    }
    holder.release().await.unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    reader.join().unwrap();
    seen.extend(rx.try_iter().flatten());
    assert!(status.success(), "{:?}", text(&seen));
    let all = text(&seen);
    let last = all.rfind("waiting:").unwrap();
    assert!(
        all[last..].contains("\r\x1b[2K"),
        "the line is cleared once the slot is held: {all:?}"
    );
    assert!(
        !all.contains("rqctl run: waiting"),
        "no plain lines on a terminal: {all:?}"
    );
}
