//! The one serve loop under every listener (client API, peers, metrics): connection
//! caps, header-read and idle timeouts, the transport's handshake (plain, or TLS from
//! `tls.rs`), and HTTP/1.1 + HTTP/2 (h2c with prior knowledge on plain TCP) on each
//! connection, for plain and TLS streams alike.
//!
//! Each accepted TCP connection is checked against `ConnLimits` before anything is
//! read from it: over the total cap or the per-source-address cap it gets one
//! `503 too_many_connections` response (written blindly, HTTP/1.1) and is closed. Then
//! the `Handshake` runs on the connection's own task (a client that connects and sends
//! nothing never blocks the accept loop), then hyper serves the connection. A watchdog
//! per connection closes it when
//!
//! - the first request's headers have not arrived `header_read_timeout` after accept
//!   (this covers the TLS handshake and a client that connects and says nothing),
//! - an HTTP/1.1 request's headers, once begun, do not complete within
//!   `header_read_timeout` (slowloris), or
//! - no request has been in flight for `idle_timeout` (keep-alive); an idle h2
//!   connection gets a GOAWAY first.
//!
//! A request body must arrive within `http::BODY_READ_TIMEOUT` (the `Body` extractor),
//! and at most `h2_streams_max` requests are in flight on one h2 connection (one on
//! HTTP/1.1), which bounds the waiters one connection can park.
//!
//! Every request carries the extensions [`Source`] (the remote address) and, when the
//! transport verified one, [`ClientCert`] (the peer's certificate). This module knows
//! nothing about routes, tokens or Raft: it serves any `Router`.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use parking_lot::Mutex;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tower::ServiceExt as _;

use crate::metrics::ConnectionStats;

/// The remote address of the connection a request came on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source(pub SocketAddr);

/// The certificate the peer presented and the transport verified (mutual TLS only).
#[derive(Clone, Debug)]
pub struct ClientCert(pub Arc<CertificateDer<'static>>);

/// How long the loop waits before accepting again after an accept error (out of file
/// descriptors, for example), so that it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// How long open connections get to finish their requests after `stop`.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Bounds of the API listener (docs/operations.md, "Connection limits").
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// Open connections at once.
    pub connections_max: usize,
    /// Open connections at once from one source IP address.
    pub connections_per_source_max: usize,
    /// From accept to the first request's headers, and from the first byte of a later
    /// HTTP/1.1 request to its last header byte.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Requests in flight at once on one HTTP/2 connection.
    pub h2_streams_max: u32,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            connections_max: 4_096,
            connections_per_source_max: 256,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            h2_streams_max: 128,
        }
    }
}

impl ConnLimits {
    /// The peer port's bounds: few, long-lived connections between members (pooled by
    /// each node's peer client), so idle ones are kept longer.
    pub fn peer() -> ConnLimits {
        ConnLimits {
            connections_max: 1_024,
            connections_per_source_max: 64,
            idle_timeout: Duration::from_secs(300),
            ..ConnLimits::default()
        }
    }
}

/// Turns an accepted TCP stream into the byte stream HTTP is served on: identity for
/// plain TCP, a TLS handshake for TLS. It runs under the header-read timeout.
pub trait Handshake: Clone + Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    fn handshake(&self, tcp: TcpStream) -> impl Future<Output = io::Result<Self::Io>> + Send;

    /// The verified certificate the peer presented on `io`, if any.
    fn client_cert(_io: &Self::Io) -> Option<ClientCert> {
        None
    }
}

/// Plain TCP.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl Handshake for Plain {
    type Io = TcpStream;
    async fn handshake(&self, tcp: TcpStream) -> io::Result<TcpStream> {
        Ok(tcp)
    }
}

/// Why a connection was closed by the listener rather than by its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    TooManyConnections,
    TooManyFromSource,
    HeaderTimeout,
    Idle,
}

impl Closed {
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::TooManyConnections => "connections_max",
            Closed::TooManyFromSource => "connections_per_source_max",
            Closed::HeaderTimeout => "header_read_timeout",
            Closed::Idle => "idle_timeout",
        }
    }
}

fn count(stats: &ConnectionStats, why: Closed) {
    let c = match why {
        Closed::TooManyConnections => &stats.refused_total,
        Closed::TooManyFromSource => &stats.refused_per_source_total,
        Closed::HeaderTimeout => &stats.header_timeouts_total,
        Closed::Idle => &stats.idle_closed_total,
    };
    c.fetch_add(1, Ordering::Relaxed);
}

