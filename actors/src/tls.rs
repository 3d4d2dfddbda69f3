//! The certificates the HTTPS listener serves, published like the snapshot: the config actor
//! is the only writer (at start, on every reload, and when the certificate files change), the
//! listener's certificate resolver reads it once per handshake. A swap affects new handshakes
//! only: open connections keep the session they negotiated.

use arc_swap::ArcSwapOption;
use gogate_config::tls::CertSet;
use std::sync::Arc;

/// The published certificate set; empty while TLS is disabled.
#[derive(Debug, Default)]
pub struct CertStore(ArcSwapOption<CertSet>);

impl CertStore {
    pub fn new(set: Option<CertSet>) -> Arc<Self> {
        Arc::new(CertStore(ArcSwapOption::new(set.map(Arc::new))))
    }

    /// The current set (one atomic load).
    pub fn load(&self) -> Option<Arc<CertSet>> {
        self.0.load_full()
    }

    pub fn store(&self, set: Option<Arc<CertSet>>) {
        self.0.store(set);
    }
}
