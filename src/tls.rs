//! TLS to brokers (`mqtts://`) with rustls and the ring provider only.
//!
//! The client configuration is built once, from `[mqtt] ca_file` and an optional client
//! certificate, when the configuration is validated — so `gscluster check` reports a bad or
//! missing certificate file by name, and the daemon never meets it at connect time.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::Arc;

/// Install ring as the process-wide rustls provider, so nothing can pick another one (or
/// panic for lack of one). Called once at start; a second call is harmless.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{key} {}: cannot read: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key} {}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{key} {}: no certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

/// The rustls client configuration for `mqtts://` servers.
pub fn client_config(
    ca_file: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for cert in certs("[mqtt] ca_file", ca_file)? {
        roots.add(cert).map_err(|e| {
            format!(
                "[mqtt] ca_file {}: unusable CA certificate: {e}",
                ca_file.display()
            )
        })?;
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert_file, key_file)) => {
            let chain = certs("[mqtt] client_cert_file", cert_file)?;
            let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
                format!(
                    "[mqtt] client_key_file {}: no usable private key: {e}",
                    key_file.display()
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                format!("[mqtt] client_cert_file / client_key_file: cannot use them (a key that is not the certificate's, or a certificate rustls refuses): {e}")
            })?
        }
    };
    Ok(Arc::new(config))
}

/// Check that a broker certificate and key load, for the embedded broker (rumqttd reads them
/// itself when it starts; this turns a bad file into a configuration error that names it).
pub fn check_server_files(cert_file: &Path, key_file: &Path) -> Result<(), String> {
    certs("[broker] tls_cert_file", cert_file)?;
    PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        format!(
            "[broker] tls_key_file {}: no usable private key: {e}",
            key_file.display()
        )
    })?;
    Ok(())
}
