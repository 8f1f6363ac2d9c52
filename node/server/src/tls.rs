//! TLS for a node (rustls with the `ring` provider; no OpenSSL): the certificate and key
//! it serves on both listeners and presents to peers, the CA that peers' certificates
//! must chain to, and their reload without a restart.
//!
//! Node identity: the certificate of node N must carry the DNS subject alternative name
//! `node-N.ratequeue` ([`node_name`]). A node dialling member N verifies the peer's
//! certificate against the cluster CA *for that name*, whatever host name or IP it
//! dialled, so a wrong or hostile address is refused before anything is sent; the peer
//! listener requires a client certificate from the same CA, and the peer router checks
//! that it names the node the Raft message claims to come from ([`cert_names_node`]).
//! The same certificate may carry the host names clients use for the API.
//!
//! Reload: [`Tls::reload`] re-reads the files; [`Tls::spawn_reloader`] does so when
//! their content changes (polled) and on SIGHUP. A new certificate, key or CA that does
//! not load (unparsable, key not matching the certificate, a write half done) is
//! refused with an error log and the old one stays in use. Connections already open
//! keep the configuration they were accepted with; new handshakes get the new one.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

use crate::listener::{ClientCert, Handshake};
use crate::raft::types::NodeId;

/// How often [`Tls::spawn_reloader`] looks at the files (Kubernetes updates a mounted
/// Secret within a minute or so; SIGHUP reloads at once).
pub const RELOAD_POLL: Duration = Duration::from_secs(10);
/// The DNS name a node's certificate must carry, after `node-<id>.`.
pub const NODE_NAME_DOMAIN: &str = "ratequeue";
/// Largest certificate, key or CA file read.
const PEM_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// The DNS subject alternative name that identifies node `id`: `node-<id>.ratequeue`.
pub fn node_name(id: NodeId) -> String {
    format!("node-{id}.{NODE_NAME_DOMAIN}")
}

/// Whether `cert` carries the subject alternative name of node `id`. Does not check the
/// chain: call it on certificates the handshake already verified.
pub fn cert_names_node(cert: &CertificateDer<'_>, id: NodeId) -> bool {
    let Ok(name) = ServerName::try_from(node_name(id)) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert)
        .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
}

/// Where a node's TLS material lives (PEM files; cert-manager's `tls.crt`, `tls.key`,
/// `ca.crt`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPaths {
    /// This node's certificate chain, leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA bundle peers' certificates must chain to.
    pub ca: PathBuf,
    /// If set, API clients must present a certificate chaining to this bundle.
    pub api_client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: larger than {PEM_FILE_BYTES_MAX} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: {what}")]
    Pem { path: PathBuf, what: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("CA bundle: {0}")]
    Verifier(String),
}

/// The loaded material and the configurations built from it.
struct Material {
    /// SHA-256 over the files' contents: what the reloader compares.
    fingerprint: [u8; 32],
    key: Arc<CertifiedKey>,
    /// Verifies a peer's server certificate against the cluster CA.
    peer_server_verifier: Arc<WebPkiServerVerifier>,
    api: Arc<ServerConfig>,
    peer: Arc<ServerConfig>,
}

/// A node's TLS state; shared by its listeners and its peer client. Cheap to clone.
#[derive(Clone)]
pub struct Tls(Arc<Inner>);

