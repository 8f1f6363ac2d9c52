//! The dashboard's aggregated reads (`/v1/dashboard/…`, docs/dashboard.md): one call per
//! view and refresh, never one per resource.
//!
//! The resource views are served by the leader (a follower's 307 is forwarded by
//! `forward` when the page asks), from its applied state, its series and one message to
//! its admission loop for the one resource on screen. They are not linearizable reads:
//! no ReadIndex round per refresh. The applied state is walked in chunks of
//! `LOCK_CHUNK_LEN` resources so that a list of 10 000 never holds the lock that apply
//! needs for more than a few microseconds. The cluster view is served by any node: it
//! asks every member for its own status and readiness, so it works without a leader.
//!
//! What a caller may see is decided in `visibility` only: every view goes through it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use ratequeue_api as api;
use ratequeue_api::dashboard as ui;
use ratequeue_api::ErrorCode;
use ratequeue_core::{scope, Fit, NAME_LEN_MAX};
use serde::Deserialize;

use super::error::api_kind;
use super::error::json;
use super::forward::Upstream;
use super::keys::{key_json, role_json};
use super::leader::{failure, require_leader};
use super::resources::{check_name, limit_json, resource_spec};
use super::{denied, ApiError, Caller};
use crate::node::Node;

/// Rows of one page of the resources list.
pub const PAGE_LEN_MAX: u64 = 200;
const PAGE_LEN_DEFAULT: u64 = 50;
/// Resources read per hold of the applied state's lock.
const LOCK_CHUNK_LEN: usize = 256;
/// Held leases listed in the resource view (soonest expiry first).
pub const LEASES_SHOWN_MAX: usize = 100;
/// Members the cluster view asks, and how long it waits for each.
const MEMBERS_MAX: usize = 16;
const MEMBER_TIMEOUT: Duration = Duration::from_secs(2);

/// What a caller may see: the scope rules (`ratequeue_core::scope`), as for the rest of
/// the API. The server decides; the page only hides what it is refused. A client key
/// sees the resources its patterns name (none if they name nothing) and, in a
/// resource's lease list, only its own leases (the others are counted); admin and
/// monitor keys see everything; the cluster view needs the read scope, as
/// `/v1/cluster/status` does.
mod visibility {
    use super::Caller;

    pub(super) fn any_resource(caller: &Caller) -> bool {
        caller.sees_any()
    }

    pub(super) fn resource(caller: &Caller, name: &str) -> bool {
        caller.may_see(name)
    }

    pub(super) fn read_resource(caller: &Caller, name: &str) -> Result<(), super::ApiError> {
        caller.may_read(name).map_err(super::denied)
    }

    pub(super) fn lease(caller: &Caller, owner: Option<&str>) -> bool {
        caller.may_see_lease(owner)
    }

    pub(super) fn every_lease(caller: &Caller) -> bool {
        caller.may_see_every_lease()
    }

    pub(super) fn cluster(caller: &Caller) -> Result<(), super::ApiError> {
        caller.may_read_cluster().map_err(super::denied)
    }

    pub(super) fn permissions(caller: &Caller) -> super::ui::Permissions {
        super::ui::Permissions {
            manage: caller.may_manage().is_ok(),
            read_cluster: caller.may_read_cluster().is_ok(),
            hold_leases: caller.may_hold_leases().is_ok(),
            see_every_resource: caller.may_see_every_resource(),
            see_every_lease: caller.may_see_every_lease(),
        }
    }
}

super::openapi::errors!(SessionErrors, any_node; AUTHENTICATED;);

#[utoipa::path(
    get,
    path = "/v1/dashboard/session",
    tag = "dashboard",
    operation_id = "dashboard_session",
    summary = "Who the token is, what it may do, and every member's API URL (any node)",
    responses((status = 200, description = "The session", body = ui::Session), SessionErrors),
)]
pub(super) async fn session(State(node): State<Arc<Node>>, caller: Caller) -> Response {
    let may = visibility::permissions(&caller);
    let members = node
        .status()
        .members
        .into_iter()
        .map(|m| ui::MemberLink {
            id: m.id,
            api_url: m.api_url,
        })
        .collect();
    let (name, role, key) = match &caller.0 {
        scope::Caller::AdminToken => ("admin".to_owned(), api::Role::Admin, None),
        scope::Caller::Key(k) => (
            k.name.clone(),
            role_json(k.role),
            Some(key_json(k, node.cluster_time_ms())),
        ),
    };
    json(ui::Session {
        name,
        role,
        key,
        may,
        members,
        node_id: node.id,
    })
}

/// The query of the resources list: filter, sort, page.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Case-insensitive substring of the name (at most 128 bytes).
    #[serde(default)]
    #[param(max_length = 128)]
    filter: String,
    /// The sort key (default `name`).
    #[serde(default)]
    #[param(inline)]
    sort: ui::SortKey,
    /// Highest first.
    #[serde(default)]
    desc: bool,
    /// Rows to skip.
    #[serde(default)]
    offset: u64,
    /// Rows of the page: 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u64>,
}

