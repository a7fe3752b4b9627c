//! HTTPS: a TLS listener from a certificate chain and key in PEM files.
//!
//! Connections are counted from their TCP accept ([`Admission`], as for plain HTTP);
//! handshakes run in their own tasks (each given [`HANDSHAKE_TIMEOUT`]), so a slow or broken
//! client never holds up the others; only finished connections reach the server.

use super::DaemonError;
use super::connection::{Admission, Admitted};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

/// How long a client may take for its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the certificate chain and private key; errors name the file and the reason.
pub fn server_config(certificate: &Path, key: &Path) -> Result<Arc<ServerConfig>, DaemonError> {
    let bad = |path: &Path, reason: String| DaemonError::Settings {
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(certificate)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(certificate, format!("reading the TLS certificate: {e}")))?;
    if chain.is_empty() {
        return Err(bad(certificate, "no certificate in the file".to_string()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| bad(key, format!("reading the TLS private key: {e}")))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(certificate, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| bad(certificate, format!("certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `mbd self-signed-certificate create`: a P-256 key (`etc/tls.key`, 0600) and a certificate
/// for `hostname` (default: this host's name; an address becomes an IP name) valid ten
/// years (`etc/tls.crt`), made by openssl; returns what to put in `etc/mbd.toml` and how
/// clients trust it. Existing files are kept unless `force`.
pub fn create_self_signed(
    home: &Path,
    hostname: Option<&str>,
    force: bool,
) -> Result<String, DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    let host = hostname.map_or_else(super::start::system_hostname, str::to_string);
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b));
    let (etc, key, cert) = (
        home.join("etc"),
        home.join("etc/tls.key"),
        home.join("etc/tls.crt"),
    );
    let refuse = |path: &Path, reason: String| DaemonError::Settings {
        path: path.to_path_buf(),
        reason,
    };
    if !valid {
        return Err(refuse(
            &cert,
            format!("'{host}' is not a host name or address"),
        ));
    }
    if !force && (key.exists() || cert.exists()) {
        return Err(refuse(
            &cert,
            "exists; give --force to replace it".to_string(),
        ));
    }
    std::fs::create_dir_all(&etc).map_err(|e| refuse(&etc, e.to_string()))?;
    let san = if host.parse::<std::net::IpAddr>().is_ok() {
        format!("subjectAltName=IP:{host}")
    } else {
        format!("subjectAltName=DNS:{host}")
    };
    let staged = etc.join(".tls.key.new");
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "3650", "-subj"])
        .arg(format!("/CN={host}"))
        .args(["-addext", &san, "-keyout"])
        .arg(&staged)
        .arg("-out")
        .arg(&cert)
        .output()
        .map_err(|e| refuse(&cert, format!("openssl: {e}")))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&staged);
        return Err(refuse(
            &cert,
            format!(
                "openssl failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&staged, &key))
        .map_err(|e| refuse(&key, e.to_string()))?;
    Ok(format!(
        "Wrote {key} (0600) and {cert} for {host}.\n\
         In {settings}:\n\
         \x20   tls_certificate = \"etc/tls.crt\"\n\
         \x20   tls_key = \"etc/tls.key\"\n\
         \x20   https_endpoints = [\"0.0.0.0:8068\"]\n\
         then restart the daemon. Clients trust it with the certificate itself (dput, curl:\n\
         SSL_CERT_FILE={cert}; apt: Acquire::https::{host}::CaInfo \"{cert}\").\n",
        key = key.display(),
        cert = cert.display(),
        settings = crate::settings::settings_path(home).display(),
    ))
}

/// Accepts TCP connections and hands on those whose TLS handshake succeeded.
pub struct TlsListener {
    local: SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr, Admitted)>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let admission = Arc::new(Admission::default());
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting an HTTPS connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    break;
                }
                let Some(admitted) = admission.admit(peer.ip()) else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer, admitted)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready })
    }
}

impl TlsListener {
    /// The next connection whose handshake is done; `None` once the listener is gone.
    pub(crate) async fn accept(&mut self) -> Option<(TlsStream<TcpStream>, SocketAddr, Admitted)> {
        self.ready.recv().await
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}
