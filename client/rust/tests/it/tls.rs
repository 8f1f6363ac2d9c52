//! Issue 15, observation 2: `rqctl` and the Rust client could not speak TLS. Against a
//! cluster with TLS on both ports and client certificates required (certificates made
//! at test time by the kit), the client works through a follower's `https://` URL with
//! the cluster's CA and its certificate, is refused without them, and `rqctl` does the
//! same from `RATEQUEUE_CA_FILE` / `RATEQUEUE_CLIENT_CERT` / `RATEQUEUE_CLIENT_KEY`.

use std::process::Stdio;

use ratequeue_client::api::ReleaseState;
use ratequeue_client::Client;
use ratequeue_testkit::ClusterConfig;

use crate::cluster::{concurrency, server_bin, timing, ADMIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_and_rqctl_speak_mutual_tls() {
    let c = ClusterConfig::new(server_bin())
        .nodes(3)
        .admin_token(ADMIN)
        .args(["--cache-mb", "16"])
        .test_tls(true)
        .start()
        .await
        .unwrap();
    let pki = c.pki().unwrap();
    let ca = pki.ca_file();
    let (cert, key) = pki.client_files().unwrap();
    let leader = c.wait_leader().await.unwrap();
    let follower = c.running().into_iter().find(|id| *id != leader).unwrap();
    let url = c.url(follower);
    assert!(url.starts_with("https://"), "{url}");

    let client = Client::builder()
        .url(&url)
        .api_key(ADMIN)
        .ignore_env()
        .timing(timing())
        .ca_file(&ca)
        .client_cert(&cert, &key)
        .build()
        .unwrap();
    client
        .put_resource("tls-sem", &concurrency(1))
        .await
        .unwrap();
    let p = client.acquire("tls-sem").await.unwrap();
    assert_eq!(p.resource(), "tls-sem");
    assert_eq!(p.release().await.unwrap(), ReleaseState::Released);

    // Without its certificate the node refuses the connection; without the CA the
    // client refuses the node. Neither is a definite API answer.
    let no_cert = Client::builder()
        .url(&url)
        .api_key(ADMIN)
        .ignore_env()
        .timing(timing())
        .ca_file(&ca)
        .build()
        .unwrap();
    let e = no_cert.cluster_status().await.unwrap_err();
    assert!(e.code().is_none(), "{e:?}");
    let no_ca = Client::builder()
        .url(&url)
        .api_key(ADMIN)
        .ignore_env()
        .timing(timing())
        .client_cert(&cert, &key)
        .build()
        .unwrap();
    let e = no_ca.cluster_status().await.unwrap_err();
    assert!(e.code().is_none(), "{e:?}");

    // rqctl, configured from the environment.
    let rqctl = |with_cert: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rqctl"));
        cmd.env("RATEQUEUE_URL", &url)
            .env("RATEQUEUE_API_KEY", ADMIN)
            .env("RATEQUEUE_CA_FILE", &ca)
            .env_remove("RATEQUEUE_CLIENT_CERT")
            .env_remove("RATEQUEUE_CLIENT_KEY")
            .args(["resource", "get", "tls-sem", "--json"])
            .stdin(Stdio::null());
        if with_cert {
            cmd.env("RATEQUEUE_CLIENT_CERT", &cert)
                .env("RATEQUEUE_CLIENT_KEY", &key);
        }
        cmd.output().unwrap()
    };
    let out = rqctl(true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["name"], "tls-sem", "{v}");
    let out = rqctl(false);
    assert!(
        !out.status.success(),
        "rqctl got in without a client certificate"
    );
}
