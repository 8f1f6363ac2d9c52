//! The OpenAPI 3.1 description of the client API (`GET /v1/openapi.json`), generated
//! from the code: the wire types of `ratequeue-api` derive their schemas (feature
//! `openapi`), each handler carries a `#[utoipa::path]` with its parameters, body,
//! answers and error codes, and `ApiDoc` lists the handlers. It describes the API
//! port; the metrics listener (`--metrics-addr`) serves only `GET /metrics`.
//!
//! Error answers are declared per route as the codes it can send (`errors!`): they are
//! grouped by status, one response per status whose body's `code` is limited to those
//! codes, with `Retry-After` where the code carries `retry_after_ms`. Leader-only
//! routes add the follower's `307`.
//!
//! The description is public (no token), like the probes: it is the same on every node
//! and for every caller, says nothing about the cluster's state, and is what a client
//! or a tool reads before it has a token. A test holds it to the router's route table
//! (`router::routes`): a route without a description, or a description without a route,
//! fails it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use ratequeue_api as api;
use ratequeue_api::ErrorCode;
use serde_json::json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Response as Answer};
use utoipa::{Modify, OpenApi};

use super::{cluster, dashboard, keys, leases, resources, ui};

/// Codes every authenticated route can answer: the `authenticate` middleware's (no or
/// a bad token, a throttled source, the key's in-flight quota).
pub(super) const AUTHENTICATED: &[ErrorCode] = &[
    ErrorCode::Unauthorized,
    ErrorCode::AuthThrottled,
    ErrorCode::QuotaExceeded,
];
/// Codes of a route that reads a JSON body (`Body`).
pub(super) const BODY: &[ErrorCode] = &[
    ErrorCode::InvalidRequest,
    ErrorCode::RequestTimeout,
    ErrorCode::PayloadTooLarge,
];
/// Codes of a leader-only route (besides the follower's `307`).
pub(super) const LEADER: &[ErrorCode] = &[ErrorCode::NoLeader, ErrorCode::ShuttingDown];
/// Codes any request can get: a bug, and the connection caps.
pub(super) const ANY: &[ErrorCode] = &[ErrorCode::Internal, ErrorCode::TooManyConnections];

/// The error answers of a route, one per status: the body is `ErrorBody` with `code`
/// limited to the codes of that status; `Retry-After` on the statuses whose codes carry
/// `retry_after_ms`; and the follower's `307` when `leader_only`.
pub(super) fn error_responses(
    groups: &[&[ErrorCode]],
    leader_only: bool,
) -> BTreeMap<String, RefOr<Answer>> {
    let mut by_status: BTreeMap<u16, Vec<&ErrorCode>> = BTreeMap::new();
    for code in groups.iter().flat_map(|g| g.iter()).chain(ANY) {
        let codes = by_status.entry(code.status()).or_default();
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    let mut out = BTreeMap::new();
    for (status, codes) in by_status {
        let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        let retry = codes.iter().any(|c| retries(c));
        let mut answer = json!({
            "description": names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
            "content": {"application/json": {"schema": {"allOf": [
                {"$ref": "#/components/schemas/ErrorBody"},
                {"type": "object", "properties": {"error": {"type": "object",
                    "properties": {"code": {"type": "string", "enum": names}}}}}
            ]}}}
        });
        if retry {
            answer["headers"] = json!({"Retry-After": {
                "description": "Seconds to wait (the error's `retry_after_ms`, rounded up)",
                "schema": {"type": "integer", "minimum": 1}
            }});
        }
        out.insert(status.to_string(), from_json(answer));
    }
    if leader_only {
        out.insert(
            "307".into(),
            from_json(json!({
                "description": "A follower sends the request to the leader: same method, path, query and body",
                "headers": {
                    "Location": {"description": "The leader's advertised URL, same path and query",
                                 "schema": {"type": "string"}},
                    "X-Ratequeue-Leader": {"description": "The leader's node id",
                                           "schema": {"type": "integer", "minimum": 0}}
                }
            })),
        );
    }
    out
}

/// Codes whose answers carry `retry_after_ms` (and so `Retry-After`).
fn retries(c: &ErrorCode) -> bool {
    matches!(
        c,
        ErrorCode::QueueFull
            | ErrorCode::WaitTimeout
            | ErrorCode::WouldBlock
            | ErrorCode::QuotaExceeded
            | ErrorCode::AuthThrottled
            | ErrorCode::NoLeader
            | ErrorCode::ShuttingDown
            | ErrorCode::TooManyConnections
    )
}

fn from_json(v: serde_json::Value) -> RefOr<Answer> {
    // The values above are fixed; a mistake in them fails every test that builds the
    // description, so this never sees one in a build that passed them.
    serde_json::from_value(v).unwrap_or_else(|e| {
        RefOr::T(Answer::new(format!(
            "(internal: bad response description: {e})"
        )))
    })
}

/// Declares the error answers of one route: a type for `#[utoipa::path(responses(…))]`.
/// `errors!(Name, leader; GROUP, …; Code, …)`: `leader` adds the follower's 307 and the
/// `LEADER` codes, the groups are the consts above, the codes the route's own.
macro_rules! errors {
    ($name:ident, $leader:ident; $($group:ident),*; $($code:ident),* $(,)?) => {
        pub(crate) struct $name;
        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                let leader = $crate::http::openapi::errors!(@leader $leader);
                let own: &[ratequeue_api::ErrorCode] = &[$(ratequeue_api::ErrorCode::$code),*];
                let leader_codes: &[ratequeue_api::ErrorCode] =
                    if leader { $crate::http::openapi::LEADER } else { &[] };
                $crate::http::openapi::error_responses(
                    &[$($crate::http::openapi::$group,)* leader_codes, own],
                    leader,
                )
            }
        }
    };
    (@leader leader) => { true };
    (@leader any_node) => { false };
}
pub(crate) use errors;

