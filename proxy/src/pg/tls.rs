//! TLS for client connections (rustls, aws-lc-rs provider) from `[pg.tls]` PEM files.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::config::TlsConfig;
use super::error::PgError;

pub fn acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, PgError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert)
        .map_err(|e| PgError::Tls(format!("pg.tls.cert {}: {e}", cfg.cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| PgError::Tls(format!("pg.tls.cert {}: {e}", cfg.cert.display())))?;
    if certs.is_empty() {
        return Err(PgError::Tls(format!(
            "pg.tls.cert {}: no certificate",
            cfg.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key)
        .map_err(|e| PgError::Tls(format!("pg.tls.key {}: {e}", cfg.key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| PgError::Tls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
