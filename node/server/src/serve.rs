//! Runs one node: binds the API and peer listeners, starts the `Node`, mounts the client
//! API (`http::app`) and the peer router over it, and shuts down gracefully on `stop`.
//!
//! The composition sits here, above both `node` and `http`, so that neither knows the
//! other's wiring: the node is a handle, HTTP a shell over it.

use std::time::Duration;

use anyhow::Context as _;

use crate::node::{Config, Node};
use crate::raft::network::{self, ClusterSecret};

/// Runs a node until `stop` resolves: API and peer listeners, then graceful shutdown.
pub async fn serve(
    config: Config,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // Bind first: peers can reach this node as soon as its Raft starts.
    let api_listener = tokio::net::TcpListener::bind(config.api_addr)
        .await
        .with_context(|| format!("binding API address {}", config.api_addr))?;
    let peer_listener = tokio::net::TcpListener::bind(config.peer_addr)
        .await
        .with_context(|| format!("binding peer address {}", config.peer_addr))?;
    let node = Node::start(&config).await?;
    let secret = ClusterSecret::new(config.cluster_secret.clone());
    let peer_app =
        network::peer_router(node.raft.clone(), secret, config.advertise_api_url.clone());
    let api_app = crate::http::app(node.clone());
    tracing::info!(id = node.id, api = %config.api_addr, peer = %config.peer_addr, "serving");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut api_stop = stop_rx.clone();
    let api = tokio::spawn(async move {
        axum::serve(api_listener, api_app)
            .with_graceful_shutdown(async move {
                let _ = api_stop.wait_for(|s| *s).await;
            })
            .await
    });
    let mut peer_stop = stop_rx.clone();
    let peer = tokio::spawn(async move {
        axum::serve(peer_listener, peer_app)
            .with_graceful_shutdown(async move {
                let _ = peer_stop.wait_for(|s| *s).await;
            })
            .await
    });
    stop.await;
    tracing::info!(id = node.id, "shutting down");
    node.shutdown(config.handoff).await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), api).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), peer).await;
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