errors!(AnyErrors, any_node; ;);

/// The bearer scheme: the admin token or an API key.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token or an API key (`Authorization: Bearer <token>`, \
                         the scheme in any case)",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ratequeue",
        description = "The HTTP API of a ratequeue node (docs/api.md). Every route but the \
            probes, the dashboard's files and this description needs `Authorization: Bearer \
            <token>`. Leader-only requests sent to a follower get 307 to the leader. \
            Request bodies are JSON objects (unknown fields refused, at most 64 KiB). The \
            dashboard's calls may carry `X-Ratequeue-Forward: 1`: a follower then sends \
            the request on to the leader itself and returns its answer (never for acquire).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        leases::acquire,
        leases::release,
        leases::renew,
        leases::report,
        leases::waiter,
        resources::list_resources,
        resources::get_resource,
        resources::put_resource,
        resources::delete_resource,
        keys::create_key,
        keys::list_keys,
        keys::delete_key,
        keys::rotate_key,
        cluster::status,
        cluster::add_member,
        cluster::remove_member,
        cluster::metrics,
        cluster::healthz,
        cluster::readyz,
        dashboard::session,
        dashboard::resources,
        dashboard::resource,
        dashboard::cluster,
        ui::to_index,
        ui::to_index_ui,
        ui::index,
        ui::file,
        openapi_json,
    ),
    components(schemas(api::ErrorBody, api::ErrorDetail, ErrorCode)),
    modifiers(&Security),
    security(("bearer" = [])),
    tags(
        (name = "leases", description = "Acquire, release, renew, report"),
        (name = "resources", description = "Resources and their live stats (admin for writes)"),
        (name = "keys", description = "API keys (admin)"),
        (name = "cluster", description = "Status, membership, probes, metrics"),
        (name = "dashboard", description = "The dashboard's aggregated views and files"),
    ),
)]
pub struct ApiDoc;

/// The description as served (built once).
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        optional_bodies_are_absent(&mut doc);
        add_links(&mut doc);
        add_bounds(&mut doc);
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    })
}

/// The links between operations (OpenAPI `links`): what a client does next with an
/// answer. A stateful fuzzer follows them too (a resource to its acquire, a lease to
/// its release and renew, a key to its rotate and delete).
const LINKS: &[(&str, &str, &str, &str, &str, &str, &str)] = &[
    // (path, method, status, link, operation id, parameter, value)
    (
        "/v1/resources/{name}",
        "put",
        "201",
        "acquire",
        "acquire",
        "name",
        "$request.path.name",
    ),
    (
        "/v1/resources/{name}",
        "put",
        "200",
        "acquire",
        "acquire",
        "name",
        "$request.path.name",
    ),
    (
        "/v1/resources/{name}/acquire",
        "post",
        "200",
        "release",
        "release",
        "id",
        "$response.body#/lease_id",
    ),
    (
        "/v1/resources/{name}/acquire",
        "post",
        "200",
        "renew",
        "renew",
        "id",
        "$response.body#/lease_id",
    ),
    (
        "/v1/keys",
        "post",
        "201",
        "rotate",
        "rotate_key",
        "name",
        "$response.body#/name",
    ),
    (
        "/v1/keys",
        "post",
        "201",
        "delete",
        "delete_key",
        "name",
        "$response.body#/name",
    ),
];

