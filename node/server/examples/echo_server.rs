//! The HTTP ceiling probe of `bench/run.sh` (docs/benchmarks.md): a bare axum server
//! answering the same two requests as ratequeue's slot cycle — `POST
//! /v1/resources/{name}/acquire` with a lease-shaped JSON body, `POST
//! /v1/leases/{id}/release` with `{"state": "released"}` — with no Raft, no state and no
//! fsync, on the same runtime and allocator as `ratequeue serve`. What it serves is the
//! most the machine's HTTP path allows; `rqctl bench --system echo` drives it.
//!
//! `cargo run --release -p ratequeue-node --example echo_server -- ADDR`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use ratequeue_api as api;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn acquire(
    State(tokens): State<Arc<AtomicU64>>,
    Path(resource): Path<String>,
    Json(req): Json<api::AcquireRequest>,
) -> Json<api::Lease> {
    let token = tokens.fetch_add(1, Ordering::Relaxed);
    Json(api::Lease {
        lease_id: format!("{token}-{:016x}", token.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        resource,
        lane: req.lane.unwrap_or_else(|| "default".into()),
        load: req.load.unwrap_or(1),
        fencing_token: token,
        ttl_ms: req.ttl_ms.unwrap_or(30_000),
        queued_ms: 0,
        limits: Vec::new(),
        shadow: None,
    })
}

async fn release(Path(_lease): Path<String>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"state": "released"}))
}

fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.5.1:7700".into());
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let app = Router::new()
                .route("/v1/resources/{name}/acquire", post(acquire))
                .route("/v1/leases/{id}/release", post(release))
                .with_state(Arc::new(AtomicU64::new(1)));
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            eprintln!("echo server on {addr}");
            axum::serve(listener, app).await?;
            Ok(())
        })
}