struct Inner {
    paths: TlsPaths,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Material>>,
    /// Fingerprint of the last set of files that failed to load, so that the poller
    /// logs a bad file once, not every poll.
    failed: parking_lot::Mutex<Option<[u8; 32]>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("paths", &self.0.paths)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the files; fails if any is missing or unusable.
    pub fn load(paths: TlsPaths) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let files = read_files(&paths)?;
        let material = build(&files, &paths, &provider)?;
        Ok(Tls(Arc::new(Inner {
            paths,
            provider,
            current: RwLock::new(Arc::new(material)),
            failed: parking_lot::Mutex::new(None),
        })))
    }

    /// Re-reads the files. `Ok(true)` if they changed and the new material is in use,
    /// `Ok(false)` if they did not change; on error the old material stays in use.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let files = read_files(&self.0.paths)?;
        if files.fingerprint == self.0.current.read().fingerprint {
            return Ok(false);
        }
        match build(&files, &self.0.paths, &self.0.provider) {
            Ok(material) => {
                *self.0.current.write() = Arc::new(material);
                *self.0.failed.lock() = None;
                Ok(true)
            }
            Err(e) => {
                *self.0.failed.lock() = Some(files.fingerprint);
                Err(e)
            }
        }
    }

    /// Reloads when the files change (checked every `poll`) and on SIGHUP, until the
    /// process ends.
    pub fn spawn_reloader(&self, poll: Duration) {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut hangup = hangup_signals();
            let mut tick = tokio::time::interval(poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let signalled = tokio::select! {
                    _ = tick.tick() => false,
                    () = next_hangup(&mut hangup) => true,
                };
                tls.reload_and_log(signalled);
            }
        });
    }

    fn reload_and_log(&self, signalled: bool) {
        let before = *self.0.failed.lock();
        match self.reload() {
            Ok(true) => {
                tracing::info!(cert = %self.0.paths.cert.display(), "TLS certificate, key and CA reloaded")
            }
            Ok(false) if signalled => tracing::info!("SIGHUP: TLS files unchanged"),
            Ok(false) => {}
            Err(e) => {
                // Log a given bad set of files once (or on every SIGHUP).
                if signalled || before != *self.0.failed.lock() || before.is_none() {
                    tracing::error!(error = %e, "TLS reload refused; still serving the previous certificate");
                }
            }
        }
    }

    /// The handshake of the client API listener (client certificates only if
    /// `api_client_ca` is set).
    pub fn api_handshake(&self) -> TlsHandshake {
        TlsHandshake {
            tls: self.clone(),
            peer: false,
        }
    }

    /// The handshake of the peer listener: a client certificate from the cluster CA is
    /// required.
    pub fn peer_handshake(&self) -> TlsHandshake {
        TlsHandshake {
            tls: self.clone(),
            peer: true,
        }
    }

    /// The client configuration for dialling member `target`: its certificate must
    /// chain to the cluster CA and name `node-<target>.ratequeue`; this node presents
    /// its own certificate. Follows reloads.
    pub fn peer_client_config(&self, target: NodeId) -> Result<ClientConfig, TlsError> {
        let expected = ServerName::try_from(node_name(target))
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let mut config = ClientConfig::builder_with_provider(self.0.provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NodeVerifier {
                tls: self.clone(),
                expected,
            }))
            .with_client_cert_resolver(Arc::new(OwnCert(self.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    fn material(&self) -> Arc<Material> {
        self.0.current.read().clone()
    }
}

struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
    api_client_ca: Option<Vec<u8>>,
    fingerprint: [u8; 32],
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read as _;
    let read = |source| TlsError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut bytes = Vec::new();
    file.take(PEM_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > PEM_FILE_BYTES_MAX {
        return Err(TlsError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

fn read_files(paths: &TlsPaths) -> Result<Files, TlsError> {
    let cert = read_file(&paths.cert)?;
    let key = read_file(&paths.key)?;
    let ca = read_file(&paths.ca)?;
    let api_client_ca = paths.api_client_ca.as_deref().map(read_file).transpose()?;
    let mut h = Sha256::new();
    for part in [&cert, &key, &ca] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    if let Some(c) = &api_client_ca {
        h.update(c);
    }
    Ok(Files {
        cert,
        key,
        ca,
        api_client_ca,
        fingerprint: h.finalize().into(),
    })
}

fn pem_error(path: &Path, what: impl fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        what: what.to_string(),
    }
}

fn certs(bytes: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

fn roots(bytes: &[u8], path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs(bytes, path)? {
        store
            .add(cert)
            .map_err(|e| pem_error(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(Arc::new(store))
}

fn build(
    files: &Files,
    paths: &TlsPaths,
    provider: &Arc<CryptoProvider>,
) -> Result<Material, TlsError> {
    let chain = certs(&files.cert, &paths.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&files.key).map_err(|e| pem_error(&paths.key, e))?;
    let key = CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| pem_error(&paths.key, format!("does not fit the certificate: {e}")))?;
    let key = Arc::new(key);
    let peer_roots = roots(&files.ca, &paths.ca)?;
    let peer_server_verifier =
        WebPkiServerVerifier::builder_with_provider(peer_roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let peer_client_verifier =
        WebPkiClientVerifier::builder_with_provider(peer_roots, provider.clone())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let resolver = Arc::new(rustls::sign::SingleCertAndKey::from(key.clone()));
    let mut peer = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(peer_client_verifier)
        .with_cert_resolver(resolver.clone());
    peer.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let api_builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut api = match (&files.api_client_ca, &paths.api_client_ca) {
        (Some(bytes), Some(path)) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(roots(bytes, path)?, provider.clone())
                    .build()
                    .map_err(|e| TlsError::Verifier(e.to_string()))?;
            api_builder
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(resolver)
        }
        _ => api_builder
            .with_no_client_auth()
            .with_cert_resolver(resolver),
    };
    api.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Material {
        fingerprint: files.fingerprint,
        key,
        peer_server_verifier,
        api: Arc::new(api),
        peer: Arc::new(peer),
    })
}

/// The TLS handshake of one listener, with the configuration current at accept time.
#[derive(Clone, Debug)]
pub struct TlsHandshake {
    tls: Tls,
    peer: bool,
}

impl Handshake for TlsHandshake {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;

    async fn handshake(&self, tcp: TcpStream) -> io::Result<Self::Io> {
        let material = self.tls.material();
        let config = if self.peer {
            material.peer.clone()
        } else {
            material.api.clone()
        };
        tokio_rustls::TlsAcceptor::from(config).accept(tcp).await
    }

    fn client_cert(io: &Self::Io) -> Option<ClientCert> {
        let leaf = io.get_ref().1.peer_certificates()?.first()?;
        Some(ClientCert(Arc::new(leaf.clone().into_owned())))
    }
}

/// Verifies a member's certificate for the name of the node we mean to reach.
#[derive(Debug)]
struct NodeVerifier {
    tls: Tls,
    expected: ServerName<'static>,
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.tls.material().peer_server_verifier.verify_server_cert(
            end_entity,
            intermediates,
            &self.expected,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls
            .material()
            .peer_server_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls
            .material()
            .peer_server_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.tls
            .material()
            .peer_server_verifier
            .supported_verify_schemes()
    }
}

/// Presents this node's current certificate to peers.
#[derive(Debug)]
struct OwnCert(Tls);

impl ResolvesClientCert for OwnCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signals() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup_signals() -> Hangup {}

#[cfg(unix)]
async fn next_hangup(h: &mut Hangup) {
    match h {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) {
    std::future::pending().await
}

/// Certificates made at test time (rcgen): a CA and the leaf certificates it signs.
#[cfg(test)]
pub(crate) mod test_pki {
    use std::path::Path;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };

    use super::TlsPaths;

    pub struct TestCa {
        pub pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    impl TestCa {
        pub fn new(name: &str) -> TestCa {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let pem = params.self_signed(&key).unwrap().pem();
            TestCa {
                pem,
                issuer: Issuer::new(params, key),
            }
        }

        /// A leaf for `names` (DNS names or IPs), usable as server and client: `(cert
        /// PEM, key PEM)`.
        pub fn issue(&self, names: &[String]) -> (String, String) {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names.to_vec()).unwrap();
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = params.signed_by(&key, &self.issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        }

        /// Writes a leaf for `names` and this CA into `dir` as `tls.crt`, `tls.key` and
        /// `ca.crt` (cert-manager's names).
        pub fn write(&self, dir: &Path, names: &[String]) -> TlsPaths {
            std::fs::create_dir_all(dir).unwrap();
            let (cert, key) = self.issue(names);
            let paths = TlsPaths {
                cert: dir.join("tls.crt"),
                key: dir.join("tls.key"),
                ca: dir.join("ca.crt"),
                api_client_ca: None,
            };
            std::fs::write(&paths.cert, cert).unwrap();
            std::fs::write(&paths.key, key).unwrap();
            std::fs::write(&paths.ca, &self.pem).unwrap();
            paths
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use axum::routing::get;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::test_pki::TestCa;
    use super::*;
    use crate::listener;

    fn node_names(id: NodeId) -> Vec<String> {
        vec![node_name(id), "localhost".into(), "127.0.0.1".into()]
    }

    /// Serves `GET /` over `tls`'s API handshake until the test ends.
    async fn serve(tls: &Tls) -> SocketAddr {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let app = axum::Router::new().route("/", get(|| async { "hello" }));
        tokio::spawn(listener::serve(
            tcp,
            tls.api_handshake(),
            app,
            listener::ConnLimits::default(),
            Default::default(),
            std::future::pending(),
        ));
        addr
    }

    /// Connects with TLS trusting `ca_pem`; returns the stream and the served leaf.
    async fn connect(
        addr: SocketAddr,
        ca_pem: &str,
    ) -> (
        tokio_rustls::client::TlsStream<TcpStream>,
        CertificateDer<'static>,
    ) {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
        (stream, leaf)
    }

    /// One HTTP/1.1 request on an open connection; returns the whole response text.
    async fn get_root(stream: &mut tokio_rustls::client::TlsStream<TcpStream>) -> String {
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0; 4096];
        let mut text = String::new();
        while !text.ends_with("hello") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed after {text:?}");
            text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        text
    }

    #[test]
    fn a_certificate_names_its_node_and_no_other() {
        let ca = TestCa::new("ca");
        let (cert, _) = ca.issue(&node_names(3));
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        assert!(cert_names_node(&der, 3));
        assert!(!cert_names_node(&der, 2));
        assert!(!cert_names_node(&der, 33));
        let (other, _) = ca.issue(&["node-3.example".to_owned()]);
        let der = CertificateDer::from_pem_slice(other.as_bytes()).unwrap();
        assert!(!cert_names_node(&der, 3));
    }

    #[test]
    fn unusable_files_are_refused_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("ca");
        let paths = ca.write(dir.path(), &node_names(1));
        assert!(Tls::load(paths.clone()).is_ok());

        // A key that belongs to another certificate.
        let key = std::fs::read(&paths.key).unwrap();
        let (_, other_key) = ca.issue(&node_names(1));
        std::fs::write(&paths.key, other_key).unwrap();
        let err = Tls::load(paths.clone()).unwrap_err().to_string();
        assert!(
            err.contains("tls.key") && err.contains("does not fit"),
            "{err}"
        );
        std::fs::write(&paths.key, key).unwrap();

        // Not PEM at all, and a missing file.
        std::fs::write(&paths.ca, "not a certificate").unwrap();
        let err = Tls::load(paths.clone()).unwrap_err().to_string();
        assert!(err.contains("ca.crt"), "{err}");
        std::fs::remove_file(&paths.cert).unwrap();
        let err = Tls::load(paths).unwrap_err().to_string();
        assert!(err.contains("tls.crt"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reload_serves_the_new_certificate_and_keeps_open_connections() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("ca");
        let paths = ca.write(dir.path(), &node_names(1));
        let tls = Tls::load(paths.clone()).unwrap();
        let addr = serve(&tls).await;
        let (mut old, first) = connect(addr, &ca.pem).await;
        assert!(get_root(&mut old).await.starts_with("HTTP/1.1 200"));
        assert!(!tls.reload().unwrap(), "nothing changed yet");

        // A half-written update (new certificate, old key) is refused; the old
        // certificate stays in use.
        let (cert, key) = ca.issue(&node_names(1));
        std::fs::write(&paths.cert, &cert).unwrap();
        assert!(tls.reload().is_err());
        let (_, served) = connect(addr, &ca.pem).await;
        assert_eq!(served, first);

        // Once the key is written too, new handshakes get the new certificate...
        std::fs::write(&paths.key, &key).unwrap();
        assert!(tls.reload().unwrap());
        let (mut new, served) = connect(addr, &ca.pem).await;
        assert_eq!(
            served,
            CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()
        );
        assert!(get_root(&mut new).await.starts_with("HTTP/1.1 200"));
        // ...and the connection opened before the reload still serves requests.
        assert!(get_root(&mut old).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_reloader_picks_up_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("ca");
        let paths = ca.write(dir.path(), &node_names(1));
        let tls = Tls::load(paths.clone()).unwrap();
        let addr = serve(&tls).await;
        tls.spawn_reloader(Duration::from_millis(20));
        let (cert, key) = ca.issue(&node_names(1));
        std::fs::write(&paths.key, &key).unwrap();
        std::fs::write(&paths.cert, &cert).unwrap();
        let want = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (_, served) = connect(addr, &ca.pem).await;
            if served == want {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "never reloaded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn api_client_certificates_are_required_when_configured() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("ca");
        let clients = TestCa::new("clients");
        let mut paths = ca.write(dir.path(), &node_names(1));
        let client_ca = dir.path().join("clients.crt");
        std::fs::write(&client_ca, &clients.pem).unwrap();
        paths.api_client_ca = Some(client_ca);
        let tls = Tls::load(paths).unwrap();
        let addr = serve(&tls).await;

        let client = |identity: Option<(String, String)>| {
            let mut b = reqwest::Client::builder()
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap());
            if let Some((cert, key)) = identity {
                b = b.identity(
                    reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap(),
                );
            }
            b.build().unwrap()
        };
        let url = format!("https://localhost:{}/", addr.port());
        assert!(client(None).get(&url).send().await.is_err());
        let wrong = ca.issue(&["someone".to_owned()]);
        assert!(client(Some(wrong)).get(&url).send().await.is_err());
        let right = clients.issue(&["worker".to_owned()]);
        let response = client(Some(right)).get(&url).send().await.unwrap();
        assert_eq!(response.text().await.unwrap(), "hello");
    }
}
