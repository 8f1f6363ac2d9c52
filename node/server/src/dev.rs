//! `ratequeue dev`: a local 3-node cluster in one process, for a first look.
//!
//! Data lives under `<dir>/node-N`; the admin token and cluster secret are generated
//! once into `<dir>` (or taken from RATEQUEUE_ADMIN_TOKEN) so restarts keep working.
//! The secret files are readable by their owner only (mode 0600, also fixed on start
//! for files an older build wrote 0644); the admin token file is reloaded on change
//! like `serve --admin-token-file`.
//! Creates a `demo` resource and prints how to use it. Never for production: all three
//! replicas share one machine and one process.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::admin_token::AdminTokens;
use crate::listener::ConnLimits;
use crate::node::{Config, RaftTuning};
use crate::serve;

const NODES: u64 = 3;

/// Writes a secret file readable by its owner only.
fn write_secret(path: &Path, value: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(value.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Makes an existing secret file owner-only (older builds wrote them 0644).
fn restrict(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {}", path.display()))?;
        }
    }
    Ok(())
}

/// The secret at `path` (created with a random value if missing), unless `env` is set.
/// Returns the value and whether it came from the file.
fn token_file(path: &Path, env: &str) -> anyhow::Result<(String, bool)> {
    if let Ok(v) = std::env::var(env) {
        if !v.trim().is_empty() {
            return Ok((v.trim().to_owned(), false));
        }
    }
    if let Ok(v) = std::fs::read_to_string(path) {
        restrict(path)?;
        return Ok((v.trim().to_owned(), true));
    }
    let v = hex::encode(rand::random::<[u8; 16]>());
    write_secret(path, &v)?;
    Ok((v, true))
}

pub async fn run(dir: &Path, port: u16) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let admin_path = dir.join("admin-token");
    let (admin_token, from_file) = token_file(&admin_path, "RATEQUEUE_ADMIN_TOKEN")?;
    let (cluster_secret, _) = token_file(&dir.join("cluster-secret"), "RATEQUEUE_CLUSTER_SECRET")?;
    let admin_tokens = Arc::new(if from_file {
        AdminTokens::from_file(&admin_path)?
    } else {
        AdminTokens::fixed(&admin_token)?
    });
    let addr = |id: u64, off: u16| {
        let p = port + 10 * u16::try_from(id - 1).unwrap_or(0) + off;
        SocketAddr::from((Ipv4Addr::LOCALHOST, p))
    };
    let peers: BTreeMap<u64, String> = (1..=NODES)
        .map(|id| (id, addr(id, 1).to_string()))
        .collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut nodes = Vec::new();
    for id in 1..=NODES {
        let config = Config {
            id,
            api_addr: addr(id, 0),
            peer_addr: addr(id, 1),
            advertise_api_url: format!("http://{}", addr(id, 0)),
            advertise_peer_addr: addr(id, 1).to_string(),
            peers: peers.clone(),
            data_dir: dir.join(format!("node-{id}")),
            admin_token: admin_tokens.clone(),
            cluster_secret: cluster_secret.clone(),
            raft: RaftTuning::default(),
            tls: None,
            insecure: false,
            cache_bytes: 32 * 1024 * 1024,
            handoff: false,
            api_limits: ConnLimits::default(),
            metrics_addr: None,
            leader_fsync_overlap: false,
        };
        let mut stop = stop_rx.clone();
        nodes.push(tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            serve::serve(config, stopped).await
        }));
    }
    let urls: Vec<String> = (1..=NODES)
        .map(|id| format!("http://{}", addr(id, 0)))
        .collect();
    create_demo(&urls[0], &admin_token).await?;
    println!(
        "ratequeue dev cluster is up ({NODES} nodes, data in {})",
        dir.display()
    );
    println!("  RATEQUEUE_URL={}", urls.join(","));
    println!("  RATEQUEUE_API_KEY={admin_token}   (admin token)");
    println!("  demo resource: concurrency 4, 60 requests/min, 100000 load/min");
    println!("try:");
    println!(
        "  curl -s --location-trusted -XPOST -H 'Authorization: Bearer {admin_token}' {}/v1/resources/demo/acquire -d '{{\"load\": 500}}'",
        urls[0]
    );
    println!(
        "  curl -s -H 'Authorization: Bearer {admin_token}' {}/v1/cluster/status",
        urls[0]
    );
    println!("Ctrl-C stops the cluster.");
    serve::shutdown_signal().await;
    let _ = stop_tx.send(true);
    for n in nodes {
        match n.await {
            Ok(Err(e)) => eprintln!("node stopped with error: {e:#}"),
            Err(e) => eprintln!("node task failed: {e}"),
            Ok(Ok(())) => {}
        }
    }
    Ok(())
}

/// Creates the demo resource through the public API, following redirects by hand (an
/// HTTP client drops the Authorization header on a cross-origin redirect), retrying
/// while the cluster elects its first leader (bounded).
async fn create_demo(url: &str, token: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let body = serde_json::json!({
        "concurrency": 4,
        "rate": [
            {"per": "request", "limit": 60, "window_ms": 60_000},
            {"per": "load", "limit": 100_000, "window_ms": 60_000}
        ]
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut target = format!("{url}/v1/resources/demo");
    loop {
        let res = client
            .put(&target)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await;
        let why = match res {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status() == reqwest::StatusCode::TEMPORARY_REDIRECT => {
                if let Some(loc) = r.headers().get("location").and_then(|l| l.to_str().ok()) {
                    target = loc.to_owned();
                    continue;
                }
                "redirect without location".to_owned()
            }
            Ok(r) => r.status().to_string(),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("creating the demo resource: {why}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15, observation 9: `dev` wrote its secret files 0644.
    #[cfg(unix)]
    #[test]
    fn secret_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("admin-token");
        let (value, from_file) = token_file(&fresh, "RATEQUEUE_TEST_UNSET_VARIABLE").unwrap();
        assert!(from_file);
        assert_eq!(value.len(), 32);
        assert_eq!(mode(&fresh), 0o600);
        // Read again: the same value, still 0600.
        assert_eq!(
            token_file(&fresh, "RATEQUEUE_TEST_UNSET_VARIABLE").unwrap(),
            (value, true)
        );
        // A file an older build wrote world-readable is restricted on start.
        let old = dir.path().join("cluster-secret");
        std::fs::write(&old, "0123456789abcdef").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        token_file(&old, "RATEQUEUE_TEST_UNSET_VARIABLE").unwrap();
        assert_eq!(mode(&old), 0o600);
    }
}
