//! Certificates for test clusters, made at run time (rcgen; no key is ever committed):
//! one CA, a certificate per node naming `node-<id>.ratequeue` (the node identity
//! `ratequeue serve` checks between peers) and the node's IP, and a client certificate.
//!
//! Layout under the PKI's dir (cert-manager's file names, so the nodes' flags look as in
//! production): `ca.crt`; `node-<id>/tls.crt`, `tls.key`, `ca.crt`; `client.crt`,
//! `client.key`. `ClusterConfig::test_tls` makes the kit use one for a whole cluster.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// A test CA and the certificates it signs, written under one dir.
pub struct TestPki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    dir: PathBuf,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The DNS name that identifies node `id` to the other nodes.
pub fn node_name(id: u64) -> String {
    format!("node-{id}.ratequeue")
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

impl TestPki {
    /// A new CA, written to `<dir>/ca.crt`.
    pub fn new(dir: impl AsRef<Path>) -> anyhow::Result<TestPki> {
        let dir = dir.as_ref().to_owned();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "ratequeue test cluster CA");
        let ca_pem = params.self_signed(&key)?.pem();
        let pki = TestPki {
            ca_pem,
            issuer: Issuer::new(params, key),
            dir,
        };
        write(&pki.ca_file(), &pki.ca_pem)?;
        Ok(pki)
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// `<dir>/ca.crt`: what clients trust (`RATEQUEUE_CA_FILE`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A leaf for `names` (DNS names or IP addresses), usable as server and client:
    /// `(certificate PEM, key PEM)`.
    pub fn issue(&self, names: &[String]) -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, first);
        }
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Node `id`'s dir: `tls.crt`, `tls.key`, `ca.crt`.
    pub fn node_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    /// Writes (or replaces) node `id`'s certificate, naming `names`.
    pub fn write_node(&self, id: u64, names: &[String]) -> anyhow::Result<()> {
        let dir = self.node_dir(id);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let (cert, key) = self.issue(names)?;
        write(&dir.join("tls.key"), &key)?;
        write(&dir.join("tls.crt"), &cert)?;
        write(&dir.join("ca.crt"), &self.ca_pem)
    }

    /// Whether node `id` has a certificate already.
    pub fn has_node(&self, id: u64) -> bool {
        self.node_dir(id).join("tls.crt").is_file()
    }

    /// The `RATEQUEUE_TLS_*` variables that point node `id` at its files.
    pub fn node_env(&self, id: u64) -> Vec<(&'static str, PathBuf)> {
        let dir = self.node_dir(id);
        vec![
            ("RATEQUEUE_TLS_CERT", dir.join("tls.crt")),
            ("RATEQUEUE_TLS_KEY", dir.join("tls.key")),
            ("RATEQUEUE_TLS_CA", dir.join("ca.crt")),
        ]
    }

    /// `<dir>/client.crt` and `<dir>/client.key`: a client certificate from this CA
    /// (`RATEQUEUE_CLIENT_CERT`, `RATEQUEUE_CLIENT_KEY`), written on first use.
    pub fn client_files(&self) -> anyhow::Result<(PathBuf, PathBuf)> {
        let (cert_file, key_file) = (self.dir.join("client.crt"), self.dir.join("client.key"));
        if !cert_file.is_file() {
            let (cert, key) = self.issue(&["ratequeue-test-client".to_owned()])?;
            write(&key_file, &key)?;
            write(&cert_file, &cert)?;
        }
        Ok((cert_file, key_file))
    }
}
