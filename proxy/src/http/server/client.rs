//! The outbound client: plain HTTP for the CRM upstreams, TLS (rustls, webpki roots plus an
//! optional CA file) for providers; connection pooling with an idle timeout.

use std::sync::Arc;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::body::ProxyBody;
use crate::http::config::HttpConfig;
use crate::http::error::HttpError;

pub type HttpClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// Builds the client from the configuration.
pub fn build(cfg: &HttpConfig) -> Result<HttpClient, HttpError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &cfg.ca_file {
        let ca_err = |reason: String| HttpError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| ca_err(e.to_string()))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| ca_err(e.to_string()))?;
            roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(ca_err("no certificate found".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(cfg.timeouts.connect()));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(cfg.timeouts.idle())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(256)
        .build(https))
}

/// The TLS acceptor for `[http.tls]`: ALPN `h2` and `http/1.1`.
pub fn acceptor(
    t: &crate::http::config::TlsListen,
) -> Result<tokio_rustls::TlsAcceptor, HttpError> {
    use rustls_pki_types::PrivateKeyDer;
    let file_err = |path: &std::path::Path, reason: String| HttpError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.cert_file)
        .map_err(|e| file_err(&t.cert_file, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(&t.cert_file, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err(&t.cert_file, "no certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&t.key_file)
        .map_err(|e| file_err(&t.key_file, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}
