//! `app(node)`: the client API router over a node handle, so tests can call it without
//! sockets. Every route and the body bound are here, the dashboard's files and views
//! included, and the layer that forwards the dashboard's calls to the leader.
//!
//! Layers, outermost first: the request span and access log (`access`), the forwarding
//! of the dashboard's calls to the leader (`forward`), the body bound, then on every
//! route but the probes and the dashboard's static files `authenticate` (`auth`).
//! Unknown paths get `400 invalid_request` without authentication. Every route is in
//! `routes`, and each is described in the OpenAPI description (`openapi`; a test holds
//! the two together).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, Route};
use axum::{Extension, Router};
use ratequeue_api::ErrorCode;
use tower::{Layer, Service};

use super::auth::{authenticate, AuthGuard};
use super::forward::{self, Upstream};
use super::{
    access, cluster, dashboard, keys, leases, openapi, resources, ui, ApiError, BODY_BYTES_MAX,
};
use crate::node::Node;
use crate::tls::Tls;

/// Every route of the API port: `auth` wraps each but the probes, the dashboard's
/// files and the OpenAPI description. `app` serves these; the OpenAPI description's
/// test reads its route table from them (`openapi::tests`).
pub(crate) fn routes<L>(auth: L) -> Router<Arc<Node>>
where
    L: Layer<Route> + Clone + Send + Sync + 'static,
    L::Service: Service<Request> + Clone + Send + Sync + 'static,
    <L::Service as Service<Request>>::Response: IntoResponse + 'static,
    <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
    <L::Service as Service<Request>>::Future: Send + 'static,
{
    // The deliberately broken build (feature `sabotage-follower-grants`) mounts its own
    // acquire handler; the production handler knows nothing of it.
    #[cfg(not(feature = "sabotage-follower-grants"))]
    let acquire = post(leases::acquire);
    #[cfg(feature = "sabotage-follower-grants")]
    let acquire = post(crate::sabotage::acquire);
    let authenticated = Router::new()
        .route("/v1/resources/{name}/acquire", acquire)
        .route("/v1/leases/{id}/release", post(leases::release))
        .route("/v1/leases/{id}/renew", post(leases::renew))
        .route("/v1/leases/{id}/report", post(leases::report))
        .route(
            "/v1/resources/{name}/waiters/{request_id}",
            get(leases::waiter),
        )
        .route("/v1/resources", get(resources::list_resources))
        .route(
            "/v1/resources/{name}",
            get(resources::get_resource)
                .put(resources::put_resource)
                .delete(resources::delete_resource),
        )
        .route("/v1/keys", post(keys::create_key).get(keys::list_keys))
        .route("/v1/keys/{name}", delete(keys::delete_key))
        .route("/v1/keys/{name}/rotate", post(keys::rotate_key))
        .route("/v1/cluster/status", get(cluster::status))
        .route("/v1/cluster/members", post(cluster::add_member))
        .route("/v1/cluster/members/{id}", delete(cluster::remove_member))
        .route("/metrics", get(cluster::metrics))
        .route("/v1/dashboard/session", get(dashboard::session))
        .route("/v1/dashboard/resources", get(dashboard::resources))
        .route("/v1/dashboard/resources/{name}", get(dashboard::resource))
        .route("/v1/dashboard/cluster", get(dashboard::cluster))
        .route_layer(auth);
    Router::new()
        .merge(authenticated)
        .route("/healthz", get(cluster::healthz))
        .route("/readyz", get(cluster::readyz))
        .route("/v1/openapi.json", get(openapi::openapi_json))
        .route("/", get(ui::to_index))
        .route("/ui", get(ui::to_index_ui))
        .route("/ui/", get(ui::index))
        .route("/ui/{*path}", get(ui::file))
}

/// `tls`: the node's TLS, for the dashboard's calls to other members' APIs.
pub fn app(node: Arc<Node>, tls: Option<Tls>) -> anyhow::Result<Router> {
    let upstream = Upstream::new(tls)?;
    let guard = Arc::new(AuthGuard::default());
    let auth = axum::middleware::from_fn_with_state((node.clone(), guard), authenticate);
    Ok(routes(auth)
        .fallback(|| async { ApiError::new(ErrorCode::InvalidRequest, "no such endpoint") })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn_with_state(
            upstream.clone(),
            forward::to_leader,
        ))
        .layer(Extension(upstream))
        .layer(axum::middleware::from_fn(access::access))
        .with_state(node))
}

/// The metrics listener's router (`--metrics-addr`): `GET /metrics`, open, and nothing
/// else.
pub fn metrics_app(node: Arc<Node>) -> Router {
    Router::new()
        .route("/metrics", get(cluster::open_metrics))
        .fallback(|| async { ApiError::new(ErrorCode::InvalidRequest, "no such endpoint") })
        .layer(axum::middleware::from_fn(access::access))
        .with_state(node)
}
