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
    static FROM_12: &[&SupportedProtocolVersion] =
        &[&rustls::version::TLS13, &rustls::version::TLS12];
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
            let missing = if cert.is_empty() {
                "certFile"
            } else {
                "keyFile"
            };
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
    let cert_pem = std::fs::read(cert_path).map_err(|e| {
        (
            "certFile",
            format!("cannot read certificate file {cf}: {e}"),
        )
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            (
                "certFile",
                format!("invalid PEM in certificate file {cf}: {e}"),
            )
        })?;
    if chain.is_empty() {
        return Err(("certFile", format!("no certificate found in {cf} (expected PEM \"BEGIN CERTIFICATE\" blocks, leaf first)")));
    }
    let leaf = webpki::EndEntityCert::try_from(&chain[0]).map_err(|e| {
        (
            "certFile",
            format!("the first certificate in {cf} cannot be parsed: {e}"),
        )
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CertificateConfig;
    use rcgen::{CertificateParams, KeyPair};

    /// A temp directory removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new() -> Dir {
            let name = format!("gogate-tls-{}-{:x}", std::process::id(), rand_u64());
            let dir = std::env::temp_dir().join(name);
            std::fs::create_dir_all(&dir).expect("temp dir");
            Dir(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn rand_u64() -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0);
        h.finish()
    }

    /// Writes a self-signed `stem.crt`/`stem.key` for `names`; returns the certificate DER.
    fn pair(dir: &Path, stem: &str, names: &[&str]) -> Vec<u8> {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        std::fs::write(dir.join(format!("{stem}.crt")), cert.pem()).expect("write");
        std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).expect("write");
        cert.der().to_vec()
    }

    fn tls(default: Option<&str>, extra: &[&str]) -> TlsConfig {
        let mut t = TlsConfig {
            enabled: true,
            ..TlsConfig::default()
        };
        if let Some(stem) = default {
            t.cert_file = format!("{stem}.crt");
            t.key_file = format!("{stem}.key");
        }
        t.certificates = extra
            .iter()
            .map(|stem| CertificateConfig {
                cert_file: format!("{stem}.crt"),
                key_file: format!("{stem}.key"),
            })
            .collect();
        t
    }

    fn served(set: &CertSet, sni: Option<&str>) -> Vec<u8> {
        set.select(sni).cert[0].to_vec()
    }

    #[test]
    fn sni_prefers_exact_names_then_wildcards_then_the_default() {
        let dir = Dir::new();
        let cfg_file = dir.0.join("gogate.yaml");
        let default = pair(&dir.0, "default", &["default.test"]);
        let wild = pair(&dir.0, "wild", &["*.api.test"]);
        let exact = pair(&dir.0, "exact", &["v1.api.test", "Other.Test"]);
        let set = load(&tls(Some("default"), &["wild", "exact"]), Some(&cfg_file)).expect("loads");
        assert_eq!(
            served(&set, Some("v1.api.test")),
            exact,
            "exact beats wildcard"
        );
        assert_eq!(
            served(&set, Some("OTHER.test.")),
            exact,
            "case and trailing dot"
        );
        assert_eq!(served(&set, Some("v2.api.test")), wild);
        assert_eq!(
            served(&set, Some("a.v2.api.test")),
            default,
            "a wildcard covers one label"
        );
        assert_eq!(served(&set, Some("api.test")), default);
        assert_eq!(served(&set, None), default);
        assert_eq!(set.files().len(), 6);

        // Without certFile, the first of `certificates` is the default.
        let set = load(&tls(None, &["exact", "wild"]), Some(&cfg_file)).expect("loads");
        assert_eq!(served(&set, Some("unknown.test")), exact);
    }

    #[test]
    fn relative_paths_resolve_against_the_config_file() {
        assert_eq!(
            resolve(Some(Path::new("/etc/gogate/gw.yaml")), "tls/a.crt"),
            PathBuf::from("/etc/gogate/tls/a.crt")
        );
        assert_eq!(
            resolve(Some(Path::new("/etc/gogate/gw.yaml")), "/x/a.crt"),
            PathBuf::from("/x/a.crt")
        );
        assert_eq!(resolve(None, "a.crt"), PathBuf::from("a.crt"));
    }

    #[test]
    fn every_bad_file_is_reported_with_its_key_and_name() {
        let dir = Dir::new();
        let cfg_file = dir.0.join("gogate.yaml");
        pair(&dir.0, "good", &["good.test"]);
        pair(&dir.0, "other", &["other.test"]);
        std::fs::write(dir.0.join("junk.crt"), "not PEM").expect("write");
        let mut t = tls(Some("good"), &["missing", "junk"]);
        // A key that belongs to another certificate.
        t.certificates.push(CertificateConfig {
            cert_file: "good.crt".into(),
            key_file: "other.key".into(),
        });
        let errs = load(&t, Some(&cfg_file))
            .expect_err("bad files")
            .to_string();
        let lines: Vec<&str> = errs.lines().collect();
        assert_eq!(lines.len(), 3, "{errs}");
        assert!(
            lines[0].contains("server.tls.certificates[0].certFile")
                && lines[0].contains("missing.crt"),
            "{errs}"
        );
        assert!(
            lines[1].contains("server.tls.certificates[1].certFile")
                && lines[1].contains("junk.crt"),
            "{errs}"
        );
        assert!(
            lines[2].contains("server.tls.certificates[2].keyFile")
                && lines[2].contains("other.key")
                && lines[2].contains("does not match"),
            "{errs}"
        );
        assert!(lines.iter().all(|l| l.contains("gogate.yaml")), "{errs}");
    }

    #[test]
    fn min_versions() {
        assert_eq!(protocol_versions("1.2").map(<[_]>::len), Some(2));
        assert_eq!(protocol_versions("1.3").map(<[_]>::len), Some(1));
        assert!(protocol_versions("1.1").is_none());
    }
}
