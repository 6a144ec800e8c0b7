//! TLS for `smpps://` sessions: a rustls client configuration trusting a
//! configured PEM CA bundle (operators often run SMSCs behind a private CA).
//! Without a bundle, rusmppc's default (the public web roots) is used.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Reads every certificate of a PEM bundle; errors name the file, never its content.
pub fn load_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read CA bundle {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("CA bundle {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("CA bundle {} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// A client configuration that trusts exactly the CAs in `ca_file`.
pub fn client_config(ca_file: &Path) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_ca(ca_file)? {
        roots
            .add(cert)
            .map_err(|e| format!("CA bundle {}: {e}", ca_file.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