/// What a row is sorted by, read in the first pass.
struct Key {
    name: String,
    held: u64,
    usage: f64,
    waiting: u64,
    rate: f64,
}

fn usage(limits: &[ratequeue_core::LimitView]) -> f64 {
    limits
        .iter()
        .map(|l| {
            let used = l.limit as f64 - l.remaining as f64;
            used / (l.limit.max(1) as f64)
        })
        .fold(0.0, f64::max)
}

super::openapi::errors!(PageErrors, leader; AUTHENTICATED; InvalidRequest);

#[utoipa::path(
    get,
    path = "/v1/dashboard/resources",
    tag = "dashboard",
    operation_id = "dashboard_resources",
    summary = "A page of the resources the token may see, filtered and sorted (leader)",
    params(ListQuery),
    responses((status = 200, description = "The page", body = ui::ResourcePage), PageErrors),
)]
pub(super) async fn resources(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return ApiError::invalid(format!("bad query string: {e}")).into_response(),
    };
    if q.filter.len() > NAME_LEN_MAX {
        return ApiError::invalid(format!("filter must be at most {NAME_LEN_MAX} bytes"))
            .into_response();
    }
    let limit = q.limit.unwrap_or(PAGE_LEN_DEFAULT);
    if !(1..=PAGE_LEN_MAX).contains(&limit) {
        return ApiError::invalid(format!("limit must be in 1..={PAGE_LEN_MAX}")).into_response();
    }
    if let Err(r) = require_leader(&node, &uri) {
        return r;
    }
    if !visibility::any_resource(&caller) {
        return json(ui::ResourcePage {
            total: 0,
            offset: q.offset,
            rows: Vec::new(),
            node_id: node.id,
            cluster_time_ms: node.applied.read().state.now_ms(),
        });
    }
    let board = node.series.board();
    let needle = q.filter.to_ascii_lowercase();
    let waiting_of = |name: &str| board.waiting.get(name).map_or(0, |l| l.values().sum());
    // First pass: the sort key of every visible match, a chunk of resources per lock.
    let mut keys: Vec<Key> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let a = node.applied.read();
        let mut last = None;
        for (name, _) in a
            .state
            .resources_after(after.as_deref())
            .take(LOCK_CHUNK_LEN)
        {
            last = Some(name);
            if !name.to_ascii_lowercase().contains(&needle) || !visibility::resource(&caller, name)
            {
                continue;
            }
            let Some(stats) = a.state.resource_stats(name) else {
                continue;
            };
            keys.push(Key {
                name: name.to_owned(),
                held: stats.held,
                usage: usage(&stats.limits),
                waiting: waiting_of(name),
                rate: board.grants_per_s.get(name).copied().unwrap_or(0.0),
            });
        }
        match last {
            Some(name) => after = Some(name.to_owned()),
            None => break,
        }
    }
    keys.sort_by(|a, b| {
        let by = match q.sort {
            ui::SortKey::Name => std::cmp::Ordering::Equal,
            ui::SortKey::Held => a.held.cmp(&b.held),
            ui::SortKey::Usage => a.usage.total_cmp(&b.usage),
            ui::SortKey::Waiting => a.waiting.cmp(&b.waiting),
            ui::SortKey::Rate => a.rate.total_cmp(&b.rate),
        };
        let by = by.then_with(|| a.name.cmp(&b.name));
        if q.desc {
            by.reverse()
        } else {
            by
        }
    });
    let total = keys.len() as u64;
    let page: Vec<Key> = keys
        .into_iter()
        .skip(usize::try_from(q.offset).unwrap_or(usize::MAX))
        .take(limit as usize)
        .collect();
    // Second pass: the rows of the page.
    let (rows, cluster_time_ms) = {
        let a = node.applied.read();
        let rows = page
            .into_iter()
            .filter_map(|k| {
                let config = a.state.resource(&k.name)?;
                let stats = a.state.resource_stats(&k.name)?;
                let waiting: BTreeMap<String, u64> =
                    board.waiting.get(&k.name).cloned().unwrap_or_default();
                Some(ui::ResourceRow {
                    config: resource_spec(config),
                    held: stats.held,
                    limits: stats.limits.iter().map(limit_json).collect(),
                    waiting_total: waiting.values().sum(),
                    waiting,
                    usage: usage(&stats.limits),
                    grants_per_s: k.rate,
                    name: k.name,
                })
            })
            .collect();
        (rows, a.state.now_ms())
    };
    json(ui::ResourcePage {
        total,
        offset: q.offset,
        rows,
        node_id: node.id,
        cluster_time_ms,
    })
}

super::openapi::errors!(DetailErrors, leader; AUTHENTICATED;
    InvalidRequest, Forbidden, ResourceNotFound);

