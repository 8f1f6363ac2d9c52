//! API keys (admin only): create (refused for a name that exists: `409 key_exists`),
//! rotate (a new secret, same scope), list, delete. The key text is returned once, by
//! create or rotate; only its hash is stored. Expiry is in cluster time.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ratequeue_api as api;
use ratequeue_api::ErrorCode;
use ratequeue_core::config::validate_name;
use ratequeue_core::keys::{KEY_IN_FLIGHT_DEFAULT, KEY_WAITERS_DEFAULT};
use ratequeue_core::{ApiKey, Command, Outcome, Role, KEY_EXPIRES_IN_MS_MAX};

use super::auth::{denied, key_hash};
use super::error::{json, rejection, unexpected};
use super::leader::{failure, read_barrier, require_leader};
use super::{ApiError, Body, Caller};
use crate::node::Node;

pub(super) fn role_json(r: Role) -> api::Role {
    match r {
        Role::Admin => api::Role::Admin,
        Role::Client => api::Role::Client,
        Role::Monitor => api::Role::Monitor,
    }
}

fn role_core(r: api::Role) -> Role {
    match r {
        api::Role::Admin => Role::Admin,
        api::Role::Client => Role::Client,
        api::Role::Monitor => Role::Monitor,
    }
}

/// A key as listed, with its remaining lifetime at cluster time `now_ms`.
pub(super) fn key_json(k: &ApiKey, now_ms: u64) -> api::Key {
    api::Key {
        name: k.name.clone(),
        role: role_json(k.role),
        resources: k.resources.clone(),
        lanes: k.lanes.clone(),
        max_priority: k.priority_max,
        max_waiters: k.waiters_max,
        max_in_flight: k.in_flight_max,
        expires_in_ms: k.expires_at_ms.map(|at| at.saturating_sub(now_ms)),
    }
}

fn new_secret() -> (String, String) {
    let key = format!("rq_{}", hex::encode(rand::random::<[u8; 24]>()));
    let hash = key_hash(&key);
    (key, hash)
}

fn check_expiry(expires_in_ms: Option<u64>) -> Result<(), ApiError> {
    match expires_in_ms {
        Some(ms) if !(1..=KEY_EXPIRES_IN_MS_MAX).contains(&ms) => Err(ApiError::invalid(format!(
            "expires_in_ms must be in 1..={KEY_EXPIRES_IN_MS_MAX}"
        ))),
        _ => Ok(()),
    }
}

/// The created or rotated key as stored now (its expiry fixed by the applied command).
fn created(node: &Node, name: &str, key: String) -> Option<api::CreatedKey> {
    let now = node.cluster_time_ms();
    let info = node
        .applied
        .read()
        .state
        .key(name)
        .map(|k| key_json(k, now))?;
    Some(api::CreatedKey { key, info })
}

super::openapi::errors!(CreateErrors, leader; AUTHENTICATED, BODY;
    Forbidden, KeyExists, KeyNotFound, CommitTimeout);

#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "keys",
    operation_id = "create_key",
    summary = "Create an API key (admin)",
    description = "The answer carries the key's text (`key`), shown only here. A name that \
        exists is refused (`409 key_exists`): rotate or delete it first.",
    request_body(content = api::CreateKeyRequest),
    responses((status = 201, description = "Created", body = api::CreatedKey), CreateErrors),
)]
pub(super) async fn create_key(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Body(req): Body<api::CreateKeyRequest>,
) -> Response {
    if let Err(d) = caller.may_manage() {
        return denied(d).into_response();
    }
    let (key, hash) = new_secret();
    let record = ApiKey {
        lanes: req.lanes,
        priority_max: req.max_priority,
        waiters_max: req.max_waiters.unwrap_or(KEY_WAITERS_DEFAULT),
        in_flight_max: req.max_in_flight.unwrap_or(KEY_IN_FLIGHT_DEFAULT),
        ..ApiKey::new(&req.name, &hash, role_core(req.role), req.resources)
    };
    let checked = validate_name(&req.name)
        .map_err(|e| ApiError::invalid(format!("key {e}")))
        .and_then(|()| record.validate().map_err(ApiError::invalid))
        .and_then(|()| check_expiry(req.expires_in_ms));
    if let Err(e) = checked {
        return e.into_response();
    }
    if let Err(r) = require_leader(&node, &uri) {
        return r;
    }
    let command = Command::CreateKey {
        key: record,
        expires_in_ms: req.expires_in_ms,
    };
    match node.admission.write(command).await {
        Ok(Outcome::KeyPut { .. }) => match created(&node, &req.name, key) {
            Some(k) => (StatusCode::CREATED, axum::Json(k)).into_response(),
            None => ApiError::new(ErrorCode::KeyNotFound, "the key was deleted meanwhile")
                .into_response(),
        },
        Ok(Outcome::Rejected(r)) => rejection(r).into_response(),
        Ok(other) => unexpected(other),
        Err(f) => failure(&node, &uri, f),
    }
}