/// Open connections, in total and per source address.
#[derive(Default)]
struct Census {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

/// Held by a connection's task: its place in the census, given back on drop.
struct Admitted {
    census: Arc<Mutex<Census>>,
    stats: Arc<ConnectionStats>,
    ip: IpAddr,
    closed: Arc<Notify>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut c = self.census.lock();
        c.total -= 1;
        if let Some(n) = c.per_source.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_source.remove(&self.ip);
            }
        }
        self.stats.open.store(c.total, Ordering::Relaxed);
        drop(c);
        self.closed.notify_waiters();
    }
}

fn admit(
    census: &Arc<Mutex<Census>>,
    stats: &Arc<ConnectionStats>,
    closed: &Arc<Notify>,
    limits: &ConnLimits,
    ip: IpAddr,
) -> Result<Admitted, Closed> {
    let mut c = census.lock();
    if c.total >= limits.connections_max {
        return Err(Closed::TooManyConnections);
    }
    let from_source = c.per_source.get(&ip).copied().unwrap_or(0);
    if from_source >= limits.connections_per_source_max {
        return Err(Closed::TooManyFromSource);
    }
    c.total += 1;
    *c.per_source.entry(ip).or_default() += 1;
    stats.open.store(c.total, Ordering::Relaxed);
    Ok(Admitted {
        census: census.clone(),
        stats: stats.clone(),
        ip,
        closed: closed.clone(),
    })
}

/// The one answer a refused connection gets (before it is closed).
fn refusal_response(why: Closed) -> Vec<u8> {
    let body = format!(
        "{{\"error\":{{\"code\":\"too_many_connections\",\"message\":\"connection refused: {} reached\",\"retry_after_ms\":1000}}}}",
        why.as_str()
    );
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `app` on `tcp` until `stop` resolves; then stops accepting, asks every
/// connection to finish gracefully and returns once all are closed, or after
/// [`DRAIN_TIMEOUT`].
pub async fn serve<H: Handshake>(
    tcp: TcpListener,
    handshake: H,
    app: Router,
    limits: ConnLimits,
    stats: Arc<ConnectionStats>,
    stop: impl Future<Output = ()>,
) {
    let census = Arc::new(Mutex::new(Census::default()));
    let closed = Arc::new(Notify::new());
    let started = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            a = tcp.accept() => a,
            () = &mut stop => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let admitted = match admit(&census, &stats, &closed, &limits, peer.ip()) {
            Ok(a) => a,
            Err(why) => {
                count(&stats, why);
                log_refusal(&stats, started, peer, why);
                tokio::spawn(refuse(stream, why));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            handshake: handshake.clone(),
            app: app.clone(),
            limits,
            stats: stats.clone(),
            peer,
            stop: stop_rx.clone(),
        };
        tokio::spawn(conn.run(stream, admitted));
    }
    drop(tcp);
    let _ = stop_tx.send(true);
    // Every connection task has seen `stop` and is finishing; wait for the last.
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        loop {
            let notified = closed.notified();
            if census.lock().total == 0 {
                return;
            }
            notified.await;
        }
    });
    if drained.await.is_err() {
        tracing::debug!("connections still open after the drain timeout");
    }
}

fn log_refusal(stats: &ConnectionStats, started: Instant, peer: SocketAddr, why: Closed) {
    let now = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let last = stats.last_refusal_log_ms.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 1_000
        && stats
            .last_refusal_log_ms
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            source = %peer,
            limit = why.as_str(),
            refused_total = stats.refused_total.load(Ordering::Relaxed),
            refused_per_source_total = stats.refused_per_source_total.load(Ordering::Relaxed),
            "connection refused (logged at most once a second)"
        );
    }
}

async fn refuse(mut stream: TcpStream, why: Closed) {
    let answer = refusal_response(why);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(&answer).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

struct Conn<H> {
    handshake: H,
    app: Router,
    limits: ConnLimits,
    stats: Arc<ConnectionStats>,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
}

/// What the watchdog reads: when bytes last arrived while no request was in flight,
/// how many requests are in flight, when the last one ended.
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// ms since `start` + 1 of the first byte read while idle (0: none yet).
    pending_since: AtomicU64,
    /// ms since `start` when the connection last became idle.
    idle_since: AtomicU64,
    h2: AtomicBool,
}

