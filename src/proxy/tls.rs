//! The rustls side of the HTTPS listener: a server configuration whose certificate resolver
//! reads the published [`CertStore`] at each handshake (one atomic load), so a reload or a
//! certificate file change reaches new handshakes without touching open connections. ALPN
//! (`h2`, `http/1.1`) is added by actix-http when the listener is built.

use gogate_actors::tls::CertStore;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::sync::Arc;

/// Picks the certificate for a client's SNI name from the current set.
#[derive(Debug)]
struct StoreResolver(Arc<CertStore>);

impl ResolvesServerCert for StoreResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // None (TLS just disabled by a reload) fails the handshake; it is counted.
        self.0.load().map(|set| set.select(hello.server_name()))
    }
}

/// The rustls configuration of an HTTPS listener: ring crypto, TLS 1.3 and, unless
/// `min_version` is `"1.3"`, TLS 1.2; certificates from `store`.
pub fn server_config(store: Arc<CertStore>, min_version: &str) -> Result<ServerConfig, String> {
    let versions = gogate_config::tls::protocol_versions(min_version).ok_or_else(|| {
        format!(
            "server.tls.minVersion: invalid {min_version:?}; allowed: {}",
            gogate_config::tls::MIN_VERSIONS
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| format!("server.tls: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(StoreResolver(store)));
    Ok(config)
}
