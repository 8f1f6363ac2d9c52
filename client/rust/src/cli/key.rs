//! `rqctl key create|list|delete` (admin).

use ratequeue_client::api::{self, CreateKeyRequest};
use ratequeue_client::Client;

use super::{table, Failure, OrFail, Out};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum RoleArg {
    Client,
    Admin,
}

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Create (or replace) a key; its text is printed only this once.
    Create {
        name: String,
        #[arg(long, value_enum, default_value = "client")]
        role: RoleArg,
        /// Resource glob the key may use (`*`, `?`), repeatable: `--resource 'openai-*'`.
        #[arg(long = "resource", value_name = "PATTERN")]
        resources: Vec<String>,
        #[command(flatten)]
        out: Out,
    },
    /// List keys (names, roles, patterns; never the key text).
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
    }
}

pub async fn main(client: &Client, cmd: Cmd) -> Result<u8, Failure> {
    match cmd {
        Cmd::Create {
            name,
            role,
            resources,
            out,
        } => {
            let role = match role {
                RoleArg::Client => api::Role::Client,
                RoleArg::Admin => api::Role::Admin,
            };
            let req = CreateKeyRequest {
                name,
                role,
                resources,
            };
            let k = client.create_key(&req).await.or_fail(&out)?;
            if out.json {
                out.print_json(&k)?;
            } else {
                let patterns = if k.resources.is_empty() {
                    "-".into()
                } else {
                    k.resources.join(" ")
                };
                eprintln!(
                    "created key {} (role {}, resources {patterns}); the key text is shown only now:",
                    k.name,
                    role_text(k.role)
                );
                println!("{}", k.key);
            }
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
                        let patterns = if k.resources.is_empty() {
                            "-".into()
                        } else {
                            k.resources.join(" ")
                        };
                        vec![k.name.clone(), role_text(k.role).into(), patterns]
                    })
                    .collect();
                print!("{}", table(&["NAME", "ROLE", "RESOURCES"], &rows));
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
