//! `rqctl key create|rotate|list|delete` (admin).

use ratequeue_client::api::{self, CreateKeyRequest, RotateKeyRequest};
use ratequeue_client::Client;

use super::{table, Failure, OrFail, Out};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum RoleArg {
    Client,
    Admin,
    Monitor,
}

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Create a key (a name that exists is refused: rotate it); its text is printed
    /// only this once.
    Create {
        name: String,
        #[arg(long, value_enum, default_value = "client")]
        role: RoleArg,
        /// Resource glob the key may use (`*`, `?`), repeatable: `--resource 'openai-*'`.
        #[arg(long = "resource", value_name = "PATTERN")]
        resources: Vec<String>,
        /// Lane glob the key may queue in, repeatable (default: every lane).
        #[arg(long = "lane", value_name = "PATTERN")]
        lanes: Vec<String>,
        /// The highest priority the key may ask for (default: any).
        #[arg(long, allow_hyphen_values = true)]
        max_priority: Option<i32>,
        /// Waiters the key may have queued at once (default 1000).
        #[arg(long)]
        max_waiters: Option<u32>,
        /// Requests the key may have in flight on one node (default 2000).
        #[arg(long)]
        max_in_flight: Option<u32>,
        /// The key expires this many milliseconds of cluster time after it is created.
        #[arg(long)]
        expires_in_ms: Option<u64>,
        #[command(flatten)]
        out: Out,
    },
    /// Give a key a new text (same scope); the old text stops working at once. The new
    /// text is printed only this once.
    Rotate {
        name: String,
        /// The new text expires this many milliseconds of cluster time from now
        /// (default: never).
        #[arg(long)]
        expires_in_ms: Option<u64>,
        #[command(flatten)]
        out: Out,
    },
    /// List keys (names, roles, scopes, quotas, expiry; never the key text).
    List {
        #[command(flatten)]
        out: Out,
    },
    /// Delete a key.
    Delete {
        name: String,
        #[command(flatten)]
        out: Out,
    },
}

fn role_text(r: api::Role) -> &'static str {
    match r {
        api::Role::Admin => "admin",
        api::Role::Client => "client",
        api::Role::Monitor => "monitor",
    }
}

fn patterns(p: &[String]) -> String {
    if p.is_empty() {
        "-".into()
    } else {
        p.join(" ")
    }
}

fn expiry(k: &api::Key) -> String {
    match k.expires_in_ms {
        None => "never".into(),
        Some(0) => "expired".into(),
        Some(ms) => format!("in {} s", ms.div_ceil(1_000)),
    }
}

fn print_secret(out: &Out, k: &api::CreatedKey, what: &str) -> Result<(), Failure> {
    if out.json {
        return out.print_json(k);
    }
    eprintln!(
        "{what} key {} (role {}, resources {}, expires {}); the key text is shown only now:",
        k.info.name,
        role_text(k.info.role),
        patterns(&k.info.resources),
        expiry(&k.info),
    );
    println!("{}", k.key);
    Ok(())
}

pub async fn main(client: &Client, cmd: Cmd) -> Result<u8, Failure> {
    match cmd {
        Cmd::Create {
            name,
            role,
            resources,
            lanes,
            max_priority,
            max_waiters,
            max_in_flight,
            expires_in_ms,
            out,
        } => {
            let role = match role {
                RoleArg::Client => api::Role::Client,
                RoleArg::Admin => api::Role::Admin,
                RoleArg::Monitor => api::Role::Monitor,
            };
            let req = CreateKeyRequest {
                name,
                role,
                resources,
                lanes,
                max_priority,
                max_waiters,
                max_in_flight,
                expires_in_ms,
            };
            let k = client.create_key(&req).await.or_fail(&out)?;
            print_secret(&out, &k, "created")?;
        }
        Cmd::Rotate {
            name,
            expires_in_ms,
            out,
        } => {
            let req = RotateKeyRequest { expires_in_ms };
            let k = client.rotate_key(&name, &req).await.or_fail(&out)?;
            print_secret(&out, &k, "rotated")?;
        }
        Cmd::List { out } => {
            let keys = client.list_keys().await.or_fail(&out)?;
            if out.json {
                out.print_json(&api::KeyList { keys })?;
            } else if keys.is_empty() {
                println!("no keys");
            } else {
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|k| {
                        vec![
                            k.name.clone(),
                            role_text(k.role).into(),
                            patterns(&k.resources),
                            patterns(&k.lanes),
                            k.max_priority.map_or_else(|| "-".into(), |p| p.to_string()),
                            format!("{}/{}", k.max_waiters, k.max_in_flight),
                            expiry(k),
                        ]
                    })
                    .collect();
                let header = [
                    "NAME",
                    "ROLE",
                    "RESOURCES",
                    "LANES",
                    "MAX PRIORITY",
                    "WAITERS/IN FLIGHT",
                    "EXPIRES",
                ];
                print!("{}", table(&header, &rows));
            }
        }
        Cmd::Delete { name, out } => {
            client.delete_key(&name).await.or_fail(&out)?;
            if out.json {
                out.print_json(&serde_json::json!({ "name": name, "deleted": true }))?;
            } else {
                println!("deleted key {name}");
            }
        }
    }
    Ok(0)
}
