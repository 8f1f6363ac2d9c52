//! API keys (admin only): create (the key text is returned once; only its hash is
//! stored), list, delete.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ratequeue_api as api;
use ratequeue_api::ErrorCode;
use ratequeue_core::config::validate_name;
use ratequeue_core::{ApiKey, Command, Outcome, Role};

use super::auth::key_hash;
use super::error::{json, rejection, unexpected};
use super::leader::{failure, read_barrier, require_leader};
use super::{ApiError, Body, Caller};
use crate::node::Node;

pub(super) fn role_json(r: Role) -> api::Role {
    match r {
        Role::Admin => api::Role::Admin,
        Role::Client => api::Role::Client,
    }
}

pub(super) async fn create_key(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Body(req): Body<api::CreateKeyRequest>,
) -> Response {
    if let Err(e) = caller.must_be_admin() {
        return e.into_response();
    }
    if let Err(e) = validate_name(&req.name) {
        return ApiError::invalid(format!("key {e}")).into_response();
    }
    if req.resources.len() > 64 || req.resources.iter().any(|p| p.is_empty() || p.len() > 256) {
        return ApiError::invalid("resources: at most 64 patterns of 1..=256 bytes")
            .into_response();
    }
    if let Err(r) = require_leader(&node, &uri) {
        return r;
    }
    let key = format!("rq_{}", hex::encode(rand::random::<[u8; 24]>()));
    let role = match req.role {
        api::Role::Admin => Role::Admin,
        api::Role::Client => Role::Client,
    };
    let record = ApiKey {
        name: req.name.clone(),
        hash: key_hash(&key),
        role,
        resources: req.resources.clone(),
    };
    match node.admission.write(Command::PutKey(record)).await {
        Ok(Outcome::KeyPut { .. }) => (
            StatusCode::CREATED,
            axum::Json(api::CreatedKey {
                name: req.name,
                key,
                role: req.role,
                resources: req.resources,
            }),
        )
            .into_response(),
        Ok(Outcome::Rejected(r)) => rejection(r).into_response(),
        Ok(other) => unexpected(other),
        Err(f) => failure(&node, &uri, f),
    }
}

pub(super) async fn list_keys(State(node): State<Arc<Node>>, uri: Uri, caller: Caller) -> Response {
    if let Err(e) = caller.must_be_admin() {
        return e.into_response();
    }
    if let Err(r) = read_barrier(&node, &uri, false).await {
        return r;
    }
    let keys = node
        .applied
        .read()
        .state
        .keys()
        .map(|k| api::Key {
            name: k.name.clone(),
            role: role_json(k.role),
            resources: k.resources.clone(),
        })
        .collect();
    json(api::KeyList { keys })
}

pub(super) async fn delete_key(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(name): Path<String>,
) -> Response {
    if let Err(e) = caller.must_be_admin() {
        return e.into_response();
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
