//! TLS for `wss://`: the system's roots plus the caller's CA files, verification always on.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ClientCert;
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

fn bad(msg: String) -> ConnectionError {
    ConnectionError::InvalidArgument(msg)
}

/// The client configuration of one connection: the system's roots plus `ca_files`, and the
/// client certificate, if any.
pub(crate) fn client_config(
    ca_files: &[PathBuf],
    client_cert: Option<&ClientCert>,
) -> Result<rustls::ClientConfig> {
    let mut roots = system_roots().clone();
    for path in ca_files {
        add_ca_file(&mut roots, path)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS setup: {e}")))?
        .with_root_certificates(roots);
    let Some(cert) = client_cert else {
        return Ok(builder.with_no_client_auth());
    };
    let (chain, key) = identity(cert)?;
    // rustls checks that the key belongs to the leaf certificate. Its errors name the problem,
    // never the key.
    builder
        .with_client_auth_cert(chain, key)
        .map_err(|e| bad(format!("client certificate: {e}")))
}

/// Checks a client certificate and key as `build` will, so the C setters can refuse a bad pair
/// at once.
pub(crate) fn check_client_cert(cert: &ClientCert) -> Result<()> {
    client_config(&[], Some(cert)).map(drop)
}

/// The parsed chain and key. Errors name the file or "in memory", and what is wrong.
fn identity(cert: &ClientCert) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let (chain, key) = match cert {
        ClientCert::Files { chain, key } => {
            let (c, k) = (chain.display(), key.display());
            let certs = CertificateDer::pem_file_iter(chain)
                .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| bad(format!("client certificate file {c}: {e}")))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| bad(format!("client key file {k}: {e}")))?;
            (certs, key)
        }
        ClientCert::Pem { chain, key } => {
            let certs = CertificateDer::pem_slice_iter(chain)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("client certificate (PEM in memory): {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| bad(format!("client key (PEM in memory): {e}")))?;
            (certs, key)
        }
    };
    if chain.is_empty() {
        return Err(bad(
            "the client certificate chain holds no PEM certificate".into()
        ));
    }
    Ok((chain, key))
}

/// Checks that a CA file can be read and holds at least one usable certificate, so the C setter
/// can refuse a bad file at once rather than at `kh_manager_add`.
pub(crate) fn check_ca_file(path: &Path) -> Result<()> {
    add_ca_file(&mut rustls::RootCertStore::empty(), path)
}

fn add_ca_file(roots: &mut rustls::RootCertStore, path: &Path) -> Result<()> {
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

    fn pem_identity(names: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names).unwrap();
        (
            ck.cert.pem().into_bytes(),
            ck.signing_key.serialize_pem().into_bytes(),
        )
    }

    #[test]
    fn a_client_key_that_is_not_its_certificates_is_refused() {
        let (chain, key) = pem_identity(&["client.test"]);
        let (_, other_key) = pem_identity(&["other.test"]);
        let good = ClientCert::Pem {
            chain: chain.clone(),
            key,
        };
        assert!(check_client_cert(&good).is_ok());
        let mismatched = ClientCert::Pem {
            chain,
            key: other_key.clone(),
        };
        let err = check_client_cert(&mismatched).unwrap_err();
        assert!(
            matches!(err, ConnectionError::InvalidArgument(_)),
            "{err:?}"
        );
        assert!(err.to_string().contains("client certificate"), "{err}");
        // A chain without a certificate in it.
        let empty = ClientCert::Pem {
            chain: b"not a certificate".to_vec(),
            key: other_key,
        };
        let err = check_client_cert(&empty).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn the_system_roots_are_trusted() {
        // Where the system has root certificates, every connection's store starts with them.
        let system = rustls_native_certs::load_native_certs().certs.len();
        if system > 0 {
            assert!(
                !system_roots().is_empty(),
                "{system} system roots, none loaded"
            );
        }
    }

    #[test]
    fn missing_ca_file_is_refused_with_its_path() {
        let err = check_ca_file(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
