//! `rqctl status`: the cluster as the leader sees it, plus each member's own view.
//!
//! Asks any node for its status, then the leader (only its view has replication lag),
//! then every member directly (its own role and applied index), each with a short
//! timeout: a down member shows as `down` rather than stalling the table.

use std::collections::BTreeMap;
use std::time::Duration;

use ratequeue_client::api::{ClusterStatus, NodeRole};
use ratequeue_client::Client;

use super::{bytes, table, Failure, OrFail, Out};

/// How long `status` waits for each member's own answer.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub out: Out,
}

/// The leader's view (else the first answering node's) and each member's own view.
pub struct Snapshot {
    pub view: ClusterStatus,
    pub nodes: BTreeMap<u64, Result<ClusterStatus, String>>,
}

pub async fn gather(client: &Client) -> Result<Snapshot, ratequeue_client::Error> {
    let mut view = client.cluster_status().await?;
    if let Some(url) = view
        .leader_url
        .clone()
        .filter(|_| view.role != NodeRole::Leader)
    {
        if let Ok(v) = client.node_status(&url, MEMBER_TIMEOUT).await {
            view = v;
        }
    }
    // Ask every member at its api_url, and every configured URL (a bootstrap member's
    // api_url is empty until it has published it); file each answer under the id of
    // the node that gave it. A member that answers nowhere is `down`.
    let mut urls: Vec<(Option<u64>, String)> = view
        .members
        .iter()
        .filter(|m| !m.api_url.is_empty())
        .map(|m| (Some(m.id), m.api_url.clone()))
        .collect();
    for u in client.urls() {
        if !urls.iter().any(|(_, x)| x == u) {
            urls.push((None, u.clone()));
        }
    }
    let handles: Vec<_> = urls
        .into_iter()
        .map(|(id, url)| {
            let client = client.clone();
            tokio::spawn(async move { (id, client.node_status(&url, MEMBER_TIMEOUT).await) })
        })
        .collect();
    let mut nodes = BTreeMap::new();
    for h in handles {
        match h.await {
            Ok((_, Ok(st))) => {
                nodes.insert(st.id, Ok(st));
            }
            Ok((Some(id), Err(e))) => {
                nodes.entry(id).or_insert_with(|| Err(e.to_string()));
            }
            _ => {}
        }
    }
    Ok(Snapshot { view, nodes })
}

fn role(r: NodeRole) -> &'static str {
    match r {
        NodeRole::Leader => "leader",
        NodeRole::Follower => "follower",
        NodeRole::Candidate => "candidate",
        NodeRole::Learner => "learner",
        NodeRole::Shutdown => "shutdown",
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

pub fn text(s: &Snapshot) -> String {
    let v = &s.view;
    let mut out = String::new();
    match (v.leader_id, &v.leader_url) {
        (Some(id), Some(url)) => out.push_str(&format!("leader {id} ({url}), term {}\n", v.term)),
        (Some(id), None) => out.push_str(&format!("leader {id}, term {}\n", v.term)),
        _ => out.push_str(&format!("no leader known (term {})\n", v.term)),
    }
    let rows: Vec<Vec<String>> = v
        .members
        .iter()
        .map(|m| {
            let own = match s.nodes.get(&m.id) {
                Some(r) => Some(r.as_ref()),
                None if m.id == v.id => Some(Ok(v)),
                None => None,
            };
            let (role, term, applied) = match own {
                Some(Ok(n)) => (
                    role(n.role).to_owned(),
                    n.term.to_string(),
                    opt(n.applied_index),
                ),
                Some(Err(_)) => ("down".into(), "-".into(), "-".into()),
                None => ("?".into(), "-".into(), "-".into()),
            };
            let url = if m.api_url.is_empty() {
                "-".into()
            } else {
                m.api_url.clone()
            };
            vec![
                m.id.to_string(),
                role,
                if m.voter {
                    "voter".into()
                } else {
                    "learner".into()
                },
                url,
                m.peer_addr.clone(),
                term,
                applied,
                opt(m.matched_index),
                opt(m.lag),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "ID",
            "ROLE",
            "MEMBER",
            "API URL",
            "PEER ADDR",
            "TERM",
            "APPLIED",
            "MATCHED",
            "LAG",
        ],
        &rows,
    ));
    let snapshot = v.snapshot.as_ref().map_or_else(
        || "none".into(),
        |s| format!("{} (term {})", s.index, s.term),
    );
    out.push_str(&format!(
        "node {} view: log {}, committed {}, applied {}, snapshot {snapshot}, storage {}\n",
        v.id,
        opt(v.last_log_index),
        opt(v.committed_index),
        opt(v.applied_index),
        bytes(v.storage_bytes),
    ));
    out.push_str(&format!(
        "leases {}, waiters {}, cluster time {:.1} s\n",
        v.leases,
        v.waiters,
        v.cluster_time_ms as f64 / 1000.0
    ));
    out
}

pub fn json(s: &Snapshot) -> serde_json::Value {
    let nodes: Vec<serde_json::Value> = s
        .view
        .members
        .iter()
        .map(|m| match s.nodes.get(&m.id) {
            Some(Ok(n)) => serde_json::json!({ "id": m.id, "api_url": m.api_url, "status": n }),
            Some(Err(e)) => {
                serde_json::json!({ "id": m.id, "api_url": m.api_url, "status": null, "error": e })
            }
            None => serde_json::json!({ "id": m.id, "api_url": m.api_url, "status": null }),
        })
        .collect();
    serde_json::json!({ "view": s.view, "nodes": nodes })
}

pub async fn show(client: &Client, out: &Out) -> Result<(), Failure> {
    let s = gather(client).await.or_fail(out)?;
    if out.json {
        out.print_json(&json(&s))
    } else {
        print!("{}", text(&s));
        Ok(())
    }
}

pub async fn main(client: &Client, args: Args) -> Result<u8, Failure> {
    show(client, &args.out).await?;
    Ok(0)
}