fn add_links(doc: &mut serde_json::Value) {
    for (path, method, status, link, operation, parameter, value) in LINKS {
        let pointer = format!(
            "/paths/{}/{method}/responses/{status}",
            path.replace('~', "~0").replace('/', "~1")
        );
        if let Some(answer) = doc.pointer_mut(&pointer).and_then(|a| a.as_object_mut()) {
            let links = answer.entry("links").or_insert_with(|| json!({}));
            let mut parameters = serde_json::Map::new();
            parameters.insert((*parameter).to_owned(), json!(value));
            links[*link] = json!({"operationId": operation, "parameters": parameters});
        }
    }
}

/// The bounds the server checks on request fields, from the constants it checks them
/// with (the wire types cannot name them: `ratequeue-api` does not depend on the core).
/// Each is merged into the property's schema.
fn bounds() -> Vec<(&'static str, &'static str, serde_json::Value)> {
    use ratequeue_core::{
        HOLDER_LEN_MAX, KEY_EXPIRES_IN_MS_MAX, KEY_IN_FLIGHT_MAX, KEY_PATTERNS_MAX,
        KEY_PATTERN_LEN_MAX, LANES_PER_RESOURCE_MAX, LANE_WEIGHT_MAX, LIMIT_MAX, LOAD_MAX,
        NAME_LEN_MAX, QUEUE_LEN_MAX, RATE_BUCKETS_MAX, REQUEST_ID_LEN_MAX, TTL_MS_MAX, TTL_MS_MIN,
        WAITERS_MAX, WINDOW_MS_MAX,
    };
    let name = json!({"pattern": format!("^[A-Za-z0-9._:-]{{1,{NAME_LEN_MAX}}}$")});
    let ttl = json!({"minimum": TTL_MS_MIN, "maximum": TTL_MS_MAX});
    let patterns = json!({"maxItems": KEY_PATTERNS_MAX,
                          "items": {"minLength": 1, "maxLength": KEY_PATTERN_LEN_MAX}});
    let expiry = json!({"minimum": 1, "maximum": KEY_EXPIRES_IN_MS_MAX});
    vec![
        ("AcquireRequest", "load", json!({"maximum": LOAD_MAX})),
        ("AcquireRequest", "lane", name.clone()),
        ("AcquireRequest", "ttl_ms", ttl.clone()),
        (
            "AcquireRequest",
            "wait_ms",
            json!({"maximum": super::WAIT_MS_MAX}),
        ),
        (
            "AcquireRequest",
            "request_id",
            json!({"minLength": 1, "maxLength": REQUEST_ID_LEN_MAX}),
        ),
        (
            "AcquireRequest",
            "holder",
            json!({"pattern": format!("^[ -~]{{1,{HOLDER_LEN_MAX}}}$")}),
        ),
        (
            "ReleaseRequest",
            "actual_load",
            json!({"maximum": LOAD_MAX}),
        ),
        ("RenewRequest", "ttl_ms", ttl.clone()),
        (
            "ResourceSpec",
            "concurrency",
            json!({"minimum": 1, "maximum": LIMIT_MAX}),
        ),
        (
            "ResourceSpec",
            "rate",
            json!({"maxItems": RATE_BUCKETS_MAX}),
        ),
        (
            "ResourceSpec",
            "lanes",
            json!({"maxProperties": LANES_PER_RESOURCE_MAX, "propertyNames": name}),
        ),
        ("ResourceSpec", "default_ttl_ms", ttl),
        (
            "ResourceSpec",
            "max_queue",
            json!({"maximum": QUEUE_LEN_MAX}),
        ),
        ("Rate", "limit", json!({"minimum": 1, "maximum": LIMIT_MAX})),
        (
            "Rate",
            "window_ms",
            json!({"minimum": 1, "maximum": WINDOW_MS_MAX}),
        ),
        (
            "Lane",
            "weight",
            json!({"minimum": 1, "maximum": LANE_WEIGHT_MAX}),
        ),
        ("CreateKeyRequest", "name", name),
        ("CreateKeyRequest", "resources", patterns.clone()),
        ("CreateKeyRequest", "lanes", patterns),
        (
            "CreateKeyRequest",
            "max_waiters",
            json!({"minimum": 1, "maximum": WAITERS_MAX}),
        ),
        (
            "CreateKeyRequest",
            "max_in_flight",
            json!({"minimum": 1, "maximum": KEY_IN_FLIGHT_MAX}),
        ),
        ("CreateKeyRequest", "expires_in_ms", expiry.clone()),
        ("RotateKeyRequest", "expires_in_ms", expiry),
    ]
}