#[utoipa::path(
    get,
    path = "/v1/dashboard/resources/{name}",
    tag = "dashboard",
    operation_id = "dashboard_resource",
    summary = "One resource: config, limits, queue, leases, series (leader)",
    params(("name" = String, Path, description = "The resource", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    responses((status = 200, description = "The resource's view", body = ui::ResourceDetail), DetailErrors),
)]
pub(super) async fn resource(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(name): Path<String>,
) -> Response {
    if let Err(e) = check_name(&name) {
        return e.into_response();
    }
    if let Err(e) = visibility::read_resource(&caller, &name) {
        return e.into_response();
    }
    if let Err(r) = require_leader(&node, &uri) {
        return r;
    }
    let report = match node.admission.queue(&name).await {
        Ok(r) => r,
        Err(f) => return failure(&node, &uri, f),
    };
    let read = {
        let a = node.applied.read();
        // The leader's clock: cluster time in the applied state moves only with entries.
        let now = a.state.now_ms().max(report.clock_ms);
        a.state.resource(&name).cloned().and_then(|config| {
            let stats = a.state.resource_stats(&name)?;
            // Those of other keys are counted (a client key), the rest listed up to the
            // bound; the walk stops there when every lease is visible.
            let mut others = 0u64;
            let mut shown: Vec<ui::HeldLease> = Vec::new();
            let every = visibility::every_lease(&caller);
            for l in a.state.held(&name) {
                if !visibility::lease(&caller, l.owner.as_deref()) {
                    others += 1;
                    continue;
                }
                if shown.len() == LEASES_SHOWN_MAX {
                    if every {
                        break;
                    }
                    continue;
                }
                shown.push(ui::HeldLease {
                    fencing_token: l.token,
                    lane: l.lane,
                    load: l.load,
                    holder: l.holder,
                    owner: l.owner,
                    age_ms: now.saturating_sub(l.granted_at_ms),
                    expires_in_ms: l.expires_at_ms.saturating_sub(now),
                });
            }
            Some((config, stats, shown, others, now))
        })
    };
    let Some((config, stats, shown, others, now)) = read else {
        return ApiError::new(ErrorCode::ResourceNotFound, "no such resource").into_response();
    };
    let queue = report
        .view
        .as_ref()
        .map_or_else(ui::Queue::default, |view| {
            let waited = |id| report.waited_ms.get(&id).copied().unwrap_or(0);
            ui::Queue {
                waiting: view.waiting as u64,
                lanes: view
                    .lanes
                    .iter()
                    .map(|l| ui::LaneQueue {
                        lane: l.lane.clone(),
                        weight: config.lane_weight(&l.lane),
                        waiting: l.waiting as u64,
                        priorities: l
                            .groups
                            .iter()
                            .map(|g| ui::PriorityQueue {
                                priority: g.priority,
                                waiting: g.waiting as u64,
                                oldest_wait_ms: waited(g.first),
                            })
                            .collect(),
                    })
                    .collect(),
                head: view.head.as_ref().map(|h| ui::HeadOfLine {
                    lane: h.lane.clone(),
                    priority: h.priority,
                    load: h.load,
                    waited_ms: waited(h.waiter),
                    estimated_wait_ms: report.head_wait_ms.unwrap_or(1),
                }),
                binding: match report.head_fit {
                    Some(Fit::Wait { ms, binding }) => Some(ui::Binding {
                        kind: api_kind(binding),
                        free_in_ms: ms,
                    }),
                    _ => None,
                },
                truncated: view.truncated,
            }
        });
    json(ui::ResourceDetail {
        config: resource_spec(&config),
        held: stats.held,
        grants_total: stats.grants_total,
        limits: stats.limits.iter().map(limit_json).collect(),
        queue,
        leases: ui::Leases {
            held: stats.held,
            shown,
            others,
        },
        series: node.series.of(&name),
        node_id: node.id,
        cluster_time_ms: now,
        name,
    })
}

super::openapi::errors!(ClusterErrors, any_node; AUTHENTICATED; Forbidden);

#[utoipa::path(
    get,
    path = "/v1/dashboard/cluster",
    tag = "dashboard",
    operation_id = "dashboard_cluster",
    summary = "Every member's own status and readiness, asked by this node (admin and monitor keys)",
    responses((status = 200, description = "The members", body = ui::Cluster), ClusterErrors),
)]
pub(super) async fn cluster(
    State(node): State<Arc<Node>>,
    Extension(up): Extension<Upstream>,
    caller: Caller,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = visibility::cluster(&caller) {
        return e.into_response();
    }
    let auth = headers.get(AUTHORIZATION).cloned();
    let local = node.status();
    let asks = local.members.iter().take(MEMBERS_MAX).map(|m| {
        let (node, up, auth, local) = (node.clone(), up.clone(), auth.clone(), &local);
        async move {
            let (ready, detail, status) = if m.id == node.id {
                match node.readiness().await {
                    Ok(()) => (true, "ready".to_owned(), Some(local.clone())),
                    Err(why) => (false, format!("not ready: {why}"), Some(local.clone())),
                }
            } else if m.api_url.is_empty() {
                (false, "API URL not published yet".to_owned(), None)
            } else {
                up.member_health(m.id, &m.api_url, auth, MEMBER_TIMEOUT)
                    .await
            };
            ui::MemberHealth {
                id: m.id,
                api_url: m.api_url.clone(),
                voter: m.voter,
                ready,
                detail,
                status,
            }
        }
    });
    let members = futures::future::join_all(asks).await;
    json(ui::Cluster {
        node_id: node.id,
        members,
    })
}