impl Activity {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Ends a request's in-flight count when its response future completes or is dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since.store(a.now_ms(), Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<H: Handshake> Conn<H> {
    async fn run(self, stream: TcpStream, admitted: Admitted) {
        let activity = Arc::new(Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            pending_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            h2: AtomicBool::new(false),
        });
        let io = match tokio::time::timeout(
            self.limits.header_read_timeout,
            self.handshake.handshake(stream),
        )
        .await
        {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => {
                tracing::debug!(source = %self.peer, error = %e, "handshake failed");
                return;
            }
            Err(_) => {
                count(&self.stats, Closed::HeaderTimeout);
                tracing::debug!(source = %self.peer, "handshake timed out");
                return;
            }
        };
        let cert = H::client_cert(&io);
        let io = TokioIo::new(Watched {
            inner: io,
            activity: activity.clone(),
        });
        let app = self.app.clone();
        let source = Source(self.peer);
        let service_activity = activity.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let a = service_activity.clone();
            a.in_flight.fetch_add(1, Ordering::Relaxed);
            a.requests.fetch_add(1, Ordering::Relaxed);
            a.pending_since.store(0, Ordering::Relaxed);
            if req.version() == hyper::Version::HTTP_2 {
                a.h2.store(true, Ordering::Relaxed);
            }
            req.extensions_mut().insert(source);
            if let Some(cert) = &cert {
                req.extensions_mut().insert(cert.clone());
            }
            let guard = InFlight(a);
            let app = app.clone();
            async move {
                let res = app.oneshot(req.map(axum::body::Body::new)).await;
                drop(guard);
                res
            }
        });
        let mut builder = Builder::new(TokioExecutor::new());
        builder.http1().keep_alive(true);
        builder
            .http2()
            .max_concurrent_streams(self.limits.h2_streams_max);
        let conn = builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(conn);
        let tick = (self
            .limits
            .header_read_timeout
            .min(self.limits.idle_timeout)
            / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut closing: Option<Instant> = None;
        let mut stop = self.stop.clone();
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(source = %self.peer, error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = stop.wait_for(|s| *s), if closing.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
                _ = ticker.tick() => {
                    if let Some(since) = closing {
                        // A graceful close waits for in-flight requests; a client that
                        // does not read its answers does not get to hold the socket.
                        if since.elapsed() > self.limits.header_read_timeout {
                            break;
                        }
                        continue;
                    }
                    match self.overdue(&activity) {
                        Some(Closed::HeaderTimeout) => {
                            count(&self.stats, Closed::HeaderTimeout);
                            tracing::debug!(source = %self.peer, "request headers not received in time; closing");
                            break;
                        }
                        Some(why) => {
                            count(&self.stats, why);
                            tracing::debug!(source = %self.peer, "idle; closing");
                            conn.as_mut().graceful_shutdown();
                            closing = Some(Instant::now());
                        }
                        None => {}
                    }
                }
            }
        }
        drop(admitted);
    }

    /// Whether the connection overstayed a timeout.
    fn overdue(&self, a: &Activity) -> Option<Closed> {
        if a.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let now = a.now_ms();
        let header_ms = ms(self.limits.header_read_timeout);
        if a.requests.load(Ordering::Relaxed) == 0 {
            // The first request's headers are due `header_read_timeout` after accept.
            return (now >= header_ms).then_some(Closed::HeaderTimeout);
        }
        let pending = a.pending_since.load(Ordering::Relaxed);
        if pending > 0 && !a.h2.load(Ordering::Relaxed) && now >= (pending - 1) + header_ms {
            return Some(Closed::HeaderTimeout);
        }
        let idle = a.idle_since.load(Ordering::Relaxed);
        (now >= idle.saturating_add(ms(self.limits.idle_timeout))).then_some(Closed::Idle)
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The connection's byte stream, noting when a request begins to arrive while idle.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let a = &self.activity;
            if a.in_flight.load(Ordering::Relaxed) == 0
                && a.pending_since.load(Ordering::Relaxed) == 0
            {
                a.pending_since.store(a.now_ms() + 1, Ordering::Relaxed);
            }
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
