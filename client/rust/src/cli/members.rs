//! `rqctl members add|remove` (admin). Both print the cluster status afterwards.

use ratequeue_client::api::AddMember;
use ratequeue_client::Client;

use super::{status, Failure, OrFail, Out};

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Add a node: as a learner, wait until it has caught up, then promote it.
    Add {
        id: u64,
        /// host:port of the new node's peer listener.
        #[arg(long)]
        peer_addr: String,
        /// Base URL of the new node's API (clients are redirected there).
        #[arg(long)]
        api_url: String,
        /// Keep it a non-voting learner.
        #[arg(long)]
        learner: bool,
        #[command(flatten)]
        out: Out,
    },
    /// Remove a member (demoted first if a voter).
    Remove {
        id: u64,
        #[command(flatten)]
        out: Out,
    },
}

pub async fn main(client: &Client, cmd: Cmd) -> Result<u8, Failure> {
    let out = match cmd {
        Cmd::Add {
            id,
            peer_addr,
            api_url,
            learner,
            out,
        } => {
            let req = AddMember {
                id,
                peer_addr,
                api_url,
                voter: !learner,
            };
            let s = client.add_member(&req).await.or_fail(&out)?;
            if out.json {
                out.print_json(&s)?;
                return Ok(0);
            }
            let how = if learner { "learner" } else { "voter" };
            println!("added member {id} as a {how}");
            out
        }
        Cmd::Remove { id, out } => {
            let s = client.remove_member(id).await.or_fail(&out)?;
            if out.json {
                out.print_json(&s)?;
                return Ok(0);
            }
            println!("removed member {id}");
            out
        }
    };
    status::show(client, &out).await?;
    Ok(0)
}
