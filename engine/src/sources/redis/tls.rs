//! `rediss://`: the connection to a server that speaks TLS (Redis 6+ built
//! with TLS, `tls-port`), with rustls and the system's roots, as the S3
//! client does, plus a CA file for a server whose certificate a private CA
//! signed (the usual case for Redis inside a platform).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::RedisError;

/// What a connection runs over.
pub(crate) enum Transport {
    /// `redis://`.
    Plain(TcpStream),
    /// `rediss://`.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

/// How to check the server's certificate: the system's roots, and the
/// certificates of `ca_file` (PEM) when given.
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, RedisError> {
    let tls = |detail: String| RedisError::Tls { detail };
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are skipped: a private CA file may be
    // all this connection needs, and a missing root fails the handshake
    // with a message naming the certificate problem.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| tls(format!("reading the CA file {}: {e}", path.display())))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| tls(format!("the CA file {}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| tls(format!("the CA file {}: {e}", path.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(tls(format!("the CA file {} holds no PEM certificate", path.display())));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Wraps a connected socket in TLS for `host` (a name or an IP address,
/// which the certificate must name) and shakes hands, so that a
/// certificate problem is named as one rather than as a failed command.
pub(crate) fn wrap(mut stream: TcpStream, host: &str, config: Arc<ClientConfig>) -> Result<Transport, RedisError> {
    let name = ServerName::try_from(host.to_string()).map_err(|e| RedisError::Tls {
        detail: format!("`{host}` is no valid TLS server name: {e}"),
    })?;
    let mut conn = ClientConnection::new(config, name).map_err(|e| RedisError::Tls { detail: e.to_string() })?;
    while conn.is_handshaking() {
        conn.complete_io(&mut stream).map_err(|e| RedisError::Tls {
            detail: format!(
                "the handshake with {host} failed: {e} (if a private CA signed the server's certificate, \
                 give its PEM file with --redis-ca-file or cairn.toml's [redis] ca-file)"
            ),
        })?;
    }
    Ok(Transport::Tls(Box::new(StreamOwned::new(conn, stream))))
}
