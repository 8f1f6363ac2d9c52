//! The one serve loop under both listeners (client API and peers): accepts TCP
//! connections, runs the transport's handshake (plain, or TLS from `tls.rs`) on each
//! connection's own task, and serves HTTP/1.1 and HTTP/2 on it with hyper.
//!
//! Every request carries two extensions: [`Source`] (the remote address) and, when the
//! transport verified one, [`ClientCert`] (the peer's certificate). The loop knows
//! nothing about routes, tokens or Raft; what runs on a connection is the `Router`'s
//! business. A handshake never blocks the accept loop: a client that opens a connection
//! and sends nothing holds only its own task, and loses it after [`HANDSHAKE_TIMEOUT`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;

/// How long a new connection may take to complete its transport handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the loop waits before accepting again after an accept error (out of file
/// descriptors, for example), so that it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// How long open connections get to finish their requests after `stop`.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The remote address of the connection a request came on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source(pub SocketAddr);

/// The certificate the peer presented and the transport verified (mutual TLS only).
#[derive(Clone, Debug)]
pub struct ClientCert(pub Arc<CertificateDer<'static>>);

/// Turns an accepted TCP stream into the byte stream HTTP is served on.
pub trait Handshake: Clone + Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    fn handshake(&self, tcp: TcpStream) -> impl Future<Output = io::Result<Self::Io>> + Send;

    /// The verified certificate the peer presented on `io`, if any.
    fn client_cert(_io: &Self::Io) -> Option<ClientCert> {
        None
    }
}

/// Plain HTTP: the TCP stream as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl Handshake for Plain {
    type Io = TcpStream;

    async fn handshake(&self, tcp: TcpStream) -> io::Result<TcpStream> {
        Ok(tcp)
    }
}

/// Serves `app` on every connection `tcp` accepts until `stop` resolves, then stops
/// accepting and gives open connections [`DRAIN_TIMEOUT`] to finish.
pub async fn serve<H: Handshake>(
    tcp: TcpListener,
    handshake: H,
    app: Router,
    stop: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let handshake = handshake.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let io =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake.handshake(stream)).await {
                    Ok(Ok(io)) => io,
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "handshake timed out");
                        return;
                    }
                };
            let cert = H::client_cert(&io);
            let service = app.map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(Source(remote));
                if let Some(cert) = &cert {
                    request.extensions_mut().insert(cert.clone());
                }
                request.map(axum::body::Body::new)
            });
            let builder = Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(io),
                TowerToHyperService::new(service),
            );
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::trace!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(tcp);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("connections still open after the drain timeout");
    }
}