super::openapi::errors!(RotateErrors, leader; AUTHENTICATED, BODY;
    Forbidden, KeyNotFound, CommitTimeout);

#[utoipa::path(
    post,
    path = "/v1/keys/{name}/rotate",
    tag = "keys",
    operation_id = "rotate_key",
    summary = "A new secret for a key, same scope (admin)",
    description = "The old text stops working at once; the new one is shown only here.",
    params(("name" = String, Path, description = "The key's name")),
    request_body(content = Option<api::RotateKeyRequest>, description = "Optional: `expires_in_ms` of the new text"),
    responses((status = 200, description = "Rotated", body = api::CreatedKey), RotateErrors),
)]
pub(super) async fn rotate_key(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(name): Path<String>,
    Body(req): Body<api::RotateKeyRequest>,
) -> Response {
    if let Err(d) = caller.may_manage() {
        return denied(d).into_response();
    }
    if let Err(e) = check_expiry(req.expires_in_ms) {
        return e.into_response();
    }
    if let Err(r) = require_leader(&node, &uri) {
        return r;
    }
    let (key, hash) = new_secret();
    let command = Command::RotateKey {
        name: name.clone(),
        hash,
        expires_in_ms: req.expires_in_ms,
    };
    match node.admission.write(command).await {
        Ok(Outcome::KeyPut { .. }) => match created(&node, &name, key) {
            Some(k) => json(k),
            None => ApiError::new(ErrorCode::KeyNotFound, "the key was deleted meanwhile")
                .into_response(),
        },
        Ok(Outcome::Rejected(r)) => rejection(r).into_response(),
        Ok(other) => unexpected(other),
        Err(f) => failure(&node, &uri, f),
    }
}

super::openapi::errors!(ListErrors, leader; AUTHENTICATED; Forbidden);

#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "keys",
    operation_id = "list_keys",
    summary = "Every API key, without its secret (admin)",
    responses((status = 200, description = "The keys", body = api::KeyList), ListErrors),
)]
pub(super) async fn list_keys(State(node): State<Arc<Node>>, uri: Uri, caller: Caller) -> Response {
    if let Err(d) = caller.may_manage() {
        return denied(d).into_response();
    }
    if let Err(r) = read_barrier(&node, &uri, false).await {
        return r;
    }
    let now = node.cluster_time_ms();
    let keys = node
        .applied
        .read()
        .state
        .keys()
        .map(|k| key_json(k, now))
        .collect();
    json(api::KeyList { keys })
}

super::openapi::errors!(DeleteErrors, leader; AUTHENTICATED;
    Forbidden, KeyNotFound, CommitTimeout);

#[utoipa::path(
    delete,
    path = "/v1/keys/{name}",
    tag = "keys",
    operation_id = "delete_key",
    summary = "Delete an API key (admin)",
    description = "Leases the key holds stay until released (by an admin) or expired.",
    params(("name" = String, Path, description = "The key's name")),
    responses((status = 204, description = "Deleted"), DeleteErrors),
)]
pub(super) async fn delete_key(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(name): Path<String>,
) -> Response {
    if let Err(d) = caller.may_manage() {
        return denied(d).into_response();
    }
    if let Err(r) = require_leader(&node, &uri) {
        return r;
    }
    match node.admission.write(Command::DeleteKey { name }).await {
        Ok(Outcome::KeyDeleted { existed: true }) => StatusCode::NO_CONTENT.into_response(),
        Ok(Outcome::KeyDeleted { existed: false }) => {
            ApiError::new(ErrorCode::KeyNotFound, "no such key").into_response()
        }
        Ok(other) => unexpected(other),
        Err(f) => failure(&node, &uri, f),
    }
}
