//! Certificate material of `server.tls`: reads the PEM files a configuration names (relative
//! paths against the config file's directory, DESIGN B10), checks that each key matches its
//! certificate, and compiles a [`CertSet`] that picks a certificate for a client's SNI name.
//!
//! Loading reads files, so it is not part of `load_str`: `gogate validate` and the start call
//! [`load`] after parsing, and a reload calls it off the config actor's thread. The set is
//! immutable; the running gateway swaps whole sets, so a handshake sees one set or the other.
//!
//! Choice for a SNI name: an exact DNS name of a certificate (`certificates` in file order, then
//! `certFile`), then a wildcard one (`*.example.com` covers one label), then the default
//! (`certFile`, else the first of `certificates`). Names come from each certificate's
//! subjectAltName DNS entries, as clients check them.

use crate::error::{ConfigError, ConfigErrors};
use crate::model::TlsConfig;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::SupportedProtocolVersion;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Values `minVersion` accepts.
pub const MIN_VERSIONS: &str = "\"1.2\", \"1.3\"";

/// The protocol versions a listener with `minVersion` `min` offers; `None` for an unknown value.
pub fn protocol_versions(min: &str) -> Option<&'static [&'static SupportedProtocolVersion]> {
    static FROM_12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
    static FROM_13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
    match min.trim() {
        "1.2" => Some(FROM_12),
        "1.3" => Some(FROM_13),
        _ => None,
    }
}

/// One loaded certificate with the names it is chosen for.
#[derive(Debug)]
struct Entry {
    /// Lower-case subjectAltName DNS names (`*.x` for wildcards).
    names: Vec<String>,
    key: Arc<CertifiedKey>,
}

/// The certificates of one configuration, ready for handshakes.
#[derive(Debug)]
pub struct CertSet {
    /// `certificates` in file order, then `certFile` when set.
    entries: Vec<Entry>,
    /// Index of the certificate for clients whose name matches none (or who send no SNI).
    default: usize,
    /// The files loaded, for logs.
    files: Vec<PathBuf>,
}

impl CertSet {
    /// The certificate for a client that asked for `sni` (none: the default).
    pub fn select(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let pick = sni.and_then(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let exact = self.entries.iter().find(|e| e.names.contains(&name));
            exact.or_else(|| {
                let (_, parent) = name.split_once('.')?;
                let wildcard = format!("*.{parent}");
                self.entries.iter().find(|e| e.names.contains(&wildcard))
            })
        });
        let entry = pick.unwrap_or(&self.entries[self.default]);
        Arc::clone(&entry.key)
    }

    /// The certificate files this set was loaded from.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// A file path of the configuration, resolved against the config file's directory.
pub fn resolve(config_file: Option<&Path>, path: &str) -> PathBuf {
    let p = Path::new(path);
    match config_file.and_then(Path::parent) {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

/// The `(key path, certFile, keyFile)` of every configured pair, `certificates` first.
fn pairs(tls: &TlsConfig) -> Vec<(String, &str, &str)> {
    let mut out: Vec<(String, &str, &str)> = tls
        .certificates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let key = format!("server.tls.certificates[{i}]");
            (key, c.cert_file.as_str(), c.key_file.as_str())
        })
        .collect();
    if !tls.cert_file.is_empty() || !tls.key_file.is_empty() {
        out.push(("server.tls".into(), &tls.cert_file, &tls.key_file));
    }
    out
}

/// Every certificate and key file `tls` names, resolved (what the watcher looks at).
pub fn files(tls: &TlsConfig, config_file: Option<&Path>) -> Vec<PathBuf> {
    pairs(tls)
        .into_iter()
        .flat_map(|(_, c, k)| [c, k])
        .filter(|f| !f.is_empty())
        .map(|f| resolve(config_file, f))
        .collect()
}

/// Loads the certificates of `tls` (enabled or not); every problem is reported, each naming its
/// key path and file.
pub fn load(tls: &TlsConfig, config_file: Option<&Path>) -> Result<CertSet, ConfigErrors> {
    let mut entries = Vec::new();
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let mut err = |path: String, msg: String| {
        let mut e = ConfigError::new(path, msg);
        e.file = config_file.map(Path::to_path_buf);
        errors.push(e);
    };
    let pairs = pairs(tls);
    if pairs.is_empty() {
        err(
            "server.tls.certFile".into(),
            "TLS needs a certificate: set certFile and keyFile, or certificates".into(),
        );
    }
    for (key, cert, priv_key) in &pairs {
        if cert.is_empty() || priv_key.is_empty() {
            let missing = if cert.is_empty() { "certFile" } else { "keyFile" };
            err(
                format!("{key}.{missing}"),
                "certFile and keyFile go together; set both".into(),
            );
            continue;
        }
        let (cert_path, key_path) = (resolve(config_file, cert), resolve(config_file, priv_key));
        match load_pair(&cert_path, &key_path) {
            Ok(entry) => {
                entries.push(entry);
                files.push(cert_path);
                files.push(key_path);
            }
            Err((which, msg)) => err(format!("{key}.{which}"), msg),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let has_default = !tls.cert_file.is_empty();
    Ok(CertSet {
        default: if has_default { entries.len() - 1 } else { 0 },
        entries,
        files,
    })
}

/// Reads one certificate chain and its key. The error names the key (`certFile`/`keyFile`)
/// and says what is wrong with which file.
fn load_pair(cert_path: &Path, key_path: &Path) -> Result<Entry, (&'static str, String)> {
    let (cf, kf) = (cert_path.display(), key_path.display());
    let cert_pem = std::fs::read(cert_path)
        .map_err(|e| ("certFile", format!("cannot read certificate file {cf}: {e}")))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ("certFile", format!("invalid PEM in certificate file {cf}: {e}")))?;
    if chain.is_empty() {
        return Err(("certFile", format!("no certificate found in {cf} (expected PEM \"BEGIN CERTIFICATE\" blocks, leaf first)")));
    }
    let leaf = webpki::EndEntityCert::try_from(&chain[0])
        .map_err(|e| ("certFile", format!("the first certificate in {cf} cannot be parsed: {e}")))?;
    let names: Vec<String> = leaf
        .valid_dns_names()
        .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    let key_pem = std::fs::read(key_path)
        .map_err(|e| ("keyFile", format!("cannot read key file {kf}: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| ("keyFile", format!("no private key found in {kf} (expected PEM \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\"): {e}")))?;
    let signer = any_supported_type(&key)
        .map_err(|e| ("keyFile", format!("unsupported private key in {kf}: {e}")))?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err((
                "keyFile",
                format!("the private key in {kf} does not match the certificate in {cf}"),
            ))
        }
    }
    Ok(Entry {
        names,
        key: Arc::new(certified),
    })
}
