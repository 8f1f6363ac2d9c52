//! Runs one node: binds the API, peer and (optional) metrics listeners, starts the
//! `Node`, mounts the client API (`http::app`), the peer router and the metrics router
//! over it (each served by `listener::serve` with its connection limits), watches the
//! admin token file, and shuts down gracefully on `stop`.
//!
//! The composition sits here, above both `node` and `http`, so that neither knows the
//! other's wiring: the node is a handle, HTTP a shell over it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::listener::{self, ConnLimits, Plain};
use crate::node::{Config, Node};
use crate::raft::network::{self, ClusterSecret};
use crate::tls;

/// Stack of each runtime thread (workers and blocking threads), instead of tokio's 2 MiB.
/// The replicated state's tables are `imbl` B-trees, and their insert and remove recurse
/// once per level with large frames: in a debug build up to 880 KB a level (removing from
/// the idempotency window, whose entries are large), and a table at its bound (two
/// million leases, a million request ids) is five levels deep, about 4.4 MB; 3 000
/// request ids already took a debug node past 2 MiB ("thread 'tokio-rt-worker' has
/// overflowed its stack" under load). 16 MiB is three times the deepest table's need;
/// release frames are smaller, and untouched stack is only reserved address space.
pub const RUNTIME_THREAD_STACK_BYTES: usize = 16 << 20;

/// The node's tokio runtime: multi-threaded, every driver enabled, threads with
/// `RUNTIME_THREAD_STACK_BYTES` of stack.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(RUNTIME_THREAD_STACK_BYTES)
        .build()
}

/// Refuses plain HTTP on an address other than loopback unless `insecure` is set: the
/// API carries bearer tokens and the peer port the cluster secret, in clear.
pub fn check_plain_binding(config: &Config) -> anyhow::Result<()> {
    if config.tls.is_some() || config.insecure {
        return Ok(());
    }
    let exposed = |a: &SocketAddr| !a.ip().is_loopback();
    for (what, addr) in [("API", config.api_addr), ("peer", config.peer_addr)] {
        if exposed(&addr) {
            bail!(
                "refusing to serve plain HTTP on the {what} address {addr}, which is not \
                 loopback: tokens and the cluster secret would cross the network in clear. \
                 Configure TLS (--tls-cert, --tls-key, --tls-ca) or pass --insecure \
                 (RATEQUEUE_INSECURE=true) to accept that"
            );
        }
    }
    Ok(())
}

/// Runs a node until `stop` resolves: API and peer listeners, then graceful shutdown.
pub async fn serve(
    config: Config,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    check_plain_binding(&config)?;
    if config.tls.is_none() && config.insecure {
        tracing::warn!(
            "serving plain HTTP (--insecure): tokens and the cluster secret are not encrypted"
        );
    }
    // Bind first: peers can reach this node as soon as its Raft starts.
    let api_listener = tokio::net::TcpListener::bind(config.api_addr)
        .await
        .with_context(|| format!("binding API address {}", config.api_addr))?;
    let peer_listener = tokio::net::TcpListener::bind(config.peer_addr)
        .await
        .with_context(|| format!("binding peer address {}", config.peer_addr))?;
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding metrics address {addr}"))?,
        ),
        None => None,
    };
    let node = Node::start(&config).await?;
    let secret = ClusterSecret::new(config.cluster_secret.clone());
    let peer_app = network::peer_router(
        node.raft.clone(),
        secret,
        config.advertise_api_url.clone(),
        config.tls.is_some(),
    );
    let api_app = crate::http::app(node.clone(), config.tls.clone())?;
    tracing::info!(
        id = node.id,
        api = %config.api_addr,
        peer = %config.peer_addr,
        tls = config.tls.is_some(),
        "serving"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(config.admin_token.clone().watch(stop_rx.clone()));
    let api_stats = node.metrics.connections.clone();
    // The peer and metrics ports keep their own connection figures:
    // `ratequeue_api_connections*` count the API port.
    let peer_stats = || std::sync::Arc::new(crate::metrics::ConnectionStats::default());
    if let Some(l) = metrics_listener {
        // Always plain HTTP: only the scraper should reach it (docs/operations.md).
        tokio::spawn(listener::serve(
            l,
            Plain,
            crate::http::metrics_app(node.clone()),
            config.api_limits,
            std::sync::Arc::default(),
            stopped(stop_rx.clone()),
        ));
    }
    let (api, peer) = match &config.tls {
        Some(tls) => {
            tls.spawn_reloader(tls::RELOAD_POLL);
            let api = tokio::spawn(listener::serve(
                api_listener,
                tls.api_handshake(),
                api_app,
                config.api_limits,
                api_stats,
                stopped(stop_rx.clone()),
            ));
            let peer = tokio::spawn(listener::serve(
                peer_listener,
                tls.peer_handshake(),
                peer_app,
                ConnLimits::peer(),
                peer_stats(),
                stopped(stop_rx.clone()),
            ));
            (api, peer)
        }
        None => {
            let api = tokio::spawn(listener::serve(
                api_listener,
                Plain,
                api_app,
                config.api_limits,
                api_stats,
                stopped(stop_rx.clone()),
            ));
            let peer = tokio::spawn(listener::serve(
                peer_listener,
                Plain,
                peer_app,
                ConnLimits::peer(),
                peer_stats(),
                stopped(stop_rx.clone()),
            ));
            (api, peer)
        }
    };
    stop.await;
    tracing::info!(id = node.id, "shutting down");
    node.shutdown(config.handoff).await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(6), api).await;
    let _ = tokio::time::timeout(Duration::from_secs(6), peer).await;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    use ratequeue_core::config::ResourceConfig;
    use ratequeue_core::{Command, Grant, State};

    /// The state work that overflowed a debug node's 2 MiB worker stack: 20 000 live
    /// leases with request ids, all expiring, then their tombstones and request ids
    /// forgotten (3 000 were enough), run on a worker of the node's runtime.
    #[test]
    fn the_runtime_threads_hold_deep_state_tables() {
        let work = || {
            let mut s = State::new();
            let put = Command::PutResource {
                name: "r".into(),
                config: ResourceConfig::concurrency(u32::MAX),
            };
            s.apply_entry(1, &[put]);
            let n = 20_000u64;
            for i in 0..n {
                let grant = Command::Grant(Grant {
                    resource: "r".into(),
                    lane: "default".into(),
                    load: 1,
                    ttl_ms: 1_000,
                    request_id: Some(format!("request-{i:08}")),
                    nonce: i,
                    holder: Some(format!("worker-{i}@host:1234")),
                    owner: Some("alice".into()),
                    wait_ms: 0,
                });
                s.apply_entry(2 + i / 1_000, &[grant]);
            }
            assert_eq!(s.lease_count(), n as usize);
            s.tick(10_000_000);
            s.tick(100_000_000);
            assert_eq!(s.lease_count(), 0);
            s.check_invariants()
        };
        let rt = super::runtime().unwrap();
        let on_worker = rt.block_on(async { tokio::spawn(async move { work() }).await });
        assert_eq!(on_worker.unwrap(), Ok(()));
    }
}
