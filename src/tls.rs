//! TLS for `wss://`: the system's roots plus the caller's CA files, verification always on.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::error::{ConnectionError, Result};

/// The system's root certificates, loaded once per process: loading them costs milliseconds and
/// thousands of connections share them.
fn system_roots() -> &'static rustls::RootCertStore {
    static ROOTS: OnceLock<rustls::RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = rustls::RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            log::warn!("loading a system root certificate failed: {e}");
        }
        let (added, ignored) = store.add_parsable_certificates(loaded.certs);
        log::debug!("system roots: {added} loaded, {ignored} ignored");
        store
    })
}

/// The client configuration of one connection: the system's roots plus `ca_files`.
pub(crate) fn client_config(ca_files: &[PathBuf]) -> Result<rustls::ClientConfig> {
    let mut roots = system_roots().clone();
    for path in ca_files {
        add_ca_file(&mut roots, path)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectionError::InvalidArgument(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Checks that a CA file can be read and holds at least one usable certificate, so the C setter
/// can refuse a bad file at once rather than at `kh_manager_add`.
pub(crate) fn check_ca_file(path: &Path) -> Result<()> {
    add_ca_file(&mut rustls::RootCertStore::empty(), path)
}

fn add_ca_file(roots: &mut rustls::RootCertStore, path: &Path) -> Result<()> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |msg: String| ConnectionError::InvalidArgument(msg);
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(format!("CA file {}: {e}", path.display())))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("CA file {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(bad(format!(
            "CA file {} holds no PEM certificate",
            path.display()
        )));
    }
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| bad(format!("CA file {}: {e}", path.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ca_file_is_refused_with_its_path() {
        let err = check_ca_file(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