fn add_bounds(doc: &mut serde_json::Value) {
    for (schema, property, bound) in bounds() {
        let pointer = format!("/components/schemas/{schema}/properties/{property}");
        if let Some(target) = doc.pointer_mut(&pointer) {
            merge(target, bound);
        }
    }
}

/// `bound`'s keys into `target`, objects merged key by key.
fn merge(target: &mut serde_json::Value, bound: serde_json::Value) {
    match (target, bound) {
        (serde_json::Value::Object(t), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(t.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (t, b) => *t = b,
    }
}

/// An optional body (`Option<T>` in `request_body`) is one that may be left out, not
/// one that may be `null`: the server refuses `null` (bodies are objects), so its
/// schema is `T` alone and the body is not `required`.
fn optional_bodies_are_absent(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for op in paths
        .values_mut()
        .filter_map(|i| i.as_object_mut())
        .flat_map(|i| i.values_mut())
    {
        let Some(schema) = op.pointer_mut("/requestBody/content/application~1json/schema") else {
            continue;
        };
        let inner = match schema.get("oneOf").and_then(|o| o.as_array()) {
            Some(alts) if alts.len() == 2 && alts[0] == json!({"type": "null"}) => alts[1].clone(),
            _ => continue,
        };
        *schema = inner;
    }
}

/// `GET /v1/openapi.json`: this description. Public: see the module's doc.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "cluster",
    operation_id = "openapi",
    summary = "This OpenAPI 3.1 description of the API",
    security(()),
    responses(
        (status = 200, description = "The description", content_type = "application/json", body = Object),
        AnyErrors,
    ),
)]
pub(super) async fn openapi_json() -> Response {
    ([(CONTENT_TYPE, "application/json")], document()).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// (METHOD, path) of every operation of the description.
    fn described() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, _) in item.as_object().unwrap() {
                if method != "parameters" {
                    out.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    /// (METHOD, path) of every route of `router::routes`, read from the router itself
    /// (its `Debug`: route ids, their method endpoints and their paths; axum is pinned
    /// in Cargo.lock, and the parse fails loudly if the shape changes). `HEAD` comes
    /// with every `GET` in axum and is left out; `{*rest}` is `{rest}` in OpenAPI.
    fn registered() -> BTreeSet<(String, String)> {
        let router = super::super::router::routes(tower::layer::util::Identity::new());
        let text = format!("{router:?}");
        let path_router = text
            .split("fallback_router:")
            .next()
            .expect("a Router's Debug");
        let (routes, paths) = path_router
            .split_once("node: Node { paths: {")
            .expect("the route table's paths");
        let mut path_of = BTreeMap::new();
        for entry in paths.split("RouteId(").skip(1) {
            let (id, rest) = entry.split_once("): \"").expect("RouteId(n): \"path\"");
            let path = rest.split('"').next().unwrap();
            path_of.insert(id.to_owned(), path.replace("{*", "{"));
        }
        let mut out = BTreeSet::new();
        for entry in routes.split("RouteId(").skip(1) {
            let (id, rest) = entry.split_once("): ").unwrap();
            let fields = rest
                .split_once("MethodRouter { ")
                .expect("every route is a MethodRouter")
                .1;
            let fields = fields.split(", fallback:").next().unwrap();
            for field in fields.split(", ") {
                let (method, endpoint) = field.split_once(": ").unwrap();
                if endpoint != "None" && method != "head" {
                    out.insert((method.to_uppercase(), path_of[id].clone()));
                }
            }
        }
        assert!(out.len() > 20, "too few routes read from {text}");
        out
    }

    #[test]
    fn every_route_is_described_and_every_description_is_a_route() {
        let registered = registered();
        let described = described();
        let undescribed: Vec<_> = registered.difference(&described).collect();
        let unrouted: Vec<_> = described.difference(&registered).collect();
        assert!(
            undescribed.is_empty(),
            "routes without a description (add #[utoipa::path] and list the handler in ApiDoc): {undescribed:?}"
        );
        assert!(
            unrouted.is_empty(),
            "described operations that no route serves: {unrouted:?}"
        );
    }

    #[test]
    fn the_description_is_openapi_3_1_and_every_authenticated_route_says_so() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let open = [
            "/healthz",
            "/readyz",
            "/",
            "/ui",
            "/ui/",
            "/ui/{path}",
            "/v1/openapi.json",
        ];
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let public = op["security"] == json!([{}]);
                assert_eq!(public, open.contains(&path.as_str()), "{method} {path}");
                let responses = op["responses"].as_object().unwrap();
                assert_eq!(
                    responses.contains_key("401"),
                    !public,
                    "{method} {path}: {responses:?}"
                );
                assert!(responses.contains_key("500"), "{method} {path}");
                assert!(
                    responses
                        .keys()
                        .any(|s| s.starts_with('2') || s.starts_with('3')),
                    "{method} {path}: no answer but errors"
                );
            }
        }
    }

    #[test]
    fn every_bound_lands_on_a_property() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        for (schema, property, bound) in bounds() {
            let p = &doc["components"]["schemas"][schema]["properties"][property];
            assert!(p.is_object(), "{schema}.{property}");
            for (k, _) in bound.as_object().unwrap() {
                assert!(p.get(k).is_some(), "{schema}.{property}: {k}");
            }
        }
    }

    #[test]
    fn every_link_starts_at_an_answer_and_names_an_operation() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        let mut ids = BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                ids.insert(op["operationId"].as_str().unwrap().to_owned());
            }
        }
        for (path, method, status, link, operation, ..) in LINKS {
            let answer = &doc["paths"][*path][*method]["responses"][*status];
            assert!(
                answer["links"][*link].is_object(),
                "{method} {path} {status}: {link}"
            );
            assert!(ids.contains(*operation), "{operation}");
        }
    }

    /// Every code of docs/api.md's error table is a code of this version, with the same
    /// status, and every code is in the table.
    #[test]
    fn the_error_table_of_docs_api_md_lists_every_code() {
        let doc = include_str!("../../../../docs/api.md");
        let table = doc.split("## Error codes").nth(1).unwrap();
        let mut listed = BTreeMap::new();
        for line in table.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let status: u16 = cells[2].parse().unwrap();
            for name in cells[1].split(", ") {
                listed.insert(name.trim_matches('`').to_owned(), status);
            }
        }
        let known: BTreeMap<String, u16> = ErrorCode::KNOWN
            .iter()
            .map(|c| (c.as_str().to_owned(), c.status()))
            .collect();
        assert_eq!(listed, known);
    }

    /// Every code a route's description names is one this version sends, and each
    /// route that reads a body documents 413.
    #[test]
    fn error_answers_name_known_codes_at_their_status() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, answer) in op["responses"].as_object().unwrap() {
                    let Some(codes) = answer.pointer(
                        "/content/application~1json/schema/allOf/1/properties/error/properties/code/enum",
                    ) else {
                        continue;
                    };
                    for name in codes.as_array().unwrap() {
                        let code: ErrorCode = serde_json::from_value(name.clone()).unwrap();
                        assert!(ErrorCode::KNOWN.contains(&code), "{method} {path}: {name}");
                        assert_eq!(
                            code.status().to_string(),
                            *status,
                            "{method} {path}: {name}"
                        );
                    }
                }
                if let Some(body) = op.get("requestBody") {
                    assert!(op["responses"].get("413").is_some(), "{method} {path}");
                    let schema = &body["content"]["application/json"]["schema"];
                    assert!(schema.get("$ref").is_some(), "{method} {path}: {schema}");
                }
            }
        }
    }
}
