//! Who is calling: the bearer token is the admin token (compared in constant time) or
//! an API key, looked up by its SHA-256 in the applied state; what each may touch.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use ratequeue_api::ErrorCode;
use ratequeue_core::{ApiKey, Role};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::node::Node;

/// Who is calling, from `Authorization: Bearer <token>`.
#[derive(Clone, Debug)]
pub enum Caller {
    Admin,
    Key(ApiKey),
}

impl Caller {
    pub(super) fn may_use(&self, resource: &str) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Key(k) if k.allows(resource) => Ok(()),
            Caller::Key(k) => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("key {:?} may not use resource {resource:?}", k.name),
            )),
        }
    }

    pub(super) fn must_be_admin(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin
            | Caller::Key(ApiKey {
                role: Role::Admin, ..
            }) => Ok(()),
            Caller::Key(k) => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("key {:?} is not admin", k.name),
            )),
        }
    }
}

/// Hex SHA-256 of an API key's text: the only form stored.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl FromRequestParts<Arc<Node>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, node: &Arc<Node>) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "missing bearer token"))?;
        if bool::from(token.as_bytes().ct_eq(node.admin_token.as_bytes())) {
            return Ok(Caller::Admin);
        }
        let hash = key_hash(token);
        let applied = node.applied.read();
        match applied.state.key_by_hash(&hash) {
            Some(k) => Ok(Caller::Key(k.clone())),
            None => Err(ApiError::new(ErrorCode::Unauthorized, "unknown token")),
        }
    }
}
